/// A key of an `IdentifierTable`: a few integers (ids), folded into one word.
package protocol IdentifierKey: Equatable {
    /// The key's integers folded into one word; the table mixes it with its seed.
    var folded: UInt64 { get }
}

/// A hash table from ids to values, for lookups made per message.
///
/// Swift's `Dictionary` passes every key through `Hasher` (SipHash), which costs about
/// as much as the rest of a lookup; with thousands of groups taking turns, a receiver
/// made one such lookup per message and a sender three (perf, `qsm-bench run --groups
/// 8192`). Here the key's integers go through a seeded 64-bit finalizer (MurmurHash3's
/// `fmix64`), slots are probed linearly, and removal shifts the following entries back
/// (no tombstones, so lookups never slow down after churn). The table is at most half
/// full and grows by doubling.
///
/// The seed comes from the node's seed: an outsider who does not know it cannot pick
/// keys that pile into one run of slots (the ids here come from authenticated packets
/// and from the GMS in any case).
///
/// Keys and values are kept in two arrays, slot for slot, so a probe reads keys only.
/// With one array of (key, value) pairs, every slot a probe looked at was copied whole,
/// and a class-typed value was retained and released for it: a receiver's
/// `DeliveryStream`, a sender's `PublishTarget`. With 8,192 groups taking turns, those
/// lookups took about 5% of the machine's samples in `qsm-bench run --groups 8192`, and
/// were the main source of the reference counting that run added over one group. With
/// the arrays split, the run went 7.5% faster (median of six alternated pairs).
package struct IdentifierTable<Key: IdentifierKey, Value> {
    private var keys: ContiguousArray<Key?>
    private var slotValues: ContiguousArray<Value?>
    private var mask: Int
    private let seed: UInt64
    /// Entries held.
    package private(set) var count = 0

    /// An empty table; `seed` decides where keys go.
    package init(seed: UInt64, minimumCapacity: Int = 8) {
        var size = 8
        while size < minimumCapacity * 2 { size <<= 1 }
        keys = ContiguousArray(repeating: nil, count: size)
        slotValues = ContiguousArray(repeating: nil, count: size)
        mask = size - 1
        self.seed = seed
    }

    package var isEmpty: Bool { count == 0 }

    /// The value for `key`; assigning nil removes it.
    package subscript(key: Key) -> Value? {
        get {
            guard let index = index(of: key) else { return nil }
            return slotValues[index]
        }
        set {
            if let newValue { updateValue(newValue, forKey: key) } else { removeValue(forKey: key) }
        }
    }

    /// Stores `value` for `key`; returns the value it replaced.
    @discardableResult
    package mutating func updateValue(_ value: Value, forKey key: Key) -> Value? {
        if let index = index(of: key) {
            let old = slotValues[index]
            slotValues[index] = value
            return old
        }
        if (count + 1) * 2 > keys.count { grow() }
        var index = home(of: key)
        while keys[index] != nil { index = (index + 1) & mask }
        keys[index] = key
        slotValues[index] = value
        count += 1
        return nil
    }

    /// Removes `key`'s entry; returns its value.
    @discardableResult
    package mutating func removeValue(forKey key: Key) -> Value? {
        guard var hole = index(of: key) else { return nil }
        let removed = slotValues[hole]
        keys[hole] = nil
        slotValues[hole] = nil
        count -= 1
        // Backward shift: an entry after the hole moves into it unless its home lies
        // cyclically after the hole (then the hole does not break its probe run).
        var next = (hole + 1) & mask
        while let entry = keys[next] {
            let home = home(of: entry)
            let stays = hole <= next ? (hole < home && home <= next) : (hole < home || home <= next)
            if !stays {
                keys[hole] = entry
                slotValues[hole] = slotValues[next]
                keys[next] = nil
                slotValues[next] = nil
                hole = next
            }
            next = (next + 1) & mask
        }
        return removed
    }

    /// Runs `body` on `key`'s value where it lies (one probe, no copy); nil when `key` has
    /// no entry.
    @inline(__always)
    package mutating func modifyValue<Result>(forKey key: Key, _ body: (inout Value) -> Result) -> Result? {
        guard let index = index(of: key) else { return nil }
        return body(&slotValues[index]!)
    }

    /// Removes every entry, keeping the slots.
    package mutating func removeAll() {
        for index in keys.indices {
            keys[index] = nil
            slotValues[index] = nil
        }
        count = 0
    }

    /// Every entry, in no particular order.
    /// (Built at its final size: with thousands of entries, growing it by doubling left
    /// a trail of freed arrays, issue 15.)
    package var entries: [(key: Key, value: Value)] {
        var entries: [(key: Key, value: Value)] = []
        entries.reserveCapacity(count)
        for index in keys.indices { if let key = keys[index] { entries.append((key, slotValues[index]!)) } }
        return entries
    }

    /// Every value, in no particular order.
    package var values: [Value] {
        var values: [Value] = []
        values.reserveCapacity(count)
        for value in slotValues { if let value { values.append(value) } }
        return values
    }

    private func index(of key: Key) -> Int? {
        var index = home(of: key)
        while let candidate = keys[index] {
            if candidate == key { return index }
            index = (index + 1) & mask
        }
        return nil
    }

    @inline(__always)
    private func home(of key: Key) -> Int {
        var mixed = key.folded ^ seed
        mixed ^= mixed >> 33
        mixed &*= 0xff51_afd7_ed55_8ccd
        mixed ^= mixed >> 33
        mixed &*= 0xc4ce_b9fe_1a85_ec53
        mixed ^= mixed >> 33
        return Int(truncatingIfNeeded: mixed) & mask
    }

    /// Makes room for `minimumCount` entries at once: filling a table with thousands of
    /// entries then rehashes once, instead of once per doubling with each outgrown pair of
    /// arrays left behind as free heap (issue 15, RSS).
    package mutating func reserveCapacity(_ minimumCount: Int) {
        var size = keys.count
        while size < minimumCount * 2 { size <<= 1 }
        if size > keys.count { grow(to: size) }
    }

    private mutating func grow() { grow(to: keys.count * 2) }

    private mutating func grow(to size: Int) {
        let oldKeys = keys
        let oldValues = slotValues
        keys = ContiguousArray(repeating: nil, count: size)
        slotValues = ContiguousArray(repeating: nil, count: size)
        mask = keys.count - 1
        for slot in oldKeys.indices {
            guard let key = oldKeys[slot] else { continue }
            var index = home(of: key)
            while keys[index] != nil { index = (index + 1) & mask }
            keys[index] = key
            slotValues[index] = oldValues[slot]
        }
    }
}

extension NodeID: IdentifierKey {
    package var folded: UInt64 { value }
}

extension GroupID: IdentifierKey {
    package var folded: UInt64 { UInt64(value) }
}

extension DeliveryKey: IdentifierKey {
    /// The sender spread by a multiply before the group goes in, so that neither id's
    /// bits cancel the other's.
    var folded: UInt64 { (sender.value &* 0x9e37_79b9_7f4a_7c15) ^ UInt64(group.value) }
}
