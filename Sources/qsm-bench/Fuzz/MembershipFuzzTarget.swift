import QSMCore
import QSMHarness
import QSMGMS

/// The membership protocol under hostile frames: the GMS's state machine fed mutated
/// and random client messages on a handful of connections (some registered properly),
/// the node's membership client fed mutated and random server messages, and the TCP
/// frame decoder fed random byte streams in random pieces. Checked after every input:
/// no trap, bounded time, and state within the configured limits.
final class MembershipFuzzTarget {
    let service: MembershipService
    let client: MembershipClient
    let configuration: MembershipConfiguration
    private(set) var clientCorpus: [[UInt8]] = []
    private(set) var serverCorpus: [[UInt8]] = []
    private var now = Instant(nanoseconds: 1_000_000_000)
    private var openConnections: [ConnectionID] = []
    private var nextConnection: UInt64 = 1
    private var frames = FrameDecoder(maximumFrameBytes: 4_096)

    init() throws {
        var configuration = MembershipConfiguration()
        configuration.maximumNodes = 64
        configuration.maximumGroups = 256
        configuration.maximumGroupsPerNode = 64
        configuration.batchInterval = .milliseconds(10)
        self.configuration = configuration
        service = try MembershipService(configuration: configuration)
        client = MembershipClient(node: NodeID(77), address: QSMSocketAddress(.loopback, port: 7777))
        buildCorpora()
        client.start(now: now)
        client.connected(now: now)
        _ = client.takeActions()
    }

    /// Valid client messages, and the server messages a real exchange produces.
    private func buildCorpora() {
        var messages: [ClientMessage] = [.heartbeat, .resynchronize, .goodbye, .suspect(node: NodeID(2))]
        for node in 1...4 {
            messages.append(.register(node: NodeID(UInt64(node)), address: QSMSocketAddress(.loopback, port: UInt16(8000 + node)),
                                      protocolVersion: membershipProtocolVersion))
        }
        for (index, name) in ["a", "b", "prices", "x-long-group-name"].enumerated() {
            let group = GroupName(name)!
            messages += [.join(request: UInt32(index + 1), group: group), .leave(request: UInt32(index + 10), group: group),
                         .publish(request: UInt32(index + 20), group: group), .unpublish(request: UInt32(index + 30), group: group)]
        }
        clientCorpus = messages.map { $0.encoded() }
        // A real exchange: four nodes register and join overlapping groups.
        for node in 1...4 {
            let connection = open()
            feedService(messages[3 + node - 1].encoded(), on: connection)
            for group in ["a", "b", "prices"].prefix(node) {
                feedService(ClientMessage.join(request: UInt32(node), group: GroupName(group)!).encoded(), on: connection)
            }
        }
        now = now.advanced(by: .milliseconds(50))
        service.tick(now: now)
        for action in service.takeActions() {
            if case .send(_, let payload) = action { serverCorpus.append(payload) }
        }
    }

    private func open() -> ConnectionID {
        let connection = ConnectionID(nextConnection)
        nextConnection += 1
        service.connectionOpened(connection, now: now)
        openConnections.append(connection)
        return connection
    }

    private func feedService(_ frame: [UInt8], on connection: ConnectionID) {
        frame.withUnsafeBytes { service.frameReceived($0, on: connection, now: now) }
    }

    /// One hostile input to the GMS (`toService`) or to the client, and a piece of it
    /// to the frame decoder.
    func feed(_ bytes: [UInt8], toService: Bool, caseNumber: Int, random: inout SplitMix64) -> String? {
        let started = MonotonicClock.now()
        now = now.advanced(by: .milliseconds(1))
        if toService {
            if openConnections.isEmpty || random.next() % 50 == 0 { _ = open() }
            let connection = openConnections[Int(random.next() % UInt64(openConnections.count))]
            feedService(bytes, on: connection)
            if random.next() % 100 == 0 {
                service.connectionClosed(connection, now: now)
                openConnections.removeAll { $0 == connection }
            }
            if caseNumber % 8 == 0 { service.tick(now: now) }
            for action in service.takeActions() {
                if case .close(let closed) = action {
                    service.connectionClosed(closed, now: now)
                    openConnections.removeAll { $0 == closed }
                }
            }
            if service.liveNodeCount > configuration.maximumNodes {
                return "case \(caseNumber): \(service.liveNodeCount) live nodes, over the limit of \(configuration.maximumNodes)"
            }
            if service.groupCount > configuration.maximumGroups {
                return "case \(caseNumber): \(service.groupCount) groups, over the limit of \(configuration.maximumGroups)"
            }
        } else {
            bytes.withUnsafeBytes { client.frameReceived($0, now: now) }
            if caseNumber % 8 == 0 { client.tick(now: now) }
            _ = client.takeActions()
            _ = client.takeEvents()
        }
        // The TCP framing: the same bytes, in a random split, after a valid frame.
        let framed = FrameDecoder.frame(Array(bytes.prefix(64))) + bytes
        let cut = Int(random.next() % UInt64(framed.count + 1))
        framed[..<cut].withUnsafeBytes { frames.append($0) }
        framed[cut...].withUnsafeBytes { frames.append($0) }
        do {
            while try frames.nextFrame() != nil {}
        } catch {
            // A refused frame ends the connection; a new one starts clean.
            frames = FrameDecoder(maximumFrameBytes: 4_096)
        }
        if frames.bufferedByteCount > 4_096 + 4 + framed.count {
            return "case \(caseNumber): the frame decoder holds \(frames.bufferedByteCount) bytes"
        }
        let elapsed = MonotonicClock.now().nanoseconds(since: started) / 1000
        if elapsed > 1_000_000 { return "case \(caseNumber) took \(elapsed) us (a hang)" }
        return nil
    }
}
