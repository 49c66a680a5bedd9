#if canImport(Glibc)
import Glibc
#endif
import CQSMLinux

/// Preallocated `recvmmsg`/`sendmmsg` vectors for up to `capacity` datagrams whose bytes
/// live in `PacketBufferPool` buffers. Built once and reused for every batch, so batched
/// I/O allocates nothing. A batch is used either for receiving or for sending.
package final class DatagramBatch {
    package let capacity: Int
    /// Entries currently held: datagrams received by the last `receive`, or queued to send.
    package private(set) var count = 0
    /// Bytes in the datagrams the last successful `send` handed to the kernel.
    package private(set) var lastSentByteCount = 0

    /// UDP generic segmentation offload for sends (`UDP_SEGMENT`): a run of queued
    /// datagrams to one destination, all of one size but the last (which may be shorter),
    /// goes to the kernel as one message that it cuts into those datagrams after the
    /// stack has been traversed once. Off unless the owner probed the socket for it
    /// (`UDPSocket.supportsSegmentationOffload`); a kernel that refuses a segmented send
    /// turns it off again (counted in `segmentationFallbacks`) and the batch is sent plain.
    package var segmentsSends = false
    /// Segmented messages (of two datagrams or more) the last successful `send` made, and
    /// the datagrams they carried.
    package private(set) var lastSegmentedMessages = 0
    /// See `lastSegmentedMessages`.
    package private(set) var lastSegmentedDatagrams = 0
    /// Segmented sends the kernel refused, after which segmentation was turned off.
    package private(set) var segmentationFallbacks = 0
    /// The most datagrams, and bytes, one segmented message may carry: 64 is the kernel's
    /// UDP_MAX_SEGMENTS on older kernels (newer ones allow more), and the payload of one
    /// IPv4 datagram is at most 65,507 bytes.
    static let maximumSegments = 64
    static let maximumSegmentedBytes = 65_000

    /// The messages of a segmented send: each points into `vectors` and `addresses`
    /// (a run of queued datagrams), with its own control space for the segment size.
    private let messages: UnsafeMutablePointer<cqsm_mmsghdr>
    private let messageDatagrams: UnsafeMutablePointer<Int>
    private let controls: UnsafeMutableRawPointer

    private let arrays: MessageVectors
    private var headers: UnsafeMutablePointer<cqsm_mmsghdr> { arrays.headers }
    private var vectors: UnsafeMutablePointer<iovec> { arrays.vectors }
    private var addresses: UnsafeMutablePointer<sockaddr_in> { arrays.addresses }
    private let buffers: UnsafeMutablePointer<PacketBuffer>
    private let pool: PacketBufferPool

    /// - Parameters:
    ///   - capacity: datagrams per call, 1...1024.
    ///   - pool: where the datagrams' bytes live.
    package init(capacity: Int, pool: PacketBufferPool) {
        precondition(capacity > 0 && capacity <= 1024, "a datagram batch holds 1...1024 entries")
        self.capacity = capacity
        self.pool = pool
        arrays = MessageVectors(capacity: capacity)
        buffers = .allocate(capacity: capacity)
        buffers.initialize(repeating: PacketBuffer(index: -1), count: capacity)
        messages = .allocate(capacity: capacity)
        messages.initialize(repeating: cqsm_mmsghdr(), count: capacity)
        messageDatagrams = .allocate(capacity: capacity)
        messageDatagrams.initialize(repeating: 0, count: capacity)
        controls = .allocate(byteCount: capacity * Int(CQSM_UDP_SEGMENT_CONTROL_BYTES), alignment: 8)
    }

    deinit {
        releaseAll()
        arrays.deallocate()
        buffers.deallocate()
        messages.deallocate()
        messageDatagrams.deallocate()
        controls.deallocate()
    }

    package var isFull: Bool { count == capacity }
    package var isEmpty: Bool { count == 0 }

    package func buffer(at index: Int) -> PacketBuffer { buffers[index] }
    package func length(at index: Int) -> Int { Int(headers[index].msg_len) }
    package func address(at index: Int) -> QSMSocketAddress { QSMSocketAddress(addresses[index]) }
    package func isTruncated(at index: Int) -> Bool { headers[index].msg_hdr.msg_flags & Int32(CQSM_MSG_TRUNC) != 0 }

    /// Gives every held buffer back to the pool and empties the batch.
    package func releaseAll() {
        for index in 0..<count { pool.release(buffers[index]) }
        count = 0
    }

    // MARK: Receiving

    /// Receives up to `capacity` datagrams into fresh pool buffers. Afterwards entries
    /// `0..<n` are the datagrams; the caller takes ownership of their buffers with
    /// `detachAll()` or gives them back with `releaseAll()`. Returns `.completed(0)` when
    /// the pool had no buffer at all (exhaustion is counted by the pool).
    package func receive(on socket: UDPSocket) throws(SystemError) -> IOResult<Int> {
        try receive(on: socket.descriptor)
    }

    /// Like `receive(on:)`, on a socket set to block: waits for the first datagram (up
    /// to the socket's receive timeout), then takes what else is queued without waiting.
    package func receiveWaitingForOne(on socket: UDPSocket) throws(SystemError) -> IOResult<Int> {
        try receive(on: socket.descriptor, flags: Int32(CQSM_MSG_WAITFORONE))
    }

    func receive(on descriptor: Int32, flags: Int32 = Int32(MSG_DONTWAIT)) throws(SystemError) -> IOResult<Int> {
        precondition(count == 0, "receive into a batch that still holds datagrams")
        var prepared = 0
        while prepared < capacity, let buffer = pool.acquire() {
            let bytes = pool.bytes(of: buffer)
            buffers[prepared] = buffer
            vectors[prepared].iov_base = bytes.baseAddress
            vectors[prepared].iov_len = bytes.count
            headers[prepared].msg_hdr.msg_namelen = socklen_t(MemoryLayout<sockaddr_in>.size)
            headers[prepared].msg_hdr.msg_flags = 0
            headers[prepared].msg_len = 0
            prepared += 1
        }
        guard prepared > 0 else { return .completed(0) }
        let result: IOResult<Int32>
        do throws(SystemError) {
            result = try nonBlockingCall("recvmmsg") {
                cqsm_recvmmsg(descriptor, headers, UInt32(prepared), flags)
            }
        } catch {
            for index in 0..<prepared { pool.release(buffers[index]) }
            throw error
        }
        let received: Int
        switch result {
        case .wouldBlock: received = 0
        case .completed(let n): received = Int(n)
        }
        for index in received..<prepared { pool.release(buffers[index]) }
        count = received
        if received == 0, case .wouldBlock = result { return .wouldBlock }
        return .completed(received)
    }

    /// Forgets the held buffers without releasing them: their new owner releases them.
    package func detachAll() { count = 0 }

    // MARK: Sending

    /// Queues a datagram of `length` bytes held in `buffer` (now owned by the batch).
    package func append(_ buffer: PacketBuffer, length: Int, to destination: QSMSocketAddress) {
        precondition(count < capacity, "append to a full datagram batch")
        buffers[count] = buffer
        vectors[count].iov_base = pool.bytes(of: buffer).baseAddress
        vectors[count].iov_len = length
        addresses[count] = destination.sockaddr
        headers[count].msg_hdr.msg_namelen = socklen_t(MemoryLayout<sockaddr_in>.size)
        headers[count].msg_hdr.msg_flags = 0
        count += 1
    }

    /// Sends the queued datagrams with one `sendmmsg`. Returns how many left; they are
    /// removed and their buffers released. On `.wouldBlock` nothing is removed. On an
    /// error, which `sendmmsg` reports only for the first entry, nothing is removed
    /// either: the caller decides (typically `dropFirst()`).
    package func send(on socket: UDPSocket) throws(SystemError) -> IOResult<Int> {
        try send(on: socket.descriptor)
    }

    func send(on descriptor: Int32) throws(SystemError) -> IOResult<Int> {
        guard count > 0 else { return .completed(0) }
        lastSegmentedMessages = 0
        lastSegmentedDatagrams = 0
        if segmentsSends, count > 1 { return try sendSegmented(on: descriptor) }
        switch try nonBlockingCall("sendmmsg", { cqsm_sendmmsg(descriptor, headers, UInt32(count), 0) }) {
        case .wouldBlock:
            return .wouldBlock
        case .completed(let sent):
            return .completed(finishSend(datagrams: Int(sent)))
        }
    }

    /// Records the bytes of the first `datagrams` queued, which the kernel took, and
    /// removes them; returns their number.
    private func finishSend(datagrams: Int) -> Int {
        var bytes = 0
        for index in 0..<datagrams { bytes += vectors[index].iov_len }
        lastSentByteCount = bytes
        removeFirst(datagrams)
        return datagrams
    }

    /// `send` with runs of equal datagrams to one destination as segmented messages.
    private func sendSegmented(on descriptor: Int32) throws(SystemError) -> IOResult<Int> {
        var messageCount = 0
        var index = 0
        while index < count {
            let size = vectors[index].iov_len
            var end = index + 1
            var total = size
            while end < count, end - index < Self.maximumSegments, vectors[end - 1].iov_len == size,
                  vectors[end].iov_len <= size, total + vectors[end].iov_len <= Self.maximumSegmentedBytes,
                  addresses[end].sin_addr.s_addr == addresses[index].sin_addr.s_addr,
                  addresses[end].sin_port == addresses[index].sin_port {
                total += vectors[end].iov_len
                end += 1
            }
            let message = messages + messageCount
            message.pointee.msg_hdr.msg_name = UnsafeMutableRawPointer(addresses + index)
            message.pointee.msg_hdr.msg_namelen = socklen_t(MemoryLayout<sockaddr_in>.size)
            message.pointee.msg_hdr.msg_iov = vectors + index
            message.pointee.msg_hdr.msg_iovlen = end - index
            message.pointee.msg_hdr.msg_flags = 0
            if end - index > 1 {
                cqsm_set_udp_segment(&message.pointee.msg_hdr, controls + messageCount * Int(CQSM_UDP_SEGMENT_CONTROL_BYTES),
                                     UInt16(size))
            } else {
                message.pointee.msg_hdr.msg_control = nil
                message.pointee.msg_hdr.msg_controllen = 0
            }
            messageDatagrams[messageCount] = end - index
            messageCount += 1
            index = end
        }
        let result: IOResult<Int32>
        do throws(SystemError) {
            result = try nonBlockingCall("sendmmsg(UDP_SEGMENT)") { cqsm_sendmmsg(descriptor, messages, UInt32(messageCount), 0) }
        } catch {
            // A kernel or device that cannot segment refuses the first message; anything
            // else is the datagram's own error, for the caller as usual.
            guard messageDatagrams[0] > 1, [EIO, EINVAL, EOPNOTSUPP].contains(error.errno) else { throw error }
            segmentsSends = false
            segmentationFallbacks += 1
            return try send(on: descriptor)
        }
        guard case .completed(let sentMessages) = result else { return .wouldBlock }
        var datagrams = 0
        for message in 0..<Int(sentMessages) {
            datagrams += messageDatagrams[message]
            if messageDatagrams[message] > 1 {
                lastSegmentedMessages += 1
                lastSegmentedDatagrams += messageDatagrams[message]
            }
        }
        return .completed(finishSend(datagrams: datagrams))
    }

    /// Drops the first queued datagram (one the kernel refused), releasing its buffer.
    package func dropFirst() { removeFirst(1) }

    private func removeFirst(_ removed: Int) {
        guard removed > 0 else { return }
        for index in 0..<removed { pool.release(buffers[index]) }
        let remaining = count - removed
        if remaining > 0 {
            // Rare (a partial send): shift the survivors down, re-pointing their headers.
            for index in 0..<remaining {
                buffers[index] = buffers[index + removed]
                vectors[index] = vectors[index + removed]
                addresses[index] = addresses[index + removed]
                headers[index].msg_hdr.msg_namelen = headers[index + removed].msg_hdr.msg_namelen
            }
        }
        count = remaining
    }
}
