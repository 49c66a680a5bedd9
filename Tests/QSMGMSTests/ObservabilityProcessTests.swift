#if canImport(Glibc)
import Glibc
#endif
import QSMCore
import QSMHarness
import Testing

/// What an operator sees of running processes, read from outside them: `/metrics` parsed
/// by a real OpenMetrics parser (Python's `prometheus_client`), `qsm-node stats` over the
/// local stats socket, and JSON log lines.
@Suite(.enabled(if: NetworkNamespace.isAvailable, "needs CAP_SYS_ADMIN to create a private network namespace (run as root)"))
struct ObservabilityProcessTests {
    /// A Python that has `prometheus_client` (`.ci/run` installs it).
    static let python: String? = ["python3", "/usr/bin/python3"].first { candidate in
        guard let probe = try? ChildProcess(executable: "/usr/bin/env", arguments: [candidate, "-c", "import prometheus_client"]) else { return false }
        return probe.waitForExit(timeoutMilliseconds: 20_000) == 0
    }

    /// Fetches `url` and parses it with the strict OpenMetrics parser; each sample comes
    /// back as `name{labels as JSON} value`. A parse failure exits non-zero.
    static let fetchAndParse = """
        import json, sys, urllib.request
        from prometheus_client.openmetrics.parser import text_string_to_metric_families
        text = urllib.request.urlopen(sys.argv[1], timeout=10).read().decode()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                print(sample.name + json.dumps(sample.labels, sort_keys=True) + " " + repr(sample.value))
        print("PARSED")
        """

    static func scrape(_ url: String) throws -> [String]? {
        guard let python else { return nil }
        let process = try ChildProcess(executable: "/usr/bin/env", arguments: [python, "-c", fetchAndParse, url])
        var lines: [String] = []
        EngineProcessTests.collect(process, into: &lines, until: MonotonicClock.now().advanced(by: .seconds(30)))
        return lines.last == "PARSED" ? lines : nil
    }

    static func metricsAddress(in lines: [String]) -> String? {
        for line in lines where line.hasPrefix("{") && line.contains("\"metrics at http://") {
            guard let start = line.range(of: "http://"), let end = line[start.upperBound...].firstIndex(of: "/") else { continue }
            return String(line[start.lowerBound..<end])
        }
        return nil
    }

    /// A subscriber and a publisher of 300 lines in a group whose name needs escaping:
    /// the subscriber's `/metrics` parses, and shows the group's and the sender's
    /// deliveries (300 messages, last sequence 300) with `group` and `sender` labels;
    /// `qsm-node stats` shows the same over the stats socket; the GMS's `/metrics` counts
    /// the nodes; every line on standard error is a JSON object with time, level, event.
    @Test func metricsAndStatsShowPerGroupCountersOfARunningNode() throws {
        try #require(Self.python != nil, "no python3 with prometheus_client (.ci/run installs it: python3 -m pip install prometheus_client)")
        let node = EngineProcessTests.qsmNode
        let runDirectory = "/tmp/qsm-observability-\(getpid())"
        let group = #"obs "quoted" \ group"#
        let count = 300
        let failure = try NetworkNamespace.runIsolated { () throws -> String? in
            let environment = "env QSM_RUN_DIR=\(runDirectory)"
            let gms = try GMSAuthenticationProcessTests.shell(
                "\(environment) \(node) gms --listen 127.0.0.1:0 --insecure --stats-seconds 1 --metrics-listen 127.0.0.1:0")
            defer { gms.signal(SIGTERM) }
            var gmsLines: [String] = []
            var gmsAddress: String?
            let started = MonotonicClock.now().advanced(by: .seconds(20))
            while MonotonicClock.now() < started, gmsAddress == nil || Self.metricsAddress(in: gmsLines) == nil {
                guard let line = gms.readLine(timeoutMilliseconds: 1000) else { continue }
                gmsLines.append(line)
                if line.hasPrefix("gms listening on ") { gmsAddress = String(line.dropFirst("gms listening on ".count)) }
            }
            guard let gmsAddress, let gmsMetrics = Self.metricsAddress(in: gmsLines) else { return "the GMS did not start: \(gmsLines)" }
            let subscriber = try GMSAuthenticationProcessTests.shell(
                "\(environment) \(node) subscribe --insecure --gms \(gmsAddress) --group '\(group)' --id 4101 --metrics-listen 127.0.0.1:0 --no-offload")
            defer { subscriber.signal(SIGTERM) }
            let publisher = try ChildProcess(executable: node, arguments: [
                "publish", "--insecure", "--gms", gmsAddress, "--group", group, "--id", "4102", "--wait-members", "1"])
            let feeder = try EngineProcessTests.feed(publisher, (1...count).map { "line \($0)" })
            var lines: [String] = []
            let deadline = MonotonicClock.now().advanced(by: .seconds(60))
            while MonotonicClock.now() < deadline, lines.filter({ $0.hasPrefix("line ") }).count < count {
                lines += subscriber.availableLines()
                var poller = pollfd(fd: subscriber.outputDescriptor, events: Int16(POLLIN), revents: 0)
                _ = poll(&poller, 1, 50)
            }
            guard EngineProcessTests.finish(feeder, publisher, timeoutMilliseconds: 30_000) == 0 else { return "the publisher failed" }
            guard lines.filter({ $0.hasPrefix("line ") }).count == count else { return "the subscriber got \(lines.count) lines" }
            guard let metrics = Self.metricsAddress(in: lines) else { return "the subscriber did not say where its metrics are: \(lines.prefix(3))" }
            // The snapshot is at most a second old: wait until it shows every delivery.
            let escaped = #"{"group": "obs \"quoted\" \\ group"}"#
            var samples: [String] = []
            let settled = MonotonicClock.now().advanced(by: .seconds(20))
            while MonotonicClock.now() < settled, !samples.contains("qsm_group_delivered_messages_total\(escaped) \(count)") {
                guard let scraped = try Self.scrape("\(metrics)/metrics") else { return "the subscriber's /metrics did not parse" }
                samples = scraped
            }
            let expected = [
                "qsm_group_delivered_messages_total\(escaped) \(count)",
                #"qsm_sender_delivered_messages_total{"group": "obs \"quoted\" \\ group", "sender": "4102"} "# + "\(count)",
                #"qsm_sender_last_sequence{"group": "obs \"quoted\" \\ group", "sender": "4102"} "# + "\(count)",
                "qsm_node_registered{} 1",
                #"qsm_dropped_datagrams_total{"reason": "unauthenticated"} 0"#,
                // What the event core drops, and bundles and deliveries the machine drops,
                // are counted there too.
                #"qsm_dropped_datagrams_total{"reason": "longer_than_packet_buffer"} 0"#,
                #"qsm_dropped_datagrams_total{"reason": "malformed_bundle"} 0"#,
                #"qsm_dropped_datagrams_total{"reason": "delivery_of_unnamed_group"} 0"#,
                // Offloads are on by default where the kernel has them; --no-offload says
                // off, whatever the kernel.
                "qsm_segmentation_offload{} 0", "qsm_receive_offload{} 0", "qsm_coalesced_datagrams_total{} 0",
            ]
            for sample in expected where !samples.contains(sample) {
                return "/metrics lacks \(sample): \(samples.filter { $0.contains("group") })"
            }
            // Recovery and ring counters are there (their values depend on the run).
            for family in ["qsm_multicast_repairs_total", "qsm_repair_requests_not_held_total", "qsm_tokens_held_for_view_total",
                           "qsm_token_copies_dropped_total", "qsm_senders_presumed_gone_total",
                           "qsm_io_quantum_expirations_total", "qsm_inbound_data_slices_total",
                           "qsm_debt_start_queries_total", "qsm_debt_starts_given_up_total", "qsm_receive_errors_total",
                           "qsm_bundles_sent_total", "qsm_bundled_packets_total", "qsm_bundles_received_total"]
                where !samples.contains(where: { $0.hasPrefix(family + "{} ") }) {
                return "/metrics lacks \(family)"
            }
            guard let gmsSamples = try Self.scrape("\(gmsMetrics)/metrics") else { return "the GMS's /metrics did not parse" }
            guard gmsSamples.contains(where: { $0.hasPrefix("qsm_gms_registrations_total{} ") && $0 != "qsm_gms_registrations_total{} 0" }) else {
                return "the GMS's /metrics counts no registration: \(gmsSamples.prefix(8))"
            }
            // qsm-node stats, over the local socket.
            let stats = try GMSAuthenticationProcessTests.shell("\(environment) \(node) stats --node 4101")
            var table: [String] = []
            EngineProcessTests.collect(stats, into: &table, until: MonotonicClock.now().advanced(by: .seconds(20)))
            guard stats.waitForExit(timeoutMilliseconds: 5_000) == 0,
                  table.contains(where: { $0.contains(group) && $0.split(separator: " ").contains("\(count)") && $0.contains("4102") }),
                  table.contains(where: { $0.hasPrefix("  qsm_delivered_messages_total") && $0.hasSuffix(" \(count)") }) else {
                return "qsm-node stats: \(table)"
            }
            // Every line the subscriber wrote that is not a message is a JSON log line.
            for line in lines + gmsLines where !line.hasPrefix("line ") && !line.hasPrefix("gms listening on ") {
                guard line.hasPrefix("{\"time\":\""), line.contains("\"level\":\""), line.contains("\"event\":"), line.hasSuffix("}") else {
                    return "not a JSON log line: \(line)"
                }
            }
            // Stopped, both remove their stats sockets.
            subscriber.signal(SIGTERM)
            gms.signal(SIGTERM)
            guard subscriber.waitForExit(timeoutMilliseconds: 10_000) != nil, gms.waitForExit(timeoutMilliseconds: 10_000) != nil else {
                return "the subscriber or the GMS did not stop"
            }
            let leftovers = MetricsServer.sockets(in: runDirectory)
            return leftovers.isEmpty ? nil : "stats sockets left behind: \(leftovers)"
        }
        #expect(failure == nil, "\(failure ?? "")")
        rmdir(runDirectory)
    }
}

