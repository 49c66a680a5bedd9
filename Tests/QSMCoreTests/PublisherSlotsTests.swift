import Testing
@testable import QSMProtocol

/// Publishing through handles (`QSMNode.publisher(for:)`): the node machine finds a
/// group's id by the handle's slot, and never sends to an id that no longer is the
/// name's.
@Suite struct PublisherSlotsTests {
    @Test func aSlotAnswersOnlyForItsNameAndEpoch() {
        var slots = PublisherSlots()
        let a = GroupName("a")!, b = GroupName("b")!
        #expect(slots.id(of: a, slot: 0, epoch: 1) == nil)
        slots.remember(a, id: GroupID(7), slot: 0, epoch: 1)
        slots.remember(b, id: GroupID(9), slot: 300, epoch: 1)
        #expect(slots.id(of: a, slot: 0, epoch: 1) == GroupID(7))
        #expect(slots.id(of: b, slot: 300, epoch: 1) == GroupID(9))
        #expect(slots.id(of: b, slot: 0, epoch: 1) == nil, "another name at the slot")
        #expect(slots.id(of: a, slot: 0, epoch: 2) == nil, "views installed since")
        slots.remember(a, id: GroupID(1), slot: -1, epoch: 1)
        slots.remember(a, id: GroupID(1), slot: PublisherSlots.limit, epoch: 1)
        #expect(slots.id(of: a, slot: -1, epoch: 1) == nil)
        #expect(slots.id(of: a, slot: PublisherSlots.limit, epoch: 1) == nil, "beyond the limit: by name")
    }

    /// A restarted GMS gives two groups each other's ids. Messages published through
    /// the same handles after that are counted (and numbered) under their own names.
    @Test func handlesFollowTheirNamesWhenARestartedGMSSwapsIds() throws {
        let machine = try NodeMachine(configuration: NodeMachineConfiguration(id: NodeID(1),
                                                                              address: QSMSocketAddress(.loopback, port: 5)))
        machine.start(now: .zero)
        let a = GroupName("a")!, b = GroupName("b")!
        machine.join(a, now: .zero)
        machine.join(b, now: .zero)
        try install(machine, ids: [a: 1, b: 2])
        for _ in 0..<3 { #expect(machine.publish([1], to: a, slot: 0, now: .zero) == .accepted) }
        #expect(machine.publish([2], to: b, slot: 1, now: .zero) == .accepted)
        try install(machine, ids: [a: 2, b: 1])
        for _ in 0..<2 { #expect(machine.publish([1], to: a, slot: 0, now: .zero) == .accepted) }
        #expect(machine.publish([2], to: b, slot: 1, now: .zero) == .accepted)
        // Slot 0 given with b's name (a handle of another node): by name, and correct.
        #expect(machine.publish([2], to: b, slot: 0, now: .zero) == .accepted)
        #expect(machine.publish([1], to: a, slot: 0, now: .zero) == .accepted)
        #expect(machine.statistics.pendingPublishes == 0)
        #expect(machine.traffic.groups[a]?.sentMessages == 6)
        #expect(machine.traffic.groups[b]?.sentMessages == 3)
    }

    /// Registers with a (new) GMS and installs one region holding groups named and
    /// numbered as `ids` says, this node their only member.
    func install(_ machine: NodeMachine, ids: [GroupName: UInt32]) throws {
        let address = QSMSocketAddress(IPv4Address(239, 1, 1, 1), port: 9)
        let me = NodeEntry(id: NodeID(1), address: QSMSocketAddress(.loopback, port: 5))
        let region = RegionView(id: RegionID(1), viewNumber: 1, hierarchy: 0, groups: ids.values.map { GroupID($0) }, members: [me],
                                partitions: [Partition(members: [NodeID(1)], leader: NodeID(1))], regionLeader: NodeID(1),
                                address: address)
        let views = ids.map { name, id in
            GroupView(id: GroupID(id), name: name, viewNumber: 1, members: [NodeID(1)], mappingVersion: 1,
                      regions: [RegionReference(id: RegionID(1), viewNumber: 1, address: address)], hybridAddress: nil)
        }
        while machine.pollGMSAction() != nil {}
        machine.gmsConnected(now: .zero)
        for message in [ServerMessage.registered(node: machine.id, heartbeatTimeout: .seconds(5)),
                        .update(MembershipUpdate(baseVersion: 0, version: 1, isFull: true, regions: [region], removedRegions: [],
                                                 groups: views, removedGroups: []))] {
            message.encoded().withUnsafeBytes { machine.gmsFrameReceived($0, now: .zero) }
        }
    }
}
