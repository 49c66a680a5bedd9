/// Packets kept by sequence number: a stream's share of the cooperative cache, and the
/// packets it holds beyond a gap. Every operation on the per-message path is O(1) and
/// hashes nothing: a packet's slot is its number modulo a power-of-two table that spans
/// every number from the lowest held to the highest, and the slot names the packet's
/// place in a pool. Packets leave in order (as they become stable, or as a gap below
/// them is filled), a walk from the lowest.
///
/// A repair that fills a gap is just another insert. (The cache was a sorted ring, and a
/// repair was inserted in place by shifting every later packet: under 5% loss at every
/// receiver that shifting, with its reference counting, was an eighth of a receiver's
/// core.)
///
/// The table grows to the span of numbers held, so it costs 4 bytes per number in the
/// span, held or not (a node caches every P-th number when its region has P
/// partitions). Callers bound the span: a stream accepts numbers up to
/// `maximumSequenceJump` beyond its contiguous prefix, and its cache holds nothing at or
/// below the stable point. Two packets far apart in each of many streams would still
/// cost a large table each: growth beyond the initial size is counted in the node's
/// `HeldBytesTally`, and an insert that would take it past its `tableSlotLimit` is
/// refused (the caller treats the packet as not kept).
struct SequencedPackets {
    /// The initial table size, not counted against the node's limit.
    static let initialSlots = 16
    /// Where growth is counted and bounded (nil: unbounded, as in tests).
    private let tally: HeldBytesTally?
    /// For number s, `slots[s & mask]` is 1 + its packet's index in `pool`, or 0: none.
    /// Every slot of a number outside `lowest...highest` is 0.
    private var slots = [Int32](repeating: 0, count: SequencedPackets.initialSlots)
    private var pool: [DataPacket?] = []
    /// Indices of `pool` entries free for reuse.
    private var free: [Int32] = []
    /// The lowest and highest numbers held (meaningful while `count > 0`).
    private var lowest: UInt64 = 0
    private var highest: UInt64 = 0
    private(set) var count = 0

    /// A table kept after the cache empties is at most this large (a pathological span
    /// does not pin its table; an ordinary one is reused, not reallocated).
    static let retainedSlots = 1 << 16

    init(tally: HeldBytesTally? = nil) { self.tally = tally }

    var isEmpty: Bool { count == 0 }

    /// Slots beyond the initial table (what this table counts in its tally).
    var extraSlots: Int { slots.count - Self.initialSlots }
    private var mask: UInt64 { UInt64(slots.count - 1) }

    /// The packet numbered `sequence`, if held.
    subscript(sequence: UInt64) -> DataPacket? {
        guard count > 0, sequence >= lowest, sequence <= highest else { return nil }
        let entry = slots[Int(truncatingIfNeeded: sequence & mask)]
        return entry == 0 ? nil : pool[Int(entry - 1)]
    }

    /// Adds `packet`; false (nothing changed) if its number is held already, or if the
    /// table would have to grow past the node's `tableSlotLimit`.
    @discardableResult
    mutating func insert(_ packet: DataPacket) -> Bool {
        let sequence = packet.sequence
        if count == 0 {
            lowest = sequence
            highest = sequence
        } else {
            if sequence >= lowest, sequence <= highest, slots[Int(truncatingIfNeeded: sequence & mask)] != 0 { return false }
            let low = min(lowest, sequence), high = max(highest, sequence)
            if high - low >= UInt64(slots.count), !grow(toSpan: high - low) { return false }
            lowest = low
            highest = high
        }
        let index: Int32
        if let reused = free.popLast() {
            index = reused
            // The entry is empty (`removeThrough` took its packet, and only it frees
            // entries): write the packet over it without reading it first. An assignment
            // loads the old value to release it, and that load of an entry last touched
            // a window ago was a cache miss: 30% of this function's time.
            assert(pool[Int(index)] == nil)
            pool.withUnsafeMutableBufferPointer { entries in
                (entries.baseAddress! + Int(index)).initialize(to: packet)
            }
        } else {
            index = Int32(pool.count)
            pool.append(packet)
        }
        slots[Int(truncatingIfNeeded: sequence & mask)] = index + 1
        count += 1
        return true
    }

    /// How many numbers ahead of the one being removed `removeThrough` hints at a payload's
    /// header; at a pool entry, twice as far.
    static let hintDistance: UInt64 = 8

    /// Removes every packet numbered `sequence` or lower, oldest first, calling `removed`
    /// with each.
    ///
    /// With a `hint`, tells the processor's cache what the removals ahead will touch: the
    /// pool entry of the packet `2 * hintDistance` numbers on (read next to find its
    /// payload), and the header of the payload `hintDistance` numbers on, whose
    /// reference count the removal writes. Packets leave a window after they came, when
    /// both are cold, and the application's thread may have written the header last.
    /// (Share of a receiver core's samples in this walk, its releases and hints, 1000-byte
    /// messages: 4.8% without hints and 3.6% with at one group; 5.9% and 3.8% at 8,192.)
    mutating func removeThrough(_ sequence: UInt64, hint: CacheHint? = nil, _ removed: (DataPacket) -> Void) {
        guard count > 0, sequence >= lowest else { return }
        let end = min(sequence, highest)
        for number in lowest...end {
            if let hint { hintAhead(of: number, through: end, hint) }
            let slot = Int(truncatingIfNeeded: number & mask)
            let entry = slots[slot]
            guard entry != 0 else { continue }
            slots[slot] = 0
            let packet = pool[Int(entry - 1)].take()!
            free.append(entry - 1)
            count -= 1
            removed(packet)
        }
        guard count > 0 else {
            if slots.count > Self.retainedSlots {
                tally?.tableSlots -= slots.count - Self.retainedSlots
                slots = [Int32](repeating: 0, count: Self.retainedSlots)
            }
            return
        }
        // The next lowest is at most `highest`, which is still held.
        lowest = end + 1
        while slots[Int(truncatingIfNeeded: lowest & mask)] == 0 { lowest += 1 }
    }

    /// Names to `hint` the pool entry `2 * hintDistance` numbers after `number` and the
    /// payload header `hintDistance` after it, each if held and not past `end`. Entries
    /// and payloads are read in place (no retain); nothing named is dereferenced.
    @inline(__always)
    private func hintAhead(of number: UInt64, through end: UInt64, _ hint: CacheHint) {
        let far = number &+ 2 * Self.hintDistance, near = number &+ Self.hintDistance
        let farEntry = far <= end ? slots[Int(truncatingIfNeeded: far & mask)] : 0
        let nearEntry = near <= end ? slots[Int(truncatingIfNeeded: near & mask)] : 0
        guard farEntry != 0 || nearEntry != 0 else { return }
        pool.withUnsafeBufferPointer { entries in
            if farEntry != 0 { hint(UnsafeRawPointer(entries.baseAddress! + Int(farEntry - 1))) }
            // Payloads are decoded into whole arrays (`PayloadSpares.copy`): the array's
            // object, with its reference count, starts a header before its elements.
            if nearEntry != 0, let packet = entries[Int(nearEntry - 1)] {
                let start = packet.payload.startIndex
                hint(packet.payload.withUnsafeBytes { bytes in
                    bytes.baseAddress.map { $0 - start - PayloadSpares.arrayHeaderBytes }
                })
            }
        }
    }

    /// Removes and returns the packet numbered `sequence` if it is the lowest held (the
    /// next one in order, for a buffer of packets ahead of a contiguous prefix).
    mutating func popFirst(numbered sequence: UInt64) -> DataPacket? {
        guard count > 0, lowest == sequence else { return nil }
        var first: DataPacket?
        removeThrough(sequence) { first = $0 }
        return first
    }

    /// How many packets numbered in `range` are held (O(length of the range held)).
    func count(in range: ClosedRange<UInt64>) -> Int {
        guard count > 0, range.upperBound >= lowest, range.lowerBound <= highest else { return 0 }
        var found = 0
        for number in max(range.lowerBound, lowest)...min(range.upperBound, highest)
            where slots[Int(truncatingIfNeeded: number & mask)] != 0 {
            found += 1
        }
        return found
    }

    /// Every packet, in rising order.
    var packets: [DataPacket] {
        guard count > 0 else { return [] }
        return (lowest...highest).compactMap { self[$0] }
    }

    /// A table of the next power of two above `span` (the largest minus the smallest
    /// number to be held), every held packet moved to its new slot; false (nothing
    /// changed) if the tally has no room for it.
    private mutating func grow(toSpan span: UInt64) -> Bool {
        guard span < 1 << 32 else { return false }
        var capacity = slots.count
        while UInt64(capacity) <= span { capacity *= 2 }
        if let tally {
            guard tally.tableSlots + capacity - slots.count <= tally.tableSlotLimit else { return false }
            tally.tableSlots += capacity - slots.count
        }
        var grown = [Int32](repeating: 0, count: capacity)
        let newMask = UInt64(capacity - 1)
        for number in lowest...highest {
            let entry = slots[Int(truncatingIfNeeded: number & mask)]
            if entry != 0 { grown[Int(truncatingIfNeeded: number & newMask)] = entry }
        }
        slots = grown
        return true
    }
}
