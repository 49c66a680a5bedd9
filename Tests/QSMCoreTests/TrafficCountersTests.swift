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
        tally.sent(to: GroupID(1), bytes: 100)
        let senders = TrafficCounters.maximumSenders + 904
        for sender in 1...senders {
            tally.delivered(in: GroupID(2), from: NodeID(UInt64(sender)), sequence: 7, bytes: 10)
        }
        tally.delivered(in: GroupID(2), from: NodeID(1), sequence: 8, bytes: 10)
        var counters = tally.named(names)
        #expect(counters.groups[prices] == GroupTraffic(sentMessages: 1, sentBytes: 100))
        #expect(counters.groups[news]?.deliveredMessages == senders + 1)
        #expect(counters.groups[news]?.deliveredBytes == 10 * (senders + 1))
        #expect(counters.senders.count == TrafficCounters.maximumSenders)
        #expect(counters.untrackedSenderDeliveries == 904)
        let first = counters.senders[GroupSender(group: news, sender: NodeID(1))]
        #expect(first?.deliveredMessages == 2 && first?.lastSequence == 8)
        tally.forget(GroupID(2))
        counters = tally.named(names)
        #expect(counters.groups[news] == nil && counters.senders.isEmpty && counters.groups[prices] != nil)
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
