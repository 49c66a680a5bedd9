/// Lossless reconfiguration: whatever moves members between regions (a join, a leave,
/// churn, a restarted GMS), every message a live sender sent to a group reaches every
/// member that stays in the group, once, in FIFO order.
///
/// - The sender carries what is not yet acknowledged: when a group's regions change, each
///   of its unacknowledged messages is sent again in every region of the new view it was
///   not sent in (a member that moved is there), ahead of anything newer, and waits for
///   those regions' acknowledgements too. Messages not sent yet are committed to the new
///   regions instead. Messages of a group out of view (a GMS restarting) are kept, not
///   given up, until the group is back or the application leaves it.
/// - Receivers deduplicate by per-sender, per-group sequence (`deliver`), and deliver a
///   message only if they were in the group when it was committed (`memberSince`): a
///   member that joined in a later view is not owed a carried copy.
///
/// Carrying works per message, not per datagram: a message is numbered afresh in each
/// region it is carried into, so recovery and caching there treat it like any other.
extension ProtocolNode {
    /// After new views: carries, retargets or keeps the messages of groups whose regions
    /// changed, and of regions that are gone (`displaced`, their acknowledgement there
    /// already given up).
    func carryUnacknowledged(previousTargets: [GroupID: [RegionReference]], previousRegions: [RegionID: RegionView],
                             previousGroups: [GroupID: GroupView], displaced: [OutgoingMessage]) {
        var changed = Set<GroupID>()
        for entry in publishTargets.entries where entry.value.inView && previousTargets[entry.key] != entry.value.regions {
            changed.insert(entry.key)
        }
        guard !changed.isEmpty || !displaced.isEmpty || !orphans.isEmpty || !restartHeld.isEmpty || !viewChecks.isEmpty else { return }
        var affected: [OutgoingMessage] = []
        var seen = Set<ObjectIdentifier>()
        func consider(_ message: OutgoingMessage) {
            if seen.insert(ObjectIdentifier(message)).inserted { affected.append(message) }
        }
        if !changed.isEmpty {
            for state in regionSend.values {
                for index in 0..<state.awaiting.count where changed.contains(state.awaiting[index].message.group) {
                    consider(state.awaiting[index].message)
                }
            }
            for index in 0..<sendQueue.count where changed.contains(sendQueue[index].group) { consider(sendQueue[index]) }
        }
        for message in displaced { consider(message) }
        for message in orphans { consider(message) }
        orphans.removeAll()
        for message in restartHeld { consider(message) }
        restartHeld.removeAll()
        // Acknowledged before these views came (see `acknowledgedUnderNewerView`): carried
        // now, in order with the rest, into every region it was not sent in at its view.
        var checked = Set<ObjectIdentifier>()
        if !viewChecks.isEmpty {
            var waiting: [OutgoingMessage] = []
            for message in viewChecks {
                if let target = publishTargets[message.group], target.inView, viewsCover(message, target) {
                    checked.insert(ObjectIdentifier(message))
                    message.viewCheck = []
                    consider(message)
                } else if publishTargets[message.group]?.inView != true {
                    releaseUnchecked(message)
                } else {
                    waiting.append(message)
                }
            }
            viewChecks = waiting
        }
        affected.sort { $0.id < $1.id }

        var carried: [OutgoingMessage] = []
        var orphaned = Set<ObjectIdentifier>()
        for message in affected {
            guard let target = publishTargets[message.group], target.inView else {
                // The group is out of view. Left by the application: given up (nobody is
                // owed what a sender that left had not delivered). Otherwise (a GMS
                // restarting, or this node excluded): kept, window and all, until it is
                // back; unsent ones leave the queue (their regions may be gone).
                if message.queued && !message.isUnsent { continue }
                if abandonedGroups.contains(message.group), message.unacknowledgedRegions == 0 || message.isUnsent {
                    if message.queued { orphaned.insert(ObjectIdentifier(message)) }
                    message.queued = false
                    message.unacknowledgedRegions = 0
                    statistics.messagesGivenUp += 1
                    release(message)
                    continue
                }
                if message.unacknowledgedRegions == 0 || message.isUnsent {
                    if message.queued { orphaned.insert(ObjectIdentifier(message)) }
                    if message.isUnsent { message.retarget([], hybrid: false) }
                    orphans.append(message)
                }
                continue
            }
            if message.queued && message.isUnsent {
                if message.regions != target.regions { message.retarget(target.regions, hybrid: target.hybrid) }
                continue
            }
            if checked.contains(ObjectIdentifier(message)) {
                let new = target.regions.filter { reference in
                    !message.regions.contains { $0.id == reference.id && $0.viewNumber == reference.viewNumber }
                }
                if new.isEmpty {
                    release(message)
                } else {
                    message.carry(into: new)
                    carried.append(message)
                    statistics.messagesCarried += 1
                }
                continue
            }
            let new = target.regions.filter { reference in
                var sentThere = false
                for sent in message.regions where sent.id == reference.id {
                    if sent.viewNumber == reference.viewNumber { return false }
                    sentThere = true
                }
                return !sentThere || mayHaveMovedIn(reference, group: message.group, previousRegions: previousRegions,
                                                    previousGroups: previousGroups)
            }
            // (Only at the head of the queue, where a half-sent message is popped when its
            // transmission ends; one behind carried-ahead messages keeps its regions.)
            if message.queued, sendQueue.first === message, message.dropUnsentRegions(notIn: target.regions) > 0,
               message.regionCursor == message.regions.count {
                // Half sent, and the regions it still had to go to left its group's view:
                // nobody there would ever acknowledge it (a swarm seed's sender waited
                // forever). Sent everywhere it still goes, it is done transmitting.
                _ = sendQueue.popFirst()
                message.queued = false
                message.carriedAhead = false
            }
            if message.queued {
                // Half sent: its copies in the new regions follow the older carried ones.
                if !new.isEmpty { message.deferredCarry = new }
                continue
            }
            if !new.isEmpty {
                message.carry(into: new)
                carried.append(message)
                statistics.messagesCarried += 1
            } else if message.unacknowledgedRegions == 0 {
                // Nowhere left that could still want it: the group has no region.
                release(message)
            }
        }
        guard !carried.isEmpty || !orphaned.isEmpty else { return }
        // The carried messages go first (oldest first), ahead of everything newer.
        for message in carried { message.carriedAhead = true }
        requeue(carried, behindCarriedAhead: false, removing: orphaned)
    }

    /// Rebuilds the send queue with `messages` (marked queued) at its front, or behind
    /// the messages carried ahead already, and without those in `removing`.
    private func requeue(_ messages: [OutgoingMessage], behindCarriedAhead: Bool, removing: Set<ObjectIdentifier> = []) {
        var queue = RingBuffer<OutgoingMessage>(initialCapacity: max(64, sendQueue.count + messages.count))
        if behindCarriedAhead {
            while let first = sendQueue.first, first.carriedAhead { queue.append(sendQueue.popFirst()!) }
        }
        for message in messages {
            message.queued = true
            queue.append(message)
        }
        while let message = sendQueue.popFirst() {
            if removing.contains(ObjectIdentifier(message)) { message.queued = false; continue }
            queue.append(message)
        }
        sendQueue = queue
    }

    /// A message every region acknowledged, one of them from a newer view than the
    /// message was sent in: that view's stability covers its members, not a member of the
    /// group that left the region in between for another of the group's regions. If this
    /// node's view of the group is already as new as each such acknowledgement, the views
    /// that moved the member were installed while the message was unacknowledged, and it
    /// was carried then: it is done. Otherwise the acknowledgement came before those views
    /// (swarm seeds 2625045133342059725, 1660950480845983632): it waits for them, keeping
    /// its place in the window, and is carried with the other messages of that
    /// reconfiguration, in order (see `carryUnacknowledged`).
    /// A group out of this node's views (it left it, or a GMS is restarting): let go
    /// unchecked, and counted (`releasedUnchecked`); a member that moved meanwhile is
    /// beyond this node's reach there.
    func acknowledgedUnderNewerView(_ message: OutgoingMessage) {
        guard let target = publishTargets[message.group], target.inView else { return releaseUnchecked(message) }
        guard !viewsCover(message, target) else {
            message.viewCheck = []
            return release(message)
        }
        viewChecks.append(message)
    }

    /// Lets go of a message waiting for its view check whose group left this node's
    /// views (left by the application, or a GMS restarting): counted.
    func releaseUnchecked(_ message: OutgoingMessage) {
        message.viewCheck = []
        statistics.releasedUnchecked += 1
        release(message)
    }

    /// Whether `target` is as new as every acknowledgement in `message.viewCheck`: each
    /// region it names is at that view or later, or gone from the group.
    func viewsCover(_ message: OutgoingMessage, _ target: PublishTarget) -> Bool {
        message.viewCheck.allSatisfy { check in
            target.regions.allSatisfy { $0.id != check.region || $0.viewNumber >= check.view }
        }
    }

    /// Whether a new view of a region a message already went to may hold a member of its
    /// group that was elsewhere before (moved in, owed what it missed). Members that stayed
    /// get it from the region's own stream; new members of the group are not owed it (a
    /// member awaited after a GMS restart is not new). Seen
    /// exactly only from inside the region (both views known); from outside, any new view
    /// may.
    func mayHaveMovedIn(_ reference: RegionReference, group: GroupID, previousRegions: [RegionID: RegionView],
                        previousGroups: [GroupID: GroupView]) -> Bool {
        guard let before = previousRegions[reference.id], let after = regions[reference.id],
              after.viewNumber == reference.viewNumber else { return true }
        guard let groupBefore = previousGroups[group] else { return true }
        var earlier = Set<NodeID>()
        for member in before.members { earlier.insert(member.id) }
        let awaited = awaitedAfterRestart[group]
        for member in after.members where !earlier.contains(member.id) {
            // A member of the group before, or one awaited since a GMS restart.
            if groupBefore.memberSince(of: member.id) != nil || awaited?.contains(member.id) == true { return true }
        }
        return false
    }

    /// The head of the send queue finished its transmission: carries it on into the
    /// regions a reconfiguration added meanwhile, behind the older messages carried there.
    /// True if it stays queued.
    func continueDeferredCarry(_ message: OutgoingMessage) -> Bool {
        guard !message.deferredCarry.isEmpty else { return false }
        let new = message.deferredCarry
        message.deferredCarry = []
        _ = sendQueue.popFirst()
        message.queued = false
        message.carry(into: new)
        statistics.messagesCarried += 1
        requeue([message], behindCarriedAhead: true)
        return true
    }

    /// Gives up the messages kept for `group` while it was out of view, and those that
    /// will be once it is: the application left it (what it had not yet delivered is not
    /// owed to anyone).
    package func abandonMessages(to group: GroupID) {
        abandonedGroups.insert(group)
        var kept: [OutgoingMessage] = []
        for message in orphans {
            if message.group == group {
                message.unacknowledgedRegions = 0
                statistics.messagesGivenUp += 1
                release(message)
            } else {
                kept.append(message)
            }
        }
        orphans = kept
        let (leaving, staying) = (viewChecks.filter { $0.group == group }, viewChecks.filter { $0.group != group })
        viewChecks = staying
        for message in leaving { releaseUnchecked(message) }
    }

    /// Brings `memberSince` in line with the group views: a view that lists this node says
    /// from which view it has been a member; a view of the group without it ends its
    /// membership. A group out of view (a restarting GMS) keeps its entry.
    func updateMemberSince() {
        if !abandonedGroups.isEmpty { abandonedGroups = abandonedGroups.filter { groups[$0] == nil } }
        for view in groups.values {
            if let since = view.memberSince(of: id) {
                // The GMS says from which view (it may have numbered views this node never
                // saw); 0 (continuing across a GMS restart) stays.
                if let current = memberSince[view.id], current == 0 || current == since { continue }
                memberSince[view.id] = since
                memberSinceEpoch += 1
            } else if memberSince.removeValue(forKey: view.id) != nil {
                memberSinceEpoch += 1
            }
        }
    }

    /// Whether a message committed to `groupView` is owed to this node as a member of its
    /// group (it was one then, and has been since); called once per delivery, answered
    /// from the delivery stream's copy.
    @inline(__always)
    func isOwedAsMember(_ stream: DeliveryStream, groupView: UInt64) -> Bool {
        if stream.memberSinceEpoch != memberSinceEpoch {
            stream.memberSince = memberSince[stream.group]
            stream.memberSinceEpoch = memberSinceEpoch
        }
        guard let since = stream.memberSince else { return true }
        return groupView >= since
    }

    /// The node registered again with a GMS that may be a new one (it numbers its views
    /// anew): this node's memberships so far continue (owed whatever is carried to them),
    /// and its own unacknowledged messages count as from before every new view.
    package func membershipRestarting(now: Instant) {
        enter(now)
        for view in groups.values {
            awaitedAfterRestart[view.id, default: []].formUnion(view.members.filter { $0 != id })
        }
        restartHoldUntil = now.advanced(byNanoseconds: configuration.restartCarryGrace.totalNanoseconds)
        for key in Array(memberSince.keys) { memberSince[key] = 0 }
        memberSinceEpoch += 1
        for state in regionSend.values {
            for index in 0..<state.awaiting.count { state.awaiting[index].message.forgetGroupView() }
        }
        for index in 0..<sendQueue.count { sendQueue[index].forgetGroupView() }
        for message in orphans { message.forgetGroupView() }
        for message in viewChecks { message.forgetGroupView() }
    }

    /// Members awaited after a re-registration that appear in the new group views are
    /// no longer awaited; when none is, the messages held for them are done.
    func updateAwaitedAfterRestart() {
        guard restartHoldUntil != nil else { return }
        for view in groups.values { awaitedAfterRestart[view.id]?.subtract(view.members) }
        awaitedAfterRestart = awaitedAfterRestart.filter { !$0.value.isEmpty }
        if awaitedAfterRestart.isEmpty { endRestartHold() }
    }

    /// Stops waiting for members to reappear: what was held for them is done, given up
    /// (counted) where some of its group's awaited members never came back.
    func endRestartHold() {
        restartHoldUntil = nil
        for message in restartHeld where !(awaitedAfterRestart[message.group]?.isEmpty ?? true) {
            statistics.messagesGivenUp += 1
        }
        awaitedAfterRestart.removeAll()
        let held = restartHeld
        restartHeld.removeAll()
        for message in held { release(message) }
    }

    /// The GMS excluded this node: it missed what was sent meanwhile, so its memberships
    /// start again with the views it gets when it rejoins.
    package func forgetGroupContinuity() {
        memberSince.removeAll()
        memberSinceEpoch += 1
    }

    /// The application left `group`: its membership ends here, whatever views say later.
    package func leftGroup(_ group: GroupID) {
        if memberSince.removeValue(forKey: group) != nil { memberSinceEpoch += 1 }
    }

    /// A restarted GMS gave some groups' names other ids: what this node keeps per group
    /// (publishing records, delivery streams, memberships, queued and unacknowledged
    /// messages) moves to the new ids, so sequences and deduplication continue.
    package func renameGroups(_ mapping: [GroupID: GroupID]) {
        guard !mapping.isEmpty else { return }
        var targets: [(GroupID, PublishTarget)] = []
        for (old, new) in mapping {
            if let target = publishTargets[old] { targets.append((new, target)); publishTargets[old] = nil }
        }
        for (new, target) in targets { publishTargets[new] = target }
        var moved: [DeliveryStream] = []
        for entry in lastDelivered.entries where mapping[entry.key.group] != nil { moved.append(entry.value) }
        for stream in moved { lastDelivered[DeliveryKey(sender: stream.sender, group: stream.group)] = nil }
        for stream in moved {
            stream.group = mapping[stream.group]!
            lastDelivered[DeliveryKey(sender: stream.sender, group: stream.group)] = stream
        }
        deliveryRun = nil
        var since: [GroupID: UInt64] = [:]
        for (group, view) in memberSince { since[mapping[group] ?? group] = view }
        memberSince = since
        memberSinceEpoch += 1
        func regroup(_ message: OutgoingMessage) { if let new = mapping[message.group] { message.regroup(new) } }
        for state in regionSend.values { for index in 0..<state.awaiting.count { regroup(state.awaiting[index].message) } }
        for index in 0..<sendQueue.count { regroup(sendQueue[index]) }
        for message in orphans { regroup(message) }
        for message in restartHeld { regroup(message) }
        for message in viewChecks { regroup(message) }
        var awaited: [GroupID: Set<NodeID>] = [:]
        for (group, members) in awaitedAfterRestart { awaited[mapping[group] ?? group, default: []].formUnion(members) }
        awaitedAfterRestart = awaited
        abandonedGroups = Set(abandonedGroups.map { mapping[$0] ?? $0 })
    }
}
