/// A JSON value (RFC 8259), as `JSONParser` reads it.
package enum JSONValue: Equatable {
    case string(String)
    case number(Double)
    case bool(Bool)
    case null
    case array([JSONValue])
    /// Members in the order written (keys are unique: the parser refuses repeats).
    case object([(key: String, value: JSONValue)])

    package static func == (lhs: JSONValue, rhs: JSONValue) -> Bool {
        switch (lhs, rhs) {
        case (.string(let a), .string(let b)): a == b
        case (.number(let a), .number(let b)): a == b
        case (.bool(let a), .bool(let b)): a == b
        case (.null, .null): true
        case (.array(let a), .array(let b)): a == b
        case (.object(let a), .object(let b)): a.count == b.count && zip(a, b).allSatisfy { $0.key == $1.key && $0.value == $1.value }
        default: false
        }
    }
}

/// A strict JSON parser for configuration files, so that the executables need no
/// Foundation: linking it cost every `qsm-bench` and `qsm-node` process about 2 MB of
/// resident memory (issue 15, the sender's RSS), for this one use.
///
/// Strict: one value and nothing after it but whitespace; no comments, trailing commas,
/// leading zeros, lone surrogates, raw control characters or invalid UTF-8; no repeated
/// keys in an object; nesting at most `maximumDepth` deep. Errors name the byte offset.
package struct JSONParser {
    /// How deep arrays and objects may nest (a hostile file cannot exhaust the stack).
    package static let maximumDepth = 64

    package struct Failure: Error, CustomStringConvertible {
        package let reason: String
        package let offset: Int
        package var description: String { "\(reason) at byte \(offset)" }
    }

    private let bytes: [UInt8]
    private var offset = 0
    private var depth = 0

    private init(_ bytes: [UInt8]) { self.bytes = bytes }

    /// The one value `bytes` holds.
    package static func parse(_ bytes: [UInt8]) throws(Failure) -> JSONValue {
        var parser = JSONParser(bytes)
        let value = try parser.value()
        parser.skipWhitespace()
        guard parser.offset == bytes.count else { throw parser.failure("unexpected text after the value") }
        return value
    }

    private func failure(_ reason: String) -> Failure { Failure(reason: reason, offset: offset) }

    private var next: UInt8? { offset < bytes.count ? bytes[offset] : nil }

    private mutating func skipWhitespace() {
        while let byte = next, byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D { offset += 1 }
    }

    private mutating func expect(_ byte: UInt8, _ what: String) throws(Failure) {
        guard next == byte else { throw failure(next == nil ? "unexpected end, expected \(what)" : "expected \(what)") }
        offset += 1
    }

    private mutating func value() throws(Failure) -> JSONValue {
        skipWhitespace()
        guard let byte = next else { throw failure("unexpected end, expected a value") }
        switch byte {
        case UInt8(ascii: "{"): return try object()
        case UInt8(ascii: "["): return try array()
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try number())
        default: throw failure("unexpected character")
        }
    }

    private mutating func nested<T>(_ body: (inout JSONParser) throws(Failure) -> T) throws(Failure) -> T {
        depth += 1
        guard depth <= Self.maximumDepth else { throw failure("nested more than \(Self.maximumDepth) deep") }
        defer { depth -= 1 }
        return try body(&self)
    }

    private mutating func object() throws(Failure) -> JSONValue {
        try nested { (parser: inout JSONParser) throws(Failure) -> JSONValue in
            parser.offset += 1
            var members: [(key: String, value: JSONValue)] = []
            var keys = Set<String>()
            parser.skipWhitespace()
            if parser.next == UInt8(ascii: "}") { parser.offset += 1; return .object(members) }
            while true {
                parser.skipWhitespace()
                let keyOffset = parser.offset
                guard parser.next == UInt8(ascii: "\"") else { throw parser.failure("expected a key in quotes") }
                let key = try parser.string()
                guard keys.insert(key).inserted else { throw Failure(reason: "key '\(key)' given twice", offset: keyOffset) }
                parser.skipWhitespace()
                try parser.expect(UInt8(ascii: ":"), "':'")
                members.append((key, try parser.value()))
                parser.skipWhitespace()
                if parser.next == UInt8(ascii: ",") { parser.offset += 1; continue }
                try parser.expect(UInt8(ascii: "}"), "',' or '}'")
                return .object(members)
            }
        }
    }

    private mutating func array() throws(Failure) -> JSONValue {
        try nested { (parser: inout JSONParser) throws(Failure) -> JSONValue in
            parser.offset += 1
            var elements: [JSONValue] = []
            parser.skipWhitespace()
            if parser.next == UInt8(ascii: "]") { parser.offset += 1; return .array(elements) }
            while true {
                elements.append(try parser.value())
                parser.skipWhitespace()
                if parser.next == UInt8(ascii: ",") { parser.offset += 1; continue }
                try parser.expect(UInt8(ascii: "]"), "',' or ']'")
                return .array(elements)
            }
        }
    }

    private mutating func literal(_ word: StaticString) throws(Failure) {
        let count = word.utf8CodeUnitCount
        let matches = offset + count <= bytes.count && (0..<count).allSatisfy { bytes[offset + $0] == word.utf8Start[$0] }
        guard matches else { throw failure("unexpected character") }
        offset += count
    }

    private mutating func number() throws(Failure) -> Double {
        let start = offset
        func digits(_ parser: inout JSONParser) -> Int {
            let first = parser.offset
            while let byte = parser.next, byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") { parser.offset += 1 }
            return parser.offset - first
        }
        if next == UInt8(ascii: "-") { offset += 1 }
        let integerStart = offset
        let integerDigits = digits(&self)
        guard integerDigits > 0 else { throw failure("expected a digit") }
        if integerDigits > 1, bytes[integerStart] == UInt8(ascii: "0") {
            throw Failure(reason: "a number with a leading zero", offset: integerStart)
        }
        if next == UInt8(ascii: ".") {
            offset += 1
            guard digits(&self) > 0 else { throw failure("expected a digit after '.'") }
        }
        if next == UInt8(ascii: "e") || next == UInt8(ascii: "E") {
            offset += 1
            if next == UInt8(ascii: "+") || next == UInt8(ascii: "-") { offset += 1 }
            guard digits(&self) > 0 else { throw failure("expected a digit in the exponent") }
        }
        let text = String(decoding: bytes[start..<offset], as: UTF8.self)
        guard let number = Double(text), number.isFinite else { throw Failure(reason: "number \(text) out of range", offset: start) }
        return number
    }

    private mutating func string() throws(Failure) -> String {
        offset += 1
        var utf8: [UInt8] = []
        while true {
            guard let byte = next else { throw failure("unexpected end in a string") }
            switch byte {
            case UInt8(ascii: "\""):
                offset += 1
                guard let text = String(validating: utf8, as: UTF8.self) else { throw failure("a string that is not UTF-8") }
                return text
            case UInt8(ascii: "\\"):
                offset += 1
                guard let escaped = next else { throw failure("unexpected end in a string") }
                offset += 1
                switch escaped {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): utf8.append(escaped)
                case UInt8(ascii: "b"): utf8.append(0x08)
                case UInt8(ascii: "f"): utf8.append(0x0C)
                case UInt8(ascii: "n"): utf8.append(0x0A)
                case UInt8(ascii: "r"): utf8.append(0x0D)
                case UInt8(ascii: "t"): utf8.append(0x09)
                case UInt8(ascii: "u"): utf8.append(contentsOf: try unicodeEscape())
                default: throw Failure(reason: "unknown escape", offset: offset - 2)
                }
            case 0x00..<0x20:
                throw failure("a control character in a string (escape it)")
            default:
                utf8.append(byte)
                offset += 1
            }
        }
    }

    /// After `\u`: four hex digits, and a second `\uXXXX` for a surrogate pair.
    private mutating func unicodeEscape() throws(Failure) -> [UInt8] {
        let start = offset - 2
        var scalar = try hexQuad()
        if (0xD800..<0xDC00).contains(scalar) {
            guard next == UInt8(ascii: "\\"), offset + 1 < bytes.count, bytes[offset + 1] == UInt8(ascii: "u") else {
                throw Failure(reason: "a lone surrogate", offset: start)
            }
            offset += 2
            let low = try hexQuad()
            guard (0xDC00..<0xE000).contains(low) else { throw Failure(reason: "a lone surrogate", offset: start) }
            scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
        } else if (0xDC00..<0xE000).contains(scalar) {
            throw Failure(reason: "a lone surrogate", offset: start)
        }
        return Array(String(Character(Unicode.Scalar(scalar)!)).utf8)
    }

    private mutating func hexQuad() throws(Failure) -> UInt32 {
        var value: UInt32 = 0
        for _ in 0..<4 {
            guard let byte = next else { throw failure("unexpected end in a \\u escape") }
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: throw failure("expected a hex digit in a \\u escape")
            }
            value = value << 4 | UInt32(digit)
            offset += 1
        }
        return value
    }
}
