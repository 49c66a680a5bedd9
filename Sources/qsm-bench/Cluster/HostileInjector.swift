#if canImport(Glibc)
import Glibc
#endif
import QSMCore
import QSMHarness
import Synchronization

/// The `hostile` perturbation: a process on the network (`qsm-bench _worker hostile`, on
/// a host of its own with --hosts) sending, at about 20,000 datagrams per second,
/// random bytes, truncated and oversized datagrams, and mutated valid protocol packets
/// (wrong kinds, made-up senders, absurd sequence numbers, forged tokens, replays) to
/// every node's unicast port and the region's multicast address, and opening TCP
/// connections to the GMS to send it garbage. Well-formed traffic must keep flowing,
/// complete, and every drop must be counted.
final class HostileInjector: Sendable {
    private let stopping = Atomic<Bool>(false)
    private let sent = Atomic<Int>(0)
    private let thread: Mutex<SystemThread?> = Mutex(nil)

    init(targets: [SocketAddress], gms: SocketAddress, interface: IPv4Address, seed: UInt64) throws {
        let corpus = try ProtocolFuzzTarget(seed: seed).corpus
        let socket = try UDPSocket()
        try socket.setMulticastInterface(interface)
        try socket.setMulticastTimeToLive(1)
        try socket.setMulticastLoop(true)
        let box = CoreConfinedSocket(socket)
        let started = try SystemThread(name: "hostile") { [self] in
            run(socket: box.socket, corpus: corpus, targets: targets, gms: gms, seed: seed)
        }
        thread.withLock { $0 = started }
    }

    var datagramsSent: Int { sent.load(ordering: .relaxed) }

    func stop() {
        stopping.store(true, ordering: .releasing)
        thread.withLock { $0 }?.join()
    }

    private func run(socket: UDPSocket, corpus: [[UInt8]], targets: [SocketAddress], gms: SocketAddress, seed: UInt64) {
        var mutator = PacketMutator(seed: seed, corpus: corpus)
        var random = SplitMix64(seed: seed ^ 0xBAD)
        var target = 0
        var round = 0
        while !stopping.load(ordering: .relaxed) {
            for _ in 0..<20 {
                var bytes: [UInt8]
                switch random.next() % 10 {
                case 0: bytes = [UInt8](repeating: UInt8(truncatingIfNeeded: random.next()), count: 9_000 + Int(random.next() % 56_000))
                case 1: bytes = []
                default: bytes = mutator.next()
                }
                let destination = targets[target % targets.count]
                target += 1
                let result = bytes.withUnsafeBytes { try? socket.send($0, to: destination) }
                if result != nil { sent.add(1, ordering: .relaxed) }
            }
            round += 1
            if round % 50 == 0 { sendGarbage(to: gms, random: &random) }
            var pause = timespec(tv_sec: 0, tv_nsec: 1_000_000)
            nanosleep(&pause, nil)
        }
    }

    /// A TCP connection to the GMS that says nonsense (a bad frame, or a frame claiming
    /// to be huge) and goes away.
    private func sendGarbage(to gms: SocketAddress, random: inout SplitMix64) {
        guard let stream = try? TCPStream.connect(to: gms) else { return }
        var bytes = (0..<(16 + Int(random.next() % 200))).map { _ in UInt8(truncatingIfNeeded: random.next()) }
        if random.next() % 2 == 0 { bytes[0] = 0x7F }  // a length prefix of gigabytes
        var descriptor = pollfd(fd: stream.descriptor, events: Int16(POLLOUT), revents: 0)
        _ = poll(&descriptor, 1, 20)
        _ = bytes.withUnsafeBytes { try? stream.write($0) }
    }
}
