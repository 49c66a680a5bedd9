import QSMCore

/// Runs a `MembershipService` on an event core over TCP: accepts connections, feeds their
/// frames to the service, carries out its sends and closes, and ticks it on an alarm.
public final class GMSServer: DescriptorHandler, FramedConnectionDelegate, AlarmHandler {
    public let service: MembershipService
    public let listenAddress: SocketAddress
    private let listener: TCPListener
    private var connections: [ConnectionID: FramedConnection] = [:]
    private var identifiers: [ObjectIdentifier: ConnectionID] = [:]
    private var nextConnection: UInt64 = 1
    private var tickAlarm: AlarmHandle?
    /// Accept failures other than "nothing pending" (e.g. out of descriptors).
    public private(set) var acceptErrors = 0

    /// Binds `address` and registers with `core`; serving starts when the core runs.
    public init(configuration: MembershipConfiguration, listeningOn address: SocketAddress, core: EventCore) throws {
        service = try MembershipService(configuration: configuration)
        listener = try TCPListener(bindingTo: address)
        listenAddress = try listener.localAddress()
        _ = try core.registerDescriptor(listener.descriptor, medium: .network, traffic: .control,
                                        readable: true, writable: false, handler: self)
        tickAlarm = core.scheduleAlarm(at: service.nextDeadline(after: core.now), handler: self)
    }

    public var connectionCount: Int { connections.count }

    // MARK: Listener

    public func descriptorReadable(_ registration: RegistrationID, core: EventCore) {
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

    public func descriptorWritable(_ registration: RegistrationID, core: EventCore) {}

    // MARK: Connections

    public func connectionEstablished(_ connection: FramedConnection, core: EventCore) {}

    public func connection(_ connection: FramedConnection, received frame: [UInt8], core: EventCore) {
        guard let id = identifiers[ObjectIdentifier(connection)] else { return }
        frame.withUnsafeBytes { service.frameReceived($0, on: id, now: core.now) }
        carryOut(core)
    }

    public func connectionClosed(_ connection: FramedConnection, reason: String, core: EventCore) {
        guard let id = identifiers.removeValue(forKey: ObjectIdentifier(connection)) else { return }
        connections[id] = nil
        service.connectionClosed(id, now: core.now)
        carryOut(core)
    }

    public func alarmFired(tag: UInt64, deadline: Instant, core: EventCore) {
        service.tick(now: core.now)
        carryOut(core)
        tickAlarm = core.scheduleAlarm(at: service.nextDeadline(after: core.now), handler: self)
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
                    connections[id]?.closeAfterFlushing(reason: "closed by the GMS", core: core)
                }
            }
            actions = service.takeActions()
        }
        // Work may now be due sooner than the pending alarm (a batch was just started).
        if let tickAlarm { core.rescheduleAlarm(tickAlarm, to: service.nextDeadline(after: core.now)) }
    }
}
