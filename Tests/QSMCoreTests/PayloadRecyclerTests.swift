import Testing
@testable import QSMCore

/// Publishers' arrays are reused only when nothing else holds them, within the recycler's
/// byte budget.
@Suite struct PayloadRecyclerTests {
    static func address(_ array: [UInt8]) -> UInt? { array.withUnsafeBufferPointer { $0.baseAddress.map { UInt(bitPattern: $0) } } }

    @Test func anArrayNobodyElseHoldsIsReused() {
        let recycler = PayloadRecycler(capacity: 8, budgetBytes: 1 << 20)
        var array = [UInt8](repeating: 1, count: 1_000)
        let before = Self.address(array)
        recycler.put(array)
        array = []
        var taken = recycler.take()
        #expect(taken.isEmpty && taken.capacity >= 1_000)
        taken.append(contentsOf: [2, 3])
        #expect(Self.address(taken) == before)
    }

    @Test func aSharedArrayIsNeverHandedOutAndStaysIntact() {
        let recycler = PayloadRecycler(capacity: 8, budgetBytes: 1 << 20)
        let kept = [UInt8](repeating: 9, count: 1_000)
        recycler.put(kept)
        var taken = recycler.take()
        taken.append(contentsOf: [1, 2, 3])
        #expect(Self.address(taken) != Self.address(kept))
        #expect(kept == [UInt8](repeating: 9, count: 1_000))
    }

    @Test func theBudgetBoundsWhatIsKept() {
        let capacity = [UInt8](repeating: 0, count: 1_000).capacity
        let recycler = PayloadRecycler(capacity: 64, budgetBytes: 3 * capacity + capacity / 2)
        for _ in 0..<10 { recycler.put([UInt8](repeating: 0, count: 1_000)) }
        var kept = 0
        while recycler.take().capacity > 0 { kept += 1 }
        #expect(kept == 3)
    }
}
