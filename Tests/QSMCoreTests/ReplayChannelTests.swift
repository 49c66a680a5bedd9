import Testing
@testable import QSMProtocol

/// Replay counters per channel (`ReplayChannel`): a sender numbers its datagrams per
/// destination socket, so one socket's backlog read after another socket's fresher
/// datagrams is not taken for replays, while a replay into any socket still is.
@Suite struct ReplayChannelTests {
    static let unicast = [QSMSocketAddress(.loopback, port: 5), QSMSocketAddress(.loopback, port: 6),
                          QSMSocketAddress(IPv4Address(10, 0, 0, 7), port: 9000)]
    static let multicast = [QSMSocketAddress(IPv4Address(239, 1, 1, 1), port: 9), QSMSocketAddress(IPv4Address(239, 1, 1, 2), port: 9),
                            QSMSocketAddress(IPv4Address(239, 1, 1, 1), port: 10), QSMSocketAddress(IPv4Address(224, 0, 0, 1), port: 9)]

    /// Against a reference model (a count per channel): every counter is its
    /// destination's channel and the next count of that channel, so no counter (the
    /// nonce) is ever given twice, whatever the order of destinations.
    @Test(arguments: 1...20)
    func countersFollowTheReferenceModelAndNeverRepeat(seed: UInt64) {
        var random = SplitMix64(seed: seed)
        var counters = DatagramCounters(seed: seed)
        var model: [UInt16: UInt64] = [:]
        var given = Set<UInt64>()
        let destinations = Self.unicast + Self.multicast
        for _ in 0..<5_000 {
            // Runs to one destination, as a sender's datagrams come.
            let destination = destinations[Int(random.next() % UInt64(destinations.count))]
            for _ in 0...(random.next() % 8) {
                let channel = ReplayChannel.of(destination)
                model[channel, default: 0] += 1
                let counter = counters.next(to: destination)
                #expect(counter == UInt64(channel) << ReplayChannel.countBits | model[channel]!)
                #expect(given.insert(counter ?? 0).inserted)
            }
        }
    }

    @Test func unicastIsChannelZeroAndEachMulticastAddressHasItsOwn() {
        #expect(Self.unicast.allSatisfy { ReplayChannel.of($0) == 0 })
        let channels = Self.multicast.map(ReplayChannel.of)
        #expect(channels.allSatisfy { $0 != 0 })
        #expect(Set(channels).count == channels.count)
        #expect(channels.map { ReplayChannel.of(counter: UInt64($0) << ReplayChannel.countBits | 12_345) } == channels)
    }

    /// A channel that has numbered all it can gives no more counters (a repeated nonce
    /// would give the key away), and the others go on.
    @Test func anExhaustedChannelGivesNoMoreCounters() {
        var counters = DatagramCounters(seed: 1, firstCount: ReplayChannel.countLimit - 2)
        #expect(counters.next(to: Self.unicast[0]) == ReplayChannel.countLimit - 1)
        #expect(counters.next(to: Self.unicast[1]) == ReplayChannel.countLimit)
        #expect(counters.next(to: Self.unicast[0]) == nil)
        let channel = UInt64(ReplayChannel.of(Self.multicast[0])) << ReplayChannel.countBits
        #expect(counters.next(to: Self.multicast[0]) == channel | (ReplayChannel.countLimit - 1))
        #expect(counters.next(to: Self.unicast[2]) == nil)
    }

    /// The sender publishes more datagrams than a replay window holds to the region's
    /// address, then its ring's token goes to the member by unicast. The member reads
    /// the token first (its unicast socket, control first) and then the whole multicast
    /// backlog: every datagram is fresh and every message delivered. With one counter
    /// per sender, the first 1,905 were dropped as too old.
    @Test func aMulticastBacklogReadAfterFresherUnicastIsNotAReplay() throws {
        let secret = [UInt8](repeating: 42, count: 32)
        let (sender, group) = try DatagramBundleTests.machine(1, bundleBytes: 0, secret: secret,
                                                              window: WindowFlowControl(messages: 16_384))
        let (member, _) = try DatagramBundleTests.machine(2, bundleBytes: 0, secret: secret)
        let memberAddress = QSMSocketAddress(.loopback, port: 6)
        var multicast: [[UInt8]] = []
        var unicast: [[UInt8]] = []
        var buffer = [UInt8](repeating: 0, count: 8_192)
        func drain(at now: Instant) {
            while let out = buffer.withUnsafeMutableBytes({ sender.pollDatagram(into: $0, now: now) }) {
                if out.destination == DatagramBundleTests.regionAddress { multicast.append(Array(buffer[0..<out.length])) }
                if out.destination == memberAddress { unicast.append(Array(buffer[0..<out.length])) }
            }
        }
        let messages = Int(ReplayWindow.width) + 2_000
        for index in 0..<messages {
            #expect(sender.publish([UInt8](repeating: UInt8(truncatingIfNeeded: index), count: 16), to: group, now: .zero) == .accepted)
            if index % 64 == 63 { drain(at: .zero) }
        }
        drain(at: .zero)
        try #require(multicast.count >= messages)
        sender.tick(now: Instant(nanoseconds: 10_000_000))
        drain(at: Instant(nanoseconds: 10_000_000))
        try #require(!unicast.isEmpty)
        let from = QSMSocketAddress(.loopback, port: 5)
        let now = Instant(nanoseconds: 10_000_000)
        for datagram in unicast + multicast { datagram.withUnsafeBytes { member.datagramReceived($0, from: from, now: now) } }
        var delivered = 0
        while member.pollDelivery() != nil { delivered += 1 }
        #expect(member.statistics.droppedTooOld == 0 && member.statistics.droppedReplayed == 0)
        #expect(member.statistics.droppedUnauthenticated == 0)
        #expect(delivered == messages)
        // Replayed, into either socket, each is still a replay (the first multicast one
        // is below its channel's window by now: too old).
        for datagram in [unicast[0], multicast[0], multicast[messages - 1]] {
            datagram.withUnsafeBytes { member.datagramReceived($0, from: from, now: now) }
        }
        #expect(member.statistics.droppedReplayed == 2 && member.statistics.droppedTooOld == 1)
        #expect(member.pollDelivery() == nil)
    }
}
