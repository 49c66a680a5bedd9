#if canImport(Glibc)
import Glibc
#endif
import QSMCore
import QSMHarness
import Synchronization

/// The `hostile` perturbation: a process on the network (`qsm-bench _worker hostile`, on
/// a host of its own with --hosts). At about 20,000 datagrams per second it sends, to
/// every node's unicast port and to the region's multicast address:
/// - random bytes, and truncated and oversized datagrams;
/// - mutated valid protocol packets: wrong kinds, made-up senders, absurd sequence
///   numbers, forged tokens;
/// - the cluster's own datagrams, captured from the region's multicast address and sent
///   again unchanged (replays), with a bit flipped, or cut short;
/// - foreign-cluster traffic: well-formed packets sealed, envelope and tag included,
///   with another cluster's secret.
/// It also opens TCP connections to the GMS and sends garbage. Well-formed traffic must
/// keep flowing, complete, and every drop must be counted.
final class HostileInjector: Sendable {
    private let stopping = Atomic<Bool>(false)
    private let sent = Atomic<Int>(0)
    private let thread: Mutex<SystemThread?> = Mutex(nil)

    init(targets: [QSMSocketAddress], gms: QSMSocketAddress, interface: IPv4Address, seed: UInt64) throws {
        let corpus = try ProtocolFuzzTarget(seed: seed).corpus
        let socket = try UDPSocket()
        try socket.setMulticastInterface(interface)
        try socket.setMulticastTimeToLive(1)
        try socket.setMulticastLoop(true)
        let box = CoreConfinedSocket(socket)
        // Listens on the multicast targets to capture the cluster's own datagrams.
        let capture = try UDPSocket()
        try capture.setReuseAddress(true)
        if let group = targets.first(where: { $0.address.isMulticast }) {
            _ = try capture.bind(to: group)
            for address in Set(targets.filter { $0.address.isMulticast }.map(\.address)) {
                try capture.joinMulticastGroup(address, interface: interface)
            }
        }
        let captureBox = CoreConfinedSocket(capture)
        let started = try SystemThread(name: "hostile") { [self] in
            run(socket: box.socket, capture: captureBox.socket, corpus: corpus, targets: targets, gms: gms, seed: seed)
        }
        thread.withLock { $0 = started }
    }

    var datagramsSent: Int { sent.load(ordering: .relaxed) }

    func stop() {
        stopping.store(true, ordering: .releasing)
        thread.withLock { $0 }?.join()
    }

    private func run(socket: UDPSocket, capture: UDPSocket, corpus: [[UInt8]], targets: [QSMSocketAddress], gms: QSMSocketAddress,
                     seed: UInt64) {
        var mutator = PacketMutator(seed: seed, corpus: corpus)
        var random = SplitMix64(seed: seed ^ 0xBAD)
        let foreign = DatagramSeal(secret: (0..<32).map { _ in UInt8(truncatingIfNeeded: random.next()) },
                                   sender: NodeID(random.next() % 64 + 1), epoch: 1 << 40, mode: .authenticate,
                                   backend: HardwareAESGCM.backend, blockFunction: HardwareSHA256.blockFunction)
        var captured: [[UInt8]] = []
        var oldestCaptured = 0
        var buffer = [UInt8](repeating: 0, count: 65_536)
        var target = 0
        var round = 0
        var foreignCounter: UInt64 = 0
        while !stopping.load(ordering: .relaxed) {
            // What the cluster multicast since the last round (the newest 256 kept).
            for _ in 0..<64 {
                guard case .completed(let reception)? = buffer.withUnsafeMutableBytes({ try? capture.receive(into: $0) }) else { break }
                if captured.count < 256 {
                    captured.append(Array(buffer[0..<reception.length]))
                } else {
                    captured[oldestCaptured] = Array(buffer[0..<reception.length])
                    oldestCaptured = (oldestCaptured + 1) % captured.count
                }
            }
            for _ in 0..<20 {
                var bytes: [UInt8]
                var kind = random.next() % 14
                if (2...5).contains(kind), captured.isEmpty { kind = 13 }  // nothing captured yet
                switch kind {
                case 0: bytes = [UInt8](repeating: UInt8(truncatingIfNeeded: random.next()), count: 9_000 + Int(random.next() % 56_000))
                case 1: bytes = []
                case 2, 3:
                    // A replay of one of the cluster's own datagrams, unchanged.
                    bytes = captured[Int(random.next() % UInt64(captured.count))]
                case 4:
                    bytes = captured[Int(random.next() % UInt64(captured.count))]
                    if !bytes.isEmpty {
                        let bit = Int(random.next() % UInt64(bytes.count * 8))
                        bytes[bit / 8] ^= UInt8(1 << (bit % 8))
                    }
                case 5:
                    bytes = captured[Int(random.next() % UInt64(captured.count))]
                    bytes = Array(bytes.prefix(Int(random.next() % UInt64(max(bytes.count, 1)))))
                case 6, 7:
                    // Another cluster's traffic: a well-formed packet with a valid envelope
                    // and tag, under a secret this cluster does not have.
                    foreignCounter += 1
                    let packet = mutator.next()
                    bytes = packet + [UInt8](repeating: 0, count: DatagramSeal.overheadBytes)
                    _ = bytes.withUnsafeMutableBytes { foreign.seal($0, length: packet.count, counter: foreignCounter) }
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
    private func sendGarbage(to gms: QSMSocketAddress, random: inout SplitMix64) {
        guard let stream = try? TCPStream.connect(to: gms) else { return }
        var bytes = (0..<(16 + Int(random.next() % 200))).map { _ in UInt8(truncatingIfNeeded: random.next()) }
        if random.next() % 2 == 0 { bytes[0] = 0x7F }  // a length prefix of gigabytes
        var descriptor = pollfd(fd: stream.descriptor, events: Int16(POLLOUT), revents: 0)
        _ = poll(&descriptor, 1, 20)
        _ = bytes.withUnsafeBytes { try? stream.write($0) }
    }
}
