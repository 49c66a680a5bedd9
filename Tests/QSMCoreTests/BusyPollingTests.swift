import Testing
@testable import QSMCore
@testable import QSMProtocol

/// The rule for looking again rather than sleeping (`BusyPolling`), driven with the time
/// passed in: a few looks after work whatever its pace; while work is frequent, looks on
/// up to the window (for a thread that extends); never past the window; and not when the
/// yields show other threads want the processor.
@Suite struct BusyPollingTests {
    static let window: Int64 = 500_000
    static let attempts = 4

    /// Counts the looks granted from `start`, one every `step` nanoseconds, until refused.
    static func looks(_ polling: inout BusyPolling, from start: Instant, step: Int64) -> Int {
        var now = start
        var count = 0
        while count < 1_000_000 {
            now = now.advanced(byNanoseconds: step)
            guard polling.looksAgain(now: now) else { return count }
            count += 1
        }
        return count
    }

    /// Work arrives every `gap` nanoseconds (looks between, one per microsecond, while
    /// they are granted); returns the polling state after `bursts` of it.
    static func drive(extends: Bool, gap: Int64, bursts: Int) -> (BusyPolling, Instant) {
        var now = Instant(nanoseconds: 1_000_000_000)
        var polling = BusyPolling(attempts: attempts, windowNanoseconds: window, extendsWhileFrequent: extends, now: now)
        for _ in 0..<bursts {
            let next = now.advanced(byNanoseconds: gap)
            var look = now.advanced(byNanoseconds: 1_000)
            while look < next, polling.looksAgain(now: look) { look = look.advanced(byNanoseconds: 1_000) }
            now = next
            polling.worked(at: now)
        }
        return (polling, now)
    }

    @Test func seldomWorkGetsTheFewLooksThenSleeps() {
        // 1,000 messages a second: a millisecond between bursts of work.
        var (polling, now) = Self.drive(extends: true, gap: 1_000_000, bursts: 50)
        #expect(!polling.isWorkFrequent)
        let granted = Self.looks(&polling, from: now, step: 1_000)
        #expect(granted == Self.attempts)
    }

    @Test func frequentWorkLooksOnUntilTheWindowEnds() {
        // 10,000 messages a second: 100 us between bursts.
        var (polling, now) = Self.drive(extends: true, gap: 100_000, bursts: 50)
        #expect(polling.isWorkFrequent)
        let granted = Self.looks(&polling, from: now, step: 1_000)
        // One look a microsecond for (just under) the 500 us window, then sleep.
        #expect(granted == Int(Self.window / 1_000) - 1)
    }

    @Test func aThreadThatDoesNotExtendKeepsToItsAttempts() {
        var (polling, now) = Self.drive(extends: false, gap: 100_000, bursts: 50)
        #expect(polling.isWorkFrequent)
        let granted = Self.looks(&polling, from: now, step: 1_000)
        #expect(granted == Self.attempts)
    }

    @Test func slowYieldsMeanTheProcessorIsWantedAndEndTheLooks() {
        var (polling, now) = Self.drive(extends: true, gap: 100_000, bursts: 50)
        // Each yield kept the thread off the processor for 60 us: past the attempts, stop.
        let granted = Self.looks(&polling, from: now, step: 60_000)
        #expect(granted == Self.attempts)
    }

    @Test func oneLongSilenceIsForgottenAfterAFewBurstsAndFrequencyReturns() {
        var (polling, now) = Self.drive(extends: true, gap: 100_000, bursts: 50)
        // Ten seconds of nothing, looked at once, then work again.
        _ = polling.looksAgain(now: now.advanced(byNanoseconds: 1_000))
        now = now.advanced(byNanoseconds: 10_000_000_000)
        polling.worked(at: now)
        #expect(!polling.isWorkFrequent)
        var bursts = 0
        while !polling.isWorkFrequent && bursts < 100 {
            _ = polling.looksAgain(now: now.advanced(byNanoseconds: 1_000))
            now = now.advanced(byNanoseconds: 100_000)
            polling.worked(at: now)
            bursts += 1
        }
        #expect(bursts <= 10, "\(bursts) bursts to see frequent work again")
    }

    @Test func continuousWorkWithoutEmptyLooksDoesNotChangeTheEstimate() {
        // Work found on every turn (no empty look between) says nothing about the gaps.
        let start = Instant(nanoseconds: 5_000_000)
        var polling = BusyPolling(attempts: Self.attempts, windowNanoseconds: Self.window, extendsWhileFrequent: true, now: start)
        for step in 1...1_000 { polling.worked(at: start.advanced(byNanoseconds: Int64(step) * 1_000)) }
        #expect(!polling.isWorkFrequent)
    }

    @Test func aZeroWindowNeverLooks() {
        let start = Instant(nanoseconds: 5_000_000)
        var polling = BusyPolling(attempts: Self.attempts, windowNanoseconds: 0, extendsWhileFrequent: true, now: start)
        let first = polling.looksAgain(now: start)
        let second = polling.looksAgain(now: start.advanced(byNanoseconds: 1))
        #expect(!first && !second)
    }
}
