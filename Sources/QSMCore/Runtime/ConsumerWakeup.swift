import Synchronization

/// Wakes a consumer thread that blocks on an eventfd, writing it only when the consumer
/// announced that it is about to sleep: a busy consumer costs its producer one atomic
/// load per batch and no syscall (the same handshake the event core uses for requests).
final class ConsumerWakeup: Sendable {
    let event: WakeupEvent
    private let sleeping = Atomic<Bool>(false)

    init() throws(SystemError) { event = try WakeupEvent() }

    /// Producer side: wakes the consumer if it is asleep or about to be.
    func signalIfSleeping() {
        if sleeping.load(ordering: .sequentiallyConsistent), sleeping.exchange(false, ordering: .sequentiallyConsistent) {
            event.signal()
        }
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

    func finishedSleeping() {
        sleeping.store(false, ordering: .sequentiallyConsistent)
        event.drain()
    }
}
