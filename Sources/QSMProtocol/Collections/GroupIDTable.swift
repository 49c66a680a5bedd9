/// Group id → object, for lookups made per message: a sender's publish target, a
/// receiver's delivery streams of one sender.
///
/// The GMS numbers groups densely from 0, so ids below `denseBound(count:)` index an
/// array: a lookup reads one 8-byte slot, and with thousands of groups the array (64 KB
/// at 8,192) stays in the cache where a hash table's keys and values (about 400 KB at
/// 16,384 slots) did not. Groups published to or delivered in turn are also read in
/// order, which the processor's prefetcher follows; a hash table scatters them.
///
/// An id at or beyond the bound (few entries with high ids, or an id parked by
/// renumbering near `UInt32.max`) goes to an `IdentifierTable` instead, so memory stays
/// proportional to the entries held: a made-up id costs no large array. Each id lives
/// in exactly one of the two.
struct GroupIDTable<Value: AnyObject> {
    private var dense: ContiguousArray<Value?> = []
    private var sparse: IdentifierTable<GroupID, Value>
    /// Entries held.
    private(set) var count = 0

    /// The largest id (exclusive) kept in the array when the table holds `count`
    /// entries: at most 8 slots per entry, or 64 (512 bytes) for any table.
    static func denseBound(count: Int) -> Int { max(64, 8 * count) }

    init(seed: UInt64) {
        sparse = IdentifierTable(seed: seed)
    }

    var isEmpty: Bool { count == 0 }

    /// The value of `id`; assigning nil removes it.
    subscript(id: GroupID) -> Value? {
        get {
            let index = Int(id.value)
            if index < dense.count, let value = dense[index] { return value }
            return sparse.isEmpty ? nil : sparse[id]
        }
        set {
            removeValue(forKey: id)
            if let newValue { insert(newValue, for: id) }
        }
    }

    /// Where the object of `id` lies, read without a retain, if it is in the array part:
    /// only for a hint to the processor (a prefetch), never dereferenced.
    func objectAddress(of id: GroupID) -> UnsafeRawPointer? {
        let index = Int(id.value)
        return index < dense.count ? dense.objectAddress(at: index) : nil
    }

    /// Removes the value of `id`; returns it.
    @discardableResult
    mutating func removeValue(forKey id: GroupID) -> Value? {
        let index = Int(id.value)
        if index < dense.count, let value = dense[index] {
            dense[index] = nil
            count -= 1
            // Emptied: the array goes too.
            if count == 0 { dense = [] }
            return value
        }
        guard let value = sparse.removeValue(forKey: id) else { return nil }
        count -= 1
        return value
    }

    /// Every (id, value), in no particular order.
    var entries: [(key: GroupID, value: Value)] {
        var entries: [(key: GroupID, value: Value)] = []
        entries.reserveCapacity(count)
        for (index, value) in dense.enumerated() {
            if let value { entries.append((GroupID(UInt32(index)), value)) }
        }
        entries += sparse.entries
        return entries
    }

    /// Every value, in no particular order.
    var values: [Value] { entries.map(\.value) }

    private mutating func insert(_ value: Value, for id: GroupID) {
        count += 1
        let index = Int(id.value)
        guard index < Self.denseBound(count: count) else {
            sparse[id] = value
            return
        }
        if index >= dense.count {
            var size = max(64, dense.count)
            while size <= index { size *= 2 }
            dense.append(contentsOf: repeatElement(nil, count: size - dense.count))
        }
        dense[index] = value
    }
}
