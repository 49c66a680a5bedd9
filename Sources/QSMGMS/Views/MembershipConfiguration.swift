import QSMProtocol


/// How the GMS maps groups to regions (section 4.1.2).
package enum RegionMode: String, Sendable, CaseIterable {
    /// QSM's scheme: one region per distinct set of groups; every node is in one region.
    case full
    /// Groups are first decomposed greedily into perfect hierarchies; regions are formed
    /// per hierarchy, so a node is in at most one region per hierarchy.
    case hierarchies
}

/// Settings of the membership service. Invalid values are rejected by `validate()`.
package struct MembershipConfiguration: Sendable {
    package var mode: RegionMode = .full
    /// Most nodes per partition (k in section 4.2.1 C).
    package var partitionSize = 5
    /// In `hierarchies` mode, a group is not added to a hierarchy if that would leave a
    /// region of it with fewer nodes than this (1 disables the constraint).
    package var minimumRegionSize = 1
    /// First address of the multicast pool and how many addresses it holds. The default,
    /// 239.192.0.0/14, is IPv4 organization-local scope (RFC 2365).
    package var addressPoolStart = IPv4Address(239, 192, 0, 0)
    package var addressPoolSize = 1 << 18
    /// The UDP port every region's and hybrid group's multicast address uses.
    package var multicastPort: UInt16 = 17_000
    /// Pending joins, leaves and failures are applied together at this interval.
    package var batchInterval: Duration = .milliseconds(100)
    /// A node whose heartbeats stop for this long is excluded as failed. Long enough that
    /// a node frozen for a couple of seconds rides it out (section 4.1.1, item 8).
    package var heartbeatTimeout: Duration = .seconds(5)
    /// The heartbeat timeouts a GMS takes: nodes heartbeat four times within it, at most
    /// every 10 ms (`MembershipClient.heartbeatsPerTimeout`), so a shorter one would
    /// exclude live nodes.
    package static let heartbeatTimeoutRange: ClosedRange<Duration> = .milliseconds(100)...(.seconds(3_600))
    /// A node excluded because a ring leader of its region reported that its data path
    /// answers no probe may not register again for this long (so a node cut off on the
    /// data path does not rejoin, stall its regions and be excluded again, over and over).
    package var suspectQuarantine: Duration = .seconds(30)
    /// A suspect is excluded only once it has been reported for this long (reports keep
    /// coming, every few seconds, while its data path stays silent): a cut shorter than
    /// this is ridden out, as a freeze is by the heartbeat timeout. Zero: at the first.
    package var suspectConfirmation: Duration = .seconds(5)
    /// Limits, each enforced with a clear error.
    package var maximumNodes = 10_000
    package var maximumGroups = 100_000
    package var maximumGroupsPerNode = 10_000
    /// Groups that also get a per-group multicast address (hybrid mode, section 4.2.1 B).
    package var hybridGroups: Set<String> = []
    /// Largest frame accepted from a client, and most bytes queued for one client before
    /// it is disconnected as too slow.
    package var maximumInboundFrameBytes = 64 << 10
    package var maximumQueuedBytesPerClient = 64 << 20

    /// Distinguishes this run of the GMS from earlier ones: region ids are
    /// `incarnation << 32 | n`, so a restarted GMS never hands out an id an earlier run
    /// used for a different region (nodes would mix the two regions' sequence numbers).
    /// 0 leaves ids small (tests, the simulator); `GMSServer` picks a random one.
    package var incarnation: UInt32 = 0

    package init() {}

    /// The cluster secret: every connection must authenticate with it (see `GMSChannel`)
    /// before anything it says reaches the membership state. nil runs without
    /// authentication (`--insecure`).
    package var clusterSecret: [UInt8]?
    /// At least 32 unpredictable bytes for the handshake nonces (the runtime fills them
    /// from the OS; a simulation from its seed). Needed with a cluster secret.
    package var entropy: [UInt8] = []
    /// SHA-256 in hardware for the handshake and frame tags, or nil (portable).
    package var sha256BlockFunction: SHA256.BlockFunction?

    package func validate() throws(ConfigurationError) {
        if let clusterSecret {
            guard clusterSecret.count >= 16 else {
                throw ConfigurationError("the cluster secret must be at least 16 bytes, got \(clusterSecret.count)")
            }
            guard entropy.count >= 32 else { throw ConfigurationError("a GMS with a cluster secret needs 32 bytes of entropy") }
        }
        guard (1...1000).contains(partitionSize) else {
            throw ConfigurationError("partition size must be 1...1000, got \(partitionSize)")
        }
        guard minimumRegionSize >= 1 else {
            throw ConfigurationError("minimum region size must be at least 1, got \(minimumRegionSize)")
        }
        guard addressPoolStart.isMulticast else {
            throw ConfigurationError("address pool must start at a multicast address (224.0.0.0/4), got \(addressPoolStart)")
        }
        guard addressPoolSize >= 1,
              UInt64(addressPoolStart.value) + UInt64(addressPoolSize) - 1 <= UInt64(IPv4Address(239, 255, 255, 255).value) else {
            throw ConfigurationError("address pool of \(addressPoolSize) from \(addressPoolStart) leaves the multicast range")
        }
        guard multicastPort != 0 else { throw ConfigurationError("multicast port must not be 0") }
        guard batchInterval > .zero else { throw ConfigurationError("batch interval must be positive") }
        guard Self.heartbeatTimeoutRange.contains(heartbeatTimeout) else {
            throw ConfigurationError("heartbeat timeout must be 100ms...1h, got \(heartbeatTimeout)")
        }
        guard suspectQuarantine >= .zero, suspectConfirmation >= .zero else {
            throw ConfigurationError("the suspect quarantine and confirmation cannot be negative")
        }
        guard maximumNodes >= 1, maximumGroups >= 1, maximumGroupsPerNode >= 1 else {
            throw ConfigurationError("node and group limits must be at least 1")
        }
        for name in hybridGroups where GroupName(name) == nil {
            throw ConfigurationError("hybrid group name '\(name)' is not a valid group name (1-255 bytes, no control characters)")
        }
        guard maximumInboundFrameBytes >= 1024 else {
            throw ConfigurationError("maximum inbound frame must be at least 1024 bytes")
        }
        guard maximumQueuedBytesPerClient >= 1 << 16 else {
            throw ConfigurationError("per-client queue limit must be at least 65536 bytes")
        }
    }
}
