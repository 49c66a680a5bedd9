#if canImport(Glibc)
import Glibc
#endif
import QSMCore  // the public API only: no @testable here
import QSMHarness
import Testing

/// An application embedding two nodes through the public API: join, publish with
/// backpressure, receive through the async sequence and the callback, statistics.
@Suite(.enabled(if: NetworkNamespace.isAvailable, "needs CAP_SYS_ADMIN to create a private network namespace (run as root)"))
struct EmbeddingTests {
    @Test func publishAndReceiveThroughThePublicAPI() async throws {
        // Sockets and threads are made inside the namespace; the rest can run anywhere.
        let (gmsPID, publisher, subscriber) = try NetworkNamespace.runIsolated { () throws -> (Int32, QSMNode, QSMNode) in
            let (gms, address) = try startTestGMS(["--insecure"])
            var configuration = QSMNodeConfiguration(gms: address)
            configuration.nodeID = 1
            configuration.insecure = true
            // A small window, so the non-blocking variant can be seen to refuse.
            configuration.protocolConfiguration.windowMessages = 64
            let publisher = try QSMNode(configuration: configuration)
            configuration.protocolConfiguration = ProtocolConfiguration()
            configuration.nodeID = 2
            let subscriber = try QSMNode(configuration: configuration)
            try publisher.start()
            try subscriber.start()
            // The GMS process must outlive this scope (its owner would kill it on the way
            // out): keep it, and kill it by pid at the end of the test.
            _ = Unmanaged.passRetained(gms)
            return (gms.pid, publisher, subscriber)
        }
        defer {
            publisher.stop()
            subscriber.stop()
            kill(gmsPID, SIGTERM)
        }
        let group = try publisher.join("embedded")
        _ = try subscriber.join("embedded")
        try await publisher.waitForMembers(2, in: group, timeout: .seconds(30))
        try await subscriber.waitForMembers(2, in: group, timeout: .seconds(30))

        let count = 500
        let callbackCount = SharedCount()
        subscriber.onDelivery { _ in callbackCount.increment() }
        let stream = subscriber.deliveries()
        let receiver = Task { () -> [String] in
            var messages: [String] = []
            for await delivery in stream where delivery.sender == publisher.id {
                messages.append(String(decoding: delivery.payload, as: UTF8.self))
                if messages.count == count { break }
            }
            return messages
        }
        // Every other message goes through a handle (`publisher(for:)`): the same group,
        // the same order.
        let handle = publisher.publisher(for: group)
        #expect(handle == publisher.publisher(for: group) && handle.group == group)
        try await within(seconds: 60) {
            for index in 1...count {
                let payload = Array("message \(index)".utf8)
                if index.isMultiple(of: 2) { try? await publisher.publish(payload, to: handle) } else { try? await publisher.publish(payload, to: group) }
            }
        }
        let received = try await within(seconds: 60) { await receiver.value }
        #expect(received == (1...count).map { "message \($0)" })
        #expect(callbackCount.value == count)
        // A member publishing to its own group receives its own messages, exactly once
        // (over the multicast loopback, so possibly a little after the subscriber).
        let own = try await awaitStatistics(of: publisher, within: 30) { $0.protocolStatistics.delivered >= count }
        #expect(own.protocolStatistics.delivered == count)
        // Everything is eventually acknowledged.
        try await within(seconds: 30) {
            while publisher.unacknowledgedMessages > 0 { try? await Task.sleep(for: .milliseconds(10)) }
        }
        let statistics = try await subscriber.statistics()
        #expect(statistics.protocolStatistics.delivered == count)
        #expect(statistics.regions == 1)
        // The non-blocking variant reports a full window instead of waiting. A burst gets
        // the window (64) in, plus a slot for each acknowledgement that arrives meanwhile
        // (this thread can be descheduled mid-burst); everything before was acknowledged.
        let acknowledgedBefore = try await publisher.statistics().protocolStatistics.acknowledged
        var accepted = 0
        var refused = false
        for index in 0..<1000 {
            switch publisher.tryPublish(Array("burst \(index)".utf8), to: group) {
            case .accepted: accepted += 1
            case .wouldBlock: refused = true
            case .rejected(let reason): Issue.record("rejected: \(reason)")
            }
            if refused { break }
        }
        let acknowledgedDuring = try await publisher.statistics().protocolStatistics.acknowledged - acknowledgedBefore
        #expect(refused)
        #expect(accepted >= 1 && accepted <= 64 + acknowledgedDuring, "\(accepted) accepted, \(acknowledgedDuring) acknowledged meanwhile")
        // A message over the size limit is refused with a reason, not queued.
        guard case .rejected = publisher.tryPublish([UInt8](repeating: 0, count: 2 << 20), to: group) else {
            Issue.record("an oversized message was not rejected")
            return
        }
    }
}

/// Authentication: nodes that share the cluster secret with the GMS register and talk;
/// a node with another secret is refused by the GMS at once (it fails fast, naming the
/// cause) and never becomes a member. (Forged datagrams are dropped and counted:
/// `NodeMachineSpecTests` and the hostile fault scenario.)
@Suite(.enabled(if: NetworkNamespace.isAvailable, "needs CAP_SYS_ADMIN to create a private network namespace (run as root)"))
struct AuthenticationTests {
    @Test func onlyNodesWithTheClusterSecretAreHeard() async throws {
        let secret = "the cluster's shared secret"
        let secretPath = try GMSAuthenticationProcessTests.secretFile(secret)
        defer { unlink(secretPath) }
        let (gmsPID, nodes) = try NetworkNamespace.runIsolated { () throws -> (Int32, [QSMNode]) in
            let (gms, address) = try startTestGMS(["--secret-file", secretPath])
            var nodes: [QSMNode] = []
            for (id, secret) in [(1, secret), (2, secret), (3, "a forger's different secret")] {
                var configuration = QSMNodeConfiguration(gms: address)
                configuration.nodeID = UInt64(id)
                configuration.clusterSecret = Array(secret.utf8)
                nodes.append(try QSMNode(configuration: configuration))
            }
            for node in nodes { try node.start() }
            _ = Unmanaged.passRetained(gms)
            return (gms.pid, nodes)
        }
        defer {
            for node in nodes { node.stop() }
            kill(gmsPID, SIGTERM)
        }
        let (member, receiver, forger) = (nodes[0], nodes[1], nodes[2])
        let group = try member.join("signed")
        _ = try receiver.join("signed")
        _ = try forger.join("signed")
        try await member.waitForMembers(2, in: group, timeout: .seconds(30))
        // The forger learns at the GMS's first answer that it does not share the secret.
        let problem = try await within(seconds: 30) { () -> String in
            while true {
                if let problem = forger.authenticationProblem { return problem }
                try? await Task.sleep(for: .milliseconds(10))
            }
        }
        #expect(problem.contains("cluster secret"))
        #expect(!forger.isRegistered)
        let stream = receiver.deliveries()
        for index in 1...20 { try await member.publish(Array("genuine \(index)".utf8), to: group) }
        let received = try await within(seconds: 30) { () -> [String] in
            var messages: [String] = []
            for await delivery in stream {
                messages.append(String(decoding: delivery.payload, as: UTF8.self))
                if messages.count == 20 { break }
            }
            return messages
        }
        #expect(received == (1...20).map { "genuine \($0)" })
        // The group never had the forger in it.
        let statistics = try await awaitStatistics(of: receiver, within: 30) { $0.protocolStatistics.delivered >= 20 }
        #expect(statistics.protocolStatistics.delivered == 20)
        #expect(member.configuration.clusterSecret != nil)
        // A secret too short to be one is refused before anything starts.
        var weak = QSMNodeConfiguration(gms: QSMSocketAddress(.loopback, port: 7000))
        weak.clusterSecret = Array("short".utf8)
        #expect(throws: ConfigurationError.self) { try weak.validate() }
    }
}

struct TimedOut: Error {}

/// Starts `qsm-node gms` on a free loopback port (call it inside the test's network
/// namespace) with `arguments` besides; returns it and the address it listens on.
func startTestGMS(_ arguments: [String]) throws -> (ChildProcess, QSMSocketAddress) {
    let gms = try ChildProcess(executable: ChildProcess.currentExecutableDirectory + "/qsm-node",
                               arguments: ["gms", "--listen", "127.0.0.1:0", "--stats-seconds", "0"] + arguments)
    guard let ready = gms.readLine(timeoutMilliseconds: 20_000), ready.hasPrefix("gms listening on "),
          let address = QSMSocketAddress(ready.dropFirst("gms listening on ".count)) else {
        throw ConfigurationError("the GMS did not start")
    }
    return (gms, address)
}

/// Runs `body`, failing with `TimedOut` if it takes longer than `seconds`.
func within<T: Sendable>(seconds: Double, _ body: @escaping @Sendable () async -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { await body() }
        group.addTask { try? await Task.sleep(for: .seconds(seconds)); return nil }
        guard let first = try await group.next(), let value = first else {
            group.cancelAll()
            throw TimedOut()
        }
        group.cancelAll()
        return value
    }
}

/// `node`'s statistics once `satisfied` holds for them, or the last snapshot after
/// `seconds`: counters that other threads are still catching up on are awaited, bounded.
func awaitStatistics(of node: QSMNode, within seconds: Double,
                until satisfied: (QSMNodeStatistics) -> Bool) async throws -> QSMNodeStatistics {
    let deadline = MonotonicClock.now().advanced(byNanoseconds: Int64(seconds * 1e9))
    while true {
        let snapshot = try await node.statistics()
        if satisfied(snapshot) || MonotonicClock.now() >= deadline { return snapshot }
        try? await Task.sleep(for: .milliseconds(20))
    }
}

final class SharedCount: @unchecked Sendable {
    private var count = 0
    private let lock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    init() { pthread_mutex_init(lock, nil) }
    func increment() { pthread_mutex_lock(lock); count += 1; pthread_mutex_unlock(lock) }
    var value: Int { pthread_mutex_lock(lock); defer { pthread_mutex_unlock(lock) }; return count }
}
