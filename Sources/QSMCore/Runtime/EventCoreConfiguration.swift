/// Settings of one event core. Defaults follow section 4.2.2 where it gives a value.
public struct EventCoreConfiguration: Sendable {
    /// Longest stretch spent processing I/O events before alarms and requests get a turn.
    public var ioQuantum: Duration = .milliseconds(50)
    /// Longest stretch spent firing alarms before the next turn.
    public var alarmQuantum: Duration = .milliseconds(5)
    /// Longest stretch spent on requests; nil means drain the queue (as in QSM), bounded
    /// only by the queue's capacity so producers cannot starve the core.
    public var requestQuantum: Duration? = nil
    /// Slots in the lock-free request queue; a full queue refuses new requests.
    public var requestQueueCapacity = 16_384
    /// Preallocated packet buffers shared by receiving and sending.
    public var packetBufferCount = 2_048
    /// Bytes per packet buffer: the largest datagram sent or accepted. Longer inbound
    /// datagrams are dropped and counted, never delivered truncated.
    public var packetBufferCapacity = 8_192
    /// Datagrams per recvmmsg/sendmmsg call.
    public var datagramBatchSize = 64
    /// Batches pulled and sent per socket per I/O turn before other work gets a turn.
    public var outputBatchesPerTurn = 16
    /// Hand runs of equal datagrams to one destination to the kernel as one segmented
    /// send (UDP generic segmentation offload), where the kernel offers it: the stack is
    /// traversed once per run instead of once per datagram. Probed per socket; a kernel
    /// that refuses it is noticed at the first send and the socket sends plainly from then
    /// on (`EventCoreStatistics.segmentationFallbacks`).
    public var segmentationOffload = true
    /// Let the kernel hand receiving sockets runs of datagrams from one source as one
    /// coalesced message (UDP generic receive offload), where it offers it: a segmented
    /// send from a peer then costs one receive instead of one per datagram. The core cuts
    /// each message back into datagrams and hands them over where they lie (no copy).
    public var receiveOffload = true

    /// After handling I/O or a request, the core keeps polling, yielding the processor
    /// between looks, before it blocks: `busyPollAttempts` empty looks in a row, or, while
    /// work has lately come at intervals under half of this, for up to this long after its
    /// last work (unless its yields show the processor is wanted elsewhere). Under heavy
    /// traffic that saves a sleep and a wake-up per few packets; at moderate rates (10,000
    /// messages a second) the core waits for the next message awake, which takes its
    /// wake-up out of the message's latency at the cost of processor time; under light
    /// traffic the looks run out quickly and the core sleeps. The node's dispatcher looks
    /// `busyPollAttempts` times after handing on outputs. Zero turns polling off.
    public var busyPoll: Duration = .microseconds(500)
    /// The empty looks in a row after work before sleeping when work comes seldom (see
    /// `busyPoll`).
    public var busyPollAttempts = 4

    /// The defaults: they suit a node with a few busy sockets.
    public init() {}

    /// Throws a `ConfigurationError` naming the first invalid setting.
    public func validate() throws(ConfigurationError) {
        func positive(_ duration: Duration, _ name: String) throws(ConfigurationError) {
            guard duration > .zero else { throw ConfigurationError("\(name) must be positive, got \(duration)") }
        }
        try positive(ioQuantum, "ioQuantum")
        try positive(alarmQuantum, "alarmQuantum")
        guard busyPoll >= .zero, busyPoll <= .seconds(1) else {
            throw ConfigurationError("busyPoll must be 0...1 s, got \(busyPoll)")
        }
        guard busyPollAttempts >= 0 else { throw ConfigurationError("busyPollAttempts cannot be negative") }
        if let requestQuantum { try positive(requestQuantum, "requestQuantum") }
        guard (2...(1 << 24)).contains(requestQueueCapacity) else {
            throw ConfigurationError("requestQueueCapacity must be 2...16777216, got \(requestQueueCapacity)")
        }
        guard (1...(1 << 20)).contains(packetBufferCount) else {
            throw ConfigurationError("packetBufferCount must be 1...1048576, got \(packetBufferCount)")
        }
        guard (64...65_536).contains(packetBufferCapacity) else {
            throw ConfigurationError("packetBufferCapacity must be 64...65536 bytes, got \(packetBufferCapacity)")
        }
        guard (1...1024).contains(datagramBatchSize) else {
            throw ConfigurationError("datagramBatchSize must be 1...1024, got \(datagramBatchSize)")
        }
        guard datagramBatchSize <= packetBufferCount else {
            throw ConfigurationError("datagramBatchSize (\(datagramBatchSize)) must not exceed packetBufferCount (\(packetBufferCount))")
        }
        guard outputBatchesPerTurn >= 1 else {
            throw ConfigurationError("outputBatchesPerTurn must be at least 1, got \(outputBatchesPerTurn)")
        }
    }
}
