import Testing
@testable import QSMCore
@testable import QSMProtocol
@testable import QSMSimulation
import QSMHarness

/// The reference model: a plain array, searched linearly for the earliest
/// (deadline, scheduling order) entry.
private struct ReferenceAlarmQueue {
    struct Entry { var deadline: Int64; var order: Int; var id: Int }
    var entries: [Entry] = []
    var nextOrder = 0

    mutating func schedule(_ deadline: Int64, id: Int) {
        entries.append(Entry(deadline: deadline, order: nextOrder, id: id))
        nextOrder += 1
    }

    mutating func cancel(id: Int) -> Bool {
        guard let index = entries.firstIndex(where: { $0.id == id }) else { return false }
        entries.remove(at: index)
        return true
    }

    mutating func reschedule(id: Int, to deadline: Int64) -> Bool {
        guard let index = entries.firstIndex(where: { $0.id == id }) else { return false }
        entries[index].deadline = deadline
        entries[index].order = nextOrder
        nextOrder += 1
        return true
    }

    func firstIndex() -> Int? {
        entries.indices.min { (entries[$0].deadline, entries[$0].order) < (entries[$1].deadline, entries[$1].order) }
    }

    mutating func popFirst(notAfter limit: Int64) -> Entry? {
        guard let index = firstIndex(), entries[index].deadline <= limit else { return nil }
        return entries.remove(at: index)
    }
}

/// Drives `queue` and the reference model with the same random operations and returns a
/// description of the first disagreement or broken invariant, or nil.
private func compareWithModel<Queue: AlarmQueue<Int>>(
    _ queue: Queue, seed: UInt64, operations: Int, deadlineRange: Int64,
    invariantViolation: () -> String?
) -> String? {
    var random = SplitMix64(seed: seed)
    var model = ReferenceAlarmQueue()
    var handles: [Int: AlarmHandle] = [:]
    var nextID = 0
    var retired: [AlarmHandle] = []

    for step in 0..<operations {
        let roll = Int.random(in: 0..<100, using: &random)
        let deadline = Int64.random(in: 0..<deadlineRange, using: &random)
        switch roll {
        case 0..<40:
            let handle = queue.schedule(at: Instant(nanoseconds: deadline), nextID)
            handles[nextID] = handle
            model.schedule(deadline, id: nextID)
            nextID += 1
        case 40..<55:
            if let id = handles.keys.randomElement(using: &random) {
                let payload = queue.cancel(handles[id]!)
                let expected = model.cancel(id: id)
                if (payload != nil) != expected || (payload != nil && payload != id) {
                    return "step \(step): cancel(\(id)) gave \(String(describing: payload)), model \(expected)"
                }
                retired.append(handles.removeValue(forKey: id)!)
            }
        case 55..<70:
            if let id = handles.keys.randomElement(using: &random) {
                let moved = queue.reschedule(handles[id]!, to: Instant(nanoseconds: deadline))
                let expected = model.reschedule(id: id, to: deadline)
                if moved != expected { return "step \(step): reschedule(\(id)) gave \(moved), model \(expected)" }
            }
        case 70..<75:
            // Stale handles must be harmless.
            if let stale = retired.randomElement(using: &random) {
                if queue.cancel(stale) != nil { return "step \(step): cancel of a stale handle succeeded" }
                if queue.reschedule(stale, to: Instant(nanoseconds: deadline)) {
                    return "step \(step): reschedule of a stale handle succeeded"
                }
            }
        case 75..<85:
            let expected = model.firstIndex().map { model.entries[$0].deadline }
            let actual = queue.nextDeadline()?.nanoseconds
            if actual != expected { return "step \(step): nextDeadline \(String(describing: actual)), model \(String(describing: expected))" }
        default:
            let limit = deadline
            let popped = queue.popFirst(notAfter: Instant(nanoseconds: limit))
            let expected = model.popFirst(notAfter: limit)
            if popped?.payload != expected?.id || popped?.deadline.nanoseconds != expected?.deadline {
                return "step \(step): popFirst(notAfter: \(limit)) gave \(String(describing: popped)), model \(String(describing: expected))"
            }
            if let id = expected?.id { retired.append(handles.removeValue(forKey: id)!) }
        }
        if queue.count != model.entries.count {
            return "step \(step): count \(queue.count), model \(model.entries.count)"
        }
        if let violation = invariantViolation() { return "step \(step): invariant: \(violation)" }
    }
    // Drain: everything comes out in model order.
    while let expected = model.popFirst(notAfter: .max) {
        guard let popped = queue.popFirst(notAfter: Instant(nanoseconds: .max)), popped.payload == expected.id else {
            return "drain: expected \(expected.id)"
        }
    }
    if queue.count != 0 || queue.nextDeadline() != nil { return "drain: queue not empty" }
    return nil
}

@Suite struct AlarmQueueTests {
    /// Small deadline ranges force many equal deadlines (FIFO ties); large ones exercise
    /// deep trees.
    static let ranges: [Int64] = [4, 64, 1 << 40]

    enum Implementation: String, CaseIterable {
        case splayTree = "splay tree"
        case binaryHeap = "binary heap"

        /// Runs the model comparison on a fresh queue of this kind.
        func compare(seed: UInt64, deadlineRange: Int64) -> String? {
            switch self {
            case .splayTree:
                let queue = SplayAlarmQueue<Int>(initialCapacity: 4)
                return compareWithModel(queue, seed: seed, operations: 600, deadlineRange: deadlineRange,
                                        invariantViolation: queue.invariantViolation)
            case .binaryHeap:
                let queue = BinaryHeapAlarmQueue<Int>(initialCapacity: 4)
                return compareWithModel(queue, seed: seed, operations: 600, deadlineRange: deadlineRange,
                                        invariantViolation: queue.invariantViolation)
            }
        }
    }

    @Test(arguments: Implementation.allCases, ranges)
    func matchesReferenceModel(implementation: Implementation, deadlineRange: Int64) {
        for seed in UInt64(1)...150 {
            if let failure = implementation.compare(seed: seed, deadlineRange: deadlineRange) {
                Issue.record("\(implementation.rawValue), seed \(seed), deadline range \(deadlineRange): \(failure)")
                return
            }
        }
    }

    @Test func equalDeadlinesFireInSchedulingOrder() {
        let queue = SplayAlarmQueue<Int>()
        let handles = (0..<100).map { queue.schedule(at: Instant(nanoseconds: 7), $0) }
        // Moving an alarm to the same deadline puts it behind the others.
        #expect(queue.reschedule(handles[0], to: Instant(nanoseconds: 7)))
        var order: [Int] = []
        while let (_, payload) = queue.popFirst(notAfter: Instant(nanoseconds: 7)) { order.append(payload) }
        #expect(order == Array(1..<100) + [0])
    }

    @Test func sortedInsertionStaysIterativeAndCorrect() {
        // Monotone deadlines build a path-shaped tree; a recursive splay would need a stack
        // as deep as the tree.
        let queue = SplayAlarmQueue<Int>()
        let total = 200_000
        for index in 0..<total { _ = queue.schedule(at: Instant(nanoseconds: Int64(index)), index) }
        var expected = 0
        while let (_, payload) = queue.popFirst(notAfter: Instant(nanoseconds: .max)) {
            #expect(payload == expected)
            if payload != expected { break }
            expected += 1
        }
        #expect(expected == total)
    }

    @Test func slotsAreRecycledWithoutGrowth() {
        let queue = SplayAlarmQueue<Int>(initialCapacity: 8)
        for round in 0..<1000 {
            let handle = queue.schedule(at: Instant(nanoseconds: Int64(round)), round)
            #expect(queue.cancel(handle) == round)
            #expect(queue.cancel(handle) == nil)
        }
        #expect(queue.count == 0)
        #expect(queue.invariantViolation() == nil)
    }
}
