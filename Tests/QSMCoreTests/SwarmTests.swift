import Testing
import QSMCore
@testable import QSMSimulation

/// A fixed, CI-sized list of swarm seeds (`qsm-bench simulate --swarm-seed X` replays
/// any of them). Each seed is a random scenario with a random mix of faults; together
/// they cover every fault the simulator has. Each run checks safety while the faults
/// act, then liveness: after the network heals, everything owed is delivered, stable and
/// quiet within `SwarmScenario.livenessSeconds`.
@Suite struct SwarmTests {
    static let seeds: [UInt64] = [5, 62, 83, 105, 116, 143, 169, 176, 234, 274, 287, 303, 328, 341, 369, 372, 391]
        // Seeds that `--swarm 300 --seed 1` once failed on: a crashed sender's packets a
        // member never saw, caching across view changes, messages whose fragments were
        // cached apart, a stream started from a status before the sender's new view, and
        // a node that joined after a sender crashed and could not vouch for its record.
        + [5216957618423667079, 2662918742403327691, 2964611340848302065, 288795696141808841, 5022986923529465834,
           624876516579225120]
        // Seeds that lost or refused messages across reconfiguration before membership
        // views carried join views: a member's restart, a sender's message carried into a
        // view whose new members never had it, and renumbered groups.
        + [1430784185841446479, 444561985166521184, 107540479371275158, 4864517398704206222,
           5452762862878174055]
        // A member that left a region for another of its group's while messages were in
        // flight there, acknowledged by the region's next view before the sender had the
        // views that moved it; and a data-path cut (with crashes).
        + [2625045133342059725, 1660950480845983632, 9107757493325971685]
        // Holes asked for between token visits, first merged across a sender's regions
        // into requests too large for the datagram (hierarchies mode, 3% loss).
        + [2775177255088731841]
        // Retries held back after a pause until the input caught up: at idle every token
        // visit came after a pause, and a tail's retry never went (GMS crashes).
        + [4154899361148330835, 56107016243772136]
        // A publisher that crashed before a member's first views named it: known to that
        // member only through tokens, its gaps were asked for forever (97 nodes,
        // hierarchies, 22 crashes).
        + [1557026809635651381]
        // Sender-crash agreement: under the seed's caching rule alone (each packet kept
        // by one partition), a member outside the caching partition delivered a packet
        // the partition lost, and after the sender crashed the others gave it up. Each
        // broke survivor agreement; every member now keeps what it got until stable.
        + [8386199435775627842, 8897267473645542198, 8612058542554366566]
        // A region leader since a view change that knew a crashed sender's stability
        // only from announcements: the partition of a member that had missed the last
        // one was alone in reporting the record (settled partitions drop it), and the
        // leader repeated nothing (partition-wide loss, 8 crashes).
        + [52525121186862104]
        // A message half sent when a view of its group left out the regions it still had
        // to go to: sent there anyway, it waited forever for their acknowledgement (27
        // nodes, 6 group changes; `--swarm 40 --seed 9090`).
        // And the first fix of it, which dropped regions of a half-sent message that was
        // no longer at the head of the queue: it trapped when it came to the head with
        // no region left to send to (hybrid groups, a GMS crash).
        + [3155232268524724127, 1846185215400941187]
        // A sender whose send state for a region was dropped (the region left every view
        // it had) numbered from 1 when it sent there again: members still held the old
        // numbers, and an old acknowledgement stopped every later one (3 and more nodes,
        // group changes; `--swarm 60 --seed 2026`).
        + [3978527770824983624, 1666136389602662195]

    @Test(arguments: seeds)
    func aSwarmScenarioKeepsEveryGuarantee(seed: UInt64) throws {
        var (scenario, summary) = SwarmScenario.make(seed: seed)
        scenario.aesGCMBackend = HardwareAESGCM.backend
        let result = try Simulator(scenario: scenario, seed: seed).run()
        #expect(result.violations.isEmpty,
                "swarm seed \(seed) (\(summary)): \(result.violations.prefix(3)); replay: qsm-bench simulate --swarm-seed \(seed)")
        #expect(result.published > 0, "swarm seed \(seed) published nothing: \(summary)")
    }

    /// The list stays meaningful: every kind of fault is in some scenario of it.
    @Test func theListCoversEveryFault() {
        let scenarios = Self.seeds.map { SwarmScenario.make(seed: $0).scenario }
        #expect(scenarios.contains { $0.loss > 0 })
        #expect(scenarios.contains { $0.partitionLoss > 0 })
        #expect(scenarios.contains { $0.duplication > 0 })
        #expect(scenarios.contains { $0.corruption > 0 })
        #expect(scenarios.contains { $0.encrypted })
        #expect(scenarios.contains { $0.dataPathCut != nil })
        #expect(scenarios.contains { $0.jitterMicroseconds > 200 })
        #expect(scenarios.contains { $0.gmsLatencyMicroseconds.upperBound > 20_000 })
        #expect(scenarios.contains { !$0.burstyLossNodes.isEmpty })
        #expect(scenarios.contains { !$0.freezes.isEmpty })
        #expect(scenarios.contains { !$0.crashes.isEmpty })
        #expect(scenarios.contains { !$0.lateJoiners.isEmpty })
        #expect(scenarios.contains { !$0.groupChanges.isEmpty })
        #expect(scenarios.contains { !$0.hybridGroups.isEmpty })
        #expect(scenarios.contains { $0.split != nil })
        #expect(scenarios.contains { $0.gmsCrash != nil })
        #expect(scenarios.contains { $0.regionMode == .hierarchies })
        #expect(scenarios.contains { $0.sendersOutsideGroups })
        #expect(scenarios.contains { $0.maximumDatagramBytes < 8_192 })
    }
}
