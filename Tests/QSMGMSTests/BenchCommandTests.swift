#if canImport(Glibc)
import Glibc
#endif
import Foundation
import QSMCore
import QSMHarness
import Testing

/// qsm-bench as a user runs it: real GMS, sender and receiver processes in the private
/// namespace the tool creates for itself. These check that the benchmark measures and
/// reports truthfully (every message checked, keys present, faults applied), not how
/// fast anything is: speed is the benchmark's own business.
@Suite(.enabled(if: NetworkNamespace.isAvailable, "needs CAP_SYS_ADMIN to create a private network namespace (run as root)"))
struct BenchCommandTests {
    static var qsmBench: String { ChildProcess.currentExecutableDirectory + "/qsm-bench" }

    /// Runs qsm-bench to the end (bounded) and returns its exit status and output.
    static func run(_ arguments: [String], timeoutSeconds: Int = 120) throws -> (status: Int32?, output: String) {
        let process = try ChildProcess(executable: qsmBench, arguments: arguments)
        process.closeInput()
        var lines: [String] = []
        let deadline = MonotonicClock.now().advanced(by: .seconds(timeoutSeconds))
        while MonotonicClock.now() < deadline {
            if let line = process.readLine(timeoutMilliseconds: 200) {
                lines.append(line)
            } else if process.outputEnded {
                break
            }
        }
        let status = process.waitForExit(timeoutMilliseconds: 5_000)
        if status == nil { process.signal(SIGKILL) }
        return (status, lines.joined(separator: "\n"))
    }

    static func json(_ text: String) throws -> [String: Any] {
        let object = try JSONSerialization.jsonObject(with: Data(text.utf8))
        return try #require(object as? [String: Any])
    }

    static let requiredKeys = [
        "senders", "receivers", "groups", "size", "seconds", "sent", "delivered_min", "complete", "in_order", "duplicates",
        "msgs_per_sec_min", "mbytes_per_sec_min", "raw_lossless_msgs_per_sec", "ratio_to_raw", "latency_us_p50",
        "latency_us_p99", "sender_cpu_s", "receivers_cpu_s", "sender_rss_mb", "receiver_rss_mb_max", "token_rtt_ms",
        "ack_latency_ms", "retransmissions", "raw_one_per_datagram_msgs_per_sec", "raw_bundled_msgs_per_sec",
        "raw_messages_per_datagram", "sender_allocations_per_message", "receiver_allocations_per_message_max",
        "raw_offload_msgs_per_sec", "segmentation_offload", "receive_offload", "cpu_us_per_delivered_message",
        "raw_cpu_us_per_delivered_message", "kernel_receive_drops", "receiver_out_of_order_drops", "receiver_pool_exhaustions",
        "bundled_share", "packets_per_bundle",
    ]

    /// `--version` works on both tools, alone and after any subcommand, and exits 0.
    @Test func bothToolsPrintTheirVersion() throws {
        for (tool, arguments) in [(Self.qsmBench, ["--version"]), (Self.qsmBench, ["simulate", "--version"]),
                                  (EngineProcessTests.qsmNode, ["--version"]), (EngineProcessTests.qsmNode, ["publish", "--version"]),
                                  (EngineProcessTests.qsmNode, ["gms", "--insecure", "--version"])] {
            let process = try ChildProcess(executable: tool, arguments: arguments)
            process.closeInput()
            let line = process.readLine(timeoutMilliseconds: 10_000)
            let name = String(tool.split(separator: "/").last!)
            #expect(line?.hasPrefix("\(name) ") == true && line?.split(separator: ".").count == 3, "\(name) \(arguments): \(line ?? "nothing")")
            #expect(process.waitForExit(timeoutMilliseconds: 10_000) == 0, "\(name) \(arguments)")
        }
    }

    /// `micro --only seal` measures every backend this CPU runs at each size (a row each,
    /// a time per datagram), and a part it does not know is refused.
    @Test func theSealMicroBenchmarkReportsEveryBackendAndSize() throws {
        let (status, output) = try Self.run(["micro", "--only", "seal", "--rounds", "1", "--seconds", "0.01"])
        #expect(status == 0, "\(output)")
        for backend in ["portable"] + (HardwareAESGCM.hardware.map { [$0.name] } ?? []) {
            for size in ["150", "1070", "1472"] {
                let row = output.split(separator: "\n").first { line in
                    let fields = line.split(separator: " ")
                    return fields.first.map(String.init) == backend && fields.count > 2 && String(fields[1]) == size
                        && Double(fields[2]).map { $0 > 0 } == true
                }
                #expect(row != nil, "no \(backend) row for \(size) bytes in: \(output)")
            }
        }
        // (Its message goes to standard error, which `run` does not read.)
        let (refused, _) = try Self.run(["micro", "--only", "seals"])
        #expect(refused == 2)
    }

    @Test func aShortRunWithTheRawSearchReportsEveryKeyAndCompleteDelivery() throws {
        let (status, output) = try Self.run(["run", "--receivers", "2", "--seconds", "1", "--raw-trial-seconds", "0.2", "--json"])
        #expect(status == 0, "output: \(output)")
        let result = try Self.json(output)
        for key in Self.requiredKeys { #expect(result[key] != nil, "missing \(key)") }
        #expect(result["complete"] as? Bool == true)
        #expect(result["in_order"] as? Bool == true)
        #expect(result["duplicates"] as? Int == 0)
        let sent = try #require(result["sent"] as? Int)
        #expect(sent > 0)
        #expect(result["delivered_min"] as? Int == sent)
        let raw = try #require(result["raw_lossless_msgs_per_sec"] as? Double)
        #expect(raw > 0)
        let rate = try #require(result["msgs_per_sec_min"] as? Double)
        let ratio = try #require(result["ratio_to_raw"] as? Double)
        #expect(abs(ratio - rate / raw) < 0.01)
        // CPU per delivered message, of the engine and of the raw limit's confirming trial.
        #expect((result["cpu_us_per_delivered_message"] as? Double ?? 0) > 0)
        #expect((result["raw_cpu_us_per_delivered_message"] as? Double ?? 0) > 0)
    }

    /// With small messages the raw baseline packs datagrams as the engine's bundles do
    /// (and offloads as it does), and the ratio is taken against the best raw figure,
    /// never a weaker one.
    @Test func smallMessagesAreMeasuredAgainstARawBaselineThatPacksToo() throws {
        let (status, output) = try Self.run(["run", "--receivers", "2", "--seconds", "1", "--size", "100", "--raw-trial-seconds", "0.2",
                                             "--json"])
        #expect(status == 0, "output: \(output)")
        let result = try Self.json(output)
        let perDatagram = try #require(result["raw_messages_per_datagram"] as? Int)
        #expect(perDatagram > 1)
        let one = try #require(result["raw_one_per_datagram_msgs_per_sec"] as? Double)
        let bundled = try #require(result["raw_bundled_msgs_per_sec"] as? Double)
        // With the engine's offloads too, where the kernel has them (null where not).
        let offload = result["raw_offload_msgs_per_sec"] as? Double ?? 0
        let best = try #require(result["raw_lossless_msgs_per_sec"] as? Double)
        #expect(one > 0 && bundled > 0 && best == max(one, bundled, offload))
        let rate = try #require(result["msgs_per_sec_min"] as? Double)
        #expect(abs(try #require(result["ratio_to_raw"] as? Double) - rate / best) < 0.01)
        #expect(result["complete"] as? Bool == true)
        // The engine packed them as well: most of its packets went several to a datagram.
        #expect(try #require(result["bundled_share"] as? Double) > 0.5)
        #expect(try #require(result["packets_per_bundle"] as? Double) > 2)
    }

    /// `--bundle-bytes 0` reaches the nodes: with it, no packet goes in a bundle.
    @Test func bundlingCanBeTurnedOff() throws {
        let (status, output) = try Self.run(["run", "--receivers", "2", "--seconds", "1", "--size", "100", "--no-raw",
                                             "--bundle-bytes", "0", "--json"])
        #expect(status == 0, "output: \(output)")
        let result = try Self.json(output)
        #expect(result["bundled_share"] as? Double == 0, "\(result["bundled_share"] ?? "nothing")")
        #expect(result["complete"] as? Bool == true)
    }

    @Test func aCrashedReceiverIsLeftOutAndTheSurvivorsGetEverything() throws {
        let (status, output) = try Self.run(["run", "--receivers", "3", "--seconds", "3", "--no-raw", "--perturb", "crash", "--json"])
        #expect(status == 0, "output: \(output)")
        let result = try Self.json(output)
        #expect(result["perturbation"] as? String == "crash")
        #expect(result["complete"] as? Bool == true)
        #expect(result["delivered_min"] as? Int == result["sent"] as? Int)
    }

    /// Loss at receiver 0 only, so receiver 1 holds every packet it lacks. In this region
    /// of three members the default asks the sender first, so the sender serves most
    /// repairs; with `--sender-first-up-to 0` the caching peer is asked first and serves
    /// most. Either
    /// way everything arrives, and the holes' open times are reported.
    @Test(arguments: [nil, 0])
    func injectedLossIsRepairedAndCounted(senderFirstUpTo: Int?) throws {
        // Paced, so that data is flowing during each 10 ms drop: unpaced, a sender that
        // waits for acknowledgements on a loaded machine (a debug build in CI) can be
        // idle then, and only control packets are dropped (CI saw 0 retransmissions once).
        var arguments = ["run", "--receivers", "2", "--seconds", "4", "--rate", "10000", "--no-raw", "--perturb", "loss", "--json"]
        if let senderFirstUpTo { arguments += ["--sender-first-up-to", "\(senderFirstUpTo)"] }
        let (status, output) = try Self.run(arguments)
        #expect(status == 0, "output: \(output)")
        let result = try Self.json(output)
        #expect(result["complete"] as? Bool == true)
        #expect(result["duplicates"] as? Int == 0)
        #expect(result["peer_attempts"] as? Int == ProtocolConfiguration().peerAttemptsBeforeSender)
        #expect(result["sender_first_up_to"] as? Int == senderFirstUpTo ?? ProtocolConfiguration().senderFirstUpToMembers)
        let dropped = try #require(result["packets_dropped_by_injection"] as? Int)
        #expect(dropped > 0, "the loss perturbation dropped nothing")
        #expect((result["retransmissions"] as? Int ?? 0) > 0)
        let all = try #require(result["retransmissions"] as? Int)
        let byReceivers = try #require(result["receiver_retransmissions"] as? Int)
        // Who serves most: each hole's first ask goes to the sender or to the peer, and a
        // re-ask (after 4 ms without an answer, which a loaded machine makes common) to
        // the other, so both may serve some.
        if senderFirstUpTo == 0 {
            #expect(byReceivers > all - byReceivers, "\(byReceivers) of \(all) by receivers")
        } else {
            #expect(all - byReceivers > byReceivers, "\(byReceivers) of \(all) by receivers")
        }
        #expect((result["recovery_us_p99"] as? Double ?? 0) > 0)
    }

    @Test func authenticatedTrafficFlowsThroughAHostileSpray() throws {
        let (status, output) = try Self.run(["run", "--receivers", "2", "--seconds", "3", "--no-raw", "--perturb", "hostile",
                                             "--authenticate", "--json"])
        #expect(status == 0, "output: \(output)")
        let result = try Self.json(output)
        #expect(result["authenticated"] as? Bool == true)
        #expect(result["complete"] as? Bool == true)
        #expect(result["stalled"] as? Bool == false)
        #expect(result["foreign_deliveries"] as? Int == 0)
        #expect((result["hostile_datagrams"] as? Int ?? 0) > 1_000)
        #expect((result["hostile_drops_counted"] as? Int ?? 0) > 1_000)
    }

    /// With the raw latency floor measured first, at the same rate, by the same processes.
    @Test func aFixedRateRunMeasuresLatency() throws {
        let (status, output) = try Self.run(["run", "--receivers", "2", "--seconds", "1", "--no-raw", "--raw-latency", "--rate", "2000", "--json"])
        #expect(status == 0, "output: \(output)")
        let result = try Self.json(output)
        let sent = try #require(result["sent"] as? Int)
        // Paced: about 2000 in one second, certainly not the thousands per ms of a blast.
        #expect((1500...2500).contains(sent))
        let p50 = try #require(result["latency_us_p50"] as? Double)
        let p99 = try #require(result["latency_us_p99"] as? Double)
        #expect(p50 > 0 && p50 <= p99)
        let rawP50 = try #require(result["raw_latency_us_p50"] as? Double)
        let rawP99 = try #require(result["raw_latency_us_p99"] as? Double)
        #expect(rawP50 > 0 && rawP50 <= rawP99)
    }

    @Test func anExperimentWritesItsCSVAndCharts() throws {
        let directory = "/tmp/qsm-bench-test-\(getpid())"
        defer { _ = try? FileManager.default.removeItem(atPath: directory) }
        let (status, output) = try Self.run(["experiment", "latency", "--quick", "--seconds", "1", "--out", directory], timeoutSeconds: 180)
        #expect(status == 0, "output: \(output)")
        let csv = try String(contentsOfFile: directory + "/latency.csv", encoding: .utf8)
        let rows = csv.split(separator: "\n")
        #expect(rows.first?.hasPrefix("size,rate,") == true)
        #expect(rows.count == 3, "a header and one row per quick point: \(csv)")
        for chart in ["latency-p50.svg", "latency-p99.svg"] {
            let svg = try String(contentsOfFile: directory + "/" + chart, encoding: .utf8)
            #expect(svg.hasPrefix("<svg") && svg.contains("<polyline"))
        }
    }

    @Test(arguments: [
        (["run", "--receivers", "0"], "--receivers"),
        (["run", "--size", "10"], "--size"),
        (["run", "--perturb", "melt"], "--perturb"),
        (["run", "--perturb", "crash", "--receivers", "1"], "at least 2 receivers"),
        (["run", "--perturb", "freeze", "--seconds", "5"], "--seconds 15"),
        (["run", "--rate", "-3"], "--rate"),
        (["run", "--raw-latency"], "--raw-latency needs --rate"),
        (["run", "--hosts", "--fault-at", "some"], "--fault-at"),
        (["run", "--hosts", "--loss-percent", "0"], "--loss-percent"),
        (["run", "--peer-attempts", "-1"], "--peer-attempts"),
        (["run", "--sender-first-up-to", "-1"], "--sender-first-up-to"),
        (["run", "--bundle-bytes", "70000"], "--bundle-bytes"),
        (["run", "--bundle-bytes=-1"], "--bundle-bytes"),
        (["run", "--bundle-bytes", "100"], "0 (off) or an integer in 256...65507"),
        (["run", "--heartbeat-timeout", "1ms"], "--heartbeat-timeout must be 100ms...1h"),
        (["run", "--groups", "10001"], "--groups must be an integer in 1...10000"),
        (["run", "--perturb", "crash-partition-leader", "--receivers", "4"], "--partition-size"),
        (["experiment", "colours"], "unknown experiment"),
        (["experiment"], "small, all or targets"),
        (["experiment", "latency", "--seconds", "2h"], "within 1ms...3600s"),
        (["experiment", "latency", "--seconds", "soon"], "--seconds must be a duration"),
        (["nonsense"], "unknown subcommand"),
    ])
    func badFlagsAreRefusedWithAReason(arguments: [String], reason: String) throws {
        // Through a shell, so that the reason (on standard error) is read too.
        let process = try ChildProcess(executable: "/bin/sh", arguments: ["-c", "exec \"$0\" \"$@\" 2>&1", Self.qsmBench] + arguments)
        var lines: [String] = []
        while let line = process.readLine(timeoutMilliseconds: 10_000) { lines.append(line) }
        #expect(process.waitForExit(timeoutMilliseconds: 10_000) == 2)
        #expect(lines.first?.contains(reason) == true, "got: \(lines)")
    }
}

/// The fuzz target, bounded: every decoder and state machine that takes bytes from the
/// network, fed random and mutated valid inputs, with no crash, hang or broken bound.
struct FuzzTests {
    @Test(arguments: [3, 11])
    func hostileInputNeitherCrashesNorGrowsAnything(seed: Int) throws {
        let (status, output) = try BenchCommandTests.run(["fuzz", "--cases", "6000", "--seed", "\(seed)"], timeoutSeconds: 300)
        #expect(status == 0, "output: \(output)")
        #expect(output.contains("no failure"))
    }
}
