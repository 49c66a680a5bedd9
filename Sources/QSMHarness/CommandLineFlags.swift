import QSMCore
/// A command line's flags, parsed strictly: every flag must be known, every valued flag
/// needs a value (`--flag value` or `--flag=value`), and stray arguments are errors.
public struct CommandLineFlags {
    private var values: [String: [String]] = [:]
    private var switches: Set<String> = []

    /// - Parameters:
    ///   - valued: flags that take a value (may repeat).
    ///   - switches: flags that take none.
    ///
    /// `--config PATH` (accepted by every command) reads a JSON file of flags first (see
    /// `ConfigurationFile`); a flag given on the command line replaces the file's.
    public init(_ arguments: [String], valued: Set<String>, switches allowedSwitches: Set<String>) throws(ConfigurationError) {
        var fromCommandLine = try Self(parsing: arguments, valued: valued.union(["--config"]), switches: allowedSwitches)
        if let path = try fromCommandLine.value("--config") {
            let fromFile = try Self(parsing: try ConfigurationFile.arguments(from: path, valued: valued, switches: allowedSwitches),
                                    valued: valued, switches: allowedSwitches)
            for (flag, given) in fromFile.values where fromCommandLine.values[flag] == nil { fromCommandLine.values[flag] = given }
            fromCommandLine.switches.formUnion(fromFile.switches)
        }
        fromCommandLine.values["--config"] = nil
        self = fromCommandLine
    }

    private init(parsing arguments: [String], valued: Set<String>, switches allowedSwitches: Set<String>) throws(ConfigurationError) {
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

    /// Whether `flag` was given: a switch, or a valued flag with any value. (A valued flag
    /// once read only as a switch was silently ignored: `qsm-bench run --bundle-bytes`.)
    public func has(_ flag: String) -> Bool { switches.contains(flag) || values[flag] != nil }

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

    /// An integer from `flag` that is either 0 (a feature off) or in `range`, or `fallback`.
    public func integer(_ flag: String, zeroOr range: ClosedRange<Int>, default fallback: Int) throws(ConfigurationError) -> Int {
        guard let text = try value(flag) else { return fallback }
        guard let number = Int(text), number == 0 || range.contains(number) else {
            throw ConfigurationError("\(flag) must be 0 (off) or an integer in \(range.lowerBound)...\(range.upperBound), got '\(text)'")
        }
        return number
    }

    /// A duration: a number with a unit, `250ms`, `5s` or `2m` (a bare number is seconds),
    /// from `flag`, or from `alias` (an older name whose bare numbers are in `aliasUnit`),
    /// or `fallback`; it must lie in `range`.
    public func duration(_ flag: String, alias: String? = nil, aliasUnit: Duration = .seconds(1),
                         in range: ClosedRange<Duration>, default fallback: Duration) throws(ConfigurationError) -> Duration {
        let given = try value(flag)
        let old = try alias.flatMap { alias throws(ConfigurationError) in try value(alias) }
        if given != nil, old != nil { throw ConfigurationError("\(flag) and \(alias!) are the same setting: give one") }
        guard let text = given ?? old else { return fallback }
        let name = given != nil ? flag : alias!
        guard let parsed = Self.parseDuration(text, bareUnit: given != nil ? .seconds(1) : aliasUnit), range.contains(parsed) else {
            throw ConfigurationError("\(name) must be a duration like 250ms, 5s or 2m within \(Self.describe(range.lowerBound))...\(Self.describe(range.upperBound)), got '\(text)'")
        }
        return parsed
    }

    /// `text` as a duration (`250ms`, `5s`, `2m`; a bare number is in `bareUnit`), or nil.
    public static func parseDuration(_ text: String, bareUnit: Duration) -> Duration? {
        let units: [(String, Double)] = [("ms", 1e-3), ("s", 1), ("m", 60)]
        var number = Substring(text)
        var scale = Double(bareUnit.components.seconds) + Double(bareUnit.components.attoseconds) / 1e18
        for (suffix, seconds) in units where text.hasSuffix(suffix) {
            number = text.dropLast(suffix.count)
            scale = seconds
            break
        }
        guard let value = Double(number), value.isFinite, value >= 0 else { return nil }
        return .nanoseconds(Int64((value * scale * 1e9).rounded()))
    }

    static func describe(_ duration: Duration) -> String {
        let milliseconds = duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000
        return milliseconds % 1000 == 0 ? "\(milliseconds / 1000)s" : "\(milliseconds)ms"
    }

    /// A HOST:PORT address with a dotted-quad host.
    public func address(_ flag: String) throws(ConfigurationError) -> QSMSocketAddress? {
        guard let text = try value(flag) else { return nil }
        return try AddressResolution.hostAndPort(text, flag: flag)
    }
}
