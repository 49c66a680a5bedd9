/// Counters of one event core since it started. Drops are counted by reason; nothing is
/// dropped without being counted here.
public struct EventCoreStatistics: Sendable, Equatable {
    /// Passes through the three queues (I/O, alarms, requests).
    public var turns = 0
    /// Times the core, finding no work, announced it would block in epoll. Submitters
    /// write the eventfd only to answer an announcement, at most once each.
    public var sleepAnnouncements = 0
    /// Announcements that led to a blocking epoll wait (the others were cancelled by a
    /// request or stop that arrived meanwhile).
    public var sleeps = 0
    /// Turns that polled instead of sleeping because traffic was flowing.
    public var busyPolls = 0
    /// Datagrams read from the node's sockets.
    public var datagramsReceived = 0
    /// Bytes of those datagrams.
    public var bytesReceived = 0
    /// Datagrams handed to the kernel.
    public var datagramsSent = 0
    /// Bytes of those datagrams.
    public var bytesSent = 0
    /// Alarms (timers) that fired.
    public var alarmsFired = 0
    /// Requests from application threads that the core carried out.
    public var requestsProcessed = 0
    /// Publications accepted from the application but still queued for the core when the
    /// node stopped: never sent, let go with the queue.
    public var publicationsDiscardedAtStop = 0
    /// Times the I/O or alarm quantum ran out with work left for the next turn.
    public var ioQuantumExpirations = 0
    /// Times the alarm quantum ran out with alarms left for the next turn.
    public var alarmQuantumExpirations = 0
    /// Times a turn paused its inbound data, after a slice of it, to let control
    /// (tokens, requests, repairs, in or out) go first.
    public var inboundDataSlices = 0
    /// Inbound datagrams longer than a packet buffer: dropped, never delivered cut short.
    public var droppedTruncated = 0
    /// Times no packet buffer was free (receive paused or a send postponed).
    public var poolExhaustions = 0
    /// Outbound datagrams the kernel refused (other than "would block"), dropped.
    public var droppedSendErrors = 0
    /// Feeds that claimed to have written more bytes than their buffer holds; dropped.
    public var droppedOversizedOutput = 0
    /// Inbound datagrams thrown away by `discardInbound(until:)` (fault injection).
    public var droppedByInjectedLoss = 0
    /// Whether some socket of this core sends with UDP segmentation offload (it was asked
    /// for, the kernel offers it, and no send has been refused).
    public var segmentationOffload = false
    /// Segmented sends (each carrying two datagrams or more, cut by the kernel), and the
    /// datagrams they carried (counted in `datagramsSent` too).
    public var segmentedSends = 0
    /// See `segmentedSends`.
    public var segmentedDatagrams = 0
    /// Sockets that turned segmentation off because the kernel refused a segmented send.
    public var segmentationFallbacks = 0
    /// Whether some socket of this core receives coalesced datagrams (UDP GRO).
    public var receiveOffload = false
    /// Coalesced messages received (each two datagrams or more, cut apart by the core),
    /// and the datagrams they held (counted in `datagramsReceived` too, as processed).
    public var coalescedReceives = 0
    /// See `coalescedReceives`.
    public var coalescedDatagrams = 0
    /// recvmmsg failures other than "would block".
    public var receiveErrors = 0
    /// The last send or receive error seen, for diagnosis.
    public var lastSocketError: SystemError? = nil
}
