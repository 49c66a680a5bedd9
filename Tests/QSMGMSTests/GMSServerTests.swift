#if canImport(Glibc)
import Glibc
#endif
import QSMCore
import QSMHarness
import Synchronization
import Testing
@testable import QSMGMS

@Suite(.enabled(if: NetworkNamespace.isAvailable, "needs CAP_SYS_ADMIN to create a private network namespace (run as root)"))
struct GMSServerTests {
    /// A blocking TCP client on its own thread: connects, sends raw bytes, and reads
    /// until the server closes (or 10 s pass).
    static func rawExchange(_ bytes: [UInt8], with address: QSMSocketAddress) -> (connected: Bool, closedByServer: Bool) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var raw = sockaddr_in()
        raw.sin_family = sa_family_t(AF_INET)
        raw.sin_port = address.port.bigEndian
        raw.sin_addr = in_addr(s_addr: address.address.value.bigEndian)
        let connected = withUnsafePointer(to: &raw) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        } == 0
        guard connected else { return (false, false) }
        _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count == 0 { return (true, true) }
            if count < 0 { return (true, errno == ECONNRESET) }
        }
    }

    @Test func anOversizedFrameCutsThatConnectionOnlyAndIsCounted() throws {
        struct Outcome: Sendable { var oversized: Int; var bad: (Bool, Bool); var good: Bool; var registrations: Int }
        let outcome = try NetworkNamespace.runIsolated { () throws -> Outcome in
            var configuration = MembershipConfiguration()
            configuration.maximumInboundFrameBytes = 1024
            let core = try EventCore()
            let server = try GMSServer(configuration: configuration, listeningOn: QSMSocketAddress(.loopback, port: 0), core: core)
            let address = server.listenAddress
            let handle = core.handle
            let results = Mutex<(bad: (Bool, Bool), good: Bool)>(((false, false), false))
            let client = try SystemThread(name: "raw-client") {
                // A frame that claims 1 MB.
                let bad = Self.rawExchange([0x00, 0x10, 0x00, 0x00, 1, 2, 3], with: address)
                // A well-behaved registration on a new connection still works afterwards.
                let register = FrameDecoder.frame(ClientMessage.register(node: NodeID(9), address: address, protocolVersion: membershipProtocolVersion).encoded())
                let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
                var raw = sockaddr_in()
                raw.sin_family = sa_family_t(AF_INET)
                raw.sin_port = address.port.bigEndian
                raw.sin_addr = in_addr(s_addr: address.address.value.bigEndian)
                _ = withUnsafePointer(to: &raw) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
                }
                _ = register.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                var reply = [UInt8](repeating: 0, count: 64)
                var timeout = timeval(tv_sec: 10, tv_usec: 0)
                setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
                let count = reply.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                // length (4) + kind 1 (registered) + node id 9
                let good = count >= 13 && reply[4] == 1 && reply[12] == 9
                close(fd)
                results.withLock { $0 = (bad, good) }
                handle.stop()
            }
            core.scheduleAlarm(at: core.now.advanced(by: .seconds(30)), handler: StopAfter())
            try core.run()
            client.join()
            let (bad, good) = results.withLock { $0 }
            return Outcome(oversized: server.oversizedFrames, bad: bad, good: good,
                           registrations: server.service.statistics.registrations)
        }
        #expect(outcome.bad.0, "could not connect")
        #expect(outcome.bad.1, "the server did not close the offending connection")
        #expect(outcome.oversized == 1)
        #expect(outcome.good, "a later well-formed client was not served")
        #expect(outcome.registrations == 1)
    }
}

private final class StopAfter: AlarmHandler {
    func alarmFired(tag: UInt64, deadline: Instant, core: EventCore) { core.handle.stop() }
}
