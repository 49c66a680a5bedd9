import Synchronization

/// A bounded, lock-free, single-producer single-consumer queue: how the core hands
/// deliveries to its dispatcher thread, and the dispatcher hands payload arrays back.
///
/// `RequestQueue` serves many producers, so every element costs a compare-and-swap and
/// two sequentially consistent stores on its slot's sequence number, and the producer
/// and the consumer trade that slot's cache line for every element. With one producer
/// and one consumer, each side owns its own position and publishes it with a plain
/// release store; each keeps a copy of the other's position and reads the shared one
/// only when its copy says full (producer) or empty (consumer). A consumer that finds
/// 30 elements waiting takes them all on one read of the producer's position (the
/// classic Lamport queue with cached indices).
///
/// Exactly one thread may enqueue and exactly one (possibly another) may call `dequeue`
/// and `hasReadyElement`; that is the caller's contract, not checked.
///
/// Waking a sleeping consumer: publication is a release store, which a processor may
/// hold in its store buffer past a later load. A producer that then checks whether the
/// consumer sleeps must fence first (`ConsumerWakeup.signalIfSleepingAfterFence`);
/// `hasReadyElement` is sequentially consistent, for the consumer's side of that check.
package final class HandoffQueue<Element: Sendable>: @unchecked Sendable {
    /// Slots in the ring (a power of two).
    package let capacity: Int
    private let mask: Int
    private let elements: UnsafeMutablePointer<Element>
    /// Four cache lines: the producer's published position, the consumer's published
    /// position, the producer's own fields, the consumer's own fields. Apart, so that
    /// neither side's every-element writes steal a line the other side reads.
    private let lines: UnsafeMutableRawPointer
    private static var cacheLine: Int { 128 }

    private var publishedTail: UnsafeMutablePointer<Atomic<Int>> {
        lines.assumingMemoryBound(to: Atomic<Int>.self)
    }
    private var publishedHead: UnsafeMutablePointer<Atomic<Int>> {
        (lines + Self.cacheLine).assumingMemoryBound(to: Atomic<Int>.self)
    }
    /// Producer only: next position to write, and the consumer's position as last read.
    private var producer: UnsafeMutablePointer<(tail: Int, knownHead: Int)> {
        (lines + 2 * Self.cacheLine).assumingMemoryBound(to: (tail: Int, knownHead: Int).self)
    }
    /// Consumer only: next position to read, and the producer's position as last read.
    private var consumer: UnsafeMutablePointer<(head: Int, knownTail: Int)> {
        (lines + 3 * Self.cacheLine).assumingMemoryBound(to: (head: Int, knownTail: Int).self)
    }

    /// - Parameter capacity: slots wanted; rounded up to a power of two, at least 2.
    package init(capacity: Int) {
        let size = ringSlots(forCapacity: capacity, of: "handoff queue")
        self.capacity = size
        mask = size - 1
        elements = .allocate(capacity: size)
        lines = .allocate(byteCount: 4 * Self.cacheLine, alignment: Self.cacheLine)
        lines.bindMemory(to: Atomic<Int>.self, capacity: 1).initialize(to: Atomic(0))
        (lines + Self.cacheLine).bindMemory(to: Atomic<Int>.self, capacity: 1).initialize(to: Atomic(0))
        (lines + 2 * Self.cacheLine).bindMemory(to: (tail: Int, knownHead: Int).self, capacity: 1).initialize(to: (0, 0))
        (lines + 3 * Self.cacheLine).bindMemory(to: (head: Int, knownTail: Int).self, capacity: 1).initialize(to: (0, 0))
    }

    deinit {
        while dequeue() != nil {}
        elements.deallocate()
        publishedTail.deinitialize(count: 1)
        publishedHead.deinitialize(count: 1)
        lines.deallocate()
    }

    /// Adds `element` unless the queue is full. Producer thread only.
    /// - Returns: false when full (the element is not queued, and is let go).
    package func tryEnqueue(_ element: consuming Element) -> Bool {
        enqueueOrReturn(consume element) == nil
    }

    /// Adds `element` unless the queue is full, in which case it comes back (for the
    /// caller to hold on to). Producer thread only.
    package func enqueueOrReturn(_ element: consuming Element) -> Element? {
        let tail = producer.pointee.tail
        if tail - producer.pointee.knownHead == capacity {
            producer.pointee.knownHead = publishedHead.pointee.load(ordering: .acquiring)
            if tail - producer.pointee.knownHead == capacity { return element }
        }
        (elements + (tail & mask)).initialize(to: consume element)
        producer.pointee.tail = tail + 1
        publishedTail.pointee.store(tail + 1, ordering: .releasing)
        return nil
    }

    /// Removes the oldest element. Consumer thread only.
    package func dequeue() -> Element? {
        let head = consumer.pointee.head
        if head == consumer.pointee.knownTail {
            consumer.pointee.knownTail = publishedTail.pointee.load(ordering: .acquiring)
            if head == consumer.pointee.knownTail { return nil }
        }
        let element = (elements + (head & mask)).move()
        consumer.pointee.head = head + 1
        publishedHead.pointee.store(head + 1, ordering: .releasing)
        return element
    }

    /// Whether an element is ready for the consumer (sequentially consistent: see the
    /// type's notes on waking). Consumer thread only.
    package var hasReadyElement: Bool {
        publishedTail.pointee.load(ordering: .sequentiallyConsistent) != consumer.pointee.head
    }
}

/// The slots of a ring that holds `capacity` elements: a power of two, at least 2.
func ringSlots(forCapacity capacity: Int, of queue: String) -> Int {
    precondition(capacity > 0 && capacity <= 1 << 30, "\(queue) capacity must be 1...2^30")
    var size = 2
    while size < capacity { size <<= 1 }
    return size
}
