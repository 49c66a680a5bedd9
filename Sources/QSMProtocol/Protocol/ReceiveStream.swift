/// What one node knows of one sender's traffic in one region: everything is indexed by
/// the sender's per-region sequence number, whatever group a message belongs to.
///
/// A class, updated in place: as a value in the streams dictionary every packet would
/// copy its cache and out-of-order tables (O(window) work per packet).
final class ReceiveStream {
    // Stored properties are `@exclusivity(unchecked)`: this state is confined to one thread
    // and never accessed overlappingly; the runtime's dynamic checks cost about 5% of a
    // receiver's CPU (perf, `qsm-bench run`).
    /// The first sequence number this node is owed (it joined the region then).
    @exclusivity(unchecked) var start: UInt64
    /// Every sequence number in start...contiguous has been received.
    @exclusivity(unchecked) var contiguous: UInt64
    /// The highest sequence number known to exist (seen here or reported by a token).
    @exclusivity(unchecked) var maximumSeen: UInt64
    /// Retransmitted packets of this stream that reached this node (repairs of its losses).
    @exclusivity(unchecked) var retransmissionsReceived = 0
    /// The highest sequence number that reached this node itself (not just reported) in
    /// the sender's own transmission, not a retransmission.
    @exclusivity(unchecked) var maximumReceived: UInt64 = 0
    /// The highest sequence number known stable (held by every member of the region).
    @exclusivity(unchecked) var stable: UInt64 = 0
    /// Received beyond a gap, waiting for it to be repaired, and not in `cache` (a packet
    /// this node caches is held there only: every number above `contiguous` in the cache
    /// is one received beyond a gap, so storing it twice only cost a second table insert
    /// and removal per packet, a tenth of a receiver's work under 5% loss).
    @exclusivity(unchecked) var outOfOrder: SequencedPackets
    /// How many of the cache's packets are numbered above `contiguous` (received beyond
    /// a gap, not yet accepted): they count toward the node's out-of-order bound.
    @exclusivity(unchecked) var aheadInCache = 0
    /// This node's share of the cooperative cache (Fig. 4.12), kept until stable.
    @exclusivity(unchecked) var cache: SequencedPackets
    @exclusivity(unchecked) var cachedBytes = 0 { didSet { tally.bytes += cachedBytes - oldValue } }
    @exclusivity(unchecked) var outOfOrderBytes = 0 { didSet { tally.bytes += outOfOrderBytes - oldValue } }
    /// The node's running total of what all its streams hold, kept in step by every change
    /// above (and by `deinit`), so the node reads its held bytes in O(1) per packet
    /// instead of summing over every stream: with 300 senders that sum was a fifth of a
    /// receiver's CPU.
    let tally: HeldBytesTally
    /// When (in the node's running time) a new packet of this stream last arrived: while
    /// packets keep coming, a missing tail may still be queued behind them.
    @exclusivity(unchecked) var lastArrivalAt = Instant.zero
    /// Missing sequence numbers: when first noticed, how many requests went out and when
    /// the last did (in the node's running time).
    @exclusivity(unchecked) var missing: [UInt64: (since: Instant, attempts: Int, askedAt: Instant)] = [:]
    /// Fragments of the message being reassembled, in order.
    @exclusivity(unchecked) var fragments: [DataPacket] = []
    /// After the sender left: for each gap, the peers that said they do not hold it
    /// (see `SenderCrashRecovery`).
    @exclusivity(unchecked) var denials: [UInt64: Set<NodeID>] = [:]
    /// Whether the search for the departed sender's gaps has begun: their asks are then
    /// counted afresh (see `SenderCrashRecovery.beginOrphanSearch`).
    @exclusivity(unchecked) var orphanSearchBegun = false
    /// Where each of the sender's views began, as seen in order (the latest
    /// `viewHistoryLimit`): lets this node tell a new member where its debt begins when
    /// the sender cannot (it crashed). See `DebtStart`.
    @exclusivity(unchecked) var viewStarts: [(view: UInt64, start: UInt64)] = []
    /// No view start was missed between the first recorded and the contiguous prefix
    /// (false once gaps were abandoned: their packets, and a view's start, may be gone).
    @exclusivity(unchecked) var viewHistoryGapless = true
    /// Nothing recorded was trimmed: the history reaches back to `start`.
    @exclusivity(unchecked) var viewHistoryFromStart = true
    static let viewHistoryLimit = 16

    init(start: UInt64, tally: HeldBytesTally) {
        self.tally = tally
        cache = SequencedPackets(tally: tally)
        outOfOrder = SequencedPackets(tally: tally)
        self.start = start
        contiguous = start - 1
        maximumSeen = start - 1
    }

    /// Whether anything here still needs a token's attention: gaps, or data not yet
    /// known stable region-wide. A stream that is all stable drops out of tokens, so a
    /// token's size follows the number of active senders (section 4.2.1 C).
    var isActive: Bool { contiguous < maximumSeen || stable < contiguous || !outOfOrder.isEmpty }

    var heldBytes: Int { cachedBytes + outOfOrderBytes }

    /// Packets held beyond the contiguous prefix, in either table.
    var heldAhead: Int { outOfOrder.count + aheadInCache }

    /// Whether packet `sequence` (above the contiguous prefix) is held, in either table.
    @inline(__always)
    func holdsAhead(_ sequence: UInt64) -> Bool {
        (!outOfOrder.isEmpty && outOfOrder[sequence] != nil) || (aheadInCache > 0 && cache[sequence] != nil)
    }

    /// Every packet held beyond the contiguous prefix, in rising order.
    var packetsAhead: [DataPacket] {
        let cached = aheadInCache > 0 ? cache.packets.filter { $0.sequence > contiguous } : []
        return (outOfOrder.packets + cached).sorted { $0.sequence < $1.sequence }
    }

    deinit {
        tally.bytes -= cachedBytes + outOfOrderBytes
        tally.tableSlots -= cache.extraSlots + outOfOrder.extraSlots
    }

    /// The packet at the contiguous prefix's new end was numbered in `view`, which began
    /// at `start`: one comparison per packet, an append only when the view changes.
    @inline(__always)
    func recordViewStart(view: UInt64, start: UInt64) {
        if let last = viewStarts.last, last.view >= view { return }
        if viewStarts.count == Self.viewHistoryLimit {
            viewStarts.removeFirst()
            viewHistoryFromStart = false
        }
        viewStarts.append((view, start))
    }

    /// Where the sender's messages of `view`, or of the first later view it numbered in,
    /// begin, if this node's history can say so for certain: an exact record of that view
    /// always can; a later view's only if the history is gapless from before `view` (or
    /// from the sender's very first message), so no view in between went unseen.
    func viewStart(from view: UInt64) -> (view: UInt64, start: UInt64)? {
        guard let index = viewStarts.firstIndex(where: { $0.view >= view }) else { return nil }
        let found = viewStarts[index]
        if found.view == view { return found }
        guard viewHistoryGapless else { return nil }
        if index > 0 || (viewHistoryFromStart && start == 1 && found.start == 1) { return found }
        return nil
    }

    /// Drops cached packets now known stable (with the driver's cache `hint`, if any: see
    /// `SequencedPackets.removeThrough`).
    func learnStable(_ value: UInt64, hint: CacheHint?) {
        guard value > stable else { return }
        let previous = stable
        stable = min(value, contiguous)
        guard !cache.isEmpty, stable > previous else { return }
        // The cache is in sequence order: the newly stable packets are at its front, so
        // the work is in proportion to what became stable, not to the cache's size.
        var released = 0
        cache.removeThrough(stable, hint: hint) { released += $0.payload.count }
        cachedBytes -= released
    }
}

/// What every stream of one node holds (cache and out-of-order packets), in bytes, and
/// what their packet tables take beyond their initial size, in slots (see
/// `SequencedPackets`), against `tableSlotLimit`.
final class HeldBytesTally {
    @exclusivity(unchecked) var bytes = 0
    @exclusivity(unchecked) var tableSlots = 0
    @exclusivity(unchecked) var tableSlotLimit = Int.max
}

/// Identifies a stream: one sender in one region.
struct StreamKey: Hashable {
    var sender: NodeID
    var region: RegionID
}

/// How one view of a region spread the cooperative cache: its partitions, and which of
/// them is this node's (nil if it was in none).
struct CacheLayout {
    var view: UInt64
    var partitions: [Partition]
    var mine: Int?
    /// Views of a region whose layouts are kept.
    static let kept = 16
}
