#if canImport(Glibc)
import Glibc
#endif
import QSMCore  // the public API only
import QSMHarness
import Testing

/// The slow-receiver policy through the public API, over real sockets: a subscriber
/// whose application takes deliveries at a trickle holds the publisher's window; after
/// `slowConsumerEviction` it is evicted from the group and told why, the publisher and
/// the other subscriber are told who and why, and the others go on to the end. What the
/// slow one got is an unbroken prefix of the stream.
@Suite(.enabled(if: NetworkNamespace.isAvailable, "needs CAP_SYS_ADMIN to create a private network namespace (run as root)"))
struct SlowConsumerEvictionTests {
    final class Events: @unchecked Sendable {
        private var list: [MembershipEvent] = []
        private let lock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        init() { pthread_mutex_init(lock, nil) }
        func add(_ event: MembershipEvent) { pthread_mutex_lock(lock); list.append(event); pthread_mutex_unlock(lock) }
        var all: [MembershipEvent] { pthread_mutex_lock(lock); defer { pthread_mutex_unlock(lock) }; return list }
    }

    @Test func aSlowSubscriberIsEvictedAndTheOthersGoOn() async throws {
        let (gmsPID, publisher, fast, slow) = try NetworkNamespace.runIsolated { () throws -> (Int32, QSMNode, QSMNode, QSMNode) in
            let (gms, address) = try startTestGMS(["--insecure"])
            var configuration = QSMNodeConfiguration(gms: address)
            configuration.insecure = true
            configuration.onWarning = { _ in }
            configuration.protocolConfiguration.windowMessages = 256
            var nodes: [QSMNode] = []
            for id in 1...3 {
                configuration.nodeID = UInt64(id)
                if id == 3 {
                    configuration.slowConsumerEviction = .seconds(2)
                    configuration.deliveryQueueCapacity = 16
                }
                nodes.append(try QSMNode(configuration: configuration))
            }
            for node in nodes { try node.start() }
            _ = Unmanaged.passRetained(gms)
            return (gms.pid, nodes[0], nodes[1], nodes[2])
        }
        defer {
            for node in [publisher, fast, slow] { node.stop() }
            kill(gmsPID, SIGTERM)
        }
        let events = [Events(), Events(), Events()]
        for (node, log) in zip([publisher, fast, slow], events) { node.onMembershipEvent { log.add($0) } }
        let group = try publisher.join("stream")
        _ = try fast.join("stream")
        _ = try slow.join("stream")
        for node in [publisher, fast, slow] { try await node.waitForMembers(3, in: group, timeout: .seconds(30)) }

        let count = 4_000
        let fastStream = fast.deliveries(of: group)
        let fastReader = Task { () -> [UInt32] in
            var received: [UInt32] = []
            for await delivery in fastStream where delivery.sender == publisher.id {
                received.append(delivery.withPayload { $0.loadUnaligned(as: UInt32.self) })
                if received.count == count { break }
            }
            return received
        }
        // The slow application: 50 messages a second, until it hears it was evicted and
        // has taken what was handed over by then.
        let slowStream = slow.deliveries(of: group)
        let slowEvents = events[2]
        let slowReader = Task { () -> [UInt32] in
            var received: [UInt32] = []
            for await delivery in slowStream where delivery.sender == publisher.id {
                received.append(delivery.withPayload { $0.loadUnaligned(as: UInt32.self) })
                if slowEvents.all.contains(where: { if case .evicted = $0 { return true }; return false }) { break }
                try? await Task.sleep(for: .milliseconds(20))
            }
            return received
        }
        try await within(seconds: 120) {
            for index in 1...count { try? await publisher.publish(withUnsafeBytes(of: UInt32(index)) { Array($0) }, to: group) }
        }
        let fastGot = try await within(seconds: 60) { await fastReader.value }
        #expect(fastGot == Array(1...UInt32(count)))
        let slowGot = try await within(seconds: 60) { await slowReader.value }
        #expect(slowGot == Array(1...UInt32(slowGot.count)), "the slow subscriber's deliveries are an unbroken prefix")
        #expect(slowGot.count < count)
        // Told why, on both sides.
        let evicted = events[2].all.compactMap { event -> String? in
            if case .evicted(let name, let reason) = event, name == group { return reason }
            return nil
        }
        #expect(evicted.count == 1 && evicted.first?.contains("too slowly") == true, "\(events[2].all.suffix(5))")
        for log in events[0...1] {
            let told = try await within(seconds: 30) { () -> Bool in
                while true {
                    if log.all.contains(where: {
                        if case .memberEvicted(let node, let name, let reason) = $0 { return node == slow.id && name == group && reason.contains("too slowly") }
                        return false
                    }) { return true }
                    try? await Task.sleep(for: .milliseconds(10))
                }
            }
            #expect(told)
        }
        #expect(try await slow.statistics().machine.evictions == 1)
        try await publisher.waitForAcknowledgements(timeout: .seconds(30))
    }
}
