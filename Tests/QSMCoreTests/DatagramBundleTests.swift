import Testing
@testable import QSMProtocol
import QSMCore
@testable import QSMSimulation

/// Packets ready together for one address share a datagram (`DatagramBundle`); each keeps
/// its own meaning, a lone packet goes plain and at once, and a bundle that does not add
/// up is counted and never acted on.
@Suite struct DatagramBundleTests {
    static let address = QSMSocketAddress(.loopback, port: 5)
    static let regionAddress = QSMSocketAddress(IPv4Address(239, 1, 1, 1), port: 9)

    /// Node `id` alone (or with node 1 as the sender) in one region of group "g" (with
    /// `secret`: authenticated).
    static func machine(_ id: UInt64, bundleBytes: Int = 1_472, secret: [UInt8]? = nil,
                        window: WindowFlowControl = WindowFlowControl()) throws -> (NodeMachine, GroupName) {
        var configuration = NodeMachineConfiguration(id: NodeID(id), address: QSMSocketAddress(.loopback, port: UInt16(4 + id)))
        configuration.bundleBytes = bundleBytes
        configuration.flowControl = window
        if let secret {
            configuration.clusterSecret = secret
            configuration.entropy = [UInt8](repeating: UInt8(id), count: 32)
        }
        // Views are installed by hand here, with no rings to say they are in everywhere:
        // no pause for them (that rule has tests of its own, `ViewChangePauseTests`).
        configuration.protocolConfiguration.viewChangePauseLimit = .zero
        let machine = try NodeMachine(configuration: configuration)
        machine.start(now: .zero)
        let group = GroupName("g")!
        machine.join(group, now: .zero)
        let members = [NodeEntry(id: NodeID(1), address: QSMSocketAddress(.loopback, port: 5)),
                       NodeEntry(id: NodeID(2), address: QSMSocketAddress(.loopback, port: 6))]
        let region = RegionView(id: RegionID(1), viewNumber: 1, hierarchy: 0, groups: [GroupID(1)], members: members,
                                partitions: [Partition(members: [NodeID(1), NodeID(2)], leader: NodeID(1))], regionLeader: NodeID(1),
                                address: regionAddress)
        let view = GroupView(id: GroupID(1), name: group, viewNumber: 1, members: [NodeID(1), NodeID(2)], mappingVersion: 1,
                             regions: [RegionReference(id: RegionID(1), viewNumber: 1, address: regionAddress)], hybridAddress: nil)
        try NodeMachineSpecTests().registerAndInstall(machine, regions: [region], groups: [view], secret: secret)
        return (machine, group)
    }

    /// Every datagram the machine has ready, to the region's address, as bytes.
    static func drain(_ machine: NodeMachine) -> [[UInt8]] {
        var datagrams: [[UInt8]] = []
        var buffer = [UInt8](repeating: 0, count: 8_192)
        while let out = buffer.withUnsafeMutableBytes({ machine.pollDatagram(into: $0, now: .zero) }) {
            if out.destination == regionAddress { datagrams.append(Array(buffer[0..<out.length])) }
        }
        return datagrams
    }

    static func packets(of datagram: [UInt8]) -> [ProtocolPacket] {
        datagram.withUnsafeBytes { bytes in
            if bytes[0] == PacketKind.bundle.rawValue {
                var packets: [ProtocolPacket] = []
                #expect(DatagramBundle.forEachPacket(in: bytes) { packets.append(try! ProtocolPacket(decoding: $0)) })
                return packets
            }
            return [try! ProtocolPacket(decoding: bytes)]
        }
    }

    @Test func readyPacketsShareADatagramAndALonePacketGoesPlain() throws {
        let (sender, group) = try Self.machine(1)
        for index in 0..<40 { #expect(sender.publish([UInt8](repeating: UInt8(index), count: 100), to: group, now: .zero) == .accepted) }
        let datagrams = Self.drain(sender)
        // 100-byte messages take 179 bytes each in a bundle (77 of header, 2 of length): 8 fit in 1,472.
        #expect(datagrams.count == 5)
        #expect(datagrams.allSatisfy { $0.count <= 1_472 && $0[0] == PacketKind.bundle.rawValue })
        let sequences = datagrams.flatMap(Self.packets).compactMap { packet -> UInt64? in
            if case .data(let data, false) = packet { return data.sequence } else { return nil }
        }
        #expect(sequences == Array(1...40))
        #expect(sender.statistics.bundlesSent == 5 && sender.statistics.packetsBundled == 40)

        // A lone message is written at once, as a plain packet.
        #expect(sender.publish([UInt8](repeating: 9, count: 100), to: group, now: .zero) == .accepted)
        let lone = Self.drain(sender)
        #expect(lone.count == 1 && lone[0][0] == PacketKind.data.rawValue)

        // Off: one packet per datagram.
        let (plain, plainGroup) = try Self.machine(1, bundleBytes: 0)
        for _ in 0..<10 { _ = plain.publish([UInt8](repeating: 1, count: 100), to: plainGroup, now: .zero) }
        let unbundled = Self.drain(plain)
        #expect(unbundled.count == 10 && unbundled.allSatisfy { $0[0] == PacketKind.data.rawValue })
    }

    /// Messages too large to share a datagram go plain, one each; in a mix of sizes, one
    /// that cannot join the datagram being written starts the next: every message once,
    /// in order, no datagram over the bundle size.
    @Test func aPacketThatCannotJoinStartsTheNextDatagram() throws {
        let (sender, group) = try Self.machine(1)
        for index in 0..<6 { _ = sender.publish([UInt8](repeating: UInt8(index), count: 1000), to: group, now: .zero) }
        let large = Self.drain(sender)
        #expect(large.count == 6 && large.allSatisfy { $0[0] == PacketKind.data.rawValue && $0.count <= 1_472 })
        #expect(sender.statistics.bundlesSent == 0)

        let sizes = [1000, 100, 100, 1000, 100, 1000, 1000, 100, 600, 600, 600, 100]
        for (index, size) in sizes.enumerated() {
            #expect(sender.publish([UInt8](repeating: UInt8(index), count: size), to: group, now: .zero) == .accepted)
        }
        let mixed = Self.drain(sender)
        #expect(mixed.allSatisfy { $0.count <= 1_472 })
        let sent = mixed.flatMap(Self.packets).compactMap { packet -> (UInt64, Int)? in
            if case .data(let data, false) = packet { return (data.sequence, data.payload.count) } else { return nil }
        }
        #expect(sent.map(\.0) == Array(7...UInt64(6 + sizes.count)))
        #expect(sent.map(\.1) == sizes)
        // In a bundle a message takes 79 bytes more, a bundle 3: 1000 100 100 (1,440) |
        // 1000 100 | 1000 | 1000 100 | 600 600 | 600 100.
        #expect(mixed.count == 6)
    }

    @Test func aBundlesPacketsAreReceivedEachInTurn() throws {
        let (sender, group) = try Self.machine(1)
        let (receiver, _) = try Self.machine(2)
        for index in 0..<40 { _ = sender.publish([UInt8](repeating: UInt8(index), count: 100), to: group, now: .zero) }
        for datagram in Self.drain(sender) {
            datagram.withUnsafeBytes { receiver.datagramReceived($0, from: Self.address, now: .zero) }
        }
        var payloads: [UInt8] = []
        while let delivery = receiver.pollDelivery() { payloads.append(delivery.payload.first!) }
        #expect(payloads == (0..<40).map(UInt8.init))
        #expect(receiver.statistics.bundlesReceived == 5 && receiver.statistics.droppedMalformedBundles == 0)
    }

    /// Bundles whose lengths do not add up, that hold nothing, hold an empty packet or
    /// another bundle, or carry trailing bytes: each counted, none acted on in part.
    @Test func aMalformedBundleIsCountedAndNoneOfItIsActedOn() throws {
        let (receiver, _) = try Self.machine(2)
        let status = ProtocolPacket.senderStatus(SenderStatusPacket(sender: NodeID(1), region: RegionID(1), regionView: 1,
                                                                    viewStartSequence: 1, maximumSequence: 3)).encoded()
        func bundle(_ parts: [[UInt8]], count: Int? = nil) -> [UInt8] {
            var bytes: [UInt8] = [PacketKind.bundle.rawValue, UInt8((count ?? parts.count) >> 8), UInt8((count ?? parts.count) & 0xFF)]
            for part in parts { bytes += [UInt8(part.count >> 8), UInt8(part.count & 0xFF)] + part }
            return bytes
        }
        var nested = bundle([status])
        nested = bundle([status, nested])
        let bad: [[UInt8]] = [
            bundle([], count: 0), bundle([status], count: 2), bundle([status]) + [0], Array(bundle([status]).dropLast()),
            bundle([status, []]), nested, [PacketKind.bundle.rawValue, 0],
        ]
        for (index, datagram) in bad.enumerated() {
            datagram.withUnsafeBytes { receiver.datagramReceived($0, from: Self.address, now: .zero) }
            #expect(receiver.statistics.droppedMalformedBundles == index + 1, "bundle \(index)")
        }
        #expect(receiver.protocolNode.statistics == ProtocolStatistics())
        // A well-formed bundle whose second packet is garbage: the first is acted on, the
        // second counted as malformed by the protocol.
        bundle([status, [0xEE, 1, 2]]).withUnsafeBytes { receiver.datagramReceived($0, from: Self.address, now: .zero) }
        #expect(receiver.statistics.bundlesReceived == 1)
        #expect(receiver.protocolNode.statistics.malformedDropped == 1)
    }

    /// Swarm-style simulations with bundling on, off and at odd sizes keep every guarantee.
    /// (300 bytes: just room for two of these packets. At 256 none ever shared a
    /// datagram; only tokens' redundant copies, bundles of one, were once counted.)
    @Test(arguments: [0, 300, 1_472, 8_000]) func simulationsKeepEveryGuaranteeWhateverTheBundleSize(bundleBytes: Int) throws {
        var scenario = NodeMachineSpecTests.scenario(12, seconds: 1, rate: 2_000)
        scenario.senders = 3
        scenario.messageBytes = 60
        scenario.bundleBytes = bundleBytes
        scenario.burstyLossNodes = [4]
        let simulator = try Simulator(scenario: scenario, seed: 11)
        let result = simulator.run()
        #expect(result.violations.isEmpty, "\(result.violations.prefix(3))")
        let bundled = simulator.debugMachines.map(\.statistics.packetsBundled).reduce(0, +)
        #expect(bundleBytes == 0 ? bundled == 0 : bundled > 0)
        #expect(simulator.debugMachines.map(\.statistics.droppedMalformedBundles).reduce(0, +) == 0)
    }
}

/// The kernel loops a node's multicast back to it: those packets are ignored before
/// decoding and counted, and a peer's identical-looking packet is not.
@Suite struct OwnMulticastTests {
    static func data(from sender: UInt64) -> [UInt8] {
        ProtocolPacket.data(DataPacket(sender: NodeID(sender), region: RegionID(1), regionView: 1, viewStartSequence: 1, sequence: 1,
                                       group: GroupID(1), groupView: 1, groupSequence: 1, fragmentIndex: 0, fragmentCount: 1,
                                       publishedAt: 0, payload: [7, 7, 7]), retransmitted: false).encoded()
    }

    @Test func ownLoopedBackDataIsIgnoredAndCounted() throws {
        let (machine, _) = try DatagramBundleTests.machine(2)
        Self.data(from: 2).withUnsafeBytes { machine.datagramReceived($0, from: DatagramBundleTests.address, now: .zero) }
        #expect(machine.protocolNode.statistics.ownMulticastIgnored == 1)
        #expect(machine.pollDelivery() == nil)
        #expect(machine.protocolNode.statistics.duplicatesDropped == 0)
        Self.data(from: 1).withUnsafeBytes { machine.datagramReceived($0, from: DatagramBundleTests.address, now: .zero) }
        #expect(machine.protocolNode.statistics.ownMulticastIgnored == 1)
        #expect(machine.pollDelivery()?.payload == [7, 7, 7])
    }
}

extension DatagramBundleTests {
    /// A ring that lost its token sends the next one twice; the second copy goes in a
    /// datagram of its own, as a bundle of one, so that it is a few bytes longer than the
    /// first and segmentation offload (which joins equal-length datagrams to one address
    /// into one send) never joins the two: one drop must not take both. Whatever the
    /// bundle size, `--bundle-bytes 0` included.
    @Test(arguments: [0, 1_472])
    func aTokensRedundantCopyNeverMatchesTheOriginal(bundleBytes: Int) throws {
        let (leader, _) = try Self.machine(1, bundleBytes: bundleBytes)
        let member = QSMSocketAddress(.loopback, port: 6)
        var buffer = [UInt8](repeating: 0, count: 8_192)
        func datagramsToMember(at now: Instant) -> [[UInt8]] {
            leader.tick(now: now)
            var datagrams: [[UInt8]] = []
            while let out = buffer.withUnsafeMutableBytes({ leader.pollDatagram(into: $0, now: now) }) {
                if out.destination == member { datagrams.append(Array(buffer[0..<out.length])) }
            }
            return datagrams
        }
        _ = datagramsToMember(at: Instant(nanoseconds: 10_000_000))
        // The token never comes back: the round times out and the next goes twice.
        let copies = datagramsToMember(at: Instant(nanoseconds: 500_000_000)).filter { datagram in
            Self.packets(of: datagram).contains { if case .token = $0 { true } else { false } }
        }
        try #require(copies.count == 2, "\(copies.map(\.count))")
        // The copy: a bundle of the token alone. The original: the same token, plain, or
        // bundled with what else was ready (with room for bundles).
        #expect(copies[1][0] == PacketKind.bundle.rawValue)
        let token = try #require(Self.packets(of: copies[1]).first)
        #expect(Self.packets(of: copies[1]) == [token])
        #expect(Self.packets(of: copies[0]).contains(token))
        if bundleBytes == 0 { #expect(copies[0][0] == PacketKind.partitionToken.rawValue) }
        #expect(copies[0].count != copies[1].count)
    }
}
