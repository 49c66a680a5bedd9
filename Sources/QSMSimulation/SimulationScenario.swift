import QSMProtocol
import QSMGMS

/// Everything a simulated run is made of; with a seed, a run is exactly reproducible.
///
/// A run has two phases. During the faulty phase (the `seconds` of publishing) the
/// faults below act and every delivery is checked for safety. Then the network heals
/// (no loss, duplication or corruption, no bursts or freezes, the split mended, the GMS
/// up) and the run must reach liveness within `drainSeconds`: everything owed
/// delivered, everything stable, every node quiescent.
package struct SimulationScenario: Sendable {
    package enum Overlap: Sendable, Equatable {
        /// Every node joins every group: one region.
        case perfect
        /// Each node joins each group with this probability (at least one group): many
        /// overlapping regions.
        case irregular(probability: Double)
    }

    package var nodes = 10
    package var groups = 1
    package var overlap = Overlap.perfect
    /// How the GMS maps groups to regions.
    package var regionMode = RegionMode.full
    /// Senders are the last `senders` nodes (so the region leader, the lowest id, is not
    /// a sender unless every node is).
    package var senders = 1
    /// Senders publish to the groups without joining them (they are in no region, like
    /// `QSMNode.publishWithoutJoining`): their messages are acknowledged to them by the
    /// region leader and repaired from them by negative acknowledgement.
    package var sendersOutsideGroups = false
    /// Messages per simulated second per sender.
    package var rate = 1000.0
    package var messageBytes = 1000
    /// Simulated seconds of publishing (the faulty phase); afterwards the run drains.
    package var seconds = 5.0
    /// Longest drain after publishing stops before the run is declared stuck (the
    /// liveness bound).
    package var drainSeconds = 30.0
    /// Per-datagram random loss, duplication and corruption (one bit flipped)
    /// probabilities, during the faulty phase. Corruption needs `authenticated`: a
    /// flipped bit must be detected, and only the tag detects every one.
    package var loss = 0.0
    /// Probability that a multicast datagram is lost for every listener at once (as when
    /// the sender's link or a switch drops it): region-wide loss, the convoy's cause.
    package var regionWideLoss = 0.0
    /// Probability that a multicast datagram is lost at every member of one partition
    /// at once, and only there (as when the switch of the rack a partition sits in drops
    /// it): partition `partitionLossIndex` of the region as the lowest listener's view
    /// lays it out.
    package var partitionLoss = 0.0
    package var partitionLossIndex = 1
    package var duplication = 0.0
    package var corruption = 0.0
    /// Datagrams carry an AES-GCM tag (a cluster secret drawn from the seed).
    package var authenticated = false
    /// With `authenticated`: packets are encrypted too.
    package var encrypted = false
    /// The AES-GCM implementation the nodes use (the driver may pass the hardware one).
    package var aesGCMBackend: AESGCM.Backend = .portable
    /// One-way datagram latency and uniform jitter (jitter reorders packets); each node
    /// adds up to `latencySpreadMicroseconds` of its own, so some are farther than others.
    package var latencyMicroseconds = 100.0
    package var jitterMicroseconds = 50.0
    package var latencySpreadMicroseconds = 0.0
    /// One-way latency of each node's GMS connection, drawn per node from this range:
    /// views reach nodes at different times.
    package var gmsLatencyMicroseconds = 100.0...2_000.0
    /// Nodes whose GMS latency is set instead of drawn (index to microseconds).
    package var gmsLatencyOfNode: [Int: Double] = [:]
    package var linkBitsPerSecond = 10_000_000_000.0
    /// The largest datagram a node may send (tag included); the simulated network
    /// carries nothing larger.
    package var maximumDatagramBytes = 8_192
    /// Packets to one address share a datagram up to this many bytes (0: never).
    package var bundleBytes = NodeMachineConfiguration(id: NodeID(1), address: QSMSocketAddress(.loopback, port: 1)).bundleBytes
    /// Nodes that drop all inbound packets for 10 ms every 1 s (section 4.3.3).
    package var burstyLossNodes: [Int] = []
    /// Nodes that stop for `length` seconds at `start`, then every `every` seconds if set.
    package var freezes: [Freeze] = []
    /// Nodes killed at a time (index, seconds).
    package var crashes: [Crash] = []
    /// Nodes that join every group at a time during the run (they are absent before).
    package var lateJoiners: [Join] = []
    /// Groups (by index) that also get their own multicast address: each message to them
    /// is one transmission carrying every region's header (hybrid mode).
    package var hybridGroups: Set<Int> = []
    /// Nodes that join or leave a group, or leave everything, during the run.
    package var groupChanges: [GroupChange] = []
    /// A network split: these nodes are cut off from the others and from the GMS for a
    /// while (datagrams across are lost; their GMS connections stall, as TCP does).
    package var split: Split?
    /// These nodes' data paths are cut for a while (every datagram to or from them is
    /// lost) while their GMS connections work: only the rings can tell.
    package var dataPathCut: Split?
    /// The GMS process crashes and a new one starts (a new incarnation) later.
    package var gmsCrash: GMSCrash?
    package var partitionSize = 5
    /// The GMS's batching delay, and how long it waits for a heartbeat before it
    /// excludes a node.
    package var gmsBatchSeconds = 0.1
    package var heartbeatTimeoutSeconds = 5.0
    package var protocolConfiguration = ProtocolConfiguration()

    package struct Freeze: Sendable, Equatable {
        package var node: Int
        package var start: Double
        package var length: Double
        package var every: Double?
        package init(node: Int, start: Double, length: Double, every: Double? = nil) {
            self.node = node
            self.start = start
            self.length = length
            self.every = every
        }
    }

    package struct Crash: Sendable, Equatable {
        package var node: Int
        package var at: Double
        package init(node: Int, at: Double) {
            self.node = node
            self.at = at
        }
    }

    package struct Join: Sendable, Equatable {
        package var node: Int
        package var at: Double
        package init(node: Int, at: Double) {
            self.node = node
            self.at = at
        }
    }

    package struct GroupChange: Sendable, Equatable {
        package enum Kind: Sendable, Equatable {
            case join(group: Int)
            case leave(group: Int)
            case leaveAll
        }
        package var node: Int
        package var at: Double
        package var kind: Kind
        package init(node: Int, at: Double, kind: Kind) {
            self.node = node
            self.at = at
            self.kind = kind
        }
    }

    package struct Split: Sendable, Equatable {
        package var nodes: [Int]
        package var start: Double
        package var length: Double
        package init(nodes: [Int], start: Double, length: Double) {
            self.nodes = nodes
            self.start = start
            self.length = length
        }
    }

    package struct GMSCrash: Sendable, Equatable {
        package var at: Double
        package var downFor: Double
        package init(at: Double, downFor: Double) {
            self.at = at
            self.downFor = downFor
        }
    }

    package init() {}

    package func validate() throws(ConfigurationError) {
        guard nodes >= 1, nodes <= 60_000, groups >= 1, senders >= 1, senders <= nodes else {
            throw ConfigurationError("need 1...60000 nodes, at least one group and sender, and no more senders than nodes")
        }
        guard rate > 0, messageBytes >= 8, seconds > 0, drainSeconds > 0 else {
            throw ConfigurationError("rate, duration and drain must be positive and messages at least 8 bytes")
        }
        guard (0..<1).contains(loss), (0..<1).contains(duplication), (0..<1).contains(corruption) else {
            throw ConfigurationError("loss, duplication and corruption must be in [0, 1)")
        }
        guard !encrypted || authenticated else { throw ConfigurationError("encryption needs authenticated datagrams (a secret)") }
        guard corruption == 0 || authenticated else {
            throw ConfigurationError("corruption needs authenticated datagrams: only the tag detects every flipped bit")
        }
        guard latencyMicroseconds >= 0, jitterMicroseconds >= 0, latencySpreadMicroseconds >= 0,
              gmsLatencyMicroseconds.lowerBound >= 0 else {
            throw ConfigurationError("latencies cannot be negative")
        }
        let everyNode = burstyLossNodes + freezes.map(\.node) + crashes.map(\.node) + lateJoiners.map(\.node)
            + groupChanges.map(\.node) + (split?.nodes ?? []) + (dataPathCut?.nodes ?? [])
        for index in everyNode where !(0..<nodes).contains(index) {
            throw ConfigurationError("fault names node \(index), but nodes are 0...\(nodes - 1)")
        }
        if let split, split.start < 0 || split.length <= 0 || split.start + split.length > seconds {
            throw ConfigurationError("the split must start and heal within the \(seconds) s of publishing")
        }
        if let dataPathCut, dataPathCut.start < 0 || dataPathCut.length <= 0 || dataPathCut.start + dataPathCut.length > seconds {
            throw ConfigurationError("the data path cut must start and heal within the \(seconds) s of publishing")
        }
        if let gmsCrash, gmsCrash.at < 0 || gmsCrash.downFor <= 0 || gmsCrash.at + gmsCrash.downFor > seconds {
            throw ConfigurationError("the GMS must crash and restart within the \(seconds) s of publishing")
        }
        guard gmsBatchSeconds > 0, heartbeatTimeoutSeconds > 0 else {
            throw ConfigurationError("the GMS batch interval and heartbeat timeout must be positive")
        }
        var first = machineConfiguration(node: 0)
        first.entropy = [UInt8](repeating: 1, count: 32)
        try first.validate()
    }

    /// A node's machine settings in this scenario.
    func machineConfiguration(node index: Int, secret: [UInt8]? = nil) -> NodeMachineConfiguration {
        var configuration = NodeMachineConfiguration(id: NodeID(UInt64(index + 1)), address: Self.address(of: index))
        configuration.protocolConfiguration = protocolConfiguration
        configuration.maximumDatagramBytes = maximumDatagramBytes
        configuration.bundleBytes = bundleBytes
        configuration.clusterSecret = authenticated ? (secret ?? [UInt8](repeating: 7, count: 32)) : nil
        configuration.encryptsPayloads = authenticated && encrypted
        configuration.aesGCMBackend = aesGCMBackend
        configuration.flowControl = WindowFlowControl(messages: protocolConfiguration.windowMessages,
                                                      bytes: protocolConfiguration.windowBytes)
        configuration.reportsCommits = true
        return configuration
    }

    /// The simulated unicast address of a node (nothing is ever sent to it: it names the
    /// node on the simulated network).
    static func address(of index: Int) -> QSMSocketAddress {
        QSMSocketAddress(IPv4Address(127, 1, UInt8(index >> 8 & 0xFF), UInt8(index & 0xFF)), port: UInt16(10_000 + index / 65_536))
    }

    var membershipConfiguration: MembershipConfiguration {
        var membership = MembershipConfiguration()
        membership.mode = regionMode
        membership.partitionSize = partitionSize
        membership.maximumNodes = max(nodes, 1)
        membership.maximumGroups = max(groups, 1)
        membership.batchInterval = .nanoseconds(Int64(gmsBatchSeconds * 1e9))
        membership.heartbeatTimeout = .nanoseconds(Int64(heartbeatTimeoutSeconds * 1e9))
        membership.hybridGroups = Set(hybridGroups.map { Self.groupName($0) })
        // Region updates of thousands of members are large; the limit is on frames from
        // clients, which stay small.
        return membership
    }

    static func groupName(_ index: Int) -> String { "g\(index + 1)" }
}
