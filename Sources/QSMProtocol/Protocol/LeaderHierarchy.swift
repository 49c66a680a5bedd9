/// Rings of leaders of leaders (issue 16, item 9; chapter 3's recovery domains, nested).
///
/// With the seed's two levels, a region of P partitions has one ring of P partition
/// leaders: at 10,000 nodes in partitions of 5, a round visits 2,000 leaders, so what a
/// partition reports reaches the region leader, and stability comes back, in time that
/// grows with the region. Here a region with more than `leaderRingFanout` (F) partitions
/// puts its partition leaders, in region-ring order, on level-1 rings of at most F (as
/// equal as they can be); the first leader of each such ring leads it, and those leaders
/// form level 2 the same way, until at most F are left: they are the region ring. A
/// region of F partitions or fewer has the seed's two levels, unchanged.
///
/// Every ring runs rounds of its own, at its own pace, as partition rings do. A member of
/// a level-L ring contributes what the ring it leads one level down last reported (its
/// partition's aggregate at level 1), and a round's result is complete for a sender where
/// every member's report was: so a complete record at the region ring covers every
/// partition, and its minimum contiguous prefix is stable region-wide exactly as before.
/// Stability comes down the same way: each leader puts what it was told on the tokens
/// of the ring it leads. The view-change count of `ViewChangePause` adds up the same
/// way: each member adds the settled partitions of the ring it leads below.
///
/// A ring at level L with group index g travels as a region token whose `partition`
/// field is `L << 24 | g`; the region ring's is 0, as it always was. The first leader
/// of the region ring is the region leader, and it leads ring 0 of every level.
struct LeaderRing: Equatable {
    var level: Int
    var group: Int
    /// Its leader first.
    var members: [NodeID]

    var tokenPartition: UInt32 { UInt32(level) << 24 | UInt32(group) }
}

/// A leader ring this node leads: its round, and what its last round reported.
struct LeaderRingState {
    var ring: LeaderRing
    var round: ProtocolNode.LeaderRound
    var aggregate: [NodeID: (record: TokenRecord, complete: Bool)] = [:]
    /// Partitions under this ring counted settled by its last round, in `settledView`.
    var settledPartitions = 0
    var settledView: UInt64 = 0
}

enum LeaderHierarchy {
    /// `count` ring members split in order into the fewest runs of at most `fanout`,
    /// as equal in length as they can be.
    static func groups(count: Int, fanout: Int) -> [Range<Int>] {
        let runs = (count + fanout - 1) / fanout
        return (0..<runs).map { ($0 * count / runs)..<(($0 + 1) * count / runs) }
    }

    /// The hierarchy over `leaders` (region leader first) as `member` sees it: the
    /// region ring, the rings below it that `member` is on, how many levels of leader
    /// rings there are, and how many members each level's rings have together (the
    /// region ring last): the tokens one round of each ring of the level sends.
    static func build(leaders: [NodeID], fanout: Int, member: NodeID)
        -> (top: [NodeID], levels: [LeaderRing], depth: Int, levelHops: [Int]) {
        var current = leaders
        var levels: [LeaderRing] = []
        var level = 1
        var levelHops: [Int] = []
        while fanout >= 2, current.count > fanout {
            let runs = groups(count: current.count, fanout: fanout)
            for (group, run) in runs.enumerated() where current[run].contains(member) {
                levels.append(LeaderRing(level: level, group: group, members: Array(current[run])))
            }
            levelHops.append(current.count)
            current = runs.map { current[$0.lowerBound] }
            level += 1
        }
        return (current, levels, level, levelHops + [current.count])
    }

    /// How the token budget is shared between the levels of a region's rings, given the
    /// tokens a round of each level sends (partitions first): a ring of level l is paced
    /// as if a round cost `budgetHops[l]` tokens against the whole budget.
    ///
    /// What a member reports waits, on average, half an interval at each level on its
    /// way up, so the sum of the levels' intervals is the latency to minimize, with the
    /// levels' costs (tokens over interval) summing to the budget. That sum is least
    /// with each level's interval in proportion to the square root of its tokens:
    /// weight `sqrt(H_l) * sum_k sqrt(H_k)`. A region ring of 13 leaders over 1,000
    /// members then goes round about 24 times as often as the partition rings, at a
    /// twentieth of their cost; an equal interval for every ring would spend the same
    /// budget for twice the latency.
    static func budgetHops(levelHops: [Int]) -> [Double] {
        let roots = levelHops.map { Double(max(1, $0)).squareRoot() }
        let sum = roots.reduce(0, +)
        return roots.map { $0 * sum }
    }
}

extension ProtocolNode {
    /// Levels of token rings in the deepest of this node's regions: 2 for partition
    /// rings under one region ring, one more per level of leader rings.
    package var ringLevels: Int {
        regions.values.map { regionRings($0).depth + 1 }.max() ?? 0
    }

    /// The rings of `region`'s current view, built once per view.
    func regionRings(_ region: RegionView) -> RegionRings {
        if let known = rings[region.id], known.view == region.viewNumber { return known }
        _ = regionRing(region)
        return rings[region.id]!
    }

    /// The level of the leader ring a region token belongs to (the region ring's is the
    /// hierarchy's depth), or nil if this node is on no such ring of the view.
    func tokenLevel(_ token: TokenPacket, _ rings: RegionRings) -> Int? {
        if token.partition == 0 { return rings.depth }
        let level = Int(token.partition >> 24)
        guard let ring = rings.levels.first(where: { $0.level == level }),
              ring.tokenPartition == token.partition else { return nil }
        return level
    }

    /// The members of this node's ring at `level` of `rings` (the region ring at the
    /// top).
    func leaderRing(at level: Int, _ rings: RegionRings) -> [NodeID] {
        level == rings.depth ? rings.leaders : rings.levels.first { $0.level == level }?.members ?? []
    }

    /// What this node reports on a ring at `level`: its partition's aggregate at level
    /// 1, else the last report of the ring it leads one level down.
    func lowerAggregate(_ region: RegionID, level: Int) -> [NodeID: (record: TokenRecord, complete: Bool)] {
        level <= 1 ? partitionAggregate[region] ?? [:] : leaderRounds[region]?[level - 1]?.aggregate ?? [:]
    }

    /// The settled partitions this node adds to a token of a ring at `level` (see
    /// `ViewChangePause`).
    func lowerSettledPartitions(_ region: RegionView, level: Int) -> Int {
        if level <= 1 { return partitionSettledView[region.id] == region.viewNumber ? 1 : 0 }
        guard let below = leaderRounds[region.id]?[level - 1], below.settledView == region.viewNumber else { return 0 }
        return below.settledPartitions
    }

    /// Sets up, keeps or drops the rounds of the leader rings this node leads in the
    /// view of `region` just installed.
    func updateLeaderRounds(_ region: RegionView, newView: Bool) {
        let led = regionRings(region).levels.filter { $0.members.first == id }
        guard !led.isEmpty else {
            leaderRounds[region.id] = nil
            return
        }
        var states: [Int: LeaderRingState] = [:]
        for ring in led {
            if var state = leaderRounds[region.id]?[ring.level] {
                state.ring = ring
                if newView {
                    // The old view's tokens are void, and what its rounds reported
                    // covered the old rings.
                    state.round.inProgress = false
                    state.aggregate = [:]
                }
                states[ring.level] = state
            } else {
                states[ring.level] = LeaderRingState(ring: ring, round: LeaderRound(nextStart: now))
            }
        }
        leaderRounds[region.id] = states
    }

    /// Starts due rounds of the leader rings this node leads, and gives up those whose
    /// token is overdue.
    func tickLeaderRounds() {
        for regionID in leaderRounds.keys.sorted() {
            for level in (leaderRounds[regionID] ?? [:]).keys.sorted() {
                guard var state = leaderRounds[regionID]?[level] else { continue }
                let outstanding = state.round.inProgress
                guard roundIsDue(&state.round) else { continue }
                leaderRounds[regionID]?[level] = state
                guard let region = regions[regionID] else { continue }
                if outstanding { probeAfterTimeout(region: regionID, ring: state.ring.members) }
                startLeaderRound(region, level: level)
            }
        }
    }

    func startLeaderRound(_ region: RegionView, level: Int) {
        guard var state = leaderRounds[region.id]?[level] else { return }
        state.round.round += 1
        state.round.inProgress = true
        state.round.startedAt = now
        state.round.ringLength = state.ring.members.count
        let copies = state.round.copies
        state.round.redundantRounds = max(0, state.round.redundantRounds - 1)
        let stamp = settledStamp(&state.round, region)
        leaderRounds[region.id]?[level] = state
        let token = TokenPacket(kind: .regionToken, region: region.id, regionView: region.viewNumber,
                                partition: state.ring.tokenPartition, round: state.round.round, startedAt: now.nanoseconds,
                                records: informationRecords(region.id, aggregate: lowerAggregate(region.id, level: level)),
                                copies: copies, settled: stamp)
        if state.ring.members.count == 1 {
            completeLeaderRound(token, region, level: level)
        } else {
            control.append(.token(token, to: state.ring.members[1], contribute: false))
        }
    }

    /// A leader ring's token came back: what its members reported becomes this ring's
    /// report to the level above.
    func completeLeaderRound(_ token: consuming TokenPacket, _ region: RegionView, level: Int) {
        guard var state = leaderRounds[region.id]?[level] else { return }
        defer { payloadSpares.put(records: token.records) }
        mergeOwnState(into: &token)
        let length = state.ring.members.count
        if length > 1 {
            countRoundTrip(since: state.round.startedAt)
            statistics.leaderTokenRounds += 1
            statistics.leaderTokenRoundTripNanoseconds += now.nanoseconds(since: state.round.startedAt)
            learnHopTime(&state.round)
        }
        var aggregate: [NodeID: (record: TokenRecord, complete: Bool)] = [:]
        var repairing = false
        for record in token.records where record.coverage > 0 || record.maximumSeen > 0 {
            if record.contiguous != .max, record.maximumSeen > record.contiguous { repairing = true }
            aggregate[record.sender] = (record, record.coverage >= UInt32(length))
        }
        state.aggregate = aggregate
        state.settledPartitions = Int(token.settled & ~TokenPacket.settledFlag)
        state.settledView = region.viewNumber
        state.round.inProgress = false
        state.round.busy = !aggregate.isEmpty || !(announcements[region.id]?.isEmpty ?? true)
        state.round.nextStart = now.advanced(byNanoseconds: pace(
            &state.round, region: region.id, active: state.round.busy, repairing: repairing,
            hopBytes: hopBytes(records: token.records.count, copies: token.copies), hops: regionRings(region).budgetHops[level]))
        keepBusyWhileSettling(&state.round, region)
        leaderRounds[region.id]?[level] = state
    }

    /// Whether this node's announcements of stability may age by a round now: only once
    /// every leader ring it leads (and, for the region leader, its partition ring) has
    /// started a round since `since`, the last time they aged. Otherwise a partition
    /// ring going round every few milliseconds aged them away before a leader ring
    /// paced at a second had carried them down, and the members below never settled
    /// (10,000 nodes, 4 levels: "stable 358" at hundreds of nodes for 30 s).
    func announcementsMayAge(_ region: RegionID, since: Instant, partitionRing: Bool) -> Bool {
        if partitionRing, let round = partitionRounds[region], round.startedAt <= since { return false }
        guard let states = leaderRounds[region] else { return true }
        return states.values.allSatisfy { $0.round.startedAt > since }
    }

    /// Brings the leader rings of `region` this node leads to round now, or within
    /// `by` where they had slowed for idleness.
    func quickenLeaderRounds(_ region: RegionID, by soon: Instant, idleOnly: Bool) {
        // (Called for every data packet a ring leader takes: most lead no leader ring.)
        guard !leaderRounds.isEmpty, let states = leaderRounds[region] else { return }
        for (level, var state) in states where state.round.quicken(to: soon, idleOnly: idleOnly) {
            leaderRounds[region]?[level] = state
        }
    }

    /// Marks the leader rings of `region` this node leads as starting a new view now
    /// (see `pauseForViewChanges`).
    func restartLeaderRoundsForView(_ region: RegionID) {
        guard let states = leaderRounds[region] else { return }
        for level in states.keys {
            leaderRounds[region]?[level]?.round.nextStart = now
            leaderRounds[region]?[level]?.round.viewSince = now
        }
    }
}
