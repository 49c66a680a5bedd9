#if canImport(Glibc)
import Glibc
#endif
import CQSMLinux

/// A non-blocking UDP/IPv4 socket that owns its descriptor and closes it on deinit.
///
/// Every failing call throws a `SystemError` naming the call; EAGAIN on send or receive
/// is `.wouldBlock`, never an error.
package final class UDPSocket {
    package let descriptor: Int32

    /// Creates a non-blocking, close-on-exec UDP socket. `IP_MULTICAST_ALL` is turned off
    /// so that the socket receives only the multicast groups it joined itself, not every
    /// group any socket of this host joined (Linux's surprising default).
    package init() throws(SystemError) {
        descriptor = try systemCall("socket") {
            Glibc.socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        }
        do throws(SystemError) {
            try setOption(Int32(IPPROTO_IP), Int32(CQSM_IP_MULTICAST_ALL), Int32(0), "setsockopt(IP_MULTICAST_ALL)")
        } catch {
            closeDescriptor(descriptor)
            throw error
        }
    }

    deinit { closeDescriptor(descriptor) }

    // MARK: Binding

    /// Whether the kernel offers UDP generic segmentation offload (`UDP_SEGMENT`, Linux
    /// 4.18 and later) on this socket: probed by setting the option to "off".
    package var supportsSegmentationOffload: Bool {
        (try? setOption(Int32(IPPROTO_UDP), Int32(CQSM_UDP_SEGMENT), Int32(0), "setsockopt(UDP_SEGMENT)")) != nil
    }

    /// Asks the kernel to hand this socket runs of datagrams from one source as one
    /// coalesced message (UDP GRO, Linux 5.0 and later); false where it cannot. Such a
    /// socket must be read with `CoalescedDatagramBatch`.
    package func enableReceiveOffload() -> Bool {
        (try? setOption(Int32(IPPROTO_UDP), Int32(CQSM_UDP_GRO), Int32(1), "setsockopt(UDP_GRO)")) != nil
    }

    /// Allows several sockets (and processes) on this host to bind the same multicast
    /// address and port; each then receives its own copy of every datagram.
    package func setReuseAddress(_ enabled: Bool) throws(SystemError) {
        try setOption(SOL_SOCKET, SO_REUSEADDR, Int32(enabled ? 1 : 0), "setsockopt(SO_REUSEADDR)")
    }

    /// Binds to `address`; port 0 asks the kernel for a free port. Returns the address
    /// actually bound.
    @discardableResult
    package func bind(to address: QSMSocketAddress) throws(SystemError) -> QSMSocketAddress {
        var raw = address.sockaddr
        _ = try systemCall("bind") {
            withUnsafePointer(to: &raw) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    Glibc.bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        }
        return try localAddress()
    }

    /// The address and port the socket is bound to.
    package func localAddress() throws(SystemError) -> QSMSocketAddress {
        try boundAddress(of: descriptor)
    }

    // MARK: Multicast

    /// Joins `group` on the interface with address `interface` (IP_ADD_MEMBERSHIP).
    package func joinMulticastGroup(_ group: IPv4Address, interface: IPv4Address) throws(SystemError) {
        let request = ip_mreq(imr_multiaddr: group.inAddr, imr_interface: interface.inAddr)
        try setOption(Int32(IPPROTO_IP), IP_ADD_MEMBERSHIP, request, "setsockopt(IP_ADD_MEMBERSHIP)")
    }

    /// Leaves `group` on `interface` (IP_DROP_MEMBERSHIP).
    package func leaveMulticastGroup(_ group: IPv4Address, interface: IPv4Address) throws(SystemError) {
        let request = ip_mreq(imr_multiaddr: group.inAddr, imr_interface: interface.inAddr)
        try setOption(Int32(IPPROTO_IP), IP_DROP_MEMBERSHIP, request, "setsockopt(IP_DROP_MEMBERSHIP)")
    }

    /// Chooses the interface outgoing multicast leaves by (IP_MULTICAST_IF).
    package func setMulticastInterface(_ interface: IPv4Address) throws(SystemError) {
        try setOption(Int32(IPPROTO_IP), IP_MULTICAST_IF, interface.inAddr, "setsockopt(IP_MULTICAST_IF)")
    }

    /// Whether this host's own sockets receive what this socket multicasts.
    package func setMulticastLoop(_ enabled: Bool) throws(SystemError) {
        try setOption(Int32(IPPROTO_IP), IP_MULTICAST_LOOP, Int32(enabled ? 1 : 0), "setsockopt(IP_MULTICAST_LOOP)")
    }

    /// Time to live of outgoing multicast: 0 keeps it on this host, 1 on the local link.
    package func setMulticastTimeToLive(_ hops: UInt8) throws(SystemError) {
        try setOption(Int32(IPPROTO_IP), IP_MULTICAST_TTL, Int32(hops), "setsockopt(IP_MULTICAST_TTL)")
    }

    // MARK: Kernel buffers

    /// Asks for a receive buffer of `bytes` and returns the size the kernel reports
    /// granting (Linux doubles the request for bookkeeping and caps it at
    /// net.core.rmem_max unless the process may use SO_RCVBUFFORCE, which is tried first).
    @discardableResult
    package func setReceiveBufferSize(_ bytes: Int) throws(SystemError) -> Int {
        try setBufferSize(bytes, force: SO_RCVBUFFORCE, plain: SO_RCVBUF, name: "SO_RCVBUF")
    }

    /// Asks for a send buffer of `bytes`; returns the size granted (see
    /// `setReceiveBufferSize`).
    @discardableResult
    package func setSendBufferSize(_ bytes: Int) throws(SystemError) -> Int {
        try setBufferSize(bytes, force: SO_SNDBUFFORCE, plain: SO_SNDBUF, name: "SO_SNDBUF")
    }

    private func setBufferSize(_ bytes: Int, force: Int32, plain: Int32, name: String) throws(SystemError) -> Int {
        let requested = Int32(clamping: bytes)
        do throws(SystemError) {
            try setOption(SOL_SOCKET, force, requested, "setsockopt(\(name)FORCE)")
        } catch where error.errno == EPERM {
            try setOption(SOL_SOCKET, plain, requested, "setsockopt(\(name))")
        }
        return Int(try getIntOption(SOL_SOCKET, plain, "getsockopt(\(name))"))
    }

    // MARK: Single datagrams (control paths and tests; the data path uses DatagramBatch)

    /// Sends one datagram. `.wouldBlock` when the send buffer is full.
    package func send(_ bytes: UnsafeRawBufferPointer, to destination: QSMSocketAddress) throws(SystemError) -> IOResult<Int> {
        var raw = destination.sockaddr
        let result = try nonBlockingCall("sendto") {
            withUnsafePointer(to: &raw) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    Glibc.sendto(descriptor, bytes.baseAddress, bytes.count, Int32(MSG_DONTWAIT),
                                 $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        }
        switch result {
        case .completed(let count): return .completed(count)
        case .wouldBlock: return .wouldBlock
        }
    }

    /// One received datagram: its length, sender, and whether it was longer than the
    /// buffer (the excess was discarded by the kernel; such a datagram must be dropped).
    package struct Reception: Equatable, Sendable {
        package var length: Int
        package var source: QSMSocketAddress
        package var truncated: Bool
    }

    /// Receives one datagram into `buffer`. `.wouldBlock` when nothing is queued.
    package func receive(into buffer: UnsafeMutableRawBufferPointer) throws(SystemError) -> IOResult<Reception> {
        var raw = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let result = try nonBlockingCall("recvfrom") {
            withUnsafeMutablePointer(to: &raw) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    Glibc.recvfrom(descriptor, buffer.baseAddress, buffer.count,
                                   Int32(MSG_DONTWAIT) | Int32(MSG_TRUNC), $0, &length)
                }
            }
        }
        switch result {
        case .completed(let size):
            return .completed(Reception(length: min(size, buffer.count), source: QSMSocketAddress(raw),
                                        truncated: size > buffer.count))
        case .wouldBlock:
            return .wouldBlock
        }
    }

    /// Makes receives block (for a dedicated receiving thread, as in a raw baseline),
    /// each for at most `timeout`, after which they report `.wouldBlock`. The event core
    /// never uses a blocking socket.
    package func setBlockingReceive(timeout: Duration) throws(SystemError) {
        let flags = Glibc.fcntl(descriptor, F_GETFL)
        if flags == -1 { throw SystemError(call: "fcntl(F_GETFL)", errno: Glibc.errno) }
        if Glibc.fcntl(descriptor, F_SETFL, flags & ~Int32(O_NONBLOCK)) == -1 {
            throw SystemError(call: "fcntl(F_SETFL)", errno: Glibc.errno)
        }
        let (seconds, attoseconds) = timeout.components
        let interval = timeval(tv_sec: Int(seconds), tv_usec: Int(attoseconds / 1_000_000_000_000))
        try setOption(SOL_SOCKET, SO_RCVTIMEO, interval, "setsockopt(SO_RCVTIMEO)")
    }

    // MARK: Option plumbing

    private func setOption<Value: BitwiseCopyable>(_ level: Int32, _ name: Int32, _ value: Value, _ call: String) throws(SystemError) {
        var value = value
        while true {
            let result = withUnsafeBytes(of: &value) {
                Glibc.setsockopt(descriptor, level, name, $0.baseAddress, socklen_t($0.count))
            }
            if result == 0 { return }
            let code = Glibc.errno
            if code != EINTR { throw SystemError(call: call, errno: code) }
        }
    }

    private func getIntOption(_ level: Int32, _ name: Int32, _ call: String) throws(SystemError) -> Int32 {
        var value: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        let result = Glibc.getsockopt(descriptor, level, name, &value, &length)
        if result == -1 { throw SystemError(call: call, errno: Glibc.errno) }
        return value
    }
}
