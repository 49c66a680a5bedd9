import Testing
@testable import QSMProtocol

/// `GroupIDTable` against a dictionary model, over many seeds: ids small enough for the
/// array, large for the count held, or parked near `UInt32.max`, inserted, replaced and
/// removed until the table empties, so ids land on both sides of the bound as it moves.
@Suite struct GroupIDTableTests {
    final class Box {}

    @Test(arguments: UInt64(1)...80) func matchesADictionaryModel(seed: UInt64) {
        var random = SplitMix64(seed: seed)
        var table = GroupIDTable<Box>(seed: random.next())
        var model: [GroupID: Box] = [:]
        func id() -> GroupID {
            switch random.next() % 10 {
            case 0...5: GroupID(UInt32(random.next() % 300))
            case 6, 7: GroupID(UInt32(random.next() % 50_000))
            case 8: GroupID(UInt32.max - UInt32(random.next() % 4))
            default: GroupID(2_000 + UInt32(random.next() % 100))
            }
        }
        for step in 0..<1_000 {
            let probe = id()
            switch random.next() % 7 {
            case 0, 1, 2:
                let box = Box()
                table[probe] = box
                model[probe] = box
            case 3, 4:
                #expect(table.removeValue(forKey: probe) === model.removeValue(forKey: probe), "seed \(seed), step \(step)")
            default:
                if let held = model.keys.randomElement(using: &random) {
                    table[held] = nil
                    model[held] = nil
                }
            }
            guard table.count == model.count, table[probe] === model[probe],
                  model.keys.prefix(40).allSatisfy({ table[$0] === model[$0] }) else {
                Issue.record("seed \(seed), step \(step): the table and the model differ at \(probe)")
                return
            }
        }
        let entries = table.entries
        #expect(entries.count == model.count && entries.allSatisfy { model[$0.key] === $0.value }, "seed \(seed)")
        #expect(table.values.count == model.count)
    }

    /// 8,192 dense ids sit in the array; a lone id far beyond the bound is hashed, so it
    /// costs no array of its size.
    @Test func denseIdsAreIndexedAndALoneHighIdIsHashed() {
        var table = GroupIDTable<Box>(seed: 3)
        let boxes = (0..<8_192).map { _ in Box() }
        for (index, box) in boxes.enumerated() { table[GroupID(UInt32(index))] = box }
        #expect(table.count == 8_192)
        #expect(boxes.indices.allSatisfy { table[GroupID(UInt32($0))] === boxes[$0] })
        #expect(GroupIDTable<Box>.denseBound(count: 1) < 1_000_000)
        var lone = GroupIDTable<Box>(seed: 4)
        let box = Box()
        lone[GroupID(1_000_000)] = box
        #expect(lone[GroupID(1_000_000)] === box)
        #expect(lone[GroupID(999_999)] == nil)
    }
}
