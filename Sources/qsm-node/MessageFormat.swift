#if canImport(Glibc)
import Glibc
#endif
import FoundationEssentials
import QSMCore
import QSMHarness

/// How `publish` reads messages from standard input and `subscribe` writes them to
/// standard output (`--format`).
enum MessageFormat: String {
    /// One message per line of text (a payload containing a newline is cut there).
    case lines
    /// Each message as a 4-byte big-endian length and that many bytes: any payload.
    case lengthPrefixed = "length-prefixed"
    /// One JSON object per line. publish reads `{"payload": "text"}` or
    /// `{"payload_base64": "..."}`; subscribe writes `{"group": ..., "sender": ...,
    /// "sequence": ..., "payload_base64": ...}`.
    case json

    static let help = """
          --format F               lines (default): a message per line of text;
                                   length-prefixed: a 4-byte big-endian length, then the
                                   bytes (any payload); json: a JSON object per line
                                   (publish: {"payload": "text"} or {"payload_base64": ".."};
                                   subscribe: group, sender, sequence, payload_base64)
        """

    static func parse(_ flags: CommandLineFlags) throws(ConfigurationError) -> MessageFormat {
        let text = try flags.value("--format") ?? "lines"
        guard let format = MessageFormat(rawValue: text) else {
            throw ConfigurationError("--format must be lines, length-prefixed or json, got '\(text)'")
        }
        return format
    }
}

/// Reads messages from standard input in a `MessageFormat`.
struct MessageReader {
    let format: MessageFormat
    let maximumBytes: Int
    private(set) var count = 0

    init(format: MessageFormat, maximumBytes: Int) {
        self.format = format
        self.maximumBytes = maximumBytes
    }

    private struct JSONMessage: Decodable {
        var payload: String?
        var payload_base64: String?
    }

    /// The next message, nil at the end of input.
    /// - Throws: `ConfigurationError` for input that is not in the format (a truncated
    ///   frame, a frame over the size limit, a line that is not a message object).
    mutating func next() throws(ConfigurationError) -> [UInt8]? {
        switch format {
        case .lines:
            guard let line = readLine(strippingNewline: true) else { return nil }
            count += 1
            return Array(line.utf8)
        case .json:
            guard let line = readLine(strippingNewline: true) else { return nil }
            count += 1
            guard let message = try? JSONDecoder().decode(JSONMessage.self, from: Data(line.utf8)) else {
                throw ConfigurationError("input line \(count) is not a JSON object with \"payload\" or \"payload_base64\"")
            }
            if let text = message.payload { return Array(text.utf8) }
            guard let encoded = message.payload_base64, let bytes = Data(base64Encoded: encoded) else {
                throw ConfigurationError("input line \(count): no \"payload\", and \"payload_base64\" is missing or not base64")
            }
            return Array(bytes)
        case .lengthPrefixed:
            var header = [UInt8](repeating: 0, count: 4)
            let got = try readExactly(&header)
            if got == 0 { return nil }
            guard got == 4 else { throw ConfigurationError("input ends inside the length of message \(count + 1)") }
            let length = header.reduce(0) { $0 << 8 | Int($1) }
            guard length <= maximumBytes else {
                throw ConfigurationError("message \(count + 1) is \(length) bytes, over the maximum of \(maximumBytes)")
            }
            var payload = [UInt8](repeating: 0, count: length)
            guard try readExactly(&payload) == length else {
                throw ConfigurationError("input ends inside message \(count + 1) (\(length) bytes announced)")
            }
            count += 1
            return payload
        }
    }

    /// Fills `buffer` from standard input; the bytes read (fewer only at the end).
    private func readExactly(_ buffer: inout [UInt8]) throws(ConfigurationError) -> Int {
        var offset = 0
        while offset < buffer.count {
            let read = buffer.withUnsafeMutableBytes { Glibc.read(0, $0.baseAddress! + offset, $0.count - offset) }
            if read == 0 { break }
            if read < 0 {
                if errno == EINTR { continue }
                throw ConfigurationError("cannot read standard input: \(String(cString: strerror(errno)))")
            }
            offset += read
        }
        return offset
    }
}

/// Writes deliveries to standard output in a `MessageFormat`, through one reused buffer.
/// Unchecked Sendable: only the dispatcher thread calls it (from `onDelivery`).
final class MessageWriter: @unchecked Sendable {
    let format: MessageFormat
    private var buffer: [UInt8] = []

    init(format: MessageFormat) { self.format = format }

    func write(_ delivery: QSMDelivery) {
        buffer.removeAll(keepingCapacity: true)
        switch format {
        case .lines:
            delivery.withPayload { buffer.append(contentsOf: $0) }
            buffer.append(UInt8(ascii: "\n"))
        case .lengthPrefixed:
            let length = UInt32(delivery.payloadCount)
            buffer += [UInt8(length >> 24), UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF)]
            delivery.withPayload { buffer.append(contentsOf: $0) }
        case .json:
            let line = "{\"group\":\(jsonString(delivery.group.text)),\"sender\":\(delivery.sender.value),\"sequence\":\(delivery.sequence),"
                + "\"payload_base64\":\"\(Data(delivery.payload).base64EncodedString())\"}\n"
            buffer += line.utf8
        }
        buffer.withUnsafeBytes { bytes in
            var offset = 0
            while offset < bytes.count {
                let written = Glibc.write(1, bytes.baseAddress! + offset, bytes.count - offset)
                if written <= 0 { if errno == EINTR { continue }; return }
                offset += written
            }
        }
    }
}
