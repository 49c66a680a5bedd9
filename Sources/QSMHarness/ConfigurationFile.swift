import FoundationEssentials
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
    private enum Value: Decodable {
        case text(String)
        case number(Double)
        case flag(Bool)
        case list([Value])

        init(from decoder: any Decoder) throws {
            let container = try decoder.singleValueContainer()
            if let flag = try? container.decode(Bool.self) { self = .flag(flag) }
            else if let number = try? container.decode(Double.self) { self = .number(number) }
            else if let text = try? container.decode(String.self) { self = .text(text) }
            else { self = .list(try container.decode([Value].self)) }
        }

        var scalar: String? {
            switch self {
            case .text(let text): text
            case .number(let number): number == number.rounded() && abs(number) < 1e15 ? String(Int64(number)) : String(number)
            case .flag, .list: nil
            }
        }
    }

    /// The file's settings as command-line arguments (`--key value`, `--switch`).
    static func arguments(from path: String, valued: Set<String>, switches: Set<String>) throws(ConfigurationError) -> [String] {
        let data: Data
        do {
            data = try Data(contentsOf: URL(filePath: path))
        } catch {
            throw ConfigurationError("--config: cannot read '\(path)': \(error)")
        }
        let object: [String: Value]
        do {
            object = try JSONDecoder().decode([String: Value].self, from: data)
        } catch {
            throw ConfigurationError("--config: '\(path)' is not a JSON object of flags: \(error)")
        }
        var arguments: [String] = []
        for (key, value) in object.sorted(by: { $0.key < $1.key }) {
            let flag = "--" + key
            if switches.contains(flag) {
                guard case .flag(let on) = value else { throw ConfigurationError("--config: '\(key)' is a switch: give true or false") }
                if on { arguments.append(flag) }
            } else if valued.contains(flag) {
                let items: [Value]
                if case .list(let list) = value { items = list } else { items = [value] }
                for item in items {
                    guard let text = item.scalar else { throw ConfigurationError("--config: '\(key)' takes a string or a number (or a list of them)") }
                    arguments += [flag, text]
                }
            } else {
                throw ConfigurationError("--config: unknown key '\(key)' (no flag \(flag) here)")
            }
        }
        return arguments
    }
}
