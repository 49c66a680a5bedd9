/// One whole QSM node as a state machine: the membership client, the protocol, packet
/// authentication, the address book, flow control, the publish backlog and the datagram
/// size limit. It performs no I/O, reads no clock and draws no randomness of its own;
/// the engine (sockets and an event core) and the simulator (a simulated network and
/// GMS) are two thin drivers of this same code.
///
/// Inputs carry the time: datagrams with their source, frames from the GMS connection
/// and its opening and closing, application commands, and `tick` when `nextDeadline()`
/// comes. Outputs are pulled, one at a time: `pollDatagram(into:now:)` writes the next
/// datagram into the caller's buffer, `pollDelivery()`, `pollEvent()`,
/// `pollGMSAction()` (connect, send a frame, close).
///
/// Rules:
/// - A datagram leaves only through `pollDatagram`, at most `maximumDatagramBytes`
///   long, tag included; one that would not fit is counted (`droppedOversized`), never
///   skipped silently. The protocol splits what could grow (tokens, hybrid headers).
/// - With a secret, a datagram is acted on only if its tag verifies; others are counted.
/// - A message enters the protocol only when flow control admits it, and only once its
///   group's view is known; until then it waits, in order, in a bounded backlog.
/// - Addresses come from region views, and from packets themselves: a sender outside
///   this node's regions is in no view, yet must be acknowledged and NAKed.
package final class NodeMachine {
    package let configuration: NodeMachineConfiguration
    package var id: NodeID { configuration.id }
    package let protocolNode: ProtocolNode
    package let membership: MembershipClient
    // Stored properties are `@exclusivity(unchecked)`: this state is confined to one thread
    // and never accessed overlappingly; the runtime's dynamic checks cost about 5% of a
    // receiver's CPU (perf, `qsm-bench run`).
    @exclusivity(unchecked) package internal(set) var statistics = NodeMachineStatistics()
    /// Per-group and per-sender counts of what was sent and delivered.
    package var traffic: TrafficCounters { tally.named(groupNames, publications: protocolNode.publications()) }
    @exclusivity(unchecked) var tally = TrafficTally()
    /// The multicast addresses this node must receive: its regions', and those of the
    /// hybrid groups it belongs to.
    @exclusivity(unchecked) package private(set) var listenAddresses: Set<QSMSocketAddress> = []

    let seal: DatagramSeal?
    /// Where encrypted packets are decrypted to (only with encryption).
    private let scratch: UnsafeMutableRawBufferPointer
    let tagBytes: Int
    private let flowControl: any FlowControl
    @exclusivity(unchecked) private var now = Instant.zero
    @exclusivity(unchecked) private var addressBook: [NodeID: QSMSocketAddress] = [:]
    /// Multicast addresses of the regions this node is in or sends to, from the views.
    @exclusivity(unchecked) private var regionAddresses: [RegionID: QSMSocketAddress] = [:] { didSet { lastRegionAddress = nil } }
    /// The last region looked up in `regionAddresses`, and what it gave.
    @exclusivity(unchecked) private var lastRegionAddress: (region: RegionID, address: QSMSocketAddress?)?
    @exclusivity(unchecked) private var pending = RingBuffer<(group: GroupName, slot: Int, payload: [UInt8])>(initialCapacity: 64)
    /// The payload bytes of `pending`.
    @exclusivity(unchecked) private var pendingBytes = 0
    /// Ids of the groups in the current views, by name (looked up per publication).
    @exclusivity(unchecked) private var groupIDs: IdentifierTable<GroupName, GroupID>
    /// Names of every group ever seen (a delivery may come after its group's view went).
    @exclusivity(unchecked) private var groupNames: [GroupID: GroupName] = [:]
    /// The id each group name had last (see `GroupRenumbering`).
    @exclusivity(unchecked) var knownGroupIDs: [GroupName: GroupID] = [:]
    @exclusivity(unchecked) var nextParkedGroupID = UInt32.max
    @exclusivity(unchecked) var events = RingBuffer<NodeEvent>(initialCapacity: 64)
    @exclusivity(unchecked) var gmsActions = RingBuffer<MembershipClientAction>(initialCapacity: 16)
    /// The GMS connection's authentication (with a cluster secret).
    @exclusivity(unchecked) private var gmsSession: GMSClientSession
    @exclusivity(unchecked) private var nonces: NonceSource?
    /// With a cluster secret: this incarnation's datagram counters, one per channel, and
    /// what each sender's incarnation has been seen to send on each (see `DatagramEnvelope`
    /// and `ReplayChannel`).
    @exclusivity(unchecked) var datagramCounters: DatagramCounters
    /// Per sender and channel, looked up for every authenticated datagram: an
    /// `IdentifierTable`, not a `Dictionary`, whose SipHash cost about as much as the rest
    /// of the check (issue 15).
    @exclusivity(unchecked) private var replayWindows: IdentifierTable<ReplayChannelKey, ReplayWindow>
    static let maximumReplayWindows = 65_536
    @exclusivity(unchecked) private var slowConsumer: SlowConsumerPolicy

    package init(configuration: NodeMachineConfiguration) throws(ConfigurationError) {
        try configuration.validate()
        self.configuration = configuration
        seal = configuration.clusterSecret.map {
            DatagramSeal(secret: $0, sender: configuration.id, epoch: configuration.epoch,
                         mode: configuration.encryptsPayloads ? .encrypt : .authenticate,
                         backend: configuration.aesGCMBackend, blockFunction: configuration.sha256BlockFunction)
        }
        scratch = .allocate(byteCount: configuration.encryptsPayloads ? configuration.maximumDatagramBytes : 0, alignment: 16)
        tagBytes = configuration.tagBytes
        if configuration.clusterSecret != nil { nonces = NonceSource(entropy: configuration.entropy) }
        gmsSession = GMSClientSession(secret: configuration.clusterSecret, blockFunction: configuration.sha256BlockFunction)
        flowControl = configuration.flowControl
        slowConsumer = SlowConsumerPolicy(limit: configuration.slowConsumerEviction)
        var tableSeeds = SplitMix64(seed: configuration.seed ^ 0x94D0_49BB_1331_11EB)
        groupIDs = IdentifierTable(seed: tableSeeds.next())
        replayWindows = IdentifierTable(seed: tableSeeds.next())
        datagramCounters = DatagramCounters(seed: tableSeeds.next())
        protocolNode = try ProtocolNode(id: configuration.id, configuration: configuration.effectiveProtocolConfiguration,
                                        seed: configuration.seed)
        membership = MembershipClient(node: configuration.id, address: configuration.address,
                                      heartbeatInterval: configuration.heartbeatInterval,
                                      reconnectDelay: configuration.reconnectDelay)
    }

    deinit { scratch.deallocate() }

    /// A datagram the protocol produced that did not fit the bundle being built: the
    /// next datagram starts with it.
    @exclusivity(unchecked) var carried: (datagram: ProtocolDatagram, destination: QSMSocketAddress)?

    // MARK: Application commands

    /// Starts talking to the GMS (a `.connect` action follows).
    package func start(now: Instant) {
        enter(now)
        membership.start(now: now)
        pumpMembership()
    }

    /// Says goodbye to the GMS and closes the connection (after the goodbye is sent).
    package func stop(now: Instant) {
        enter(now)
        membership.stop()
        pumpMembership()
    }

    package func join(_ group: GroupName, now: Instant) { enter(now); membership.join(group); pumpMembership() }
    package func leave(_ group: GroupName, now: Instant) {
        enter(now)
        membership.leave(group)
        leftLocally(group)
        pumpMembership()
    }

    /// What leaving `group` undoes here, whatever the GMS has heard yet.
    private func leftLocally(_ group: GroupName) {
        guard let id = groupIDs[group] else { return }
        tally.forget(id)
        protocolNode.forgetPublications(to: id)
        protocolNode.leftGroup(id)
        protocolNode.abandonMessages(to: id)
    }
    /// Registers as a publisher to a group this node does not join.
    package func publishWithoutJoining(_ group: GroupName, now: Instant) {
        enter(now)
        membership.publish(group)
        pumpMembership()
    }

    /// Takes a message for `group`. It is sent once the group's view is known and flow
    /// control admits it; until then it waits in order behind earlier ones. `slot` is the
    /// application's handle for the group (`PublisherSlots`), or -1: publish by name.
    package func publish(_ payload: consuming [UInt8], to group: GroupName, slot: Int = -1, now: Instant) -> PublishAdmission {
        enter(now)
        let maximum = configuration.protocolConfiguration.maximumMessageBytes
        guard payload.count <= maximum else {
            return .rejected("message of \(payload.count) bytes exceeds the maximum of \(maximum)")
        }
        // Nothing waiting ahead of it, its group known and the window open: admitted at
        // once, without a round trip through the pending queue (whose append, peek and
        // pop cost six reference-count operations per message).
        if pending.isEmpty, let groupID = id(of: group, slot: slot),
           flowControl.admits(bytes: payload.count, inFlightMessages: protocolNode.unacknowledgedMessageCount,
                              inFlightBytes: protocolNode.unacknowledgedByteCount) {
            admit(payload, to: group, id: groupID)
            return .accepted
        }
        guard pending.count < configuration.maximumPendingPublishes else { return .wouldBlock }
        pendingBytes += payload.count
        pending.append((group, slot, payload))
        admitPending()
        return .accepted
    }

    /// Publications not yet acknowledged by every region, waiting ones included.
    package var messagesInFlight: Int { pending.count + protocolNode.unacknowledgedMessageCount }
    /// Their payload bytes.
    package var bytesInFlight: Int { pendingBytes + protocolNode.unacknowledgedByteCount }

    // MARK: Network and GMS inputs

    /// A datagram arrived from `source`; `bytes` is read during the call only.
    package func datagramReceived(_ bytes: UnsafeRawBufferPointer, from source: QSMSocketAddress, now: Instant) {
        enter(now)
        var body = bytes
        if let seal {
            // The scratch is as long as the largest datagram this node accepts; a longer
            // one cannot be authentic (no peer writes one) and is not opened.
            guard seal.mode == .authenticate || bytes.count <= scratch.count,
                  let opened = seal.open(bytes, scratch: scratch) else {
                statistics.droppedUnauthenticated += 1
                return
            }
            guard !opened.superseded else {
                // An incarnation older than one seen on any channel: dead.
                statistics.droppedDeadIncarnation += 1
                return
            }
            guard admitReplayCheck(sender: opened.sender, epoch: opened.epoch, counter: opened.counter) else { return }
            body = opened.packet
        }
        if body.count > 0, body[0] == PacketKind.bundle.rawValue {
            let valid = DatagramBundle.forEachPacket(in: body) { packet in receivePacket(packet, from: source) }
            if valid { statistics.bundlesReceived += 1 } else { statistics.droppedMalformedBundles += 1 }
        } else {
            receivePacket(body, from: source)
        }
        admitPending()
    }

    /// The last group published to by name (reset when views are installed: a restarted
    /// GMS numbers groups afresh): messages to one group in a row cost no hashing.
    @exclusivity(unchecked) private var lastPublished: (name: GroupName, id: GroupID)?
    /// Raised when views are installed: group names kept in delivery streams under an
    /// older epoch are looked up again.
    @exclusivity(unchecked) private var namesEpoch = 1

    /// Ids of the groups published to through handles.
    @exclusivity(unchecked) private var publisherSlots = PublisherSlots()

    private func id(of group: GroupName, slot: Int) -> GroupID? {
        if let id = publisherSlots.id(of: group, slot: slot, epoch: namesEpoch) { return id }
        if let lastPublished, lastPublished.name == group { return lastPublished.id }
        guard let id = groupIDs[group] else { return nil }
        lastPublished = (group, id)
        publisherSlots.remember(group, id: id, slot: slot, epoch: namesEpoch)
        return id
    }

    /// The name of a delivery stream's group, kept in the stream: deliveries cost no
    /// hashing however many groups take turns.
    func name(of stream: DeliveryStream) -> GroupName? {
        if stream.nameEpoch == namesEpoch, let name = stream.name { return name }
        guard let name = groupNames[stream.group] else { return nil }
        stream.name = name
        stream.nameEpoch = namesEpoch
        return name
    }

    @exclusivity(unchecked) private var lastSender = NodeID(0)
    @exclusivity(unchecked) private var lastSenderAddress = QSMSocketAddress(.loopback, port: 0)

    /// One protocol packet, alone in its datagram or one of a bundle's.
    @inline(__always)
    private func receivePacket(_ packet: UnsafeRawBufferPointer, from source: QSMSocketAddress) {
        switch protocolNode.receive(packet, now: now) {
        case .sender(let sender) where sender != id:
            // The same sender from the same address as the packet before (a stream in
            // full flow) costs no lookup.
            guard sender != lastSender || source != lastSenderAddress else { return }
            lastSender = sender
            lastSenderAddress = source
            addressBook[sender] = source
        case .requester(let requester) where requester != id && addressBook[requester] == nil:
            addressBook[requester] = source
        default:
            break
        }
    }

    /// The replay check of an authentic datagram's envelope: true if the sender's
    /// incarnation has not sent this counter before (on the counter's channel); else
    /// counted by reason.
    @inline(__always)
    private func admitReplayCheck(sender: NodeID, epoch: UInt64, counter: UInt64) -> Bool {
        let verdict: ReplayWindow.Verdict
        let key = ReplayChannelKey(sender: sender, channel: ReplayChannel.of(counter: counter))
        if let known = replayWindows.modifyValue(forKey: key, { $0.admit(epoch: epoch, counter: counter) }) {
            // One probe per datagram: the window is updated where it lies.
            verdict = known
        } else {
            guard replayWindows.count < Self.maximumReplayWindows else {
                statistics.droppedTooManySenders += 1
                return false
            }
            var window = ReplayWindow(epoch: epoch)
            verdict = window.admit(epoch: epoch, counter: counter)
            replayWindows[key] = window
        }
        switch verdict {
        case .fresh: return true
        case .replayed: statistics.droppedReplayed += 1
        case .tooOld: statistics.droppedTooOld += 1
        case .deadIncarnation: statistics.droppedDeadIncarnation += 1
        }
        return false
    }

    /// The driver has handed over everything that had arrived (its input queues are
    /// empty): missing tails that waited for this are asked for. True if it did anything.
    @discardableResult
    package func inputCaughtUp(now: Instant) -> Bool {
        enter(now)
        return protocolNode.inputCaughtUp(now: now)
    }

    package func gmsConnected(now: Instant) {
        enter(now)
        if let hello = gmsSession.connected(nonce: nonces!.next()) { gmsActions.append(.send(hello)) }
        membership.connected(now: now)
        pumpMembership()
    }

    /// One frame (a whole message, its length prefix removed) from the GMS.
    package func gmsFrameReceived(_ frame: UnsafeRawBufferPointer, now: Instant) {
        enter(now)
        let incoming = gmsSession.incoming(frame)
        for reply in incoming.send { gmsActions.append(.send(reply)) }
        if let failure = incoming.failure { return authenticationFailed(failure) }
        if let message = incoming.message {
            message.withUnsafeBytes { membership.frameReceived($0, now: now) }
            pumpMembership()
        }
    }

    /// The GMS connection failed to authenticate: said once, plainly, as an event; the
    /// connection is closed and the membership client retries later as after any
    /// failure (an operator may be fixing the secret).
    private func authenticationFailed(_ reason: String) {
        statistics.gmsAuthenticationFailures += 1
        events.append(.membership(.authenticationFailed(reason: reason)))
        gmsActions.append(.close)
        gmsSession.disconnected()
        membership.disconnected(now: now)
        pumpMembership()
    }

    /// The connection to the GMS closed, or could not be opened (`reason` says why).
    package func gmsDisconnected(reason: String?, now: Instant) {
        enter(now)
        gmsSession.disconnected()
        if let reason, !membership.isRegistered {
            events.append(.membership(.connectionFailed(reason: reason)))
        }
        membership.disconnected(now: now)
        pumpMembership()
    }

    /// The driver says whether the application is behind: deliveries wait for it, and
    /// the driver has stopped reading data meanwhile (see `SlowConsumerPolicy`).
    package func applicationBehind(_ behind: Bool, now: Instant) {
        enter(now)
        protocolNode.recoverySuspended = behind
        if slowConsumer.update(behind: behind, now: now) { evictForSlowConsumption() }
    }

    /// Held back by the application for `slowConsumerEviction`: leaves every group it
    /// belongs to, saying why (see `SlowConsumerPolicy`).
    private func evictForSlowConsumption() {
        let groups = membership.wantedMemberships.sorted()
        guard !groups.isEmpty else { return }
        statistics.evictions += 1
        let seconds = Double(configuration.slowConsumerEviction.totalNanoseconds) / 1e9
        let reason = "node \(id.value)'s application took its deliveries too slowly: it held the node back for "
            + "\(seconds) s (slow-consumer eviction); it left the group so that the others go on, and may join again"
        for group in groups {
            membership.evict(from: group, reason: reason)
            leftLocally(group)
        }
        pumpMembership()
    }

    /// Time passed: call at (or after) `nextDeadline()`.
    package func tick(now: Instant) {
        enter(now)
        if slowConsumer.advance(now: now) { evictForSlowConsumption() }
        protocolNode.tick(now: now)
        // Ring members that answer no probe (see `DataPathSuspicion`): the GMS decides.
        for suspect in protocolNode.takeSuspects() { membership.reportSuspect(suspect) }
        membership.tick(now: now)
        pumpMembership()
        // A node that leads its own region acknowledges its own messages in a round: the
        // window opens with no datagram arriving.
        admitPending()
    }

    /// The earliest time `tick` has work.
    package func nextDeadline() -> Instant? {
        var deadline = membership.nextDeadline(after: now)
        if let protocolDeadline = protocolNode.nextDeadline() { deadline = min(deadline, protocolDeadline) }
        if let slot = slowConsumer.nextDeadline { deadline = min(deadline, slot) }
        return deadline
    }

    // MARK: Internals

    func enter(_ time: Instant) { now = max(now, time) }

    func address(of destination: ProtocolDestination) -> QSMSocketAddress? {
        switch destination {
        case .node(let node): return addressBook[node]
        case .region(let region):
            // Most datagrams go to the region of the one before (one hash each saved).
            if let last = lastRegionAddress, last.region == region { return last.address }
            let address = regionAddresses[region]
            lastRegionAddress = (region, address)
            return address
        case .group(let group): return membership.groups[group]?.hybridAddress
        }
    }

    /// Moves waiting publications into the protocol, in order, while their groups are
    /// known and flow control admits them.
    private func admitPending() {
        while let (group, slot, payload) = pending.first {
            guard let groupID = id(of: group, slot: slot) else {
                // Waiting for the group's view, unless this node no longer belongs or
                // publishes to it (it left before the view came): then it never will.
                guard !membership.wantedMemberships.contains(group), !membership.wantedPublications.contains(group) else { break }
                _ = pending.popFirst()
                pendingBytes -= payload.count
                events.append(.publishRejected(group: group, reason: "not a member of or publisher to '\(group)' any more"))
                events.append(.released(messages: 1, bytes: payload.count))
                continue
            }
            guard flowControl.admits(bytes: payload.count, inFlightMessages: protocolNode.unacknowledgedMessageCount,
                                     inFlightBytes: protocolNode.unacknowledgedByteCount) else { break }
            _ = pending.popFirst()
            pendingBytes -= payload.count
            admit(payload, to: group, id: groupID)
        }
        if statistics.pendingPublishes != pending.count { statistics.pendingPublishes = pending.count }
    }

    /// Hands an admitted publication to the protocol.
    private func admit(_ payload: consuming [UInt8], to group: GroupName, id groupID: GroupID) {
        let bytes = payload.count
        switch protocolNode.publish(group: groupID, payload: payload, now: now) {
        case .accepted(let sequence):
            if configuration.reportsCommits, let view = membership.groups[groupID] {
                events.append(.committed(CommittedMessage(group: group, groupSequence: sequence, view: view)))
            }
        case .rejected(let reason):
            events.append(.publishRejected(group: group, reason: reason))
            events.append(.released(messages: 1, bytes: bytes))
        case .wouldBlock:
            break
        }
    }

    func takeReleased() {
        let released = protocolNode.takeReleased()
        if released.messages > 0 { events.append(.released(messages: released.messages, bytes: released.bytes)) }
    }

    /// Carries out what the membership client asked for and acts on its events, all the
    /// events of one update together (one update may change thousands of group views;
    /// acting once per update keeps that linear).
    private func pumpMembership() {
        for action in membership.takeActions() {
            switch action {
            case .send(let frame):
                if let sealed = gmsSession.outgoing(frame) { gmsActions.append(.send(sealed)) }
            case .connect:
                gmsSession.disconnected()
                gmsActions.append(action)
            case .close:
                gmsActions.append(action)
            }
        }
        let changes = membership.takeEvents()
        guard !changes.isEmpty else { return }
        for change in changes {
            switch change {
            case .excluded: protocolNode.forgetGroupContinuity()
            case .registered(rejoining: true): protocolNode.membershipRestarting(now: now)
            default: break
            }
        }
        let viewsChanged = changes.contains {
            switch $0 {
            case .regionView, .regionRemoved, .groupView, .groupRemoved: return true
            default: return false
            }
        }
        if viewsChanged { installViews() }
        for change in changes { events.append(.membership(change)) }
        admitPending()
    }

    private func installViews() {
        let regions = membership.regions
        let groups = membership.groups
        for region in regions.values {
            for member in region.members where member.id != id { addressBook[member.id] = member.address }
            // Packets' sources are written again after the views' (as before the memo).
            lastSender = NodeID(0)
        }
        protocolNode.renameGroups(renumberedGroups(groups.values))
        protocolNode.installMembership(regions: Array(regions.values), groups: groups, now: now)
        // A region this node sends to but is not a member of: its address is in the
        // group views.
        regionAddresses = [:]
        for group in groups.values {
            for reference in group.regions { if let address = reference.address { regionAddresses[reference.id] = address } }
        }
        for region in regions.values { if let address = region.address { regionAddresses[region.id] = address } }
        groupIDs.removeAll()
        lastPublished = nil
        // A restarted GMS may give an id another group's name: names kept in delivery
        // streams go with views.
        namesEpoch += 1
        groupIDs.reserveCapacity(groups.count)
        groupNames.reserveCapacity(forNew: groups.keys)
        for group in groups.values {
            groupIDs[group.name] = group.id
            groupNames[group.id] = group.name
        }
        var wanted = Set(regions.values.compactMap(\.address))
        for group in groups.values where group.members.contains(id) {
            if let hybrid = group.hybridAddress { wanted.insert(hybrid) }
        }
        if wanted != listenAddresses {
            listenAddresses = wanted
            events.append(.listenAddressesChanged)
        }
    }
}
