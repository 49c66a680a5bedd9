#if canImport(Glibc)
import Glibc
#endif
import QSMCore
import Synchronization

/// Serves a process's counters to operators: `GET /metrics` over HTTP on a TCP address
/// (for Prometheus and the like), and the same text to whoever connects to a local Unix
/// socket (`qsm-node stats`).
///
/// The text is rendered elsewhere and handed over with `update`; a request reads the last
/// one, so a scrape never reaches the core thread. One thread serves one connection at a
/// time, each bounded by a 2 s timeout, so a slow or silent client cannot hold it long.
public final class MetricsServer: Sendable {
    /// The TCP address `/metrics` is served on (the port chosen, if 0 was asked).
    public let tcpAddress: QSMSocketAddress?
    /// The Unix socket `qsm-node stats` reads.
    public let socketPath: String?
    private let tcp: Int32
    private let unix: Int32
    private let text: Mutex<String>
    private let stopped = Atomic<Bool>(false)

    /// Opens the listeners (either may be nil) and starts serving `initial`.
    /// - Throws: `SystemError` when a socket cannot be made, bound or listened on;
    ///   `MetricsServerError.socketInUse` when a live process already serves `socketPath`.
    public init(listen: QSMSocketAddress?, socketPath: String?, initial: String = "# EOF\n") throws {
        text = Mutex(initial)
        var tcp: Int32 = -1, unix: Int32 = -1
        do {
            if let listen {
                (tcp, tcpAddress) = try Self.listenTCP(listen)
            } else {
                tcpAddress = nil
            }
            if let socketPath {
                unix = try Self.listenUnix(socketPath)
            }
        } catch {
            if tcp >= 0 { close(tcp) }
            throw error
        }
        self.tcp = tcp
        self.unix = unix
        self.socketPath = socketPath
        _ = try SystemThread(name: "qsm-metrics") { [self] in serve() }
    }

    /// Replaces the text served from now on.
    public func update(_ newText: String) { text.withLock { $0 = newText } }

    /// Stops serving and removes the Unix socket.
    public func stop() {
        guard !stopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        if let socketPath { unlink(socketPath) }
    }

    deinit { stop() }

    // MARK: Serving

    private func serve() {
        var fds = [pollfd]()
        if tcp >= 0 { fds.append(pollfd(fd: tcp, events: Int16(POLLIN), revents: 0)) }
        if unix >= 0 { fds.append(pollfd(fd: unix, events: Int16(POLLIN), revents: 0)) }
        while !stopped.load(ordering: .acquiring) {
            guard poll(&fds, nfds_t(fds.count), 500) > 0 else { continue }
            for index in fds.indices where fds[index].revents & Int16(POLLIN) != 0 {
                let listener = fds[index].fd
                let client = accept(listener, nil, nil)
                guard client >= 0 else { continue }
                Self.setTimeouts(client, seconds: 2)
                if listener == tcp { answerHTTP(client) } else { send(client, text.withLock { $0 }) }
                close(client)
            }
        }
        if tcp >= 0 { close(tcp) }
        if unix >= 0 { close(unix) }
    }

    /// Reads one request (up to its blank line, 8 KB at most) and answers it.
    private func answerHTTP(_ client: Int32) {
        var request = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 2048)
        while request.count < 8192 {
            let count = buffer.withUnsafeMutableBytes { recv(client, $0.baseAddress, $0.count, 0) }
            if count <= 0 { break }
            request += buffer[..<count]
            if request.count >= 4, request.suffix(4).elementsEqual([13, 10, 13, 10]) { break }
            if request.firstIndex(of: 10) != nil, request.count >= 8192 { break }
        }
        let line = String(decoding: request.prefix { $0 != 13 && $0 != 10 }, as: UTF8.self).split(separator: " ")
        let status: String, body: String, type: String
        if line.count < 2 || !["GET", "HEAD"].contains(line[0]) {
            (status, body, type) = ("405 Method Not Allowed", "only GET /metrics is served\n", "text/plain; charset=utf-8")
        } else if line[1].split(separator: "?", maxSplits: 1).first == "/metrics" {
            (status, body, type) = ("200 OK", text.withLock { $0 }, "application/openmetrics-text; version=1.0.0; charset=utf-8")
        } else {
            (status, body, type) = ("404 Not Found", "only /metrics is served\n", "text/plain; charset=utf-8")
        }
        let head = "HTTP/1.1 \(status)\r\nContent-Type: \(type)\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n"
        send(client, line.first == "HEAD" ? head : head + body)
    }

    private func send(_ client: Int32, _ text: String) {
        var bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let sent = bytes.withUnsafeMutableBytes { Glibc.send(client, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if sent <= 0 { if sent < 0 && errno == EINTR { continue }; return }
            offset += sent
        }
    }

    // MARK: Sockets

    private static func setTimeouts(_ fd: Int32, seconds: Int) {
        var timeout = timeval(tv_sec: seconds, tv_usec: 0)
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        _ = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    private static func listenTCP(_ address: QSMSocketAddress) throws(SystemError) -> (Int32, QSMSocketAddress) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemError(call: "socket", errno: errno) }
        var one: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var raw = sockaddr_in()
        raw.sin_family = sa_family_t(AF_INET)
        raw.sin_port = address.port.bigEndian
        raw.sin_addr = in_addr(s_addr: address.address.value.bigEndian)
        let bound = withUnsafePointer(to: &raw) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else { let error = errno; close(fd); throw SystemError(call: "bind \(address)", errno: error) }
        guard listen(fd, 16) == 0 else { let error = errno; close(fd); throw SystemError(call: "listen", errno: error) }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &raw) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return (fd, QSMSocketAddress(address.address, port: UInt16(bigEndian: raw.sin_port)))
    }

    private static func listenUnix(_ path: String) throws -> Int32 {
        guard path.utf8.count < 108 else { throw MetricsServerError.pathTooLong(path) }
        // A socket left by a process that died is removed; one that answers is in use.
        if access(path, F_OK) == 0 {
            if (try? connectUnix(path)).map({ close($0) }) != nil { throw MetricsServerError.socketInUse(path) }
            unlink(path)
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemError(call: "socket", errno: errno) }
        var raw = unixAddress(path)
        let bound = withUnsafePointer(to: &raw) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0 else { let error = errno; close(fd); throw SystemError(call: "bind \(path)", errno: error) }
        chmod(path, 0o600)
        guard listen(fd, 16) == 0 else { let error = errno; close(fd); throw SystemError(call: "listen", errno: error) }
        return fd
    }

    /// Connects to a Unix stream socket (for `qsm-node stats`).
    public static func connectUnix(_ path: String) throws(SystemError) -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemError(call: "socket", errno: errno) }
        var raw = unixAddress(path)
        let connected = withUnsafePointer(to: &raw) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard connected == 0 else { let error = errno; close(fd); throw SystemError(call: "connect \(path)", errno: error) }
        setTimeouts(fd, seconds: 2)
        return fd
    }

    /// Everything a local stats socket says, up to its end (at most 64 MB).
    public static func readAll(unixSocket path: String) throws(SystemError) -> String {
        let fd = try connectUnix(path)
        defer { close(fd) }
        var bytes = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while bytes.count < 64 << 20 {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count < 0 { if errno == EINTR { continue }; throw SystemError(call: "recv \(path)", errno: errno) }
            if count == 0 { break }
            bytes += buffer[..<count]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func unixAddress(_ path: String) -> sockaddr_un {
        var raw = sockaddr_un()
        raw.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &raw.sun_path) { buffer in
            for (index, byte) in path.utf8.prefix(buffer.count - 1).enumerated() { buffer[index] = byte }
        }
        return raw
    }

    /// The stats sockets (`*.sock`) in `directory`, as paths, sorted.
    public static func sockets(in directory: String) -> [String] {
        guard let handle = opendir(directory) else { return [] }
        defer { closedir(handle) }
        var paths: [String] = []
        while let entry = readdir(handle) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name.hasSuffix(".sock") { paths.append(directory + "/" + name) }
        }
        return paths.sorted()
    }

    /// The directory local stats sockets live in: `$QSM_RUN_DIR`, or
    /// `/tmp/qsm-node-UID` (created with mode 0700 when a node starts).
    public static var runDirectory: String {
        if let dir = getenv("QSM_RUN_DIR"), dir.pointee != 0 { return String(cString: dir) }
        return "/tmp/qsm-node-\(getuid())"
    }
}

/// Why a metrics or stats listener could not be opened.
public enum MetricsServerError: Error, CustomStringConvertible {
    case socketInUse(String)
    case pathTooLong(String)

    public var description: String {
        switch self {
        case .socketInUse(let path): return "the stats socket \(path) is in use by a running process"
        case .pathTooLong(let path): return "the stats socket path \(path) is longer than 107 bytes"
        }
    }
}
