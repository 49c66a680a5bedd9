/// Writes big-endian fixed-width integers and byte ranges into a buffer, checking that
/// each write fits before touching memory. A write that does not fit throws
/// `WireError.overflow` and leaves the writer unchanged.
package struct WireWriter {
    private let bytes: UnsafeMutableRawBufferPointer
    /// Bytes written so far.
    package private(set) var offset = 0

    package init(_ bytes: UnsafeMutableRawBufferPointer) { self.bytes = bytes }

    package var remainingCount: Int { bytes.count - offset }

    @inline(__always)
    private func require(_ count: Int) throws(WireError) {
        guard count <= bytes.count - offset else {
            throw .overflow(offset: offset, needed: count, available: bytes.count - offset)
        }
    }

    /// Writes one big-endian integer.
    @inline(__always)
    package mutating func write<T: FixedWidthInteger>(_ value: T) throws(WireError) {
        let size = MemoryLayout<T>.size
        try require(size)
        bytes.storeBytes(of: value.bigEndian, toByteOffset: offset, as: T.self)
        offset += size
    }

    /// Copies `source` in.
    package mutating func write(bytes source: UnsafeRawBufferPointer) throws(WireError) {
        try require(source.count)
        if source.count > 0 {
            (bytes.baseAddress! + offset).copyMemory(from: source.baseAddress!, byteCount: source.count)
        }
        offset += source.count
    }

    /// Writes a 16-bit length and then the bytes; more than 65,535 bytes is malformed.
    package mutating func writeLengthPrefixed(bytes source: UnsafeRawBufferPointer) throws(WireError) {
        guard source.count <= Int(UInt16.max) else {
            throw .malformed(reason: "\(source.count) bytes exceed a 16-bit length", offset: offset)
        }
        try require(2 + source.count)
        try write(UInt16(source.count))
        try write(bytes: source)
    }

    /// Overwrites an integer written earlier at `position` (e.g. a length known only later).
    package mutating func patch<T: FixedWidthInteger>(_ value: T, at position: Int) throws(WireError) {
        let size = MemoryLayout<T>.size
        guard position >= 0, position <= offset - size else {
            throw .overflow(offset: position, needed: size, available: max(0, offset - position))
        }
        bytes.storeBytes(of: value.bigEndian, toByteOffset: position, as: T.self)
    }
}
