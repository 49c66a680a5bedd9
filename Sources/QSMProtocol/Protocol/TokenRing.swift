/// The two-level token rings (section 4.2.1 C, Fig. 4.10-4.11). In each partition the
/// partition leader starts a token that visits every member, which adds what it holds for
/// each active sender; back at the leader it becomes the partition's aggregate. Among a
/// region's partition leaders the region leader circulates a second token that combines
/// the aggregates: where every partition has reported, the minimum contiguous prefix is
/// stable region-wide, acknowledged to the sender, and announced on the following rounds
/// so caches can let go.
///
/// Rounds start every `busyTokenInterval` while anything is unstable and slow down to
/// `idleTokenInterval` when nothing is, so a busy sender is acknowledged quickly and an
/// idle system costs almost nothing.
extension ProtocolNode {

    // MARK: Timers

    /// The next time `tick` has work (a round to start, or one to give up on).
    package func nextDeadline() -> Instant? {
        var deadline: Instant?
        func consider(_ round: LeaderRound) {
            let due = round.inProgress ? round.startedAt.advanced(byNanoseconds: timeoutNanoseconds(round)) : round.nextStart
            deadline = min(deadline ?? due, due)
        }
        partitionRounds.values.forEach(consider)
        regionRounds.values.forEach(consider)
        for states in leaderRounds.values { for state in states.values { consider(state.round) } }
        if unacknowledgedMessages > 0 && sendQueue.isEmpty {
            deadline = min(deadline ?? nextSenderStatusAt, nextSenderStatusAt)
        }
        if let query = nextViewStartQuery { deadline = min(deadline ?? query, query) }
        if let hold = restartHoldUntil { deadline = min(deadline ?? hold, hold) }
        if let watch = nextLeaderWatch { deadline = min(deadline ?? watch, watch) }
        if let check = nextRecoveryCheck { deadline = min(deadline ?? check, check) }
        if let pause = nextPauseDeadline { deadline = min(deadline ?? pause, pause) }
        return deadline
    }

    /// How long a round's token may be out before it is given up: a few busy intervals,
    /// or a few expected round trips of this ring (its length times its hop time),
    /// whichever is longer. A fixed limit can never fit every ring: 400 partition leaders
    /// at 0.1 ms a hop already take the whole 40 ms that suits a ring of five.
    func timeoutNanoseconds(_ round: LeaderRound) -> Int64 {
        let base = configuration.busyTokenInterval.totalNanoseconds * Int64(configuration.tokenTimeoutIntervals)
        let hop = round.hopEstimateNanoseconds > 0 ? round.hopEstimateNanoseconds
            : max(round.unmeasuredHopNanoseconds, configuration.initialTokenHopEstimate.totalNanoseconds)
        let expected = hop.multipliedReportingOverflow(by: Int64(round.ringLength * configuration.tokenTimeoutRoundTrips))
        return max(base, expected.overflow ? .max / 4 : expected.partialValue)
    }

    /// Folds a completed round's hop time into the ring's estimate (a moving average
    /// that follows a slower ring at once and a faster one gradually).
    func learnHopTime(_ round: inout LeaderRound) {
        guard round.ringLength > 1 else { return }
        let measured = max(1, now.nanoseconds(since: round.startedAt) / Int64(round.ringLength))
        round.hopEstimateNanoseconds = round.hopEstimateNanoseconds == 0 || measured > round.hopEstimateNanoseconds
            ? measured : (3 * round.hopEstimateNanoseconds + measured) / 4
    }

    /// Advances time: starts rounds that are due, and restarts rounds whose token was lost.
    package func tick(now: Instant) {
        enter(now)
        if let hold = restartHoldUntil, now >= hold { endRestartHold() }
        if !debtQueries.isEmpty { askViewStarts() }
        watchLeaders()
        endOverduePauses()
        if let check = nextRecoveryCheck, now >= check { recoverBetweenVisits() }
        // An idle sender with unacknowledged messages tells its regions how far it got:
        // at the busy pace at first, then less and less often while it has sent nothing
        // new (each status repeats the last; a slow sender in a region whose rounds take
        // a second would otherwise multicast 200 of them per message).
        if unacknowledgedMessages > 0, sendQueue.isEmpty, now >= nextSenderStatusAt {
            let pace = configuration.busyTokenInterval.totalNanoseconds
            var interval = pace
            if now.nanoseconds(since: lastDataSentAt) >= pace {
                for (region, state) in regionSend.sorted(by: { $0.key < $1.key }) where !state.awaiting.isEmpty {
                    control.append(.senderStatus(region))
                }
                interval = min(pace << min(senderStatusRepeats, 16), configuration.idleTokenInterval.totalNanoseconds)
                senderStatusRepeats += 1
            }
            nextSenderStatusAt = now.advanced(byNanoseconds: interval)
        }
        // Sorted (the simulator replays runs exactly) in a reused buffer.
        var due = regionScratch
        regionScratch = []
        due.removeAll(keepingCapacity: true)
        due.append(contentsOf: partitionRounds.keys)
        due.sort()
        for regionID in due {
            guard var round = partitionRounds[regionID] else { continue }
            let outstanding = round.inProgress
            guard roundIsDue(&round) else { continue }
            partitionRounds[regionID] = round
            guard let region = regions[regionID] else { continue }
            if outstanding, let ring = partitionRing(region) { probeAfterTimeout(region: regionID, ring: ring.members) }
            startPartitionRound(region)
        }
        tickLeaderRounds()
        due.removeAll(keepingCapacity: true)
        due.append(contentsOf: regionRounds.keys)
        due.sort()
        for regionID in due {
            guard var round = regionRounds[regionID] else { continue }
            let outstanding = round.inProgress
            guard roundIsDue(&round) else { continue }
            regionRounds[regionID] = round
            guard let region = regions[regionID] else { continue }
            if outstanding { probeAfterTimeout(region: regionID, ring: regionRing(region)) }
            startRegionRound(region)
        }
        regionScratch = due
        updateHeldBytes()
    }

    /// A round starts when its time comes, or when its token has been out too long (lost,
    /// or held by a frozen or dead member): then it is given up and counted.
    ///
    /// Until a round of the ring has ever completed, a timeout doubles the guessed hop
    /// time (up to the idle interval per hop): a ring slower than the first guess gets a
    /// timeout it fits. Once rounds complete, their measured hops set the timeout, and a
    /// timeout changes nothing: under loss, tokens time out because they were lost, and
    /// lengthening the timeout for that would only stall the ring longer each time.
    func roundIsDue(_ round: inout LeaderRound) -> Bool {
        if round.inProgress {
            guard now.nanoseconds(since: round.startedAt) >= timeoutNanoseconds(round) else { return false }
            statistics.tokenTimeouts += 1
            // Lost, most likely: the next rounds go with two copies per hop.
            round.redundantRounds = configuration.redundantTokenRounds
            if round.hopEstimateNanoseconds == 0 {
                round.unmeasuredHopNanoseconds = min(2 * max(round.unmeasuredHopNanoseconds, configuration.initialTokenHopEstimate.totalNanoseconds),
                                                     configuration.idleTokenInterval.totalNanoseconds)
            }
            return true
        }
        return now >= round.nextStart
    }

    /// New data arrived: rounds that had slowed for idleness come back to the busy pace.
    func quickenRounds(in region: RegionID) {
        // A node that leads no ring has nothing to quicken (and looks nothing up).
        guard !partitionRounds.isEmpty || !regionRounds.isEmpty else { return }
        // The packets of one batch share a time: after the first, the rest find nothing
        // to do unless a round changed in between (a token in the same batch). Two
        // hashes per packet saved (about 1% of a 100-byte run).
        if let last = lastQuickened, last.region == region, last.at == now, last.changes == roundsChanges { return }
        // Only rounds slowed for idleness are woken; rounds paced by traffic keep pace.
        let soon = now.advanced(byNanoseconds: busyTokenIntervalNanoseconds)
        if var round = partitionRounds[region], round.quicken(to: soon, idleOnly: true) { partitionRounds[region] = round }
        if var round = regionRounds[region], round.quicken(to: soon, idleOnly: true) { regionRounds[region] = round }
        quickenLeaderRounds(region, by: soon, idleOnly: true)
        lastQuickened = (region, now, roundsChanges)
    }

    /// The next interval for a round that just completed: paced to the region's arrival
    /// rate while data flows, at the busy pace while a gap is being repaired, never
    /// slower than a few busy intervals while anything is unstable, idle when nothing is.
    ///
    /// Pacing by arrivals alone starves recovery: a sender whose window is full waits for
    /// stability and sends nothing, so arrivals fall to a trickle of retransmissions and
    /// the rounds that would repair the gaps (and make the data stable) slow to the idle
    /// pace. Under loss at every receiver that feedback collapsed throughput to a few
    /// thousand messages a second.
    ///
    /// In a large region the rings' own cost sets a floor too: the rings of the region,
    /// each sending a token of about `hopBytes` per member a round, may together cost at
    /// most `tokenBytesPerDataByte` of the data arriving. At 1,000 members and 1,000
    /// messages a second, rounds every 20 ms cost several bytes of tokens per byte of
    /// data; spaced by the budget, a fraction of one. How the budget is shared between
    /// the levels of rings is `RegionRings.budgetHops`: `hops` is this ring's level's.
    func pace(_ round: inout LeaderRound, region: RegionID, active: Bool, repairing: Bool, hopBytes: Int, hops: Double) -> Int64 {
        let floor = configuration.busyTokenInterval.totalNanoseconds
        let ceiling = configuration.idleTokenInterval.totalNanoseconds
        settleArrivals()
        let arrived = arrivals[region] ?? Arrivals()
        let count = arrived.packets - round.arrivalsAtLastCompletion
        let bytes = arrived.bytes - round.arrivalBytesAtLastCompletion
        let elapsed = now.nanoseconds(since: round.lastCompletion)
        // The data rate is measured only over an interval the round was paced by traffic:
        // after its first round, or after it idled, the interval since the last
        // completion is mostly silence (since boot, or a second of idleness), and a burst
        // that arrived at its end looked like a trickle. That gave a budget of the whole
        // idle interval, not marked idle, so new data did not wake it: the first burst
        // after a start or a pause waited most of a second for its acknowledgement.
        let measured = round.hasCompleted && !round.idle
        round.hasCompleted = true
        round.arrivalsAtLastCompletion = arrived.packets
        round.arrivalBytesAtLastCompletion = arrived.bytes
        round.lastCompletion = now
        // The budget's interval, from the data rate since the last round (kept while no
        // data arrives, so a settling or repairing region stays within it too).
        if !measured {
            round.budgetNanoseconds = 0
        } else if bytes > 0 && elapsed > 0 {
            let interval = Double(hopBytes) * Double(hops) * Double(elapsed) / (configuration.tokenBytesPerDataByte * Double(bytes))
            round.budgetNanoseconds = Int64(min(interval, Double(ceiling)))
        }
        let budget = round.budgetNanoseconds
        if repairing {
            round.paceNanoseconds = max(floor, budget)
        } else if count > 0 && elapsed > 0 {
            let perRound = Double(elapsed) * Double(configuration.messagesPerTokenRound) / Double(count)
            round.paceNanoseconds = min(max(Int64(min(perRound, Double(ceiling))), floor, budget),
                                        active ? max(floor * Self.settlingIntervals, budget) : ceiling)
        } else if !active {
            round.paceNanoseconds = ceiling
        } else {
            // Settling (stability still to spread, no new data): keep the pace the
            // traffic had, but never the idle pace while work remains.
            round.paceNanoseconds = min(max(round.paceNanoseconds, floor, budget), max(floor * Self.settlingIntervals, budget))
        }
        // At the idle pace for lack of work, not for the budget: new data wakes it.
        round.idle = round.paceNanoseconds >= ceiling && budget < ceiling
        return round.paceNanoseconds
    }

    /// The bytes one hop of a token with `records` records sends, in `copies` copies.
    func hopBytes(records: Int, copies: UInt8) -> Int {
        (TokenPacket.headerBytes + records * TokenPacket.recordBytes) * Int(copies)
    }

    /// The slowest pace, in busy intervals, of a round with unstable data to settle.
    static let settlingIntervals: Int64 = 4

    // MARK: Rings

    func partitionRing(_ region: RegionView) -> (index: Int, members: [NodeID])? {
        if let known = rings[region.id], known.view == region.viewNumber { return known.partition }
        let built = buildRings(region)
        rings[region.id] = built
        return built.partition
    }

    /// Partition leaders in partition order, starting with the region leader's partition.
    func regionRing(_ region: RegionView) -> [NodeID] {
        if let known = rings[region.id], known.view == region.viewNumber { return known.leaders }
        let built = buildRings(region)
        rings[region.id] = built
        return built.leaders
    }

    /// Every ring of a region view this node is on, built once per view (every token
    /// used to build them anew: arrays allocated per round).
    private func buildRings(_ region: RegionView) -> RegionRings {
        var partition: (index: Int, members: [NodeID])?
        if let index = region.partitions.firstIndex(where: { $0.members.contains(id) }) {
            let mine = region.partitions[index]
            partition = (index, [mine.leader] + mine.members.filter { $0 != mine.leader })
        }
        let leaders = region.partitions.map(\.leader)
        let ring = leaders.firstIndex(of: region.regionLeader).map { Array(leaders[$0...] + leaders[..<$0]) } ?? leaders
        let hierarchy = LeaderHierarchy.build(leaders: ring, fanout: configuration.leaderRingFanout, member: id)
        // The seed's two levels keep the budget's first charge, each ring its length
        // times the number of rings: the engine's loss-recovery pace was tuned against
        // it, and the square-root split, alternated with it under 5% loss in a
        // one-partition region, came out 6% slower (median of 4 pairs).
        let rings = Double(region.partitions.count + 1)
        let budgetHops = hierarchy.depth == 1
            ? [Double(partition?.members.count ?? 1) * rings, Double(ring.count) * rings]
            : LeaderHierarchy.budgetHops(levelHops: [region.members.count] + hierarchy.levelHops)
        return RegionRings(view: region.viewNumber, partition: partition, leaders: hierarchy.top, levels: hierarchy.levels,
                           depth: hierarchy.depth, budgetHops: budgetHops)
    }

    func next(after node: NodeID, in ring: [NodeID]) -> NodeID {
        guard let index = ring.firstIndex(of: node) else { return ring[0] }
        return ring[(index + 1) % ring.count]
    }

    // MARK: Partition tokens

    func startPartitionRound(_ region: RegionView) {
        guard var round = partitionRounds[region.id], let (index, ring) = partitionRing(region) else { return }
        round.round += 1
        round.inProgress = true
        round.startedAt = now
        round.ringLength = ring.count
        let copies = round.copies
        round.redundantRounds = max(0, round.redundantRounds - 1)
        let stamp = settledStamp(&round, region)
        partitionRounds[region.id] = round
        learnAndRecover(from: [], in: region)
        let token = TokenPacket(kind: .partitionToken, region: region.id, regionView: region.viewNumber,
                                partition: UInt32(index), round: round.round, startedAt: now.nanoseconds,
                                records: informationRecords(region.id, aggregate: partitionAggregate[region.id] ?? [:]),
                                copies: copies,
                                settled: stamp)
        if ring.count == 1 {
            completePartitionRound(token, region)
        } else {
            control.append(.token(token, to: ring[1], contribute: false))
        }
    }

    /// What a leader puts on a token as it leaves: what it knows exists (its own streams
    /// and its partition's last aggregate) and what is stable, but no coverage: its own
    /// contiguous prefix is added when the token returns. Without the highest sequence
    /// numbers here, the member right after the leader would never learn of a lost tail.
    func informationRecords(_ region: RegionID, aggregate: [NodeID: (record: TokenRecord, complete: Bool)]) -> [TokenRecord] {
        var records = recordScratch
        recordScratch = [:]
        records.removeAll(keepingCapacity: true)
        for (key, stream) in streams where key.region == region && stream.isActive {
            records[key.sender] = TokenRecord(sender: key.sender, contiguous: .max, maximumSeen: stream.maximumSeen,
                                              stable: stream.stable, coverage: 0)
        }
        for (sender, entry) in aggregate {
            var record = records[sender] ?? TokenRecord(sender: sender, contiguous: .max, maximumSeen: 0, stable: 0, coverage: 0)
            record.maximumSeen = max(record.maximumSeen, entry.record.maximumSeen)
            records[sender] = record
        }
        for (sender, announcement) in announcements[region] ?? [:] {
            var record = records[sender] ?? TokenRecord(sender: sender, contiguous: .max, maximumSeen: 0, stable: 0, coverage: 0)
            record.stable = max(record.stable, announcement.stable)
            records[sender] = record
        }
        // The token's own array, kept from an earlier token.
        var sorted = payloadSpares.recordArray(reserving: records.count)
        sorted.append(contentsOf: records.values)
        sorted.sort { $0.sender < $1.sender }
        recordScratch = records
        return sorted
    }

    func completePartitionRound(_ token: consuming TokenPacket, _ region: RegionView) {
        guard var round = partitionRounds[region.id], let (_, ring) = partitionRing(region) else { return }
        defer { payloadSpares.put(records: token.records) }
        // Back at the leader in this view: every member has installed it.
        partitionSettledView[region.id] = region.viewNumber
        mergeOwnState(into: &token)
        if ring.count > 1 {
            countRoundTrip(since: round.startedAt)
            learnHopTime(&round)
            // What all of them lack is asked for once, for all (before the leader's own
            // requests, which then wait for it).
            askForPartitionLoss(token.records, ringLength: ring.count, in: region)
            // What the others saw tells the leader of its own gaps, the tail included.
            learnAndRecover(from: token.records, in: region)
        }
        // The last round's table, emptied and refilled in place.
        var aggregate = partitionAggregate.removeValue(forKey: region.id) ?? [:]
        aggregate.removeAll(keepingCapacity: true)
        for record in token.records where record.coverage > 0 || record.maximumSeen > 0 {
            let complete = record.coverage >= UInt32(ring.count)
            // Settled everywhere here: nothing left for the region to do about it.
            if complete && record.contiguous == record.maximumSeen && record.stable >= record.contiguous { continue }
            aggregate[record.sender] = (record, complete)
        }
        partitionAggregate[region.id] = aggregate
        // Announcements age by one round each time they have gone around (and, at a
        // leader of leaders, around the rings it leads too: see `announcementsMayAge`).
        if announcements[region.id] != nil, region.regionLeader != id,
           announcementsMayAge(region.id, since: round.lastCompletion, partitionRing: false),
           var pending = announcements.removeValue(forKey: region.id) {
            age(&pending)
            announcements[region.id] = pending
        }
        round.inProgress = false
        round.busy = !aggregate.isEmpty || !(announcements[region.id]?.isEmpty ?? true)
        let repairing = aggregate.values.contains { $0.record.maximumSeen > $0.record.contiguous && $0.record.contiguous != .max }
        round.nextStart = now.advanced(byNanoseconds: pace(
            &round, region: region.id, active: round.busy, repairing: repairing,
            hopBytes: hopBytes(records: token.records.count, copies: token.copies), hops: regionRings(region).budgetHops[0]))
        keepBusyWhileSettling(&round, region)
        partitionRounds[region.id] = round
        // A region of one partition: its region ring is this leader alone, and the
        // aggregate just made is all it would combine. Combining it now, rather than at
        // the region round's own pace, acknowledges senders a pace interval sooner.
        if region.regionLeader == id, region.partitions.count == 1, regionRounds[region.id]?.inProgress == false {
            startRegionRound(region)
        }
    }

    /// Ages announcements by one round, in place: one in its last round goes.
    func age(_ pending: inout [NodeID: (stable: UInt64, rounds: Int)]) {
        var senders = senderScratch
        senderScratch = []
        senders.removeAll(keepingCapacity: true)
        senders.append(contentsOf: pending.keys)
        for sender in senders {
            guard let entry = pending[sender] else { continue }
            pending[sender] = entry.rounds <= 1 ? nil : (entry.stable, entry.rounds - 1)
        }
        senders.removeAll(keepingCapacity: true)
        senderScratch = senders
    }

    /// Round trips of tokens that went around a ring of more than one node, timed by
    /// the leader's own clock (not the token's field, which a forger could set).
    func countRoundTrip(since start: Instant) {
        statistics.tokenRounds += 1
        statistics.tokenRoundTripNanoseconds += now.nanoseconds(since: start)
    }

    // MARK: Region tokens

    func startRegionRound(_ region: RegionView) {
        guard var round = regionRounds[region.id] else { return }
        round.round += 1
        round.inProgress = true
        round.startedAt = now
        let rings = regionRings(region)
        round.ringLength = rings.leaders.count
        let copies = round.copies
        round.redundantRounds = max(0, round.redundantRounds - 1)
        let stamp = settledStamp(&round, region)
        regionRounds[region.id] = round
        let token = TokenPacket(kind: .regionToken, region: region.id, regionView: region.viewNumber, partition: 0,
                                round: round.round, startedAt: now.nanoseconds,
                                records: informationRecords(region.id, aggregate: lowerAggregate(region.id, level: rings.depth)),
                                copies: copies,
                                settled: stamp)
        let ring = rings.leaders
        if ring.count == 1 {
            completeRegionRound(token, region)
        } else {
            control.append(.token(token, to: ring[1], contribute: false))
        }
    }

    func completeRegionRound(_ token: consuming TokenPacket, _ region: RegionView) {
        guard var round = regionRounds[region.id] else { return }
        defer { payloadSpares.put(records: token.records) }
        mergeOwnState(into: &token)
        let rings = regionRings(region)
        let ringLength = rings.leaders.count
        if ringLength > 1 {
            countRoundTrip(since: round.startedAt)
            statistics.regionTokenRounds += 1
            statistics.regionTokenRoundTripNanoseconds += now.nanoseconds(since: round.startedAt)
            learnHopTime(&round)
        }
        // Taken out and put back below, changed in place (a second reference would copy
        // the table each round).
        var pending = announcements.removeValue(forKey: region.id) ?? [:]
        // Announcements age; fresh stability replaces them.
        if announcementsMayAge(region.id, since: round.lastCompletion, partitionRing: true) { age(&pending) }
        var active = false
        var repairing = false
        for record in token.records where record.coverage > 0 || record.maximumSeen > 0 {
            active = true
            if record.contiguous != .max, record.maximumSeen > record.contiguous { repairing = true }
            // What this leader knows stable: found by its own rounds, or (a leader since a
            // view change) announced to it before. A partition that has settled drops the
            // record, so a member that missed the last announcement can never again make
            // a round complete: a new leader that knew only its own rounds' findings
            // (none) then repeated nothing, and the member waited forever.
            let known = streams[StreamKey(sender: record.sender, region: region.id)]?.stable ?? 0
            let previous = max(lastAcknowledged[region.id]?[record.sender] ?? 0, known)
            if record.coverage >= UInt32(ringLength), record.contiguous != .max, record.contiguous > previous {
                // Everyone has everything up to here: stable, acknowledged, announced
                // (every member of the region ring reported for all it stands for).
                let stable = record.contiguous
                pending[record.sender] = (stable, 2)
                lastAcknowledged[region.id, default: [:]][record.sender] = stable
                streams[StreamKey(sender: record.sender, region: region.id)]?.learnStable(stable)
                acknowledge(region.id, sender: record.sender, stable: stable)
            } else if previous > 0 {
                // Still circulating though nothing new is stable: someone missed an
                // announcement, or the sender missed an ACK. Repeating a value already
                // found stable is always safe, whoever reported this round.
                pending[record.sender] = (previous, 2)
                acknowledge(region.id, sender: record.sender, stable: previous)
            }
        }
        announcements[region.id] = pending
        round.inProgress = false
        round.busy = active || !pending.isEmpty
        round.nextStart = now.advanced(byNanoseconds: pace(
            &round, region: region.id, active: round.busy, repairing: repairing,
            hopBytes: hopBytes(records: token.records.count, copies: token.copies), hops: rings.budgetHops[rings.depth]))
        // Every partition had a round in this view: the view is in everywhere, and the
        // rounds that follow say so.
        if settledView[region.id] != region.viewNumber,
           Int(token.settled & ~TokenPacket.settledFlag) >= region.partitions.count {
            viewSettled(region)
            round.nextStart = now
        }
        keepBusyWhileSettling(&round, region)
        regionRounds[region.id] = round
    }

    func acknowledge(_ region: RegionID, sender: NodeID, stable: UInt64) {
        let ack = AcknowledgementPacket(region: region, sender: sender, stable: stable,
                                        regionView: regions[region]?.viewNumber ?? 0)
        if sender == id {
            receiveAcknowledgement(ack)
        } else if !departed.contains(sender) {
            control.append(.acknowledgement(ack, to: sender))
        }
    }

    // MARK: Receiving tokens

    /// (`consuming`, here and in the rounds' completions, so that a token's records are
    /// changed in place rather than copied at every round.)
    func receiveToken(_ token: consuming TokenPacket) {
        guard let region = regions[token.region], token.regionView == region.viewNumber else {
            if regions[token.region].map({ token.regionView > $0.viewNumber }) ?? true {
                // Of a view this node has not installed yet (section 4.3.8, 4b): the
                // leader that sent it had the view first. Held (within
                // `maximumUnknownPackets`, with early data) and acted on once the view
                // arrives; dropped as stale if another view comes instead.
                statistics.tokensHeldForView += 1
                ProtocolPacket.token(token).encoded().withUnsafeBytes { hold($0) }
            } else {
                statistics.staleTokensDropped += 1
            }
            return
        }
        guard !isRepeatedToken(token) else { return }
        if token.kind == .partitionToken {
            guard let (index, ring) = partitionRing(region), UInt32(index) == token.partition else {
                statistics.staleTokensDropped += 1
                return
            }
            if ring[0] == id {
                guard let round = partitionRounds[region.id], round.inProgress, round.round == token.round else {
                    statistics.staleTokensDropped += 1
                    return
                }
                completePartitionRound(token, region)
            } else {
                heardFromLeader(region)
                learnSettled(from: token, region)
                learnAndRecover(from: token.records, in: region)
                control.append(.token(token, to: next(after: id, in: ring), contribute: true))
            }
        } else {
            // The region ring, or one of the leader rings below it.
            let rings = regionRings(region)
            guard let level = tokenLevel(token, rings) else {
                statistics.staleTokensDropped += 1
                return
            }
            let ring = leaderRing(at: level, rings)
            if level == rings.depth ? region.regionLeader == id : ring.first == id {
                let round = level == rings.depth ? regionRounds[region.id] : leaderRounds[region.id]?[level]?.round
                guard let round, round.inProgress, round.round == token.round else {
                    statistics.staleTokensDropped += 1
                    return
                }
                learnAndRecover(from: token.records, in: region, learningStable: false)
                if level == rings.depth {
                    completeRegionRound(token, region)
                } else {
                    completeLeaderRound(token, region, level: level)
                }
            } else {
                guard ring.contains(id) else {
                    statistics.staleTokensDropped += 1
                    return
                }
                learnSettled(from: token, region)
                learnAndRecover(from: token.records, in: region, learningStable: false)
                // Stability the region leader announced: pass it on to this partition
                // (and to the ring this node leads below, if any).
                // (Never lowered: a record a lagging member put on the token carries the
                // older stability it knows, and passing that down instead of the newer one
                // would keep the members below from ever settling.)
                for record in token.records where record.stable > 0 {
                    let known = announcements[region.id]?[record.sender]?.stable ?? 0
                    announcements[region.id, default: [:]][record.sender] = (max(known, record.stable), 2)
                    streams[StreamKey(sender: record.sender, region: region.id)]?.learnStable(record.stable)
                }
                control.append(.token(token, to: next(after: id, in: ring), contribute: true))
            }
        }
    }

    /// Adds this node's contribution to a token about to leave it: for a partition token,
    /// its own streams; for a region token, its partition's last aggregate.
    func mergeOwnState(into token: inout TokenPacket) {
        guard let region = regions[token.region], token.regionView == region.viewNumber else { return }
        stampSettled(&token, region)
        var index = recordIndexScratch
        recordIndexScratch = [:]
        index.removeAll(keepingCapacity: true)
        defer { recordIndexScratch = index }
        for (position, record) in token.records.enumerated() { index[record.sender] = position }
        if token.kind == .partitionToken {
            // Every sender the token mentions gets this node's view of it, even if that
            // is "nothing yet": a minimum that skipped this node would not be safe.
            for position in token.records.indices {
                let key = StreamKey(sender: token.records[position].sender, region: region.id)
                // Owed nothing of a sender gone before this node joined: nothing it lacks.
                if streams[key] == nil, owedNothing.contains(key) {
                    contributeLack(to: &token.records[position], nil)
                    token.records[position].coverage.saturatingIncrement()
                    continue
                }
                // No stream and no way to tell where this node's debt starts (it joined
                // later and has seen nothing of this sender): no contribution, so no
                // stability is declared past what it may still be owed.
                guard let stream = stream(key, firstPacket: nil) else { continue }
                if streams[key] == nil, token.records[position].maximumSeen == 0 { continue }
                streams[key] = stream
                token.records[position].contiguous = min(token.records[position].contiguous, stream.contiguous)
                token.records[position].maximumSeen = max(token.records[position].maximumSeen, stream.maximumSeen)
                contributeLack(to: &token.records[position], stream)
                token.records[position].coverage.saturatingIncrement()
            }
            // A sender keeps its own record going while it waits for acknowledgements, so a
            // lost ACK is repeated.
            let awaiting = !(regionSend[region.id]?.awaiting.isEmpty ?? true)
            var unlisted = streamScratch
            streamScratch = []
            for (key, stream) in streams
                where key.region == region.id && index[key.sender] == nil && (stream.isActive || (key.sender == id && awaiting)) {
                unlisted.append((key, stream))
            }
            unlisted.sort { $0.key.sender < $1.key.sender }
            for (key, stream) in unlisted {
                var record = TokenRecord(sender: key.sender, contiguous: stream.contiguous,
                                         maximumSeen: stream.maximumSeen, stable: stream.stable, coverage: 0)
                contributeLack(to: &record, stream)
                record.coverage = 1
                token.records.append(record)
            }
            unlisted.removeAll(keepingCapacity: true)
            streamScratch = unlisted
        } else {
            guard let level = tokenLevel(token, regionRings(region)) else { return }
            let aggregate = lowerAggregate(region.id, level: level)
            var senders = senderScratch
            senderScratch = []
            senders.removeAll(keepingCapacity: true)
            senders.append(contentsOf: aggregate.keys)
            senders.sort()
            defer { senderScratch = senders }
            for sender in senders {
                guard let entry = aggregate[sender] else { continue }
                if let position = index[sender] {
                    token.records[position].maximumSeen = max(token.records[position].maximumSeen, entry.record.maximumSeen)
                    if entry.complete {
                        token.records[position].contiguous = min(token.records[position].contiguous, entry.record.contiguous)
                        token.records[position].coverage.saturatingIncrement()
                    }
                } else {
                    var record = entry.record
                    record.lackRun = nil
                    record.coverage = entry.complete ? 1 : 0
                    if !entry.complete { record.contiguous = .max }
                    token.records.append(record)
                }
            }
        }
    }
}
