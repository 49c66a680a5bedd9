import Testing
@testable import QSMProtocol
@testable import QSMCore

/// The per-group and per-sender counters, and their OpenMetrics rendering.
@Suite struct TrafficCountersTests {
    /// Sent and delivered are counted per group and per sender; the number of senders
    /// tracked is bounded (the rest still count in the group's totals, and as untracked);
    /// leaving a group forgets its counters.
    @Test func countsPerGroupAndSenderWithinABound() {
        var tally = TrafficTally()
        let prices = GroupName("prices")!, news = GroupName("news")!
        let names = [GroupID(1): prices, GroupID(2): news]
        let publications = [(group: GroupID(1), messages: 1, bytes: 100)]
        let senders = TrafficCounters.maximumSenders + 904
        let streams = (1...senders).map { DeliveryStream(sender: NodeID(UInt64($0)), group: GroupID(2)) }
        for stream in streams { tally.delivered(on: stream, sequence: 7, bytes: 10) }
        tally.delivered(on: streams[0], sequence: 8, bytes: 10)
        var counters = tally.named(names, publications: publications)
        #expect(counters.groups[prices] == GroupTraffic(sentMessages: 1, sentBytes: 100))
        #expect(counters.groups[news]?.deliveredMessages == senders + 1)
        #expect(counters.groups[news]?.deliveredBytes == 10 * (senders + 1))
        #expect(counters.senders.count == TrafficCounters.maximumSenders)
        #expect(counters.untrackedSenderDeliveries == 904)
        let first = counters.senders[GroupSender(group: news, sender: NodeID(1))]
        #expect(first?.deliveredMessages == 2 && first?.lastSequence == 8)
        tally.forget(GroupID(2))
        counters = tally.named(names, publications: publications)
        #expect(counters.groups[news] == nil && counters.senders.isEmpty && counters.groups[prices] != nil)
        // Delivered again after leaving (a message in flight, or a new join): counted
        // from zero.
        tally.delivered(on: streams[1], sequence: 9, bytes: 10)
        counters = tally.named(names, publications: publications)
        #expect(counters.groups[news]?.deliveredMessages == 1)
        #expect(counters.senders[GroupSender(group: news, sender: NodeID(2))]?.lastSequence == 9)
    }

    /// Label values with quotes, backslashes and newlines are escaped; counters carry
    /// `_total`; the exposition ends with `# EOF`.
    @Test func openMetricsEscapesLabelsAndEnds() {
        var text = OpenMetricsText()
        text.family("qsm_x", .counter, "x.", samples: [([("group", "a\"b\\c\nd")], 3)])
        text.family("qsm_y", .gauge, "y.", 4)
        let out = text.finish()
        #expect(out == """
            # TYPE qsm_x counter
            # HELP qsm_x x.
            qsm_x_total{group="a\\"b\\\\c\\nd"} 3
            # TYPE qsm_y gauge
            # HELP qsm_y y.
            qsm_y 4
            # EOF

            """)
    }
}

extension GroupTraffic {
    init(sentMessages: Int, sentBytes: Int) {
        self.init()
        self.sentMessages = sentMessages
        self.sentBytes = sentBytes
    }
}
