import QSMProtocol

/// The simulated datagram network: a node's link sends one datagram at a time at the
/// link's rate; multicast reaches the nodes that listen on the address (those that joined
/// it, as the engine's sockets do); unicast reaches the node at the address. During the
/// faulty phase a datagram may be lost, duplicated or corrupted (one bit flipped), a
/// split drops what crosses it, and jitter reorders.
extension Simulator {
    func transmit(_ bytes: [UInt8], to destination: QSMSocketAddress, from index: Int) {
        let node = nodes[index]
        node.linkBusy = true
        let transmission = Int64(Double(bytes.count + 42) * 8 / scenario.linkBitsPerSecond * 1e9)
        let sent = now.advanced(byNanoseconds: max(transmission, 1))
        schedule(.linkFree(node: index), at: sent)
        if let target = nodeAt[destination] {
            deliver(bytes, from: index, to: target, sentAt: sent)
        } else if let members = listeners[destination] {
            if isFaultyPhase, scenario.regionWideLoss > 0, uniform() < scenario.regionWideLoss {
                regionWideDropped += 1
                return networkDropped += 1
            }
            let lacking = isFaultyPhase && scenario.partitionLoss > 0 && uniform() < scenario.partitionLoss
                ? partitionMembers(listening: members) : []
            if !lacking.isEmpty { partitionDropped += 1 }
            for member in members.sorted() where member != index {
                if lacking.contains(member) {
                    networkDropped += 1
                    continue
                }
                deliver(bytes, from: index, to: member, sentAt: sent)
            }
        } else {
            networkDropped += 1
        }
    }

    func deliver(_ bytes: [UInt8], from source: Int, to target: Int, sentAt: Instant) {
        let faulty = isFaultyPhase
        if faulty, cutOff(source, from: target) || dataPathCut(source) || dataPathCut(target) { return networkDropped += 1 }
        if faulty, scenario.loss > 0, uniform() < scenario.loss { return networkDropped += 1 }
        var copies = 1
        if faulty, scenario.duplication > 0, uniform() < scenario.duplication {
            copies = 2
            networkDuplicates += 1
        }
        let sourceAddress = nodes[source].address
        for _ in 0..<copies {
            var payload = bytes
            if faulty, scenario.corruption > 0, uniform() < scenario.corruption, !payload.isEmpty {
                let bit = Int(random.next() % UInt64(payload.count * 8))
                payload[bit / 8] ^= UInt8(1 << (bit % 8))
                corrupted += 1
            }
            let jitter = scenario.jitterMicroseconds * uniform()
            let delay = Int64((scenario.latencyMicroseconds + jitter) * 1000)
                + (nodes[source].latencyNanoseconds + nodes[target].latencyNanoseconds) / 2
            schedule(.arrival(node: target, bytes: payload, from: sourceAddress), at: sentAt.advanced(byNanoseconds: delay))
        }
    }

    /// The node indices of partition `partitionLossIndex` of the region whose address
    /// `listeners` listen on, as the lowest listener's view of it lays it out (none if
    /// that view has no such partition).
    func partitionMembers(listening listeners: Set<Int>) -> Set<Int> {
        guard let first = listeners.min() else { return [] }
        let mine = NodeID(UInt64(first + 1))
        let region = nodes[first].machine.protocolNode.installedRegions.first { $0.members.contains { $0.id == mine } }
        guard let region, region.partitions.indices.contains(scenario.partitionLossIndex) else { return [] }
        return Set(region.partitions[scenario.partitionLossIndex].members.map { Int($0.value) - 1 })
    }

    /// Whether the split separates two nodes now.
    func cutOff(_ a: Int, from b: Int) -> Bool {
        guard let split = scenario.split, splitHeals(for: a) != nil || splitHeals(for: b) != nil else { return false }
        let sideA = split.nodes.contains(a), sideB = split.nodes.contains(b)
        return sideA != sideB
    }

    /// Whether this node's data path is cut now (its GMS connection works).
    func dataPathCut(_ index: Int) -> Bool {
        guard let cut = scenario.dataPathCut, cut.nodes.contains(index) else { return false }
        return now >= at(cut.start) && now < at(cut.start + cut.length)
    }

    /// When the split that cuts this node off from the GMS heals, while it is in force.
    func splitHeals(for index: Int) -> Instant? {
        guard let split = scenario.split else { return nil }
        let start = at(split.start), end = at(split.start + split.length)
        guard now >= start, now < end, split.nodes.contains(index) else { return nil }
        return end
    }
}
