import Testing
@testable import QSMProtocol

/// Reconfiguration as the seed does it (`ViewChangePause`): after a new view of a region,
/// multicast and recovery there wait until the rings say every member installed it, or
/// until the pause limit.
@Suite struct ViewChangePauseTests {
    typealias Fixture = SenderCrashRecoveryTests

    /// Protocol nodes joined by a lossless network with no delay, run in 1 ms steps:
    /// unicast reaches its target, a region's multicast every other member that has
    /// installed a view of it.
    final class Cluster {
        var nodes: [UInt64: ProtocolNode] = [:]
        var time: Int64 = 1
        /// Data packets (first transmissions) each node sent, by region view.
        var dataSent: [UInt64: [(view: UInt64, at: Int64)]] = [:]

        init(_ ids: [UInt64]) throws {
            for id in ids { nodes[id] = try ProtocolNode(id: NodeID(id), configuration: ProtocolConfiguration(), seed: id) }
        }

        func install(_ ids: [UInt64], _ view: RegionView, groups: [GroupView]) {
            for id in ids { nodes[id]!.installMembership(regions: [view], groups: groups, now: Fixture.ms(time)) }
        }

        /// One millisecond: every node's timers, then everything sent, until quiet.
        func step() throws {
            time += 1
            let now = Fixture.ms(time)
            for id in nodes.keys.sorted() { nodes[id]!.tick(now: now) }
            var sending = true
            while sending {
                sending = false
                for id in nodes.keys.sorted() {
                    let node = nodes[id]!
                    while let datagram = node.nextDatagram(now: now) {
                        sending = true
                        if case .data(let packet, false) = datagram.packet { dataSent[id, default: []].append((packet.regionView, time)) }
                        let bytes = datagram.bytes
                        switch datagram.destination {
                        case .node(let target): nodes[target.value]?.receive(bytes, now: now)
                        case .region(let region):
                            for (other, peer) in nodes.sorted(by: { $0.key < $1.key }) where other != id && peer.regions[region] != nil {
                                peer.receive(bytes, now: now)
                            }
                        case .group: break
                        }
                    }
                }
            }
            for id in nodes.keys.sorted() { nodes[id]!.inputCaughtUp(now: now) }
        }

        func run(milliseconds: Int, until done: () -> Bool = { false }) throws {
            for _ in 0..<milliseconds where !done() { try step() }
        }

        var paused: [UInt64] { nodes.keys.sorted().filter { !nodes[$0]!.viewChangePauses.isEmpty } }
    }

    /// A node that installs a new view of its region sends nothing new there until every
    /// member has it: node 4 gets the view 30 ms after the others, and node 1's message,
    /// published at once, goes out only after that, in the new view. Then every pause
    /// ends by the rings' word, not the limit.
    @Test func multicastWaitsUntilEveryMemberHasTheNewView() throws {
        let cluster = try Cluster([1, 2, 3, 4])
        let groups = [Fixture.groupView(1, members: [1, 2, 3, 4])]
        let first = Fixture.view(1, members: [1, 2, 3, 4], partitions: [[1, 2], [3, 4]])
        cluster.install([1, 2, 3, 4], first, groups: groups)
        try cluster.run(milliseconds: 150) { cluster.paused.isEmpty }
        #expect(cluster.paused.isEmpty)
        // View 2: same members, partitions swapped about (node 3 now leads the region).
        let second = Fixture.view(2, members: [1, 2, 3, 4], partitions: [[3, 1], [4, 2]])
        let secondGroups = [Fixture.groupView(2, members: [1, 2, 3, 4])]
        cluster.install([1, 2, 3], second, groups: secondGroups)
        let installedAt = cluster.time
        _ = cluster.nodes[1]!.publish(group: Fixture.group, payload: [7], now: Fixture.ms(cluster.time))
        try cluster.run(milliseconds: 30)
        #expect(cluster.dataSent[1] == nil)
        #expect(cluster.paused == [1, 2, 3])
        cluster.install([4], second, groups: secondGroups)
        let lastInstalledAt = cluster.time
        try cluster.run(milliseconds: 150) { cluster.paused.isEmpty }
        #expect(cluster.paused.isEmpty)
        let sent = try #require(cluster.dataSent[1]?.first)
        #expect(sent.view == 2 && sent.at > lastInstalledAt)
        // Ended by the rings, well inside the limit (200 ms).
        for node in cluster.nodes.values {
            #expect(node.statistics.viewChangePausesTimedOut == 0)
            #expect(node.statistics.viewChangePauses == 2)
        }
        #expect(cluster.time - installedAt < 150)
        // The message reached everyone.
        for id: UInt64 in [2, 3, 4] {
            #expect(cluster.nodes[id]!.takeDelivery()?.payload == [7])
        }
    }

    /// A member that never installs the view (it crashed, and the GMS has not removed it
    /// yet) cannot hold the others back for longer than the limit: the pause runs out,
    /// counted, and multicast resumes.
    @Test func aPauseRunsOutAtTheLimit() throws {
        let cluster = try Cluster([1, 2, 3])
        let groups = [Fixture.groupView(1, members: [1, 2, 3])]
        let view = Fixture.view(1, members: [1, 2, 3], partitions: [[1, 2, 3]])
        cluster.install([1, 2], view, groups: groups)
        _ = cluster.nodes[1]!.publish(group: Fixture.group, payload: [9], now: Fixture.ms(cluster.time))
        let start = cluster.time
        try cluster.run(milliseconds: 400) { cluster.dataSent[1] != nil }
        let sent = try #require(cluster.dataSent[1]?.first)
        #expect(sent.at - start >= 200 && sent.at - start < 210)
        #expect(cluster.nodes[1]!.statistics.viewChangePausesTimedOut == 1)
        #expect(cluster.nodes[2]!.takeDelivery()?.payload == [9])
    }

    /// While paused, a node asks for nothing it misses in that region; once the view is
    /// settled, it asks.
    @Test func recoveryWaitsForTheViewToSettle() throws {
        let cluster = try Cluster([1, 2])
        let groups = [Fixture.groupView(1, members: [1, 2], publishers: [9])]
        let view = Fixture.view(1, members: [1, 2], partitions: [[1, 2]])
        cluster.install([2], view, groups: groups)
        // Sender 9 (outside the region) is heard from: 1 and 3, so 2 is missing.
        let member = cluster.nodes[2]!
        member.receive(Fixture.data(from: 9, view: 1, viewStart: 1, sequence: 1), now: Fixture.ms(cluster.time))
        member.receive(Fixture.data(from: 9, view: 1, viewStart: 1, sequence: 3), now: Fixture.ms(cluster.time))
        var requests = 0
        for _ in 0..<20 {
            try cluster.step()
        }
        requests = member.statistics.requestsSent
        #expect(requests == 0)
        #expect(cluster.paused == [2])
        // Node 1 installs the view: the ring goes round, the pause ends, 2 asks.
        cluster.install([1], view, groups: groups)
        try cluster.run(milliseconds: 100) { member.statistics.requestsSent > 0 }
        #expect(member.statistics.requestsSent > 0)
        #expect(member.statistics.viewChangePausesTimedOut == 0)
    }
}
