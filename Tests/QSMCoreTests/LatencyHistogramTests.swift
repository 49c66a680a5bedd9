@testable import QSMCore
@testable import QSMProtocol
@testable import QSMSimulation
import QSMHarness
import Testing

/// The latency histogram against the exact percentiles of the same samples.
struct LatencyHistogramTests {
    @Test(arguments: 0..<40)
    func percentilesBoundTheTrueValueWithinOneBucket(seed: Int) {
        var random = SplitMix64(seed: UInt64(seed))
        var histogram = LatencyHistogram()
        var samples: [Int] = []
        let count = 1 + Int(random.next() % 5_000)
        // Mixed scales: microseconds to seconds, as latencies under perturbations are.
        let scale = [100, 10_000, 1_000_000, 100_000_000][seed % 4]
        for _ in 0..<count {
            let value = Int(random.next() % UInt64(scale))
            samples.append(value)
            histogram.record(microseconds: value)
        }
        samples.sort()
        #expect(histogram.count == count)
        #expect(histogram.maximumMicroseconds == samples.last)
        for fraction in [0.0, 0.01, 0.5, 0.9, 0.99, 0.999, 1.0] {
            let rank = max(1, Int((fraction * Double(count)).rounded(.up)))
            let exact = samples[rank - 1]
            let reported = histogram.percentile(fraction)!
            #expect(reported >= exact, "seed \(seed) p\(fraction): \(reported) < \(exact)")
            // One bucket is at most 1/16 of its lower edge wide.
            #expect(Double(reported) <= Double(exact) * (1 + 1.0 / 16) + 1, "seed \(seed) p\(fraction): \(reported) vs \(exact)")
        }
    }

    @Test func encodingRoundTripsAndMergingAddsCounts() {
        var random = SplitMix64(seed: 7)
        var first = LatencyHistogram(), second = LatencyHistogram(), both = LatencyHistogram()
        for index in 0..<3_000 {
            let value = Int(random.next() % 2_000_000)
            if index % 2 == 0 { first.record(microseconds: value) } else { second.record(microseconds: value) }
            both.record(microseconds: value)
        }
        let decoded = LatencyHistogram(encoded: first.encoded, maximumMicroseconds: first.maximumMicroseconds)
        #expect(decoded == first)
        var merged = first
        merged.merge(second)
        #expect(merged == both)
        #expect(LatencyHistogram(encoded: "3:x", maximumMicroseconds: 0) == nil)
        #expect(LatencyHistogram(encoded: "99999:1", maximumMicroseconds: 0) == nil)
        #expect(LatencyHistogram().percentile(0.5) == nil)
    }
}
