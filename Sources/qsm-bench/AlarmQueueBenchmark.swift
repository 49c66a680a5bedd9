import QSMCore
import QSMHarness

/// Alarm queue throughput with `pending` alarms held throughout. Each step pops the
/// earliest alarm and schedules its successor, moves one random pending alarm, and cancels
/// one random alarm and schedules a replacement: five queue operations.
///
/// Two workloads set the new deadlines:
/// - `random`: a uniformly random delay (the classic "hold" model; a heap's best case);
/// - `periodic`: each alarm has its own fixed period drawn from 1 ms, 10 ms, 100 ms, 1 s,
///   and every new deadline is the current time plus that period: how a protocol's
///   alarms behave (token and heartbeat timers, timeouts pushed back on each receipt).
enum AlarmQueueBenchmark {
    enum Workload: String, CaseIterable {
        case random
        case periodic
    }

    struct Result {
        var implementation: String
        var workload: Workload
        var pending: Int
        var operationsPerSecond: Double
    }

    static func run(_ implementation: String, workload: Workload, pending: Int, seconds: Double) -> Result {
        let rate: Double
        switch implementation {
        case "splay tree":
            rate = measure(SplayAlarmQueue<Int>(initialCapacity: pending), workload: workload, pending: pending, seconds: seconds)
        default:
            rate = measure(BinaryHeapAlarmQueue<Int>(initialCapacity: pending), workload: workload, pending: pending, seconds: seconds)
        }
        return Result(implementation: implementation, workload: workload, pending: pending, operationsPerSecond: rate)
    }

    private static func measure<Queue: AlarmQueue<Int>>(_ queue: Queue, workload: Workload, pending: Int,
                                                        seconds: Double) -> Double {
        var random = SplitMix64(seed: 7)
        let horizon: Int64 = 1_000_000
        let periods: [Int64] = [1_000_000, 10_000_000, 100_000_000, 1_000_000_000]
        let period = (0..<pending).map { _ in periods.randomElement(using: &random)! }
        var clock: Int64 = 0
        func delay(_ index: Int, _ random: inout SplitMix64) -> Int64 {
            switch workload {
            case .random: Int64.random(in: 1..<horizon, using: &random)
            case .periodic: period[index]
            }
        }
        var handles: [AlarmHandle] = []
        handles.reserveCapacity(pending)
        for index in 0..<pending {
            let first = workload == .random ? Int64.random(in: 0..<horizon, using: &random)
                                            : Int64.random(in: 0..<period[index], using: &random)
            handles.append(queue.schedule(at: Instant(nanoseconds: first), index))
        }
        var operations = 0
        let start = MonotonicClock.now()
        let budget = Int64(seconds * 1e9)
        while true {
            for _ in 0..<1024 {
                if let (deadline, index) = queue.popFirst(notAfter: Instant(nanoseconds: .max)) {
                    clock = deadline.nanoseconds
                    handles[index] = queue.schedule(at: Instant(nanoseconds: clock + delay(index, &random)), index)
                }
                let moved = Int.random(in: 0..<pending, using: &random)
                queue.reschedule(handles[moved], to: Instant(nanoseconds: clock + delay(moved, &random)))
                let replaced = Int.random(in: 0..<pending, using: &random)
                queue.cancel(handles[replaced])
                handles[replaced] = queue.schedule(at: Instant(nanoseconds: clock + delay(replaced, &random)), replaced)
            }
            operations += 1024 * 5
            if MonotonicClock.now().nanoseconds(since: start) >= budget { break }
        }
        precondition(queue.count == pending, "the workload must keep the pending count constant")
        return Double(operations) / (Double(MonotonicClock.now().nanoseconds(since: start)) / 1e9)
    }
}
