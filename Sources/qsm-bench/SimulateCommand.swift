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

        Runs the protocol core (the same code the engine runs) on a simulated network in
        virtual time, checks every delivery guarantee, and prints what it measured. A seed
        makes the run exactly reproducible; a failing run names its seed.

        flags:
          --nodes N           nodes (default 10)
          --groups G          groups, all joined by every node (default 1)
          --irregular P       instead: each node joins each group with probability P
          --senders S         senders (the last S nodes; default 1)
          --rate R            messages per simulated second per sender (default 1000)
          --size BYTES        message size (default 1000)
          --loss P            random loss per packet, 0...0.5 (default 0)
          --bursty N          node N drops all inbound packets 10 ms every 1 s (repeatable)
          --freeze N          node N freezes 0.5 s every 5 s (repeatable)
          --crash N@T         node N crashes at T simulated seconds (repeatable)
          --seconds T         simulated seconds of publishing (default 5)
          --seed X            random seed (default 1)
          --outside           senders publish without joining the groups (as qsm-bench
                              run's senders do): acknowledged by the region leader,
                              repaired by negative acknowledgement
          --json              print one JSON object
          -h, --help          show this help
        """

    static func main(_ arguments: [String]) -> Never {
        var scenario = SimulationScenario()
        let seed: UInt64
        let json: Bool
        do throws(ConfigurationError) {
            let flags = try CommandLineFlags(arguments, valued: ["--nodes", "--groups", "--irregular", "--senders", "--rate", "--size",
                                                                 "--loss", "--bursty", "--freeze", "--crash", "--seconds", "--seed"],
                                             switches: ["--json", "--outside", "-h", "--help"])
            if flags.has("-h") || flags.has("--help") {
                print(usage)
                exit(0)
            }
            scenario.nodes = try flags.integer("--nodes", in: 1...10_000, default: 10)
            scenario.groups = try flags.integer("--groups", in: 1...100_000, default: 1)
            scenario.senders = try flags.integer("--senders", in: 1...scenario.nodes, default: 1)
            scenario.messageBytes = try flags.integer("--size", in: 8...1_000_000, default: 1000)
            func number(_ flag: String, _ fallback: Double, _ range: ClosedRange<Double>) throws(ConfigurationError) -> Double {
                guard let text = try flags.value(flag) else { return fallback }
                guard let value = Double(text), range.contains(value) else {
                    throw ConfigurationError("\(flag) must be a number in \(range.lowerBound)...\(range.upperBound), got '\(text)'")
                }
                return value
            }
            scenario.rate = try number("--rate", 1000, 0.001...1_000_000)
            scenario.loss = try number("--loss", 0, 0...0.5)
            scenario.seconds = try number("--seconds", 5, 0.001...86_400)
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
            let seedText = try flags.value("--seed") ?? "1"
            guard let parsed = UInt64(seedText) else { throw ConfigurationError("--seed must be a non-negative integer, got '\(seedText)'") }
            seed = parsed
            json = flags.has("--json")
            scenario.sendersOutsideGroups = flags.has("--outside")
            try scenario.validate()
        } catch {
            writeToStandardError("qsm-bench simulate: \(error.message)")
            writeToStandardError("see qsm-bench simulate --help")
            exit(2)
        }
        let simulator: Simulator
        do {
            simulator = try Simulator(scenario: scenario, seed: seed)
        } catch {
            writeToStandardError("qsm-bench simulate: \(error)")
            exit(2)
        }
        if !json { writeToStandardError("qsm-bench simulate: \(scenario.nodes) nodes, \(scenario.groups) groups, seed \(seed)...") }
        let wallStart = MonotonicClock.now()
        var result = simulator.run()
        result.wallSeconds = Double(MonotonicClock.now().nanoseconds(since: wallStart)) / 1e9
        let fields: [(String, String)] = [
            ("nodes", "\(result.nodes)"), ("groups", "\(result.groups)"), ("senders", "\(scenario.senders)"), ("seed", "\(seed)"),
            ("sim_seconds", f(result.simulatedSeconds)), ("published", "\(result.published)"), ("delivered", "\(result.delivered)"),
            ("violations", "\(result.violations.count)"),
            ("token_rtt_ms_mean", f(result.tokenRoundTripMillisecondsMean)),
            ("ack_latency_ms_mean", f(result.acknowledgementLatencyMillisecondsMean)),
            ("recovery_ms_p99", f(result.recoveryMillisecondsP99)),
            ("max_cached_bytes_per_node", "\(result.maximumCachedBytesPerNode)"),
            ("max_held_bytes_per_node", "\(result.maximumHeldBytesPerNode)"),
            ("control_bytes_per_data_byte", f(result.controlBytesPerDataByte)),
            ("retransmissions", "\(result.retransmissions)"), ("duplicates_received", "\(result.duplicatesReceived)"),
            ("max_token_records", "\(result.maximumTokenRecords)"),
            ("drain_seconds", f(result.drainSeconds)), ("wall_seconds", f(result.wallSeconds)),
        ]
        if json {
            print("{" + fields.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}")
        } else {
            var table = Table("figure", "value")
            for (key, value) in fields { table.add(key, value) }
            print(table.render())
        }
        for violation in result.violations.prefix(20) { writeToStandardError("violation (seed \(seed)): \(violation)") }
        exit(result.violations.isEmpty ? 0 : 1)
    }

    static func f(_ value: Double) -> String { "\((value * 1000).rounded() / 1000)" }
}
