#if canImport(Glibc)
import Glibc
#endif

/// The real monotonic clock (CLOCK_MONOTONIC). Only the runtime reads it; protocol
/// logic is handed `Instant`s instead.
package enum MonotonicClock {
    @inline(__always)
    package static func now() -> Instant {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Instant(nanoseconds: Int64(time.tv_sec) &* 1_000_000_000 &+ Int64(time.tv_nsec))
    }
}

/// CPU time used so far by this process, in nanoseconds (user + system).
package enum ProcessCPUClock {
    package static func nanoseconds() -> Int64 {
        var time = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &time)
        return Int64(time.tv_sec) &* 1_000_000_000 &+ Int64(time.tv_nsec)
    }
}

/// A fresh incarnation epoch for replay protection (see `DatagramEnvelope`): the wall
/// clock's seconds (CLOCK_REALTIME) in the high 32 bits, so a restarted node's epoch is
/// higher than its dead ones', and 32 random bits from the system generator below.
package enum IncarnationEpoch {
    package static func fresh() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_REALTIME, &time)
        var random = SystemRandomNumberGenerator()
        return UInt64(UInt32(truncatingIfNeeded: time.tv_sec)) << 32 | UInt64(random.next() as UInt32)
    }
}
