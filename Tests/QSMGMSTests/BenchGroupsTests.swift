@testable import qsm_bench
import QSMProtocol
import Testing

/// `BenchGroups`: a benchmark receiver reads each delivery's group index back from its
/// name, byte by byte; every name the benchmark makes reads back, and nothing else does.
@Suite struct BenchGroupsTests {
    @Test func everyBenchmarkNameReadsBackAndOthersDoNot() {
        var random = SplitMix64(seed: 15)
        let indexes = Array(0..<1_000) + (0..<1_000).map { _ in Int(random.next() % 100_001) } + [99_999, 100_000]
        for index in indexes {
            #expect(BenchGroups.index(of: BenchGroups.name(index)) == index)
        }
        for text in ["bench-", "bench", "bench-x", "bench-1a", "bench--1", "bench-+1", "Bench-1", "bench_1", "other-12",
                     "bench-１", "bench-99999999999999999999"] {
            #expect(BenchGroups.index(of: GroupName(text)!) == nil, "\(text)")
        }
    }
}
