/// One message published by this node, held until every region it was sent to has
/// acknowledged it (seed section 4.3.6: sender memory = rate x time to acknowledge).
package final class OutgoingMessage {
    package let id: UInt64
    package let group: GroupID
    package let groupView: UInt64
    package let groupSequence: UInt64
    package let payload: [UInt8]
    package let publishedAt: Instant
    /// The regions of the group view it is committed to.
    package let regions: [RegionReference]
    /// Next transmission: which region, which fragment.
    package var regionCursor = 0
    package var fragmentCursor = 0
    package var unacknowledgedRegions: Int
    /// Sent once to the group's own address with every region's header (hybrid mode).
    package var hybrid = false
    /// The last sequence number used in each region (set as it is transmitted).
    package var lastSequence: [RegionID: UInt64] = [:]

    package init(id: UInt64, group: GroupID, groupView: UInt64, groupSequence: UInt64, payload: [UInt8], publishedAt: Instant,
         regions: [RegionReference]) {
        self.id = id
        self.group = group
        self.groupView = groupView
        self.groupSequence = groupSequence
        self.payload = payload
        self.publishedAt = publishedAt
        self.regions = regions
        unacknowledgedRegions = regions.count
    }
}

/// A sender's state in one region it multicasts to. A class, updated in place: as a
/// value every transmission would copy the in-flight table (O(window) per packet).
package final class RegionSendState {
    package var nextSequence: UInt64 = 1
    package var view: UInt64 = 0
    package var viewStartSequence: UInt64 = 1
    /// The views this sender numbered in here, oldest first, with their first sequence
    /// numbers: what a member that joined in one of them is owed from. The most recent
    /// `viewHistoryLimit` are kept.
    package var viewStarts: [(view: UInt64, start: UInt64)] = []
    package static let viewHistoryLimit = 64
    package var acknowledged: UInt64 = 0
    /// Transmitted, unacknowledged packets by sequence number, for retransmission.
    package var inFlight: [UInt64: (message: OutgoingMessage, fragment: UInt16, view: UInt64, viewStart: UInt64)] = [:]
    /// Messages in transmission order with their last sequence here, for acknowledgement.
    package var awaiting = RingBuffer<(last: UInt64, message: OutgoingMessage)>(initialCapacity: 64)
}

/// What publishing to one group needs, looked up once per message: the group's view
/// number and regions (from the current group view) and its last sequence number.
package final class PublishTarget {
    package var inView = false
    package var viewNumber: UInt64 = 0
    package var regions: [RegionReference] = []
    /// Sent once to the group's own address (hybrid mode, more than one region).
    package var hybrid = false
    package var lastSequence: UInt64 = 0
}
