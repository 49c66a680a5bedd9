import Testing
@testable import QSMProtocol

/// Who a hole is asked from, and which holes a check asks for: in a small region the
/// sender; in a larger one the caching partition's peers at random (never this node or
/// the sender), then the sender; the lowest due holes first, at most
/// `recoveryRequestsPerRound` per stream per check.
@Suite struct RecoveryAskTests {
    typealias Fixture = SenderCrashRecoveryTests
    typealias Repair = RepairAggregationTests

    @Test func inARegionOfAtMostSenderFirstUpToMembersTheSenderIsAskedFirstThenPeers() throws {
        // Node 1 of {1, 2, 3, 4} in partitions {1, 2} and {3, 4}; sender 9 outside. Four
        // members: at the bound, and under the default.
        for bound in [4, ProtocolConfiguration().senderFirstUpToMembers] {
            let node = try OutOfOrderHoldingTests.node(survivorAgreement: false, senderFirstUpTo: bound)
            let region = try #require(node.regions[Fixture.region])
            let key = StreamKey(sender: NodeID(9), region: Fixture.region)
            let cycle = node.configuration.peerAttemptsBeforeSender + 1
            #expect(node.senderTurn(in: region) == 0)
            for sequence in UInt64(1)...50 {
                for attempt in 0..<(2 * cycle) {
                    let target = node.recoveryTarget(for: sequence, key: key, region: region, attempt: attempt)
                    if attempt % cycle == 0 {
                        #expect(target == NodeID(9))
                    } else {
                        // The sender did not answer (it may have crashed): a peer of the
                        // caching partition, {1, 2} for even numbers, {3, 4} for odd.
                        let peers: Set<NodeID> = sequence % 2 == 0 ? [NodeID(2)] : [NodeID(3), NodeID(4)]
                        #expect(target.map(peers.contains) == true, "\(sequence) \(attempt): \(String(describing: target))")
                    }
                }
            }
            // This node's own stream: no sender to ask but itself, so its caching peers.
            let own = StreamKey(sender: NodeID(1), region: Fixture.region)
            #expect(node.recoveryTarget(for: 2, key: own, region: region, attempt: 0) == NodeID(2))
        }
        // One member more than the bound: peers first again.
        let larger = try OutOfOrderHoldingTests.node(survivorAgreement: false, senderFirstUpTo: 3)
        let region = try #require(larger.regions[Fixture.region])
        #expect(larger.senderTurn(in: region) == larger.configuration.peerAttemptsBeforeSender)
        #expect(larger.recoveryTarget(for: 2, key: StreamKey(sender: NodeID(9), region: Fixture.region), region: region, attempt: 0) == NodeID(2))
    }

    @Test func holesAreAskedFromTheCachingPartitionsPeersAtRandomThenTheSender() throws {
        // Node 1 of {1, 2, 3, 4} in partitions {1, 2} and {3, 4}; sender 9 outside; peers
        // first in a region of any size.
        let node = try OutOfOrderHoldingTests.node(survivorAgreement: false, senderFirstUpTo: 0)
        let region = try #require(node.regions[Fixture.region])
        let key = StreamKey(sender: NodeID(9), region: Fixture.region)
        let senderTurn = node.configuration.peerAttemptsBeforeSender
        var picked: [UInt64: [NodeID: Int]] = [:]
        for sequence in UInt64(1)...400 {
            let target = try #require(node.recoveryTarget(for: sequence, key: key, region: region, attempt: 0))
            picked[sequence % 2, default: [:]][target, default: 0] += 1
            #expect(node.recoveryTarget(for: sequence, key: key, region: region, attempt: senderTurn) == NodeID(9))
        }
        // Even numbers are cached by {1, 2}: only 2 can answer (not this node).
        #expect(picked[0] == [NodeID(2): 200])
        // Odd ones by {3, 4}: both, each about half the time.
        let odd = try #require(picked[1])
        #expect(Set(odd.keys) == [NodeID(3), NodeID(4)])
        #expect(odd.values.allSatisfy { $0 >= 70 }, "\(odd)")
    }

    @Test func aPartitionOfThisNodeAloneFallsBackToTheRegionThenTheSender() throws {
        var configuration = ProtocolConfiguration()
        configuration.viewChangePauseLimit = .zero
        configuration.senderFirstUpToMembers = 0
        let node = try ProtocolNode(id: NodeID(1), configuration: configuration, seed: 1)
        node.installMembership(regions: [Fixture.view(1, members: [1, 2], partitions: [[1], [2]])],
                               groups: [Fixture.groupView(1, members: [1, 2], publishers: [9])], now: Fixture.ms(1))
        let region = try #require(node.regions[Fixture.region])
        let key = StreamKey(sender: NodeID(9), region: Fixture.region)
        // Partition {1} has no one else: any other member of the region.
        #expect(node.recoveryTarget(for: 2, key: key, region: region, attempt: 0) == NodeID(2))
        let alone = try ProtocolNode(id: NodeID(1), configuration: configuration, seed: 1)
        alone.installMembership(regions: [Fixture.view(1, members: [1], partitions: [[1]])],
                                groups: [Fixture.groupView(1, members: [1], publishers: [9])], now: Fixture.ms(1))
        let single = try #require(alone.regions[Fixture.region])
        #expect(alone.recoveryTarget(for: 2, key: key, region: single, attempt: 0) == NodeID(9))
        // This node's own stream, alone: nobody to ask.
        #expect(alone.recoveryTarget(for: 2, key: StreamKey(sender: NodeID(1), region: Fixture.region), region: single, attempt: 0) == nil)
    }

    @Test func aCheckAsksTheLowestDueHolesUpToTheBound() throws {
        // Holes 2...39 and 41...59; a bound of 8 per check.
        let member = try Repair.node(3, members: [1, 2, 3], received: [1, 40, 60]) { $0.recoveryRequestsPerRound = 8 }
        member.tick(now: Fixture.ms(3))
        #expect(try Repair.asked(member, at: 3).sorted() == Array(2...9))
        // The next check asks the next lowest, not those just asked (their retry waits).
        member.tick(now: Fixture.ms(4))
        #expect(try Repair.asked(member, at: 4).sorted() == Array(10...17))
        #expect(member.statistics.holesAsked == 16 && member.statistics.askedAgain == 0)
    }
}
