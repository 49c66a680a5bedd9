/// Reads big-endian fixed-width integers and byte ranges from a buffer, checking bounds
/// before every access.
///
/// Any input (short, random, hostile) yields values or a `WireError`; the reader never
/// traps and never reads outside its buffer. It borrows the buffer: it must not outlive it.
package struct WireReader {
    private let bytes: UnsafeRawBufferPointer
    /// Bytes consumed so far.
    package private(set) var offset = 0

    package init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    /// Bytes not yet consumed.
    package var remainingCount: Int { bytes.count - offset }
    package var isAtEnd: Bool { offset == bytes.count }

    @inline(__always)
    private func require(_ count: Int) throws(WireError) {
        guard count >= 0 else {
            throw .malformed(reason: "negative length \(count)", offset: offset)
        }
        guard count <= bytes.count - offset else {
            throw .truncated(offset: offset, needed: count, available: bytes.count - offset)
        }
    }

    /// Reads one big-endian integer of type `T`.
    @inline(__always)
    package mutating func read<T: FixedWidthInteger>(_: T.Type = T.self) throws(WireError) -> T {
        let size = MemoryLayout<T>.size
        try require(size)
        let value = bytes.loadUnaligned(fromByteOffset: offset, as: T.self)
        offset += size
        return T(bigEndian: value)
    }

    @inline(__always)
    package mutating func readUInt8() throws(WireError) -> UInt8 { try read() }
    @inline(__always)
    package mutating func readUInt16() throws(WireError) -> UInt16 { try read() }
    @inline(__always)
    package mutating func readUInt32() throws(WireError) -> UInt32 { try read() }
    @inline(__always)
    package mutating func readUInt64() throws(WireError) -> UInt64 { try read() }
    @inline(__always)
    package mutating func readInt64() throws(WireError) -> Int64 { try read() }

    /// Reads `count` bytes as a view into the same buffer (no copy).
    package mutating func readBytes(count: Int) throws(WireError) -> UnsafeRawBufferPointer {
        try require(count)
        let slice = UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + count)])
        offset += count
        return slice
    }

    /// Reads a 16-bit length and then that many bytes.
    package mutating func readLengthPrefixedBytes() throws(WireError) -> UnsafeRawBufferPointer {
        let start = offset
        let length = Int(try readUInt16())
        do {
            return try readBytes(count: length)
        } catch {
            offset = start
            throw error
        }
    }

    /// Skips `count` bytes.
    package mutating func skip(_ count: Int) throws(WireError) {
        try require(count)
        offset += count
    }

    /// Throws unless every byte has been consumed (trailing garbage is malformed input).
    package func expectEnd() throws(WireError) {
        guard isAtEnd else {
            throw .malformed(reason: "\(remainingCount) unexpected trailing bytes", offset: offset)
        }
    }
}
