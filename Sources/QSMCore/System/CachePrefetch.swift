import CQSMLinux

/// Hints to the processor's cache (the C target's PREFETCHW): a hint never faults, so
/// any address will do, even one whose object has since gone.
enum CachePrefetch {
    /// Brings the `bytes` at `address` into this core's cache, ready to be written.
    @inline(__always)
    static func forWrite(_ address: UnsafeRawPointer, bytes: Int) {
        cqsm_prefetch_for_write(address, bytes)
    }

    /// The same for an object's first two cache lines, as a C function pointer: what a
    /// pure target (`ProtocolNode.cacheHint`) can be handed without importing C.
    static let forWritingObject: @convention(c) (UnsafeRawPointer?) -> Void = cqsm_prefetch_object
}
