import Testing
@testable import QSMCore
@testable import QSMProtocol
@testable import QSMSimulation
import QSMHarness

/// The bounds the fuzzer showed were missing: a forged sequence number far ahead, or
/// packets from endless made-up senders, must not make a node track unbounded state.
struct HostilePacketTests {
    static let region = RegionID(1)

    static func member(maximumStreams: Int = 4) throws -> ProtocolNode {
        var configuration = ProtocolConfiguration()
        configuration.maximumStreams = maximumStreams
        let node = try ProtocolNode(id: NodeID(1), configuration: configuration, seed: 1)
        let members = [NodeID(1), NodeID(2)].map { NodeEntry(id: $0, address: SocketAddress(.loopback, port: UInt16(9000 + $0.value))) }
        let view = RegionView(id: region, viewNumber: 1, hierarchy: 0, groups: [GroupID(1)], members: members,
                              partitions: [Partition(members: members.map(\.id), leader: NodeID(1))],
                              regionLeader: NodeID(1), address: SocketAddress(IPv4Address(239, 1, 1, 1), port: 17000))
        node.installMembership(regions: [view], groups: [], now: Instant(nanoseconds: 1))
        return node
    }

    static func data(from sender: UInt64, sequence: UInt64) -> [UInt8] {
        ProtocolPacket.data(DataPacket(sender: NodeID(sender), region: region, regionView: 1, viewStartSequence: 1, sequence: sequence,
                                       group: GroupID(1), groupView: 1, groupSequence: sequence, fragmentIndex: 0, fragmentCount: 1,
                                       publishedAt: 0, payload: [1, 2, 3]), retransmitted: false).encoded()
    }

    @Test func anAbsurdSequenceNumberIsIgnoredAndCounted() throws {
        let node = try Self.member()
        node.receive(Self.data(from: 2, sequence: 1 << 62), now: Instant(nanoseconds: 2))
        #expect(node.statistics.implausibleDropped == 1)
        #expect(node.streams.values.allSatisfy { $0.missing.isEmpty && $0.outOfOrder.isEmpty })
        // Within the bound it is an ordinary gap, tracked as such.
        node.receive(Self.data(from: 2, sequence: 100), now: Instant(nanoseconds: 3))
        #expect(node.streams[StreamKey(sender: NodeID(2), region: Self.region)]?.missing.count == 99)
    }

    @Test func aSenderStatusFarAheadMarksAtMostTheBound() throws {
        let node = try Self.member()
        let status = ProtocolPacket.senderStatus(SenderStatusPacket(sender: NodeID(2), region: Self.region, regionView: 1,
                                                                    viewStartSequence: 1, maximumSequence: .max)).encoded()
        node.receive(status, now: Instant(nanoseconds: 2))
        let stream = try #require(node.streams[StreamKey(sender: NodeID(2), region: Self.region)])
        #expect(stream.missing.count == node.configuration.maximumSequenceJump)
        #expect(node.statistics.implausibleDropped == 1)
    }

    @Test func madeUpSendersCannotOpenMoreThanTheStreamLimit() throws {
        let node = try Self.member(maximumStreams: 4)
        for sender in 100..<110 { node.receive(Self.data(from: UInt64(sender), sequence: 1), now: Instant(nanoseconds: 2)) }
        #expect(node.streams.count == 4)
        #expect(node.statistics.streamLimitDropped == 6)
        #expect(node.statistics.notOwedDropped == 0)
        // Senders that already have a stream still get through at the limit.
        node.receive(Self.data(from: 100, sequence: 2), now: Instant(nanoseconds: 3))
        #expect(node.statistics.delivered == 5)
    }
}
