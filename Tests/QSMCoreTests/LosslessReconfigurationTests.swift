import Testing
@testable import QSMProtocol
@testable import QSMSimulation

/// Lossless reconfiguration (issue 16, item 2): whatever moves members between regions, a
/// live sender's message reaches every member that stays in its group, once, in FIFO
/// order. The simulator's checker holds every run to that (a member that stays in the
/// group is owed the message whatever regions it passes through); before senders carried
/// their unacknowledged messages, these runs lost messages at the members that moved.
@Suite struct LosslessReconfigurationTests {
    /// A half-sent message gives up the regions it has not gone to that its group's
    /// newer view left out; the region under way and every hybrid region stay.
    @Test func aHalfSentMessageDropsOnlyUnsentRegionsItsGroupLeftOut() {
        let a = RegionReference(id: RegionID(1), viewNumber: 1, address: nil)
        let b = RegionReference(id: RegionID(2), viewNumber: 1, address: nil)
        let c = RegionReference(id: RegionID(3), viewNumber: 1, address: nil)
        func message() -> OutgoingMessage {
            OutgoingMessage(id: 1, group: GroupID(1), groupView: 1, groupSequence: 1, payload: [1], publishedAt: .zero,
                            regions: [a, b, c])
        }
        let between = message()
        between.regionCursor = 1
        #expect(between.dropUnsentRegions(notIn: [a, c]) == 1)
        #expect(between.regions == [a, c] && between.unacknowledgedRegions == 2)
        // B's fragments are under way: it stays, C goes (A was sent already).
        let midRegion = message()
        midRegion.regionCursor = 1
        midRegion.fragmentCursor = 1
        #expect(midRegion.dropUnsentRegions(notIn: [RegionReference(id: RegionID(9), viewNumber: 1, address: nil)]) == 1)
        #expect(midRegion.regions == [a, b] && midRegion.unacknowledgedRegions == 2)
        // A newer view of a region still listed keeps it.
        let newer = message()
        newer.regionCursor = 1
        #expect(newer.dropUnsentRegions(notIn: [a, RegionReference(id: RegionID(2), viewNumber: 5, address: nil), c]) == 0)
        let hybrid = message()
        hybrid.hybrid = true
        hybrid.fragmentCursor = 1
        #expect(hybrid.dropUnsentRegions(notIn: []) == 0 && hybrid.regions.count == 3)
    }

    static func scenario(nodes: Int, groups: Int, seconds: Double = 3) -> SimulationScenario {
        var s = SimulationScenario()
        s.nodes = nodes
        s.groups = groups
        s.seconds = seconds
        s.rate = 2_000
        s.senders = 2
        s.drainSeconds = 30
        return s
    }

    /// Joins and leaves of other groups move members of a group between regions while
    /// its traffic flows, with loss: nothing owed to a member that stays is lost.
    @Test(arguments: 1...4 as ClosedRange<UInt64>)
    func membersThatMoveBetweenRegionsLoseNothing(seed: UInt64) throws {
        var s = Self.scenario(nodes: 12, groups: 4)
        s.overlap = .irregular(probability: 0.5)
        s.loss = 0.02
        s.groupChanges = (0..<6).map { index in
            let node = Int((seed &* 7 &+ UInt64(index) &* 5) % 10)
            let group = Int((seed &+ UInt64(index)) % 4)
            return .init(node: node, at: 0.6 + Double(index) * 0.35, kind: index % 2 == 0 ? .join(group: group) : .leave(group: group))
        }
        let result = try Simulator(scenario: s, seed: seed).run()
        #expect(result.violations.isEmpty, "seed \(seed): \(result.violations.prefix(3))")
        #expect(result.messagesCarried > 0, "seed \(seed): no member moved while messages were in flight")
    }

    /// A GMS that restarts empty rebuilds its views as nodes come back, numbering groups
    /// anew: the messages in flight are carried into the new regions, and a member that
    /// comes back late (frozen meanwhile) still gets them.
    @Test(arguments: 1...3 as ClosedRange<UInt64>)
    func aRestartedGMSLosesNothing(seed: UInt64) throws {
        var s = Self.scenario(nodes: 10, groups: 3)
        s.overlap = .irregular(probability: 0.6)
        s.gmsCrash = .init(at: 1.2, downFor: 0.3)
        s.freezes = [.init(node: Int(seed % 8), start: 1.0, length: 0.8, every: nil)]
        let result = try Simulator(scenario: s, seed: seed).run()
        #expect(result.violations.isEmpty, "seed \(seed): \(result.violations.prefix(3))")
        #expect(result.messagesCarried > 0, "seed \(seed): nothing was in flight at the restart")
    }

    /// A member that crashes just before the GMS does never comes back to the new one:
    /// what its senders held for it is given up when `restartCarryGrace` runs out,
    /// counted, and nothing owed to the members that do come back is lost.
    @Test(arguments: 1...2 as ClosedRange<UInt64>)
    func whatIsHeldForAMemberThatNeverReturnsIsGivenUpAndCounted(seed: UInt64) throws {
        var s = Self.scenario(nodes: 10, groups: 2)
        s.gmsCrash = .init(at: 1.2, downFor: 0.3)
        s.crashes = [.init(node: Int(seed % 4), at: 1.15)]
        let result = try Simulator(scenario: s, seed: seed).run()
        #expect(result.violations.isEmpty, "seed \(seed): \(result.violations.prefix(3))")
        #expect(result.messagesGivenUp > 0, "seed \(seed): nothing held for the crashed member was given up")
        var quiet = s
        quiet.crashes = []
        let everyoneBack = try Simulator(scenario: quiet, seed: seed).run()
        #expect(everyoneBack.violations.isEmpty, "seed \(seed): \(everyoneBack.violations.prefix(3))")
        #expect(everyoneBack.messagesGivenUp == 0, "seed \(seed): gave up messages though every member came back")
    }

    /// A restarted GMS may give a group's name another id, and the old id to another
    /// name: the node's per-group state follows the name.
    @Test func aGroupRenumberedByARestartedGMSKeepsItsState() throws {
        let configuration = NodeMachineConfiguration(id: NodeID(1), address: QSMSocketAddress(.loopback, port: 5))
        let machine = try NodeMachine(configuration: configuration)
        func views(_ pairs: [(String, UInt32)]) -> [GroupView] {
            pairs.map { GroupView(id: GroupID($0.1), name: GroupName($0.0)!, viewNumber: 1, members: [NodeID(1)],
                                  mappingVersion: 1, regions: [], hybridAddress: nil) }
        }
        #expect(machine.renumberedGroups(views([("a", 1), ("b", 2)])) == [:])
        // Swapped: both move together.
        #expect(machine.renumberedGroups(views([("a", 2), ("b", 1)])) == [GroupID(1): GroupID(2), GroupID(2): GroupID(1)])
        // "b" is away while "c" takes its id: "b"'s state is parked, and found again.
        let parked = GroupID(UInt32.max)
        #expect(machine.renumberedGroups(views([("a", 2), ("c", 1)])) == [GroupID(1): parked])
        #expect(machine.renumberedGroups(views([("a", 2), ("c", 1), ("b", 3)])) == [parked: GroupID(3)])
    }
}

/// The rule for an acknowledgement from a newer view of a region than a message was
/// sent in, on a protocol node fed by hand (the swarm seeds that found it replay the
/// whole story in `SwarmTests`).
@Suite struct NewerViewAcknowledgementTests {
    static func group(_ view: UInt64, regions: [(UInt64, UInt64)]) -> GroupView {
        GroupView(id: GroupID(1), name: GroupName("g")!, viewNumber: view, members: [NodeID(1), NodeID(2)], mappingVersion: view,
                  regions: regions.map { RegionReference(id: RegionID($0.0), viewNumber: $0.1,
                                                         address: QSMSocketAddress(IPv4Address(239, 1, 1, UInt8($0.0)), port: 17000)) },
                  hybridAddress: nil, publishers: [NodeID(9)])
    }

    static func ack(region: UInt64, view: UInt64, stable: UInt64 = 1) -> [UInt8] {
        ProtocolPacket.acknowledgement(AcknowledgementPacket(region: RegionID(region), sender: NodeID(9), stable: stable,
                                                             regionView: view)).encoded()
    }

    /// Sender 9 (outside the groups) sends a message into region 5's view 1. Region 5's
    /// view 2 (member 2 has left it for region 6) acknowledges it before sender 9 has the
    /// views that say so: the message keeps its window slot, is carried into region 6 and
    /// region 5's view 2 once the views come, and is done when those acknowledge it.
    @Test func anAcknowledgementAheadOfTheViewsWaitsForThemAndCarries() throws {
        let sender = try ProtocolNode(id: NodeID(9), configuration: ProtocolConfiguration(), seed: 9)
        let ms = SenderCrashRecoveryTests.ms
        sender.installMembership(regions: [], groups: [Self.group(1, regions: [(5, 1)])], now: ms(1))
        guard case .accepted = sender.publish(group: GroupID(1), payload: [7], now: ms(2)) else {
            Issue.record("not accepted")
            return
        }
        while sender.nextDatagram(now: ms(2)) != nil {}
        sender.receive(Self.ack(region: 5, view: 2), now: ms(3))
        #expect(sender.unacknowledgedMessageCount == 1, "done before the views that moved a member came")
        sender.installMembership(regions: [], groups: [Self.group(1, regions: [(5, 2), (6, 1)])], now: ms(4))
        #expect(sender.statistics.messagesCarried == 1)
        var carriedTo: Set<ProtocolDestination> = []
        while let datagram = sender.nextDatagram(now: ms(4)) {
            if case .data = try datagram.bytes.withUnsafeBytes({ try ProtocolPacket(decoding: $0) }) { carriedTo.insert(datagram.destination) }
        }
        #expect(carriedTo == [.region(RegionID(5)), .region(RegionID(6))])
        // Its copy in region 5's view 2 is that region's sequence number 2.
        sender.receive(Self.ack(region: 5, view: 2, stable: 2), now: ms(5))
        #expect(sender.unacknowledgedMessageCount == 1)
        sender.receive(Self.ack(region: 6, view: 1), now: ms(5))
        #expect(sender.unacknowledgedMessageCount == 0)
        #expect(sender.statistics.releasedUnchecked == 0)
    }

    /// The views came first (the message was carried then): the newer view's
    /// acknowledgement finds them as new and the message is done at once. A message whose
    /// group leaves this node's views while it waits is let go, and counted.
    @Test func viewsAlreadyAsNewFinishItAndAGroupOutOfViewIsCounted() throws {
        let ms = SenderCrashRecoveryTests.ms
        let sender = try ProtocolNode(id: NodeID(9), configuration: ProtocolConfiguration(), seed: 9)
        sender.installMembership(regions: [], groups: [Self.group(1, regions: [(5, 1)])], now: ms(1))
        _ = sender.publish(group: GroupID(1), payload: [7], now: ms(2))
        while sender.nextDatagram(now: ms(2)) != nil {}
        sender.installMembership(regions: [], groups: [Self.group(1, regions: [(5, 2)])], now: ms(3))
        while sender.nextDatagram(now: ms(3)) != nil {}
        #expect(sender.statistics.messagesCarried == 1)
        sender.receive(Self.ack(region: 5, view: 2, stable: 2), now: ms(4))
        #expect(sender.unacknowledgedMessageCount == 0)

        let other = try ProtocolNode(id: NodeID(9), configuration: ProtocolConfiguration(), seed: 9)
        other.installMembership(regions: [], groups: [Self.group(1, regions: [(5, 1)])], now: ms(1))
        _ = other.publish(group: GroupID(1), payload: [7], now: ms(2))
        while other.nextDatagram(now: ms(2)) != nil {}
        other.receive(Self.ack(region: 5, view: 2), now: ms(3))
        #expect(other.unacknowledgedMessageCount == 1)
        other.installMembership(regions: [], groups: [], now: ms(4))
        #expect(other.unacknowledgedMessageCount == 0)
        #expect(other.statistics.releasedUnchecked == 1)
    }
}

/// Tokens of a region view a member has not installed yet (section 4.3.8, 4b): held, and
/// acted on once the view arrives; dropped as stale if another view comes instead.
@Suite struct NewerViewTokenTests {
    typealias Fixture = SenderCrashRecoveryTests

    /// Member 2 of {1, 2, 3} in view 1, and the token leader 1 sends in view 2.
    static func setUp() throws -> (ProtocolNode, TokenPacket) {
        let member = try Fixture.node(2)
        member.installMembership(regions: [Fixture.view(1, members: [1, 2, 3], partitions: [[1, 2, 3]])], groups: [],
                                 now: Fixture.ms(1))
        _ = try Fixture.drain(member, now: Fixture.ms(1))
        let token = TokenPacket(kind: .partitionToken, region: Fixture.region, regionView: 2, partition: 0, round: 1,
                                startedAt: 5, records: [])
        member.receive(ProtocolPacket.token(token).encoded(), now: Fixture.ms(2))
        return (member, token)
    }

    static func forwardedTokens(_ member: ProtocolNode, at time: Int64) throws -> [(ProtocolDestination, TokenPacket)] {
        try Fixture.drain(member, now: Fixture.ms(time)).compactMap { destination, packet in
            if case .token(let token) = packet { (destination, token) } else { nil }
        }
    }

    @Test func aTokenOfTheNextViewIsHeldUntilTheViewArrives() throws {
        let (member, token) = try Self.setUp()
        #expect(try Self.forwardedTokens(member, at: 2).isEmpty)
        #expect(member.statistics.tokensHeldForView == 1)
        #expect(member.statistics.staleTokensDropped == 0)
        member.installMembership(regions: [Fixture.view(2, members: [1, 2, 3], partitions: [[1, 2, 3]])], groups: [],
                                 now: Fixture.ms(3))
        let forwarded = try Self.forwardedTokens(member, at: 3)
        #expect(forwarded.count == 1)
        #expect(forwarded.first?.0 == .node(NodeID(3)))
        #expect(forwarded.first?.1.round == token.round && forwarded.first?.1.regionView == 2)
    }

    /// A token too large for one datagram reaches a node that has not installed the
    /// region yet in parts: each part is held, and the token is assembled and forwarded
    /// once the view arrives (parts were dropped as stale before).
    @Test func thePartsOfATokenForARegionNotYetInstalledAreHeldUntilItIs() throws {
        let member = try Fixture.node(2)
        for part in 0..<2 {
            var token = TokenPacket(kind: .partitionToken, region: Fixture.region, regionView: 1, partition: 0, round: 1, startedAt: 5,
                                    records: [TokenRecord(sender: NodeID(UInt64(10 + part)), contiguous: 0, maximumSeen: 0, stable: 0,
                                                          coverage: 0)])
            token.part = UInt16(part)
            token.parts = 2
            member.receive(ProtocolPacket.token(token).encoded(), now: Fixture.ms(2))
        }
        #expect(try Self.forwardedTokens(member, at: 2).isEmpty)
        #expect(member.statistics.tokensHeldForView == 2)
        #expect(member.statistics.staleTokensDropped == 0)
        member.installMembership(regions: [Fixture.view(1, members: [1, 2, 3], partitions: [[1, 2, 3]])], groups: [],
                                 now: Fixture.ms(3))
        let forwarded = try Self.forwardedTokens(member, at: 3)
        #expect(!forwarded.isEmpty)
        #expect(forwarded.allSatisfy { $0.0 == .node(NodeID(3)) && $0.1.round == 1 && $0.1.regionView == 1 })
        let senders = Set(forwarded.flatMap { $0.1.records.map(\.sender) })
        #expect(senders.isSuperset(of: [NodeID(10), NodeID(11)]), "forwarded \(senders)")
    }

    @Test func aHeldTokenIsDroppedWhenAnotherViewComesInstead() throws {
        let (member, _) = try Self.setUp()
        member.installMembership(regions: [Fixture.view(3, members: [1, 2, 3], partitions: [[1, 2, 3]])], groups: [],
                                 now: Fixture.ms(3))
        #expect(try Self.forwardedTokens(member, at: 3).isEmpty)
        #expect(member.statistics.staleTokensDropped == 1)
    }
}
