#if canImport(Glibc)
import Glibc
#endif
import QSMCore

/// A JSON configuration file for a command (`--config PATH`): one object whose keys are
/// the command's flags without their dashes, and whose values are what the flag would
/// take: a string or number for a valued flag, an array for a repeatable one, `true` for
/// a switch. Flags given on the command line override the file's.
///
/// ```json
/// {"gms": "10.0.0.1:7000", "group": ["prices", "news"], "secret-file": "/etc/qsm/cluster.secret"}
/// ```
enum ConfigurationFile {
    /// The largest file read: a configuration of flags is a few hundred bytes.
    static let maximumBytes = 1 << 20

    /// The file's settings as command-line arguments (`--key value`, `--switch`).
    static func arguments(from path: String, valued: Set<String>, switches: Set<String>) throws(ConfigurationError) -> [String] {
        var bytes = try contents(of: path)
        // A UTF-8 byte order mark, as some editors write: JSON readers may ignore it
        // (RFC 8259, section 8.1), and a configuration is better read than refused.
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes.removeFirst(3) }
        let document: JSONValue
        do {
            document = try JSONParser.parse(bytes)
        } catch {
            throw ConfigurationError("--config: '\(path)' is not valid JSON: \(error)")
        }
        guard case .object(let members) = document else {
            throw ConfigurationError("--config: '\(path)' is not a JSON object of flags")
        }
        var arguments: [String] = []
        for (key, value) in members.sorted(by: { $0.key < $1.key }) {
            let flag = "--" + key
            if switches.contains(flag) {
                guard case .bool(let on) = value else { throw ConfigurationError("--config: '\(key)' is a switch: give true or false") }
                if on { arguments.append(flag) }
            } else if valued.contains(flag) {
                let items: [JSONValue]
                if case .array(let list) = value { items = list } else { items = [value] }
                for item in items {
                    guard let text = scalar(item) else { throw ConfigurationError("--config: '\(key)' takes a string or a number (or a list of them)") }
                    arguments += [flag, text]
                }
            } else {
                throw ConfigurationError("--config: unknown key '\(key)' (no flag \(flag) here)")
            }
        }
        return arguments
    }

    /// A string as it is; a whole number without a fraction (`7000`, not `7000.0`).
    private static func scalar(_ value: JSONValue) -> String? {
        switch value {
        case .string(let text): text
        case .number(let number): number == number.rounded() && abs(number) < 1e15 ? String(Int64(number)) : String(number)
        default: nil
        }
    }

    private static func contents(of path: String) throws(ConfigurationError) -> [UInt8] {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw ConfigurationError("--config: cannot read '\(path)': \(String(cString: strerror(errno)))") }
        defer { close(descriptor) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw ConfigurationError("--config: cannot read '\(path)': \(String(cString: strerror(errno)))")
            }
            if count == 0 { return bytes }
            bytes += chunk[..<count]
            guard bytes.count <= maximumBytes else {
                throw ConfigurationError("--config: '\(path)' is larger than \(maximumBytes) bytes")
            }
        }
    }
}
