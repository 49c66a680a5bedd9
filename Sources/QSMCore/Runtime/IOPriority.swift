/// The six I/O priority queues of the event core, highest first (section 4.2.2,
/// Fig. 4.15): network before local (disk) I/O, control and recovery before data, and
/// inbound before outbound within each. Outbound control goes ahead of inbound data,
/// the refinement section 4.3.3 asks for ("varying priorities for control packets"):
/// every datagram is read off the sockets before any is handled, so this loses nothing
/// in the kernel, and a token or repair no longer waits behind a backlog of data.
package enum IOPriority: Int, CaseIterable, Sendable {
    case networkInboundControl
    case networkOutboundControl
    case networkInboundData
    case networkOutboundData
    case localInbound
    case localOutbound

    static func inbound(_ medium: IOMedium, _ traffic: TrafficClass) -> IOPriority {
        switch (medium, traffic) {
        case (.network, .control): .networkInboundControl
        case (.network, .data): .networkInboundData
        case (.local, _): .localInbound
        }
    }

    static func outbound(_ medium: IOMedium, _ traffic: TrafficClass) -> IOPriority {
        switch (medium, traffic) {
        case (.network, .control): .networkOutboundControl
        case (.network, .data): .networkOutboundData
        case (.local, _): .localOutbound
        }
    }
}

/// One unit of I/O work waiting in a priority queue.
enum IOEvent {
    /// A received datagram whose buffer the event now owns.
    case datagram(registration: UInt64, buffer: PacketBuffer, length: Int32, source: QSMSocketAddress)
    /// A received datagram still in its socket's `CoalescedDatagramBatch`, at `offset`:
    /// read in place, with no copy (the socket is not read again until every such event
    /// of it has been handled).
    case coalescedDatagram(registration: UInt64, offset: Int32, length: Int32, source: QSMSocketAddress)
    /// A datagram socket that may take more output: pull from its feeds.
    case output(registration: UInt64)
    case descriptorReadable(registration: UInt64)
    case descriptorWritable(registration: UInt64)
}
