#if canImport(Glibc)
import Glibc
#endif
import QSMCore  // the public API only
import QSMHarness
import Testing

/// What the simulator covers and the engine tests did not: the GMS in hierarchies mode
/// with groups that overlap irregularly (so several regions per group), a hybrid group
/// (one multicast address of its own, sent to once for all its regions), a sender that
/// publishes without joining, and messages of 100 bytes, 8 KB and 1 MB (hundreds of
/// fragments each), all over real sockets through the public API.
@Suite(.enabled(if: NetworkNamespace.isAvailable, "needs CAP_SYS_ADMIN to create a private network namespace (run as root)"))
struct IrregularOverlapProcessTests {
    /// The payload of message `index` to `group`: its index, then bytes derived from the
    /// group, the index and the offset, so that a fragment out of place shows.
    static func payload(group: UInt8, index: Int, size: Int) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: size)
        withUnsafeBytes(of: UInt32(index).littleEndian) { for (offset, byte) in $0.enumerated() where offset < size { bytes[offset] = byte } }
        for offset in min(4, size)..<size { bytes[offset] = UInt8(truncatingIfNeeded: offset &* 31 &+ index &* 7 &+ Int(group)) }
        return bytes
    }

    /// Whether `bytes` is message `index` to `group` exactly, of `size` bytes.
    static func check(_ bytes: UnsafeRawBufferPointer, group: UInt8, index: Int, size: Int) -> Bool {
        guard bytes.count == size else { return false }
        var reference = [UInt8](repeating: 0, count: 4)
        withUnsafeBytes(of: UInt32(index).littleEndian) { for (offset, byte) in $0.enumerated() { reference[offset] = byte } }
        for offset in 0..<min(4, size) where bytes[offset] != reference[offset] { return false }
        for offset in min(4, size)..<size where bytes[offset] != UInt8(truncatingIfNeeded: offset &* 31 &+ index &* 7 &+ Int(group)) {
            return false
        }
        return true
    }

    /// Sizes of the messages published to each group, in order: mostly small, some 8 KB,
    /// and 1 MB ones in between.
    static let sizes: [Int] = (0..<60).map { index in
        index % 20 == 10 ? 1 << 20 : index % 3 == 0 ? 8_192 : 100
    }

    /// Full mode makes a region of each set of groups that nodes join: h spans three
    /// regions and is sent to once, at its own address. Hierarchies mode finds no perfect
    /// hierarchy among these groups and gives each group a region of its own: node 2 is
    /// in three regions, each with its own ring and sequence.
    @Test(arguments: ["full", "hierarchies"])
    func irregularOverlapHybridGroupAndLargeMessages(mode: String) async throws {
        // Who joins what. Node 1 publishes to a (a member), and to b and h without
        // joining them; node 3 publishes to c. h is hybrid. Nodes 2 and 6, and 5 and 7,
        // join the same groups (a region of two in full mode); no other two do.
        let joins: [Int: [String]] = [
            1: ["a"], 2: ["a", "b", "h"], 3: ["a", "b", "c"], 4: ["a", "c", "h"], 5: ["b", "c", "h"],
            6: ["a", "b", "h"], 7: ["b", "c", "h"],
        ]
        // Authenticated (the default); encrypted too in full mode.
        let secret = "irregular overlap \(mode)"
        let secretPath = try GMSAuthenticationProcessTests.secretFile(secret)
        defer { unlink(secretPath) }
        let (gmsPID, nodes) = try NetworkNamespace.runIsolated { () throws -> (Int32, [Int: QSMNode]) in
            let (gms, address) = try startTestGMS(["--secret-file", secretPath, "--mode", mode, "--hybrid", "h", "--partition-size", "2"])
            var nodes: [Int: QSMNode] = [:]
            for id in joins.keys.sorted() {
                var configuration = QSMNodeConfiguration(gms: address)
                configuration.nodeID = UInt64(id)
                configuration.clusterSecret = Array(secret.utf8)
                configuration.encrypt = mode == "full"
                let node = try QSMNode(configuration: configuration)
                try node.start()
                nodes[id] = node
            }
            _ = Unmanaged.passRetained(gms)
            return (gms.pid, nodes)
        }
        defer {
            for node in nodes.values { node.stop() }
            kill(gmsPID, SIGTERM)
        }
        for (id, groups) in joins { for group in groups { _ = try nodes[id]!.join(group) } }
        let names = ["a", "b", "c", "h"].map { GroupName($0)! }
        nodes[1]!.publishWithoutJoining(names[1])
        nodes[1]!.publishWithoutJoining(names[3])
        let members = Dictionary(uniqueKeysWithValues: names.map { name in
            (name, joins.filter { $0.value.contains(name.description) }.map(\.key).sorted())
        })
        for name in names {
            for id in members[name]! { try await nodes[id]!.waitForMembers(members[name]!.count, in: name, timeout: .seconds(30)) }
        }
        // Publishers: node 1 to a, b and h; node 3 to c. The group's index marks its bytes.
        let publishers: [(node: Int, group: Int)] = [(1, 0), (1, 1), (1, 3), (3, 2)]
        for (node, group) in publishers {
            try await nodes[node]!.waitForMembers(members[names[group]]!.count, in: names[group], timeout: .seconds(30))
        }

        // Every member reads its deliveries and checks each against what was sent.
        struct Received: Sendable { var counts: [Int: Int] = [:]; var wrong: [String] = [] }
        let expected = Dictionary(uniqueKeysWithValues: joins.keys.map { id in
            (id, publishers.filter { members[names[$0.group]]!.contains(id) }.count * Self.sizes.count)
        })
        var readers: [Int: Task<Received, Never>] = [:]
        for (id, node) in nodes {
            let stream = node.deliveries()
            let total = expected[id]!
            readers[id] = Task {
                var received = Received()
                var seen = 0
                for await delivery in stream {
                    guard let group = names.firstIndex(of: delivery.group) else {
                        received.wrong.append("a delivery of unknown group \(delivery.group)")
                        continue
                    }
                    let index = received.counts[group, default: 0]
                    received.counts[group] = index + 1
                    let size = index < Self.sizes.count ? Self.sizes[index] : -1
                    let good = delivery.withPayload { Self.check($0, group: UInt8(group), index: index, size: size) }
                    if !good { received.wrong.append("\(names[group]) #\(index): \(delivery.payloadCount) bytes, not as sent") }
                    seen += 1
                    if seen == total { break }
                }
                return received
            }
        }
        try await within(seconds: 120) {
            for index in 0..<Self.sizes.count {
                for (node, group) in publishers {
                    try? await nodes[node]!.publish(Self.payload(group: UInt8(group), index: index, size: Self.sizes[index]),
                                                    to: names[group])
                }
            }
        }
        for id in nodes.keys.sorted() {
            let reader = readers[id]!
            let received = try await within(seconds: 120) { await reader.value }
            let want = Dictionary(uniqueKeysWithValues: publishers.filter { members[names[$0.group]]!.contains(id) }
                .map { ($0.group, Self.sizes.count) })
            #expect(received.counts == want, "node \(id)")
            #expect(received.wrong.isEmpty, "node \(id): \(received.wrong.prefix(5))")
        }
        if mode == "full" {
            // The hybrid group's messages went to its own address, once for its regions.
            let publisher = try await nodes[1]!.statistics()
            #expect(publisher.protocolStatistics.hybridTransmissions >= Self.sizes.count)
            #expect(try await nodes[2]!.statistics().regions == 1)
        } else {
            #expect(try await nodes[2]!.statistics().regions == 3)
        }
        // Nothing is left unacknowledged.
        try await nodes[1]!.waitForAcknowledgements(timeout: .seconds(60))
        try await nodes[3]!.waitForAcknowledgements(timeout: .seconds(60))
    }
}
