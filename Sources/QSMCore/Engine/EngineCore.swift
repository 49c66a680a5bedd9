/// The engine on the core thread: the protocol core on real sockets.
///
/// One unicast socket carries control traffic and retransmissions and also sends the
/// node's multicast (so a data packet's source address is the sender's control address);
/// one multicast socket per region, and per hybrid group, receives data. The protocol is
/// pulled by the unicast socket (the pull model end to end), membership comes from the
/// agent, and deliveries and events go out through a lock-free queue. When the
/// application falls behind, the core stops reading data sockets: the kernel holds or
/// drops what comes, recovery brings it back later, and the senders' windows fill, so
/// nothing is dropped silently and nothing grows without bound.
final class EngineCore: PacketFeed, DatagramHandler, AlarmHandler, IOTurnObserver {
    let core: EventCore
    let configuration: QSMNodeConfiguration
    let protocolNode: ProtocolNode
    let window: PublishWindow
    let outputs: RequestQueue<EngineOutput>
    let outputWakeup: ConsumerWakeup
    let outputsHeld: HeldOutputsFlag
    private(set) var agent: MembershipAgent!
    private let unicast: UDPSocket
    private var unicastID: RegistrationID!
    let localAddress: SocketAddress
    private var multicast: [SocketAddress: (socket: UDPSocket, id: RegistrationID)] = [:]
    private var addressBook: [NodeID: SocketAddress] = [:]
    private var timer: AlarmHandle?
    private var timerAt = Instant.zero
    private var waitingOutputs = RingBuffer<EngineOutput>(initialCapacity: 64)
    private var receivingPaused = false
    private var pendingPublishes = RingBuffer<(group: GroupName, payload: [UInt8])>(initialCapacity: 64)
    private var lastAcknowledged = 0
    private var outputsSinceSignal = 0
    /// Datagrams arrived since the last settle: settle once per batch, not per datagram.
    private var settlePending = false
    /// Group names by id, for deliveries (kept with the membership).
    private var groupNames: [GroupID: GroupName] = [:]
    private var groupIDs: [GroupName: GroupID] = [:]
    /// Tags and checks every datagram when the cluster has a secret.
    private let authenticator: PacketAuthenticator?
    private var droppedUnauthenticated = 0
    private var droppedNoAddress = 0

    init(configuration: QSMNodeConfiguration, core: EventCore, node: NodeID, window: PublishWindow,
         outputs: RequestQueue<EngineOutput>, outputWakeup: ConsumerWakeup, outputsHeld: HeldOutputsFlag) throws {
        self.configuration = configuration
        self.core = core
        self.window = window
        self.outputs = outputs
        self.outputWakeup = outputWakeup
        self.outputsHeld = outputsHeld
        authenticator = configuration.clusterSecret.map { PacketAuthenticator(secret: $0) }
        protocolNode = try ProtocolNode(id: node, configuration: configuration.protocolConfiguration, seed: node.value)
        unicast = try UDPSocket()
        try unicast.setReceiveBufferSize(configuration.receiveBufferBytes)
        try unicast.setSendBufferSize(configuration.receiveBufferBytes)
        localAddress = try unicast.bind(to: SocketAddress(configuration.interface, port: configuration.port))
        try unicast.setMulticastInterface(configuration.interface)
        try unicast.setMulticastTimeToLive(configuration.multicastTimeToLive)
        try unicast.setMulticastLoop(true)
        unicastID = try core.registerDatagramSocket(unicast, traffic: .control, handler: self)
        core.ioTurnObserver = self
        agent = MembershipAgent(node: node, address: localAddress, gms: configuration.gms, core: core,
                                heartbeatInterval: configuration.heartbeatInterval) { [unowned self] events, agent in
            self.membershipChanged(events, agent)
        }
    }

    func start() {
        agent.start()
        settle()
    }

    // MARK: Application requests (on the core thread)

    func join(_ group: GroupName) { agent.join(group) }
    func leave(_ group: GroupName) { agent.leave(group) }
    func addPublisher(_ group: GroupName) { agent.publish(group) }

    /// Publishes; the caller reserved a window slot for it already.
    func publish(_ payload: [UInt8], to group: GroupName) {
        pendingPublishes.append((group, payload))
        settle()
    }

    func statistics() -> QSMNodeStatistics {
        QSMNodeStatistics(node: protocolNode.id, protocolStatistics: protocolNode.statistics, core: core.statistics,
                          alarmLateness: core.takeAlarmLatenessInterval(),
                          unacknowledgedMessages: protocolNode.unacknowledgedMessageCount, heldBytes: protocolNode.heldBytes,
                          regions: agent.client.regions.count, deliveriesWaiting: waitingOutputs.count,
                          droppedUnauthenticated: droppedUnauthenticated, droppedNoAddress: droppedNoAddress)
    }

    func emit(_ output: EngineOutput) {
        if !waitingOutputs.isEmpty || !outputs.tryEnqueue(output) {
            waitingOutputs.append(output)
        } else {
            outputsSinceSignal += 1
        }
    }

    // MARK: Membership

    private func membershipChanged(_ events: [MembershipEvent], _ agent: MembershipAgent) {
        let client = agent.client
        for region in client.regions.values {
            for member in region.members { addressBook[member.id] = member.address }
        }
        protocolNode.installMembership(regions: Array(client.regions.values), groups: Array(client.groups.values), now: core.now)
        // One multicast socket per address this node must listen on: its regions, and
        // the hybrid groups it belongs to.
        var wanted = Set(client.regions.values.compactMap(\.address))
        groupNames = Dictionary(client.groups.values.map { ($0.id, $0.name) }, uniquingKeysWith: { first, _ in first })
        groupIDs = Dictionary(client.groups.values.map { ($0.name, $0.id) }, uniquingKeysWith: { first, _ in first })
        for group in client.groups.values where group.members.contains(protocolNode.id) {
            if let hybrid = group.hybridAddress { wanted.insert(hybrid) }
        }
        for (address, entry) in multicast where !wanted.contains(address) {
            core.unregister(entry.id)
            try? entry.socket.leaveMulticastGroup(address.address, interface: configuration.interface)
            multicast[address] = nil
        }
        for address in wanted where multicast[address] == nil {
            do {
                let socket = try UDPSocket()
                try socket.setReuseAddress(true)
                try socket.setReceiveBufferSize(configuration.receiveBufferBytes)
                try socket.bind(to: address)
                try socket.joinMulticastGroup(address.address, interface: configuration.interface)
                let id = try core.registerDatagramSocket(socket, traffic: .data, handler: self)
                if receivingPaused { try core.setReceiving(id, false) }
                multicast[address] = (socket, id)
            } catch {
                emit(.membership(.rejected(request: "listen on \(address)", reason: "\(error)")))
            }
        }
        for event in events { emit(.membership(event)) }
        settle()
    }

    // MARK: Packets

    func datagramReceived(_ datagram: UnsafeRawBufferPointer, from source: SocketAddress, on registration: RegistrationID,
                          core: EventCore) {
        var bytes = datagram
        if let authenticator {
            guard authenticator.verify(datagram) else {
                droppedUnauthenticated += 1
                return
            }
            bytes = UnsafeRawBufferPointer(rebasing: datagram[0..<(datagram.count - PacketAuthenticator.tagBytes)])
        }
        // Learn where senders send from: those outside this node's regions are listed in
        // no view, and they must be acknowledged and NAKed all the same. A sender outside
        // the region likewise learns its requesters from their NAKs, or it could never
        // repair a packet every receiver lost.
        if let sender = ProtocolPacket.originalSender(of: bytes), sender != protocolNode.id {
            addressBook[sender] = source
        } else if let requester = ProtocolPacket.requester(of: bytes), requester != protocolNode.id,
                  addressBook[requester] == nil {
            addressBook[requester] = source
        }
        protocolNode.receive(bytes, now: core.now)
        settlePending = true
    }

    func ioTurnEnded(core: EventCore) {
        if !core.hasQueuedInput, protocolNode.inputCaughtUp(now: core.now) { settlePending = true }
        if settlePending {
            settlePending = false
            settle()
        }
    }

    func produceDatagram(into buffer: UnsafeMutableRawBufferPointer, core: EventCore) -> OutboundDatagram? {
        while let datagram = protocolNode.nextDatagram(now: core.now) {
            let destination: SocketAddress?
            switch datagram.destination {
            case .node(let node): destination = addressBook[node]
            case .region(let region): destination = agent.client.regions[region]?.address ?? regionAddress(region)
            case .group(let group): destination = agent.client.groups[group]?.hybridAddress
            }
            let tagBytes = authenticator == nil ? 0 : PacketAuthenticator.tagBytes
            guard let destination else {
                droppedNoAddress += 1
                continue
            }
            guard datagram.bytes.count + tagBytes <= buffer.count else { continue }
            let length = datagram.bytes.count
            datagram.bytes.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            authenticator?.write(code: UnsafeRawBufferPointer(rebasing: buffer[0..<length]),
                                 into: UnsafeMutableRawBufferPointer(rebasing: buffer[length...]), length: tagBytes)
            collectDeliveries()
            return OutboundDatagram(destination: destination, length: length + tagBytes, hasMore: protocolNode.hasOutput)
        }
        collectDeliveries()
        return nil
    }

    /// A region this node sends to but is not a member of: its address is in the group views.
    private func regionAddress(_ region: RegionID) -> SocketAddress? {
        for group in agent.client.groups.values {
            if let reference = group.regions.first(where: { $0.id == region }) { return reference.address }
        }
        return nil
    }

    func alarmFired(tag: UInt64, deadline: Instant, core: EventCore) {
        timer = nil
        protocolNode.tick(now: core.now)
        settle()
    }

    // MARK: After every event

    /// Publishes what the window allows, hands deliveries out, asks the socket to pull,
    /// and re-arms the protocol's timer.
    func settle() {
        while let (group, payload) = pendingPublishes.first {
            // Not yet in the group's view (registration under way): keep it for later.
            guard let id = groupIDs[group] else { break }
            let result = protocolNode.publish(group: id, payload: payload, now: core.now)
            if result == .wouldBlock { break }
            _ = pendingPublishes.popFirst()
            if case .rejected(let reason) = result {
                window.release(1)
                emit(.membership(.rejected(request: "publish to \(group)", reason: reason)))
            }
        }
        collectDeliveries()
        let acknowledged = protocolNode.statistics.acknowledged
        if acknowledged > lastAcknowledged {
            window.release(acknowledged - lastAcknowledged)
            emit(.acknowledged(count: acknowledged - lastAcknowledged))
            lastAcknowledged = acknowledged
        }
        flushOutputs()
        if protocolNode.hasOutput { core.registerIntent(self, on: unicastID, traffic: .data) }
        if let deadline = protocolNode.nextDeadline() {
            if let timer {
                if deadline != timerAt, core.rescheduleAlarm(timer, to: deadline) { timerAt = deadline }
            } else {
                timer = core.scheduleAlarm(at: deadline, handler: self)
                timerAt = deadline
            }
        }
    }

    private func collectDeliveries() {
        for delivery in protocolNode.takeDeliveries() {
            guard let group = groupNames[delivery.group] else { continue }
            emit(.delivery(QSMDelivery(group: group, sender: delivery.sender, sequence: delivery.groupSequence,
                                       payload: Array(delivery.payload))))
        }
    }

    /// Moves held outputs to the queue as room appears, wakes the application side, and
    /// pauses or resumes reading data accordingly.
    func flushOutputs() {
        while let output = waitingOutputs.first, outputs.tryEnqueue(output) {
            _ = waitingOutputs.popFirst()
            outputsSinceSignal += 1
        }
        if outputsSinceSignal > 0 {
            outputWakeup.signalIfSleeping()
            outputsSinceSignal = 0
        }
        let shouldPause = waitingOutputs.count > 0
        outputsHeld.set(shouldPause)
        if shouldPause != receivingPaused {
            receivingPaused = shouldPause
            for entry in multicast.values { try? core.setReceiving(entry.id, !shouldPause) }
        }
    }

    /// Leaves cleanly: goodbye to the GMS (the connection flushes it).
    func stop() {
        agent.stop()
    }
}
