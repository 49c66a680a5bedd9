import Testing
@testable import QSMProtocol

/// `DeliveryStreamTable` against a dictionary model, over many seeds: inserts,
/// replacements and removals of (sender, group) keys whose group ids are small (in a
/// sender's array), large for the sender's stream count or parked near `UInt32.max` (in
/// the hash table), so that keys move between the two as senders gain and lose streams.
@Suite struct DeliveryStreamTableTests {
    @Test(arguments: UInt64(1)...120) func matchesADictionaryModel(seed: UInt64) {
        var random = SplitMix64(seed: seed)
        var table = DeliveryStreamTable(seed: random.next())
        var model: [DeliveryKey: DeliveryStream] = [:]
        let senders = random.next() % 5 + 1
        func key() -> DeliveryKey {
            let group: UInt32
            switch random.next() % 10 {
            case 0...5: group = UInt32(random.next() % 200)
            case 6, 7: group = UInt32(random.next() % 20_000)
            case 8: group = UInt32.max - UInt32(random.next() % 4)
            default: group = 4_000 + UInt32(random.next() % 200)
            }
            return DeliveryKey(sender: NodeID(random.next() % senders + 1), group: GroupID(group))
        }
        var probes: [DeliveryKey] = []
        for step in 0..<800 {
            let probe = key()
            probes.append(probe)
            switch random.next() % 6 {
            case 0, 1, 2:
                let stream = DeliveryStream(sender: probe.sender, group: probe.group)
                table[probe] = stream
                model[probe] = stream
            case 3, 4:
                table[probe] = nil
                model[probe] = nil
            default:
                // Remove a random key held, so that senders run out of streams too.
                if let held = model.keys.randomElement(using: &random) {
                    table[held] = nil
                    model[held] = nil
                }
            }
            for each in probes.suffix(50) + Array(model.keys.prefix(50)) where table.stream(for: each) !== model[each] {
                Issue.record("seed \(seed), step \(step): \(each) is \(String(describing: table.stream(for: each))), model \(String(describing: model[each]))")
                return
            }
            // The cache hint's address: the object held, or nothing (it tries only the
            // last sender's lane, and only the array part), never another object.
            for each in probes.suffix(50) {
                guard let address = table.streamAddress(for: each) else { continue }
                if address != model[each].map({ UnsafeRawPointer(Unmanaged.passUnretained($0).toOpaque()) }) {
                    Issue.record("seed \(seed), step \(step): the address of \(each) is not its stream's")
                    return
                }
            }
            if table.count != model.count {
                Issue.record("seed \(seed), step \(step): count \(table.count), model \(model.count)")
                return
            }
        }
        let entries = table.entries
        #expect(entries.count == model.count, "seed \(seed)")
        #expect(entries.allSatisfy { model[$0.key] === $0.value }, "seed \(seed)")
        #expect(model.keys.allSatisfy { table.stream(for: $0) === model[$0] }, "seed \(seed)")
    }

    /// 8,192 groups of one sender sit in its array; a sender with one stream in a group
    /// of a high id does not get an array that large.
    @Test func denseIdsAreIndexedAndSparseOnesHashed() {
        var table = DeliveryStreamTable(seed: 7)
        let sender = NodeID(3)
        for group in UInt32(0)..<8_192 { table[DeliveryKey(sender: sender, group: GroupID(group))] = DeliveryStream(sender: sender, group: GroupID(group)) }
        #expect(table.count == 8_192)
        #expect((UInt32(0)..<8_192).allSatisfy { table.stream(for: DeliveryKey(sender: sender, group: GroupID($0)))?.group == GroupID($0) })
        // After a lookup of the sender, the hint finds every one of its dense streams.
        _ = table.stream(for: DeliveryKey(sender: sender, group: GroupID(0)))
        #expect((UInt32(0)..<8_192).allSatisfy { group in
            let key = DeliveryKey(sender: sender, group: GroupID(group))
            return table.streamAddress(for: key) == table.stream(for: key).map { UnsafeRawPointer(Unmanaged.passUnretained($0).toOpaque()) }
        })
        #expect(table.stream(for: DeliveryKey(sender: NodeID(4), group: GroupID(5))) == nil)
        let lonely = DeliveryKey(sender: NodeID(9), group: GroupID(1_000_000))
        table[lonely] = DeliveryStream(sender: lonely.sender, group: lonely.group)
        #expect(table.stream(for: lonely)?.group == GroupID(1_000_000))
        #expect(GroupIDTable<DeliveryStream>.denseBound(count: 1) < 1_000_000, "a lone high id is hashed, not indexed")
        #expect(table.entries.count == 8_193)
    }
}
