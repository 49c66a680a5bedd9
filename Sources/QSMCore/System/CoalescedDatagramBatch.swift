#if canImport(Glibc)
import Glibc
#endif
import CQSMLinux

/// Preallocated `recvmmsg` vectors for a socket that receives coalesced datagrams (UDP
/// generic receive offload, `UDP_GRO`): the kernel may hand over a run of datagrams from
/// one source as one message of up to 64 KB, with the segment size in a control message;
/// the caller cuts it back into datagrams. Its buffers are its own (large enough for any
/// coalesced message, so nothing is ever cut short by the buffer), built once and reused.
package final class CoalescedDatagramBatch {
    package let capacity: Int
    /// Bytes per buffer: the largest message UDP GRO can build (an IPv4 datagram).
    package static let bufferBytes = 65_536

    private let arrays: MessageVectors
    private var headers: UnsafeMutablePointer<cqsm_mmsghdr> { arrays.headers }
    private let controls: UnsafeMutableRawPointer
    private let storage: UnsafeMutableRawPointer

    /// - Parameter capacity: messages it holds, 1...64 (64 KB of address space each,
    ///   made resident only as the kernel writes into it).
    package init(capacity: Int) {
        precondition(capacity > 0 && capacity <= 64, "a coalesced batch holds 1...64 messages")
        self.capacity = capacity
        arrays = MessageVectors(capacity: capacity)
        controls = .allocate(byteCount: capacity * Int(CQSM_UDP_GRO_CONTROL_BYTES), alignment: 8)
        storage = .allocate(byteCount: capacity * Self.bufferBytes, alignment: 64)
        for index in 0..<capacity {
            arrays.vectors[index].iov_base = storage + index * Self.bufferBytes
            arrays.vectors[index].iov_len = Self.bufferBytes
        }
    }

    deinit {
        arrays.deallocate()
        controls.deallocate()
        storage.deallocate()
    }

    /// Receives up to `count` messages without waiting, into entries `start...` (at most
    /// up to `capacity`); `.wouldBlock` when none was queued. Entries `start..<start + n`
    /// stay valid until a later call reuses them.
    package func receive(on descriptor: Int32, startingAt start: Int = 0, count: Int) throws(SystemError) -> IOResult<Int> {
        precondition(start >= 0 && start < capacity)
        let count = min(max(count, 1), capacity - start)
        let headers = self.headers + start
        for slot in start..<(start + count) {
            let index = slot - start
            headers[index].msg_hdr.msg_namelen = socklen_t(MemoryLayout<sockaddr_in>.size)
            headers[index].msg_hdr.msg_control = controls + slot * Int(CQSM_UDP_GRO_CONTROL_BYTES)
            headers[index].msg_hdr.msg_controllen = Int(CQSM_UDP_GRO_CONTROL_BYTES)
            headers[index].msg_hdr.msg_flags = 0
            headers[index].msg_len = 0
        }
        switch try nonBlockingCall("recvmmsg(UDP_GRO)", { cqsm_recvmmsg(descriptor, headers, UInt32(count), Int32(MSG_DONTWAIT)) }) {
        case .wouldBlock: return .wouldBlock
        case .completed(let received): return .completed(Int(received))
        }
    }

    /// The bytes of message `index` (one datagram, or several of `segmentBytes(at:)` each,
    /// the last possibly shorter).
    package func bytes(at index: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: storage + index * Self.bufferBytes, count: Int(headers[index].msg_len))
    }

    /// The size of the datagrams message `index` coalesces; its whole length when the
    /// kernel did not coalesce it.
    package func segmentBytes(at index: Int) -> Int {
        // The msghdr is the first member of the mmsghdr.
        let size = Int(cqsm_udp_gro_segment_bytes(UnsafeRawPointer(headers + index).assumingMemoryBound(to: msghdr.self)))
        return size > 0 ? size : Int(headers[index].msg_len)
    }

    package func address(at index: Int) -> QSMSocketAddress { QSMSocketAddress(arrays.addresses[index]) }

    /// Where `datagram` (one of `datagrams(at:)`'s) starts in this batch's storage: with
    /// its length, it names the datagram until the next `receive`.
    package func offset(of datagram: UnsafeRawBufferPointer) -> Int {
        UnsafeRawPointer(storage).distance(to: datagram.baseAddress ?? UnsafeRawPointer(storage))
    }

    /// The `length` bytes at `offset` in this batch's storage (a datagram named by
    /// `offset(of:)`), valid until the next `receive`.
    package func bytes(offset: Int, length: Int) -> UnsafeRawBufferPointer {
        precondition(offset >= 0 && length >= 0 && offset + length <= capacity * Self.bufferBytes)
        return UnsafeRawBufferPointer(start: storage + offset, count: length)
    }

    /// The datagrams of message `index`, in order: cut from it by its segment size.
    package func datagrams(at index: Int) -> CoalescedDatagrams {
        CoalescedDatagrams(bytes: bytes(at: index), segmentBytes: segmentBytes(at: index))
    }

    /// Whether message `index` was cut short (it cannot be, at 64 KB; checked anyway).
    package func isTruncated(at index: Int) -> Bool { headers[index].msg_hdr.msg_flags & Int32(CQSM_MSG_TRUNC) != 0 }
}

/// The datagrams a coalesced message holds: `segmentBytes` each, the last possibly
/// shorter; a message of one empty datagram yields that one. A value walked in place:
/// nothing is allocated or copied.
package struct CoalescedDatagrams: Sequence, IteratorProtocol {
    private let bytes: UnsafeRawBufferPointer
    private let segmentBytes: Int
    private var offset = 0
    private var done = false

    init(bytes: UnsafeRawBufferPointer, segmentBytes: Int) {
        self.bytes = bytes
        self.segmentBytes = Swift.max(1, segmentBytes)
    }

    /// How many datagrams the message holds.
    package var count: Int { Swift.max(1, (bytes.count + segmentBytes - 1) / segmentBytes) }

    package mutating func next() -> UnsafeRawBufferPointer? {
        guard !done else { return nil }
        let length = Swift.min(segmentBytes, bytes.count - offset)
        let datagram = UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + length)])
        offset += length
        done = offset >= bytes.count
        return datagram
    }
}
