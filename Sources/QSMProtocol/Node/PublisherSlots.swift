/// Group ids of the names an application publishes to through handles
/// (`QSMNode.publisher(for:)`), by the handle's slot.
///
/// A publication by name hashes the name and probes `NodeMachine`'s name table; with
/// thousands of groups taking turns that probe missed the cache on every message, and
/// was the largest cost many groups added at a sender (issue 15, `bench/README.md`).
/// Through a slot it reads one entry of an array and compares the name, which a
/// publisher going round its groups reads in order.
///
/// An entry is valid for one epoch of the names (`NodeMachine` raises it whenever
/// views are installed: a restarted GMS may number groups afresh), and only for the
/// name it was made for: a slot given with another name (a handle of another node) is
/// looked up by name and the slot taken over.
struct PublisherSlots {
    /// Slots kept, at most: the application's handles are numbered from 0 up to it.
    static let limit = 65_536

    private var entries: ContiguousArray<(name: GroupName, id: GroupID, epoch: Int)?> = []

    /// The id remembered at `slot` for `name` in `epoch`, if there is one.
    func id(of name: GroupName, slot: Int, epoch: Int) -> GroupID? {
        guard slot >= 0, slot < entries.count, let entry = entries[slot], entry.epoch == epoch, entry.name == name else {
            return nil
        }
        return entry.id
    }

    /// Remembers that `name` had `id` in `epoch`, at `slot` (ignored outside 0..<limit).
    mutating func remember(_ name: GroupName, id: GroupID, slot: Int, epoch: Int) {
        guard slot >= 0, slot < Self.limit else { return }
        if slot >= entries.count {
            var size = max(64, entries.count)
            while size <= slot { size *= 2 }
            entries.append(contentsOf: repeatElement(nil, count: size - entries.count))
        }
        entries[slot] = (name, id, epoch)
    }
}
