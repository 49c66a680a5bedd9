/// (sender, group) → delivery stream, looked up for every message delivered.
///
/// The GMS numbers groups densely from 0, so per sender the streams of groups with small
/// ids sit in an array indexed by the id: a lookup reads one 8-byte slot. With 8,192
/// groups a sender's array is 64 KB, where a hash table of every (sender, group) had
/// 16,384 slots of keys and values (about 400 KB) probed per message: the largest cost
/// that many groups added at a receiver (issue 15, `bench/README.md`).
///
/// An id beyond `denseBound` for its sender's stream count (a sender with few streams
/// in groups of high ids, or an id parked by renumbering near `UInt32.max`) goes to a
/// hash table instead, so memory stays proportional to the streams held.
struct DeliveryStreamTable {
    /// One sender's streams, indexed by group id.
    private final class Lane {
        // Confined to the protocol's thread (as all of `ProtocolNode`): no dynamic
        // exclusivity checks on the per-message path.
        @exclusivity(unchecked) var streams: ContiguousArray<DeliveryStream?> = []
        @exclusivity(unchecked) var count = 0
    }

    /// The largest group id (exclusive) a sender with `streams` streams keeps in its
    /// array: at most 8 slots per stream, or 64 (512 bytes) for any sender. A sender's
    /// streams usually arrive in the order of their ids (the GMS numbers groups as they
    /// are created), so its array covers them as they come; and a node that accepts
    /// unauthenticated packets (`--insecure`) spends no more than that on a sender id
    /// that someone made up.
    static func denseBound(streams: Int) -> Int { max(64, 8 * streams) }

    private var lanes: IdentifierTable<NodeID, Lane>
    private var sparse: IdentifierTable<DeliveryKey, DeliveryStream>
    /// The lane of the last sender looked up: senders come in runs.
    private var lastLane: (sender: NodeID, lane: Lane)?
    /// Streams held.
    private(set) var count = 0

    init(seed: UInt64) {
        sparse = IdentifierTable(seed: seed)
        lanes = IdentifierTable(seed: seed ^ 0x6A09_E667_F3BC_C908)
    }

    /// The stream of `key`, if there is one.
    mutating func stream(for key: DeliveryKey) -> DeliveryStream? {
        let index = Int(key.group.value)
        if let lane = lane(of: key.sender), index < lane.streams.count, let stream = lane.streams[index] { return stream }
        return sparse.isEmpty ? nil : sparse[key]
    }

    /// The stream of `key`; assigning nil removes it.
    subscript(key: DeliveryKey) -> DeliveryStream? {
        mutating get { stream(for: key) }
        set {
            remove(key)
            if let newValue { insert(newValue, for: key) }
        }
    }

    /// Every (key, stream), in no particular order.
    var entries: [(key: DeliveryKey, value: DeliveryStream)] {
        var entries: [(key: DeliveryKey, value: DeliveryStream)] = []
        entries.reserveCapacity(count)
        for (sender, lane) in lanes.entries {
            for (index, stream) in lane.streams.enumerated() {
                if let stream { entries.append((DeliveryKey(sender: sender, group: GroupID(UInt32(index))), stream)) }
            }
        }
        entries += sparse.entries
        return entries
    }

    private mutating func lane(of sender: NodeID) -> Lane? {
        if let lastLane, lastLane.sender == sender { return lastLane.lane }
        guard let lane = lanes[sender] else { return nil }
        lastLane = (sender, lane)
        return lane
    }

    private mutating func insert(_ stream: DeliveryStream, for key: DeliveryKey) {
        count += 1
        let index = Int(key.group.value)
        let existing = lane(of: key.sender)
        guard index < Self.denseBound(streams: (existing?.count ?? 0) + 1) else {
            sparse[key] = stream
            return
        }
        let lane = existing ?? Lane()
        if existing == nil {
            lanes[key.sender] = lane
            lastLane = (key.sender, lane)
        }
        if index >= lane.streams.count {
            var size = max(64, lane.streams.count)
            while size <= index { size *= 2 }
            lane.streams.append(contentsOf: repeatElement(nil, count: size - lane.streams.count))
        }
        lane.streams[index] = stream
        lane.count += 1
    }

    private mutating func remove(_ key: DeliveryKey) {
        let index = Int(key.group.value)
        if let lane = lane(of: key.sender), index < lane.streams.count, lane.streams[index] != nil {
            lane.streams[index] = nil
            lane.count -= 1
            count -= 1
            if lane.count == 0 {
                // A sender gone from every group: its array goes with it.
                lanes[key.sender] = nil
                lastLane = nil
            }
        } else if sparse.removeValue(forKey: key) != nil {
            count -= 1
        }
    }
}
