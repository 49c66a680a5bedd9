/// The single-threaded event core (section 4.2.2, Fig. 4.13-4.14).
///
/// One thread owns all protocol state and polls three queues round-robin, each for at most
/// its quantum: the I/O queue (epoll), the alarm queue (a splay tree) and the lock-free
/// request queue through which other threads reach it. I/O is handled in two stages, like
/// interrupts: ready sockets are first drained into six internal priority queues, then the
/// queues are processed highest priority first (inbound data in slices, with control
/// served between them). Sending follows the pull model: feeds
/// register intent with a socket and the socket pulls datagrams when it can take them.
///
/// Everything here except `handle` must be used on the thread that calls `run()`.
package final class EventCore {
    package let configuration: EventCoreConfiguration
    /// The thread-safe side: submit requests, stop.
    package let handle: EventCoreHandle
    /// The shared packet buffer pool.
    package let pool: PacketBufferPool
    // Stored properties are `@exclusivity(unchecked)`: this state is confined to one thread
    // and never accessed overlappingly; the runtime's dynamic checks cost about 5% of a
    // receiver's CPU (perf, `qsm-bench run`).
    /// When the current event began being handled (refreshed at least every 16 events).
    @exclusivity(unchecked) package private(set) var now: Instant
    @exclusivity(unchecked) package internal(set) var statistics = EventCoreStatistics()

    private let epoll: Epoll
    let receiveBatch: DatagramBatch
    /// A socket that receives coalesced datagrams is read into its own batch of this
    /// many messages (64 KB each), `coalescedMessagesPerReceive` at a time, until about
    /// `coalescedBytesPerDrain` have come or the batch is full. Its datagrams are handled
    /// in place, before the socket is read again: few enough bytes that they are still in
    /// the processor's cache when the protocol reads them (issue 15, `bench/README.md`).
    static let coalescedBatchCapacity = 64
    static let coalescedMessagesPerReceive = 8
    static let coalescedBytesPerDrain = 256 << 10
    @exclusivity(unchecked) var registrations: [Registration?] = []
    @exclusivity(unchecked) private var generations: [UInt32] = []
    @exclusivity(unchecked) private var freeSlots: [Int32] = []
    @exclusivity(unchecked) var queues: [RingBuffer<IOEvent>]
    @exclusivity(unchecked) var deferredOutput: [UInt64] = []
    @exclusivity(unchecked) var discardInboundUntil = Instant.zero
    /// Injected faults (experiments only): a share of inbound datagrams, and outbound
    /// ones too if asked, thrown away until `injectedFaultUntil`.
    @exclusivity(unchecked) private var injectedLossPercent: UInt64 = 100
    @exclusivity(unchecked) var injectedOutboundDrop = false
    @exclusivity(unchecked) private var injectionRandom = SplitMix64(seed: UInt64(bitPattern: MonotonicClock.now().nanoseconds))
    /// Called after every I/O turn that handled at least one event, and between slices
    /// of inbound data within a turn. Held strongly, as registrations hold their
    /// handlers, until `shutDown()`: a weak reference gave the engine a side table, and
    /// then every retain and release of it, several per packet, took the runtime's slow
    /// path (perf: 1.5% of a 100-byte run, and 0.6% more for loading the reference).
    package var ioTurnObserver: (any IOTurnObserver)?
    /// Inbound data events handled before control gets another look within a turn.
    static let inboundDataSlice = 32
    /// Where `.publish` requests go (they are refused silently without one: only an
    /// engine submits them, after setting itself here). Held strongly until
    /// `shutDown()`, as `ioTurnObserver`.
    package var publishHandler: (any PublishHandler)?

    /// Whether datagrams read off the sockets still wait to be handed to their handlers
    /// (an I/O turn ran out of its quantum before it got through them).
    package var hasQueuedInput: Bool {
        !queues[IOPriority.networkInboundControl.rawValue].isEmpty || !queues[IOPriority.networkInboundData.rawValue].isEmpty
    }
    private let alarms = SplayAlarmQueue<AlarmEntry>(initialCapacity: 256)
    @exclusivity(unchecked) private var lateness = AlarmLatenessMeter()
    private let ioQuantumNanoseconds: Int64
    /// When the core looks again rather than sleep (it has worked when it handled an
    /// I/O event or a request).
    @exclusivity(unchecked) private var busyPolling: BusyPolling
    private let alarmQuantumNanoseconds: Int64
    private let requestQuantumNanoseconds: Int64?

    private static let wakeupToken = UInt64.max

    private struct AlarmEntry {
        let handler: any AlarmHandler
        let tag: UInt64
    }

    /// Creates a core; it does nothing until `run()`.
    /// - Throws: `ConfigurationError` for an invalid setting, `SystemError` if epoll or the
    ///   eventfd cannot be created.
    package init(configuration: EventCoreConfiguration = EventCoreConfiguration()) throws {
        try configuration.validate()
        self.configuration = configuration
        handle = try EventCoreHandle(requestQueueCapacity: configuration.requestQueueCapacity)
        pool = PacketBufferPool(bufferCount: configuration.packetBufferCount,
                                bufferCapacity: configuration.packetBufferCapacity)
        epoll = try Epoll()
        receiveBatch = DatagramBatch(capacity: configuration.datagramBatchSize, pool: pool)
        queues = IOPriority.allCases.map { _ in RingBuffer<IOEvent>(initialCapacity: 256) }
        ioQuantumNanoseconds = configuration.ioQuantum.totalNanoseconds
        alarmQuantumNanoseconds = configuration.alarmQuantum.totalNanoseconds
        requestQuantumNanoseconds = configuration.requestQuantum?.totalNanoseconds
        now = MonotonicClock.now()
        busyPolling = BusyPolling(attempts: configuration.busyPollAttempts,
                                  windowNanoseconds: configuration.busyPoll.totalNanoseconds,
                                  extendsWhileFrequent: true, now: now)
        try epoll.add(handle.wakeup.descriptor, interest: .readable, token: Self.wakeupToken)
    }

    // MARK: Registration

    /// Registers a UDP socket: its datagrams go to `handler`, and feeds may register
    /// intent to send on it. The core keeps the socket open until it is unregistered.
    ///
    /// - Parameter handler: receives the socket's datagrams; nil makes the socket
    ///   send-only. A send-only socket is kept out of epoll except while the kernel pushes
    ///   back on output: an epoll entry on a socket makes the kernel run a wake-up for
    ///   every packet it frees, a measurable per-packet cost at high rates.
    package func registerDatagramSocket(_ socket: UDPSocket, traffic: TrafficClass,
                                       handler: (any DatagramHandler)?) throws(SystemError) -> RegistrationID {
        let state = DatagramSocketState(
            socket: socket, handler: handler,
            pending: DatagramBatch(capacity: configuration.datagramBatchSize, pool: pool))
        if configuration.segmentationOffload, socket.supportsSegmentationOffload {
            state.pending.segmentsSends = true
            statistics.segmentationOffload = true
        }
        if configuration.receiveOffload, handler != nil, socket.enableReceiveOffload() {
            state.coalesces = true
            statistics.receiveOffload = true
        }
        return try register(descriptor: socket.descriptor, medium: .network, traffic: traffic,
                            interest: state.restingInterest, kind: .datagramSocket(state))
    }

    /// Registers any other descriptor (a stream socket, a pipe): `handler` is told when it
    /// is readable or writable, as `interest` asks, and does its own I/O.
    package func registerDescriptor(_ descriptor: Int32, medium: IOMedium, traffic: TrafficClass,
                                   readable: Bool, writable: Bool,
                                   handler: any DescriptorHandler) throws(SystemError) -> RegistrationID {
        var interest: Epoll.Interest = []
        if readable { interest.insert(.readable) }
        if writable { interest.insert(.writable) }
        return try register(descriptor: descriptor, medium: medium, traffic: traffic,
                            interest: interest, kind: .descriptor(handler))
    }

    /// Changes which readiness of a registered descriptor is reported.
    package func setInterest(_ id: RegistrationID, readable: Bool, writable: Bool) throws(SystemError) {
        guard let registration = lookup(id.token), case .descriptor = registration.kind else { return }
        var interest: Epoll.Interest = []
        if readable { interest.insert(.readable) }
        if writable { interest.insert(.writable) }
        try updateInterest(registration, interest)
    }

    /// Removes a registration; events already queued for it are discarded. Datagrams
    /// built for it but not yet sent are dropped (their buffers return to the pool).
    package func unregister(_ id: RegistrationID) {
        guard let registration = lookup(id.token) else { return }
        if !registration.interest.isEmpty { try? epoll.remove(registration.descriptor) }
        if case .datagramSocket(let state) = registration.kind { state.pending.releaseAll() }
        registrations[Int(id.slot)] = nil
        generations[Int(id.slot)] &+= 1
        freeSlots.append(id.slot)
    }

    /// Lets go of everything the core holds once its thread has ended for good: every
    /// registration, alarm, queued event and request, and the handlers. Registrations
    /// and alarms hold their handlers (the engine) strongly, and the engine holds this
    /// core: without this, a stopped node's engine, sockets and epoll descriptor were
    /// never freed (4 descriptors per node). Only from the thread that owns the core
    /// now, after `run()` has returned (or never ran). Returns the publications it let go
    /// unsent (also counted in `statistics.publicationsDiscardedAtStop`).
    @discardableResult
    package func shutDown() -> Int {
        for registration in registrations { if let registration { unregister(registration.id) } }
        while alarms.popFirst(notAfter: Instant(nanoseconds: .max)) != nil {}
        for index in queues.indices { while queues[index].popFirst() != nil {} }
        deferredOutput.removeAll()
        var discarded = 0
        while let request = handle.requests.dequeue() {
            if case .publish = request { discarded += 1 }
        }
        statistics.publicationsDiscardedAtStop += discarded
        publishHandler = nil
        ioTurnObserver = nil
        return discarded
    }

    /// Records that `feed` wants to send on the socket `id`; the socket will pull from it
    /// (control feeds first) when it can take output. Idempotent while the intent stands.
    package func registerIntent(_ feed: any PacketFeed, on id: RegistrationID, traffic: TrafficClass) {
        guard let registration = lookup(id.token), case .datagramSocket(let state) = registration.kind else { return }
        state.registerIntent(feed, traffic: traffic)
        queueOutputIfReady(registration, state)
    }

    /// Stops or resumes reading a datagram socket. Paused, its datagrams wait in the
    /// kernel (and beyond its buffer are lost there, to be recovered by the protocol):
    /// how a consumer that cannot keep up pushes back without the core buffering.
    package func setReceiving(_ id: RegistrationID, _ enabled: Bool) throws(SystemError) {
        guard let registration = lookup(id.token), case .datagramSocket(let state) = registration.kind else { return }
        var interest = registration.interest
        if enabled && state.handler != nil { interest.insert(.readable) } else { interest.remove(.readable) }
        try updateInterest(registration, interest)
    }

    /// Withdraws a feed's intent on socket `id`.
    package func cancelIntent(_ feed: any PacketFeed, on id: RegistrationID) {
        guard let registration = lookup(id.token), case .datagramSocket(let state) = registration.kind else { return }
        state.cancelIntent(feed)
    }

    private func register(descriptor: Int32, medium: IOMedium, traffic: TrafficClass,
                          interest: Epoll.Interest, kind: Registration.Kind) throws(SystemError) -> RegistrationID {
        let slot: Int32
        if let reused = freeSlots.popLast() {
            slot = reused
        } else {
            slot = Int32(registrations.count)
            registrations.append(nil)
            generations.append(0)
        }
        let id = RegistrationID(slot: slot, generation: generations[Int(slot)])
        let registration = Registration(id: id, descriptor: descriptor, medium: medium, traffic: traffic,
                                        interest: interest, kind: kind)
        do throws(SystemError) {
            if !interest.isEmpty { try epoll.add(descriptor, interest: interest, token: id.token) }
        } catch {
            freeSlots.append(slot)
            throw error
        }
        registrations[Int(slot)] = registration
        return id
    }

    @inline(__always)
    private func lookup(_ token: UInt64) -> Registration? {
        let slot = Int(UInt32(truncatingIfNeeded: token))
        guard slot < registrations.count, let registration = registrations[slot],
              registration.id.token == token else { return nil }
        return registration
    }

    func updateInterest(_ registration: Registration, _ interest: Epoll.Interest) throws(SystemError) {
        guard interest != registration.interest else { return }
        if interest.isEmpty {
            try epoll.remove(registration.descriptor)
        } else if registration.interest.isEmpty {
            try epoll.add(registration.descriptor, interest: interest, token: registration.id.token)
        } else {
            try epoll.modify(registration.descriptor, interest: interest, token: registration.id.token)
        }
        registration.interest = interest
    }

    // MARK: Alarms

    /// Schedules `handler.alarmFired(tag:...)` for `deadline`. O(log n) amortized.
    @discardableResult
    package func scheduleAlarm(at deadline: Instant, handler: any AlarmHandler, tag: UInt64 = 0) -> AlarmHandle {
        alarms.schedule(at: deadline, AlarmEntry(handler: handler, tag: tag))
    }

    /// Cancels a pending alarm; false if it already fired or was cancelled.
    @discardableResult
    package func cancelAlarm(_ alarm: AlarmHandle) -> Bool {
        alarms.cancel(alarm) != nil
    }

    /// Moves a pending alarm; false if it already fired or was cancelled.
    @discardableResult
    package func rescheduleAlarm(_ alarm: AlarmHandle, to deadline: Instant) -> Bool {
        alarms.reschedule(alarm, to: deadline)
    }

    /// Alarms pending.
    package var pendingAlarmCount: Int { alarms.count }

    /// Fault injection for experiments: every datagram that arrives before `deadline` is
    /// read and thrown away (counted in `droppedByInjectedLoss`), as if the network had
    /// lost it on the way in.
    package func discardInbound(until deadline: Instant) {
        injectFault(inboundLossPercent: 100, dropOutbound: false, until: deadline)
    }

    /// Fault injection for experiments, as a network fault would act on this host: until
    /// `deadline`, `inboundLossPercent`% of arriving datagrams (chosen at random) are
    /// read and thrown away, and with `dropOutbound` every datagram this core would send
    /// is thrown away too (a host cut off). All counted in `droppedByInjectedLoss`. A
    /// deadline in the past ends the fault.
    package func injectFault(inboundLossPercent: Int, dropOutbound: Bool, until deadline: Instant) {
        injectedLossPercent = UInt64(min(max(inboundLossPercent, 0), 100))
        injectedOutboundDrop = dropOutbound
        discardInboundUntil = deadline
    }

    func injectedInboundLoss() -> Bool {
        guard now < discardInboundUntil else { return false }
        return injectedLossPercent >= 100 || injectionRandom.next() % 100 < injectedLossPercent
    }

    /// Alarm lateness since the last call (count, mean, max); starts a new interval.
    package func takeAlarmLatenessInterval() -> AlarmLatenessInterval {
        lateness.takeInterval()
    }

    // MARK: The loop

    /// Runs the core on the calling thread until `handle.stop()` is called.
    /// - Throws: `SystemError` only if epoll itself fails (it cannot on a valid setup).
    package func run() throws(SystemError) {
        while !handle.isStopRequested {
            try runTurn()
        }
    }

    /// One round-robin pass: I/O, then alarms, then requests. Blocks in epoll only when
    /// no queue has work, and then no longer than `maximumWaitNanoseconds` (nil: until the
    /// next alarm or an event).
    func runTurn(maximumWaitNanoseconds: Int64? = nil) throws(SystemError) {
        statistics.turns += 1
        try ioTurn(maximumWaitNanoseconds: maximumWaitNanoseconds)
        alarmTurn()
        requestTurn()
    }

    private func idleWaitNanoseconds(cap: Int64?) -> Int64 {
        for queue in queues where !queue.isEmpty { return 0 }
        var wait: Int64 = -1
        if let deadline = alarms.nextDeadline() {
            wait = max(0, deadline.nanoseconds(since: MonotonicClock.now()))
        }
        if let cap, cap >= 0, wait < 0 || cap < wait { wait = cap }
        return wait
    }

    private func ioTurn(maximumWaitNanoseconds: Int64?) throws(SystemError) {
        var wait = idleWaitNanoseconds(cap: maximumWaitNanoseconds)
        var sleeping = false
        if wait != 0, busyPolling.looksAgain(now: MonotonicClock.now()) {
            // Traffic is flowing: look again after letting other threads run, instead of
            // paying a sleep and a wake-up for the next packets (see `BusyPolling`).
            statistics.busyPolls += 1
            SystemThread.yieldProcessor()
            wait = 0
        }
        if wait != 0 {
            statistics.sleepAnnouncements += 1
            sleeping = handle.prepareToSleep()
        }
        if sleeping { statistics.sleeps += 1 } else { wait = 0 }
        let ready = try epoll.wait(timeoutNanoseconds: wait)
        if sleeping { handle.finishedSleeping() }
        now = MonotonicClock.now()

        // Stage 1: move ready events into the priority queues. Control sockets are drained
        // first so that a data flood cannot take every buffer before a token arrives.
        for pass in [TrafficClass.control, .data] {
            for index in 0..<ready {
                let event = epoll.event(at: index)
                if event.token == Self.wakeupToken {
                    if pass == .control { handle.wakeup.drain() }
                    continue
                }
                guard let registration = lookup(event.token), registration.traffic == pass else { continue }
                stageEvent(event, for: registration)
            }
        }

        // Stage 2: process, highest priority first, until the quantum runs out.
        let end = now.advanced(byNanoseconds: ioQuantumNanoseconds)
        var handled = 0
        defer {
            if handled > 0 { busyPolling.worked(at: now) }
        }
        // Inbound data is handled in slices: after each, the observer settles (what the
        // slice produced, a token to pass on or a repair to send, is queued as output)
        // and control, inbound or outbound, goes ahead of the rest of the data. A whole
        // socket backlog handled first would hold tokens and repairs behind it: the
        // priority inversion of the seed's section 4.3.3.
        let inboundData = IOPriority.networkInboundData.rawValue
        var priority = 0
        var sliceEnd = Self.inboundDataSlice
        processing: while priority < queues.count {
            guard let event = queues[priority].popFirst() else {
                // Work a lower queue queued above it (output it asked for) runs first.
                priority = (0..<priority).first { !queues[$0].isEmpty } ?? priority + 1
                continue
            }
            process(event)
            handled += 1
            if handled & 15 == 0 {
                now = MonotonicClock.now()
                if now >= end {
                    statistics.ioQuantumExpirations += 1
                    break processing
                }
            }
            if priority == inboundData, handled >= sliceEnd, !queues[priority].isEmpty {
                sliceEnd = handled + Self.inboundDataSlice
                statistics.inboundDataSlices += 1
                ioTurnObserver?.ioBatchEnded(core: self)
                priority = 0
            }
        }
        if handled > 0 { ioTurnObserver?.ioBatchEnded(core: self) }
        for token in deferredOutput {
            queues[IOPriority.networkOutboundData.rawValue].append(.output(registration: token))
        }
        deferredOutput.removeAll(keepingCapacity: true)
    }

    private func stageEvent(_ event: Epoll.Event, for registration: Registration) {
        switch registration.kind {
        case .datagramSocket(let state):
            if event.isReadable || event.isError { drain(registration) }
            if event.isWritable {
                state.writeBlocked = false
                try? updateInterest(registration, state.restingInterest)
                queueOutputIfReady(registration, state)
            }
        case .descriptor:
            let token = registration.id.token
            if event.isReadable || event.isError {
                queues[IOPriority.inbound(registration.medium, registration.traffic).rawValue]
                    .append(.descriptorReadable(registration: token))
            }
            if event.isWritable {
                queues[IOPriority.outbound(registration.medium, registration.traffic).rawValue]
                    .append(.descriptorWritable(registration: token))
            }
        }
    }

    private func process(_ event: IOEvent) {
        switch event {
        case .datagram(let token, let buffer, let length, let source):
            defer { pool.release(buffer) }
            guard let registration = lookup(token), case .datagramSocket(let state) = registration.kind else { return }
            statistics.datagramsReceived += 1
            statistics.bytesReceived += Int(length)
            let bytes = UnsafeRawBufferPointer(rebasing: pool.bytes(of: buffer)[0..<Int(length)])
            state.handler?.datagramReceived(bytes, from: source, on: registration.id, core: self)
        case .coalescedDatagram(let token, let offset, let length, let source):
            guard let registration = lookup(token), case .datagramSocket(let state) = registration.kind,
                  let batch = state.coalescedBatch else { return }
            state.coalescedInQueue -= 1
            statistics.datagramsReceived += 1
            statistics.bytesReceived += Int(length)
            state.handler?.datagramReceived(batch.bytes(offset: Int(offset), length: Int(length)), from: source,
                                            on: registration.id, core: self)
        case .output(let token):
            guard let registration = lookup(token), case .datagramSocket(let state) = registration.kind else { return }
            state.outputQueued = false
            pullOutput(registration, state)
        case .descriptorReadable(let token):
            guard let registration = lookup(token), case .descriptor(let handler) = registration.kind else { return }
            handler.descriptorReadable(registration.id, core: self)
        case .descriptorWritable(let token):
            guard let registration = lookup(token), case .descriptor(let handler) = registration.kind else { return }
            handler.descriptorWritable(registration.id, core: self)
        }
    }

    // MARK: Alarms and requests

    private func alarmTurn() {
        now = MonotonicClock.now()
        let end = now.advanced(byNanoseconds: alarmQuantumNanoseconds)
        while let (deadline, entry) = alarms.popFirst(notAfter: now) {
            lateness.record(latenessNanoseconds: now.nanoseconds(since: deadline))
            statistics.alarmsFired += 1
            entry.handler.alarmFired(tag: entry.tag, deadline: deadline, core: self)
            now = MonotonicClock.now()
            if now >= end {
                statistics.alarmQuantumExpirations += 1
                return
            }
        }
    }

    private func requestTurn() {
        // Held once per turn: read through `handle` inside the loop, the queue was
        // retained and released per request, on a count line the submitting threads
        // share (3% of a publishing core's samples at 100 bytes).
        let requests = handle.requests
        let limit = requests.capacity
        let end = requestQuantumNanoseconds.map { MonotonicClock.now().advanced(byNanoseconds: $0) }
        var handled = 0
        // Loaded (and retained) once per turn, not per request.
        var publishHandler: (any PublishHandler)?
        var loadedHandler = false
        // Whether `publishHandler` took publications since it was last told they ended.
        var publishing = false
        while handled < limit, let request = requests.dequeue() {
            // Consumed: the payload and the group's name move on to the handler, where
            // binding them from a borrowed request copied and released each.
            switch consume request {
            case .perform(let body):
                if publishing { publishHandler?.publishesEnded(); publishing = false }
                body(self)
                loadedHandler = false  // the body may have changed the handler
            case .publish(let payload, let group, let slot):
                if !loadedHandler {
                    publishHandler = self.publishHandler
                    loadedHandler = true
                }
                publishHandler?.publishRequested(payload, to: group, slot: slot)
                publishing = true
            }
            handled += 1
            if let end, MonotonicClock.now() >= end { break }
        }
        if publishing { publishHandler?.publishesEnded() }
        statistics.requestsProcessed += handled
        if handled > 0 {
            now = MonotonicClock.now()
            busyPolling.worked(at: now)
        }
    }
}
