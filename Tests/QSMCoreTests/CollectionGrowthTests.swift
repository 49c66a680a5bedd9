import Testing
@testable import QSMProtocol

/// `Array.takeAll` and `Dictionary.reserveCapacity(forNew:)`: the two helpers that keep
/// the installation of thousands of group views from churning the heap (issue 15).
@Suite struct CollectionGrowthTests {
    /// The elements move out in order, in the same buffer (no copy), and what is left
    /// behind is empty and owns no storage.
    @Test func takeAllMovesTheBufferOut() {
        var queue = Array(0..<1_000)
        let before = queue.withUnsafeBufferPointer { Int(bitPattern: $0.baseAddress) }
        let taken = queue.takeAll()
        #expect(taken == Array(0..<1_000))
        #expect(taken.withUnsafeBufferPointer { Int(bitPattern: $0.baseAddress) } == before)
        #expect(queue.isEmpty && queue.capacity == 0)
        queue.append(7)
        #expect(queue == [7] && taken.count == 1_000)
    }

    /// Room is made for new keys only: reserving for keys already held leaves the table
    /// as it is, and reserving for new ones lets them all in without growing again.
    @Test func reserveCapacityCountsOnlyNewKeys() {
        var table = Dictionary(uniqueKeysWithValues: (0..<1_000).map { ($0, $0) })
        let held = table.capacity
        table.reserveCapacity(forNew: 0..<1_000)
        #expect(table.capacity == held)
        table.reserveCapacity(forNew: 500..<5_000)
        let reserved = table.capacity
        #expect(reserved >= 5_000)
        for key in 1_000..<5_000 { table[key] = key }
        #expect(table.capacity == reserved && table.count == 5_000)
    }
}
