/// Gap recovery (section 4.2.1 B-C): what tokens report and this node lacks is asked
/// for, a bounded number per stream per visit, from caching peers or the sender.
///
/// When to ask is most of the design. A hole below a packet that arrived is lost (each
/// sender's transmissions reach a node in order) and is asked for after a short grace.
/// A tail beyond the last arrival may be lost or may still be queued, unread: it is asked
/// for only once the driver reports its input caught up and the stream has been quiet
/// for the tail grace. Time the node spent not running counts only in part (see
/// `runningNow`). Asking early costs a needless retransmission per packet, and after a
/// freeze that was most of the backlog.
extension ProtocolNode {
    /// A partition token visits: learn what exists and what is stable, then ask for what
    /// is missing, a bounded number per stream (no node reacts to loss with a flood).
    /// Missing tails wait for `inputCaughtUp(now:)`.
    /// `learningStable: false` ignores the records' stability (a token whose stable
    /// fields are not this node's to act on yet).
    func learnAndRecover(from records: [TokenRecord], in region: RegionView, learningStable: Bool = true) {
        for record in records {
            let key = StreamKey(sender: record.sender, region: region.id)
            guard record.maximumSeen > 0 || streams[key] != nil else {
                if learningStable, record.stable > 0 { streams[key]?.learnStable(record.stable, hint: cacheHint) }
                continue
            }
            guard let stream = stream(key, firstPacket: nil) else {
                // A sender that left before this node got any of its packets, or that no
                // view this node has holds (it was gone before this node joined): only
                // peers can say where the debt begins, or that there is none (an alive
                // sender's packets or status will).
                if debtQueries[key] == nil, !owedNothing.contains(key), let joined = joinedView[region.id],
                   departed.contains(key.sender) || !isInCurrentViews(key.sender, region: region) {
                    awaitDebtStart(key, joined: joined, packet: nil, retransmitted: false)
                }
                continue
            }
            learnMaximum(record.maximumSeen, in: stream)
            if learningStable, record.stable > 0 { stream.learnStable(record.stable, hint: cacheHint) }
            streams[key] = stream
        }
        askForMissing(in: region, includingTails: false)
    }

    /// The driver has handed over everything that had arrived (its input queues are
    /// empty). Tails that waited for this are asked for now, if still missing: anything
    /// of theirs that was queued has been read by now; so are retries held back since a
    /// pause (`pausedSinceInput`). True if there was anything to do.
    @discardableResult
    package func inputCaughtUp(now: Instant) -> Bool {
        if pausedSinceInput {
            // Retries held back since a pause go now, with the tails that waited.
            enter(now)
            pausedSinceInput = false
            var due = tailsAwaitingInput
            for (key, stream) in streams where !stream.missing.isEmpty { due.insert(key.region) }
            tailsAwaitingInput.removeAll()
            for id in due.sorted() {
                if let region = regions[id] { askForMissing(in: region, includingTails: true) }
            }
            return !due.isEmpty
        }
        guard !tailsAwaitingInput.isEmpty else { return false }
        enter(now)
        // In order (the simulator replays runs exactly), in a reused buffer, and the set
        // keeps its storage: tails wait after most token visits under load.
        var due = regionScratch
        regionScratch = []
        due.removeAll(keepingCapacity: true)
        due.append(contentsOf: tailsAwaitingInput)
        due.sort()
        tailsAwaitingInput.removeAll(keepingCapacity: true)
        for id in due {
            if let region = regions[id] { askForMissing(in: region, includingTails: true) }
        }
        regionScratch = due
        return true
    }

    /// Asks for missing packets of `region`'s streams. A token visit (without tails)
    /// also counts a round for gaps whose sender is gone.
    private func askForMissing(in region: RegionView, includingTails: Bool) {
        guard !recoverySuspended, !isPausedForViewChange(region.id) else { return }
        // One request per peer asked and per sender whose packets it is asked for: a
        // request names one sender, and holds at most `recoveryRequestsPerRound` numbers
        // (so it fits a packet). Merged across senders, requests named the wrong sender
        // for all but the first and outgrew the datagram limit.
        var requests: [RequestTarget: RequestPacket] = [:]
        var tailsWaiting = false
        // The streams with gaps, by sender (the simulator replays runs exactly), in a
        // reused buffer: most rounds find none.
        var due = streamScratch
        streamScratch = []
        for (key, stream) in streams where key.region == region.id && !stream.missing.isEmpty { due.append((key, stream)) }
        due.sort { $0.key.sender < $1.key.sender }
        defer {
            due.removeAll(keepingCapacity: true)
            streamScratch = due
        }
        for (key, stream) in due {
            // A departed sender's gaps are sought where the view they were sent in cached
            // them, and skipped once everyone who could hold them said they do not.
            let gone = departed.contains(key.sender) || presumeGone(key, stream, region)
            if gone != stream.orphanSearchBegun { beginOrphanSearch(stream, gone) }
            let orphan = gone ? OrphanSearch(self, stream, region) : nil
            if let orphan, !includingTails {
                skipLost(stream, key: key, region: region, search: orphan)
                if stream.missing.isEmpty {
                    streams[key] = stream
                    continue
                }
            }
            if ask(stream, key: key, region: region, orphan: orphan, includingTails: includingTails, into: &requests) {
                tailsWaiting = true
            }
            streams[key] = stream
        }
        send(requests)
        if tailsWaiting { tailsAwaitingInput.insert(region.id) }
    }

    /// Holes are asked for once their grace has passed, without waiting for the next
    /// token visit (tokens may be 10 ms or more apart while a round trip to a peer is a
    /// fraction of that, and the window holds everything above the first hole until it is
    /// repaired). Checked every grace period while any live sender's stream has a hole.
    /// Tails still wait for the input to catch up, and a departed sender's gaps for
    /// token visits (which count the rounds of their search).
    func recoverBetweenVisits() {
        nextRecoveryCheck = nil
        guard !recoverySuspended else { return }
        var requests: [RequestTarget: RequestPacket] = [:]
        // Only the streams with holes, in a fixed order (a sender's streams in several
        // regions too: the simulator replays runs exactly).
        var due: [(key: StreamKey, stream: ReceiveStream)] = []
        for (key, stream) in streams
            where stream.contiguous + 1 < stream.maximumReceived && !stream.missing.isEmpty && !departed.contains(key.sender)
                && !isPausedForViewChange(key.region) {
            due.append((key, stream))
        }
        due.sort { ($0.key.sender, $0.key.region) < ($1.key.sender, $1.key.region) }
        var holes = false
        for (key, stream) in due {
            guard let region = regions[key.region] else { continue }
            holes = true
            _ = ask(stream, key: key, region: region, orphan: nil, includingTails: false, into: &requests)
        }
        send(requests)
        if holes { scheduleRecoveryCheck() }
    }

    /// The next hole check, a grace period from now (if none is due sooner).
    func scheduleRecoveryCheck() {
        guard nextRecoveryCheck == nil else { return }
        nextRecoveryCheck = now.advanced(byNanoseconds: max(configuration.gapGracePeriod.totalNanoseconds, 100_000))
    }

    private func send(_ requests: [RequestTarget: RequestPacket]) {
        for (target, request) in requests.sorted(by: { ($0.key.peer, $0.key.sender, $0.key.region) < ($1.key.peer, $1.key.sender, $1.key.region) }) {
            statistics.requestsSent += 1
            control.append(.request(request, to: target.peer))
        }
    }

    /// Adds to `requests` what is due of one stream's missing packets (at most
    /// `recoveryRequestsPerRound`); true if a tail waits for the input to catch up.
    private func ask(_ stream: ReceiveStream, key: StreamKey, region: RegionView, orphan: OrphanSearch?,
                     includingTails: Bool, into requests: inout [RequestTarget: RequestPacket]) -> Bool {
        var tailsWaiting = false
        var asked = 0
        func add(_ sequence: UInt64, to target: NodeID) {
            let kind: PacketKind = target == key.sender ? .negativeAcknowledgement : .pull
            // A new request has room for all its numbers at once: grown one at a time, it
            // reallocated several times per request.
            requests[RequestTarget(peer: target, sender: key.sender, region: region.id),
                     default: RequestPacket(kind: kind, sender: key.sender, region: region.id, requester: id,
                                            sequences: roomForRequestNumbers())].sequences.append(sequence)
        }
        // What is due, found in one pass and only that sorted (lowest first, and in a
        // fixed order for exact replays): sorting every missing number on each check,
        // every quarter millisecond under loss, cost an allocation and a sort per stream.
        var due = recoveryScratch
        recoveryScratch = []
        due.removeAll(keepingCapacity: true)
        defer { recoveryScratch = due }
        for (sequence, (since, attempts, askedAt)) in stream.missing {
            // Asked recently: the answer is probably on its way; asking again now would
            // only duplicate it.
            if attempts > 0, pausedSinceInput || runningNow.nanoseconds(since: askedAt) < retryInterval(attempts: attempts, senderGone: orphan != nil) {
                continue
            }
            // A gap just learned of may still be in this node's socket queue (tokens
            // come on the control path, ahead of the data). A hole is asked for after
            // a short grace. A tail waits for the input to catch up (at a token's
            // visit it may be in the backlog behind the token), then for the stream
            // to have been quiet for the longer tail grace (while its packets keep
            // arriving, it is most likely queued behind them).
            if attempts == 0 {
                let isHole = sequence < stream.maximumReceived
                if !isHole && !includingTails {
                    tailsWaiting = true
                    continue
                }
                let grace = isHole ? configuration.gapGracePeriod : configuration.tailGracePeriod
                let reference = isHole ? since : max(since, stream.lastArrivalAt)
                if runningNow.nanoseconds(since: reference) < grace.totalNanoseconds { continue }
            }
            due.append(sequence)
        }
        due.sort()
        for sequence in due {
            guard asked < configuration.recoveryRequestsPerRound else { break }
            let attempts = stream.missing[sequence]!.attempts
            asked += 1
            if attempts > 0 {
                statistics.askedAgain += 1
            } else if sequence < stream.maximumReceived {
                statistics.holesAsked += 1
            } else {
                statistics.tailsAsked += 1
            }
            stream.missing[sequence]!.attempts = attempts + 1
            stream.missing[sequence]!.askedAt = runningNow
            if let orphan {
                for target in orphanTargets(for: sequence, in: stream, key: key, region: region, search: orphan, attempt: attempts) {
                    add(sequence, to: target)
                }
            } else if let target = recoveryTarget(for: sequence, key: key, region: region, attempt: attempts) {
                add(sequence, to: target)
            }
        }
        return tailsWaiting
    }

    /// An empty list of requested numbers with room for a whole request.
    private func roomForRequestNumbers() -> [UInt64] {
        var numbers: [UInt64] = []
        numbers.reserveCapacity(configuration.recoveryRequestsPerRound)
        return numbers
    }

    /// Caching peers, picked at random within the partition that caches the sequence
    /// number (so a long burst is repaired by many peers at once), and the sender every
    /// `peerAttemptsBeforeSender + 1`-th attempt: after the peers in a large region, and
    /// before them in a region of at most `senderFirstUpToMembers` members. Peers are
    /// asked in a small region too, once the sender has not answered: it may have
    /// crashed, and until the membership service excludes it, only peers can repair.
    func recoveryTarget(for sequence: UInt64, key: StreamKey, region: RegionView, attempt: Int) -> NodeID? {
        let senderAvailable = key.sender != id
        let cycle = configuration.peerAttemptsBeforeSender + 1
        if senderAvailable && attempt % cycle == senderTurn(in: region) { return key.sender }
        let partition = region.partitions[Int(sequence % UInt64(region.partitions.count))]
        // Picked among the candidates in place: a list of them cost an allocation per
        // ask, most of a receiver's allocations under loss.
        if let peer = pick(among: partition.members, excluding: key.sender) { return peer }
        if let peer = pick(among: region.members.lazy.map(\.id), excluding: key.sender) { return peer }
        return senderAvailable ? key.sender : nil
    }

    /// Which attempt of each cycle of `peerAttemptsBeforeSender + 1` asks the sender:
    /// the first in a region of at most `senderFirstUpToMembers` members, the last in a
    /// larger one.
    func senderTurn(in region: RegionView) -> Int {
        region.members.count <= configuration.senderFirstUpToMembers ? 0 : configuration.peerAttemptsBeforeSender
    }

    /// One of `members` other than this node and `sender`, at random; nil if none.
    private func pick(among members: some Collection<NodeID>, excluding sender: NodeID) -> NodeID? {
        var count = 0
        for member in members where member != id && member != sender { count += 1 }
        guard count > 0 else { return nil }
        var index = Int(random.next() % UInt64(count))
        for member in members where member != id && member != sender {
            if index == 0 { return member }
            index -= 1
        }
        return nil
    }
}

/// A peer asked for packets, the sender whose packets they are, and their region (a
/// request names one of each, and holds one stream's numbers: at most
/// `recoveryRequestsPerRound`, so it fits a packet).
struct RequestTarget: Hashable {
    var peer: NodeID
    var sender: NodeID
    var region: RegionID
}
