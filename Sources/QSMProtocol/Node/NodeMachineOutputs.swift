/// What the driver polls the machine for: the next datagram, written into its buffer
/// (packets bundled per destination), deliveries, events and GMS actions.
extension NodeMachine {
    /// Whether `pollDatagram` has something to write.
    package var hasDatagram: Bool { carried != nil || protocolNode.hasOutput }

    /// Writes the next datagram into `buffer` (at least `maximumDatagramBytes` long is
    /// best; a smaller buffer is honoured the same way) and says where it goes. Packets
    /// the protocol has ready for the same address are packed into it, up to
    /// `bundleBytes` (see `DatagramBundle`); the first that does not fit starts the next.
    package func pollDatagram(into buffer: UnsafeMutableRawBufferPointer, now: Instant) -> OutgoingDatagram? {
        enter(now)
        let limit = min(buffer.count, configuration.maximumDatagramBytes)
        // Room for packets, the tag left out.
        let packetRoom = max(0, limit - tagBytes)
        let bundleRoom = min(packetRoom, configuration.bundleBytes - tagBytes)
        while let (first, destination) = nextAddressedDatagram(now: now) {
            let written: Int?
            let alone = first.byteCount + DatagramBundle.headerBytes + DatagramBundle.lengthBytes
            // A token's redundant copy is a bundle (of one at least) whatever the bundle
            // size, `bundleBytes` 0 included: written plain, it was as long as the
            // original, and segmentation offload could join the two into one send.
            let room = first.redundantCopy ? min(packetRoom, max(bundleRoom, alone)) : bundleRoom
            if alone <= room, hasDatagram || first.redundantCopy {
                written = bundle(first, to: destination, into: buffer, room: room, now: now)
            } else {
                // Encoded in place, in the driver's buffer, leaving room for the tag.
                written = first.encode(into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<packetRoom]))
            }
            protocolNode.written(first)
            guard var length = written else {
                statistics.droppedOversized += 1
                continue
            }
            if let seal {
                guard let counter = datagramCounters.next(to: destination) else {
                    // This incarnation has numbered all it can to this destination.
                    statistics.droppedCountersExhausted += 1
                    continue
                }
                _ = seal.seal(buffer, length: length, counter: counter)
                length += tagBytes
            }
            return OutgoingDatagram(destination: destination, length: length)
        }
        return nil
    }

    func nextAddressedDatagram(now: Instant) -> (ProtocolDatagram, QSMSocketAddress)? {
        if let carried {
            self.carried = nil
            return carried
        }
        while let datagram = protocolNode.nextDatagram(now: now) {
            guard let destination = address(of: datagram.destination) else {
                statistics.droppedNoAddress += 1
                continue
            }
            return (datagram, destination)
        }
        return nil
    }

    /// Writes `first` and whatever else is ready for `destination` and fits in `room`
    /// bytes; returns the length (nil if `first`, alone, did not fit). A single packet is
    /// written plain, without the bundle header.
    func bundle(_ first: ProtocolDatagram, to destination: QSMSocketAddress, into buffer: UnsafeMutableRawBufferPointer,
                        room: Int, now: Instant) -> Int? {
        let start = DatagramBundle.headerBytes
        var offset = start
        var count = 0
        var next = first
        if !first.redundantCopy {
            // The next datagram is looked at before the first is written: when it cannot
            // join, the first goes plain, encoded in place. (Written into the bundle first,
            // a 1000-byte message, which never has company under a 1,472-byte bundle, was
            // then moved back to the start.) Either way it is carried: the loop below, or
            // the next datagram, takes it back.
            let joining = hasDatagram ? nextAddressedDatagram(now: now) : nil
            carried = joining
            guard let (following, address) = joining, address == destination, !following.redundantCopy,
                  start + 2 * DatagramBundle.lengthBytes + first.byteCount + following.byteCount <= room else {
                return first.encode(into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<room]))
            }
        }
        while true {
            let size = next.byteCount
            buffer.storeBytes(of: UInt16(size).bigEndian, toByteOffset: offset, as: UInt16.self)
            _ = next.encode(into: UnsafeMutableRawBufferPointer(rebasing: buffer[(offset + DatagramBundle.lengthBytes)..<(offset + DatagramBundle.lengthBytes + size)]))
            // (The first is the caller's to hand back.)
            if count > 0 { protocolNode.written(next) }
            offset += DatagramBundle.lengthBytes + size
            count += 1
            guard count < DatagramBundle.maximumPackets, hasDatagram, let (following, address) = nextAddressedDatagram(now: now) else { break }
            guard address == destination, !following.redundantCopy,
                  offset + DatagramBundle.lengthBytes + following.byteCount <= room else {
                carried = (following, address)
                break
            }
            next = following
        }
        buffer[0] = PacketKind.bundle.rawValue
        buffer.storeBytes(of: UInt16(count).bigEndian, toByteOffset: 1, as: UInt16.self)
        // A bundle of one (a token's redundant copy) carries no company: not counted.
        if count > 1 {
            statistics.bundlesSent += 1
            statistics.packetsBundled += count
        }
        return offset
    }

    /// Whether `pollDelivery` has something.
    package var hasDelivery: Bool { protocolNode.hasDelivery }

    /// The next delivery, in order.
    package func pollDelivery() -> NodeDelivery? {
        while var delivery = protocolNode.takeDelivery() {
            guard let group = name(of: delivery.stream) else {
                statistics.droppedUnnamedGroup += 1
                continue
            }
            tally.delivered(on: delivery.stream, sequence: delivery.groupSequence, bytes: delivery.payload.count)
            // The bytes are moved over, not copied and released again.
            var payload = ArraySlice<UInt8>()
            swap(&payload, &delivery.payload)
            return NodeDelivery(group: group, sender: delivery.sender, sequence: delivery.groupSequence,
                                publishedAt: delivery.publishedAt, region: delivery.region,
                                regionSequence: delivery.regionSequence, fragments: delivery.fragments, payload: payload)
        }
        return nil
    }

    package func pollEvent() -> NodeEvent? {
        takeReleased()
        guard let event = events.popFirst() else {
            // A burst (one view event per group when thousands of views arrive at once)
            // grew the queue far beyond its working size: once drained, it goes back to a
            // small one rather than keeping a megabyte nothing uses (issue 15, RSS).
            if events.capacity > keptEventCapacity { events = RingBuffer(initialCapacity: 64) }
            return nil
        }
        return event
    }

    /// The largest capacity the event queue keeps once drained: above its bursts in steady
    /// state, so that those never reallocate it, and below the burst of installing
    /// thousands of group views (an event per view: 8,192 slots of 120 bytes for 8,192
    /// groups, which the sender of issue 15 kept for good while this was 8,192).
    /// Without `reportsCommits` the steady bursts are a few releases and warnings; with it,
    /// an event per message admitted, up to a window of them at once.
    var keptEventCapacity: Int {
        configuration.reportsCommits ? Self.keptCommitEventCapacity : Self.keptQuietEventCapacity
    }
    static let keptQuietEventCapacity = 1024
    static let keptCommitEventCapacity = 8192
    /// The same for the GMS-action queue, whose steady state is a heartbeat a second.
    static let keptGMSActionCapacity = 1024

    /// The queues' capacities now (for tests of the above).
    var eventQueueCapacity: Int { events.capacity }
    var gmsActionQueueCapacity: Int { gmsActions.capacity }

    /// What the GMS connection should do next: connect, send a frame, or close.
    package func pollGMSAction() -> MembershipClientAction? {
        guard let action = gmsActions.popFirst() else {
            if gmsActions.capacity > Self.keptGMSActionCapacity { gmsActions = RingBuffer(initialCapacity: 16) }
            return nil
        }
        return action
    }

    /// Whether `pollGMSAction` has something: lets a driver skip its GMS link on the
    /// per-message path.
    package var hasGMSAction: Bool { !gmsActions.isEmpty }
}
