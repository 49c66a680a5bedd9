import QSMCore
import QSMHarness

/// The protocol's decoders and state machine under hostile packets. A small in-memory
/// cluster (5 nodes, 2 partitions, 2 senders, some loss) produces every kind of valid
/// packet; mutations of them, and random bytes, are fed to a member node, which is
/// ticked and drained as the engine would. Checked after every input: no trap (the
/// process would die), bounded time, bounded memory, and output still produced.
final class ProtocolFuzzTarget {
    static let region = RegionID(1)
    static let group = GroupID(1)
    let configuration: ProtocolConfiguration
    private(set) var corpus: [[UInt8]] = []
    private var victim: ProtocolNode
    private let seed: UInt64
    private var now = Instant(nanoseconds: 1_000_000_000)
    private let regions: [RegionView]
    private let groups: [GroupView]

    init(seed: UInt64) throws {
        var configuration = ProtocolConfiguration()
        // Smaller bounds than the defaults, so that a case costs microseconds while every
        // bound is still reached many times over.
        configuration.windowMessages = 1_024
        configuration.maximumSequenceJump = 2_048
        configuration.maximumStreams = 256
        configuration.maximumOutOfOrderPackets = 4_096
        configuration.maximumPendingRetransmissions = 1_024
        self.configuration = configuration
        let members = (1...5).map { NodeEntry(id: NodeID(UInt64($0)), address: QSMSocketAddress(.loopback, port: UInt16(9000 + $0))) }
        let region = RegionView(id: Self.region, viewNumber: 1, hierarchy: 0, groups: [Self.group], members: members,
                                partitions: [Partition(members: [1, 2, 3].map { NodeID($0) }, leader: NodeID(1)),
                                             Partition(members: [4, 5].map { NodeID($0) }, leader: NodeID(4))],
                                regionLeader: NodeID(1), address: QSMSocketAddress(IPv4Address(239, 1, 1, 1), port: 17000))
        let group = GroupView(id: Self.group, name: GroupName("fuzz")!, viewNumber: 1, members: members.map(\.id),
                              mappingVersion: 1, regions: [RegionReference(id: Self.region, viewNumber: 1, address: region.address)],
                              hybridAddress: nil)
        regions = [region]
        groups = [group]
        self.seed = seed
        victim = try ProtocolNode(id: NodeID(3), configuration: configuration, seed: seed)
        victim.installMembership(regions: regions, groups: groups, now: now)
        corpus = try Self.buildCorpus(configuration: configuration, regions: regions, groups: groups, seed: seed)
    }

    /// Runs the cluster for a simulated 400 ms with 5% loss and records every datagram.
    private static func buildCorpus(configuration: ProtocolConfiguration, regions: [RegionView], groups: [GroupView],
                                    seed: UInt64) throws -> [[UInt8]] {
        var random = SplitMix64(seed: seed ^ 0x5EED)
        let nodes = try (1...5).map { try ProtocolNode(id: NodeID(UInt64($0)), configuration: configuration, seed: UInt64($0)) }
        var now = Instant(nanoseconds: 1_000_000_000)
        for node in nodes { node.installMembership(regions: regions, groups: groups, now: now) }
        var corpus: [[UInt8]] = []
        var seenKinds: [UInt8: Int] = [:]
        for step in 0..<400 {
            now = now.advanced(by: .milliseconds(1))
            if step < 300 {
                for sender in [0, 4] {
                    // Mostly small messages, some long enough to be fragmented.
                    let size = random.next() % 10 == 0 ? 3_000 : 16 + Int(random.next() % 500)
                    _ = nodes[sender].publish(group: group, payload: [UInt8](repeating: UInt8(step & 0xFF), count: size), now: now)
                }
            }
            for node in nodes {
                node.inputCaughtUp(now: now)
                node.tick(now: now)
                while let datagram = node.nextDatagram(now: now) {
                    // Keep a sample of every kind, not a million data packets.
                    let kind = datagram.bytes.first ?? 0
                    if seenKinds[kind, default: 0] < 200 {
                        seenKinds[kind, default: 0] += 1
                        corpus.append(datagram.bytes)
                    }
                    let targets: [ProtocolNode]
                    switch datagram.destination {
                    case .node(let id): targets = nodes.filter { $0.id == id }
                    case .region, .group: targets = nodes.filter { $0.id != node.id }
                    }
                    for target in targets where datagram.isControl || random.next() % 20 != 0 {
                        target.receive(datagram.bytes, now: now)
                    }
                }
                _ = node.takeDeliveries()
            }
        }
        return corpus
    }

    /// Counters of the current victim, added to `outcome` (call at the end).
    func finish(_ outcome: inout Outcome) {
        outcome.malformed += victim.statistics.malformedDropped
        outcome.implausible += victim.statistics.implausibleDropped + victim.statistics.streamLimitDropped
    }

    struct Outcome {
        var malformed = 0
        var implausible = 0
        var deliveries = 0
        var outputs = 0
        var slowestMicroseconds: Int64 = 0
    }

    /// Feeds one input; ticks and drains the victim now and then as the engine would.
    func feed(_ bytes: [UInt8], caseNumber: Int, into outcome: inout Outcome) -> String? {
        if caseNumber % 50_000 == 0 {
            // A fresh victim now and then: hostile state also has to be built from scratch.
            outcome.malformed += victim.statistics.malformedDropped
            outcome.implausible += victim.statistics.implausibleDropped + victim.statistics.streamLimitDropped
            victim = try! ProtocolNode(id: NodeID(3), configuration: configuration, seed: seed &+ UInt64(caseNumber))
            victim.installMembership(regions: regions, groups: groups, now: now)
        }
        let started = MonotonicClock.now()
        now = now.advanced(by: .microseconds(200))
        victim.receive(bytes, now: now)
        if caseNumber % 16 == 0 {
            victim.inputCaughtUp(now: now)
            victim.tick(now: now)
            var drained = 0
            while let _ = victim.nextDatagram(now: now) {
                drained += 1
                // Output is bounded by the configured queues; more means a runaway.
                if drained > 100_000 { return "case \(caseNumber): the victim produced over 100,000 datagrams at once" }
            }
            outcome.outputs += drained
        }
        outcome.deliveries += victim.takeDeliveries().count
        let elapsed = MonotonicClock.now().nanoseconds(since: started) / 1000
        outcome.slowestMicroseconds = max(outcome.slowestMicroseconds, elapsed)
        if elapsed > 1_000_000 { return "case \(caseNumber) took \(elapsed) us (a hang)" }
        // Memory: bounded by the out-of-order, unknown and cache bounds, whatever comes in.
        let bound = (configuration.maximumOutOfOrderPackets + configuration.maximumUnknownPackets) * 65_536 + (64 << 20)
        if victim.heldBytes > bound { return "case \(caseNumber): victim holds \(victim.heldBytes) bytes, over \(bound)" }
        return nil
    }
}
