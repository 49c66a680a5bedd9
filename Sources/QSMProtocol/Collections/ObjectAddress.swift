/// A hint to the processor's cache, given by the driver (the epoll engine: the C target's
/// PREFETCHW of an object's first two lines; the simulator: none): called with an address
/// soon to be written. It must never fault, whatever the address, so that a pure target
/// can name addresses without importing C or reading through them.
package typealias CacheHint = @convention(c) (UnsafeRawPointer?) -> Void

extension ContiguousArray {
    /// The bits of the element at `index`, read as an address without copying it (no
    /// retain): for an element that is one reference (an optional array or class
    /// instance), where its object lies; nil for an empty slot, or when the element is not
    /// one word. Only for hints to the processor (a prefetch): never dereferenced, and
    /// stale once the element is gone. The one place that reads a reference's bits raw
    /// (`RingBuffer.objectAddress`, `GroupIDTable.objectAddress`).
    func objectAddress(at index: Int) -> UnsafeRawPointer? {
        guard MemoryLayout<Element>.size == MemoryLayout<UnsafeRawPointer?>.size else { return nil }
        return withUnsafeBufferPointer { slots in
            UnsafeRawPointer(slots.baseAddress! + index).load(as: UnsafeRawPointer?.self)
        }
    }
}
