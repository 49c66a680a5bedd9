#if canImport(Glibc)
import Glibc
#endif
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

/// Reads messages from standard input in a `MessageFormat`. `lines` and
/// `length-prefixed` read through one buffer, allocated once, and hand each message over
/// in place: publishing from standard input allocates nothing per message. `json` parses
/// each line (`JSONParser`, `Base64`; it allocates).
final class MessageReader {
    let format: MessageFormat
    let maximumBytes: Int
    /// The longest line read: a message's bytes for `lines`; for `json`, room for any
    /// message's encoding (base64 is 4/3 of it, a `\u00XX` escape 6 bytes for one).
    private let maximumLineBytes: Int
    private(set) var count = 0
    private let buffer: UnsafeMutableRawBufferPointer
    /// The unread bytes are `buffer[start..<end]`.
    private var start = 0
    private var end = 0
    private var inputEnded = false
    /// Where a JSON line's payload is decoded to (json only).
    private let decoded: UnsafeMutableRawBufferPointer

    init(format: MessageFormat, maximumBytes: Int) {
        self.format = format
        self.maximumBytes = maximumBytes
        // Room for the largest message, its length or newline, and a read's worth more.
        maximumLineBytes = format == .json ? maximumBytes * 6 + 4_096 : maximumBytes
        buffer = .allocate(byteCount: maximumLineBytes + 4 + (64 << 10), alignment: 16)
        decoded = .allocate(byteCount: format == .json ? maximumBytes : 0, alignment: 16)
    }

    deinit {
        buffer.deallocate()
        decoded.deallocate()
    }

    /// The next message, valid until the next call; nil at the end of input.
    /// - Throws: `ConfigurationError` for input that is not in the format (a truncated
    ///   frame, a message over the size limit, a line that is not a message object).
    func next() throws(ConfigurationError) -> UnsafeRawBufferPointer? {
        switch format {
        case .lines:
            guard let line = try nextLine() else { return nil }
            count += 1
            return line
        case .json:
            guard let line = try nextLine() else { return nil }
            count += 1
            let payload = try jsonPayload(Array(line))
            guard payload.count <= maximumBytes else {
                throw ConfigurationError("input line \(count) holds \(payload.count) bytes, over the maximum message of \(maximumBytes)")
            }
            payload.withUnsafeBytes { if $0.count > 0 { decoded.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: $0.count) } }
            return UnsafeRawBufferPointer(rebasing: decoded[0..<payload.count])
        case .lengthPrefixed:
            guard try fill(4) else {
                if end > start { throw ConfigurationError("input ends inside the length of message \(count + 1)") }
                return nil
            }
            let length = Int(UInt32(bigEndian: UnsafeRawBufferPointer(buffer).loadUnaligned(fromByteOffset: start, as: UInt32.self)))
            guard length <= maximumBytes else {
                throw ConfigurationError("message \(count + 1) is \(length) bytes, over the maximum of \(maximumBytes)")
            }
            guard try fill(4 + length) else {
                throw ConfigurationError("input ends inside message \(count + 1) (\(length) bytes announced)")
            }
            let message = UnsafeRawBufferPointer(rebasing: buffer[(start + 4)..<(start + 4 + length)])
            start += 4 + length
            count += 1
            return message
        }
    }

    /// The payload of one JSON input line: an object whose `payload` is text (sent as its
    /// UTF-8 bytes) or, without one, whose `payload_base64` is strict, padded base64.
    /// Other members are ignored; a `null` member counts as absent.
    private func jsonPayload(_ line: [UInt8]) throws(ConfigurationError) -> [UInt8] {
        let value: JSONValue
        do {
            value = try JSONParser.parse(line)
        } catch {
            throw ConfigurationError("input line \(count) is not a JSON object with \"payload\" or \"payload_base64\" (\(error))")
        }
        guard case .object(let members) = value else {
            throw ConfigurationError("input line \(count) is not a JSON object with \"payload\" or \"payload_base64\"")
        }
        func member(_ key: String) -> JSONValue? {
            guard let value = members.first(where: { $0.key == key })?.value, value != .null else { return nil }
            return value
        }
        if let text = member("payload") {
            guard case .string(let string) = text else {
                throw ConfigurationError("input line \(count) is not a JSON object with \"payload\" or \"payload_base64\" (\"payload\" is not a string)")
            }
            return Array(string.utf8)
        }
        guard case .string(let encoded)? = member("payload_base64"), let bytes = Base64.decode(encoded.utf8) else {
            throw ConfigurationError("input line \(count): no \"payload\", and \"payload_base64\" is missing or not base64")
        }
        return bytes
    }

    /// The next line without its newline (or carriage return and newline); the last line
    /// needs no newline.
    private func nextLine() throws(ConfigurationError) -> UnsafeRawBufferPointer? {
        var searched = start
        while true {
            if let newline = memchr(buffer.baseAddress! + searched, Int32(UInt8(ascii: "\n")), end - searched) {
                let at = newline - buffer.baseAddress!
                var lineEnd = at
                if lineEnd > start, buffer[lineEnd - 1] == UInt8(ascii: "\r") { lineEnd -= 1 }
                let line = UnsafeRawBufferPointer(rebasing: buffer[start..<lineEnd])
                start = at + 1
                return try checked(line)
            }
            searched = end
            let before = end - start
            guard try fill(before + 1) else {
                guard end > start else { return nil }
                let line = UnsafeRawBufferPointer(rebasing: buffer[start..<end])
                start = end
                return try checked(line)
            }
            searched = start + before
        }
    }

    private func checked(_ line: UnsafeRawBufferPointer) throws(ConfigurationError) -> UnsafeRawBufferPointer {
        guard line.count <= maximumLineBytes else { throw lineTooLong(count + 1) }
        return line
    }

    private func lineTooLong(_ number: Int) -> ConfigurationError {
        format == .json
            ? ConfigurationError("input line \(number) is over \(maximumLineBytes) bytes, longer than any message of at most \(maximumBytes) bytes can be written in JSON")
            : ConfigurationError("input line \(number) is over the maximum message of \(maximumBytes) bytes")
    }

    /// Reads until at least `wanted` unread bytes are buffered (moving them to the front
    /// first if they would not fit); false if the input ended (or the line outgrew the
    /// buffer) first.
    private func fill(_ wanted: Int) throws(ConfigurationError) -> Bool {
        while end - start < wanted {
            if inputEnded { return false }
            // Reads of 64 KB (or what is missing), and unread bytes moved to the front once
            // 64 KB are consumed: only the longest line and a read's worth of the buffer
            // are ever touched, though it is sized for the longest JSON line.
            if start > 0, buffer.count - start < wanted || start >= 64 << 10 {
                let unread = end - start
                if unread > 0 { buffer.baseAddress!.copyMemory(from: buffer.baseAddress! + start, byteCount: unread) }
                start = 0
                end = unread
            }
            guard end < buffer.count else {
                throw lineTooLong(count + 1)
            }
            let read = Glibc.read(0, buffer.baseAddress! + end, min(buffer.count - end, max(64 << 10, wanted - (end - start))))
            if read == 0 { inputEnded = true; continue }
            if read < 0 {
                if errno == EINTR { continue }
                throw ConfigurationError("cannot read standard input: \(String(cString: strerror(errno)))")
            }
            end += read
        }
        return true
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
            buffer += "{\"group\":\(jsonString(delivery.group.text)),\"sender\":\(delivery.sender.value),\"sequence\":\(delivery.sequence),\"payload_base64\":\"".utf8
            delivery.withPayload { Base64.encode($0, appendingTo: &buffer) }
            buffer += "\"}\n".utf8
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
