#if canImport(Glibc)
import Glibc
#endif
import QSMCore
import QSMSimulation
import QSMHarness

/// `qsm-bench simulate`: one deterministic simulated run of the real protocol core.
enum SimulateCommand {
    static let usage = """
        usage: qsm-bench simulate [flags]
               qsm-bench simulate --swarm N [--seed S]
               qsm-bench simulate --swarm-seed X

        Runs whole nodes (the node machine the engine runs: membership client, protocol,
        authentication, flow control) and the real membership service on a simulated
        network in virtual time, checks every delivery guarantee, and prints what it
        measured. Views reach nodes at different times (each node's GMS connection has
        its own latency). A seed makes the run exactly reproducible; a failing run names
        its seed. Faults act while publishing; then the network heals and the run must
        deliver everything owed, make it stable and go quiet within the drain bound
        (liveness).

        flags:
          --nodes N           nodes (default 10)
          --groups G          groups, all joined by every node (default 1)
          --irregular P       instead: each node joins each group with probability P
          --hierarchies       the GMS decomposes groups into perfect hierarchies first
          --senders S         senders (the last S nodes; default 1)
          --rate R            messages per simulated second per sender (default 1000)
          --size BYTES        message size (default 1000)
          --seconds T         simulated seconds of publishing (default 5)
          --drain-seconds T   the liveness bound after publishing (default 30)
          --loss P            random loss per datagram, 0...0.5 (default 0)
          --region-loss P     random loss of a multicast datagram at every
                              listener at once, 0...0.5 (default 0)
          --partition-loss P  random loss of a multicast datagram at every member
                              of one partition (the second of its region) at
                              once, 0...0.5 (default 0)
          --unaggregated      no NAK aggregation or multicast repair: every
                              receiver asks alone, every repair is a unicast
                              (to compare)
          --no-push           a partition's whole loss is multicast by the sender,
                              not pushed from the partitions that cache it (to
                              compare)
          --no-await          a caching replica asked for a packet it lacks too
                              drops the request rather than answering once it
                              holds the packet (to compare)
          --peers-first       receivers ask caching peers before the sender in regions
                              of every size, not the sender first in regions of at
                              most \(ProtocolConfiguration().senderFirstUpToMembers) members (to compare)
          --peer-attempts N   asks of caching peers between two of the sender, 0...100
                              (default \(ProtocolConfiguration().peerAttemptsBeforeSender); 0: only the sender while it is thought live)
          --duplicate P       random duplication per datagram, 0...0.5 (default 0)
          --corrupt P         one bit flipped per datagram with probability P; needs
                              --authenticate (only the tag detects every flip)
          --authenticate      datagrams carry an AES-GCM tag (a secret drawn from the
                              seed)
          --encrypt           with --authenticate: packets are encrypted too
          --jitter US         uniform extra latency per datagram, reordering (default 50)
          --gms-latency US    most one-way latency of a node's GMS connection (each node
                              draws its own from 100 us to this; default 2000)
          --datagram BYTES    largest datagram the network carries (default 8192)
          --partition-size K  nodes per partition (default 5)
          --leader-fanout F   most partition leaders on one ring; a region with
                              more gets rings of leaders of leaders, so a round's
                              news reaches its leader in O(log n) hops (default 32;
                              0: one ring of every partition leader, as the seed)
          --token-budget B    token bytes the rings may send per data byte
                              arriving (default 0.25): in a large region at a low
                              rate, this budget, not the rings, sets the pace
          --token-allowance B token bytes a second a region's rings may always
                              send, whatever the data (default 262144; 0: the
                              budget alone)
          --bursty N          node N drops all inbound packets 10 ms every 1 s (repeatable)
          --freeze N          node N freezes 0.5 s every 5 s (repeatable)
          --crash N@T         node N crashes at T simulated seconds (repeatable)
          --split N,N,..@T+D  those nodes are cut off from the rest and the GMS at T for D s
          --cut-data N,N,..@T+D
                              those nodes' datagrams are lost from T for D s, while
                              their GMS connections work (only the rings can tell)
          --gms-crash T+D     the GMS crashes at T and a new one starts D s later
          --outside           senders publish without joining the groups (as qsm-bench
                              run's senders do): acknowledged by the region leader,
                              repaired by negative acknowledgement
          --seed X            random seed (default 1)
          --swarm N           run N random scenarios (sizes, traffic and a random mix of
                              the faults above), each from a seed drawn from --seed and
                              printed before it runs; stop at the first violation with
                              the command that reproduces it
          --keep-going        with --swarm: run every scenario, and list the failing seeds
          --swarm-seed X      run the one swarm scenario of seed X (--unaggregated,
                      --no-push, --no-await, --peers-first and --peer-attempts apply
                      to it too)
          --describe          with --swarm-seed: say what the scenario holds, and stop
          --trace N           print node N's membership changes and GMS connection
          --json              print one JSON object (per scenario with --swarm)
          -h, --help          show this help

        exit status: 0 no violation; 1 a violation (liveness included); 2 bad flags.
        """

    static func main(_ arguments: [String]) -> Never {
        var scenario = SimulationScenario()
        let seed: UInt64
        let json: Bool
        var swarmCount: Int?
        var swarmSeed: UInt64?
        var traceNode: Int?
        var keepGoing = false
        var describeOnly = false
        do throws(ConfigurationError) {
            let flags = try CommandLineFlags(arguments, valued: ["--nodes", "--groups", "--irregular", "--senders", "--rate", "--size",
                                                                 "--loss", "--region-loss", "--partition-loss", "--duplicate", "--corrupt", "--jitter", "--gms-latency",
                                                                 "--datagram", "--partition-size", "--leader-fanout", "--token-budget", "--token-allowance", "--peer-attempts", "--drain-seconds",
                                                                 "--bursty", "--freeze", "--crash", "--split", "--cut-data", "--gms-crash",
                                                                 "--seconds", "--seed", "--swarm", "--swarm-seed", "--trace"],
                                             switches: ["--json", "--outside", "--unaggregated", "--no-push", "--no-await", "--peers-first", "--authenticate", "--encrypt", "--hierarchies", "--keep-going", "--describe", "-h", "--help"])
            if flags.has("-h") || flags.has("--help") {
                print(usage)
                exit(0)
            }
            scenario.nodes = try flags.integer("--nodes", in: 1...60_000, default: 10)
            scenario.groups = try flags.integer("--groups", in: 1...100_000, default: 1)
            scenario.senders = try flags.integer("--senders", in: 1...scenario.nodes, default: 1)
            scenario.messageBytes = try flags.integer("--size", in: 8...1_000_000, default: 1000)
            scenario.maximumDatagramBytes = try flags.integer("--datagram", in: 576...65_507, default: 8_192)
            scenario.partitionSize = try flags.integer("--partition-size", in: 1...64, default: 5)
            let fanout = try flags.integer("--leader-fanout", in: 0...65_536, default: ProtocolConfiguration().leaderRingFanout)
            guard fanout != 1 else { throw ConfigurationError("--leader-fanout must be 0 (one region ring) or at least 2, got 1") }
            scenario.protocolConfiguration.leaderRingFanout = fanout
            func number(_ flag: String, _ fallback: Double, _ range: ClosedRange<Double>) throws(ConfigurationError) -> Double {
                guard let text = try flags.value(flag) else { return fallback }
                guard let value = Double(text), range.contains(value) else {
                    throw ConfigurationError("\(flag) must be a number in \(range.lowerBound)...\(range.upperBound), got '\(text)'")
                }
                return value
            }
            func interval(_ text: String, _ flag: String) throws(ConfigurationError) -> (start: Double, length: Double) {
                let parts = text.split(separator: "+")
                guard parts.count == 2, let start = Double(parts[0]), let length = Double(parts[1]) else {
                    throw ConfigurationError("\(flag) takes T+D (seconds), got '\(text)'")
                }
                return (start, length)
            }
            scenario.rate = try number("--rate", 1000, 0.001...1_000_000)
            scenario.protocolConfiguration.tokenBytesPerDataByte = try number("--token-budget", ProtocolConfiguration().tokenBytesPerDataByte, 0.001...1_000_000)
            scenario.protocolConfiguration.tokenBytesPerSecondAllowance = try number("--token-allowance", ProtocolConfiguration().tokenBytesPerSecondAllowance, 0...1e12)
            scenario.loss = try number("--loss", 0, 0...0.5)
            scenario.regionWideLoss = try number("--region-loss", 0, 0...0.5)
            scenario.partitionLoss = try number("--partition-loss", 0, 0...0.5)
            scenario.protocolConfiguration.aggregatesRepairs = !flags.has("--unaggregated")
            scenario.protocolConfiguration.pushesBetweenPartitions = !flags.has("--no-push")
            scenario.protocolConfiguration.answersOnceHeld = !flags.has("--no-await")
            if flags.has("--peers-first") { scenario.protocolConfiguration.senderFirstUpToMembers = 0 }
            if let text = try flags.value("--peer-attempts") {
                guard let attempts = Int(text), (0...100).contains(attempts) else {
                    throw ConfigurationError("--peer-attempts must be a whole number in 0...100, got '\(text)'")
                }
                scenario.protocolConfiguration.peerAttemptsBeforeSender = attempts
            }
            scenario.duplication = try number("--duplicate", 0, 0...0.5)
            scenario.corruption = try number("--corrupt", 0, 0...0.5)
            scenario.jitterMicroseconds = try number("--jitter", 50, 0...10_000_000)
            scenario.gmsLatencyMicroseconds = 100...max(100, try number("--gms-latency", 2_000, 0...10_000_000))
            scenario.seconds = try number("--seconds", 5, 0.001...86_400)
            scenario.drainSeconds = try number("--drain-seconds", 30, 0.001...86_400)
            scenario.authenticated = flags.has("--authenticate")
            scenario.encrypted = flags.has("--encrypt")
            if flags.has("--hierarchies") { scenario.regionMode = .hierarchies }
            if flags.all("--irregular").count > 0 { scenario.overlap = .irregular(probability: try number("--irregular", 0.5, 0.0001...1)) }
            for text in flags.all("--bursty") {
                guard let node = Int(text) else { throw ConfigurationError("--bursty takes a node index, got '\(text)'") }
                scenario.burstyLossNodes.append(node)
            }
            for text in flags.all("--freeze") {
                guard let node = Int(text) else { throw ConfigurationError("--freeze takes a node index, got '\(text)'") }
                scenario.freezes.append(.init(node: node, start: 1, length: 0.5, every: 5))
            }
            for text in flags.all("--crash") {
                let parts = text.split(separator: "@")
                guard parts.count == 2, let node = Int(parts[0]), let time = Double(parts[1]) else {
                    throw ConfigurationError("--crash takes NODE@SECONDS, got '\(text)'")
                }
                scenario.crashes.append(.init(node: node, at: time))
            }
            /// N,N,...@T+D: nodes, and when and for how long.
            func nodesFor(_ flag: String) throws(ConfigurationError) -> SimulationScenario.Split? {
                guard let text = try flags.value(flag) else { return nil }
                let parts = text.split(separator: "@")
                let nodes = parts.first.map { $0.split(separator: ",").compactMap { Int($0) } } ?? []
                guard parts.count == 2, !nodes.isEmpty else { throw ConfigurationError("\(flag) takes N,N,...@T+D, got '\(text)'") }
                let (start, length) = try interval(String(parts[1]), flag)
                return .init(nodes: nodes, start: start, length: length)
            }
            scenario.split = try nodesFor("--split")
            scenario.dataPathCut = try nodesFor("--cut-data")
            if let text = try flags.value("--gms-crash") {
                let (start, length) = try interval(text, "--gms-crash")
                scenario.gmsCrash = .init(at: start, downFor: length)
            }
            func unsigned(_ flag: String) throws(ConfigurationError) -> UInt64? {
                guard let text = try flags.value(flag) else { return nil }
                guard let value = UInt64(text) else { throw ConfigurationError("\(flag) must be a non-negative integer, got '\(text)'") }
                return value
            }
            seed = try unsigned("--seed") ?? 1
            traceNode = try unsigned("--trace").map { Int(truncatingIfNeeded: $0) }
            swarmSeed = try unsigned("--swarm-seed")
            if try flags.value("--swarm") != nil { swarmCount = try flags.integer("--swarm", in: 1...1_000_000, default: 1) }
            json = flags.has("--json")
            keepGoing = flags.has("--keep-going")
            describeOnly = flags.has("--describe")
            scenario.sendersOutsideGroups = flags.has("--outside")
            if swarmCount == nil, swarmSeed == nil { try scenario.validate() }
        } catch {
            benchLog("qsm-bench simulate: \(error.message)")
            benchLog("see qsm-bench simulate --help")
            exit(2)
        }
        if let swarmSeed {
            var (swarmScenario, summary) = SwarmScenario.make(seed: swarmSeed)
            // The comparison switches apply to a swarm scenario too (to tell which rule
            // a failing seed depends on).
            let comparisons = scenario.protocolConfiguration
            if !comparisons.aggregatesRepairs { swarmScenario.protocolConfiguration.aggregatesRepairs = false }
            if !comparisons.pushesBetweenPartitions { swarmScenario.protocolConfiguration.pushesBetweenPartitions = false }
            if !comparisons.answersOnceHeld { swarmScenario.protocolConfiguration.answersOnceHeld = false }
            if comparisons.senderFirstUpToMembers == 0 { swarmScenario.protocolConfiguration.senderFirstUpToMembers = 0 }
            swarmScenario.protocolConfiguration.peerAttemptsBeforeSender = comparisons.peerAttemptsBeforeSender
            if describeOnly {
                print("\(swarmSeed): \(summary)")
                exit(0)
            }
            if !json { benchLog("qsm-bench simulate: swarm seed \(swarmSeed): \(summary)") }
            exit(runOne(swarmScenario, seed: swarmSeed, json: json, reproduce: "qsm-bench simulate --swarm-seed \(swarmSeed)",
                        trace: traceNode) ? 0 : 1)
        }
        if let swarmCount { runSwarm(count: swarmCount, seed: seed, json: json, keepGoing: keepGoing) }
        if !json { benchLog("qsm-bench simulate: \(scenario.nodes) nodes, \(scenario.groups) groups, seed \(seed)...") }
        exit(runOne(scenario, seed: seed, json: json, reproduce: nil, trace: traceNode) ? 0 : 1)
    }

    /// Runs N swarm scenarios; the first violation stops the swarm with the command that
    /// replays that scenario alone.
    static func runSwarm(count: Int, seed: UInt64, json: Bool, keepGoing: Bool) -> Never {
        var seeds = SplitMix64(seed: seed)
        let start = MonotonicClock.now()
        var failed: [UInt64] = []
        for number in 1...count {
            let scenarioSeed = seeds.next() >> 1
            let (scenario, summary) = SwarmScenario.make(seed: scenarioSeed)
            benchLog("swarm \(number)/\(count): seed \(scenarioSeed): \(summary)")
            let reproduce = "swift run -c release qsm-bench simulate --swarm-seed \(scenarioSeed)"
            if !runOne(scenario, seed: scenarioSeed, json: json, reproduce: reproduce, quiet: !json) {
                failed.append(scenarioSeed)
                if keepGoing { continue }
                benchLog("swarm stopped at scenario \(number) of \(count); reproduce it with: \(reproduce)")
                exit(1)
            }
        }
        let seconds = Double(MonotonicClock.now().nanoseconds(since: start)) / 1e9
        if !failed.isEmpty {
            benchLog("swarm: \(failed.count) of \(count) scenarios from seed \(seed) failed (\(Int(seconds)) s); their seeds: \(failed.map(String.init).joined(separator: " "))")
            exit(1)
        }
        benchLog("swarm: \(count) scenarios from seed \(seed), no violation (\(Int(seconds)) s)")
        exit(0)
    }

    /// Runs one scenario and reports it; false if it broke an invariant.
    static func runOne(_ given: SimulationScenario, seed: UInt64, json: Bool, reproduce: String?, quiet: Bool = false,
                       trace: Int? = nil) -> Bool {
        var scenario = given
        scenario.aesGCMBackend = HardwareAESGCM.backend
        let simulator: Simulator
        do {
            simulator = try Simulator(scenario: scenario, seed: seed)
        } catch {
            benchLog("qsm-bench simulate: \(error)")
            exit(2)
        }
        simulator.traceNode = trace
        let wallStart = MonotonicClock.now()
        if !quiet {
            // A long run says how far it got, at most every 10 s of wall time.
            var lastReport = wallStart
            let publishingEnds = scenario.seconds + 0.1
            simulator.onProgress = { simulated, deliveries in
                let now = MonotonicClock.now()
                guard now.nanoseconds(since: lastReport) >= 10_000_000_000 else { return }
                lastReport = now
                let phase = simulated < publishingEnds ? "publishing until \(f(publishingEnds)) s" : "draining"
                benchLog("simulate: \(f(simulated)) simulated s (\(phase)), \(deliveries) deliveries, "
                                     + "\(Int(Double(now.nanoseconds(since: wallStart)) / 1e9)) s wall, "
                                     + "RSS \(Int(ProcessMetrics.residentMegabytes().current)) MB")
            }
        }
        var result = simulator.run()
        for line in simulator.trace { benchLog("trace: \(line)") }
        result.wallSeconds = Double(MonotonicClock.now().nanoseconds(since: wallStart)) / 1e9
        let fields: [(String, String)] = [
            ("nodes", "\(result.nodes)"), ("groups", "\(result.groups)"), ("senders", "\(scenario.senders)"), ("seed", "\(seed)"),
            ("sim_seconds", f(result.simulatedSeconds)), ("published", "\(result.published)"), ("delivered", "\(result.delivered)"),
            ("violations", "\(result.violations.count)"),
            ("token_rtt_ms_mean", f(result.tokenRoundTripMillisecondsMean)),
            ("partition_round_ms_mean", f(result.partitionRoundMillisecondsMean)),
            ("leader_round_ms_mean", f(result.leaderRoundMillisecondsMean)),
            ("region_round_ms_mean", f(result.regionRoundMillisecondsMean)),
            ("ring_levels", "\(result.ringLevels)"),
            ("ack_latency_ms_mean", f(result.acknowledgementLatencyMillisecondsMean)),
            ("recovery_ms_p99", f(result.recoveryMillisecondsP99)),
            ("max_cached_bytes_per_node", "\(result.maximumCachedBytesPerNode)"),
            ("max_held_bytes_per_node", "\(result.maximumHeldBytesPerNode)"),
            ("control_bytes_per_data_byte", f(result.controlBytesPerDataByte)),
            ("control_bytes_per_data_byte_publishing", f(result.controlBytesPerDataByteWhilePublishing)),
            ("token_bytes_per_data_byte_publishing", f(result.tokenBytesPerDataByteWhilePublishing)),
            ("token_rounds", "\(result.tokenRounds)"), ("leader_token_rounds", "\(result.leaderTokenRounds)"),
            ("region_token_rounds", "\(result.regionTokenRounds)"), ("token_timeouts", "\(result.tokenTimeouts)"), ("tokens_split", "\(result.tokensSplit)"),
            ("retransmissions", "\(result.retransmissions)"), ("duplicates_received", "\(result.duplicatesReceived)"),
            ("max_token_records", "\(result.maximumTokenRecords)"),
            ("region_wide_dropped", "\(result.regionWideDropped)"), ("partition_repairs_asked", "\(result.partitionRepairsAsked)"),
            ("multicast_repairs", "\(result.multicastRepairs)"), ("repair_requests_absorbed", "\(result.repairRequestsAbsorbed)"),
            ("partition_dropped", "\(result.partitionDropped)"),
            ("requests_sent", "\(result.requestsSent)"), ("repair_requests_not_held", "\(result.repairRequestsNotHeld)"),
            ("repairs_awaited", "\(result.repairsAwaited)"), ("awaited_repairs_answered", "\(result.awaitedRepairsAnswered)"),
            ("awaited_repairs_served_by_multicast", "\(result.awaitedRepairsServedByMulticast)"),
            ("partition_pushes_asked", "\(result.partitionPushesAsked)"), ("partition_pushes", "\(result.partitionPushes)"),
            ("view_change_pauses", "\(result.viewChangePauses)"), ("view_change_pauses_timed_out", "\(result.viewChangePausesTimedOut)"),
            ("view_change_pause_ms_mean", f(result.viewChangePauseMillisecondsMean)),
            ("network_dropped", "\(result.networkDropped)"), ("network_duplicates", "\(result.networkDuplicates)"),
            ("corrupted", "\(result.corruptedDatagrams)"), ("unauthenticated_dropped", "\(result.unauthenticatedDropped)"),
            ("replay_dropped", "\(result.replayDropped)"), ("too_old_dropped", "\(result.tooOldDropped)"),
            ("gms_updates", "\(result.gmsUpdatesSent)"), ("publishes_refused", "\(result.publishesRefused)"),
            ("messages_carried", "\(result.messagesCarried)"), ("not_member_dropped", "\(result.notMemberDropped)"),
            ("messages_given_up", "\(result.messagesGivenUp)"),
            ("suspects_reported", "\(result.suspectsReported)"), ("suspicion_exclusions", "\(result.suspicionExclusions)"),
            ("drain_seconds", f(result.drainSeconds)), ("wall_seconds", f(result.wallSeconds)),
        ]
        if json {
            print("{" + fields.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}")
        } else if !quiet {
            var table = Table("figure", "value")
            for (key, value) in fields { table.add(key, value) }
            print(table.render())
        } else {
            benchLog("  published \(result.published), delivered \(result.delivered), drained in \(f(result.drainSeconds)) s, \(f(result.wallSeconds)) s wall")
        }
        for violation in result.violations.prefix(20) { benchLog("violation (seed \(seed)): \(violation)") }
        if !result.violations.isEmpty, let reproduce { benchLog("reproduce with: \(reproduce)") }
        return result.violations.isEmpty
    }

    static func f(_ value: Double) -> String { "\((value * 1000).rounded() / 1000)" }
}
