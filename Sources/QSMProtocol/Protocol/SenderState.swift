/// One message published by this node, held until every region it was sent to has
/// acknowledged it (seed section 4.3.6: sender memory = rate x time to acknowledge).
final class OutgoingMessage {
    // Stored properties are `@exclusivity(unchecked)`: this state is confined to one thread
    // and never accessed overlappingly; the runtime's dynamic checks cost about 5% of a
    // receiver's CPU (perf, `qsm-bench run`). They are variables because a message that
    // every region acknowledged is reused for a later publication (`reuse`): the send
    // path then allocates no object per message.
    @exclusivity(unchecked) private(set) var id: UInt64 = 0
    @exclusivity(unchecked) private(set) var group: GroupID = GroupID(0)
    @exclusivity(unchecked) private(set) var groupView: UInt64 = 0
    @exclusivity(unchecked) private(set) var groupSequence: UInt64 = 0
    @exclusivity(unchecked) private(set) var payload: [UInt8] = []
    @exclusivity(unchecked) private(set) var publishedAt: Instant = .zero
    /// The regions of the group view it is committed to.
    @exclusivity(unchecked) private(set) var regions: [RegionReference] = []
    /// Next transmission: which region, which fragment.
    @exclusivity(unchecked) var regionCursor = 0
    @exclusivity(unchecked) var fragmentCursor = 0
    @exclusivity(unchecked) var unacknowledgedRegions = 0
    /// Sent once to the group's own address with every region's header (hybrid mode).
    @exclusivity(unchecked) var hybrid = false
    /// Whether it is in the send queue (not every transmission has gone yet).
    @exclusivity(unchecked) var queued = false
    /// Queued by a reconfiguration ahead of the rest of the queue (see `carry`).
    @exclusivity(unchecked) var carriedAhead = false
    /// Regions to carry it into once its current transmission is done: it was half sent
    /// when a reconfiguration came, and its copies there must follow the older messages
    /// carried there.
    @exclusivity(unchecked) var deferredCarry: [RegionReference] = []
    /// Regions that acknowledged it from a newer view than it was sent in, and that view
    /// (see `ProtocolNode.acknowledgedUnderNewerView`).
    @exclusivity(unchecked) var viewCheck: [(region: RegionID, view: UInt64)] = []

    init(id: UInt64, group: GroupID, groupView: UInt64, groupSequence: UInt64, payload: consuming [UInt8], publishedAt: Instant,
         regions: [RegionReference]) {
        reuse(id: id, group: group, groupView: groupView, groupSequence: groupSequence, payload: payload,
              publishedAt: publishedAt, regions: regions)
    }

    /// Makes a retired message (acknowledged everywhere, referenced by nothing else) a
    /// new one.
    func reuse(id: UInt64, group: GroupID, groupView: UInt64, groupSequence: UInt64, payload: consuming [UInt8], publishedAt: Instant,
               regions: [RegionReference]) {
        self.id = id
        self.group = group
        self.groupView = groupView
        self.groupSequence = groupSequence
        self.payload = payload
        self.publishedAt = publishedAt
        self.regions = regions
        regionCursor = 0
        fragmentCursor = 0
        unacknowledgedRegions = regions.count
        hybrid = false
        queued = false
        carriedAhead = false
        // Emptied only when not empty: storing an empty array costs a release per message.
        if !deferredCarry.isEmpty { deferredCarry = [] }
        if !viewCheck.isEmpty { viewCheck = [] }
    }

    /// Whether no transmission of it has gone yet (it can still be committed to other
    /// regions).
    var isUnsent: Bool { regionCursor == 0 && fragmentCursor == 0 }

    /// Commits a message that has not been sent yet to the regions of a newer view of
    /// its group (lossless reconfiguration).
    func retarget(_ newRegions: [RegionReference], hybrid: Bool) {
        precondition(isUnsent, "only an unsent message can change its regions")
        regions = newRegions
        unacknowledgedRegions = newRegions.count
        self.hybrid = hybrid
    }

    /// Carries a message that is not yet acknowledged into regions it was not sent in
    /// (members moved there): it is sent there next, and awaits their acknowledgements
    /// too. Per-region transmissions only: the group's own address (hybrid) carried
    /// every region's header at once.
    func carry(into newRegions: [RegionReference]) {
        precondition(!queued || regionCursor == regions.count, "carried mid-transmission")
        regionCursor = regions.count
        fragmentCursor = 0
        regions += newRegions
        unacknowledgedRegions += newRegions.count
        hybrid = false
    }

    /// Drops the regions it has not been sent to yet that `current` (a newer view of its
    /// group) no longer lists: nobody is left there to acknowledge it. The region whose
    /// fragments are under way stays, and so does every region of a hybrid transmission
    /// (numbered in all of them at once). How many went.
    func dropUnsentRegions(notIn current: [RegionReference]) -> Int {
        guard !hybrid else { return 0 }
        let first = fragmentCursor > 0 ? regionCursor + 1 : regionCursor
        guard first < regions.count else { return 0 }
        let kept = regions[first...].filter { unsent in current.contains { $0.id == unsent.id } }
        let dropped = regions.count - first - kept.count
        guard dropped > 0 else { return 0 }
        regions = Array(regions[..<first]) + kept
        unacknowledgedRegions -= dropped
        return dropped
    }

    /// The group's id changed (a restarted GMS numbered the groups anew).
    func regroup(_ newGroup: GroupID) { group = newGroup }

    /// Committed to a view of a GMS that is gone: a restarted one numbers its views
    /// anew, so the message counts as from before every view of it (owed to members
    /// that were in the group before the restart and still are; see `memberSince`).
    func forgetGroupView() { groupView = 0 }

    /// Lets go of the payload of a message that is done (so a retired message does not
    /// keep the application's bytes alive), and returns it: moved out, not copied. The
    /// regions are kept until `reuse` replaces them (they are the group's shared list,
    /// and storing an empty one between would cost two more reference-count operations
    /// per message).
    func retire() -> [UInt8] {
        var taken: [UInt8] = []
        swap(&taken, &payload)
        return taken
    }
}

/// A sender's state in one region it multicasts to. A class, updated in place: as a
/// value every transmission would copy the in-flight table (O(window) per packet).
final class RegionSendState {
    @exclusivity(unchecked) var nextSequence: UInt64 = 1
    @exclusivity(unchecked) var view: UInt64 = 0
    @exclusivity(unchecked) var viewStartSequence: UInt64 = 1
    /// The views this sender numbered in here, oldest first, with their first sequence
    /// numbers: what a member that joined in one of them is owed from. The most recent
    /// `viewHistoryLimit` are kept.
    @exclusivity(unchecked) var viewStarts: [(view: UInt64, start: UInt64)] = []
    static let viewHistoryLimit = 64
    @exclusivity(unchecked) var acknowledged: UInt64 = 0
    /// Transmitted, unacknowledged packets by sequence number, for retransmission.
    @exclusivity(unchecked) var inFlight = InFlightPackets()
    /// Messages in transmission order with their last sequence here, for acknowledgement.
    @exclusivity(unchecked) var awaiting = RingBuffer<(last: UInt64, message: OutgoingMessage)>(initialCapacity: 64)
}

/// What publishing to one group needs, looked up once per message: the group's view
/// number and regions (from the current group view) and its last sequence number.
final class PublishTarget {
    @exclusivity(unchecked) var inView = false
    @exclusivity(unchecked) var viewNumber: UInt64 = 0
    @exclusivity(unchecked) var regions: [RegionReference] = []
    /// Sent once to the group's own address (hybrid mode, more than one region).
    @exclusivity(unchecked) var hybrid = false
    @exclusivity(unchecked) var lastSequence: UInt64 = 0
    /// Messages and payload bytes published to the group (for `TrafficCounters`): kept
    /// here, where each publication finds its target anyway, so counting costs no lookup.
    @exclusivity(unchecked) var publishedMessages = 0
    @exclusivity(unchecked) var publishedBytes = 0
}

/// The packets a sender transmitted in one region and has not seen acknowledged: always
/// a contiguous run of sequence numbers (each is kept as it is numbered, and
/// acknowledgements remove a prefix), so a ring indexed by sequence number holds them,
/// and neither keeping nor finding one hashes anything.
struct InFlightPackets {
    typealias Entry = (message: OutgoingMessage, fragment: UInt16, view: UInt64, viewStart: UInt64)
    private var ring = RingBuffer<Entry>(initialCapacity: 64)
    /// The sequence number of the oldest entry.
    private var first: UInt64 = 1

    var count: Int { ring.count }

    /// Keeps the packet numbered `sequence`: the next after the newest held. Numbering
    /// is consecutive and acknowledgements only remove a prefix (a claim beyond what was
    /// sent empties the ring, and then any number starts it), so anything else is a bug.
    mutating func append(_ entry: Entry, sequence: UInt64) {
        if ring.isEmpty { first = sequence }
        precondition(sequence == first + UInt64(ring.count), "in-flight packets must be numbered consecutively")
        ring.append(entry)
    }

    subscript(sequence: UInt64) -> Entry? {
        guard sequence >= first, sequence - first < UInt64(ring.count) else { return nil }
        return ring[Int(sequence - first)]
    }

    /// Lets go of every packet numbered `sequence` or lower.
    mutating func removeThrough(_ sequence: UInt64) {
        while !ring.isEmpty, first <= sequence {
            _ = ring.popFirst()
            first += 1
        }
    }
}
