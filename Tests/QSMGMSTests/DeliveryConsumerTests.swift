#if canImport(Glibc)
import Glibc
#endif
import QSMCore
import QSMHarness
import Testing

/// `deliveries()` consumers with real nodes: an abandoned sequence never wedges the
/// node, and consumers at different speeds each get everything within their own bound.
@Suite(.enabled(if: NetworkNamespace.isAvailable, "needs CAP_SYS_ADMIN to create a private network namespace (run as root)"))
struct DeliveryConsumerTests {
    /// A GMS process and two started nodes, both in group "consumers".
    static func pair(deliveryQueueCapacity: Int) async throws -> (gms: Int32, publisher: QSMNode, subscriber: QSMNode, group: GroupName) {
        let (gmsPID, publisher, subscriber) = try NetworkNamespace.runIsolated { () throws -> (Int32, QSMNode, QSMNode) in
            let (gms, listening) = try EngineProcessTests.startGMS()
            guard let address = QSMSocketAddress(listening) else { throw ConfigurationError("the GMS printed '\(listening)'") }
            var configuration = QSMNodeConfiguration(gms: address)
            configuration.insecure = true
            configuration.nodeID = 1
            let publisher = try QSMNode(configuration: configuration)
            configuration.nodeID = 2
            configuration.deliveryQueueCapacity = deliveryQueueCapacity
            // These tests hold the node back on purpose, for as long as a loaded machine
            // makes them: what they check is backpressure, not the eviction that ends it
            // (`SlowConsumerEvictionTests`). With it, a slow consumer under the full
            // suite's load had the node evicted, and the test waited for messages that
            // were no longer its.
            configuration.slowConsumerEviction = .zero
            let subscriber = try QSMNode(configuration: configuration)
            try publisher.start()
            try subscriber.start()
            _ = Unmanaged.passRetained(gms)  // killed by pid at the end of the test
            return (gms.pid, publisher, subscriber)
        }
        let group = try publisher.join("consumers")
        _ = try subscriber.join("consumers")
        try await publisher.waitForMembers(2, in: group, timeout: .seconds(30))
        try await subscriber.waitForMembers(2, in: group, timeout: .seconds(30))
        return (gmsPID, publisher, subscriber, group)
    }

    static func publish(_ count: Int, from node: QSMNode, to group: GroupName) async {
        for index in 0..<count {
            var payload = [UInt8](repeating: 0, count: 16)
            for shift in 0..<8 { payload[shift] = UInt8(truncatingIfNeeded: index >> (56 - 8 * shift)) }
            try? await node.publish(payload, to: group)
        }
    }

    static func index(_ delivery: QSMDelivery) -> Int {
        delivery.payload.prefix(8).reduce(0) { $0 << 8 | Int($1) }
    }

    /// An application reads 10 messages from `deliveries()`, leaves the loop, and then
    /// receives through `onDelivery`: all 100,000 messages still arrive (the old shared
    /// counter was raised for the abandoned sequence and never lowered, and deliveries
    /// stopped for good after `deliveryQueueCapacity` of them).
    @Test func anAbandonedConsumerNeverWedgesTheNode() async throws {
        let (gms, publisher, subscriber, group) = try await Self.pair(deliveryQueueCapacity: 1_024)
        defer { publisher.stop(); subscriber.stop(); kill(gms, SIGTERM) }
        let count = 100_000
        let received = SharedCount()
        subscriber.onDelivery { delivery in if delivery.sender == publisher.id { received.increment() } }
        let early = subscriber.deliveries()
        let sender = Task { await Self.publish(count, from: publisher, to: group) }
        var taken = 0
        for await _ in early {
            taken += 1
            if taken == 10 { break }
        }
        #expect(taken == 10)
        await sender.value
        let deadline = MonotonicClock.now().advanced(by: .seconds(Int64(NodeWaitTests.bound)))
        while received.value < count, MonotonicClock.now() < deadline { try await Task.sleep(for: .milliseconds(50)) }
        #expect(received.value == count, "the callback got \(received.value) of \(count) after the sequence was abandoned")
        #expect(subscriber.deliveryBacklogs.isEmpty, "the abandoned sequence is still registered")
    }

    /// Two consumers, one fast and one slow: both get every message in order, and neither
    /// ever holds more than its own bound (the old shared counter went negative with two
    /// consumers, and the bound stopped holding).
    @Test func twoConsumersAtDifferentSpeedsEachGetEverythingWithinTheirBound() async throws {
        let capacity = 256
        let (gms, publisher, subscriber, group) = try await Self.pair(deliveryQueueCapacity: capacity)
        defer { publisher.stop(); subscriber.stop(); kill(gms, SIGTERM) }
        let count = 20_000
        let fast = subscriber.deliveries(), slow = subscriber.deliveries()
        func consume(_ sequence: DeliverySequence, pauseEvery: Int?) -> Task<[Int], Never> {
            Task {
                var indices: [Int] = []
                for await delivery in sequence where delivery.sender == publisher.id {
                    indices.append(Self.index(delivery))
                    if let pauseEvery, indices.count % pauseEvery == 0 { try? await Task.sleep(for: .milliseconds(2)) }
                    if indices.count == count { break }
                }
                return indices
            }
        }
        let fastTask = consume(fast, pauseEvery: nil), slowTask = consume(slow, pauseEvery: 100)
        let monitor = Task { () -> Int in
            var largest = 0
            while !Task.isCancelled {
                largest = max(largest, subscriber.deliveryBacklogs.max() ?? 0)
                try? await Task.sleep(for: .milliseconds(1))
            }
            return largest
        }
        await Self.publish(count, from: publisher, to: group)
        let fastIndices = try await within(seconds: NodeWaitTests.bound) { await fastTask.value }
        let slowIndices = try await within(seconds: NodeWaitTests.bound) { await slowTask.value }
        monitor.cancel()
        let largest = await monitor.value
        #expect(fastIndices == Array(0..<count))
        #expect(slowIndices == Array(0..<count))
        #expect(largest <= capacity, "a consumer held \(largest) deliveries, more than its bound of \(capacity)")
        #expect(largest > 0)
    }

    /// A subscription to one group gets that group's messages, all of them in order, and
    /// nothing of another group the node also receives; bad input fails with a
    /// `QSMError` a caller can switch on.
    @Test func aGroupSubscriptionGetsOnlyItsGroup() async throws {
        let (gms, publisher, subscriber, group) = try await Self.pair(deliveryQueueCapacity: 64)
        defer { publisher.stop(); subscriber.stop(); kill(gms, SIGTERM) }
        let other = try publisher.join("other")
        subscriber.join(other)
        try await publisher.waitForMembers(2, in: other, timeout: .seconds(30))
        try await subscriber.waitForMembers(2, in: other, timeout: .seconds(30))
        let count = 500
        let subscription = subscriber.deliveries(of: other)
        let sender = Task {
            for index in 0..<count {
                await Self.publish(1, from: publisher, to: group)
                var payload = [UInt8](repeating: 0, count: 16)
                for shift in 0..<8 { payload[shift] = UInt8(truncatingIfNeeded: index >> (56 - 8 * shift)) }
                try? await publisher.publish(payload, to: other)
            }
        }
        var seen: [Int] = []
        var foreign = 0
        for await delivery in subscription {
            if delivery.group != other { foreign += 1 }
            seen.append(Self.index(delivery))
            if seen.count == count { break }
        }
        await sender.value
        #expect(foreign == 0)
        #expect(seen == Array(0..<count))
        #expect(throws: QSMError.invalid(ConfigurationError("'' is not a group name (1-255 bytes, no control characters)"))) {
            try publisher.join("")
        }
        let tooLarge = [UInt8](repeating: 0, count: publisher.configuration.protocolConfiguration.maximumMessageBytes + 1)
        await #expect(throws: QSMError.self) { try await publisher.publish(tooLarge, to: group) }
    }
}
