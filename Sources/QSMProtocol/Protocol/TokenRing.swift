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
/// idle system costs almost nothing (`TokenRoundPacing.swift` holds their timers).
extension ProtocolNode {
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
                streams[StreamKey(sender: record.sender, region: region.id)]?.learnStable(stable, hint: cacheHint)
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
                    streams[StreamKey(sender: record.sender, region: region.id)]?.learnStable(record.stable, hint: cacheHint)
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
