/// Packets kept in rising sequence order, in a ring: a stream's share of the cooperative
/// cache. Packets arrive almost always in order, so adding one is an append, and they
/// leave in order as they become stable, so removing them is taking from the front; a
/// repair that fills a gap is inserted in place. Lookups (a peer asking for a packet)
/// are a binary search. Unlike a dictionary, nothing is hashed on the per-message path.
struct SequencedPackets {
    private var ring = RingBuffer<DataPacket>(initialCapacity: 16)

    var count: Int { ring.count }
    var isEmpty: Bool { ring.isEmpty }

    /// The packet numbered `sequence`, if held.
    subscript(sequence: UInt64) -> DataPacket? {
        guard let index = position(of: sequence), index < ring.count, ring[index].sequence == sequence else { return nil }
        return ring[index]
    }

    /// Adds `packet` in its place; false (nothing changed) if its number is held already.
    @discardableResult
    mutating func insert(_ packet: DataPacket) -> Bool {
        if let last = ring.last, last.sequence >= packet.sequence {
            let index = position(of: packet.sequence)!
            guard ring[index].sequence != packet.sequence else { return false }
            ring.insert(packet, at: index)
        } else {
            ring.append(packet)
        }
        return true
    }

    /// Removes every packet numbered `sequence` or lower, oldest first, calling `removed`
    /// with each.
    mutating func removeThrough(_ sequence: UInt64, _ removed: (DataPacket) -> Void) {
        while let first = ring.first, first.sequence <= sequence {
            removed(first)
            _ = ring.popFirst()
        }
    }

    /// Every packet, in rising order.
    var packets: [DataPacket] { (0..<ring.count).map { ring[$0] } }

    /// The index of the first packet numbered `sequence` or higher (`count` if none), by
    /// binary search; nil when empty.
    private func position(of sequence: UInt64) -> Int? {
        guard !ring.isEmpty else { return nil }
        var low = 0, high = ring.count
        while low < high {
            let middle = (low + high) / 2
            if ring[middle].sequence < sequence { low = middle + 1 } else { high = middle }
        }
        return low
    }
}
