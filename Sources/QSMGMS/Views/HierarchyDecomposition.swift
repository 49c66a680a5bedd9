import QSMProtocol

/// The greedy decomposition of groups into perfect hierarchies (section 4.1.2): take the
/// largest unplaced group; add it to the first hierarchy where every pair of groups stays
/// nested-or-disjoint and no region falls below the minimum size; else start a new one.
///
/// Because groups are placed largest first, a group g can join a hierarchy H (a laminar
/// family) exactly when every member of g has the same innermost group in H, or none:
/// then g nests inside that group, or is disjoint from all of H. That makes each test
/// O(|g|), stopping at the first member that disagrees, instead of intersecting g with
/// every group of H.
///
/// Each group's previous hierarchy is tried first, so repeated decompositions of a slowly
/// changing membership keep groups (and so regions) where they were.
package struct HierarchyDecomposition {
    /// One group to place: its id and its members as dense node indices (0..<nodeCount).
    package struct Group {
        package var id: GroupID
        package var members: [Int32]
    }

    private struct Hierarchy {
        package let id: UInt32
        /// For each node, the index (into the placement order) of its innermost group here.
        package var innermost: [Int32]
        /// Nodes whose innermost group is the key: the size of that group's region.
        package var ownCount: [Int32: Int]
    }

    /// Returns the hierarchy of every group that has members.
    /// - Parameters:
    ///   - previous: each group's hierarchy last time, tried first; its id is reused.
    ///   - nextHierarchyID: the first id free for a new hierarchy; advanced as used.
    package static func decompose(_ groups: [Group], nodeCount: Int, minimumRegionSize: Int,
                          previous: [GroupID: UInt32] = [:],
                          nextHierarchyID: inout UInt32) -> [GroupID: UInt32] {
        let order = groups.indices.filter { !groups[$0].members.isEmpty }.sorted {
            let (a, b) = (groups[$0], groups[$1])
            return a.members.count != b.members.count ? a.members.count > b.members.count : a.id < b.id
        }
        // Ids groups may still come back to later in this decomposition: never fresh ones.
        let reserved = Set(previous.values)
        var hierarchies: [Hierarchy] = []
        var hierarchyIndex: [UInt32: Int] = [:]
        var assignment: [GroupID: UInt32] = [:]
        assignment.reserveCapacity(order.count)

        for (position, groupIndex) in order.enumerated() {
            let group = groups[groupIndex]
            let placement = Int32(position)
            var placed = false
            if let preferred = previous[group.id], let index = hierarchyIndex[preferred] {
                placed = tryAdd(group, placement, to: &hierarchies[index], minimumRegionSize: minimumRegionSize)
                if placed { assignment[group.id] = preferred }
            }
            if !placed {
                for index in hierarchies.indices where hierarchies[index].id != previous[group.id] {
                    if tryAdd(group, placement, to: &hierarchies[index], minimumRegionSize: minimumRegionSize) {
                        assignment[group.id] = hierarchies[index].id
                        placed = true
                        break
                    }
                }
            }
            if !placed {
                let id: UInt32
                if let preferred = previous[group.id], hierarchyIndex[preferred] == nil {
                    id = preferred
                } else {
                    while hierarchyIndex[nextHierarchyID] != nil || reserved.contains(nextHierarchyID) {
                        nextHierarchyID &+= 1
                    }
                    id = nextHierarchyID
                    nextHierarchyID &+= 1
                }
                var hierarchy = Hierarchy(id: id, innermost: [Int32](repeating: -1, count: nodeCount), ownCount: [:])
                _ = tryAdd(group, placement, to: &hierarchy, minimumRegionSize: 1)
                hierarchyIndex[id] = hierarchies.count
                hierarchies.append(hierarchy)
                assignment[group.id] = id
            }
        }
        return assignment
    }

    private static func tryAdd(_ group: Group, _ placement: Int32, to hierarchy: inout Hierarchy,
                               minimumRegionSize: Int) -> Bool {
        let parent = hierarchy.innermost[Int(group.members[0])]
        for member in group.members where hierarchy.innermost[Int(member)] != parent { return false }
        let size = group.members.count
        if size < minimumRegionSize { return false }
        if parent >= 0 {
            let remaining = hierarchy.ownCount[parent, default: 0] - size
            if remaining > 0 && remaining < minimumRegionSize { return false }
            hierarchy.ownCount[parent] = remaining
        }
        for member in group.members { hierarchy.innermost[Int(member)] = placement }
        hierarchy.ownCount[placement] = size
        return true
    }
}
