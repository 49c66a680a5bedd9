/// Where a new member's debt begins (section 4.2.1 C: a node that joins a region is owed
/// what is sent in the views it is a member of).
///
/// A member that joined in view J learns where the sender's messages of view J begin
/// from any packet of view J (it carries its view's first sequence number). But its first
/// packet from a sender can be of a later view K: the view reached it late, it was not
/// yet listening when the view-J packets went out, and the sender moved on. Starting the
/// stream at view K's first number would skip the view-J messages it is owed, and its
/// token contributions would declare them stable everywhere. So it starts no stream: it
/// holds that sender's packets and asks the sender, which keeps the first sequence number
/// of each view it used. The answer starts the stream, and the held packets are replayed.
/// Meanwhile the member contributes nothing for that sender, so nothing the member lacks
/// becomes stable.
///
/// A sender that crashed cannot answer, and a member that never got one of its packets
/// (it was frozen, or not yet listening, when they went out) learns of the stream only
/// from tokens. Every member keeps where each of a sender's views began, as its packets
/// reached it in order (`ReceiveStream.viewStarts`), so peers can answer for the sender:
/// queries alternate between the sender and a random peer of the region, and go only to
/// peers once the sender left the views. A peer answers only what its history says for
/// certain. Without an answer after `viewStartAttempts` asks, the member gives up: the
/// stream starts at the earliest view it saw a packet of (or at the first number, which
/// makes it ask for everything it may be owed), and what it skipped is counted
/// (`debtStartsGivenUp`).
struct DebtQuery {
    var view: UInt64
    var attempts = 0
    var nextAttemptAt: Instant
    /// The sender's packets held meanwhile (bounded by `maximumUnknownPackets` in all).
    var held: [(packet: DataPacket, retransmitted: Bool)] = []
}

extension ProtocolNode {
    static let viewStartAttempts = 8

    /// Holds `packet` (of a view after the one this node joined the region in) and asks
    /// its sender where the node's debt begins, unless it already asked.
    func awaitDebtStart(_ key: StreamKey, joined: UInt64, packet: DataPacket?, retransmitted: Bool) {
        var query = debtQueries[key] ?? DebtQuery(view: joined, nextAttemptAt: now)
        if let packet, heldForDebt < configuration.maximumUnknownPackets {
            query.held.append((packet, retransmitted))
            heldForDebt += 1
        } else if packet != nil {
            // Dropped like any loss: recovered once the stream starts.
            statistics.unknownDropped += 1
        }
        let first = debtQueries[key] == nil
        debtQueries[key] = query
        if first { askViewStarts() }
    }

    /// Sends the queries that are due, and gives up on senders that never answered.
    func askViewStarts() {
        for key in debtQueries.keys.sorted(by: { ($0.sender, $0.region) < ($1.sender, $1.region) }) {
            guard var query = debtQueries[key], query.nextAttemptAt <= now else { continue }
            if query.attempts >= Self.viewStartAttempts {
                statistics.debtStartsGivenUp += 1
                let earliest = query.held.map(\.packet.viewStartSequence).min() ?? 1
                resolveDebt(key, start: earliest)
                continue
            }
            if key.sender == id, let state = regionSend[key.region] {
                // Asking oneself: the history is at hand.
                resolveDebt(key, start: firstSequence(of: state, from: query.view).start)
                continue
            }
            let asked = viewStartTarget(key, attempt: query.attempts)
            query.attempts += 1
            // Backing off: 20 ms, 40 ms, ... (the sender may be busy, or the ask lost).
            query.nextAttemptAt = now.advanced(byNanoseconds: configuration.requestRetryInterval.totalNanoseconds << min(query.attempts, 6))
            debtQueries[key] = query
            guard let asked else { continue }
            statistics.viewStartQueriesSent += 1
            control.append(.viewStartQuery(ViewStartQueryPacket(sender: key.sender, region: key.region, requester: id,
                                                                view: query.view), to: asked))
        }
    }

    /// Whom to ask where the debt of `key` begins: the sender on even attempts while it
    /// is in the views, otherwise a random other member of the region.
    func viewStartTarget(_ key: StreamKey, attempt: Int) -> NodeID? {
        if !departed.contains(key.sender), attempt % 2 == 0 { return key.sender }
        guard let region = regions[key.region] else { return nil }
        let peers = region.members.filter { $0.id != id && $0.id != key.sender }
        if peers.isEmpty { return departed.contains(key.sender) ? nil : key.sender }
        return peers[Int(random.next() % UInt64(peers.count))].id
    }

    /// The earliest time a view-start query is due.
    var nextViewStartQuery: Instant? { debtQueries.values.map(\.nextAttemptAt).min() }

    /// The first view at or after `view` this sender numbered in, and where it began.
    func firstSequence(of state: RegionSendState, from view: UInt64) -> (view: UInt64, start: UInt64) {
        if let first = state.viewStarts.first(where: { $0.view >= view }) { return first }
        // Nothing numbered in that view or later: the debt begins with the next message.
        return (max(view, state.view), state.nextSequence)
    }

    /// Tells a new member where its debt in the asked sender's stream begins: as that
    /// sender, from the views it numbered in; as a peer, from the view starts it saw (only
    /// what they say for certain).
    func answerViewStartQuery(_ query: ViewStartQueryPacket) {
        guard query.requester != id else { return }
        let first: (view: UInt64, start: UInt64)
        let maximum: UInt64
        if query.sender == id {
            // Not numbered in that view or a later one yet: no answer (the member asks
            // again; answering "from the next message" would be wrong while this sender
            // still numbers in an older view).
            guard let state = regionSend[query.region],
                  let found = state.viewStarts.first(where: { $0.view >= query.view }) else { return }
            first = found
            maximum = state.nextSequence - 1
        } else if let found = streams[StreamKey(sender: query.sender, region: query.region)]?.viewStart(from: query.view) {
            first = found
            maximum = streams[StreamKey(sender: query.sender, region: query.region)]?.maximumSeen ?? 0
        } else if query.view > 0, departed.contains(query.sender),
                  let firstImpossible = departedBefore[query.sender]?[query.region], firstImpossible <= query.view {
            // Gone before the asked view existed: the sender numbered nothing in it or
            // later, and the requester is owed none of its messages. Said as a view
            // before the asked one (the sender's own answers never are).
            statistics.viewStartsAnswered += 1
            control.append(.viewStart(SenderStatusPacket(sender: query.sender, region: query.region, regionView: query.view - 1,
                                                         viewStartSequence: 1, maximumSequence: 0),
                                      to: query.requester))
            return
        } else {
            return
        }
        statistics.viewStartsAnswered += 1
        control.append(.viewStart(SenderStatusPacket(sender: query.sender, region: query.region, regionView: first.view,
                                                     viewStartSequence: first.start, maximumSequence: maximum),
                                  to: query.requester))
    }

    /// The answer to a query this node asked (others are ignored).
    func receiveViewStart(_ answer: SenderStatusPacket) {
        let key = StreamKey(sender: answer.sender, region: answer.region)
        guard let query = debtQueries[key] else { return }
        if answer.regionView < query.view {
            // A peer saw the sender leave before this node joined: nothing is owed. Held
            // packets of the sender's later views would say otherwise; they win.
            guard query.held.isEmpty, debtQueries.removeValue(forKey: key) != nil else { return }
            // Bounded like the streams: past the bound the sender stays without a
            // contribution from this node (its record cannot complete), and that is counted.
            guard owedNothing.count < configuration.maximumStreams else { return statistics.streamLimitDropped += 1 }
            owedNothing.insert(key)
            return
        }
        resolveDebt(key, start: answer.viewStartSequence)
        if let stream = streams[key] { learnMaximum(answer.maximumSequence, in: stream) }
    }

    /// Starts the stream at `start` (unless one exists by now) and replays what was held
    /// for it. Without the region or room for a stream, the held packets go, counted.
    func resolveDebt(_ key: StreamKey, start: UInt64) {
        guard let query = debtQueries.removeValue(forKey: key) else { return }
        heldForDebt -= query.held.count
        guard regions[key.region] != nil, streams[key] != nil || hasRoomForNewStream() else {
            statistics.unknownDropped += query.held.count
            return
        }
        if streams[key] == nil { streams[key] = ReceiveStream(start: max(start, 1), tally: heldTally) }
        for (packet, retransmitted) in query.held { receiveData(packet, retransmitted: retransmitted) }
    }

    /// Notes, for nodes that departed in this membership change, the first view of each
    /// of this node's regions they cannot have numbered a message in: the new view itself
    /// if they were removed from it, else the one after (a sender outside the region
    /// departs in the group views, while the region's view it numbered in stays).
    func recordDepartures(previous: [RegionID: RegionView], next: [RegionID: RegionView]) {
        for node in departedBefore.keys where !departed.contains(node) { departedBefore[node] = nil }
        for node in departed where departedBefore[node] == nil {
            var views: [RegionID: UInt64] = [:]
            for (id, region) in next {
                let removedHere = previous[id]?.members.contains { $0.id == node } == true
                    && !region.members.contains { $0.id == node }
                views[id] = removedHere ? region.viewNumber : region.viewNumber + 1
            }
            departedBefore[node] = views
        }
    }

    /// Whether `node` is in this node's current view of `region`, or publishes to or
    /// belongs to one of its groups.
    func isInCurrentViews(_ node: NodeID, region: RegionView) -> Bool {
        region.members.contains { $0.id == node }
            || groups.values.contains { $0.publishers.contains(node) || $0.members.contains(node) }
    }
}
