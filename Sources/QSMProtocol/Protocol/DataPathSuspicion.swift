/// Failure detection on the data path (issue 16 item 7). The GMS sees only heartbeats on
/// its own connection: a node whose UDP path is broken but whose GMS connection works
/// would stay in its rings and time their tokens out for ever.
///
/// A ring leader whose round times out probes every other member of that ring (one
/// small unicast each; rounds time out rarely, so this costs nothing in steady state).
/// A member that answers is cleared. A member that has answered none of the probes of
/// `suspectAfterTimeouts` timed-out rounds in a row, for at least `suspectAfter`, is
/// reported to the GMS as a suspect, which excludes it by its own policy. Never on one
/// timeout: a lost token is lost data, not a dead member.
///
/// A leader whose own data path is broken must not report the others: it reports only
/// once some other node has answered one of its probes since the suspect stopped
/// answering (an answer proves both directions of its own path work). So a ring of two
/// whose leader has no other ring to probe never reports; its member is still excluded
/// by the GMS once its heartbeats stop, if it is dead.
extension ProtocolNode {
    /// What a leader knows of a probed member's data path.
    struct ProbeRecord {
        /// The first probe not yet answered (0: none outstanding), and the latest one: an
        /// answer to any probe in between clears the member (a frozen member answers late).
        var firstUnanswered: UInt64 = 0
        var latest: UInt64 = 0
        /// When it was first probed without an answer.
        var since = Instant.zero
        /// Timed-out rounds in a row after which its probe was still unanswered.
        var misses = 0
    }

    /// A round this node leads in `region` timed out, or its leader went quiet (see
    /// `watchLeaders`): counts the members of `ring` that did not answer the previous
    /// probes, reports those that have been silent for long enough, and probes every
    /// other member of `ring` again.
    func probeAfterTimeout(region: RegionID, ring: [NodeID]) {
        guard configuration.suspectAfterTimeouts > 0, ring.count > 1 else { return }
        for member in ring where member != id {
            var record = probeRecords[member] ?? ProbeRecord()
            if record.firstUnanswered != 0 {
                record.misses += 1
            } else {
                record.since = now
            }
            if record.misses >= configuration.suspectAfterTimeouts,
               now.nanoseconds(since: record.since) >= configuration.suspectAfter.totalNanoseconds,
               let answer = lastProbeAnswer, answer > record.since {
                suspects.append(member)
                statistics.suspectsReported += 1
                // Reported once per silence: the next report needs a new one as long.
                record = ProbeRecord()
                record.since = now
            }
            nextProbeNonce &+= 1
            if record.firstUnanswered == 0 { record.firstUnanswered = nextProbeNonce }
            record.latest = nextProbeNonce
            probeRecords[member] = record
            control.append(.probe(ProbePacket(kind: .probe, from: id, region: region, nonce: nextProbeNonce), to: member))
            statistics.probesSent += 1
        }
    }

    /// Members watch their partition leader the same way: no token for two idle
    /// intervals (rounds come at least every idle interval while the leader is alive and
    /// heard), and the member probes the leader and, as a witness of its own path, the
    /// next other member, once per idle interval until a token comes.
    func watchLeaders() {
        guard configuration.suspectAfterTimeouts > 0, let due = nextLeaderWatch, now >= due else { return }
        for (regionID, at) in leaderWatch where now >= at {
            guard let region = regions[regionID], let (_, ring) = partitionRing(region), ring.count > 1, ring[0] != id else {
                leaderWatch[regionID] = nil
                continue
            }
            // The witness: the next member after this one other than the leader.
            let start = ring.firstIndex(of: id) ?? 0
            let witness = (1..<ring.count).map { ring[(start + $0) % ring.count] }.first { $0 != ring[0] }
            probeAfterTimeout(region: regionID, ring: [ring[0]] + (witness.map { [$0] } ?? []))
            leaderWatch[regionID] = now.advanced(by: configuration.idleTokenInterval)
        }
    }

    /// A token of `region`'s partition ring came from the leader's side (or the region's
    /// view is new): the leader is heard; watch again from now.
    func heardFromLeader(_ region: RegionView) {
        guard configuration.suspectAfterTimeouts > 0 else { return }
        guard let (_, ring) = partitionRing(region), ring.count > 1, ring[0] != id else {
            leaderWatch[region.id] = nil
            return
        }
        leaderWatch[region.id] = now.advanced(byNanoseconds: 2 * configuration.idleTokenInterval.totalNanoseconds)
    }

    /// The earliest leader watch due.
    var nextLeaderWatch: Instant? { leaderWatch.values.min() }

    /// A probe or an answer arrived.
    func receiveProbe(_ packet: ProbePacket) {
        guard packet.from != id else { return }
        switch packet.kind {
        case .probe:
            // Answered whatever the region: the answer proves the path, not membership.
            control.append(.probe(ProbePacket(kind: .probeReply, from: id, region: packet.region, nonce: packet.nonce),
                                  to: packet.from))
        default:
            guard var record = probeRecords[packet.from], record.firstUnanswered != 0,
                  (record.firstUnanswered...record.latest).contains(packet.nonce) else {
                statistics.probeAnswersIgnored += 1
                return
            }
            record.firstUnanswered = 0
            record.misses = 0
            probeRecords[packet.from] = record
            lastProbeAnswer = now
        }
    }

    /// Suspects reported since the last call, for the driver to tell the GMS.
    package func takeSuspects() -> [NodeID] {
        guard !suspects.isEmpty else { return [] }
        defer { suspects.removeAll() }
        return suspects
    }

    /// Forgets probes of nodes in none of this node's regions any more.
    func forgetProbes(keeping members: Set<NodeID>) {
        guard !probeRecords.isEmpty else { return }
        probeRecords = probeRecords.filter { members.contains($0.key) }
    }
}
