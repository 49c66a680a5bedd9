#if canImport(Glibc)
import Glibc
#endif

/// The real monotonic clock (CLOCK_MONOTONIC). Only the runtime reads it; protocol
/// logic is handed `Instant`s instead.
public enum MonotonicClock {
    @inline(__always)
    public static func now() -> Instant {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Instant(nanoseconds: Int64(time.tv_sec) &* 1_000_000_000 &+ Int64(time.tv_nsec))
    }
}

/// CPU time used so far by this process, in nanoseconds (user + system).
public enum ProcessCPUClock {
    public static func nanoseconds() -> Int64 {
        var time = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &time)
        return Int64(time.tv_sec) &* 1_000_000_000 &+ Int64(time.tv_nsec)
    }
}
