import Testing
@testable import QSMProtocol
@testable import QSMSimulation

/// Recovery from caching replicas once they hold the message, and the inter-partition
/// push (`ReplicaRecovery`): each rule on protocol nodes fed by hand, then partition-wide
/// and random loss under the simulator with each rule on and off.
@Suite struct ReplicaRecoveryTests {
    typealias Fixture = SenderCrashRecoveryTests

    /// A node of a region laid out in `partitions` (each led by its first, the region by
    /// the first partition's leader) that received sender 9's packets `received` (sender
    /// 9 publishes without being a member). Partition i caches the sequence numbers equal
    /// to i modulo the number of partitions.
    static func node(_ id: UInt64, partitions: [[UInt64]], received: [UInt64],
                     configure: (inout ProtocolConfiguration) -> Void = { _ in }) throws -> ProtocolNode {
        var configuration = ProtocolConfiguration()
        // Views are installed by hand, with no rings to say they are in everywhere.
        configuration.viewChangePauseLimit = .zero
        configure(&configuration)
        let node = try ProtocolNode(id: NodeID(id), configuration: configuration, seed: id)
        let members = partitions.flatMap { $0 }.sorted()
        node.installMembership(regions: [Fixture.view(1, members: members, partitions: partitions)],
                               groups: [Fixture.groupView(1, members: members, publishers: [9])], now: Fixture.ms(1))
        for sequence in received { node.receive(Fixture.data(from: 9, view: 1, viewStart: 1, sequence: sequence), now: Fixture.ms(2)) }
        _ = try Fixture.drain(node, now: Fixture.ms(2))
        return node
    }

    /// Sender 9's packet `sequence`, retransmitted (by multicast to the region if `toRegion`).
    static func retransmission(_ sequence: UInt64, toRegion: Bool) -> [UInt8] {
        ProtocolPacket.data(DataPacket(sender: NodeID(9), region: Fixture.region, regionView: 1, viewStartSequence: 1,
                                       sequence: sequence, group: Fixture.group, groupView: 1, groupSequence: sequence,
                                       fragmentIndex: 0, fragmentCount: 1, publishedAt: 0, payload: [UInt8(sequence)],
                                       repairedToRegion: toRegion),
                            retransmitted: true).encoded()
    }

    /// `request` of sender 9's packets, from `requester`, arrives at `node` at `time` ms;
    /// returns where the node sent which data packets then.
    static func request(_ node: ProtocolNode, _ sequences: [UInt64], by requester: UInt64, kind: PacketKind = .pull,
                        at time: Int64) throws -> [(ProtocolDestination, UInt64)] {
        let request = RequestPacket(kind: kind, sender: NodeID(9), region: Fixture.region, requester: NodeID(requester),
                                    sequences: sequences)
        node.receive(ProtocolPacket.request(request).encoded(), now: Fixture.ms(time))
        return try sentData(node, at: time)
    }

    static func sentData(_ node: ProtocolNode, at time: Int64) throws -> [(ProtocolDestination, UInt64)] {
        try Fixture.drain(node, now: Fixture.ms(time)).compactMap { destination, packet in
            guard case .data(let data, true) = packet else { return nil }
            return (destination, data.sequence)
        }
    }

    /// Two partitions of three: node 4 (partition 1) caches the odd numbers, and has
    /// lost 3.
    static let twoPartitions: [[UInt64]] = [[1, 2, 3], [4, 5, 6]]

    // MARK: A replica answers once it holds the packet

    @Test func aReplicaThatLacksAPacketItCachesAnswersOnceItHoldsIt() throws {
        let replica = try Self.node(4, partitions: Self.twoPartitions, received: [1, 2, 4, 5])
        #expect(try Self.request(replica, [3], by: 2, at: 3).isEmpty)
        #expect(replica.statistics.repairsAwaited == 1)
        #expect(replica.statistics.repairRequestsNotHeld == 0)
        // 3 reaches the replica (its own request answered by unicast): member 2 gets it.
        replica.receive(Self.retransmission(3, toRegion: false), now: Fixture.ms(5))
        let sent = try Self.sentData(replica, at: 5)
        #expect(sent.map(\.0) == [.node(NodeID(2))])
        #expect(sent.map(\.1) == [3])
        #expect(replica.statistics.awaitedRepairsAnswered == 1)
        // Once: a second copy arriving answers nothing more.
        replica.receive(Self.retransmission(3, toRegion: false), now: Fixture.ms(6))
        #expect(try Self.sentData(replica, at: 6).isEmpty)
    }

    @Test func withoutTheRuleTheRequestIsDroppedAndNeverAnswered() throws {
        let replica = try Self.node(4, partitions: Self.twoPartitions, received: [1, 2, 4, 5]) { $0.answersOnceHeld = false }
        #expect(try Self.request(replica, [3], by: 2, at: 3).isEmpty)
        #expect(replica.statistics.repairRequestsNotHeld == 1)
        replica.receive(Self.retransmission(3, toRegion: false), now: Fixture.ms(5))
        #expect(try Self.sentData(replica, at: 5).isEmpty)
        #expect(replica.statistics.repairsAwaited == 0)
    }

    @Test func aPacketThatCameByMulticastToTheRegionIsNotSentAgain() throws {
        let replica = try Self.node(4, partitions: Self.twoPartitions, received: [1, 2, 4, 5])
        _ = try Self.request(replica, [3], by: 2, at: 3)
        replica.receive(Self.retransmission(3, toRegion: true), now: Fixture.ms(5))
        #expect(try Self.sentData(replica, at: 5).isEmpty)
        #expect(replica.statistics.awaitedRepairsServedByMulticast == 1)
        #expect(replica.statistics.awaitedRepairsAnswered == 0)
        // The cached copy keeps its mark, but a later unicast of it is not sent as a
        // multicast repair.
        let later = try Fixture.drain(replica, now: Fixture.ms(6))
        #expect(later.isEmpty)
        let request = RequestPacket(kind: .pull, sender: NodeID(9), region: Fixture.region, requester: NodeID(5), sequences: [3])
        replica.receive(ProtocolPacket.request(request).encoded(), now: Fixture.ms(7))
        let datagram = try #require(replica.nextDatagram(now: Fixture.ms(7)))
        #expect(datagram.destination == .node(NodeID(5)))
        #expect(datagram.bytes.first == PacketKind.retransmission.rawValue)
    }

    @Test func severalAskersMeanLossSeenByManyAndAreLeftToTheRegionsRepair() throws {
        let replica = try Self.node(4, partitions: Self.twoPartitions, received: [1, 2, 4, 5])
        _ = try Self.request(replica, [3], by: 2, at: 3)
        _ = try Self.request(replica, [3], by: 5, at: 3)
        _ = try Self.request(replica, [3], by: 6, at: 4)
        // The first was kept, then given up with the second; the second and third were
        // never kept.
        #expect(replica.statistics.repairsAwaited == 1)
        #expect(replica.statistics.awaitedRepairsRefused == 3)
        replica.receive(Self.retransmission(3, toRegion: false), now: Fixture.ms(5))
        #expect(try Self.sentData(replica, at: 5).isEmpty)
        #expect(replica.statistics.awaitedRepairsAnswered == 0)
    }

    @Test func onlyWhatTheReplicaWillHoldIsKeptAndOnlyForAWhile() throws {
        // Keeping only its partition's share (without survivor agreement, which keeps
        // every packet until stable).
        let replica = try Self.node(4, partitions: Self.twoPartitions, received: [1, 2, 4, 5]) { $0.survivorAgreement = false }
        // 2 was delivered and is not its share; 6 is not its share either; 3 is.
        #expect(try Self.request(replica, [2, 6], by: 1, at: 3).isEmpty)
        #expect(replica.statistics.repairRequestsNotHeld == 2)
        #expect(replica.statistics.repairsAwaited == 0)
        _ = try Self.request(replica, [3], by: 2, at: 3)
        // After the window (two retry intervals) the asker has asked elsewhere.
        let late = 3 + 2 * Int64(replica.configuration.requestRetryInterval.totalNanoseconds / 1_000_000) + 1
        // Running all along (time a node spends not running counts only in part).
        for time in 4..<late {
            replica.tick(now: Fixture.ms(time))
            _ = try Fixture.drain(replica, now: Fixture.ms(time))
        }
        replica.receive(Self.retransmission(3, toRegion: false), now: Fixture.ms(late))
        #expect(try Self.sentData(replica, at: late).isEmpty)
        #expect(replica.statistics.awaitedRepairsExpired == 1)
    }

    @Test func keptRequestsGoWhenTheNodeLeavesTheRegionCounted() throws {
        let replica = try Self.node(4, partitions: Self.twoPartitions, received: [1, 2, 4, 5])
        _ = try Self.request(replica, [3], by: 2, at: 3)
        replica.installMembership(regions: [], groups: [], now: Fixture.ms(4))
        #expect(replica.awaitedRepairs.isEmpty)
        #expect(replica.awaitedOrder.isEmpty)
        #expect(replica.statistics.awaitedRepairsExpired == 1)
    }

    @Test func keptRequestsAreBounded() throws {
        let replica = try Self.node(4, partitions: Self.twoPartitions, received: [1]) { $0.maximumPendingRetransmissions = 4 }
        // Odd numbers 3...19 (its share), each from a lone asker; the sender said 20 exist.
        replica.receive(Fixture.data(from: 9, view: 1, viewStart: 1, sequence: 20), now: Fixture.ms(3))
        for sequence in stride(from: UInt64(3), through: 19, by: 2) { _ = try Self.request(replica, [sequence], by: 2, at: 3) }
        #expect(replica.statistics.repairsAwaited == 4)
        #expect(replica.statistics.awaitedRepairsRefused == 5)
        #expect(replica.statistics.repairRequestsNotHeld == 5)
    }

    // MARK: The inter-partition push

    /// The leader of partition 1 of `partitions` gets its token back with `run` lacked by
    /// every member: the requests it sends, by kind.
    func leaderAsks(partitions: [[UInt64]], leader: UInt64, received: [UInt64], run: ClosedRange<UInt64>,
                    pushes: Bool = true) throws -> [(ProtocolDestination, RequestPacket)] {
        let node = try Self.node(leader, partitions: partitions, received: received) { $0.pushesBetweenPartitions = pushes }
        return try RepairAggregationTests.returnToken(to: node, membersLack: run).compactMap { destination, packet in
            guard case .request(let request) = packet, request.kind == .regionRepair || request.kind == .partitionPush else { return nil }
            return (destination, request)
        }
    }

    @Test func whatAnotherPartitionCachesIsAskedOfItAsAPush() throws {
        // Leader 4 of partition 1 (odd numbers); its partition lacks 3...6.
        let asked = try leaderAsks(partitions: Self.twoPartitions, leader: 4, received: [1, 2, 7], run: 3...6)
        let pushes = asked.filter { $0.1.kind == .partitionPush }
        let repairs = asked.filter { $0.1.kind == .regionRepair }
        #expect(pushes.count == 1)
        #expect(pushes.first?.1.sequences == [4, 6])
        #expect(pushes.allSatisfy { [ProtocolDestination.node(NodeID(1)), .node(NodeID(2)), .node(NodeID(3))].contains($0.0) })
        // Its own partition's share: nobody in it holds them; the sender multicasts.
        #expect(repairs.count == 1)
        #expect(repairs.first?.1.sequences == [3, 5])
        #expect(repairs.first?.0 == .node(NodeID(9)))
    }

    @Test func withoutPushesTheSenderIsAskedForTheWholeRun() throws {
        let asked = try leaderAsks(partitions: Self.twoPartitions, leader: 4, received: [1, 2, 7], run: 3...6, pushes: false)
        #expect(asked.map(\.1.kind) == [.regionRepair])
        #expect(asked.first?.1.sequences == [3, 4, 5, 6])
    }

    @Test func aRegionOfOnePartitionAsksTheSenderAsBefore() throws {
        let asked = try leaderAsks(partitions: [[4, 5, 6]], leader: 4, received: [1, 2, 7], run: 3...6)
        #expect(asked.map(\.1.kind) == [.regionRepair])
        #expect(asked.first?.1.sequences == [3, 4, 5, 6])
    }

    /// Three partitions of three (region of nine: multicast only from five askers on).
    static let threePartitions: [[UInt64]] = [[1, 2, 3], [4, 5, 6], [7, 8, 10]]

    @Test func aPushSendsWhatIsHeldToEveryMemberOfTheLackingPartition() throws {
        // Node 2 (partition 0: multiples of 3) holds 1...6; partition 1's leader asks for
        // 3 and 6 (held) and 9 (not yet arrived here).
        let replica = try Self.node(2, partitions: Self.threePartitions, received: Array(1...6))
        let sent = try Self.request(replica, [3, 6, 9], by: 4, kind: .partitionPush, at: 3)
        #expect(sent.count == 6)
        #expect(Set(sent.map(\.1)) == [3, 6])
        #expect(Set(sent.map(\.0)) == [.node(NodeID(4)), .node(NodeID(5)), .node(NodeID(6))])
        #expect(replica.statistics.partitionPushes == 6)
        #expect(replica.statistics.multicastRepairs == 0)
        // What it lacks too went to the sender, for one multicast.
        replica.receive(ProtocolPacket.request(RequestPacket(kind: .partitionPush, sender: NodeID(9), region: Fixture.region,
                                                             requester: NodeID(5), sequences: [9])).encoded(), now: Fixture.ms(4))
        let asked = try Fixture.drain(replica, now: Fixture.ms(4)).compactMap { destination, packet -> RequestPacket? in
            guard case .request(let request) = packet, request.kind == .regionRepair else { return nil }
            #expect(destination == .node(NodeID(9)))
            return request
        }
        #expect(asked.map(\.sequences) == [[9]])
    }

    @Test func aPushOfAPacketThatCameByMulticastToTheRegionSendsNothing() throws {
        let replica = try Self.node(2, partitions: Self.threePartitions, received: [1, 2, 4])
        replica.receive(Self.retransmission(3, toRegion: true), now: Fixture.ms(3))
        _ = try Fixture.drain(replica, now: Fixture.ms(3))
        #expect(try Self.request(replica, [3], by: 4, kind: .partitionPush, at: 4).isEmpty)
        #expect(replica.statistics.pushesServedByMulticast == 1)
        // A requester outside the region's partitions gets nothing, counted.
        #expect(try Self.request(replica, [3], by: 77, kind: .partitionPush, at: 5).isEmpty)
        #expect(replica.statistics.repairRequestsNotHeld == 1)
    }

    // MARK: Under the simulator

    /// A multicast lost at every member of one partition of a region of 20 (four
    /// partitions of five): with pushes, the partitions that hold the packet send it to
    /// the one that lacks it, and the sender multicasts to all 20 only for that
    /// partition's own share.
    ///
    /// With a grace of 2 ms before a hole is asked for (a network that may reorder):
    /// then a token reports the partition's loss to its leader first. Under the default
    /// grace (0.25 ms) the members' own asks to the caching partitions mostly come first,
    /// and a push is rarely needed (`bench/README.md`).
    @Test(arguments: [UInt64(1), 2, 3])
    func partitionWideLossIsPushedFromPartitionsThatHoldIt(seed: UInt64) throws {
        var scenario = SimulationTests.base(20, seconds: 2, rate: 2_000)
        scenario.partitionLoss = 0.05
        scenario.protocolConfiguration.gapGracePeriod = .milliseconds(2)
        let pushed = try Simulator(scenario: scenario, seed: seed).run()
        scenario.protocolConfiguration.pushesBetweenPartitions = false
        let multicast = try Simulator(scenario: scenario, seed: seed).run()
        func perLoss(_ count: Int, _ result: SimulationResult) -> Double { Double(count) / Double(max(result.partitionDropped, 1)) }
        print("seed \(seed): with pushes \(pushed.partitionDropped) partition-wide losses, \(pushed.partitionPushes) pushed, "
              + "\(pushed.multicastRepairs) multicast repairs, \(pushed.duplicatesReceived) duplicates received; "
              + "without \(multicast.partitionDropped) losses, \(multicast.multicastRepairs) multicast repairs, "
              + "\(multicast.duplicatesReceived) duplicates received")
        #expect(pushed.violations.isEmpty, "\(pushed.violations.prefix(3))")
        #expect(multicast.violations.isEmpty, "\(multicast.violations.prefix(3))")
        #expect(pushed.partitionDropped > 100 && multicast.partitionDropped > 100)
        #expect(pushed.partitionPushes > 0 && multicast.partitionPushes == 0)
        // Fewer multicasts to the whole region, and fewer copies members did not need.
        #expect(perLoss(pushed.multicastRepairs, pushed) < 0.8 * perLoss(multicast.multicastRepairs, multicast))
        #expect(perLoss(pushed.duplicatesReceived, pushed) < 0.8 * perLoss(multicast.duplicatesReceived, multicast))
    }

    /// 5% loss at every receiver: a replica asked for a packet it lost too used to drop
    /// the request; now it answers once it has the packet, and no request is wasted.
    @Test(arguments: [UInt64(1), 2])
    func underRandomLossNoRequestToAReplicaIsWasted(seed: UInt64) throws {
        var scenario = SimulationTests.base(20, seconds: 2, rate: 2_000)
        scenario.loss = 0.05
        let waiting = try Simulator(scenario: scenario, seed: seed).run()
        scenario.protocolConfiguration.answersOnceHeld = false
        let dropping = try Simulator(scenario: scenario, seed: seed).run()
        print("seed \(seed): answering once held \(waiting.awaitedRepairsAnswered) answered, \(waiting.repairRequestsNotHeld) wasted, "
              + "\(waiting.requestsSent) requests; dropping \(dropping.repairRequestsNotHeld) wasted, \(dropping.requestsSent) requests")
        #expect(waiting.violations.isEmpty, "\(waiting.violations.prefix(3))")
        #expect(dropping.violations.isEmpty, "\(dropping.violations.prefix(3))")
        #expect(waiting.awaitedRepairsAnswered > 20)
        #expect(waiting.repairRequestsNotHeld == 0)
        #expect(dropping.repairRequestsNotHeld > 20)
    }
}
