import QSMCore
import QSMHarness
import Testing
@testable import QSMGMS

/// The GMS connection's authentication (`GMSChannel`), one rule per test, and the
/// service refusing and counting every connection that does not authenticate.
@Suite struct GMSAuthenticationTests {
    static let secret = Array("the cluster's secret, 32 bytes!!".utf8)
    static func nonce(_ byte: UInt8) -> [UInt8] { [UInt8](repeating: byte, count: GMSChannel.nonceBytes) }

    /// Runs the handshake between two channels; returns them.
    static func handshake(client clientSecret: [UInt8], server serverSecret: [UInt8])
        -> (client: GMSChannel, server: GMSChannel, clientSaw: [GMSChannel.Received], serverSaw: [GMSChannel.Received]) {
        var client = GMSChannel(role: .client, secret: clientSecret, nonce: nonce(1))
        var server = GMSChannel(role: .server, secret: serverSecret, nonce: nonce(2))
        var clientSaw: [GMSChannel.Received] = [], serverSaw: [GMSChannel.Received] = []
        /// Hands `frames` to `end`, records what it saw, and returns its replies.
        func deliver(_ frames: [[UInt8]], to end: inout GMSChannel, saw: inout [GMSChannel.Received]) -> [[UInt8]] {
            frames.compactMap { frame in
                let received = frame.withUnsafeBytes { end.receive($0) }
                saw.append(received)
                switch received {
                case .handshake(let reply?, _), .failed(_, let reply?): return reply
                default: return nil
                }
            }
        }
        var toServer: [[UInt8]] = [client.hello()]
        while !toServer.isEmpty {
            let toClient = deliver(toServer, to: &server, saw: &serverSaw)
            toServer = deliver(toClient, to: &client, saw: &clientSaw)
        }
        return (client, server, clientSaw, serverSaw)
    }

    @Test func theSameSecretOpensBothEndsAndFramesPassBothWays() {
        var (client, server, _, _) = Self.handshake(client: Self.secret, server: Self.secret)
        #expect(client.isOpen && server.isOpen)
        for index in 0..<5 {
            let up = client.seal(Array("request \(index)".utf8))
            #expect(up.withUnsafeBytes { server.receive($0) } == .message(Array("request \(index)".utf8)))
            let down = server.seal(Array("update \(index)".utf8))
            #expect(down.withUnsafeBytes { client.receive($0) } == .message(Array("update \(index)".utf8)))
        }
    }

    @Test func aWrongSecretFailsAtTheGMSsFirstAnswerNamingTheCause() {
        let other = Array("another cluster's secret, long!!".utf8)
        let (client, server, clientSaw, serverSaw) = Self.handshake(client: other, server: Self.secret)
        #expect(!client.isOpen && !server.isOpen)
        guard case .failed(let reason, _)? = clientSaw.first else { Issue.record("client saw \(clientSaw)"); return }
        #expect(reason.contains("cluster secret"))
        // The server hears the client's refusal, never a proof.
        #expect(serverSaw.contains { if case .refusedByPeer = $0 { return true }; return false })
    }

    @Test func anAlteredReplayedOrReorderedFrameFailsItsTag() {
        var (client, server, _, _) = Self.handshake(client: Self.secret, server: Self.secret)
        let first = client.seal(Array("join a".utf8)), second = client.seal(Array("join b".utf8))
        var altered = first
        altered[0] ^= 1
        var copy = server
        if case .failed = altered.withUnsafeBytes({ copy.receive($0) }) {} else { Issue.record("an altered frame was accepted") }
        copy = server
        if case .failed = second.withUnsafeBytes({ copy.receive($0) }) {} else { Issue.record("a frame out of order was accepted") }
        #expect(first.withUnsafeBytes { server.receive($0) } == .message(Array("join a".utf8)))
        if case .failed = first.withUnsafeBytes({ server.receive($0) }) {} else { Issue.record("a replayed frame was accepted") }
    }

    /// A recorded handshake (and the frames after it) gets an attacker nothing on a new
    /// connection: the server's nonce is fresh, so the old proof does not verify.
    @Test func aRecordedHandshakeReplayedOnANewConnectionFails() {
        var client = GMSChannel(role: .client, secret: Self.secret, nonce: Self.nonce(1))
        var server = GMSChannel(role: .server, secret: Self.secret, nonce: Self.nonce(2))
        let hello = client.hello()
        guard case .handshake(let challenge?, _) = hello.withUnsafeBytes({ server.receive($0) }),
              case .handshake(let proof?, true) = challenge.withUnsafeBytes({ client.receive($0) }) else {
            Issue.record("the handshake did not run"); return
        }
        var fresh = GMSChannel(role: .server, secret: Self.secret, nonce: Self.nonce(3))
        _ = hello.withUnsafeBytes { fresh.receive($0) }
        guard case .failed = proof.withUnsafeBytes({ fresh.receive($0) }) else { Issue.record("a replayed proof was accepted"); return }
        #expect(!fresh.isOpen)
    }

    // MARK: The service

    static func service(secret: [UInt8]?) throws -> MembershipService {
        var configuration = MembershipConfiguration()
        configuration.clusterSecret = secret
        configuration.entropy = [UInt8](repeating: 9, count: 32)
        return try MembershipService(configuration: configuration)
    }

    /// A registration in the clear at a GMS with a secret is refused with a reason, counted,
    /// and never reaches the membership state.
    @Test func anUnauthenticatedRegistrationIsRefusedAndCounted() throws {
        let service = try Self.service(secret: Self.secret)
        let connection = ConnectionID(1)
        service.connectionOpened(connection, now: Instant(nanoseconds: 1))
        let register = ClientMessage.register(node: NodeID(7), address: QSMSocketAddress(.loopback, port: 9), protocolVersion: membershipProtocolVersion).encoded()
        register.withUnsafeBytes { service.frameReceived($0, on: connection, now: Instant(nanoseconds: 2)) }
        let actions = service.takeActions()
        #expect(actions.last == .close(connection))
        let refusal = actions.compactMap { action -> String? in
            guard case .send(_, let frame) = action else { return nil }
            return frame.withUnsafeBytes { GMSChannel.refusalReason($0) }
        }
        #expect(refusal.count == 1 && refusal[0].contains("--secret-file"))
        #expect(service.statistics.authenticationFailures == 1)
        #expect(service.statistics.registrations == 0 && service.liveNodeCount == 0)
        #expect(service.takeRefusals().count == 1)
        // Whatever else it sends before the close is not read.
        register.withUnsafeBytes { service.frameReceived($0, on: connection, now: Instant(nanoseconds: 3)) }
        #expect(service.takeActions().isEmpty)
        #expect(service.liveNodeCount == 0)
    }

    /// A node with a secret at a GMS without one is told so, plainly.
    @Test func aHandshakeAtAGMSWithoutASecretIsRefusedWithAReason() throws {
        let service = try Self.service(secret: nil)
        service.connectionOpened(ConnectionID(1), now: Instant(nanoseconds: 1))
        let hello = GMSChannel(role: .client, secret: Self.secret, nonce: Self.nonce(4)).hello()
        hello.withUnsafeBytes { service.frameReceived($0, on: ConnectionID(1), now: Instant(nanoseconds: 2)) }
        let reasons = service.takeActions().compactMap { action -> String? in
            guard case .send(_, let frame) = action else { return nil }
            return frame.withUnsafeBytes { GMSChannel.refusalReason($0) }
        }
        #expect(reasons.first?.contains("--insecure") == true)
        #expect(service.statistics.authenticationFailures == 1)
    }

    /// Node machines and the service over an in-memory connection: with the same secret
    /// the node registers; with another it reports `authenticationFailed` and never does.
    @Test(arguments: [true, false])
    func aNodeMachineRegistersOnlyWithTheGMSsSecret(sameSecret: Bool) throws {
        let service = try Self.service(secret: Self.secret)
        var configuration = NodeMachineConfiguration(id: NodeID(5), address: QSMSocketAddress(.loopback, port: 5))
        configuration.clusterSecret = sameSecret ? Self.secret : Array("not the cluster's secret at all!".utf8)
        configuration.entropy = [UInt8](repeating: 5, count: 32)
        let machine = try NodeMachine(configuration: configuration)
        var now = Instant(nanoseconds: 1_000_000)
        machine.start(now: now)
        let connection = ConnectionID(1)
        var events: [MembershipEvent] = []
        for _ in 0..<50 {
            now = now.advanced(byNanoseconds: 10_000_000)
            while let action = machine.pollGMSAction() {
                switch action {
                case .connect:
                    service.connectionOpened(connection, now: now)
                    machine.gmsConnected(now: now)
                case .send(let frame): frame.withUnsafeBytes { service.frameReceived($0, on: connection, now: now) }
                case .close: service.connectionClosed(connection, now: now)
                }
            }
            for action in service.takeActions() {
                if case .send(_, let frame) = action { frame.withUnsafeBytes { machine.gmsFrameReceived($0, now: now) } }
            }
            service.tick(now: now)
            machine.tick(now: now)
            while let event = machine.pollEvent() { if case .membership(let change) = event { events.append(change) } }
        }
        let registered = events.contains { if case .registered = $0 { return true }; return false }
        let failures = events.compactMap { event -> String? in if case .authenticationFailed(let reason) = event { return reason }; return nil }
        #expect(registered == sameSecret)
        #expect(failures.isEmpty == sameSecret, "\(failures)")
        if !sameSecret {
            #expect(failures.first?.contains("cluster secret") == true)
            #expect(service.liveNodeCount == 0)
            #expect(machine.statistics.gmsAuthenticationFailures >= 1)
        } else {
            #expect(service.liveNodeCount == 1)
            #expect(service.statistics.authenticationFailures == 0)
        }
    }
}
