@testable import qsm_bench
import QSMCore
import QSMProtocol
import Testing

/// `DeliveryCheck` with messages timed one in 16 (the benchmark at full rate): latency
/// only from stamped messages, the delivery rate's span from the first to the last timed
/// delivery, and every delivery still checked.
@Suite struct DeliveryCheckTests {
    private func delivery(sequence: UInt64, publishedAt: Instant) -> QSMDelivery {
        var bytes = [UInt8](repeating: 0, count: 100)
        BenchPayload.fill(&bytes, sender: 0, sequence: sequence, publishedAt: publishedAt)
        return QSMDelivery(group: BenchGroups.name(0), sender: NodeID(7), sequence: sequence, bytes: bytes[...])
    }

    @Test func onlyStampedMessagesAreTimedAndTheSpanCountsBetweenTimedDeliveries() {
        var check = DeliveryCheck(senders: 1, groups: 1)
        let base = Instant(nanoseconds: 1_000_000_000)
        // Sequence numbers start at 1; as the sender does, 16, 32 and 48 are stamped.
        for sequence in UInt64(1)...50 {
            let stamped = sequence % BenchPayload.timedEveryAtFullRate == 0
            let message = delivery(sequence: sequence, publishedAt: stamped ? base : .zero)
            #expect(message.withPayload { BenchPayload.isTimed($0) } == stamped)
            // The receiver reads the clock for stamped messages and for its first delivery.
            let now: Instant? = stamped || sequence == 1 ? base.advanced(byNanoseconds: Int64(sequence) * 10_000) : nil
            check.observe(sender: NodeID(7), group: 0, sequence: sequence, delivery: message, at: now)
        }
        #expect(check.delivered == 50)
        #expect(check.gaps == 0 && check.duplicates == 0 && check.corrupt == 0)
        // Latency from the three stamped messages only (the first delivery carried no stamp).
        #expect(check.latency.count == 3)
        #expect(check.latency.maximumMicroseconds == 480)
        // From the first delivery (1) to the last timed one (48): 47 deliveries after it.
        #expect(check.firstAt == base.advanced(byNanoseconds: 10_000))
        #expect(check.lastAt == base.advanced(byNanoseconds: 480_000))
        #expect(check.deliveredInSpan == 47)
    }

    @Test func untimedDeliveriesAreStillCheckedForOrder() {
        var check = DeliveryCheck(senders: 1, groups: 1)
        check.observe(sender: NodeID(7), group: 0, sequence: 1, delivery: delivery(sequence: 1, publishedAt: .zero), at: nil)
        check.observe(sender: NodeID(7), group: 0, sequence: 3, delivery: delivery(sequence: 3, publishedAt: .zero), at: nil)
        check.observe(sender: NodeID(7), group: 0, sequence: 3, delivery: delivery(sequence: 3, publishedAt: .zero), at: nil)
        #expect(check.gaps == 1)
        #expect(check.duplicates == 1)
        #expect(check.latency.count == 0)
        #expect(check.firstAt == nil && check.deliveredInSpan == 0)
    }
}
