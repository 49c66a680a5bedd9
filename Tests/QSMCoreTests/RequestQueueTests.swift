#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import Testing
@testable import QSMCore
@testable import QSMProtocol
@testable import QSMSimulation
import QSMHarness

@Suite struct RequestQueueTests {
    struct Item: Sendable {
        var producer: Int
        var sequence: Int
    }

    @Test func fourProducersLoseNothingDuplicateNothingAndKeepOrder() throws {
        let producers = 4
        let perProducer = 100_000
        // Small enough that producers regularly find the queue full and must retry.
        let queue = RequestQueue<Item>(capacity: 1024)
        let threads = try (0..<producers).map { producer in
            try SystemThread(name: "producer\(producer)") {
                for sequence in 0..<perProducer {
                    while !queue.tryEnqueue(Item(producer: producer, sequence: sequence)) { sched_yield() }
                }
            }
        }
        var nextExpected = [Int](repeating: 0, count: producers)
        var received = 0
        var outOfOrder = 0
        let deadline = MonotonicClock.now().advanced(by: .seconds(120))
        while received < producers * perProducer && MonotonicClock.now() < deadline {
            guard let item = queue.dequeue() else {
                sched_yield()
                continue
            }
            if item.sequence != nextExpected[item.producer] { outOfOrder += 1 }
            nextExpected[item.producer] = item.sequence + 1
            received += 1
        }
        threads.forEach { $0.join() }
        #expect(received == producers * perProducer)
        #expect(outOfOrder == 0)
        #expect(nextExpected == [Int](repeating: perProducer, count: producers))
        #expect(queue.dequeue() == nil)
    }

    @Test func fullQueueRefusesWithoutLosingAnything() {
        let queue = RequestQueue<Int>(capacity: 4)
        #expect(queue.capacity == 4)
        for value in 0..<4 { #expect(queue.tryEnqueue(value)) }
        #expect(!queue.tryEnqueue(99))
        #expect(queue.dequeue() == 0)
        #expect(queue.tryEnqueue(4))
        #expect(!queue.tryEnqueue(100))
        // Refused, and handed back for the caller to reuse.
        #expect(queue.enqueueOrReturn(101) == 101)
        var drained: [Int] = []
        while let value = queue.dequeue() { drained.append(value) }
        #expect(drained == [1, 2, 3, 4])
        #expect(!queue.hasReadyElement)
    }

    @Test func capacityRoundsUpToAPowerOfTwo() {
        #expect(RequestQueue<Int>(capacity: 1).capacity == 2)
        #expect(RequestQueue<Int>(capacity: 1000).capacity == 1024)
    }

    @Test func elementsLeftInTheQueueAreReleased() {
        let released = releasedProbes { make in
            let queue = RequestQueue<DeinitProbe>(capacity: 8)
            for _ in 0..<5 { #expect(queue.tryEnqueue(make())) }
            _ = queue.dequeue()
        }
        #expect(released == 5)
    }
}
