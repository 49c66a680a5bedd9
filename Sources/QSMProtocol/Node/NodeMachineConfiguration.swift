/// Everything a node machine needs; its driver (the engine, or the simulator) supplies
/// what only it can know: the address its socket got, and the datagram size its buffers
/// and its network take.
package struct NodeMachineConfiguration: Sendable {
    /// This node's identity (nonzero).
    package var id: NodeID
    /// The unicast address peers reach this node at (advertised to the GMS).
    package var address: QSMSocketAddress
    package var protocolConfiguration = ProtocolConfiguration()
    package var heartbeatInterval: Duration = .seconds(1)
    /// A node whose application has held it back (deliveries waiting) for most of every
    /// second for this long evicts itself from its groups (see `SlowConsumerPolicy`);
    /// zero: never.
    package var slowConsumerEviction: Duration = .seconds(10)
    /// The first delay before reconnecting to the GMS (doubling up to 5 s).
    package var reconnectDelay: Duration = .milliseconds(200)
    /// When set, every datagram carries an AES-GCM tag under a key derived from it (see
    /// `DatagramSeal`), and datagrams without a valid one are dropped and counted; the
    /// GMS connection is authenticated with it too. At least 16 bytes.
    package var clusterSecret: [UInt8]?
    /// With a cluster secret: encrypt every packet (headers and payload), not only
    /// authenticate it. Every node of a cluster must agree: the two kinds cannot read
    /// each other.
    package var encryptsPayloads = false
    /// Compresses SHA-256 blocks in hardware for key derivation and the GMS connection
    /// (the driver's choice: this target cannot detect the CPU); nil for the portable code.
    package var sha256BlockFunction: SHA256.BlockFunction?
    /// AES-GCM for the datagrams: the driver's hardware backend, or the portable one.
    package var aesGCMBackend: AESGCM.Backend = .portable
    /// At least 32 unpredictable bytes, needed with a cluster secret: the nonces of the
    /// GMS handshake come from them (the engine fills them from the OS; the simulator
    /// from its seed). This target reads no randomness of its own.
    package var entropy: [UInt8] = []
    /// This incarnation's epoch, for replay protection with a cluster secret (see
    /// `DatagramEnvelope`): the start time in seconds in the high 32 bits and random
    /// bits below, so that a restarted node's epoch is higher than its dead ones'. The
    /// driver supplies it (this target reads no clock).
    package var epoch: UInt64 = 0
    /// The largest datagram the machine writes, authentication tag included: the size
    /// of the buffer the driver offers, and what its network carries. The protocol's
    /// packets are bounded to fit (`ProtocolConfiguration.maximumPacketBytes` is set
    /// from this).
    package var maximumDatagramBytes = 8_192
    /// Packets to the same address that are ready together share one datagram up to
    /// this many bytes, tag included, and never more than `maximumDatagramBytes` (see
    /// `DatagramBundle`); 0 sends every packet alone.
    /// The default fits an Ethernet MTU of 1,500 without IP fragmentation (less the IPv4
    /// and UDP headers). Packing happens when the socket pulls, so a lone packet never
    /// waits for company.
    package var bundleBytes = 1_472
    /// The bundle sizes a node accepts besides 0 (off): a bundle smaller than 256 bytes
    /// could not hold two packets, a datagram larger than 65,507 bytes cannot be sent.
    package static let bundleBytesRange = 256...65_507
    /// How much may be published and not yet acknowledged (see `FlowControl`).
    package var flowControl: any FlowControl = WindowFlowControl()
    /// Publications held while their group's view is not known yet or the window is
    /// full; beyond this `publish` answers `.wouldBlock`.
    package var maximumPendingPublishes = 65_536
    /// Report each message as it is committed to a view (`NodeEvent.committed`): for
    /// simulations and tests that check delivery against the view; off in production,
    /// where it would cost an event per message.
    package var reportsCommits = false
    /// Seeds the protocol's choices of peers to recover from and where its per-message
    /// tables put ids (`IdentifierTable`): the engine draws it from the system's
    /// randomness, the simulator from the scenario's seed.
    package var seed: UInt64 = 0

    package init(id: NodeID, address: QSMSocketAddress) {
        self.id = id
        self.address = address
    }

    /// Bytes each datagram carries beyond its packet: with a secret, the replay envelope
    /// and the authentication tag.
    package var tagBytes: Int { clusterSecret == nil ? 0 : DatagramSeal.overheadBytes }

    /// The protocol's settings, with its packet size bounded by the datagram size.
    package var effectiveProtocolConfiguration: ProtocolConfiguration {
        var configuration = protocolConfiguration
        configuration.maximumPacketBytes = min(configuration.maximumPacketBytes, maximumDatagramBytes - tagBytes)
        return configuration
    }

    package func validate() throws(ConfigurationError) {
        guard id.value != 0 else { throw ConfigurationError("node id 0 is reserved") }
        guard heartbeatInterval > .zero, reconnectDelay > .zero else {
            throw ConfigurationError("heartbeat interval and reconnect delay must be positive")
        }
        guard slowConsumerEviction >= .zero else { throw ConfigurationError("the slow-consumer eviction time cannot be negative") }
        if let clusterSecret, clusterSecret.count < 16 {
            throw ConfigurationError("the cluster secret must be at least 16 bytes, got \(clusterSecret.count)")
        }
        if encryptsPayloads, clusterSecret == nil {
            throw ConfigurationError("encryption needs a cluster secret (the keys are derived from it)")
        }
        if clusterSecret != nil, entropy.count < 32 {
            throw ConfigurationError("a node with a cluster secret needs 32 bytes of entropy for its GMS handshake")
        }
        guard bundleBytes == 0 || Self.bundleBytesRange.contains(bundleBytes) else {
            throw ConfigurationError("bundle size must be 0 (off) or 256...65507 bytes, got \(bundleBytes)")
        }
        guard maximumPendingPublishes >= 1 else { throw ConfigurationError("maximum pending publishes must be at least 1") }
        let smallest = protocolConfiguration.maximumFragmentBytes
            + max(DataPacket.headerBytes, DataPacket.hybridHeaderBytes + RegionHeader.bytes) + tagBytes
        guard maximumDatagramBytes >= smallest else {
            throw ConfigurationError("datagrams of \(maximumDatagramBytes) bytes cannot hold a fragment of \(protocolConfiguration.maximumFragmentBytes) bytes with its headers\(tagBytes > 0 ? " and tag" : "") (\(smallest) bytes)")
        }
        try effectiveProtocolConfiguration.validate()
        try flowControl.validate(maximumMessageBytes: protocolConfiguration.maximumMessageBytes)
    }
}
