import QSMCore
import QSMHarness
import Testing
@testable import QSMGMS

@Suite struct MembershipServiceTests {
    @Test func nodesConvergeOnTheServicesViews() throws {
        let harness = try MembershipHarness()
        harness.addNode(1, groups: ["a", "b"])
        harness.addNode(2, groups: ["a"])
        harness.addNode(3, groups: ["a", "b"])
        harness.addNode(4, publishing: ["a"])
        harness.run(seconds: 1)
        #expect(harness.divergence() == nil)
        let a = harness.service.groupViews.first { $0.name.text == "a" }!
        #expect(a.members == [NodeID(1), NodeID(2), NodeID(3)])
        #expect(a.regions.count == 2)  // R{a} = {2}, R{a,b} = {1, 3}
        // The publisher sees the group but is in no region.
        #expect(harness.end(4).client.groups.values.map(\.name.text) == ["a"])
        #expect(harness.end(4).client.regions.isEmpty)
        // Node 2 leaves a; node 1 leaves b: views move, nodes follow.
        harness.end(2).client.leave(GroupName("a")!)
        harness.end(1).client.leave(GroupName("b")!)
        harness.run(seconds: 1)
        #expect(harness.divergence() == nil)
        let after = harness.service.groupViews.first { $0.name.text == "a" }!
        #expect(after.members == [NodeID(1), NodeID(3)])
        #expect(after.viewNumber > a.viewNumber)
        #expect(harness.end(2).client.groups.isEmpty)
    }

    /// A GMS timeout shorter than the nodes' heartbeat interval (a second by default):
    /// the GMS says its timeout when a node registers, and the node heartbeats four times
    /// within it. Before, every node was excluded and registered again five times a
    /// second (`qsm-node gms --heartbeat-timeout 100ms`), and nobody said so.
    @Test func nodesHeartbeatOftenEnoughForTheGMSsTimeout() throws {
        var configuration = MembershipConfiguration()
        configuration.heartbeatTimeout = .milliseconds(200)
        let harness = try MembershipHarness(configuration)
        harness.addNode(1, groups: ["a"])
        harness.addNode(2, groups: ["a"])
        harness.run(seconds: 3)
        #expect(harness.service.statistics.heartbeatFailures == 0)
        #expect(harness.end(1).client.heartbeatInterval == .milliseconds(50))
        #expect(harness.service.groupViews.first { $0.name.text == "a" }!.members == [NodeID(1), NodeID(2)])
        // A node that stops is still found out.
        harness.end(2).frozen = true
        harness.run(seconds: 0.5)
        #expect(harness.service.statistics.heartbeatFailures == 1)
        #expect(harness.service.groupViews.first { $0.name.text == "a" }!.members == [NodeID(1)])
        // Shorter than four of the shortest heartbeats (10 ms) and then some: refused.
        configuration.heartbeatTimeout = .milliseconds(99)
        #expect(throws: ConfigurationError.self) { try MembershipService(configuration: configuration) }
    }

    @Test func aShortFreezeIsRiddenOutALongOneExcludesAndTheNodeRejoins() throws {
        let harness = try MembershipHarness()
        harness.addNode(1, groups: ["a"])
        harness.addNode(2, groups: ["a"])
        harness.run(seconds: 1)
        // 2 s: under the 5 s default, nothing happens.
        harness.end(2).frozen = true
        harness.run(seconds: 2)
        harness.thaw(2)
        harness.run(seconds: 1)
        #expect(harness.service.statistics.heartbeatFailures == 0)
        #expect(!harness.end(2).events.contains { if case .excluded = $0 { return true }; return false })
        // 8 s: excluded; once thawed it learns so, re-registers and rejoins on its own.
        harness.end(2).frozen = true
        harness.run(seconds: 8)
        let members = harness.service.groupViews.first { $0.name.text == "a" }!.members
        #expect(members == [NodeID(1)])
        #expect(harness.service.statistics.heartbeatFailures == 1)
        harness.thaw(2)
        harness.run(seconds: 2)
        let events = harness.end(2).events
        #expect(events.contains { if case .excluded = $0 { return true }; return false })
        #expect(events.contains(.registered(rejoining: true)))
        #expect(harness.service.groupViews.first { $0.name.text == "a" }!.members == [NodeID(1), NodeID(2)])
        #expect(harness.divergence() == nil)
    }

    @Test func aBrokenConnectionIsAFailureAndTheNodeComesBack() throws {
        let harness = try MembershipHarness()
        harness.addNode(1, groups: ["a"])
        harness.addNode(2, groups: ["a"])
        harness.run(seconds: 1)
        harness.breakConnection(2)
        harness.step()
        #expect(harness.service.statistics.disconnectFailures == 1)
        harness.run(seconds: 2)
        #expect(harness.end(2).events.contains(.disconnected))
        #expect(harness.end(2).events.contains(.registered(rejoining: true)))
        #expect(harness.divergence() == nil)
        #expect(harness.service.liveNodeCount == 2)
    }

    @Test func goodbyeIsACleanLeave() throws {
        let harness = try MembershipHarness()
        harness.addNode(1, groups: ["a"])
        harness.addNode(2, groups: ["a"])
        harness.run(seconds: 1)
        harness.end(2).client.stop()
        harness.run(seconds: 1)
        #expect(harness.service.statistics.cleanLeaves == 1)
        #expect(harness.service.statistics.disconnectFailures == 0)
        #expect(harness.service.liveNodeCount == 1)
        #expect(harness.service.groupViews.first { $0.name.text == "a" }!.members == [NodeID(1)])
        #expect(harness.divergence() == nil)
    }

    @Test func aLostUpdateLeadsToAFullResynchronization() throws {
        let harness = try MembershipHarness()
        harness.addNode(1, groups: ["a"])
        harness.run(seconds: 1)
        harness.end(1).dropNextUpdate = true
        harness.addNode(2, groups: ["a"])
        harness.run(seconds: 1)
        harness.addNode(3, groups: ["a"])
        harness.run(seconds: 1)
        #expect(harness.end(1).client.versionGaps == 1)
        #expect(harness.divergence() == nil)
        #expect(harness.end(1).client.groups.values.first?.members == [NodeID(1), NodeID(2), NodeID(3)])
    }

    @Test func hybridGroupsGetTheirOwnAddress() throws {
        var configuration = MembershipConfiguration()
        configuration.hybridGroups = ["wide"]
        let harness = try MembershipHarness(configuration)
        harness.addNode(1, groups: ["wide", "x"])
        harness.addNode(2, groups: ["wide", "y"])
        harness.addNode(3, groups: ["narrow"])
        harness.run(seconds: 1)
        let wide = harness.service.groupViews.first { $0.name.text == "wide" }!
        #expect(wide.hybridAddress != nil)
        #expect(wide.regions.count == 2)
        #expect(harness.service.groupViews.first { $0.name.text == "narrow" }!.hybridAddress == nil)
        let addresses = harness.service.regionViews.compactMap(\.address).map(\.address) + [wide.hybridAddress!.address]
        #expect(Set(addresses).count == addresses.count)
    }

    // MARK: Bad input

    /// Sends raw client messages on a fresh connection and returns the replies.
    static func exchange(_ service: MembershipService, _ messages: [ClientMessage], connection: UInt64 = 77,
                         now: Instant = Instant(nanoseconds: 5_000_000)) -> [ServerMessage] {
        let id = ConnectionID(connection)
        service.connectionOpened(id, now: now)
        for message in messages {
            message.encoded().withUnsafeBytes { service.frameReceived($0, on: id, now: now) }
        }
        return service.takeActions().compactMap { action in
            if case .send(let target, let bytes) = action, target == id {
                return try? bytes.withUnsafeBytes { try ServerMessage(decoding: $0) }
            }
            return nil
        }
    }

    static func rejections(_ replies: [ServerMessage]) -> [String] {
        replies.compactMap { if case .rejected(_, let reason) = $0 { return reason }; return nil }
    }

    @Test func requestsOutOfOrderOrRepeatedGetClearRefusals() throws {
        let service = try MembershipService(configuration: MembershipConfiguration())
        let a = GroupName("a")!
        let address = QSMSocketAddress(.loopback, port: 1)
        let replies = Self.exchange(service, [
            .join(request: 1, group: a),
            .register(node: NodeID(5), address: address, protocolVersion: membershipProtocolVersion),
            .register(node: NodeID(5), address: address, protocolVersion: membershipProtocolVersion),
            .join(request: 2, group: a),
            .join(request: 3, group: a),
            .leave(request: 4, group: GroupName("b")!),
            .unpublish(request: 5, group: a),
        ])
        let reasons = Self.rejections(replies)
        #expect(reasons.count == 5)
        #expect(reasons[0].contains("register before"))
        #expect(reasons[1].contains("already registered as"))
        #expect(reasons[2].contains("already a member of 'a'"))
        #expect(reasons[3].contains("not a member of 'b'"))
        #expect(reasons[4].contains("not publishing to 'a'"))
        #expect(replies.contains(.accepted(request: 2)))
        // The same node id on a second connection is refused and that connection closed.
        let duplicate = Self.exchange(service, [.register(node: NodeID(5), address: address, protocolVersion: membershipProtocolVersion)], connection: 78)
        #expect(Self.rejections(duplicate).first?.contains("already registered on another live connection") == true)
        #expect(service.statistics.duplicateRegistrations == 1)
        // A client speaking another protocol version is told which one this GMS speaks.
        let version = Self.exchange(service, [.register(node: NodeID(6), address: address, protocolVersion: 99)], connection: 79)
        #expect(Self.rejections(version).first?.contains("protocol version 99 not supported") == true)
    }

    @Test func malformedFramesAreRefusedAndCounted() throws {
        let service = try MembershipService(configuration: MembershipConfiguration())
        let id = ConnectionID(1)
        service.connectionOpened(id, now: .zero)
        for frame: [UInt8] in [[], [99], [2, 0, 0], [1, 0, 1] + [UInt8](repeating: 0xFF, count: 3)] {
            frame.withUnsafeBytes { service.frameReceived($0, on: id, now: .zero) }
        }
        #expect(service.statistics.malformedFrames == 4)
        #expect(service.takeActions().count == 4)
        #expect(service.liveNodeCount == 0)
    }

    @Test func limitsAreEnforcedWithClearMessages() throws {
        var configuration = MembershipConfiguration()
        configuration.maximumGroupsPerNode = 3
        configuration.maximumGroups = 4
        configuration.maximumNodes = 2
        let service = try MembershipService(configuration: configuration)
        let address = QSMSocketAddress(.loopback, port: 1)
        // A flood of joins from one node: the first three pass, the rest are refused.
        let flood = Self.exchange(service, [.register(node: NodeID(1), address: address, protocolVersion: membershipProtocolVersion)]
                                  + (0..<50).map { .join(request: UInt32($0 + 1), group: GroupName("g\($0)")!) })
        let reasons = Self.rejections(flood)
        #expect(reasons.count == 47)
        #expect(reasons.allSatisfy { $0.contains("limit of 3 groups per node") })
        // Group limit across nodes.
        let second = Self.exchange(service, [.register(node: NodeID(2), address: address, protocolVersion: membershipProtocolVersion),
                                             .join(request: 1, group: GroupName("h1")!),
                                             .join(request: 2, group: GroupName("h2")!)], connection: 2)
        #expect(Self.rejections(second) == ["the GMS holds its limit of 4 groups"])
        // Node limit.
        let third = Self.exchange(service, [.register(node: NodeID(3), address: address, protocolVersion: membershipProtocolVersion)], connection: 3)
        #expect(Self.rejections(third) == ["the GMS is full (2 nodes)"])
    }

    @Test func silentConnectionsThatNeverRegisterAreClosed() throws {
        let service = try MembershipService(configuration: MembershipConfiguration())
        service.connectionOpened(ConnectionID(1), now: .zero)
        service.tick(now: Instant(nanoseconds: 6_000_000_000))
        #expect(service.takeActions().contains(.close(ConnectionID(1))))
        #expect(service.statistics.idleConnectionsClosed == 1)
    }

    @Test func invalidConfigurationIsRejected() {
        var configuration = MembershipConfiguration()
        configuration.addressPoolStart = IPv4Address(10, 0, 0, 0)
        #expect(throws: ConfigurationError.self) { try MembershipService(configuration: configuration) }
        configuration = MembershipConfiguration()
        configuration.addressPoolStart = IPv4Address(239, 255, 255, 0)
        configuration.addressPoolSize = 1000
        #expect(throws: ConfigurationError.self) { try configuration.validate() }
        configuration = MembershipConfiguration()
        configuration.partitionSize = 0
        #expect(throws: ConfigurationError.self) { try configuration.validate() }
    }
}
