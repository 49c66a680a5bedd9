#if canImport(Glibc)
import Glibc
#endif
import QSMCore
import QSMHarness
import Synchronization

/// The raw kernel limit: an unreliable sendmmsg/recvmmsg blast on the same kind of
/// sockets the engine uses (UDP multicast, same receive buffer), no protocol at all.
/// Each datagram carries its trial number and its index in the trial, so that a
/// receiver counts what it got of the current trial, and the time it was sent (the
/// monotonic clock, shared by every process on the machine), so that a receiver can
/// measure the latency floor the engine's own latency stands on.
enum RawReceiveMode: String, CaseIterable, Sendable {
    /// A thread blocking in recvmmsg (MSG_WAITFORONE): one wake-up per burst.
    case blocking
    /// Non-blocking recvmmsg with a spin, yield, sleep backoff when nothing is there:
    /// no wake-up per packet while traffic flows.
    case polling
    /// As `polling`, on a socket that takes coalesced datagrams (UDP GRO), from a sender
    /// that hands the kernel runs of datagrams as one segmented send (UDP GSO): the
    /// engine's own techniques, where the kernel has them.
    case offload
}

/// A receiving thread for raw trials. Counts are read from another thread.
final class RawReceiver: Sendable {
    let mode: RawReceiveMode
    private let trial = Atomic<Int>(-1)
    private let received = Atomic<Int>(0)
    private let stopping = Atomic<Bool>(false)
    private let thread: Mutex<SystemThread?> = Mutex(nil)
    /// Send-to-receive latency of the current trial's datagrams, when asked for.
    private let measuresLatency: Bool
    private let latency = Mutex(LatencyHistogram())

    init(mode: RawReceiveMode, group: QSMSocketAddress, interface: IPv4Address, receiveBufferBytes: Int,
         measuresLatency: Bool = false) throws {
        self.mode = mode
        self.measuresLatency = measuresLatency
        let socket = try UDPSocket()
        try socket.setReuseAddress(true)
        _ = try socket.setReceiveBufferSize(receiveBufferBytes)
        _ = try socket.bind(to: group)
        try socket.joinMulticastGroup(group.address, interface: interface)
        if mode == .blocking { try socket.setBlockingReceive(timeout: .milliseconds(50)) }
        let coalescing = mode == .offload && socket.enableReceiveOffload()
        let box = CoreConfinedSocket(socket)
        let started = try SystemThread(name: "raw-receive") { [self] in
            if coalescing { receiveCoalesced(on: box.socket) } else { receive(on: box.socket) }
        }
        thread.withLock { $0 = started }
    }

    /// Datagrams of `trial` received so far.
    func count(of trial: Int) -> Int {
        self.trial.load(ordering: .acquiring) == trial ? received.load(ordering: .acquiring) : 0
    }

    /// The latency of the datagrams of the current trial (empty unless measured).
    var latencyHistogram: LatencyHistogram { latency.withLock { $0 } }

    func stop() {
        stopping.store(true, ordering: .releasing)
        thread.withLock { $0 }?.join()
    }

    private func receive(on socket: UDPSocket) {
        let pool = PacketBufferPool(bufferCount: 64, bufferCapacity: 65_536)
        let batch = DatagramBatch(capacity: 64, pool: pool)
        var idle = 0
        while !stopping.load(ordering: .relaxed) {
            let result: IOResult<Int>
            do {
                result = mode == .blocking ? try batch.receiveWaitingForOne(on: socket) : try batch.receive(on: socket)
            } catch {
                benchLog("raw receiver: \(error)")
                return
            }
            guard case .completed(let count) = result, count > 0 else {
                if mode == .polling { Self.backOff(&idle) }
                continue
            }
            idle = 0
            for index in 0..<count where batch.length(at: index) >= 8 {
                self.count(UnsafeRawBufferPointer(pool.bytes(of: batch.buffer(at: index))))
            }
            batch.releaseAll()
        }
    }

    /// `receive` for a socket that takes coalesced datagrams: each datagram of a
    /// coalesced message is counted (every one starts with its trial number).
    private func receiveCoalesced(on socket: UDPSocket) {
        let batch = CoalescedDatagramBatch(capacity: 16)
        var idle = 0
        while !stopping.load(ordering: .relaxed) {
            let result: IOResult<Int>
            do {
                result = try batch.receive(on: socket.descriptor, count: batch.capacity)
            } catch {
                benchLog("raw receiver: \(error)")
                return
            }
            guard case .completed(let count) = result, count > 0 else {
                Self.backOff(&idle)
                continue
            }
            idle = 0
            for index in 0..<count {
                for datagram in batch.datagrams(at: index) where datagram.count >= 8 { self.count(datagram) }
            }
        }
    }

    /// Counts one datagram of the current trial (a later trial starts the count again).
    private func count(_ datagram: UnsafeRawBufferPointer) {
        let packetTrial = Int(UInt32(bigEndian: datagram.loadUnaligned(fromByteOffset: 0, as: UInt32.self)))
        let current = trial.load(ordering: .relaxed)
        if packetTrial == current {
            received.add(1, ordering: .relaxed)
        } else if packetTrial > current {
            received.store(1, ordering: .relaxed)
            if measuresLatency { latency.withLock { $0 = LatencyHistogram() } }
            trial.store(packetTrial, ordering: .releasing)
        } else {
            return
        }
        if measuresLatency, datagram.count >= RawSender.headerBytes {
            let sentAt = Int64(bitPattern: datagram.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
            let microseconds = Int(max(0, MonotonicClock.now().nanoseconds - sentAt) / 1000)
            latency.withLock { $0.record(microseconds: microseconds) }
        }
    }

    /// Spin a little, then yield the CPU, then sleep for growing intervals up to 1 ms:
    /// cheap when packets come back quickly, gentle on the other processes when not.
    static func backOff(_ idle: inout Int) {
        idle += 1
        if idle < 50 { return }
        if idle < 100 {
            sched_yield()
            return
        }
        var pause = timespec(tv_sec: 0, tv_nsec: min(1_000_000, 20_000 << min(6, (idle - 100) / 8)))
        nanosleep(&pause, nil)
    }
}

/// Hands a socket to the thread that alone uses it.
final class CoreConfinedSocket: @unchecked Sendable {
    let socket: UDPSocket
    init(_ socket: UDPSocket) { self.socket = socket }
}

/// Sends a raw trial: `count` datagrams of `size` bytes to `group`, paced at `rate` per
/// second, in sendmmsg batches.
final class RawSender {
    private let socket: UDPSocket
    private let pool: PacketBufferPool
    private let batch: DatagramBatch
    private let batchSize = 32
    /// Trial number, index in the trial, send time in nanoseconds (in datagrams that
    /// have room for it).
    static let headerBytes = 16

    init(interface: IPv4Address, timeToLive: UInt8) throws {
        socket = try UDPSocket()
        _ = try socket.setSendBufferSize(8 << 20)
        try socket.setMulticastInterface(interface)
        try socket.setMulticastTimeToLive(timeToLive)
        try socket.setMulticastLoop(true)
        pool = PacketBufferPool(bufferCount: 2 * batchSize, bufferCapacity: 65_536)
        batch = DatagramBatch(capacity: batchSize, pool: pool)
    }

    /// Returns the seconds the trial took to send. With `segmenting`, runs of the batch
    /// go as segmented sends (UDP GSO) where the kernel has them; with `stamped`, each
    /// datagram carries its send time (for a latency trial).
    func blast(trial: Int, count: Int, rate: Double, size: Int, to group: QSMSocketAddress, segmenting: Bool,
               stamped: Bool) throws -> Double {
        batch.segmentsSends = segmenting && socket.supportsSegmentationOffload
        let start = MonotonicClock.now()
        var sent = 0
        while sent < count {
            let elapsed = Double(MonotonicClock.now().nanoseconds(since: start))
            let due = min(count, Int(elapsed * rate / 1e9) + 1)
            if due <= sent {
                // Ahead of schedule: wait for the next datagram's time.
                let wait = Int((Double(sent) / rate * 1e9) - elapsed)
                if wait > 60_000 {
                    var pause = timespec(tv_sec: 0, tv_nsec: wait - 50_000)
                    nanosleep(&pause, nil)
                } else {
                    sched_yield()
                }
                continue
            }
            while !batch.isFull, sent + batch.count < due, let buffer = pool.acquire() {
                let bytes = pool.bytes(of: buffer)
                bytes.storeBytes(of: UInt32(trial).bigEndian, toByteOffset: 0, as: UInt32.self)
                bytes.storeBytes(of: UInt32(truncatingIfNeeded: sent + batch.count).bigEndian, toByteOffset: 4, as: UInt32.self)
                if stamped, size >= Self.headerBytes {
                    bytes.storeBytes(of: UInt64(bitPattern: MonotonicClock.now().nanoseconds), toByteOffset: 8, as: UInt64.self)
                }
                batch.append(buffer, length: size, to: group)
            }
            switch try batch.send(on: socket) {
            case .completed(let accepted): sent += accepted
            case .wouldBlock: sched_yield()
            }
        }
        return Double(MonotonicClock.now().nanoseconds(since: start)) / 1e9
    }
}
