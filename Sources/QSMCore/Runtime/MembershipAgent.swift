
/// Runs a `MembershipClient` on an event core: connects to the GMS over TCP, keeps
/// heartbeats and reconnections on an alarm, and hands membership events to `onEvents`
/// on the core thread, all the events of one update together (one update from the GMS
/// may change thousands of group views; acting once per update, not once per event,
/// keeps that linear).
///
/// All methods must be called on the core thread (from other threads, go through the
/// core's request queue).
package final class MembershipAgent: FramedConnectionDelegate, AlarmHandler {
    package let client: MembershipClient
    package let gms: QSMSocketAddress
    private let core: EventCore
    private let onEvents: ([MembershipEvent], MembershipAgent) -> Void
    private var connection: FramedConnection?
    private var alarm: AlarmHandle?
    /// The connection's authentication with the cluster secret, if there is one.
    private var session: GMSClientSession
    /// The last connection failure, for diagnosis.
    package private(set) var lastConnectionProblem: String?

    /// - Parameter clusterSecret: the cluster's secret (the GMS connection is then
    ///   mutually authenticated; see `GMSChannel`), or nil for a GMS run without one.
    package init(node: NodeID, address: QSMSocketAddress, gms: QSMSocketAddress, core: EventCore,
                heartbeatInterval: Duration = .seconds(1), clusterSecret: [UInt8]? = nil,
                onEvents: @escaping ([MembershipEvent], MembershipAgent) -> Void) {
        client = MembershipClient(node: node, address: address, heartbeatInterval: heartbeatInterval)
        session = GMSClientSession(secret: clusterSecret, blockFunction: HardwareSHA256.blockFunction)
        self.gms = gms
        self.core = core
        self.onEvents = onEvents
    }

    package func start() {
        client.start(now: core.now)
        pump()
    }

    package func join(_ group: GroupName) { client.join(group); pump() }
    package func leave(_ group: GroupName) { client.leave(group); pump() }
    package func publish(_ group: GroupName) { client.publish(group); pump() }
    package func unpublish(_ group: GroupName) { client.unpublish(group); pump() }

    /// Says goodbye to the GMS and stops reconnecting.
    package func stop() {
        client.stop()
        pump()
        if let alarm { core.cancelAlarm(alarm) }
        alarm = nil
    }

    // MARK: Plumbing

    private func pump() {
        for action in client.takeActions() {
            switch action {
            case .connect:
                do throws(SystemError) {
                    let stream = try TCPStream.connect(to: gms)
                    connection = try FramedConnection(stream: stream, connecting: true, core: core, delegate: self,
                                                      maximumFrameBytes: 256 << 20, maximumQueuedBytes: 16 << 20)
                } catch {
                    lastConnectionProblem = "\(error)"
                    onEvents([.connectionFailed(reason: "cannot reach the GMS at \(gms): \(error)")], self)
                    client.disconnected(now: core.now)
                }
            case .send(let payload):
                if let connection, let sealed = session.outgoing(payload) { connection.send(sealed, core: core) }
            case .close:
                session.disconnected()
                let closing = connection
                connection = nil
                closing?.closeAfterFlushing(reason: .local("membership client stopped"), core: core)
            }
        }
        let events = client.takeEvents()
        if !events.isEmpty { onEvents(events, self) }
        let deadline = client.nextDeadline(after: core.now)
        if let alarm, core.rescheduleAlarm(alarm, to: deadline) { return }
        alarm = core.scheduleAlarm(at: deadline, handler: self)
    }

    package func connectionEstablished(_ connection: FramedConnection, core: EventCore) {
        guard connection === self.connection else { return }
        let hello = session.connected(nonce: SystemRandom.bytes(GMSChannel.nonceBytes))
        if let hello { connection.send(hello, core: core) }
        client.connected(now: core.now)
        pump()
    }

    package func connection(_ connection: FramedConnection, received frame: [UInt8], core: EventCore) {
        guard connection === self.connection else { return }
        let incoming = frame.withUnsafeBytes { session.incoming($0) }
        for reply in incoming.send { connection.send(reply, core: core) }
        if let failure = incoming.failure {
            lastConnectionProblem = failure
            onEvents([.authenticationFailed(reason: failure)], self)
            self.connection = nil
            connection.closeAfterFlushing(reason: .local("authentication failed"), core: core)
            client.disconnected(now: core.now)
            pump()
            return
        }
        if let message = incoming.message { message.withUnsafeBytes { client.frameReceived($0, now: core.now) } }
        pump()
    }

    package func connectionClosed(_ connection: FramedConnection, reason: FramedConnectionCloseReason, core: EventCore) {
        guard connection === self.connection else { return }
        self.connection = nil
        session.disconnected()
        lastConnectionProblem = "\(reason)"
        if !client.isRegistered {
            onEvents([.connectionFailed(reason: "cannot reach the GMS at \(gms): \(reason)")], self)
        }
        client.disconnected(now: core.now)
        pump()
    }

    package func alarmFired(tag: UInt64, deadline: Instant, core: EventCore) {
        alarm = nil
        client.tick(now: core.now)
        pump()
    }
}
