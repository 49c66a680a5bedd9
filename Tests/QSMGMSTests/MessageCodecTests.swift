import QSMCore
import QSMHarness
import Testing
@testable import QSMGMS

@Suite struct MessageCodecTests {
    static func randomName(_ random: inout SplitMix64) -> GroupName {
        GroupName(String((0..<Int.random(in: 1...20, using: &random)).map { _ in "abcxyz-é日".randomElement(using: &random)! }))!
    }

    static func randomAddress(_ random: inout SplitMix64) -> QSMSocketAddress {
        QSMSocketAddress(IPv4Address(value: UInt32.random(in: 0...UInt32.max, using: &random)), port: UInt16.random(in: 0...UInt16.max, using: &random))
    }

    static func randomUpdate(_ random: inout SplitMix64) -> MembershipUpdate {
        var regions: [RegionView] = []
        for _ in 0..<Int.random(in: 0...3, using: &random) {
            let members = (0..<Int.random(in: 1...7, using: &random)).map { index in
                NodeEntry(id: NodeID(UInt64(index) * 7 + 1), address: randomAddress(&random))
            }
            let ids = members.map(\.id)
            let partitions = stride(from: 0, to: ids.count, by: 3).map { start in
                let slice = Array(ids[start..<min(start + 3, ids.count)])
                return Partition(members: slice, leader: slice.randomElement(using: &random)!)
            }
            regions.append(RegionView(id: RegionID(UInt64.random(in: 1...1000, using: &random)), viewNumber: UInt64.random(in: 1...99, using: &random),
                                      hierarchy: UInt32.random(in: 0...5, using: &random), groups: [GroupID(1), GroupID(9)],
                                      members: members, partitions: partitions, regionLeader: partitions[0].leader,
                                      address: Bool.random(using: &random) ? randomAddress(&random) : nil))
        }
        var groups: [GroupView] = []
        for _ in 0..<Int.random(in: 0...3, using: &random) {
            let viewNumber = UInt64.random(in: 1...9, using: &random)
            let members = (0..<Int.random(in: 0...5, using: &random)).map { NodeID(UInt64($0)) }
            groups.append(GroupView(id: GroupID(UInt32.random(in: 0...99, using: &random)), name: randomName(&random),
                                    viewNumber: viewNumber, members: members,
                                    memberSince: members.map { _ in UInt64.random(in: 1...viewNumber, using: &random) },
                                    mappingVersion: 3,
                                    regions: (0..<Int.random(in: 0...3, using: &random)).map { RegionReference(id: RegionID(UInt64($0)), viewNumber: 2, address: randomAddress(&random)) },
                                    hybridAddress: Bool.random(using: &random) ? randomAddress(&random) : nil,
                                    publishers: (0..<Int.random(in: 0...3, using: &random)).map { NodeID(UInt64(100 + $0)) }))
        }
        return MembershipUpdate(baseVersion: UInt64.random(in: 0...9, using: &random), version: 10, isFull: Bool.random(using: &random),
                                regions: regions, removedRegions: [RegionID(5)], groups: groups, removedGroups: [GroupID(2), GroupID(3)])
    }

    static func randomClientMessage(_ random: inout SplitMix64) -> ClientMessage {
        let name = randomName(&random)
        let id = UInt32.random(in: 0...UInt32.max, using: &random)
        switch Int.random(in: 0..<9, using: &random) {
        case 0: return .register(node: NodeID(UInt64.random(in: 0...UInt64.max, using: &random)), address: randomAddress(&random), protocolVersion: membershipProtocolVersion)
        case 1: return .join(request: id, group: name)
        case 2: return .leave(request: id, group: name)
        case 3: return .publish(request: id, group: name)
        case 4: return .unpublish(request: id, group: name)
        case 5: return .heartbeat
        case 6: return .resynchronize
        case 7: return .suspect(node: NodeID(UInt64.random(in: 0...UInt64.max, using: &random)))
        default: return .goodbye
        }
    }

    static func randomServerMessage(_ random: inout SplitMix64) -> ServerMessage {
        switch Int.random(in: 0..<5, using: &random) {
        case 0: return .registered(node: NodeID(UInt64.random(in: 0...UInt64.max, using: &random)),
                                   heartbeatTimeout: .nanoseconds(Int64.random(in: 1...Int64.max, using: &random)))
        case 1: return .accepted(request: 7)
        case 2: return .rejected(request: 9, reason: "no: \(randomName(&random).text)")
        case 3: return .excluded(reason: "no heartbeat")
        default: return .update(randomUpdate(&random))
        }
    }

    @Test func messagesRoundTripExactly() throws {
        for seed in UInt64(1)...500 {
            var random = SplitMix64(seed: seed)
            let client = Self.randomClientMessage(&random)
            let server = Self.randomServerMessage(&random)
            #expect(try client.encoded().withUnsafeBytes { try ClientMessage(decoding: $0) } == client, "seed \(seed)")
            #expect(try server.encoded().withUnsafeBytes { try ServerMessage(decoding: $0) } == server, "seed \(seed)")
        }
    }

    @Test func truncatedOrCorruptedMessagesAreErrorsNotTraps() {
        for seed in UInt64(1)...300 {
            var random = SplitMix64(seed: seed)
            let bytes = Self.randomServerMessage(&random).encoded()
            for cut in 0..<bytes.count {
                let result = bytes[0..<cut].withUnsafeBytes { raw in Result { () throws(WireError) in try ServerMessage(decoding: raw) } }
                if case .success = result { Issue.record("seed \(seed): a \(cut)-byte prefix of \(bytes.count) decoded"); return }
            }
            // Flipped bytes often land in values (ids, addresses) and still decode; what
            // matters is that decoding returns or throws, and never traps.
            for _ in 0..<20 {
                var corrupted = bytes
                corrupted[Int.random(in: 0..<corrupted.count, using: &random)] = UInt8.random(in: 0...255, using: &random)
                _ = try? corrupted.withUnsafeBytes { try ServerMessage(decoding: $0) }
            }
        }
    }

    @Test func hostileCountsAreRefusedBeforeAllocating() {
        // An update claiming 2^32-1 regions in a 30-byte frame.
        var encoder = WireEncoder()
        encoder.write(UInt8(5))
        encoder.write(UInt64(0))
        encoder.write(UInt64(1))
        encoder.write(UInt8(1))
        encoder.write(UInt32.max)
        let result = encoder.bytes.withUnsafeBytes { raw in Result { () throws(WireError) in try ServerMessage(decoding: raw) } }
        guard case .failure(.malformed(let reason, _)) = result else {
            Issue.record("expected a malformed count, got \(result)")
            return
        }
        #expect(reason.contains("count"))
    }

    /// A group view whose member joined after the view, or whose members are out of
    /// order, is malformed: receivers decide from it which messages they are owed.
    @Test func impossibleGroupMembershipsAreMalformed() {
        func decoded(members: [NodeID], since: [UInt64]) -> Result<ServerMessage, WireError> {
            let group = GroupView(id: GroupID(1), name: GroupName("g")!, viewNumber: 3, members: members, memberSince: since,
                                  mappingVersion: 1, regions: [], hybridAddress: nil)
            let update = MembershipUpdate(baseVersion: 0, version: 1, isFull: true, regions: [], removedRegions: [],
                                          groups: [group], removedGroups: [])
            return ServerMessage.update(update).encoded().withUnsafeBytes { raw in
                Result { () throws(WireError) in try ServerMessage(decoding: raw) }
            }
        }
        #expect((try? decoded(members: [NodeID(1), NodeID(2)], since: [1, 3]).get()) != nil)
        for (members, since, expected) in [([NodeID(1), NodeID(2)], [UInt64(1), 4], "joined in view 4"),
                                           ([NodeID(1), NodeID(2)], [0, 1], "joined in view 0"),
                                           ([NodeID(2), NodeID(1)], [1, 1], "not sorted"),
                                           ([NodeID(2), NodeID(2)], [1, 1], "not sorted")] {
            guard case .failure(.malformed(let reason, _)) = decoded(members: members, since: since) else {
                Issue.record("expected \(members) since \(since) to be malformed")
                continue
            }
            #expect(reason.contains(expected), "\(reason)")
        }
    }

    /// Thousands of group views over the same members decode to views that share their
    /// member, join-view and region lists (one array each, not one per group: issue 15,
    /// a sender's RSS), and are equal to what was sent.
    @Test func equalListsOfDecodedGroupViewsShareOneArray() throws {
        let members = [NodeID(3), NodeID(5), NodeID(9)]
        let regions = [RegionReference(id: RegionID(7), viewNumber: 2, address: nil)]
        var groups: [GroupView] = []
        for index in 0..<2000 {
            let even = index % 2 == 0
            let groupMembers: [NodeID] = even ? members : [NodeID(3)]
            let since: [UInt64] = even ? [1, 2, 4] : [1]
            let publishers: [NodeID] = index % 3 == 0 ? [NodeID(11)] : []
            groups.append(GroupView(id: GroupID(UInt32(index)), name: GroupName("g\(index)")!, viewNumber: 4,
                                    members: groupMembers, memberSince: since, mappingVersion: 1, regions: regions,
                                    hybridAddress: nil, publishers: publishers))
        }
        let update = MembershipUpdate(baseVersion: 0, version: 1, isFull: true, regions: [], removedRegions: [],
                                      groups: groups, removedGroups: [])
        let decoded = try ServerMessage.update(update).encoded().withUnsafeBytes { raw throws(WireError) in
            try ServerMessage(decoding: raw)
        }
        guard case .update(let received) = decoded else {
            Issue.record("expected an update, got \(decoded)")
            return
        }
        #expect(received == update)
        func distinctStorage<T>(_ arrays: [[T]]) -> Int {
            Set(arrays.map { array in array.withUnsafeBufferPointer { Int(bitPattern: $0.baseAddress) } }).count
        }
        #expect(distinctStorage(received.groups.map(\.members)) == 2)
        #expect(distinctStorage(received.groups.map(\.memberSince)) == 2)
        #expect(distinctStorage(received.groups.map(\.regions)) == 1)
        #expect(distinctStorage(received.groups.map(\.publishers).filter { !$0.isEmpty }) == 1)
    }

    @Test func invalidNamesAndTrailingBytesAreMalformed() throws {
        var bad = ClientMessage.join(request: 1, group: GroupName("ok")!).encoded()
        bad[bad.count - 1] = 0x07  // "o\u{7}": a control character
        #expect(throws: WireError.self) { try bad.withUnsafeBytes { try ClientMessage(decoding: $0) } }
        var trailing = ClientMessage.heartbeat.encoded()
        trailing.append(0)
        #expect(throws: WireError.self) { try trailing.withUnsafeBytes { try ClientMessage(decoding: $0) } }
        let empty: [UInt8] = []
        #expect(throws: WireError.self) { try empty.withUnsafeBytes { try ClientMessage(decoding: $0) } }
        // A registration whose heartbeat timeout is 0, or beyond any Duration, or missing.
        let registered = ServerMessage.registered(node: NodeID(3), heartbeatTimeout: .seconds(5)).encoded()
        for timeout: UInt64 in [0, UInt64(Int64.max) + 1] {
            let bad = Array(registered.prefix(9)) + withUnsafeBytes(of: timeout.bigEndian) { Array($0) }
            #expect(throws: WireError.self) { try bad.withUnsafeBytes { try ServerMessage(decoding: $0) } }
        }
        let short = Array(registered.prefix(9))
        #expect(throws: WireError.self) { try short.withUnsafeBytes { try ServerMessage(decoding: $0) } }
        #expect(try registered.withUnsafeBytes { try ServerMessage(decoding: $0) } == .registered(node: NodeID(3), heartbeatTimeout: .seconds(5)))
    }

    @Test func frameDecoderSplitsAndBoundsFrames() throws {
        var decoder = FrameDecoder(maximumFrameBytes: 100)
        let stream = FrameDecoder.frame([1, 2, 3]) + FrameDecoder.frame([]) + FrameDecoder.frame([9])
        // Feed one byte at a time: frames come out whole, in order.
        var frames: [[UInt8]] = []
        for byte in stream {
            [byte].withUnsafeBytes { decoder.append($0) }
            while let frame = try decoder.nextFrame() { frames.append(frame) }
        }
        #expect(frames == [[1, 2, 3], [], [9]])
        #expect(decoder.bufferedByteCount == 0)
        FrameDecoder.frame([UInt8](repeating: 0, count: 101)).withUnsafeBytes { decoder.append($0) }
        #expect(throws: FrameDecoder.Failure.frameTooLarge(length: 101, limit: 100)) { _ = try decoder.nextFrame() }
    }

    /// A buffer grown for one large frame (a full update of thousands of group views) is
    /// let go once the frame is out, whether it arrived in one read or in pieces, and
    /// whether it ended a read or a smaller frame followed it; what follows decodes as before.
    @Test func frameDecoderLetsGoOfALargeFramesBuffer() throws {
        let large = (0..<1_000_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        for pieces in [1, 7, 4096] {
            var decoder = FrameDecoder(maximumFrameBytes: 2_000_000)
            let stream = FrameDecoder.frame(large) + FrameDecoder.frame([5, 6])
            var frames: [[UInt8]] = []
            var largest = 0
            let step = (stream.count + pieces - 1) / pieces
            for offset in stride(from: 0, to: stream.count, by: step) {
                stream[offset..<min(offset + step, stream.count)].withUnsafeBytes { decoder.append($0) }
                largest = max(largest, decoder.retainedCapacity)
                while let frame = try decoder.nextFrame() { frames.append(frame) }
            }
            #expect(frames == [large, [5, 6]], "\(pieces) pieces")
            #expect(largest >= large.count, "the frame was held whole")
            #expect(decoder.retainedCapacity <= FrameDecoder.keptCapacity, "\(pieces) pieces: kept \(decoder.retainedCapacity) bytes")
            #expect(decoder.bufferedByteCount == 0)
            // Small frames afterwards still come out, and keep their small buffer.
            FrameDecoder.frame([1, 2, 3]).withUnsafeBytes { decoder.append($0) }
            #expect(try decoder.nextFrame() == [1, 2, 3])
            #expect(decoder.retainedCapacity <= FrameDecoder.keptCapacity)
        }
    }
}
