import Testing
@testable import QSMProtocol

/// The publish targets of groups mapped to the same regions share one region list, even
/// when each view arrived with its own copy: thousands of groups over one region keep one
/// list (hot in the cache) instead of thousands.
@Suite struct PublishTargetSharingTests {
    typealias Fixture = SenderCrashRecoveryTests

    @Test func equalRegionListsShareOneArray() throws {
        let node = try ProtocolNode(id: NodeID(1), configuration: ProtocolConfiguration(), seed: 1)
        let count = 500
        var views: [GroupView] = []
        for index in 0..<count {
            // A fresh array per view, as views built apart would have.
            var regions: [RegionReference] = []
            regions.append(RegionReference(id: Fixture.region, viewNumber: 1, address: nil))
            views.append(GroupView(id: GroupID(UInt32(index)), name: GroupName("g\(index)")!, viewNumber: 1,
                                   members: [NodeID(1), NodeID(2)], mappingVersion: 1, regions: regions, hybridAddress: nil))
        }
        #expect(Set(views.map { $0.regions.withUnsafeBufferPointer { Int(bitPattern: $0.baseAddress) } }).count == count)
        node.installMembership(regions: [Fixture.view(1, members: [1, 2], partitions: [[1, 2]])], groups: views, now: Fixture.ms(1))
        let targets = (0..<count).compactMap { node.publishTargets[GroupID(UInt32($0))] }
        #expect(targets.count == count)
        #expect(targets.allSatisfy { $0.inView && $0.regions == views[0].regions })
        #expect(Set(targets.map { $0.regions.withUnsafeBufferPointer { Int(bitPattern: $0.baseAddress) } }).count == 1)
    }
}
