import Synchronization
import QSMProtocol

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
    /// Something the operator must hear about (rare; see `QSMNodeConfiguration.onWarning`).
    case warning(String)
}

/// The flow-control window as application threads see it: a publisher reserves a slot
/// (one message and its payload's bytes) before its message goes to the core, and the
/// core returns slots as messages are acknowledged, so "would block" is answered without
/// asking the core. Both bounds hold at once: the bytes bound memory and the time to
/// stability for large messages, the messages bound per-message state for small ones.
final class PublishWindow: Sendable {
    /// The machine's own rule, applied to what this mirror counts (an empty window takes
    /// one message of any size, so no message waits forever).
    private let rule: WindowFlowControl
    /// Messages (above `byteBits`) and bytes (below) reserved and not yet released, in one
    /// word, so that a reservation checks and takes both in one step.
    private let used = Atomic<UInt64>(0)
    /// The size of the last message refused for want of room: what a waiter for room
    /// waits for (waking for less would only have it refused again, in a busy loop).
    private let refusedBytes = Atomic<Int>(0)
    /// Room for `ProtocolConfiguration.largestWindowMessages` and `largestWindowBytes`,
    /// with one message of the largest size above the byte capacity.
    private static let byteBits: UInt64 = 40
    private static let byteMask: UInt64 = (1 << byteBits) - 1

    init(capacity: Int, byteCapacity: Int) {
        precondition(capacity >= 1 && capacity <= ProtocolConfiguration.largestWindowMessages)
        precondition(byteCapacity >= 1 && byteCapacity <= ProtocolConfiguration.largestWindowBytes)
        rule = WindowFlowControl(messages: capacity, bytes: byteCapacity)
    }

    /// Takes a slot for a message of `bytes` (at most the largest message), or says
    /// there is no room.
    func tryReserve(bytes: Int) -> Bool {
        var current = used.load(ordering: .acquiring)
        while true {
            guard rule.admits(bytes: bytes, inFlightMessages: Int(current >> Self.byteBits),
                              inFlightBytes: Int(current & Self.byteMask)) else {
                refusedBytes.store(bytes, ordering: .relaxed)
                return false
            }
            let desired = current &+ (1 << Self.byteBits) &+ UInt64(bytes)
            let (exchanged, original) = used.compareExchange(expected: current, desired: desired, ordering: .acquiringAndReleasing)
            if exchanged { return true }
            current = original
        }
    }

    /// Gives back the slots of `messages` messages that held `bytes` in all.
    func release(messages: Int, bytes: Int) {
        used.wrappingSubtract((UInt64(messages) << Self.byteBits) &+ UInt64(bytes), ordering: .releasing)
    }

    /// Messages reserved and not yet released.
    var inUse: Int { Int(used.load(ordering: .acquiring) >> Self.byteBits) }

    /// Whether a message the size of the last one refused would find room now.
    var hasRoom: Bool {
        let current = used.load(ordering: .acquiring)
        return rule.admits(bytes: refusedBytes.load(ordering: .relaxed), inFlightMessages: Int(current >> Self.byteBits),
                           inFlightBytes: Int(current & Self.byteMask))
    }
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
