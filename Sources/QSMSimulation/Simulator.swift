import QSMProtocol
import QSMGMS

/// A deterministic discrete-event simulation of QSM nodes running the real protocol core
/// (`ProtocolNode`) over a simulated network, with a simulated GMS applying view changes.
/// All randomness comes from the seed, and simultaneous events keep their scheduling
/// order, so a seed replays a run exactly.
public final class Simulator {
    public let scenario: SimulationScenario
    public let seed: UInt64

    private enum Event {
        case arrival(node: Int, bytes: [UInt8])
        /// A data packet read from a socket queue that built up (after a freeze).
        case read(node: Int, bytes: [UInt8])
        case linkFree(node: Int)
        case timer(node: Int)
        case publish(node: Int)
        case freeze(node: Int, length: Double, every: Double?)
        case thaw(node: Int)
        case crash(node: Int)
        case join(node: Int)
        case groupChange(SimulationScenario.GroupChange)
        case membershipDue
        case burst(node: Int, on: Bool)
        case drainCheck
    }

    private final class SimulatedNode {
        package let protocolNode: ProtocolNode
        package var linkBusy = false
        package var frozen = false
        package var crashed = false
        package var present = true
        package var dropping = false
        package var inbox = RingBuffer<[UInt8]>(initialCapacity: 16)
        package var inboxBytes = 0
        /// Until when the node is still reading a backlog of data off its socket: data
        /// arriving meanwhile queues behind it (control packets come on the unicast
        /// socket, which the engine reads first).
        package var readingBacklogUntil = Instant.zero
        package var timer: AlarmHandle?
        package var timerAt = Instant.zero
        package var groups: Set<GroupID> = []
        package var publishIndex: UInt64 = 0
        package var backlog = 0
        package var nextGroup = 0
        package init(_ node: ProtocolNode) { protocolNode = node }

        /// A frozen process's socket buffer fills, then overflows.
        package func queueWhileFrozen(_ bytes: [UInt8]) {
            guard inboxBytes + bytes.count <= Simulator.inboxLimitBytes else { return }
            inbox.append(bytes)
            inboxBytes += bytes.count
        }
    }

    private var now = Instant.zero
    private let events = BinaryHeapAlarmQueue<Event>(initialCapacity: 1024)
    private var random: SplitMix64
    private var nodes: [SimulatedNode] = []
    private var views: MembershipViews
    private var snapshot = MembershipSnapshot()
    private var membershipPending = false
    private let checker: InvariantChecker
    private var crashed: Set<Int> = []
    /// When each node last became a member of each region (ground truth for the checker).
    private var joinedRegionAt: [Int: [RegionID: Instant]] = [:]
    private var publishingEnds = Instant.zero
    private var quietAt: Instant?
    fileprivate static let inboxLimitBytes = 4 << 20
    /// What reading and handling one queued data packet costs a thawed node: a backlog
    /// takes time to work through, as in the engine, and meanwhile tokens report packets
    /// that are still in the queue.
    private static let backlogReadNanoseconds: Int64 = 10_000

    public init(scenario: SimulationScenario, seed: UInt64) throws(ConfigurationError) {
        try scenario.validate()
        self.scenario = scenario
        self.seed = seed
        random = SplitMix64(seed: seed)
        var membership = MembershipConfiguration()
        membership.partitionSize = scenario.partitionSize
        membership.maximumNodes = scenario.nodes
        membership.maximumGroups = max(scenario.groups, 1)
        views = MembershipViews(configuration: membership)
        checker = InvariantChecker(nodes: scenario.nodes)
        for index in 0..<scenario.nodes {
            let node = try ProtocolNode(id: NodeID(UInt64(index + 1)), configuration: scenario.protocolConfiguration, seed: seed)
            nodes.append(SimulatedNode(node))
        }
    }

    /// The protocol nodes, for tests that inspect their state after a run.
    package var debugNodes: [ProtocolNode] { nodes.map(\.protocolNode) }

    private func at(_ seconds: Double) -> Instant { Instant(nanoseconds: Int64(seconds * 1e9)) }
    private func schedule(_ event: Event, at time: Instant) { _ = events.schedule(at: time, event) }

    private func isSender(_ index: Int) -> Bool { index >= scenario.nodes - scenario.senders }

    // MARK: Running

    public func run() -> SimulationResult {
        setUpMembership()
        publishingEnds = at(scenario.seconds + 0.1)
        let interval = 1.0 / scenario.rate
        for index in 0..<scenario.nodes where isSender(index) {
            schedule(.publish(node: index), at: at(0.1 + interval * Double(random.next() % 1000) / 1000))
        }
        for index in scenario.burstyLossNodes { schedule(.burst(node: index, on: true), at: at(1.0)) }
        for freeze in scenario.freezes { schedule(.freeze(node: freeze.node, length: freeze.length, every: freeze.every), at: at(freeze.start)) }
        for crash in scenario.crashes { schedule(.crash(node: crash.node), at: at(crash.at)) }
        for join in scenario.lateJoiners { schedule(.join(node: join.node), at: at(join.at)) }
        for change in scenario.groupChanges { schedule(.groupChange(change), at: at(change.at)) }
        schedule(.drainCheck, at: publishingEnds)
        let deadline = publishingEnds.advanced(byNanoseconds: Int64(scenario.drainSeconds * 1e9))
        while let (time, event) = events.popFirst(notAfter: deadline) {
            now = time
            handle(event)
            if quietAt != nil { break }
        }
        let joinedAt = joinedRegionAt
        checker.checkCompleteness(crashed: crashed, senderCrashed: { self.crashed.contains($0) },
                                  stayedSince: { node, region, published in
                                      guard let since = joinedAt[node]?[region] else { return false }
                                      return since <= published
                                  })
        if quietAt == nil {
            let stuck = nodes.enumerated().filter { !$0.element.crashed && $0.element.present && !$0.element.protocolNode.isQuiescent }
            let report = stuck.prefix(3).map { "node \($0.offset): \($0.element.protocolNode.quiescenceReport)" }
            checker.violation("not quiescent \(scenario.drainSeconds) s after publishing stopped: \(report.joined(separator: " | "))")
        }
        return result()
    }

    private func handle(_ event: Event) {
        switch event {
        case .arrival(let index, let bytes):
            let node = nodes[index]
            guard !node.crashed, node.present, !node.dropping else { return }
            if node.frozen {
                node.queueWhileFrozen(bytes)
                return
            }
            if now < node.readingBacklogUntil && Self.isMulticastData(bytes) {
                queueBehindBacklog(bytes, at: index)
                return
            }
            node.protocolNode.receive(bytes, now: now)
            settle(index)
        case .read(let index, let bytes):
            let node = nodes[index]
            guard !node.crashed, node.present else { return }
            if node.frozen {
                // Frozen again before the backlog was read: it waits in the queue.
                node.queueWhileFrozen(bytes)
                return
            }
            node.protocolNode.receive(bytes, now: now)
            settle(index)
        case .linkFree(let index):
            nodes[index].linkBusy = false
            settle(index)
        case .timer(let index):
            let node = nodes[index]
            node.timer = nil
            guard !node.crashed, !node.frozen, node.present else { return }
            node.protocolNode.tick(now: now)
            settle(index)
        case .publish(let index):
            let node = nodes[index]
            guard !node.crashed, now < publishingEnds else { return }
            node.backlog += 1
            schedule(.publish(node: index), at: now.advanced(byNanoseconds: Int64(1e9 / scenario.rate)))
            if !node.frozen && node.present { settle(index) }
        case .freeze(let index, let length, let every):
            let node = nodes[index]
            guard !node.crashed else { return }
            node.frozen = true
            schedule(.thaw(node: index), at: now.advanced(byNanoseconds: Int64(length * 1e9)))
            if let every, now < publishingEnds { schedule(.freeze(node: index, length: length, every: every), at: now.advanced(byNanoseconds: Int64(every * 1e9))) }
        case .thaw(let index):
            let node = nodes[index]
            guard !node.crashed else { return }
            node.frozen = false
            // Control first (the engine reads its unicast socket ahead of multicast data),
            // then the data backlog, one packet at a time.
            var data: [[UInt8]] = []
            while let bytes = node.inbox.popFirst() {
                if Self.isMulticastData(bytes) { data.append(bytes) } else { node.protocolNode.receive(bytes, now: now) }
            }
            node.inboxBytes = 0
            node.protocolNode.tick(now: now)
            for bytes in data { queueBehindBacklog(bytes, at: index) }
            settle(index)
        case .crash(let index):
            nodes[index].crashed = true
            crashed.insert(index)
            membershipPending = true
            schedule(.membershipDue, at: now.advanced(byNanoseconds: Int64((scenario.failureDetectionSeconds + scenario.gmsBatchSeconds) * 1e9)))
        case .join(let index):
            nodes[index].present = true
            snapshot.nodes[NodeID(UInt64(index + 1))] = SocketAddress(.loopback, port: UInt16(1000 + index % 60000))
            snapshot.memberships[NodeID(UInt64(index + 1))] = nodes[index].groups
            membershipPending = true
            schedule(.membershipDue, at: now.advanced(byNanoseconds: Int64(scenario.gmsBatchSeconds * 1e9)))
        case .groupChange(let change):
            let node = nodes[change.node]
            guard !node.crashed, node.present else { return }
            switch change.kind {
            case .join(let group): node.groups.insert(GroupID(UInt32(group % scenario.groups + 1)))
            case .leave(let group): node.groups.remove(GroupID(UInt32(group % scenario.groups + 1)))
            case .leaveAll: node.groups.removeAll()
            }
            snapshot.memberships[NodeID(UInt64(change.node + 1))] = node.groups
            membershipPending = true
            schedule(.membershipDue, at: now.advanced(byNanoseconds: Int64(scenario.gmsBatchSeconds * 1e9)))
        case .membershipDue:
            applyMembership()
        case .burst(let index, let on):
            nodes[index].dropping = on
            if now < publishingEnds {
                schedule(.burst(node: index, on: !on), at: now.advanced(byNanoseconds: on ? 10_000_000 : 990_000_000))
            } else {
                nodes[index].dropping = false
            }
        case .drainCheck:
            let live = nodes.filter { !$0.crashed && $0.present }
            if live.allSatisfy({ $0.protocolNode.isQuiescent && $0.backlog == 0 }) && !membershipPending {
                quietAt = now
            } else {
                schedule(.drainCheck, at: now.advanced(by: .milliseconds(100)))
            }
        }
    }

    private static func isMulticastData(_ bytes: [UInt8]) -> Bool {
        bytes.first == PacketKind.data.rawValue || bytes.first == PacketKind.hybridData.rawValue
    }

    /// Appends a data packet to the socket queue a node is still working through.
    private func queueBehindBacklog(_ bytes: [UInt8], at index: Int) {
        let node = nodes[index]
        node.readingBacklogUntil = max(node.readingBacklogUntil, now).advanced(byNanoseconds: Self.backlogReadNanoseconds)
        schedule(.read(node: index, bytes: bytes), at: node.readingBacklogUntil)
    }

    /// After anything happened at a node: collect deliveries, publish what the window
    /// allows, let the link pull, and re-arm the node's timer.
    private func settle(_ index: Int) {
        let node = nodes[index]
        let protocolNode = node.protocolNode
        if now >= node.readingBacklogUntil { protocolNode.inputCaughtUp(now: now) }
        while node.backlog > 0 && !node.groups.isEmpty {
            let groups = node.groups.sorted()
            let group = groups[node.nextGroup % groups.count]
            node.publishIndex += 1
            var payload = [UInt8](repeating: UInt8(truncatingIfNeeded: node.publishIndex), count: scenario.messageBytes)
            for shift in 0..<8 { payload[shift] = UInt8(truncatingIfNeeded: node.publishIndex >> UInt64(56 - shift * 8)) }
            let view = views.groups[group]
            let result = protocolNode.publish(group: group, payload: payload, now: now)
            guard case .accepted(let sequence) = result else {
                node.publishIndex -= 1
                break
            }
            node.nextGroup += 1
            node.backlog -= 1
            if let view {
                let shape = viewShape(view)
                checker.published(sender: index, group: group, sequence: sequence, index: node.publishIndex,
                                  members: shape.members, regions: shape.layout, at: now)
            }
        }
        for delivery in protocolNode.takeDeliveries() {
            checker.delivered(at: index, delivery, expectedBytes: scenario.messageBytes)
        }
        if !node.linkBusy, let datagram = protocolNode.nextDatagram(now: now) {
            transmit(datagram, from: index)
        }
        // Sending may have delivered (loopback).
        for delivery in protocolNode.takeDeliveries() {
            checker.delivered(at: index, delivery, expectedBytes: scenario.messageBytes)
        }
        if let deadline = protocolNode.nextDeadline() {
            let due = max(deadline, now)
            if let timer = node.timer {
                if due != node.timerAt { events.reschedule(timer, to: due); node.timerAt = due }
            } else {
                node.timer = events.schedule(at: due, .timer(node: index))
                node.timerAt = due
            }
        }
    }

    private var shapes: [GroupID: (view: UInt64, mapping: UInt64, members: [Int], layout: [RegionID: (members: [Int], partitions: [[Int]])])] = [:]

    /// A group view's members and region layout as node indices, computed once per view
    /// and shared by every message committed to it.
    private func viewShape(_ view: GroupView) -> (members: [Int], layout: [RegionID: (members: [Int], partitions: [[Int]])]) {
        if let cached = shapes[view.id], cached.view == view.viewNumber, cached.mapping == view.mappingVersion {
            return (cached.members, cached.layout)
        }
        var layout: [RegionID: (members: [Int], partitions: [[Int]])] = [:]
        for reference in view.regions {
            if let region = views.regions[reference.id] {
                layout[region.id] = (region.members.map { Int($0.id.value) - 1 },
                                     region.partitions.map { $0.members.map { Int($0.value) - 1 } })
            }
        }
        let members = view.members.map { Int($0.value) - 1 }
        shapes[view.id] = (view.viewNumber, view.mappingVersion, members, layout)
        return (members, layout)
    }

    private func transmit(_ datagram: ProtocolDatagram, from index: Int) {
        let node = nodes[index]
        node.linkBusy = true
        let transmission = Int64(Double(datagram.bytes.count + 42) * 8 / scenario.linkBitsPerSecond * 1e9)
        let sent = now.advanced(byNanoseconds: max(transmission, 1))
        schedule(.linkFree(node: index), at: sent)
        switch datagram.destination {
        case .node(let target):
            deliver(datagram.bytes, to: Int(target.value) - 1, sentAt: sent)
        case .region(let region):
            guard let view = views.regions[region] else { return }
            for member in view.members where Int(member.id.value) - 1 != index {
                deliver(datagram.bytes, to: Int(member.id.value) - 1, sentAt: sent)
            }
        case .group(let group):
            guard let view = views.groups[group] else { return }
            for member in view.members where Int(member.value) - 1 != index {
                deliver(datagram.bytes, to: Int(member.value) - 1, sentAt: sent)
            }
        }
    }

    private func deliver(_ bytes: [UInt8], to target: Int, sentAt: Instant) {
        guard target >= 0, target < nodes.count else { return }
        if scenario.loss > 0, Double(random.next() >> 11) * 0x1.0p-53 < scenario.loss { return }
        let copies = scenario.duplication > 0 && Double(random.next() >> 11) * 0x1.0p-53 < scenario.duplication ? 2 : 1
        for _ in 0..<copies {
            let jitter = scenario.jitterMicroseconds * Double(random.next() >> 11) * 0x1.0p-53
            let delay = Int64((scenario.latencyMicroseconds + jitter) * 1000)
            schedule(.arrival(node: target, bytes: bytes), at: sentAt.advanced(byNanoseconds: delay))
        }
    }

    // MARK: Membership

    private func setUpMembership() {
        var groupsRandom = SplitMix64(seed: seed ^ 0x5EED)
        for index in 0..<scenario.nodes {
            var joined = Set<GroupID>()
            switch scenario.overlap {
            case .perfect:
                joined = Set((0..<scenario.groups).map { GroupID(UInt32($0 + 1)) })
            case .irregular(let probability):
                for group in 0..<scenario.groups where Double(groupsRandom.next() >> 11) * 0x1.0p-53 < probability {
                    joined.insert(GroupID(UInt32(group + 1)))
                }
                if joined.isEmpty { joined.insert(GroupID(UInt32(Int(groupsRandom.next() % UInt64(scenario.groups)) + 1))) }
            }
            nodes[index].groups = joined
            let late = scenario.lateJoiners.contains { $0.node == index }
            nodes[index].present = !late
            if !late {
                snapshot.nodes[NodeID(UInt64(index + 1))] = SocketAddress(.loopback, port: UInt16(1000 + index % 60000))
                snapshot.memberships[NodeID(UInt64(index + 1))] = scenario.sendersOutsideGroups && isSender(index) ? [] : joined
            }
        }
        for group in 0..<scenario.groups {
            snapshot.groups[GroupID(UInt32(group + 1))] = (GroupName("g\(group + 1)")!, scenario.hybridGroups.contains(group))
        }
        applyMembership()
    }

    private func applyMembership() {
        membershipPending = false
        for index in crashed {
            snapshot.nodes[NodeID(UInt64(index + 1))] = nil
            snapshot.memberships[NodeID(UInt64(index + 1))] = nil
        }
        _ = views.apply(snapshot)
        var regionsOf: [Int: [RegionView]] = [:]
        for region in views.regions.values.sorted(by: { $0.id < $1.id }) {
            for member in region.members { regionsOf[Int(member.id.value) - 1, default: []].append(region) }
        }
        for index in 0..<nodes.count {
            let current = Set((regionsOf[index] ?? []).map(\.id))
            var joined = joinedRegionAt[index] ?? [:]
            for region in joined.keys where !current.contains(region) { joined[region] = nil }
            for region in current where joined[region] == nil { joined[region] = now }
            joinedRegionAt[index] = joined
        }
        for (index, node) in nodes.enumerated() where !node.crashed && node.present {
            let groupViews = isSender(index) ? node.groups.sorted().compactMap { views.groups[$0] } : []
            node.protocolNode.installMembership(regions: regionsOf[index] ?? [], groups: groupViews, now: now)
            if !node.frozen { settle(index) }
        }
    }

    // MARK: Results

    private func result() -> SimulationResult {
        var tokenRounds = 0, tokenTime: Int64 = 0, acknowledged = 0, ackTime: Int64 = 0
        var recoveries = LatencyHistogram()
        var maximumCached = 0, maximumHeld = 0, controlBytes = 0, dataBytes = 0, retransmissions = 0, tokenRecords = 0
        var published = 0, duplicates = 0
        for node in nodes {
            let s = node.protocolNode.statistics
            tokenRounds += s.tokenRounds
            tokenTime += s.tokenRoundTripNanoseconds
            acknowledged += s.acknowledged
            ackTime += s.acknowledgementLatencyNanoseconds
            recoveries.merge(s.recoveryMicroseconds)
            maximumCached = max(maximumCached, s.maximumCachedBytes)
            maximumHeld = max(maximumHeld, s.maximumHeldBytes)
            controlBytes += s.controlBytesSent
            dataBytes += s.dataPayloadBytesSent
            duplicates += s.duplicatesDropped
            retransmissions += s.retransmissionsSent
            tokenRecords = max(tokenRecords, s.maximumTokenRecords)
            published += s.published
        }
        let configuration = scenario.protocolConfiguration
        let bound = configuration.windowBytes * (scenario.senders + 1)
            + configuration.maximumOutOfOrderPackets * configuration.maximumFragmentBytes
        if maximumHeld > bound { checker.violation("a node held \(maximumHeld) bytes, above the bound of \(bound)") }
        if tokenRecords > scenario.senders { checker.violation("a token carried \(tokenRecords) records for \(scenario.senders) senders") }
        let p99 = Double(recoveries.percentile(0.99) ?? 0) / 1e3
        return SimulationResult(
            seed: seed, nodes: scenario.nodes, groups: scenario.groups,
            simulatedSeconds: Double(now.nanoseconds) / 1e9, published: published, delivered: checker.deliveries,
            violations: checker.violations,
            tokenRoundTripMillisecondsMean: tokenRounds == 0 ? 0 : Double(tokenTime) / Double(tokenRounds) / 1e6,
            acknowledgementLatencyMillisecondsMean: acknowledged == 0 ? 0 : Double(ackTime) / Double(acknowledged) / 1e6,
            recoveryMillisecondsP99: p99, maximumCachedBytesPerNode: maximumCached, maximumHeldBytesPerNode: maximumHeld,
            controlBytesPerDataByte: dataBytes == 0 ? 0 : Double(controlBytes) / Double(dataBytes),
            retransmissions: retransmissions, duplicatesReceived: duplicates, maximumTokenRecords: tokenRecords, wallSeconds: 0,
            drainSeconds: quietAt.map { Double($0.nanoseconds(since: publishingEnds)) / 1e9 } ?? scenario.drainSeconds)
    }
}
