import QSMProtocol
import QSMGMS

/// Swarm testing: each seed picks a random scenario, with a random mix of faults rather
/// than all of them at once (a run with every fault hides the interactions a few would
/// show). Every choice comes from the seed, so the seed alone replays the scenario.
package enum SwarmScenario {
    /// How long after publishing stops the healed network has to deliver everything
    /// owed, make it stable and go quiet (the liveness bound every swarm run is held to).
    package static let livenessSeconds = 40.0

    /// The scenario of one swarm seed, and a line that says what it holds.
    package static func make(seed: UInt64) -> (scenario: SimulationScenario, summary: String) {
        var random = SplitMix64(seed: seed ^ 0x5_3A12_0000)
        func uniform() -> Double { Double(random.next() >> 11) * 0x1.0p-53 }
        func chance(_ probability: Double) -> Bool { uniform() < probability }
        func pick(_ range: ClosedRange<Int>) -> Int { range.lowerBound + Int(random.next() % UInt64(range.count)) }
        func between(_ low: Double, _ high: Double) -> Double { low + (high - low) * uniform() }

        var s = SimulationScenario()
        var faults: [String] = []
        s.nodes = chance(0.15) ? pick(40...120) : pick(2...30)
        s.groups = chance(0.5) ? 1 : pick(2...6)
        if s.groups > 1, chance(0.7) { s.overlap = .irregular(probability: between(0.3, 0.8)) }
        if s.groups > 1, chance(0.3) { s.regionMode = .hierarchies }
        s.senders = pick(1...min(4, s.nodes))
        s.sendersOutsideGroups = s.nodes > s.senders && chance(0.2)
        s.rate = between(100, s.nodes > 40 ? 1_500 : 4_000)
        s.messageBytes = chance(0.2) ? pick(1_401...6_000) : pick(8...1_400)
        s.seconds = between(1, 3.5)
        s.partitionSize = pick(2...6)
        s.drainSeconds = livenessSeconds
        s.authenticated = chance(0.5)
        // From the seed, not a draw: a new draw would change every later one, and so every
        // listed seed's scenario.
        s.encrypted = s.authenticated && seed % 3 == 0
        s.latencyMicroseconds = between(20, 400)
        s.jitterMicroseconds = chance(0.3) ? between(200, 3_000) : between(0, 100)
        if s.jitterMicroseconds > 200 { faults.append("reordering (jitter \(Int(s.jitterMicroseconds)) us)") }
        s.latencySpreadMicroseconds = chance(0.4) ? between(0, 2_000) : 0
        let gmsLow = between(50, 2_000)
        s.gmsLatencyMicroseconds = gmsLow...(gmsLow + (chance(0.5) ? between(0, 200_000) : between(0, 5_000)))
        if s.gmsLatencyMicroseconds.upperBound > 20_000 { faults.append("view skew up to \(Int(s.gmsLatencyMicroseconds.upperBound / 1000)) ms") }
        // Room for a fragment and its headers (and tag), up to the engine's buffers.
        let smallest = s.protocolConfiguration.maximumFragmentBytes + 200
        s.maximumDatagramBytes = chance(0.4) ? pick(smallest...3_000) : 8_192
        // Bundling, drawn from a stream of its own so that every other choice of a seed
        // stays what it was before bundling existed (regression seeds keep their meaning).
        var bundling = SplitMix64(seed: seed ^ 0xB_0D1E_0000)
        s.bundleBytes = [0, 1_472, 1_472, 256 + Int(bundling.next() % 7_937)][Int(bundling.next() % 4)]
        let interior = Array(0..<s.nodes)
        func someNodes(_ most: Int) -> [Int] {
            var chosen: [Int] = []
            for _ in 0..<pick(1...max(1, most)) { chosen.append(interior[pick(0...(s.nodes - 1))]) }
            return Array(Set(chosen)).sorted()
        }
        if chance(0.3) {
            s.loss = between(0.005, 0.08)
            faults.append("loss \(Int(s.loss * 1000) / 10)%")
        }
        if chance(0.2) {
            s.duplication = between(0.005, 0.05)
            faults.append("duplication")
        }
        if s.authenticated, chance(0.4) {
            s.corruption = between(0.001, 0.02)
            faults.append("corruption")
        }
        if chance(0.2) {
            s.burstyLossNodes = someNodes(3)
            faults.append("bursts at \(s.burstyLossNodes)")
        }
        if chance(0.25) {
            s.freezes = someNodes(2).map { .init(node: $0, start: between(0.2, s.seconds), length: between(0.05, 1.5),
                                                 every: chance(0.3) ? between(1.6, 3) : nil) }
            faults.append("freezes at \(s.freezes.map(\.node))")
        }
        if s.nodes >= 3, chance(0.25) {
            // Never every node, and at most a third.
            s.crashes = someNodes(max(1, s.nodes / 3))
                .map { .init(node: $0, at: between(0.3, s.seconds)) }
            if !s.crashes.isEmpty { faults.append("crashes of \(s.crashes.map(\.node))") }
        }
        if s.nodes >= 3, chance(0.2) {
            let crashedNodes = Set(s.crashes.map(\.node))
            s.lateJoiners = someNodes(2).filter { !crashedNodes.contains($0) }.map { .init(node: $0, at: between(0.2, s.seconds)) }
            if !s.lateJoiners.isEmpty { faults.append("late joiners \(s.lateJoiners.map(\.node))") }
        }
        if s.groups > 1, chance(0.3) {
            s.groupChanges = (0..<pick(1...6)).map { _ in
                let kind: SimulationScenario.GroupChange.Kind = chance(0.45) ? .join(group: pick(0...(s.groups - 1)))
                    : chance(0.8) ? .leave(group: pick(0...(s.groups - 1))) : .leaveAll
                return .init(node: pick(0...(s.nodes - 1)), at: between(0.2, s.seconds), kind: kind)
            }
            faults.append("\(s.groupChanges.count) group changes")
        }
        if s.groups > 1, chance(0.2) {
            s.hybridGroups = Set((0..<s.groups).filter { _ in chance(0.5) })
            if !s.hybridGroups.isEmpty { faults.append("hybrid groups \(s.hybridGroups.sorted())") }
        }
        if s.nodes >= 4, chance(0.15) {
            let start = between(0.2, max(0.3, s.seconds - 0.8))
            s.split = .init(nodes: someNodes(s.nodes / 2), start: start, length: min(between(0.1, 2), s.seconds - start - 0.05))
            faults.append("split of \(s.split!.nodes) for \(Int(s.split!.length * 1000)) ms")
        }
        if chance(0.12) {
            let at = between(0.2, max(0.3, s.seconds - 0.6))
            s.gmsCrash = .init(at: at, downFor: min(between(0.05, 1.5), s.seconds - at - 0.05))
            faults.append("GMS crash at \(Int(at * 1000)) ms for \(Int(s.gmsCrash!.downFor * 1000)) ms")
        }
        // Data-path cuts, from a stream of their own too (they came later still).
        var cuts = SplitMix64(seed: seed ^ 0xC_0700_0000)
        if s.nodes >= 3, cuts.next() % 100 < 12 {
            let start = 0.2 + Double(cuts.next() % 1_000) / 1_000 * max(0, s.seconds - 0.5)
            let length = min(0.1 + Double(cuts.next() % 1_000) / 1_000 * 3, s.seconds - start - 0.05)
            if length > 0.05 {
                s.dataPathCut = .init(nodes: [Int(cuts.next() % UInt64(s.nodes))], start: start, length: length)
                faults.append("data path of \(s.dataPathCut!.nodes) cut for \(Int(length * 1000)) ms")
            }
        }
        // Rings of leaders of leaders (`LeaderHierarchy`): a swarm region has too few
        // partitions for the default fanout, so half the seeds take a small one. From a
        // stream of its own, like bundling.
        var ringDraw = SplitMix64(seed: seed ^ 0x1EAD_0000)
        let fanout = [0, 0, 2, 3][Int(ringDraw.next() % 4)]
        if fanout > 0 { s.protocolConfiguration.leaderRingFanout = fanout }
        // Loss at every member of one partition at once (`ReplicaRecovery`'s push), for a
        // quarter of the seeds: also from a stream of its own.
        var pushDraw = SplitMix64(seed: seed ^ 0x9054_0000)
        if pushDraw.next() % 4 == 0 {
            s.partitionLoss = [0.01, 0.03, 0.05][Int(pushDraw.next() % 3)]
            faults.append("partition-wide loss \(Int(s.partitionLoss * 100))%")
        }
        let shape = "\(s.nodes) nodes, \(s.groups) group\(s.groups == 1 ? "" : "s")"
            + (s.overlap == .perfect ? "" : " irregular") + (s.regionMode == .hierarchies ? " (hierarchies)" : "")
            + ", \(s.senders) sender\(s.senders == 1 ? "" : "s")\(s.sendersOutsideGroups ? " outside" : "")"
            + " at \(Int(s.rate))/s of \(s.messageBytes) B for \(Int(s.seconds * 10) / 10) s"
            + (s.encrypted ? ", encrypted" : s.authenticated ? ", authenticated" : "") + (s.maximumDatagramBytes < 8_192 ? ", datagrams <= \(s.maximumDatagramBytes) B" : "")
            + (s.bundleBytes == 0 ? ", unbundled" : s.bundleBytes == 1_472 ? "" : ", bundles <= \(s.bundleBytes) B")
            + (fanout > 0 ? ", leader rings of <= \(fanout)" : "")
        return (s, shape + (faults.isEmpty ? "; no faults" : "; " + faults.joined(separator: ", ")))
    }
}
