import QSMCore

/// Runs a `MembershipService` on an event core over TCP: accepts connections, feeds their
/// frames to the service, carries out its sends and closes, and ticks it on an alarm.
package final class GMSServer: DescriptorHandler, FramedConnectionDelegate, AlarmHandler {
    package let service: MembershipService
    package let listenAddress: QSMSocketAddress
    private let listener: TCPListener
    private var connections: [ConnectionID: FramedConnection] = [:]
    private var identifiers: [ObjectIdentifier: ConnectionID] = [:]
    private var nextConnection: UInt64 = 1
    private var tickAlarm: AlarmHandle?
    private var tickDeadline = Instant.zero
    /// Accept failures other than "nothing pending" (e.g. out of descriptors).
    package private(set) var acceptErrors = 0
    /// Connections cut for announcing a frame over the inbound limit.
    package private(set) var oversizedFrames = 0
    /// Connections cut because the client let too much pile up unread.
    package private(set) var slowClientsDisconnected = 0
    /// Told why each refused connection was refused (failed authentication), for the
    /// operator's log. Called on the core thread.
    package var onRefusal: ((String) -> Void)?
    /// Called with each exclusion of a node on suspicion, and each node's eviction of
    /// itself from a group for a slow application (a line for the log).
    package var onExclusion: ((String) -> Void)?

    /// Binds `address` and registers with `core`; serving starts when the core runs.
    /// A configuration whose `incarnation` is 0 gets a random one: every run of a server
    /// numbers its regions apart from earlier runs'.
    package init(configuration: MembershipConfiguration, listeningOn address: QSMSocketAddress, core: EventCore) throws {
        var configuration = configuration
        if configuration.incarnation == 0 { configuration.incarnation = UInt32.random(in: 1...UInt32.max) }
        if configuration.clusterSecret != nil, configuration.entropy.isEmpty { configuration.entropy = SystemRandom.bytes(32) }
        if configuration.sha256BlockFunction == nil { configuration.sha256BlockFunction = HardwareSHA256.blockFunction }
        service = try MembershipService(configuration: configuration)
        listener = try TCPListener(bindingTo: address)
        listenAddress = try listener.localAddress()
        _ = try core.registerDescriptor(listener.descriptor, medium: .network, traffic: .control,
                                        readable: true, writable: false, handler: self)
        tickDeadline = service.nextDeadline(after: core.now)
        tickAlarm = core.scheduleAlarm(at: tickDeadline, handler: self)
    }

    package var connectionCount: Int { connections.count }

    // MARK: Listener

    package func descriptorReadable(_ registration: RegistrationID, core: EventCore) {
        while true {
            let stream: TCPStream
            do throws(SystemError) {
                guard case .completed(let accepted) = try listener.accept() else { return }
                stream = accepted
            } catch {
                acceptErrors += 1
                return
            }
            let id = ConnectionID(nextConnection)
            nextConnection += 1
            do throws(SystemError) {
                let connection = try FramedConnection(
                    stream: stream, connecting: false, core: core, delegate: self,
                    maximumFrameBytes: service.configuration.maximumInboundFrameBytes,
                    maximumQueuedBytes: service.configuration.maximumQueuedBytesPerClient)
                connections[id] = connection
                identifiers[ObjectIdentifier(connection)] = id
                service.connectionOpened(id, now: core.now)
            } catch {
                acceptErrors += 1
            }
        }
    }

    package func descriptorWritable(_ registration: RegistrationID, core: EventCore) {}

    // MARK: Connections

    package func connectionEstablished(_ connection: FramedConnection, core: EventCore) {}

    package func connection(_ connection: FramedConnection, received frame: [UInt8], core: EventCore) {
        guard let id = identifiers[ObjectIdentifier(connection)] else { return }
        frame.withUnsafeBytes { service.frameReceived($0, on: id, now: core.now) }
        carryOut(core)
    }

    package func connectionClosed(_ connection: FramedConnection, reason: FramedConnectionCloseReason, core: EventCore) {
        guard let id = identifiers.removeValue(forKey: ObjectIdentifier(connection)) else { return }
        switch reason {
        case .frameTooLarge: oversizedFrames += 1
        case .peerTooSlow: slowClientsDisconnected += 1
        default: break
        }
        connections[id] = nil
        service.connectionClosed(id, now: core.now)
        carryOut(core)
    }

    package func alarmFired(tag: UInt64, deadline: Instant, core: EventCore) {
        tickAlarm = nil
        service.tick(now: core.now)
        carryOut(core)
        tickDeadline = service.nextDeadline(after: core.now)
        tickAlarm = core.scheduleAlarm(at: tickDeadline, handler: self)
    }

    /// Performs the service's actions; closing a connection can produce more of them.
    private func carryOut(_ core: EventCore) {
        var actions = service.takeActions()
        while !actions.isEmpty {
            for action in actions {
                switch action {
                case .send(let id, let payload):
                    connections[id]?.send(payload, core: core)
                case .close(let id):
                    connections[id]?.closeAfterFlushing(reason: .local("closed by the GMS"), core: core)
                }
            }
            actions = service.takeActions()
        }
        for refusal in service.takeRefusals() { onRefusal?(refusal) }
        for exclusion in service.takeExclusions() { onExclusion?(exclusion) }
        // Work may now be due sooner than the pending tick (a batch was just started).
        // Only ever earlier: pushing the tick later on every frame would starve failure
        // detection for as long as any node keeps talking.
        let due = service.nextDeadline(after: core.now)
        if let tickAlarm, due < tickDeadline, core.rescheduleAlarm(tickAlarm, to: due) { tickDeadline = due }
    }
}
