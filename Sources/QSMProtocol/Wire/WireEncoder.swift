/// Appends big-endian integers and byte ranges to a growing byte array. For control
/// messages (membership, configuration), where sizes vary and rates are low; the data
/// path writes into pool buffers with `WireWriter` instead.
package struct WireEncoder {
    package private(set) var bytes: [UInt8] = []

    package init(reservingCapacity capacity: Int = 64) { bytes.reserveCapacity(capacity) }

    package mutating func write<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) }
    }

    package mutating func write(bytes source: some Collection<UInt8>) { bytes.append(contentsOf: source) }

    /// Writes a 16-bit length and the UTF-8 of `text`; text over 65,535 bytes is a caller
    /// bug (names are validated long before they are encoded).
    package mutating func writeString(_ text: String) {
        let utf8 = Array(text.utf8)
        precondition(utf8.count <= Int(UInt16.max), "string too long for a 16-bit length")
        write(UInt16(utf8.count))
        bytes.append(contentsOf: utf8)
    }

    /// Overwrites a 32-bit value written earlier at `position` (a count known only later).
    package mutating func patch(_ value: UInt32, at position: Int) {
        precondition(position >= 0 && position + 4 <= bytes.count, "patch outside the encoded bytes")
        withUnsafeBytes(of: value.bigEndian) { raw in
            for index in 0..<4 { bytes[position + index] = raw[index] }
        }
    }
}
