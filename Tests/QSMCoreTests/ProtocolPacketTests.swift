import Testing
@testable import QSMCore
@testable import QSMProtocol
@testable import QSMSimulation
import QSMHarness

@Suite struct ProtocolPacketTests {
    static func randomPacket(_ random: inout SplitMix64) -> ProtocolPacket {
        func u64() -> UInt64 { random.next() }
        switch random.next() % 6 {
        case 5:
            let payload = (0..<Int(random.next() % 100)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
            let headers = (0..<Int(1 + random.next() % 4)).map { _ in
                RegionHeader(region: RegionID(u64()), regionView: u64(), viewStartSequence: 1, sequence: 1 + random.next() % 99)
            }
            return .hybridData(DataPacket(sender: NodeID(u64()), region: headers[0].region, regionView: headers[0].regionView,
                                          viewStartSequence: headers[0].viewStartSequence, sequence: headers[0].sequence,
                                          group: GroupID(7), groupView: 3, groupSequence: 4, fragmentIndex: 0, fragmentCount: 1,
                                          publishedAt: 5, payload: payload[...]), headers: headers)
        case 0:
            let count = UInt16(1 + random.next() % 4)
            let payload = (0..<Int(random.next() % 200)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
            let sequence = 1 + random.next() % 1000
            // An original, a retransmission, or one multicast to the region.
            let way = random.next() % 3
            return .data(DataPacket(sender: NodeID(u64()), region: RegionID(u64()), regionView: u64(),
                                    viewStartSequence: 1 + random.next() % sequence, sequence: sequence,
                                    group: GroupID(UInt32(truncatingIfNeeded: u64())), groupView: u64(), groupSequence: u64(),
                                    fragmentIndex: UInt16(random.next() % UInt64(count)), fragmentCount: count,
                                    publishedAt: Int64(bitPattern: u64()), payload: payload[...], repairedToRegion: way == 2),
                         retransmitted: way > 0)
        case 1:
            let records = (0..<Int(random.next() % 5)).map { _ in
                TokenRecord(sender: NodeID(u64()), contiguous: u64(), maximumSeen: u64(), stable: u64(),
                            coverage: UInt32(truncatingIfNeeded: u64()))
            }
            return .token(TokenPacket(kind: random.next() % 2 == 0 ? .partitionToken : .regionToken, region: RegionID(u64()),
                                      regionView: u64(), partition: UInt32(truncatingIfNeeded: u64()), round: u64(),
                                      startedAt: Int64(bitPattern: u64()), records: records))
        case 2:
            return .acknowledgement(AcknowledgementPacket(region: RegionID(u64()), sender: NodeID(u64()), stable: u64()))
        case 3:
            let kinds: [PacketKind] = [.pull, .negativeAcknowledgement, .notHeld, .regionRepair, .partitionPush]
            return .request(RequestPacket(kind: kinds[Int(random.next() % UInt64(kinds.count))], sender: NodeID(u64()),
                                          region: RegionID(u64()), requester: NodeID(u64()),
                                          sequences: (0..<Int(random.next() % 10)).map { _ in u64() }))
        default:
            return .senderStatus(SenderStatusPacket(sender: NodeID(u64()), region: RegionID(u64()), regionView: u64(),
                                                    viewStartSequence: u64(), maximumSequence: u64()))
        }
    }

    @Test func packetsRoundTripAndEveryTruncationIsRefused() {
        for seed in UInt64(1)...400 {
            var random = SplitMix64(seed: seed)
            let packet = Self.randomPacket(&random)
            let bytes = packet.encoded()
            let decoded = bytes.withUnsafeBytes { raw in Result { () throws(WireError) in try ProtocolPacket(decoding: raw) } }
            #expect((try? decoded.get()) == packet, "seed \(seed)")
            for cut in 0..<bytes.count {
                let prefix = bytes[0..<cut].withUnsafeBytes { raw in Result { () throws(WireError) in try ProtocolPacket(decoding: raw) } }
                if case .success = prefix {
                    Issue.record("seed \(seed): a \(cut)-byte prefix of \(bytes.count) decoded")
                    return
                }
            }
        }
    }

    @Test func onlyOriginalTransmissionsNameTheirSender() {
        let data = DataPacket(sender: NodeID(77), region: RegionID(1), regionView: 1, viewStartSequence: 1, sequence: 3,
                              group: GroupID(1), groupView: 1, groupSequence: 1, fragmentIndex: 0, fragmentCount: 1,
                              publishedAt: 0, payload: [1, 2][...])
        let status = SenderStatusPacket(sender: NodeID(78), region: RegionID(1), regionView: 1, viewStartSequence: 1, maximumSequence: 9)
        func origin(_ packet: ProtocolPacket) -> NodeID? { packet.encoded().withUnsafeBytes { ProtocolPacket.originalSender(of: $0) } }
        #expect(origin(.data(data, retransmitted: false)) == NodeID(77))
        #expect(origin(.senderStatus(status)) == NodeID(78))
        #expect(origin(.hybridData(data, headers: [RegionHeader(region: RegionID(1), regionView: 1, viewStartSequence: 1, sequence: 3)])) == NodeID(77))
        // A retransmission may come from a peer: its source address is not the sender's.
        #expect(origin(.data(data, retransmitted: true)) == nil)
        #expect(origin(.acknowledgement(AcknowledgementPacket(region: RegionID(1), sender: NodeID(5), stable: 1))) == nil)
        #expect([UInt8]([1, 0]).withUnsafeBytes { ProtocolPacket.originalSender(of: $0) } == nil)
    }

    @Test func hostileBytesAreCountedDropsAtANode() throws {
        let node = try ProtocolNode(id: NodeID(1), configuration: ProtocolConfiguration(), seed: 1)
        var random = SplitMix64(seed: 9)
        var sent = 0
        for _ in 0..<5000 {
            var bytes = (0..<Int(random.next() % 120)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
            if !bytes.isEmpty { bytes[0] = UInt8(1 + random.next() % 8) }  // plausible kinds, bogus bodies
            node.receive(bytes, now: Instant(nanoseconds: 1))
            sent += 1
        }
        let s = node.statistics
        // Every datagram was refused as malformed or dropped for an unknown region; none
        // was delivered and the node holds nothing it was not entitled to.
        #expect(s.delivered == 0)
        #expect(s.malformedDropped + s.unknownDropped + s.staleTokensDropped >= sent - 1024)
        #expect(node.heldBytes == 0)
        // A data packet claiming fragment 3 of 2, or a sequence before its view start, is malformed.
        let bad = ProtocolPacket.data(DataPacket(sender: NodeID(2), region: RegionID(1), regionView: 1, viewStartSequence: 9,
                                                 sequence: 5, group: GroupID(1), groupView: 1, groupSequence: 1,
                                                 fragmentIndex: 3, fragmentCount: 2, publishedAt: 0, payload: []), retransmitted: false)
        let before = node.statistics.malformedDropped
        node.receive(bad.encoded(), now: Instant(nanoseconds: 2))
        #expect(node.statistics.malformedDropped == before + 1)
    }
}
