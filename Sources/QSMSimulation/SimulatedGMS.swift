import QSMProtocol
import QSMGMS

/// The real membership service, and every node's TCP connection to it, simulated: frames
/// arrive in order after the node's own GMS latency (so a view reaches nodes at different
/// times), a frozen node's kernel keeps them until it thaws, a split holds them back until
/// it heals (as TCP would), a crashed node's kernel closes its connection, and a crashed
/// GMS closes them all and refuses new ones until it restarts, a new incarnation that
/// numbers regions afresh.
extension Simulator {
    func startGMS() {
        var configuration = scenario.membershipConfiguration
        gmsIncarnation += 1
        // Every incarnation numbers its regions apart from earlier ones' (as the real
        // server's random incarnation does).
        var incarnations = SplitMix64(seed: seed ^ UInt64(gmsIncarnation) &* 0x9E37_79B9_7F4A_7C15)
        configuration.incarnation = max(1, UInt32(truncatingIfNeeded: incarnations.next()))
        configuration.clusterSecret = clusterSecret
        configuration.entropy = (0..<4).flatMap { _ in withUnsafeBytes(of: incarnations.next()) { Array($0) } }
        do throws(ConfigurationError) {
            service = try MembershipService(configuration: configuration)
        } catch {
            checker.violation("the GMS would not start: \(error)")
            return
        }
        lastBatchesApplied = 0
        scheduleGMSTick()
    }

    func handleGMS(_ event: GMSEvent) {
        switch event {
        case .accept(let index, let connection):
            let node = nodes[index]
            guard let service, node.connection == connection else {
                // The GMS is down, or the node gave up on this attempt: refused.
                sendTCP(.refused(node: index, connection: connection), on: nil, latency: node.gmsLatencyNanoseconds, node: node)
                return
            }
            serviceConnections[connection] = index
            service.connectionOpened(connection, now: now)
            sendTCP(.connected(node: index, connection: connection), on: connection, latency: node.gmsLatencyNanoseconds, node: node)
            afterService()
        case .connected(let index, let connection):
            nodeInput(.connected(connection), at: index)
        case .refused(let index, let connection):
            // Seen as a close of the attempt (a frozen node sees it when it thaws).
            nodeInput(.closed(connection), at: index)
        case .toService(let connection, let frame):
            guard let service, serviceConnections[connection] != nil else { return }
            frame.withUnsafeBytes { service.frameReceived($0, on: connection, now: now) }
            afterService()
        case .toNode(let index, let connection, let frame):
            nodeInput(.frame(connection, frame), at: index)
        case .closedAtService(let connection):
            guard let service, serviceConnections.removeValue(forKey: connection) != nil else { return }
            service.connectionClosed(connection, now: now)
            afterService()
        case .closedAtNode(let index, let connection):
            nodeInput(.closed(connection), at: index)
        case .tick:
            gmsTimer = nil
            guard let service else { return }
            service.tick(now: now)
            afterService()
        case .crash:
            service = nil
            if let gmsTimer { events.cancel(gmsTimer) }
            gmsTimer = nil
            for (connection, index) in serviceConnections.sorted(by: { $0.key.value < $1.key.value }) {
                let node = nodes[index]
                sendTCP(.closedAtNode(node: index, connection), on: connection, latency: node.gmsLatencyNanoseconds, node: node)
            }
            serviceConnections = [:]
        case .restart:
            startGMS()
        }
    }

    /// Hands a node what its GMS connection brought, or keeps it while the node is frozen.
    func nodeInput(_ input: HeldGMSInput, at index: Int) {
        let node = nodes[index]
        guard node.started, !node.crashed else { return }
        if node.frozen {
            node.heldGMSInput.append(input)
            return
        }
        deliverGMSInput(input, to: node)
        settle(index)
    }

    func deliverGMSInput(_ input: HeldGMSInput, to node: SimulatedNode) {
        if node.index == traceNode {
            switch input {
            case .connected(let c): note("node \(node.index): connected \(c) (current \(node.connection.map { "\($0)" } ?? "none"))")
            case .frame(let c, let f): note("node \(node.index): frame of \(f.count) B on \(c)")
            case .closed(let c): note("node \(node.index): closed \(c) (current \(node.connection.map { "\($0)" } ?? "none"))")
            }
        }
        switch input {
        case .connected(let connection):
            guard node.connection == connection else { return }
            node.machine.gmsConnected(now: now)
        case .frame(let connection, let frame):
            guard node.connection == connection else { return }
            frame.withUnsafeBytes { node.machine.gmsFrameReceived($0, now: now) }
        case .closed(let connection):
            guard node.connection == connection else { return }
            node.connection = nil
            node.machine.gmsDisconnected(reason: "the GMS closed the connection", now: now)
        }
    }

    /// Carries out a node's requests to its GMS connection.
    func carryOutGMSActions(of node: SimulatedNode) {
        while let action = node.machine.pollGMSAction() {
            switch action {
            case .connect:
                let connection = ConnectionID(nextConnection)
                nextConnection += 1
                node.connection = connection
                sendTCP(.accept(node: node.index, connection: connection), on: connection,
                        latency: node.gmsLatencyNanoseconds, node: node)
            case .send(let frame):
                guard let connection = node.connection else { continue }
                sendTCP(.toService(connection, frame), on: connection, latency: node.gmsLatencyNanoseconds, node: node)
            case .close:
                guard let connection = node.connection else { continue }
                node.connection = nil
                sendTCP(.closedAtService(connection), on: connection, latency: node.gmsLatencyNanoseconds, node: node)
            }
        }
    }

    /// Carries out the service's sends and closes, records the region views it made, and
    /// re-arms its timer.
    func afterService() {
        guard let service else { return }
        for action in service.takeActions() {
            switch action {
            case .send(let connection, let frame):
                guard let index = serviceConnections[connection] else { continue }
                let node = nodes[index]
                sendTCP(.toNode(node: index, connection, frame), on: connection, latency: node.gmsLatencyNanoseconds, node: node)
            case .close(let connection):
                guard let index = serviceConnections.removeValue(forKey: connection) else { continue }
                let node = nodes[index]
                service.connectionClosed(connection, now: now)
                sendTCP(.closedAtNode(node: index, connection), on: connection, latency: node.gmsLatencyNanoseconds, node: node)
            }
        }
        if service.statistics.batchesApplied != lastBatchesApplied {
            lastBatchesApplied = service.statistics.batchesApplied
            for region in service.regionViews where regionHistory[region.id]?[region.viewNumber] == nil {
                regionHistory[region.id, default: [:]][region.viewNumber] = InvariantChecker.RegionLayout(
                    view: region.viewNumber, members: region.members.map { Int($0.id.value) - 1 },
                    partitions: region.partitions.map { $0.members.map { Int($0.value) - 1 } })
            }
        }
        scheduleGMSTick()
    }

    func scheduleGMSTick() {
        guard let service else { return }
        let due = max(service.nextDeadline(after: now), now)
        if let gmsTimer {
            events.reschedule(gmsTimer, to: due)
        } else {
            gmsTimer = events.schedule(at: due, .gms(.tick))
        }
    }

    /// Schedules a TCP delivery: after the node's GMS latency, in order on its connection,
    /// and not before a split that cuts the node off has healed.
    func sendTCP(_ event: GMSEvent, on connection: ConnectionID?, latency: Int64, node: SimulatedNode) {
        var arrival = now.advanced(byNanoseconds: latency)
        if let healed = splitHeals(for: node.index), now < healed { arrival = max(arrival, healed.advanced(byNanoseconds: latency)) }
        if let connection {
            arrival = max(arrival, lastTCPArrival[connection] ?? .zero)
            lastTCPArrival[connection] = arrival
        }
        schedule(.gms(event), at: arrival)
    }
}
