/// Where a protocol datagram goes: one node (unicast) or a whole region (its multicast
/// address).
package enum ProtocolDestination: Hashable, Sendable {
    case node(NodeID)
    case region(RegionID)
    /// A hybrid group's own multicast address.
    case group(GroupID)
}

/// New data packets received in a region, and their payload bytes (pace token rounds).
struct Arrivals {
    var packets = 0
    var bytes = 0
    mutating func add(bytes count: Int) {
        packets += 1
        bytes += count
    }

    mutating func add(packets more: Int, bytes count: Int) {
        packets += more
        bytes += count
    }
}

/// A sender's messages to one group: their sequence numbers rise by one per message.
struct DeliveryKey: Hashable {
    var sender: NodeID
    var group: GroupID
}

/// Who a received packet says it comes from: the node that originated it (data, hybrid
/// data and sender status, not a retransmission, which any peer may send), or the node
/// asking (a NAK or pull). The driver learns addresses from these.
package enum PacketOrigin: Equatable, Sendable {
    case unknown
    case sender(NodeID)
    case requester(NodeID)
}

/// A datagram the protocol built when its link asked for one.
package struct ProtocolDatagram: Sendable {
    package var destination: ProtocolDestination
    /// The packet, encoded only when the driver writes it into its send buffer.
    var packet: ProtocolPacket
    /// Tokens, ACKs, NAKs and pulls (not data or retransmissions).
    package var isControl: Bool
    /// A redundant copy of a token. It goes in a datagram of its own, never bundled with
    /// the packet before it, and is written as a bundle of one: a few bytes longer than
    /// the original, so that segmentation offload (which joins equal-length datagrams to
    /// one address into one send, and so into one packet a single drop takes) never
    /// joins the two copies.
    package var redundantCopy = false

    /// Bytes the packet takes on the wire (before any authentication tag).
    package var byteCount: Int { packet.encodedByteCount }

    /// Writes the packet at the start of `buffer`; nil when it does not fit.
    package func encode(into buffer: UnsafeMutableRawBufferPointer) -> Int? { packet.encode(into: buffer) }

    /// The packet as a new array (tests and tools; the send path encodes in place).
    package var bytes: [UInt8] { packet.encoded() }
}

/// A message handed to the application: in FIFO order per sender, exactly once.
package struct ProtocolDelivery {
    package var sender: NodeID
    package var group: GroupID
    package var groupSequence: UInt64
    package var publishedAt: Instant
    /// The region it came through, and the sequence numbers its fragments had there:
    /// `regionSequence ..< regionSequence + fragments` (for tools and checks).
    package var region: RegionID
    package var regionSequence: UInt64
    package var fragments: Int
    /// The message; shares storage with the packet that carried it (no copy).
    package var payload: ArraySlice<UInt8>
    /// The sender's stream in the group: where the node machine keeps its per-stream
    /// counters and the group's name, found without a lookup.
    package var stream: DeliveryStream
}

/// The outcome of publishing.
package enum PublishResult: Equatable, Sendable {
    /// Queued for transmission, with the message's per-group sequence number.
    case accepted(groupSequence: UInt64)
    /// The flow-control window is full: try again once acknowledgements come back.
    case wouldBlock
    case rejected(String)
}

/// Counters of one protocol node.
public struct ProtocolStatistics: Sendable, Equatable {
    /// Messages this node published (entered the protocol).
    public var published = 0
    /// Messages delivered to the application.
    public var delivered = 0
    /// Data packets multicast (one per fragment of each message).
    public var dataPacketsSent = 0
    /// Payload bytes in those packets.
    public var dataPayloadBytesSent = 0
    /// Data packets sent once to a hybrid group's address for several regions.
    public var hybridTransmissions = 0
    /// Packets retransmitted to peers that asked for them.
    public var retransmissionsSent = 0
    /// Control packets sent: tokens, acknowledgements, requests, statuses.
    public var controlPacketsSent = 0
    /// Bytes of those control packets.
    public var controlBytesSent = 0
    /// The part of `controlBytesSent` that was tokens.
    public var tokenBytesSent = 0
    /// Data packets received a second time, dropped.
    public var duplicatesDropped = 0
    /// Packets beyond the out-of-order limit (`maximumOutOfOrderPackets`), or beyond the
    /// packet tables' budget (`maximumTableSlots`), dropped and recovered later.
    public var outOfOrderDropped = 0
    /// Packets this node's partition caches that it did not cache, for the packet tables'
    /// budget (`maximumTableSlots`): peers ask the sender or another replica instead.
    public var notCachedForTableBudget = 0
    /// Packets of a sender or region this node could not place (no stream could start),
    /// dropped and recovered later if owed.
    public var unknownDropped = 0
    /// Packets of views from before this node joined their region (not owed to it).
    public var notOwedDropped = 0
    /// Packets that did not decode (truncated, inconsistent, unknown kind), dropped.
    public var malformedDropped = 0
    /// This node's own multicast data, looped back by the kernel (the node took its
    /// own messages when it sent them): ignored before decoding.
    public var ownMulticastIgnored = 0
    /// Data packets of a region or region view this node had not installed yet, held
    /// until it has (`unknownDropped` counts those that had to go unreplayed).
    public var heldForView = 0
    /// Messages that reached this node a second time through another region (it moved
    /// between regions while they were in flight), not delivered again.
    public var secondCopiesDropped = 0
    /// Unacknowledged messages this node, as a sender, carried into regions its group's
    /// members moved to (lossless reconfiguration).
    public var messagesCarried = 0
    /// Carried messages committed to a view of their group from before this node joined
    /// it: not owed, not delivered.
    public var notMemberDropped = 0
    /// Unacknowledged messages this node, as a sender, stopped carrying before every
    /// member that might be owed them had them: the application left their group while
    /// it was out of view, or members awaited after a GMS restart did not reappear within
    /// `ProtocolConfiguration.restartCarryGrace` (crashed or gone meanwhile).
    public var messagesGivenUp = 0
    /// Queries a new member sent to learn where its debt begins, and senders it gave up
    /// asking (it then starts with the earliest packet it saw, and may miss what came
    /// before in the view it joined).
    public var viewStartQueriesSent = 0
    /// See `viewStartQueriesSent`.
    public var debtStartsGivenUp = 0
    /// View-start queries this node answered (as the sender, or for it from its history).
    public var viewStartsAnswered = 0
    /// Sequence numbers absurdly far ahead (in packets, tokens or sender statuses),
    /// ignored; and packets that would have opened a stream beyond `maximumStreams`.
    public var implausibleDropped = 0
    /// See `implausibleDropped`.
    public var streamLimitDropped = 0
    /// Tokens of an older view or round, or not for this node's ring, dropped.
    public var staleTokensDropped = 0
    /// Tokens of a region view this node had not installed yet, held until it was (and
    /// then acted on, or dropped as stale if another view came instead).
    public var tokensHeldForView = 0
    /// Pauses of multicast and recovery in a region for a new view (see
    /// `ProtocolConfiguration.viewChangePauseLimit`), those that ran out rather than
    /// ending when the rings said the view was installed everywhere, and their total
    /// length.
    public var viewChangePauses = 0
    public var viewChangePausesTimedOut = 0
    public var viewChangePauseNanoseconds: Int64 = 0
    /// Redundant token copies sent (a ring that lost a token sends each hop twice for a
    /// while), and copies received of a token this node had already acted on.
    public var redundantTokensSent = 0
    /// See `redundantTokensSent`.
    public var duplicateTokensDropped = 0
    /// NAKs and pulls sent, and received (each asks for one or more sequence numbers).
    public var requestsSent = 0
    /// Sequence numbers asked for: holes below what arrived, tails beyond it, and ones
    /// asked for again (the answer did not come within the retry interval).
    public var holesAsked = 0
    /// See `holesAsked`.
    public var tailsAsked = 0
    /// See `holesAsked`.
    public var askedAgain = 0
    /// Requests (NAKs and pulls) received from peers.
    public var requestsReceived = 0
    /// NAK aggregation (see `RepairAggregation`): runs a whole partition lacked that its
    /// leader asked the sender for once; retransmissions sent by multicast to a region
    /// (loss seen by many) rather than by unicast; and requests absorbed because a
    /// multicast of the packet had just gone out (or the same requester asked again
    /// within the aggregation window).
    public var partitionRepairsAsked = 0
    /// See `partitionRepairsAsked`.
    public var multicastRepairs = 0
    /// See `partitionRepairsAsked`.
    public var repairRequestsAbsorbed = 0
    /// Sequence numbers asked of this node that it does not hold and will not (not
    /// cached here, or released): nothing is sent for them.
    public var repairRequestsNotHeld = 0
    /// Recovery from replicas once they hold the message (see `ReplicaRecovery`):
    /// requests for packets this node caches but lacked too, kept to be answered once
    /// it holds them; of those, answered; dropped because the packet came by multicast
    /// to the region (which reached the askers too); forgotten after the window or when
    /// this node left the region; and refused: not kept (the table was full, or another
    /// member had asked for the same packet), or given up when a second member asked.
    public var repairsAwaited = 0
    /// See `repairsAwaited`.
    public var awaitedRepairsAnswered = 0
    /// See `repairsAwaited`.
    public var awaitedRepairsServedByMulticast = 0
    /// See `repairsAwaited`.
    public var awaitedRepairsExpired = 0
    /// See `repairsAwaited`.
    public var awaitedRepairsRefused = 0
    /// The inter-partition push: runs this partition leader asked another partition to
    /// push to its members, and packets this node pushed to a lacking partition's
    /// members (see `ReplicaRecovery`).
    public var partitionPushesAsked = 0
    /// See `partitionPushesAsked`.
    public var partitionPushes = 0
    /// Push requests for a packet that had reached this node by multicast to the region
    /// (so the asking partition too): nothing pushed.
    public var pushesServedByMulticast = 0
    /// Requested retransmissions not sent: over `maximumPendingRetransmissions`, or no
    /// longer held.
    public var retransmissionsDropped = 0
    /// Messages of a departed sender skipped because no live member held them (the
    /// crashed-sender rule).
    public var abandonedAfterSenderLeft = 0
    /// Of those, skipped because some possible holder never answered within the last
    /// resort's asks (`ProtocolNode.skipAfterAttempts`), rather than every one denying
    /// it: the survivors may then disagree on that message.
    public var abandonedUnanswered = 0
    /// Senders presumed gone: named by no view this node holds, and silent through
    /// `ProtocolNode.unnamedSenderAttempts` asks (see `presumeGone`).
    public var sendersPresumedGone = 0
    /// Replies that this node does not hold what a peer asked of a departed sender.
    public var notHeldSent = 0
    /// Token rounds this node led around a ring of more than one node, and their total
    /// round-trip time (partition and region rings alike).
    public var tokenRounds = 0
    /// See `tokenRounds`.
    public var tokenRoundTripNanoseconds: Int64 = 0
    /// Of `tokenRounds`, those of region rings (among a region's partition leaders), and
    /// their total round-trip time: the ring that grows with the number of partitions.
    public var regionTokenRounds = 0
    /// See `regionTokenRounds`.
    public var regionTokenRoundTripNanoseconds: Int64 = 0
    /// Of `tokenRounds`, those of the rings between the partition leaders and the region
    /// ring in a large region (see `ProtocolConfiguration.leaderRingFanout`), and their
    /// total round-trip time.
    public var leaderTokenRounds = 0
    /// See `leaderTokenRounds`.
    public var leaderTokenRoundTripNanoseconds: Int64 = 0
    /// Rounds this node led whose token did not come back in time (lost, or held by a
    /// frozen or failed member), given up and restarted.
    public var tokenTimeouts = 0
    /// Probes of ring members sent after timed-out rounds, answers that matched no
    /// outstanding probe (late, replayed or unasked), and members reported to the GMS as
    /// suspects for answering none (see `ProtocolConfiguration.suspectAfterTimeouts`).
    public var probesSent = 0
    /// Messages a region acknowledged from a newer view than they were sent in, released
    /// without the check for members that moved (see `acknowledgedUnderNewerView`)
    /// because their group left this node's views: such a member may lack them.
    public var releasedUnchecked = 0
    /// See `probesSent`.
    public var probeAnswersIgnored = 0
    /// See `probesSent`.
    public var suspectsReported = 0
    /// This node's messages acknowledged by every region they went to.
    public var acknowledged = 0
    /// The total time from publishing to acknowledgement of those (divide by
    /// `acknowledged` for the mean).
    public var acknowledgementLatencyNanoseconds: Int64 = 0
    /// The most sender records one token carried.
    public var maximumTokenRecords = 0
    /// Tokens too large for one datagram, sent in parts; and parts dropped because a
    /// newer token for the same ring arrived before the older one was whole.
    public var tokensSplit = 0
    /// See `tokensSplit`.
    public var tokenPartsDropped = 0
    /// Hybrid transmissions whose region headers did not fit one datagram: each is one
    /// more datagram to the group's address.
    public var hybridTransmissionsSplit = 0
    /// The most bytes held at once, sent (unacknowledged) and received (cached) together.
    public var maximumHeldBytes = 0
    /// The most bytes held on the receive side at once (cache and out-of-order packets).
    public var maximumCachedBytes = 0
    /// Time from noticing a gap to repairing it, in microseconds of the node's running
    /// time (see `ProtocolConfiguration.pauseAllowance`), for the gaps this node asked
    /// for or that a retransmission filled (not for packets that were only late: still
    /// queued here when a token told of them). A histogram: bounded however many packets
    /// are repaired.
    public var recoveryMicroseconds = LatencyHistogram()
}

extension UInt32 {
    /// Adds one, stopping at the maximum: a count that came off the network may already
    /// be there, and a forged packet must not trap the process.
    mutating func saturatingIncrement() {
        if self < .max { self += 1 }
    }
}
