#if canImport(Glibc)
import Glibc
#endif
import QSMCore
import QSMHarness
import Testing

/// Real hosts as network namespaces on a bridge (bench/hosts.sh), real kernel IP
/// multicast between them, and a real fault: nftables dropping 5% of what one receiver's
/// host takes in. Needs root and nftables; skips with a message otherwise.
@Suite(.enabled(if: MultiHostEnvironment.available, "needs root and nftables (apt-get install nftables) for namespaced hosts"))
struct MultiHostTests {
    static var script: String { MultiHostEnvironment.script }
    static let prefix = "qt\(getpid() % 100_000)"
    static var qsmNode: String { ChildProcess.currentExecutableDirectory + "/qsm-node" }

    /// `bench/hosts.sh ARGS` with this test's namespace prefix, as a child process.
    /// Each test has its own prefix, so tests running at once build separate hosts.
    /// The script's own commands have their standard error merged into the output; a
    /// command run on a host (`exec`) keeps it apart, because its output is compared line
    /// by line and `ip netns exec` can warn there ("Peer netns reference is invalid")
    /// while other tests add and delete namespaces.
    static func hosts(_ arguments: [String], prefix: String = prefix) throws -> ChildProcess {
        let redirect = arguments.first == "exec" ? "" : " 2>&1"
        return try ChildProcess(executable: "/bin/sh",
                                arguments: ["-c", "QSMH_PREFIX=\(prefix) exec \"$0\" \"$@\"\(redirect)", script] + arguments)
    }

    static func hostsSucceed(_ arguments: [String]) throws -> Bool {
        try hosts(arguments).waitForExit(timeoutMilliseconds: 30_000) == 0
    }

    @Test func fivePercentLossAtOneHostLosesNothing() throws {
        #expect(try Self.hostsSucceed(["up", "3"]))
        defer { _ = try? Self.hostsSucceed(["down"]) }
        let gms = try Self.hosts(["exec", "1", Self.qsmNode, "gms", "--insecure", "--listen", "10.77.0.1:7000", "--stats-seconds", "0"])
        defer { gms.signal(SIGTERM) }
        #expect(gms.readLine(timeoutMilliseconds: 20_000)?.hasPrefix("gms listening on") == true)
        #expect(try Self.hostsSucceed(["loss", "3", "5"]))
        let count = 5_000
        let subscribers = try [2, 3].map { host in
            try Self.hosts(["exec", "\(host)", Self.qsmNode, "subscribe", "--insecure", "--gms", "10.77.0.1:7000", "--group", "lossy",
                            "--interface", "10.77.0.\(host)", "--count", "\(count)", "--id", "\(host)"])
        }
        let publisher = try Self.hosts(["exec", "1", Self.qsmNode, "publish", "--insecure", "--gms", "10.77.0.1:7000", "--group", "lossy",
                                        "--interface", "10.77.0.1", "--wait-members", "2", "--id", "1", "--timeout-seconds", "60"])
        // Lines of about 1 KB, one per datagram: short lines share datagrams, and the
        // publisher hands runs of datagrams to the kernel as one segmented send, which
        // stays one packet through the bridge, so 5,000 short lines made only a few dozen
        // packets and a 5% rule could miss them all (it did once, in CI).
        let padding = String(repeating: "x", count: 1_000)
        let expected = (1...count).map { "message \($0) \(padding)" }
        let feeder = try EngineProcessTests.feed(publisher, expected)
        var outputs: [[String]] = []
        EngineProcessTests.collectAll(subscribers, into: &outputs, until: MonotonicClock.now().advanced(by: .seconds(120)))
        #expect(EngineProcessTests.finish(feeder, publisher, timeoutMilliseconds: 60_000) == 0)
        for (index, lines) in outputs.enumerated() {
            #expect(lines == expected, "host \(index + 2) got \(lines.count) of \(count) lines")
        }
        // The fault was real: nftables counted what it dropped.
        let ruleset = try Self.hosts(["exec", "3", "nft", "list", "ruleset"])
        var text: [String] = []
        while let line = ruleset.readLine(timeoutMilliseconds: 5_000) { text.append(line) }
        let dropped = text.first { $0.contains("counter packets") }
            .flatMap { $0.split(separator: " ").drop { $0 != "packets" }.dropFirst().first }
            .flatMap { Int($0) } ?? 0
        #expect(dropped > 0, "nft dropped nothing: \(text)")
    }

    @Test func aHostCutOffForThreeSecondsCatchesUpAndNothingIsLost() throws {
        let prefix = "qc\(getpid() % 100_000)"
        func hosts(_ arguments: [String]) throws -> ChildProcess { try Self.hosts(arguments, prefix: prefix) }
        #expect(try hosts(["up", "3"]).waitForExit(timeoutMilliseconds: 30_000) == 0)
        defer { _ = try? hosts(["down"]).waitForExit(timeoutMilliseconds: 30_000) }
        let gms = try hosts(["exec", "1", Self.qsmNode, "gms", "--insecure", "--listen", "10.77.0.1:7000", "--stats-seconds", "0"])
        defer { gms.signal(SIGTERM) }
        #expect(gms.readLine(timeoutMilliseconds: 20_000)?.hasPrefix("gms listening on") == true)
        let count = 20_000
        let subscribers = try [2, 3].map { host in
            try hosts(["exec", "\(host)", Self.qsmNode, "subscribe", "--insecure", "--gms", "10.77.0.1:7000", "--group", "cut",
                       "--interface", "10.77.0.\(host)", "--count", "\(count)", "--id", "\(host)"])
        }
        let publisher = try hosts(["exec", "1", Self.qsmNode, "publish", "--insecure", "--gms", "10.77.0.1:7000", "--group", "cut",
                                   "--interface", "10.77.0.1", "--wait-members", "2", "--id", "1", "--timeout-seconds", "120"])
        let expected = (1...count).map { "message \($0)" }
        // Wait until host 3 is receiving, cut it off for 3 s (less than the GMS's 5 s
        // heartbeat timeout), then heal it: it must catch up, not lose anything.
        let feeder = try EngineProcessTests.feed(publisher, expected)
        var early: [String] = []
        let started = MonotonicClock.now()
        while early.count < 100, MonotonicClock.now().nanoseconds(since: started) < 30_000_000_000 {
            if let line = subscribers[1].readLine(timeoutMilliseconds: 1_000) { early.append(line) }
        }
        #expect(try hosts(["cut", "3"]).waitForExit(timeoutMilliseconds: 10_000) == 0)
        var pause = timespec(tv_sec: 3, tv_nsec: 0)
        nanosleep(&pause, nil)  // the length of the fault, not a synchronization
        #expect(try hosts(["heal", "3"]).waitForExit(timeoutMilliseconds: 10_000) == 0)
        var outputs: [[String]] = []
        EngineProcessTests.collectAll(subscribers, into: &outputs, until: MonotonicClock.now().advanced(by: .seconds(120)))
        #expect(EngineProcessTests.finish(feeder, publisher, timeoutMilliseconds: 60_000) == 0)
        #expect(outputs[0] == expected, "host 2 got \(outputs[0].count) of \(count) lines")
        #expect(early + outputs[1] == expected, "host 3 got \(early.count + outputs[1].count) of \(count) lines")
    }
}

enum MultiHostEnvironment {
    static let script: String = {
        // Tests/QSMGMSTests/MultiHostTests.swift -> the package root.
        var path = #filePath
        for _ in 0..<3 { path = String(path[..<path.lastIndex(of: "/")!]) }
        return path + "/bench/hosts.sh"
    }()

    static var available: Bool {
        getuid() == 0 && access("/usr/sbin/nft", X_OK) == 0 && access(script, X_OK) == 0
    }
}
