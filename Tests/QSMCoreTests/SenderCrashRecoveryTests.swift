import Testing
@testable import QSMProtocol

/// One test per rule of recovery when a sender is gone (`SenderCrashRecovery`,
/// `DebtStart`), on protocol nodes fed packets by hand: the swarm seeds that found each
/// hole replay the whole story in `SwarmTests`.
@Suite struct SenderCrashRecoveryTests {
    static let region = RegionID(5)
    static let group = GroupID(1)

    static func entry(_ id: UInt64) -> NodeEntry {
        NodeEntry(id: NodeID(id), address: QSMSocketAddress(.loopback, port: UInt16(9000 + id)))
    }

    /// A view of the test region with `members`, in partitions of the given ids.
    static func view(_ number: UInt64, members: [UInt64], partitions: [[UInt64]]) -> RegionView {
        RegionView(id: region, viewNumber: number, hierarchy: 0, groups: [group], members: members.map(entry),
                   partitions: partitions.map { Partition(members: $0.map(NodeID.init), leader: NodeID($0[0])) },
                   regionLeader: NodeID(partitions[0][0]), address: QSMSocketAddress(IPv4Address(239, 1, 1, 1), port: 17000))
    }

    static func groupView(_ number: UInt64, members: [UInt64], publishers: [UInt64] = []) -> GroupView {
        GroupView(id: group, name: GroupName("g")!, viewNumber: number, members: members.map(NodeID.init), mappingVersion: number,
                  regions: [RegionReference(id: region, viewNumber: number, address: nil)], hybridAddress: nil,
                  publishers: publishers.map(NodeID.init))
    }

    static func data(from sender: UInt64, view: UInt64, viewStart: UInt64, sequence: UInt64,
                     retransmitted: Bool = false) -> [UInt8] {
        ProtocolPacket.data(DataPacket(sender: NodeID(sender), region: region, regionView: view, viewStartSequence: viewStart,
                                       sequence: sequence, group: group, groupView: view, groupSequence: sequence,
                                       fragmentIndex: 0, fragmentCount: 1, publishedAt: 0, payload: [UInt8(sequence)]),
                            retransmitted: retransmitted).encoded()
    }

    static func node(_ id: UInt64, survivorAgreement: Bool = true) throws -> ProtocolNode {
        var configuration = ProtocolConfiguration()
        configuration.survivorAgreement = survivorAgreement
        // Views are installed by hand here, with no rings to say they are in everywhere:
        // no pause for them (that rule has tests of its own, `ViewChangePauseTests`).
        configuration.viewChangePauseLimit = .zero
        return try ProtocolNode(id: NodeID(id), configuration: configuration, seed: id)
    }

    /// Every datagram the node has to send now, decoded, with where it goes.
    static func drain(_ node: ProtocolNode, now: Instant) throws -> [(ProtocolDestination, ProtocolPacket)] {
        var out: [(ProtocolDestination, ProtocolPacket)] = []
        while let datagram = node.nextDatagram(now: now) {
            out.append((datagram.destination, try datagram.bytes.withUnsafeBytes { try ProtocolPacket(decoding: $0) }))
        }
        return out
    }

    static func ms(_ value: Int64) -> Instant { Instant(nanoseconds: value * 1_000_000) }

    /// A member keeps where each of a sender's views began, and answers a new member's
    /// query for a sender that crashed: exactly for a view it saw begin, and for an
    /// earlier view only when its history shows no view in between went unseen.
    @Test func aPeerAnswersWhereACrashedSendersViewBegan() throws {
        let peer = try Self.node(1)
        peer.installMembership(regions: [Self.view(1, members: [1, 3], partitions: [[1, 3]])], groups: [], now: Self.ms(1))
        peer.installMembership(regions: [Self.view(2, members: [1, 2, 3], partitions: [[1, 2, 3]])], groups: [], now: Self.ms(2))
        for sequence: UInt64 in 1...3 { peer.receive(Self.data(from: 3, view: 1, viewStart: 1, sequence: sequence), now: Self.ms(3)) }
        for sequence: UInt64 in 4...5 { peer.receive(Self.data(from: 3, view: 2, viewStart: 4, sequence: sequence), now: Self.ms(3)) }
        _ = try Self.drain(peer, now: Self.ms(3))
        func ask(view: UInt64) throws -> SenderStatusPacket? {
            let query = ProtocolPacket.viewStartQuery(ViewStartQueryPacket(sender: NodeID(3), region: Self.region,
                                                                           requester: NodeID(2), view: view)).encoded()
            peer.receive(query, now: Self.ms(4))
            for (destination, packet) in try Self.drain(peer, now: Self.ms(4)) {
                if case .viewStart(let answer) = packet, destination == .node(NodeID(2)) { return answer }
            }
            return nil
        }
        let exact = try #require(try ask(view: 2))
        #expect(exact.sender == NodeID(3) && exact.regionView == 2 && exact.viewStartSequence == 4 && exact.maximumSequence == 5)
        // View 3 has not begun as far as the peer knows: no answer (guessing "after 5"
        // would be wrong while the sender still numbers in view 2).
        #expect(try ask(view: 3) == nil)
    }

    /// A member that never got a single packet of a sender that then crashed (it was not
    /// yet listening) learns of the stream from a token, asks a peer where its debt
    /// begins, and then fetches it from the caching peer: it is owed what the sender
    /// sent in its views, and a live member holds it.
    @Test func aMemberThatMissedEveryPacketOfACrashedSenderStillGetsThem() throws {
        let late = try Self.node(2)
        late.installMembership(regions: [Self.view(2, members: [1, 2, 3], partitions: [[1, 2, 3]])],
                               groups: [Self.groupView(2, members: [1, 2, 3])], now: Self.ms(1))
        // Sender 3 crashes: the next view leaves it out.
        late.installMembership(regions: [Self.view(3, members: [1, 2], partitions: [[1, 2]])],
                               groups: [Self.groupView(3, members: [1, 2])], now: Self.ms(2))
        #expect(late.departed.contains(NodeID(3)))
        // A token reports sender 3's messages up to 6: no stream here, so a query goes
        // to the only peer (the sender is gone).
        late.learnAndRecover(from: [TokenRecord(sender: NodeID(3), contiguous: 0, maximumSeen: 6, stable: 0, coverage: 1)],
                             in: late.regions[Self.region]!)
        let queries = try Self.drain(late, now: Self.ms(3)).compactMap { destination, packet -> NodeID? in
            if case .viewStartQuery(let query) = packet, case .node(let target) = destination, query.sender == NodeID(3) { return target }
            return nil
        }
        #expect(queries == [NodeID(1)])
        // The peer's answer: view 2 began at 4.
        late.receive(ProtocolPacket.viewStart(SenderStatusPacket(sender: NodeID(3), region: Self.region, regionView: 2,
                                                                 viewStartSequence: 4, maximumSequence: 6)).encoded(),
                     now: Self.ms(4))
        let stream = try #require(late.streams[StreamKey(sender: NodeID(3), region: Self.region)])
        #expect(stream.start == 4 && stream.maximumSeen == 6 && stream.missing.count == 3)
        // The copies come from the peer, as retransmissions, and are delivered.
        for sequence: UInt64 in 4...6 {
            late.receive(Self.data(from: 3, view: 2, viewStart: 4, sequence: sequence, retransmitted: true), now: Self.ms(5))
        }
        var delivered: [UInt64] = []
        while let delivery = late.takeDelivery() { delivered.append(delivery.groupSequence) }
        #expect(delivered == [4, 5, 6])
    }

    /// A gap of a departed sender is sought from the caching partition of the view it
    /// was sent in, each possible holder in turn; with survivor agreement, then from the
    /// region's other live members, together. Once every one of them said it does not
    /// hold it, the gap is skipped and what follows is delivered. With the seed's rule,
    /// the caching partition's word is enough.
    @Test(arguments: [true, false])
    func aGapEveryPossibleHolderDeniesIsSkipped(survivorAgreement: Bool) throws {
        let node = try Self.node(1, survivorAgreement: survivorAgreement)
        // View 1: partitions {1, 2} and {3, 4}; sender 5 publishes from outside.
        node.installMembership(regions: [Self.view(1, members: [1, 2, 3, 4], partitions: [[1, 2], [3, 4]])],
                               groups: [Self.groupView(1, members: [1, 2, 3, 4], publishers: [5])], now: Self.ms(1))
        node.receive(Self.data(from: 5, view: 1, viewStart: 1, sequence: 1), now: Self.ms(2))
        node.receive(Self.data(from: 5, view: 1, viewStart: 1, sequence: 3), now: Self.ms(2))
        // The sender crashes: it is gone from the publishers (it never was a member).
        node.installMembership(regions: [Self.view(1, members: [1, 2, 3, 4], partitions: [[1, 2], [3, 4]])],
                               groups: [Self.groupView(1, members: [1, 2, 3, 4], publishers: [])], now: Self.ms(3))
        #expect(node.departed.contains(NodeID(5)))
        let region = node.regions[Self.region]!
        var time: Int64 = 100
        /// The peers asked for sequence 2 on the next few visits.
        func asked(visits: Int) throws -> [Set<NodeID>] {
            var asked: [Set<NodeID>] = []
            for _ in 0..<visits {
                // A while later, the driver's word that its input is read (retries held
                // back by the pause go then), and a token visit.
                time += 1_000
                node.inputCaughtUp(now: Self.ms(time))
                node.learnAndRecover(from: [], in: region)
                var now: Set<NodeID> = []
                for (destination, packet) in try Self.drain(node, now: Self.ms(time)) {
                    if case .request(let request) = packet, request.sequences.contains(2), case .node(let target) = destination {
                        now.insert(target)
                        #expect(request.kind == .pull)
                    }
                }
                if !now.isEmpty { asked.append(now) }
            }
            return asked
        }
        func deny(by peer: UInt64) {
            node.receive(ProtocolPacket.request(RequestPacket(kind: .notHeld, sender: NodeID(5), region: Self.region,
                                                              requester: NodeID(peer), sequences: [2])).encoded(), now: Self.ms(time))
        }
        // Sequence 2 is cached by partition 2 % 2 = 0, {1, 2}: node 2 is the one to ask.
        #expect(try asked(visits: 3).first == [NodeID(2)])
        #expect(node.takeDelivery()?.groupSequence == 1)
        #expect(node.takeDelivery() == nil)
        deny(by: 2)
        if survivorAgreement {
            // Node 3 or 4 may have delivered it and still hold it: both are asked at once,
            // and the gap stays until both deny.
            #expect(try asked(visits: 1) == [[NodeID(3), NodeID(4)]])
            deny(by: 3)
            node.learnAndRecover(from: [], in: region)
            #expect(node.takeDelivery() == nil)
            deny(by: 4)
        }
        // Every possible holder said no: the gap is lost with the sender.
        node.learnAndRecover(from: [], in: region)
        #expect(node.takeDelivery()?.groupSequence == 3)
        #expect(node.statistics.abandonedAfterSenderLeft == 1)
        #expect(node.statistics.abandonedUnanswered == 0)
    }

    /// The last resort: a gap of a departed sender that a possible holder never answers
    /// about is skipped after `skipAfterAttempts` backed-off asks, and counted apart
    /// (`abandonedUnanswered`): survivor agreement is not assured for it.
    @Test func aGapNobodyAnswersForIsSkippedAtTheLastResortAndCounted() throws {
        let node = try Self.node(1)
        node.installMembership(regions: [Self.view(1, members: [1, 2, 3], partitions: [[1, 2, 3]])],
                               groups: [Self.groupView(1, members: [1, 2, 3], publishers: [5])], now: Self.ms(1))
        node.receive(Self.data(from: 5, view: 1, viewStart: 1, sequence: 1), now: Self.ms(2))
        node.receive(Self.data(from: 5, view: 1, viewStart: 1, sequence: 3), now: Self.ms(2))
        node.installMembership(regions: [Self.view(1, members: [1, 2, 3], partitions: [[1, 2, 3]])],
                               groups: [Self.groupView(1, members: [1, 2, 3], publishers: [])], now: Self.ms(3))
        #expect(node.takeDelivery()?.groupSequence == 1)
        let region = node.regions[Self.region]!
        var time: Int64 = 10
        var asks = 0
        var delivered: UInt64?
        // Nodes 2 and 3 never answer; visits every 10 ms (the backoff needs running time).
        while delivered == nil, time < 60_000 {
            time += 10
            node.inputCaughtUp(now: Self.ms(time))
            node.learnAndRecover(from: [], in: region)
            for (_, packet) in try Self.drain(node, now: Self.ms(time)) {
                if case .request(let request) = packet, request.sequences.contains(2) { asks += 1 }
            }
            delivered = node.takeDelivery()?.groupSequence
        }
        #expect(delivered == 3)
        #expect(asks >= ProtocolNode.skipAfterAttempts)
        #expect(node.statistics.abandonedAfterSenderLeft == 1)
        #expect(node.statistics.abandonedUnanswered == 1)
    }

    /// Asks made while the sender was thought live do not count toward the last resort:
    /// asked of the sender every time (`peerAttemptsBeforeSender` 0), a gap had been asked
    /// for more than `skipAfterAttempts` times when the sender was found gone, and was
    /// skipped at once, before any survivor was asked (swarm seed 5126271043880124848).
    @Test func asksOfASenderThoughtLiveDoNotCountTowardTheLastResort() throws {
        var configuration = ProtocolConfiguration()
        configuration.viewChangePauseLimit = .zero
        configuration.peerAttemptsBeforeSender = 0
        let node = try ProtocolNode(id: NodeID(1), configuration: configuration, seed: 1)
        node.installMembership(regions: [Self.view(1, members: [1, 2, 3], partitions: [[1, 2, 3]])],
                               groups: [Self.groupView(1, members: [1, 2, 3], publishers: [5])], now: Self.ms(1))
        node.receive(Self.data(from: 5, view: 1, viewStart: 1, sequence: 1), now: Self.ms(2))
        node.receive(Self.data(from: 5, view: 1, viewStart: 1, sequence: 3), now: Self.ms(2))
        #expect(node.takeDelivery()?.groupSequence == 1)
        let region = node.regions[Self.region]!
        // The sender has crashed, but no view says so yet: it is asked, in vain (the node
        // runs all along, a token visit every 10 ms; unanswered asks back off to 64 ms).
        var askedOfSender = 0
        for time in stride(from: Int64(20), through: 3_000, by: 5) {
            node.tick(now: Self.ms(time))
            if time % 10 == 0 {
                node.inputCaughtUp(now: Self.ms(time))
                node.learnAndRecover(from: [], in: region)
            }
            for (destination, packet) in try Self.drain(node, now: Self.ms(time)) {
                guard case .request(let request) = packet, request.sequences.contains(2) else { continue }
                #expect(destination == .node(NodeID(5)))
                askedOfSender += 1
            }
        }
        #expect(askedOfSender > ProtocolNode.skipAfterAttempts)
        // Now it is gone: the gap is sought from the survivors, not skipped.
        node.installMembership(regions: [Self.view(1, members: [1, 2, 3], partitions: [[1, 2, 3]])],
                               groups: [Self.groupView(1, members: [1, 2, 3], publishers: [])], now: Self.ms(3_000))
        var askedOfSurvivors: Set<NodeID> = []
        for visit in 1...4 {
            let time = Int64(3_000 + 10 * visit)
            node.inputCaughtUp(now: Self.ms(time))
            node.learnAndRecover(from: [], in: region)
            for (destination, packet) in try Self.drain(node, now: Self.ms(time)) {
                if case .request(let request) = packet, request.sequences.contains(2), case .node(let peer) = destination {
                    askedOfSurvivors.insert(peer)
                }
            }
        }
        #expect(node.takeDelivery() == nil, "the gap was skipped")
        #expect(node.statistics.abandonedUnanswered == 0)
        #expect(!askedOfSurvivors.isEmpty && askedOfSurvivors.isSubset(of: [NodeID(2), NodeID(3)]), "\(askedOfSurvivors)")
    }

    /// Asked for a departed sender's packets it does not hold, a member says so when it is
    /// sure (it delivered past them without a copy); what it holds it sends. With survivor
    /// agreement it holds every packet it received until stable, not only its
    /// partition's share.
    @Test(arguments: [true, false])
    func aMemberSaysWhatItDoesNotHold(survivorAgreement: Bool) throws {
        let node = try Self.node(2, survivorAgreement: survivorAgreement)
        node.installMembership(regions: [Self.view(1, members: [1, 2, 3, 4], partitions: [[1, 2], [3, 4]])],
                               groups: [Self.groupView(1, members: [1, 2, 3, 4], publishers: [5])], now: Self.ms(1))
        // Node 2 is in partition 0: its share of the cache is the even sequence numbers.
        for sequence: UInt64 in 1...4 { node.receive(Self.data(from: 5, view: 1, viewStart: 1, sequence: sequence), now: Self.ms(2)) }
        // Everyone has 1: it is stable and dropped.
        node.learnAndRecover(from: [TokenRecord(sender: NodeID(5), contiguous: 4, maximumSeen: 4, stable: 1, coverage: 4)],
                             in: node.regions[Self.region]!)
        node.installMembership(regions: [Self.view(1, members: [1, 2, 3, 4], partitions: [[1, 2], [3, 4]])],
                               groups: [Self.groupView(1, members: [1, 2, 3, 4], publishers: [])], now: Self.ms(3))
        _ = try Self.drain(node, now: Self.ms(3))
        node.receive(ProtocolPacket.request(RequestPacket(kind: .pull, sender: NodeID(5), region: Self.region,
                                                          requester: NodeID(1), sequences: [1, 2, 3])).encoded(), now: Self.ms(4))
        var resent: [UInt64] = []
        var denied: [UInt64] = []
        for (destination, packet) in try Self.drain(node, now: Self.ms(4)) {
            #expect(destination == .node(NodeID(1)))
            switch packet {
            case .data(let data, true): resent.append(data.sequence)
            case .request(let reply) where reply.kind == .notHeld: denied += reply.sequences
            default: break
            }
        }
        #expect(resent == (survivorAgreement ? [2, 3] : [2]))
        #expect(denied == (survivorAgreement ? [1] : [1, 3]))
    }

    /// Survivor agreement, the case the seed's rule misses: the caching partition of a
    /// packet lost it, a member outside that partition delivered it, and the sender
    /// crashed. That member still holds it (it is not stable: others lack it), so a
    /// member missing it gets it from that member and delivers it too.
    @Test func aPacketTheCachingPartitionLostStillReachesEverySurvivor() throws {
        let layout = Self.view(1, members: [1, 2, 3, 4], partitions: [[1, 2], [3, 4]])
        let crashed = Self.view(2, members: [1, 2, 3, 4], partitions: [[1, 2], [3, 4]])
        let groups = [Self.groupView(1, members: [1, 2, 3, 4], publishers: [5])]
        let gone = [Self.groupView(2, members: [1, 2, 3, 4])]
        // Sequence 2 is cached by partition {1, 2}: both lost it. Node 3 got it.
        let witness = try Self.node(3), asker = try Self.node(1)
        for node in [witness, asker] { node.installMembership(regions: [layout], groups: groups, now: Self.ms(1)) }
        for sequence: UInt64 in 1...3 { witness.receive(Self.data(from: 5, view: 1, viewStart: 1, sequence: sequence), now: Self.ms(2)) }
        for sequence: UInt64 in [1, 3] { asker.receive(Self.data(from: 5, view: 1, viewStart: 1, sequence: sequence), now: Self.ms(2)) }
        var witnessed: [UInt64] = []
        while let delivery = witness.takeDelivery() { witnessed.append(delivery.groupSequence) }
        #expect(witnessed == [1, 2, 3])
        for node in [witness, asker] { node.installMembership(regions: [crashed], groups: gone, now: Self.ms(3)) }
        // The asker seeks 2 from node 2 (caching, denies), then from 3 and 4.
        var time: Int64 = 100
        var got: [UInt64] = []
        while got.count < 3, time < 10_000 {
            asker.learnAndRecover(from: [], in: asker.regions[Self.region]!)
            for (destination, packet) in try Self.drain(asker, now: Self.ms(time)) {
                guard case .request(let request) = packet, case .node(let target) = destination else { continue }
                if target == NodeID(2) || target == NodeID(4) {
                    asker.receive(ProtocolPacket.request(RequestPacket(kind: .notHeld, sender: NodeID(5), region: Self.region,
                                                                       requester: target, sequences: request.sequences)).encoded(),
                                  now: Self.ms(time))
                } else if target == NodeID(3) {
                    witness.receive(ProtocolPacket.request(request).encoded(), now: Self.ms(time))
                    for (_, reply) in try Self.drain(witness, now: Self.ms(time)) {
                        asker.receive(reply.encoded(), now: Self.ms(time))
                    }
                }
            }
            while let delivery = asker.takeDelivery() { got.append(delivery.groupSequence) }
            time += 500
            asker.inputCaughtUp(now: Self.ms(time))
        }
        #expect(got == [1, 2, 3])
        #expect(asker.statistics.abandonedAfterSenderLeft == 0)
    }

    /// A stream started from a sender's status (everything up to its maximum was sent
    /// before this node joined) moves its start when a later number turns out to be of
    /// the old view too: the sender had not learned the new view yet. Before, the node
    /// waited forever for a packet that was never owed to it.
    @Test func anOldViewPacketPastTheStartMovesTheStart() throws {
        let node = try Self.node(2)
        node.installMembership(regions: [Self.view(3, members: [1, 2, 3], partitions: [[1, 2, 3]])], groups: [], now: Self.ms(1))
        // Sender 3's status of view 2 (before node 2 joined): it has numbered up to 45.
        node.receive(ProtocolPacket.senderStatus(SenderStatusPacket(sender: NodeID(3), region: Self.region, regionView: 2,
                                                                    viewStartSequence: 1, maximumSequence: 45)).encoded(),
                     now: Self.ms(2))
        let stream = try #require(node.streams[StreamKey(sender: NodeID(3), region: Self.region)])
        #expect(stream.start == 46)
        // View 3 starts at 47: 46 went out in view 2 (and 47 arrives first).
        node.receive(Self.data(from: 3, view: 3, viewStart: 47, sequence: 47), now: Self.ms(3))
        #expect(node.takeDelivery() == nil)
        node.receive(Self.data(from: 3, view: 2, viewStart: 1, sequence: 46, retransmitted: true), now: Self.ms(4))
        #expect(stream.start == 47)
        #expect(node.takeDelivery()?.groupSequence == 47)
        #expect(node.statistics.notOwedDropped == 1)
    }

    /// A member that saw a sender leave tells a node that joined later it is owed none of
    /// that sender's messages: a region member removed in view 2 numbered nothing in view
    /// 2 or later; a sender outside the region, gone from the group views while the
    /// region stayed in view 2, may still have numbered in view 2, so only from view 3.
    @Test func aPeerSaysNothingIsOwedOfASenderGoneBeforeTheAskedView() throws {
        let peer = try Self.node(1)
        peer.installMembership(regions: [Self.view(1, members: [1, 3], partitions: [[1, 3]])],
                               groups: [Self.groupView(1, members: [1, 3], publishers: [4])], now: Self.ms(1))
        // Node 3 (a member) and node 4 (a publisher from outside) both go.
        peer.installMembership(regions: [Self.view(2, members: [1], partitions: [[1]])],
                               groups: [Self.groupView(2, members: [1])], now: Self.ms(2))
        _ = try Self.drain(peer, now: Self.ms(2))
        func ask(sender: UInt64, view: UInt64) throws -> SenderStatusPacket? {
            let query = ProtocolPacket.viewStartQuery(ViewStartQueryPacket(sender: NodeID(sender), region: Self.region,
                                                                           requester: NodeID(2), view: view)).encoded()
            peer.receive(query, now: Self.ms(4))
            for (destination, packet) in try Self.drain(peer, now: Self.ms(4)) {
                if case .viewStart(let answer) = packet, destination == .node(NodeID(2)) { return answer }
            }
            return nil
        }
        // "Nothing owed" is said as a view before the one asked.
        #expect(try ask(sender: 3, view: 2)?.regionView == 1)
        #expect(try ask(sender: 3, view: 5)?.regionView == 4)
        #expect(try ask(sender: 3, view: 1) == nil)
        #expect(try ask(sender: 4, view: 2) == nil)
        #expect(try ask(sender: 4, view: 3)?.regionView == 2)
        // A sender that comes back is no longer known to be gone.
        peer.installMembership(regions: [Self.view(3, members: [1, 3], partitions: [[1, 3]])],
                               groups: [Self.groupView(3, members: [1, 3])], now: Self.ms(5))
        #expect(try ask(sender: 3, view: 4) == nil)
    }

    /// A node that joined after a sender crashed never saw it in any view, yet tokens
    /// still carry that sender's record until its last messages are stable. The node asks
    /// where its debt begins; a peer's "nothing owed" lets it vouch for the sender on the
    /// token without lowering the minimum. Before, it added nothing, its partition never
    /// covered the sender, and the sender's messages never became stable anywhere
    /// (swarm seed 624876516579225120).
    @Test func aNodeThatJoinedAfterASenderLeftCompletesTheSendersRecord() throws {
        let late = try Self.node(2)
        late.installMembership(regions: [Self.view(3, members: [1, 2], partitions: [[1, 2]])],
                               groups: [Self.groupView(3, members: [1, 2])], now: Self.ms(1))
        #expect(!late.departed.contains(NodeID(3)))
        let record = TokenRecord(sender: NodeID(3), contiguous: .max, maximumSeen: 755, stable: 9, coverage: 0)
        late.learnAndRecover(from: [record], in: late.regions[Self.region]!)
        var queried: Set<NodeID> = []
        var time: Int64 = 2
        // The sender first (it is in no view here: maybe alive and not yet seen), then peers.
        while !queried.contains(NodeID(1)), time < 2_000 {
            for (destination, packet) in try Self.drain(late, now: Self.ms(time)) {
                if case .viewStartQuery(let query) = packet, case .node(let target) = destination, query.view == 3 { queried.insert(target) }
            }
            time += 50
            late.tick(now: Self.ms(time))
        }
        #expect(queried == [NodeID(1), NodeID(3)])
        var token = TokenPacket(kind: .partitionToken, region: Self.region, regionView: 3, partition: 0, round: 1,
                                startedAt: 0, records: [record])
        late.mergeOwnState(into: &token)
        #expect(token.records[0].coverage == 0)
        late.receive(ProtocolPacket.viewStart(SenderStatusPacket(sender: NodeID(3), region: Self.region, regionView: 2,
                                                                 viewStartSequence: 1, maximumSequence: 0)).encoded(),
                     now: Self.ms(time))
        late.mergeOwnState(into: &token)
        #expect(token.records[0].coverage == 1 && token.records[0].contiguous == .max && token.records[0].maximumSeen == 755)
        #expect(late.streams[StreamKey(sender: NodeID(3), region: Self.region)] == nil)
        #expect(late.debtQueries.isEmpty)
        #expect(late.takeDelivery() == nil)
    }

    /// "Nothing owed" does not override packets: a node holding a packet of the sender
    /// from the view it joined in keeps asking (the peer's word is wrong, or forged).
    @Test func heldPacketsOutweighNothingOwed() throws {
        let late = try Self.node(2)
        late.installMembership(regions: [Self.view(3, members: [1, 2, 3], partitions: [[1, 2, 3]])],
                               groups: [Self.groupView(3, members: [1, 2, 3])], now: Self.ms(1))
        late.installMembership(regions: [Self.view(4, members: [1, 2, 3], partitions: [[1, 2, 3]])],
                               groups: [Self.groupView(4, members: [1, 2, 3])], now: Self.ms(1))
        // The first packet from sender 3 is of view 4: where view 3's messages began is unknown.
        late.receive(Self.data(from: 3, view: 4, viewStart: 10, sequence: 11), now: Self.ms(2))
        #expect(late.debtQueries.count == 1)
        late.receive(ProtocolPacket.viewStart(SenderStatusPacket(sender: NodeID(3), region: Self.region, regionView: 2,
                                                                 viewStartSequence: 1, maximumSequence: 0)).encoded(),
                     now: Self.ms(3))
        #expect(late.debtQueries.count == 1 && late.owedNothing.isEmpty)
    }

    /// "Nothing owed" answers are remembered within the stream bound; one past it is
    /// counted (`streamLimitDropped`), and that sender's record gets no vouching.
    @Test func nothingOwedBeyondTheStreamBoundIsCounted() throws {
        var configuration = ProtocolConfiguration()
        configuration.maximumStreams = 1
        let late = try ProtocolNode(id: NodeID(2), configuration: configuration, seed: 2)
        late.installMembership(regions: [Self.view(3, members: [1, 2], partitions: [[1, 2]])],
                               groups: [Self.groupView(3, members: [1, 2])], now: Self.ms(1))
        for sender: UInt64 in [3, 4] {
            let record = TokenRecord(sender: NodeID(sender), contiguous: .max, maximumSeen: 9, stable: 0, coverage: 0)
            late.learnAndRecover(from: [record], in: late.regions[Self.region]!)
            late.receive(ProtocolPacket.viewStart(SenderStatusPacket(sender: NodeID(sender), region: Self.region, regionView: 2,
                                                                     viewStartSequence: 1, maximumSequence: 0)).encoded(),
                         now: Self.ms(2))
        }
        #expect(late.owedNothing == [StreamKey(sender: NodeID(3), region: Self.region)])
        #expect(late.statistics.streamLimitDropped == 1)
        #expect(late.debtQueries.isEmpty)
    }
}
