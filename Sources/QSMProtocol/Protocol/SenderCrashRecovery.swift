/// Recovery of a departed sender's packets (sections 4.2.1 C and 4.3.8 4c), and
/// sender-crash agreement: the members that stay end with the same set of its messages.
///
/// A packet is cached by one partition of the view it was sent in (`caches`); with
/// `survivorAgreement` (the default) every member also keeps every packet it received
/// until it is stable region-wide. Once the sender is gone, a member missing a packet
/// asks the members of that partition, each in turn, rather than peers of its current
/// view (views change as crashed members are removed, and the partitions with them);
/// with agreement, then the region's other live members, several at a time. This is the
/// flush among survivors: whatever one of them delivered, it still holds (it is not
/// stable while another lacks it), so the others get it from it. A member asked for
/// what it does not hold says so (`notHeld`) when it is sure: it has delivered past it
/// without a copy, it never had the stream, or it is missing it itself. A gap that every
/// possible holder denied is lost with the sender for every survivor alike, and is
/// skipped. As a last resort, for peers that never answer, a gap is skipped after
/// `skipAfterAttempts` asks (counted in `abandonedUnanswered`: agreement is then not
/// assured), which back off so that a node cut off from the others for a while does not
/// give up early.
///
/// Without agreement (the seed's rule), the possible holders are the caching partition
/// only: a message reaches every member if a live caching member delivered it.
///
/// Which view a missing packet was sent in is not known for certain: the view starts
/// seen in the stream (its history and the packets held beyond the gap) suggest one.
/// Without an installed layout of exactly that view, the partitions of every kept view
/// are asked.
extension ProtocolNode {
    /// The last resort: asks after which a departed sender's gap is skipped, answered
    /// or not (about 7 s of backed-off asking, counted from the search's start).
    static let skipAfterAttempts = 32

    /// Marks the search for a departed sender's gaps as begun (or, for a sender that
    /// turned out alive, as over). The asks of a gap made while the sender was thought
    /// live count for nothing in it but one: with `peerAttemptsBeforeSender` 0 they all
    /// went to the sender, which may have crashed long before the membership service
    /// said so, and a gap asked for that often was skipped as unanswered at once, before
    /// any survivor holding it was asked (swarm seed 5126271043880124848, the sender
    /// asked every time: two survivors, each without the other's packets).
    func beginOrphanSearch(_ stream: ReceiveStream, _ begun: Bool) {
        stream.orphanSearchBegun = begun
        // One ask is kept for a gap asked before, so that the next counts as asked
        // again, as it is.
        for (sequence, entry) in stream.missing where entry.attempts > 1 { stream.missing[sequence]!.attempts = 1 }
    }

    /// The pause before asking for a gap again: `requestRetryInterval`, doubling after the
    /// third ask up to 16 times as long (after the eighth once the sender left).
    ///
    /// Most asks are answered at the first try (under 5% random loss, about one in ten
    /// is repeated), so the first retries keep the short interval. Asks that keep going
    /// unanswered are those of a node that is overrun: its socket buffers full, the
    /// repairs it asked for dropped with everything else. Repeated every 4 ms, they fed
    /// the overload. With 16 senders into one receiver (`qsm-bench run --senders 16
    /// --receivers 1`), retransmissions were 1.7M-1.9M for 300k messages at 100k-146k
    /// msg/s; backing off, 470k-640k for 1.0M-1.3M messages at 485k-636k msg/s.
    func retryInterval(attempts: Int, senderGone: Bool) -> Int64 {
        let asksAtTheBaseInterval = senderGone ? 8 : 3
        return configuration.requestRetryInterval.totalNanoseconds << min(max(attempts - asksAtTheBaseInterval, 0), 4)
    }

    /// Asks for a gap of a sender that no view of this node names after which it is
    /// presumed gone (see `presumeGone`): about 130 ms of asking (the fourth and later
    /// asks wait longer, see `retryInterval`).
    static let unnamedSenderAttempts = 8

    /// Whether `key`'s sender, not known to have departed, is presumed gone now: no view
    /// this node holds names it (not `region`'s members, nor any group's members or
    /// publishers) and a gap of its stream has gone unanswered `unnamedSenderAttempts`
    /// times (every few asks go to the sender itself). Such a sender was seen only
    /// through tokens: a publisher that crashed before this node's first views named it
    /// (removed from the groups' publisher lists before this node saw them), whose gaps
    /// here were otherwise asked for forever (swarm seed 1557026809635651381).
    ///
    /// It is then sought like any departed sender's, from caching peers, and abandoned
    /// when they all deny holding it (peers that believe it alive never deny). A packet
    /// or status of its own, or a view that names it, makes it live again.
    func presumeGone(_ key: StreamKey, _ stream: ReceiveStream, _ region: RegionView) -> Bool {
        // The unanswered gap first: rare for a live sender, where scanning the views
        // (members of the region and of every group) on every token visit is not.
        guard key.sender != id, stream.missing.values.contains(where: { $0.attempts >= Self.unnamedSenderAttempts }),
              !isInCurrentViews(key.sender, region: region) else { return false }
        departed.insert(key.sender)
        statistics.sendersPresumedGone += 1
        return true
    }

    /// Who could hold `sequence` of a departed sender: the live members still in the
    /// region of its caching partition in the view it was most likely sent in (or in
    /// each kept view, when that view's layout is not at hand), in a fixed order; with
    /// `survivorAgreement`, then every other live member of the region.
    func possibleHolders(_ sequence: UInt64, key: StreamKey, region: RegionView, search: OrphanSearch) -> [NodeID] {
        holderList(sequence, key: key, region: region, search: search).holders
    }

    /// `possibleHolders`, and how many of them lead it as the caching partition's.
    func holderList(_ sequence: UInt64, key: StreamKey, region: RegionView,
                    search: OrphanSearch) -> (holders: [NodeID], caching: Int) {
        func candidate(_ member: NodeID) -> Bool {
            member != id && member != key.sender && !departed.contains(member)
        }
        guard let layouts = cacheLayouts[region.id], !layouts.isEmpty else {
            let all = region.members.map(\.id).filter(candidate)
            return (all, all.count)
        }
        let likelyView = search.viewStarts.last(where: { $0.start <= sequence })?.view
        let exact = likelyView.flatMap { view in layouts.last(where: { $0.view == view }) }
        var holders: [NodeID] = []
        for layout in exact.map({ [$0] }) ?? layouts {
            let partition = layout.partitions[Int(sequence % UInt64(layout.partitions.count))]
            for member in partition.members where candidate(member) && search.regionMembers.contains(member)
                && !holders.contains(member) {
                holders.append(member)
            }
        }
        let caching = holders.count
        if configuration.survivorAgreement {
            let first = Set(holders)
            holders += search.sortedMembers.filter { candidate($0) && !first.contains($0) }
        }
        return (holders, caching)
    }

    /// How many possible holders beyond the caching partition one ask goes to at once:
    /// a gap lost with the sender is given up only when every live member denied it, and
    /// in a region of hundreds, one at a time would outlast the last resort.
    static let orphanAskFanOut = 16

    /// Whom to ask for a departed sender's `sequence`: a possible holder that has not
    /// denied it, in turn (several at once past the caching partition's members); once
    /// all have, any member (a copy may be elsewhere).
    func orphanTargets(for sequence: UInt64, in stream: ReceiveStream, key: StreamKey, region: RegionView,
                       search: OrphanSearch, attempt: Int) -> [NodeID] {
        let denied = stream.denials[sequence] ?? []
        let (holders, caching) = holderList(sequence, key: key, region: region, search: search)
        // The caching partition's members first, one ask each, in turn; past them, a batch.
        let untriedCaching = holders[..<caching].filter { !denied.contains($0) }
        if !untriedCaching.isEmpty { return [untriedCaching[attempt % untriedCaching.count]] }
        let untried = holders[caching...].filter { !denied.contains($0) }
        if !untried.isEmpty {
            let from = (attempt * Self.orphanAskFanOut) % untried.count
            return (0..<min(Self.orphanAskFanOut, untried.count)).map { untried[(from + $0) % untried.count] }
        }
        let others = region.members.map(\.id).filter { $0 != id && $0 != key.sender && !departed.contains($0) }
        return others.isEmpty ? [] : [others[Int(random.next() % UInt64(others.count))]]
    }

    /// Skips the gaps at the head of a departed sender's stream that are lost with it
    /// (every possible holder denied them, or nobody answered `skipAfterAttempts` asks),
    /// delivering what follows each.
    func skipLost(_ stream: ReceiveStream, key: StreamKey, region: RegionView, search: OrphanSearch) {
        if !stream.denials.isEmpty {
            let contiguous = stream.contiguous
            stream.denials = stream.denials.filter { $0.key > contiguous }
        }
        while let entry = stream.missing[stream.contiguous + 1] {
            let sequence = stream.contiguous + 1
            let denied = stream.denials[sequence] ?? []
            let allDenied = entry.attempts > 0
                && possibleHolders(sequence, key: key, region: region, search: search).allSatisfy(denied.contains)
            guard allDenied || entry.attempts >= Self.skipAfterAttempts else { return }
            if !allDenied { statistics.abandonedUnanswered += 1 }
            stream.contiguous = sequence
            stream.missing[sequence] = nil
            stream.denials[sequence] = nil
            stream.viewHistoryGapless = false
            stream.fragments.removeAll()
            statistics.abandonedAfterSenderLeft += 1
            drainInOrder(stream)
        }
    }

    /// A peer asked for packets of a sender this node also believes gone: the numbers it
    /// is sure it cannot supply (a gap that it noticed only now may still be on its way).
    func notHeld(_ request: RequestPacket) -> [UInt64] {
        guard request.kind == .pull, departed.contains(request.sender) else { return [] }
        let key = StreamKey(sender: request.sender, region: request.region)
        guard let stream = streams[key] else {
            // No stream: it never had any of them, unless it holds packets while it learns
            // where its own debt begins.
            return debtQueries[key] == nil ? request.sequences : []
        }
        return request.sequences.filter { sequence in
            guard stream.cache[sequence] == nil, stream.outOfOrder[sequence] == nil else { return false }
            if sequence <= stream.contiguous || sequence < stream.start { return true }
            // Missing here too, for long enough that it is not merely still on its way.
            guard let entry = stream.missing[sequence] else { return false }
            return runningNow.nanoseconds(since: entry.since) >= 4 * configuration.requestRetryInterval.totalNanoseconds
        }
    }

    /// A peer says it does not hold these packets of a departed sender.
    func receiveNotHeld(_ reply: RequestPacket) {
        guard let stream = streams[StreamKey(sender: reply.sender, region: reply.region)] else { return }
        for sequence in reply.sequences where stream.missing[sequence] != nil {
            stream.denials[sequence, default: []].insert(reply.requester)
        }
    }

    /// Where the views of `stream`'s sender began, as far as this node knows: from the
    /// packets it accepted and those it holds beyond a gap. Sorted by sequence number.
    func knownViewStarts(_ stream: ReceiveStream) -> [(start: UInt64, view: UInt64)] {
        var starts: [UInt64: UInt64] = [:]
        for entry in stream.viewStarts { starts[entry.start] = entry.view }
        for packet in stream.packetsAhead { starts[packet.viewStartSequence] = packet.regionView }
        return starts.map { (start: $0.key, view: $0.value) }.sorted { $0.start < $1.start }
    }
}

/// What a visit works out once per departed sender's stream, for all its gaps.
struct OrphanSearch {
    var viewStarts: [(start: UInt64, view: UInt64)]
    var regionMembers: Set<NodeID>
    /// The region's members in id order: the holders beyond the caching partition.
    var sortedMembers: [NodeID]

    init(_ node: ProtocolNode, _ stream: ReceiveStream, _ region: RegionView) {
        viewStarts = node.knownViewStarts(stream)
        sortedMembers = region.members.map(\.id).sorted()
        regionMembers = Set(sortedMembers)
    }
}
