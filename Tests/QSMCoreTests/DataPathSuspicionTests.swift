import Testing
@testable import QSMProtocol
@testable import QSMSimulation

/// Suspicion on the data path (`DataPathSuspicion`): rules on a protocol node fed by
/// hand, and the whole story under the simulator with the real GMS.
@Suite struct DataPathSuspicionTests {
    typealias Fixture = SenderCrashRecoveryTests

    /// A leader of a partition of three: node 1 leads {1, 2, 3}.
    static func leader() throws -> ProtocolNode {
        var configuration = ProtocolConfiguration()
        configuration.suspectAfter = .milliseconds(300)
        let node = try ProtocolNode(id: NodeID(1), configuration: configuration, seed: 1)
        node.installMembership(regions: [Fixture.view(1, members: [1, 2, 3], partitions: [[1, 2, 3]])],
                               groups: [Fixture.groupView(1, members: [1, 2, 3])], now: Fixture.ms(1))
        return node
    }

    /// Runs the leader's timers to `until` ms; answers each probe of the members in
    /// `answering` (as they would); returns who was probed how often.
    static func run(_ node: ProtocolNode, from start: Int64, until end: Int64, answering: Set<UInt64>) throws -> [NodeID: Int] {
        var probed: [NodeID: Int] = [:]
        var time = start
        while time <= end {
            node.tick(now: Fixture.ms(time))
            for (destination, packet) in try Fixture.drain(node, now: Fixture.ms(time)) {
                guard case .probe(let probe) = packet, probe.kind == .probe, case .node(let target) = destination else { continue }
                probed[target, default: 0] += 1
                if answering.contains(target.value) {
                    node.receive(ProtocolPacket.probe(ProbePacket(kind: .probeReply, from: target, region: probe.region,
                                                                  nonce: probe.nonce)).encoded(), now: Fixture.ms(time))
                }
            }
            time += 5
        }
        return probed
    }

    /// Tokens never come back (no member forwards them here): every timed-out round
    /// probes both members. Node 3 answers, node 2 does not: only 2 is reported, once
    /// per silence, and not before `suspectAfterTimeouts` timeouts and `suspectAfter`.
    @Test func aMemberThatAnswersNoProbeIsReportedOnceOthersAnswer() throws {
        let node = try Self.leader()
        let early = try Self.run(node, from: 2, until: 200, answering: [3])
        #expect(early[NodeID(2)] ?? 0 >= 3, "probed after every timeout")
        #expect(node.takeSuspects().isEmpty, "not before suspectAfter")
        #expect(node.statistics.suspectsReported == 0)
        _ = try Self.run(node, from: 205, until: 700, answering: [3])
        #expect(node.takeSuspects() == [NodeID(2)])
        #expect(node.statistics.suspectsReported == 1)
        #expect(node.takeSuspects().isEmpty)
    }

    /// A leader that hears no answer from anyone may be the broken one: it reports no one.
    @Test func aLeaderThatNobodyAnswersReportsNoOne() throws {
        let node = try Self.leader()
        _ = try Self.run(node, from: 2, until: 2_000, answering: [])
        #expect(node.statistics.tokenTimeouts >= 3)
        #expect(node.takeSuspects().isEmpty)
        #expect(node.statistics.suspectsReported == 0)
    }

    /// A member frozen for a while answers late: an answer to any probe since it fell
    /// silent clears it. Answers nobody asked for are counted and ignored.
    @Test func aLateAnswerClearsAndAnUnaskedOneIsIgnored() throws {
        let node = try Self.leader()
        _ = try Self.run(node, from: 2, until: 250, answering: [3])
        // Node 2 answers the first probe it got (nonces count from 1; node 2 is probed first).
        node.receive(ProtocolPacket.probe(ProbePacket(kind: .probeReply, from: NodeID(2), region: Fixture.region, nonce: 1)).encoded(),
                     now: Fixture.ms(251))
        _ = try Self.run(node, from: 255, until: 500, answering: [3])
        #expect(node.takeSuspects().isEmpty)
        node.receive(ProtocolPacket.probe(ProbePacket(kind: .probeReply, from: NodeID(7), region: Fixture.region, nonce: 3)).encoded(),
                     now: Fixture.ms(501))
        #expect(node.statistics.probeAnswersIgnored == 1)
    }

    /// A member answers a probe at once, to whoever asked.
    @Test func aProbeIsAnswered() throws {
        let member = try ProtocolNode(id: NodeID(2), configuration: ProtocolConfiguration(), seed: 2)
        member.receive(ProtocolPacket.probe(ProbePacket(kind: .probe, from: NodeID(1), region: Fixture.region, nonce: 42)).encoded(),
                       now: Fixture.ms(1))
        let out = try Fixture.drain(member, now: Fixture.ms(1))
        #expect(out.count == 1)
        #expect(out.first?.0 == .node(NodeID(1)))
        #expect(out.first?.1 == .probe(ProbePacket(kind: .probeReply, from: NodeID(2), region: Fixture.region, nonce: 42)))
    }

    /// The whole story: a node's data path is cut from 1 s to 13.9 s while its GMS
    /// connection works: node 4, a member (its partition leader reports it), or node 0,
    /// the region's and its partition's leader (the members that hear no token from it
    /// report it, every few seconds). The GMS excludes it once it has been reported for
    /// 5 s, and the sender's window, which the cut node held, opens: the others receive
    /// nearly everything while the cut lasts. With suspicion
    /// off, the sender stalls once its window is full until the cut heals. Every run
    /// delivers everything in the end, with no violation.
    @Test(arguments: [4, 0])
    func aNodeCutOffOnTheDataPathIsExcludedAndTheOthersGoOn(cut: Int) throws {
        func scenario(suspicion: Bool) -> SimulationScenario {
            var s = SimulationScenario()
            s.nodes = 10
            s.rate = 2_000
            s.seconds = 14
            s.drainSeconds = 40
            s.dataPathCut = .init(nodes: [cut], start: 1, length: 12.9)
            if !suspicion { s.protocolConfiguration.suspectAfterTimeouts = 0 }
            return s
        }
        /// Deliveries by 13.8 s, before the cut heals, and the run's result.
        func run(suspicion: Bool) throws -> (before: Int, result: SimulationResult) {
            let simulator = try Simulator(scenario: scenario(suspicion: suspicion), seed: 1)
            simulator.progressEvents = 1 << 10
            var before = 0
            simulator.onProgress = { seconds, deliveries in if seconds <= 13.8 { before = deliveries } }
            let result = simulator.run()
            return (before, result)
        }
        let on = try run(suspicion: true)
        let off = try run(suspicion: false)
        print("data path of node \(cut) cut, seed 1: deliveries before the heal with suspicion \(on.before), without \(off.before)")
        #expect(on.result.violations.isEmpty, "\(on.result.violations.prefix(3))")
        #expect(off.result.violations.isEmpty, "\(off.result.violations.prefix(3))")
        #expect(on.result.suspicionExclusions == 1 && on.result.suspectsReported >= 1)
        #expect(off.result.suspicionExclusions == 0 && off.result.suspectsReported == 0)
        // Nine others, 2,000 a second, 13.7 s of publishing by then.
        let owed = 9 * 2_000 * 137 / 10
        #expect(on.before >= owed * 8 / 10, "\(on.before) of \(owed)")
        #expect(off.before <= owed * 4 / 10, "\(off.before) of \(owed)")
    }
}
