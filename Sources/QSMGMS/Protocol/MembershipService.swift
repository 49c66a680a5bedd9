import QSMCore

/// A transport connection as the service sees it (the runtime numbers them).
package struct ConnectionID: Hashable, Sendable, CustomStringConvertible {
    package let value: UInt64
    package init(_ value: UInt64) { self.value = value }
    package var description: String { "c\(value)" }
}

/// What the service asks its transport to do.
package enum MembershipServiceAction: Equatable, Sendable {
    /// Send one frame's payload on a connection.
    case send(ConnectionID, [UInt8])
    /// Close a connection (after sending what was queued before).
    case close(ConnectionID)
}

/// Counters of the membership service; every refusal and drop is counted by reason.
package struct MembershipServiceStatistics: Sendable, Equatable {
    package var registrations = 0
    package var cleanLeaves = 0
    /// Nodes removed because their connection broke without a goodbye.
    package var disconnectFailures = 0
    /// Nodes removed because their heartbeats stopped.
    package var heartbeatFailures = 0
    package var batchesApplied = 0
    package var updatesSent = 0
    package var malformedFrames = 0
    package var rejectedRequests = 0
    package var duplicateRegistrations = 0
    package var idleConnectionsClosed = 0
    /// Connections refused because they did not authenticate with the cluster secret
    /// (no handshake, a wrong proof, a bad frame tag, or a handshake at a GMS without a
    /// secret). Nothing they said reached the membership state.
    package var authenticationFailures = 0
    /// Suspects reported by ring leaders (`ClientMessage.suspect`); those ignored (the
    /// suspect is not registered, is the reporter, shares no region with it, or is silent
    /// here too: then the heartbeat timeout decides); nodes
    /// excluded on a report; and registrations refused while such a node is quarantined.
    package var suspicionsReceived = 0
    /// See `suspicionsReceived`.
    package var suspicionsIgnored = 0
    /// See `suspicionsReceived`.
    package var suspicionExclusions = 0
    /// Reports that found the suspect suspected for less than `suspectConfirmation`.
    package var suspicionsAwaitingConfirmation = 0
    /// See `suspicionsReceived`.
    package var quarantineRefusals = 0
    /// Nodes that left a group because their application was too slow, announced to the
    /// group's other members and publishers; and such words ignored (a group the node
    /// still belongs to, or does not exist).
    package var evictionsAnnounced = 0
    /// See `evictionsAnnounced`.
    package var evictionsIgnored = 0
}

/// QSM's centralized Global Membership Service (section 4.2.1 A) as a state machine with
/// no I/O and no clock of its own: the runtime feeds it connection events, frames and
/// ticks with the current time, and carries out the actions it returns.
///
/// Joins, leaves and failures are collected and applied in batches every
/// `batchInterval`. Each live node then receives, on its own connection, a versioned
/// update with just what changed among its regions and its groups.
package final class MembershipService {
    package let configuration: MembershipConfiguration
    package private(set) var statistics = MembershipServiceStatistics()

    private var views: MembershipViews
    private var connections: [ConnectionID: Connection] = [:]
    private var nodes: [NodeID: NodeRecord] = [:]
    private var groupIDs: [GroupName: GroupID] = [:]
    private var groupRecords: [GroupID: GroupRecord] = [:]
    private var nextGroupID: UInt32 = 1
    private var dirty = false
    private var nextBatch: Instant?
    private var actions: [MembershipServiceAction] = []
    private let heartbeatTimeoutNanoseconds: Int64
    private let batchIntervalNanoseconds: Int64

    private struct Connection {
        var node: NodeID?
        var openedAt: Instant
        /// With a cluster secret: the connection's authentication (see `GMSChannel`).
        var channel: GMSChannel?
        /// Failed to authenticate: closing; nothing more it sends is read.
        var refused = false
    }
    private var nonces: NonceSource?
    /// Why connections were refused, oldest first (bounded), for the runtime to log.
    private var refusals: [String] = []
    /// Exclusions on suspicion, for the runtime to log (bounded like `refusals`).
    private var exclusions: [String] = []
    /// Nodes excluded on suspicion, and until when they may not register.
    private var quarantined: [NodeID: Instant] = [:]
    /// Suspects reported and not yet excluded: when first and last (see
    /// `suspectConfirmation`). Only live nodes; pruned once reports stop.
    private var suspicions: [NodeID: (first: Instant, last: Instant)] = [:]
    /// How long reports of a suspect may pause and still count as one suspicion: nodes
    /// report again every few seconds while the silence lasts.
    private static let suspicionLapseNanoseconds: Int64 = 10_000_000_000

    private struct NodeRecord {
        var address: QSMSocketAddress
        var connection: ConnectionID
        var lastHeard: Instant
        var joined: Set<GroupID> = []
        var publishing: Set<GroupID> = []
        var sentVersion: UInt64 = 0
        var needsFull = true
        var sentRegions: Set<RegionID> = []
        var sentGroups: Set<GroupID> = []
    }

    private struct GroupRecord {
        var name: GroupName
        var members = 0
        var publishers = 0
        var hybrid: Bool
    }

    /// - Throws: `ConfigurationError` for an invalid configuration.
    package init(configuration: MembershipConfiguration) throws(ConfigurationError) {
        try configuration.validate()
        self.configuration = configuration
        views = MembershipViews(configuration: configuration)
        if configuration.clusterSecret != nil { nonces = NonceSource(entropy: configuration.entropy) }
        heartbeatTimeoutNanoseconds = configuration.heartbeatTimeout.totalNanoseconds
        batchIntervalNanoseconds = configuration.batchInterval.totalNanoseconds
    }

    // MARK: Introspection

    package var liveNodeCount: Int { nodes.count }
    package var groupCount: Int { groupRecords.count }
    package var regionViews: [RegionView] { Array(views.regions.values) }
    package var groupViews: [GroupView] { Array(views.groups.values) }
    package var addressesInUse: Int { views.addressesInUse }

    /// When `tick` next has work (a batch or a heartbeat deadline), at the latest.
    package func nextDeadline(after now: Instant) -> Instant {
        var deadline = now.advanced(byNanoseconds: min(heartbeatTimeoutNanoseconds, 1_000_000_000))
        if dirty, let nextBatch { deadline = min(deadline, nextBatch) }
        return deadline
    }

    /// Actions produced since the last call, in order.
    package func takeActions() -> [MembershipServiceAction] { actions.takeAll() }

    // MARK: Transport events

    package func connectionOpened(_ connection: ConnectionID, now: Instant) {
        var channel: GMSChannel?
        if let secret = configuration.clusterSecret, nonces != nil {
            channel = GMSChannel(role: .server, secret: secret, nonce: nonces!.next(), blockFunction: configuration.sha256BlockFunction)
        }
        connections[connection] = Connection(node: nil, openedAt: now, channel: channel)
    }

    /// Why connections were refused since the last call (for the runtime's log).
    package func takeRefusals() -> [String] {
        defer { refusals.removeAll() }
        return refusals
    }

    /// A connection ended. A node that did not say goodbye has failed.
    package func connectionClosed(_ connection: ConnectionID, now: Instant) {
        guard let state = connections.removeValue(forKey: connection) else { return }
        if let node = state.node, nodes[node]?.connection == connection {
            statistics.disconnectFailures += 1
            removeNode(node, now: now)
        }
    }

    /// One frame's payload arrived on `connection`.
    package func frameReceived(_ frame: UnsafeRawBufferPointer, on connection: ConnectionID, now: Instant) {
        guard let state = connections[connection], !state.refused else { return }
        guard var channel = state.channel else {
            if GMSChannel.isHandshake(frame) {
                // The node has a secret and this GMS has none: tell it, plainly.
                refuseConnection(connection, reason: "a node with a cluster secret at a GMS without one", now: now,
                                 reply: GMSChannel.refusal("this GMS runs without a cluster secret (--insecure): run the node with --insecure too, or give the GMS the cluster's --secret-file"))
                return
            }
            return messageReceived(frame, on: connection, now: now)
        }
        let received = channel.receive(frame)
        connections[connection]?.channel = channel
        switch received {
        case .handshake(let reply, _):
            if let reply { actions.append(.send(connection, reply)) }
        case .message(let payload):
            payload.withUnsafeBytes { messageReceived($0, on: connection, now: now) }
        case .refusedByPeer(let reason):
            refuseConnection(connection, reason: "the node refused the GMS: \(reason)", now: now, reply: nil)
        case .failed(let reason, let reply):
            refuseConnection(connection, reason: reason, now: now, reply: reply)
        }
    }

    /// Counts, records and closes a connection that failed to authenticate; whatever it
    /// said never reached the membership state.
    private func refuseConnection(_ connection: ConnectionID, reason: String, now: Instant, reply: [UInt8]?) {
        statistics.authenticationFailures += 1
        if refusals.count < 64 { refusals.append("\(connection): \(reason)") }
        if let reply { actions.append(.send(connection, reply)) }
        actions.append(.close(connection))
        // A registered node whose frames stop verifying is cut off like a failed one.
        if let node = connections[connection]?.node, nodes[node]?.connection == connection {
            statistics.disconnectFailures += 1
            removeNode(node, now: now)
        }
        connections[connection]?.node = nil
        connections[connection]?.refused = true
    }

    private func messageReceived(_ frame: UnsafeRawBufferPointer, on connection: ConnectionID, now: Instant) {
        let message: ClientMessage
        do throws(WireError) {
            message = try ClientMessage(decoding: frame)
        } catch {
            statistics.malformedFrames += 1
            send(.rejected(request: 0, reason: "malformed message: \(error)"), to: connection)
            return
        }
        if let node = connections[connection]?.node { nodes[node]?.lastHeard = now }
        switch message {
        case .register(let node, let address, let version):
            register(node, address: address, protocolVersion: version, on: connection, now: now)
        case .join(let request, let group), .leave(let request, let group),
             .publish(let request, let group), .unpublish(let request, let group):
            handleGroupRequest(message, request: request, group: group, on: connection, now: now)
        case .heartbeat:
            if connections[connection]?.node == nil { refuse(0, "heartbeat before registering", on: connection) }
        case .resynchronize:
            guard let node = connections[connection]?.node else { return refuse(0, "resynchronize before registering", on: connection) }
            nodes[node]?.needsFull = true
            markDirty(now)
        case .suspect(let suspect):
            guard let reporter = connections[connection]?.node else { return refuse(0, "suspect before registering", on: connection) }
            reportSuspicion(suspect, by: reporter, now: now)
        case .evicted(let group, let reason):
            guard let node = connections[connection]?.node else { return refuse(0, "eviction before registering", on: connection) }
            announceEviction(of: node, from: group, reason: reason)
        case .goodbye:
            if let node = connections[connection]?.node {
                statistics.cleanLeaves += 1
                connections[connection]?.node = nil
                removeNode(node, now: now)
            }
            actions.append(.close(connection))
        }
    }

    /// Advances time: detects failures, closes idle unregistered connections, and applies
    /// the pending batch when it is due.
    package func tick(now: Instant) {
        if !quarantined.isEmpty { quarantined = quarantined.filter { $0.value > now } }
        if !suspicions.isEmpty {
            suspicions = suspicions.filter { nodes[$0.key] != nil && now.nanoseconds(since: $0.value.last) <= Self.suspicionLapseNanoseconds }
        }
        for (id, node) in nodes where now.nanoseconds(since: node.lastHeard) > heartbeatTimeoutNanoseconds {
            statistics.heartbeatFailures += 1
            let seconds = Double(now.nanoseconds(since: node.lastHeard)) / 1e9
            send(.excluded(reason: "no heartbeat for \(Double(Int(seconds * 10)) / 10) s (timeout \(configuration.heartbeatTimeout))"),
                 to: node.connection)
            actions.append(.close(node.connection))
            connections[node.connection]?.node = nil
            removeNode(id, now: now)
        }
        for (id, connection) in connections where connection.node == nil && !connection.refused
            && now.nanoseconds(since: connection.openedAt) > heartbeatTimeoutNanoseconds {
            statistics.idleConnectionsClosed += 1
            send(.rejected(request: 0, reason: "no registration within \(configuration.heartbeatTimeout)"), to: id)
            actions.append(.close(id))
            connections[id]?.openedAt = now  // closed by the transport shortly; do not repeat
        }
        if dirty, let due = nextBatch, now >= due { applyBatch() }
    }

    // MARK: Requests

    private func register(_ node: NodeID, address: QSMSocketAddress, protocolVersion: UInt16,
                          on connection: ConnectionID, now: Instant) {
        guard protocolVersion == membershipProtocolVersion else {
            refuse(0, "protocol version \(protocolVersion) not supported (this GMS speaks \(membershipProtocolVersion))", on: connection)
            actions.append(.close(connection))
            return
        }
        if let current = connections[connection]?.node {
            return refuse(0, "this connection is already registered as \(current)", on: connection)
        }
        if let until = quarantined[node] {
            if now < until {
                statistics.quarantineRefusals += 1
                let seconds = Double(until.nanoseconds(since: now)) / 1e9
                refuse(0, "node \(node.value) was excluded for a data path that answered no probe; it may register again in \(Int(seconds.rounded(.up))) s", on: connection)
                actions.append(.close(connection))
                return
            }
            quarantined[node] = nil
        }
        guard nodes[node] == nil else {
            statistics.duplicateRegistrations += 1
            refuse(0, "node id \(node.value) is already registered on another live connection", on: connection)
            actions.append(.close(connection))
            return
        }
        guard nodes.count < configuration.maximumNodes else {
            refuse(0, "the GMS is full (\(configuration.maximumNodes) nodes)", on: connection)
            actions.append(.close(connection))
            return
        }
        nodes[node] = NodeRecord(address: address, connection: connection, lastHeard: now)
        connections[connection]?.node = node
        statistics.registrations += 1
        send(.registered(node: node, heartbeatTimeout: configuration.heartbeatTimeout), to: connection)
        markDirty(now)
    }

    private func handleGroupRequest(_ message: ClientMessage, request: UInt32, group name: GroupName,
                                    on connection: ConnectionID, now: Instant) {
        // The node's record is read and changed in place: a copy would share its sets,
        // and the first insert would copy a whole set (quadratic in a node's groups).
        guard let node = connections[connection]?.node, nodes[node] != nil else {
            return refuse(request, "unknown node: register before sending requests", on: connection)
        }
        let existing = groupIDs[name]
        switch message {
        case .join, .publish:
            let isJoin: Bool
            if case .join = message { isJoin = true } else { isJoin = false }
            if let existing, isJoin ? nodes[node]!.joined.contains(existing) : nodes[node]!.publishing.contains(existing) {
                return refuse(request, isJoin ? "already a member of '\(name)'" : "already publishing to '\(name)'", on: connection)
            }
            if nodes[node]!.joined.count + nodes[node]!.publishing.count >= configuration.maximumGroupsPerNode {
                return refuse(request, "limit of \(configuration.maximumGroupsPerNode) groups per node reached", on: connection)
            }
            let id: GroupID
            if let existing {
                id = existing
            } else {
                guard groupRecords.count < configuration.maximumGroups else {
                    return refuse(request, "the GMS holds its limit of \(configuration.maximumGroups) groups", on: connection)
                }
                id = GroupID(nextGroupID)
                nextGroupID += 1
                groupIDs[name] = id
                groupRecords[id] = GroupRecord(name: name, hybrid: configuration.hybridGroups.contains(name.text))
            }
            if isJoin {
                nodes[node]!.joined.insert(id)
                groupRecords[id]!.members += 1
            } else {
                nodes[node]!.publishing.insert(id)
                groupRecords[id]!.publishers += 1
            }
        case .leave, .unpublish:
            let isLeave: Bool
            if case .leave = message { isLeave = true } else { isLeave = false }
            guard let existing, isLeave ? nodes[node]!.joined.contains(existing) : nodes[node]!.publishing.contains(existing) else {
                return refuse(request, isLeave ? "not a member of '\(name)'" : "not publishing to '\(name)'", on: connection)
            }
            if isLeave {
                nodes[node]!.joined.remove(existing)
                groupRecords[existing]!.members -= 1
            } else {
                nodes[node]!.publishing.remove(existing)
                groupRecords[existing]!.publishers -= 1
            }
        default:
            return
        }
        send(.accepted(request: request), to: connection)
        markDirty(now)
    }

    /// A ring leader reports that `suspect`, a member of one of its rings, answered none
    /// of its probes over several timed-out rounds (the node applies that policy: never
    /// one timeout, and only once some other node has answered it, so a leader whose own
    /// path is broken reports no one). The GMS excludes the suspect if both are live and
    /// share a region and it has been reported for `suspectConfirmation`, and quarantines
    /// it for `suspectQuarantine`.
    ///
    /// Only a suspect the GMS still hears from: one silent here for half the heartbeat
    /// timeout is frozen or dead as a whole, and the heartbeat timeout decides (a freeze
    /// shorter than it is ridden out, as before; a quarantine would turn it into half a
    /// minute away).
    private func reportSuspicion(_ suspect: NodeID, by reporter: NodeID, now: Instant) {
        statistics.suspicionsReceived += 1
        guard suspect != reporter, let record = nodes[suspect],
              now.nanoseconds(since: record.lastHeard) <= heartbeatTimeoutNanoseconds / 2,
              views.regions.values.contains(where: { region in
                  region.members.contains { $0.id == suspect } && region.members.contains { $0.id == reporter }
              }) else {
            statistics.suspicionsIgnored += 1
            return
        }
        // Confirmed only by reports over `suspectConfirmation`: a short cut is ridden out.
        var entry = suspicions[suspect] ?? (now, now)
        if now.nanoseconds(since: entry.last) > Self.suspicionLapseNanoseconds { entry.first = now }
        entry.last = now
        guard now.nanoseconds(since: entry.first) >= configuration.suspectConfirmation.totalNanoseconds else {
            suspicions[suspect] = entry
            statistics.suspicionsAwaitingConfirmation += 1
            return
        }
        suspicions[suspect] = nil
        statistics.suspicionExclusions += 1
        let quarantine = configuration.suspectQuarantine
        send(.excluded(reason: "node \(reporter.value) found this node's data path answering none of its probes; "
                       + "excluded, and may register again in \(quarantine)"), to: record.connection)
        actions.append(.close(record.connection))
        connections[record.connection]?.node = nil
        removeNode(suspect, now: now)
        if quarantine > .zero { quarantined[suspect] = now.advanced(by: quarantine) }
        if exclusions.count >= 64 { exclusions.removeFirst() }
        exclusions.append("excluded node \(suspect.value): reported by node \(reporter.value) for \(configuration.suspectConfirmation) or more (its data path answers no probe); quarantined for \(quarantine)")
    }

    /// A node left `group` because its application was too slow (it sent the leave just
    /// before): its other members and publishers are told who and why. Only about the
    /// node itself, and only for a group it no longer belongs to.
    private func announceEviction(of node: NodeID, from name: GroupName, reason: String) {
        guard let group = groupIDs[name], let record = nodes[node], !record.joined.contains(group) else {
            statistics.evictionsIgnored += 1
            return
        }
        statistics.evictionsAnnounced += 1
        for (other, otherRecord) in nodes where other != node
            && (otherRecord.joined.contains(group) || otherRecord.publishing.contains(group)) {
            send(.memberEvicted(node: node, group: name, reason: reason), to: otherRecord.connection)
        }
        if exclusions.count >= 64 { exclusions.removeFirst() }
        exclusions.append("node \(node.value) evicted itself from '\(name)': \(reason)")
    }

    /// Nodes excluded on suspicion or evicted since the last call, for the runtime to log.
    package func takeExclusions() -> [String] {
        defer { exclusions.removeAll() }
        return exclusions
    }

    private func refuse(_ request: UInt32, _ reason: String, on connection: ConnectionID) {
        statistics.rejectedRequests += 1
        send(.rejected(request: request, reason: reason), to: connection)
    }

    private func removeNode(_ node: NodeID, now: Instant) {
        guard let record = nodes.removeValue(forKey: node) else { return }
        for group in record.joined { groupRecords[group]?.members -= 1 }
        for group in record.publishing { groupRecords[group]?.publishers -= 1 }
        markDirty(now)
    }

    private func markDirty(_ now: Instant) {
        if !dirty {
            dirty = true
            nextBatch = now.advanced(byNanoseconds: batchIntervalNanoseconds)
        }
    }

    /// Sends on an open channel (sealed), or in the clear without a secret; a connection
    /// that has not authenticated hears nothing but the handshake.
    private func send(_ message: ServerMessage, to connection: ConnectionID) {
        guard configuration.clusterSecret != nil else { return actions.append(.send(connection, message.encoded())) }
        guard var channel = connections[connection]?.channel, channel.isOpen, connections[connection]?.refused == false else { return }
        actions.append(.send(connection, channel.seal(message.encoded())))
        connections[connection]?.channel = channel
    }

    // MARK: Batches

    private func applyBatch() {
        dirty = false
        nextBatch = nil
        statistics.batchesApplied += 1
        // Groups with neither members nor publishers cease to exist.
        for (id, record) in groupRecords where record.members <= 0 && record.publishers <= 0 {
            groupRecords[id] = nil
            groupIDs[record.name] = nil
        }
        var snapshot = MembershipSnapshot()
        for (id, record) in nodes {
            snapshot.nodes[id] = record.address
            snapshot.memberships[id] = record.joined
            for group in record.publishing where !record.joined.contains(group) {
                snapshot.publishers[group, default: []].insert(id)
            }
        }
        for (id, record) in groupRecords { snapshot.groups[id] = (record.name, record.hybrid) }
        let changes = views.apply(snapshot)

        var regionsOf: [NodeID: [RegionID]] = [:]
        for region in views.regions.values {
            for member in region.members { regionsOf[member.id, default: []].append(region.id) }
        }
        // In node order, not the dictionary's (which differs from process to process):
        // which node hears of a view first must not depend on it (the simulator
        // replays a seed exactly; at 10,000 nodes it did not).
        for id in nodes.keys.sorted() {
            let record = nodes[id]!
            let wantedRegions = Set(regionsOf[id] ?? [])
            let wantedGroups = record.joined.union(record.publishing).filter { views.groups[$0] != nil }
            var update: MembershipUpdate
            if record.needsFull {
                update = MembershipUpdate(baseVersion: 0, version: record.sentVersion + 1, isFull: true,
                                          regions: wantedRegions.sorted().map { views.regions[$0]! },
                                          removedRegions: [], groups: wantedGroups.sorted().map { views.groups[$0]! },
                                          removedGroups: [])
            } else {
                let regions = wantedRegions.filter { changes.changedRegions.contains($0) || !record.sentRegions.contains($0) }
                let groups = wantedGroups.filter { changes.changedGroups.contains($0) || !record.sentGroups.contains($0) }
                let removedRegions = record.sentRegions.subtracting(wantedRegions)
                let removedGroups = record.sentGroups.subtracting(wantedGroups)
                guard !(regions.isEmpty && groups.isEmpty && removedRegions.isEmpty && removedGroups.isEmpty) else { continue }
                update = MembershipUpdate(baseVersion: record.sentVersion, version: record.sentVersion + 1, isFull: false,
                                          regions: regions.sorted().map { views.regions[$0]! },
                                          removedRegions: removedRegions.sorted(),
                                          groups: groups.sorted().map { views.groups[$0]! },
                                          removedGroups: removedGroups.sorted())
            }
            nodes[id]!.sentVersion = update.version
            nodes[id]!.needsFull = false
            nodes[id]!.sentRegions = wantedRegions
            nodes[id]!.sentGroups = wantedGroups
            statistics.updatesSent += 1
            send(.update(update), to: record.connection)
        }
    }
}
