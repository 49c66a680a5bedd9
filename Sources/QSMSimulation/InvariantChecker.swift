import QSMProtocol
import QSMGMS

/// Sees every publication (with the views it was committed to) and every delivery of a
/// simulated run, and checks the protocol's guarantees (section 4.2.1):
/// - FIFO per sender at every receiver, and no duplicates (a sender's publication index
///   must rise strictly at each receiver);
/// - nothing delivered that was not sent, or to a node outside the message's group view,
///   or with other bytes than were sent;
/// - nothing lost: a live sender's message reaches every live member of its view that
///   was a member of the message's region from that region view on (a node that joined
///   the region later is owed only what was sent in views from the one it joined in);
///   a gone sender's message reaches every such member of a region if any such member
///   delivered the copy sent there (survivor agreement; with the seed's weaker rule, if
///   a live member of the partition caching it there did);
/// - lossless reconfiguration: a live sender's message also reaches every member of its
///   view whose application stayed in the group from its publication on, whatever
///   regions the member moved through (joins and leaves, a restarted GMS).
package final class InvariantChecker {
    package struct Message {
        package var index: UInt64
        package var sender: Int
        package var group: GroupName
        package var sequence: UInt64
        package var members: [Int]
        /// Per region of the view: the region view's number, its members and partitions.
        package var regions: [RegionID: RegionLayout]
        package var delivered: [UInt64]
        package var publishedAt: Instant
        package var deliveredCount = 0
        /// Per region: the sequence numbers of its fragments there (of the first copy
        /// sent there, if a reconfiguration carried it in again).
        package var regionSequence: [RegionID: Range<UInt64>] = [:]
        /// Per region: the nodes that delivered that first copy.
        package var deliveredIn: [RegionID: [UInt64]] = [:]
    }

    private(set) var violations: [String] = []
    private var messages: [MessageKey: Message] = [:]
    /// Per receiver, per sender and group: the last publication index delivered.
    private var lastIndex: [Int: [FIFOKey: UInt64]] = [:]
    private let nodes: Int
    private(set) var deliveries = 0

    /// A message is named by its sender and its publication index (which its payload
    /// carries): group ids and sequences are the GMS's and a sender's, and a restarted
    /// GMS numbers groups anew.
    package struct MessageKey: Hashable {
        package var sender: Int
        package var index: UInt64
    }

    struct FIFOKey: Hashable {
        var sender: Int
        var group: GroupName
    }

    /// Whether a node's application had joined a group and not left it again at a time:
    /// a continuing member may get a message of a view that did not list it yet (a
    /// restarted GMS rebuilding its views, or a copy carried by a reconfiguration).
    package var wasMember: (Int, GroupName, Instant) -> Bool = { _, _, _ in false }

    /// Whether the run holds the protocol to survivor agreement (every member that stays
    /// in a region ends with the same set of a gone sender's messages), or to the seed's
    /// weaker crashed-sender rule (`ProtocolConfiguration.survivorAgreement`).
    private let agreement: Bool

    package init(nodes: Int, survivorAgreement: Bool = true) {
        self.nodes = nodes
        agreement = survivorAgreement
    }

    package func violation(_ text: String) {
        if violations.count < 50 { violations.append(text) }
    }

    package struct RegionLayout {
        package var view: UInt64
        package var members: [Int]
        package var partitions: [[Int]]
        package init(view: UInt64, members: [Int], partitions: [[Int]]) {
            self.view = view
            self.members = members
            self.partitions = partitions
        }
    }

    package func published(sender: Int, group: GroupName, sequence: UInt64, index: UInt64, members: [Int],
                           regions: [RegionID: RegionLayout], at time: Instant) {
        messages[MessageKey(sender: sender, index: index)] = Message(
            index: index, sender: sender, group: group, sequence: sequence, members: members, regions: regions,
            delivered: [UInt64](repeating: 0, count: (nodes + 63) / 64), publishedAt: time)
    }

    package func delivered(at node: Int, _ delivery: NodeDelivery, expectedBytes: Int) {
        deliveries += 1
        let sender = Int(delivery.sender.value) - 1
        let payload = delivery.payload
        var index: UInt64 = 0
        if payload.count >= 8 { for byte in payload.prefix(8) { index = index << 8 | UInt64(byte) } }
        let what = "\(delivery.sender)/\(delivery.group)#\(delivery.sequence)"
        guard var message = messages[MessageKey(sender: sender, index: index)] else {
            return violation("node \(node) delivered \(what) (payload index \(index)), which was never sent")
        }
        if payload.count != expectedBytes || message.group != delivery.group || message.sequence != delivery.sequence
            || (payload.count > 8 && payload[payload.startIndex + payload.count - 1] != UInt8(truncatingIfNeeded: message.index)) {
            violation("node \(node) delivered corrupted bytes or numbering for \(what) (sent as \(message.group)#\(message.sequence))")
        }
        let fifo = FIFOKey(sender: sender, group: delivery.group)
        let previous = lastIndex[node]?[fifo] ?? 0
        if message.index <= previous {
            violation("node \(node) delivered \(delivery.sender)'s message #\(message.index) after #\(previous) in \(delivery.group): duplicate or out of FIFO order")
        }
        lastIndex[node, default: [:]][fifo] = max(previous, message.index)
        if message.members.binarySearchContains(node) == false && !wasMember(node, message.group, message.publishedAt) {
            violation("node \(node) delivered a message of a view it is not in (\(what))")
        }
        let word = node / 64, bit = UInt64(1) << UInt64(node % 64)
        if message.delivered[word] & bit == 0 {
            message.delivered[word] |= bit
            message.deliveredCount += 1
        }
        // The copy first sent in a region has its lowest numbers there; copies carried into
        // it later by a reconfiguration are numbered after it, and cached by the layout of
        // a later view. The crashed-sender rule judges the first copy.
        let copy = delivery.regionSequence..<(delivery.regionSequence + UInt64(delivery.fragments))
        if let first = message.regionSequence[delivery.region], first.lowerBound < copy.lowerBound {
            // A later copy: counts for completeness, not for who holds the first.
        } else {
            if message.regionSequence[delivery.region] != copy {
                message.regionSequence[delivery.region] = copy
                message.deliveredIn[delivery.region] = [UInt64](repeating: 0, count: (nodes + 63) / 64)
            }
            message.deliveredIn[delivery.region]![word] |= bit
        }
        messages[MessageKey(sender: sender, index: index)] = message
    }

    /// The end-of-run completeness check.
    /// - Parameter stayedSince: whether a node has been a member of a region without a
    ///   break since a view of it (it installed that view or an earlier one, and never
    ///   left since); a node that left the region a message went to (left its groups, or
    ///   moved to another region by joining or leaving one), even if it came back, is not
    ///   owed what it had not received.
    /// - Parameter senderGone: whether a sender crashed, or stopped belonging and
    ///   publishing to the group of a message: its in-flight messages are then held to
    ///   the crashed sender's rule (a sender that leaves gives up what was not yet
    ///   acknowledged, as one that fails does).
    /// - Parameter stayedInGroup: whether a node has been a member of a group without a
    ///   break since a time (it never left it from then on). A live sender's message is
    ///   owed to every member of its view that stays in the group, whatever regions the
    ///   member moves through meanwhile (lossless reconfiguration).
    package func checkCompleteness(crashed: Set<Int>, senderGone: (Int, GroupName) -> Bool, stayedSince: (Int, RegionID, UInt64) -> Bool,
                                   stayedInGroup: (Int, GroupName, Instant) -> Bool) {
        for (key, message) in messages {
            func got(_ node: Int) -> Bool { message.delivered[node / 64] & (UInt64(1) << UInt64(node % 64)) != 0 }
            func stayed(_ node: Int) -> Bool {
                message.regions.contains { $0.value.members.binarySearchContains(node) && stayedSince(node, $0.key, $0.value.view) }
                    || stayedInGroup(node, message.group, message.publishedAt)
            }
            if !senderGone(key.sender, message.group) {
                for member in message.members where !crashed.contains(member) && !got(member) && stayed(member) {
                    let sentIn = message.regions.sorted { $0.key < $1.key }
                        .map { "\($0.key)@\($0.value.view)\($0.value.members.binarySearchContains(member) ? "*" : "")" }
                    violation("node \(member) never delivered \(key.sender + 1)'s message #\(message.index) (\(message.group)#\(message.sequence), sent in \(sentIn.joined(separator: ",")); * has the node)")
                    break
                }
            } else {
                // Sender-crash agreement: the members of a region that stay in it end with
                // the same set of a gone sender's messages. If one of them delivered the
                // copy sent there, every one of them delivered the message.
                for (region, layout) in message.regions {
                    guard let sequences = message.regionSequence[region] else { continue }
                    let deliveredHere = message.deliveredIn[region] ?? []
                    func gotHere(_ node: Int) -> Bool {
                        node / 64 < deliveredHere.count && deliveredHere[node / 64] & (UInt64(1) << UInt64(node % 64)) != 0
                    }
                    let survivors = layout.members.filter { !crashed.contains($0) && stayedSince($0, region, layout.view) }
                    guard let witness = survivors.first(where: gotHere) else { continue }
                    for member in survivors where !got(member) {
                        let rule = agreement ? "survivor agreement" : "crashed-sender rule"
                        if !agreement {
                            // The seed's weaker rule: owed only if a live member of the
                            // caching partition of every fragment delivered it.
                            guard !layout.partitions.isEmpty, sequences.allSatisfy({ sequence in
                                layout.partitions[Int(sequence % UInt64(layout.partitions.count))]
                                    .contains { !crashed.contains($0) && gotHere($0) }
                            }) else { break }
                        }
                        violation("node \(member) never delivered gone sender \(key.sender + 1)'s message #\(message.index) (\(region)#\(sequences) of view \(layout.view)), which surviving member \(witness) delivered (\(rule))")
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
