/// A message delivered to the application.
///
/// Its bytes are read in place with `withPayload` (no copy: the view is of the bytes as
/// they arrived), or copied out with `payload` when the application keeps them. Code
/// written against `withPayload` keeps working, and gets faster, when deliveries come
/// straight from receive buffers.
public struct QSMDelivery: Sendable {
    /// The group it was published to.
    public let group: GroupName
    /// The node that published it.
    public let sender: NodeID
    /// The sender's sequence number for this group: consecutive per sender and group.
    public let sequence: UInt64
    /// Where the bytes are (shared with what the node received; never written).
    @usableFromInline let bytes: ArraySlice<UInt8>

    package init(group: GroupName, sender: NodeID, sequence: UInt64, bytes: ArraySlice<UInt8>) {
        self.group = group
        self.sender = sender
        self.sequence = sequence
        self.bytes = bytes
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
