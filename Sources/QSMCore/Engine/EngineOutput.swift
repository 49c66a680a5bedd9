import Synchronization

/// What the core hands to the application side, through a lock-free queue.
enum EngineOutput: Sendable {
    case delivery(QSMDelivery)
    case membership(MembershipEvent)
    /// Boxed: a statistics snapshot is several hundred bytes, and every slot of the output
    /// queue is as large as the largest case, so an inline snapshot would multiply the
    /// queue's memory for the one rare output that needs the room.
    indirect case statistics(token: UInt64, QSMNodeStatistics)
    /// Published messages that left the window: acknowledged by all their regions, or
    /// refused after being taken (frees window slots; wakes window and acknowledgement
    /// waiters).
    case acknowledged(count: Int)
}

/// The flow-control window as application threads see it: a publisher reserves a slot
/// before its message goes to the core, and the core returns slots as messages are
/// acknowledged, so "would block" is answered without asking the core.
final class PublishWindow: Sendable {
    let capacity: Int
    private let reserved = Atomic<Int>(0)
    private let released = Atomic<Int>(0)

    init(capacity: Int) { self.capacity = capacity }

    func tryReserve() -> Bool {
        while true {
            let taken = reserved.load(ordering: .acquiring)
            if taken - released.load(ordering: .acquiring) >= capacity { return false }
            if reserved.compareExchange(expected: taken, desired: taken + 1, ordering: .acquiringAndReleasing).exchanged {
                return true
            }
        }
    }

    func release(_ count: Int) { released.add(count, ordering: .releasing) }

    var inUse: Int { reserved.load(ordering: .acquiring) - released.load(ordering: .acquiring) }
}

/// Set by the core while it holds outputs back because the queue to the application was
/// full, so that the dispatcher asks it to hand them over only when there are some.
final class HeldOutputsFlag: Sendable {
    private let value = Atomic<Bool>(false)
    func set(_ held: Bool) {
        if value.load(ordering: .relaxed) != held { value.store(held, ordering: .releasing) }
    }
    var isSet: Bool { value.load(ordering: .acquiring) }
}
