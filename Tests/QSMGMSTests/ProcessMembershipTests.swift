#if canImport(Glibc)
import Glibc
#endif
import Foundation
import QSMCore
import QSMHarness
import Testing

/// Real processes: one `qsm-node gms` and several `qsm-node member`s, talking TCP inside a
/// private network namespace, with nodes joining, leaving, killed and frozen.
@Suite(.enabled(if: NetworkNamespace.isAvailable, "needs CAP_SYS_ADMIN to create a private network namespace (run as root)"))
struct ProcessMembershipTests {
    static var qsmNode: String { ChildProcess.currentExecutableDirectory + "/qsm-node" }

    /// Follows members' JSON output: the latest view of each group each member reported.
    final class Observer {
        var latest: [UInt64: [String: (view: Int, members: [UInt64])]] = [:]
        var events: [UInt64: [String]] = [:]
        let members: [UInt64: ChildProcess]

        init(members: [UInt64: ChildProcess]) { self.members = members }

        func drain() {
            for (id, process) in members {
                for line in process.availableLines() {
                    events[id, default: []].append(line)
                    guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                          let kind = object["event"] as? String else { continue }
                    if kind == "group", let name = object["name"] as? String, let view = object["view"] as? Int,
                       let list = object["members"] as? [Int] {
                        latest[id, default: [:]][name] = (view, list.map { UInt64($0) })
                    } else if kind == "group_removed", let name = object["name"] as? String {
                        latest[id]?[name] = nil
                    }
                }
            }
        }

        /// Waits (bounded) until every listed member's latest view of each group it
        /// belongs to has exactly the expected members. Returns what was still off.
        func waitForConvergence(_ expected: [String: Set<UInt64>], among ids: [UInt64],
                                timeoutSeconds: Double) -> String? {
            let deadline = MonotonicClock.now().advanced(byNanoseconds: Int64(timeoutSeconds * 1e9))
            var problem: String? = "not checked"
            while MonotonicClock.now() < deadline {
                drain()
                problem = nil
                for id in ids {
                    for (group, members) in expected where members.contains(id) {
                        let seen = latest[id]?[group].map { Set($0.members) }
                        if seen != members { problem = "node \(id) sees \(group) as \(seen.map { $0.sorted() } ?? []), expected \(members.sorted())" }
                    }
                }
                if problem == nil { return nil }
                var descriptors = members.values.map { pollfd(fd: $0.outputDescriptor, events: Int16(POLLIN), revents: 0) }
                _ = poll(&descriptors, nfds_t(descriptors.count), 50)
            }
            return problem
        }
    }

    @Test func nodesConvergeThroughJoinsLeavesAKillAndAFreeze() throws {
        let failure = try NetworkNamespace.runIsolated { () throws -> String? in
            let gms = try ChildProcess(executable: Self.qsmNode,
                                       arguments: ["gms", "--insecure", "--listen", "127.0.0.1:0", "--stats-seconds", "0"])
            guard let ready = gms.readLine(timeoutMilliseconds: 20_000), ready.hasPrefix("gms listening on ") else {
                return "the GMS did not report its address"
            }
            let address = String(ready.dropFirst("gms listening on ".count))
            let joins: [UInt64: [String]] = [1: ["a", "b"], 2: ["a"], 3: ["a", "b"], 4: ["b"], 5: ["a"]]
            var members: [UInt64: ChildProcess] = [:]
            for (id, groups) in joins {
                members[id] = try ChildProcess(executable: Self.qsmNode, arguments: [
                    "member", "--insecure", "--gms", address, "--id", "\(id)", "--join", groups.joined(separator: ","), "--heartbeat-ms", "200",
                ])
            }
            let observer = Observer(members: members)
            var expected: [String: Set<UInt64>] = ["a": [1, 2, 3, 5], "b": [1, 3, 4]]
            if let problem = observer.waitForConvergence(expected, among: [1, 2, 3, 4, 5], timeoutSeconds: 20) {
                return "initial views: \(problem)"
            }

            // Node 2 leaves a; node 4 joins it.
            members[2]!.writeLine("leave a")
            members[4]!.writeLine("join a")
            expected = ["a": [1, 3, 4, 5], "b": [1, 3, 4]]
            if let problem = observer.waitForConvergence(expected, among: [1, 3, 4, 5], timeoutSeconds: 20) {
                return "after leave and join: \(problem)"
            }

            // Node 3 is killed outright: its broken connection is a failure.
            members[3]!.signal(SIGKILL)
            members[3]!.waitForExit(timeoutMilliseconds: 5000)
            expected = ["a": [1, 4, 5], "b": [1, 4]]
            if let problem = observer.waitForConvergence(expected, among: [1, 4, 5], timeoutSeconds: 20) {
                return "after SIGKILL: \(problem)"
            }

            // Node 5 freezes for 2 s, under the 5 s timeout: it must ride it out.
            members[5]!.signal(SIGSTOP)
            let frozenUntil = MonotonicClock.now().advanced(by: .seconds(2))
            while MonotonicClock.now() < frozenUntil {
                var none = pollfd(fd: -1, events: 0, revents: 0)
                _ = poll(&none, 1, 100)
                observer.drain()
            }
            members[5]!.signal(SIGCONT)
            if let problem = observer.waitForConvergence(expected, among: [1, 4, 5], timeoutSeconds: 10) {
                return "after a 2 s freeze: \(problem)"
            }
            observer.drain()
            if observer.events[5, default: []].contains(where: { $0.contains(#""event":"excluded""#) }) {
                return "a 2 s freeze got node 5 excluded"
            }

            // Clean exits.
            for id in [1, 2, 4, 5] as [UInt64] { members[id]!.writeLine("quit") }
            for id in [1, 2, 4, 5] as [UInt64] {
                guard members[id]!.waitForExit(timeoutMilliseconds: 10_000) == 0 else { return "member \(id) did not quit cleanly" }
            }
            gms.signal(SIGTERM)
            guard gms.waitForExit(timeoutMilliseconds: 10_000) == 0 else { return "the GMS did not stop cleanly on SIGTERM" }
            return nil
        }
        #expect(failure == nil)
    }

    /// An insecure `qsm-node gms` on a free loopback port, with `flags`, and its address
    /// (nil if it did not report one).
    static func startGMS(_ flags: [String]) throws -> (ChildProcess, String)? {
        let gms = try ChildProcess(executable: qsmNode, arguments: ["gms", "--insecure", "--listen", "127.0.0.1:0", "--stats-seconds", "0"] + flags)
        guard let ready = gms.readLine(timeoutMilliseconds: 20_000), ready.hasPrefix("gms listening on ") else { return nil }
        return (gms, String(ready.dropFirst("gms listening on ".count)))
    }

    @Test func aNodeFrozenPastTheTimeoutIsExcludedAndRejoinsByItself() throws {
        let failure = try NetworkNamespace.runIsolated { () throws -> String? in
            guard let (gms, address) = try Self.startGMS(["--heartbeat-timeout-ms", "1000"]) else { return "the GMS did not report its address" }
            var members: [UInt64: ChildProcess] = [:]
            for id: UInt64 in [1, 2] {
                members[id] = try ChildProcess(executable: Self.qsmNode, arguments: [
                    "member", "--insecure", "--gms", address, "--id", "\(id)", "--join", "a", "--heartbeat-ms", "200",
                ])
            }
            let observer = Observer(members: members)
            if let problem = observer.waitForConvergence(["a": [1, 2]], among: [1, 2], timeoutSeconds: 20) {
                return "initial views: \(problem)"
            }
            // Frozen for longer than the 1 s timeout: the others see it go.
            members[2]!.signal(SIGSTOP)
            if let problem = observer.waitForConvergence(["a": [1]], among: [1], timeoutSeconds: 10) {
                members[2]!.signal(SIGCONT)
                return "while node 2 was frozen: \(problem)"
            }
            members[2]!.signal(SIGCONT)
            // Thawed, it learns it was excluded, re-registers, rejoins, and says so.
            if let problem = observer.waitForConvergence(["a": [1, 2]], among: [1, 2], timeoutSeconds: 20) {
                return "after thawing: \(problem)"
            }
            observer.drain()
            let events = observer.events[2, default: []]
            guard events.contains(where: { $0.contains(#""event":"excluded""#) }) else { return "node 2 was not told it was excluded" }
            guard events.contains(where: { $0.contains(#""rejoining":true"#) }) else { return "node 2 did not report rejoining" }
            for process in members.values { process.writeLine("quit") }
            for (id, process) in members where process.waitForExit(timeoutMilliseconds: 10_000) != 0 {
                return "member \(id) did not quit cleanly"
            }
            gms.signal(SIGTERM)
            return gms.waitForExit(timeoutMilliseconds: 10_000) == 0 ? nil : "the GMS did not stop cleanly"
        }
        #expect(failure == nil)
    }

    /// A GMS whose timeout is shorter than a node's heartbeat interval (a second for
    /// `qsm-node subscribe`): the node heartbeats within it and stays in; frozen past it,
    /// it is excluded and says so. Before, such a node was excluded five times a second
    /// and printed nothing.
    @Test func aShortGMSTimeoutKeepsLiveNodesAndAnExclusionIsSaid() throws {
        let failure = try NetworkNamespace.runIsolated { () throws -> String? in
            guard let (gms, address) = try Self.startGMS(["--heartbeat-timeout", "300ms"]) else { return "the GMS did not report its address" }
            // Through a shell, so that its log (standard error) is read too.
            let subscriber = try ChildProcess(executable: "/bin/sh", arguments: [
                "-c", "exec \"$0\" \"$@\" 2>&1", Self.qsmNode, "subscribe", "--insecure", "--gms", address, "--group", "a",
            ])
            // Two seconds, more than six timeouts: no exclusion.
            let watchUntil = MonotonicClock.now().advanced(byNanoseconds: 2_000_000_000)
            while MonotonicClock.now() < watchUntil {
                if let line = subscriber.readLine(timeoutMilliseconds: 100), line.contains("excluded") { return "excluded while live: \(line)" }
            }
            subscriber.signal(SIGSTOP)
            // Frozen: the GMS counts a heartbeat failure (seen in its statistics at exit).
            let frozenUntil = MonotonicClock.now().advanced(byNanoseconds: 1_000_000_000)
            while MonotonicClock.now() < frozenUntil { _ = gms.readLine(timeoutMilliseconds: 100) }
            subscriber.signal(SIGCONT)
            var said: String?
            let deadline = MonotonicClock.now().advanced(byNanoseconds: 10_000_000_000)
            while said == nil, MonotonicClock.now() < deadline {
                if let line = subscriber.readLine(timeoutMilliseconds: 100), line.contains("excluded by the GMS") { said = line }
            }
            subscriber.signal(SIGTERM)
            _ = subscriber.waitForExit(timeoutMilliseconds: 10_000)
            gms.signal(SIGTERM)
            _ = gms.waitForExit(timeoutMilliseconds: 10_000)
            guard let said else { return "the frozen subscriber did not say it was excluded" }
            return said.contains(#""level":"warning""#) && said.contains("no heartbeat for") ? nil : "unexpected line: \(said)"
        }
        #expect(failure == nil)
    }

    @Test func anUnreachableGMSIsReportedAndRetried() throws {
        let lines = try NetworkNamespace.runIsolated { () throws -> [String] in
            // Nothing listens on port 1 in a fresh namespace.
            let member = try ChildProcess(executable: Self.qsmNode, arguments: ["member", "--insecure", "--gms", "127.0.0.1:1", "--id", "5"])
            var lines: [String] = []
            while lines.count < 2, let line = member.readLine(timeoutMilliseconds: 10_000) { lines.append(line) }
            member.signal(SIGTERM)
            member.waitForExit(timeoutMilliseconds: 10_000)
            return lines
        }
        #expect(lines.count == 2, "expected a report per attempt")
        #expect(lines.allSatisfy { $0.contains(#""event":"connection_failed""#) && $0.contains("Connection refused") })
    }

    /// `--address-pool` takes the README's CIDR form (239.192.0.0/14 is 262,144
    /// addresses, not 14) and START+COUNT.
    @Test func theAddressPoolIsAPrefixOrAStartAndCount() throws {
        let output = try NetworkNamespace.runIsolated { () throws -> [String] in
            var lines: [String] = []
            for pool in ["239.192.0.0/14", "239.1.2.0/30", "239.1.2.0+3"] {
                let gms = try ChildProcess(executable: Self.qsmNode, arguments: [
                    "gms", "--insecure", "--listen", "127.0.0.1:0", "--stats-seconds", "0", "--address-pool", pool])
                lines.append("\(pool): \(gms.readLine(timeoutMilliseconds: 20_000) ?? "no output")")
                gms.signal(SIGTERM)
                gms.waitForExit(timeoutMilliseconds: 10_000)
            }
            return lines
        }
        #expect(output.allSatisfy { $0.contains(": gms listening on 127.0.0.1:") }, "\(output)")
    }

    /// `--config PATH`: a JSON object of flags (without dashes) configures a command;
    /// flags on the command line override it; an unknown key or a wrongly typed value is
    /// refused like a bad flag.
    @Test func aConfigFileGivesFlagsAndTheCommandLineOverridesIt() throws {
        let directory = "/tmp/qsm-config-\(getpid())"
        mkdir(directory, 0o700)
        defer { rmdir(directory) }
        func file(_ name: String, _ text: String) -> String {
            let path = directory + "/" + name
            let handle = fopen(path, "w")!
            fputs(text, handle)
            fclose(handle)
            return path
        }
        let good = file("gms.json", #"{"listen": "127.0.0.1:1", "insecure": true, "stats-interval": 0, "address-pool": "239.1.0.0/16", "batch": "50ms", "heartbeat-timeout": "2s"}"#)
        let unknown = file("unknown.json", #"{"listen": "127.0.0.1:0", "insecure": true, "colour": "blue"}"#)
        let mistyped = file("mistyped.json", #"{"listen": "127.0.0.1:0", "insecure": "yes"}"#)
        let broken = file("broken.json", #"{"listen": "#)
        defer { for path in [good, unknown, mistyped, broken] { unlink(path) } }
        let line = try NetworkNamespace.runIsolated { () throws -> String? in
            // The file's port 1 is overridden by the command line's 0 (any free port).
            let gms = try ChildProcess(executable: Self.qsmNode, arguments: ["gms", "--config", good, "--listen", "127.0.0.1:0"])
            defer { gms.signal(SIGTERM); gms.waitForExit(timeoutMilliseconds: 10_000) }
            return gms.readLine(timeoutMilliseconds: 20_000)
        }
        #expect(line?.hasPrefix("gms listening on 127.0.0.1:") == true && line != "gms listening on 127.0.0.1:1", "\(line ?? "no output")")
        for path in [unknown, mistyped, broken, directory + "/missing.json"] {
            let process = try ChildProcess(executable: Self.qsmNode, arguments: ["gms", "--config", path])
            #expect(process.waitForExit(timeoutMilliseconds: 10_000) == 2, "\(path)")
        }
    }

    @Test func badFlagsAreRefusedWithAClearMessage() throws {
        for arguments in [["gms"], ["gms", "--listen", "nowhere"], ["gms", "--listen", "127.0.0.1:1", "--mode", "weird"],
                          ["member", "--insecure", "--gms", "127.0.0.1:1"], ["member", "--gms", "127.0.0.1:1", "--id", "0"],
                          ["member", "--insecure", "--gms", "127.0.0.1:1", "--id", "1", "--join", "a,,b"], ["frobnicate"],
                          // A pool is a multicast prefix or START+COUNT: a count after the
                          // slash, host bits set, or addresses outside 224/4 are refused.
                          ["gms", "--insecure", "--listen", "127.0.0.1:0", "--address-pool", "239.192.0.0/1024"],
                          ["gms", "--insecure", "--listen", "127.0.0.1:0", "--address-pool", "239.192.0.1/14"],
                          ["gms", "--insecure", "--listen", "127.0.0.1:0", "--address-pool", "10.0.0.0/8"],
                          ["gms", "--insecure", "--listen", "127.0.0.1:0", "--address-pool", "239.255.255.0+1000"],
                          ["stats", "--format", "xml"], ["run", "--insecure", "--gms", "127.0.0.1:1"],
                          // IPv6 and unknown interfaces or hosts are refused with the reason.
                          ["subscribe", "--insecure", "--gms", "[::1]:7000", "--group", "g"],
                          ["subscribe", "--insecure", "--gms", "127.0.0.1:7000", "--group", "g", "--interface", "nosuchif0"],
                          ["subscribe", "--insecure", "--gms", "127.0.0.1:7000", "--group", "g", "--interface", "192.0.2.77"],
                          ["publish", "--insecure", "--gms", "127.0.0.1:7000", "--group", "g", "--format", "xml"],
                          // Durations take units; an old and a new name for one setting conflict.
                          ["gms", "--insecure", "--listen", "127.0.0.1:0", "--batch", "fast"],
                          ["gms", "--insecure", "--listen", "127.0.0.1:0", "--batch", "1s", "--batch-ms", "100"],
                          ["subscribe", "--insecure", "--gms", "127.0.0.1:7000", "--group", "g", "--timeout", "-1s"]] {
            let process = try ChildProcess(executable: Self.qsmNode, arguments: arguments)
            #expect(process.waitForExit(timeoutMilliseconds: 10_000) == 2, "qsm-node \(arguments.joined(separator: " "))")
        }
    }
}
