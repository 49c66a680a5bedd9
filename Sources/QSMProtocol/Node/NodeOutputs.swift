/// A message delivered to the application: FIFO per sender and group, exactly once.
package struct NodeDelivery: Sendable {
    package var group: GroupName
    package var sender: NodeID
    /// The sender's sequence number for this group: consecutive per sender and group.
    package var sequence: UInt64
    package var publishedAt: Instant
    /// The region it came through, and the sequence numbers its fragments had there:
    /// `regionSequence ..< regionSequence + fragments` (for tools and checks).
    package var region: RegionID
    package var regionSequence: UInt64
    package var fragments: Int
    /// The message; shares storage with the packet that carried it.
    package var payload: ArraySlice<UInt8>

    package init(group: GroupName, sender: NodeID, sequence: UInt64, publishedAt: Instant, region: RegionID,
                 regionSequence: UInt64, fragments: Int, payload: ArraySlice<UInt8>) {
        self.group = group
        self.sender = sender
        self.sequence = sequence
        self.publishedAt = publishedAt
        self.region = region
        self.regionSequence = regionSequence
        self.fragments = fragments
        self.payload = payload
    }
}

/// A datagram the machine wrote into the driver's buffer.
package struct OutgoingDatagram: Sendable, Equatable {
    package var destination: QSMSocketAddress
    /// Bytes written at the start of the buffer.
    package var length: Int
}

/// A message as it was committed to a group view (only with `reportsCommits`).
package struct CommittedMessage: Sendable {
    package var group: GroupName
    package var groupSequence: UInt64
    package var view: GroupView
}

/// What a node machine tells its driver, besides datagrams and deliveries.
package enum NodeEvent: Sendable {
    case membership(MembershipEvent)
    /// Published messages that left the window (acknowledged by every region, or refused
    /// after being accepted), and their payload bytes: an API thread's window mirror
    /// gives these slots back.
    case released(messages: Int, bytes: Int)
    /// A publication accepted earlier could not be sent (say, the node does not publish
    /// to that group); its slot is released too.
    case publishRejected(group: GroupName, reason: String)
    /// The multicast addresses the node must listen on changed (`listenAddresses`).
    case listenAddressesChanged
    /// With `reportsCommits`: a message entered the protocol, committed to this view.
    case committed(CommittedMessage)
}

/// The outcome of `NodeMachine.publish`.
package enum PublishAdmission: Equatable, Sendable {
    /// Taken: sent as soon as its group's view is known and the window has room.
    case accepted
    /// Too many publications are already waiting; try again after a `released` event.
    case wouldBlock
    case rejected(String)
}

/// Counters of what the machine itself did with datagrams and deliveries (the
/// protocol's own are in `ProtocolStatistics`).
public struct NodeMachineStatistics: Sendable, Equatable {
    /// Datagrams whose authentication tag was missing or wrong (only with a secret).
    public var droppedUnauthenticated = 0
    /// GMS connections that failed to authenticate (a wrong or missing secret on either
    /// side, or a frame whose tag did not verify).
    public var gmsAuthenticationFailures = 0
    /// Authenticated datagrams dropped as replays: a counter already seen, a counter
    /// older than the replay window of its channel (see `ReplayChannel`), or an epoch of
    /// a dead incarnation of the sender.
    public var droppedReplayed = 0
    /// See `droppedReplayed`.
    public var droppedTooOld = 0
    /// See `droppedReplayed`.
    public var droppedDeadIncarnation = 0
    /// Authenticated datagrams from a new sender or channel when `maximumReplayWindows`
    /// (sender, channel) windows are kept already (only holders of the secret can cause
    /// this).
    public var droppedTooManySenders = 0
    /// Datagrams not sent because this incarnation had numbered all it can to their
    /// destination's channel (`ReplayChannel.countLimit`; a nonce must never repeat).
    public var droppedCountersExhausted = 0
    /// Datagrams addressed to a node whose address is not known (in no view, never heard).
    public var droppedNoAddress = 0
    /// Datagrams larger than `maximumDatagramBytes` (the protocol bounds its packets, so
    /// this stays 0; counted, never skipped silently).
    public var droppedOversized = 0
    /// Deliveries of a group whose name this node never learned (never expected).
    public var droppedUnnamedGroup = 0
    /// Publications waiting for their group's view or for room in the window.
    public var pendingPublishes = 0
    /// Times this node evicted itself from its groups because its application took
    /// deliveries too slowly (see `QSMNodeConfiguration.slowConsumerEviction`).
    public var evictions = 0
    /// Datagrams sent carrying several packets (see `DatagramBundle`).
    public var bundlesSent = 0
    /// The packets those datagrams carried.
    public var packetsBundled = 0
    /// Bundles received (each of their packets is counted by the protocol as it is).
    public var bundlesReceived = 0
    /// Bundles dropped whole because their lengths did not add up, they were empty, or
    /// one held another: none of their packets was acted on.
    public var droppedMalformedBundles = 0
}
