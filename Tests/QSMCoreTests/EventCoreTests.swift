#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import Testing
@testable import QSMCore
@testable import QSMProtocol
@testable import QSMSimulation
import QSMHarness

/// Sends numbered datagrams to one destination, at most `window` ahead of what the
/// receiver has seen: a pull-model feed that withdraws when its window is full and
/// registers intent again as deliveries open it.
private final class WindowedFeed: PacketFeed {
    let destination: QSMSocketAddress
    let total: Int
    let size: Int
    let window: Int
    var sent = 0
    var delivered = 0

    init(destination: QSMSocketAddress, total: Int, size: Int, window: Int) {
        self.destination = destination
        self.total = total
        self.size = size
        self.window = window
    }

    var canSend: Bool { sent < total && sent - delivered < window }

    func produceDatagram(into buffer: UnsafeMutableRawBufferPointer, core: EventCore) -> OutboundDatagram? {
        guard canSend else { return nil }
        var writer = WireWriter(buffer)
        try! writer.write(UInt64(sent))
        for index in 8..<size { buffer[index] = UInt8(truncatingIfNeeded: sent &+ index) }
        sent += 1
        return OutboundDatagram(destination: destination, length: size, hasMore: canSend)
    }
}

private final class OrderedAlarms: AlarmHandler {
    var fired: [UInt64] = []
    var expected = 0
    var lateness: [Int64] = []
    func alarmFired(tag: UInt64, deadline: Instant, core: EventCore) {
        fired.append(tag)
        lateness.append(core.now.nanoseconds(since: deadline))
        if fired.count == expected { core.handle.stop() }
    }
}

/// What a windowed transfer through one core delivered.
private struct TransferOutcome: Sendable {
    var sequences: [UInt64]
    var payloadsIntact: Bool
    var statistics: EventCoreStatistics
    var timedOut: Bool
}

/// Sends `total` numbered datagrams from `sender` to `destination` through `core` with a
/// `WindowedFeed`, the receiving handler reopening the window, until all have arrived or a
/// 30 s watchdog stops the core. Run inside `NetworkNamespace.runIsolated`.
private func runWindowedTransfer(core: EventCore, receiver: UDPSocket, sender: UDPSocket,
                                 destination: QSMSocketAddress, total: Int, size: Int,
                                 window: Int) throws -> TransferOutcome {
    let feed = WindowedFeed(destination: destination, total: total, size: size, window: window)
    var intact = true
    var sequences: [UInt64] = []
    var senderID: RegistrationID!
    let handler = RecordingHandler { recorder, core in
        let bytes = recorder.datagrams.removeLast().bytes
        let sequence = bytes.withUnsafeBytes { raw in
            var reader = WireReader(raw)
            return (try? reader.readUInt64()) ?? .max
        }
        sequences.append(sequence)
        for index in 8..<bytes.count where bytes[index] != UInt8(truncatingIfNeeded: Int(sequence) &+ index) {
            intact = false
        }
        feed.delivered += 1
        if feed.canSend { core.registerIntent(feed, on: senderID, traffic: .data) }
        if sequences.count == total { core.handle.stop() }
    }
    _ = try core.registerDatagramSocket(receiver, traffic: .data, handler: handler)
    // Send-only: the sender is kept out of epoll unless the kernel pushes back.
    senderID = try core.registerDatagramSocket(sender, traffic: .data, handler: nil)
    core.registerIntent(feed, on: senderID, traffic: .data)
    let watchdog = StopAlarm()
    core.scheduleAlarm(at: core.now.advanced(by: .seconds(30)), handler: watchdog)
    try core.run()
    return TransferOutcome(sequences: sequences, payloadsIntact: intact, statistics: core.statistics,
                           timedOut: watchdog.fired)
}

@Suite(.enabled(if: NetworkNamespace.isAvailable, namespaceRequirement))
struct EventCoreTests {
    @Test func multicastFlowsBetweenTwoSocketsThroughTheCore() throws {
        let total = 20_000
        let outcome = try NetworkNamespace.runIsolated { () throws -> TransferOutcome in
            let group = IPv4Address(239, 192, 1, 1)
            let receiver = try UDPSocket()
            try receiver.setReuseAddress(true)
            try receiver.setReceiveBufferSize(4 << 20)
            let destination = try receiver.bind(to: QSMSocketAddress(group, port: 0))
            try receiver.joinMulticastGroup(group, interface: .loopback)
            let sender = try UDPSocket()
            try sender.setMulticastInterface(.loopback)
            try sender.setMulticastTimeToLive(0)
            try sender.setMulticastLoop(true)
            return try runWindowedTransfer(core: try EventCore(), receiver: receiver, sender: sender,
                                           destination: destination, total: total, size: 1000, window: 512)
        }
        #expect(!outcome.timedOut)
        #expect(outcome.sequences == (0..<UInt64(total)).map { $0 })
        #expect(outcome.payloadsIntact)
        #expect(outcome.statistics.datagramsSent == total)
        #expect(outcome.statistics.datagramsReceived == total)
        #expect(outcome.statistics.bytesReceived == total * 1000)
        #expect(outcome.statistics.bytesSent == total * 1000)
        #expect(outcome.statistics.droppedTruncated == 0)
        #expect(outcome.statistics.droppedSendErrors == 0)
    }

    @Test func controlIsHandledBeforeDataWhenBothAreReady() throws {
        let order = try NetworkNamespace.runIsolated { () throws -> [String] in
            let core = try EventCore()
            let (controlSocket, controlAddress) = try loopbackSocket()
            let (dataSocket, dataAddress) = try loopbackSocket()
            let (sender, _) = try loopbackSocket()
            var order: [String] = []
            let controlHandler = RecordingHandler { _, _ in order.append("control") }
            let dataHandler = RecordingHandler { _, _ in order.append("data") }
            // Register data first, and send data first: priority, not arrival or
            // registration order, must decide.
            _ = try core.registerDatagramSocket(dataSocket, traffic: .data, handler: dataHandler)
            _ = try core.registerDatagramSocket(controlSocket, traffic: .control, handler: controlHandler)
            for index in 0..<20 { try sendDatagram(sender, [UInt8(index)], to: dataAddress) }
            for index in 0..<20 { try sendDatagram(sender, [UInt8(index)], to: controlAddress) }
            guard waitUntilReadable([controlSocket.descriptor, dataSocket.descriptor]) else { return [] }
            try core.runTurn(maximumWaitNanoseconds: 1_000_000_000)
            return order
        }
        #expect(order == Array(repeating: "control", count: 20) + Array(repeating: "data", count: 20))
    }

    /// A backlog of inbound data is handled in slices, and what a slice produced for a
    /// control socket (a token to pass on, a repair to send) goes out before the rest of
    /// the backlog: it does not wait behind every datagram read in the same turn.
    @Test func outboundControlGoesAheadOfTheRestOfADataBacklog() throws {
        final class OneControlDatagram: PacketFeed {
            let destination: QSMSocketAddress
            var handledWhenPulled: Int?
            var handled = 0
            init(destination: QSMSocketAddress) { self.destination = destination }
            func produceDatagram(into buffer: UnsafeMutableRawBufferPointer, core: EventCore) -> OutboundDatagram? {
                guard handledWhenPulled == nil else { return nil }
                handledWhenPulled = handled
                buffer[0] = 0xC0
                return OutboundDatagram(destination: destination, length: 1, hasMore: false)
            }
        }
        final class BatchCounter: IOTurnObserver {
            var batches = 0
            func ioBatchEnded(core: EventCore) { batches += 1 }
        }
        let backlog = 100
        let outcome = try NetworkNamespace.runIsolated { () throws -> [Int] in
            // The whole backlog read in one turn: the plain path (a coalescing socket reads
            // at most `coalescedBatchCapacity` messages a turn).
            var configuration = EventCoreConfiguration()
            configuration.receiveOffload = false
            let core = try EventCore(configuration: configuration)
            let (dataSocket, dataAddress) = try loopbackSocket()
            let (controlSocket, _) = try loopbackSocket()
            let (sink, sinkAddress) = try loopbackSocket()
            let (sender, _) = try loopbackSocket()
            let feed = OneControlDatagram(destination: sinkAddress)
            let counter = BatchCounter()
            core.ioTurnObserver = counter
            let controlID = try core.registerDatagramSocket(controlSocket, traffic: .control, handler: nil)
            let dataHandler = RecordingHandler { recorder, core in
                feed.handled = recorder.datagrams.count
                // The first datagram of the backlog asks for a control datagram to go out.
                if recorder.datagrams.count == 1 { core.registerIntent(feed, on: controlID, traffic: .control) }
            }
            _ = try core.registerDatagramSocket(dataSocket, traffic: .data, handler: dataHandler)
            for index in 0..<backlog { try sendDatagram(sender, [UInt8(truncatingIfNeeded: index)], to: dataAddress) }
            guard waitUntilReadable([dataSocket.descriptor]) else { return [] }
            try core.runTurn(maximumWaitNanoseconds: 1_000_000_000)
            guard waitUntilReadable([sink.descriptor]) else { return [] }
            return [dataHandler.datagrams.count, feed.handledWhenPulled ?? -1, counter.batches,
                    core.statistics.inboundDataSlices]
        }
        #expect(outcome.count == 4)
        guard outcome.count == 4 else { return }
        // The whole backlog was handled in the one turn...
        #expect(outcome[0] == backlog)
        // ...but the control datagram left after the first slice, not after the backlog.
        #expect(outcome[1] == EventCore.inboundDataSlice)
        // The observer settled after each slice and at the end of the turn.
        let slices = (backlog - 1) / EventCore.inboundDataSlice
        #expect(outcome[3] == slices)
        #expect(outcome[2] == slices + 1)
    }

    @Test func networkIsHandledBeforeLocalDescriptors() throws {
        final class PipeReader: DescriptorHandler {
            let descriptor: Int32
            var onReadable: () -> Void = {}
            init(descriptor: Int32) { self.descriptor = descriptor }
            func descriptorReadable(_ registration: RegistrationID, core: EventCore) {
                var byte: UInt8 = 0
                while read(descriptor, &byte, 1) == 1 { onReadable() }
            }
            func descriptorWritable(_ registration: RegistrationID, core: EventCore) {}
        }
        let order = try NetworkNamespace.runIsolated { () throws -> [String] in
            let core = try EventCore()
            var ends: [Int32] = [0, 0]
            guard pipe(&ends) == 0, fcntl(ends[0], F_SETFL, O_NONBLOCK) == 0 else { return ["pipe failed"] }
            defer { close(ends[0]); close(ends[1]) }
            let (dataSocket, dataAddress) = try loopbackSocket()
            let (sender, _) = try loopbackSocket()
            var order: [String] = []
            let reader = PipeReader(descriptor: ends[0])
            reader.onReadable = { order.append("local") }
            // The pipe is registered first and becomes ready first.
            _ = try core.registerDescriptor(ends[0], medium: .local, traffic: .control, readable: true, writable: false,
                                            handler: reader)
            _ = try core.registerDatagramSocket(dataSocket, traffic: .data,
                                                handler: RecordingHandler { _, _ in order.append("network") })
            var byte: UInt8 = 1
            for _ in 0..<3 { _ = write(ends[1], &byte, 1) }
            for index in 0..<3 { try sendDatagram(sender, [UInt8(index)], to: dataAddress) }
            guard waitUntilReadable([ends[0], dataSocket.descriptor]) else { return ["not ready"] }
            try core.runTurn(maximumWaitNanoseconds: 1_000_000_000)
            return order
        }
        #expect(order == ["network", "network", "network", "local", "local", "local"])
    }

    @Test func alarmsFireInDeadlineOrderWithCancelAndReschedule() throws {
        struct Outcome: Sendable {
            var fired: [UInt64]
            var expected: [UInt64]
            var lateness: [Int64]
            var interval: AlarmLatenessInterval
            var handleMisbehaviour: [String]
        }
        let outcome = try NetworkNamespace.runIsolated { () throws -> Outcome in
            let core = try EventCore()
            let alarms = OrderedAlarms()
            var random = SplitMix64(seed: 42)
            let start = core.now.advanced(by: .milliseconds(20))
            // The model: (deadline, scheduling order, tag); cancelled alarms leave it.
            var model: [(deadline: Int64, order: Int, tag: UInt64)] = []
            var handles: [AlarmHandle] = []
            for tag in 0..<500 {
                let offset = Int64.random(in: 0..<50, using: &random) * 1_000_000  // ties are common
                let deadline = start.advanced(byNanoseconds: offset)
                handles.append(core.scheduleAlarm(at: deadline, handler: alarms, tag: UInt64(tag)))
                model.append((deadline.nanoseconds, model.count, UInt64(tag)))
            }
            var order = model.count
            var misbehaviour: [String] = []
            for tag in stride(from: 0, to: 500, by: 7) {
                if !core.cancelAlarm(handles[tag]) { misbehaviour.append("cancel \(tag) failed") }
                if core.cancelAlarm(handles[tag]) { misbehaviour.append("second cancel \(tag) succeeded") }
                model.removeAll { $0.tag == UInt64(tag) }
            }
            for tag in stride(from: 3, to: 500, by: 11) where tag % 7 != 0 {
                let deadline = start.advanced(byNanoseconds: Int64.random(in: 0..<50, using: &random) * 1_000_000)
                if !core.rescheduleAlarm(handles[tag], to: deadline) { misbehaviour.append("reschedule \(tag) failed") }
                let index = model.firstIndex { $0.tag == UInt64(tag) }!
                model[index].deadline = deadline.nanoseconds
                model[index].order = order
                order += 1
            }
            alarms.expected = model.count
            let watchdog = StopAlarm()
            core.scheduleAlarm(at: core.now.advanced(by: .seconds(30)), handler: watchdog)
            _ = core.takeAlarmLatenessInterval()
            try core.run()
            let expected = model.sorted { ($0.deadline, $0.order) < ($1.deadline, $1.order) }.map(\.tag)
            return Outcome(fired: alarms.fired, expected: expected, lateness: alarms.lateness,
                           interval: core.takeAlarmLatenessInterval(), handleMisbehaviour: misbehaviour)
        }
        #expect(outcome.handleMisbehaviour.isEmpty)
        #expect(outcome.fired == outcome.expected)
        #expect(outcome.lateness.allSatisfy { $0 >= 0 })
        #expect(outcome.interval.alarmsFired == outcome.expected.count)
        #expect(outcome.interval.maxNanoseconds >= outcome.interval.meanNanoseconds)
        #expect(outcome.interval.maxNanoseconds == outcome.lateness.max())
    }

    @Test func requestsFromOtherThreadsRunOnTheCoreThreadInOrder() throws {
        struct Outcome: Sendable { var log: [(producer: Int, sequence: Int, thread: Int64)]; var coreThread: Int64; var wakeups: Int; var announcements: Int; var processed: Int }
        let producers = 2
        let perProducer = 20_000
        let outcome = try NetworkNamespace.runIsolated { () throws -> Outcome in
            let core = try EventCore()
            let handle = core.handle
            let log = Mutex<[(producer: Int, sequence: Int, thread: Int64)]>([])
            let threads = try (0..<producers).map { producer in
                try SystemThread(name: "submitter\(producer)") {
                    for sequence in 0..<perProducer {
                        let request = CoreRequest.perform { core in
                            let count = log.withLock { log in
                                log.append((producer, sequence, SystemThread.currentThreadID))
                                return log.count
                            }
                            if count == producers * perProducer { core.handle.stop() }
                        }
                        while !handle.trySubmit(request) { sched_yield() }
                    }
                }
            }
            let watchdog = StopAlarm()
            core.scheduleAlarm(at: core.now.advanced(by: .seconds(60)), handler: watchdog)
            try core.run()
            threads.forEach { $0.join() }
            return Outcome(log: log.withLock { $0 }, coreThread: SystemThread.currentThreadID,
                           wakeups: handle.wakeupSignalCount, announcements: core.statistics.sleepAnnouncements,
                           processed: core.statistics.requestsProcessed)
        }
        #expect(outcome.log.count == producers * perProducer)
        #expect(outcome.processed == producers * perProducer)
        #expect(outcome.log.allSatisfy { $0.thread == outcome.coreThread })
        for producer in 0..<producers {
            #expect(outcome.log.filter { $0.producer == producer }.map(\.sequence) == Array(0..<perProducer))
        }
        // Coalescing: a submitter writes the eventfd only to wake a core that announced
        // it was going to sleep, at most once per such announcement.
        #expect(outcome.wakeups <= outcome.announcements)
    }

    @Test func poolExhaustionPausesReceivingWithoutLosingData() throws {
        let outcome = try NetworkNamespace.runIsolated { () throws -> ([UInt8], EventCoreStatistics) in
            var configuration = EventCoreConfiguration()
            configuration.packetBufferCount = 4
            configuration.datagramBatchSize = 4
            // Received into packet buffers (a coalescing socket reads into its own batch).
            configuration.receiveOffload = false
            let core = try EventCore(configuration: configuration)
            let (socket, address) = try loopbackSocket()
            let (sender, _) = try loopbackSocket()
            let handler = RecordingHandler { recorder, core in
                if recorder.datagrams.count == 100 { core.handle.stop() }
            }
            _ = try core.registerDatagramSocket(socket, traffic: .data, handler: handler)
            for index in 0..<100 { try sendDatagram(sender, [UInt8(index)], to: address) }
            core.scheduleAlarm(at: core.now.advanced(by: .seconds(30)), handler: StopAlarm())
            try core.run()
            return (handler.datagrams.map { $0.bytes[0] }, core.statistics)
        }
        #expect(outcome.0 == (0..<100).map { UInt8($0) })
        #expect(outcome.1.poolExhaustions > 0)
    }

    @Test func aPoolTooSmallForSendAndReceiveNeverStalls() throws {
        let total = 2_000
        let outcome = try NetworkNamespace.runIsolated { () throws -> TransferOutcome in
            var configuration = EventCoreConfiguration()
            configuration.packetBufferCount = 4
            configuration.datagramBatchSize = 4
            // Received into packet buffers (a coalescing socket reads into its own batch).
            configuration.receiveOffload = false
            let (receiver, address) = try loopbackSocket()
            let (sender, _) = try loopbackSocket()
            try receiver.setReceiveBufferSize(4 << 20)
            // A window larger than the pool: sending and receiving compete for buffers.
            return try runWindowedTransfer(core: try EventCore(configuration: configuration), receiver: receiver,
                                           sender: sender, destination: address, total: total, size: 100, window: 64)
        }
        #expect(!outcome.timedOut, "the core stalled until the watchdog fired")
        #expect(outcome.sequences == (0..<UInt64(total)).map { $0 })
        #expect(outcome.payloadsIntact)
        #expect(outcome.statistics.poolExhaustions > 0)
    }

    @Test func intentSurvivesAnEmptyPoolUntilBuffersReturn() throws {
        final class ReleaseBuffers: AlarmHandler {
            var held: [PacketBuffer] = []
            func alarmFired(tag: UInt64, deadline: Instant, core: EventCore) {
                held.forEach(core.pool.release)
                held.removeAll()
            }
        }
        let outcome = try NetworkNamespace.runIsolated { () throws -> (Int, EventCoreStatistics, Bool) in
            var configuration = EventCoreConfiguration()
            configuration.packetBufferCount = 4
            configuration.datagramBatchSize = 4
            // Received into packet buffers (a coalescing socket reads into its own batch).
            configuration.receiveOffload = false
            let core = try EventCore(configuration: configuration)
            let (receiver, address) = try loopbackSocket()
            let (sender, _) = try loopbackSocket()
            let feed = WindowedFeed(destination: address, total: 3, size: 10, window: 3)
            let handler = RecordingHandler { recorder, core in
                if recorder.datagrams.count == 3 { core.handle.stop() }
            }
            _ = try core.registerDatagramSocket(receiver, traffic: .data, handler: handler)
            let senderID = try core.registerDatagramSocket(sender, traffic: .data, handler: nil)
            // Something else holds every buffer when the socket first pulls; nothing but
            // the standing intent can get the datagrams out once the buffers come back.
            let release = ReleaseBuffers()
            while let buffer = core.pool.acquire() { release.held.append(buffer) }
            core.registerIntent(feed, on: senderID, traffic: .data)
            core.scheduleAlarm(at: core.now.advanced(by: .milliseconds(20)), handler: release)
            let watchdog = StopAlarm()
            core.scheduleAlarm(at: core.now.advanced(by: .seconds(10)), handler: watchdog)
            try core.run()
            return (handler.datagrams.count, core.statistics, watchdog.fired)
        }
        #expect(!outcome.2, "sending stalled until the watchdog fired")
        #expect(outcome.0 == 3)
        #expect(outcome.1.poolExhaustions > 0)
    }

    @Test func oversizedDatagramsAreDroppedAndCountedNeverTruncated() throws {
        let outcome = try NetworkNamespace.runIsolated { () throws -> ([[UInt8]], EventCoreStatistics) in
            var configuration = EventCoreConfiguration()
            configuration.packetBufferCapacity = 64
            let core = try EventCore(configuration: configuration)
            let (socket, address) = try loopbackSocket()
            let (sender, _) = try loopbackSocket()
            let handler = RecordingHandler { recorder, core in
                if recorder.datagrams.last?.bytes.count == 1 { core.handle.stop() }
            }
            _ = try core.registerDatagramSocket(socket, traffic: .data, handler: handler)
            try sendDatagram(sender, [UInt8](repeating: 7, count: 65), to: address)
            try sendDatagram(sender, [UInt8](repeating: 8, count: 64), to: address)
            try sendDatagram(sender, [9], to: address)
            core.scheduleAlarm(at: core.now.advanced(by: .seconds(30)), handler: StopAlarm())
            try core.run()
            return (handler.datagrams.map(\.bytes), core.statistics)
        }
        #expect(outcome.0 == [[UInt8](repeating: 8, count: 64), [9]])
        #expect(outcome.1.droppedTruncated == 1)
    }

    @Test func invalidConfigurationIsRejectedBeforeAnythingStarts() {
        var configuration = EventCoreConfiguration()
        configuration.ioQuantum = .zero
        #expect(throws: ConfigurationError.self) { _ = try EventCore(configuration: configuration) }
        configuration = EventCoreConfiguration()
        configuration.packetBufferCapacity = 10
        #expect(throws: ConfigurationError.self) { try configuration.validate() }
        configuration = EventCoreConfiguration()
        configuration.datagramBatchSize = 64
        configuration.packetBufferCount = 8
        #expect(throws: ConfigurationError.self) { try configuration.validate() }
        #expect(throws: Never.self) { try EventCoreConfiguration().validate() }
    }
}
