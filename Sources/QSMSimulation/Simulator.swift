import QSMProtocol
import QSMGMS

/// A deterministic discrete-event simulation of QSM nodes: many `NodeMachine`s (the
/// whole node, the code the engine runs) and the real `MembershipService`, over a
/// simulated network (UDP with loss, duplication, corruption, reordering, bursts and a
/// split; TCP to the GMS with per-node latency, so views reach nodes at different times)
/// in virtual time. All randomness comes from the seed, and simultaneous events keep
/// their scheduling order, so a seed replays a run exactly.
package final class Simulator {
    package let scenario: SimulationScenario
    package let seed: UInt64
    /// A node whose membership changes and GMS connection are written to `trace`, for
    /// diagnosing a failing seed (`qsm-bench simulate --trace N`).
    package var traceNode: Int?
    /// Called every `progressEvents` events with the simulated time and the deliveries so
    /// far, for a driver that reports progress on long runs (this target reads no clock).
    package var onProgress: ((_ simulatedSeconds: Double, _ deliveries: Int) -> Void)?
    package var progressEvents = 1 << 20
    package internal(set) var trace: [String] = []

    enum Event {
        case arrival(node: Int, bytes: [UInt8], from: QSMSocketAddress)
        /// A data packet read from a socket queue that built up (after a freeze).
        case read(node: Int, bytes: [UInt8], from: QSMSocketAddress)
        case linkFree(node: Int)
        case timer(node: Int)
        case publish(node: Int)
        case freeze(node: Int, length: Double, every: Double?)
        case thaw(node: Int)
        case crash(node: Int)
        case start(node: Int)
        case groupChange(SimulationScenario.GroupChange)
        case burst(node: Int, on: Bool)
        case drainCheck
        // The GMS and the nodes' TCP connections to it.
        case gms(GMSEvent)
    }

    enum GMSEvent {
        /// A node's connection attempt reaches the GMS.
        case accept(node: Int, connection: ConnectionID)
        /// The GMS's answer reaches the node (connected, or refused).
        case connected(node: Int, connection: ConnectionID)
        case refused(node: Int, connection: ConnectionID)
        case toService(ConnectionID, [UInt8])
        case toNode(node: Int, ConnectionID, [UInt8])
        /// The node (or its kernel, on a crash) closed; the GMS sees it.
        case closedAtService(ConnectionID)
        /// The GMS closed (or crashed); the node sees it.
        case closedAtNode(node: Int, ConnectionID)
        case tick
        case crash
        case restart
    }

    /// What a frozen node's kernel keeps for it from its GMS connection.
    enum HeldGMSInput {
        case connected(ConnectionID)
        case frame(ConnectionID, [UInt8])
        case closed(ConnectionID)
    }

    final class SimulatedNode {
        let index: Int
        let machine: NodeMachine
        let address: QSMSocketAddress
        let latencyNanoseconds: Int64
        let gmsLatencyNanoseconds: Int64
        var buffer: [UInt8]
        var linkBusy = false
        var frozen = false
        var crashed = false
        var started = false
        var dropping = false
        var inbox = RingBuffer<(bytes: [UInt8], from: QSMSocketAddress)>(initialCapacity: 16)
        var inboxBytes = 0
        var heldGMSInput = RingBuffer<HeldGMSInput>(initialCapacity: 4)
        /// Until when the node is still reading a backlog of data off its socket: data
        /// arriving meanwhile queues behind it (control packets come on the unicast
        /// socket, which the engine reads first).
        var readingBacklogUntil = Instant.zero
        var timer: AlarmHandle?
        var timerAt = Instant.zero
        var groups: Set<Int> = []
        var publishIndex: UInt64 = 0
        /// Indices of messages handed to the machine and not yet committed or refused.
        var uncommitted = RingBuffer<UInt64>(initialCapacity: 64)
        var backlog = 0
        var nextGroup = 0
        var connection: ConnectionID?
        /// Each region this node belongs to, and the first view of it it installed in its
        /// present stay (ground truth for what it is owed).
        var regionSince: [RegionID: UInt64] = [:]
        init(index: Int, machine: NodeMachine, latencyNanoseconds: Int64, gmsLatencyNanoseconds: Int64, bufferBytes: Int) {
            self.index = index
            self.machine = machine
            address = machine.configuration.address
            self.latencyNanoseconds = latencyNanoseconds
            self.gmsLatencyNanoseconds = gmsLatencyNanoseconds
            buffer = [UInt8](repeating: 0, count: bufferBytes)
        }

        var isRunning: Bool { started && !crashed && !frozen }

        /// A frozen process's socket buffer fills, then overflows.
        func queueWhileFrozen(_ bytes: [UInt8], from source: QSMSocketAddress) {
            guard inboxBytes + bytes.count <= Simulator.inboxLimitBytes else { return }
            inbox.append((bytes, source))
            inboxBytes += bytes.count
        }
    }

    var now = Instant.zero
    let events = BinaryHeapAlarmQueue<Event>(initialCapacity: 1024)
    var random: SplitMix64
    var nodes: [SimulatedNode] = []
    let checker: InvariantChecker
    var crashed: Set<Int> = []
    var publishingEnds = Instant.zero
    var quietAt: Instant?
    /// Control, token and data bytes sent by the end of publishing.
    var trafficAtEnd: (control: Int, tokens: Int, data: Int)?
    /// Nodes listening on each multicast address, and the node at each unicast address.
    var listeners: [QSMSocketAddress: Set<Int>] = [:]
    var nodeAt: [QSMSocketAddress: Int] = [:]
    /// Every region view the GMS ever made, by region and view number: the layout a
    /// message committed to that view went to.
    var regionHistory: [RegionID: [UInt64: InvariantChecker.RegionLayout]] = [:]
    // The GMS.
    var service: MembershipService?
    var gmsIncarnation: UInt32 = 0
    var serviceConnections: [ConnectionID: Int] = [:]
    var nextConnection: UInt64 = 1
    var lastTCPArrival: [ConnectionID: Instant] = [:]
    var gmsTimer: AlarmHandle?
    var lastBatchesApplied = 0
    /// Datagrams the simulated network corrupted, duplicated, or dropped for loss, a
    /// burst, the split, or a crashed or absent receiver.
    var corrupted = 0
    var networkDuplicates = 0
    var networkDropped = 0
    var regionWideDropped = 0
    /// Multicast datagrams lost at every member of one partition at once (`partitionLoss`).
    var partitionDropped = 0
    /// Per node, the groups it left (or stopped publishing to) at some point.
    var leftGroups: [Int: Set<GroupName>] = [:]
    /// When each node left each group (lossless reconfiguration is owed to those that stay).
    var groupLeaves: [Int: [GroupName: [Instant]]] = [:]
    /// When each node joined each group (as a member).
    var groupJoins: [Int: [GroupName: [Instant]]] = [:]
    /// Publications refused after the node left their group.
    var publishesRefused = 0
    /// The cluster's secret when the scenario authenticates: the nodes' and the GMS's.
    var clusterSecret: [UInt8]?
    static let inboxLimitBytes = 4 << 20
    /// What reading and handling one queued data packet costs a thawed node: a backlog
    /// takes time to work through, as in the engine, and meanwhile tokens report packets
    /// that are still in the queue.
    static let backlogReadNanoseconds: Int64 = 10_000

    package init(scenario: SimulationScenario, seed: UInt64) throws(ConfigurationError) {
        try scenario.validate()
        self.scenario = scenario
        self.seed = seed
        random = SplitMix64(seed: seed)
        checker = InvariantChecker(nodes: scenario.nodes, survivorAgreement: scenario.protocolConfiguration.survivorAgreement)
        checker.wasMember = { [unowned self] node, group, time in
            guard let joined = self.groupJoins[node]?[group]?.last(where: { $0 <= time }) else { return false }
            return !(self.groupLeaves[node]?[group]?.contains { $0 >= joined && $0 <= time } ?? false)
        }
        var secretRandom = SplitMix64(seed: seed ^ 0x5EC2E7)
        let secret = (0..<4).flatMap { _ in withUnsafeBytes(of: secretRandom.next()) { Array($0) } }
        clusterSecret = scenario.authenticated ? secret : nil
        for index in 0..<scenario.nodes {
            var configuration = scenario.machineConfiguration(node: index, secret: secret)
            configuration.seed = seed
            // The handshake's nonces, from the seed (reproducible, as everything here).
            var entropy = SplitMix64(seed: seed ^ 0xE7_0000 ^ UInt64(index) &* 0x9E37_79B9_7F4A_7C15)
            configuration.entropy = (0..<4).flatMap { _ in withUnsafeBytes(of: entropy.next()) { Array($0) } }
            configuration.epoch = 1 << 32 | entropy.next() & 0xFFFF_FFFF
            let machine = try NodeMachine(configuration: configuration)
            let spread = Int64(scenario.latencySpreadMicroseconds * 1000 * uniform())
            let gms = scenario.gmsLatencyMicroseconds
            let drawn = gms.lowerBound + (gms.upperBound - gms.lowerBound) * uniform()
            let gmsLatency = Int64((scenario.gmsLatencyOfNode[index] ?? drawn) * 1000)
            let node = SimulatedNode(index: index, machine: machine, latencyNanoseconds: spread,
                                     gmsLatencyNanoseconds: max(gmsLatency, 1), bufferBytes: scenario.maximumDatagramBytes)
            nodes.append(node)
            nodeAt[node.address] = index
        }
    }

    /// The protocol nodes, for tests that inspect their state after a run.
    var debugNodes: [ProtocolNode] { nodes.map(\.machine.protocolNode) }
    /// The node machines, likewise.
    var debugMachines: [NodeMachine] { nodes.map(\.machine) }

    func uniform() -> Double { Double(random.next() >> 11) * 0x1.0p-53 }
    func at(_ seconds: Double) -> Instant { Instant(nanoseconds: Int64(seconds * 1e9)) }
    func schedule(_ event: Event, at time: Instant) { _ = events.schedule(at: time, event) }
    func isSender(_ index: Int) -> Bool { index >= scenario.nodes - scenario.senders }
    var isFaultyPhase: Bool { now < publishingEnds }

    // MARK: Running

    package func run() -> SimulationResult {
        startGMS()
        assignGroups()
        publishingEnds = at(scenario.seconds + 0.1)
        let late = Set(scenario.lateJoiners.map(\.node))
        for index in 0..<scenario.nodes where !late.contains(index) { schedule(.start(node: index), at: .zero) }
        for join in scenario.lateJoiners { schedule(.start(node: join.node), at: at(join.at)) }
        let interval = 1.0 / scenario.rate
        for index in 0..<scenario.nodes where isSender(index) {
            schedule(.publish(node: index), at: at(0.1 + interval * Double(random.next() % 1000) / 1000))
        }
        for index in scenario.burstyLossNodes { schedule(.burst(node: index, on: true), at: at(1.0)) }
        for freeze in scenario.freezes { schedule(.freeze(node: freeze.node, length: freeze.length, every: freeze.every), at: at(freeze.start)) }
        for crash in scenario.crashes { schedule(.crash(node: crash.node), at: at(crash.at)) }
        for change in scenario.groupChanges { schedule(.groupChange(change), at: at(change.at)) }
        if let crash = scenario.gmsCrash {
            schedule(.gms(.crash), at: at(crash.at))
            schedule(.gms(.restart), at: at(crash.at + crash.downFor))
        }
        schedule(.drainCheck, at: publishingEnds)
        let deadline = publishingEnds.advanced(byNanoseconds: Int64(scenario.drainSeconds * 1e9))
        var handled = 0
        while let (time, event) = events.popFirst(notAfter: deadline) {
            now = time
            handle(event)
            if quietAt != nil { break }
            handled += 1
            if handled % progressEvents == 0, let onProgress { onProgress(Double(now.nanoseconds) / 1e9, checker.deliveries) }
        }
        if quietAt == nil {
            let stuck = nodes.filter { $0.started && !$0.crashed && !isQuiescent($0) }
            let report = stuck.prefix(3).map { "node \($0.index): \(quiescenceReport($0))" }
            checker.violation("not quiescent \(scenario.drainSeconds) s after publishing stopped (liveness): \(report.joined(separator: " | "))")
        }
        checker.checkCompleteness(crashed: crashed,
                                  senderGone: { sender, group in
                                      self.crashed.contains(sender) || self.leftGroups[sender]?.contains(group) == true
                                  },
                                  stayedSince: { node, region, view in
                                      guard let since = self.nodes[node].regionSince[region] else { return false }
                                      return since <= view
                                  },
                                  stayedInGroup: { node, group, since in
                                      self.checker.wasMember(node, group, since)
                                          && !(self.groupLeaves[node]?[group]?.contains { $0 >= since } ?? false)
                                  })
        return result()
    }

    func isQuiescent(_ node: SimulatedNode) -> Bool {
        node.machine.protocolNode.isQuiescent && node.machine.messagesInFlight == 0 && node.backlog == 0
            && node.machine.membership.isRegistered
    }

    func quiescenceReport(_ node: SimulatedNode) -> String {
        var parts: [String] = []
        if !node.machine.membership.isRegistered { parts.append("not registered") }
        if node.backlog > 0 { parts.append("\(node.backlog) not yet published") }
        if node.machine.statistics.pendingPublishes > 0 { parts.append("\(node.machine.statistics.pendingPublishes) pending") }
        let report = node.machine.protocolNode.quiescenceReport
        if !report.isEmpty { parts.append(report) }
        return parts.joined(separator: "; ")
    }

    func handle(_ event: Event) {
        switch event {
        case .arrival(let index, let bytes, let source):
            let node = nodes[index]
            guard node.started, !node.crashed, !(node.dropping && isFaultyPhase) else { return networkDropped += 1 }
            if node.frozen {
                node.queueWhileFrozen(bytes, from: source)
                return
            }
            if now < node.readingBacklogUntil && Self.isMulticastData(bytes) {
                queueBehindBacklog(bytes, from: source, at: index)
                return
            }
            bytes.withUnsafeBytes { node.machine.datagramReceived($0, from: source, now: now) }
            settle(index)
        case .read(let index, let bytes, let source):
            let node = nodes[index]
            guard node.started, !node.crashed else { return }
            if node.frozen {
                // Frozen again before the backlog was read: it waits in the queue.
                node.queueWhileFrozen(bytes, from: source)
                return
            }
            bytes.withUnsafeBytes { node.machine.datagramReceived($0, from: source, now: now) }
            settle(index)
        case .linkFree(let index):
            nodes[index].linkBusy = false
            if nodes[index].isRunning { settle(index) }
        case .timer(let index):
            let node = nodes[index]
            node.timer = nil
            guard node.isRunning else { return }
            node.machine.tick(now: now)
            settle(index)
        case .publish(let index):
            let node = nodes[index]
            guard !node.crashed, now < publishingEnds else { return }
            node.backlog += 1
            schedule(.publish(node: index), at: now.advanced(byNanoseconds: Int64(1e9 / scenario.rate)))
            if node.isRunning { settle(index) }
        case .freeze(let index, let length, let every):
            let node = nodes[index]
            guard !node.crashed, isFaultyPhase else { return }
            node.frozen = true
            schedule(.thaw(node: index), at: now.advanced(byNanoseconds: Int64(length * 1e9)))
            if let every { schedule(.freeze(node: index, length: length, every: every), at: now.advanced(byNanoseconds: Int64(every * 1e9))) }
        case .thaw(let index):
            thaw(index)
        case .crash(let index):
            crash(index)
        case .start(let index):
            let node = nodes[index]
            guard !node.crashed else { return }
            node.started = true
            node.machine.start(now: now)
            for group in node.groups.sorted() { subscribe(node, to: group) }
            settle(index)
        case .groupChange(let change):
            let node = nodes[change.node]
            guard node.started, !node.crashed else { return }
            switch change.kind {
            case .join(let group):
                let group = group % scenario.groups
                if node.groups.insert(group).inserted { subscribe(node, to: group) }
            case .leave(let group):
                let group = group % scenario.groups
                if node.groups.remove(group) != nil { unsubscribe(node, from: group) }
            case .leaveAll:
                for group in node.groups.sorted() { unsubscribe(node, from: group) }
                node.groups.removeAll()
            }
            if !node.frozen { settle(change.node) }
        case .burst(let index, let on):
            nodes[index].dropping = on
            if isFaultyPhase {
                schedule(.burst(node: index, on: !on), at: now.advanced(byNanoseconds: on ? 10_000_000 : 990_000_000))
            } else {
                nodes[index].dropping = false
            }
        case .drainCheck:
            if trafficAtEnd == nil {
                trafficAtEnd = nodes.reduce((0, 0, 0)) { total, node in
                    let s = node.machine.protocolNode.statistics
                    return (total.0 + s.controlBytesSent, total.1 + s.tokenBytesSent, total.2 + s.dataPayloadBytesSent)
                }
            }
            let live = nodes.filter { $0.started && !$0.crashed }
            // The held-bytes tally each node keeps incrementally must match a recount,
            // at the end of publishing (when most is held) and at every check after.
            for node in live {
                let audit = node.machine.protocolNode.heldBytesAudit()
                if audit.tally != audit.recount {
                    checker.violation("node \(node.index) tallies \(audit.tally) held bytes but its streams hold \(audit.recount)")
                }
            }
            if service != nil, live.allSatisfy(isQuiescent), groupViewsSettled() {
                quietAt = now
            } else {
                schedule(.drainCheck, at: now.advanced(by: .milliseconds(100)))
            }
        case .gms(let event):
            handleGMS(event)
        }
    }

    /// Every live node sees the GMS's current view of each of its groups (no change is
    /// still on its way).
    func groupViewsSettled() -> Bool {
        guard let service else { return false }
        let views = Dictionary(uniqueKeysWithValues: service.groupViews.map { ($0.id, $0) })
        for node in nodes where node.started && !node.crashed {
            for (id, view) in node.machine.membership.groups where views[id] != view { return false }
        }
        return true
    }

    func thaw(_ index: Int) {
        let node = nodes[index]
        guard !node.crashed, node.frozen else { return }
        node.frozen = false
        // What the GMS sent meanwhile, in order: views reach a frozen node when it thaws.
        while let input = node.heldGMSInput.popFirst() { deliverGMSInput(input, to: node) }
        // Control first (the engine reads its unicast socket ahead of multicast data),
        // then the data backlog, one packet at a time.
        var data: [(bytes: [UInt8], from: QSMSocketAddress)] = []
        while let (bytes, source) = node.inbox.popFirst() {
            if Self.isMulticastData(bytes) {
                data.append((bytes, source))
            } else {
                bytes.withUnsafeBytes { node.machine.datagramReceived($0, from: source, now: now) }
            }
        }
        node.inboxBytes = 0
        node.machine.tick(now: now)
        for (bytes, source) in data { queueBehindBacklog(bytes, from: source, at: index) }
        settle(index)
    }

    func crash(_ index: Int) {
        let node = nodes[index]
        guard !node.crashed else { return }
        node.crashed = true
        crashed.insert(index)
        // The kernel closes a dead process's connections: the GMS learns at once.
        if let connection = node.connection {
            node.connection = nil
            sendTCP(.closedAtService(connection), on: connection, latency: node.gmsLatencyNanoseconds, node: node)
        }
        for address in node.machine.listenAddresses { listeners[address]?.remove(index) }
    }

    static func isMulticastData(_ bytes: [UInt8]) -> Bool {
        bytes.first == PacketKind.data.rawValue || bytes.first == PacketKind.hybridData.rawValue
    }

    /// Appends a data packet to the socket queue a node is still working through.
    func queueBehindBacklog(_ bytes: [UInt8], from source: QSMSocketAddress, at index: Int) {
        let node = nodes[index]
        node.readingBacklogUntil = max(node.readingBacklogUntil, now).advanced(byNanoseconds: Self.backlogReadNanoseconds)
        schedule(.read(node: index, bytes: bytes, from: source), at: node.readingBacklogUntil)
    }

    func subscribe(_ node: SimulatedNode, to group: Int) {
        let name = GroupName(SimulationScenario.groupName(group))!
        if scenario.sendersOutsideGroups && isSender(node.index) {
            node.machine.publishWithoutJoining(name, now: now)
        } else {
            node.machine.join(name, now: now)
            groupJoins[node.index, default: [:]][name, default: []].append(now)
        }
    }

    func unsubscribe(_ node: SimulatedNode, from group: Int) {
        let name = GroupName(SimulationScenario.groupName(group))!
        if scenario.sendersOutsideGroups && isSender(node.index) { return }
        node.machine.leave(name, now: now)
        leftGroups[node.index, default: []].insert(name)
        groupLeaves[node.index, default: [:]][name, default: []].append(now)
    }
}
