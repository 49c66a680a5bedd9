#if canImport(Glibc)
import Glibc
#endif
import QSMCore
import QSMHarness
import Synchronization
import Testing

/// Nodes of one cluster configured apart can never reach each other: a sender that bundles
/// into datagrams larger than a receiver's packet buffers, or one that encrypts where the
/// receiver does not. The receiver must say so (a counted drop and a warning naming what
/// must match), not stall in silence; and the cure it names must work.
@Suite(.enabled(if: NetworkNamespace.isAvailable, "needs CAP_SYS_ADMIN to create a private network namespace (run as root)"))
struct ConfigurationMismatchTests {
    @Test func aReceiverWithSmallerBuffersCountsAndWarnsAndTheCureWorks() async throws {
        let warnings = Mutex<[String]>([])
        let (gmsPID, sender, small, large) = try NetworkNamespace.runIsolated { () throws -> (Int32, QSMNode, QSMNode, QSMNode) in
            let (gms, address) = try startTestGMS(["--insecure"])
            _ = Unmanaged.passRetained(gms)
            var bundling = QSMNodeConfiguration(gms: address)
            bundling.insecure = true
            bundling.bundleBytes = 65_507
            bundling.eventCoreConfiguration.packetBufferCapacity = 65_536
            bundling.nodeID = 1
            let sender = try QSMNode(configuration: bundling)
            // The cure: a receiver given the sender's bundle size.
            bundling.nodeID = 3
            let large = try QSMNode(configuration: bundling)
            var plain = QSMNodeConfiguration(gms: address)
            plain.insecure = true
            plain.nodeID = 2
            plain.onWarning = { text in warnings.withLock { $0.append(text) } }
            let small = try QSMNode(configuration: plain)
            for node in [sender, small, large] { try node.start() }
            return (gms.pid, sender, small, large)
        }
        defer {
            for node in [sender, small, large] { node.stop() }
            kill(gmsPID, SIGTERM)
        }
        let group = try sender.join("bundles")
        _ = try small.join("bundles")
        _ = try large.join("bundles")
        for node in [sender, small, large] { try await node.waitForMembers(3, in: group, timeout: .seconds(30)) }

        let count = 300
        let payload = [UInt8](repeating: 0x5A, count: 1_000)
        try await within(seconds: 60) {
            for _ in 0..<count { try? await sender.publish(payload, to: group) }
        }
        // The receiver with the sender's bundle size gets every message.
        let cured = try await awaitStatistics(of: large, within: 30) { $0.protocolStatistics.delivered >= count }
        #expect(cured.protocolStatistics.delivered == count)
        // The other drops the bundles, counts them, and says why and what to do.
        let dropped = try await awaitStatistics(of: small, within: 30) { $0.core.droppedTruncated > 0 }
        #expect(dropped.core.droppedTruncated > 0, "no datagram was counted as longer than the packet buffers")
        #expect(dropped.protocolStatistics.delivered < count)
        let deadline = MonotonicClock.now().advanced(byNanoseconds: 10_000_000_000)
        func truncationWarnings() -> [String] { warnings.withLock { $0 }.filter { $0.contains("longer than this node's packet buffers") } }
        while truncationWarnings().isEmpty, MonotonicClock.now() < deadline { try? await Task.sleep(for: .milliseconds(20)) }
        // (Other warnings may come too: a receive buffer capped by the kernel.)
        let said = truncationWarnings()
        #expect(said.contains { $0.contains("(8192 bytes)") && $0.contains("bundle size at least as large as every sender's") },
                "warnings: \(warnings.withLock { $0 })")
        // Warned once at the first drop, again only at 10, 100, ...: never a flood.
        let later = try await small.statistics()
        #expect(said.count <= 1 + Int(log10(Double(later.core.droppedTruncated))), "\(said.count) warnings for \(later.core.droppedTruncated) drops")
    }

    @Test func aReceiverThatDoesNotEncryptWarnsOfAnEncryptingSender() async throws {
        let warnings = Mutex<[String]>([])
        let secret = [UInt8](repeating: 7, count: 32)
        let (gmsPID, sender, receiver) = try NetworkNamespace.runIsolated { () throws -> (Int32, QSMNode, QSMNode) in
            let secretFile = "/tmp/qsm-mismatch-\(getpid()).key"
            let handle = fopen(secretFile, "w")
            _ = secret.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, handle) }
            fclose(handle)
            defer { unlink(secretFile) }
            let (gms, address) = try startTestGMS(["--secret-file", secretFile])
            _ = Unmanaged.passRetained(gms)
            var configuration = QSMNodeConfiguration(gms: address)
            configuration.clusterSecret = secret
            configuration.nodeID = 1
            configuration.encrypt = true
            let sender = try QSMNode(configuration: configuration)
            configuration.nodeID = 2
            configuration.encrypt = false
            configuration.onWarning = { text in warnings.withLock { $0.append(text) } }
            let receiver = try QSMNode(configuration: configuration)
            for node in [sender, receiver] { try node.start() }
            return (gms.pid, sender, receiver)
        }
        defer {
            for node in [sender, receiver] { node.stop() }
            kill(gmsPID, SIGTERM)
        }
        let group = try sender.join("sealed")
        _ = try receiver.join("sealed")
        for node in [sender, receiver] { try await node.waitForMembers(2, in: group, timeout: .seconds(30)) }
        for index in 0..<20 { _ = sender.tryPublish([UInt8(index)], to: group) }
        let dropped = try await awaitStatistics(of: receiver, within: 30) { $0.machine.droppedUnauthenticated > 0 }
        #expect(dropped.machine.droppedUnauthenticated > 0)
        #expect(dropped.protocolStatistics.delivered == 0, "an encrypted message was delivered to a node that does not encrypt")
        func authenticationWarnings() -> [String] { warnings.withLock { $0 }.filter { $0.contains("failed authentication") } }
        let deadline = MonotonicClock.now().advanced(byNanoseconds: 10_000_000_000)
        while authenticationWarnings().isEmpty, MonotonicClock.now() < deadline { try? await Task.sleep(for: .milliseconds(20)) }
        #expect(authenticationWarnings().contains { $0.contains("--encrypt") && $0.contains("--secret-file") },
                "warnings: \(warnings.withLock { $0 })")
    }
}
