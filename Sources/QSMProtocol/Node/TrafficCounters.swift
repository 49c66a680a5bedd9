/// What a node sent and delivered, per group and per sender: the counters an operator
/// reads (`qsm-node stats`, `/metrics`). Kept by the node machine on its own path, so
/// the engine and the simulator count the same way.
///
/// Memory is bounded: a group's counters go when the node leaves it, and at most
/// `maximumSenders` senders are tracked (deliveries from more are counted in the group's
/// totals and in `untrackedSenderDeliveries`).
public struct TrafficCounters: Sendable, Equatable {
    /// Per group: messages and bytes this node published (as they entered the protocol)
    /// and delivered to the application.
    public internal(set) var groups: [GroupName: GroupTraffic] = [:]
    /// Per group and sender: what this node delivered of that sender's messages.
    public internal(set) var senders: [GroupSender: SenderTraffic] = [:]
    /// Deliveries from senders beyond the tracked limit (counted per group only).
    public internal(set) var untrackedSenderDeliveries = 0

    /// The most (group, sender) pairs tracked at once.
    public static let maximumSenders = 4_096

    /// No traffic yet.
    public init() {}

    package init(groups: [GroupName: GroupTraffic], senders: [GroupSender: SenderTraffic], untrackedSenderDeliveries: Int) {
        self.groups = groups
        self.senders = senders
        self.untrackedSenderDeliveries = untrackedSenderDeliveries
    }
}

/// The counting behind `TrafficCounters`, on the per-message path: keyed by group id
/// (an integer hash, not a string's), named only when a snapshot is taken.
struct TrafficTally {
    struct SenderSlot: Hashable {
        var group: GroupID
        var sender: NodeID
    }

    var groups: [GroupID: GroupTraffic] = [:]
    var senders: [SenderSlot: SenderTraffic] = [:]
    var untrackedSenderDeliveries = 0
    /// Deliveries of the same sender and group as the one before, added up here and
    /// written to the tables when another sender or group comes (or the counters are
    /// read): a stream in full flow costs no hashing per message.
    private var run: (slot: SenderSlot, traffic: SenderTraffic)?
    /// The same for publications to one group.
    private var sentRun: (group: GroupID, messages: Int, bytes: Int)?

    mutating func sent(to group: GroupID, bytes: Int) {
        if sentRun?.group == group {
            sentRun!.messages += 1
            sentRun!.bytes += bytes
            return
        }
        flushSent()
        sentRun = (group, 1, bytes)
    }

    mutating func delivered(in group: GroupID, from sender: NodeID, sequence: UInt64, bytes: Int) {
        let slot = SenderSlot(group: group, sender: sender)
        if run?.slot == slot {
            run!.traffic.record(sequence: sequence, bytes: bytes)
            return
        }
        flushDelivered()
        var traffic = SenderTraffic()
        traffic.record(sequence: sequence, bytes: bytes)
        run = (slot, traffic)
    }

    private mutating func flushSent() {
        guard let (group, messages, bytes) = sentRun else { return }
        sentRun = nil
        groups[group, default: GroupTraffic()].recordSent(messages: messages, bytes: bytes)
    }

    private mutating func flushDelivered() {
        guard let (slot, traffic) = run else { return }
        run = nil
        groups[slot.group, default: GroupTraffic()].recordDelivered(messages: traffic.deliveredMessages, bytes: traffic.deliveredBytes)
        let key = slot
        if let index = senders.index(forKey: key) {
            senders.values[index].add(traffic)
        } else if senders.count < TrafficCounters.maximumSenders {
            senders[key] = traffic
        } else {
            untrackedSenderDeliveries += traffic.deliveredMessages
        }
    }

    /// The node left `group`: its counters go (a later join starts them again).
    mutating func forget(_ group: GroupID) {
        flushSent()
        flushDelivered()
        guard groups.removeValue(forKey: group) != nil else { return }
        senders = senders.filter { $0.key.group != group }
    }

    /// The counters with group names (groups whose name is unknown are left out).
    func named(_ names: [GroupID: GroupName]) -> TrafficCounters {
        var tally = self
        tally.flushSent()
        tally.flushDelivered()
        return tally.flushedNamed(names)
    }

    private func flushedNamed(_ names: [GroupID: GroupName]) -> TrafficCounters {
        var byName: [GroupName: GroupTraffic] = [:]
        for (id, traffic) in groups { if let name = names[id] { byName[name] = traffic } }
        var bySender: [GroupSender: SenderTraffic] = [:]
        for (slot, traffic) in senders {
            if let name = names[slot.group] { bySender[GroupSender(group: name, sender: slot.sender)] = traffic }
        }
        return TrafficCounters(groups: byName, senders: bySender, untrackedSenderDeliveries: untrackedSenderDeliveries)
    }
}

/// A group's traffic at one node.
public struct GroupTraffic: Sendable, Equatable {
    /// Messages this node published to the group.
    public var sentMessages = 0
    /// Their payload bytes.
    public var sentBytes = 0
    /// Messages of the group delivered to the application here.
    public var deliveredMessages = 0
    /// Their payload bytes.
    public var deliveredBytes = 0
    /// Nothing sent or delivered yet.
    public init() {}

    mutating func recordSent(messages: Int, bytes: Int) {
        sentMessages += messages
        sentBytes += bytes
    }

    mutating func recordDelivered(messages: Int, bytes: Int) {
        deliveredMessages += messages
        deliveredBytes += bytes
    }
}

/// One sender's traffic in one group, as one receiver delivered it.
public struct SenderTraffic: Sendable, Equatable {
    /// Messages of the sender delivered here.
    public var deliveredMessages = 0
    /// Their payload bytes.
    public var deliveredBytes = 0
    /// The sender's sequence number (in the group) of the last message delivered.
    public var lastSequence: UInt64 = 0
    /// Nothing delivered yet.
    public init() {}

    mutating func record(sequence: UInt64, bytes: Int) {
        deliveredMessages += 1
        deliveredBytes += bytes
        lastSequence = sequence
    }

    /// Adds later deliveries, counted on their own.
    mutating func add(_ later: SenderTraffic) {
        deliveredMessages += later.deliveredMessages
        deliveredBytes += later.deliveredBytes
        lastSequence = later.lastSequence
    }
}

/// A sender within a group.
public struct GroupSender: Hashable, Sendable {
    /// The group.
    public var group: GroupName
    /// The sender.
    public var sender: NodeID
    /// The sender `sender` in `group`.
    public init(group: GroupName, sender: NodeID) {
        self.group = group
        self.sender = sender
    }
}
