/// A point on a monotonic time line, in nanoseconds from an arbitrary origin.
///
/// The protocol never reads a clock: it is handed `Instant`s by whoever drives it (the
/// event core with the real monotonic clock, or a simulator with virtual time).
package struct Instant: Hashable, Comparable, Sendable, CustomStringConvertible {
    package var nanoseconds: Int64

    package init(nanoseconds: Int64) { self.nanoseconds = nanoseconds }

    package static let zero = Instant(nanoseconds: 0)

    package func advanced(byNanoseconds delta: Int64) -> Instant {
        Instant(nanoseconds: nanoseconds &+ delta)
    }

    package func advanced(by duration: Duration) -> Instant {
        advanced(byNanoseconds: duration.totalNanoseconds)
    }

    package func nanoseconds(since earlier: Instant) -> Int64 { nanoseconds &- earlier.nanoseconds }

    package static func < (lhs: Instant, rhs: Instant) -> Bool { lhs.nanoseconds < rhs.nanoseconds }

    package var description: String { "\(Double(nanoseconds) / 1e9)s" }
}

extension Duration {
    /// The duration in whole nanoseconds, saturating at the bounds of `Int64`.
    package var totalNanoseconds: Int64 {
        let (seconds, attoseconds) = components
        let (scaled, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return seconds < 0 ? Int64.min : Int64.max }
        let (sum, overflow2) = scaled.addingReportingOverflow(attoseconds / 1_000_000_000)
        if overflow2 { return seconds < 0 ? Int64.min : Int64.max }
        return sum
    }
}
