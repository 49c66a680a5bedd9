import QSMProtocol


/// What the GMS knows when it applies a batch: who is alive and who belongs to what.
package struct MembershipSnapshot {
    /// Live nodes and their unicast addresses.
    package var nodes: [NodeID: QSMSocketAddress] = [:]
    /// Each live node's groups (as a member; publishing alone does not count).
    package var memberships: [NodeID: Set<GroupID>] = [:]
    /// Every group that exists (has members or publishers), by id.
    package var groups: [GroupID: (name: GroupName, hybrid: Bool)] = [:]
    /// Live nodes that publish to a group without belonging to it.
    package var publishers: [GroupID: Set<NodeID>] = [:]
    package init() {}
}

/// What one batch changed.
package struct MembershipChanges: Equatable, Sendable {
    package var changedRegions: Set<RegionID> = []
    package var removedRegions: Set<RegionID> = []
    package var changedGroups: Set<GroupID> = []
    package var removedGroups: Set<GroupID> = []
    package var isEmpty: Bool { changedRegions.isEmpty && removedRegions.isEmpty && changedGroups.isEmpty && removedGroups.isEmpty }
}

/// The versioned membership structure of Fig. 4.7: group views, region views, the
/// mapping between them, partitions, leaders and multicast addresses. Each `apply`
/// computes the layout for a snapshot and produces new versions only of what changed.
package struct MembershipViews {
    package let configuration: MembershipConfiguration
    package private(set) var regions: [RegionID: RegionView] = [:]
    package private(set) var groups: [GroupID: GroupView] = [:]
    /// Each group's hierarchy (all 0 in `full` mode).
    package private(set) var hierarchyOf: [GroupID: UInt32] = [:]
    /// Regions that could not get an address because the pool was empty.
    package private(set) var addressExhaustions = 0
    private var regionByKey: [RegionKey: RegionID] = [:]
    private var pool: AddressPool
    private var nextRegionID: UInt64 = 1
    private var nextHierarchyID: UInt32 = 1

    package struct RegionKey: Hashable {
        package var hierarchy: UInt32
        package var groups: [GroupID]
    }

    package init(configuration: MembershipConfiguration) {
        self.configuration = configuration
        pool = AddressPool(start: configuration.addressPoolStart, size: configuration.addressPoolSize)
        nextRegionID = UInt64(configuration.incarnation) << 32 | 1
    }

    package var addressesInUse: Int { pool.inUse }

    /// Applies one batch: the layout for `snapshot`, with new versions of what changed.
    package mutating func apply(_ snapshot: MembershipSnapshot) -> MembershipChanges {
        var changes = MembershipChanges()
        assignHierarchies(snapshot)

        // Region membership: a node's groups, split by hierarchy; each part is a key.
        var keyMembers: [RegionKey: [NodeID]] = [:]
        for (node, joined) in snapshot.memberships where snapshot.nodes[node] != nil {
            var byHierarchy: [UInt32: [GroupID]] = [:]
            for group in joined where snapshot.groups[group] != nil {
                byHierarchy[hierarchyOf[group] ?? 0, default: []].append(group)
            }
            for (hierarchy, list) in byHierarchy {
                keyMembers[RegionKey(hierarchy: hierarchy, groups: list.sorted()), default: []].append(node)
            }
        }

        // Retire regions whose key vanished. (Iteration orders here are sorted: region ids
        // and addresses must not depend on the process's hash seed.)
        for (key, id) in regionByKey.sorted(by: { $0.value < $1.value }) where keyMembers[key] == nil {
            if let address = regions[id]?.address { pool.release(address.address) }
            regions[id] = nil
            regionByKey[key] = nil
            changes.removedRegions.insert(id)
        }
        // New and changed regions.
        for (key, unsorted) in keyMembers.sorted(by: { Self.keyOrder($0.key, $1.key) }) {
            let memberIDs = unsorted.sorted()
            let members = memberIDs.map { NodeEntry(id: $0, address: snapshot.nodes[$0]!) }
            if let id = regionByKey[key], var region = regions[id] {
                guard region.members != members else { continue }
                region.viewNumber += 1
                region.members = members
                region.partitions = Partitioning.partitions(of: memberIDs, previous: region.partitions,
                                                            size: configuration.partitionSize)
                region.regionLeader = Partitioning.regionLeader(of: region.partitions, previous: region.regionLeader)
                regions[id] = region
                changes.changedRegions.insert(id)
            } else {
                let id = RegionID(nextRegionID)
                nextRegionID += 1
                let partitions = Partitioning.partitions(of: memberIDs, previous: [], size: configuration.partitionSize)
                regions[id] = RegionView(id: id, viewNumber: 1, hierarchy: key.hierarchy, groups: key.groups,
                                         members: members, partitions: partitions,
                                         regionLeader: Partitioning.regionLeader(of: partitions, previous: nil),
                                         address: allocateAddress())
                regionByKey[key] = id
                changes.changedRegions.insert(id)
            }
        }

        // Groups: members, and the regions that cover them.
        var groupMembers: [GroupID: [NodeID]] = [:]
        var groupRegions: [GroupID: [RegionID]] = [:]
        for region in regions.values {
            for group in region.groups {
                groupRegions[group, default: []].append(region.id)
                groupMembers[group, default: []].append(contentsOf: region.members.map(\.id))
            }
        }
        for (id, group) in groups.sorted(by: { $0.key < $1.key }) where snapshot.groups[id] == nil {
            if let address = group.hybridAddress { pool.release(address.address) }
            groups[id] = nil
            changes.removedGroups.insert(id)
        }
        for (id, info) in snapshot.groups.sorted(by: { $0.key < $1.key }) {
            let members = (groupMembers[id] ?? []).sorted()
            let references = (groupRegions[id] ?? []).sorted().map { regionID in
                let region = regions[regionID]!
                return RegionReference(id: regionID, viewNumber: region.viewNumber, address: region.address)
            }
            var group = groups[id] ?? GroupView(id: id, name: info.name, viewNumber: 0, members: [],
                                                mappingVersion: 0, regions: [], hybridAddress: nil)
            let before = group
            if group.viewNumber == 0 || group.members != members {
                group.viewNumber += 1
                // A member keeps the view it joined in; a new one joins in this view.
                group.memberSince = members.map { group.memberSince(of: $0) ?? group.viewNumber }
                group.members = members
            }
            if group.mappingVersion == 0 || group.regions != references {
                group.mappingVersion += 1
                group.regions = references
            }
            let publishers = (snapshot.publishers[id] ?? []).sorted()
            if group.publishers != publishers { group.publishers = publishers }
            if info.hybrid && group.hybridAddress == nil { group.hybridAddress = allocateAddress() }
            if !info.hybrid, let address = group.hybridAddress {
                pool.release(address.address)
                group.hybridAddress = nil
            }
            if group != before {
                groups[id] = group
                changes.changedGroups.insert(id)
            }
        }
        return changes
    }

    private static func keyOrder(_ a: RegionKey, _ b: RegionKey) -> Bool {
        if a.hierarchy != b.hierarchy { return a.hierarchy < b.hierarchy }
        return a.groups.lexicographicallyPrecedes(b.groups)
    }

    private mutating func allocateAddress() -> QSMSocketAddress? {
        guard let address = pool.allocate() else {
            addressExhaustions += 1
            return nil
        }
        return QSMSocketAddress(address, port: configuration.multicastPort)
    }

    private mutating func assignHierarchies(_ snapshot: MembershipSnapshot) {
        guard configuration.mode == .hierarchies else {
            hierarchyOf = [:]
            return
        }
        var nodeIndex: [NodeID: Int32] = [:]
        var members: [GroupID: [Int32]] = [:]
        for (node, joined) in snapshot.memberships where snapshot.nodes[node] != nil {
            let index = Int32(nodeIndex.count)
            nodeIndex[node] = index
            for group in joined where snapshot.groups[group] != nil { members[group, default: []].append(index) }
        }
        let groups = members.map { HierarchyDecomposition.Group(id: $0.key, members: $0.value) }
        hierarchyOf = HierarchyDecomposition.decompose(groups, nodeCount: nodeIndex.count,
                                                       minimumRegionSize: configuration.minimumRegionSize,
                                                       previous: hierarchyOf, nextHierarchyID: &nextHierarchyID)
    }
}
