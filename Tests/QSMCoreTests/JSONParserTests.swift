#if canImport(Glibc)
import Glibc
#endif
@testable import QSMHarness
import QSMProtocol
import Testing

/// `JSONParser`, the configuration files' reader: RFC 8259 examples, every refusal with
/// its offset, and a randomized round trip against a writer of the same values.
@Suite struct JSONParserTests {
    private func parse(_ text: String) throws(JSONParser.Failure) -> JSONValue { try JSONParser.parse(Array(text.utf8)) }

    @Test func readsEveryKindOfValue() throws {
        let value = try parse(#" {"a": "x", "n": -12.5e2, "z": 0, "t": true, "f": false, "none": null, "list": [1, "two", [], {}]} "#)
        #expect(value == .object([("a", .string("x")), ("n", .number(-1250)), ("z", .number(0)), ("t", .bool(true)),
                                   ("f", .bool(false)), ("none", .null),
                                   ("list", .array([.number(1), .string("two"), .array([]), .object([])]))]))
    }

    @Test func decodesEscapesAndSurrogatePairs() throws {
        let value = try parse(#""q\"b\\s\/ \b\f\n\r\t \u00e9 \u20AC \ud83d\ude00 é""#)
        #expect(value == .string("q\"b\\s/ \u{08}\u{0C}\n\r\t é € 😀 é"))
    }

    @Test func refusesWhatIsNotStrictJSON() {
        let refused: [(String, Int)] = [
            ("", 0), ("{", 1), (#"{"a" 1}"#, 5), (#"{"a": 1,}"#, 8), ("[1,]", 3), ("[1 2]", 3), ("01", 0), ("-", 1),
            ("1.", 2), ("1e", 2), ("+1", 0), ("tru", 0), ("nul", 0), (#""abc"#, 4), ("\"a\u{01}b\"", 2),
            (#""\x""#, 1), (#""\u12G4""#, 5), (#""\ud800""#, 1), (#""\udc00 x""#, 1), (#"{"a": 1, "a": 2}"#, 9),
            ("{} {}", 3), ("1e999", 0), ("// comment\n{}", 0), ("{'a': 1}", 1), ("NaN", 0),
        ]
        for (text, offset) in refused {
            #expect(throws: JSONParser.Failure.self, "\(text)") { try parse(text) }
            do { _ = try parse(text) } catch { #expect(error.offset == offset, "\(text): \(error)") }
        }
        // Invalid UTF-8 inside a string.
        #expect(throws: JSONParser.Failure.self) { try JSONParser.parse([0x22, 0xC3, 0x28, 0x22]) }
    }

    /// A configuration file becomes flags: switches, valued flags (lists repeat them),
    /// whole numbers without a fraction; a byte order mark is skipped; an unknown key, a
    /// mistyped value, invalid JSON and a missing file are refused with the reason.
    @Test func aConfigurationFileBecomesFlags() throws {
        let path = "/tmp/qsm-config-test-\(getpid()).json"
        defer { unlink(path) }
        func write(_ bytes: [UInt8]) {
            let file = fopen(path, "w")!
            _ = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, file) }
            fclose(file)
        }
        func arguments() throws(ConfigurationError) -> [String] {
            try ConfigurationFile.arguments(from: path, valued: ["--gms", "--group", "--rate"], switches: ["--insecure", "--quiet"])
        }
        write([0xEF, 0xBB, 0xBF] + Array(#"{"gms": "10.0.0.1:7000", "group": ["a", "b"], "rate": 1e3, "insecure": true, "quiet": false}"#.utf8))
        #expect(try arguments() == ["--gms", "10.0.0.1:7000", "--group", "a", "--group", "b", "--insecure", "--rate", "1000"])
        for (text, reason) in [(#"{"colour": "blue"}"#, "unknown key 'colour'"), (#"{"insecure": "yes"}"#, "is a switch"),
                               (#"{"rate": [[1]]}"#, "takes a string or a number"), (#"{"gms": "#, "not valid JSON"),
                               ("[1]", "not a JSON object"), (#"{"gms": "a", "gms": "b"}"#, "given twice")] {
            write(Array(text.utf8))
            #expect(throws: ConfigurationError.self) { try arguments() }
            do { _ = try arguments() } catch { #expect(error.message.contains(reason), "\(text): \(error)") }
        }
        unlink(path)
        #expect(throws: ConfigurationError.self) { try arguments() }
        do { _ = try arguments() } catch { #expect(error.message.contains("No such file"), "\(error)") }
    }

    @Test func nestingIsBounded() throws {
        let deep = String(repeating: "[", count: JSONParser.maximumDepth) + String(repeating: "]", count: JSONParser.maximumDepth)
        #expect(throws: Never.self) { try parse(deep) }
        let tooDeep = String(repeating: "[", count: 100_000)
        #expect(throws: JSONParser.Failure.self) { try parse(tooDeep) }
    }

    /// Random values, written with random whitespace and escapes, read back equal.
    @Test(arguments: 0..<40) func randomValuesRoundTrip(seed: UInt64) throws {
        var random = SplitMix64(seed: seed)
        for _ in 0..<20 {
            let value = randomValue(&random, depth: 0)
            var text = ""
            write(value, to: &text, &random)
            #expect(try parse(text) == value, "seed \(seed): \(text)")
        }
    }

    private func randomValue(_ random: inout SplitMix64, depth: Int) -> JSONValue {
        switch random.next() % (depth > 3 ? 4 : 6) {
        case 0: return .string(randomString(&random))
        case 1: return .number(Double(Int64(random.next() % 2_000_001) - 1_000_000) / [1, 10, 1000][Int(random.next() % 3)])
        case 2: return .bool(random.next() % 2 == 0)
        case 3: return .null
        case 4: return .array((0..<random.next() % 4).map { _ in randomValue(&random, depth: depth + 1) })
        default:
            var keys = Set<String>()
            var members: [(key: String, value: JSONValue)] = []
            for _ in 0..<random.next() % 4 {
                let key = randomString(&random)
                if keys.insert(key).inserted { members.append((key, randomValue(&random, depth: depth + 1))) }
            }
            return .object(members)
        }
    }

    private func randomString(_ random: inout SplitMix64) -> String {
        let alphabet: [Unicode.Scalar] = ["a", "Z", "0", " ", "\"", "\\", "/", "\n", "\t", "\u{01}", "é", "€", "😀", "\u{FFFF}"]
        var text = ""
        for _ in 0..<random.next() % 8 { text.unicodeScalars.append(alphabet[Int(random.next() % UInt64(alphabet.count))]) }
        return text
    }

    private func write(_ value: JSONValue, to text: inout String, _ random: inout SplitMix64) {
        let space = [" ", "", "\n", "\t ", "\r\n"][Int(random.next() % 5)]
        text += space
        switch value {
        case .string(let string):
            text += "\""
            for scalar in string.unicodeScalars {
                switch scalar {
                case "\"": text += "\\\""
                case "\\": text += random.next() % 2 == 0 ? "\\\\" : "\\u005C"
                case "/": text += random.next() % 2 == 0 ? "/" : "\\/"
                case "\n": text += "\\n"
                case "\t": text += "\\t"
                case _ where scalar.value < 0x20 || random.next() % 4 == 0:
                    for unit in String(scalar).utf16 {
                        let hex = String(unit, radix: 16)
                        text += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                    }
                default: text.unicodeScalars.append(scalar)
                }
            }
            text += "\""
        case .number(let number): text += "\(number)"
        case .bool(let flag): text += flag ? "true" : "false"
        case .null: text += "null"
        case .array(let elements):
            text += "["
            for (index, element) in elements.enumerated() {
                if index > 0 { text += "," }
                write(element, to: &text, &random)
            }
            text += space + "]"
        case .object(let members):
            text += "{"
            for (index, member) in members.enumerated() {
                if index > 0 { text += "," }
                write(.string(member.key), to: &text, &random)
                text += space + ":"
                write(member.value, to: &text, &random)
            }
            text += space + "}"
        }
        text += space
    }
}
