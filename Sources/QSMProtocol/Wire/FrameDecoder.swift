/// Splits a byte stream into frames of a 32-bit big-endian length followed by that many
/// bytes. A frame longer than `maximumFrameBytes` is a protocol error: the stream cannot
/// be trusted past it, so the decoder stops and the caller closes the connection.
package struct FrameDecoder {
    package enum Failure: Error, Equatable, Sendable {
        /// A frame announced `length` bytes, more than the limit.
        case frameTooLarge(length: Int, limit: Int)
    }

    package let maximumFrameBytes: Int
    private var buffer: [UInt8] = []
    private var start = 0

    package init(maximumFrameBytes: Int) {
        self.maximumFrameBytes = maximumFrameBytes
    }

    /// Bytes received but not yet returned as frames.
    package var bufferedByteCount: Int { buffer.count - start }

    /// Adds bytes read from the stream.
    package mutating func append(_ bytes: UnsafeRawBufferPointer) {
        buffer.append(contentsOf: bytes)
        // Once a frame's length is known, room for all of it is made at once: grown by
        // doubling, a frame of 2 MB (8,192 group views) went through every smaller buffer
        // and ended in one of 4 MB (issue 15, a node's peak memory). Bounded by
        // `maximumFrameBytes`, and its pages are touched only as the bytes arrive.
        if let length = announcedLength, length <= maximumFrameBytes, start + 4 + length > buffer.capacity {
            buffer.reserveCapacity(start + 4 + length)
        }
    }

    /// The length the next frame's 4-byte big-endian prefix announces, once it is here.
    private var announcedLength: Int? {
        guard buffer.count - start >= 4 else { return nil }
        return Int(buffer[start]) << 24 | Int(buffer[start + 1]) << 16 | Int(buffer[start + 2]) << 8 | Int(buffer[start + 3])
    }

    /// The next complete frame's payload, nil if more bytes are needed.
    package mutating func nextFrame() throws(Failure) -> [UInt8]? {
        guard let length = announcedLength else { compact(); return nil }
        guard length <= maximumFrameBytes else { throw .frameTooLarge(length: length, limit: maximumFrameBytes) }
        guard buffer.count - start - 4 >= length else { compact(); return nil }
        let frame = Array(buffer[(start + 4)..<(start + 4 + length)])
        start += 4 + length
        if start == buffer.count { releaseIfDrained() }
        return frame
    }

    /// The most a drained buffer keeps for the next frames: more than any heartbeat or
    /// small update needs. A buffer grown for one large frame (a full membership update of
    /// 8,192 group views is about 1 MB) is let go once that frame is out, instead of staying
    /// resident for the life of the connection (issue 15, the sender's RSS).
    package static let keptCapacity = 64 * 1024

    /// The bytes the decoder holds on to (its buffer's capacity).
    package var retainedCapacity: Int { buffer.capacity }

    /// Everything was returned: starts over, with a small buffer if it had grown large.
    private mutating func releaseIfDrained() {
        if buffer.capacity > Self.keptCapacity {
            buffer = []
        } else {
            buffer.removeAll(keepingCapacity: true)
        }
        start = 0
    }

    /// Moves the unread tail to the front once the consumed part dominates, so the
    /// buffer's size stays bounded by one frame plus one read.
    private mutating func compact() {
        if start > 0 && start >= buffer.count / 2 {
            buffer.removeFirst(start)
            start = 0
        }
    }

    /// Prefixes `payload` with its 32-bit big-endian length.
    package static func frame(_ payload: [UInt8]) -> [UInt8] {
        var framed = [UInt8]()
        framed.reserveCapacity(payload.count + 4)
        let length = UInt32(payload.count)
        framed.append(UInt8(length >> 24))
        framed.append(UInt8(length >> 16 & 0xFF))
        framed.append(UInt8(length >> 8 & 0xFF))
        framed.append(UInt8(length & 0xFF))
        framed.append(contentsOf: payload)
        return framed
    }
}
