import Synchronization

/// Wakes a consumer thread that blocks on an eventfd, writing it only when the consumer
/// announced that it is about to sleep: a busy consumer costs its producer one atomic
/// load and no syscall. The event core's request queue and the engine's delivery queue
/// both wake their consumer through it.
///
/// Sequentially consistent on both sides (the producer's check here, the consumer's
/// announcement with the queue's own seq-cst publication) so that either the consumer
/// sees the new work or the producer sees the consumer asleep.
final class ConsumerWakeup: Sendable {
    let event: WakeupEvent
    private let sleeping = Atomic<Bool>(false)

    init() throws(SystemError) { event = try WakeupEvent() }

    /// Producer side: wakes the consumer if it is asleep or about to be. Returns whether
    /// it wrote the eventfd.
    @discardableResult
    func signalIfSleeping() -> Bool {
        guard sleeping.load(ordering: .sequentiallyConsistent), sleeping.exchange(false, ordering: .sequentiallyConsistent) else {
            return false
        }
        event.signal()
        return true
    }

    /// Producer side, for a queue that publishes with release stores (`HandoffQueue`):
    /// a full fence first, so that the publication is visible before the check reads
    /// the consumer's announcement (a release store may otherwise wait in the store
    /// buffer past the load, and both sides miss each other).
    @discardableResult
    func signalIfSleepingAfterFence() -> Bool {
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        return signalIfSleeping()
    }

    /// Consumer side: announces sleep. Returns false (announcement withdrawn) if
    /// `hasWork` finds something after all, in which case the consumer must not block.
    func prepareToSleep(hasWork: () -> Bool) -> Bool {
        sleeping.store(true, ordering: .sequentiallyConsistent)
        if hasWork() {
            sleeping.store(false, ordering: .sequentiallyConsistent)
            return false
        }
        return true
    }

    /// Consumer side, after the wait: no wake-up is owed any more. Draining the eventfd
    /// is the consumer's business (only when it was readable).
    func finishedSleeping() {
        sleeping.store(false, ordering: .sequentiallyConsistent)
    }
}
