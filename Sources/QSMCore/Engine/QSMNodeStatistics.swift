/// A counters snapshot of a node.
public struct QSMNodeStatistics: Sendable {
    /// The node the snapshot is of.
    public var node: NodeID
    /// The protocol's counters: packets, recovery, tokens, drops.
    public var protocolStatistics: ProtocolStatistics
    /// The event core's counters: I/O, alarms, requests, socket-level drops.
    public var core: EventCoreStatistics
    /// How late timers fired since the previous snapshot.
    public var alarmLateness: AlarmLatenessInterval
    /// Messages published and not yet acknowledged by every region (the window in use).
    public var unacknowledgedMessages: Int
    /// Bytes of other senders' messages held for recovery (cached or out of order).
    public var heldBytes: Int
    /// Regions the node is a member of.
    public var regions: Int
    /// Deliveries held back because the application had not taken the earlier ones.
    public var deliveriesWaiting: Int
    /// What the node machine dropped, and why (unauthenticated, no address, oversized).
    public var machine: NodeMachineStatistics
    /// Per-group and per-sender counts of what this node published and delivered.
    public var traffic: TrafficCounters
    /// Per sender: how many of its messages this node knows were sent and has not yet
    /// received in order (0 for senders it is level with, which are left out).
    public var senderLags: [NodeID: UInt64]
    /// Per sender: retransmitted packets of its messages that reached this node (repairs
    /// of this node's losses); senders with none are left out.
    public var senderRetransmissionsReceived: [NodeID: Int]
    /// Whether the node was registered with the GMS when the snapshot was taken.
    public var registered: Bool
    /// Datagrams dropped because their authentication tag was missing or wrong (only
    /// with a cluster secret).
    public var droppedUnauthenticated: Int { machine.droppedUnauthenticated }
    /// Datagrams the protocol addressed to a node whose address this node does not know
    /// (not in its views, and never heard from).
    public var droppedNoAddress: Int { machine.droppedNoAddress }
}
