/// Everything a node needs to run; defaults suit one machine with a GMS on loopback.
/// `validate()` (called before anything starts) rejects what cannot work, naming it.
public struct QSMNodeConfiguration: Sendable {
    /// The membership service.
    public var gms: QSMSocketAddress
    /// The local interface to send and receive multicast on (its IPv4 address).
    public var interface: IPv4Address = .loopback
    /// The unicast port for control traffic and retransmissions; 0 picks a free one.
    public var port: UInt16 = 0
    /// This node's identity; nil picks a random one.
    public var nodeID: UInt64?
    /// Multicast time to live: 0 stays on this host, 1 on the local network.
    public var multicastTimeToLive: UInt8 = 1
    /// Packets ready together for the same address (small messages, above all) share one
    /// datagram of up to this many bytes, authentication tag included; 0 sends each
    /// packet alone. The default, 1,472, fits an Ethernet MTU of 1,500 without IP
    /// fragmentation; on loopback or a jumbo-frame network more pays (up to 65,507).
    /// Packing happens as the socket takes datagrams: a lone message never waits.
    ///
    /// Above 8,192 bytes, raise `eventCoreConfiguration.packetBufferCapacity` with it:
    /// that is also the largest datagram a node accepts. Every node a sender reaches needs
    /// packet buffers at least as large as the sender's bundles; a node with smaller ones
    /// drops them (counted in `EventCoreStatistics.droppedTruncated`, and warned of).
    public var bundleBytes = QSMNodeConfiguration.defaultBundleBytes
    /// See `bundleBytes`.
    public static let defaultBundleBytes = 1_472
    /// The bundle sizes a node accepts besides 0 (off): a bundle smaller than 256 bytes
    /// could not hold two packets, a datagram larger than 65,507 bytes cannot be sent.
    public static let bundleBytesRange = NodeMachineConfiguration.bundleBytesRange
    /// Kernel receive buffer asked for each socket. It should hold a whole flow-control
    /// window as the kernel counts it (about twice the payload for 1000-byte datagrams),
    /// so that a node paused for a while loses nothing the senders could still send;
    /// the memory is used only while packets wait.
    public var receiveBufferBytes = 32 << 20
    /// Deliveries and events waiting for the application before the node stops reading
    /// data (backpressure through flow control, never a drop).
    public var deliveryQueueCapacity = 16_384
    /// The slow-receiver policy: an application that holds the node back (deliveries
    /// waiting for it, so the node stops reading and the senders' windows fill) for most
    /// of every second for this long gets the node evicted from its groups, so that the
    /// groups' other members go on. It is told with `MembershipEvent.evicted` (their other
    /// members and publishers with `.memberEvicted`) and may join again. Zero: never
    /// evict; a slow application then slows every sender of its groups.
    public var slowConsumerEviction: Duration = .seconds(10)
    /// How often the node tells the GMS it is alive (the GMS excludes nodes silent for its
    /// heartbeat timeout).
    public var heartbeatInterval: Duration = .seconds(1)
    /// The secret shared by every node of the cluster and its GMS. Required unless
    /// `insecure` is set. Every datagram carries a 16-byte AES-GCM tag under a key
    /// derived from it for the sending incarnation, and a datagram without a valid one
    /// is dropped and counted (`droppedUnauthenticated`), so forged packets are never
    /// acted on. The GMS connection is mutually authenticated from it. Nodes with and
    /// without a secret cannot talk to each other.
    public var clusterSecret: [UInt8]?
    /// With a cluster secret: also encrypt every packet, headers and payload (AES-128-GCM;
    /// only the sender id, incarnation and datagram counter stay readable). Off by
    /// default. Every node of a cluster must agree: nodes that encrypt and nodes that do
    /// not drop each other's datagrams as unauthenticated.
    public var encrypt = false
    /// Runs without a cluster secret: anyone who can send a datagram to the node's
    /// addresses can forge data it delivers, and anyone who reaches the GMS can join.
    /// Off by default. When set, `QSMNode.start()` prints a warning every time.
    public var insecure = false
    /// The protocol's settings: window, token pacing, recovery, limits.
    public var protocolConfiguration = ProtocolConfiguration()
    /// The event core's settings: quanta, batching, busy polling.
    public var eventCoreConfiguration = EventCoreConfiguration()
    /// Where the node's warnings go (running insecure, a receive buffer smaller than
    /// asked); nil writes each as a line on standard error.
    public var onWarning: (@Sendable (String) -> Void)?

    /// A configuration with every default, for the GMS at `gms`.
    public init(gms: QSMSocketAddress) { self.gms = gms }

    /// Checks every setting (the node calls this before anything starts).
    /// - Throws: `ConfigurationError` naming the first setting that cannot work.
    public func validate() throws(ConfigurationError) {
        guard gms.port != 0 else { throw ConfigurationError("the GMS address needs a port") }
        guard !interface.isMulticast else { throw ConfigurationError("the interface must be a unicast address, got \(interface)") }
        guard nodeID != 0 else { throw ConfigurationError("node id 0 is reserved") }
        guard bundleBytes == 0 || Self.bundleBytesRange.contains(bundleBytes) else {
            throw ConfigurationError("bundle size must be 0 (off) or 256...65507 bytes, got \(bundleBytes)")
        }
        guard bundleBytes <= eventCoreConfiguration.packetBufferCapacity else {
            throw ConfigurationError("bundle size \(bundleBytes) is over the packet buffers' \(eventCoreConfiguration.packetBufferCapacity) bytes "
                                     + "(raise eventCoreConfiguration.packetBufferCapacity with it)")
        }
        guard receiveBufferBytes >= 65_536 else { throw ConfigurationError("receive buffer must be at least 65536 bytes") }
        guard deliveryQueueCapacity >= 16 else { throw ConfigurationError("delivery queue capacity must be at least 16") }
        guard slowConsumerEviction >= .zero else { throw ConfigurationError("the slow-consumer eviction time cannot be negative") }
        guard heartbeatInterval > .zero else { throw ConfigurationError("heartbeat interval must be positive") }
        if let clusterSecret, clusterSecret.count < 16 {
            throw ConfigurationError("the cluster secret must be at least 16 bytes, got \(clusterSecret.count)")
        }
        if clusterSecret == nil, !insecure {
            throw ConfigurationError("no cluster secret: give every node and the GMS the same secret (create one with "
                                     + "'qsm-node secret new PATH', pass it with --secret-file PATH), or opt out explicitly "
                                     + "with insecure (--insecure), which lets anyone who can send a datagram forge data")
        }
        if clusterSecret != nil, insecure {
            throw ConfigurationError("both a cluster secret and insecure are set: choose one")
        }
        if encrypt, clusterSecret == nil {
            throw ConfigurationError("encryption needs a cluster secret: its keys are derived from it")
        }
        try eventCoreConfiguration.validate()
        try machineConfiguration(id: NodeID(nodeID ?? 1), address: QSMSocketAddress(interface, port: port)).validate()
    }

    /// The node machine's settings: its datagrams fit the core's packet buffers.
    func machineConfiguration(id: NodeID, address: QSMSocketAddress) -> NodeMachineConfiguration {
        var machine = NodeMachineConfiguration(id: id, address: address)
        machine.protocolConfiguration = protocolConfiguration
        machine.heartbeatInterval = heartbeatInterval
        machine.slowConsumerEviction = slowConsumerEviction
        machine.clusterSecret = clusterSecret
        machine.encryptsPayloads = encrypt
        machine.sha256BlockFunction = HardwareSHA256.blockFunction
        machine.aesGCMBackend = HardwareAESGCM.backend
        if clusterSecret != nil {
            machine.entropy = SystemRandom.bytes(32)
            machine.epoch = IncarnationEpoch.fresh()
        }
        machine.maximumDatagramBytes = eventCoreConfiguration.packetBufferCapacity
        machine.bundleBytes = bundleBytes
        machine.flowControl = WindowFlowControl(messages: protocolConfiguration.windowMessages, bytes: protocolConfiguration.windowBytes)
        // Secret, so that nobody can pick ids that collide in the per-message tables.
        machine.seed = SystemRandom.bytes(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
        return machine
    }
}
