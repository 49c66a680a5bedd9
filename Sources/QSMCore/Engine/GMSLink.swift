/// Carries a node machine's GMS connection over TCP on the event core: connects, sends
/// and closes as the machine asks, and hands it the frames and the connection's fate.
final class GMSLink: FramedConnectionDelegate {
    let gms: QSMSocketAddress
    private let machine: NodeMachine
    private var connection: FramedConnection?
    /// The last connection failure, for diagnosis.
    private(set) var lastProblem: String?
    /// Told after every event handed to the machine (connected, a frame, closed), so the
    /// driver settles the machine at the end of the I/O turn: a membership update changes
    /// what to listen to, who leads a ring and when the next timer is due, and nothing
    /// else may come to prompt it (a node that just moved regions hears no data until it
    /// listens to the new address).
    var onInput: (() -> Void)?

    init(gms: QSMSocketAddress, machine: NodeMachine) {
        self.gms = gms
        self.machine = machine
    }

    /// Carries out every action the machine has asked for so far.
    func carryOut(core: EventCore) {
        while let action = machine.pollGMSAction() {
            switch action {
            case .connect:
                do throws(SystemError) {
                    let stream = try TCPStream.connect(to: gms)
                    connection = try FramedConnection(stream: stream, connecting: true, core: core, delegate: self,
                                                      maximumFrameBytes: 256 << 20, maximumQueuedBytes: 16 << 20)
                } catch {
                    lastProblem = "cannot reach the GMS at \(gms): \(error)"
                    machine.gmsDisconnected(reason: lastProblem, now: core.now)
                }
            case .send(let frame):
                connection?.send(frame, core: core)
            case .close:
                let closing = connection
                connection = nil
                closing?.closeAfterFlushing(reason: .local("membership client stopped"), core: core)
            }
        }
    }

    func connectionEstablished(_ connection: FramedConnection, core: EventCore) {
        guard connection === self.connection else { return }
        machine.gmsConnected(now: core.now)
        onInput?()
    }

    func connection(_ connection: FramedConnection, received frame: [UInt8], core: EventCore) {
        guard connection === self.connection else { return }
        frame.withUnsafeBytes { machine.gmsFrameReceived($0, now: core.now) }
        onInput?()
    }

    func connectionClosed(_ connection: FramedConnection, reason: FramedConnectionCloseReason, core: EventCore) {
        guard connection === self.connection else { return }
        self.connection = nil
        lastProblem = "cannot reach the GMS at \(gms): \(reason)"
        machine.gmsDisconnected(reason: lastProblem, now: core.now)
        onInput?()
    }
}
