/// Base64 (RFC 4648, section 4: the standard alphabet, with padding), for the JSON
/// message format of `qsm-node publish` and `subscribe`, without Foundation.
///
/// Decoding is strict, so that one text stands for one payload: the length is a multiple
/// of 4, `=` appears only as the last one or two characters, the bits the padding leaves
/// over are zero, and nothing else (no whitespace, no URL-safe alphabet) is accepted.
package enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    /// Each byte's value in the alphabet, or 0xFF for a byte outside it.
    private static let values: [UInt8] = {
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (value, character) in alphabet.enumerated() { table[Int(character)] = UInt8(value) }
        return table
    }()

    /// Appends the encoding of `bytes` to `output` (which keeps its capacity between calls).
    package static func encode(_ bytes: UnsafeRawBufferPointer, appendingTo output: inout [UInt8]) {
        output.reserveCapacity(output.count + (bytes.count + 2) / 3 * 4)
        var index = 0
        while index + 3 <= bytes.count {
            let triple = UInt32(bytes[index]) << 16 | UInt32(bytes[index + 1]) << 8 | UInt32(bytes[index + 2])
            output.append(alphabet[Int(triple >> 18)])
            output.append(alphabet[Int(triple >> 12 & 63)])
            output.append(alphabet[Int(triple >> 6 & 63)])
            output.append(alphabet[Int(triple & 63)])
            index += 3
        }
        switch bytes.count - index {
        case 1:
            let value = UInt32(bytes[index]) << 16
            output.append(alphabet[Int(value >> 18)])
            output.append(alphabet[Int(value >> 12 & 63)])
            output.append(UInt8(ascii: "="))
            output.append(UInt8(ascii: "="))
        case 2:
            let value = UInt32(bytes[index]) << 16 | UInt32(bytes[index + 1]) << 8
            output.append(alphabet[Int(value >> 18)])
            output.append(alphabet[Int(value >> 12 & 63)])
            output.append(alphabet[Int(value >> 6 & 63)])
            output.append(UInt8(ascii: "="))
        default:
            break
        }
    }

    /// The encoding of `bytes`, as text.
    package static func encoded(_ bytes: [UInt8]) -> String {
        var output: [UInt8] = []
        bytes.withUnsafeBytes { encode($0, appendingTo: &output) }
        return String(decoding: output, as: UTF8.self)
    }

    /// The bytes `text` encodes, or nil if it is not strict, padded base64.
    package static func decode(_ text: some Collection<UInt8>) -> [UInt8]? {
        let characters = Array(text)
        guard characters.count % 4 == 0 else { return nil }
        var padding = 0
        if characters.last == UInt8(ascii: "=") { padding = characters.dropLast().last == UInt8(ascii: "=") ? 2 : 1 }
        var output: [UInt8] = []
        output.reserveCapacity(characters.count / 4 * 3)
        var index = 0
        while index < characters.count {
            let last = index + 4 == characters.count
            var group: UInt32 = 0
            for offset in 0..<4 {
                let character = characters[index + offset]
                if last, offset >= 4 - padding {
                    group <<= 6
                    continue
                }
                let value = values[Int(character)]
                guard value != 0xFF else { return nil }
                group = group << 6 | UInt32(value)
            }
            output.append(UInt8(group >> 16))
            if !last || padding < 2 { output.append(UInt8(group >> 8 & 0xFF)) }
            if !last || padding < 1 { output.append(UInt8(group & 0xFF)) }
            if last {
                // The bits under the padding must be zero: "Zh==" is not another "Zg==".
                let spare: UInt32 = padding == 2 ? group & 0xFFFF : padding == 1 ? group & 0xFF : 0
                guard spare == 0 else { return nil }
            }
            index += 4
        }
        return output
    }
}
