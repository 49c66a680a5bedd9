import Testing
@testable import QSMProtocol

@Suite struct IdentifierTableTests {
    /// Against a dictionary, over many seeds: inserts, replacements, changes in place,
    /// removals (which shift later entries back into the hole) and lookups, with keys drawn from a small range
    /// so that probe runs form, wrap around the end of the slots and are cut by removals,
    /// and through growth.
    @Test func matchesADictionaryModel() {
        for seed in UInt64(1)...150 {
            var random = SplitMix64(seed: seed)
            var table = IdentifierTable<DeliveryKey, Int>(seed: random.next(), minimumCapacity: Int(random.next() % 8))
            var model: [DeliveryKey: Int] = [:]
            let senders = random.next() % 6 + 1, groups = random.next() % 40 + 1
            func key() -> DeliveryKey {
                DeliveryKey(sender: NodeID(random.next() % senders + 1), group: GroupID(UInt32(random.next() % groups)))
            }
            for step in 0..<600 {
                let probe = key()
                switch random.next() % 8 {
                case 0, 1, 2:
                    let value = Int(random.next() % 1000)
                    let old = table.updateValue(value, forKey: probe)
                    if old != model.updateValue(value, forKey: probe) {
                        Issue.record("seed \(seed), step \(step): insert \(probe) returned \(String(describing: old))")
                        return
                    }
                case 3:
                    table[probe] = 7
                    model[probe] = 7
                case 4, 5:
                    let removed = table.removeValue(forKey: probe)
                    if removed != model.removeValue(forKey: probe) {
                        Issue.record("seed \(seed), step \(step): remove \(probe) returned \(String(describing: removed))")
                        return
                    }
                case 6:
                    table[probe] = nil
                    model[probe] = nil
                case 7 where random.next() % 2 == 0:
                    // In place: the value changes, nothing else does; absent keys stay absent.
                    let added = Int(random.next() % 9)
                    let result = table.modifyValue(forKey: probe) { value -> Int in
                        value += added
                        return value
                    }
                    if let old = model[probe] { model[probe] = old + added }
                    if result != model[probe] {
                        Issue.record("seed \(seed), step \(step): modify \(probe) returned \(String(describing: result))")
                        return
                    }
                default:
                    if random.next() % 50 == 0 {
                        table.removeAll()
                        model.removeAll()
                    } else if random.next() % 10 == 0 {
                        // Room made ahead: a rehash that must keep every entry.
                        table.reserveCapacity(Int(random.next() % 128))
                    }
                }
                // Every key of the range, present or not, must be found exactly as the
                // model has it: a removal that broke a probe run shows up here.
                for sender in 1...senders {
                    for group in 0..<groups {
                        let each = DeliveryKey(sender: NodeID(sender), group: GroupID(UInt32(group)))
                        if table[each] != model[each] {
                            Issue.record("seed \(seed), step \(step): \(each) is \(String(describing: table[each])), model \(String(describing: model[each]))")
                            return
                        }
                    }
                }
                if table.count != model.count || table.isEmpty != model.isEmpty {
                    Issue.record("seed \(seed), step \(step): count \(table.count), model \(model.count)")
                    return
                }
            }
            let entries = Dictionary(uniqueKeysWithValues: table.entries.map { ($0.key, $0.value) })
            #expect(entries == model, "seed \(seed)")
            #expect(table.values.sorted() == model.values.sorted(), "seed \(seed)")
        }
    }

    /// Many keys: the table grows by doubling and keeps every entry.
    @Test func growsAndKeepsEveryEntry() {
        var table = IdentifierTable<GroupID, UInt32>(seed: 42)
        for id in UInt32(0)..<100_000 { table[GroupID(id)] = id &* 3 }
        #expect(table.count == 100_000)
        #expect((UInt32(0)..<100_000).allSatisfy { table[GroupID($0)] == $0 &* 3 })
        #expect(table[GroupID(100_000)] == nil)
        for id in stride(from: UInt32(0), to: 100_000, by: 2) { table[GroupID(id)] = nil }
        #expect(table.count == 50_000)
        #expect((UInt32(0)..<100_000).allSatisfy { table[GroupID($0)] == ($0 % 2 == 0 ? nil : $0 &* 3) })
    }
}
