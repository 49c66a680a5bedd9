import QSMHarness

/// qsm-bench's messages on standard error, as JSON log lines like every qsm-node
/// command's: `source` is the command ("qsm-bench simulate"), `event` the text. Failures
/// (a violation, a failed run, a refused flag) are logged as errors, progress as info.
func benchLog(_ text: String, level: LogLevel? = nil) {
    var source = "qsm-bench"
    var event = text
    if text.hasPrefix("qsm-bench"), let colon = text.firstRange(of: ": ") {
        source = String(text[..<colon.lowerBound])
        event = String(text[colon.upperBound...])
    }
    let failing = ["FAILED", "violation", "failed", "cannot", "unknown", "see qsm-bench", "must", "stopped at"]
    let inferred: LogLevel = failing.contains { text.contains($0) } ? .error : .info
    log(level ?? inferred, source, event)
}
