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
/// var configuration = QSMNodeConfiguration(gms: QSMSocketAddress("10.0.0.1:7000")!)
/// configuration.interface = IPv4Address("10.0.0.5")!
/// let node = try QSMNode(configuration: configuration)
/// try node.start()
/// let group = try node.join("prices")
/// try await node.publish(Array("hello".utf8), to: group)
/// for await message in node.deliveries() { print(message.sender, message.payload.count) }
/// ```
public final class QSMNode: Sendable {
    /// The configuration the node was made with.
    public let configuration: QSMNodeConfiguration
    /// This node's identity in the cluster (`configuration.nodeID`, or a random one).
    public let id: NodeID
    /// The unicast address this node listens on (control traffic).
    public let address: QSMSocketAddress

    let handle: EventCoreHandle
    private let engine: CoreConfined<EngineCore>
    let window: PublishWindow
    let recycler: PayloadRecycler
    /// Arrays of deliveries handed to an `onDelivery` handler only, given back to the core
    /// for later payloads (no allocation per message received).
    private let returnedPayloads: HandoffQueue<[UInt8]>
    private let outputs: HandoffQueue<EngineOutput>
    private let outputWakeup: ConsumerWakeup
    private let outputsHeld = HeldOutputsFlag()
    let state: Mutex<DispatcherState>
    private let coreThread: Mutex<SystemThread?> = Mutex(nil)
    private let dispatcherThread: Mutex<SystemThread?> = Mutex(nil)
    let stopping = Atomic<Bool>(false)
    private let started = Atomic<Bool>(false)
    /// Held by `start()` while it starts the threads, and taken (empty) by `stop()` after
    /// it has said stopping and before it looks for the threads: a stop never misses a
    /// thread that a start is halfway through making, and a later start sees `stopping`.
    /// `stop()` never holds it while it waits, so a handler that calls `stop()` while
    /// another thread stops the node cannot deadlock.
    private let lifecycle = Mutex(())

    struct DispatcherState {
        var deliveryHandler: (@Sendable (QSMDelivery) -> Void)?
        var eventHandler: (@Sendable (MembershipEvent) -> Void)?
        /// The live `deliveries()` sequences; one leaves when its iteration ends or it is
        /// dropped (`onTermination`).
        var deliveryConsumers: [DeliveryConsumer] = []
        var eventContinuations: [AsyncStream<MembershipEvent>.Continuation] = []
        var windowWaiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
        /// `waitForAcknowledgements` calls, resumed when nothing is unacknowledged.
        var acknowledgementWaiters: [UInt64: CheckedContinuation<Result<Void, QSMError>, Never>] = [:]
        var statisticsWaiters: [UInt64: CheckedContinuation<Result<QSMNodeStatistics, QSMError>, Never>] = [:]
        /// Taken when the node stopped (its core thread gone): what `statistics()` answers
        /// from then on.
        var finalStatistics: QSMNodeStatistics?
        var nextToken: UInt64 = 1
        /// How many members each group's current view has: all that `memberCount` and
        /// `waitForMembers` need. (Whole views here were a third copy of every group's
        /// view, about 270 bytes a group with 8,192 groups: issue 15, the sender's RSS.)
        var memberCounts: [GroupName: Int] = [:]
        /// The slot of each group given a `publisher(for:)` handle.
        var publisherSlots: [GroupName: Int32] = [:]
        var registered = false
        var lastConnectionProblem: String?
        var authenticationProblem: String?
        /// `run()` calls waiting for cancellation or `stop()`.
        var runWaiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
        var viewWaiters: [UInt64: (group: GroupName, members: Int, continuation: CheckedContinuation<Result<Void, QSMError>, Never>)] = [:]
    }

    /// The receive buffer the kernel granted each socket, in bytes (less than
    /// `configuration.receiveBufferBytes` when `net.core.rmem_max` caps it; `start()`
    /// warns then).
    public let receiveBufferBytesGranted: Int

    /// Sends a warning to `configuration.onWarning`, or else to standard error.
    private func warn(_ text: String) {
        if let onWarning = configuration.onWarning { return onWarning(text) }
        let line = "qsm: WARNING: " + text + "\n"
        _ = line.withCString { write(2, $0, strlen($0)) }
    }

    /// Creates a node; nothing runs until `start()`.
    /// - Throws: `QSMError.invalid` naming an invalid setting, or `QSMError.system` if a
    ///   socket cannot be set up (for example, the interface address is not local).
    public convenience init(configuration: QSMNodeConfiguration) throws(QSMError) {
        do {
            try self.init(validated: configuration)
        } catch {
            throw QSMError.wrapping(error)
        }
    }

    /// A node id for a node configured without one: 63 bits from the kernel's CSPRNG,
    /// never 0. (It was drawn from the monotonic clock XOR the process id: two bench
    /// workers started together drew the same id, and the GMS refused the second as
    /// "already registered on another live connection".)
    static func randomNodeID() -> UInt64 {
        max(1, SystemRandom.word() >> 1)
    }

    private init(validated configuration: QSMNodeConfiguration) throws {
        try configuration.validate()
        self.configuration = configuration
        id = NodeID(configuration.nodeID ?? Self.randomNodeID())
        window = PublishWindow(capacity: configuration.protocolConfiguration.windowMessages,
                               byteCapacity: configuration.protocolConfiguration.windowBytes)
        // Twice the window, in count and in bytes: a member publisher's arrays stay shared
        // with its own cache for a while after their acknowledgement, and need room beside
        // those ready for reuse (with the window's bytes alone, 4,000-byte messages
        // overflowed it and allocated 0.2 arrays per message).
        recycler = PayloadRecycler(capacity: 2 * configuration.protocolConfiguration.windowMessages,
                                   budgetBytes: 2 * configuration.protocolConfiguration.windowBytes)
        returnedPayloads = HandoffQueue(capacity: 32_768)
        outputs = HandoffQueue(capacity: configuration.deliveryQueueCapacity)
        outputWakeup = try ConsumerWakeup()
        let core = try EventCore(configuration: configuration.eventCoreConfiguration)
        handle = core.handle
        let engine = try EngineCore(configuration: configuration, core: core, node: id, window: window, recycler: recycler,
                                    returnedPayloads: returnedPayloads,
                                    outputs: outputs, outputWakeup: outputWakeup, outputsHeld: outputsHeld)
        address = engine.localAddress
        receiveBufferBytesGranted = engine.receiveBufferGranted
        self.engine = CoreConfined(engine)
        state = Mutex(DispatcherState())
    }

    /// Starts the core and dispatcher threads and registers with the GMS.
    /// - Throws: `QSMError.system` if a thread cannot be started; `QSMError.stopped` once
    ///   `stop()` was called (a stopped node has closed its sockets and does not start again).
    public func start() throws(QSMError) {
        do {
            try startThreads()
        } catch {
            throw QSMError.wrapping(error)
        }
    }

    private func startThreads() throws {
        try lifecycle.withLock { _ throws in try startThreadsOnce() }
    }

    private func startThreadsOnce() throws {
        let engine = self.engine
        // A stopped node has let its engine go: it does not start again.
        guard !stopping.load(ordering: .acquiring) else { throw QSMError.stopped }
        guard !started.exchange(true, ordering: .acquiringAndReleasing) else { return }
        if configuration.insecure {
            warn("node runs without a cluster secret (insecure): anyone who can send it a datagram "
                 + "can forge data it delivers, and anyone who reaches the GMS can join its groups")
        }
        if receiveBufferBytesGranted < configuration.receiveBufferBytes {
            warn("the kernel granted a receive buffer of \(receiveBufferBytesGranted) bytes of the \(configuration.receiveBufferBytes) asked "
                 + "(net.core.rmem_max caps it, and the process may not override it): a node paused for a moment may lose packets "
                 + "and need recovery; raise the cap with: sysctl -w net.core.rmem_max=\(configuration.receiveBufferBytes)")
        }
        let core = try SystemThread(name: "qsm-core") {
            engine.value.start()
            try? engine.value.core.run()
        }
        coreThread.withLock { $0 = core }
        // The dispatcher holds the node only for one round at a time: an application that
        // drops a started node without `stop()` gets it stopped (by `deinit`), not leaked
        // with its threads, sockets and group memberships.
        let wakeup = outputWakeup.event.descriptor
        let busyPollAttempts = configuration.eventCoreConfiguration.busyPollAttempts
        let busyPollNanoseconds = configuration.eventCoreConfiguration.busyPoll.totalNanoseconds
        let dispatcher = try SystemThread(name: "qsm-dispatch") { [weak self] in
            var loop = DispatchLoop(descriptor: pollfd(fd: wakeup, events: Int16(POLLIN), revents: 0),
                                    busyPolling: BusyPolling(attempts: busyPollAttempts, windowNanoseconds: busyPollNanoseconds,
                                                             extendsWhileFrequent: false, now: MonotonicClock.now()))
            while let node = self, node.dispatchRound(&loop) {}
        }
        dispatcherThread.withLock { $0 = dispatcher }
    }

    /// Starts the node (unless it is started) and serves until the calling task is
    /// cancelled or `stop()` is called; then it leaves every group cleanly and returns
    /// once its threads have ended. Fits a task group or a service lifecycle:
    ///
    /// ```swift
    /// try await withThrowingTaskGroup(of: Void.self) { group in
    ///     group.addTask { try await node.run() }
    ///     ...
    ///     group.cancelAll()   // node.run() returns within the goodbye's 50 ms or so
    /// }
    /// ```
    /// - Throws: what `start()` throws.
    public func run() async throws(QSMError) {
        try start()
        let token = state.withLock { state in defer { state.nextToken += 1 }; return state.nextToken }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let serving = state.withLock { state -> Bool in
                    guard !stopping.load(ordering: .acquiring), !Task.isCancelled else { return false }
                    state.runWaiters[token] = continuation
                    return true
                }
                if !serving { continuation.resume() }
            }
        } onCancel: {
            state.withLock { $0.runWaiters.removeValue(forKey: token) }?.resume()
        }
        // stop() blocks while the threads end: on a thread of its own, not the caller's
        // (a thread of the concurrency pool).
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            do {
                _ = try SystemThread(name: "qsm-stop") { [self] in
                    stop()
                    continuation.resume()
                }
            } catch {
                stop()
                continuation.resume()
            }
        }
    }

    /// Leaves every group cleanly, stops the threads and waits for them.
    public func stop() {
        guard !stopping.exchange(true, ordering: .acquiringAndReleasing) else { return }
        // A start halfway through finishes first (and one after this sees `stopping`).
        lifecycle.withLock { _ in }
        let engine = self.engine
        let handle = self.handle
        if !handle.tryPerform({ core in
            engine.value.stop()
            // Let the goodbye leave before the core stops.
            core.scheduleAlarm(at: core.now.advanced(by: .milliseconds(50)), handler: StopCore())
        }) { handle.stop() }
        coreThread.withLock { $0 }?.join()
        outputWakeup.event.signal()
        // (When the dispatcher itself dropped the last reference, this runs on it, from
        // `deinit`; `join` then returns at once and the thread ends after this round.)
        dispatcherThread.withLock { $0 }?.join()
        // The core thread has ended (or never ran): the engine is nobody's now.
        var final = engine.value.statistics()
        // It lets go of the engine's handlers (see `EventCore.shutDown`); publications the
        // core never got to are counted.
        final.core.publicationsDiscardedAtStop = engine.value.core.shutDown()
        // Its sockets close now (the port is free for another node), not when the last
        // reference to this node goes.
        engine.release()
        state.withLock { state in
            for consumer in state.deliveryConsumers { consumer.continuation.finish() }
            for continuation in state.eventContinuations { continuation.finish() }
            for waiter in state.windowWaiters.values { waiter.resume() }
            for waiter in state.acknowledgementWaiters.values { waiter.resume(returning: .failure(.stopped)) }
            for waiter in state.viewWaiters.values { waiter.continuation.resume(returning: .failure(.stopped)) }
            for waiter in state.runWaiters.values { waiter.resume() }
            for waiter in state.statisticsWaiters.values { waiter.resume(returning: .success(final)) }
            state = DispatcherState()
            state.finalStatistics = final
        }
    }

    deinit { stop() }

    // MARK: Groups

    /// Joins a group (at the next GMS batch) and returns its name to publish with.
    /// - Throws: `QSMError.invalid` for an invalid name (empty, over 255 bytes, or with
    ///   control characters).
    @discardableResult
    public func join(_ name: String) throws(QSMError) -> GroupName {
        guard let group = GroupName(name) else {
            throw .invalid(ConfigurationError("'\(name)' is not a group name (1-255 bytes, no control characters)"))
        }
        join(group)
        return group
    }

    /// Joins `group` (at the next GMS batch).
    public func join(_ group: GroupName) { submit { $0.join(group) } }

    /// Leaves `group`: deliveries of it stop once the GMS has the change; messages this
    /// node published to it that are not yet acknowledged may not reach every member.
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

    /// Waits that had to be filed (each with a token; those with a deadline, a timer task)
    /// so far: for tests that a wait already over costs nothing.
    package var filedWaits: UInt64 { state.withLock { $0.nextToken - 1 } }

    /// How many members this node's current view of `group` has; nil before it has one.
    public func memberCount(of group: GroupName) -> Int? { state.withLock { $0.memberCounts[group] } }

    /// Waits until this node's view of `group` has at least `members` members.
    /// - Throws: `QSMError.timedOut` after `timeout`, `.cancelled` when the calling task
    ///   is cancelled, `.stopped` when the node stops (or was stopped).
    public func waitForMembers(_ members: Int, in group: GroupName, timeout: Duration) async throws(QSMError) {
        try await awaitWaiter(timeout: timeout, awaiting: "\(members) members in \(group.text)", settled: { state in
            if let count = state.memberCounts[group], count >= members { return .success(()) }
            return stopping.load(ordering: .acquiring) ? .failure(.stopped) : nil
        }, file: { state, token, continuation in
            state.viewWaiters[token] = (group, members, continuation)
        }, withdraw: { node, token in node.state.withLock { $0.viewWaiters.removeValue(forKey: token) }?.continuation })
    }

    /// The shape of every wait with a deadline. `settled` says, under the state's lock,
    /// whether the wait is over already (and how), else nil. One that is over returns at
    /// once: no token, no timer task, no continuation. (Callers walk thousands of groups
    /// once their views are in: each timer is a task of about 1 KB, and a sender that
    /// waited on 8,192 groups made and freed 8 MB of them just as it filled its first
    /// window of payloads; its heap kept the holes, its peak RSS 3-5 MB higher in about
    /// one run in six. Issue 15.) Otherwise `file` files the continuation under a fresh
    /// token, in the same hold of the lock as a second look at `settled` and at the task's
    /// cancellation, so the awaited event cannot slip between; `filed` runs after that. A
    /// timer after `timeout` and the task's cancellation each `withdraw` the continuation
    /// and resume it with `.timedOut` or `.cancelled`, unless the awaited event withdrew
    /// and resumed it first. Exactly one resumes it.
    func awaitWaiter<T: Sendable>(
        timeout: Duration, awaiting what: @escaping @Sendable @autoclosure () -> String,
        settled: (inout DispatcherState) -> Result<T, QSMError>?,
        file: (inout DispatcherState, UInt64, CheckedContinuation<Result<T, QSMError>, Never>) -> Void,
        filed: (UInt64) -> Void = { _ in },
        withdraw: @escaping @Sendable (QSMNode, UInt64) -> CheckedContinuation<Result<T, QSMError>, Never>?
    ) async throws(QSMError) -> T {
        if let result = state.withLock({ settled(&$0) }) { return try result.get() }
        let token = state.withLock { state in defer { state.nextToken += 1 }; return state.nextToken }
        let timer = Task { [weak self] in
            try? await Task.sleep(for: timeout)
            if let self { withdraw(self, token)?.resume(returning: .failure(.timedOut("\(what()) (\(timeout))"))) }
        }
        defer { timer.cancel() }
        let result = await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let immediate = state.withLock { state -> Result<T, QSMError>? in
                    if let result = settled(&state) { return result }
                    if Task.isCancelled { return .failure(.cancelled) }
                    file(&state, token, continuation)
                    return nil
                }
                if let immediate { continuation.resume(returning: immediate) } else { filed(token) }
            }
        } onCancel: {
            withdraw(self, token)?.resume(returning: .failure(.cancelled))
        }
        return try result.get()
    }

    // MARK: Receiving

    /// Calls `handler` on the dispatcher thread for every delivery, in order.
    public func onDelivery(_ handler: @escaping @Sendable (QSMDelivery) -> Void) {
        state.withLock { $0.deliveryHandler = handler }
    }

    /// Calls `handler` on the dispatcher thread for every membership event.
    public func onMembershipEvent(_ handler: @escaping @Sendable (MembershipEvent) -> Void) {
        state.withLock { $0.eventHandler = handler }
    }

    /// Deliveries as an async sequence, from now on. Each sequence has its own buffer of
    /// at most `deliveryQueueCapacity` deliveries handed over and not yet taken; while any
    /// live sequence's buffer is full the dispatcher waits, the core stops reading data,
    /// and flow control slows the senders: a slow consumer never grows a buffer and never
    /// loses a message. A sequence is single-pass: when its iteration ends (`break`, a
    /// thrown error, cancellation) or it is dropped unread, it leaves at once and holds
    /// back nothing from then on. A sequence kept but never iterated holds its bound of
    /// deliveries and then holds the node back: iterate it or drop it.
    public func deliveries() -> DeliverySequence { makeDeliveries(of: nil) }

    /// The deliveries of one group as an async sequence, from now on: a subscription.
    /// Bounded and single-pass like `deliveries()`; a consumer of one group never holds
    /// back another group's consumers (the node as a whole still waits for the slowest).
    public func deliveries(of group: GroupName) -> DeliverySequence { makeDeliveries(of: group) }

    private func makeDeliveries(of group: GroupName?) -> DeliverySequence {
        var made: DeliveryConsumer?
        let stream = AsyncStream(QSMDelivery.self, bufferingPolicy: .unbounded) { made = DeliveryConsumer($0, group: group) }
        let consumer = made!
        consumer.continuation.onTermination = { [weak self] _ in
            consumer.finished.store(true, ordering: .releasing)
            self?.state.withLock { $0.deliveryConsumers.removeAll { $0 === consumer } }
        }
        let live = state.withLock { state -> Bool in
            guard !stopping.load(ordering: .acquiring) else { return false }
            state.deliveryConsumers.append(consumer)
            return true
        }
        if !live { consumer.continuation.finish() }
        return DeliverySequence(stream: stream, consumer: consumer)
    }

    /// Per live `deliveries()` sequence: deliveries handed over and not yet taken.
    package var deliveryBacklogs: [Int] {
        state.withLock { $0.deliveryConsumers.map { $0.outstanding.load(ordering: .relaxed) } }
    }

    /// Membership events (views installed, groups removed, requests refused) as an async
    /// sequence, from now on; unbounded, so keep reading it or do not ask for it.
    public func membershipEvents() -> AsyncStream<MembershipEvent> {
        AsyncStream(bufferingPolicy: .unbounded) { continuation in
            state.withLock { $0.eventContinuations.append(continuation) }
        }
    }

    /// A statistics snapshot, taken on the core thread; after `stop()`, the last one,
    /// taken as the node stopped.
    /// - Throws: `QSMError.timedOut` if the core does not answer within `timeout` (it
    ///   answers only once started), `.cancelled` when the calling task is cancelled.
    public func statistics(timeout: Duration = .seconds(10)) async throws(QSMError) -> QSMNodeStatistics {
        try await awaitWaiter(timeout: timeout, awaiting: "statistics", settled: { state in
            state.finalStatistics.map { .success($0) }
        }, file: { state, token, continuation in
            state.statisticsWaiters[token] = continuation
        }, filed: { token in
            submit { engine in engine.emit(.statistics(token: token, engine.statistics())); engine.flushOutputs() }
        }, withdraw: { node, token in node.state.withLock { $0.statisticsWaiters.removeValue(forKey: token) } })
    }

    private func resumeStatisticsWaiter(_ token: UInt64, with result: Result<QSMNodeStatistics, QSMError>) {
        state.withLock { $0.statisticsWaiters.removeValue(forKey: token) }?.resume(returning: result)
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

    /// The dispatcher thread's own state between rounds.
    struct DispatchLoop {
        var descriptor: pollfd
        /// Whether to look again for outputs rather than sleep: the core's rule, without
        /// its looking on while work is frequent (see `BusyPolling`).
        var busyPolling: BusyPolling
    }

    /// One round of the dispatcher thread: takes what the core produced and hands it to
    /// the application, in order, then lets the core send more; false once stopping. The
    /// thread holds the node only during a round (see `start()`), so dropping the node
    /// stops it.
    private func dispatchRound(_ loop: inout DispatchLoop) -> Bool {
        guard !stopping.load(ordering: .acquiring) else { return false }
        var taken = 0
        // Who receives deliveries, looked up once per batch rather than per message.
        var receivers: DeliveryReceivers?
        while let output = outputs.dequeue() {
            taken += 1
            switch consume output {
            case .delivery(let delivery):
                if receivers == nil {
                    receivers = state.withLock { DeliveryReceivers(handler: $0.deliveryHandler, consumers: $0.deliveryConsumers) }
                }
                deliver(delivery, to: receivers!)
            case .membership(let event): handle(.membership(event))
            case .statistics(let token, let statistics): handle(.statistics(token: token, statistics))
            case .acknowledged(let count): handle(.acknowledged(count: count))
            case .warning(let text): handle(.warning(text))
            }
        }
        if taken > 0 {
            loop.busyPolling.worked(at: MonotonicClock.now())
            if outputsHeld.isSet {
                // Room in the queue again, and the core is holding outputs back.
                let engine = self.engine
                _ = self.handle.tryPerform { _ in engine.value.flushOutputs() }
            }
            return true
        }
        // Deliveries are flowing: look again soon rather than sleep and be woken for
        // the next of them.
        if loop.busyPolling.looksAgain(now: MonotonicClock.now()) {
            SystemThread.yieldProcessor()
            return true
        }
        if outputWakeup.prepareToSleep(hasWork: { outputs.hasReadyElement || stopping.load(ordering: .acquiring) }) {
            if poll(&loop.descriptor, 1, 100) > 0 { outputWakeup.event.drain() }
            outputWakeup.finishedSleeping()
        }
        return true
    }

    private struct DeliveryReceivers {
        var handler: (@Sendable (QSMDelivery) -> Void)?
        var consumers: [DeliveryConsumer]
    }

    private func deliver(_ delivery: QSMDelivery, to receivers: DeliveryReceivers) {
        receivers.handler?(delivery)
        if receivers.consumers.isEmpty, delivery.bytes.startIndex == 0, delivery.sender != id {
            // Only the handler saw it: its array goes back to the core, for a later
            // payload to be decoded into once nothing else holds it (a slice of the whole
            // array converts back without a copy). Not this node's own messages: their
            // arrays go back to publishers, through the recycler.
            _ = returnedPayloads.tryEnqueue(Array(delivery.bytes))
            return
        }
        for consumer in receivers.consumers where consumer.group == nil || consumer.group == delivery.group {
            // Wait (this thread only) until this consumer has room, unless it has gone.
            while consumer.outstanding.load(ordering: .acquiring) >= configuration.deliveryQueueCapacity,
                  !consumer.finished.load(ordering: .acquiring), !stopping.load(ordering: .acquiring) {
                var none = pollfd(fd: -1, events: 0, revents: 0)
                _ = poll(&none, 1, 1)
            }
            guard !consumer.finished.load(ordering: .acquiring) else { continue }
            consumer.outstanding.add(1, ordering: .acquiringAndReleasing)
            consumer.continuation.yield(delivery)
        }
    }

    private func handle(_ output: EngineOutput) {
        switch output {
        case .delivery(let delivery):
            deliver(delivery, to: state.withLock { DeliveryReceivers(handler: $0.deliveryHandler, consumers: $0.deliveryConsumers) })
        case .membership(let event):
            let (handler, continuations, ready) = state.withLock { state -> ((@Sendable (MembershipEvent) -> Void)?, [AsyncStream<MembershipEvent>.Continuation], [CheckedContinuation<Result<Void, QSMError>, Never>]) in
                switch event {
                case .groupView(let view): state.memberCounts[view.name] = view.members.count
                case .groupRemoved(_, let name): state.memberCounts[name] = nil
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
                var ready: [CheckedContinuation<Result<Void, QSMError>, Never>] = []
                for (token, waiter) in state.viewWaiters {
                    guard let count = state.memberCounts[waiter.group], count >= waiter.members else { continue }
                    ready.append(waiter.continuation)
                    state.viewWaiters[token] = nil
                }
                return (state.eventHandler, state.eventContinuations, ready)
            }
            handler?(event)
            for continuation in continuations { continuation.yield(event) }
            for waiter in ready { waiter.resume(returning: .success(())) }
        case .statistics(let token, let snapshot):
            resumeStatisticsWaiter(token, with: .success(snapshot))
        case .warning(let text):
            warn(text)
        case .acknowledged:
            let (waiters, settled) = state.withLock { state in
                defer { state.windowWaiters.removeAll() }
                var settled: [CheckedContinuation<Result<Void, QSMError>, Never>] = []
                if window.inUse == 0 {
                    settled = Array(state.acknowledgementWaiters.values)
                    state.acknowledgementWaiters.removeAll()
                }
                return (Array(state.windowWaiters.values), settled)
            }
            for waiter in waiters { waiter.resume() }
            for waiter in settled { waiter.resume(returning: .success(())) }
        }
    }
}

/// A value confined to the core thread, carried through the request queue to it.
/// `release()` lets it go once the core thread has ended, so that what it owns (the
/// engine's sockets, its GMS connection) is freed at `stop()`, not when the last
/// reference to the node goes.
final class CoreConfined<Value: AnyObject>: @unchecked Sendable {
    private(set) var value: Value!
    init(_ value: Value) { self.value = value }
    func release() { value = nil }
}

private final class StopCore: AlarmHandler {
    func alarmFired(tag: UInt64, deadline: Instant, core: EventCore) { core.handle.stop() }
}
