import Testing
@testable import QSMCore
@testable import QSMProtocol
@testable import QSMSimulation
import QSMHarness

@Suite struct WireCodecTests {
    enum Field: Equatable {
        case u8(UInt8), u16(UInt16), u32(UInt32), u64(UInt64), i64(Int64), prefixed([UInt8]), raw([UInt8])
    }

    static func randomFields(_ random: inout SplitMix64) -> [Field] {
        (0..<Int.random(in: 0..<40, using: &random)).map { _ in
            switch Int.random(in: 0..<7, using: &random) {
            case 0: .u8(.random(in: .min ... .max, using: &random))
            case 1: .u16(.random(in: .min ... .max, using: &random))
            case 2: .u32(.random(in: .min ... .max, using: &random))
            case 3: .u64(.random(in: .min ... .max, using: &random))
            case 4: .i64(.random(in: .min ... .max, using: &random))
            case 5: .prefixed((0..<Int.random(in: 0..<50, using: &random)).map { _ in .random(in: 0...255, using: &random) })
            default: .raw((0..<Int.random(in: 0..<20, using: &random)).map { _ in .random(in: 0...255, using: &random) })
            }
        }
    }

    static func write(_ fields: [Field], into writer: inout WireWriter) throws {
        for field in fields {
            switch field {
            case .u8(let v): try writer.write(v)
            case .u16(let v): try writer.write(v)
            case .u32(let v): try writer.write(v)
            case .u64(let v): try writer.write(v)
            case .i64(let v): try writer.write(v)
            case .prefixed(let bytes): try bytes.withUnsafeBytes { try writer.writeLengthPrefixed(bytes: $0) }
            case .raw(let bytes):
                try writer.write(UInt16(bytes.count))
                try bytes.withUnsafeBytes { try writer.write(bytes: $0) }
            }
        }
    }

    /// Reads fields of the same shapes as `shape`; the values come from the bytes.
    static func read(shape: [Field], from reader: inout WireReader) throws(WireError) -> [Field] {
        var fields: [Field] = []
        for field in shape {
            switch field {
            case .u8: fields.append(.u8(try reader.readUInt8()))
            case .u16: fields.append(.u16(try reader.readUInt16()))
            case .u32: fields.append(.u32(try reader.readUInt32()))
            case .u64: fields.append(.u64(try reader.readUInt64()))
            case .i64: fields.append(.i64(try reader.readInt64()))
            case .prefixed: fields.append(.prefixed(Array(try reader.readLengthPrefixedBytes())))
            case .raw:
                let count = Int(try reader.readUInt16())
                fields.append(.raw(Array(try reader.readBytes(count: count))))
            }
        }
        return fields
    }

    @Test func roundTripsAreExact() throws {
        for seed in UInt64(1)...500 {
            var random = SplitMix64(seed: seed)
            let fields = Self.randomFields(&random)
            var buffer = [UInt8](repeating: 0, count: 4096)
            let written = try buffer.withUnsafeMutableBytes { bytes in
                var writer = WireWriter(bytes)
                try Self.write(fields, into: &writer)
                return writer.offset
            }
            let decoded = try buffer.withUnsafeBytes { bytes in
                var reader = WireReader(UnsafeRawBufferPointer(rebasing: bytes[0..<written]))
                let result = try Self.read(shape: fields, from: &reader)
                try reader.expectEnd()
                return result
            }
            #expect(decoded == fields, "seed \(seed)")
        }
    }

    @Test func everyTruncationIsAnErrorNeverATrap() throws {
        for seed in UInt64(1)...200 {
            var random = SplitMix64(seed: seed)
            var fields = Self.randomFields(&random)
            fields.append(.u8(1))  // at least one byte, so every proper prefix is short
            var buffer = [UInt8](repeating: 0, count: 4096)
            let written = try buffer.withUnsafeMutableBytes { bytes in
                var writer = WireWriter(bytes)
                try Self.write(fields, into: &writer)
                return writer.offset
            }
            for cut in 0..<written {
                let outcome: Result<[Field], WireError> = buffer.withUnsafeBytes { bytes in
                    var reader = WireReader(UnsafeRawBufferPointer(rebasing: bytes[0..<cut]))
                    return Result { () throws(WireError) in try Self.read(shape: fields, from: &reader) }
                }
                guard case .failure(let error) = outcome, case .truncated = error else {
                    Issue.record("seed \(seed): prefix of \(cut)/\(written) bytes decoded as \(outcome)")
                    return
                }
            }
        }
    }

    @Test func randomBytesNeverTrapOrOverread() {
        for seed in UInt64(1)...2000 {
            var random = SplitMix64(seed: seed)
            let bytes = (0..<Int.random(in: 0..<64, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }
            let shape = Self.randomFields(&random)
            bytes.withUnsafeBytes { raw in
                var reader = WireReader(raw)
                _ = try? Self.read(shape: shape, from: &reader)
                #expect(reader.offset <= raw.count, "seed \(seed)")
                #expect(reader.remainingCount == raw.count - reader.offset)
            }
        }
    }

    @Test func failedReadsAndWritesLeaveThePositionAlone() throws {
        let bytes: [UInt8] = [0, 5, 1, 2]  // claims 5 bytes, has 2
        bytes.withUnsafeBytes { raw in
            var reader = WireReader(raw)
            #expect(throws: WireError.truncated(offset: 2, needed: 5, available: 2)) { _ = try reader.readLengthPrefixedBytes() }
            #expect(reader.offset == 0)
            #expect(throws: WireError.self) { _ = try reader.readBytes(count: -1) }
            #expect((try? reader.readUInt16()) == 5)
            #expect(throws: WireError.truncated(offset: 2, needed: 4, available: 2)) { _ = try reader.readUInt32() }
            #expect(reader.offset == 2)
            #expect(throws: WireError.self) { try reader.expectEnd() }
        }
        var small = [UInt8](repeating: 0, count: 3)
        small.withUnsafeMutableBytes { raw in
            var writer = WireWriter(raw)
            #expect(throws: WireError.overflow(offset: 0, needed: 4, available: 3)) { try writer.write(UInt32(7)) }
            #expect(writer.offset == 0)
            #expect(throws: Never.self) { try writer.write(UInt16(0xABCD)) }
            #expect(throws: WireError.self) { try writer.patch(UInt32(1), at: 0) }
            #expect(throws: Never.self) { try writer.patch(UInt16(0x0102), at: 0) }
        }
        #expect(small[0] == 1 && small[1] == 2)
    }

    @Test func integersAreBigEndianOnTheWire() throws {
        var buffer = [UInt8](repeating: 0, count: 8)
        try buffer.withUnsafeMutableBytes { raw in
            var writer = WireWriter(raw)
            try writer.write(UInt32(0x0102_0304))
            try writer.write(UInt16(0x0506))
        }
        #expect(buffer.prefix(6) == [1, 2, 3, 4, 5, 6])
    }
}

/// Payload arrays are reused only when nothing else holds them.
@Suite struct PayloadSparesTests {
    @Test func soleOwnershipIsSeenWithoutCopying() {
        // (Each answer is taken before `#expect`, which would capture a copy.)
        var array = [UInt8](repeating: 1, count: 3)
        let alone = isSoleOwner(&array)
        #expect(alone)
        let copy = array
        let shared = isSoleOwner(&array)
        #expect(!shared)
        _ = copy
        var other = [UInt8](repeating: 2, count: 2)
        let slice = other[...]
        let sliced = isSoleOwner(&other)
        #expect(!sliced)
        #expect(slice.count == 2)
    }

    @Test func aSharedSpareIsNeverWrittenTo() {
        var spares = PayloadSpares(limit: 8)
        let kept: [UInt8] = [9, 9, 9, 9]
        spares.put(kept)
        let source: [UInt8] = [1, 2, 3]
        let copied = source.withUnsafeBytes { spares.copy($0) }
        #expect(Array(copied) == [1, 2, 3])
        // The kept array is untouched, and still a spare (to be tried later).
        #expect(kept == [9, 9, 9, 9])
        #expect(spares.count == 1)
    }

    static func record(_ sender: UInt64) -> TokenRecord {
        TokenRecord(sender: NodeID(sender), contiguous: sender, maximumSeen: sender + 1, stable: 0, coverage: 1)
    }

    static func address<Element>(_ array: [Element]) -> UInt? {
        array.withUnsafeBufferPointer { $0.baseAddress.map { UInt(bitPattern: $0) } }
    }

    /// A token decoded with spares at hand takes its records' array from them, and a kept
    /// array that something else still holds is never written to.
    @Test func tokenRecordArraysAreReusedOnlyWhenNothingElseHoldsThem() throws {
        var spares = PayloadSpares(limit: 8)
        var kept: [TokenRecord] = []
        kept.reserveCapacity(8)
        kept.append(Self.record(9))
        let keptAddress = Self.address(kept)
        spares.put(records: kept)
        kept = []
        let token = TokenPacket(kind: .partitionToken, region: RegionID(3), regionView: 1, partition: 0, round: 2,
                                startedAt: 5, records: [Self.record(1), Self.record(2)])
        let bytes = ProtocolPacket.token(token).encoded()
        let decoded = try bytes.withUnsafeBytes { try ProtocolPacket(decoding: $0, spares: &spares) }
        guard case .token(let received) = decoded else {
            Issue.record("not a token")
            return
        }
        #expect(received.records == token.records)
        #expect(Self.address(received.records) == keptAddress)
        // Shared: handed back, but a new array is made rather than writing to it.
        spares.put(records: received.records)
        var fresh = spares.recordArray(reserving: 1)
        fresh.append(Self.record(7))
        #expect(received.records == token.records)
        #expect(Self.address(fresh) != Self.address(received.records))
    }

    /// The address offered for prefetching is the storage of the spare that many copies
    /// later takes (its elements follow the object's header), and the plan guesses the
    /// payloads of the next datagram from the size of the last one copied.
    @Test func prefetchAddressesAreTheSparesTakenNext() {
        var spares = PayloadSpares(limit: 8)
        var elements: [UInt] = []
        for _ in 0..<4 {
            var spare: [UInt8] = []
            spare.reserveCapacity(1_100)
            elements.append(spare.withUnsafeBufferPointer { UInt(bitPattern: $0.baseAddress) })
            spares.put(spare)
        }
        #expect(spares.spareAddress(ahead: 4) == nil)
        let header = UInt(PayloadSpares.arrayHeaderBytes)
        #expect(spares.spareAddress(ahead: 2).map { UInt(bitPattern: $0) + header } == elements[2])
        let payload = [UInt8](repeating: 5, count: 1_000)
        let copied = payload.withUnsafeBytes { spares.copy($0) }
        #expect(copied.withUnsafeBufferPointer { UInt(bitPattern: $0.baseAddress) } == elements[0])
        // One spare taken: the one that was two ahead is now one ahead.
        #expect(spares.spareAddress(ahead: 1).map { UInt(bitPattern: $0) + header } == elements[2])
        // One 1000-byte payload per datagram: the spare past the next one, as long as it.
        let single = spares.prefetchPlan(datagramBytes: 1_100)
        #expect(single.offset == 2 && single.count == 1 && single.bytes == 1_000 + PayloadSpares.arrayHeaderBytes)
        // A bundle of 100-byte payloads: as many spares as it holds, past its own.
        let small = [UInt8](repeating: 1, count: 100).withUnsafeBytes { spares.copy($0) }
        #expect(small.count == 100)
        let bundle = spares.prefetchPlan(datagramBytes: 1_472)
        // (Each packet of a bundle: its header, its payload, its length.)
        let perPacket = 100 + DataPacket.headerBytes + DatagramBundle.lengthBytes
        #expect(bundle.count == 1_472 / perPacket && bundle.offset == bundle.count + 1)
        #expect(spares.prefetchPlan(datagramBytes: 65_000).count == PayloadSpares.prefetchedAtMost)
    }

    @Test func aSoleSpareIsReused() {
        var spares = PayloadSpares(limit: 8)
        var spare = [UInt8](repeating: 0, count: 64)
        let address = spare.withUnsafeBufferPointer { UInt(bitPattern: $0.baseAddress) }
        spares.put(spare)
        spare = []
        let copied = [UInt8](repeating: 7, count: 10).withUnsafeBytes { spares.copy($0) }
        #expect(Array(copied) == [UInt8](repeating: 7, count: 10))
        #expect(copied.withUnsafeBufferPointer { UInt(bitPattern: $0.baseAddress) } == address)
        #expect(spares.count == 0)
    }
}
