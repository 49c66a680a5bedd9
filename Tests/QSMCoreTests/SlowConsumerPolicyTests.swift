import Testing
@testable import QSMProtocol

/// The slow-consumer policy's accounting (`SlowConsumerPolicy`), against a reference
/// model over random behind/caught-up sequences, and its rules by example.
@Suite struct SlowConsumerPolicyTests {
    /// Drives the policy with `pattern` (behind or not, per 100 ms step) for `steps`
    /// steps, calling `advance` at each deadline as a driver would; returns the times
    /// (in steps) of evictions.
    static func run(_ policy: inout SlowConsumerPolicy, steps: Int, behind: (Int) -> Bool) -> [Int] {
        var evictions: [Int] = []
        var last: Bool?
        for step in 0..<steps {
            let now = Instant(nanoseconds: Int64(step) * 100_000_000)
            if let due = policy.nextDeadline, due <= now, policy.advance(now: now) { evictions.append(step) }
            let value = behind(step)
            if value != last, policy.update(behind: value, now: now) { evictions.append(step) }
            last = value
        }
        return evictions
    }

    @Test func heldBackForTheLimitEvictsOnce() {
        var policy = SlowConsumerPolicy(limit: .seconds(10))
        let evictions = Self.run(&policy, steps: 150, behind: { $0 >= 10 })
        // Behind from 1 s: ten whole slots later, at 11 s.
        #expect(evictions == [110])
    }

    @Test func briefStallsAndAConsumerThatMostlyKeepsUpAreNeverEvicted() {
        var policy = SlowConsumerPolicy(limit: .seconds(10))
        // 9.5 s behind, then caught up, then behind again: never ten slots in a row.
        #expect(Self.run(&policy, steps: 400, behind: { $0 % 200 < 95 }).isEmpty)
        // Behind 70% of every second.
        var second = SlowConsumerPolicy(limit: .seconds(10))
        #expect(Self.run(&second, steps: 400, behind: { $0 % 10 < 7 }).isEmpty)
        // Off: never.
        var off = SlowConsumerPolicy(limit: .zero)
        #expect(Self.run(&off, steps: 400, behind: { _ in true }).isEmpty)
        #expect(off.nextDeadline == nil)
    }

    /// A node stopped while its application was behind (SIGSTOP under full load) is not
    /// evicted on waking for the time it did not run: the CI's 10 s freeze once ended
    /// that way, the thawed receiver leaving its group a moment before it caught up.
    @Test func timeTheNodeDidNotRunIsNotHeldAgainstIt() {
        var policy = SlowConsumerPolicy(limit: .seconds(10))
        let second: Int64 = 1_000_000_000
        let before = policy.update(behind: true, now: Instant(nanoseconds: second / 2))
        // Stopped from 0.6 s to 11 s: its slot ended at 1.5 s, it wakes at 11 s.
        let onWaking = policy.advance(now: Instant(nanoseconds: 11 * second))
        let caughtUp = policy.update(behind: false, now: Instant(nanoseconds: 11 * second + second / 10))
        #expect(!before && !onWaking && !caughtUp)
        // Still behind after waking: counted from the wake, evicted 10 slots later.
        var stuck = SlowConsumerPolicy(limit: .seconds(10))
        let stuckBefore = stuck.update(behind: true, now: Instant(nanoseconds: second / 2))
        let stuckOnWaking = stuck.advance(now: Instant(nanoseconds: 11 * second))
        #expect(!stuckBefore && !stuckOnWaking)
        var evictedAt: Int64?
        var now = 11 * second
        while evictedAt == nil, now < 40 * second {
            now = stuck.nextDeadline?.nanoseconds ?? (now + second)
            if stuck.advance(now: Instant(nanoseconds: now)) { evictedAt = now }
        }
        #expect(evictedAt == 21 * second)
    }

    /// Reference model: a slot of ten 100 ms steps is held if at least 8 of them were
    /// behind; eviction after `limit` slots held in a row (slots aligned to when counting
    /// started). Random sequences of long and short runs, 200 seeds.
    @Test func matchesAReferenceModelOverRandomSequences() {
        for seed in UInt64(1)...200 {
            var random = SplitMix64(seed: seed)
            var pattern: [Bool] = []
            while pattern.count < 600 {
                let value = random.next() % 4 != 0
                let length = Int(random.next() % (value ? 150 : 12)) + 1
                pattern += Array(repeating: value, count: length)
            }
            pattern = Array(pattern.prefix(600))
            var policy = SlowConsumerPolicy(limit: .seconds(5))
            let evictions = Self.run(&policy, steps: 600, behind: { pattern[$0] })
            // The model, step by step: counting starts at a behind step; a slot is ten
            // steps from there; after an eviction, or a slot not held, counting goes on
            // only if the node is behind at that step, else from the next behind step.
            var expected: [Int] = []
            var slotStart: Int?
            var held = 0
            for step in 0..<600 {
                if let start = slotStart, step - start == 10 {
                    held = pattern[start..<step].filter { $0 }.count >= 8 ? held + 1 : 0
                    slotStart = step
                    if held == 5 {
                        expected.append(step)
                        held = 0
                    }
                    if held == 0, !pattern[step] { slotStart = nil }
                }
                if slotStart == nil, pattern[step] { slotStart = step }
            }
            #expect(evictions == expected, "seed \(seed)")
            if evictions != expected { return }
        }
    }
}
