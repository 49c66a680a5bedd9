import QSMCore
import QSMHarness
@testable import QSMGMS

/// A GMS and its clients wired together in memory, on virtual time. Frames are delivered
/// at the next step; faults are injected per client.
final class MembershipHarness {
    final class End {
        let client: MembershipClient
        var connection: ConnectionID?
        /// A frozen client neither runs nor reads (SIGSTOP); its frames wait.
        var frozen = false
        /// Drop the next update frame the GMS sends it (a lost message).
        var dropNextUpdate = false
        var inbox: [[UInt8]] = []
        var events: [MembershipEvent] = []
        init(client: MembershipClient) { self.client = client }
    }

    var now = Instant(nanoseconds: 1_000_000_000)
    let service: MembershipService
    var ends: [NodeID: End] = [:]
    private var connectionOwner: [ConnectionID: NodeID] = [:]
    private var nextConnection: UInt64 = 1

    init(_ configuration: MembershipConfiguration = MembershipConfiguration()) throws {
        service = try MembershipService(configuration: configuration)
    }

    @discardableResult
    func addNode(_ id: UInt64, groups: [String] = [], publishing: [String] = []) -> End {
        let client = MembershipClient(node: NodeID(id), address: QSMSocketAddress(.loopback, port: UInt16(9000 + id)))
        for group in groups { client.join(GroupName(group)!) }
        for group in publishing { client.publish(GroupName(group)!) }
        let end = End(client: client)
        ends[NodeID(id)] = end
        client.start(now: now)
        return end
    }

    func end(_ id: UInt64) -> End { ends[NodeID(id)]! }

    /// Breaks a client's connection as a crash would (no goodbye).
    func breakConnection(_ id: UInt64) {
        let end = end(id)
        guard let connection = end.connection else { return }
        end.connection = nil
        connectionOwner[connection] = nil
        service.connectionClosed(connection, now: now)
        end.client.disconnected(now: now)
    }

    /// Runs for `seconds` of virtual time in 10 ms steps.
    func run(seconds: Double) {
        let steps = Int(seconds * 100)
        for _ in 0..<steps { step() }
    }

    func step() {
        now = now.advanced(by: .milliseconds(10))
        service.tick(now: now)
        deliverServiceActions()
        for (id, end) in ends.sorted(by: { $0.key < $1.key }) where !end.frozen {
            let frames = end.inbox
            end.inbox.removeAll()
            for frame in frames { frame.withUnsafeBytes { end.client.frameReceived($0, now: now) } }
            end.client.tick(now: now)
            for action in end.client.takeActions() {
                switch action {
                case .connect:
                    let connection = ConnectionID(nextConnection)
                    nextConnection += 1
                    end.connection = connection
                    connectionOwner[connection] = id
                    service.connectionOpened(connection, now: now)
                    end.client.connected(now: now)
                case .send(let bytes):
                    if let connection = end.connection {
                        bytes.withUnsafeBytes { service.frameReceived($0, on: connection, now: now) }
                    }
                case .close:
                    if let connection = end.connection {
                        end.connection = nil
                        connectionOwner[connection] = nil
                        service.connectionClosed(connection, now: now)
                    }
                }
            }
            end.events += end.client.takeEvents()
            deliverServiceActions()
        }
    }

    private func deliverServiceActions() {
        for action in service.takeActions() {
            switch action {
            case .send(let connection, let bytes):
                guard let owner = connectionOwner[connection], let end = ends[owner], end.connection == connection else { continue }
                if end.dropNextUpdate, bytes.first == 5 {
                    end.dropNextUpdate = false
                    continue
                }
                end.inbox.append(bytes)
            case .close(let connection):
                guard let owner = connectionOwner.removeValue(forKey: connection), let end = ends[owner],
                      end.connection == connection else { continue }
                end.connection = nil
                service.connectionClosed(connection, now: now)
                // The client notices when it next runs (a frozen one, after it thaws).
                if end.frozen {
                    end.inbox.append([])  // marker: disconnected while frozen
                } else {
                    end.client.disconnected(now: now)
                }
            }
        }
    }

    /// Thaws a frozen client: it reads what queued up, then notices a closed connection.
    func thaw(_ id: UInt64) {
        let end = end(id)
        end.frozen = false
        let frames = end.inbox
        end.inbox.removeAll()
        for frame in frames {
            if frame.isEmpty { end.client.disconnected(now: now) } else { frame.withUnsafeBytes { end.client.frameReceived($0, now: now) } }
        }
        // Thawing also runs the client's own timers, which are long overdue.
    }

    /// Whether every live client's views equal the service's current views of its
    /// regions and groups; nil if so, else what differs.
    func divergence() -> String? {
        let regions = Dictionary(uniqueKeysWithValues: service.regionViews.map { ($0.id, $0) })
        let groups = Dictionary(uniqueKeysWithValues: service.groupViews.map { ($0.id, $0) })
        for (id, end) in ends where end.client.isRegistered {
            let mine = regions.values.filter { $0.members.contains { $0.id == id } }
            if Set(end.client.regions.keys) != Set(mine.map(\.id)) { return "\(id) regions \(end.client.regions.keys.sorted()) vs \(mine.map(\.id).sorted())" }
            for (regionID, view) in end.client.regions where regions[regionID] != view { return "\(id) holds a stale view of \(regionID)" }
            let wanted = end.client.wantedMemberships.union(end.client.wantedPublications)
            let expected = groups.values.filter { wanted.contains($0.name) }
            if Set(end.client.groups.keys) != Set(expected.map(\.id)) { return "\(id) groups \(end.client.groups.values.map(\.name)) vs \(expected.map(\.name))" }
            for (groupID, view) in end.client.groups where groups[groupID] != view { return "\(id) holds a stale view of \(view.name)" }
        }
        return nil
    }
}
