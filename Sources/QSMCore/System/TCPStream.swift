#if canImport(Glibc)
import Glibc
#endif
import CQSMLinux

/// A listening TCP/IPv4 socket, non-blocking; closes on deinit.
package final class TCPListener {
    package let descriptor: Int32

    /// Binds to `address` (port 0: the kernel picks one) and listens.
    package init(bindingTo address: QSMSocketAddress, backlog: Int32 = 128) throws(SystemError) {
        descriptor = try systemCall("socket(TCP)") {
            Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        }
        do throws(SystemError) {
            var one: Int32 = 1
            _ = try systemCall("setsockopt(SO_REUSEADDR)") {
                Glibc.setsockopt(descriptor, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
            }
            var raw = address.sockaddr
            _ = try systemCall("bind") {
                withUnsafePointer(to: &raw) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        Glibc.bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                    }
                }
            }
            _ = try systemCall("listen") { Glibc.listen(descriptor, backlog) }
        } catch {
            closeDescriptor(descriptor)
            throw error
        }
    }

    deinit { closeDescriptor(descriptor) }

    package func localAddress() throws(SystemError) -> QSMSocketAddress {
        try boundAddress(of: descriptor)
    }

    /// Accepts one pending connection, non-blocking and close-on-exec.
    package func accept() throws(SystemError) -> IOResult<TCPStream> {
        while true {
            switch try nonBlockingCall("accept4", { cqsm_accept(descriptor) }) {
            case .wouldBlock: return .wouldBlock
            case .completed(let fd): return .completed(TCPStream(adopting: fd))
            }
        }
    }
}

/// A connected (or connecting) non-blocking TCP/IPv4 stream; closes on deinit.
package final class TCPStream {
    package let descriptor: Int32

    init(adopting descriptor: Int32) {
        self.descriptor = descriptor
        var one: Int32 = 1
        _ = Glibc.setsockopt(descriptor, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    }

    /// Starts connecting to `address`; completion is signalled by writability, after which
    /// `finishConnecting()` tells success from failure.
    package static func connect(to address: QSMSocketAddress) throws(SystemError) -> TCPStream {
        let fd = try systemCall("socket(TCP)") {
            Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        }
        let stream = TCPStream(adopting: fd)
        var raw = address.sockaddr
        let result = withUnsafePointer(to: &raw) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        if result == -1 {
            let code = Glibc.errno
            if code != EINPROGRESS && code != EINTR { throw SystemError(call: "connect", errno: code) }
        }
        return stream
    }

    deinit { closeDescriptor(descriptor) }

    /// After the socket became writable: throws the connection's error if it failed.
    package func finishConnecting() throws(SystemError) {
        var code: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        _ = try systemCall("getsockopt(SO_ERROR)") { Glibc.getsockopt(descriptor, SOL_SOCKET, SO_ERROR, &code, &length) }
        if code != 0 { throw SystemError(call: "connect", errno: code) }
    }

    /// Reads what is available; `.completed(0)` means the peer closed its side.
    package func read(into buffer: UnsafeMutableRawBufferPointer) throws(SystemError) -> IOResult<Int> {
        switch try nonBlockingCall("read", { Glibc.read(descriptor, buffer.baseAddress, buffer.count) }) {
        case .completed(let count): return .completed(count)
        case .wouldBlock: return .wouldBlock
        }
    }

    /// Writes what the kernel takes now (never raises SIGPIPE; a closed peer is EPIPE).
    package func write(_ bytes: UnsafeRawBufferPointer) throws(SystemError) -> IOResult<Int> {
        switch try nonBlockingCall("send", { Glibc.send(descriptor, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL)) }) {
        case .completed(let count): return .completed(count)
        case .wouldBlock: return .wouldBlock
        }
    }

    package func localAddress() throws(SystemError) -> QSMSocketAddress {
        try boundAddress(of: descriptor)
    }
}

func boundAddress(of descriptor: Int32) throws(SystemError) -> QSMSocketAddress {
    var raw = sockaddr_in()
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = try systemCall("getsockname") {
        withUnsafeMutablePointer(to: &raw) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.getsockname(descriptor, $0, &length) }
        }
    }
    return QSMSocketAddress(raw)
}
