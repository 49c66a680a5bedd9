/// What the link pulls (section 4.2.1 B): the next datagram, freshest state first:
/// token parts, control packets, retransmissions, then new data (per region, or hybrid).
extension ProtocolNode {
    /// Whether the link should pull: something is waiting to be built and sent.
    package var hasOutput: Bool {
        !tokenPartsOut.isEmpty || !control.isEmpty || !retransmissions.isEmpty || !hybridHeadersOut.isEmpty
            || sendQueue.first.map { !headWaitsForViewChange($0) } ?? false
    }

    /// The driver has written `datagram` out: a token's records are kept for the next
    /// token (see `PayloadSpares.recordArray`).
    package func written(_ datagram: borrowing ProtocolDatagram) {
        if case .token(let token) = datagram.packet { payloadSpares.put(records: token.records) }
    }

    /// Builds the next datagram, freshest state first: control, then retransmissions,
    /// then new data. Nil when there is nothing to send.
    package func nextDatagram(now: Instant) -> ProtocolDatagram? {
        enter(now)
        if let (part, target, copy) = tokenPartsOut.popFirst() {
            var datagram = controlDatagram(.token(part), to: target)
            datagram.redundantCopy = copy
            return datagram
        }
        while let item = control.popFirst() {
            // Consumed, so that the token's records are this function's alone and grow
            // in place (a copy left in `item` made every hop copy them).
            switch consume item {
            case .token(var token, let target, let contribute):
                if contribute { mergeOwnState(into: &token) }
                statistics.maximumTokenRecords = max(statistics.maximumTokenRecords, token.records.count)
                let queuedParts = tokenPartsOut.count
                splitIntoParts(&token, to: target)
                if token.copies > 1 { queueCopies(of: token, to: target, partsFrom: queuedParts) }
                return controlDatagram(.token(token), to: target)
            case .acknowledgement(let ack, let target):
                return controlDatagram(.acknowledgement(ack), to: target)
            case .request(let request, let target):
                return controlDatagram(.request(request), to: target)
            case .viewStartQuery(let query, let target):
                return controlDatagram(.viewStartQuery(query), to: target)
            case .viewStart(let answer, let target):
                return controlDatagram(.viewStart(answer), to: target)
            case .probe(let probe, let target):
                return controlDatagram(.probe(probe), to: target)
            case .senderStatus(let region):
                // Built now, from the freshest state; skipped if everything got acknowledged.
                guard let state = regionSend[region], !state.awaiting.isEmpty else { continue }
                let packet = ProtocolPacket.senderStatus(SenderStatusPacket(
                    sender: id, region: region, regionView: state.view, viewStartSequence: state.viewStartSequence,
                    maximumSequence: state.nextSequence - 1))
                statistics.controlPacketsSent += 1
                statistics.controlBytesSent += packet.encodedByteCount
                return ProtocolDatagram(destination: .region(region), packet: packet, isControl: true)
            }
        }
        while let (target, key, sequence) = retransmissions.popFirst() {
            if var packet = retransmittable(key, sequence) {
                statistics.retransmissionsSent += 1
                // Marked as multicast to the region only if it is (a cached copy keeps
                // the mark of the way it came here).
                packet.repairedToRegion = false
                if case .region = target {
                    statistics.multicastRepairs += 1
                    packet.repairedToRegion = true
                }
                return ProtocolDatagram(destination: target, packet: .data(packet, retransmitted: true), isControl: false)
            }
        }
        if let (template, headers) = hybridHeadersOut.popFirst() { return hybridDatagram(template, headers: headers) }
        return nextDataDatagram()
    }

    /// Queues the redundant copies of a token (its first part and the parts queued
    /// from `partsFrom` on): sent after the original, each in a datagram of its own.
    func queueCopies(of token: TokenPacket, to target: NodeID, partsFrom start: Int) {
        let end = tokenPartsOut.count
        for _ in 1..<Int(token.copies) {
            tokenPartsOut.append((token, target, true))
            for offset in start..<end { tokenPartsOut.append((tokenPartsOut[offset].token, target, true)) }
            statistics.redundantTokensSent += 1 + end - start
        }
    }

    /// Leaves in `token` the records of its first datagram and queues the other parts.
    func splitIntoParts(_ token: inout TokenPacket, to target: NodeID) {
        let perPart = TokenPacket.recordsPerDatagram(packetBytes: configuration.maximumPacketBytes)
        guard token.records.count > perPart else { return }
        let parts = (token.records.count + perPart - 1) / perPart
        for index in 1..<parts {
            var part = token
            part.records = Array(token.records[(index * perPart)..<min(token.records.count, (index + 1) * perPart)])
            part.part = UInt16(index)
            part.parts = UInt16(parts)
            tokenPartsOut.append((part, target, false))
        }
        token.records.removeSubrange(perPart...)
        token.part = 0
        token.parts = UInt16(parts)
        statistics.tokensSplit += 1
    }

    func controlDatagram(_ packet: ProtocolPacket, to target: NodeID) -> ProtocolDatagram {
        let count = packet.encodedByteCount
        statistics.controlPacketsSent += 1
        statistics.controlBytesSent += count
        if case .token = packet { statistics.tokenBytesSent += count }
        return ProtocolDatagram(destination: .node(target), packet: packet, isControl: true)
    }

    /// Whether this node can retransmit the packet (what `retransmittable` would copy),
    /// without building it.
    func holdsForRepair(_ key: StreamKey, _ sequence: UInt64) -> Bool {
        if key.sender == id, let state = regionSend[key.region], state.inFlight[sequence] != nil { return true }
        guard let stream = streams[key] else { return false }
        return stream.cache[sequence] != nil || stream.outOfOrder[sequence] != nil
    }

    /// A copy of the packet if this node can retransmit it: as its sender, or from its
    /// cache or out-of-order buffer.
    func retransmittable(_ key: StreamKey, _ sequence: UInt64) -> DataPacket? {
        if key.sender == id, let state = regionSend[key.region], let entry = state.inFlight[sequence] {
            return dataPacket(entry.message, fragment: entry.fragment, region: key.region, sequence: sequence,
                              view: entry.view, viewStart: entry.viewStart)
        }
        if let stream = streams[key] { return stream.cache[sequence] ?? stream.outOfOrder[sequence] }
        return nil
    }

    func fragmentCount(_ message: OutgoingMessage) -> Int {
        max(1, (message.payload.count + configuration.maximumFragmentBytes - 1) / configuration.maximumFragmentBytes)
    }

    func dataPacket(_ message: OutgoingMessage, fragment: UInt16, region: RegionID, sequence: UInt64,
                    view: UInt64, viewStart: UInt64) -> DataPacket {
        let size = configuration.maximumFragmentBytes
        let from = Int(fragment) * size
        let to = min(message.payload.count, from + size)
        return DataPacket(sender: id, region: region, regionView: view, viewStartSequence: viewStart, sequence: sequence,
                          group: message.group, groupView: message.groupView, groupSequence: message.groupSequence,
                          fragmentIndex: fragment, fragmentCount: UInt16(fragmentCount(message)),
                          publishedAt: message.publishedAt.nanoseconds, payload: message.payload[from..<to])
    }

    /// The next fragment of the oldest queued message, numbered in its region's sequence.
    func nextDataDatagram() -> ProtocolDatagram? {
        // The head stays queued until its last transmission has gone.
        guard let message = sendQueue.first, !headWaitsForViewChange(message) else { return nil }
        if message.hybrid { return nextHybridDatagram(message) }
        let reference = message.regions[message.regionCursor]
        let packet = numberFragment(message, fragment: UInt16(message.fragmentCursor), in: reference)
        message.fragmentCursor += 1
        if message.fragmentCursor == fragmentCount(message) {
            message.fragmentCursor = 0
            message.regionCursor += 1
        }
        if message.regionCursor == message.regions.count, !continueDeferredCarry(message) {
            _ = sendQueue.popFirst()
            message.queued = false
            message.carriedAhead = false
        }
        statistics.dataPacketsSent += 1
        statistics.dataPayloadBytesSent += packet.payload.count
        lastDataSentAt = now
        senderStatusRepeats = 0
        return ProtocolDatagram(destination: .region(reference.id), packet: .data(packet, retransmitted: false), isControl: false)
    }

    /// Numbers one fragment of a message in one region's sequence: adopts a newer view of
    /// the region (its first sequence number is where members who joined in it start),
    /// keeps the fragment for retransmission until acknowledged, awaits the message's
    /// acknowledgement after its last fragment, and loops it back if this node is a member.
    func numberFragment(_ message: OutgoingMessage, fragment: UInt16, in reference: RegionReference) -> DataPacket {
        // A class, changed in place: stored only when new (one hash per packet saved).
        let state: RegionSendState
        let member: Bool
        if let last = lastRegionSend, last.region == reference.id {
            (state, member) = (last.state, last.member)
        } else {
            if let existing = regionSend[reference.id] {
                state = existing
            } else {
                state = RegionSendState()
                if let next = retiredSendSequences.removeValue(forKey: reference.id) {
                    state.nextSequence = next
                    state.viewStartSequence = next
                }
                regionSend[reference.id] = state
            }
            member = regions[reference.id] != nil
            lastRegionSend = (reference.id, state, member)
        }
        if reference.viewNumber > state.view {
            state.view = reference.viewNumber
            state.viewStartSequence = state.nextSequence
            if state.viewStarts.count >= RegionSendState.viewHistoryLimit { state.viewStarts.removeFirst() }
            state.viewStarts.append((state.view, state.viewStartSequence))
        }
        let sequence = state.nextSequence
        state.nextSequence += 1
        let packet = dataPacket(message, fragment: fragment, region: reference.id, sequence: sequence,
                                view: state.view, viewStart: state.viewStartSequence)
        state.inFlight.append((message, fragment, state.view, state.viewStartSequence), sequence: sequence)
        if Int(fragment) + 1 == fragmentCount(message) {
            state.awaiting.append((sequence, message))
        }
        // The sender is a member like any other: it receives its own message.
        if member {
            let count = fragmentCount(message)
            if count > 1, Int(fragment) + 1 == count {
                loopedMessage = (sequence, message.payload)
                receiveData(packet)
                loopedMessage = nil
            } else {
                receiveData(packet)
            }
        }
        return packet
    }

    /// Hybrid mode: the next fragment goes to the group's own address once, numbered in
    /// every region's sequence at the same time; recovery stays per region.
    func nextHybridDatagram(_ message: OutgoingMessage) -> ProtocolDatagram? {
        let fragment = UInt16(message.fragmentCursor)
        var headers: [RegionHeader] = []
        var template: DataPacket?
        for reference in message.regions {
            let packet = numberFragment(message, fragment: fragment, in: reference)
            template = template ?? packet
            headers.append(RegionHeader(region: reference.id, regionView: packet.regionView,
                                        viewStartSequence: packet.viewStartSequence, sequence: packet.sequence))
        }
        message.fragmentCursor += 1
        if message.fragmentCursor == fragmentCount(message) {
            message.regionCursor = message.regions.count
            if !continueDeferredCarry(message) {
                _ = sendQueue.popFirst()
                message.queued = false
                message.carriedAhead = false
            }
        }
        guard let template else { return nil }
        statistics.hybridTransmissions += 1
        lastDataSentAt = now
        senderStatusRepeats = 0
        // As many region headers as fit beside the payload; the rest follow in more
        // datagrams to the same address, each a complete transmission for its regions.
        let room = configuration.maximumPacketBytes - DataPacket.hybridHeaderBytes - template.payload.count
        let perDatagram = max(1, room / RegionHeader.bytes)
        var rest = headers[...]
        let first = rest.prefix(perDatagram)
        rest = rest.dropFirst(perDatagram)
        while !rest.isEmpty {
            hybridHeadersOut.append((template, rest.prefix(perDatagram)))
            rest = rest.dropFirst(perDatagram)
            statistics.hybridTransmissionsSplit += 1
        }
        return hybridDatagram(template, headers: first)
    }

    func hybridDatagram(_ template: DataPacket, headers: ArraySlice<RegionHeader>) -> ProtocolDatagram {
        statistics.dataPacketsSent += 1
        statistics.dataPayloadBytesSent += template.payload.count
        return ProtocolDatagram(destination: .group(template.group), packet: .hybridData(template, headers: Array(headers)),
                                isControl: false)
    }
}
