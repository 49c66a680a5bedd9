import QSMProtocol

/// Splits a region's members into partitions of at most k, keeping earlier choices: a
/// member stays in its partition and a leader stays leader unless it leaves. Newcomers
/// fill partitions that have room, in order, before new partitions are opened.
package enum Partitioning {
    /// - Parameters:
    ///   - members: the region's new member set, sorted.
    ///   - previous: the partitions of the region's previous view (empty for a new region).
    package static func partitions(of members: [NodeID], previous: [Partition], size k: Int) -> [Partition] {
        let present = Set(members)
        var placed = Set<NodeID>()
        var result: [Partition] = []
        for old in previous {
            let kept = old.members.filter { present.contains($0) }
            guard !kept.isEmpty else { continue }
            placed.formUnion(kept)
            let leader = kept.contains(old.leader) ? old.leader : kept.min()!
            result.append(Partition(members: kept, leader: leader))
        }
        var newcomers = members.filter { !placed.contains($0) }[...]
        for index in result.indices where !newcomers.isEmpty {
            while result[index].members.count < k, let node = newcomers.popFirst() {
                result[index].members.append(node)
            }
        }
        while !newcomers.isEmpty {
            let chunk = Array(newcomers.prefix(k))
            newcomers = newcomers.dropFirst(k)
            result.append(Partition(members: chunk, leader: chunk.min()!))
        }
        return result
    }

    /// The region leader: the previous one if it still leads a partition, else the leader
    /// of the first partition.
    package static func regionLeader(of partitions: [Partition], previous: NodeID?) -> NodeID {
        if let previous, partitions.contains(where: { $0.leader == previous }) { return previous }
        return partitions[0].leader
    }
}
