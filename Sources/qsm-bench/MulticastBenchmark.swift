import QSMCore
import QSMHarness

/// Loopback multicast packets per second of one size, sender and receiver on one thread,
/// measured two ways in the same run: through the event core (pull-based feed, epoll,
/// priority queues, batched recvmmsg/sendmmsg), and as a bare sendmmsg/recvmmsg loop with
/// the same sockets setup, batch size and window. The ratio is the core's efficiency.
enum MulticastBenchmark {
    struct Result {
        var path: String
        var received: Int
        var seconds: Double
        var lost: Int
        var reordered: Int
        /// For the event core: how late a 1 ms periodic alarm fired while the core was busy.
        var alarmLateness: AlarmLatenessInterval? = nil
        var packetsPerSecond: Double { Double(received) / seconds }
    }

    static let group = IPv4Address(239, 192, 77, 1)
    static let batchSize = 64
    /// Datagrams in flight: 256, but never more than 2 MB, well inside the 8 MB receive
    /// buffer requested (the kernel charges more than the payload per datagram).
    static func window(forSize size: Int) -> Int { max(8, min(256, (2 << 20) / size)) }

    /// A receiver joined to the group on 127.0.0.1, and a sender that loops multicast back
    /// to this host only (TTL 0).
    static func sockets() throws -> (receiver: UDPSocket, sender: UDPSocket, destination: QSMSocketAddress) {
        let receiver = try UDPSocket()
        try receiver.setReuseAddress(true)
        try receiver.setReceiveBufferSize(8 << 20)
        let destination = try receiver.bind(to: QSMSocketAddress(group, port: 0))
        try receiver.joinMulticastGroup(group, interface: .loopback)
        let sender = try UDPSocket()
        try sender.setSendBufferSize(4 << 20)
        try sender.setMulticastInterface(.loopback)
        try sender.setMulticastTimeToLive(0)
        try sender.setMulticastLoop(true)
        return (receiver, sender, destination)
    }

    /// Tracks sequence numbers as they arrive.
    struct SequenceCheck {
        var expected: UInt64 = 0
        var received = 0
        var lost = 0
        var reordered = 0

        mutating func observe(_ bytes: UnsafeRawBufferPointer) {
            var reader = WireReader(bytes)
            guard let sequence = try? reader.readUInt64() else {
                reordered += 1
                return
            }
            received += 1
            if sequence == expected {
                expected += 1
            } else if sequence > expected {
                lost += Int(sequence - expected)
                expected = sequence + 1
            } else {
                reordered += 1
            }
        }
    }

    // MARK: Bare loop

    static func bare(size: Int, seconds: Double) throws -> Result {
        let (receiver, sender, destination) = try sockets()
        let window = window(forSize: size)
        let pool = PacketBufferPool(bufferCount: window + 2 * batchSize, bufferCapacity: max(size, 64))
        let sendBatch = DatagramBatch(capacity: batchSize, pool: pool)
        let receiveBatch = DatagramBatch(capacity: batchSize, pool: pool)
        var check = SequenceCheck()
        var sent: UInt64 = 0
        let start = MonotonicClock.now()
        let budget = Int64(seconds * 1e9)
        var iterations = 0
        while true {
            // Send up to the window, in batches.
            while Int(sent) - check.received - check.lost < window {
                while !sendBatch.isFull, Int(sent) + sendBatch.count - check.received - check.lost < window,
                      let buffer = pool.acquire() {
                    let bytes = pool.bytes(of: buffer)
                    var writer = WireWriter(bytes)
                    try writer.write(sent + UInt64(sendBatch.count))
                    sendBatch.append(buffer, length: size, to: destination)
                }
                let queued = sendBatch.count
                guard case .completed(let accepted) = try sendBatch.send(on: sender) else { break }
                sent += UInt64(accepted)
                if accepted < queued { break }
            }
            // Drain.
            while case .completed(let count) = try receiveBatch.receive(on: receiver), count > 0 {
                for index in 0..<count {
                    let bytes = pool.bytes(of: receiveBatch.buffer(at: index))
                    check.observe(UnsafeRawBufferPointer(rebasing: bytes[0..<receiveBatch.length(at: index)]))
                }
                receiveBatch.releaseAll()
                if count < batchSize { break }
            }
            iterations += 1
            if iterations & 15 == 0, MonotonicClock.now().nanoseconds(since: start) >= budget { break }
        }
        let elapsed = Double(MonotonicClock.now().nanoseconds(since: start)) / 1e9
        return Result(path: "bare sendmmsg/recvmmsg", received: check.received, seconds: elapsed,
                      lost: check.lost, reordered: check.reordered)
    }

    // MARK: Through the event core

    private final class Feed: PacketFeed {
        let destination: QSMSocketAddress
        let size: Int
        let window: Int
        var sent: UInt64 = 0
        var check = SequenceCheck()
        init(destination: QSMSocketAddress, size: Int) {
            self.destination = destination
            self.size = size
            window = MulticastBenchmark.window(forSize: size)
        }
        var canSend: Bool { Int(sent) - check.received - check.lost < window }

        func produceDatagram(into buffer: UnsafeMutableRawBufferPointer, core: EventCore) -> OutboundDatagram? {
            guard canSend else { return nil }
            var writer = WireWriter(buffer)
            try? writer.write(sent)
            sent += 1
            return OutboundDatagram(destination: destination, length: size, hasMore: canSend)
        }
    }

    private final class Receiver: DatagramHandler {
        let feed: Feed
        var senderID: RegistrationID?
        init(feed: Feed) { self.feed = feed }
        func datagramReceived(_ bytes: UnsafeRawBufferPointer, from source: QSMSocketAddress,
                              on registration: RegistrationID, core: EventCore) {
            feed.check.observe(bytes)
            if feed.canSend, let senderID { core.registerIntent(feed, on: senderID, traffic: .data) }
        }
    }

    private final class Stop: AlarmHandler {
        func alarmFired(tag: UInt64, deadline: Instant, core: EventCore) { core.handle.stop() }
    }

    /// A 1 ms timer, re-armed from its own deadline, as a protocol's token timer would be.
    private final class Tick: AlarmHandler {
        func alarmFired(tag: UInt64, deadline: Instant, core: EventCore) {
            core.scheduleAlarm(at: deadline.advanced(by: .milliseconds(1)), handler: self)
        }
    }

    static func throughCore(size: Int, seconds: Double) throws -> Result {
        let (receiver, sender, destination) = try sockets()
        var configuration = EventCoreConfiguration()
        configuration.datagramBatchSize = batchSize
        configuration.packetBufferCapacity = max(size, 64)
        let core = try EventCore(configuration: configuration)
        let feed = Feed(destination: destination, size: size)
        let handler = Receiver(feed: feed)
        _ = try core.registerDatagramSocket(receiver, traffic: .data, handler: handler)
        let senderID = try core.registerDatagramSocket(sender, traffic: .data, handler: nil)
        handler.senderID = senderID
        let start = MonotonicClock.now()
        core.scheduleAlarm(at: start.advanced(byNanoseconds: Int64(seconds * 1e9)), handler: Stop())
        core.scheduleAlarm(at: start.advanced(by: .milliseconds(1)), handler: Tick())
        core.registerIntent(feed, on: senderID, traffic: .data)
        _ = core.takeAlarmLatenessInterval()
        try core.run()
        let elapsed = Double(MonotonicClock.now().nanoseconds(since: start)) / 1e9
        return Result(path: "through the event core", received: feed.check.received, seconds: elapsed,
                      lost: feed.check.lost, reordered: feed.check.reordered,
                      alarmLateness: core.takeAlarmLatenessInterval())
    }
}
