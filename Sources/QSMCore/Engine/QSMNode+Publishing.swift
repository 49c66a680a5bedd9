import QSMProtocol
import Synchronization

/// A group resolved once for publishing, from `QSMNode.publisher(for:)`.
///
/// Publishing through it is publishing to `group` by name, with the same rules (the node
/// must have joined the group or called `publishWithoutJoining`), but the node finds the
/// group's id by reading one array slot instead of hashing the name: with thousands of
/// groups taking turns, the name lookup missed the cache on every message (issue 15).
/// The slot belongs to the node that made the handle; given to another node, the handle
/// still works, by name.
public struct GroupPublisher: Hashable, Sendable {
    /// The group published to.
    public let group: GroupName
    /// This node's slot for the group, or -1 (publish by name).
    let slot: Int32
}

extension QSMNode {
    /// The most groups given a slot (`publisher(for:)`): the core's table of 65,536
    /// slots is at most 3 MB. Handles made beyond it publish by name.
    static let maximumPublisherSlots = 65_536

    /// What `tryPublish` did with a message.
    public enum PublishOutcome: Equatable, Sendable {
        /// Taken, and sent as soon as the window and the group's view allow.
        case accepted
        /// The flow-control window is full; try again once messages are acknowledged.
        case wouldBlock
        /// Refused for good, with the reason (too large, or the node has stopped).
        case rejected(String)
    }

    /// A handle for publishing to `group` that costs the node no lookup by name (see
    /// `GroupPublisher`). Asking again for the same group gives an equal handle; it does
    /// not join the group or declare this node a publisher.
    public func publisher(for group: GroupName) -> GroupPublisher {
        let slot = state.withLock { state -> Int32 in
            if let slot = state.publisherSlots[group] { return slot }
            guard state.publisherSlots.count < Self.maximumPublisherSlots else { return -1 }
            let slot = Int32(state.publisherSlots.count)
            state.publisherSlots[group] = slot
            return slot
        }
        return GroupPublisher(group: group, slot: slot)
    }

    /// Publishes without waiting: `.wouldBlock` while the window is full.
    public func tryPublish(_ payload: [UInt8], to group: GroupName) -> PublishOutcome {
        tryPublish(payload, to: GroupPublisher(group: group, slot: -1))
    }

    /// Publishes without waiting through a handle: `.wouldBlock` while the window is full.
    public func tryPublish(_ payload: [UInt8], to publisher: GroupPublisher) -> PublishOutcome {
        if let refusal = refusal(ofBytes: payload.count) { return refusal }
        guard window.tryReserve(bytes: payload.count) else { return .wouldBlock }
        return submit(payload, to: publisher)
    }

    /// Publishes a copy of `bytes` without waiting: `.wouldBlock` while the window is full.
    ///
    /// The bytes are copied once, into an array the node reuses from messages already
    /// acknowledged, and sent from there: a publisher that writes each message into the
    /// same buffer allocates nothing per message. `bytes` is read during the call only.
    public func tryPublish(copying bytes: UnsafeRawBufferPointer, to group: GroupName) -> PublishOutcome {
        tryPublish(copying: bytes, to: GroupPublisher(group: group, slot: -1))
    }

    /// Publishes a copy of `bytes` through a handle without waiting (see
    /// `tryPublish(copying:to:)` and `publisher(for:)`).
    public func tryPublish(copying bytes: UnsafeRawBufferPointer, to publisher: GroupPublisher) -> PublishOutcome {
        if let refusal = refusal(ofBytes: bytes.count) { return refusal }
        // The slot first: a full window costs no copy.
        guard window.tryReserve(bytes: bytes.count) else { return .wouldBlock }
        var payload = recycler.take()
        payload.append(contentsOf: bytes)
        return submit(consume payload, to: publisher)
    }

    /// Why a message of `count` bytes cannot be published at all, if it cannot.
    private func refusal(ofBytes count: Int) -> PublishOutcome? {
        let maximum = configuration.protocolConfiguration.maximumMessageBytes
        guard count <= maximum else { return .rejected("message of \(count) bytes exceeds the maximum of \(maximum)") }
        guard !stopping.load(ordering: .acquiring) else { return .rejected("the node is stopped") }
        return nil
    }

    /// Hands a publication, whose window slot is reserved, to the core; a full request
    /// queue gives the slot (and the array, for reuse) back. The array moves into the
    /// request: a copy retained it and released the caller's, per message.
    private func submit(_ payload: consuming [UInt8], to publisher: GroupPublisher) -> PublishOutcome {
        let bytes = payload.count
        if let refused = handle.submitOrReturn(.publish(payload: consume payload, group: publisher.group, slot: publisher.slot)) {
            window.release(messages: 1, bytes: bytes)
            if case .publish(let payload, _, _) = consume refused { recycler.put(payload) }
            return .wouldBlock
        }
        return .accepted
    }

    /// Publishes a copy of `bytes`, waiting while the flow-control window is full (see
    /// `tryPublish(copying:to:)`).
    /// - Throws: as `publish(_:to:)`.
    public func publish(copying bytes: UnsafeRawBufferPointer, to group: GroupName) async throws(QSMError) {
        try await publishWaiting { tryPublish(copying: bytes, to: group) }
    }

    /// Publishes a copy of `bytes` through a handle, waiting while the flow-control
    /// window is full (see `publisher(for:)`).
    /// - Throws: as `publish(_:to:)`.
    public func publish(copying bytes: UnsafeRawBufferPointer, to publisher: GroupPublisher) async throws(QSMError) {
        try await publishWaiting { tryPublish(copying: bytes, to: publisher) }
    }

    /// Tries until the attempt is accepted, waiting for the window between tries.
    private func publishWaiting(_ attempt: () -> PublishOutcome) async throws(QSMError) {
        while true {
            switch attempt() {
            case .accepted: return
            case .rejected(let reason):
                throw stopping.load(ordering: .acquiring) ? .stopped : .invalid(ConfigurationError(reason))
            case .wouldBlock:
                if Task.isCancelled { throw .cancelled }
                await waitForWindow()
            }
        }
    }

    /// Publishes, waiting while the flow-control window is full.
    /// - Throws: `QSMError.invalid` if the message is too large, `.stopped` if the node
    ///   stopped, `.cancelled` if the calling task was cancelled while it waited.
    public func publish(_ payload: [UInt8], to group: GroupName) async throws(QSMError) {
        try await publishWaiting { tryPublish(payload, to: group) }
    }

    /// Publishes through a handle, waiting while the flow-control window is full.
    /// - Throws: as `publish(_:to:)`.
    public func publish(_ payload: [UInt8], to publisher: GroupPublisher) async throws(QSMError) {
        try await publishWaiting { tryPublish(payload, to: publisher) }
    }

    /// Waits until the flow-control window has room for another message (of the size of
    /// the last one it refused), the node stops, or the calling task is cancelled (check
    /// `Task.isCancelled` after). For publishers that build each message just before
    /// `tryPublish`.
    public func waitForWindow() async {
        let token = state.withLock { state in defer { state.nextToken += 1 }; return state.nextToken }
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let free = state.withLock { state -> Bool in
                    if window.hasRoom || stopping.load(ordering: .acquiring) || Task.isCancelled { return true }
                    state.windowWaiters[token] = continuation
                    return false
                }
                if free { continuation.resume() }
            }
        } onCancel: {
            state.withLock { $0.windowWaiters.removeValue(forKey: token) }?.resume()
        }
    }

    /// Waits until every message this node published has been acknowledged by every
    /// region it went to (each member has it, or the crash rules settled it).
    /// - Throws: `QSMError.timedOut` if that does not happen within `timeout`,
    ///   `.cancelled` when the calling task is cancelled, `.stopped` when the node stops.
    public func waitForAcknowledgements(timeout: Duration) async throws(QSMError) {
        try await awaitWaiter(timeout: timeout, awaiting: "acknowledgements", settled: { _ in
            if stopping.load(ordering: .acquiring) { return .failure(.stopped) }
            return window.inUse == 0 ? .success(()) : nil
        }, file: { state, token, continuation in
            state.acknowledgementWaiters[token] = continuation
        }, withdraw: { node, token in node.state.withLock { $0.acknowledgementWaiters.removeValue(forKey: token) } })
    }

    /// Messages published and not yet acknowledged by every region they went to.
    public var unacknowledgedMessages: Int { window.inUse }
}
