/// How late alarms fired over one measuring interval (section 4.3, Fig. 4.37-4.38: late
/// alarms mean late tokens, and late tokens mean more memory held by senders).
public struct AlarmLatenessInterval: Sendable, Equatable {
    /// Alarms that fired in the interval.
    public var alarmsFired: Int
    /// Their mean lateness past the deadline, in nanoseconds.
    public var meanNanoseconds: Int64
    /// The largest lateness, in nanoseconds.
    public var maxNanoseconds: Int64
}

/// Accumulates alarm lateness until the interval is taken.
struct AlarmLatenessMeter {
    private var count = 0
    private var sum: Int64 = 0
    private var maximum: Int64 = 0

    mutating func record(latenessNanoseconds: Int64) {
        let lateness = max(0, latenessNanoseconds)
        count += 1
        sum &+= lateness
        maximum = max(maximum, lateness)
    }

    /// Returns the interval so far and starts a new one.
    mutating func takeInterval() -> AlarmLatenessInterval {
        defer { self = AlarmLatenessMeter() }
        return AlarmLatenessInterval(alarmsFired: count, meanNanoseconds: count == 0 ? 0 : sum / Int64(count),
                                     maxNanoseconds: maximum)
    }
}
