#if canImport(Glibc)
import Glibc
#endif
import Synchronization
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

    func datagramReceived(_ bytes: UnsafeRawBufferPointer, from source: QSMSocketAddress,
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
func sendDatagram(_ socket: UDPSocket, _ bytes: [UInt8], to destination: QSMSocketAddress) throws {
    let result = try bytes.withUnsafeBytes { try socket.send($0, to: destination) }
    guard case .completed(bytes.count) = result else {
        throw SystemError(call: "test send (would block)", errno: EAGAIN)
    }
}

/// A unicast UDP socket bound to 127.0.0.1 on a kernel-chosen port.
func loopbackSocket() throws -> (UDPSocket, QSMSocketAddress) {
    let socket = try UDPSocket()
    let address = try socket.bind(to: QSMSocketAddress(.loopback, port: 0))
    return (socket, address)
}

/// Runs the `openssl` command-line tool over many inputs in one shell, for differential
/// tests: each input is written to a file in a fresh temporary directory, `commands`
/// gives the shell lines for it (from the tool's path, the file's path and the input's
/// index), which must
/// print `linesPerInput` lines; returns them, in input order. Nil (with the issue
/// recorded) when openssl is missing: `.ci/run` installs it.
func runOpenSSL(on inputs: [[UInt8]], linesPerInput: Int,
                _ commands: (_ openssl: String, _ path: String, _ index: Int) -> String) throws -> [String]? {
    let candidates: [String] = ["/usr/bin/openssl", "/bin/openssl", "/usr/local/bin/openssl"]
    guard let openssl = candidates.first(where: { access($0, X_OK) == 0 }) else {
        Issue.record("openssl is not installed: .ci/run installs it (apt-get install openssl)")
        return nil
    }
    var directoryTemplate = Array("/tmp/qsm-openssl-XXXXXX".utf8CString)
    guard let made = mkdtemp(&directoryTemplate) else { Issue.record("mkdtemp failed: errno \(errno)"); return nil }
    let directory = String(cString: made)
    defer { _ = try? ChildProcess(executable: "/bin/rm", arguments: ["-rf", directory]).waitForExit(timeoutMilliseconds: 10_000) }
    var script = ""
    for (index, input) in inputs.enumerated() {
        let path = "\(directory)/\(index)"
        let file = fopen(path, "wb")
        try #require(file != nil, "cannot write \(path)")
        _ = input.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, file) }
        fclose(file)
        script += commands(openssl, path, index)
    }
    let process = try ChildProcess(executable: "/bin/sh", arguments: ["-c", script])
    let expected = linesPerInput * inputs.count
    var lines: [String] = []
    while lines.count < expected, let line = process.readLine(timeoutMilliseconds: 60_000) { lines.append(line) }
    #expect(process.waitForExit(timeoutMilliseconds: 60_000) == 0)
    try #require(lines.count == expected, "openssl printed \(lines.count) lines for \(expected) results")
    return lines
}

/// An object that says when it is let go (containers must release what they still hold).
final class DeinitProbe: Sendable {
    let onDeinit: @Sendable () -> Void
    init(_ onDeinit: @escaping @Sendable () -> Void) { self.onDeinit = onDeinit }
    deinit { onDeinit() }
}

/// How many of the probes that `body` makes (with the function it is given) were let go
/// by the time it returned.
func releasedProbes(_ body: (_ make: () -> DeinitProbe) -> Void) -> Int {
    let counter = Mutex(0)
    body { DeinitProbe { counter.withLock { $0 += 1 } } }
    return counter.withLock { $0 }
}
