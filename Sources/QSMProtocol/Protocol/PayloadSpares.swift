/// Arrays of payloads already delivered, handed back by the driver, for decoding the next
/// payloads into: a receiver then allocates nothing per message. An array someone still
/// shares (a cached copy, a delivery the application kept) is copied on write when
/// reused, as any Swift array would be: correctness never depends on who let go.
///
/// Bounded twice: at most `limit` arrays and `budgetBytes` of their capacity. The count
/// must cover what is still shared for a while after delivery (the cached share of the
/// messages not yet stable: rate x stability lag, thousands at full rate) with room
/// besides for spares that are free.
///
/// The other arrays a decoded packet needs live here too, since decoding takes these
/// spares: the records of tokens (`recordArray(reserving:)`, at most `recordArraysKept`).
struct PayloadSpares {
    /// Arrays for one packet's payload each (capacity below `wholeFrom`).
    private var arrays = RingBuffer<[UInt8]>(initialCapacity: 16)
    /// Arrays of at least `wholeFrom` bytes: whole messages reassembled from fragments
    /// come back in these, and the next reassembly takes one (see `spare(reserving:)`).
    /// Kept apart so that a message of many fragments takes one large array rather than
    /// trying small ones that cannot hold it.
    private var wholes = RingBuffer<[UInt8]>(initialCapacity: 16)
    let limit: Int
    let budgetBytes: Int
    /// The capacity from which an array counts as a whole message's: above any one
    /// packet's payload (`ProtocolConfiguration.maximumFragmentBytes`, with room for the
    /// allocator's rounding).
    let wholeFrom: Int
    private(set) var heldBytes = 0
    /// Arrays larger than this are not kept.
    static let largestKeptBytes = 64 << 10

    init(limit: Int, budgetBytes: Int = 16 << 20, maximumFragmentBytes: Int = 1_400) {
        precondition(MemoryLayout<[UInt8]>.size == MemoryLayout<AnyObject?>.size, "an array is not one reference here")
        self.limit = limit
        self.budgetBytes = budgetBytes
        wholeFrom = maximumFragmentBytes + 64
    }

    var count: Int { arrays.count + wholes.count }

    /// Arrays of token records from tokens that were sent, or whose round completed, for
    /// the next token decoded or made here: token rounds then allocate nothing either.
    private var recordArrays: [[TokenRecord]] = []
    /// The most record arrays kept (a node has a token or two per ring in hand at once).
    static let recordArraysKept = 64

    /// An empty array of token records with room for `count`: a kept one that nothing
    /// else holds (a copy of a token still queued shares its records), else a new one.
    mutating func recordArray(reserving count: Int) -> [TokenRecord] {
        while var records = recordArrays.popLast() {
            guard isSoleOwner(&records) else { continue }
            records.removeAll(keepingCapacity: true)
            records.reserveCapacity(count)
            return records
        }
        var records: [TokenRecord] = []
        records.reserveCapacity(count)
        return records
    }

    /// Keeps a token's records for a later token (within `recordArraysKept`).
    mutating func put(records: [TokenRecord]) {
        guard records.capacity > 0, recordArrays.count < Self.recordArraysKept else { return }
        if recordArrays.capacity == 0 { recordArrays.reserveCapacity(Self.recordArraysKept) }
        recordArrays.append(records)
    }

    mutating func put(_ bytes: consuming [UInt8]) {
        let size = bytes.capacity
        guard count < limit, size > 0, size <= Self.largestKeptBytes, heldBytes + size <= budgetBytes else { return }
        heldBytes += size
        if size >= wholeFrom { wholes.append(bytes) } else { arrays.append(bytes) }
    }

    private mutating func take(whole: Bool) -> [UInt8]? {
        guard let bytes = whole ? wholes.popFirst() : arrays.popFirst() else { return nil }
        heldBytes -= bytes.capacity
        return bytes
    }

    /// Where the spare array `ahead` places from the next one lies (its storage object:
    /// header, then elements), for the driver to have it fetched into the cache before
    /// a payload is copied into it; nil when there is none.
    ///
    /// Spares are taken oldest first (the newest are the likeliest still shared with the
    /// cache), so the one taken has not been touched for about a window of messages: at
    /// full rate its lines are out of the cache, and the copy into it waited on each
    /// (issue 15: 1000-byte messages, the copy's stores were a sixth of a receiver core).
    func spareAddress(ahead: Int) -> UnsafeRawPointer? { arrays.objectAddress(at: ahead) }

    /// Which spares the payloads of the datagram after one of `datagramBytes` will most
    /// likely be copied into: as many as this one's payloads (guessed from the size of
    /// the last payload), from one past those this one takes (one may be skipped, still
    /// shared), each `bytes` long from its object's start (header, then payload).
    func prefetchPlan(datagramBytes: Int) -> (offset: Int, count: Int, bytes: Int) {
        let payload = max(lastCopiedBytes, 1)
        let packets = min(max(1, datagramBytes / (payload + DataPacket.headerBytes + DatagramBundle.lengthBytes)),
                          Self.prefetchedAtMost)
        return (packets + 1, packets, payload + Self.arrayHeaderBytes)
    }

    /// The size of the payload last copied in, the guess at the next ones'.
    private(set) var lastCopiedBytes = 0
    /// A prefetch plan's most spares (a bundle of tiny messages holds dozens).
    static let prefetchedAtMost = 16
    /// An array's storage object ahead of its elements (object header, count, capacity).
    static let arrayHeaderBytes = 32

    /// `source` copied into a spare array (or a new one), as a slice of all of it. A
    /// spare still shared (its payload is cached, or a delivery was kept) is not written
    /// to: it goes to the back, to be tried again later; after a couple of those, a new
    /// array is allocated (the bound keeps each message's cost constant).
    mutating func copy(_ source: UnsafeRawBufferPointer) -> ArraySlice<UInt8> {
        lastCopiedBytes = source.count
        guard var bytes = takeSpare(whole: false, reserving: source.count) else { return ArraySlice(source) }
        bytes.append(contentsOf: source)
        return ArraySlice(bytes)
    }

    /// An empty array with room for `count` bytes, for a message reassembled from its
    /// fragments: a whole-message spare that nothing else shares and that is large
    /// enough, else a new one (of at least `wholeFrom` bytes, so that it comes back to
    /// the whole-message spares). Spares found shared go to the back, as in `copy(_:)`;
    /// one found too small is let go, so that the arrays kept come to fit the messages
    /// that arrive.
    mutating func spare(reserving count: Int) -> [UInt8] {
        if let bytes = takeSpare(whole: true, reserving: count) { return bytes }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(max(count, wholeFrom))
        return bytes
    }

    private mutating func takeSpare(whole: Bool, reserving count: Int) -> [UInt8]? {
        for _ in 0..<2 {
            guard var bytes = take(whole: whole) else { break }
            guard isSoleOwner(&bytes) else {
                put(bytes)
                continue
            }
            // A whole-message array too small for this message is let go (a new one is
            // made to measure); a small one grows as it is written, once.
            guard !whole || bytes.capacity >= count else { continue }
            bytes.removeAll(keepingCapacity: true)
            return bytes
        }
        return nil
    }
}

/// Whether `array` holds the only reference to its storage, so writing to it will not
/// copy. The standard library keeps this test to itself; on this platform an array is
/// one reference to its storage object, so the test is the one classes have, applied to
/// that reference in place (no retain, no copy). Inlinable: called from another module
/// unspecialized, it looked up generic metadata on every call (the publisher's thread
/// spent a fifth of its time there at 100 bytes).
@inlinable
package func isSoleOwner<Element>(_ array: inout [Element]) -> Bool {
    withUnsafeMutablePointer(to: &array) { pointer in
        // As an optional reference: the non-optional form copies the reference in an
        // unoptimized build, and then never sees it unique.
        pointer.withMemoryRebound(to: Optional<AnyObject>.self, capacity: 1) { isKnownUniquelyReferenced(&$0.pointee) }
    }
}
