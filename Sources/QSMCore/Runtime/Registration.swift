/// One descriptor registered with the event core, and what it needs to be driven.
final class Registration {
    let id: RegistrationID
    let descriptor: Int32
    let medium: IOMedium
    let traffic: TrafficClass
    // Stored properties are `@exclusivity(unchecked)`: this state is confined to one thread
    // and never accessed overlappingly; the runtime's dynamic checks cost about 5% of a
    // receiver's CPU (perf, `qsm-bench run`).
    /// What epoll reports for it; empty means it is not registered with epoll at all.
    @exclusivity(unchecked) var interest: Epoll.Interest
    let kind: Kind

    enum Kind {
        case datagramSocket(DatagramSocketState)
        case descriptor(any DescriptorHandler)
    }

    init(id: RegistrationID, descriptor: Int32, medium: IOMedium, traffic: TrafficClass,
         interest: Epoll.Interest, kind: Kind) {
        self.id = id
        self.descriptor = descriptor
        self.medium = medium
        self.traffic = traffic
        self.interest = interest
        self.kind = kind
    }
}

/// A UDP socket's receive handler and its sink side of the pull model: the feeds that
/// registered intent to send on it (control feeds are pulled before data feeds,
/// round-robin within each class) and the datagrams already built but not yet accepted
/// by the kernel.
final class DatagramSocketState {
    let socket: UDPSocket
    /// Nil for a send-only socket.
    let handler: (any DatagramHandler)?
    let pending: DatagramBatch
    @exclusivity(unchecked) private var controlFeeds = RingBuffer<any PacketFeed>(initialCapacity: 4)
    @exclusivity(unchecked) private var dataFeeds = RingBuffer<any PacketFeed>(initialCapacity: 4)
    @exclusivity(unchecked) private var registeredFeeds = Set<ObjectIdentifier>()
    /// The kernel said EAGAIN; wait for EPOLLOUT before pulling again.
    @exclusivity(unchecked) var writeBlocked = false
    /// An `.output` event for this socket is already queued.
    @exclusivity(unchecked) var outputQueued = false
    /// The kernel hands this socket coalesced datagrams (UDP GRO): it is read into its
    /// own `coalescedBatch`, made on the first read.
    @exclusivity(unchecked) var coalesces = false
    @exclusivity(unchecked) var coalescedBatch: CoalescedDatagramBatch?
    /// Datagrams of `coalescedBatch` queued and not yet handled: until none is left, the
    /// socket is not read again (its data waits in the kernel).
    @exclusivity(unchecked) var coalescedInQueue = 0

    init(socket: UDPSocket, handler: (any DatagramHandler)?, pending: DatagramBatch) {
        self.socket = socket
        self.handler = handler
        self.pending = pending
    }

    /// The readiness wanted while not blocked on output.
    var restingInterest: Epoll.Interest { handler == nil ? [] : .readable }

    var hasIntent: Bool { !controlFeeds.isEmpty || !dataFeeds.isEmpty }
    var hasOutput: Bool { hasIntent || !pending.isEmpty }

    /// Records a feed's intent; registering a feed that is already waiting does nothing.
    func registerIntent(_ feed: any PacketFeed, traffic: TrafficClass) {
        guard registeredFeeds.insert(ObjectIdentifier(feed)).inserted else { return }
        switch traffic {
        case .control: controlFeeds.append(feed)
        case .data: dataFeeds.append(feed)
        }
    }

    /// The next feed to pull from, taken off its list; give it back with `requeue`.
    func takeNextFeed() -> (feed: any PacketFeed, traffic: TrafficClass)? {
        if let feed = controlFeeds.popFirst() { return (feed, .control) }
        if let feed = dataFeeds.popFirst() { return (feed, .data) }
        return nil
    }

    /// Puts a feed back at the end of its list (it has more to send).
    func requeue(_ feed: any PacketFeed, traffic: TrafficClass) {
        switch traffic {
        case .control: controlFeeds.append(feed)
        case .data: dataFeeds.append(feed)
        }
    }

    /// Forgets a feed taken with `takeNextFeed` that has nothing more to send.
    func withdraw(_ feed: any PacketFeed) {
        registeredFeeds.remove(ObjectIdentifier(feed))
    }

    /// Removes a feed's intent wherever it waits.
    func cancelIntent(_ feed: any PacketFeed) {
        let identifier = ObjectIdentifier(feed)
        guard registeredFeeds.remove(identifier) != nil else { return }
        controlFeeds.removeAll { ObjectIdentifier($0) == identifier }
        dataFeeds.removeAll { ObjectIdentifier($0) == identifier }
    }
}
