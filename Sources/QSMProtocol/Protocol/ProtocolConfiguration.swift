/// Settings of the dissemination and recovery protocol. Every buffer is bounded by one of
/// these; `validate()` rejects values that cannot work.
public struct ProtocolConfiguration: Sendable {
    /// Largest payload in one datagram; longer messages are fragmented.
    public var maximumFragmentBytes = 1_400
    /// Largest datagram the protocol builds, headers included (its driver may add an
    /// authentication tag after it). Nothing is ever sent larger: a token with more
    /// senders' records than fit travels in parts, a hybrid transmission with more
    /// region headers than fit goes out as several datagrams, and requests are bounded.
    public var maximumPacketBytes = 8_176
    /// Largest message accepted for publishing.
    public var maximumMessageBytes = 1 << 20
    /// Flow control: unacknowledged messages a sender may have outstanding (its
    /// publications waiting to be sent included). Together with `windowBytes`, whichever
    /// binds first: the bytes bound memory (at the sender, and in every member's cache)
    /// and the time to stability for large messages; this bounds per-message state for
    /// small ones, which a window in bytes alone would let grow into the hundreds of
    /// thousands. At most 8,388,608.
    public var windowMessages = 16_384
    /// Unacknowledged payload bytes a sender may have outstanding (see
    /// `windowMessages`): 4 MiB is about 4,000 messages of 1,000 bytes. At least
    /// `maximumMessageBytes`, at most 256 GiB.
    public var windowBytes = 4 << 20
    /// The largest `windowMessages` and `windowBytes` (what an API thread's window mirror
    /// can count in one 64-bit word).
    package static let largestWindowMessages = 1 << 23
    package static let largestWindowBytes = 1 << 38
    /// Token interval under load, and when the region is idle (the interval adapts
    /// between them: short while anything is unstable, long when all is quiet).
    public var busyTokenInterval: Duration = .milliseconds(5)
    /// See `busyTokenInterval`.
    public var idleTokenInterval: Duration = .seconds(1)
    /// Between the two, rounds are paced to about this many new messages per round:
    /// at 1,000 messages/s rounds come every 64 ms, at 50,000/s every 5 ms (the floor).
    public var messagesPerTokenRound = 64
    /// A token that has not come back within this many intervals is given up and a new
    /// round starts (it was lost, or a member is frozen or dead). For long rings the
    /// timeout grows with the ring: see `tokenTimeoutRoundTrips`.
    public var tokenTimeoutIntervals = 8
    /// A ring's timeout is also at least this many of its expected round trips: its
    /// length times the hop time the leader measured on earlier rounds (or
    /// `initialTokenHopEstimate` before any), so a ring of hundreds of leaders is not
    /// timed out by a limit meant for five. A timed-out round doubles the ring's hop
    /// estimate, so a ring whose hops are slower than estimated still converges.
    public var tokenTimeoutRoundTrips = 4
    /// After a ring's token is lost (its round timed out), the ring's next this many
    /// rounds send every hop's token twice, in separate datagrams: under random loss a
    /// lost token costs a whole timeout, and a second copy makes that rare for a few
    /// hundred bytes a round. 0: never.
    public var redundantTokenRounds = 64
    /// The hop time a ring is assumed to have before its first round is measured.
    public var initialTokenHopEstimate: Duration = .microseconds(500)
    /// Token traffic a region may cost, in bytes of tokens per byte of new data arriving:
    /// rounds of a large region are spaced so that its rings (whose cost grows with the
    /// number of members) stay within it while data flows.
    public var tokenBytesPerDataByte = 0.25
    /// Token traffic a region may always cost, in bytes a second, however little data
    /// arrives: `tokenBytesPerDataByte` spaces rounds only beyond it. Without it a sender
    /// held back by its window fed the budget back on itself: its data came only as fast
    /// as rounds acknowledged it, so rounds spaced by that data came slower still, and
    /// with a window of one message four receivers acknowledged a message every 730 ms.
    /// The default lets a ring of a few members run at the busy pace, and holds rings of
    /// hundreds of members to the budget (their rounds cost hundreds of kilobytes).
    public var tokenBytesPerSecondAllowance = 262_144.0
    /// Sequence numbers a node asks for per stream per token visit (recovery rate limit).
    public var recoveryRequestsPerRound = 128
    /// How old a hole (a gap below a packet that reached this node in the sender's own
    /// transmission) must be before it is first asked for, and how often holes are
    /// checked. One sender's datagrams share one FIFO path, so a hole is almost always a
    /// loss; the grace only lets a rare reordering settle. Everything above a hole waits
    /// for its repair, and so does the sender's window: at 2 ms (checked every 1 ms, so
    /// 3 ms on average) 5% random loss cost a tenth of the throughput (`bench/README.md`).
    public var gapGracePeriod: Duration = .microseconds(250)
    /// The same for missing packets beyond the highest one this node received itself
    /// (a lost tail, or data still queued behind a backlog of tokens after a freeze).
    public var tailGracePeriod: Duration = .milliseconds(25)
    /// How long a node waits for a requested packet before asking again (elsewhere).
    /// Many round trips on a LAN, and more than a descheduled peer's usual delay: a
    /// request or repair lost (under 5% loss, about one in ten asks) holds the sender's
    /// window until it is asked for again. At 20 ms that alone halved throughput; 8 ms
    /// against 4 ms cost 15% under 5% random loss, and 3 ms added only duplicates
    /// (`bench/README.md`). After a pause of the node nothing is asked again
    /// until its input has caught up (the answer may be in its socket backlog).
    public var requestRetryInterval: Duration = .milliseconds(4)
    /// How much a pause between two events counts toward the grace periods and the retry
    /// interval. A node that did not run (frozen, descheduled) has not read what arrived
    /// meanwhile; counting the whole pause would make it ask for its own socket backlog.
    /// Below the tail grace, so a pause alone never makes a tail due.
    public var pauseAllowance: Duration = .milliseconds(10)
    /// NAK aggregation and multicast repair (see `RepairAggregation`): partition leaders
    /// ask once for what their whole partition lacks, and a packet that several members
    /// lack is retransmitted once, by multicast. Off: every repair is a unicast to its
    /// requester, as each receiver asks on its own (for comparison only).
    public var aggregatesRepairs = true
    /// Recovery from caching replicas once they hold the message (see
    /// `ReplicaRecovery`): a replica asked for a packet it caches but lacks too answers
    /// once it has it, rather than dropping the request. Off: for comparison only.
    public var answersOnceHeld = true
    /// The inter-partition push (see `ReplicaRecovery`): what a partition leader's whole
    /// partition lacks and another partition caches is pushed from there, rather than
    /// multicast by the sender to the whole region. Off: for comparison only.
    public var pushesBetweenPartitions = true
    /// A packet retransmitted this recently is not retransmitted again for another
    /// request: a second requester gets it by multicast to the region (loss seen by
    /// many), and requests after a multicast are absorbed by it. Below the retry
    /// interval, so a requester whose repair was lost is answered when it asks again.
    public var repairAggregationWindow: Duration = .milliseconds(2)
    /// Sender-crash agreement, stronger than the seed's rule (see `SenderCrashRecovery`):
    /// every member keeps every packet it received until it is stable region-wide, not
    /// only its partition's share of the cooperative cache, and a departed sender's gap
    /// is given up only when every live member of the region said it does not hold it.
    /// So when a sender fails, the members that stay end with the same set of its
    /// messages, even where its caching partition lost one that another member
    /// delivered. It costs memory: a region of P partitions keeps P times the seed's
    /// share at each member (bounded all the same by the sender's window and
    /// `maximumTableSlots`). Off: the seed's rule, where a message reaches every member
    /// if a live member of its caching partition delivered it.
    public var survivorAgreement = true
    /// After installing a new view of a region, a node suspends multicast and recovery
    /// there until every member has installed it (its rings say so), for at most this
    /// long (see `ViewChangePause`); zero: no pause.
    public var viewChangePauseLimit: Duration = .milliseconds(200)
    /// The most partition leaders on one ring (see `LeaderHierarchy`). A region with
    /// more partitions than this puts its partition leaders on rings of at most this
    /// many, their leaders on rings of their own, and so on up to one region ring: a
    /// round's information reaches the region leader in time that grows with the log of
    /// the region's size, not with its size. Zero: one ring of every partition leader,
    /// whatever the region's size (two levels, as the seed has it).
    public var leaderRingFanout = 32
    /// Pull attempts at caching peers between two asks of the sender itself (before the
    /// first, in a region of more than `senderFirstUpToMembers` members).
    public var peerAttemptsBeforeSender = 2
    /// In a region of at most this many members, a node asks the sender first for a
    /// missing packet, then (if that ask goes unanswered) `peerAttemptsBeforeSender`
    /// times caching peers, and so on; in a larger one, caching peers first. Peers are
    /// still asked in a small region: a sender that crashed is asked in vain until the
    /// membership service excludes it.
    ///
    /// In a small region the sender's share of the requests is bounded by the region's
    /// size, it holds every packet it sent, and it folds concurrent requests for a
    /// packet into one multicast (`aggregatesRepairs`); a caching peer asked for a
    /// packet just lost is often behind the node that asks. Under 5% random loss with
    /// four receivers, asking the sender first kept 0.73 of the loss-free throughput,
    /// against 0.62 asking peers first (medians of three, one sitting: `bench/README.md`,
    /// "Loss, sixth pass"). In a region of hundreds, asking the sender would be the
    /// convoy the cooperative cache exists to prevent. Zero: peers first in every region.
    public var senderFirstUpToMembers = 16
    /// Out-of-order packets held per node awaiting a gap repair.
    public var maximumOutOfOrderPackets = 65_536
    /// Retransmissions queued per node awaiting the link.
    public var maximumPendingRetransmissions = 8_192
    /// How far beyond its contiguous prefix a node accepts a sequence number (in a
    /// packet, a token or a sender's status). Senders never get further ahead than their
    /// window, so this only stops forged or corrupt numbers from making a node track
    /// billions of gaps.
    public var maximumSequenceJump = 65_536
    /// Streams (sender and region pairs) a node keeps at most; packets that would open
    /// more are dropped and counted.
    public var maximumStreams = 4_096
    /// Packets from unknown senders or regions held while a view change may be under way.
    public var maximumUnknownPackets = 1_024
    /// Slots (4 bytes each) that the streams' packet tables may take together beyond
    /// their initial size: a table spans the numbers it holds, so packets far apart in
    /// many streams would otherwise cost memory out of proportion to the packets. A
    /// packet that would need more is not cached, or (ahead of a gap) dropped, counted
    /// in `outOfOrderDropped`, and asked for again. 16M slots: 64 MB.
    public var maximumTableSlots = 1 << 24
    /// After this node re-registers with a GMS (which may be a new one, rebuilding its
    /// views as nodes come back), how long its unacknowledged messages of that time wait
    /// for the groups' earlier members to reappear, to be carried to them, before they
    /// count as done without those still missing (crashed meanwhile, or gone).
    public var restartCarryGrace: Duration = .seconds(10)
    /// Suspicion on the data path: a ring member that answers none of the probes its
    /// leader sends after this many timed-out rounds in a row, over at least
    /// `suspectAfter`, is reported to the GMS as a suspect (0: never report). Never on a
    /// single timeout; and below the GMS's heartbeat timeout by default, so a node that
    /// is cut off on the data path only is found before it has stalled its regions long.
    public var suspectAfterTimeouts = 3
    /// See `suspectAfterTimeouts`. Longer than a freeze the protocol rides out (a member
    /// that answers late is cleared).
    public var suspectAfter: Duration = .seconds(3)

    /// The defaults: they suit regions of up to thousands of nodes on one LAN.
    public init() {}

    /// Checks every setting.
    /// - Throws: `ConfigurationError` naming the first that cannot work.
    public func validate() throws(ConfigurationError) {
        guard (64...65_000).contains(maximumFragmentBytes) else {
            throw ConfigurationError("fragment size must be 64...65000 bytes, got \(maximumFragmentBytes)")
        }
        guard maximumMessageBytes >= 1, maximumMessageBytes <= maximumFragmentBytes * Int(UInt16.max) else {
            throw ConfigurationError("maximum message size must be 1...\(maximumFragmentBytes * Int(UInt16.max)) bytes")
        }
        let largestData = maximumFragmentBytes + max(DataPacket.headerBytes, DataPacket.hybridHeaderBytes + RegionHeader.bytes)
        guard maximumPacketBytes >= largestData, maximumPacketBytes <= 65_507 - 32 else {
            throw ConfigurationError("maximum packet size must be \(largestData)...65475 bytes (a fragment of \(maximumFragmentBytes) bytes plus headers), got \(maximumPacketBytes)")
        }
        guard RequestPacket.headerBytes + recoveryRequestsPerRound * 8 <= maximumPacketBytes else {
            throw ConfigurationError("\(recoveryRequestsPerRound) recovery requests per round do not fit one packet of \(maximumPacketBytes) bytes")
        }
        guard tokenTimeoutRoundTrips >= 1, initialTokenHopEstimate > .zero, tokenBytesPerDataByte > 0,
              tokenBytesPerSecondAllowance >= 0, tokenBytesPerSecondAllowance.isFinite else {
            throw ConfigurationError("token timeout round trips, hop estimate and token budget must be positive, the token allowance not negative")
        }
        guard windowMessages >= 1, windowBytes >= maximumMessageBytes else {
            throw ConfigurationError("the window must hold at least one message of the maximum size")
        }
        guard windowMessages <= Self.largestWindowMessages, windowBytes <= Self.largestWindowBytes else {
            throw ConfigurationError("the window must be at most 8388608 messages and 256 GiB, got \(windowMessages) messages, \(windowBytes) bytes")
        }
        guard busyTokenInterval > .zero, idleTokenInterval >= busyTokenInterval else {
            throw ConfigurationError("token intervals must be positive, busy <= idle")
        }
        guard messagesPerTokenRound >= 1 else { throw ConfigurationError("messages per token round must be at least 1") }
        guard redundantTokenRounds >= 0 else {
            throw ConfigurationError("redundant token rounds must not be negative, got \(redundantTokenRounds)")
        }
        guard tokenTimeoutIntervals >= 2, recoveryRequestsPerRound >= 1 else {
            throw ConfigurationError("token timeout must be at least 2 intervals and recovery at least 1 request per round")
        }
        guard peerAttemptsBeforeSender >= 0, senderFirstUpToMembers >= 0 else {
            throw ConfigurationError("peer attempts before the sender and the sender-first region size cannot be negative")
        }
        guard repairAggregationWindow >= .zero, repairAggregationWindow < requestRetryInterval || requestRetryInterval == .zero else {
            throw ConfigurationError("the repair aggregation window must be shorter than the request retry interval")
        }
        guard gapGracePeriod >= .zero, tailGracePeriod >= .zero, requestRetryInterval >= .zero, pauseAllowance >= .zero else {
            throw ConfigurationError("grace periods, the request retry interval and the pause allowance cannot be negative")
        }
        guard maximumSequenceJump >= windowMessages else {
            throw ConfigurationError("the maximum sequence jump (\(maximumSequenceJump)) must be at least the window (\(windowMessages) messages)")
        }
        guard suspectAfterTimeouts >= 0, suspectAfter >= .zero else {
            throw ConfigurationError("suspicion settings cannot be negative")
        }
        guard leaderRingFanout == 0 || leaderRingFanout >= 2 else {
            throw ConfigurationError("the leader ring fanout must be 0 (one ring) or at least 2, got \(leaderRingFanout)")
        }
        guard viewChangePauseLimit >= .zero else { throw ConfigurationError("the view change pause limit cannot be negative") }
        guard restartCarryGrace >= .zero else { throw ConfigurationError("the restart carry grace cannot be negative") }
        guard maximumTableSlots >= 0 else { throw ConfigurationError("maximum table slots cannot be negative") }
        guard maximumStreams >= 1 else { throw ConfigurationError("maximum streams must be at least 1") }
        guard maximumOutOfOrderPackets >= 1, maximumPendingRetransmissions >= 1, maximumUnknownPackets >= 0 else {
            throw ConfigurationError("buffer bounds must be positive")
        }
    }
}
