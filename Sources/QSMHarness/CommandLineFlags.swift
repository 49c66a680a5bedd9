import QSMCore
/// A command line's flags, parsed strictly: every flag must be known, every valued flag
/// needs a value (`--flag value` or `--flag=value`), and stray arguments are errors.
public struct CommandLineFlags {
    private var values: [String: [String]] = [:]
    private var switches: Set<String> = []

    /// - Parameters:
    ///   - valued: flags that take a value (may repeat).
    ///   - switches: flags that take none.
    public init(_ arguments: [String], valued: Set<String>, switches allowedSwitches: Set<String>) throws(ConfigurationError) {
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            guard argument.hasPrefix("--") || argument == "-h" else {
                throw ConfigurationError("unexpected argument '\(argument)'")
            }
            let (flag, inline) = Self.split(argument)
            if allowedSwitches.contains(flag) {
                guard inline == nil else { throw ConfigurationError("\(flag) takes no value") }
                switches.insert(flag)
            } else if valued.contains(flag) {
                let value: String
                if let inline {
                    value = inline
                } else {
                    index += 1
                    guard index < arguments.count else { throw ConfigurationError("\(flag) needs a value") }
                    value = arguments[index]
                }
                values[flag, default: []].append(value)
            } else {
                throw ConfigurationError("unknown flag '\(flag)'")
            }
            index += 1
        }
    }

    private static func split(_ argument: String) -> (String, String?) {
        guard let equals = argument.firstIndex(of: "=") else { return (argument, nil) }
        return (String(argument[..<equals]), String(argument[argument.index(after: equals)...]))
    }

    public func has(_ flag: String) -> Bool { switches.contains(flag) }

    /// Every value given for a repeatable flag, in order.
    public func all(_ flag: String) -> [String] { values[flag] ?? [] }

    /// The flag's value; an error if it was given more than once.
    public func value(_ flag: String) throws(ConfigurationError) -> String? {
        guard let given = values[flag] else { return nil }
        guard given.count == 1 else { throw ConfigurationError("\(flag) given \(given.count) times") }
        return given[0]
    }

    public func required(_ flag: String) throws(ConfigurationError) -> String {
        guard let value = try value(flag) else { throw ConfigurationError("\(flag) is required") }
        return value
    }

    /// An integer in `range`, or `fallback` if the flag is absent.
    public func integer(_ flag: String, in range: ClosedRange<Int>, default fallback: Int) throws(ConfigurationError) -> Int {
        guard let text = try value(flag) else { return fallback }
        guard let number = Int(text), range.contains(number) else {
            throw ConfigurationError("\(flag) must be an integer in \(range.lowerBound)...\(range.upperBound), got '\(text)'")
        }
        return number
    }

    /// A HOST:PORT address with a dotted-quad host.
    public func address(_ flag: String) throws(ConfigurationError) -> QSMSocketAddress? {
        guard let text = try value(flag) else { return nil }
        guard let address = QSMSocketAddress(text) else {
            throw ConfigurationError("\(flag) must be IPv4-ADDRESS:PORT (like 127.0.0.1:7000), got '\(text)'")
        }
        return address
    }
}
