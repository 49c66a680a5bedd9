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
    package internal(set) var statistics = ProtocolStatistics()

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
    @exclusivity(unchecked) var deliveries: [ProtocolDelivery] = []
    @exclusivity(unchecked) var deliveryCursor = 0
    /// Per sender and group, the last sequence number delivered, in a box raised in
    /// place: a delivery of another sender or group than the last costs one lookup.
    @exclusivity(unchecked) var lastDelivered: DeliveryStreamTable
    /// Senders whose stream waits to learn where this node's debt begins (DebtStart).
    @exclusivity(unchecked) var debtQueries: [StreamKey: DebtQuery] = [:]
    @exclusivity(unchecked) var heldForDebt = 0
    // Sending.
    @exclusivity(unchecked) var sendQueue = RingBuffer<OutgoingMessage>(initialCapacity: 64)
    @exclusivity(unchecked) var regionSend: [RegionID: RegionSendState] = [:] { didSet { lastRegionSend = nil } }
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
    package var keepsReleasedPayloads = false
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
    @exclusivity(unchecked) var payloadSpares = PayloadSpares(limit: 32_768)
    /// Reused by each recovery check for the missing numbers due (see `GapRecovery`).
    @exclusivity(unchecked) var recoveryScratch: [UInt64] = []

    /// Hands back the array of a delivery the application is done with, for a later
    /// payload to be decoded into (see `PayloadSpares`).
    package func recyclePayload(_ bytes: [UInt8]) { payloadSpares.put(bytes) }
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
    }

    /// Every event enters here with its time: `now` follows it, `runningNow` too but
    /// counts a pause since the previous event for at most `pauseAllowance`.
    func enter(_ time: Instant) {
        let elapsed = max(0, time.nanoseconds(since: now))
        if elapsed > pauseAllowanceNanoseconds { pausedSinceInput = true }
        runningNow = runningNow.advanced(byNanoseconds: min(elapsed, pauseAllowanceNanoseconds))
        now = time
    }

    // MARK: Membership

    /// Installs the current views of this node's regions and of the groups it belongs or
    /// publishes to (what the GMS sent it). Rings are rebuilt from the new views; tokens of
    /// older views are dropped when they arrive.
    package func installMembership(regions newRegions: [RegionView], groups newGroups: [GroupView], now: Instant) {
        installMembership(regions: newRegions, groups: Dictionary(uniqueKeysWithValues: newGroups.map { ($0.id, $0) }), now: now)
    }

    /// `groups` keyed by id, as the membership client keeps them: taken as they are, so
    /// node and client share one copy (copy-on-write) instead of each keeping its own.
    package func installMembership(regions newRegions: [RegionView], groups newGroups: [GroupID: GroupView], now: Instant) {
        enter(now)
        // Rebuilt from the new views when next needed (a restarted GMS may reuse a region
        // id and view number for other members).
        rings = [:]
        var next: [RegionID: RegionView] = [:]
        for region in newRegions where region.members.contains(where: { $0.id == id }) {
            next[region.id] = region
            if regions[region.id] == nil {
                joinedView[region.id] = region.viewNumber
                if region.viewNumber == 1 { foundingMember.insert(region.id) }
            }
        }
        // Departures are seen only in regions this node stays in: leaving a region oneself
        // says nothing about who else is alive.
        for (regionID, old) in regions {
            guard let new = next[regionID] else { continue }
            let stillThere = Set(new.members.map(\.id))
            for member in old.members where !stillThere.contains(member.id) { departed.insert(member.id) }
        }
        // A sender of another region reaches this one as an outsider: its departure shows
        // only in the group views, where it was a member and is one no more (crashed, or
        // left). Without this its gaps here could never be abandoned.
        // (Sets filled view by view, not from one flattened array of every group's
        // members: with thousands of groups over few nodes that array was the larger.)
        var groupMembers = Set<NodeID>()
        // A sender that published without joining shows only in the groups' publisher
        // lists: gone from them (crashed, or stopped publishing), it is gone.
        var publishing = Set<NodeID>()
        for view in newGroups.values {
            groupMembers.formUnion(view.members)
            publishing.formUnion(view.publishers)
        }
        for view in groups.values where newGroups[view.id] != nil {
            for member in view.members where !groupMembers.contains(member) && !publishing.contains(member) {
                departed.insert(member)
            }
            for publisher in view.publishers where !groupMembers.contains(publisher) && !publishing.contains(publisher) {
                departed.insert(publisher)
            }
        }
        for region in next.values { for member in region.members { departed.remove(member.id) } }
        for publisher in publishing { departed.remove(publisher) }
        recordDepartures(previous: regions, next: next)
        for gone in regions.keys where next[gone] == nil {
            // Left the region: its streams and leadership go (cached copies with them).
            streams = streams.filter { $0.key.region != gone }
            owedNothing = owedNothing.filter { $0.region != gone }
            for key in debtQueries.keys where key.region == gone {
                heldForDebt -= debtQueries.removeValue(forKey: key)?.held.count ?? 0
            }
            outOfOrderTotal = streams.values.reduce(0) { $0 + $1.heldAhead }
            partitionRounds[gone] = nil
            regionRounds[gone] = nil
            leaderRounds[gone] = nil
            partitionAggregate[gone] = nil
            tokenAssembly = tokenAssembly.filter { $0.key.region != gone }
            tokensHandled = tokensHandled.filter { $0.key.region != gone }
            partitionAsks = partitionAsks.filter { $0.key.region != gone }
            forgetAwaitedRepairs(in: gone)
            announcements[gone] = nil
            joinedView[gone] = nil
            // Coming back later is a new join: owed only what is sent from then on.
            foundingMember.remove(gone)
        }
        let previous = regions
        let previousTargets = Dictionary(publishTargets.entries.filter { $0.value.inView }.map { ($0.key, $0.value.regions) },
                                         uniquingKeysWith: { first, _ in first })
        regions = next
        cachePartition = [:]
        for region in next.values {
            let mine = region.partitions.firstIndex(where: { $0.members.contains(id) })
            if let mine { cachePartition[region.id] = (mine, region.partitions.count) }
            var layouts = cacheLayouts[region.id] ?? []
            if layouts.last?.view != region.viewNumber {
                // Older layouts matter only while some stream of the region has packets
                // not yet stable (a departed sender's gaps are sought by them). A settled
                // region keeps none: joins in a burst would otherwise keep 16 copies of a
                // large region's partitions at every member.
                let settled = !streams.contains { $0.key.region == region.id && ($0.value.isActive || !$0.value.cache.isEmpty) }
                if settled { layouts.removeAll() }
                layouts.append(CacheLayout(view: region.viewNumber, partitions: region.partitions, mine: mine))
                if layouts.count > CacheLayout.kept { layouts.removeFirst() }
                cacheLayouts[region.id] = layouts
            }
        }
        cacheLayouts = cacheLayouts.filter { next[$0.key] != nil }
        forgetProbes(keeping: Set(next.values.flatMap { $0.members.map(\.id) }))
        leaderWatch = leaderWatch.filter { next[$0.key]?.viewNumber == previous[$0.key]?.viewNumber }
        for region in next.values where leaderWatch[region.id] == nil { heardFromLeader(region) }
        let previousGroups = groups
        groups = newGroups
        updatePublishTargets()
        settledView = settledView.filter { next[$0.key] != nil }
        partitionSettledView = partitionSettledView.filter { next[$0.key] != nil }
        for region in regions.values {
            if leadsPartition(region), partitionRounds[region.id] == nil {
                partitionRounds[region.id] = LeaderRound(nextStart: now)
            } else if !leadsPartition(region) {
                partitionRounds[region.id] = nil
            }
            if region.regionLeader == id, regionRounds[region.id] == nil {
                regionRounds[region.id] = LeaderRound(nextStart: now)
            } else if region.regionLeader != id {
                regionRounds[region.id] = nil
            }
            // A new view restarts rounds at once (the old view's tokens are void); an
            // unchanged one (only some group changed) lets the rounds under way finish.
            if previous[region.id]?.viewNumber != region.viewNumber {
                partitionRounds[region.id]?.inProgress = false
                regionRounds[region.id]?.inProgress = false
            }
            updateLeaderRounds(region, newView: previous[region.id]?.viewNumber != region.viewNumber)
        }
        pauseForViewChanges(previous: previous)
        // Regions a sender's messages are waiting on that no longer exist: nobody is left
        // to acknowledge there (section 4.3.7, item 5). Their messages are carried into
        // the group's new regions, or kept until the group is back in view.
        let live = Set(regions.keys).union(groups.values.flatMap { $0.regions.map(\.id) })
        var displaced: [OutgoingMessage] = []
        for (region, state) in regionSend where !live.contains(region) {
            while let (_, message) = state.awaiting.popFirst() {
                message.unacknowledgedRegions -= 1
                displaced.append(message)
            }
            regionSend[region] = nil
        }
        carryUnacknowledged(previousTargets: previousTargets, previousRegions: previous, previousGroups: previousGroups,
                            displaced: displaced)
        updateAwaitedAfterRestart()
        updateMemberSince()
        // Packets that arrived early for a view now known.
        var held = unknownPackets
        unknownPackets = RingBuffer(initialCapacity: 16)
        while let bytes = held.popFirst() { receive(bytes, now: now) }
    }

    func leadsPartition(_ region: RegionView) -> Bool {
        region.partition(of: id)?.leader == id
    }

    func isPresent(_ node: NodeID, in region: RegionID) -> Bool {
        regions[region]?.members.contains { $0.id == node } ?? false
    }

    // MARK: Publishing

    /// Queues a message to a group, committed to the group's current view. Flow control
    /// is the driver's (`NodeMachine` admits a message only while its window has room);
    /// `unacknowledgedMessageCount` and `takeReleased()` are what it counts with.
    package func publish(group: GroupID, payload: [UInt8], now: Instant) -> PublishResult {
        enter(now)
        guard let target = publishTargets[group], target.inView else { return .rejected("not publishing to group \(group)") }
        guard payload.count <= configuration.maximumMessageBytes else {
            return .rejected("message of \(payload.count) bytes exceeds the maximum of \(configuration.maximumMessageBytes)")
        }
        target.lastSequence += 1
        target.publishedMessages += 1
        target.publishedBytes += payload.count
        let sequence = target.lastSequence
        let message: OutgoingMessage
        if var retired = retiredMessages.popFirst(), isKnownUniquelyReferenced(&retired) {
            retired.reuse(id: nextMessageID, group: group, groupView: target.viewNumber, groupSequence: sequence,
                          payload: payload, publishedAt: now, regions: target.regions)
            message = retired
        } else {
            message = OutgoingMessage(id: nextMessageID, group: group, groupView: target.viewNumber, groupSequence: sequence,
                                      payload: payload, publishedAt: now, regions: target.regions)
        }
        message.hybrid = target.hybrid
        nextMessageID += 1
        statistics.published += 1
        if message.regions.isEmpty {
            // A group with no members: nothing to send, nothing to wait for.
            statistics.acknowledged += 1
            releasedMessages += 1
            releasedBytes += payload.count
            return .accepted(groupSequence: sequence)
        }
        unacknowledgedMessages += 1
        unacknowledgedBytes += payload.count
        message.queued = true
        sendQueue.append(message)
        return .accepted(groupSequence: sequence)
    }

    /// Per group, the messages and bytes published to it (since `forgetPublications`).
    package func publications() -> [(group: GroupID, messages: Int, bytes: Int)] {
        var publications: [(group: GroupID, messages: Int, bytes: Int)] = []
        publications.reserveCapacity(publishTargets.count)
        for (group, target) in publishTargets.entries where target.publishedMessages > 0 {
            publications.append((group, target.publishedMessages, target.publishedBytes))
        }
        return publications
    }

    /// Counts the publications to `group` from zero again (the node left it).
    package func forgetPublications(to group: GroupID) {
        guard let target = publishTargets[group] else { return }
        target.publishedMessages = 0
        target.publishedBytes = 0
    }

    /// Messages published but not yet acknowledged by every region, and their bytes.
    package var unacknowledgedMessageCount: Int { unacknowledgedMessages }
    package var unacknowledgedByteCount: Int { unacknowledgedBytes }

    /// Messages (and their payload bytes) acknowledged by all their regions since the
    /// last call: the window they held is free again.
    package func takeReleased() -> (messages: Int, bytes: Int) {
        defer { releasedMessages = 0; releasedBytes = 0 }
        return (releasedMessages, releasedBytes)
    }

    /// Brings the publishing records in line with the group views. Groups with the same
    /// region list share one array, so thousands of groups over one region keep one
    /// list hot in the cache instead of thousands.
    func updatePublishTargets() {
        var shared = ArrayInterner<RegionReference>()
        for target in publishTargets.values { target.inView = false }
        // In id order: new targets are allocated in the order publications find them.
        for view in groups.values.sorted(by: { $0.id.value < $1.id.value }) {
            let regions = shared.intern(view.regions)
            let target = publishTargets[view.id] ?? PublishTarget()
            target.inView = true
            target.viewNumber = view.viewNumber
            target.regions = regions
            target.hybrid = view.hybridAddress != nil && regions.count > 1
            publishTargets[view.id] = target
        }
    }

    // MARK: Acknowledgements and requests

    func receiveAcknowledgement(_ ack: AcknowledgementPacket) {
        guard ack.sender == id, let state = regionSend[ack.region], ack.stable > state.acknowledged else { return }
        state.acknowledged = ack.stable
        // Everything in flight lies above the previous acknowledgement: the newly
        // acknowledged range is the front of the run.
        state.inFlight.removeThrough(ack.stable)
        while let first = state.awaiting.first, first.last <= ack.stable {
            _ = state.awaiting.popFirst()
            // Acknowledged by a newer view of the region than it was sent in: a member may
            // have left the region meanwhile, for another of the group's, without it.
            if ack.regionView > 0, let sent = first.message.regions.last(where: { $0.id == ack.region }),
               ack.regionView > sent.viewNumber {
                first.message.viewCheck.append((ack.region, ack.regionView))
            }
            regionAcknowledged(first.message)
        }
    }

    func regionAcknowledged(_ message: OutgoingMessage) {
        message.unacknowledgedRegions -= 1
        // Still to be sent somewhere (carried into new regions): not done yet.
        guard message.unacknowledgedRegions == 0, !message.queued else { return }
        if !message.viewCheck.isEmpty { return acknowledgedUnderNewerView(message) }
        release(message)
    }

    /// A message is done: acknowledged everywhere it went, or owed to nobody. One from
    /// before a re-registration waits while members of its group may still reappear.
    func release(_ message: OutgoingMessage) {
        if restartHoldUntil != nil, message.groupView == 0, !(awaitedAfterRestart[message.group]?.isEmpty ?? true) {
            restartHeld.append(message)
            return
        }
        unacknowledgedMessages -= 1
        unacknowledgedBytes -= message.payload.count
        releasedMessages += 1
        releasedBytes += message.payload.count
        statistics.acknowledged += 1
        statistics.acknowledgementLatencyNanoseconds += now.nanoseconds(since: message.publishedAt)
        // Reused by a later publication once nothing else refers to it (see `publish`).
        let payload = message.retire()
        if retiredMessages.count < retiredMessagesKept { retiredMessages.append(message) }
        if keepsReleasedPayloads, releasedPayloads.count < retiredMessagesKept { releasedPayloads.append(payload) }
    }

    func receiveSenderStatus(_ status: SenderStatusPacket) {
        guard let region = regions[status.region], status.maximumSequence >= 1 else { return }
        departed.remove(status.sender)
        // The sender is still waiting: the region leader repeats the last ACK in case it
        // was lost (a sender outside the region has no record in its tokens to prompt it).
        if region.regionLeader == id, let acknowledged = lastAcknowledged[status.region]?[status.sender], acknowledged > 0 {
            acknowledge(status.region, sender: status.sender, stable: acknowledged)
        }
        let key = StreamKey(sender: status.sender, region: status.region)
        if streams[key] == nil, !foundingMember.contains(status.region), let joined = joinedView[status.region],
           status.regionView > joined || debtQueries[key] != nil {
            // Where this node's debt begins is not known yet: ask (see DebtStart).
            return awaitDebtStart(key, joined: joined, packet: nil, retransmitted: false)
        }
        let start: UInt64
        if foundingMember.contains(status.region) {
            start = 1
        } else if let joined = joinedView[status.region], status.regionView < joined {
            // Everything up to here was sent before this node joined: none of it is owed.
            start = status.maximumSequence + 1
        } else {
            start = max(status.viewStartSequence, 1)
        }
        guard let stream = streams[key] ?? (hasRoomForNewStream() ? ReceiveStream(start: start, tally: heldTally) : nil) else { return }
        if learnMaximum(status.maximumSequence, in: stream) { quickenRounds(in: status.region) }
        streams[key] = stream
    }

    func receiveRequest(_ request: RequestPacket) {
        statistics.requestsReceived += 1
        if request.kind == .partitionPush { return receivePartitionPush(request) }
        let key = StreamKey(sender: request.sender, region: request.region)
        for sequence in request.sequences { queueRepair(sequence, of: key, for: request) }
        let lacking = notHeld(request)
        if !lacking.isEmpty {
            statistics.notHeldSent += 1
            control.append(.request(RequestPacket(kind: .notHeld, sender: request.sender, region: request.region,
                                                  requester: id, sequences: lacking), to: request.requester))
        }
    }

    // MARK: Output (pulled by the link)

    /// Whether the link should pull: something is waiting to be built and sent.
    package var hasOutput: Bool {
        !tokenPartsOut.isEmpty || !control.isEmpty || !retransmissions.isEmpty || !hybridHeadersOut.isEmpty
            || sendQueue.first.map { !headWaitsForViewChange($0) } ?? false
    }

    /// Builds the next datagram, freshest state first: control, then retransmissions,
    /// then new data. Nil when there is nothing to send.
    package func nextDatagram(now: Instant) -> ProtocolDatagram? {
        enter(now)
        if let (part, target, copy) = tokenPartsOut.popFirst() {
            var datagram = controlDatagram(.token(part), to: target)
            datagram.redundantCopy = copy
            return datagram
        }
        while let item = control.popFirst() {
            switch item {
            case .token(var token, let target, let contribute):
                if contribute { mergeOwnState(into: &token) }
                statistics.maximumTokenRecords = max(statistics.maximumTokenRecords, token.records.count)
                let queuedParts = tokenPartsOut.count
                splitIntoParts(&token, to: target)
                if token.copies > 1 { queueCopies(of: token, to: target, partsFrom: queuedParts) }
                return controlDatagram(.token(token), to: target)
            case .acknowledgement(let ack, let target):
                return controlDatagram(.acknowledgement(ack), to: target)
            case .request(let request, let target):
                return controlDatagram(.request(request), to: target)
            case .viewStartQuery(let query, let target):
                return controlDatagram(.viewStartQuery(query), to: target)
            case .viewStart(let answer, let target):
                return controlDatagram(.viewStart(answer), to: target)
            case .probe(let probe, let target):
                return controlDatagram(.probe(probe), to: target)
            case .senderStatus(let region):
                // Built now, from the freshest state; skipped if everything got acknowledged.
                guard let state = regionSend[region], !state.awaiting.isEmpty else { continue }
                let packet = ProtocolPacket.senderStatus(SenderStatusPacket(
                    sender: id, region: region, regionView: state.view, viewStartSequence: state.viewStartSequence,
                    maximumSequence: state.nextSequence - 1))
                statistics.controlPacketsSent += 1
                statistics.controlBytesSent += packet.encodedByteCount
                return ProtocolDatagram(destination: .region(region), packet: packet, isControl: true)
            }
        }
        while let (target, key, sequence) = retransmissions.popFirst() {
            if var packet = retransmittable(key, sequence) {
                statistics.retransmissionsSent += 1
                // Marked as multicast to the region only if it is (a cached copy keeps
                // the mark of the way it came here).
                packet.repairedToRegion = false
                if case .region = target {
                    statistics.multicastRepairs += 1
                    packet.repairedToRegion = true
                }
                return ProtocolDatagram(destination: target, packet: .data(packet, retransmitted: true), isControl: false)
            }
        }
        if let (template, headers) = hybridHeadersOut.popFirst() { return hybridDatagram(template, headers: headers) }
        return nextDataDatagram()
    }

    /// Queues the redundant copies of a token (its first part and the parts queued
    /// from `partsFrom` on): sent after the original, each in a datagram of its own.
    func queueCopies(of token: TokenPacket, to target: NodeID, partsFrom start: Int) {
        let end = tokenPartsOut.count
        for _ in 1..<Int(token.copies) {
            tokenPartsOut.append((token, target, true))
            for offset in start..<end { tokenPartsOut.append((tokenPartsOut[offset].token, target, true)) }
            statistics.redundantTokensSent += 1 + end - start
        }
    }

    /// Leaves in `token` the records of its first datagram and queues the other parts.
    func splitIntoParts(_ token: inout TokenPacket, to target: NodeID) {
        let perPart = TokenPacket.recordsPerDatagram(packetBytes: configuration.maximumPacketBytes)
        guard token.records.count > perPart else { return }
        let parts = (token.records.count + perPart - 1) / perPart
        for index in 1..<parts {
            var part = token
            part.records = Array(token.records[(index * perPart)..<min(token.records.count, (index + 1) * perPart)])
            part.part = UInt16(index)
            part.parts = UInt16(parts)
            tokenPartsOut.append((part, target, false))
        }
        token.records.removeSubrange(perPart...)
        token.part = 0
        token.parts = UInt16(parts)
        statistics.tokensSplit += 1
    }

    func controlDatagram(_ packet: ProtocolPacket, to target: NodeID) -> ProtocolDatagram {
        let count = packet.encodedByteCount
        statistics.controlPacketsSent += 1
        statistics.controlBytesSent += count
        if case .token = packet { statistics.tokenBytesSent += count }
        return ProtocolDatagram(destination: .node(target), packet: packet, isControl: true)
    }

    /// Whether this node can retransmit the packet (what `retransmittable` would copy),
    /// without building it.
    func holdsForRepair(_ key: StreamKey, _ sequence: UInt64) -> Bool {
        if key.sender == id, let state = regionSend[key.region], state.inFlight[sequence] != nil { return true }
        guard let stream = streams[key] else { return false }
        return stream.cache[sequence] != nil || stream.outOfOrder[sequence] != nil
    }

    /// A copy of the packet if this node can retransmit it: as its sender, or from its
    /// cache or out-of-order buffer.
    func retransmittable(_ key: StreamKey, _ sequence: UInt64) -> DataPacket? {
        if key.sender == id, let state = regionSend[key.region], let entry = state.inFlight[sequence] {
            return dataPacket(entry.message, fragment: entry.fragment, region: key.region, sequence: sequence,
                              view: entry.view, viewStart: entry.viewStart)
        }
        if let stream = streams[key] { return stream.cache[sequence] ?? stream.outOfOrder[sequence] }
        return nil
    }

    func fragmentCount(_ message: OutgoingMessage) -> Int {
        max(1, (message.payload.count + configuration.maximumFragmentBytes - 1) / configuration.maximumFragmentBytes)
    }

    func dataPacket(_ message: OutgoingMessage, fragment: UInt16, region: RegionID, sequence: UInt64,
                    view: UInt64, viewStart: UInt64) -> DataPacket {
        let size = configuration.maximumFragmentBytes
        let from = Int(fragment) * size
        let to = min(message.payload.count, from + size)
        return DataPacket(sender: id, region: region, regionView: view, viewStartSequence: viewStart, sequence: sequence,
                          group: message.group, groupView: message.groupView, groupSequence: message.groupSequence,
                          fragmentIndex: fragment, fragmentCount: UInt16(fragmentCount(message)),
                          publishedAt: message.publishedAt.nanoseconds, payload: message.payload[from..<to])
    }

    /// The next fragment of the oldest queued message, numbered in its region's sequence.
    func nextDataDatagram() -> ProtocolDatagram? {
        // The head stays queued until its last transmission has gone.
        guard let message = sendQueue.first, !headWaitsForViewChange(message) else { return nil }
        if message.hybrid { return nextHybridDatagram(message) }
        let reference = message.regions[message.regionCursor]
        let packet = numberFragment(message, fragment: UInt16(message.fragmentCursor), in: reference)
        message.fragmentCursor += 1
        if message.fragmentCursor == fragmentCount(message) {
            message.fragmentCursor = 0
            message.regionCursor += 1
        }
        if message.regionCursor == message.regions.count, !continueDeferredCarry(message) {
            _ = sendQueue.popFirst()
            message.queued = false
            message.carriedAhead = false
        }
        statistics.dataPacketsSent += 1
        statistics.dataPayloadBytesSent += packet.payload.count
        lastDataSentAt = now
        senderStatusRepeats = 0
        return ProtocolDatagram(destination: .region(reference.id), packet: .data(packet, retransmitted: false), isControl: false)
    }

    /// Numbers one fragment of a message in one region's sequence: adopts a newer view of
    /// the region (its first sequence number is where members who joined in it start),
    /// keeps the fragment for retransmission until acknowledged, awaits the message's
    /// acknowledgement after its last fragment, and loops it back if this node is a member.
    func numberFragment(_ message: OutgoingMessage, fragment: UInt16, in reference: RegionReference) -> DataPacket {
        // A class, changed in place: stored only when new (one hash per packet saved).
        let state: RegionSendState
        let member: Bool
        if let last = lastRegionSend, last.region == reference.id {
            (state, member) = (last.state, last.member)
        } else {
            if let existing = regionSend[reference.id] {
                state = existing
            } else {
                state = RegionSendState()
                regionSend[reference.id] = state
            }
            member = regions[reference.id] != nil
            lastRegionSend = (reference.id, state, member)
        }
        if reference.viewNumber > state.view {
            state.view = reference.viewNumber
            state.viewStartSequence = state.nextSequence
            if state.viewStarts.count >= RegionSendState.viewHistoryLimit { state.viewStarts.removeFirst() }
            state.viewStarts.append((state.view, state.viewStartSequence))
        }
        let sequence = state.nextSequence
        state.nextSequence += 1
        let packet = dataPacket(message, fragment: fragment, region: reference.id, sequence: sequence,
                                view: state.view, viewStart: state.viewStartSequence)
        state.inFlight.append((message, fragment, state.view, state.viewStartSequence), sequence: sequence)
        if Int(fragment) + 1 == fragmentCount(message) {
            state.awaiting.append((sequence, message))
        }
        // The sender is a member like any other: it receives its own message.
        if member { receiveData(packet) }
        return packet
    }

    /// Hybrid mode: the next fragment goes to the group's own address once, numbered in
    /// every region's sequence at the same time; recovery stays per region.
    func nextHybridDatagram(_ message: OutgoingMessage) -> ProtocolDatagram? {
        let fragment = UInt16(message.fragmentCursor)
        var headers: [RegionHeader] = []
        var template: DataPacket?
        for reference in message.regions {
            let packet = numberFragment(message, fragment: fragment, in: reference)
            template = template ?? packet
            headers.append(RegionHeader(region: reference.id, regionView: packet.regionView,
                                        viewStartSequence: packet.viewStartSequence, sequence: packet.sequence))
        }
        message.fragmentCursor += 1
        if message.fragmentCursor == fragmentCount(message) {
            message.regionCursor = message.regions.count
            if !continueDeferredCarry(message) {
                _ = sendQueue.popFirst()
                message.queued = false
                message.carriedAhead = false
            }
        }
        guard let template else { return nil }
        statistics.hybridTransmissions += 1
        lastDataSentAt = now
        senderStatusRepeats = 0
        // As many region headers as fit beside the payload; the rest follow in more
        // datagrams to the same address, each a complete transmission for its regions.
        let room = configuration.maximumPacketBytes - DataPacket.hybridHeaderBytes - template.payload.count
        let perDatagram = max(1, room / RegionHeader.bytes)
        var rest = headers[...]
        let first = rest.prefix(perDatagram)
        rest = rest.dropFirst(perDatagram)
        while !rest.isEmpty {
            hybridHeadersOut.append((template, rest.prefix(perDatagram)))
            rest = rest.dropFirst(perDatagram)
            statistics.hybridTransmissionsSplit += 1
        }
        return hybridDatagram(template, headers: first)
    }

    func hybridDatagram(_ template: DataPacket, headers: ArraySlice<RegionHeader>) -> ProtocolDatagram {
        statistics.dataPacketsSent += 1
        statistics.dataPayloadBytesSent += template.payload.count
        return ProtocolDatagram(destination: .group(template.group), packet: .hybridData(template, headers: Array(headers)),
                                isControl: false)
    }

    // MARK: Accounting

    /// Bytes this node holds on behalf of the protocol: cache, out-of-order packets, and
    /// messages awaiting acknowledgement.
    package var heldBytes: Int {
        unacknowledgedBytes + heldTally.bytes
    }

    /// The incrementally kept total of what the streams hold, and a recount of it: the
    /// two must agree (the simulator checks them).
    package func heldBytesAudit() -> (tally: Int, recount: Int) {
        (heldTally.bytes, streams.values.reduce(0) { $0 + $1.heldBytes })
    }

    func updateHeldBytes() {
        let cached = heldTally.bytes
        statistics.maximumCachedBytes = max(statistics.maximumCachedBytes, cached)
        statistics.maximumHeldBytes = max(statistics.maximumHeldBytes, cached + unacknowledgedBytes)
    }

    /// True when nothing is cached, held, queued or awaited: the node has quiesced.
    package var isQuiescent: Bool {
        unacknowledgedMessages == 0 && !hasOutput
            && streams.values.allSatisfy { !$0.isActive && $0.cache.isEmpty }
    }

    /// How far behind each sender this node is: the most messages (over the sender's
    /// regions) it knows were sent and has not yet received in order.
    package func senderLags() -> [NodeID: UInt64] {
        var lags: [NodeID: UInt64] = [:]
        for (key, stream) in streams where stream.maximumSeen > stream.contiguous {
            lags[key.sender] = max(lags[key.sender] ?? 0, stream.maximumSeen - stream.contiguous)
        }
        return lags
    }

    /// Per sender: retransmitted packets of its streams that reached this node (repairs of
    /// what this node lost), over the streams it still has.
    public func senderRetransmissionsReceived() -> [NodeID: Int] {
        var counts: [NodeID: Int] = [:]
        for (key, stream) in streams where stream.retransmissionsReceived > 0 {
            counts[key.sender, default: 0] += stream.retransmissionsReceived
        }
        return counts
    }

    /// What still keeps the node from being quiescent, for diagnosis.
    /// The regions this node has installed, lowest id first (the simulator lays its
    /// partition-wide loss out by them).
    package var installedRegions: [RegionView] {
        regions.values.sorted { $0.id < $1.id }
    }

    package var quiescenceReport: String {
        var parts: [String] = []
        if unacknowledgedMessages > 0 { parts.append("\(unacknowledgedMessages) unacknowledged") }
        if !sendQueue.isEmpty { parts.append("\(sendQueue.count) queued") }
        for (key, stream) in streams where stream.isActive || !stream.cache.isEmpty {
            parts.append("\(key.sender)@\(key.region): contiguous \(stream.contiguous) max \(stream.maximumSeen) stable \(stream.stable) cache \(stream.cache.count) held \(stream.heldAhead) "
                + "start \(stream.start) missing \(stream.missing.count) (asked \(stream.missing.values.map(\.attempts).max() ?? 0) times at most)"
                + (departed.contains(key.sender) ? " sender departed" : "") + (regions[key.region] == nil ? " region not in view" : ""))
        }
        return parts.joined(separator: "; ")
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
