import QSMProtocol
import QSMGMS

/// Driving one simulated node: settling its machine after each event (datagrams onto
/// the network, deliveries checked and recorded), its events, and group assignment.
extension Simulator {
    /// After anything happened at a node: publish what the window allows, act on the
    /// machine's events and GMS actions, collect deliveries, let the link pull, and re-arm
    /// the node's timer.
    func settle(_ index: Int) {
        let node = nodes[index]
        let machine = node.machine
        if now >= node.readingBacklogUntil { machine.inputCaughtUp(now: now) }
        // The application's window mirror (as `QSMNode` keeps one): publish while the
        // machine's flow control has room for what is in flight, in messages and bytes.
        let window = WindowFlowControl(messages: scenario.protocolConfiguration.windowMessages,
                                       bytes: scenario.protocolConfiguration.windowBytes)
        func hasRoom() -> Bool {
            window.admits(bytes: scenario.messageBytes, inFlightMessages: machine.messagesInFlight,
                          inFlightBytes: machine.bytesInFlight)
        }
        // A sender that left every group has nothing to publish to.
        if node.groups.isEmpty { node.backlog = 0 }
        while node.backlog > 0 && !node.groups.isEmpty && hasRoom() {
            let groups = node.groups.sorted()
            let group = groups[node.nextGroup % groups.count]
            node.publishIndex += 1
            var payload = [UInt8](repeating: UInt8(truncatingIfNeeded: node.publishIndex), count: scenario.messageBytes)
            for shift in 0..<8 { payload[shift] = UInt8(truncatingIfNeeded: node.publishIndex >> UInt64(56 - shift * 8)) }
            guard machine.publish(payload, to: GroupName(SimulationScenario.groupName(group))!, now: now) == .accepted else {
                node.publishIndex -= 1
                break
            }
            node.uncommitted.append(node.publishIndex)
            node.nextGroup += 1
            node.backlog -= 1
        }
        handleEvents(of: node)
        carryOutGMSActions(of: node)
        collectDeliveries(of: node)
        if !node.linkBusy {
            let datagram = node.buffer.withUnsafeMutableBytes { machine.pollDatagram(into: $0, now: now) }
            if let datagram { transmit(Array(node.buffer[0..<datagram.length]), to: datagram.destination, from: index) }
        }
        // Sending may have delivered (loopback) and acknowledged.
        collectDeliveries(of: node)
        handleEvents(of: node)
        if let deadline = machine.nextDeadline() {
            let due = max(deadline, now)
            if let timer = node.timer {
                if due != node.timerAt { events.reschedule(timer, to: due); node.timerAt = due }
            } else {
                node.timer = events.schedule(at: due, .timer(node: index))
                node.timerAt = due
            }
        }
    }

    func handleEvents(of node: SimulatedNode) {
        while let event = node.machine.pollEvent() {
            switch event {
            case .committed(let message):
                guard let index = node.uncommitted.popFirst() else {
                    checker.violation("node \(node.index) committed a message it never published")
                    continue
                }
                recordPublication(message, index: index, sender: node.index)
            case .publishRejected:
                // It left the group before the message could be committed: the
                // application is told, and nobody is owed the message.
                _ = node.uncommitted.popFirst()
                publishesRefused += 1
            case .listenAddressesChanged:
                for address in Set(listeners.keys) { listeners[address]?.remove(node.index) }
                for address in node.machine.listenAddresses { listeners[address, default: []].insert(node.index) }
            case .membership(let change):
                if node.index == traceNode { note("node \(node.index): \(change)") }
                switch change {
                case .regionView(let view):
                    if node.regionSince[view.id] == nil { node.regionSince[view.id] = view.viewNumber }
                case .regionRemoved(let id):
                    node.regionSince[id] = nil
                case .excluded:
                    // Out of every group until it rejoins: owed nothing sent meanwhile.
                    for group in node.groups {
                        let name = GroupName(SimulationScenario.groupName(group))!
                        groupLeaves[node.index, default: [:]][name, default: []].append(now)
                        if !(scenario.sendersOutsideGroups && isSender(node.index)) {
                            // It rejoins at once (the client re-registers), a moment after.
                            groupJoins[node.index, default: [:]][name, default: []].append(now.advanced(byNanoseconds: 1))
                        }
                    }
                default:
                    break
                }
            case .released:
                break
            }
        }
    }

    func note(_ line: String) {
        if trace.count < 100_000 { trace.append("\(Double(now.nanoseconds) / 1e9) s: \(line)") }
    }

    func recordPublication(_ message: CommittedMessage, index: UInt64, sender: Int) {
        var layout: [RegionID: InvariantChecker.RegionLayout] = [:]
        for reference in message.view.regions {
            layout[reference.id] = regionHistory[reference.id]?[reference.viewNumber]
                ?? InvariantChecker.RegionLayout(view: reference.viewNumber, members: [], partitions: [])
        }
        checker.published(sender: sender, group: message.group, sequence: message.groupSequence, index: index,
                          members: message.view.members.map { Int($0.value) - 1 }, regions: layout, at: now)
    }

    func collectDeliveries(of node: SimulatedNode) {
        while let delivery = node.machine.pollDelivery() {
            checker.delivered(at: node.index, delivery, expectedBytes: scenario.messageBytes)
        }
    }

    /// Ties each group name to the nodes that join it.
    func assignGroups() {
        var groupsRandom = SplitMix64(seed: seed ^ 0x5EED)
        for index in 0..<scenario.nodes {
            var joined = Set<Int>()
            switch scenario.overlap {
            case .perfect:
                joined = Set(0..<scenario.groups)
            case .irregular(let probability):
                for group in 0..<scenario.groups where Double(groupsRandom.next() >> 11) * 0x1.0p-53 < probability {
                    joined.insert(group)
                }
                if joined.isEmpty { joined.insert(Int(groupsRandom.next() % UInt64(scenario.groups))) }
            }
            nodes[index].groups = joined
        }
    }
}
