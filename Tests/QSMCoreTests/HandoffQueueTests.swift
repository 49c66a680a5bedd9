#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import Testing
@testable import QSMCore
@testable import QSMProtocol
import QSMHarness

@Suite struct HandoffQueueTests {
    /// Against a reference model (an array), random runs of enqueues and dequeues on
    /// one thread: every answer the same, through many wraps of a small ring, full and
    /// empty included.
    @Test(arguments: [1, 2, 3, 4, 5, 6, 7, 8])
    func matchesAReferenceModel(seed: UInt64) {
        print("HandoffQueueTests seed \(seed)")
        var random = SplitMix64(seed: seed)
        let capacity = [2, 4, 8, 16][Int(random.next() % 4)]
        let queue = HandoffQueue<Int>(capacity: capacity)
        var model: [Int] = []
        var next = 0
        for _ in 0..<20_000 {
            // Runs of one kind, so the ring fills and empties often.
            let run = Int(random.next() % UInt64(2 * capacity)) + 1
            if random.next() % 2 == 0 {
                for _ in 0..<run {
                    // Both ways in: a refusal lets the element go, or hands it back.
                    let accepted: Bool
                    if next % 2 == 0 {
                        accepted = queue.tryEnqueue(next)
                    } else {
                        let refused = queue.enqueueOrReturn(next)
                        #expect(refused == nil || refused == next)
                        accepted = refused == nil
                    }
                    #expect(accepted == (model.count < capacity))
                    if accepted { model.append(next) }
                    next += 1
                }
            } else {
                for _ in 0..<run {
                    let value = queue.dequeue()
                    #expect(value == model.first)
                    if !model.isEmpty { model.removeFirst() }
                }
            }
            #expect(queue.hasReadyElement == !model.isEmpty)
        }
    }

    /// One producer thread, one consumer thread, a ring small enough to be full often:
    /// everything arrives once, in order.
    @Test func twoThreadsLoseNothingDuplicateNothingAndKeepOrder() throws {
        let count = 400_000
        let queue = HandoffQueue<Int>(capacity: 64)
        let producer = try SystemThread(name: "producer") {
            for value in 0..<count {
                while !queue.tryEnqueue(value) { sched_yield() }
            }
        }
        var expected = 0
        var outOfOrder = 0
        let deadline = MonotonicClock.now().advanced(by: .seconds(120))
        while expected < count && MonotonicClock.now() < deadline {
            guard let value = queue.dequeue() else {
                sched_yield()
                continue
            }
            if value != expected { outOfOrder += 1 }
            expected = value + 1
        }
        producer.join()
        #expect(expected == count)
        #expect(outOfOrder == 0)
        #expect(queue.dequeue() == nil)
        #expect(!queue.hasReadyElement)
    }

    @Test func fullQueueRefusesAndCapacityRoundsUp() {
        #expect(HandoffQueue<Int>(capacity: 1).capacity == 2)
        #expect(HandoffQueue<Int>(capacity: 1000).capacity == 1024)
        let queue = HandoffQueue<Int>(capacity: 4)
        for value in 0..<4 { #expect(queue.tryEnqueue(value)) }
        #expect(!queue.tryEnqueue(99))
        #expect(queue.dequeue() == 0)
        #expect(queue.tryEnqueue(4))
        var drained: [Int] = []
        while let value = queue.dequeue() { drained.append(value) }
        #expect(drained == [1, 2, 3, 4])
    }

    @Test func elementsLeftInTheQueueAreReleased() {
        let released = releasedProbes { make in
            let queue = HandoffQueue<DeinitProbe>(capacity: 8)
            for _ in 0..<5 { #expect(queue.tryEnqueue(make())) }
            _ = queue.dequeue()
        }
        #expect(released == 5)
    }
}
