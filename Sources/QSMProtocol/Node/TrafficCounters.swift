/// What a node sent and delivered, per group and per sender: the counters an operator
/// reads (`qsm-node stats`, `/metrics`). Kept by the node machine on its own path, so
/// the engine and the simulator count the same way.
///
/// The snapshot is bounded: a group's counters go when the node leaves it, and at most
/// `maximumSenders` senders are listed (deliveries from more are counted in the group's
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

/// The counting behind `TrafficCounters`, on the per-message path. A delivery is
/// counted in its sender's `DeliveryStream` box, which the protocol hands over with it,
/// and a publication in the protocol's record of the group it goes to: no lookup per
/// message, however many groups take turns. Group totals and names are made only when a
/// snapshot is taken.
struct TrafficTally {
    /// The streams delivered from, in the order of their first delivery.
    private var streams: [DeliveryStream] = []

    mutating func delivered(on stream: DeliveryStream, sequence: UInt64, bytes: Int) {
        if !stream.counted {
            stream.counted = true
            streams.append(stream)
        }
        stream.traffic.record(sequence: sequence, bytes: bytes)
    }

    /// The node left `group`: its delivery counters go (a later join starts them again).
    mutating func forget(_ group: GroupID) {
        streams.removeAll { stream in
            guard stream.group == group else { return false }
            stream.counted = false
            stream.traffic = SenderTraffic()
            return true
        }
    }

    /// The counters with group names (groups whose name is unknown are left out), with
    /// `publications` per group. The first `TrafficCounters.maximumSenders` streams are
    /// listed per sender; the others' deliveries count in their groups' totals and as
    /// untracked.
    func named(_ names: [GroupID: GroupName], publications: [(group: GroupID, messages: Int, bytes: Int)]) -> TrafficCounters {
        // Both tables are made at their final size at once. Grown entry by entry, a
        // snapshot of 8,192 groups went through a dozen tables, each copied into the
        // next: 4.8 MB of fresh pages, which raised the process's peak memory by up to
        // 5 MB at every `statistics()` (issue 15). At most one entry per named group.
        var byName: [GroupName: GroupTraffic] = [:]
        byName.reserveCapacity(names.count)
        for publication in publications {
            if let name = names[publication.group] {
                byName[name, default: GroupTraffic()].recordSent(messages: publication.messages, bytes: publication.bytes)
            }
        }
        var bySender: [GroupSender: SenderTraffic] = [:]
        bySender.reserveCapacity(min(streams.count, TrafficCounters.maximumSenders))
        var untracked = 0
        for (index, stream) in streams.enumerated() {
            guard let name = names[stream.group] else { continue }
            byName[name, default: GroupTraffic()].recordDelivered(messages: stream.traffic.deliveredMessages,
                                                                  bytes: stream.traffic.deliveredBytes)
            if index < TrafficCounters.maximumSenders {
                bySender[GroupSender(group: name, sender: stream.sender)] = stream.traffic
            } else {
                untracked += stream.traffic.deliveredMessages
            }
        }
        return TrafficCounters(groups: byName, senders: bySender, untrackedSenderDeliveries: untracked)
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
