/// A point on a monotonic time line, in nanoseconds from an arbitrary origin.
///
/// The protocol never reads a clock: it is handed `Instant`s by whoever drives it (the
/// event core with the real monotonic clock, or a simulator with virtual time).
///
/// Public (though applications do not need it) so that the event core, in another
/// module, gets these one-instruction operations inlined: as `package` declarations they
/// were called through the `Comparable` witness table on every event (perf showed it).
public struct Instant: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// Nanoseconds since the time line's origin.
    public var nanoseconds: Int64

    /// The instant `nanoseconds` after the origin.
    public init(nanoseconds: Int64) { self.nanoseconds = nanoseconds }

    /// The origin.
    public static let zero = Instant(nanoseconds: 0)

    /// The instant `delta` nanoseconds later (wrapping, never trapping).
    public func advanced(byNanoseconds delta: Int64) -> Instant {
        Instant(nanoseconds: nanoseconds &+ delta)
    }

    /// The instant `duration` later.
    public func advanced(by duration: Duration) -> Instant {
        advanced(byNanoseconds: duration.totalNanoseconds)
    }

    /// Nanoseconds from `earlier` to this instant.
    public func nanoseconds(since earlier: Instant) -> Int64 { nanoseconds &- earlier.nanoseconds }

    public static func < (lhs: Instant, rhs: Instant) -> Bool { lhs.nanoseconds < rhs.nanoseconds }

    /// Seconds since the origin, as text.
    public var description: String { "\(Double(nanoseconds) / 1e9)s" }
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
