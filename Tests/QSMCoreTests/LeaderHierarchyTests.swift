import Testing
@testable import QSMProtocol
@testable import QSMSimulation

/// Rings of leaders of leaders (issue 16, item 9): the layout against its rules for many
/// sizes, the budget's split between levels, and whole regions in the simulator.
@Suite struct LeaderHierarchyTests {
    /// Every layout rule, for region sizes and fanouts drawn at random (seed printed).
    @Test func theLayoutKeepsEveryRingWithinTheFanoutAndNestsLeaders() {
        var random = SplitMix64(seed: 0x1EAD)
        for trial in 0..<150 {
            let count = 1 + Int(random.next() % 700)
            let fanout = [0, 2, 3, 5, 16, 32, 64][Int(random.next() % 7)]
            let leaders = (0..<count).map { NodeID(UInt64(1_000 + $0 * 7)) }
            var levelRings: [Int: [LeaderRing]] = [:]
            var top: [NodeID] = []
            var depth = 0
            var levelHops: [Int] = []
            for member in leaders {
                let built = LeaderHierarchy.build(leaders: leaders, fanout: fanout, member: member)
                top = built.top
                depth = built.depth
                levelHops = built.levelHops
                // On exactly one ring of each level below the top, up to the level it leads.
                #expect(built.levels.map(\.level) == Array(1..<(1 + built.levels.count)), "trial \(trial)")
                for ring in built.levels where !(levelRings[ring.level] ?? []).contains(ring) {
                    levelRings[ring.level, default: []].append(ring)
                }
            }
            let context = "trial \(trial): \(count) leaders, fanout \(fanout)"
            #expect(top.first == leaders.first, "\(context): the region leader leads the region ring")
            #expect(fanout == 0 ? top == leaders : top.count <= fanout, "\(context)")
            #expect(depth == levelRings.count + 1, "\(context)")
            #expect(levelHops.count == depth && levelHops.last == top.count, "\(context)")
            if fanout >= 2 {
                // Leaders of level l are exactly the members of level l + 1, in order; the
                // first ring of every level is the region leader's.
                var below = leaders
                for level in 1..<depth {
                    let rings = (levelRings[level] ?? []).sorted { $0.group < $1.group }
                    #expect(rings.flatMap(\.members) == below, "\(context), level \(level)")
                    #expect(rings.allSatisfy { $0.members.count <= fanout && !$0.members.isEmpty }, "\(context)")
                    let lengths = rings.map(\.members.count)
                    #expect((lengths.max() ?? 0) - (lengths.min() ?? 0) <= 1, "\(context): rings as equal as they can be")
                    #expect(rings.first?.members.first == leaders.first, "\(context)")
                    #expect(levelHops[level - 1] == below.count, "\(context)")
                    below = rings.map { $0.members[0] }
                }
                #expect(below == top, "\(context)")
                // Logarithmic depth: at most one level more than log base fanout.
                var capacity = fanout
                var levels = 1
                while capacity < count { capacity *= fanout; levels += 1 }
                #expect(depth <= levels, "\(context): depth \(depth)")
            }
        }
    }

    /// The levels' shares of the token budget add up to the whole budget: one round of
    /// every level, each at its interval, costs what one budget interval allows.
    @Test func theBudgetSharesAddUpToTheWholeBudget() {
        for hops in [[5, 1], [1_000, 200], [1_000, 200, 13], [10_000, 2_000, 63, 2], [12, 12, 12]] {
            let shares = LeaderHierarchy.budgetHops(levelHops: hops)
            let cost = zip(hops, shares).map { Double($0) / $1 }.reduce(0, +)
            #expect(abs(cost - 1) < 1e-9, "\(hops): \(cost)")
            // Upper, smaller levels go round more often than the partitions.
            #expect(shares.first! >= shares.last!)
        }
    }

    /// A leader of leaders keeps what it was told is stable until every ring it leads has
    /// started a round since it last aged it: its partition ring may go round a hundred
    /// times while its leader ring goes once (at 10,000 nodes, members below never
    /// settled when announcements aged by the partition ring alone).
    @Test func announcementsWaitForEveryRingTheNodeLeads() throws {
        let node = try ProtocolNode(id: NodeID(1), configuration: ProtocolConfiguration(), seed: 1)
        let region = RegionID(7)
        #expect(node.announcementsMayAge(region, since: Instant(nanoseconds: 500), partitionRing: false),
                "a node that leads no leader ring ages by its partition rounds alone")
        var state = LeaderRingState(ring: LeaderRing(level: 1, group: 0, members: [NodeID(1), NodeID(2)]),
                                    round: .init(nextStart: .zero))
        state.round.startedAt = Instant(nanoseconds: 100)
        node.leaderRounds[region] = [1: state]
        #expect(!node.announcementsMayAge(region, since: Instant(nanoseconds: 200), partitionRing: false))
        #expect(node.announcementsMayAge(region, since: Instant(nanoseconds: 50), partitionRing: false))
        // The region leader ages at its region rounds: its partition ring must have
        // started one since, too.
        var partition = ProtocolNode.LeaderRound(nextStart: .zero)
        partition.startedAt = Instant(nanoseconds: 40)
        node.partitionRounds[region] = partition
        #expect(!node.announcementsMayAge(region, since: Instant(nanoseconds: 50), partitionRing: true))
        #expect(node.announcementsMayAge(region, since: Instant(nanoseconds: 30), partitionRing: true))
    }

    static func largeRegion(fanout: Int) -> SimulationScenario {
        var s = SimulationScenario()
        s.nodes = 60
        s.partitionSize = 2
        s.seconds = 1.5
        s.rate = 400
        s.drainSeconds = 20
        s.protocolConfiguration.leaderRingFanout = fanout
        // Rings paced by their work, not held back by the token budget: the test is
        // about the rings' shape.
        s.protocolConfiguration.tokenBytesPerDataByte = 1_000
        return s
    }

    /// 30 partitions on rings of at most 3: five levels of rings. Everything is
    /// delivered and acknowledged, and a round of the region ring (the last hop of what
    /// every partition reports) is far shorter than the 30-leader ring of the seed's
    /// two levels. (Acknowledgements are not quicker here: 30 hops take 3 ms, less than
    /// the rounds' pace, and each level adds a wait for its next round; the hierarchy
    /// pays where a flat ring takes longer than that, from hundreds of partitions.)
    @Test func aRegionOfThirtyPartitionsRunsOnFiveLevelsOfShortRings() throws {
        let flat = try Simulator(scenario: Self.largeRegion(fanout: 0), seed: 3).run()
        let deep = try Simulator(scenario: Self.largeRegion(fanout: 3), seed: 3).run()
        for result in [flat, deep] {
            #expect(result.violations.isEmpty, "\(result.violations.prefix(3))")
            #expect(result.published > 0 && result.delivered >= result.published)
        }
        #expect(flat.ringLevels == 2)
        #expect(deep.ringLevels == 5)
        #expect(deep.leaderRoundMillisecondsMean > 0)
        #expect(deep.regionRoundMillisecondsMean * 5 < flat.regionRoundMillisecondsMean,
                "region ring round \(deep.regionRoundMillisecondsMean) ms, flat \(flat.regionRoundMillisecondsMean) ms")
    }

    /// Leaders of leaders crash, tokens are lost, views change under the rings: every
    /// guarantee holds and everything settles (seeds printed by the failures).
    @Test(arguments: 1...4 as ClosedRange<UInt64>)
    func leadersOfLeadersCanCrashAndLoseTokens(seed: UInt64) throws {
        var s = Self.largeRegion(fanout: 3)
        s.protocolConfiguration.tokenBytesPerDataByte = ProtocolConfiguration().tokenBytesPerDataByte
        s.loss = 0.02
        s.senders = 2
        // A partition's leader is its lowest id, and the first partition's leads the
        // region: crashing low nodes takes out leaders of leaders, whose rings re-form.
        s.crashes = [.init(node: [0, 6, 12, 18][Int(seed % 4)], at: 0.6), .init(node: 31, at: 0.9)]
        let result = try Simulator(scenario: s, seed: seed).run()
        #expect(result.violations.isEmpty, "seed \(seed): \(result.violations.prefix(3))")
        #expect(result.ringLevels >= 4, "seed \(seed)")
        #expect(result.published > 0 && result.delivered >= result.published, "seed \(seed)")
    }
}
