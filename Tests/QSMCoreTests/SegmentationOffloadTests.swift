#if canImport(Glibc)
import Glibc
#endif
import Testing
@testable import QSMCore
import QSMHarness

/// UDP segmentation offload (GSO) on send and coalesced receive (GRO): whatever the
/// kernel does with the runs, every datagram arrives whole, once, in order, at its own
/// destination, and a receiver cuts coalesced messages back into exactly the datagrams
/// sent.
@Suite(.enabled(if: NetworkNamespace.isAvailable, namespaceRequirement))
struct SegmentationOffloadTests {
    /// Datagrams of the shapes that make and break runs: a long run of one size to one
    /// address, a shorter last one (which may end the run), the same size to another
    /// address, a larger one after a shorter one, and single odd sizes.
    static func shapes(_ first: QSMSocketAddress, _ second: QSMSocketAddress) -> [(QSMSocketAddress, [UInt8])] {
        var datagrams: [(QSMSocketAddress, [UInt8])] = []
        func add(_ destination: QSMSocketAddress, _ size: Int) {
            let index = datagrams.count
            datagrams.append((destination, (0..<size).map { UInt8(truncatingIfNeeded: index &* 31 &+ $0) }))
        }
        for _ in 0..<40 { add(first, 300) }
        add(first, 120)
        for _ in 0..<5 { add(second, 300) }
        add(first, 50)
        add(first, 700)
        for _ in 0..<3 { add(first, 700) }
        add(second, 1)
        for _ in 0..<70 { add(first, 1000) }
        return datagrams
    }

    /// Sends `datagrams` from `sender` through a `DatagramBatch` of 128, segmented where
    /// the kernel offers it, a full batch at a time.
    static func sendThroughBatch(_ datagrams: [(QSMSocketAddress, [UInt8])], from sender: UDPSocket) throws {
        let pool = PacketBufferPool(bufferCount: 256, bufferCapacity: 2048)
        let batch = DatagramBatch(capacity: 128, pool: pool)
        batch.segmentsSends = sender.supportsSegmentationOffload
        for (destination, bytes) in datagrams {
            if batch.isFull { while !batch.isEmpty { _ = try batch.send(on: sender) } }
            let buffer = pool.acquire()!
            pool.bytes(of: buffer).copyBytes(from: bytes)
            batch.append(buffer, length: bytes.count, to: destination)
        }
        while !batch.isEmpty { _ = try batch.send(on: sender) }
    }

    /// Everything queued on `socket`, read plainly.
    static func readAll(_ socket: UDPSocket) throws -> [[UInt8]] {
        var received: [[UInt8]] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let result = try buffer.withUnsafeMutableBytes { try socket.receive(into: $0) }
            guard case .completed(let reception) = result else { return received }
            received.append(Array(buffer[0..<reception.length]))
        }
    }

    @Test func segmentedSendsArriveAsTheDatagramsQueued() throws {
        let outcome = try NetworkNamespace.runIsolated { () throws -> (Bool, [[UInt8]], [[UInt8]], [[UInt8]], [[UInt8]], Int) in
            let (first, firstAddress) = try loopbackSocket()
            let (second, secondAddress) = try loopbackSocket()
            _ = try first.setReceiveBufferSize(8 << 20)
            _ = try second.setReceiveBufferSize(8 << 20)
            let (sender, _) = try loopbackSocket()
            let pool = PacketBufferPool(bufferCount: 256, bufferCapacity: 2048)
            let batch = DatagramBatch(capacity: 128, pool: pool)
            batch.segmentsSends = sender.supportsSegmentationOffload
            let datagrams = Self.shapes(firstAddress, secondAddress)
            for (destination, bytes) in datagrams {
                let buffer = pool.acquire()!
                pool.bytes(of: buffer).copyBytes(from: bytes)
                batch.append(buffer, length: bytes.count, to: destination)
            }
            var segmented = 0
            while !batch.isEmpty {
                guard case .completed = try batch.send(on: sender) else { continue }
                segmented += batch.lastSegmentedMessages
            }
            return (batch.segmentsSends, try Self.readAll(first), try Self.readAll(second),
                    datagrams.filter { $0.0 == firstAddress }.map(\.1), datagrams.filter { $0.0 == secondAddress }.map(\.1),
                    segmented)
        }
        let (offloaded, first, second, expectedFirst, expectedSecond, segmented) = outcome
        #expect(first == expectedFirst)
        #expect(second == expectedSecond)
        if offloaded {
            // The runs of 40 (and the short one after), 5, 4 and 70 (two messages: 64 at
            // most) were segmented; nothing else could be.
            #expect(segmented == 5, "\(segmented) segmented messages")
        }
    }

    @Test func coalescedMessagesAreCutBackIntoTheDatagramsSent() throws {
        let outcome = try NetworkNamespace.runIsolated { () throws -> (Bool, [[UInt8]], [[UInt8]], Int) in
            let (receiver, address) = try loopbackSocket()
            _ = try receiver.setReceiveBufferSize(8 << 20)
            let coalescing = receiver.enableReceiveOffload()
            let (unused, otherAddress) = try loopbackSocket()
            _ = unused
            let (sender, _) = try loopbackSocket()
            let pool = PacketBufferPool(bufferCount: 256, bufferCapacity: 2048)
            let batch = DatagramBatch(capacity: 128, pool: pool)
            batch.segmentsSends = sender.supportsSegmentationOffload
            let datagrams = Self.shapes(address, otherAddress).filter { $0.0 == address }
            for (destination, bytes) in datagrams {
                let buffer = pool.acquire()!
                pool.bytes(of: buffer).copyBytes(from: bytes)
                batch.append(buffer, length: bytes.count, to: destination)
            }
            while !batch.isEmpty { _ = try batch.send(on: sender) }
            let reader = CoalescedDatagramBatch(capacity: 4)
            var received: [[UInt8]] = []
            var coalesced = 0
            while case .completed(let count) = try reader.receive(on: receiver.descriptor, count: 4), count > 0 {
                for index in 0..<count {
                    let datagrams = reader.datagrams(at: index)
                    if datagrams.count > 1 { coalesced += 1 }
                    for datagram in datagrams { received.append(Array(datagram)) }
                }
            }
            return (coalescing && batch.segmentsSends, received, datagrams.map(\.1), coalesced)
        }
        let (offloaded, received, expected, coalesced) = outcome
        #expect(received == expected)
        if offloaded { #expect(coalesced > 0, "nothing arrived coalesced") }
    }

    /// The core's own receive path, with and without receive offload: a peer's segmented
    /// bursts become the same datagrams, in the same order, and are counted as coalesced
    /// only when offload is on.
    @Test(arguments: [true, false])
    func theCoreDeliversCoalescedDatagramsOneByOne(receiveOffload: Bool) throws {
        let outcome = try NetworkNamespace.runIsolated { () throws -> ([[UInt8]], [[UInt8]], EventCoreStatistics) in
            var configuration = EventCoreConfiguration()
            configuration.receiveOffload = receiveOffload
            let core = try EventCore(configuration: configuration)
            let (socket, address) = try loopbackSocket()
            _ = try socket.setReceiveBufferSize(8 << 20)
            let (_, otherAddress) = try loopbackSocket()
            let expected = Self.shapes(address, otherAddress).filter { $0.0 == address }
            let handler = RecordingHandler { recorder, core in
                if recorder.datagrams.count == expected.count { core.handle.stop() }
            }
            _ = try core.registerDatagramSocket(socket, traffic: .data, handler: handler)
            try Self.sendThroughBatch(expected, from: try loopbackSocket().0)
            core.scheduleAlarm(at: core.now.advanced(by: .seconds(30)), handler: StopAlarm())
            try core.run()
            return (handler.datagrams.map(\.bytes), expected.map(\.1), core.statistics)
        }
        let (received, expected, statistics) = outcome
        #expect(received == expected)
        #expect(statistics.datagramsReceived == expected.count)
        if !receiveOffload {
            #expect(!statistics.receiveOffload)
            #expect(statistics.coalescedReceives == 0)
        } else if statistics.receiveOffload {
            #expect(statistics.coalescedReceives > 0)
            #expect(statistics.coalescedDatagrams <= expected.count)
        }
    }
}

extension SegmentationOffloadTests {
    /// Datagrams handled in place in a socket's coalesced batch: with two coalescing
    /// sockets, many more messages than one receive takes, and an I/O quantum so short
    /// that turns end with datagrams of a batch still queued, each socket still yields
    /// exactly its datagrams, in order, once (a socket is not read again, overwriting its
    /// batch, while any of its datagrams waits).
    @Test func datagramsLeftInABatchAcrossTurnsAreHandledBeforeTheSocketIsReadAgain() throws {
        let outcome = try NetworkNamespace.runIsolated { () throws -> ([[UInt8]], [[UInt8]], [[UInt8]], [[UInt8]], EventCoreStatistics) in
            var configuration = EventCoreConfiguration()
            configuration.ioQuantum = .nanoseconds(1)
            let core = try EventCore(configuration: configuration)
            let (first, firstAddress) = try loopbackSocket()
            let (second, secondAddress) = try loopbackSocket()
            _ = try first.setReceiveBufferSize(8 << 20)
            _ = try second.setReceiveBufferSize(8 << 20)
            var all: [(QSMSocketAddress, [UInt8])] = []
            for round in 0..<6 {
                all += Self.shapes(firstAddress, secondAddress).map { ($0.0, $0.1 + [UInt8(round)]) }
                all += Self.shapes(secondAddress, firstAddress).map { ($0.0, $0.1 + [UInt8(round), 1]) }
            }
            let handler = RecordingHandler { recorder, core in
                if recorder.datagrams.count == all.count { core.handle.stop() }
            }
            let firstID = try core.registerDatagramSocket(first, traffic: .data, handler: handler)
            _ = try core.registerDatagramSocket(second, traffic: .data, handler: handler)
            try Self.sendThroughBatch(all, from: try loopbackSocket().0)
            core.scheduleAlarm(at: core.now.advanced(by: .seconds(30)), handler: StopAlarm())
            try core.run()
            let received = handler.datagrams
            return (received.filter { $0.registration == firstID }.map(\.bytes), all.filter { $0.0 == firstAddress }.map(\.1),
                    received.filter { $0.registration != firstID }.map(\.bytes), all.filter { $0.0 == secondAddress }.map(\.1),
                    core.statistics)
        }
        let (first, expectedFirst, second, expectedSecond, statistics) = outcome
        #expect(first == expectedFirst)
        #expect(second == expectedSecond)
        #expect(statistics.datagramsReceived == expectedFirst.count + expectedSecond.count)
        #expect(statistics.ioQuantumExpirations > 0, "no turn ended early: nothing was left queued")
        if statistics.receiveOffload { #expect(statistics.coalescedReceives > 2 * EventCore.coalescedMessagesPerReceive) }
    }

    /// A kernel that refuses a segmented send (here: Linux refuses it on a socket without
    /// UDP checksums, SO_NO_CHECK) turns segmentation off for that batch, counted, and the
    /// same datagrams go plain: none lost, none twice.
    @Test func aRefusedSegmentedSendFallsBackToPlainSends() throws {
        let outcome = try NetworkNamespace.runIsolated { () throws -> (Bool, Bool, Int, [[UInt8]], [[UInt8]]) in
            let (receiver, address) = try loopbackSocket()
            _ = try receiver.setReceiveBufferSize(8 << 20)
            let (sender, _) = try loopbackSocket()
            let supported = sender.supportsSegmentationOffload
            var noChecksum: Int32 = 1
            guard setsockopt(sender.descriptor, SOL_SOCKET, 11 /* SO_NO_CHECK */, &noChecksum, socklen_t(MemoryLayout<Int32>.size)) == 0 else {
                throw SystemError(call: "setsockopt(SO_NO_CHECK)", errno: errno)
            }
            let pool = PacketBufferPool(bufferCount: 64, bufferCapacity: 2048)
            let batch = DatagramBatch(capacity: 32, pool: pool)
            batch.segmentsSends = supported
            let datagrams = (0..<20).map { index in (0..<500).map { UInt8(truncatingIfNeeded: index &* 7 &+ $0) } }
            for bytes in datagrams {
                let buffer = pool.acquire()!
                pool.bytes(of: buffer).copyBytes(from: bytes)
                batch.append(buffer, length: bytes.count, to: address)
            }
            while !batch.isEmpty { _ = try batch.send(on: sender) }
            return (supported, batch.segmentsSends, batch.segmentationFallbacks, try Self.readAll(receiver), datagrams)
        }
        let (supported, stillSegmenting, fallbacks, received, expected) = outcome
        #expect(received == expected)
        if supported {
            #expect(!stillSegmenting)
            #expect(fallbacks == 1)
        }
    }
}

/// Cutting a coalesced message: full segments, a shorter last one, an exact multiple, and
/// a single empty datagram (no kernel needed).
struct CoalescedDatagramsTests {
    static func cut(_ count: Int, _ segment: Int) -> [Int] {
        let bytes = [UInt8](repeating: 7, count: count)
        return bytes.withUnsafeBytes { raw in
            let datagrams = CoalescedDatagrams(bytes: raw, segmentBytes: segment)
            let lengths = datagrams.map(\.count)
            #expect(datagrams.count == lengths.count)
            return lengths
        }
    }

    @Test func messagesAreCutIntoTheirSegments() {
        #expect(Self.cut(250, 100) == [100, 100, 50])
        #expect(Self.cut(200, 100) == [100, 100])
        #expect(Self.cut(60, 100) == [60])
        #expect(Self.cut(0, 0) == [0])
    }
}
