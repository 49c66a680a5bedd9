/// One alarm's key and position in `BinaryHeapAlarmQueue`.
struct HeapSlot {
    var deadline: Int64
    var sequence: UInt64
    var heapIndex: Int32  // -1 when not in the heap
    var generation: UInt32
    var nextFree: Int32
}

/// An indexed binary min-heap with the same contract as `SplayAlarmQueue`.
///
/// The event core uses the splay tree; this heap exists as the yardstick that
/// `qsm-bench micro` measures the splay tree against, and is tested to the same
/// reference model so that comparison is between two correct queues.
package final class BinaryHeapAlarmQueue<Payload>: AlarmQueue {
    /// Kept outside the generic class so the sift loops are concrete code.
    private typealias Slot = HeapSlot

    private var slots: [Slot] = []
    private var payloads: [Payload?] = []
    private var heap: [Int32] = []
    private var freeHead: Int32 = -1
    private var nextSequence: UInt64 = 1

    package init(initialCapacity: Int = 64) {
        slots.reserveCapacity(initialCapacity)
        payloads.reserveCapacity(initialCapacity)
        heap.reserveCapacity(initialCapacity)
    }

    package var count: Int { heap.count }

    package func schedule(at deadline: Instant, _ payload: Payload) -> AlarmHandle {
        let slot: Int32
        if freeHead >= 0 {
            slot = freeHead
            freeHead = slots[Int(slot)].nextFree
        } else {
            slots.append(Slot(deadline: 0, sequence: 0, heapIndex: -1, generation: 0, nextFree: -1))
            payloads.append(nil)
            slot = Int32(slots.count - 1)
        }
        payloads[Int(slot)] = payload
        setKey(slot, deadline.nanoseconds)
        heap.append(slot)
        slots[Int(slot)].heapIndex = Int32(heap.count - 1)
        siftUp(heap.count - 1)
        return AlarmHandle(slot: slot, generation: slots[Int(slot)].generation)
    }

    @discardableResult
    package func cancel(_ handle: AlarmHandle) -> Payload? {
        guard isPending(handle) else { return nil }
        removeAt(Int(slots[Int(handle.slot)].heapIndex))
        return freeSlot(handle.slot)
    }

    @discardableResult
    package func reschedule(_ handle: AlarmHandle, to deadline: Instant) -> Bool {
        guard isPending(handle) else { return false }
        setKey(handle.slot, deadline.nanoseconds)
        let index = Int(slots[Int(handle.slot)].heapIndex)
        siftUp(index)
        siftDown(Int(slots[Int(handle.slot)].heapIndex))
        return true
    }

    package func nextDeadline() -> Instant? {
        heap.first.map { Instant(nanoseconds: slots[Int($0)].deadline) }
    }

    package func popFirst(notAfter limit: Instant) -> (deadline: Instant, payload: Payload)? {
        guard let first = heap.first, slots[Int(first)].deadline <= limit.nanoseconds else { return nil }
        let deadline = slots[Int(first)].deadline
        removeAt(0)
        return (Instant(nanoseconds: deadline), freeSlot(first)!)
    }

    package func isPending(_ handle: AlarmHandle) -> Bool {
        handle.slot >= 0 && Int(handle.slot) < slots.count
            && slots[Int(handle.slot)].generation == handle.generation
            && slots[Int(handle.slot)].heapIndex >= 0
    }

    /// Checks the heap order and the slot back-pointers; a description of the first
    /// violation, or nil.
    package func invariantViolation() -> String? {
        for index in heap.indices {
            if slots[Int(heap[index])].heapIndex != Int32(index) { return "slot back-pointer wrong at \(index)" }
            if index > 0 && less(heap[index], than: heap[(index - 1) / 2]) { return "heap order broken at \(index)" }
        }
        return nil
    }

    private func setKey(_ slot: Int32, _ deadline: Int64) {
        slots[Int(slot)].deadline = deadline
        slots[Int(slot)].sequence = nextSequence
        nextSequence &+= 1
    }

    private func freeSlot(_ slot: Int32) -> Payload? {
        let payload = payloads[Int(slot)].take()
        slots[Int(slot)].generation &+= 1
        slots[Int(slot)].heapIndex = -1
        slots[Int(slot)].nextFree = freeHead
        freeHead = slot
        return payload
    }

    private func removeAt(_ index: Int) {
        let last = heap.removeLast()
        if index < heap.count {
            heap[index] = last
            slots[Int(last)].heapIndex = Int32(index)
            siftUp(index)
            siftDown(Int(slots[Int(last)].heapIndex))
        }
    }

    @inline(__always)
    private func less(_ a: Int32, than b: Int32) -> Bool {
        let x = slots[Int(a)], y = slots[Int(b)]
        return x.deadline < y.deadline || (x.deadline == y.deadline && x.sequence < y.sequence)
    }

    private func siftUp(_ start: Int) {
        var index = start
        let moving = heap[index]
        while index > 0 {
            let parent = (index - 1) / 2
            guard less(moving, than: heap[parent]) else { break }
            heap[index] = heap[parent]
            slots[Int(heap[index])].heapIndex = Int32(index)
            index = parent
        }
        heap[index] = moving
        slots[Int(moving)].heapIndex = Int32(index)
    }

    private func siftDown(_ start: Int) {
        var index = start
        let moving = heap[index]
        let count = heap.count
        while true {
            let left = 2 * index + 1
            guard left < count else { break }
            let right = left + 1
            let child = right < count && less(heap[right], than: heap[left]) ? right : left
            guard less(heap[child], than: moving) else { break }
            heap[index] = heap[child]
            slots[Int(heap[index])].heapIndex = Int32(index)
            index = child
        }
        heap[index] = moving
        slots[Int(moving)].heapIndex = Int32(index)
    }
}
