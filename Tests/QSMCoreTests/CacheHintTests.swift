import Testing
@testable import QSMProtocol

/// What `cacheHintTests` recorded (only that test sets it: a C function pointer cannot
/// capture, so the hint writes here).
nonisolated(unsafe) private var hinted: [UnsafeRawPointer?] = []
/// What `removalsNameWhatLiesAhead` recorded, the same way.
nonisolated(unsafe) private var removalHints: [UnsafeRawPointer?] = []

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

    /// A cache removing its stable packets with a hint names, for each number walked, the
    /// pool entry of the packet `2 * hintDistance` numbers on (consecutive entries) and
    /// the array object of the payload `hintDistance` numbers on (checked against the
    /// arrays' own references), only for numbers held and not past the end; what is
    /// removed is as without it.
    @Test(arguments: [1, 3]) func removalsNameWhatLiesAhead(every step: Int) {
        let distance = Int(SequencedPackets.hintDistance)
        var withHint = SequencedPackets(), without = SequencedPackets()
        var arrays: [UInt64: [UInt8]] = [:]
        for sequence in stride(from: UInt64(1), through: 60, by: step) {
            let bytes = [UInt8](repeating: UInt8(truncatingIfNeeded: sequence), count: 100)
            arrays[sequence] = bytes
            let packet = DataPacket(sender: NodeID(9), region: SenderCrashRecoveryTests.region, regionView: 1,
                                    viewStartSequence: 1, sequence: sequence, group: SenderCrashRecoveryTests.group,
                                    groupView: 1, groupSequence: sequence, fragmentIndex: 0, fragmentCount: 1,
                                    publishedAt: 0, payload: ArraySlice(bytes))
            withHint.insert(packet)
            without.insert(packet)
        }
        removalHints = []
        defer { removalHints = [] }
        var removed: [UInt64] = [], removedWithout: [UInt64] = []
        withHint.removeThrough(45, hint: { removalHints.append($0) }) { removed.append($0.sequence) }
        without.removeThrough(45) { removedWithout.append($0.sequence) }
        #expect(removed == removedWithout)
        #expect(removed == Array(stride(from: UInt64(1), through: 45, by: step)))

        // Per number n walked (from the lowest held to 45, held or not): the entry of
        // n + 2d, then the payload of n + d, each if held and at most 45.
        var expectedPayloads: [UnsafeRawPointer] = []
        var expectedEntries = 0
        for number in UInt64(1)...45 {
            let far = number + UInt64(2 * distance), near = number + UInt64(distance)
            if far <= 45, arrays[far] != nil { expectedEntries += 1 }
            if near <= 45, let bytes = arrays[near] { expectedPayloads.append(unsafeBitCast(bytes, to: UnsafeRawPointer.self)) }
        }
        let payloadObjects = Set(arrays.values.map { unsafeBitCast($0, to: UnsafeRawPointer.self) })
        let named = removalHints.compactMap { $0 }
        #expect(named.count == removalHints.count, "no empty entry is named")
        #expect(named.filter { payloadObjects.contains($0) } == expectedPayloads)
        // Fresh pool entries are taken in insertion order, so the entries named for
        // successive held numbers lie one entry's stride apart.
        let entries = named.filter { !payloadObjects.contains($0) }
        #expect(entries.count == expectedEntries)
        #expect(zip(entries, entries.dropFirst()).allSatisfy { $1 - $0 == MemoryLayout<DataPacket?>.stride })
        #expect(expectedPayloads.count > 0 && expectedEntries > 0)
    }
}
