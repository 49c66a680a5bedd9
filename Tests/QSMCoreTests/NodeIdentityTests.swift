import Testing
@testable import QSMCore

/// A node configured without an id draws one from the kernel's CSPRNG. It was drawn from
/// the monotonic clock XOR the process id, and two bench workers started together on two
/// cores drew the same id: the GMS refused the second, and the run waited a minute for a
/// receiver that never registered (seen once in a full test run, 2026-12-08).
@Suite struct NodeIdentityTests {
    @Test func randomNodeIDsAreDistinctNonZeroAndFitSixtyThreeBits() {
        var seen = Set<UInt64>()
        for _ in 0..<100_000 {
            let id = QSMNode.randomNodeID()
            #expect(id != 0 && id < 1 << 63)
            seen.insert(id)
        }
        #expect(seen.count == 100_000)
    }
}
