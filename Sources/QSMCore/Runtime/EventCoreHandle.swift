import Synchronization

/// The thread-safe side of an `EventCore`: application threads submit requests and stop
/// the core through it. It never blocks the core and takes no lock.
///
/// Waking is coalesced: a submitter writes the eventfd only if the core announced it is
/// about to sleep and no other submitter has woken it since, so a busy core costs
/// submitters one atomic load per request and no syscall.
package final class EventCoreHandle: Sendable {
    let requests: RequestQueue<CoreRequest>
    private let coreWakeup: ConsumerWakeup
    private let stopRequested = Atomic<Bool>(false)
    private let wakeupSignals = Atomic<Int>(0)

    init(requestQueueCapacity: Int) throws(SystemError) {
        requests = RequestQueue(capacity: requestQueueCapacity)
        coreWakeup = try ConsumerWakeup()
    }

    /// Queues a request for the core thread. Returns false if the request queue is full
    /// (the request is not queued, and is let go); never blocks.
    package func trySubmit(_ request: consuming CoreRequest) -> Bool {
        submitOrReturn(consume request) == nil
    }

    /// Queues a request for the core thread, or hands it back if the request queue is
    /// full; never blocks.
    package func submitOrReturn(_ request: consuming CoreRequest) -> CoreRequest? {
        if let refused = requests.enqueueOrReturn(consume request) { return refused }
        wakeCoreIfSleeping()
        return nil
    }

    /// Queues `body` to run on the core thread; false if the queue is full.
    @discardableResult
    package func tryPerform(_ body: @escaping @Sendable (EventCore) -> Void) -> Bool {
        trySubmit(.perform(body))
    }

    /// Asks the core to stop after its current turn. Safe from any thread, and from the
    /// core thread itself.
    package func stop() {
        stopRequested.store(true, ordering: .sequentiallyConsistent)
        wakeup.signal()
    }

    package var isStopRequested: Bool { stopRequested.load(ordering: .sequentiallyConsistent) }

    /// How many times a submitter had to write the eventfd.
    package var wakeupSignalCount: Int { wakeupSignals.load(ordering: .relaxed) }

    /// The eventfd the core's epoll watches for wake-ups.
    var wakeup: WakeupEvent { coreWakeup.event }

    private func wakeCoreIfSleeping() {
        if coreWakeup.signalIfSleeping() { wakeupSignals.add(1, ordering: .relaxed) }
    }

    // MARK: Core side

    /// Announces that the core will block. Returns false (and cancels the announcement)
    /// if a request or a stop arrived meanwhile, in which case the core must not block.
    func prepareToSleep() -> Bool {
        coreWakeup.prepareToSleep { requests.hasReadyElement || isStopRequested }
    }

    func finishedSleeping() { coreWakeup.finishedSleeping() }
}
