/// What kind of traffic a socket or a feed carries. Control and recovery traffic (tokens,
/// ACKs, NAKs, retransmissions) is handled before regular data, inbound and outbound,
/// so that reactions to loss are not queued behind bulk data (section 4.2.2, Fig. 4.15).
package enum TrafficClass: Sendable {
    case control
    case data
}

/// Whether a descriptor is network I/O or local I/O (files, pipes); network comes first.
package enum IOMedium: Sendable {
    case network
    case local
}

/// Identifies a descriptor registered with an `EventCore`. Events for a registration
/// that has since been removed are recognised by the generation and ignored.
package struct RegistrationID: Hashable, Sendable {
    let slot: Int32
    let generation: UInt32

    var token: UInt64 { UInt64(generation) << 32 | UInt64(UInt32(bitPattern: slot)) }
}

/// Receives the datagrams of a registered UDP socket, on the core thread.
package protocol DatagramHandler: AnyObject {
    /// - Parameter bytes: the datagram; valid only during the call (its buffer goes back
    ///   to the pool afterwards), so copy what must be kept.
    func datagramReceived(_ bytes: UnsafeRawBufferPointer, from source: QSMSocketAddress,
                          on registration: RegistrationID, core: EventCore)
}

/// Told when the core finished processing a batch of I/O events (a turn, or a slice of
/// a turn's inbound data), so that work which only needs doing once per batch (not per
/// datagram) can be done then.
package protocol IOTurnObserver: AnyObject {
    func ioBatchEnded(core: EventCore)
}

/// One datagram a feed produced into the buffer it was offered.
package struct OutboundDatagram: Sendable {
    package var destination: QSMSocketAddress
    /// Bytes written at the start of the offered buffer.
    package var length: Int
    /// Whether the feed wants to be pulled again after this datagram.
    package var hasMore: Bool

    package init(destination: QSMSocketAddress, length: Int, hasMore: Bool) {
        self.destination = destination
        self.length = length
        self.hasMore = hasMore
    }
}

/// A sender in the pull model (section 4.2.2, Fig. 4.16-4.17): it registers intent with a
/// socket and builds each datagram only when the socket asks for one, from the freshest
/// state, so nothing waits in buffers going stale.
package protocol PacketFeed: AnyObject {
    /// Writes the next datagram into `buffer`, or returns nil when there is nothing to send
    /// after all (the intent is then withdrawn). Called on the core thread.
    func produceDatagram(into buffer: UnsafeMutableRawBufferPointer, core: EventCore) -> OutboundDatagram?
}

/// Told when a registered non-datagram descriptor (a stream socket, a pipe, a file) is
/// ready; it does its own I/O.
package protocol DescriptorHandler: AnyObject {
    func descriptorReadable(_ registration: RegistrationID, core: EventCore)
    func descriptorWritable(_ registration: RegistrationID, core: EventCore)
}

/// Receives alarms scheduled with `EventCore.scheduleAlarm`.
package protocol AlarmHandler: AnyObject {
    /// - Parameters:
    ///   - tag: the value given when scheduling, to tell the handler's alarms apart.
    ///   - deadline: when the alarm was due; `core.now` is when it actually fired.
    func alarmFired(tag: UInt64, deadline: Instant, core: EventCore)
}

/// Work handed to the core from other threads through `EventCoreHandle`.
package enum CoreRequest: Sendable {
    /// Runs the closure on the core thread with the core.
    case perform(@Sendable (EventCore) -> Void)
    /// A message to publish, for the core's `PublishHandler`: a typed request, so the
    /// per-message path allocates no closure. `slot` is the group's publisher slot, or
    /// -1 (`QSMNode.publisher(for:)`).
    case publish(payload: [UInt8], group: GroupName, slot: Int32)
}

/// Takes the `.publish` requests of an event core (set once, on the core thread).
package protocol PublishHandler: AnyObject {
    func publishRequested(_ payload: consuming [UInt8], to group: GroupName, slot: Int32)
    /// A run of `publishRequested` calls ended (the request queue was drained, its turn's
    /// share was used up, or another kind of request follows): work that only needs
    /// doing once per run (pulling outputs, arming the send intent and the timer), not
    /// once per message, is done now.
    func publishesEnded()
}
