
/// The GMS control protocol's version; a client speaking another is refused clearly.
package let membershipProtocolVersion: UInt16 = 5

/// What a node sends the GMS.
package enum ClientMessage: Equatable, Sendable {
    /// First message on a connection: who the node is and where it listens.
    case register(node: NodeID, address: QSMSocketAddress, protocolVersion: UInt16)
    case join(request: UInt32, group: GroupName)
    case leave(request: UInt32, group: GroupName)
    /// Registers the node as a sender to a group it need not be a member of.
    case publish(request: UInt32, group: GroupName)
    case unpublish(request: UInt32, group: GroupName)
    case heartbeat
    /// The node saw a gap in update versions and wants everything again.
    case resynchronize
    /// A clean leave of the whole system.
    case goodbye
    /// A ring member this node leads answers none of its probes on the data path (see
    /// `DataPathSuspicion`); the GMS decides whether to exclude it.
    case suspect(node: NodeID)
    /// Sent after the leave of `group`: the node left because its application was too
    /// slow. The GMS tells the group's other members and publishers.
    case evicted(group: GroupName, reason: String)
}

/// What the GMS sends a node.
package enum ServerMessage: Equatable, Sendable {
    /// The node is registered. `heartbeatTimeout` is how long this GMS waits for a silent
    /// node: the node heartbeats at least four times in it (see `MembershipClient`).
    case registered(node: NodeID, heartbeatTimeout: Duration)
    case accepted(request: UInt32)
    /// A request (or, with request 0, the connection's last message) was refused.
    case rejected(request: UInt32, reason: String)
    /// The node was removed as failed; it must register again.
    case excluded(reason: String)
    case update(MembershipUpdate)
    /// `node` left `group` because its application was too slow (`ClientMessage.evicted`).
    case memberEvicted(node: NodeID, group: GroupName, reason: String)
}

/// A versioned change to what one node knows. Increments apply only on top of
/// `baseVersion`; a node that sees any other base asks for a full update.
package struct MembershipUpdate: Equatable, Sendable {
    package var baseVersion: UInt64
    package var version: UInt64
    /// Replaces everything the node knew.
    package var isFull: Bool
    /// New or changed views of the node's own regions.
    package var regions: [RegionView]
    package var removedRegions: [RegionID]
    /// New or changed views of groups the node belongs or publishes to.
    package var groups: [GroupView]
    package var removedGroups: [GroupID]

    package init(baseVersion: UInt64, version: UInt64, isFull: Bool, regions: [RegionView], removedRegions: [RegionID],
                groups: [GroupView], removedGroups: [GroupID]) {
        self.baseVersion = baseVersion
        self.version = version
        self.isFull = isFull
        self.regions = regions
        self.removedRegions = removedRegions
        self.groups = groups
        self.removedGroups = removedGroups
    }
}

private enum ClientTag: UInt8 {
    case register = 1, join, leave, publish, unpublish, heartbeat, resynchronize, goodbye, suspect, evicted
}

private enum ServerTag: UInt8 {
    case registered = 1, accepted, rejected, excluded, update, memberEvicted
}

extension String {
    /// Longest explanation sent to or from the GMS, in UTF-8 bytes.
    static let maximumReasonBytes = 1_000

    /// At most `maximumReasonBytes` of UTF-8, cut at a character boundary.
    var boundedForWire: String {
        guard utf8.count > Self.maximumReasonBytes else { return self }
        var bytes = 0
        var result = ""
        for character in self {
            bytes += character.utf8.count
            guard bytes <= Self.maximumReasonBytes else { break }
            result.append(character)
        }
        return result
    }
}

// MARK: Encoding

extension ClientMessage {
    package func encoded() -> [UInt8] {
        var encoder = WireEncoder()
        func request(_ tag: ClientTag, _ id: UInt32, _ group: GroupName) {
            encoder.write(tag.rawValue)
            encoder.write(id)
            encoder.writeString(group.text)
        }
        switch self {
        case .register(let node, let address, let version):
            encoder.write(ClientTag.register.rawValue)
            encoder.write(version)
            encoder.write(node.value)
            encoder.write(address)
        case .join(let id, let group): request(.join, id, group)
        case .leave(let id, let group): request(.leave, id, group)
        case .publish(let id, let group): request(.publish, id, group)
        case .unpublish(let id, let group): request(.unpublish, id, group)
        case .heartbeat: encoder.write(ClientTag.heartbeat.rawValue)
        case .resynchronize: encoder.write(ClientTag.resynchronize.rawValue)
        case .goodbye: encoder.write(ClientTag.goodbye.rawValue)
        case .suspect(let node):
            encoder.write(ClientTag.suspect.rawValue)
            encoder.write(node.value)
        case .evicted(let group, let reason):
            encoder.write(ClientTag.evicted.rawValue)
            encoder.writeString(group.text)
            encoder.writeString(reason.boundedForWire)
        }
        return encoder.bytes
    }
}

extension ServerMessage {
    package func encoded() -> [UInt8] {
        var encoder = WireEncoder()
        switch self {
        case .registered(let node, let timeout):
            encoder.write(ServerTag.registered.rawValue)
            encoder.write(node.value)
            encoder.write(UInt64(clamping: timeout.totalNanoseconds))
        case .accepted(let id):
            encoder.write(ServerTag.accepted.rawValue)
            encoder.write(id)
        case .rejected(let id, let reason):
            encoder.write(ServerTag.rejected.rawValue)
            encoder.write(id)
            encoder.writeString(reason.boundedForWire)
        case .excluded(let reason):
            encoder.write(ServerTag.excluded.rawValue)
            encoder.writeString(reason.boundedForWire)
        case .update(let update):
            encoder.write(ServerTag.update.rawValue)
            encoder.write(update: update)
        case .memberEvicted(let node, let group, let reason):
            encoder.write(ServerTag.memberEvicted.rawValue)
            encoder.write(node.value)
            encoder.writeString(group.text)
            encoder.writeString(reason.boundedForWire)
        }
        return encoder.bytes
    }
}

extension WireEncoder {
    mutating func write(_ address: QSMSocketAddress) {
        write(address.address.value)
        write(address.port)
    }

    mutating func write(optional address: QSMSocketAddress?) {
        if let address {
            write(UInt8(1))
            write(address)
        } else {
            write(UInt8(0))
        }
    }

    mutating func write(update: MembershipUpdate) {
        write(update.baseVersion)
        write(update.version)
        write(UInt8(update.isFull ? 1 : 0))
        write(UInt32(update.regions.count))
        for region in update.regions { write(region: region) }
        write(UInt32(update.removedRegions.count))
        for id in update.removedRegions { write(id.value) }
        write(UInt32(update.groups.count))
        for group in update.groups { write(group: group) }
        write(UInt32(update.removedGroups.count))
        for id in update.removedGroups { write(id.value) }
    }

    mutating func write(region: RegionView) {
        write(region.id.value)
        write(region.viewNumber)
        write(region.hierarchy)
        write(UInt32(region.groups.count))
        for group in region.groups { write(group.value) }
        write(UInt32(region.members.count))
        var position: [NodeID: UInt32] = [:]
        for (index, member) in region.members.enumerated() {
            write(member.id.value)
            write(member.address)
            position[member.id] = UInt32(index)
        }
        write(UInt32(region.partitions.count))
        for partition in region.partitions {
            write(UInt32(partition.members.count))
            for member in partition.members { write(position[member]!) }
            write(position[partition.leader]!)
        }
        write(position[region.regionLeader]!)
        write(optional: region.address)
    }

    mutating func write(group: GroupView) {
        write(group.id.value)
        writeString(group.name.text)
        write(group.viewNumber)
        write(UInt32(group.members.count))
        for (member, since) in zip(group.members, group.memberSince) {
            write(member.value)
            write(since)
        }
        write(group.mappingVersion)
        write(UInt32(group.regions.count))
        for reference in group.regions {
            write(reference.id.value)
            write(reference.viewNumber)
            write(optional: reference.address)
        }
        write(optional: group.hybridAddress)
        write(UInt32(group.publishers.count))
        for publisher in group.publishers { write(publisher.value) }
    }
}
