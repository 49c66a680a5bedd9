import Testing
@testable import QSMCore
import QSMProtocol

/// The application side's mirror of the flow-control window: a slot is one message and
/// its payload's bytes, both bounds hold at once, and an empty window takes any one
/// message (as the machine's `WindowFlowControl` does, so none waits forever).
@Suite struct PublishWindowTests {
    @Test func theBytesBindBeforeTheMessages() {
        let window = PublishWindow(capacity: 100, byteCapacity: 10_000)
        for _ in 0..<10 { #expect(window.tryReserve(bytes: 1_000)) }
        #expect(!window.tryReserve(bytes: 1), "10,000 bytes held: not one byte more")
        #expect(window.inUse == 10)
        window.release(messages: 1, bytes: 1_000)
        #expect(!window.tryReserve(bytes: 1_001))
        #expect(window.tryReserve(bytes: 1_000))
    }

    @Test func theMessagesBindBeforeTheBytes() {
        let window = PublishWindow(capacity: 4, byteCapacity: 1 << 20)
        for _ in 0..<4 { #expect(window.tryReserve(bytes: 10)) }
        #expect(!window.tryReserve(bytes: 10))
        window.release(messages: 2, bytes: 20)
        #expect(window.tryReserve(bytes: 10) && window.tryReserve(bytes: 10))
        #expect(!window.tryReserve(bytes: 0))
    }

    @Test func anEmptyWindowTakesOneMessageOfAnySize() {
        let window = PublishWindow(capacity: 8, byteCapacity: 1_000)
        #expect(window.tryReserve(bytes: 5_000))
        #expect(!window.tryReserve(bytes: 1), "over the bytes now")
        window.release(messages: 1, bytes: 5_000)
        #expect(window.inUse == 0 && window.hasRoom)
    }

    /// A waiter waits for room for the message that was refused, not for any room: the
    /// window 100 bytes short of a 1,000-byte message is not "room" for it.
    @Test func roomMeansRoomForTheLastMessageRefused() {
        let window = PublishWindow(capacity: 100, byteCapacity: 10_000)
        for _ in 0..<9 { #expect(window.tryReserve(bytes: 1_000)) }
        #expect(window.tryReserve(bytes: 900))
        #expect(!window.tryReserve(bytes: 1_000))
        #expect(!window.hasRoom, "100 bytes free, 1,000 wanted")
        window.release(messages: 1, bytes: 900)
        #expect(window.hasRoom)
        #expect(window.tryReserve(bytes: 1_000))
    }

    /// Random reservations and releases against a reference model of the two counts.
    @Test(arguments: [1, 2, 3, 4]) func randomSequencesMatchTheModel(seed: UInt64) {
        print("PublishWindowTests seed \(seed)")
        var random = SplitMix64(seed: seed)
        let capacity = 1 + Int(random.next() % 64), byteCapacity = 1 + Int(random.next() % 50_000)
        let window = PublishWindow(capacity: capacity, byteCapacity: byteCapacity)
        var held: [Int] = []
        for step in 0..<20_000 {
            if random.next() % 3 != 0 {
                let bytes = Int(random.next() % 4_000)
                let total = held.reduce(0, +)
                let expected = held.isEmpty || (held.count < capacity && total + bytes <= byteCapacity)
                let taken = window.tryReserve(bytes: bytes)
                #expect(taken == expected, "seed \(seed), step \(step): \(held.count) held, \(total) bytes, wanted \(bytes)")
                if taken { held.append(bytes) }
                if !taken {
                    #expect(window.hasRoom == false, "seed \(seed), step \(step): refused yet room")
                }
            } else if !held.isEmpty {
                let count = 1 + Int(random.next() % UInt64(held.count))
                let bytes = held.prefix(count).reduce(0, +)
                held.removeFirst(count)
                window.release(messages: count, bytes: bytes)
            }
            #expect(window.inUse == held.count)
            if step.isMultiple(of: 1_000), !held.isEmpty {
                window.release(messages: held.count, bytes: held.reduce(0, +))
                held.removeAll()
            }
        }
    }
}
