#if canImport(Glibc)
import Glibc
#endif
import Testing
@testable import QSMCore
@testable import QSMProtocol
@testable import QSMSimulation
import QSMHarness

/// Why namespace-bound tests are skipped where they cannot run.
let namespaceRequirement: Comment = "needs CAP_SYS_ADMIN to create a private network namespace (run as root)"

/// Records every datagram it is handed, and runs an optional reaction.
final class RecordingHandler: DatagramHandler {
    var datagrams: [(registration: RegistrationID, bytes: [UInt8])] = []
    var reaction: ((RecordingHandler, EventCore) -> Void)?

    init(reaction: ((RecordingHandler, EventCore) -> Void)? = nil) { self.reaction = reaction }

    func datagramReceived(_ bytes: UnsafeRawBufferPointer, from source: SocketAddress,
                          on registration: RegistrationID, core: EventCore) {
        datagrams.append((registration, Array(bytes)))
        reaction?(self, core)
    }
}

/// Stops the core when it fires: the bound that keeps a broken test from hanging.
final class StopAlarm: AlarmHandler {
    private(set) var fired = false
    func alarmFired(tag: UInt64, deadline: Instant, core: EventCore) {
        fired = true
        core.handle.stop()
    }
}

/// Waits (bounded, no sleeping) until every descriptor has data to read.
func waitUntilReadable(_ descriptors: [Int32], timeoutMilliseconds: Int32 = 5000) -> Bool {
    var polls = descriptors.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
    let deadline = MonotonicClock.now().advanced(byNanoseconds: Int64(timeoutMilliseconds) * 1_000_000)
    while MonotonicClock.now() < deadline {
        for index in polls.indices { polls[index].revents = 0 }
        _ = poll(&polls, nfds_t(polls.count), 100)
        if polls.allSatisfy({ $0.revents & Int16(POLLIN) != 0 }) { return true }
    }
    return false
}

/// Sends `bytes` to `destination` from `socket`, expecting the kernel to accept it.
func sendDatagram(_ socket: UDPSocket, _ bytes: [UInt8], to destination: SocketAddress) throws {
    let result = try bytes.withUnsafeBytes { try socket.send($0, to: destination) }
    guard case .completed(bytes.count) = result else {
        throw SystemError(call: "test send (would block)", errno: EAGAIN)
    }
}

/// A unicast UDP socket bound to 127.0.0.1 on a kernel-chosen port.
func loopbackSocket() throws -> (UDPSocket, SocketAddress) {
    let socket = try UDPSocket()
    let address = try socket.bind(to: SocketAddress(.loopback, port: 0))
    return (socket, address)
}
