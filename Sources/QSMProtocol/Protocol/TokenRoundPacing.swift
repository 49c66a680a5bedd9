/// When a node's token rounds run (section 4.2.1 C): the timers of the rounds it leads,
/// their pace between `busyTokenInterval` and `idleTokenInterval` (short while anything
/// is unstable, long when all is quiet, spaced out so a large region's rings stay within
/// `tokenBytesPerDataByte`), and giving up a round whose token did not come back.
extension ProtocolNode {
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
            // Not a pace since the last data yet: the first status goes when it is (a
            // sender held back by its window waits for the round it hastens).
            var interval = pace - now.nanoseconds(since: lastDataSentAt)
            if interval <= 0 {
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

    /// A sender said it is waiting for acknowledgements of `region` (its status, sent
    /// once it has sent everything it may): no more data will come to pace the rounds by
    /// until they acknowledge what it sent. The rings this node leads there round at the
    /// busy pace (within the token budget), not the settling one.
    ///
    /// Pacing by arrivals alone cannot see a sender held back by a small window: it
    /// sends a window per acknowledgement, and a window of fewer than
    /// `messagesPerTokenRound` messages never made a round worth starting before the
    /// settling pace's four busy intervals. A window of one message was acknowledged
    /// every 20 ms, so it published 50 messages a second.
    func hastenRounds(in region: RegionID) {
        guard !partitionRounds.isEmpty || !regionRounds.isEmpty || !leaderRounds.isEmpty else { return }
        let floor = busyTokenIntervalNanoseconds
        if var round = partitionRounds[region], round.hasten(now: now, floor: floor) { partitionRounds[region] = round }
        if var round = regionRounds[region], round.hasten(now: now, floor: floor) { regionRounds[region] = round }
        guard let states = leaderRounds[region] else { return }
        for (level, var state) in states where state.round.hasten(now: now, floor: floor) {
            leaderRounds[region]?[level] = state
        }
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
    /// data; spaced by the budget, a fraction of one. Below `tokenBytesPerSecondAllowance`
    /// the budget does not apply: a sender held back by its window would otherwise slow
    /// its own acknowledgements round by round. How the budget is shared between
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
            // Token bytes a second the data buys, or the allowance if that is more.
            let allowed = max(configuration.tokenBytesPerDataByte * Double(bytes) * 1e9 / Double(elapsed),
                              configuration.tokenBytesPerSecondAllowance)
            let interval = Double(hopBytes) * Double(hops) * 1e9 / allowed
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
}
