/// One node's part of QSM's dissemination and recovery protocol (section 4.2.1 B-C), as a
/// state machine with no I/O, no clock and no randomness of its own: its driver (the
/// simulator, or the event core) feeds it membership, publications, packets and the time,
/// pulls datagrams from it when a link can take one, collects deliveries, and calls
/// `inputCaughtUp(now:)` whenever it has handed over everything that had arrived (missing
/// tails are asked for only then).
///
/// Sending to a group is one transmission per region of the group's view, each numbered
/// in the sender's sequence for that region. Receivers find gaps, recover, and clean up by
/// those numbers alone. Two levels of token rings (partitions, then partition leaders)
/// aggregate what every member holds; the region leader acknowledges to senders, members
/// of one partition per message cache it until it is stable, and gaps are pulled from
/// caching peers picked at random, or NAKed to the sender, at the pace of the tokens.
package final class ProtocolNode {
    package let id: NodeID
    package let configuration: ProtocolConfiguration
    /// `configuration.pauseAllowance` in nanoseconds, read on every event (a `Duration`
    /// costs 128-bit arithmetic to convert: 2-3% of a receiver's time, perf showed).
    private let pauseAllowanceNanoseconds: Int64
    /// `configuration.busyTokenInterval` in nanoseconds (read for every data packet).
    let busyTokenIntervalNanoseconds: Int64
    @exclusivity(unchecked) package internal(set) var statistics = ProtocolStatistics()

    // Stored properties are `@exclusivity(unchecked)`: this state is confined to one thread
    // and never accessed overlappingly; the runtime's dynamic checks cost about 5% of a
    // receiver's CPU (perf, `qsm-bench run`).
    @exclusivity(unchecked) var random: SplitMix64
    @exclusivity(unchecked) var now = Instant.zero
    /// The clock of recovery's grace periods and retries: it follows `now`, except that
    /// a pause between two events (the process frozen or descheduled) counts for at most
    /// `pauseAllowance`. What arrived during a pause is still unread in the sockets, and
    /// asking for it again the moment the node runs would only duplicate it.
    @exclusivity(unchecked) var runningNow = Instant.zero
    /// The node paused (an event came longer than `pauseAllowance` after the one before)
    /// and the driver has not yet said its input caught up: what it asked for before the
    /// pause may be in its socket backlog, so nothing is asked again until then.
    @exclusivity(unchecked) var pausedSinceInput = false
    // Membership.
    @exclusivity(unchecked) var regions: [RegionID: RegionView] = [:] { didSet { lastRegionView = nil; lastRegionSend = nil } }
    @exclusivity(unchecked) var groups: [GroupID: GroupView] = [:] { didSet { outsideRegionMembers.removeAll() } }
    /// For regions this node is not in: the fewest members of a group mapped to each,
    /// worked out once per change of the group views (see `multicastRepairRequesters`).
    @exclusivity(unchecked) var outsideRegionMembers: [RegionID: Int] = [:]
    @exclusivity(unchecked) var joinedView: [RegionID: UInt64] = [:] { didSet { lastJoined = nil } }
    @exclusivity(unchecked) var foundingMember: Set<RegionID> = [] { didSet { lastJoined = nil } }
    /// The view this node joined the last region a packet came in, if it did not found
    /// it (forgotten when either table changes): one region's packets in a row cost no
    /// lookup.
    @exclusivity(unchecked) var lastJoined: (region: RegionID, view: UInt64?)?
    // Receiving.
    @exclusivity(unchecked) var streams: [StreamKey: ReceiveStream] = [:] { didSet { lastStream = nil } }
    /// The stream the last data packet went to (forgotten whenever `streams` changes):
    /// a stream in full flow is found without hashing.
    @exclusivity(unchecked) var lastStream: (key: StreamKey, stream: ReceiveStream)?
    /// The same for a region's installed view number (forgotten when views are installed).
    @exclusivity(unchecked) var lastRegionView: (region: RegionID, view: UInt64)?
    /// The sender and group of the last delivery, and their counter: deliveries of one
    /// sender and group in a row raise it without a lookup.
    @exclusivity(unchecked) var deliveryRun: (key: DeliveryKey, stream: DeliveryStream)?
    /// Packets and bytes arriving in one region in a row, added to `arrivals` when
    /// another region's come or the counts are read.
    @exclusivity(unchecked) var arrivalRun: (region: RegionID, arrivals: Arrivals)?
    /// What `streams` hold in all, kept by the streams themselves.
    let heldTally = HeldBytesTally()
    @exclusivity(unchecked) var unknownPackets = RingBuffer<[UInt8]>(initialCapacity: 16)
    /// Deliveries waiting to be taken, each moved out when taken (an array read at a
    /// cursor copied each one out and released it again when emptied: four
    /// reference-count operations per message).
    @exclusivity(unchecked) var deliveries = RingBuffer<ProtocolDelivery>(initialCapacity: 256)
    /// Per sender and group, the last sequence number delivered, in a box raised in
    /// place: a delivery of another sender or group than the last costs one lookup.
    @exclusivity(unchecked) var lastDelivered: DeliveryStreamTable
    /// The driver's hint to the processor's cache, if it gives one (see `CacheHint`).
    /// Called with the delivery stream a data packet will update, before the packet is
    /// decoded (with thousands of groups its line is cold; the packet is not verified yet,
    /// so a forged header names a wrong line, no more), and with what removing stable
    /// packets will touch a few packets ahead (`SequencedPackets.removeThrough`).
    @exclusivity(unchecked) package var cacheHint: CacheHint?
    /// Senders whose stream waits to learn where this node's debt begins (DebtStart).
    @exclusivity(unchecked) var debtQueries: [StreamKey: DebtQuery] = [:]
    @exclusivity(unchecked) var heldForDebt = 0
    // Sending.
    @exclusivity(unchecked) var sendQueue = RingBuffer<OutgoingMessage>(initialCapacity: 64)
    @exclusivity(unchecked) var regionSend: [RegionID: RegionSendState] = [:] { didSet { lastRegionSend = nil } }
    /// Where a region's sequence had got to when its send state was dropped (the region
    /// left every view this node had): sending there again continues from it. Numbering
    /// from 1 again reused sequence numbers the region's members and leader still held,
    /// and an acknowledgement from the old numbering stopped every later one (a swarm
    /// seed's sender waited forever). At most `retiredSendSequencesKept` regions.
    @exclusivity(unchecked) var retiredSendSequences: [RegionID: UInt64] = [:]
    static let retiredSendSequencesKept = 4_096
    /// The region the last fragment was numbered in, its state, and whether this node is
    /// a member (forgotten when either table changes): a sender to one region numbers
    /// its packets without two hashes each (1.7% of a 100-byte run, perf showed).
    @exclusivity(unchecked) var lastRegionSend: (region: RegionID, state: RegionSendState, member: Bool)?
    /// Per group: what publishing needs. Kept when a group leaves the views, so that its
    /// sequence numbers continue if it comes back.
    @exclusivity(unchecked) var publishTargets: GroupIDTable<PublishTarget>
    @exclusivity(unchecked) var nextMessageID: UInt64 = 1
    /// Sent messages kept while their group is out of view (a restarting GMS), to be
    /// carried into its regions when it is back (see `LosslessReconfiguration`).
    @exclusivity(unchecked) var orphans: [OutgoingMessage] = []
    /// Messages every region acknowledged, one of them from a newer view than the message
    /// was sent in, waiting for views as new (see `acknowledgedUnderNewerView`).
    @exclusivity(unchecked) var viewChecks: [OutgoingMessage] = []
    /// Groups the application left (or stopped publishing to): their messages are given
    /// up once the group is out of view, not kept (forgotten when it is back in view).
    @exclusivity(unchecked) var abandonedGroups: Set<GroupID> = []
    /// Per group this node is a member of: the group view its membership began with, 0
    /// if before a restarted GMS's views. Changes bump `memberSinceEpoch`.
    @exclusivity(unchecked) var memberSince: [GroupID: UInt64] = [:]
    @exclusivity(unchecked) var memberSinceEpoch = 0
    /// After a re-registration (`membershipRestarting`): per group, the members of its
    /// last view before that have not reappeared in a view since, and until when the
    /// messages of that time wait for them (`restartHeld`, acknowledged by every region
    /// but kept to be carried to them when they reappear).
    @exclusivity(unchecked) var awaitedAfterRestart: [GroupID: Set<NodeID>] = [:]
    @exclusivity(unchecked) var restartHoldUntil: Instant?
    /// When holes are next checked between token visits (see `recoverBetweenVisits`).
    @exclusivity(unchecked) var nextRecoveryCheck: Instant?
    @exclusivity(unchecked) var restartHeld: [OutgoingMessage] = []
    /// Messages every region acknowledged, kept for reuse (no allocation per publication).
    @exclusivity(unchecked) var retiredMessages = RingBuffer<OutgoingMessage>(initialCapacity: 64)
    /// As many as the window holds: fewer, and a full window's worth of publications
    /// would allocate again.
    var retiredMessagesKept: Int { max(4_096, configuration.windowMessages) }
    /// Whether the payloads of acknowledged messages are kept for the driver to reuse
    /// (`takeReleasedPayload()`); off unless a driver asks (the simulator does not).
    @exclusivity(unchecked) package var keepsReleasedPayloads = false
    /// The application is behind (its driver stopped reading data meanwhile): this node
    /// asks for nothing it misses until it catches up. Retransmissions come on the
    /// control path, which is still read, and would pile up deliveries without bound
    /// while the application takes them at a trickle (a slow consumer's node held 400 MB).
    @exclusivity(unchecked) package var recoverySuspended = false
    @exclusivity(unchecked) var releasedPayloads = RingBuffer<[UInt8]>(initialCapacity: 64)

    /// The payload of a message every region acknowledged, for the publisher to write a
    /// later message into (with `keepsReleasedPayloads`).
    package func takeReleasedPayload() -> [UInt8]? { releasedPayloads.popFirst() }

    /// Arrays of delivered payloads the driver handed back (`recyclePayload`), which
    /// received payloads are decoded into.
    @exclusivity(unchecked) var payloadSpares: PayloadSpares
    /// Reused by each recovery check for the missing numbers due (see `GapRecovery`).
    @exclusivity(unchecked) var recoveryScratch: [UInt64] = []
    /// Buffers the token rounds reuse for their sorted walks and lookups, so that a round
    /// allocates nothing in steady state but its token. Each user takes the buffer out
    /// (leaving an empty one) and puts it back, so a nested use only costs an allocation.
    @exclusivity(unchecked) var regionScratch: [RegionID] = []
    /// The message whose last fragment this node, a member, is looping back to itself
    /// (set only during that call): it is delivered as the array it was published in,
    /// not joined from its fragments into a new one.
    @exclusivity(unchecked) var loopedMessage: (sequence: UInt64, payload: [UInt8])?
    @exclusivity(unchecked) var streamScratch: [(key: StreamKey, stream: ReceiveStream)] = []
    @exclusivity(unchecked) var senderScratch: [NodeID] = []
    @exclusivity(unchecked) var recordIndexScratch: [NodeID: Int] = [:]
    @exclusivity(unchecked) var recordScratch: [NodeID: TokenRecord] = [:]

    /// Hands back the array of a delivery the application is done with, for a later
    /// payload to be decoded into (see `PayloadSpares`).
    package func recyclePayload(_ bytes: consuming [UInt8]) { payloadSpares.put(bytes) }
    /// See `PayloadSpares.spareAddress(ahead:)`.
    package func spareAddress(ahead: Int) -> UnsafeRawPointer? { payloadSpares.spareAddress(ahead: ahead) }
    /// See `PayloadSpares.prefetchPlan(datagramBytes:)`.
    package func sparePrefetchPlan(datagramBytes: Int) -> (offset: Int, count: Int, bytes: Int) {
        payloadSpares.prefetchPlan(datagramBytes: datagramBytes)
    }
    @exclusivity(unchecked) var unacknowledgedMessages = 0
    @exclusivity(unchecked) var unacknowledgedBytes = 0
    @exclusivity(unchecked) var lastDataSentAt = Instant.zero
    /// New data packets, and their payload bytes, received per region (pace token rounds).
    @exclusivity(unchecked) var arrivals: [RegionID: Arrivals] = [:]
    /// Per region: this node's partition and the number of partitions (which sequence
    /// numbers it caches), from the current view.
    @exclusivity(unchecked) var cachePartition: [RegionID: (index: Int, count: Int)] = [:] { didSet { lastCacheShare = nil } }
    /// The caching layouts of the latest views of each region this node installed
    /// (oldest first): a packet is cached by the partitions of the view it was sent in,
    /// and a crashed sender's packets are sought there.
    @exclusivity(unchecked) var cacheLayouts: [RegionID: [CacheLayout]] = [:] { didSet { lastCacheShare = nil } }
    /// `caches`'s last answer's parts (see there).
    @exclusivity(unchecked) var lastCacheShare: (region: RegionID, view: UInt64, mine: Int?, count: Int)?
    @exclusivity(unchecked) var nextSenderStatusAt = Instant.zero
    /// Statuses sent since the last new data (they are spaced further apart each time).
    @exclusivity(unchecked) var senderStatusRepeats = 0
    // Output, pulled by the link.
    @exclusivity(unchecked) var control = RingBuffer<ControlItem>(initialCapacity: 16)
    /// The remaining parts of a token too large for one datagram, sent before anything else.
    @exclusivity(unchecked) var tokenPartsOut = RingBuffer<(token: TokenPacket, to: NodeID, copy: Bool)>(initialCapacity: 4)
    /// Tokens arriving in parts, per ring, until every part is in.
    @exclusivity(unchecked) var tokenAssembly: [TokenAssemblyKey: TokenAssembly] = [:]
    /// The last token this node acted on per ring (view, round, start): a redundant copy
    /// of it is dropped.
    @exclusivity(unchecked) var tokensHandled: [TokenAssemblyKey: TokenIdentity] = [:]
    /// The remaining region headers of a hybrid transmission too large for one datagram.
    @exclusivity(unchecked) var hybridHeadersOut = RingBuffer<(template: DataPacket, headers: ArraySlice<RegionHeader>)>(initialCapacity: 4)
    /// Messages whose every region acknowledged them (or that needed no region), not
    /// yet taken by the driver: what flow control gives back.
    @exclusivity(unchecked) var releasedMessages = 0
    @exclusivity(unchecked) var releasedBytes = 0
    @exclusivity(unchecked) var retransmissions = RingBuffer<(to: ProtocolDestination, key: StreamKey, sequence: UInt64)>(initialCapacity: 16)
    /// Packets retransmitted within the aggregation window, and in the order they were
    /// (see `RepairAggregation`).
    @exclusivity(unchecked) var recentRepairs: [RepairKey: RecentRepair] = [:]
    @exclusivity(unchecked) var repairOrder = RingBuffer<(RepairKey, Instant)>(initialCapacity: 16)
    /// Per stream, the run this node last asked for on behalf of its partition, and when.
    @exclusivity(unchecked) var partitionAsks: [StreamKey: (run: ClosedRange<UInt64>, at: Instant)] = [:]
    /// Requests for packets this node caches but does not hold yet, answered once it
    /// does, and in the order they came (see `ReplicaRecovery`).
    @exclusivity(unchecked) var awaitedRepairs: [RepairKey: AwaitedRepair] = [:]
    @exclusivity(unchecked) var awaitedOrder = RingBuffer<(RepairKey, Instant)>(initialCapacity: 16)
    // Tokens.
    @exclusivity(unchecked) var partitionRounds: [RegionID: LeaderRound] = [:] { didSet { roundsChanges &+= 1 } }
    /// Each region's rings, for the view they were built from (see `partitionRing`).
    @exclusivity(unchecked) var rings: [RegionID: RegionRings] = [:]
    @exclusivity(unchecked) var regionRounds: [RegionID: LeaderRound] = [:] { didSet { roundsChanges &+= 1 } }
    /// The leader rings this node leads below each region ring, by level.
    @exclusivity(unchecked) var leaderRounds: [RegionID: [Int: LeaderRingState]] = [:] { didSet { roundsChanges &+= 1 } }
    /// Raised by every change to the three tables of rounds above.
    @exclusivity(unchecked) var roundsChanges: UInt64 = 0
    /// The region, time and `roundsChanges` of the last `quickenRounds`: another packet
    /// of the same batch (same time, no round changed since) would find nothing to do.
    @exclusivity(unchecked) var lastQuickened: (region: RegionID, at: Instant, changes: UInt64)?
    /// Each led partition's last completed round, and whether each record covered all.
    @exclusivity(unchecked) var partitionAggregate: [RegionID: [NodeID: (record: TokenRecord, complete: Bool)]] = [:]
    /// Nodes that left a view of one of this node's regions (crashed, or moved away).
    @exclusivity(unchecked) var departed: Set<NodeID> = []
    /// For each departed node and each region this node was in when it saw the
    /// departure: the first view of the region the departed node cannot have numbered
    /// messages in (see `DebtStart`).
    @exclusivity(unchecked) var departedBefore: [NodeID: [RegionID: UInt64]] = [:]
    /// Senders of a region whose messages this node is owed none of: a peer said the
    /// sender was gone before this node joined (bounded by `maximumStreams`).
    @exclusivity(unchecked) var owedNothing: Set<StreamKey> = []
    /// Regions whose token visit left missing tails for the next `inputCaughtUp(now:)`.
    @exclusivity(unchecked) var tailsAwaitingInput: Set<RegionID> = []
    @exclusivity(unchecked) var outOfOrderTotal = 0
    @exclusivity(unchecked) var announcements: [RegionID: [NodeID: (stable: UInt64, rounds: Int)]] = [:]
    /// What this node, as region leader, last acknowledged per sender.
    @exclusivity(unchecked) var lastAcknowledged: [RegionID: [NodeID: UInt64]] = [:]
    // Suspicion on the data path (see `DataPathSuspicion`).
    @exclusivity(unchecked) var probeRecords: [NodeID: ProbeRecord] = [:]
    @exclusivity(unchecked) var nextProbeNonce: UInt64 = 0
    /// When another node last answered one of this node's probes.
    @exclusivity(unchecked) var lastProbeAnswer: Instant?
    @exclusivity(unchecked) var suspects: [NodeID] = []
    /// Per region where this node is a partition member, not its leader: when to probe
    /// the leader if no token comes before (see `watchLeaders`).
    @exclusivity(unchecked) var leaderWatch: [RegionID: Instant] = [:]
    // Reconfiguration (see `ViewChangePause`).
    /// Regions whose multicast and recovery wait for a new view to be installed everywhere.
    @exclusivity(unchecked) var viewChangePauses: [RegionID: ViewChangePauseState] = [:]
    /// Per region: the last view known to be installed by every member.
    @exclusivity(unchecked) var settledView: [RegionID: UInt64] = [:]
    /// Per led partition: the last view a round of it completed in.
    @exclusivity(unchecked) var partitionSettledView: [RegionID: UInt64] = [:]

    enum ControlItem {
        /// `contribute`: add this node's state as the token leaves (members do; a leader
        /// adds its own when the token comes back, so records that others append later
        /// include it too).
        case token(TokenPacket, to: NodeID, contribute: Bool)
        case acknowledgement(AcknowledgementPacket, to: NodeID)
        case request(RequestPacket, to: NodeID)
        case senderStatus(RegionID)
        case viewStartQuery(ViewStartQueryPacket, to: NodeID)
        case viewStart(SenderStatusPacket, to: NodeID)
        case probe(ProbePacket, to: NodeID)
    }

    struct LeaderRound {
        var round: UInt64 = 0
        /// When this ring's current view was installed here, and the last view whose
        /// rounds have said it is installed everywhere (see `ViewChangePause`).
        var viewSince = Instant.zero
        var announcedSettledView: UInt64 = 0
        var inProgress = false
        var startedAt = Instant.zero
        var nextStart = Instant.zero
        var busy = true
        /// The adaptive interval between rounds, and what it was measured against.
        var paceNanoseconds: Int64 = 0
        var lastCompletion = Instant.zero
        /// Whether a round of this ring has completed since it was set up.
        var hasCompleted = false
        var arrivalsAtLastCompletion = 0
        var arrivalBytesAtLastCompletion = 0
        /// Nodes on the ring this round, and the time a hop took on earlier rounds (zero
        /// until one completes): the round's timeout follows both.
        var ringLength = 1
        var hopEstimateNanoseconds: Int64 = 0
        /// Before any round completed: the guess, doubled by each timeout.
        var unmeasuredHopNanoseconds: Int64 = 0
        /// The interval the token budget asks for (`tokenBytesPerDataByte`).
        var budgetNanoseconds: Int64 = 0
        /// Slowed to the idle pace because nothing was unstable: new data wakes it.
        var idle = false
        /// Rounds still to send with two copies per hop, after a timeout.
        var redundantRounds = 0
        /// Copies per hop of the round under way.
        var copies: UInt8 { redundantRounds > 0 ? TokenPacket.maximumCopies : 1 }

        /// Brings the next round forward to `soon` if it was to start later and, with
        /// `idleOnly`, had slowed for idleness (a round spaced out by the token budget is
        /// not idle: waking it on every packet would undo the budget). Whether it did.
        mutating func quicken(to soon: Instant, idleOnly: Bool) -> Bool {
            guard !inProgress, nextStart > soon, !idleOnly || paceNanoseconds == 0 || idle else { return false }
            nextStart = soon
            return true
        }

        /// Brings the next round forward to `now`, or to the earliest the pace's floor
        /// and the token budget allow after the last round (`floor` is the busy
        /// interval): a sender waits on this ring, whatever the pace had been. Whether it did.
        mutating func hasten(now: Instant, floor: Int64) -> Bool {
            let start = max(now, lastCompletion.advanced(byNanoseconds: max(floor, budgetNanoseconds)))
            guard !inProgress, nextStart > start else { return false }
            nextStart = start
            return true
        }
    }

    /// - Parameter seed: seeds the node's choices of peers to recover from.
    package init(id: NodeID, configuration: ProtocolConfiguration, seed: UInt64) throws(ConfigurationError) {
        try configuration.validate()
        self.id = id
        self.configuration = configuration
        pauseAllowanceNanoseconds = configuration.pauseAllowance.totalNanoseconds
        busyTokenIntervalNanoseconds = configuration.busyTokenInterval.totalNanoseconds
        random = SplitMix64(seed: seed ^ id.value &* 0x9E37_79B9_7F4A_7C15)
        // The tables' seeds come from a stream of their own: the choices of peers stay
        // what they were for a given seed.
        var tableSeeds = SplitMix64(seed: seed ^ id.value &* 0xC2B2_AE3D_27D4_EB4F ^ 0x5851_F42D_4C95_7F2D)
        lastDelivered = DeliveryStreamTable(seed: tableSeeds.next())
        publishTargets = GroupIDTable(seed: tableSeeds.next())
        heldTally.tableSlotLimit = configuration.maximumTableSlots
        payloadSpares = PayloadSpares(limit: 32_768, maximumFragmentBytes: configuration.maximumFragmentBytes)
    }

    /// Every event enters here with its time: `now` follows it, `runningNow` too but
    /// counts a pause since the previous event for at most `pauseAllowance`.
    func enter(_ time: Instant) {
        let elapsed = max(0, time.nanoseconds(since: now))
        if elapsed > pauseAllowanceNanoseconds { pausedSinceInput = true }
        runningNow = runningNow.advanced(byNanoseconds: min(elapsed, pauseAllowanceNanoseconds))
        now = time
    }
}


/// A region view's token rings as this node sees them: its partition's (leader first),
/// the leader rings it is on below the region ring (see `LeaderHierarchy`), and the
/// region ring (region leader first).
struct RegionRings {
    var view: UInt64
    var partition: (index: Int, members: [NodeID])?
    /// The region ring: every partition leader in a region of at most
    /// `leaderRingFanout` partitions, else the leaders of the top level's rings.
    var leaders: [NodeID]
    /// The rings below the region ring this node is on, lowest level first.
    var levels: [LeaderRing] = []
    /// Levels of leader rings, the region ring's included (1: the seed's two levels).
    var depth = 1
    /// Each level's share of the token budget, partition rings first, the region ring
    /// last (see `LeaderHierarchy.budgetHops`).
    var budgetHops: [Double] = [1, 1]
}
