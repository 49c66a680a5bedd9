/// Receiving data (section 4.2.1 B): decoding datagrams, per-stream ordering with
/// out-of-order holding and gap tracking, the cooperative cache share, reassembly of
/// fragments, and FIFO delivery.
extension ProtocolNode {
    /// One datagram arrived. Malformed ones are dropped and counted.
    @discardableResult
    package func receive(_ bytes: [UInt8], now: Instant) -> PacketOrigin {
        bytes.withUnsafeBytes { receive($0, now: now) }
    }

    /// One datagram arrived, read in place (valid only during the call): only the
    /// payload is copied out, once. Returns who the packet says it comes from, for the
    /// driver's address book (decoded once, here).
    @discardableResult
    package func receive(_ bytes: UnsafeRawBufferPointer, now: Instant) -> PacketOrigin {
        enter(now)
        // The kernel loops this node's multicast back to it; it numbered and took those
        // messages when it sent them, so they are ignored before their payload is copied.
        if bytes.count > 0, bytes[0] == PacketKind.data.rawValue || bytes[0] == PacketKind.hybridData.rawValue,
           ProtocolPacket.originalSender(of: bytes) == id {
            statistics.ownMulticastIgnored += 1
            return .unknown
        }
        if let cacheHint, let key = ProtocolPacket.deliveryKey(of: bytes), let stream = lastDelivered.streamAddress(for: key) {
            cacheHint(stream)
        }
        let packet: ProtocolPacket
        do throws(WireError) {
            packet = try ProtocolPacket(decoding: bytes, spares: &payloadSpares)
        } catch {
            statistics.malformedDropped += 1
            return .unknown
        }
        defer { updateHeldBytes() }
        return handle(packet, bytes)
    }

    /// Acts on `packet` and says who it comes from. One switch binds each packet's fields
    /// once: a second one, for the origin, copied the data packet (and retained its
    /// payload) again, about 3% of a receiver's samples (issue 15).
    private func handle(_ packet: consuming ProtocolPacket, _ bytes: UnsafeRawBufferPointer) -> PacketOrigin {
        // Consumed: the cases own what they bind (a token's records are then changed in
        // place by a ring leader, not copied each round).
        switch consume packet {
        case .data(let data, let retransmitted):
            let origin: PacketOrigin = retransmitted ? .unknown : .sender(data.sender)
            let installed: UInt64
            if let lastRegionView, lastRegionView.region == data.region {
                installed = lastRegionView.view
            } else {
                guard let region = regions[data.region] else {
                    // Perhaps a view that has not reached us yet: hold it briefly.
                    if !retransmitted { hold(bytes) } else { statistics.unknownDropped += 1 }
                    return origin
                }
                installed = region.viewNumber
                lastRegionView = (data.region, installed)
            }
            // Sent in a view of the region newer than this node's: it may not be in that
            // view (it left the group, or moved to another region), and a message is for
            // the members of the view it was sent in. Held until the view arrives.
            guard data.regionView <= installed else {
                hold(bytes)
                return origin
            }
            receiveData(data, retransmitted: retransmitted)
            return origin
        case .token(let token):
            if let whole = assemble(token) { receiveToken(whole) }
            return .unknown
        case .acknowledgement(let ack):
            receiveAcknowledgement(ack)
            return .unknown
        case .request(let request) where request.kind == .notHeld:
            receiveNotHeld(request)
            return .requester(request.requester)
        case .request(let request):
            receiveRequest(request)
            return .requester(request.requester)
        case .senderStatus(let status):
            receiveSenderStatus(status)
            return .sender(status.sender)
        case .viewStartQuery(let query):
            answerViewStartQuery(query)
            return .requester(query.requester)
        case .viewStart(let answer):
            receiveViewStart(answer)
            return .unknown
        case .probe(let probe):
            receiveProbe(probe)
            return .requester(probe.from)
        case .hybridData(let template, let headers):
            // Keep the headers of this node's regions; the rest are other regions' business.
            var heldOnce = false
            for header in headers {
                guard let region = regions[header.region] else { continue }
                guard header.regionView <= region.viewNumber else {
                    // Replayed whole once the view arrives (its other regions' copies are
                    // then duplicates, and dropped as such).
                    if !heldOnce { hold(bytes) }
                    heldOnce = true
                    continue
                }
                var packet = template
                packet.region = header.region
                packet.regionView = header.regionView
                packet.viewStartSequence = header.viewStartSequence
                packet.sequence = header.sequence
                receiveData(packet)
            }
            return .sender(template.sender)
        }
    }

    /// Keeps a datagram of a region or view not (yet) installed, replayed when the next
    /// membership arrives; the oldest goes (counted) when `maximumUnknownPackets` are held.
    /// What is dropped here is recovered like any loss if the node turns out to be owed it.
    func hold(_ bytes: UnsafeRawBufferPointer) {
        guard configuration.maximumUnknownPackets > 0 else {
            statistics.unknownDropped += 1
            return
        }
        if unknownPackets.count >= configuration.maximumUnknownPackets {
            _ = unknownPackets.popFirst()
            statistics.unknownDropped += 1
        }
        unknownPackets.append(Array(bytes))
        statistics.heldForView += 1
    }

    /// The stream for `key`, created if this node can tell where its debt starts: a
    /// founding member of the region is owed everything; a member that joined later is
    /// owed what was sent in views from the one it joined, starting at the first such
    /// view's first sequence number, which only a packet of that view can tell it.
    /// Also nil when the node already keeps `maximumStreams` streams (counted).
    func stream(_ key: StreamKey, firstPacket: DataPacket?) -> ReceiveStream? {
        if let existing = streams[key] { return existing }
        guard hasRoomForNewStream() else { return nil }
        if foundingMember.contains(key.region) { return ReceiveStream(start: 1, tally: heldTally) }
        guard let packet = firstPacket, let joined = joinedView[key.region], packet.regionView >= joined else { return nil }
        return ReceiveStream(start: max(packet.viewStartSequence, 1), tally: heldTally)
    }

    /// The highest sequence number this node will wait for in `stream`: at most
    /// `maximumSequenceJump` beyond its contiguous prefix. A legitimate sender cannot be
    /// further ahead (its window is smaller); a forged or corrupt number could be, and
    /// tracking every gap below it would take unbounded memory.
    func plausibleLimit(_ stream: ReceiveStream) -> UInt64 {
        let jump = UInt64(configuration.maximumSequenceJump)
        return stream.contiguous > UInt64.max - jump ? UInt64.max : stream.contiguous + jump
    }

    /// Marks as missing what lies between what this node knows of `stream` and
    /// `reported` (capped at the plausible limit, the excess counted); true if anything
    /// new became known.
    @discardableResult
    func learnMaximum(_ reported: UInt64, in stream: ReceiveStream) -> Bool {
        let limit = plausibleLimit(stream)
        if reported > limit { statistics.implausibleDropped += 1 }
        let target = min(reported, limit)
        guard target > stream.maximumSeen else { return false }
        for gap in (max(stream.maximumSeen, stream.contiguous) + 1)...target where !stream.holdsAhead(gap) {
            stream.missing[gap] = (runningNow, 0, .zero)
        }
        stream.maximumSeen = target
        return true
    }

    /// Whether one more stream may be created: their number is bounded, so that packets
    /// from made-up senders cannot grow this node's memory without end. Asked only when
    /// a stream would be created, never on the per-packet path of an existing one.
    func hasRoomForNewStream() -> Bool {
        if streams.count < configuration.maximumStreams { return true }
        statistics.streamLimitDropped += 1
        return false
    }

    func receiveData(_ packet: DataPacket, retransmitted: Bool = false) {
        // Whoever sends new data is alive, whatever views said (it may have moved
        // regions). A retransmission proves nothing: a peer may be repairing a dead
        // sender's message.
        if !retransmitted, !departed.isEmpty { departed.remove(packet.sender) }
        let key = StreamKey(sender: packet.sender, region: packet.region)
        let existing: ReceiveStream?
        if let lastStream, lastStream.key == key {
            existing = lastStream.stream
        } else {
            existing = streams[key]
            if let existing { lastStream = (key, existing) }
        }
        // Sent in a view of the region from before this node joined it: not owed, whatever
        // the stream (a sender slow to learn the new view keeps numbering in the old one).
        let joinedLater: UInt64?
        if let lastJoined, lastJoined.region == key.region {
            joinedLater = lastJoined.view
        } else {
            joinedLater = foundingMember.contains(key.region) ? nil : joinedView[key.region]
            lastJoined = (key.region, joinedLater)
        }
        if let joined = joinedLater, packet.regionView < joined {
            statistics.notOwedDropped += 1
            if let existing, packet.sequence >= existing.start { passNotOwed(existing, through: packet.sequence) }
            return
        }
        if existing == nil, !foundingMember.contains(key.region), let joined = joinedView[key.region] {
            if debtQueries[key] != nil || packet.regionView > joined {
                // Where this node's debt begins is not known yet: ask (see DebtStart).
                return awaitDebtStart(key, joined: joined, packet: packet, retransmitted: retransmitted)
            }
        }
        guard let stream = existing ?? stream(key, firstPacket: packet) else {
            // Sent in a view from before this node joined the region: not owed to it (or
            // no room for another stream, counted as such).
            if streams.count < configuration.maximumStreams { statistics.notOwedDropped += 1 }
            return
        }
        if retransmitted { stream.retransmissionsReceived += 1 }
        if stream.contiguous == stream.start - 1, packet.viewStartSequence < stream.start,
           let joined = joinedView[key.region], !foundingMember.contains(key.region), packet.regionView >= joined {
            // An earlier owed view than the first packet suggested, before anything was
            // delivered: the debt starts earlier.
            let previousContiguous = stream.contiguous
            stream.start = packet.viewStartSequence
            stream.contiguous = stream.start - 1
            // The newly owed range (below the old start, so nonempty) is missing until it
            // arrives; this packet may be in it.
            for gap in stream.start...previousContiguous where !stream.holdsAhead(gap) { stream.missing[gap] = (runningNow, 0, .zero) }
        }
        // A stream is a class, changed in place: only a new one is stored (one hash per
        // packet saved).
        defer { if existing == nil { streams[key] = stream } }
        let sequence = packet.sequence
        guard sequence <= plausibleLimit(stream) else {
            // Absurdly far ahead (forged or corrupt): waiting for every gap below it
            // would take unbounded memory.
            statistics.implausibleDropped += 1
            return
        }
        guard sequence >= stream.start, sequence > stream.contiguous, !stream.holdsAhead(sequence) else {
            statistics.duplicatesDropped += 1
            return
        }
        // Everything in contiguous+1...maximumSeen is already held or known missing, so
        // only numbers beyond the old maximum can be new gaps.
        let firstUnknown = max(stream.maximumSeen, stream.contiguous) + 1
        stream.maximumSeen = max(stream.maximumSeen, sequence)
        if !retransmitted {
            // Only the sender's own transmissions share one FIFO path: a retransmission
            // (unicast, read ahead of the multicast backlog) says nothing about what is
            // still queued, and counting it made the whole backlog look lost.
            stream.maximumReceived = max(stream.maximumReceived, sequence)
            stream.lastArrivalAt = runningNow
        }
        if arrivalRun?.region != packet.region { settleArrivals(); arrivalRun = (packet.region, Arrivals()) }
        arrivalRun!.arrivals.add(bytes: packet.payload.count)
        if !stream.missing.isEmpty, let noticed = stream.missing.removeValue(forKey: sequence) {
            if !stream.denials.isEmpty { stream.denials[sequence] = nil }
            // A recovery only if it was asked for or came as a repair. Most numbers noted
            // missing are a token's news of packets still queued here (`learnMaximum`):
            // they arrive by themselves, and counted, they made a loss-free run report
            // recovery times (p50 2 ms, p99 6 ms with no retransmission at all).
            if noticed.attempts > 0 || retransmitted {
                statistics.recoveryMicroseconds.record(microseconds: Int(runningNow.nanoseconds(since: noticed.since) / 1000))
            }
        }
        let inOrder = sequence == stream.contiguous + 1
        // New gaps below this packet (none when it is in order). Walking the whole range
        // from the contiguous prefix instead cost O(window) lookups per packet behind a
        // hole: CPU-bound receivers under loss.
        if firstUnknown < sequence {
            for gap in firstUnknown..<sequence { stream.missing[gap] = (runningNow, 0, .zero) }
            if !retransmitted { scheduleRecoveryCheck() }
        }
        // Beyond a gap, and the node already holds as many such packets as it may: drop
        // it and ask for it again like any other gap.
        if !inOrder, outOfOrderCount() >= configuration.maximumOutOfOrderPackets {
            statistics.outOfOrderDropped += 1
            if stream.missing[sequence] == nil { stream.missing[sequence] = (runningNow, 0, .zero) }
            if !retransmitted { scheduleRecoveryCheck() }
            return
        }
        // Every packet is kept until stable for sender-crash agreement; else only this
        // node's partition's share.
        var cachedHere = false
        if configuration.survivorAgreement || caches(sequence, in: packet.region, view: packet.regionView) {
            // Not held yet (this packet is new here), so a refusal is the tables' budget.
            if stream.cache.insert(packet) {
                cachedHere = true
                stream.cachedBytes += packet.payload.count
                if !awaitedRepairs.isEmpty { answerAwaitedRepairs(key, packet) }
            } else {
                statistics.notCachedForTableBudget += 1
            }
        }
        if inOrder {
            accept(packet, into: stream)
            drainInOrder(stream)
        } else {
            if cachedHere {
                // Held in the cache, and taken from there once the gap is filled.
                stream.aheadInCache += 1
                outOfOrderTotal += 1
            } else if stream.outOfOrder.insert(packet) {
                stream.outOfOrderBytes += packet.payload.count
                outOfOrderTotal += 1
            } else {
                // Bounded in the tables' slots too (`maximumTableSlots`): beyond them,
                // drop it and ask for it again like any other gap.
                statistics.outOfOrderDropped += 1
                if stream.missing[sequence] == nil { stream.missing[sequence] = (runningNow, 0, .zero) }
                return
            }
        }
        // New data wakes token rounds that had slowed down for idleness.
        quickenRounds(in: packet.region)
    }

    /// Whether this node's partition caches `sequence` of region `region` (Fig. 4.12).
    /// Whether this node caches `sequence`, sent in `view` of `region`: by the partitions
    /// of that view (the newest installed at or before it), as every member that had
    /// the view decides alike, whatever view it has moved to since.
    func caches(_ sequence: UInt64, in region: RegionID, view: UInt64) -> Bool {
        // The answer's parts for the last region and view asked about (forgotten when
        // layouts change): one sender's packets in a row cost no lookup.
        if let memo = lastCacheShare, memo.region == region, memo.view == view {
            guard let mine = memo.mine else { return false }
            return Int(sequence % UInt64(memo.count)) == mine
        }
        let share = cacheShare(in: region, view: view)
        lastCacheShare = (region, view, share.mine, share.count)
        guard let mine = share.mine else { return false }
        return Int(sequence % UInt64(share.count)) == mine
    }

    /// Which partition this node is of how many, for packets of `view` of `region`.
    private func cacheShare(in region: RegionID, view: UInt64) -> (mine: Int?, count: Int) {
        if let layouts = cacheLayouts[region], let layout = layouts.last(where: { $0.view <= view }) ?? layouts.first {
            return (layout.mine, max(1, layout.partitions.count))
        }
        guard let (index, count) = cachePartition[region] else { return (nil, 1) }
        return (index, max(1, count))
    }

    func outOfOrderCount() -> Int { outOfOrderTotal }

    /// `sequence` was numbered in a view from before this node joined, so it and every
    /// number below it are not owed (a sender numbers in rising views): a stream that was
    /// started lower (from a sender status, before the sender learned the new view) moves
    /// its start past it, instead of waiting for packets that will never be for it.
    func passNotOwed(_ stream: ReceiveStream, through sequence: UInt64) {
        stream.start = sequence + 1
        guard stream.contiguous < sequence else { return }
        stream.maximumSeen = max(stream.maximumSeen, sequence)
        stream.fragments.removeAll()
        stream.missing = stream.missing.filter { $0.key > sequence }
        stream.outOfOrder.removeThrough(sequence) { packet in
            stream.outOfOrderBytes -= packet.payload.count
            outOfOrderTotal -= 1
        }
        if stream.aheadInCache > 0 {
            // Cached packets numbered up to `sequence` are below the prefix now, not owed:
            // no longer ahead of it (they leave the cache as they become stable).
            let passed = stream.cache.count(in: (stream.contiguous + 1)...sequence)
            stream.aheadInCache -= passed
            outOfOrderTotal -= passed
        }
        stream.contiguous = sequence
        drainInOrder(stream)
    }

    /// Accepts whatever out-of-order packets now follow the contiguous prefix, from
    /// either table.
    func drainInOrder(_ stream: ReceiveStream) {
        while true {
            let number = stream.contiguous + 1
            if let next = stream.outOfOrder.popFirst(numbered: number) {
                stream.outOfOrderBytes -= next.payload.count
                outOfOrderTotal -= 1
                accept(next, into: stream)
            } else if stream.aheadInCache > 0, let next = stream.cache[number] {
                stream.aheadInCache -= 1
                outOfOrderTotal -= 1
                accept(next, into: stream)
            } else {
                return
            }
        }
    }

    /// The next packet in sequence: reassemble and deliver.
    func accept(_ packet: DataPacket, into stream: ReceiveStream) {
        stream.contiguous = packet.sequence
        stream.recordViewStart(view: packet.regionView, start: packet.viewStartSequence)
        if !stream.missing.isEmpty { stream.missing[packet.sequence] = nil }
        if packet.fragmentCount == 1 {
            deliver(packet, payload: packet.payload)
            return
        }
        if packet.fragmentIndex == 0 { recycleFragments(of: stream) }
        guard Int(packet.fragmentIndex) == stream.fragments.count else {
            // Joined mid-message: the rest of that message was not addressed to us.
            recycleFragments(of: stream)
            return
        }
        stream.fragments.append(packet)
        if packet.fragmentIndex + 1 == packet.fragmentCount {
            if let looped = loopedMessage, looped.sequence == packet.sequence, packet.sender == id {
                // This node's own message, every fragment accepted: the array it was
                // published in is the whole.
                recycleFragments(of: stream)
                deliver(packet, payload: looped.payload[...])
                return
            }
            var bytes = 0
            for fragment in stream.fragments { bytes += fragment.payload.count }
            // Into a spare whole-message array, and the fragments' arrays become spares
            // for the next packets: a message of many fragments allocates nothing in
            // steady state (it made one array per fragment, and one for the whole).
            var whole = payloadSpares.spare(reserving: bytes)
            for fragment in stream.fragments { whole.append(contentsOf: fragment.payload) }
            recycleFragments(of: stream)
            deliver(packet, payload: whole[...])
        }
    }

    /// Lets go of a stream's fragments, their payload arrays going to the spares (those
    /// still cached are shared, and are not written to until the cache lets go too).
    private func recycleFragments(of stream: ReceiveStream) {
        guard !stream.fragments.isEmpty else { return }
        // Received payloads were decoded each into an array of its own (see
        // `PayloadSpares.copy`), and such a slice becomes its array without a copy. This
        // node's own packets (a sender that is a member) are slices of the message.
        if stream.fragments[0].sender != id {
            for fragment in stream.fragments { payloadSpares.put(Array(fragment.payload)) }
        }
        stream.fragments.removeAll(keepingCapacity: true)
    }

    func deliver(_ packet: DataPacket, payload: ArraySlice<UInt8>) {
        // A message reaches a node once per region it went to; a node that moved between
        // two of them while it was in flight (it joined or left another group) can get it
        // in both. Per sender and group, sequence numbers rise: anything not above the
        // last delivered is such a second copy.
        let key = DeliveryKey(sender: packet.sender, group: packet.group)
        let stream: DeliveryStream
        if let run = deliveryRun, run.key == key {
            stream = run.stream
        } else if let known = lastDelivered.stream(for: key) {
            stream = known
            deliveryRun = (key, known)
        } else {
            // Once per sender and group (a box, not an allocation per message).
            stream = DeliveryStream(sender: packet.sender, group: packet.group)
            lastDelivered[key] = stream
            deliveryRun = (key, stream)
        }
        guard isOwedAsMember(stream, groupView: packet.groupView) else {
            // Committed to a view of the group from before this node joined it (a copy
            // carried into its region by a reconfiguration).
            statistics.notMemberDropped += 1
            return
        }
        guard Self.advance(&stream.last, to: packet.groupSequence) else {
            statistics.secondCopiesDropped += 1
            return
        }
        statistics.delivered += 1
        deliveries.append(ProtocolDelivery(sender: packet.sender, group: packet.group, groupSequence: packet.groupSequence,
                                           publishedAt: Instant(nanoseconds: packet.publishedAt), region: packet.region,
                                           regionSequence: packet.sequence - UInt64(packet.fragmentIndex),
                                           fragments: Int(packet.fragmentCount), payload: payload, stream: stream))
    }

    /// Adds the run of one region's arrivals to `arrivals`.
    func settleArrivals() {
        guard let run = arrivalRun else { return }
        arrivalRun = nil
        arrivals[run.region, default: Arrivals()].add(packets: run.arrivals.packets, bytes: run.arrivals.bytes)
    }

    /// Raises `last` to `sequence` if it is higher; false if it is not.
    @inline(__always)
    static func advance(_ last: inout UInt64, to sequence: UInt64) -> Bool {
        guard sequence > last else { return false }
        last = sequence
        return true
    }

    /// Deliveries since the last call, in order.
    package func takeDeliveries() -> [ProtocolDelivery] {
        var taken: [ProtocolDelivery] = []
        while let delivery = takeDelivery() { taken.append(delivery) }
        return taken
    }

    /// The next delivery, in order; nil when none is waiting. Allocates nothing once the
    /// ring has grown to the largest run of deliveries between two takes.
    package func takeDelivery() -> ProtocolDelivery? {
        deliveries.popFirst()
    }

    /// Whether a delivery is waiting.
    package var hasDelivery: Bool { !deliveries.isEmpty }
}
