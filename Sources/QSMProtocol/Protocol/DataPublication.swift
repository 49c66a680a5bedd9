/// The sender's side of dissemination (section 4.2.1 B): publishing into per-region
/// sequences, acknowledgements and their release of messages, sender status, and
/// requests for retransmission.
extension ProtocolNode {
    /// Queues a message to a group, committed to the group's current view. Flow control
    /// is the driver's (`NodeMachine` admits a message only while its window has room);
    /// `unacknowledgedMessageCount` and `takeReleased()` are what it counts with.
    package func publish(group: GroupID, payload: consuming [UInt8], now: Instant) -> PublishResult {
        enter(now)
        guard let target = publishTargets[group], target.inView else { return .rejected("not publishing to group \(group)") }
        // Counted before the payload moves into its message (taken, not copied).
        let bytes = payload.count
        guard bytes <= configuration.maximumMessageBytes else {
            return .rejected("message of \(bytes) bytes exceeds the maximum of \(configuration.maximumMessageBytes)")
        }
        target.lastSequence += 1
        target.publishedMessages += 1
        target.publishedBytes += bytes
        let sequence = target.lastSequence
        let message: OutgoingMessage
        if var retired = retiredMessages.popFirst(), isKnownUniquelyReferenced(&retired) {
            retired.reuse(id: nextMessageID, group: group, groupView: target.viewNumber, groupSequence: sequence,
                          payload: payload, publishedAt: now, regions: target.regions)
            message = retired
        } else {
            message = OutgoingMessage(id: nextMessageID, group: group, groupView: target.viewNumber, groupSequence: sequence,
                                      payload: payload, publishedAt: now, regions: target.regions)
        }
        message.hybrid = target.hybrid
        nextMessageID += 1
        statistics.published += 1
        if message.regions.isEmpty {
            // A group with no members: nothing to send, nothing to wait for.
            statistics.acknowledged += 1
            releasedMessages += 1
            releasedBytes += bytes
            return .accepted(groupSequence: sequence)
        }
        unacknowledgedMessages += 1
        unacknowledgedBytes += bytes
        message.queued = true
        sendQueue.append(message)
        return .accepted(groupSequence: sequence)
    }

    /// Per group, the messages and bytes published to it (since `forgetPublications`).
    package func publications() -> [(group: GroupID, messages: Int, bytes: Int)] {
        var publications: [(group: GroupID, messages: Int, bytes: Int)] = []
        publications.reserveCapacity(publishTargets.count)
        for (group, target) in publishTargets.entries where target.publishedMessages > 0 {
            publications.append((group, target.publishedMessages, target.publishedBytes))
        }
        return publications
    }

    /// Counts the publications to `group` from zero again (the node left it).
    package func forgetPublications(to group: GroupID) {
        guard let target = publishTargets[group] else { return }
        target.publishedMessages = 0
        target.publishedBytes = 0
    }

    /// Messages published but not yet acknowledged by every region, and their bytes.
    package var unacknowledgedMessageCount: Int { unacknowledgedMessages }
    package var unacknowledgedByteCount: Int { unacknowledgedBytes }

    /// Messages (and their payload bytes) acknowledged by all their regions since the
    /// last call: the window they held is free again.
    package func takeReleased() -> (messages: Int, bytes: Int) {
        defer { releasedMessages = 0; releasedBytes = 0 }
        return (releasedMessages, releasedBytes)
    }

    /// Brings the publishing records in line with the group views. Groups with the same
    /// region list share one array, so thousands of groups over one region keep one
    /// list hot in the cache instead of thousands.
    func updatePublishTargets() {
        var shared = ArrayInterner<RegionReference>()
        for target in publishTargets.values { target.inView = false }
        // In id order: new targets are allocated in the order publications find them.
        for view in groups.values.sorted(by: { $0.id.value < $1.id.value }) {
            let regions = shared.intern(view.regions)
            let target = publishTargets[view.id] ?? PublishTarget()
            target.inView = true
            target.viewNumber = view.viewNumber
            target.regions = regions
            target.hybrid = view.hybridAddress != nil && regions.count > 1
            publishTargets[view.id] = target
        }
    }

    func receiveAcknowledgement(_ ack: AcknowledgementPacket) {
        guard ack.sender == id, let state = regionSend[ack.region], ack.stable > state.acknowledged else { return }
        state.acknowledged = ack.stable
        // Everything in flight lies above the previous acknowledgement: the newly
        // acknowledged range is the front of the run.
        state.inFlight.removeThrough(ack.stable)
        while let first = state.awaiting.first, first.last <= ack.stable {
            _ = state.awaiting.popFirst()
            // Acknowledged by a newer view of the region than it was sent in: a member may
            // have left the region meanwhile, for another of the group's, without it.
            if ack.regionView > 0, let sent = first.message.regions.last(where: { $0.id == ack.region }),
               ack.regionView > sent.viewNumber {
                first.message.viewCheck.append((ack.region, ack.regionView))
            }
            regionAcknowledged(first.message)
        }
    }

    func regionAcknowledged(_ message: OutgoingMessage) {
        message.unacknowledgedRegions -= 1
        // Still to be sent somewhere (carried into new regions): not done yet.
        guard message.unacknowledgedRegions == 0, !message.queued else { return }
        if !message.viewCheck.isEmpty { return acknowledgedUnderNewerView(message) }
        release(message)
    }

    /// A message is done: acknowledged everywhere it went, or owed to nobody. One from
    /// before a re-registration waits while members of its group may still reappear.
    func release(_ message: OutgoingMessage) {
        if restartHoldUntil != nil, message.groupView == 0, !(awaitedAfterRestart[message.group]?.isEmpty ?? true) {
            restartHeld.append(message)
            return
        }
        unacknowledgedMessages -= 1
        unacknowledgedBytes -= message.payload.count
        releasedMessages += 1
        releasedBytes += message.payload.count
        statistics.acknowledged += 1
        statistics.acknowledgementLatencyNanoseconds += now.nanoseconds(since: message.publishedAt)
        // Reused by a later publication once nothing else refers to it (see `publish`).
        let payload = message.retire()
        if retiredMessages.count < retiredMessagesKept { retiredMessages.append(message) }
        if keepsReleasedPayloads, releasedPayloads.count < retiredMessagesKept { releasedPayloads.append(payload) }
    }

    func receiveSenderStatus(_ status: SenderStatusPacket) {
        guard let region = regions[status.region], status.maximumSequence >= 1 else { return }
        departed.remove(status.sender)
        // The sender is still waiting: the region leader repeats the last ACK in case it
        // was lost (a sender outside the region has no record in its tokens to prompt it).
        if region.regionLeader == id, let acknowledged = lastAcknowledged[status.region]?[status.sender], acknowledged > 0 {
            acknowledge(status.region, sender: status.sender, stable: acknowledged)
        }
        let key = StreamKey(sender: status.sender, region: status.region)
        if streams[key] == nil, !foundingMember.contains(status.region), let joined = joinedView[status.region],
           status.regionView > joined || debtQueries[key] != nil {
            // Where this node's debt begins is not known yet: ask (see DebtStart).
            return awaitDebtStart(key, joined: joined, packet: nil, retransmitted: false)
        }
        let start: UInt64
        if foundingMember.contains(status.region) {
            start = 1
        } else if let joined = joinedView[status.region], status.regionView < joined {
            // Everything up to here was sent before this node joined: none of it is owed.
            start = status.maximumSequence + 1
        } else {
            start = max(status.viewStartSequence, 1)
        }
        guard let stream = streams[key] ?? (hasRoomForNewStream() ? ReceiveStream(start: start, tally: heldTally) : nil) else { return }
        if learnMaximum(status.maximumSequence, in: stream) { quickenRounds(in: status.region) }
        streams[key] = stream
        // It waits for what is not stable yet: the rings this node leads hurry.
        if status.maximumSequence > stream.stable { hastenRounds(in: status.region) }
    }

    func receiveRequest(_ request: RequestPacket) {
        statistics.requestsReceived += 1
        if request.kind == .partitionPush { return receivePartitionPush(request) }
        let key = StreamKey(sender: request.sender, region: request.region)
        for sequence in request.sequences { queueRepair(sequence, of: key, for: request) }
        let lacking = notHeld(request)
        if !lacking.isEmpty {
            statistics.notHeldSent += 1
            control.append(.request(RequestPacket(kind: .notHeld, sender: request.sender, region: request.region,
                                                  requester: id, sequences: lacking), to: request.requester))
        }
    }
}
