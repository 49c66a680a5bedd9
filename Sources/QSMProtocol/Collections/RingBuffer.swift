/// A growable FIFO ring. Grows by doubling when full and never shrinks, so a queue that
/// has reached its working size allocates nothing more.
///
/// Public and inlinable: the event core's per-datagram queues use it from another module,
/// where an unspecialized generic would look up type metadata on every call; `package`
/// bodies are not inlined across modules by this toolchain (perf showed
/// `swift_getGenericMetadata` on the event core's hot path). Not meant for applications.
@frozen
public struct RingBuffer<Element> {
    @usableFromInline var storage: ContiguousArray<Element?>
    @usableFromInline var head = 0
    @usableFromInline var storedCount = 0
    /// Elements held.
    @inlinable public var count: Int { storedCount }

    /// An empty ring with room for `initialCapacity` elements (rounded up to a power of two).
    @inlinable
    public init(initialCapacity: Int = 16) {
        var size = 1
        while size < max(initialCapacity, 1) { size <<= 1 }
        storage = ContiguousArray(repeating: nil, count: size)
    }

    /// Whether it holds nothing.
    @inlinable
    public var isEmpty: Bool { count == 0 }

    /// Elements it can hold before growing.
    @inlinable
    public var capacity: Int { storage.count }

    /// Adds `element` at the back. The element is taken, not copied: a caller handing
    /// over its last use of a value stores it without a retain and a release.
    @inlinable
    public mutating func append(_ element: consuming Element) {
        if count == storage.count { grow() }
        storage[(head + count) & (storage.count - 1)] = element
        storedCount += 1
    }

    /// The oldest element, left in place.
    @inlinable
    public var first: Element? { count > 0 ? storage[head] : nil }

    /// The newest element, left in place.
    @inlinable
    public var last: Element? { count > 0 ? storage[(head + count - 1) & (storage.count - 1)] : nil }

    /// The element `offset` places from the front (0 is `first`); `offset` must be below
    /// `count`.
    @inlinable
    public subscript(offset: Int) -> Element {
        precondition(offset >= 0 && offset < count, "ring offset out of range")
        return storage[(head + offset) & (storage.count - 1)]!
    }

    /// The bits of the element `offset` places from the front, read as an address without
    /// copying (no retain), or nil past the end: for an element that is one reference
    /// (an array, a class instance), where its object lies. Only for hints to the
    /// processor (a prefetch); never dereferenced, and stale once the element is gone.
    /// (Internal: the payload spares are its only user.)
    func objectAddress(at offset: Int) -> UnsafeRawPointer? {
        guard offset >= 0, offset < count else { return nil }
        return storage.objectAddress(at: (head + offset) & (storage.count - 1))
    }

    /// Inserts `element` so that it is `offset` places from the front (0...count),
    /// moving the later elements back by one.
    @inlinable
    public mutating func insert(_ element: consuming Element, at offset: Int) {
        precondition(offset >= 0 && offset <= count, "ring offset out of range")
        if count == storage.count { grow() }
        let mask = storage.count - 1
        var index = count
        while index > offset {
            storage[(head + index) & mask] = storage[(head + index - 1) & mask].take()
            index -= 1
        }
        storage[(head + offset) & mask] = element
        storedCount += 1
    }

    /// Puts an element back at the front (it becomes the next `popFirst()`).
    @inlinable
    public mutating func prepend(_ element: consuming Element) {
        if count == storage.count { grow() }
        head = (head - 1 + storage.count) & (storage.count - 1)
        storage[head] = element
        storedCount += 1
    }

    /// Removes and returns the oldest element, if any.
    @inlinable
    public mutating func popFirst() -> Element? {
        guard count > 0 else { return nil }
        let element = storage[head].take()
        head = (head + 1) & (storage.count - 1)
        storedCount -= 1
        return element
    }

    /// Removes every element for which `shouldRemove` is true, keeping the order of the rest.
    @inlinable
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
        storedCount = kept
    }

    @usableFromInline
    mutating func grow() {
        var larger = ContiguousArray<Element?>(repeating: nil, count: storage.count * 2)
        for offset in 0..<count {
            larger[offset] = storage[(head + offset) & (storage.count - 1)].take()
        }
        storage = larger
        head = 0
    }
}
