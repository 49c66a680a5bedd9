import Testing
@testable import QSMCore
@testable import QSMProtocol
@testable import QSMSimulation
import QSMHarness

@Suite struct RingBufferTests {
    /// Against an array, over many seeds: growth and wrap-around at every position.
    @Test func matchesAnArrayModel() {
        for seed in UInt64(1)...300 {
            var random = SplitMix64(seed: seed)
            var ring = RingBuffer<Int>(initialCapacity: Int(random.next() % 4) + 1)
            var model: [Int] = []
            var next = 0
            for step in 0..<400 {
                switch random.next() % 6 {
                case 0, 1:
                    ring.append(next); model.append(next); next += 1
                case 2:
                    ring.prepend(next); model.insert(next, at: 0); next += 1
                case 3, 4:
                    let popped = ring.popFirst()
                    let expected = model.isEmpty ? nil : model.removeFirst()
                    if popped != expected { Issue.record("seed \(seed), step \(step): popFirst \(String(describing: popped)), model \(String(describing: expected))"); return }
                default:
                    let modulus = Int(random.next() % 5) + 2
                    ring.removeAll { $0 % modulus == 0 }
                    model.removeAll { $0 % modulus == 0 }
                }
                if ring.first != model.first || ring.count != model.count || ring.isEmpty != model.isEmpty {
                    Issue.record("seed \(seed), step \(step): first/count differ from the model")
                    return
                }
            }
            var drained: [Int] = []
            while let value = ring.popFirst() { drained.append(value) }
            if drained != model { Issue.record("seed \(seed): drained \(drained.count) elements out of model order"); return }
        }
    }
}
