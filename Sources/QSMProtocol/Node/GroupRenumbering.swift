/// A restarted GMS numbers groups anew, in the order nodes join them again: a group's name
/// can come back with another id, and its old id can go to another name. What the
/// protocol keeps per group (sequences, deduplication, unacknowledged messages) must
/// follow the name, or a sender's numbering and its receivers' deduplication would part.
extension NodeMachine {
    /// The renaming that takes this node's per-group state from the ids it knew to the
    /// ids of `groups`. An id taken over by another name, while its old owner is not in
    /// view, parks the owner's state under an id no GMS hands out (counting down from
    /// `UInt32.max`) until the owner's name comes back.
    func renumberedGroups(_ groups: some Collection<GroupView>) -> [GroupID: GroupID] {
        var arriving: [GroupName: GroupID] = [:]
        arriving.reserveCapacity(groups.count)
        for group in groups { arriving[group.name] = group.id }
        var owners: [GroupID: GroupName] = [:]
        owners.reserveCapacity(knownGroupIDs.count)
        for (name, id) in knownGroupIDs { owners[id] = name }
        var mapping: [GroupID: GroupID] = [:]
        for (name, new) in arriving {
            guard let old = knownGroupIDs[name], old != new else { continue }
            mapping[old] = new
        }
        for (name, new) in arriving {
            guard let owner = owners[new], owner != name, arriving[owner] == nil, mapping[new] == nil else { continue }
            let parked = GroupID(nextParkedGroupID)
            nextParkedGroupID -= 1
            mapping[new] = parked
            knownGroupIDs[owner] = parked
        }
        knownGroupIDs.reserveCapacity(forNew: arriving.keys)
        for (name, id) in arriving { knownGroupIDs[name] = id }
        return mapping
    }
}
