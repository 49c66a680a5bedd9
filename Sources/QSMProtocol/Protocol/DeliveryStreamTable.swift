/// (sender, group) → delivery stream, looked up for every message delivered.
///
/// Per sender, a `GroupIDTable`: the streams of groups with small ids sit in an array
/// indexed by the id, so a lookup reads one 8-byte slot. With 8,192 groups a sender's
/// array is 64 KB, where a hash table of every (sender, group) had 16,384 slots of keys
/// and values (about 400 KB) probed per message: the largest cost that many groups added
/// at a receiver (issue 15, `bench/README.md`). Other ids are hashed, so memory stays
/// proportional to the streams held.
struct DeliveryStreamTable {
    /// One sender's streams, by group id.
    private final class Lane {
        // Confined to the protocol's thread (as all of `ProtocolNode`): no dynamic
        // exclusivity checks on the per-message path.
        @exclusivity(unchecked) var streams: GroupIDTable<DeliveryStream>

        init(seed: UInt64) { streams = GroupIDTable(seed: seed) }
    }

    private var lanes: IdentifierTable<NodeID, Lane>
    private let seed: UInt64
    /// The lane of the last sender looked up: senders come in runs.
    private var lastLane: (sender: NodeID, lane: Lane)?
    /// Streams held.
    private(set) var count = 0

    init(seed: UInt64) {
        self.seed = seed
        lanes = IdentifierTable(seed: seed ^ 0x6A09_E667_F3BC_C908)
    }

    /// The stream of `key`, if there is one.
    mutating func stream(for key: DeliveryKey) -> DeliveryStream? {
        lane(of: key.sender)?.streams[key.group]
    }

    /// Where the stream of `key` lies, without a retain and without a lookup of its
    /// sender (only the last sender's lane is tried): for a cache hint, never dereferenced.
    func streamAddress(for key: DeliveryKey) -> UnsafeRawPointer? {
        guard let lastLane, lastLane.sender == key.sender else { return nil }
        return lastLane.lane.streams.objectAddress(of: key.group)
    }

    /// The stream of `key`; assigning nil removes it.
    subscript(key: DeliveryKey) -> DeliveryStream? {
        mutating get { stream(for: key) }
        set {
            remove(key)
            guard let newValue else { return }
            let lane = lane(of: key.sender) ?? {
                let lane = Lane(seed: seed &+ key.sender.value)
                lanes[key.sender] = lane
                lastLane = (key.sender, lane)
                return lane
            }()
            lane.streams[key.group] = newValue
            count += 1
        }
    }

    /// Every (key, stream), in no particular order.
    var entries: [(key: DeliveryKey, value: DeliveryStream)] {
        var entries: [(key: DeliveryKey, value: DeliveryStream)] = []
        entries.reserveCapacity(count)
        for (sender, lane) in lanes.entries {
            for (group, stream) in lane.streams.entries { entries.append((DeliveryKey(sender: sender, group: group), stream)) }
        }
        return entries
    }

    private mutating func lane(of sender: NodeID) -> Lane? {
        if let lastLane, lastLane.sender == sender { return lastLane.lane }
        guard let lane = lanes[sender] else { return nil }
        lastLane = (sender, lane)
        return lane
    }

    private mutating func remove(_ key: DeliveryKey) {
        guard let lane = lane(of: key.sender), lane.streams.removeValue(forKey: key.group) != nil else { return }
        count -= 1
        if lane.streams.isEmpty {
            // A sender gone from every group: its table goes with it.
            lanes[key.sender] = nil
            lastLane = nil
        }
    }
}
