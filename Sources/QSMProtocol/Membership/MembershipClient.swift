
/// What the membership client tells its application (and, later, the protocol).
public enum MembershipEvent: Equatable, Sendable {
    /// The GMS accepted the registration. `rejoining` is true when this follows an
    /// exclusion or a lost connection: the client re-registered and is rejoining its groups.
    case registered(rejoining: Bool)
    /// The GMS removed this node as failed; the client is re-registering.
    case excluded(reason: String)
    /// The connection to the GMS was lost; the client will reconnect.
    case disconnected
    /// An attempt to reach the GMS failed (refused, unreachable, closed before the
    /// registration was accepted); the client retries with backoff.
    case connectionFailed(reason: String)
    /// The GMS connection failed to authenticate: this node and the GMS do not share a
    /// cluster secret (or one side has none). Retrying will not help until an operator
    /// fixes the configuration; a command-line node exits with this reason.
    case authenticationFailed(reason: String)
    /// A new view of a region this node is a member of.
    case regionView(RegionView)
    /// This node is no longer a member of the region.
    case regionRemoved(RegionID)
    /// A new view of a group this node belongs or publishes to.
    case groupView(GroupView)
    /// The node no longer belongs or publishes to the group (or the group is gone).
    case groupRemoved(GroupID, GroupName)
    /// The GMS refused a request, or the client refused one of the application's.
    case rejected(request: String, reason: String)
    /// This node left `group` because its application took deliveries too slowly and
    /// held back the group's senders (see `QSMNodeConfiguration.slowConsumerEviction`).
    /// Deliveries already handed over stay; join again to receive from then on.
    case evicted(group: GroupName, reason: String)
    /// Another member of a group this node belongs or publishes to was evicted from it,
    /// and why.
    case memberEvicted(node: NodeID, group: GroupName, reason: String)
}

/// What the client asks its transport to do.
package enum MembershipClientAction: Equatable, Sendable {
    case connect
    case send([UInt8])
    case close
}

/// The node side of the GMS protocol, with no I/O and no clock of its own.
///
/// The application says which groups it wants to belong and publish to; the client keeps
/// the GMS in line with that across reconnections and exclusions, sends heartbeats, and
/// applies the GMS's versioned updates, asking for a full one when it sees a gap.
package final class MembershipClient {
    package let node: NodeID
    package let address: QSMSocketAddress
    // Stored properties are `@exclusivity(unchecked)`: this state is confined to one thread
    // and never accessed overlappingly; the runtime's dynamic checks cost about 5% of a
    // receiver's CPU (perf, `qsm-bench run`).
    @exclusivity(unchecked) package private(set) var regions: [RegionID: RegionView] = [:]
    @exclusivity(unchecked) package private(set) var groups: [GroupID: GroupView] = [:]
    /// The version of the last update applied (0: none yet).
    @exclusivity(unchecked) package private(set) var version: UInt64 = 0
    @exclusivity(unchecked) package private(set) var isRegistered = false
    /// Gaps seen in update versions (each led to a resynchronization).
    @exclusivity(unchecked) package private(set) var versionGaps = 0

    /// The groups the application wants to belong to, and to publish to.
    @exclusivity(unchecked) package private(set) var wantedMemberships: Set<GroupName> = []
    @exclusivity(unchecked) package private(set) var wantedPublications: Set<GroupName> = []
    @exclusivity(unchecked) private var state = State.idle
    @exclusivity(unchecked) private var hasRegisteredBefore = false
    @exclusivity(unchecked) private var stopped = false
    @exclusivity(unchecked) private var awaitingFull = false
    @exclusivity(unchecked) private var pendingRequests: [UInt32: String] = [:]
    @exclusivity(unchecked) private var nextRequest: UInt32 = 1
    @exclusivity(unchecked) private var lastHeartbeat = Instant.zero
    @exclusivity(unchecked) private var reconnectAt: Instant?
    @exclusivity(unchecked) private var reconnectDelayNanoseconds: Int64
    /// The interval asked for, and the one in use: shorter while the GMS's timeout is
    /// under four of them (it says its timeout when the node registers).
    private let configuredHeartbeatNanoseconds: Int64
    @exclusivity(unchecked) private var heartbeatIntervalNanoseconds: Int64
    private let minimumReconnectDelay: Int64
    private let maximumReconnectDelay: Int64 = 5_000_000_000
    @exclusivity(unchecked) private var actions: [MembershipClientAction] = []
    @exclusivity(unchecked) private var events: [MembershipEvent] = []

    private enum State {
        case idle
        case connecting
        case registering
        case registered
    }

    /// Heartbeats at least this many per GMS heartbeat timeout, and at most one per
    /// `shortestHeartbeatNanoseconds`.
    static let heartbeatsPerTimeout: Int64 = 4
    static let shortestHeartbeatNanoseconds: Int64 = 10_000_000

    /// The heartbeat interval in use (see `heartbeatsPerTimeout`).
    package var heartbeatInterval: Duration { .nanoseconds(heartbeatIntervalNanoseconds) }

    package init(node: NodeID, address: QSMSocketAddress, heartbeatInterval: Duration = .seconds(1),
                reconnectDelay: Duration = .milliseconds(200)) {
        self.node = node
        self.address = address
        configuredHeartbeatNanoseconds = heartbeatInterval.totalNanoseconds
        heartbeatIntervalNanoseconds = configuredHeartbeatNanoseconds
        minimumReconnectDelay = reconnectDelay.totalNanoseconds
        reconnectDelayNanoseconds = minimumReconnectDelay
    }

    /// The actions asked for since the last call, moved out (see `Array.takeAll`).
    package func takeActions() -> [MembershipClientAction] { actions.takeAll() }

    /// The events since the last call, moved out (see `Array.takeAll`).
    package func takeEvents() -> [MembershipEvent] { events.takeAll() }

    /// The earliest time `tick` has something to do.
    package func nextDeadline(after now: Instant) -> Instant {
        switch state {
        case .registered, .registering: return lastHeartbeat.advanced(byNanoseconds: heartbeatIntervalNanoseconds)
        case .idle: return reconnectAt ?? now.advanced(by: .seconds(1))
        case .connecting: return now.advanced(by: .seconds(1))
        }
    }

    // MARK: Application requests

    /// Starts talking to the GMS (asks the transport to connect).
    package func start(now: Instant) {
        guard case .idle = state else { return }
        stopped = false
        state = .connecting
        actions.append(.connect)
    }

    package func join(_ group: GroupName) { change(&wantedMemberships, insert: group, kind: "join") }
    package func leave(_ group: GroupName) { change(&wantedMemberships, remove: group, kind: "leave") }
    package func publish(_ group: GroupName) { change(&wantedPublications, insert: group, kind: "publish") }
    package func unpublish(_ group: GroupName) { change(&wantedPublications, remove: group, kind: "unpublish") }

    /// Leaves everything cleanly and closes the connection.
    package func stop() {
        if case .registered = state { sendMessage(.goodbye) }
        stopped = true
        state = .idle
        reconnectAt = nil
        isRegistered = false
        actions.append(.close)
    }

    private func change(_ set: inout Set<GroupName>, insert group: GroupName, kind: String) {
        guard set.insert(group).inserted else {
            events.append(.rejected(request: "\(kind) \(group)", reason: kind == "join" ? "already a member of '\(group)'" : "already publishing to '\(group)'"))
            return
        }
        if isRegistered { sendRequest(kind, group) }
    }

    private func change(_ set: inout Set<GroupName>, remove group: GroupName, kind: String) {
        guard set.remove(group) != nil else {
            events.append(.rejected(request: "\(kind) \(group)", reason: kind == "leave" ? "not a member of '\(group)'" : "not publishing to '\(group)'"))
            return
        }
        if isRegistered { sendRequest(kind, group) }
    }

    private func sendRequest(_ kind: String, _ group: GroupName) {
        let id = nextRequest
        nextRequest = nextRequest == UInt32.max ? 1 : nextRequest + 1
        pendingRequests[id] = "\(kind) \(group)"
        switch kind {
        case "join": sendMessage(.join(request: id, group: group))
        case "leave": sendMessage(.leave(request: id, group: group))
        case "publish": sendMessage(.publish(request: id, group: group))
        default: sendMessage(.unpublish(request: id, group: group))
        }
    }

    /// Leaves `group` because the application is too slow: the leave, then word of why
    /// for the group's other members (through the GMS), and the event for this node's.
    package func evict(from group: GroupName, reason: String) {
        guard wantedMemberships.contains(group) else { return }
        leave(group)
        if isRegistered { sendMessage(.evicted(group: group, reason: reason)) }
        events.append(.evicted(group: group, reason: reason))
    }

    /// Reports a ring member that answers none of this node's probes (sent only while
    /// registered: a suspicion is about the current views).
    package func reportSuspect(_ node: NodeID) {
        guard isRegistered else { return }
        sendMessage(.suspect(node: node))
    }

    private func sendMessage(_ message: ClientMessage) {
        actions.append(.send(message.encoded()))
    }

    // MARK: Transport events

    package func connected(now: Instant) {
        guard case .connecting = state else { return }
        state = .registering
        lastHeartbeat = now
        sendMessage(.register(node: node, address: address, protocolVersion: membershipProtocolVersion))
    }

    /// The connection failed or closed; a reconnection is scheduled unless the client was
    /// stopped, or an exclusion already scheduled an immediate one.
    ///
    /// The views are kept until the node registers again: the data path does not need the
    /// GMS, so traffic flows on through its restart or a broken connection. (Forgetting
    /// them here dropped every region at once, and with it every message still in flight.)
    package func disconnected(now: Instant) {
        guard !stopped else { return }
        if isRegistered { events.append(.disconnected) }
        isRegistered = false
        if case .idle = state, reconnectAt != nil { return }
        scheduleReconnect(now)
    }

    package func frameReceived(_ frame: UnsafeRawBufferPointer, now: Instant) {
        let message: ServerMessage
        do throws(WireError) {
            message = try ServerMessage(decoding: frame)
        } catch {
            events.append(.rejected(request: "update", reason: "malformed message from the GMS: \(error)"))
            return
        }
        switch message {
        case .registered(_, let timeout):
            // Four heartbeats in the GMS's timeout at least: with a timeout under the
            // configured interval (a GMS run with --heartbeat-timeout 100ms, nodes at 1 s),
            // the node was excluded and registered again five times a second, silently.
            heartbeatIntervalNanoseconds = min(configuredHeartbeatNanoseconds,
                                               max(timeout.totalNanoseconds / Self.heartbeatsPerTimeout, Self.shortestHeartbeatNanoseconds))
            // Registered again: the GMS may have excluded this node meanwhile, or be a new
            // one. The views start over from the full update that follows, so every region
            // is joined afresh, owed only what is sent from its new view on. (The agent
            // hands these events over before the next frame is read, so the protocol sees
            // the empty views.) Kept, the old streams would wait for messages the others
            // made stable while this node was away, and stall everyone's acknowledgements.
            if hasRegisteredBefore { forgetViews() }
            state = .registered
            isRegistered = true
            events.append(.registered(rejoining: hasRegisteredBefore))
            hasRegisteredBefore = true
            reconnectDelayNanoseconds = minimumReconnectDelay
            version = 0
            awaitingFull = true
            for group in wantedMemberships.sorted() { sendRequest("join", group) }
            for group in wantedPublications.sorted() { sendRequest("publish", group) }
        case .accepted(let request):
            pendingRequests[request] = nil
        case .rejected(let request, let reason):
            let what = pendingRequests.removeValue(forKey: request) ?? "request"
            events.append(.rejected(request: what, reason: reason))
        case .memberEvicted(let node, let group, let reason):
            events.append(.memberEvicted(node: node, group: group, reason: reason))
        case .excluded(let reason):
            events.append(.excluded(reason: reason))
            forgetViews()
            isRegistered = false
            state = .idle
            // Re-register at once: exclusion means the GMS is reachable.
            reconnectAt = now
        case .update(let update):
            apply(update)
        }
    }

    /// Advances time: heartbeats, and reconnection when due.
    package func tick(now: Instant) {
        switch state {
        case .registered, .registering:
            if now.nanoseconds(since: lastHeartbeat) >= heartbeatIntervalNanoseconds {
                lastHeartbeat = now
                if case .registered = state { sendMessage(.heartbeat) }
            }
        case .idle:
            if let due = reconnectAt, now >= due {
                reconnectAt = nil
                state = .connecting
                actions.append(.connect)
            }
        case .connecting:
            break
        }
    }

    private func scheduleReconnect(_ now: Instant) {
        state = .idle
        reconnectAt = now.advanced(byNanoseconds: reconnectDelayNanoseconds)
        reconnectDelayNanoseconds = min(reconnectDelayNanoseconds * 2, maximumReconnectDelay)
    }

    private func forgetViews() {
        for id in regions.keys.sorted() { events.append(.regionRemoved(id)) }
        for group in groups.values.sorted(by: { $0.id < $1.id }) { events.append(.groupRemoved(group.id, group.name)) }
        regions = [:]
        groups = [:]
        version = 0
    }

    private func apply(_ update: MembershipUpdate) {
        if update.isFull {
            awaitingFull = false
            let keepRegions = Set(update.regions.map(\.id))
            let keepGroups = Set(update.groups.map(\.id))
            for id in regions.keys.sorted() where !keepRegions.contains(id) {
                regions[id] = nil
                events.append(.regionRemoved(id))
            }
            for id in groups.keys.sorted() where !keepGroups.contains(id) {
                if let group = groups.removeValue(forKey: id) { events.append(.groupRemoved(id, group.name)) }
            }
        } else {
            guard !awaitingFull else { return }
            guard update.baseVersion == version else {
                versionGaps += 1
                awaitingFull = true
                sendMessage(.resynchronize)
                return
            }
            for id in update.removedRegions where regions.removeValue(forKey: id) != nil {
                events.append(.regionRemoved(id))
            }
            for id in update.removedGroups {
                if let group = groups.removeValue(forKey: id) { events.append(.groupRemoved(id, group.name)) }
            }
        }
        for region in update.regions where regions[region.id] != region {
            regions[region.id] = region
            events.append(.regionView(region))
        }
        groups.reserveCapacity(forNew: update.groups.lazy.map(\.id))
        for group in update.groups where groups[group.id] != group {
            groups[group.id] = group
            events.append(.groupView(group))
        }
        version = update.version
    }
}
