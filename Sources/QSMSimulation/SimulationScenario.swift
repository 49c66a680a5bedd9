import QSMProtocol
import QSMGMS

/// Everything a simulated run is made of; with a seed, a run is exactly reproducible.
public struct SimulationScenario: Sendable {
    public enum Overlap: Sendable, Equatable {
        /// Every node joins every group: one region.
        case perfect
        /// Each node joins each group with this probability (at least one group): many
        /// overlapping regions.
        case irregular(probability: Double)
    }

    public var nodes = 10
    public var groups = 1
    public var overlap = Overlap.perfect
    /// Senders are the last `senders` nodes (so the region leader, the lowest id, is not
    /// a sender unless every node is).
    public var senders = 1
    /// Senders publish to the groups without joining them (they are in no region, like
    /// `QSMNode.publishWithoutJoining`): their messages are acknowledged to them by the
    /// region leader and repaired from them by negative acknowledgement.
    public var sendersOutsideGroups = false
    /// Messages per simulated second per sender.
    public var rate = 1000.0
    public var messageBytes = 1000
    /// Simulated seconds of publishing; afterwards the run drains until quiet.
    public var seconds = 5.0
    /// Longest drain after publishing stops before the run is declared stuck.
    public var drainSeconds = 30.0
    /// Per-packet random loss, duplication probabilities.
    public var loss = 0.0
    public var duplication = 0.0
    /// One-way latency and uniform jitter (jitter reorders packets).
    public var latencyMicroseconds = 100.0
    public var jitterMicroseconds = 50.0
    public var linkBitsPerSecond = 10_000_000_000.0
    /// Nodes that drop all inbound packets for 10 ms every 1 s (section 4.3.3).
    public var burstyLossNodes: [Int] = []
    /// Nodes that stop for `length` seconds at `start`, then every `every` seconds if set.
    public var freezes: [Freeze] = []
    /// Nodes killed at a time (index, seconds).
    public var crashes: [Crash] = []
    /// Nodes that join every group at a time during the run (they are absent before).
    public var lateJoiners: [Join] = []
    /// Groups (by index) that also get their own multicast address: each message to them
    /// is one transmission carrying every region's header (hybrid mode).
    public var hybridGroups: Set<Int> = []
    /// Nodes that join or leave a group, or leave everything, during the run.
    public var groupChanges: [GroupChange] = []
    public var partitionSize = 5
    /// How long the GMS takes to notice a crash, and its batching delay.
    public var failureDetectionSeconds = 1.0
    public var gmsBatchSeconds = 0.1
    public var protocolConfiguration = ProtocolConfiguration()

    public struct Freeze: Sendable, Equatable {
        public var node: Int
        public var start: Double
        public var length: Double
        public var every: Double?
        public init(node: Int, start: Double, length: Double, every: Double? = nil) {
            self.node = node
            self.start = start
            self.length = length
            self.every = every
        }
    }

    public struct Crash: Sendable, Equatable {
        public var node: Int
        public var at: Double
        public init(node: Int, at: Double) {
            self.node = node
            self.at = at
        }
    }

    public struct Join: Sendable, Equatable {
        public var node: Int
        public var at: Double
        public init(node: Int, at: Double) {
            self.node = node
            self.at = at
        }
    }

    public struct GroupChange: Sendable, Equatable {
        public enum Kind: Sendable, Equatable {
            case join(group: Int)
            case leave(group: Int)
            case leaveAll
        }
        public var node: Int
        public var at: Double
        public var kind: Kind
        public init(node: Int, at: Double, kind: Kind) {
            self.node = node
            self.at = at
            self.kind = kind
        }
    }

    public init() {}

    public func validate() throws(ConfigurationError) {
        guard nodes >= 1, groups >= 1, senders >= 1, senders <= nodes else {
            throw ConfigurationError("need at least one node, group and sender, and no more senders than nodes")
        }
        guard rate > 0, messageBytes >= 8, seconds > 0, drainSeconds > 0 else {
            throw ConfigurationError("rate, duration and drain must be positive and messages at least 8 bytes")
        }
        guard (0..<1).contains(loss), (0..<1).contains(duplication) else { throw ConfigurationError("loss and duplication must be in [0, 1)") }
        for index in burstyLossNodes + freezes.map(\.node) + crashes.map(\.node) + lateJoiners.map(\.node) + groupChanges.map(\.node) where !(0..<nodes).contains(index) {
            throw ConfigurationError("fault names node \(index), but nodes are 0...\(nodes - 1)")
        }
        try protocolConfiguration.validate()
    }
}
