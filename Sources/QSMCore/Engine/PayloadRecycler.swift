import Synchronization

/// Byte arrays of published messages that every region acknowledged, handed back by the
/// core so that `QSMNode.tryPublish(copying:to:)` copies the next message into one of
/// them instead of allocating: with it, publishing allocates nothing per message in
/// steady state.
///
/// The core puts (lock-free, never blocking: a full recycler lets the array go);
/// application threads take, one at a time among themselves (a mutex the core never
/// touches), and put back a spare that is still shared (an application that kept the
/// array it passed to `publish`, or the sender's own cached copy): an array is written
/// to only when nothing else holds it.
final class PayloadRecycler: Sendable {
    private let spares: RequestQueue<[UInt8]>
    private let takers = Mutex<Void>(())
    /// Bytes of capacity the spares hold, and the most they may: a spare that would
    /// pass the budget is let go.
    private let heldBytes = Atomic<Int>(0)
    let budgetBytes: Int
    /// Arrays larger than this are not kept.
    static let largestKeptBytes = 64 << 10

    /// - Parameters:
    ///   - capacity: spares kept at most. Twice the window suits: the spares that are
    ///     still shared for a while after their acknowledgement (a member publisher's
    ///     own cached copies) need room beside those ready for reuse.
    ///   - budgetBytes: their capacity in all, at most (twice the window's bytes suit,
    ///     for the same reason).
    init(capacity: Int, budgetBytes: Int) {
        spares = RequestQueue(capacity: max(2, capacity))
        self.budgetBytes = budgetBytes
    }

    /// Offers an array for reuse (the core, and takers putting back a shared one).
    func put(_ bytes: [UInt8]) {
        let size = bytes.capacity
        guard size > 0, size <= Self.largestKeptBytes else { return }
        guard heldBytes.add(size, ordering: .relaxed).newValue <= budgetBytes, spares.tryEnqueue(bytes) else {
            heldBytes.subtract(size, ordering: .relaxed)
            return
        }
    }

    /// On an application thread: an empty array, with capacity when a spare nobody else
    /// holds was there. A spare still shared (the publisher is a member of the group and
    /// still caches its own message) goes to the back for later; after two of those, a
    /// new array.
    func take() -> [UInt8] {
        for _ in 0..<2 {
            guard var bytes = takers.withLock({ _ in spares.dequeue() }) else { break }
            heldBytes.subtract(bytes.capacity, ordering: .relaxed)
            guard isSoleOwner(&bytes) else {
                put(bytes)
                continue
            }
            bytes.removeAll(keepingCapacity: true)
            return bytes
        }
        return []
    }
}
