/// Latencies in a fixed number of log-linear buckets (16 per power of two, so about 6%
/// resolution at worst), from 1 µs to about 18 minutes: bounded memory however many
/// samples come. Percentiles report the upper edge of the bucket (never below the true
/// value, at most one bucket width above it).
public struct LatencyHistogram: Sendable, Equatable {
    private static let subBuckets = 16
    private var counts = [Int](repeating: 0, count: 27 * 16)
    /// Samples recorded.
    public private(set) var count = 0
    /// The largest sample, in microseconds.
    public private(set) var maximumMicroseconds = 0

    package mutating func record(microseconds value: Int) {
        let value = max(0, value)
        count += 1
        maximumMicroseconds = max(maximumMicroseconds, value)
        counts[Self.bucket(of: value)] += 1
    }

    package mutating func merge(_ other: LatencyHistogram) {
        for index in counts.indices { counts[index] += other.counts[index] }
        count += other.count
        maximumMicroseconds = max(maximumMicroseconds, other.maximumMicroseconds)
    }

    /// The value below which `fraction` of the samples lie (upper edge of its bucket),
    /// or nil without samples.
    public func percentile(_ fraction: Double) -> Int? {
        guard count > 0 else { return nil }
        let rank = max(1, Int((fraction * Double(count)).rounded(.up)))
        var seen = 0
        for (index, bucketCount) in counts.enumerated() {
            seen += bucketCount
            if seen >= rank { return min(Self.upperEdge(of: index), maximumMicroseconds) }
        }
        return maximumMicroseconds
    }

    /// Bucket counts as "index:count" pairs, for shipping between processes.
    package var encoded: String {
        counts.enumerated().filter { $0.element > 0 }.map { "\($0.offset):\($0.element)" }.joined(separator: ",")
    }

    package init() {}

    package init?(encoded: String, maximumMicroseconds: Int) {
        self.maximumMicroseconds = maximumMicroseconds
        guard !encoded.isEmpty else { return }
        for pair in encoded.split(separator: ",") {
            let parts = pair.split(separator: ":")
            guard parts.count == 2, let index = Int(parts[0]), let value = Int(parts[1]),
                  counts.indices.contains(index), value >= 0 else { return nil }
            counts[index] += value
            count += value
        }
    }

    private static func bucket(of value: Int) -> Int {
        if value < subBuckets { return value }
        let magnitude = Int.bitWidth - value.leadingZeroBitCount - 1 // >= 4
        let shift = magnitude - 4
        let index = (magnitude - 3) * subBuckets + ((value >> shift) - subBuckets)
        return min(index, 27 * 16 - 1)
    }

    private static func upperEdge(of index: Int) -> Int {
        if index < subBuckets { return index }
        let magnitude = index / subBuckets + 3
        let shift = magnitude - 4
        return ((index % subBuckets + subBuckets + 1) << shift) - 1
    }
}
