import Testing
@testable import QSMProtocol

/// What `cacheHintTests` recorded (only that test sets it: a C function pointer cannot
/// capture, so the hint writes here).
nonisolated(unsafe) private var hinted: [UnsafeRawPointer?] = []

/// The cache hint a driver may give a protocol node (`ProtocolNode.cacheHint`): before a
/// data packet is decoded, the node names the delivery stream it will update, read from
/// the packet's fixed header and the tables without a retain.
@Suite struct CacheHintTests {
    typealias Fixture = SenderCrashRecoveryTests

    /// Every multicast data packet after the stream's first delivery names that stream's
    /// object; the first (no stream yet) and retransmissions (another header) name
    /// nothing. Deliveries are as without the hint.
    @Test func eachDataPacketNamesItsDeliveryStream() throws {
        let node = try OutOfOrderHoldingTests.node(survivorAgreement: false)
        node.cacheHint = { hinted.append($0) }
        defer { hinted = [] }
        for sequence: UInt64 in 1...20 {
            node.receive(Fixture.data(from: 9, view: 1, viewStart: 1, sequence: sequence, retransmitted: sequence == 7),
                         now: Fixture.ms(2))
        }
        var delivered: [UInt64] = []
        while let delivery = node.takeDelivery() { delivered.append(delivery.groupSequence) }
        #expect(delivered == Array(1...20))
        let found = node.lastDelivered.stream(for: DeliveryKey(sender: NodeID(9), group: Fixture.group))
        let stream = try #require(found)
        let address = UnsafeRawPointer(Unmanaged.passUnretained(stream).toOpaque())
        #expect(hinted.count == 18, "packets 2-20 less the retransmission")
        #expect(hinted.allSatisfy { $0 == address })
    }

    /// The header read agrees with the decoder for data packets of every field size, and
    /// names nothing for other kinds, for retransmissions, and for short or random bytes.
    @Test(arguments: UInt64(1)...20) func theHeaderReadAgreesWithTheDecoder(seed: UInt64) throws {
        var random = SplitMix64(seed: seed)
        for _ in 0..<50 {
            let data = DataPacket(sender: NodeID(random.next()), region: RegionID(random.next()), regionView: random.next() | 1,
                                  viewStartSequence: 1, sequence: 1 + random.next() % 1000,
                                  group: GroupID(UInt32(truncatingIfNeeded: random.next())), groupView: random.next(),
                                  groupSequence: random.next(), fragmentIndex: 0, fragmentCount: 1,
                                  publishedAt: Int64(bitPattern: random.next()),
                                  payload: ArraySlice((0..<Int(random.next() % 40)).map { _ in UInt8(truncatingIfNeeded: random.next()) }))
            let bytes = ProtocolPacket.data(data, retransmitted: false).encoded()
            let key = bytes.withUnsafeBytes { ProtocolPacket.deliveryKey(of: $0) }
            #expect(key == DeliveryKey(sender: data.sender, group: data.group))
            let again = ProtocolPacket.data(data, retransmitted: true).encoded()
            #expect(again.withUnsafeBytes { ProtocolPacket.deliveryKey(of: $0) } == nil)
            for cut in [0, 1, ProtocolPacket.groupOffset, ProtocolPacket.groupOffset + 3] {
                #expect(Array(bytes.prefix(cut)).withUnsafeBytes { ProtocolPacket.deliveryKey(of: $0) } == nil)
            }
            let noise = (0..<Int(random.next() % 100)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
            if let key = noise.withUnsafeBytes({ ProtocolPacket.deliveryKey(of: $0) }) {
                #expect(noise[0] == PacketKind.data.rawValue && noise.count >= ProtocolPacket.groupOffset + 4, "\(key)")
            }
        }
    }
}
