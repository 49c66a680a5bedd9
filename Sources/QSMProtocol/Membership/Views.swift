
/// Up to k nodes of a region that run one token ring together, and the one that leads it.
public struct Partition: Hashable, Sendable {
    /// The partition's members, sorted by id.
    public var members: [NodeID]
    /// The member that starts the partition's token.
    public var leader: NodeID
    package init(members: [NodeID], leader: NodeID) {
        self.members = members
        self.leader = leader
    }
}

/// One numbered view of a region: the nodes whose groups (within one hierarchy) are
/// exactly `groups`, split into partitions, with the multicast address the region owns.
public struct RegionView: Hashable, Sendable {
    /// The region.
    public var id: RegionID
    /// Rises whenever the region's member set changes.
    public var viewNumber: UInt64
    /// The hierarchy the region belongs to (always 0 in `full` mode).
    public var hierarchy: UInt32
    /// The set of groups every member belongs to (within the hierarchy), sorted.
    public var groups: [GroupID]
    /// Members sorted by id, with their unicast addresses.
    public var members: [NodeEntry]
    /// The region's partitions (section 4.2.1 C), each with its leader.
    public var partitions: [Partition]
    /// One of the partition leaders.
    public var regionLeader: NodeID
    /// Nil only if the address pool was exhausted when the region formed.
    public var address: QSMSocketAddress?

    package init(id: RegionID, viewNumber: UInt64, hierarchy: UInt32, groups: [GroupID], members: [NodeEntry],
                partitions: [Partition], regionLeader: NodeID, address: QSMSocketAddress?) {
        self.id = id
        self.viewNumber = viewNumber
        self.hierarchy = hierarchy
        self.groups = groups
        self.members = members
        self.partitions = partitions
        self.regionLeader = regionLeader
        self.address = address
    }

    /// The partition that holds `node`, if it is a member.
    public func partition(of node: NodeID) -> Partition? {
        partitions.first { $0.members.contains(node) }
    }
}

/// A region view as a group view refers to it.
public struct RegionReference: Hashable, Sendable {
    /// The region.
    public var id: RegionID
    /// The region's view number when the group view was made.
    public var viewNumber: UInt64
    /// The region's multicast address (nil if the pool was exhausted).
    public var address: QSMSocketAddress?
    package init(id: RegionID, viewNumber: UInt64, address: QSMSocketAddress?) {
        self.id = id
        self.viewNumber = viewNumber
        self.address = address
    }
}

/// One numbered view of a group, and the region views that together hold exactly its
/// members (section 4.2.1 A, Fig. 4.7).
public struct GroupView: Hashable, Sendable {
    /// The group's id.
    public var id: GroupID
    /// The group's name.
    public var name: GroupName
    /// Rises whenever the member set changes.
    public var viewNumber: UInt64
    /// Members sorted by id.
    public var members: [NodeID]
    /// Per member (same order as `members`): the view number from which it has been a
    /// member without a break. A message committed to an older view is not owed to it
    /// (one carried into its region by a reconfiguration, or sent by a lagging sender).
    public var memberSince: [UInt64]
    /// Rises whenever the region list or any listed region's view changes.
    public var mappingVersion: UInt64
    /// Disjoint region views whose union is exactly `members`, sorted by region id.
    public var regions: [RegionReference]
    /// The group's own multicast address in hybrid mode (section 4.2.1 B), else nil.
    public var hybridAddress: QSMSocketAddress?
    /// Live nodes that publish to the group without belonging to it, sorted by id: when
    /// one is gone from this list (it crashed, or stopped publishing) members give up
    /// what of its messages nobody left holds.
    public var publishers: [NodeID]

    /// `memberSince` defaults to 1 for every member (members from the group's first view).
    package init(id: GroupID, name: GroupName, viewNumber: UInt64, members: [NodeID], memberSince: [UInt64]? = nil,
                 mappingVersion: UInt64, regions: [RegionReference], hybridAddress: QSMSocketAddress?,
                 publishers: [NodeID] = []) {
        precondition(memberSince == nil || memberSince!.count == members.count, "one join view per member")
        self.memberSince = memberSince ?? Array(repeating: 1, count: members.count)
        self.publishers = publishers
        self.id = id
        self.name = name
        self.viewNumber = viewNumber
        self.members = members
        self.mappingVersion = mappingVersion
        self.regions = regions
        self.hybridAddress = hybridAddress
    }

    /// The view from which `node` has been a member without a break; nil if it is not one.
    package func memberSince(of node: NodeID) -> UInt64? {
        var low = 0, high = members.count
        while low < high {
            let middle = (low + high) / 2
            if members[middle] < node { low = middle + 1 } else { high = middle }
        }
        return low < members.count && members[low] == node ? memberSince[low] : nil
    }
}
