import QSMProtocol
import QSMGMS

/// Sees every publication (with the ground-truth views at that moment) and every delivery
/// of a simulated run, and checks the protocol's guarantees (section 4.2.1):
/// - FIFO per sender at every receiver, and no duplicates (a sender's publication index
///   must rise strictly at each receiver);
/// - nothing delivered that was not sent, or to a node outside the message's group view,
///   or with other bytes than were sent;
/// - nothing lost: a live sender's message reaches every live member of its view; a
///   crashed sender's message reaches every live member of a region if a live member of
///   the partition caching it there delivered it.
package final class InvariantChecker {
    package struct Message {
        package var index: UInt64
        package var sender: Int
        package var members: [Int]
        /// Per region of the view: its members and how many partitions it had.
        package var regions: [RegionID: (members: [Int], partitions: [[Int]])]
        package var delivered: [UInt64]
        package var publishedAt: Instant
        package var deliveredCount = 0
        package var regionSequence: [RegionID: UInt64] = [:]
    }

    private(set) var violations: [String] = []
    private var messages: [MessageKey: Message] = [:]
    private var lastIndex: [Int: [Int: UInt64]] = [:]
    private let nodes: Int
    private(set) var deliveries = 0

    package struct MessageKey: Hashable {
        package var sender: Int
        package var group: GroupID
        package var sequence: UInt64
    }

    package init(nodes: Int) { self.nodes = nodes }

    package func violation(_ text: String) {
        if violations.count < 50 { violations.append(text) }
    }

    package func published(sender: Int, group: GroupID, sequence: UInt64, index: UInt64, members: [Int],
                   regions: [RegionID: (members: [Int], partitions: [[Int]])], at time: Instant) {
        messages[MessageKey(sender: sender, group: group, sequence: sequence)] = Message(
            index: index, sender: sender, members: members, regions: regions,
            delivered: [UInt64](repeating: 0, count: (nodes + 63) / 64), publishedAt: time)
    }

    package func delivered(at node: Int, _ delivery: ProtocolDelivery, expectedBytes: Int) {
        deliveries += 1
        let sender = Int(delivery.sender.value) - 1
        let key = MessageKey(sender: sender, group: delivery.group, sequence: delivery.groupSequence)
        guard var message = messages[key] else {
            return violation("node \(node) delivered \(delivery.sender)/\(delivery.group)#\(delivery.groupSequence), which was never sent")
        }
        let payload = delivery.payload
        var index: UInt64 = 0
        if payload.count >= 8 { for byte in payload.prefix(8) { index = index << 8 | UInt64(byte) } }
        if payload.count != expectedBytes || index != message.index
            || (payload.count > 8 && payload[payload.startIndex + payload.count - 1] != UInt8(truncatingIfNeeded: message.index)) {
            violation("node \(node) delivered corrupted bytes for \(delivery.sender)/\(delivery.group)#\(delivery.groupSequence)")
        }
        let previous = lastIndex[node]?[sender] ?? 0
        if message.index <= previous {
            violation("node \(node) delivered \(delivery.sender)'s message #\(message.index) after #\(previous): duplicate or out of FIFO order")
        }
        lastIndex[node, default: [:]][sender] = max(previous, message.index)
        if message.members.binarySearchContains(node) == false {
            violation("node \(node) delivered a message of a view it is not in (\(delivery.sender)/\(delivery.group)#\(delivery.groupSequence))")
        }
        let word = node / 64, bit = UInt64(1) << UInt64(node % 64)
        if message.delivered[word] & bit == 0 {
            message.delivered[word] |= bit
            message.deliveredCount += 1
        }
        message.regionSequence[delivery.region] = delivery.regionSequence
        messages[key] = message
    }

    /// The end-of-run completeness check.
    /// - Parameter stayedSince: whether a node has been a member of a region without a
    ///   break since a time; a node that left the region a message went to (left its
    ///   groups, or moved to another region by joining or leaving one), even if it came
    ///   back, is not owed what it had not received.
    package func checkCompleteness(crashed: Set<Int>, senderCrashed: (Int) -> Bool, stayedSince: (Int, RegionID, Instant) -> Bool) {
        for (key, message) in messages {
            func got(_ node: Int) -> Bool { message.delivered[node / 64] & (UInt64(1) << UInt64(node % 64)) != 0 }
            func stayed(_ node: Int) -> Bool {
                message.regions.contains { $0.value.members.binarySearchContains(node) && stayedSince(node, $0.key, message.publishedAt) }
            }
            if !senderCrashed(key.sender) {
                for member in message.members where !crashed.contains(member) && !got(member) && stayed(member) {
                    violation("node \(member) never delivered \(key.sender + 1)'s message #\(message.index) (\(key.group)#\(key.sequence))")
                    break
                }
            } else {
                for (region, layout) in message.regions {
                    guard let sequence = message.regionSequence[region], !layout.partitions.isEmpty else { continue }
                    let caching = layout.partitions[Int(sequence % UInt64(layout.partitions.count))]
                    guard caching.contains(where: { !crashed.contains($0) && got($0) }) else { continue }
                    for member in layout.members where !crashed.contains(member) && !got(member)
                        && stayedSince(member, region, message.publishedAt) {
                        violation("node \(member) never delivered crashed sender \(key.sender + 1)'s message #\(message.index), which a live caching member holds")
                        break
                    }
                }
            }
        }
    }
}

extension Array where Element == Int {
    package func binarySearchContains(_ value: Int) -> Bool {
        var low = 0, high = count - 1
        while low <= high {
            let middle = (low + high) / 2
            if self[middle] == value { return true }
            if self[middle] < value { low = middle + 1 } else { high = middle - 1 }
        }
        return false
    }
}
