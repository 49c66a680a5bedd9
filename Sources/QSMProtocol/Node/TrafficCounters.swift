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

    // One hash lookup per table per message.

    mutating func sent(to group: GroupID, bytes: Int) {
        groups[group, default: GroupTraffic()].recordSent(bytes: bytes)
    }

    mutating func delivered(in group: GroupID, from sender: NodeID, sequence: UInt64, bytes: Int) {
        groups[group, default: GroupTraffic()].recordDelivered(bytes: bytes)
        let key = SenderSlot(group: group, sender: sender)
        if let index = senders.index(forKey: key) {
            senders.values[index].record(sequence: sequence, bytes: bytes)
        } else if senders.count < TrafficCounters.maximumSenders {
            var traffic = SenderTraffic()
            traffic.record(sequence: sequence, bytes: bytes)
            senders[key] = traffic
        } else {
            untrackedSenderDeliveries += 1
        }
    }

    /// The node left `group`: its counters go (a later join starts them again).
    mutating func forget(_ group: GroupID) {
        guard groups.removeValue(forKey: group) != nil else { return }
        senders = senders.filter { $0.key.group != group }
    }

    /// The counters with group names (groups whose name is unknown are left out).
    func named(_ names: [GroupID: GroupName]) -> TrafficCounters {
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

    mutating func recordSent(bytes: Int) {
        sentMessages += 1
        sentBytes += bytes
    }

    mutating func recordDelivered(bytes: Int) {
        deliveredMessages += 1
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
