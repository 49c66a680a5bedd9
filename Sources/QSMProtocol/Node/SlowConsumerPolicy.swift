/// The slow-receiver policy (issue 16 item 8): a node whose application takes its
/// deliveries too slowly holds back every sender of its groups (the driver stops
/// reading data while deliveries wait, so the senders' windows fill). Held back for
/// most of every second for `limit`, the node evicts itself from its groups: the others
/// go on, the application is told why (`MembershipEvent.evicted`), the groups' other
/// members and publishers are told too (`MembershipEvent.memberEvicted`), and the
/// application may join again. Never a silent drop.
///
/// Time is counted in one-second slots: a slot counts as held back if the driver said
/// the application was behind for at least 80% of it. Brief stalls (a pause of the
/// application, a burst) never add up to `limit`; a consumer that keeps up with most of
/// the rate is never behind that long. Time the node itself did not run (it was stopped
/// or starved: the deadline passed by a whole slot) does not count.
struct SlowConsumerPolicy {
    static let slotNanoseconds: Int64 = 1_000_000_000
    static let heldShare = 0.8

    /// Zero: never evict.
    let limitNanoseconds: Int64
    private var behindSince: Instant?
    private var slotStart = Instant.zero
    private var behindInSlot: Int64 = 0
    /// Slots in a row held back, up to the last one closed.
    private var heldSlots = 0

    init(limit: Duration) { limitNanoseconds = limit.totalNanoseconds }

    /// Whether the application is behind now.
    var isBehind: Bool { behindSince != nil }

    /// The driver says whether the application is behind (deliveries waiting for it).
    /// Returns true when the node has been held back for `limit`.
    mutating func update(behind: Bool, now: Instant) -> Bool {
        let due = advance(now: now)
        if behind, behindSince == nil {
            behindSince = now
        } else if !behind, let since = behindSince {
            behindInSlot += now.nanoseconds(since: max(since, slotStart))
            behindSince = nil
        }
        return due
    }

    /// Closes the slots that ended by `now`; true when the node has been held back for
    /// `limit` (and starts counting afresh).
    mutating func advance(now: Instant) -> Bool {
        guard limitNanoseconds > 0 else { return false }
        if behindSince == nil, heldSlots == 0, behindInSlot == 0 {
            slotStart = now
            return false
        }
        // Called a whole slot past the deadline: this node did not run meanwhile
        // (stopped, as by SIGSTOP or a paused VM, or starved of CPU). Time it did not see
        // is not time its application held it back (the senders' timeouts and the GMS's
        // heartbeats judge a node that does not run): counting starts afresh.
        if now.nanoseconds(since: slotStart) >= 2 * Self.slotNanoseconds {
            heldSlots = 0
            behindInSlot = 0
            if behindSince != nil { behindSince = now }
            slotStart = now
            return false
        }
        while now.nanoseconds(since: slotStart) >= Self.slotNanoseconds {
            let end = slotStart.advanced(byNanoseconds: Self.slotNanoseconds)
            var held = behindInSlot
            if let since = behindSince { held += end.nanoseconds(since: max(since, slotStart)) }
            heldSlots = Double(held) >= Self.heldShare * Double(Self.slotNanoseconds) ? heldSlots + 1 : 0
            slotStart = end
            behindInSlot = 0
            if Int64(heldSlots) * Self.slotNanoseconds >= limitNanoseconds {
                heldSlots = 0
                if behindSince != nil { behindSince = now }
                slotStart = now
                return true
            }
            if heldSlots == 0, behindSince == nil {
                slotStart = now
                break
            }
        }
        return false
    }

    /// When `advance` next has work: the end of the current slot, while anything counts.
    var nextDeadline: Instant? {
        guard limitNanoseconds > 0, behindSince != nil || heldSlots > 0 || behindInSlot > 0 else { return nil }
        return slotStart.advanced(byNanoseconds: Self.slotNanoseconds)
    }
}
