import Testing
@testable import QSMCore

/// `QSMDelivery` hands its bytes over in place, and copies them only when asked.
@Suite struct DeliveryTests {
    enum Refusal: Error, Equatable { case refused }

    @Test func theBytesAreReadInPlaceAndCopiedOnlyOnRequest() throws {
        let received: [UInt8] = [9, 1, 2, 3, 9]
        let delivery = QSMDelivery(group: GroupName("g")!, sender: NodeID(7), sequence: 3, bytes: received[1..<4])
        #expect(delivery.payloadCount == 3)
        #expect(delivery.payload == [1, 2, 3])
        // The view is of the bytes where they arrived: no copy was made for it.
        let inPlace = received.withUnsafeBytes { whole in
            delivery.withPayload { $0.baseAddress == whole.baseAddress! + 1 && $0.count == 3 }
        }
        #expect(inPlace)
        // A typed error thrown by the reader comes out as that type.
        #expect(throws: Refusal.refused) { try delivery.withPayload { (_) throws(Refusal) -> Void in throw .refused } }
    }

    /// The output queue preallocates one slot per delivery it can hold (tens of
    /// thousands), each as large as the largest output: a rare, large output such as a
    /// statistics snapshot must be boxed, not inline, or the queue costs megabytes.
    @Test func anOutputSlotStaysSmall() {
        #expect(MemoryLayout<EngineOutput>.stride <= 256, "an EngineOutput slot is \(MemoryLayout<EngineOutput>.stride) bytes")
    }
}
