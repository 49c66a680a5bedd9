/// Reconfiguration as the seed does it (section 4.3.7, item 5; 4.3.8, 4b): a node that
/// installs a new view of one of its regions suspends multicast and recovery there until
/// every member of the region has installed that view too, then resumes. A view reaches
/// different nodes at different times; data sent meanwhile to members still in the old
/// view is held by them as early packets (bounded), and requests made on a half-formed
/// ring go to peers that may not hold, or no longer be in, what is asked for: slowing
/// down for a moment is cheaper than the redundant work.
///
/// The rings tell when the view is in everywhere. A partition token that comes back to
/// its leader in the new view has passed every member of the partition, each of which
/// acts on a token only in the view it has installed (tokens of a view not yet
/// installed are held, not forwarded). The region token counts, as it passes the
/// partition leaders, the partitions whose leader has had such a round
/// (`TokenPacket.settled`); when the region leader finds every partition counted, it
/// sets `TokenPacket.settledFlag` on the region tokens that follow, partition leaders
/// copy it onto their partitions' tokens, and each member that sees it resumes.
///
/// A pause lasts at most `ProtocolConfiguration.viewChangePauseLimit` (a ring that
/// cannot go round, say a member that crashed before the next view removes it, must not
/// stall the region): counted in `viewChangePausesTimedOut`. Only the regions this node
/// is a member of pause; a publisher from outside a region has no view of it.
extension ProtocolNode {
    /// Starts a pause for every region whose view is new here (the first one this node
    /// installs of it, or a new view number), and speeds up the rings so the pause is
    /// short: a new view restarts their rounds at once, even where they had slowed to
    /// the idle pace.
    func pauseForViewChanges(previous: [RegionID: RegionView]) {
        guard configuration.viewChangePauseLimit > .zero else {
            viewChangePauses.removeAll()
            return
        }
        for region in regions.values where previous[region.id]?.viewNumber != region.viewNumber {
            if viewChangePauses[region.id] == nil { statistics.viewChangePauses += 1 }
            viewChangePauses[region.id] = ViewChangePauseState(view: region.viewNumber, since: now)
            partitionRounds[region.id]?.nextStart = now
            partitionRounds[region.id]?.viewSince = now
            regionRounds[region.id]?.nextStart = now
            regionRounds[region.id]?.viewSince = now
            restartLeaderRoundsForView(region.id)
        }
        for id in Array(viewChangePauses.keys) where regions[id] == nil { viewChangePauses[id] = nil }
    }

    /// Whether multicast and recovery in `region` wait for its new view to be installed
    /// everywhere.
    @inline(__always)
    func isPausedForViewChange(_ region: RegionID) -> Bool {
        !viewChangePauses.isEmpty && viewChangePauses[region] != nil
    }

    /// Whether the message at the head of the send queue waits for a pause to end (the
    /// region it is to be numbered in next, or any of a hybrid message's).
    func headWaitsForViewChange(_ message: OutgoingMessage) -> Bool {
        guard !viewChangePauses.isEmpty else { return false }
        if message.hybrid { return message.regions.contains { isPausedForViewChange($0.id) } }
        return isPausedForViewChange(message.regions[message.regionCursor].id)
    }

    /// The view of `region` is installed everywhere: the pause (if any) ends.
    func viewSettled(_ region: RegionView) {
        settledView[region.id] = region.viewNumber
        // A partition leader tells its partition at once.
        if var round = partitionRounds[region.id], !round.inProgress {
            round.nextStart = min(round.nextStart, now)
            partitionRounds[region.id] = round
        }
        // And a leader of leaders, the rings it leads.
        quickenLeaderRounds(region.id, by: now, idleOnly: false)
        guard let pause = viewChangePauses[region.id], pause.view <= region.viewNumber else { return }
        endPause(region.id, pause)
    }

    private func endPause(_ region: RegionID, _ pause: ViewChangePauseState) {
        viewChangePauses[region] = nil
        statistics.viewChangePauseNanoseconds += now.nanoseconds(since: pause.since)
        // Holes noticed meanwhile are asked for at the next check.
        if streams.contains(where: { $0.key.region == region && !$0.value.missing.isEmpty }) { scheduleRecoveryCheck() }
    }

    /// Ends pauses that have lasted `viewChangePauseLimit`.
    func endOverduePauses() {
        guard !viewChangePauses.isEmpty else { return }
        let limit = configuration.viewChangePauseLimit.totalNanoseconds
        for (region, pause) in viewChangePauses where now.nanoseconds(since: pause.since) >= limit {
            statistics.viewChangePausesTimedOut += 1
            endPause(region, pause)
        }
    }

    /// When the oldest pause runs out.
    var nextPauseDeadline: Instant? {
        viewChangePauses.values.map(\.since).min()?.advanced(by: configuration.viewChangePauseLimit)
    }

    /// A leader's ring keeps the busy pace until a round has said the view is settled
    /// (within the pause limit): at the idle pace, the pause would last until the limit.
    func keepBusyWhileSettling(_ round: inout LeaderRound, _ region: RegionView) {
        let limit = configuration.viewChangePauseLimit.totalNanoseconds
        guard round.announcedSettledView != region.viewNumber, limit > 0, now.nanoseconds(since: round.viewSince) < limit else { return }
        round.nextStart = min(round.nextStart, now.advanced(by: configuration.busyTokenInterval))
    }

    /// The `settled` field a leader starts a round's token with (and notes it did).
    func settledStamp(_ round: inout LeaderRound, _ region: RegionView) -> UInt16 {
        guard settledView[region.id] == region.viewNumber else { return 0 }
        round.announcedSettledView = region.viewNumber
        return TokenPacket.settledFlag
    }

    /// What a token leaving this node says of its view: a partition leader counts its
    /// partition on a region token once a round of it completed in this view (a leader
    /// of leaders, the partitions its ring one level down last counted: see
    /// `LeaderHierarchy`), and any leader passes on that the whole region is settled.
    func stampSettled(_ token: inout TokenPacket, _ region: RegionView) {
        if settledView[region.id] == region.viewNumber { token.settled |= TokenPacket.settledFlag }
        guard token.kind == .regionToken, let level = tokenLevel(token, regionRings(region)) else { return }
        let added = lowerSettledPartitions(region, level: level)
        guard added > 0 else { return }
        let count = min(Int(token.settled & ~TokenPacket.settledFlag) + added, Int(~TokenPacket.settledFlag))
        token.settled = token.settled & TokenPacket.settledFlag | UInt16(count)
    }

    /// A token of this node's view of `region` arrived: it may say the view is settled.
    func learnSettled(from token: TokenPacket, _ region: RegionView) {
        if token.settled & TokenPacket.settledFlag != 0 { viewSettled(region) }
    }
}

/// A region's pause for a new view (see `ViewChangePause`).
struct ViewChangePauseState {
    var view: UInt64
    var since: Instant
}
