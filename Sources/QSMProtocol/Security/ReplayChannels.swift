/// Counter spaces per destination: the replay check's counters are numbered per socket
/// they arrive on, not per sender.
///
/// A receiver reads each region's multicast address and its unicast port through
/// separate sockets, and drains them in its own order: control first, a paused
/// consumer's data sockets not at all, one socket's backlog of thousands while another
/// holds a few. With one counter per sender incarnation, a datagram read from one socket
/// moved the sender's window past what still waited in another, and those datagrams,
/// authentic and never seen, were then dropped as too old. Recovery asked for them again;
/// the repairs, unicast and read first, moved the window further. With 16 senders into
/// one receiver (`qsm-bench run --senders 16 --receivers 1`), 254,338 datagrams went that
/// way and the senders retransmitted 48 times what they sent.
///
/// So the envelope's 64-bit counter is a channel in its top 16 bits and a count in the
/// other 48. The channel is 0 for unicast and, for a multicast destination, a number
/// from 1 to 65,535 derived from its address: each socket's datagrams of one sender come
/// from one counter space, in order. Every (channel, count) is used once per
/// incarnation, so nonces (the whole field) never repeat under a key. Two multicast
/// addresses with the same channel share a count, as every destination did before. A
/// receiver keeps a window per (sender, channel); a datagram replayed into another
/// socket meets the window of its own channel, and is still a replay.
package enum ReplayChannel {
    /// Bits of the envelope counter that number datagrams within a channel.
    package static let countBits: UInt64 = 48
    /// Datagrams one channel of one incarnation can number (2^48 - 1: at a million a
    /// second, nine years).
    package static let countLimit: UInt64 = (1 << countBits) - 1

    /// The channel of `destination`: 0 for unicast, 1...65535 for multicast.
    @inline(__always)
    package static func of(_ destination: QSMSocketAddress) -> UInt16 {
        guard destination.address.isMulticast else { return 0 }
        // fmix64 of address and port: neighbouring pool addresses spread over the range.
        var mixed = UInt64(destination.address.value) << 16 | UInt64(destination.port)
        mixed ^= mixed >> 33
        mixed &*= 0xFF51_AFD7_ED55_8CCD
        mixed ^= mixed >> 33
        mixed &*= 0xC4CE_B9FE_1A85_EC53
        mixed ^= mixed >> 33
        return UInt16(1 + mixed % 65_535)
    }

    /// The channel an envelope counter belongs to.
    @inline(__always)
    package static func of(counter: UInt64) -> UInt16 { UInt16(truncatingIfNeeded: counter >> countBits) }
}

/// A sending node's envelope counters, one per channel: a table, with the channel in use
/// held aside so that a run of datagrams to one destination costs no lookup.
struct DatagramCounters {
    private var counts: IdentifierTable<ReplayChannelKey, UInt64>
    private var current: (address: QSMSocketAddress, channel: UInt16, count: UInt64)?

    /// Where each channel's count starts (above 0 only in tests of exhaustion).
    private let firstCount: UInt64

    init(seed: UInt64, firstCount: UInt64 = 0) {
        counts = IdentifierTable(seed: seed)
        self.firstCount = firstCount
    }

    /// The next envelope counter for a datagram to `destination`; nil once its channel
    /// has numbered `ReplayChannel.countLimit` datagrams (a nonce must never repeat).
    mutating func next(to destination: QSMSocketAddress) -> UInt64? {
        if current?.address != destination {
            let channel = ReplayChannel.of(destination)
            if let current, current.channel == channel {
                self.current = (destination, channel, current.count)
            } else {
                if let current { counts[Self.key(current.channel)] = current.count }
                current = (destination, channel, counts[Self.key(channel)] ?? firstCount)
            }
        }
        guard current!.count < ReplayChannel.countLimit else { return nil }
        current!.count += 1
        return UInt64(current!.channel) << ReplayChannel.countBits | current!.count
    }

    /// This node's own counts are keyed by channel alone (the sender field is unused).
    private static func key(_ channel: UInt16) -> ReplayChannelKey { ReplayChannelKey(sender: NodeID(0), channel: channel) }
}

/// A replay window's key: one sender's channel.
struct ReplayChannelKey: IdentifierKey {
    var sender: NodeID
    var channel: UInt16

    var folded: UInt64 { sender.value ^ UInt64(channel) << 48 ^ UInt64(channel) }
}
