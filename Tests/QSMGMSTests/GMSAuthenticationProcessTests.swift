#if canImport(Glibc)
import Glibc
#endif
import QSMCore
import QSMHarness
import Testing

/// The GMS's authentication with real processes: `qsm-node gms --secret-file` refuses a
/// node without the secret and one with another secret. Each fails fast (long before its
/// registration timeout) and names the cause. The GMS logs and counts each refusal.
@Suite(.enabled(if: NetworkNamespace.isAvailable, "needs CAP_SYS_ADMIN to create a private network namespace (run as root)"))
struct GMSAuthenticationProcessTests {
    static func secretFile(_ text: String) throws -> String {
        var template = Array("/tmp/qsm-secret-XXXXXX".utf8CString)
        let descriptor = mkstemp(&template)
        try #require(descriptor >= 0)
        _ = text.withCString { write(descriptor, $0, strlen($0)) }
        close(descriptor)
        return String(cString: template)
    }

    /// Whether a `qsm-node run` statistics log line counts unauthenticated datagrams.
    static func countsUnauthenticated(_ line: String) -> Bool {
        line.contains(#""event":"statistics""#) && line.contains(#""dropped_unauthenticated":"#)
            && !line.contains(#""dropped_unauthenticated":0,"#)
    }

    /// Runs a shell command with standard error folded into standard output.
    static func shell(_ command: String) throws -> ChildProcess {
        try ChildProcess(executable: "/bin/sh", arguments: ["-c", "exec " + command + " 2>&1"])
    }

    @Test func nodesWithoutTheGMSsSecretAreRefusedFastAndCounted() throws {
        let secret = try Self.secretFile("the cluster's secret for this test")
        let wrong = try Self.secretFile("some other cluster's secret, long")
        defer { unlink(secret); unlink(wrong) }
        let node = EngineProcessTests.qsmNode
        let failure = try NetworkNamespace.runIsolated { () throws -> String? in
            let gms = try Self.shell("\(node) gms --listen 127.0.0.1:0 --stats-seconds 1 --secret-file \(secret)")
            defer { gms.signal(SIGTERM) }
            let first = gms.readLine(timeoutMilliseconds: 20_000)
            guard let ready = first, ready.hasPrefix("gms listening on ") else {
                // What it said instead, and whether it is still running: a failure here
                // says why.
                return "the GMS did not start: " + EngineProcessTests.account(of: gms, firstLine: first)
            }
            let address = String(ready.dropFirst("gms listening on ".count))
            for (label, secretFlag) in [("no secret (--insecure)", "--insecure"), ("another secret", "--secret-file \(wrong)")] {
                let started = MonotonicClock.now()
                let subscriber = try Self.shell("\(node) subscribe --gms \(address) --group a --id 7 --count 1 --timeout-seconds 120 \(secretFlag)")
                guard let status = subscriber.waitForExit(timeoutMilliseconds: 30_000) else {
                    subscriber.signal(SIGKILL)
                    return "\(label): the subscriber was still waiting after 30 s (its timeout is 120 s): not fail-fast"
                }
                let seconds = Double(MonotonicClock.now().nanoseconds(since: started)) / 1e9
                let output = subscriber.availableLines().joined(separator: "\n")
                guard status == 1 else { return "\(label): exit status \(status), output: \(output)" }
                guard output.contains("cluster secret") else { return "\(label): the message does not name the cause: \(output)" }
                print("\(label): refused after \(seconds) s: \(output)")
            }
            // The GMS logged both refusals and counts them in its statistics.
            let deadline = MonotonicClock.now().advanced(by: .seconds(20))
            var log: [String] = []
            while MonotonicClock.now() < deadline {
                if let line = gms.readLine(timeoutMilliseconds: 500) { log.append(line) }
                if log.contains(where: { $0.contains(#""unauthenticated":2"#) }) { break }
            }
            guard log.filter({ $0.contains("refused connection") }).count == 2 else { return "GMS log: \(log)" }
            guard log.contains(where: { $0.contains(#""unauthenticated":2"#) && $0.contains(#""registrations":0,"#) }) else {
                return "GMS statistics do not count the two refusals: \(log)"
            }
            return nil
        }
        #expect(failure == nil, "\(failure ?? "")")
    }

    /// `qsm-node secret new` makes a 32-byte secret with mode 600 and never overwrites;
    /// a node or GMS given neither a secret nor --insecure refuses to start, saying how.
    @Test func secretsAreMadeSafelyAndRequiredByDefault() throws {
        let node = EngineProcessTests.qsmNode
        var template = Array("/tmp/qsm-secret-dir-XXXXXX".utf8CString)
        let directory = String(cString: try #require(mkdtemp(&template)))
        defer { _ = try? Self.shell("rm -rf \(directory)").waitForExit(timeoutMilliseconds: 10_000) }
        let path = directory + "/cluster.secret"
        let made = try Self.shell("\(node) secret new \(path)")
        #expect(made.waitForExit(timeoutMilliseconds: 10_000) == 0)
        var status = stat()
        #expect(stat(path, &status) == 0)
        #expect(status.st_mode & 0o777 == 0o600)
        #expect(status.st_size == 65)
        let again = try Self.shell("\(node) secret new \(path)")
        #expect(again.waitForExit(timeoutMilliseconds: 10_000) == 1)
        #expect(again.availableLines().joined().contains("already exists"))
        #expect(stat(path, &status) == 0 && status.st_size == 65)
        for command in ["gms --listen 127.0.0.1:0", "subscribe --gms 127.0.0.1:7000 --group a", "publish --gms 127.0.0.1:7000 --group a"] {
            let refused = try Self.shell("\(node) \(command)")
            #expect(refused.waitForExit(timeoutMilliseconds: 10_000) == 2, "\(command)")
            let output = refused.availableLines().joined(separator: " ")
            #expect(output.contains("no cluster secret") && output.contains("--insecure"), "\(command): \(output)")
        }
    }

    /// Two clusters with different secrets on the same multicast address and port (both
    /// GMSs hand out the same first address): each subscriber gets exactly its own
    /// cluster's lines. The other cluster's datagrams are dropped for their tags, nothing
    /// foreign is delivered, and neither stream stalls.
    @Test func twoClustersOnTheSameAddressesDoNotDisturbEachOther() throws {
        let secrets = [try Self.secretFile("cluster one's secret, 32 bytes!"), try Self.secretFile("cluster two's secret, 32 bytes!")]
        defer { for path in secrets { unlink(path) } }
        let node = EngineProcessTests.qsmNode
        let count = 5_000
        let failure = try NetworkNamespace.runIsolated { () throws -> String? in
            var gmsProcesses: [ChildProcess] = []
            defer { for gms in gmsProcesses { gms.signal(SIGTERM) } }
            var subscribers: [ChildProcess] = [], publishers: [ChildProcess] = [], feeders: [SystemThread] = []
            var watcher: ChildProcess?
            defer { watcher?.signal(SIGKILL) }
            for (index, secret) in secrets.enumerated() {
                let (gms, address) = try EngineProcessTests.startGMS(["--secret-file", secret])
                gmsProcesses.append(gms)
                if index == 0 {
                    // A second member of cluster one that prints its drop counters: the other
                    // cluster's datagrams must reach it and fail their tags.
                    // (Its statistics are JSON log lines on standard error.)
                    watcher = try Self.shell("\(node) run --gms \(address) --group shared --id 30 --stats-seconds 1 --secret-file \(secret)")
                }
                subscribers.append(try ChildProcess(executable: node, arguments: [
                    "subscribe", "--gms", address, "--group", "shared", "--id", "\(10 + index)", "--count", "\(count)",
                    "--secret-file", secret, "--timeout-seconds", "60"]))
                // Cluster one's group has two members, the watcher and the subscriber: the
                // publisher waits for both (a member that joins after the stream began is
                // owed only what follows its join, and the subscriber wants every line).
                let publisher = try ChildProcess(executable: node, arguments: [
                    "publish", "--gms", address, "--group", "shared", "--wait-members", "\(index == 0 ? 2 : 1)", "--id", "\(1 + index)",
                    "--secret-file", secret, "--timeout-seconds", "120"])
                publishers.append(publisher)
                feeders.append(try EngineProcessTests.feed(publisher, (1...count).map { "cluster \(index) line \($0)" }))
            }
            var outputs: [[String]] = []
            EngineProcessTests.collectAll(subscribers, into: &outputs, until: MonotonicClock.now().advanced(by: .seconds(120)))
            for (index, publisher) in publishers.enumerated() {
                _ = EngineProcessTests.finish(feeders[index], publisher, timeoutMilliseconds: 60_000)
            }
            for (index, lines) in outputs.enumerated() {
                let payloads = lines.compactMap { $0.split(separator: "\t").last.map(String.init) }
                let expected = (1...count).map { "cluster \(index) line \($0)" }
                guard payloads == expected else {
                    let foreign = payloads.filter { !$0.hasPrefix("cluster \(index) ") }.count
                    return "subscriber \(index): \(payloads.count) lines, \(foreign) foreign; first: \(lines.prefix(3))"
                }
            }
            // The clusters really shared the address: cluster one's watcher dropped the
            // other's datagrams for their tags (its statistics come every second).
            var statistics: [String] = []
            let deadline = MonotonicClock.now().advanced(by: .seconds(10))
            while MonotonicClock.now() < deadline, !statistics.contains(where: Self.countsUnauthenticated) {
                if let line = watcher?.readLine(timeoutMilliseconds: 500) { statistics.append(line) }
            }
            guard statistics.contains(where: Self.countsUnauthenticated) else {
                return "no foreign datagram was dropped for its tag: \(statistics.suffix(2))"
            }
            return nil
        }
        #expect(failure == nil, "\(failure ?? "")")
    }

    /// The default configuration under attack, with real processes: a GMS, 3 subscribers
    /// and a publisher of 20,000 numbered lines, all with the cluster secret. For the
    /// whole stream a hostile process sprays random, truncated, oversized, mutated,
    /// replayed, bit-flipped and foreign-cluster datagrams at every node's port and at the
    /// region's multicast address, and junk at the GMS. Every subscriber must get every
    /// line intact, in order, and nothing else.
    @Test func theDefaultConfigurationDeliversIntactUnderAHostileSpray() throws {
        let secret = try Self.secretFile("a cluster secret for the hostile test")
        defer { unlink(secret) }
        let node = EngineProcessTests.qsmNode
        let bench = ChildProcess.currentExecutableDirectory + "/qsm-bench"
        let count = 20_000
        let failure = try NetworkNamespace.runIsolated { () throws -> String? in
            let (gms, address) = try EngineProcessTests.startGMS(["--secret-file", secret])
            defer { gms.signal(SIGTERM) }
            let ports = [41_001, 41_002, 41_003, 41_004]
            // The sprayer starts first, so it covers the whole stream.
            let hostile = try ChildProcess(executable: bench, arguments: ["_worker", "hostile"])
            defer { hostile.signal(SIGKILL) }
            let targets = ports.map { "127.0.0.1:\($0)" } + ["239.192.0.0:17000"]
            guard hostile.writeLine("hostile targets=\(targets.joined(separator: ",")) gms=\(address) interface=127.0.0.1 seed=7"),
                  let started = hostile.readLine(timeoutMilliseconds: 20_000), started.hasPrefix("hostile-started") else {
                return "the hostile process did not start"
            }
            let subscribers = try (0..<3).map { index in
                try ChildProcess(executable: node, arguments: [
                    "subscribe", "--gms", address, "--group", "attacked", "--id", "\(20 + index)", "--count", "\(count)",
                    "--port", "\(ports[index + 1])", "--secret-file", secret, "--timeout-seconds", "60"])
            }
            let publisher = try ChildProcess(executable: node, arguments: [
                "publish", "--gms", address, "--group", "attacked", "--wait-members", "3", "--id", "1", "--port", "\(ports[0])",
                "--secret-file", secret, "--timeout-seconds", "180"])
            let expected = (1...count).map { "line \($0)" }
            let feeder = try EngineProcessTests.feed(publisher, expected)
            var outputs: [[String]] = []
            EngineProcessTests.collectAll(subscribers, into: &outputs, until: MonotonicClock.now().advanced(by: .seconds(240)))
            let published = EngineProcessTests.finish(feeder, publisher, timeoutMilliseconds: 60_000)
            _ = hostile.writeLine("finish")
            let report = hostile.readLine(timeoutMilliseconds: 20_000) ?? "no report"
            print("hostile: \(report)")
            guard published == 0 else { return "the publisher exited with \(published.map(String.init) ?? "nothing (killed)")" }
            for (index, lines) in outputs.enumerated() where lines != expected {
                let foreign = lines.filter { !expected.contains($0) }.prefix(3)
                return "subscriber \(index): \(lines.count) of \(count) lines; not sent: \(Array(foreign)); first: \(lines.prefix(3))"
            }
            guard let sprayed = WorkerLineCount.datagrams(report), sprayed > 1_000 else { return "the sprayer sent too little: \(report)" }
            return nil
        }
        #expect(failure == nil, "\(failure ?? "")")
    }

    /// `--encrypt` with real processes: a subscriber gets every line intact, while an
    /// eavesdropper on the region's multicast address captures the same datagrams and
    /// finds no byte of any line in them.
    @Test func anEncryptedClusterDeliversAndShowsNothingOnTheWire() throws {
        let secret = try Self.secretFile("a cluster secret for the encryption test")
        defer { unlink(secret) }
        let node = EngineProcessTests.qsmNode
        let count = 3_000
        let failure = try NetworkNamespace.runIsolated { () throws -> String? in
            let (gms, address) = try EngineProcessTests.startGMS(["--secret-file", secret])
            defer { gms.signal(SIGTERM) }
            let eavesdropper = try UDPSocket()
            try eavesdropper.setReuseAddress(true)
            _ = try eavesdropper.setReceiveBufferSize(8 << 20)
            _ = try eavesdropper.bind(to: QSMSocketAddress(IPv4Address("239.192.0.0")!, port: 17_000))
            try eavesdropper.joinMulticastGroup(IPv4Address("239.192.0.0")!, interface: .loopback)
            let subscriber = try ChildProcess(executable: node, arguments: [
                "subscribe", "--gms", address, "--group", "sealed", "--count", "\(count)", "--encrypt",
                "--secret-file", secret, "--timeout-seconds", "60"])
            let publisher = try ChildProcess(executable: node, arguments: [
                "publish", "--gms", address, "--group", "sealed", "--wait-members", "1", "--encrypt",
                "--secret-file", secret, "--timeout-seconds", "120"])
            let expected = (1...count).map { "confidential line \($0) of the encryption test" }
            let feeder = try EngineProcessTests.feed(publisher, expected)
            var outputs: [[String]] = []
            EngineProcessTests.collectAll([subscriber], into: &outputs, until: MonotonicClock.now().advanced(by: .seconds(120)))
            let published = EngineProcessTests.finish(feeder, publisher, timeoutMilliseconds: 60_000)
            guard published == 0 else { return "the publisher exited with \(published.map(String.init) ?? "nothing (killed)")" }
            let payloads = outputs[0].compactMap { $0.split(separator: "\t").last.map(String.init) }
            guard payloads == expected else { return "the subscriber got \(payloads.count) of \(count) lines: \(payloads.prefix(2))" }
            var captured = 0, readable = 0
            var buffer = [UInt8](repeating: 0, count: 65_536)
            let needle = Array("confidential".utf8)
            while case .completed(let reception)? = buffer.withUnsafeMutableBytes({ try? eavesdropper.receive(into: $0) }) {
                captured += 1
                let datagram = buffer[0..<reception.length]
                if datagram.count >= needle.count,
                   (0...(datagram.count - needle.count)).contains(where: { datagram[$0..<($0 + needle.count)].elementsEqual(needle) }) {
                    readable += 1
                }
            }
            guard captured >= 100 else { return "the eavesdropper captured only \(captured) datagrams" }
            guard readable == 0 else { return "\(readable) of \(captured) captured datagrams show a line in the clear" }
            return nil
        }
        #expect(failure == nil, "\(failure ?? "")")
    }

    /// `qsm-node member` authenticates like a node: with the GMS's secret it registers;
    /// with another it reports `authentication_failed` naming the cause.
    @Test func theMembershipClientAuthenticatesToo() throws {
        let secret = try Self.secretFile("the cluster's secret for members")
        let wrong = try Self.secretFile("not the cluster's secret, members")
        defer { unlink(secret); unlink(wrong) }
        let node = EngineProcessTests.qsmNode
        let failure = try NetworkNamespace.runIsolated { () throws -> String? in
            let (gms, address) = try EngineProcessTests.startGMS(["--secret-file", secret])
            defer { gms.signal(SIGTERM) }
            for (file, expected) in [(secret, #""event":"registered""#), (wrong, #""event":"authentication_failed""#)] {
                let member = try ChildProcess(executable: node, arguments: ["member", "--gms", address, "--id", "9", "--join", "a",
                                                                            "--secret-file", file])
                defer { member.signal(SIGKILL) }
                var lines: [String] = []
                let deadline = MonotonicClock.now().advanced(by: .seconds(20))
                while MonotonicClock.now() < deadline, !lines.contains(where: { $0.contains(expected) }) {
                    if let line = member.readLine(timeoutMilliseconds: 500) { lines.append(line) }
                }
                guard lines.contains(where: { $0.contains(expected) }) else { return "expected \(expected), got \(lines)" }
                if file == wrong, !lines.contains(where: { $0.contains("cluster secret") }) { return "no cause named: \(lines)" }
            }
            return nil
        }
        #expect(failure == nil, "\(failure ?? "")")
    }
}

/// Reads `datagrams=N` from a hostile worker's result line.
enum WorkerLineCount {
    static func datagrams(_ line: String) -> Int? {
        line.split(separator: " ").first { $0.hasPrefix("datagrams=") }.flatMap { Int($0.dropFirst("datagrams=".count)) }
    }
}
