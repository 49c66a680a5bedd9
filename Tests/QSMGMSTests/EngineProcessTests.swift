#if canImport(Glibc)
import Glibc
#endif
import QSMCore
import QSMHarness
import Synchronization
import Testing

/// The engine end to end: real qsm-node processes over real multicast in a private
/// network namespace.
@Suite(.enabled(if: NetworkNamespace.isAvailable, "needs CAP_SYS_ADMIN to create a private network namespace (run as root)"))
struct EngineProcessTests {
    static var qsmNode: String { ChildProcess.currentExecutableDirectory + "/qsm-node" }

    /// What a process that did not start as expected printed (its first line, then any
    /// more) and whether it exited, for a failure message.
    static func account(of process: ChildProcess, firstLine: String?) -> String {
        let said = ([firstLine].compactMap { $0 } + process.availableLines()).joined(separator: " | ")
        let status = process.waitForExit(timeoutMilliseconds: 1_000).map { "exit status \($0)" } ?? "still running"
        return (said.isEmpty ? "no output" : said) + "; " + status
    }

    /// A `qsm-node gms` on a free loopback port, and its address: insecure unless
    /// `security` says otherwise (`["--secret-file", PATH]`).
    static func startGMS(_ security: [String] = ["--insecure"]) throws -> (ChildProcess, String) {
        let gms = try ChildProcess(executable: qsmNode, arguments: ["gms", "--listen", "127.0.0.1:0", "--stats-seconds", "0"] + security)
        let first = gms.readLine(timeoutMilliseconds: 20_000)
        guard let ready = first, ready.hasPrefix("gms listening on ") else {
            throw ConfigurationError("the GMS did not start: " + account(of: gms, firstLine: first))
        }
        return (gms, String(ready.dropFirst("gms listening on ".count)))
    }

    static func subscriber(_ gms: String, group: String, id: Int, count: Int) throws -> ChildProcess {
        try ChildProcess(executable: qsmNode, arguments: ["subscribe", "--insecure", "--gms", gms, "--group", group, "--id", "\(id)", "--count", "\(count)"])
    }

    /// Reads a process's output lines until it exits or the deadline passes.
    static func collect(_ process: ChildProcess, into lines: inout [String], until deadline: Instant) {
        var all = [lines]
        collectAll([process], into: &all, until: deadline)
        lines = all[0]
    }

    /// Reads every process's output at once (a reader that waited on one while the others
    /// filled their pipes would stall them, and through flow control, everyone) until all
    /// have exited or the deadline passes.
    static func collectAll(_ processes: [ChildProcess], into lines: inout [[String]], until deadline: Instant,
                           stopWhen done: ([[String]]) -> Bool = { _ in false }) {
        while lines.count < processes.count { lines.append([]) }
        var finished = Set<Int>()
        while MonotonicClock.now() < deadline && finished.count < processes.count && !done(lines) {
            for (index, process) in processes.enumerated() where !finished.contains(index) {
                lines[index] += process.availableLines()
                if process.waitForExit(timeoutMilliseconds: 0) != nil {
                    lines[index] += process.availableLines()
                    finished.insert(index)
                }
            }
            var descriptors = processes.map { pollfd(fd: $0.outputDescriptor, events: Int16(POLLIN), revents: 0) }
            _ = poll(&descriptors, nfds_t(descriptors.count), 20)
        }
    }

    /// Joins a feeder without hanging: a publisher still running at this point is killed
    /// first, so a feeder blocked writing to it fails and returns.
    static func finish(_ feeder: SystemThread, _ publisher: ChildProcess, timeoutMilliseconds: Int) -> Int32? {
        let status = publisher.waitForExit(timeoutMilliseconds: timeoutMilliseconds)
        if status == nil { publisher.signal(SIGKILL); publisher.waitForExit(timeoutMilliseconds: 5000) }
        feeder.join()
        return status
    }

    /// Feeds `messages` to a publisher's standard input on its own thread, then closes it.
    static func feed(_ publisher: ChildProcess, _ messages: [String]) throws -> SystemThread {
        let input = publisher.detachInput()
        return try SystemThread(name: "feeder") {
            for message in messages { input.writeLine(message) }
            input.close()
        }
    }

    /// Opened by the test once a latecomer has joined; see `feed(_:_:fastUntil:gate:)`.
    final class Gate: Sendable {
        let opened = Atomic<Bool>(false)
        func open() { opened.store(true, ordering: .releasing) }
        var isOpen: Bool { opened.load(ordering: .acquiring) }
    }

    /// Feeds the first `fastUntil` messages at once, then one every 2 ms until `gate`
    /// opens, then the rest at once: the stream is still going when a latecomer's join
    /// takes effect, however fast the engine, and the run stays short once it has.
    static func feed(_ publisher: ChildProcess, _ messages: [String], fastUntil: Int, gate: Gate) throws -> SystemThread {
        let input = publisher.detachInput()
        return try SystemThread(name: "feeder") {
            for (index, message) in messages.enumerated() {
                if index >= fastUntil && !gate.isOpen { usleep(2_000) }
                input.writeLine(message)
            }
            input.close()
        }
    }

    @Test func onePublisherFourSubscribersHundredThousandMessages() throws {
        let count = 100_000
        let failure = try NetworkNamespace.runIsolated { () throws -> String? in
            let (gms, address) = try Self.startGMS()
            defer { gms.signal(SIGTERM) }
            let subscribers = try (1...4).map { try Self.subscriber(address, group: "a", id: 10 + $0, count: count) }
            let publisher = try ChildProcess(executable: Self.qsmNode, arguments: [
                "publish", "--insecure", "--gms", address, "--group", "a", "--wait-members", "4", "--id", "1", "--timeout-seconds", "120"])
            let expected = (1...count).map { "message \($0)" }
            let feeder = try Self.feed(publisher, expected)
            let deadline = MonotonicClock.now().advanced(by: .seconds(300))
            var outputs: [[String]] = []
            Self.collectAll(subscribers, into: &outputs, until: deadline)
            guard Self.finish(feeder, publisher, timeoutMilliseconds: 60_000) == 0 else { return "the publisher did not finish cleanly" }
            for (index, lines) in outputs.enumerated() where lines != expected {
                let firstWrong = zip(lines, expected).enumerated().first { $0.element.0 != $0.element.1 }?.offset
                    ?? min(lines.count, expected.count)
                return "subscriber \(index + 1) got \(lines.count) lines; first difference at line \(firstWrong + 1)"
            }
            for subscriber in subscribers where subscriber.waitForExit(timeoutMilliseconds: 10_000) != 0 {
                return "a subscriber did not exit cleanly"
            }
            return nil
        }
        #expect(failure == nil)
    }

    @Test func twoPublishersTwoOverlappingGroups() throws {
        let count = 3_000
        let failure = try NetworkNamespace.runIsolated { () throws -> String? in
            let (gms, address) = try Self.startGMS()
            defer { gms.signal(SIGTERM) }
            // Members in a only, in b only, and in both (two subscriber processes).
            let onlyA = try Self.subscriber(address, group: "a", id: 21, count: count)
            let onlyB = try Self.subscriber(address, group: "b", id: 22, count: count)
            let bothA = try Self.subscriber(address, group: "a", id: 23, count: count)
            let bothB = try Self.subscriber(address, group: "b", id: 23 + 100, count: count)
            let publisherA = try ChildProcess(executable: Self.qsmNode, arguments: [
                "publish", "--insecure", "--gms", address, "--group", "a", "--wait-members", "2", "--id", "1"])
            let publisherB = try ChildProcess(executable: Self.qsmNode, arguments: [
                "publish", "--insecure", "--gms", address, "--group", "b", "--wait-members", "2", "--id", "2"])
            let expectedA = (1...count).map { "a\($0)" }, expectedB = (1...count).map { "b\($0)" }
            let feedA = try Self.feed(publisherA, expectedA)
            let feedB = try Self.feed(publisherB, expectedB)
            let deadline = MonotonicClock.now().advanced(by: .seconds(120))
            var outputs: [[String]] = []
            Self.collectAll([onlyA, onlyB, bothA, bothB], into: &outputs, until: deadline)
            let statusA = Self.finish(feedA, publisherA, timeoutMilliseconds: 60_000)
            let statusB = Self.finish(feedB, publisherB, timeoutMilliseconds: 60_000)
            for (name, lines, expected) in zip(["only a", "only b", "a of both", "b of both"], zip(outputs, [expectedA, expectedB, expectedA, expectedB])).map({ ($0.0, $0.1.0, $0.1.1) })
                where lines != expected {
                return "\(name): got \(lines.count) lines, expected \(expected.count) in order"
            }
            guard statusA == 0, statusB == 0 else { return "a publisher did not finish cleanly" }
            return nil
        }
        #expect(failure == nil)
    }

    @Test func aKilledSubscriberDoesNotStopTheOthersOrThePublisher() throws {
        let count = 20_000
        let failure = try NetworkNamespace.runIsolated { () throws -> String? in
            let (gms, address) = try Self.startGMS()
            defer { gms.signal(SIGTERM) }
            let survivors = try (1...2).map { try Self.subscriber(address, group: "a", id: 30 + $0, count: count) }
            let victim = try Self.subscriber(address, group: "a", id: 39, count: count)
            let publisher = try ChildProcess(executable: Self.qsmNode, arguments: [
                "publish", "--insecure", "--gms", address, "--group", "a", "--wait-members", "3", "--id", "1", "--timeout-seconds", "60"])
            let expected = (1...count).map { "m\($0)" }
            let feeder = try Self.feed(publisher, expected)
            // Kill the victim once it has seen some traffic (reading everyone meanwhile).
            var outputs: [[String]] = []
            Self.collectAll(survivors + [victim], into: &outputs, until: MonotonicClock.now().advanced(by: .seconds(60)),
                            stopWhen: { $0[2].count >= 2000 })
            victim.signal(SIGKILL)
            outputs.removeLast()
            Self.collectAll(survivors, into: &outputs, until: MonotonicClock.now().advanced(by: .seconds(120)))
            let status = Self.finish(feeder, publisher, timeoutMilliseconds: 60_000)
            for (index, lines) in outputs.enumerated() where lines != expected {
                return "survivor \(index + 1) got \(lines.count) lines, expected \(count) in order"
            }
            guard status == 0 else { return "the publisher did not finish after the kill" }
            return nil
        }
        #expect(failure == nil)
    }

    @Test func aSubscriberFrozenForTwoSecondsCatchesUp() throws {
        let count = 20_000
        let failure = try NetworkNamespace.runIsolated { () throws -> String? in
            let (gms, address) = try Self.startGMS()
            defer { gms.signal(SIGTERM) }
            let steady = try Self.subscriber(address, group: "a", id: 41, count: count)
            let frozen = try Self.subscriber(address, group: "a", id: 42, count: count)
            let publisher = try ChildProcess(executable: Self.qsmNode, arguments: [
                "publish", "--insecure", "--gms", address, "--group", "a", "--wait-members", "2", "--id", "1", "--timeout-seconds", "60"])
            let expected = (1...count).map { "f\($0)" }
            let feeder = try Self.feed(publisher, expected)
            var outputs: [[String]] = []
            Self.collectAll([frozen, steady], into: &outputs, until: MonotonicClock.now().advanced(by: .seconds(60)),
                            stopWhen: { $0[0].count >= 1000 })
            frozen.signal(SIGSTOP)
            Self.collectAll([frozen, steady], into: &outputs, until: MonotonicClock.now().advanced(by: .seconds(2)))
            frozen.signal(SIGCONT)
            Self.collectAll([frozen, steady], into: &outputs, until: MonotonicClock.now().advanced(by: .seconds(120)))
            let status = Self.finish(feeder, publisher, timeoutMilliseconds: 60_000)
            if outputs[0] != expected { return "the frozen subscriber got \(outputs[0].count) lines, expected \(count) in order" }
            if outputs[1] != expected { return "the steady subscriber got \(outputs[1].count) lines" }
            return status == 0 ? nil : "the publisher did not finish"
        }
        #expect(failure == nil)
    }

    @Test func aSubscriberJoiningMidStreamGetsAnUnbrokenTail() throws {
        let count = 20_000
        let failure = try NetworkNamespace.runIsolated { () throws -> String? in
            let (gms, address) = try Self.startGMS()
            defer { gms.signal(SIGTERM) }
            let early = try Self.subscriber(address, group: "a", id: 51, count: count)
            let publisher = try ChildProcess(executable: Self.qsmNode, arguments: [
                "publish", "--insecure", "--gms", address, "--group", "a", "--wait-members", "1", "--id", "1", "--timeout-seconds", "60"])
            let expected = (1...count).map { "j\($0)" }
            // Until the latecomer has something, the publisher trickles: before, a fast
            // run could end before the latecomer's join took effect, and it rightly got
            // nothing (a flaky failure, not a loss).
            let gate = Gate()
            let feeder = try Self.feed(publisher, expected, fastUntil: 5_000, gate: gate)
            var earlyOutput: [[String]] = []
            Self.collectAll([early], into: &earlyOutput, until: MonotonicClock.now().advanced(by: .seconds(60)),
                            stopWhen: { $0[0].count >= 3000 })
            var earlyLines = earlyOutput[0]
            // A latecomer without --count: it runs until told to stop.
            let late = try ChildProcess(executable: Self.qsmNode, arguments: ["subscribe", "--insecure", "--gms", address, "--group", "a", "--id", "52"])
            let deadline = MonotonicClock.now().advanced(by: .seconds(120))
            var outputs = [earlyLines, []]
            // The early subscriber exits after its count; the latecomer keeps running.
            while MonotonicClock.now() < deadline && early.waitForExit(timeoutMilliseconds: 0) == nil {
                Self.collectAll([early, late], into: &outputs, until: MonotonicClock.now().advanced(by: .milliseconds(200)))
                if !outputs[1].isEmpty { gate.open() }
            }
            gate.open()
            Self.collectAll([early, late], into: &outputs, until: MonotonicClock.now().advanced(by: .seconds(2)))
            guard Self.finish(feeder, publisher, timeoutMilliseconds: 60_000) == 0 else { return "the publisher did not finish" }
            late.signal(SIGTERM)
            earlyLines = outputs[0]
            var lateLines = outputs[1]
            var tail = [lateLines]
            Self.collectAll([late], into: &tail, until: MonotonicClock.now().advanced(by: .seconds(10)))
            lateLines = tail[0]
            if earlyLines != expected { return "the early subscriber got \(earlyLines.count) lines" }
            // Every message after the view that included it, in order, and nothing before
            // that view: an unbroken run that ends with the last message.
            guard let first = lateLines.first, let start = expected.firstIndex(of: first) else {
                return "the latecomer received nothing"
            }
            if Array(expected[start...]) != lateLines { return "the latecomer's \(lateLines.count) lines are not an unbroken tail" }
            return nil
        }
        #expect(failure == nil)
    }
}
