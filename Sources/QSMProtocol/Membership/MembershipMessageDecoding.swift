
// Decoding never trusts a count: each is checked against the bytes left (times the
// smallest encoding of one element) before anything is allocated for it.

extension ClientMessage {
    package init(decoding bytes: UnsafeRawBufferPointer) throws(WireError) {
        var reader = WireReader(bytes)
        let tag = try reader.readUInt8()
        func requestFields() throws(WireError) -> (UInt32, GroupName) {
            (try reader.readUInt32(), try reader.readGroupName())
        }
        switch tag {
        case 1:
            let version = try reader.readUInt16()
            let node = NodeID(try reader.readUInt64())
            self = .register(node: node, address: try reader.readSocketAddress(), protocolVersion: version)
        case 2: let (id, group) = try requestFields(); self = .join(request: id, group: group)
        case 3: let (id, group) = try requestFields(); self = .leave(request: id, group: group)
        case 4: let (id, group) = try requestFields(); self = .publish(request: id, group: group)
        case 5: let (id, group) = try requestFields(); self = .unpublish(request: id, group: group)
        case 6: self = .heartbeat
        case 7: self = .resynchronize
        case 8: self = .goodbye
        case 9: self = .suspect(node: NodeID(try reader.readUInt64()))
        case 10: self = .evicted(group: try reader.readGroupName(), reason: try reader.readReason())
        default: throw .malformed(reason: "unknown client message kind \(tag)", offset: 0)
        }
        try reader.expectEnd()
    }
}

extension ServerMessage {
    package init(decoding bytes: UnsafeRawBufferPointer) throws(WireError) {
        var reader = WireReader(bytes)
        let tag = try reader.readUInt8()
        switch tag {
        case 1:
            let node = NodeID(try reader.readUInt64())
            let timeout = try reader.readUInt64()
            guard timeout > 0, timeout <= UInt64(Int64.max) else {
                throw .malformed(reason: "a heartbeat timeout of \(timeout) ns", offset: 9)
            }
            self = .registered(node: node, heartbeatTimeout: .nanoseconds(Int64(timeout)))
        case 2: self = .accepted(request: try reader.readUInt32())
        case 3: self = .rejected(request: try reader.readUInt32(), reason: try reader.readString())
        case 4: self = .excluded(reason: try reader.readString())
        case 5: self = .update(try reader.readUpdate())
        case 6: self = .memberEvicted(node: NodeID(try reader.readUInt64()), group: try reader.readGroupName(),
                                      reason: try reader.readReason())
        default: throw .malformed(reason: "unknown server message kind \(tag)", offset: 0)
        }
        try reader.expectEnd()
    }
}

extension WireReader {
    mutating func readString() throws(WireError) -> String {
        let start = offset
        let raw = try readLengthPrefixedBytes()
        guard let text = String(validating: raw, as: UTF8.self) else {
            throw .malformed(reason: "text is not valid UTF-8", offset: start)
        }
        return text
    }

    /// An explanation: at most `String.maximumReasonBytes` (a node's word passed on to
    /// others must not grow what the GMS sends).
    mutating func readReason() throws(WireError) -> String {
        let start = offset
        let text = try readString()
        guard text.utf8.count <= String.maximumReasonBytes else {
            throw .malformed(reason: "an explanation of \(text.utf8.count) bytes (at most \(String.maximumReasonBytes))", offset: start)
        }
        return text
    }

    mutating func readGroupName() throws(WireError) -> GroupName {
        let start = offset
        let text = try readString()
        guard let name = GroupName(text) else {
            throw .malformed(reason: "invalid group name (1-\(GroupName.maximumByteCount) bytes, no control characters)", offset: start)
        }
        return name
    }

    mutating func readSocketAddress() throws(WireError) -> QSMSocketAddress {
        QSMSocketAddress(IPv4Address(value: try readUInt32()), port: try readUInt16())
    }

    mutating func readOptionalAddress() throws(WireError) -> QSMSocketAddress? {
        let start = offset
        switch try readUInt8() {
        case 0: return nil
        case 1: return try readSocketAddress()
        case let flag: throw .malformed(reason: "address flag \(flag)", offset: start)
        }
    }

    /// A count of elements each at least `elementBytes` long, checked against what is left.
    mutating func readCount(elementBytes: Int) throws(WireError) -> Int {
        let start = offset
        let count = Int(try readUInt32())
        guard count <= remainingCount / max(elementBytes, 1) else {
            throw .malformed(reason: "count \(count) exceeds the \(remainingCount) bytes left", offset: start)
        }
        return count
    }

    mutating func readUpdate() throws(WireError) -> MembershipUpdate {
        let base = try readUInt64()
        let version = try readUInt64()
        let fullFlag = try readUInt8()
        guard fullFlag <= 1 else { throw .malformed(reason: "full flag \(fullFlag)", offset: offset - 1) }
        var regions: [RegionView] = []
        for _ in 0..<(try readCount(elementBytes: 40)) { regions.append(try readRegion()) }
        var removedRegions: [RegionID] = []
        for _ in 0..<(try readCount(elementBytes: 8)) { removedRegions.append(RegionID(try readUInt64())) }
        var groups: [GroupView] = []
        var interners = GroupViewInterners()
        let groupCount = try readCount(elementBytes: 32)
        groups.reserveCapacity(groupCount)
        for _ in 0..<groupCount { groups.append(try readGroup(sharing: &interners)) }
        var removedGroups: [GroupID] = []
        for _ in 0..<(try readCount(elementBytes: 4)) { removedGroups.append(GroupID(try readUInt32())) }
        return MembershipUpdate(baseVersion: base, version: version, isFull: fullFlag == 1, regions: regions,
                                removedRegions: removedRegions, groups: groups, removedGroups: removedGroups)
    }

    mutating func readRegion() throws(WireError) -> RegionView {
        let start = offset
        let id = RegionID(try readUInt64())
        let viewNumber = try readUInt64()
        let hierarchy = try readUInt32()
        var groups: [GroupID] = []
        for _ in 0..<(try readCount(elementBytes: 4)) { groups.append(GroupID(try readUInt32())) }
        var members: [NodeEntry] = []
        for _ in 0..<(try readCount(elementBytes: 14)) {
            members.append(NodeEntry(id: NodeID(try readUInt64()), address: try readSocketAddress()))
        }
        func member(_ index: UInt32) throws(WireError) -> NodeID {
            guard Int(index) < members.count else {
                throw .malformed(reason: "member index \(index) of \(members.count)", offset: offset)
            }
            return members[Int(index)].id
        }
        var partitions: [Partition] = []
        for _ in 0..<(try readCount(elementBytes: 8)) {
            var partitionMembers: [NodeID] = []
            for _ in 0..<(try readCount(elementBytes: 4)) { partitionMembers.append(try member(try readUInt32())) }
            let leader = try member(try readUInt32())
            partitions.append(Partition(members: partitionMembers, leader: leader))
        }
        let leader = try member(try readUInt32())
        guard !members.isEmpty, !partitions.isEmpty else {
            throw .malformed(reason: "region \(id) without members or partitions", offset: start)
        }
        return RegionView(id: id, viewNumber: viewNumber, hierarchy: hierarchy, groups: groups, members: members,
                          partitions: partitions, regionLeader: leader, address: try readOptionalAddress())
    }

    mutating func readGroup(sharing interners: inout GroupViewInterners) throws(WireError) -> GroupView {
        let id = GroupID(try readUInt32())
        let name = try readGroupName()
        let viewNumber = try readUInt64()
        var members: [NodeID] = [], memberSince: [UInt64] = []
        let memberCount = try readCount(elementBytes: 16)
        members.reserveCapacity(memberCount)
        memberSince.reserveCapacity(memberCount)
        for _ in 0..<memberCount {
            let start = offset
            let member = NodeID(try readUInt64())
            guard members.last.map({ $0 < member }) ?? true else {
                throw .malformed(reason: "group \(id): members not sorted", offset: start)
            }
            members.append(member)
            let since = try readUInt64()
            guard since >= 1, since <= viewNumber else {
                throw .malformed(reason: "group \(id): member joined in view \(since), after view \(viewNumber)", offset: start)
            }
            memberSince.append(since)
        }
        let mappingVersion = try readUInt64()
        var regions: [RegionReference] = []
        for _ in 0..<(try readCount(elementBytes: 17)) {
            regions.append(RegionReference(id: RegionID(try readUInt64()), viewNumber: try readUInt64(),
                                           address: try readOptionalAddress()))
        }
        let hybridAddress = try readOptionalAddress()
        var publishers: [NodeID] = []
        for _ in 0..<(try readCount(elementBytes: 8)) { publishers.append(NodeID(try readUInt64())) }
        return GroupView(id: id, name: name, viewNumber: viewNumber, members: interners.nodes.intern(members),
                         memberSince: interners.joinViews.intern(memberSince), mappingVersion: mappingVersion,
                         regions: interners.regions.intern(regions), hybridAddress: hybridAddress,
                         publishers: interners.nodes.intern(publishers))
    }
}
