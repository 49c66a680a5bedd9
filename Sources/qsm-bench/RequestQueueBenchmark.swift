#if canImport(Glibc)
import Glibc
#endif
import QSMCore
import QSMHarness
import Synchronization

/// Items per second from `producers` threads to one consumer thread, through the
/// lock-free request queue or through a `Mutex`-guarded array (the baseline).
enum RequestQueueBenchmark {
    struct Result {
        var implementation: String
        var producers: Int
        var itemsPerSecond: Double
    }

    struct Item: Sendable {
        var producer: Int
        var sequence: Int
    }

    static func run(_ implementation: String, producers: Int, itemsPerProducer: Int) throws -> Result {
        let elapsed: Double
        switch implementation {
        case "lock-free queue": elapsed = try lockFree(producers: producers, itemsPerProducer: itemsPerProducer)
        default: elapsed = try mutexArray(producers: producers, itemsPerProducer: itemsPerProducer)
        }
        return Result(implementation: implementation, producers: producers,
                      itemsPerSecond: Double(producers * itemsPerProducer) / elapsed)
    }

    private static func lockFree(producers: Int, itemsPerProducer: Int) throws -> Double {
        let queue = RequestQueue<Item>(capacity: 16_384)
        let start = MonotonicClock.now()
        let threads = try (0..<producers).map { producer in
            try SystemThread(name: "producer") {
                for sequence in 0..<itemsPerProducer {
                    while !queue.tryEnqueue(Item(producer: producer, sequence: sequence)) { sched_yield() }
                }
            }
        }
        var next = [Int](repeating: 0, count: producers)
        var received = 0
        while received < producers * itemsPerProducer {
            guard let item = queue.dequeue() else {
                sched_yield()
                continue
            }
            precondition(item.sequence == next[item.producer], "request queue reordered or lost an item")
            next[item.producer] += 1
            received += 1
        }
        let elapsed = Double(MonotonicClock.now().nanoseconds(since: start)) / 1e9
        threads.forEach { $0.join() }
        return elapsed
    }

    private static func mutexArray(producers: Int, itemsPerProducer: Int) throws -> Double {
        let shared = Mutex<[Item]>([])
        let start = MonotonicClock.now()
        let threads = try (0..<producers).map { producer in
            try SystemThread(name: "producer") {
                for sequence in 0..<itemsPerProducer {
                    shared.withLock { $0.append(Item(producer: producer, sequence: sequence)) }
                }
            }
        }
        var next = [Int](repeating: 0, count: producers)
        var received = 0
        var batch: [Item] = []
        while received < producers * itemsPerProducer {
            shared.withLock { swap(&$0, &batch) }
            if batch.isEmpty {
                sched_yield()
                continue
            }
            for item in batch {
                precondition(item.sequence == next[item.producer], "mutex baseline reordered an item")
                next[item.producer] += 1
            }
            received += batch.count
            batch.removeAll(keepingCapacity: true)
        }
        let elapsed = Double(MonotonicClock.now().nanoseconds(since: start)) / 1e9
        threads.forEach { $0.join() }
        return elapsed
    }
}
