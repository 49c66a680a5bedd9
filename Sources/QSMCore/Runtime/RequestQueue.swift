import Synchronization

/// A bounded, lock-free, multi-producer single-consumer queue: how application threads
/// hand work to the core thread (section 4.2.2: the core must never block on a lock).
///
/// The algorithm is Dmitry Vyukov's bounded queue: each slot carries a sequence number
/// that says whose turn it is; producers claim a position with one compare-and-swap and
/// publish the element by advancing the slot's sequence; the single consumer takes
/// elements in position order. Each producer's items therefore come out in the order it
/// put them in. Storage is allocated once; a full queue refuses (`tryEnqueue` returns
/// false) rather than growing, so memory stays bounded.
///
/// Sequence stores and loads are sequentially consistent so that the core's "about to
/// sleep; is anything queued?" check and a producer's "is the core asleep?" check cannot
/// both miss each other (see `EventCoreHandle`).
package final class RequestQueue<Element: Sendable>: @unchecked Sendable {
    /// Slots in the ring (a power of two).
    package let capacity: Int
    private let mask: Int
    private let sequences: UnsafeMutablePointer<Atomic<Int>>
    private let elements: UnsafeMutablePointer<Element>
    /// The producers' shared position and the consumer's own position live on separate
    /// cache lines: every enqueue writes the first and every dequeue the second, and on
    /// one line the two sides would steal it from each other on every item.
    private let positions: UnsafeMutableRawPointer
    private var enqueuePosition: UnsafeMutablePointer<Atomic<Int>> {
        positions.assumingMemoryBound(to: Atomic<Int>.self)
    }
    /// Read and written only by the single consumer, so a plain integer.
    private var dequeuePosition: UnsafeMutablePointer<Int> {
        (positions + Self.cacheLine).assumingMemoryBound(to: Int.self)
    }
    private static var cacheLine: Int { 128 }

    /// - Parameter capacity: slots wanted; rounded up to a power of two, at least 2.
    package init(capacity: Int) {
        let size = ringSlots(forCapacity: capacity, of: "request queue")
        self.capacity = size
        mask = size - 1
        sequences = .allocate(capacity: size)
        for index in 0..<size {
            (sequences + index).initialize(to: Atomic(index))
        }
        elements = .allocate(capacity: size)
        positions = .allocate(byteCount: 2 * Self.cacheLine, alignment: Self.cacheLine)
        positions.bindMemory(to: Atomic<Int>.self, capacity: 1).initialize(to: Atomic(0))
        (positions + Self.cacheLine).bindMemory(to: Int.self, capacity: 1).initialize(to: 0)
    }

    deinit {
        while dequeue() != nil {}
        sequences.deinitialize(count: capacity)
        sequences.deallocate()
        elements.deallocate()
        enqueuePosition.deinitialize(count: 1)
        positions.deallocate()
    }

    /// Adds `element` unless the queue is full. Safe from any thread.
    /// - Returns: false when full (the element is not queued, and is let go).
    package func tryEnqueue(_ element: consuming Element) -> Bool {
        enqueueOrReturn(consume element) == nil
    }

    /// Adds `element` unless the queue is full, in which case it comes back (for the
    /// caller to reuse what it holds). Safe from any thread.
    package func enqueueOrReturn(_ element: consuming Element) -> Element? {
        var position = enqueuePosition.pointee.load(ordering: .relaxed)
        while true {
            let slot = position & mask
            let sequence = sequences[slot].load(ordering: .sequentiallyConsistent)
            let difference = sequence - position
            if difference == 0 {
                let (exchanged, current) = enqueuePosition.pointee.compareExchange(
                    expected: position, desired: position + 1, ordering: .relaxed)
                if exchanged {
                    // Moved in: a copy retained the payload of a publication here and
                    // released the submitter's, on a count line the core then touches.
                    (elements + slot).initialize(to: consume element)
                    sequences[slot].store(position + 1, ordering: .sequentiallyConsistent)
                    return nil
                }
                position = current
            } else if difference < 0 {
                return element
            } else {
                position = enqueuePosition.pointee.load(ordering: .relaxed)
            }
        }
    }

    /// Removes the oldest published element. Only the single consumer may call this.
    package func dequeue() -> Element? {
        let position = dequeuePosition.pointee
        let slot = position & mask
        let sequence = sequences[slot].load(ordering: .sequentiallyConsistent)
        guard sequence == position + 1 else { return nil }
        let element = (elements + slot).move()
        sequences[slot].store(position + capacity, ordering: .sequentiallyConsistent)
        dequeuePosition.pointee = position + 1
        return element
    }

    /// Whether the next element is ready for the consumer. Only the consumer may call this.
    package var hasReadyElement: Bool {
        let position = dequeuePosition.pointee
        return sequences[position & mask].load(ordering: .sequentiallyConsistent) == position + 1
    }
}
