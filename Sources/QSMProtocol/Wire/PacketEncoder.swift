/// Writes big-endian integers and byte ranges straight into a buffer the caller checked
/// is large enough (a packet's `encodedByteCount` is known before it is written), so a
/// datagram is built in place in the buffer the socket sends from: no array, no growth,
/// no copy. Writing past the end is a caller bug and traps.
struct PacketEncoder {
    private let base: UnsafeMutableRawPointer
    private let capacity: Int
    private(set) var offset = 0

    init(_ buffer: UnsafeMutableRawBufferPointer) {
        base = buffer.baseAddress!
        capacity = buffer.count
    }

    @inline(__always)
    mutating func write<T: FixedWidthInteger>(_ value: T) {
        let size = MemoryLayout<T>.size
        precondition(offset + size <= capacity, "packet encoder past its buffer")
        base.storeBytes(of: value.bigEndian, toByteOffset: offset, as: T.self)
        offset += size
    }

    @inline(__always)
    mutating func write(bytes source: ArraySlice<UInt8>) {
        precondition(offset + source.count <= capacity, "packet encoder past its buffer")
        source.withUnsafeBytes { raw in
            if raw.count > 0 { (base + offset).copyMemory(from: raw.baseAddress!, byteCount: raw.count) }
        }
        offset += source.count
    }
}
