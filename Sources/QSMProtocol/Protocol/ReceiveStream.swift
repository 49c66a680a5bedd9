/// What one node knows of one sender's traffic in one region: everything is indexed by
/// the sender's per-region sequence number, whatever group a message belongs to.
///
/// A class, updated in place: as a value in the streams dictionary every packet would
/// copy its cache and out-of-order tables (O(window) work per packet).
final class ReceiveStream {
    /// The first sequence number this node is owed (it joined the region then).
    var start: UInt64
    /// Every sequence number in start...contiguous has been received.
    var contiguous: UInt64
    /// The highest sequence number known to exist (seen here or reported by a token).
    var maximumSeen: UInt64
    /// The highest sequence number that reached this node itself (not just reported) in
    /// the sender's own transmission, not a retransmission.
    var maximumReceived: UInt64 = 0
    /// The highest sequence number known stable (held by every member of the region).
    var stable: UInt64 = 0
    /// Received beyond a gap, waiting for it to be repaired.
    var outOfOrder: [UInt64: DataPacket] = [:]
    /// This node's share of the cooperative cache (Fig. 4.12), kept until stable.
    var cache: [UInt64: DataPacket] = [:]
    var cachedBytes = 0
    var outOfOrderBytes = 0
    /// When (in the node's running time) a new packet of this stream last arrived: while
    /// packets keep coming, a missing tail may still be queued behind them.
    var lastArrivalAt = Instant.zero
    /// Missing sequence numbers: when first noticed, how many requests went out and when
    /// the last did (in the node's running time).
    var missing: [UInt64: (since: Instant, attempts: Int, askedAt: Instant)] = [:]
    /// Fragments of the message being reassembled, in order.
    var fragments: [DataPacket] = []
    /// Rounds in which a gap made no progress after the sender left the views.
    var roundsWithoutSender = 0

    init(start: UInt64) {
        self.start = start
        contiguous = start - 1
        maximumSeen = start - 1
    }

    /// Whether anything here still needs a token's attention: gaps, or data not yet
    /// known stable region-wide. A stream that is all stable drops out of tokens, so a
    /// token's size follows the number of active senders (section 4.2.1 C).
    var isActive: Bool { contiguous < maximumSeen || stable < contiguous || !outOfOrder.isEmpty }

    var heldBytes: Int { cachedBytes + outOfOrderBytes }

    /// Drops cached packets now known stable.
    func learnStable(_ value: UInt64) {
        guard value > stable else { return }
        let previous = stable
        stable = min(value, contiguous)
        guard !cache.isEmpty, stable > previous else { return }
        // Everything cached lies above the previous stable point (only packets beyond the
        // contiguous prefix are ever added), so only the newly stable range is removed:
        // work in proportion to what became stable, not to the cache's size.
        if stable - previous <= UInt64(cache.count) {
            for sequence in (previous + 1)...stable {
                if let packet = cache.removeValue(forKey: sequence) { cachedBytes -= packet.payload.count }
            }
        } else {
            let limit = stable
            cache = cache.filter { $0.key > limit }
            cachedBytes = cache.values.reduce(0) { $0 + $1.payload.count }
        }
    }
}

/// Identifies a stream: one sender in one region.
struct StreamKey: Hashable {
    var sender: NodeID
    var region: RegionID
}
