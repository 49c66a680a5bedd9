#if canImport(Glibc)
import Glibc
#endif

/// How much a log line matters.
public enum LogLevel: String, Sendable {
    case debug, info, warning, error
}

/// Writes one log line to standard error: a JSON object with `time` (UTC, RFC 3339 with
/// milliseconds), `level`, `source` (the program and command), `event` (what happened,
/// in words), and any further fields (numbers are written as numbers when `fields`
/// values are `Int` or `Double`, otherwise as strings).
public func log(_ level: LogLevel, _ source: String, _ event: String, _ fields: KeyValuePairs<String, any Sendable> = [:]) {
    logFields(level, source, event, fields.map { ($0.key, $0.value) })
}

/// `log` with the fields as a list.
public func logFields(_ level: LogLevel, _ source: String, _ event: String, _ fields: [(String, any Sendable)]) {
    var line = "{\"time\":\"\(utcTimestamp())\",\"level\":\"\(level.rawValue)\",\"source\":\(jsonString(source)),\"event\":\(jsonString(event))"
    for (key, value) in fields {
        line += ",\(jsonString(key)):"
        switch value {
        case let number as Int: line += String(number)
        case let number as UInt64: line += String(number)
        case let number as Double: line += number.isFinite ? String(number) : "null"
        case let flag as Bool: line += flag ? "true" : "false"
        default: line += jsonString("\(value)")
        }
    }
    writeToStandardError(line + "}")
}

/// `text` as a JSON string literal, with quotes, backslashes and control characters
/// escaped.
public func jsonString(_ text: String) -> String {
    var out = "\""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case _ where scalar.value < 0x20:
            let hex = String(scalar.value, radix: 16)
            out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
        default: out.unicodeScalars.append(scalar)
        }
    }
    return out + "\""
}

/// The wall-clock time as `2026-12-03T12:00:00.000Z`.
func utcTimestamp() -> String {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    var seconds = now.tv_sec
    var parts = tm()
    gmtime_r(&seconds, &parts)
    func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
    let milliseconds = now.tv_nsec / 1_000_000
    let ms = milliseconds < 10 ? "00\(milliseconds)" : milliseconds < 100 ? "0\(milliseconds)" : "\(milliseconds)"
    return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)).\(ms)Z"
}
