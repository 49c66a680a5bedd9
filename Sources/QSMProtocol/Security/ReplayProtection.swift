/// Replay protection for authenticated datagrams (with a cluster secret).
///
/// Every datagram a node sends ends with an envelope, and its tag covers it (see
/// `DatagramSeal`):
///
///     packet | sender (8) | epoch (8) | counter (8) | tag (16)
///
/// - `epoch` names the node's incarnation. Its high 32 bits are the start time in
///   seconds and its low 32 bits are random, both supplied by the driver, so a
///   restarted node's epoch is higher than its old ones.
/// - `counter` numbers the incarnation's datagrams from 1, per channel (the destination's
///   socket: unicast, or one multicast address; see `ReplayChannel`), with the channel in
///   its top 16 bits.
///
/// A receiver keeps a window of the last `ReplayWindow.width` counters per sender and
/// channel. It drops and counts, by reason:
/// - a counter it has seen (a replay);
/// - a counter older than its channel's window (a replay, or a datagram so late that
///   recovery treats it as lost);
/// - an epoch lower than the sender's current one, as seen on any channel (a dead
///   incarnation).
///
/// Data packets were already deduplicated by sequence number. Now a replayed one costs a
/// tag check and a bit test, and never reaches the protocol.
package enum DatagramEnvelope {
    package static let bytes = 24

    /// Writes the envelope at `offset` in `buffer`.
    @inline(__always)
    static func write(sender: NodeID, epoch: UInt64, counter: UInt64, into buffer: UnsafeMutableRawBufferPointer, at offset: Int) {
        buffer.storeBytes(of: sender.value.bigEndian, toByteOffset: offset, as: UInt64.self)
        buffer.storeBytes(of: epoch.bigEndian, toByteOffset: offset + 8, as: UInt64.self)
        buffer.storeBytes(of: counter.bigEndian, toByteOffset: offset + 16, as: UInt64.self)
    }

    /// Reads the envelope that ends `body` (a verified datagram without its tag).
    @inline(__always)
    static func read(_ body: UnsafeRawBufferPointer) -> (sender: NodeID, epoch: UInt64, counter: UInt64)? {
        guard body.count >= bytes else { return nil }
        let offset = body.count - bytes
        return (NodeID(UInt64(bigEndian: body.loadUnaligned(fromByteOffset: offset, as: UInt64.self))),
                UInt64(bigEndian: body.loadUnaligned(fromByteOffset: offset + 8, as: UInt64.self)),
                UInt64(bigEndian: body.loadUnaligned(fromByteOffset: offset + 16, as: UInt64.self)))
    }
}

/// Which counters of one sender's current incarnation have been seen: the highest, and a
/// bitmap of the `width` below it. Fixed size, so there is no allocation per datagram.
package struct ReplayWindow: Sendable {
    package static let width: UInt64 = 4096
    static let words = Int(width / 64)

    package enum Verdict: Equatable, Sendable {
        case fresh
        case replayed
        case tooOld
        case deadIncarnation
    }

    package private(set) var epoch: UInt64
    package private(set) var highest: UInt64 = 0
    private var seen: [UInt64]

    package init(epoch: UInt64) {
        self.epoch = epoch
        seen = [UInt64](repeating: 0, count: Self.words)
    }

    /// Checks `counter` of `epoch`, and marks it as seen if it is fresh.
    package mutating func admit(epoch: UInt64, counter: UInt64) -> Verdict {
        if epoch < self.epoch { return .deadIncarnation }
        if epoch > self.epoch {
            // A newer incarnation of the sender: its old one is dead from now on.
            self.epoch = epoch
            highest = 0
            for index in 0..<Self.words { seen[index] = 0 }
        }
        if counter > highest {
            let shift = counter - highest
            if shift >= Self.width {
                for index in 0..<Self.words { seen[index] = 0 }
            } else {
                // Clear the slots the window slides over (they held counters `width` lower).
                var position = highest + 1
                while position <= counter {
                    seen[Int((position / 64) % UInt64(Self.words))] &= ~(1 << (position % 64))
                    position += 1
                }
            }
            highest = counter
            mark(counter)
            return .fresh
        }
        if highest - counter >= Self.width { return .tooOld }
        if isMarked(counter) { return .replayed }
        mark(counter)
        return .fresh
    }

    @inline(__always)
    private mutating func mark(_ counter: UInt64) {
        seen[Int((counter / 64) % UInt64(Self.words))] |= 1 << (counter % 64)
    }

    @inline(__always)
    private func isMarked(_ counter: UInt64) -> Bool {
        seen[Int((counter / 64) % UInt64(Self.words))] & (1 << (counter % 64)) != 0
    }
}
