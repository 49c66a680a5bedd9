#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// A QSM node embedded in an application: join groups, publish to them, receive what is
/// published to them, reliably, in FIFO order per sender, exactly once.
///
/// All work happens on the node's own core thread; every method here hands a request to
/// it through a lock-free queue and may be called from any thread or task. Deliveries and
/// membership events come back on a dispatcher thread (so a slow application never
/// blocks the core): as a callback, or as an `AsyncSequence`.
///
/// ```swift
/// var configuration = QSMNodeConfiguration(gms: SocketAddress("10.0.0.1:7000")!)
/// configuration.interface = IPv4Address("10.0.0.5")!
/// let node = try QSMNode(configuration: configuration)
/// try node.start()
/// let group = try node.join("prices")
/// try await node.publish(Array("hello".utf8), to: group)
/// for await message in node.deliveries() { print(message.sender, message.payload.count) }
/// ```
public final class QSMNode: Sendable {
    public let configuration: QSMNodeConfiguration
    public let id: NodeID
    /// The unicast address this node listens on (control traffic).
    public let address: SocketAddress

    private let handle: EventCoreHandle
    private let engine: CoreConfined<EngineCore>
    private let window: PublishWindow
    private let outputs: RequestQueue<EngineOutput>
    private let outputWakeup: ConsumerWakeup
    private let outputsHeld = HeldOutputsFlag()
    private let state: Mutex<DispatcherState>
    private let coreThread: Mutex<SystemThread?> = Mutex(nil)
    private let dispatcherThread: Mutex<SystemThread?> = Mutex(nil)
    private let stopping = Atomic<Bool>(false)
    private let started = Atomic<Bool>(false)
    /// Deliveries handed to async consumers and not yet taken by them.
    private let outstanding = SharedCounter()

    struct DispatcherState {
        var deliveryHandler: (@Sendable (QSMDelivery) -> Void)?
        var eventHandler: (@Sendable (MembershipEvent) -> Void)?
        var deliveryContinuations: [AsyncStream<QSMDelivery>.Continuation] = []
        var eventContinuations: [AsyncStream<MembershipEvent>.Continuation] = []
        var windowWaiters: [CheckedContinuation<Void, Never>] = []
        var statisticsWaiters: [UInt64: CheckedContinuation<QSMNodeStatistics, Never>] = [:]
        var nextToken: UInt64 = 1
        var views: [GroupName: GroupView] = [:]
        var registered = false
        var lastConnectionProblem: String?
        var authenticationProblem: String?
        var viewWaiters: [(group: GroupName, members: Int, continuation: CheckedContinuation<Void, Never>)] = []
    }

    /// Creates a node; nothing runs until `start()`.
    /// - Throws: `ConfigurationError` naming an invalid setting, or `SystemError` if a
    ///   socket cannot be set up (for example, the interface address is not local).
    public init(configuration: QSMNodeConfiguration) throws {
        try configuration.validate()
        self.configuration = configuration
        var seed = SplitMix64(seed: UInt64(bitPattern: MonotonicClock.now().nanoseconds) ^ UInt64(getpid()))
        id = NodeID(configuration.nodeID ?? max(1, seed.next() >> 1))
        window = PublishWindow(capacity: configuration.protocolConfiguration.windowMessages)
        outputs = RequestQueue(capacity: configuration.deliveryQueueCapacity)
        outputWakeup = try ConsumerWakeup()
        let core = try EventCore(configuration: configuration.eventCoreConfiguration)
        handle = core.handle
        let engine = try EngineCore(configuration: configuration, core: core, node: id, window: window,
                                    outputs: outputs, outputWakeup: outputWakeup, outputsHeld: outputsHeld)
        address = engine.localAddress
        self.engine = CoreConfined(engine)
        state = Mutex(DispatcherState())
    }

    /// Starts the core and dispatcher threads and registers with the GMS.
    public func start() throws {
        let engine = self.engine
        guard !started.exchange(true, ordering: .acquiringAndReleasing) else { return }
        if configuration.insecure {
            let warning = "qsm: WARNING: node runs without a cluster secret (insecure): anyone who can send it a datagram "
                + "can forge data it delivers, and anyone who reaches the GMS can join its groups\n"
            _ = warning.withCString { write(2, $0, strlen($0)) }
        }
        let core = try SystemThread(name: "qsm-core") {
            engine.value.start()
            try? engine.value.core.run()
        }
        coreThread.withLock { $0 = core }
        let dispatcher = try SystemThread(name: "qsm-dispatch") { [self] in dispatch() }
        dispatcherThread.withLock { $0 = dispatcher }
    }

    /// Leaves every group cleanly, stops the threads and waits for them.
    public func stop() {
        guard !stopping.exchange(true, ordering: .acquiringAndReleasing) else { return }
        let engine = self.engine
        let handle = self.handle
        if !handle.tryPerform({ core in
            engine.value.stop()
            // Let the goodbye leave before the core stops.
            core.scheduleAlarm(at: core.now.advanced(by: .milliseconds(50)), handler: StopCore())
        }) { handle.stop() }
        coreThread.withLock { $0 }?.join()
        outputWakeup.event.signal()
        dispatcherThread.withLock { $0 }?.join()
        state.withLock { state in
            for continuation in state.deliveryContinuations { continuation.finish() }
            for continuation in state.eventContinuations { continuation.finish() }
            for waiter in state.windowWaiters { waiter.resume() }
            for waiter in state.viewWaiters { waiter.continuation.resume() }
            state = DispatcherState()
        }
    }

    deinit { stop() }

    // MARK: Groups

    /// Joins a group (at the next GMS batch) and returns its name to publish with.
    /// - Throws: `ConfigurationError` for an invalid name.
    @discardableResult
    public func join(_ name: String) throws -> GroupName {
        guard let group = GroupName(name) else { throw ConfigurationError("'\(name)' is not a group name (1-255 bytes, no control characters)") }
        submit { $0.join(group) }
        return group
    }

    public func leave(_ group: GroupName) { submit { $0.leave(group) } }

    /// Registers as a publisher to a group this node does not join.
    public func publishWithoutJoining(_ group: GroupName) { submit { $0.addPublisher(group) } }

    /// Whether the GMS has accepted this node's registration (and not excluded it since).
    public var isRegistered: Bool { state.withLock { $0.registered } }

    /// Why the last attempt to reach the GMS failed, if one did.
    public var lastConnectionProblem: String? { state.withLock { $0.lastConnectionProblem } }
    /// Why the GMS connection last failed to authenticate (the node and the GMS do not
    /// share a cluster secret), if it did: retrying does not fix this.
    public var authenticationProblem: String? { state.withLock { $0.authenticationProblem } }

    /// How many members this node's current view of `group` has; nil before it has one.
    public func memberCount(of group: GroupName) -> Int? { state.withLock { $0.views[group]?.members.count } }

    /// Waits until this node's view of `group` has at least `members` members.
    public func waitForMembers(_ members: Int, in group: GroupName) async {
        await withCheckedContinuation { continuation in
            let ready = state.withLock { state -> Bool in
                if let view = state.views[group], view.members.count >= members { return true }
                state.viewWaiters.append((group, members, continuation))
                return false
            }
            if ready { continuation.resume() }
        }
    }

    // MARK: Publishing

    public enum PublishOutcome: Equatable, Sendable {
        case accepted
        /// The flow-control window is full; try again once messages are acknowledged.
        case wouldBlock
        case rejected(String)
    }

    /// Publishes without waiting: `.wouldBlock` while the window is full.
    public func tryPublish(_ payload: [UInt8], to group: GroupName) -> PublishOutcome {
        guard payload.count <= configuration.protocolConfiguration.maximumMessageBytes else {
            return .rejected("message of \(payload.count) bytes exceeds the maximum of \(configuration.protocolConfiguration.maximumMessageBytes)")
        }
        guard !stopping.load(ordering: .acquiring) else { return .rejected("the node is stopped") }
        guard window.tryReserve() else { return .wouldBlock }
        if !handle.trySubmit(.perform({ [engine] _ in engine.value.publish(payload, to: group) })) {
            window.release(1)
            return .wouldBlock
        }
        return .accepted
    }

    /// Publishes, waiting while the flow-control window is full.
    /// - Throws: `ConfigurationError` if the message is too large or the node stopped.
    public func publish(_ payload: [UInt8], to group: GroupName) async throws {
        while true {
            switch tryPublish(payload, to: group) {
            case .accepted: return
            case .rejected(let reason): throw ConfigurationError(reason)
            case .wouldBlock: await waitForWindow()
            }
        }
    }

    /// Waits until the flow-control window has room for another message (or the node
    /// stops). For publishers that build each message just before `tryPublish`.
    public func waitForWindow() async {
        await withCheckedContinuation { continuation in
            let free = state.withLock { state -> Bool in
                if window.inUse < window.capacity || stopping.load(ordering: .acquiring) { return true }
                state.windowWaiters.append(continuation)
                return false
            }
            if free { continuation.resume() }
        }
    }

    /// Messages published and not yet acknowledged by every region they went to.
    public var unacknowledgedMessages: Int { window.inUse }

    // MARK: Receiving

    /// Calls `handler` on the dispatcher thread for every delivery, in order.
    public func onDelivery(_ handler: @escaping @Sendable (QSMDelivery) -> Void) {
        state.withLock { $0.deliveryHandler = handler }
    }

    /// Calls `handler` on the dispatcher thread for every membership event.
    public func onMembershipEvent(_ handler: @escaping @Sendable (MembershipEvent) -> Void) {
        state.withLock { $0.eventHandler = handler }
    }

    /// Deliveries as an async sequence. At most `deliveryQueueCapacity` are handed over
    /// and not yet taken; beyond that the dispatcher waits, the core stops reading data,
    /// and flow control slows the senders: a slow consumer never grows a buffer and never
    /// loses a message.
    public func deliveries() -> DeliverySequence {
        let stream = AsyncStream(QSMDelivery.self, bufferingPolicy: .unbounded) { continuation in
            state.withLock { $0.deliveryContinuations.append(continuation) }
        }
        return DeliverySequence(stream: stream, outstanding: outstanding)
    }

    public func membershipEvents() -> AsyncStream<MembershipEvent> {
        AsyncStream(bufferingPolicy: .unbounded) { continuation in
            state.withLock { $0.eventContinuations.append(continuation) }
        }
    }

    /// A statistics snapshot, taken on the core thread.
    public func statistics() async -> QSMNodeStatistics {
        await withCheckedContinuation { continuation in
            let token = state.withLock { state -> UInt64 in
                defer { state.nextToken += 1 }
                state.statisticsWaiters[state.nextToken] = continuation
                return state.nextToken
            }
            submit { engine in engine.emit(.statistics(token: token, engine.statistics())); engine.flushOutputs() }
        }
    }

    // MARK: Experiments

    /// Fault injection for experiments: for `duration`, every datagram that reaches this
    /// node is thrown away on arrival (counted in `core.droppedByInjectedLoss`), as if
    /// the network dropped all its inbound traffic. Recovery must repair the gap.
    public func injectInboundLoss(for duration: Duration) {
        injectFault(inboundLossPercent: 100, dropOutbound: false, for: duration)
    }

    /// Fault injection for experiments (loopback runs, where no firewall can single out
    /// one node): for `duration`, `inboundLossPercent`% of the datagrams reaching this
    /// node are thrown away at random, and with `dropOutbound` everything it sends too,
    /// as if its host were cut off. Counted in `core.droppedByInjectedLoss`; a zero
    /// duration ends a fault in effect.
    public func injectFault(inboundLossPercent: Int, dropOutbound: Bool, for duration: Duration) {
        submit { engine in
            engine.core.injectFault(inboundLossPercent: inboundLossPercent, dropOutbound: dropOutbound,
                                    until: engine.core.now.advanced(by: duration))
        }
    }

    // MARK: Plumbing

    private func submit(_ body: @escaping @Sendable (EngineCore) -> Void) {
        let engine = self.engine
        while !handle.trySubmit(.perform({ _ in body(engine.value) })) {
            if stopping.load(ordering: .acquiring) { return }
            sched_yield()
        }
    }

    /// The dispatcher thread: takes what the core produced and hands it to the
    /// application, in order, then lets the core send more.
    private func dispatch() {
        var descriptor = pollfd(fd: outputWakeup.event.descriptor, events: Int16(POLLIN), revents: 0)
        let busyPoll = configuration.eventCoreConfiguration.busyPoll.totalNanoseconds
        let busyPollAttempts = configuration.eventCoreConfiguration.busyPollAttempts
        var emptyPolls = 0
        var lastWork = MonotonicClock.now()
        while !stopping.load(ordering: .acquiring) {
            var taken = 0
            // Who receives deliveries, looked up once per batch rather than per message.
            var receivers: DeliveryReceivers?
            while let output = outputs.dequeue() {
                taken += 1
                if case .delivery(let delivery) = output {
                    if receivers == nil {
                        receivers = state.withLock { DeliveryReceivers(handler: $0.deliveryHandler, continuations: $0.deliveryContinuations) }
                    }
                    deliver(delivery, to: receivers!)
                } else {
                    handle(output)
                }
            }
            if taken > 0 {
                lastWork = MonotonicClock.now()
                emptyPolls = 0
                if outputsHeld.isSet {
                    // Room in the queue again, and the core is holding outputs back.
                    let engine = self.engine
                    _ = self.handle.tryPerform { _ in engine.value.flushOutputs() }
                }
                continue
            }
            // Deliveries are flowing: look again soon rather than sleep and be woken for
            // every few of them.
            if emptyPolls < busyPollAttempts, MonotonicClock.now().nanoseconds(since: lastWork) < busyPoll {
                emptyPolls += 1
                SystemThread.yieldProcessor()
                continue
            }
            if outputWakeup.prepareToSleep(hasWork: { outputs.hasReadyElement || stopping.load(ordering: .acquiring) }) {
                if poll(&descriptor, 1, 100) > 0 { outputWakeup.event.drain() }
                outputWakeup.finishedSleeping()
            }
        }
    }

    private struct DeliveryReceivers {
        var handler: (@Sendable (QSMDelivery) -> Void)?
        var continuations: [AsyncStream<QSMDelivery>.Continuation]
    }

    private func deliver(_ delivery: QSMDelivery, to receivers: DeliveryReceivers) {
        receivers.handler?(delivery)
        let continuations = receivers.continuations
        if !continuations.isEmpty {
            // Wait (this thread only) until async consumers have caught up.
            while outstanding.value.load(ordering: .acquiring) >= configuration.deliveryQueueCapacity,
                  !stopping.load(ordering: .acquiring) {
                var none = pollfd(fd: -1, events: 0, revents: 0)
                _ = poll(&none, 1, 1)
            }
            outstanding.value.add(1, ordering: .acquiringAndReleasing)
            for continuation in continuations { continuation.yield(delivery) }
        }
    }

    private func handle(_ output: EngineOutput) {
        switch output {
        case .delivery(let delivery):
            deliver(delivery, to: state.withLock { DeliveryReceivers(handler: $0.deliveryHandler, continuations: $0.deliveryContinuations) })
        case .membership(let event):
            let (handler, continuations, ready) = state.withLock { state -> ((@Sendable (MembershipEvent) -> Void)?, [AsyncStream<MembershipEvent>.Continuation], [CheckedContinuation<Void, Never>]) in
                switch event {
                case .groupView(let view): state.views[view.name] = view
                case .groupRemoved(_, let name): state.views[name] = nil
                case .registered:
                    state.registered = true
                    state.authenticationProblem = nil
                case .excluded, .disconnected: state.registered = false
                case .connectionFailed(let reason): state.lastConnectionProblem = reason
                case .authenticationFailed(let reason):
                    state.lastConnectionProblem = reason
                    state.authenticationProblem = reason
                default: break
                }
                var ready: [CheckedContinuation<Void, Never>] = []
                state.viewWaiters.removeAll { waiter in
                    guard let view = state.views[waiter.group], view.members.count >= waiter.members else { return false }
                    ready.append(waiter.continuation)
                    return true
                }
                return (state.eventHandler, state.eventContinuations, ready)
            }
            handler?(event)
            for continuation in continuations { continuation.yield(event) }
            for waiter in ready { waiter.resume() }
        case .statistics(let token, let snapshot):
            state.withLock { $0.statisticsWaiters.removeValue(forKey: token) }?.resume(returning: snapshot)
        case .acknowledged:
            let waiters = state.withLock { state in defer { state.windowWaiters.removeAll() }; return state.windowWaiters }
            for waiter in waiters { waiter.resume() }
        }
    }
}

/// The deliveries of a node, in order; each one taken makes room for the next.
public struct DeliverySequence: AsyncSequence, Sendable {
    public typealias Element = QSMDelivery
    let stream: AsyncStream<QSMDelivery>
    let outstanding: SharedCounter

    public struct AsyncIterator: AsyncIteratorProtocol {
        var base: AsyncStream<QSMDelivery>.AsyncIterator
        let onTaken: @Sendable () -> Void
        public mutating func next() async -> QSMDelivery? {
            let value = await base.next()
            if value != nil { onTaken() }
            return value
        }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        let outstanding = self.outstanding
        return AsyncIterator(base: stream.makeAsyncIterator(), onTaken: { outstanding.value.subtract(1, ordering: .acquiringAndReleasing) })
    }
}

/// An atomic counter shared between threads.
final class SharedCounter: Sendable {
    let value = Atomic<Int>(0)
}

/// A value confined to the core thread, carried through the request queue to it.
final class CoreConfined<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}

private final class StopCore: AlarmHandler {
    func alarmFired(tag: UInt64, deadline: Instant, core: EventCore) { core.handle.stop() }
}
