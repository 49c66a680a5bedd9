/// A message delivered to the application.
///
/// Its bytes are read in place with `withPayload` (no copy: the view is of the bytes as
/// they arrived), or copied out with `payload` when the application keeps them. Code
/// written against `withPayload` keeps working, and gets faster, when deliveries come
/// straight from receive buffers.
public struct QSMDelivery: Sendable {
    /// The node machine's delivery, kept whole: wrapping it moves it, where taking its
    /// fields apart copied the group's name and the bytes and released the rest, four
    /// reference-count operations per message.
    private let delivery: NodeDelivery

    /// The group it was published to.
    public var group: GroupName { delivery.group }
    /// The node that published it.
    public var sender: NodeID { delivery.sender }
    /// The sender's sequence number for this group: consecutive per sender and group.
    public var sequence: UInt64 { delivery.sequence }
    /// Where the bytes are (shared with what the node received; never written).
    @usableFromInline var bytes: ArraySlice<UInt8> { delivery.payload }

    package init(_ delivery: consuming NodeDelivery) {
        self.delivery = delivery
    }

    package init(group: GroupName, sender: NodeID, sequence: UInt64, bytes: ArraySlice<UInt8>) {
        delivery = NodeDelivery(group: group, sender: sender, sequence: sequence, publishedAt: .zero,
                                region: RegionID(0), regionSequence: 0, fragments: 1, payload: bytes)
    }

    /// The message's length in bytes.
    public var payloadCount: Int { bytes.count }

    /// Calls `body` with the message's bytes, as published, in place: valid only during
    /// the call, and not copied. (Inlinable, so the caller's module specializes it: a
    /// generic call per message would box its result.)
    @inlinable
    public func withPayload<Result, Failure: Error>(
        _ body: (UnsafeRawBufferPointer) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        // The closure is run inside `withUnsafeBytes` with its error carried out as a value
        // (that API rethrows untyped).
        let outcome: Swift.Result<Result, Failure> = bytes.withUnsafeBytes { raw in
            do throws(Failure) { return .success(try body(raw)) } catch { return .failure(error) }
        }
        return try outcome.get()
    }

    /// An owned copy of the message's bytes, as published.
    public var payload: [UInt8] { Array(bytes) }
}
