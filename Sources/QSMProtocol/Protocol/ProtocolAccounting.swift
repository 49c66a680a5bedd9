/// What a node holds and owes, for flow control, the simulator's checks and diagnosis:
/// held bytes, quiescence, lags behind senders.
extension ProtocolNode {
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
    package func senderRetransmissionsReceived() -> [NodeID: Int] {
        var counts: [NodeID: Int] = [:]
        for (key, stream) in streams where stream.retransmissionsReceived > 0 {
            counts[key.sender, default: 0] += stream.retransmissionsReceived
        }
        return counts
    }

    /// The regions this node has installed, lowest id first (the simulator lays its
    /// partition-wide loss out by them).
    package var installedRegions: [RegionView] {
        regions.values.sorted { $0.id < $1.id }
    }

    /// What still keeps the node from being quiescent, for diagnosis.
    package var quiescenceReport: String {
        var parts: [String] = []
        if unacknowledgedMessages > 0 {
            // Where they wait: a region's acknowledgement, or a group back in view.
            var places: [String] = []
            for (region, state) in regionSend.sorted(by: { $0.key < $1.key }) where !state.awaiting.isEmpty {
                let groups = Set((0..<state.awaiting.count).map { state.awaiting[$0].message.group }).sorted { $0.value < $1.value }
                places.append("\(state.awaiting.count) awaiting \(region) (of \(groups), sent through \(state.nextSequence - 1), acknowledged to \(state.acknowledged))")
            }
            if !orphans.isEmpty {
                places.append("\(orphans.count) kept for groups out of view \(Set(orphans.map(\.group)).sorted { $0.value < $1.value })")
            }
            if !viewChecks.isEmpty { places.append("\(viewChecks.count) acknowledged under a newer view, to check") }
            if !restartHeld.isEmpty { places.append("\(restartHeld.count) held after a restart") }
            parts.append("\(unacknowledgedMessages) unacknowledged" + (places.isEmpty ? "" : " (" + places.joined(separator: ", ") + ")"))
        }
        if !sendQueue.isEmpty { parts.append("\(sendQueue.count) queued") }
        for (key, stream) in streams where stream.isActive || !stream.cache.isEmpty {
            parts.append("\(key.sender)@\(key.region): contiguous \(stream.contiguous) max \(stream.maximumSeen) stable \(stream.stable) cache \(stream.cache.count) held \(stream.heldAhead) "
                + "start \(stream.start) missing \(stream.missing.count) (asked \(stream.missing.values.map(\.attempts).max() ?? 0) times at most)"
                + (departed.contains(key.sender) ? " sender departed" : "") + (regions[key.region] == nil ? " region not in view" : ""))
        }
        return parts.joined(separator: "; ")
    }
}
