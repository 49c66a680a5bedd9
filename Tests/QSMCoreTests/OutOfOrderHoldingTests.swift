import Testing
@testable import QSMProtocol

/// Packets received beyond a gap are held once: in the cache if this node caches them,
/// else in the out-of-order table. Checked against a reference model (every number
/// delivered once, in order, as soon as its prefix is complete) over random arrival
/// orders with duplicates, with every packet cached (survivor agreement), with half of
/// them (the seed's cooperative cache, two partitions), and with a small bound on what
/// may be held ahead.
@Suite struct OutOfOrderHoldingTests {
    typealias Fixture = SenderCrashRecoveryTests

    /// Node 1 of a region of {1, 2, 3, 4} in partitions {1, 2} and {3, 4}, receiving
    /// sender 9's packets.
    static func node(survivorAgreement: Bool, limit: Int = 65_536,
                     senderFirstUpTo: Int = ProtocolConfiguration().senderFirstUpToMembers) throws -> ProtocolNode {
        var configuration = ProtocolConfiguration()
        configuration.senderFirstUpToMembers = senderFirstUpTo
        configuration.survivorAgreement = survivorAgreement
        configuration.maximumOutOfOrderPackets = limit
        configuration.viewChangePauseLimit = .zero
        let node = try ProtocolNode(id: NodeID(1), configuration: configuration, seed: 1)
        let members: [UInt64] = [1, 2, 3, 4]
        node.installMembership(regions: [Fixture.view(1, members: members, partitions: [[1, 2], [3, 4]])],
                               groups: [Fixture.groupView(1, members: members, publishers: [9])], now: Fixture.ms(1))
        return node
    }

    static func stream(_ node: ProtocolNode) throws -> ReceiveStream {
        try #require(node.streams[StreamKey(sender: NodeID(9), region: Fixture.region)])
    }

    @Test func aCachedPacketBeyondAGapIsHeldOnlyInTheCache() throws {
        let node = try Self.node(survivorAgreement: true)
        for sequence: UInt64 in [1, 2, 4, 5] { node.receive(Fixture.data(from: 9, view: 1, viewStart: 1, sequence: sequence), now: Fixture.ms(2)) }
        let stream = try Self.stream(node)
        #expect(stream.outOfOrder.isEmpty)
        #expect(stream.aheadInCache == 2 && stream.heldAhead == 2 && node.outOfOrderCount() == 2)
        #expect(stream.cache.count == 4)
        // A second copy of a held packet is a duplicate, not a second entry.
        node.receive(Fixture.data(from: 9, view: 1, viewStart: 1, sequence: 4), now: Fixture.ms(2))
        #expect(node.statistics.duplicatesDropped == 1 && node.statistics.notCachedForTableBudget == 0)
        node.receive(Fixture.data(from: 9, view: 1, viewStart: 1, sequence: 3, retransmitted: true), now: Fixture.ms(3))
        var delivered: [UInt64] = []
        while let delivery = node.takeDelivery() { delivered.append(delivery.groupSequence) }
        #expect(delivered == [1, 2, 3, 4, 5])
        #expect(stream.heldAhead == 0 && node.outOfOrderCount() == 0 && stream.contiguous == 5)
    }

    @Test(arguments: [UInt64(1), 2, 3, 4, 5, 6, 7, 8])
    func randomArrivalOrdersDeliverEveryPacketOnceInOrder(seed: UInt64) throws {
        var random = SplitMix64(seed: seed)
        for survivorAgreement in [true, false] {
            let node = try Self.node(survivorAgreement: survivorAgreement)
            let count: UInt64 = 200
            // Each number once, in a locally shuffled order (displaced up to 30 places),
            // and one in ten sent twice.
            var arrivals = Array(UInt64(1)...count)
            for index in arrivals.indices {
                let other = min(arrivals.count - 1, index + Int(random.next() % 30))
                arrivals.swapAt(index, other)
            }
            arrivals += arrivals.filter { _ in random.next() % 10 == 0 }
            var received = Set<UInt64>()
            var modelDelivered: [UInt64] = []
            var delivered: [UInt64] = []
            for (index, sequence) in arrivals.enumerated() {
                node.receive(Fixture.data(from: 9, view: 1, viewStart: 1, sequence: sequence, retransmitted: index % 3 == 0),
                             now: Fixture.ms(2))
                received.insert(sequence)
                while received.contains(UInt64(modelDelivered.count) + 1) { modelDelivered.append(UInt64(modelDelivered.count) + 1) }
                while let delivery = node.takeDelivery() { delivered.append(delivery.groupSequence) }
                #expect(delivered == modelDelivered, "seed \(seed), after \(index + 1) arrivals")
                let stream = try Self.stream(node)
                let ahead = received.filter { $0 > stream.contiguous }.count
                #expect(stream.heldAhead == ahead && node.outOfOrderCount() == ahead, "seed \(seed), after \(index + 1) arrivals")
                if survivorAgreement { #expect(stream.outOfOrder.isEmpty) }
            }
            #expect(delivered == Array(1...count))
        }
    }

    @Test func whatIsHeldAheadIsBoundedInBothTables() throws {
        for survivorAgreement in [true, false] {
            let node = try Self.node(survivorAgreement: survivorAgreement, limit: 3)
            for sequence: UInt64 in [1, 3, 4, 5, 6, 7] { node.receive(Fixture.data(from: 9, view: 1, viewStart: 1, sequence: sequence), now: Fixture.ms(2)) }
            let stream = try Self.stream(node)
            #expect(stream.heldAhead == 3 && node.outOfOrderCount() == 3)
            #expect(node.statistics.outOfOrderDropped == 2)
            // The dropped ones are asked for again like any gap.
            #expect(stream.missing.keys.sorted() == [2, 6, 7])
            for sequence: UInt64 in [2, 6, 7] {
                node.receive(Fixture.data(from: 9, view: 1, viewStart: 1, sequence: sequence, retransmitted: true), now: Fixture.ms(3))
            }
            var delivered: [UInt64] = []
            while let delivery = node.takeDelivery() { delivered.append(delivery.groupSequence) }
            #expect(delivered == Array(1...7))
            #expect(stream.heldAhead == 0 && node.outOfOrderCount() == 0)
        }
    }

    /// A packet over the bound that jumps past numbers never seen: those are gaps like
    /// any other, asked for with the dropped packet itself.
    @Test func aDroppedPacketBeyondUnseenNumbersMarksThemMissing() throws {
        for survivorAgreement in [true, false] {
            let node = try Self.node(survivorAgreement: survivorAgreement, limit: 3)
            for sequence: UInt64 in [1, 3, 4, 5, 9] { node.receive(Fixture.data(from: 9, view: 1, viewStart: 1, sequence: sequence), now: Fixture.ms(2)) }
            let stream = try Self.stream(node)
            #expect(node.statistics.outOfOrderDropped == 1)
            #expect(stream.missing.keys.sorted() == [2, 6, 7, 8, 9])
            #expect(node.nextRecoveryCheck != nil)
        }
    }

    /// Under a small bound and random arrival orders, every number up to the highest
    /// seen is, at every moment, exactly one of: delivered, held ahead, or missing (and
    /// so asked for). Re-sending what is missing then delivers everything once, in order.
    @Test(arguments: [UInt64(11), 12, 13, 14])
    func underABoundEveryNumberIsDeliveredHeldOrMissing(seed: UInt64) throws {
        var random = SplitMix64(seed: seed)
        for survivorAgreement in [true, false] {
            let node = try Self.node(survivorAgreement: survivorAgreement, limit: 5)
            let count: UInt64 = 120
            var arrivals = Array(UInt64(1)...count)
            for index in arrivals.indices {
                let other = min(arrivals.count - 1, index + Int(random.next() % 12))
                arrivals.swapAt(index, other)
            }
            var delivered: [UInt64] = []
            func checkPartition(_ context: String) throws {
                let stream = try Self.stream(node)
                while let delivery = node.takeDelivery() { delivered.append(delivery.groupSequence) }
                #expect(delivered == (stream.contiguous == 0 ? [] : Array(1...stream.contiguous)), "seed \(seed), \(context)")
                guard stream.maximumSeen > stream.contiguous else { return }
                for number in (stream.contiguous + 1)...stream.maximumSeen {
                    let held = stream.holdsAhead(number), missing = stream.missing[number] != nil
                    #expect(held != missing, "seed \(seed), number \(number) held \(held) missing \(missing), \(context)")
                }
                #expect(stream.missing.keys.allSatisfy { $0 > stream.contiguous && $0 <= stream.maximumSeen }, "\(context)")
            }
            for (index, sequence) in arrivals.enumerated() {
                node.receive(Fixture.data(from: 9, view: 1, viewStart: 1, sequence: sequence), now: Fixture.ms(2))
                try checkPartition("after \(index + 1) arrivals")
            }
            // Repair rounds: re-send whatever is missing, lowest first.
            var rounds = 0
            while try !Self.stream(node).missing.isEmpty, rounds < 200 {
                let stream = try Self.stream(node)
                for sequence in stream.missing.keys.sorted() {
                    node.receive(Fixture.data(from: 9, view: 1, viewStart: 1, sequence: sequence, retransmitted: true), now: Fixture.ms(3))
                    try checkPartition("repair round \(rounds)")
                }
                rounds += 1
            }
            #expect(delivered == Array(1...count), "seed \(seed), survivor agreement \(survivorAgreement)")
        }
    }
}
