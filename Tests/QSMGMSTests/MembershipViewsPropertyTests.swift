import Testing
@testable import QSMCore
import QSMHarness
@testable import QSMGMS

/// Checks every structural invariant of one batch's views against the snapshot that
/// produced them; returns the first violation found, or nil.
func membershipViolation(_ views: MembershipViews, _ snapshot: MembershipSnapshot,
                         previousRegions: [RegionID: RegionView], previousGroups: [GroupID: GroupView]) -> String? {
    let configuration = views.configuration
    let live = snapshot.nodes
    func groupsOf(_ node: NodeID) -> Set<GroupID> {
        (snapshot.memberships[node] ?? []).filter { snapshot.groups[$0] != nil }
    }
    // Regions partition the nodes, per hierarchy, and each is exactly R_S.
    var regionOf: [NodeID: [UInt32: RegionID]] = [:]
    for region in views.regions.values {
        if region.members.isEmpty { return "\(region.id) is empty" }
        for member in region.members {
            guard live[member.id] == member.address else { return "\(region.id) holds \(member.id), not live at that address" }
            if regionOf[member.id, default: [:]][region.hierarchy] != nil {
                return "\(member.id) is in two regions of hierarchy \(region.hierarchy)"
            }
            regionOf[member.id, default: [:]][region.hierarchy] = region.id
            let inHierarchy = groupsOf(member.id).filter { (views.hierarchyOf[$0] ?? 0) == region.hierarchy }
            if inHierarchy != Set(region.groups) { return "\(member.id) in \(region.id) has groups \(inHierarchy), region says \(region.groups)" }
        }
        // Partitions.
        var seen = Set<NodeID>()
        for partition in region.partitions {
            if partition.members.isEmpty || partition.members.count > configuration.partitionSize {
                return "\(region.id) has a partition of \(partition.members.count) (k = \(configuration.partitionSize))"
            }
            if !partition.members.contains(partition.leader) { return "partition leader \(partition.leader) not in its partition" }
            for member in partition.members where !seen.insert(member).inserted { return "\(member) in two partitions" }
        }
        if seen != Set(region.members.map(\.id)) { return "\(region.id) partitions do not cover its members" }
        if !region.partitions.contains(where: { $0.leader == region.regionLeader }) {
            return "\(region.id) leader \(region.regionLeader) leads no partition"
        }
    }
    for (node, _) in live {
        let hierarchies = Set(groupsOf(node).map { views.hierarchyOf[$0] ?? 0 })
        if Set(regionOf[node]?.keys.map { $0 } ?? []) != hierarchies { return "\(node) regions do not match its hierarchies" }
    }
    // Groups: members are exactly the joined live nodes, and exactly the union of regions.
    for (id, _) in snapshot.groups {
        guard let group = views.groups[id] else { return "group \(id) has no view" }
        let expected = live.keys.filter { groupsOf($0).contains(id) }.sorted()
        if group.members != expected { return "\(id) members \(group.members), expected \(expected)" }
        var union: [NodeID] = []
        for reference in group.regions {
            guard let region = views.regions[reference.id] else { return "\(id) maps to missing \(reference.id)" }
            if reference.viewNumber != region.viewNumber || reference.address != region.address {
                return "\(id) refers to a stale view of \(reference.id)"
            }
            union += region.members.map(\.id)
        }
        if union.count != Set(union).count { return "\(id) regions overlap" }
        if union.sorted() != expected { return "\(id) regions do not add up to its members" }
        if let previous = previousGroups[id] {
            if group.viewNumber < previous.viewNumber || group.mappingVersion < previous.mappingVersion {
                return "\(id) version went backwards"
            }
            if (group.members != previous.members) != (group.viewNumber > previous.viewNumber) {
                return "\(id) view number did not follow its member set"
            }
            // A member keeps the view it joined in; one that was not a member joins now.
            for (member, since) in zip(group.members, group.memberSince) {
                let expectedSince = previous.memberSince(of: member) ?? group.viewNumber
                if since != expectedSince { return "\(id): \(member) member since \(since), expected \(expectedSince)" }
            }
        } else if group.memberSince.contains(where: { $0 != group.viewNumber }) {
            return "\(id): a member of a new group joined before its first view"
        }
    }
    if views.groups.count != snapshot.groups.count { return "groups that no longer exist still have views" }
    // Addresses unique among live regions and hybrid groups.
    var addresses = Set<IPv4Address>()
    for address in views.regions.values.compactMap(\.address) + views.groups.values.compactMap(\.hybridAddress) {
        if !addresses.insert(address.address).inserted { return "address \(address) held twice" }
        let offset = Int(address.address.value) - Int(configuration.addressPoolStart.value)
        if offset < 0 || offset >= configuration.addressPoolSize { return "address \(address) outside the pool" }
    }
    for (id, region) in views.regions {
        guard let previous = previousRegions[id] else { continue }
        if region.viewNumber < previous.viewNumber { return "\(id) view number went backwards" }
        if (region.members != previous.members) != (region.viewNumber > previous.viewNumber) {
            return "\(id) view number did not follow its member set"
        }
        if region.address != previous.address { return "\(id) changed address" }
        for partition in previous.partitions where region.members.contains(where: { $0.id == partition.leader }) {
            if region.partition(of: partition.leader)?.leader != partition.leader { return "a partition leader lost its role while staying" }
        }
    }
    // Hierarchies are perfect, and regions of multi-group hierarchies respect the minimum.
    if configuration.mode == .hierarchies {
        var byHierarchy: [UInt32: [Set<NodeID>]] = [:]
        for (id, group) in views.groups where !group.members.isEmpty {
            guard let hierarchy = views.hierarchyOf[id] else { return "\(id) has members but no hierarchy" }
            byHierarchy[hierarchy, default: []].append(Set(group.members))
        }
        for (hierarchy, sets) in byHierarchy {
            for a in sets.indices { for b in sets.indices where a < b {
                let (x, y) = (sets[a], sets[b])
                if !(x.isSubset(of: y) || y.isSubset(of: x) || x.isDisjoint(with: y)) {
                    return "hierarchy \(hierarchy) is not perfect"
                }
            } }
            if sets.count > 1 {
                for region in views.regions.values where region.hierarchy == hierarchy
                    && region.members.count < configuration.minimumRegionSize {
                    return "hierarchy \(hierarchy) has a region of \(region.members.count) < \(configuration.minimumRegionSize)"
                }
            }
        }
    }
    return nil
}

@Suite struct MembershipViewsPropertyTests {
    /// Random memberships with churn: nodes come and go, join and leave groups, some of
    /// them nested so hierarchies have structure to find.
    static func run(seed: UInt64, mode: RegionMode) -> String? {
        var random = SplitMix64(seed: seed)
        var configuration = MembershipConfiguration()
        configuration.mode = mode
        configuration.partitionSize = Int.random(in: 1...6, using: &random)
        configuration.minimumRegionSize = mode == .hierarchies ? Int.random(in: 1...3, using: &random) : 1
        configuration.addressPoolSize = 400
        var views = MembershipViews(configuration: configuration)
        var snapshot = MembershipSnapshot()
        let groupCount = Int.random(in: 1...14, using: &random)
        for index in 0..<groupCount {
            snapshot.groups[GroupID(UInt32(index))] = (GroupName("group\(index)")!, Bool.random(using: &random) && index % 4 == 0)
        }
        var nextNode: UInt64 = 1
        for batch in 0..<10 {
            // Churn.
            let arrivals = batch == 0 ? Int.random(in: 1...40, using: &random) : Int.random(in: 0...6, using: &random)
            for _ in 0..<arrivals {
                let node = NodeID(nextNode)
                nextNode += 1
                snapshot.nodes[node] = QSMSocketAddress(IPv4Address(10, 0, UInt8(nextNode >> 8 & 0xFF), UInt8(nextNode & 0xFF)), port: 9000)
                // A chain of nested groups plus a few at random.
                var joined = Set<GroupID>()
                let chainStart = Int.random(in: 0..<groupCount, using: &random)
                for index in stride(from: chainStart, to: groupCount, by: 3) where Bool.random(using: &random) || index == chainStart {
                    joined.insert(GroupID(UInt32(index)))
                }
                if Int.random(in: 0..<4, using: &random) == 0 { joined.insert(GroupID(UInt32.random(in: 0..<UInt32(groupCount), using: &random))) }
                snapshot.memberships[node] = joined
            }
            for node in Array(snapshot.nodes.keys) {
                switch Int.random(in: 0..<20, using: &random) {
                case 0:
                    snapshot.nodes[node] = nil
                    snapshot.memberships[node] = nil
                case 1:
                    snapshot.memberships[node]?.insert(GroupID(UInt32.random(in: 0..<UInt32(groupCount), using: &random)))
                case 2:
                    if let group = snapshot.memberships[node]?.randomElement(using: &random) { snapshot.memberships[node]?.remove(group) }
                case 3:
                    snapshot.nodes[node] = QSMSocketAddress(IPv4Address(10, 1, 0, UInt8.random(in: 1...250, using: &random)), port: 9001)
                default:
                    break
                }
            }
            let previousRegions = views.regions
            let previousGroups = views.groups
            let changes = views.apply(snapshot)
            if let violation = membershipViolation(views, snapshot, previousRegions: previousRegions, previousGroups: previousGroups) {
                return "batch \(batch): \(violation)"
            }
            // Applying the same snapshot again changes nothing.
            let again = views.apply(snapshot)
            if !again.isEmpty { return "batch \(batch): re-applying an unchanged snapshot reported changes \(again)" }
            _ = changes
        }
        return nil
    }

    @Test(arguments: RegionMode.allCases)
    func randomMembershipsKeepEveryInvariant(mode: RegionMode) {
        for seed in UInt64(1)...300 {
            if let failure = Self.run(seed: seed, mode: mode) {
                Issue.record("mode \(mode), seed \(seed): \(failure)")
                return
            }
        }
    }

    @Test func aPerfectFamilyIsOneHierarchy() {
        // A random laminar family: each group is a random subset of a random earlier group.
        for seed in UInt64(1)...200 {
            var random = SplitMix64(seed: seed)
            var sets: [[Int32]] = [Array(0..<60)]
            for _ in 0..<Int.random(in: 1...20, using: &random) {
                let parent = sets.randomElement(using: &random)!
                let child = parent.filter { _ in Bool.random(using: &random) }
                if !child.isEmpty { sets.append(child) }
            }
            // Keep it laminar: drop a set that overlaps an earlier one without nesting.
            var family: [[Int32]] = []
            for set in sets {
                let s = Set(set)
                if family.allSatisfy({ let f = Set($0); return s.isSubset(of: f) || f.isSubset(of: s) || s.isDisjoint(with: f) }) {
                    family.append(set)
                }
            }
            let groups = family.enumerated().map { HierarchyDecomposition.Group(id: GroupID(UInt32($0.offset)), members: $0.element) }
            var next: UInt32 = 1
            let assignment = HierarchyDecomposition.decompose(groups, nodeCount: 60, minimumRegionSize: 1, nextHierarchyID: &next)
            #expect(Set(assignment.values).count == 1, "seed \(seed): a laminar family was split")
            if Set(assignment.values).count != 1 { return }
        }
    }

    @Test func crossingGroupsGoToSeparateHierarchies() {
        // {0,1} and {1,2} cross; {0,1,2,3} contains both.
        let groups = [
            HierarchyDecomposition.Group(id: GroupID(1), members: [0, 1]),
            HierarchyDecomposition.Group(id: GroupID(2), members: [1, 2]),
            HierarchyDecomposition.Group(id: GroupID(3), members: [0, 1, 2, 3]),
        ]
        var next: UInt32 = 1
        let assignment = HierarchyDecomposition.decompose(groups, nodeCount: 4, minimumRegionSize: 1, nextHierarchyID: &next)
        #expect(assignment[GroupID(3)] == assignment[GroupID(1)])
        #expect(assignment[GroupID(2)] != assignment[GroupID(1)])
    }

    @Test func fullModeRegionsAreDistinctMembershipSets() {
        var views = MembershipViews(configuration: MembershipConfiguration())
        var snapshot = MembershipSnapshot()
        let a = GroupID(1), b = GroupID(2)
        snapshot.groups = [a: (GroupName("a")!, false), b: (GroupName("b")!, false)]
        for value in UInt64(1)...6 {
            snapshot.nodes[NodeID(value)] = QSMSocketAddress(.loopback, port: UInt16(9000 + value))
        }
        snapshot.memberships = [NodeID(1): [a], NodeID(2): [a], NodeID(3): [a, b], NodeID(4): [a, b], NodeID(5): [b], NodeID(6): []]
        _ = views.apply(snapshot)
        let keys = Set(views.regions.values.map { $0.groups })
        #expect(keys == [[a], [a, b], [b]])
        #expect(views.groups[a]?.regions.count == 2)
        #expect(views.groups[a]?.members == [NodeID(1), NodeID(2), NodeID(3), NodeID(4)])
        // Node 2 moves from R{a} to R{a,b}: both regions get new views, group a's member set
        // does not change but its mapping does; group b gains a member.
        let before = views.groups[a]!
        snapshot.memberships[NodeID(2)] = [a, b]
        let changes = views.apply(snapshot)
        #expect(views.groups[a]!.viewNumber == before.viewNumber)
        #expect(views.groups[a]!.mappingVersion == before.mappingVersion + 1)
        #expect(changes.changedGroups == [a, b])
        // Everyone leaves R{a}: it retires and its address goes back to the pool.
        snapshot.memberships[NodeID(1)] = [a, b]
        let retired = views.apply(snapshot)
        #expect(retired.removedRegions.count == 1)
        #expect(views.addressesInUse == 2)
    }

    /// A node that publishes to a group without joining it is listed in the group's view
    /// while it is alive; when it goes (crashed, or stopped publishing) the view changes,
    /// so members can give up its messages that nobody holds.
    @Test func publishersWithoutMembershipAreListedInTheGroupView() {
        var views = MembershipViews(configuration: MembershipConfiguration())
        var snapshot = MembershipSnapshot()
        let a = GroupID(1)
        snapshot.groups = [a: (GroupName("a")!, false)]
        for value in UInt64(1)...3 { snapshot.nodes[NodeID(value)] = QSMSocketAddress(.loopback, port: UInt16(9000 + value)) }
        snapshot.memberships = [NodeID(1): [a], NodeID(2): [a], NodeID(3): []]
        snapshot.publishers = [a: [NodeID(3)]]
        _ = views.apply(snapshot)
        #expect(views.groups[a]?.publishers == [NodeID(3)])
        #expect(views.groups[a]?.members == [NodeID(1), NodeID(2)])
        snapshot.nodes[NodeID(3)] = nil
        snapshot.memberships[NodeID(3)] = nil
        snapshot.publishers = [:]
        let changes = views.apply(snapshot)
        #expect(changes.changedGroups == [a])
        #expect(views.groups[a]?.publishers == [])
    }
}
