#if canImport(Glibc)
import Glibc
#endif

/// When to do what to receiver 0 (or, for churn, to the churning receivers), in
/// seconds since sending started. Records what it did for the report.
struct PerturbationSchedule {
    let options: RunOptions
    private(set) var events: [(start: Double, end: Double)] = []
    private var stoppedUntil: Double?
    private var nextAt: Double
    private var churnIndex = 0
    private var churnLeft: [Bool]
    private var crashed = false

    init(options: RunOptions) {
        self.options = options
        churnLeft = [Bool](repeating: false, count: options.churningReceivers)
        switch options.perturbation {
        case .sleep: nextAt = 2.5
        case .loss: nextAt = 1
        case .freeze: nextAt = min(3, (options.seconds ?? 10) * 0.2)
        case .crash: nextAt = (options.seconds ?? 10) * 0.4
        case .churn: nextAt = 0.5
        case .none, .hostile: nextAt = .infinity
        }
    }

    /// Whether nothing remains to undo (no receiver left stopped or out of its groups).
    var finished: Bool { stoppedUntil == nil && !churnLeft.contains(true) }

    var activeNote: String? {
        stoppedUntil != nil ? "receiver 0 stopped" : (crashed ? "receiver 0 killed" : nil)
    }

    mutating func apply(at elapsed: Double, sendingDone: Bool, receivers: [WorkerProcess], log: (String) -> Void) {
        if let until = stoppedUntil, elapsed >= until {
            receivers[0].signal(SIGCONT)
            stoppedUntil = nil
            log("  receiver 0 continued (SIGCONT)")
        }
        if sendingDone {
            nextAt = .infinity
            rejoinAll(receivers: receivers)
            return
        }
        guard elapsed >= nextAt else { return }
        switch options.perturbation {
        case .none, .hostile:
            break
        case .sleep, .freeze:
            let length = options.perturbation == .sleep ? 0.5 : 10
            receivers[0].signal(SIGSTOP)
            stoppedUntil = elapsed + length
            events.append((elapsed, elapsed + length))
            log("  receiver 0 stopped (SIGSTOP) for \(length) s")
            nextAt = options.perturbation == .sleep ? nextAt + 5 : .infinity
        case .loss:
            try? receivers[0].send(WorkerLine("lose", [("ms", 10)]))
            events.append((elapsed, elapsed + 0.01))
            nextAt += 1
        case .crash:
            receivers[0].signal(SIGKILL)
            crashed = true
            events.append((elapsed, elapsed))
            log("  receiver 0 killed (SIGKILL)")
            nextAt = .infinity
        case .churn:
            let index = churnIndex % churnLeft.count
            churnIndex += 1
            churnLeft[index].toggle()
            try? receivers[index].send(WorkerLine(churnLeft[index] ? "leave" : "join"))
            events.append((elapsed, elapsed))
            log("  receiver \(index) \(churnLeft[index] ? "leaves" : "rejoins") all groups")
            nextAt += 0.5
        }
    }

    /// Undoes whatever is still in effect (a stopped receiver continues, churned ones
    /// rejoin), so that every worker can report.
    mutating func finishAll(receivers: [WorkerProcess]) {
        if stoppedUntil != nil {
            receivers[0].signal(SIGCONT)
            stoppedUntil = nil
        }
    }

    /// Makes churned receivers rejoin once the senders are done.
    private mutating func rejoinAll(receivers: [WorkerProcess]) {
        for index in churnLeft.indices where churnLeft[index] {
            try? receivers[index].send(WorkerLine("join"))
            churnLeft[index] = false
        }
    }
}
