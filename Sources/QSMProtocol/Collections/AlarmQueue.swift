/// Names one scheduled alarm so it can be cancelled or moved. A handle goes stale once its
/// alarm fires or is cancelled; operations on a stale handle do nothing.
package struct AlarmHandle: Hashable, Sendable {
    let slot: Int32
    let generation: UInt32
}

/// A queue of payloads ordered by deadline, ties broken first-scheduled-first (FIFO).
///
/// Moving an alarm with `reschedule` places it after every alarm already scheduled for the
/// same deadline, exactly as cancelling it and scheduling it anew would.
package protocol AlarmQueue<Payload>: AnyObject {
    associatedtype Payload

    /// Alarms pending.
    var count: Int { get }

    /// Schedules `payload` for `deadline`.
    func schedule(at deadline: Instant, _ payload: Payload) -> AlarmHandle

    /// Removes a pending alarm and returns its payload; nil if it already fired or was
    /// cancelled.
    @discardableResult
    func cancel(_ handle: AlarmHandle) -> Payload?

    /// Moves a pending alarm to `deadline`, keeping its handle; false if it is not pending.
    @discardableResult
    func reschedule(_ handle: AlarmHandle, to deadline: Instant) -> Bool

    /// The earliest deadline, if any alarm is pending.
    func nextDeadline() -> Instant?

    /// Removes and returns the earliest alarm if its deadline is at or before `limit`.
    func popFirst(notAfter limit: Instant) -> (deadline: Instant, payload: Payload)?
}
