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
    /// Times the I/O or alarm quantum ran out with work left for the next turn.
    public var ioQuantumExpirations = 0
    /// Times the alarm quantum ran out with alarms left for the next turn.
    public var alarmQuantumExpirations = 0
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
    /// recvmmsg failures other than "would block".
    public var receiveErrors = 0
    /// The last send or receive error seen, for diagnosis.
    public var lastSocketError: SystemError? = nil
}
