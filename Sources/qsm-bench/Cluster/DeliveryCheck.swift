import QSMCore
import QSMHarness

/// What a benchmark receiver checks of every delivery, against what the senders sent:
/// per sender and group the sequence numbers must be consecutive (FIFO, nothing
/// skipped), none may come twice, and the payload must be intact. It also keeps the
/// send-to-deliver latency of the messages their senders timed, and the times of the
/// first and last timed delivery (see `BenchPayload.timedEveryAtFullRate`).
struct DeliveryCheck {
    private(set) var delivered = 0
    private(set) var duplicates = 0
    /// Deliveries that skipped ahead of the next expected sequence number.
    private(set) var gaps = 0
    private(set) var corrupt = 0
    /// Deliveries from nodes that are not senders of this run (forged packets accepted
    /// because the cluster has no secret).
    private(set) var foreign = 0
    /// The run's senders, once known, in the order of the index their payloads carry
    /// (at most 64: a scan costs less per delivery than hashing the id).
    private var senderIDs: [NodeID] = []
    /// The first and last delivery that was timed, and how many deliveries came after
    /// the first one up to the last one (what a rate over that span counts).
    private(set) var firstAt: Instant?
    private(set) var lastAt: Instant?
    private(set) var deliveredInSpan = 0
    private var deliveredAtFirst = 0
    private(set) var latency = LatencyHistogram()
    /// Distinct messages per sender index.
    private(set) var uniqueBySender: [Int]
    private var expected: [[UInt64]]
    /// Per sender and group: a rejoin happened, so the next delivery may start anywhere
    /// beyond what was delivered (never before it: that would be a duplicate).
    private var resynchronize: [[Bool]]
    /// Messages jumped over when a stream resumed after a rejoin.
    private(set) var skipped = 0

    init(senders: Int, groups: Int) {
        uniqueBySender = [Int](repeating: 0, count: senders)
        expected = [[UInt64]](repeating: [UInt64](repeating: 1, count: groups), count: senders)
        resynchronize = [[Bool]](repeating: [Bool](repeating: false, count: groups), count: senders)
    }

    /// After rejoining groups, the stream resumes at whatever the new view starts with.
    mutating func rejoined() {
        for sender in resynchronize.indices {
            for group in resynchronize[sender].indices { resynchronize[sender][group] = true }
        }
    }

    /// Per sender: the last message delivered in each group, summed (equal to what the
    /// sender sent when the end of every stream arrived).
    var lastBySender: [Int] { expected.map { $0.reduce(0) { $0 + Int($1) - 1 } } }

    mutating func knowSenders(_ ids: [NodeID]) {
        senderIDs = ids
    }

    /// Checks one delivery; `now` is when it was delivered, if it was timed (its
    /// sender stamped it, or it is the first).
    mutating func observe(sender: NodeID, group: Int, sequence: UInt64, delivery: QSMDelivery, at now: Instant?) {
        let senderIndex = senderIDs.firstIndex(of: sender)
        if !senderIDs.isEmpty, senderIndex == nil {
            foreign += 1
            return
        }
        delivered += 1
        if let now {
            if firstAt == nil {
                firstAt = now
                deliveredAtFirst = delivered
            }
            lastAt = now
            deliveredInSpan = delivered - deliveredAtFirst
        }
        guard let header = delivery.withPayload({ BenchPayload.check($0) }), header.sender < uniqueBySender.count,
              senderIDs.isEmpty || senderIndex == header.sender, group < expected[header.sender].count else {
            corrupt += 1
            return
        }
        if let now, header.publishedAt != .zero {
            latency.record(microseconds: Int(now.nanoseconds(since: header.publishedAt) / 1000))
        }
        let next = expected[header.sender][group]
        if resynchronize[header.sender][group], sequence >= next {
            resynchronize[header.sender][group] = false
            skipped += Int(sequence - next)
        } else if sequence < next {
            duplicates += 1
            return
        } else if sequence > next {
            gaps += 1
        }
        expected[header.sender][group] = sequence + 1
        uniqueBySender[header.sender] += 1
    }
}
