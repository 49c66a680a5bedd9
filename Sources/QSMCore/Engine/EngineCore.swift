/// The engine on the core thread: a thin driver of one `NodeMachine` over real sockets.
///
/// One unicast socket carries control traffic and retransmissions and also sends the
/// node's multicast (so a data packet's source address is the sender's control address);
/// one multicast socket per address the machine listens on receives data. The machine is
/// pulled by the unicast socket (the pull model end to end), its GMS connection runs over
/// TCP (`GMSLink`), and its deliveries and events go out through a lock-free queue. When
/// the application falls behind, the core stops reading data sockets: the kernel holds or
/// drops what comes, recovery brings it back later, and the senders' windows fill, so
/// nothing is dropped silently and nothing grows without bound.
final class EngineCore: PacketFeed, DatagramHandler, AlarmHandler, IOTurnObserver, PublishHandler {
    let core: EventCore
    let configuration: QSMNodeConfiguration
    /// The receive buffer the kernel granted the unicast socket (the multicast ones get
    /// the same): less than asked when `net.core.rmem_max` caps it.
    let receiveBufferGranted: Int
    let machine: NodeMachine
    let window: PublishWindow
    let recycler: PayloadRecycler
    /// Arrays of deliveries the application is done with, handed back by the dispatcher:
    /// received payloads are decoded into them.
    let returnedPayloads: HandoffQueue<[UInt8]>
    let outputs: HandoffQueue<EngineOutput>
    let outputWakeup: ConsumerWakeup
    let outputsHeld: HeldOutputsFlag
    // Stored properties are `@exclusivity(unchecked)`: this state is confined to one thread
    // and never accessed overlappingly; the runtime's dynamic checks cost about 5% of a
    // receiver's CPU (perf, `qsm-bench run`).
    @exclusivity(unchecked) private var gmsLink: GMSLink!
    private let unicast: UDPSocket
    @exclusivity(unchecked) private var unicastID: RegistrationID!
    let localAddress: QSMSocketAddress
    @exclusivity(unchecked) private var multicast: [QSMSocketAddress: (socket: UDPSocket, id: RegistrationID)] = [:]
    @exclusivity(unchecked) private var timer: AlarmHandle?
    @exclusivity(unchecked) private var timerAt = Instant.zero
    @exclusivity(unchecked) private var waitingOutputs = RingBuffer<EngineOutput>(initialCapacity: 64)
    @exclusivity(unchecked) private var receivingPaused = false
    @exclusivity(unchecked) private var outputsSinceSignal = 0
    /// Datagrams arrived since the last settle: settle once per batch, not per datagram.
    @exclusivity(unchecked) private var settlePending = false
    /// Drops the operator must hear of: datagrams longer than the packet buffers, and
    /// datagrams that failed authentication.
    @exclusivity(unchecked) private var truncationWarning = DecadeWarning()
    @exclusivity(unchecked) private var authenticationWarning = DecadeWarning()

    init(configuration: QSMNodeConfiguration, core: EventCore, node: NodeID, window: PublishWindow, recycler: PayloadRecycler,
         returnedPayloads: HandoffQueue<[UInt8]>, outputs: HandoffQueue<EngineOutput>, outputWakeup: ConsumerWakeup, outputsHeld: HeldOutputsFlag) throws {
        self.configuration = configuration
        self.core = core
        self.window = window
        self.recycler = recycler
        self.returnedPayloads = returnedPayloads
        self.outputs = outputs
        self.outputWakeup = outputWakeup
        self.outputsHeld = outputsHeld
        unicast = try UDPSocket()
        // Linux reports twice what it grants (the other half is its bookkeeping).
        receiveBufferGranted = try unicast.setReceiveBufferSize(configuration.receiveBufferBytes) / 2
        try unicast.setSendBufferSize(configuration.receiveBufferBytes)
        localAddress = try unicast.bind(to: QSMSocketAddress(configuration.interface, port: configuration.port))
        try unicast.setMulticastInterface(configuration.interface)
        try unicast.setMulticastTimeToLive(configuration.multicastTimeToLive)
        try unicast.setMulticastLoop(true)
        machine = try NodeMachine(configuration: configuration.machineConfiguration(id: node, address: localAddress))
        machine.protocolNode.keepsReleasedPayloads = true
        machine.protocolNode.cacheHint = CachePrefetch.forWritingObject
        unicastID = try core.registerDatagramSocket(unicast, traffic: .control, handler: self)
        core.ioTurnObserver = self
        core.publishHandler = self
        gmsLink = GMSLink(gms: configuration.gms, machine: machine)
        gmsLink.onInput = { [unowned self] in settlePending = true }
    }

    func start() {
        machine.start(now: core.now)
        settle()
    }

    // MARK: Application requests (on the core thread)

    func join(_ group: GroupName) { machine.join(group, now: core.now); settle() }
    func leave(_ group: GroupName) { machine.leave(group, now: core.now); settle() }
    func addPublisher(_ group: GroupName) { machine.publishWithoutJoining(group, now: core.now); settle() }

    /// Publishes; the caller reserved a slot of the window mirror for it already.
    func publishRequested(_ payload: consuming [UInt8], to group: GroupName, slot: Int32) {
        let bytes = payload.count
        switch machine.publish(payload, to: group, slot: Int(slot), now: core.now) {
        case .accepted:
            break
        case .wouldBlock:
            // The mirror holds no more than the machine's window, so this does not happen;
            // if it did, the slot must not leak and the message must not vanish unsaid.
            window.release(messages: 1, bytes: bytes)
            emit(.acknowledged(count: 1))
            emit(.membership(.rejected(request: "publish to \(group)", reason: "too many publications waiting")))
        case .rejected(let reason):
            window.release(messages: 1, bytes: bytes)
            emit(.acknowledged(count: 1))
            emit(.membership(.rejected(request: "publish to \(group)", reason: reason)))
        }
        // Settled once per run of publications (`publishesEnded`): settling after each
        // one polled the machine's events and deadline and armed the send intent per
        // message, a third of the sender's reference counting at 100 bytes (perf).
        settlePending = true
    }

    func publishesEnded() {
        guard settlePending else { return }
        settlePending = false
        settle()
    }

    func statistics() -> QSMNodeStatistics {
        let protocolNode = machine.protocolNode
        return QSMNodeStatistics(node: machine.id, protocolStatistics: protocolNode.statistics, core: core.statistics,
                                 alarmLateness: core.takeAlarmLatenessInterval(),
                                 unacknowledgedMessages: machine.messagesInFlight, heldBytes: protocolNode.heldBytes,
                                 regions: machine.membership.regions.count, deliveriesWaiting: waitingOutputs.count,
                                 machine: machine.statistics, traffic: machine.traffic, senderLags: protocolNode.senderLags(),
                                 senderRetransmissionsReceived: protocolNode.senderRetransmissionsReceived(),
                                 registered: machine.membership.isRegistered)
    }

    /// Queues `output` for the dispatcher, or holds it while the queue is full or others
    /// are held already (they keep their order).
    func emit(_ output: EngineOutput) {
        if !waitingOutputs.isEmpty || !outputs.tryEnqueue(output) {
            waitingOutputs.append(output)
        } else {
            outputsSinceSignal += 1
        }
    }

    // MARK: Packets

    func datagramReceived(_ datagram: UnsafeRawBufferPointer, from source: QSMSocketAddress, on registration: RegistrationID,
                          core: EventCore) {
        prefetchSpares(forDatagramOf: datagram.count)
        machine.datagramReceived(datagram, from: source, now: core.now)
        settlePending = true
    }

    /// Has the spare arrays the next datagram's payloads will be copied into fetched into
    /// the cache while this one is handled (see `PayloadSpares.spareAddress(ahead:)`).
    /// Measured at 1000 bytes, 4 receivers: 396k-417k became 435k-442k msg/s.
    private func prefetchSpares(forDatagramOf length: Int) {
        let node = machine.protocolNode
        let plan = node.sparePrefetchPlan(datagramBytes: length)
        for index in 0..<plan.count {
            guard let spare = node.spareAddress(ahead: plan.offset + index) else { return }
            CachePrefetch.forWrite(spare, bytes: plan.bytes)
        }
    }

    func ioBatchEnded(core: EventCore) {
        while let payload = returnedPayloads.dequeue() { machine.protocolNode.recyclePayload(payload) }
        if truncationWarning.isDue(core.statistics.droppedTruncated) { warnOfTruncation() }
        if authenticationWarning.isDue(machine.statistics.droppedUnauthenticated) { warnOfAuthenticationFailures() }
        if !core.hasQueuedInput, machine.inputCaughtUp(now: core.now) { settlePending = true }
        if settlePending {
            settlePending = false
            settle()
        }
    }

    /// Datagrams longer than this node's packet buffers are dropped (counted in
    /// `droppedTruncated`): a sender that bundles more than this node accepts can never
    /// reach it, retransmissions included. The operator hears so, and how to mend it.
    private func warnOfTruncation() {
        let dropped = core.statistics.droppedTruncated
        truncationWarning.said(dropped)
        let capacity = configuration.eventCoreConfiguration.packetBufferCapacity
        emit(.warning("dropped \(dropped) inbound datagram(s) so far that were longer than this node's packet buffers "
                      + "(\(capacity) bytes): a sender bundles or sends larger datagrams than this node accepts, and nothing "
                      + "it sends that way can arrive here; give this node a bundle size at least as large as every sender's "
                      + "(qsm-node --bundle-bytes; in code, bundleBytes with eventCoreConfiguration.packetBufferCapacity)"))
        flushOutputs()
    }

    /// Datagrams that fail authentication are dropped (counted in `droppedUnauthenticated`):
    /// forged or corrupted ones, and every one from a node with another cluster secret or
    /// another encryption setting, which can then never reach this node (nor this node
    /// it). The operator hears so, and what must match.
    private func warnOfAuthenticationFailures() {
        let dropped = machine.statistics.droppedUnauthenticated
        authenticationWarning.said(dropped)
        emit(.warning("dropped \(dropped) inbound datagram(s) so far that failed authentication: forged or corrupted, "
                      + "or sent by a node with another cluster secret or another encryption setting; every node of a "
                      + "cluster needs the same secret (--secret-file), and encryption (--encrypt) on all of them or none"))
        flushOutputs()
    }

    func produceDatagram(into buffer: UnsafeMutableRawBufferPointer, core: EventCore) -> OutboundDatagram? {
        let datagram = machine.pollDatagram(into: buffer, now: core.now)
        collectDeliveries()
        guard let datagram else { return nil }
        return OutboundDatagram(destination: datagram.destination, length: datagram.length, hasMore: machine.hasDatagram)
    }

    func alarmFired(tag: UInt64, deadline: Instant, core: EventCore) {
        timer = nil
        machine.tick(now: core.now)
        settle()
    }

    // MARK: After every event

    /// Carries out the machine's GMS actions and events, hands deliveries out, asks the
    /// socket to pull, and re-arms the machine's timer.
    func settle() {
        if machine.hasGMSAction { gmsLink.carryOut(core: core) }
        while let event = machine.pollEvent() {
            switch event {
            case .membership(let change): emit(.membership(change))
            case .released(let messages, let bytes):
                while let payload = machine.protocolNode.takeReleasedPayload() { recycler.put(payload) }
                window.release(messages: messages, bytes: bytes)
                emit(.acknowledged(count: messages))
            case .publishRejected(let group, let reason):
                emit(.membership(.rejected(request: "publish to \(group)", reason: reason)))
            case .listenAddressesChanged: listen(to: machine.listenAddresses)
            case .committed: break
            }
        }
        // Events may have asked for more (a GMS frame, say).
        if machine.hasGMSAction { gmsLink.carryOut(core: core) }
        collectDeliveries()
        flushOutputs()
        if machine.hasDatagram { core.registerIntent(self, on: unicastID, traffic: .data) }
        if let deadline = machine.nextDeadline() {
            if let timer {
                if deadline != timerAt, core.rescheduleAlarm(timer, to: deadline) { timerAt = deadline }
            } else {
                timer = core.scheduleAlarm(at: deadline, handler: self)
                timerAt = deadline
            }
        }
    }

    /// One multicast socket per address the machine must listen on.
    private func listen(to wanted: Set<QSMSocketAddress>) {
        for (address, entry) in multicast where !wanted.contains(address) {
            core.unregister(entry.id)
            try? entry.socket.leaveMulticastGroup(address.address, interface: configuration.interface)
            multicast[address] = nil
        }
        for address in wanted.sorted(by: { $0.description < $1.description }) where multicast[address] == nil {
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
    }

    private func collectDeliveries() {
        while let delivery = machine.pollDelivery() {
            emit(.delivery(QSMDelivery(delivery)))
        }
    }

    /// Moves held outputs to the queue as room appears, wakes the application side, and
    /// pauses or resumes reading data accordingly.
    func flushOutputs() {
        while let output = waitingOutputs.popFirst() {
            if let refused = outputs.enqueueOrReturn(output) {
                waitingOutputs.prepend(refused)
                break
            }
            outputsSinceSignal += 1
        }
        if outputsSinceSignal > 0 {
            outputWakeup.signalIfSleepingAfterFence()
            outputsSinceSignal = 0
        }
        let shouldPause = waitingOutputs.count > 0
        outputsHeld.set(shouldPause)
        if shouldPause != receivingPaused {
            receivingPaused = shouldPause
            for entry in multicast.values { try? core.setReceiving(entry.id, !shouldPause) }
            // The slow-consumer policy counts how long the application holds the node back.
            let evictions = machine.statistics.evictions
            machine.applicationBehind(shouldPause, now: core.now)
            if machine.statistics.evictions != evictions { settle() }
        }
    }

    /// Leaves cleanly: goodbye to the GMS (the connection flushes it).
    func stop() {
        machine.stop(now: core.now)
        gmsLink.carryOut(core: core)
    }
}

/// A count that earns a warning at 1, 10, 100, ...: the first is said at once, and however
/// many follow (an attacker's forgeries, say), the log never floods.
struct DecadeWarning {
    private var next = 1

    /// Whether `count` has reached the next warning (one comparison: asked every batch).
    @inline(__always)
    func isDue(_ count: Int) -> Bool { count >= next }

    /// The warning for `count` was said: the next is due at the next power of ten above it.
    mutating func said(_ count: Int) {
        while next <= count { next = next > Int.max / 10 ? Int.max : next * 10 }
    }
}
