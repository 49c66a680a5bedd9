#if canImport(Glibc)
import Glibc
#endif
import QSMCore
import QSMHarness
import Synchronization
import Testing

/// A stopped and dropped node gives back what it held: its sockets are closed (and with
/// them the engine that owns them, its epoll and event descriptors), so an application can
/// start and stop nodes for ever.
@Suite(.enabled(if: NetworkNamespace.isAvailable, "needs CAP_SYS_ADMIN to create a private network namespace (run as root)"))
struct NodeLifetimeTests {
    /// The UDP sockets open in the calling thread's network namespace. The test runs in a
    /// namespace of its own, where only its nodes and its GMS have sockets, so suites
    /// running in parallel in this process do not disturb the count (the process-wide
    /// descriptor count did: CI once saw 55 more descriptors from other suites).
    private static func udpSocketsInThisNamespace() -> Int {
        var count = 0
        for table in ["/proc/thread-self/net/udp", "/proc/thread-self/net/udp6"] {
            guard let file = fopen(table, "r") else { continue }
            defer { fclose(file) }
            var line = [CChar](repeating: 0, count: 512)
            var lines = 0
            while fgets(&line, Int32(line.count), file) != nil { lines += 1 }
            count += max(0, lines - 1)  // the first line is the header
        }
        return count
    }

    @Test func startedAndStoppedNodesCloseTheirSockets() async throws {
        struct Counts: Sendable { var before = 0, running = 0, stoppedButHeld = 0, after = 0; var restart: QSMError?; var pid: Int32 = 0 }
        let counts = try NetworkNamespace.runIsolated { () throws -> Counts in
            let (gms, address) = try startTestGMS(["--insecure"])
            _ = Unmanaged.passRetained(gms)
            var counts = Counts(pid: gms.pid)
            var configuration = QSMNodeConfiguration(gms: address)
            configuration.insecure = true
            counts.before = Self.udpSocketsInThisNamespace()
            // A node still referenced after `stop()` has closed its sockets already.
            configuration.nodeID = 100
            let held = try QSMNode(configuration: configuration)
            try held.start()
            counts.running = Self.udpSocketsInThisNamespace()
            held.stop()
            counts.stoppedButHeld = Self.udpSocketsInThisNamespace()
            do { try held.start() } catch let error as QSMError { counts.restart = error }
            // Stopped explicitly, dropped while running (stopped by `deinit`), or never
            // started at all.
            for id in 1...24 {
                configuration.nodeID = UInt64(id)
                let node = try QSMNode(configuration: configuration)
                switch id % 3 {
                case 0: try node.start(); node.stop()
                case 1: try node.start()
                default: break
                }
            }
            counts.after = Self.udpSocketsInThisNamespace()
            return counts
        }
        kill(counts.pid, SIGTERM)
        #expect(counts.running > counts.before, "a running node's sockets were not seen")
        #expect(counts.stoppedButHeld == counts.before, "\(counts.stoppedButHeld - counts.before) UDP sockets open after stop() while the node is still referenced")
        #expect(counts.restart == QSMError.stopped, "a stopped node started again: \(String(describing: counts.restart))")
        #expect(counts.after == counts.before, "\(counts.after - counts.before) UDP sockets still open after 24 nodes came and went")
    }

    /// Publications accepted while the node never got to them (here: it never started)
    /// are let go at stop, and counted in its final statistics, not lost unsaid.
    @Test func publicationsQueuedAtStopAreCounted() async throws {
        let node = try NetworkNamespace.runIsolated { () throws -> QSMNode in
            var configuration = QSMNodeConfiguration(gms: QSMSocketAddress(.loopback, port: 9))
            configuration.insecure = true
            return try QSMNode(configuration: configuration)
        }
        let group = GroupName("never-started")!
        for index in 0..<5 { #expect(node.tryPublish([UInt8(index)], to: group) == .accepted) }
        node.stop()
        let final = try await node.statistics()
        #expect(final.core.publicationsDiscardedAtStop == 5)
        #expect(final.core.requestsProcessed == 0)
    }

    /// A wait that is already satisfied returns without filing a waiter or starting a
    /// timer task: a sender that waits for its receivers in each of thousands of groups
    /// made and freed a task of about 1 KB per group, just as its first window of payloads
    /// was allocated, and its heap kept the holes (issue 15, sender RSS). Waits not yet
    /// satisfied are filed and still end in time.
    @Test func satisfiedWaitsFileNothing() async throws {
        let (gmsPID, nodes) = try startedInsecureNodes(1)
        let node = nodes[0]
        defer {
            node.stop()
            kill(gmsPID, SIGTERM)
        }
        let groups = try (0..<50).map { try node.join("satisfied-\($0)") }
        for group in groups { try await node.waitForMembers(1, in: group, timeout: .seconds(30)) }
        try await node.waitForAcknowledgements(timeout: .seconds(30))
        let filed = node.filedWaits
        for _ in 0..<20 {
            for group in groups { try await node.waitForMembers(1, in: group, timeout: .seconds(30)) }
            try await node.waitForAcknowledgements(timeout: .seconds(30))
        }
        #expect(node.filedWaits == filed, "\(node.filedWaits - filed) waits filed for conditions already true")
        // One that is not satisfied is filed, and times out.
        await #expect(throws: QSMError.self) { try await node.waitForMembers(2, in: groups[0], timeout: .milliseconds(50)) }
        #expect(node.filedWaits == filed + 1)
    }

    /// A handler that calls `stop()` while another thread is stopping the node returns at
    /// once, and so does that thread's `stop()` (which waits for the handler's thread).
    @Test func aHandlerMayStopTheNodeWhileAnotherThreadStopsIt() async throws {
        final class Flags: Sendable {
            let inHandler = Atomic<Bool>(false), handlerReturned = Atomic<Bool>(false), stopperReturned = Atomic<Bool>(false)
        }
        let (gmsPID, nodes) = try startedInsecureNodes(2)
        let (publisher, subscriber) = (nodes[0], nodes[1])
        defer {
            publisher.stop()
            kill(gmsPID, SIGTERM)
        }
        let group = try publisher.join("stopping")
        _ = try subscriber.join("stopping")
        for node in [publisher, subscriber] { try await node.waitForMembers(2, in: group, timeout: .seconds(30)) }
        let flags = Flags()
        subscriber.onDelivery { _ in
            guard !flags.inHandler.exchange(true, ordering: .acquiringAndReleasing) else { return }
            // Until the other thread's stop() has begun (publishing is refused from then on).
            let deadline = MonotonicClock.now().advanced(byNanoseconds: 10_000_000_000)
            while MonotonicClock.now() < deadline {
                if case .rejected = subscriber.tryPublish([0], to: group) { break }
                sched_yield()
            }
            subscriber.stop()
            flags.handlerReturned.store(true, ordering: .releasing)
        }
        _ = publisher.tryPublish([1], to: group)
        func waitFor(seconds: Int64, _ done: () -> Bool) async -> Bool {
            let deadline = MonotonicClock.now().advanced(byNanoseconds: seconds * 1_000_000_000)
            while !done(), MonotonicClock.now() < deadline { try? await Task.sleep(for: .milliseconds(10)) }
            return done()
        }
        let handled = await waitFor(seconds: 20) { flags.inHandler.load(ordering: .acquiring) }
        #expect(handled, "no delivery reached the handler")
        let stopper = try SystemThread(name: "stopper") {
            subscriber.stop()
            flags.stopperReturned.store(true, ordering: .releasing)
        }
        let stopped = await waitFor(seconds: 20) { flags.stopperReturned.load(ordering: .acquiring) }
        #expect(stopped, "stop() on another thread never returned")
        let handlerStopped = flags.handlerReturned.load(ordering: .acquiring)
        #expect(handlerStopped, "stop() in the handler never returned")
        _ = stopper
    }

    /// A GMS and `count` started nodes (ids 1...count) in a private network namespace,
    /// without a cluster secret; the GMS process's id to stop it with.
    func startedInsecureNodes(_ count: Int) throws -> (gmsPID: Int32, nodes: [QSMNode]) {
        try NetworkNamespace.runIsolated { () throws -> (Int32, [QSMNode]) in
            let (gms, address) = try startTestGMS(["--insecure"])
            _ = Unmanaged.passRetained(gms)
            var configuration = QSMNodeConfiguration(gms: address)
            configuration.insecure = true
            var nodes: [QSMNode] = []
            for id in 1...count {
                configuration.nodeID = UInt64(id)
                nodes.append(try QSMNode(configuration: configuration))
            }
            for node in nodes { try node.start() }
            return (gms.pid, nodes)
        }
    }
}
