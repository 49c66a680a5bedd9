/// A growable FIFO ring. Grows by doubling when full and never shrinks, so a queue that
/// has reached its working size allocates nothing more.
public struct RingBuffer<Element> {
    private var storage: ContiguousArray<Element?>
    private var head = 0
    public private(set) var count = 0

    public init(initialCapacity: Int = 16) {
        var size = 1
        while size < max(initialCapacity, 1) { size <<= 1 }
        storage = ContiguousArray(repeating: nil, count: size)
    }

    public var isEmpty: Bool { count == 0 }

    public mutating func append(_ element: Element) {
        if count == storage.count { grow() }
        storage[(head + count) & (storage.count - 1)] = element
        count += 1
    }

    /// The oldest element, left in place.
    public var first: Element? { count > 0 ? storage[head] : nil }

    /// Puts an element back at the front (it becomes the next `popFirst()`).
    public mutating func prepend(_ element: Element) {
        if count == storage.count { grow() }
        head = (head - 1 + storage.count) & (storage.count - 1)
        storage[head] = element
        count += 1
    }

    public mutating func popFirst() -> Element? {
        guard count > 0 else { return nil }
        let element = storage[head].take()
        head = (head + 1) & (storage.count - 1)
        count -= 1
        return element
    }

    /// Removes every element for which `shouldRemove` is true, keeping the order of the rest.
    public mutating func removeAll(where shouldRemove: (Element) -> Bool) {
        var kept = 0
        for offset in 0..<count {
            let index = (head + offset) & (storage.count - 1)
            let element = storage[index].take()!
            if !shouldRemove(element) {
                storage[(head + kept) & (storage.count - 1)] = element
                kept += 1
            }
        }
        count = kept
    }

    private mutating func grow() {
        var larger = ContiguousArray<Element?>(repeating: nil, count: storage.count * 2)
        for offset in 0..<count {
            larger[offset] = storage[(head + offset) & (storage.count - 1)].take()
        }
        storage = larger
        head = 0
    }
}
