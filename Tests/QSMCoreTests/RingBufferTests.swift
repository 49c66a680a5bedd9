import Testing
@testable import QSMCore
@testable import QSMProtocol
@testable import QSMSimulation
import QSMHarness

@Suite struct RingBufferTests {
    /// Against an array, over many seeds: growth and wrap-around at every position.
    @Test func matchesAnArrayModel() {
        for seed in UInt64(1)...300 {
            var random = SplitMix64(seed: seed)
            var ring = RingBuffer<Int>(initialCapacity: Int(random.next() % 4) + 1)
            var model: [Int] = []
            var next = 0
            for step in 0..<400 {
                switch random.next() % 6 {
                case 0, 1:
                    ring.append(next); model.append(next); next += 1
                case 2:
                    if random.next() % 2 == 0 {
                        ring.prepend(next); model.insert(next, at: 0)
                    } else {
                        let at = Int(random.next() % UInt64(model.count + 1))
                        ring.insert(next, at: at); model.insert(next, at: at)
                    }
                    next += 1
                case 3, 4:
                    let popped = ring.popFirst()
                    let expected = model.isEmpty ? nil : model.removeFirst()
                    if popped != expected { Issue.record("seed \(seed), step \(step): popFirst \(String(describing: popped)), model \(String(describing: expected))"); return }
                default:
                    let modulus = Int(random.next() % 5) + 2
                    ring.removeAll { $0 % modulus == 0 }
                    model.removeAll { $0 % modulus == 0 }
                }
                if ring.first != model.first || ring.last != model.last || ring.count != model.count || ring.isEmpty != model.isEmpty
                    || (0..<model.count).contains(where: { ring[$0] != model[$0] }) {
                    Issue.record("seed \(seed), step \(step): first/count differ from the model")
                    return
                }
            }
            var drained: [Int] = []
            while let value = ring.popFirst() { drained.append(value) }
            if drained != model { Issue.record("seed \(seed): drained \(drained.count) elements out of model order"); return }
        }
    }

    final class Box {}

    /// `objectAddress(at:)` against the elements' identities, over seeds: at every offset
    /// after growth and wrap-around, nil past either end, and nil for elements that are
    /// not one reference.
    @Test func objectAddressesAreTheElementsIdentities() {
        for seed in UInt64(1)...50 {
            var random = SplitMix64(seed: seed)
            var ring = RingBuffer<Box>(initialCapacity: 2)
            var model: [Box] = []
            for step in 0..<200 {
                if random.next() % 3 == 0, !model.isEmpty {
                    _ = ring.popFirst(); model.removeFirst()
                } else {
                    let box = Box()
                    ring.append(box); model.append(box)
                }
                for offset in -1...model.count {
                    let address = ring.objectAddress(at: offset).map { UInt(bitPattern: $0) }
                    let expected = model.indices.contains(offset) ? UInt(bitPattern: Unmanaged.passUnretained(model[offset]).toOpaque()) : nil
                    if address != expected { Issue.record("seed \(seed), step \(step), offset \(offset): address differs"); return }
                }
            }
        }
        var numbers = RingBuffer<Int>()
        numbers.append(7)
        #expect(numbers.objectAddress(at: 0) == nil)
    }

    static func packet(_ sequence: UInt64, bytes: Int = 3) -> DataPacket {
        DataPacket(sender: NodeID(1), region: RegionID(1), regionView: 1, viewStartSequence: 1, sequence: sequence, group: GroupID(1),
                   groupView: 1, groupSequence: sequence, fragmentIndex: 0, fragmentCount: 1, publishedAt: 0,
                   payload: ArraySlice(repeating: UInt8(truncatingIfNeeded: sequence), count: bytes))
    }

    /// The cache's sorted ring against a dictionary, over many seeds: packets mostly in
    /// order with gaps filled later, duplicates refused, stable prefixes removed, lookups
    /// of held and missing numbers.
    @Test func sequencedPacketsMatchADictionaryModel() {
        for seed in UInt64(1)...200 {
            var random = SplitMix64(seed: seed)
            var store = SequencedPackets()
            var model: [UInt64: DataPacket] = [:]
            var next: UInt64 = 1
            var stable: UInt64 = 0
            var gaps: [UInt64] = []
            for step in 0..<600 {
                switch random.next() % 8 {
                case 0, 1, 2, 3:
                    // The next packet, sometimes leaving a gap behind.
                    if random.next() % 4 == 0 { gaps.append(next); next += 1 }
                    // Now and then a long run lost (the table grows past it).
                    if random.next() % 32 == 0 {
                        let run = random.next() % 300
                        gaps += (0..<run).map { next + $0 }
                        next += run
                    }
                    let inserted = store.insert(Self.packet(next))
                    if !inserted || model[next] != nil { Issue.record("seed \(seed), step \(step): insert \(next) refused"); return }
                    model[next] = Self.packet(next)
                    next += 1
                case 4:
                    // A repair fills a gap (if it is still above the stable point).
                    guard !gaps.isEmpty else { continue }
                    let gap = gaps.remove(at: Int(random.next() % UInt64(gaps.count)))
                    guard gap > stable else { continue }
                    if !store.insert(Self.packet(gap)) { Issue.record("seed \(seed), step \(step): gap \(gap) refused"); return }
                    model[gap] = Self.packet(gap)
                case 5:
                    // A duplicate is refused.
                    if let held = model.keys.sorted().randomElement(using: &random), store.insert(Self.packet(held)) {
                        Issue.record("seed \(seed), step \(step): duplicate \(held) taken"); return
                    }
                case 6:
                    stable = min(next - 1, stable + random.next() % 20)
                    var removed: [UInt64] = []
                    store.removeThrough(stable) { removed.append($0.sequence) }
                    let expected = model.keys.filter { $0 <= stable }.sorted()
                    for key in expected { model[key] = nil }
                    if removed != expected { Issue.record("seed \(seed), step \(step): removed \(removed) not \(expected)"); return }
                case 7 where random.next() % 2 == 0:
                    // Taking the lowest, as a stream drains what follows its prefix; a
                    // number that is not the lowest takes nothing.
                    guard let lowest = model.keys.min() else { continue }
                    if store.popFirst(numbered: lowest + 1) != nil {
                        Issue.record("seed \(seed), step \(step): took \(lowest + 1) before \(lowest)"); return
                    }
                    if store.popFirst(numbered: lowest)?.sequence != lowest {
                        Issue.record("seed \(seed), step \(step): \(lowest) not taken"); return
                    }
                    model[lowest] = nil
                default:
                    let probe = random.next() % (next + 2)
                    if store[probe] != model[probe] { Issue.record("seed \(seed), step \(step): lookup \(probe) differs"); return }
                }
                // Every packet compared now and then (a walk of the whole span).
                if store.count != model.count || (step % 20 == 0 && store.packets.map(\.sequence) != model.keys.sorted()) {
                    Issue.record("seed \(seed), step \(step): contents differ from the model"); return
                }
            }
        }
    }

    /// Tables grow to the span they hold, counted in the node's tally: an insert that
    /// would take the tally past its limit is refused, and a stream gives back what its
    /// tables took when it goes. (Without the bound, two packets 65,000 apart in each of
    /// 4,096 streams took 2 GB of tables.)
    @Test func tableGrowthIsCountedAndBounded() {
        let tally = HeldBytesTally()
        tally.tableSlotLimit = 1_000
        var table = SequencedPackets(tally: tally)
        let first = table.insert(Self.packet(10)), second = table.insert(Self.packet(500))
        #expect(first && second, "512 slots fit the limit")
        #expect(tally.tableSlots == 512 - SequencedPackets.initialSlots)
        let third = table.insert(Self.packet(1_200))
        #expect(!third, "1,024 more slots would not")
        #expect(table.count == 2 && table[1_200] == nil && table[500] != nil)
        #expect(tally.tableSlots == 496)
        do {
            let stream = ReceiveStream(start: 1, tally: tally)
            tally.tableSlotLimit = .max
            let cached = stream.cache.insert(Self.packet(1)) && stream.cache.insert(Self.packet(100))
            let held = stream.outOfOrder.insert(Self.packet(3)) && stream.outOfOrder.insert(Self.packet(40))
            #expect(cached && held)
            #expect(tally.tableSlots == 496 + 112 + 48)
        }
        #expect(tally.tableSlots == 496, "a stream that goes gives its tables' slots back")
    }

    /// A node whose tables are at their budget (none beyond their initial size, here)
    /// counts what it did not keep: a packet its partition caches goes uncached, and a
    /// packet ahead of a gap that would widen the held table is dropped and left missing,
    /// to be asked for again.
    @Test func aNodeAtItsTableBudgetCountsWhatItDidNotKeep() throws {
        typealias Fixture = SenderCrashRecoveryTests
        var configuration = ProtocolConfiguration()
        configuration.maximumTableSlots = 0
        let node = try ProtocolNode(id: NodeID(2), configuration: configuration, seed: 2)
        node.installMembership(regions: [Fixture.view(1, members: [1, 2, 3], partitions: [[1, 2, 3]])], groups: [],
                               now: Fixture.ms(1))
        let key = StreamKey(sender: NodeID(1), region: Fixture.region)
        node.receive(Fixture.data(from: 1, view: 1, viewStart: 1, sequence: 1), now: Fixture.ms(2))
        // Ahead of a gap: held (alone in its table), but caching it would span 100 numbers.
        node.receive(Fixture.data(from: 1, view: 1, viewStart: 1, sequence: 100), now: Fixture.ms(3))
        #expect(node.statistics.notCachedForTableBudget == 1)
        #expect(node.statistics.outOfOrderDropped == 0)
        #expect(node.streams[key]?.outOfOrder[100] != nil && node.streams[key]?.cache[1] != nil)
        // Holding this one too would span 100 numbers: dropped, and missing.
        node.receive(Fixture.data(from: 1, view: 1, viewStart: 1, sequence: 200), now: Fixture.ms(4))
        #expect(node.statistics.outOfOrderDropped == 1)
        #expect(node.statistics.notCachedForTableBudget == 2)
        #expect(node.streams[key]?.outOfOrder[200] == nil && node.streams[key]?.missing[200] != nil)
    }

    /// A sender's in-flight run against a dictionary: consecutive numbers kept, prefixes
    /// acknowledged, lookups inside and outside the run.
    @Test func inFlightPacketsMatchADictionaryModel() {
        let message = OutgoingMessage(id: 1, group: GroupID(1), groupView: 1, groupSequence: 1, payload: [1], publishedAt: .zero,
                                      regions: [])
        for seed in UInt64(1)...100 {
            var random = SplitMix64(seed: seed)
            var run = InFlightPackets()
            var model: [UInt64: UInt16] = [:]
            var next: UInt64 = 1
            var acknowledged: UInt64 = 0
            for step in 0..<500 {
                if random.next() % 3 != 0 {
                    let fragment = UInt16(truncatingIfNeeded: random.next())
                    run.append((message, fragment, 1, 1), sequence: next)
                    model[next] = fragment
                    next += 1
                } else {
                    acknowledged = min(next - 1, acknowledged + random.next() % 10)
                    run.removeThrough(acknowledged)
                    for key in model.keys where key <= acknowledged { model[key] = nil }
                }
                let probe = random.next() % (next + 3)
                if run[probe]?.fragment != model[probe] || run.count != model.count {
                    Issue.record("seed \(seed), step \(step): \(probe) or the count differs"); return
                }
            }
        }
    }
}
