import CQSMLinux

/// How the executables (`qsm-node`, `qsm-bench` and its workers) ask glibc's allocator to
/// behave. A library must not change this for the process that embeds it, so it is set
/// here, at the start of each executable, and not by `QSMNode`.
public enum ProcessMemoryPolicy {
    /// Blocks of this size and larger always get their own mapping, returned to the
    /// system when freed. That is glibc's default threshold, but glibc raises it each time
    /// such a block is freed (up to 32 MB), after which large temporaries (a membership
    /// update of thousands of groups, the tables rebuilt from it) are carved from the heap
    /// and leave it fragmented and resident. With the threshold fixed, a sender of 8,192
    /// groups peaked about 1 MB lower (issue 15, `bench/README.md`).
    public static let mmapThresholdBytes: Int32 = 128 * 1024

    /// Applies the policy; returns whether glibc accepted it.
    @discardableResult
    public static func apply() -> Bool { cqsm_fix_mmap_threshold(mmapThresholdBytes) == 1 }
}
