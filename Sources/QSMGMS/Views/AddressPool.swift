import QSMProtocol


/// Hands out multicast addresses from a contiguous range so that no two live regions (or
/// hybrid groups) ever hold the same one. Released addresses go to the back of the line:
/// the longest-idle address is reused first, so late packets for a retired region are
/// unlikely to reach the region that gets its address next.
package struct AddressPool {
    package let start: IPv4Address
    package let size: Int
    private var nextFresh = 0
    private var released = RingBuffer<UInt32>(initialCapacity: 64)
    private(set) var inUse = 0

    package init(start: IPv4Address, size: Int) {
        self.start = start
        self.size = size
    }

    /// An unused address, or nil if every address is held.
    package mutating func allocate() -> IPv4Address? {
        if let reused = released.popFirst() {
            inUse += 1
            return IPv4Address(value: reused)
        }
        guard nextFresh < size else { return nil }
        defer { nextFresh += 1 }
        inUse += 1
        return IPv4Address(value: start.value + UInt32(nextFresh))
    }

    package mutating func release(_ address: IPv4Address) {
        released.append(address.value)
        inUse -= 1
    }
}
