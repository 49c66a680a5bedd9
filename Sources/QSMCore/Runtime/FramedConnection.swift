/// Why a `FramedConnection` closed.
package enum FramedConnectionCloseReason: Sendable, Equatable, CustomStringConvertible {
    case closedByPeer
    case failed(SystemError)
    /// The peer announced a frame over the limit: the stream cannot be trusted past it.
    case frameTooLarge(length: Int, limit: Int)
    /// The peer let more than the limit of bytes pile up unsent: it is not reading.
    case peerTooSlow(limit: Int)
    /// Closed by this side.
    case local(String)

    package var description: String {
        switch self {
        case .closedByPeer: "closed by peer"
        case .failed(let error): "\(error)"
        case .frameTooLarge(let length, let limit): "protocol violation: a frame of \(length) bytes exceeds the limit of \(limit)"
        case .peerTooSlow(let limit): "peer too slow: more than \(limit) bytes queued"
        case .local(let reason): reason
        }
    }
}

/// Told what happens on a `FramedConnection`, on the core thread.
package protocol FramedConnectionDelegate: AnyObject {
    /// A non-blocking connect completed.
    func connectionEstablished(_ connection: FramedConnection, core: EventCore)
    func connection(_ connection: FramedConnection, received frame: [UInt8], core: EventCore)
    /// The connection is gone (peer closed, error, protocol violation, or too slow a
    /// reader); `reason` says which. Called once; the connection is already unregistered.
    func connectionClosed(_ connection: FramedConnection, reason: FramedConnectionCloseReason, core: EventCore)
}

/// A TCP stream carrying length-prefixed frames, driven by the event core: reads are
/// split into frames, writes are queued and flushed as the socket takes them.
///
/// Memory is bounded both ways: an inbound frame over `maximumFrameBytes` closes the
/// connection, and so does a peer that lets more than `maximumQueuedBytes` pile up
/// unsent (it is not reading), so one slow peer can never stall or bloat the core.
package final class FramedConnection: DescriptorHandler {
    package let stream: TCPStream
    package private(set) var registration: RegistrationID?
    package private(set) var isConnecting: Bool
    package private(set) var isClosed = false
    package private(set) var queuedByteCount = 0
    package let maximumQueuedBytes: Int
    private weak var delegate: (any FramedConnectionDelegate)?
    private var decoder: FrameDecoder
    private var outbound = RingBuffer<[UInt8]>(initialCapacity: 8)
    private var outboundOffset = 0
    private var closeWhenFlushed = false
    private static let readChunk = 64 << 10
    private var readBuffer = [UInt8](repeating: 0, count: FramedConnection.readChunk)

    /// Registers `stream` with `core`. `connecting` is true for a stream whose connect is
    /// still in progress.
    package init(stream: TCPStream, connecting: Bool, core: EventCore, delegate: any FramedConnectionDelegate,
                maximumFrameBytes: Int, maximumQueuedBytes: Int) throws(SystemError) {
        self.stream = stream
        self.delegate = delegate
        isConnecting = connecting
        decoder = FrameDecoder(maximumFrameBytes: maximumFrameBytes)
        self.maximumQueuedBytes = maximumQueuedBytes
        registration = try core.registerDescriptor(stream.descriptor, medium: .network, traffic: .control,
                                                   readable: !connecting, writable: connecting, handler: self)
    }

    /// Queues one frame. Returns false (and closes the connection) if the peer has let
    /// more than `maximumQueuedBytes` pile up.
    @discardableResult
    package func send(_ payload: [UInt8], core: EventCore) -> Bool {
        guard !isClosed else { return false }
        let framed = FrameDecoder.frame(payload)
        guard queuedByteCount + framed.count <= maximumQueuedBytes else {
            close(reason: .peerTooSlow(limit: maximumQueuedBytes), core: core)
            return false
        }
        outbound.append(framed)
        queuedByteCount += framed.count
        if !isConnecting { flush(core: core) }
        return !isClosed
    }

    /// Closes once everything queued so far has been written (or at once if nothing is).
    package func closeAfterFlushing(reason: FramedConnectionCloseReason, core: EventCore) {
        guard !isClosed else { return }
        closeWhenFlushed = true
        if queuedByteCount == 0 || isConnecting { close(reason: reason, core: core) } else { flush(core: core) }
    }

    /// Closes now, dropping anything queued.
    package func close(reason: FramedConnectionCloseReason, core: EventCore) {
        guard !isClosed else { return }
        isClosed = true
        if let registration { core.unregister(registration) }
        registration = nil
        outbound = RingBuffer()
        queuedByteCount = 0
        delegate?.connectionClosed(self, reason: reason, core: core)
    }

    // MARK: DescriptorHandler

    package func descriptorReadable(_ registration: RegistrationID, core: EventCore) {
        // A failed connect is reported as an error event: it is the connect's outcome.
        if isConnecting { return descriptorWritable(registration, core: core) }
        while !isClosed {
            let outcome = readBuffer.withUnsafeMutableBytes { raw in
                Result { () throws(SystemError) in try stream.read(into: raw) }
            }
            guard case .success(let result) = outcome else {
                if case .failure(let error) = outcome { close(reason: .failed(error), core: core) }
                return
            }
            guard case .completed(let count) = result else { return }
            if count == 0 { return close(reason: .closedByPeer, core: core) }
            readBuffer.withUnsafeBytes { decoder.append(UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
            do throws(FrameDecoder.Failure) {
                while !isClosed, let frame = try decoder.nextFrame() {
                    delegate?.connection(self, received: frame, core: core)
                }
            } catch {
                guard case .frameTooLarge(let length, let limit) = error else { return }
                return close(reason: .frameTooLarge(length: length, limit: limit), core: core)
            }
            if count < readBuffer.count { return }
        }
    }

    package func descriptorWritable(_ registration: RegistrationID, core: EventCore) {
        if isConnecting {
            do throws(SystemError) {
                try stream.finishConnecting()
            } catch {
                return close(reason: .failed(error), core: core)
            }
            isConnecting = false
            delegate?.connectionEstablished(self, core: core)
            if isClosed { return }
        }
        flush(core: core)
    }

    private func flush(core: EventCore) {
        while let chunk = outbound.popFirst() {
            let offset = outboundOffset
            let outcome = chunk.withUnsafeBytes { raw in
                Result { () throws(SystemError) in try stream.write(UnsafeRawBufferPointer(rebasing: raw[offset...])) }
            }
            guard case .success(let result) = outcome else {
                if case .failure(let error) = outcome { close(reason: .failed(error), core: core) }
                return
            }
            guard case .completed(let written) = result else {
                outbound.prepend(chunk)
                return setInterest(writable: true, core: core)
            }
            queuedByteCount -= written
            outboundOffset += written
            if outboundOffset < chunk.count {
                outbound.prepend(chunk)
                return setInterest(writable: true, core: core)
            }
            outboundOffset = 0
        }
        if closeWhenFlushed { return close(reason: .local("closed after flushing"), core: core) }
        setInterest(writable: false, core: core)
    }

    private func setInterest(writable: Bool, core: EventCore) {
        guard let registration else { return }
        do throws(SystemError) {
            try core.setInterest(registration, readable: true, writable: writable)
        } catch {
            close(reason: .failed(error), core: core)
        }
    }
}
