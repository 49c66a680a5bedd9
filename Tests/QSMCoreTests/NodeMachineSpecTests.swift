import Testing
@testable import QSMProtocol
import QSMCore
@testable import QSMSimulation

/// One test per rule of the node machine (`NodeMachine`'s header states them). Where a
/// rule is about several nodes, they are whole machines and the real membership service
/// on the simulated network, time stepped from event to event; where it is about one
/// machine, the test drives that machine alone.
@Suite struct NodeMachineSpecTests {
    static func scenario(_ nodes: Int, seconds: Double = 1, rate: Double = 500) -> SimulationScenario {
        var scenario = SimulationScenario()
        scenario.nodes = nodes
        scenario.seconds = seconds
        scenario.rate = rate
        scenario.drainSeconds = 20
        return scenario
    }

    // MARK: The datagram size limit

    /// A token with more senders' records than one datagram holds travels in parts and
    /// is acted on whole: every sender's messages still become stable and acknowledged.
    /// (Before, such a token was skipped at every send and the ring stalled.)
    @Test func aTokenWithMoreRecordsThanADatagramHoldsCrossesTheRingInParts() throws {
        var scenario = Self.scenario(56, rate: 10)
        scenario.senders = 50
        // 1,600-byte datagrams hold 42 records: 50 senders' take two parts.
        scenario.maximumDatagramBytes = 1_600
        let simulator = try Simulator(scenario: scenario, seed: 3)
        let result = simulator.run()
        #expect(result.violations.isEmpty, "\(result.violations.prefix(3))")
        #expect(result.tokensSplit > 0)
        #expect(result.maximumTokenRecords == 50)
        #expect(result.published > 0 && simulator.debugNodes.allSatisfy { $0.isQuiescent })
    }

    /// The parts of a 300-record token, each within the packet limit, reassemble to the
    /// very token in any order; a duplicate part is dropped and counted, and a part of a
    /// newer round replaces an unfinished older token (whose parts are counted).
    @Test func tokenPartsReassembleExactlyInAnyOrder() throws {
        var configuration = ProtocolConfiguration()
        configuration.maximumPacketBytes = 8_176
        let leader = try ProtocolNode(id: NodeID(1), configuration: configuration, seed: 1)
        let member = try ProtocolNode(id: NodeID(2), configuration: configuration, seed: 1)
        let region = RegionView(id: RegionID(7), viewNumber: 1, hierarchy: 0, groups: [GroupID(1)],
                                members: [NodeEntry(id: NodeID(1), address: QSMSocketAddress(.loopback, port: 1)),
                                          NodeEntry(id: NodeID(2), address: QSMSocketAddress(.loopback, port: 2))],
                                partitions: [Partition(members: [NodeID(1), NodeID(2)], leader: NodeID(1))],
                                regionLeader: NodeID(1), address: nil)
        member.installMembership(regions: [region], groups: [], now: .zero)
        var random = SplitMix64(seed: 9)
        let records = (1...300).map { sender in
            TokenRecord(sender: NodeID(UInt64(sender)), contiguous: random.next() % 1000, maximumSeen: random.next() % 2000,
                        stable: random.next() % 500, coverage: UInt32(random.next() % 5))
        }
        let original = TokenPacket(kind: .partitionToken, region: RegionID(7), regionView: 1, partition: 0, round: 4,
                                   startedAt: 123, records: records)
        var first = original
        leader.splitIntoParts(&first, to: NodeID(2))
        var parts = [first]
        while let (part, _, _) = leader.tokenPartsOut.popFirst() { parts.append(part) }
        #expect(parts.count == 2)
        var decoded: [TokenPacket] = []
        for part in parts {
            let bytes = ProtocolPacket.token(part).encoded()
            #expect(bytes.count <= configuration.maximumPacketBytes)
            guard case .token(let token) = try bytes.withUnsafeBytes({ try ProtocolPacket(decoding: $0) }) else {
                Issue.record("a token part did not decode as a token")
                return
            }
            decoded.append(token)
        }
        // Last part first, then a duplicate of it, then the first: whole only at the end.
        #expect(member.assemble(decoded[1]) == nil)
        #expect(member.assemble(decoded[1]) == nil)
        #expect(member.statistics.duplicatesDropped == 1)
        let whole = try #require(member.assemble(decoded[0]))
        #expect(whole == original)
        // An unfinished token is replaced by the next round's.
        var newer = decoded[0]
        newer.round += 1
        #expect(member.assemble(decoded[0]) == nil)
        #expect(member.assemble(newer) == nil)
        #expect(member.statistics.tokenPartsDropped == 1)
    }

    /// A hybrid transmission whose region headers do not all fit beside the payload goes
    /// out as several datagrams to the group's address, each a complete transmission for
    /// its regions; nothing is lost or delivered twice.
    @Test func anOversizedHybridHeaderIsSplitAcrossDatagrams() throws {
        var scenario = Self.scenario(30, rate: 300)
        scenario.groups = 6
        scenario.overlap = .irregular(probability: 0.5)
        scenario.hybridGroups = Set(0..<6)
        scenario.senders = 2
        scenario.messageBytes = 1_400
        // 1,600 bytes leave room for two region headers beside a full fragment.
        scenario.maximumDatagramBytes = 1_600
        let simulator = try Simulator(scenario: scenario, seed: 11)
        let result = simulator.run()
        #expect(result.violations.isEmpty, "\(result.violations.prefix(3))")
        #expect(simulator.debugNodes.reduce(0) { $0 + $1.statistics.hybridTransmissionsSplit } > 0)
        #expect(result.published > 0 && result.delivered > result.published)
    }

    /// A datagram that would not fit the buffer the driver offers is counted, never
    /// skipped silently, and never written past the buffer.
    @Test func aDatagramTooLargeForTheBufferIsCountedNotSkipped() throws {
        var configuration = NodeMachineConfiguration(id: NodeID(1), address: QSMSocketAddress(.loopback, port: 5))
        configuration.reportsCommits = true
        // Views are installed by hand here, with no rings to say they are in everywhere:
        // no pause for them (that rule has tests of its own, `ViewChangePauseTests`).
        configuration.protocolConfiguration.viewChangePauseLimit = .zero
        let machine = try NodeMachine(configuration: configuration)
        machine.start(now: .zero)
        let group = GroupName("g")!
        machine.join(group, now: .zero)
        // The membership a GMS would send: this node alone in one region of the group.
        try installAlone(machine, in: group)
        #expect(machine.publish([UInt8](repeating: 1, count: 1_000), to: group, now: .zero) == .accepted)
        var small = [UInt8](repeating: 0, count: 200)
        let written = small.withUnsafeMutableBytes { machine.pollDatagram(into: $0, now: .zero) }
        #expect(written == nil)
        #expect(machine.statistics.droppedOversized == 1)
    }

    // MARK: Authentication

    /// With a secret, a datagram with one bit flipped anywhere is dropped and counted, and
    /// the protocol never sees it.
    @Test func aCorruptedDatagramIsCountedAndNeverActedOn() throws {
        let secret = [UInt8](repeating: 42, count: 32)
        let machine = try Self.authenticatedMachine(secret: secret)
        let packet = ProtocolPacket.senderStatus(SenderStatusPacket(sender: NodeID(9), region: RegionID(1), regionView: 1,
                                                                    viewStartSequence: 1, maximumSequence: 5)).encoded()
        let datagram = Self.seal(packet, sender: NodeID(9), epoch: 5 << 32, counter: 1, secret: secret)
        var random = SplitMix64(seed: 4)
        for flip in 0..<64 {
            var corrupted = datagram
            let bit = Int(random.next() % UInt64(corrupted.count * 8))
            corrupted[bit / 8] ^= UInt8(1 << (bit % 8))
            corrupted.withUnsafeBytes { machine.datagramReceived($0, from: QSMSocketAddress(.loopback, port: 7), now: .zero) }
            #expect(machine.statistics.droppedUnauthenticated == flip + 1)
        }
        #expect(machine.protocolNode.statistics == ProtocolStatistics())
        // The genuine datagram passes (and the protocol sees it).
        datagram.withUnsafeBytes { machine.datagramReceived($0, from: QSMSocketAddress(.loopback, port: 7), now: .zero) }
        #expect(machine.statistics.droppedUnauthenticated == 64)
        #expect(machine.statistics.droppedReplayed + machine.statistics.droppedTooOld + machine.statistics.droppedDeadIncarnation == 0)
    }

    /// A machine (node 2) of a cluster with `secret`.
    static func authenticatedMachine(secret: [UInt8], encrypts: Bool = false) throws -> NodeMachine {
        var configuration = NodeMachineConfiguration(id: NodeID(2), address: QSMSocketAddress(.loopback, port: 6))
        configuration.clusterSecret = secret
        configuration.encryptsPayloads = encrypts
        configuration.entropy = [UInt8](repeating: 3, count: 32)
        return try NodeMachine(configuration: configuration)
    }

    /// `packet` as a node with `secret` sends it: replay envelope, then tag.
    static func seal(_ packet: [UInt8], sender: NodeID, epoch: UInt64, counter: UInt64, secret: [UInt8],
                     mode: DatagramSeal.Mode = .authenticate) -> [UInt8] {
        let seal = DatagramSeal(secret: secret, sender: sender, epoch: epoch, mode: mode, backend: .portable, blockFunction: nil)
        var datagram = packet + [UInt8](repeating: 0, count: DatagramSeal.overheadBytes)
        _ = datagram.withUnsafeMutableBytes { seal.seal($0, length: packet.count, counter: counter) }
        return datagram
    }

    /// With encryption no byte of the packet is readable on the wire (only the envelope:
    /// sender, incarnation, counter), a node of the same cluster that encrypts acts on
    /// it, and a node that only authenticates (or the other way round) drops it as
    /// unauthenticated: the two cannot be mixed by accident.
    @Test func encryptedDatagramsHideThePacketAndOpenOnlyInTheSameMode() throws {
        let secret = [UInt8](repeating: 42, count: 32)
        let packet = ProtocolPacket.senderStatus(SenderStatusPacket(sender: NodeID(9), region: RegionID(0x5151_5151),
                                                                    regionView: 0x0707_0707, viewStartSequence: 1,
                                                                    maximumSequence: 0x6161_6161_6161)).encoded()
        let encrypted = Self.seal(packet, sender: NodeID(9), epoch: 5 << 32, counter: 1, secret: secret, mode: .encrypt)
        let clear = Self.seal(packet, sender: NodeID(9), epoch: 5 << 32, counter: 2, secret: secret)
        #expect(encrypted.count == clear.count)
        #expect(Array(clear.prefix(packet.count)) == packet)
        // No 4-byte run of the packet survives (a chance match is ~2^-32 per place).
        let runs = Set((0...(packet.count - 4)).map { Array(packet[$0..<($0 + 4)]) })
        #expect((0...(packet.count - 4)).allSatisfy { !runs.contains(Array(encrypted[$0..<($0 + 4)])) })
        let source = QSMSocketAddress(.loopback, port: 7)
        let encrypting = try Self.authenticatedMachine(secret: secret, encrypts: true)
        let authenticating = try Self.authenticatedMachine(secret: secret)
        encrypted.withUnsafeBytes { encrypting.datagramReceived($0, from: source, now: .zero) }
        clear.withUnsafeBytes { authenticating.datagramReceived($0, from: source, now: .zero) }
        #expect(encrypting.statistics.droppedUnauthenticated == 0 && authenticating.statistics.droppedUnauthenticated == 0)
        #expect(encrypting.protocolNode.statistics == authenticating.protocolNode.statistics)
        let before = (encrypting.protocolNode.statistics, authenticating.protocolNode.statistics)
        clear.withUnsafeBytes { encrypting.datagramReceived($0, from: source, now: .zero) }
        encrypted.withUnsafeBytes { authenticating.datagramReceived($0, from: source, now: .zero) }
        #expect(encrypting.statistics.droppedUnauthenticated == 1 && authenticating.statistics.droppedUnauthenticated == 1)
        #expect(encrypting.protocolNode.statistics == before.0 && authenticating.protocolNode.statistics == before.1)
        // Every flipped bit of an encrypted datagram is caught.
        var random = SplitMix64(seed: 12)
        for flip in 1...64 {
            var corrupted = encrypted
            let bit = Int(random.next() % UInt64(corrupted.count * 8))
            corrupted[bit / 8] ^= UInt8(1 << (bit % 8))
            corrupted.withUnsafeBytes { encrypting.datagramReceived($0, from: source, now: .zero) }
            #expect(encrypting.statistics.droppedUnauthenticated == 1 + flip)
        }
        #expect(encrypting.protocolNode.statistics == before.0)
        // Longer than any datagram a peer writes (the decryption buffer's size): not
        // opened, and counted.
        let oversized = encrypted + [UInt8](repeating: 0, count: 8_192)
        oversized.withUnsafeBytes { encrypting.datagramReceived($0, from: source, now: .zero) }
        #expect(encrypting.statistics.droppedUnauthenticated == 66)
        #expect(encrypting.protocolNode.statistics == before.0)
    }

    /// A whole encrypted cluster on a network that loses and corrupts datagrams: every
    /// byte delivered is checked, and every corrupted datagram is dropped for its tag.
    @Test func anEncryptedClusterDeliversEverythingIntact() throws {
        var scenario = Self.scenario(8, seconds: 1.5, rate: 800)
        scenario.authenticated = true
        scenario.encrypted = true
        scenario.aesGCMBackend = HardwareAESGCM.backend
        scenario.corruption = 0.02
        scenario.loss = 0.01
        let result = try Simulator(scenario: scenario, seed: 22).run()
        #expect(result.violations.isEmpty, "\(result.violations.prefix(3))")
        #expect(result.delivered >= result.published && result.published > 0)
        #expect(result.unauthenticatedDropped > 0 && result.unauthenticatedDropped <= result.corruptedDatagrams)
    }

    /// Replays of authenticated datagrams never reach the protocol: a counter seen
    /// before, one older than the window, and any datagram of an incarnation older than
    /// one already heard are dropped, each counted by its reason.
    @Test func replaysAndDeadIncarnationsAreDroppedAndCountedByReason() throws {
        let secret = [UInt8](repeating: 42, count: 32)
        let machine = try Self.authenticatedMachine(secret: secret)
        let source = QSMSocketAddress(.loopback, port: 7)
        func status(_ maximum: UInt64) -> [UInt8] {
            ProtocolPacket.senderStatus(SenderStatusPacket(sender: NodeID(9), region: RegionID(1), regionView: 1,
                                                           viewStartSequence: 1, maximumSequence: maximum)).encoded()
        }
        func receive(_ datagram: [UInt8]) { datagram.withUnsafeBytes { machine.datagramReceived($0, from: source, now: .zero) } }
        let old = Self.seal(status(3), sender: NodeID(9), epoch: 7 << 32 | 1, counter: 1, secret: secret)
        receive(old)
        var seen = machine.protocolNode.statistics
        receive(old)
        #expect(machine.statistics.droppedReplayed == 1)
        #expect(machine.protocolNode.statistics == seen)
        // Far ahead, then the counter that is now out of the window.
        receive(Self.seal(status(4), sender: NodeID(9), epoch: 7 << 32 | 1, counter: 10_000, secret: secret))
        seen = machine.protocolNode.statistics
        receive(Self.seal(status(5), sender: NodeID(9), epoch: 7 << 32 | 1, counter: 2, secret: secret))
        #expect(machine.statistics.droppedTooOld == 1)
        // The sender restarts (a higher epoch); its dead incarnation's datagrams are out.
        receive(Self.seal(status(6), sender: NodeID(9), epoch: 8 << 32 | 99, counter: 1, secret: secret))
        seen = machine.protocolNode.statistics
        receive(Self.seal(status(7), sender: NodeID(9), epoch: 7 << 32 | 1, counter: 10_001, secret: secret))
        #expect(machine.statistics.droppedDeadIncarnation == 1)
        #expect(machine.protocolNode.statistics == seen)
        // On another channel too (a multicast address's, whose window never saw the
        // restart: each channel's window knows only its own counters).
        let multicast = UInt64(ReplayChannel.of(QSMSocketAddress(IPv4Address(239, 1, 1, 1), port: 9))) << ReplayChannel.countBits
        receive(Self.seal(status(8), sender: NodeID(9), epoch: 7 << 32 | 1, counter: multicast | 1, secret: secret))
        #expect(machine.statistics.droppedDeadIncarnation == 2)
        #expect(machine.protocolNode.statistics == seen)
        #expect(machine.statistics.droppedUnauthenticated == 0)
    }

    /// On a network that corrupts datagrams, every corrupted one that arrives is dropped
    /// for its tag and nothing corrupted is delivered (the checker compares every byte).
    @Test func corruptionOnTheNetworkIsDetectedAndRecovered() throws {
        var scenario = Self.scenario(8, seconds: 1.5, rate: 800)
        scenario.authenticated = true
        scenario.corruption = 0.03
        let result = try Simulator(scenario: scenario, seed: 21).run()
        #expect(result.violations.isEmpty, "\(result.violations.prefix(3))")
        #expect(result.corruptedDatagrams > 0)
        #expect(result.unauthenticatedDropped > 0 && result.unauthenticatedDropped <= result.corruptedDatagrams)
    }

    // MARK: Views at different times

    /// A view change reaches one member 200 ms after the others (its GMS connection is
    /// slow): data sent in the new view is held, not delivered early, and nothing owed is
    /// lost.
    @Test func aViewThatReachesTwoNodes200MillisecondsApartLosesNothing() throws {
        var scenario = Self.scenario(5, seconds: 2, rate: 2_000)
        scenario.gmsLatencyOfNode = [1: 200_000, 2: 100]
        scenario.lateJoiners = [.init(node: 3, at: 0.8)]
        scenario.groups = 2
        scenario.groupChanges = [.init(node: 2, at: 1.2, kind: .join(group: 1)), .init(node: 1, at: 1.4, kind: .leave(group: 1))]
        let simulator = try Simulator(scenario: scenario, seed: 8)
        let result = simulator.run()
        #expect(result.violations.isEmpty, "\(result.violations.prefix(3))")
        #expect(result.published > 3_000)
        let held = simulator.debugNodes.reduce(0) { $0 + $1.statistics.heldForView }
        #expect(held > 0, "the slow node never saw data of a view it had not installed: the test lost its point")
    }

    // MARK: Flow control

    /// The machine admits a message into the protocol only while the window has room;
    /// the rest wait in order, and each acknowledged message is released exactly once
    /// (and counted once in the group's traffic).
    @Test func flowControlAdmitsAWindowAndReleasesEachMessageOnce() throws {
        var configuration = NodeMachineConfiguration(id: NodeID(1), address: QSMSocketAddress(.loopback, port: 5))
        configuration.flowControl = WindowFlowControl(messages: 8, bytes: 1 << 20)
        configuration.maximumPendingPublishes = 20
        let machine = try NodeMachine(configuration: configuration)
        let group = GroupName("g")!
        machine.start(now: .zero)
        machine.join(group, now: .zero)
        // Before the view, everything waits; past the backlog bound, "would block".
        for _ in 0..<20 { #expect(machine.publish([1, 2, 3], to: group, now: .zero) == .accepted) }
        #expect(machine.publish([1, 2, 3], to: group, now: .zero) == .wouldBlock)
        #expect(machine.statistics.pendingPublishes == 20)
        // This node alone in the group's one region: its messages are acknowledged by its
        // own token rounds, after they are sent.
        try installAlone(machine, in: group)
        #expect(machine.protocolNode.unacknowledgedMessageCount == 8, "the window admits 8")
        #expect(machine.statistics.pendingPublishes == 12)
        var released = 0
        var releasedBytes = 0
        var mostInFlight = 0
        var buffer = [UInt8](repeating: 0, count: 8_192)
        var now = Instant.zero
        for _ in 0..<1_000 where released < 20 {
            now = now.advanced(by: .milliseconds(5))
            while buffer.withUnsafeMutableBytes({ machine.pollDatagram(into: $0, now: now) }) != nil {}
            machine.tick(now: now)
            while let event = machine.pollEvent() {
                if case .released(let count, let bytes) = event { released += count; releasedBytes += bytes }
            }
            mostInFlight = max(mostInFlight, machine.protocolNode.unacknowledgedMessageCount)
        }
        #expect(released == 20, "every message released exactly once")
        #expect(releasedBytes == 20 * 3, "with its payload's bytes, for the window mirror")
        #expect(mostInFlight <= 8)
        #expect(machine.messagesInFlight == 0)
        #expect(machine.protocolNode.statistics.acknowledged == 20)
        // Counted per group, in the record each publication finds anyway; leaving the
        // group forgets its counters.
        #expect(machine.traffic.groups[group] == GroupTraffic(sentMessages: 20, sentBytes: 60))
        machine.leave(group, now: now)
        #expect(machine.traffic.groups[group] == nil)
    }

    /// New data wakes a ring slowed to the idle pace (1 s between rounds when nothing is
    /// unstable): the first packet after a quiet spell brings the next round within the
    /// busy interval, so the message is acknowledged in milliseconds. Checked after earlier
    /// packets of the same region, since `quickenRounds` is memoized per region and time.
    @Test func newDataWakesARoundSlowedForIdleness() throws {
        let machine = try NodeMachine(configuration: NodeMachineConfiguration(id: NodeID(1), address: QSMSocketAddress(.loopback, port: 5)))
        let group = GroupName("g")!
        machine.start(now: .zero)
        machine.join(group, now: .zero)
        try installAlone(machine, in: group)
        var buffer = [UInt8](repeating: 0, count: 8_192)
        var now = Instant.zero
        /// Runs the machine in 1 ms steps until `count` messages are released; the time it took.
        func untilReleased(_ count: Int, within limit: Duration) -> Duration? {
            let start = now
            var released = 0
            while now.nanoseconds(since: start) < limit.totalNanoseconds {
                now = now.advanced(by: .milliseconds(1))
                while buffer.withUnsafeMutableBytes({ machine.pollDatagram(into: $0, now: now) }) != nil {}
                machine.tick(now: now)
                while let event = machine.pollEvent() { if case .released(let messages, _) = event { released += messages } }
                if released >= count { return .nanoseconds(now.nanoseconds(since: start)) }
            }
            return nil
        }
        for quiet in [Duration.seconds(3), .milliseconds(2_500), .milliseconds(3_300)] {
            // Two messages published at the same instant (the second finds the memo).
            for _ in 0..<2 { #expect(machine.publish([1, 2, 3], to: group, now: now) == .accepted) }
            let took = try #require(untilReleased(2, within: .seconds(5)))
            #expect(took < .milliseconds(100), "acknowledged after \(took)")
            // Quiet until the rounds have slowed to the idle pace.
            #expect(untilReleased(1, within: quiet) == nil)
        }
    }

    /// Installing thousands of group views queues an event per view; once the
    /// application has taken them, the queue goes back to a small one instead of keeping
    /// the burst's capacity (issue 15, RSS). Every view event is still delivered.
    @Test func theEventQueueShrinksAfterTheBurstOfABigInstall() throws {
        let machine = try NodeMachine(configuration: NodeMachineConfiguration(id: NodeID(1),
                                                                              address: QSMSocketAddress(.loopback, port: 5)))
        machine.start(now: .zero)
        let address = QSMSocketAddress(IPv4Address(239, 1, 1, 1), port: 9)
        let count = 8_192
        let region = RegionView(id: RegionID(1), viewNumber: 1, hierarchy: 0, groups: (0..<count).map { GroupID(UInt32($0)) },
                                members: [NodeEntry(id: NodeID(1), address: QSMSocketAddress(.loopback, port: 5))],
                                partitions: [Partition(members: [NodeID(1)], leader: NodeID(1))], regionLeader: NodeID(1),
                                address: address)
        var views: [GroupView] = []
        for index in 0..<count {
            let name = GroupName("g\(index)")!
            machine.join(name, now: .zero)
            views.append(GroupView(id: GroupID(UInt32(index)), name: name, viewNumber: 1, members: [NodeID(1)], mappingVersion: 1,
                                   regions: [RegionReference(id: RegionID(1), viewNumber: 1, address: address)], hybridAddress: nil))
        }
        try registerAndInstall(machine, regions: [region], groups: views)
        #expect(machine.eventQueueCapacity > machine.keptEventCapacity, "the burst grew the queue")
        var groupViews = 0
        while let event = machine.pollEvent() { if case .membership(.groupView) = event { groupViews += 1 } }
        #expect(groupViews == count)
        #expect(machine.eventQueueCapacity <= 64)
        while machine.pollGMSAction() != nil {}
        #expect(machine.gmsActionQueueCapacity <= NodeMachine.keptGMSActionCapacity)
    }

    /// Installs node 1 (the machine) alone in region 1 (one partition, itself its leader)
    /// and in `group` (id 1), mapped to that region.
    func installAlone(_ machine: NodeMachine, in group: GroupName) throws {
        let address = QSMSocketAddress(IPv4Address(239, 1, 1, 1), port: 9)
        let region = RegionView(id: RegionID(1), viewNumber: 1, hierarchy: 0, groups: [GroupID(1)],
                                members: [NodeEntry(id: NodeID(1), address: QSMSocketAddress(.loopback, port: 5))],
                                partitions: [Partition(members: [NodeID(1)], leader: NodeID(1))], regionLeader: NodeID(1),
                                address: address)
        let view = GroupView(id: GroupID(1), name: group, viewNumber: 1, members: [NodeID(1)], mappingVersion: 1,
                             regions: [RegionReference(id: RegionID(1), viewNumber: 1, address: address)], hybridAddress: nil)
        try registerAndInstall(machine, regions: [region], groups: [view])
    }

    /// Feeds a machine the frames a GMS would send: registered, then one full update
    /// (with `secret`, the machine's cluster secret, after the GMS handshake, and sealed).
    func registerAndInstall(_ machine: NodeMachine, regions: [RegionView], groups: [GroupView], secret: [UInt8]? = nil) throws {
        while machine.pollGMSAction() != nil {}
        machine.gmsConnected(now: .zero)
        var channel = secret.map { GMSChannel(role: .server, secret: $0, nonce: [UInt8](repeating: 5, count: GMSChannel.nonceBytes)) }
        while var server = channel, !server.isOpen {
            // The node's hello, then its proof: each answered by the GMS's side.
            guard case .send(let frame)? = machine.pollGMSAction() else { break }
            let received = frame.withUnsafeBytes { server.receive($0) }
            channel = server
            guard case .handshake(let reply, _) = received else { break }
            reply?.withUnsafeBytes { machine.gmsFrameReceived($0, now: .zero) }
        }
        try #require(channel?.isOpen ?? true, "the GMS handshake did not complete")
        for message in [ServerMessage.registered(node: machine.id, heartbeatTimeout: .seconds(5)),
                        .update(MembershipUpdate(baseVersion: 0, version: 1, isFull: true, regions: regions, removedRegions: [],
                                                 groups: groups, removedGroups: []))] {
            let frame = channel == nil ? message.encoded() : channel!.seal(message.encoded())
            frame.withUnsafeBytes { machine.gmsFrameReceived($0, now: .zero) }
        }
    }
}
