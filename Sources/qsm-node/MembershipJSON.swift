import QSMCore
import QSMHarness
import QSMGMS

/// One JSON object per membership event, on one line, for `qsm-node member`.
enum MembershipJSON {
    static func line(for event: MembershipEvent, node: NodeID) -> String {
        switch event {
        case .registered(let rejoining):
            return #"{"event":"registered","node":\#(node.value),"rejoining":\#(rejoining)}"#
        case .excluded(let reason):
            return #"{"event":"excluded","reason":\#(jsonString(reason))}"#
        case .disconnected:
            return #"{"event":"disconnected"}"#
        case .connectionFailed(let reason):
            return #"{"event":"connection_failed","reason":\#(jsonString(reason)),"retrying":true}"#
        case .authenticationFailed(let reason):
            return #"{"event":"authentication_failed","reason":\#(jsonString(reason))}"#
        case .regionView(let region):
            let partition = region.partition(of: node)
            return #"{"event":"region","id":\#(region.id.value),"view":\#(region.viewNumber),"hierarchy":\#(region.hierarchy),"#
                + #""groups":[\#(region.groups.map { String($0.value) }.joined(separator: ","))],"#
                + #""members":[\#(region.members.map { String($0.id.value) }.joined(separator: ","))],"#
                + #""partition":[\#((partition?.members ?? []).map { String($0.value) }.joined(separator: ","))],"#
                + #""partition_leader":\#(partition.map { String($0.leader.value) } ?? "null"),"#
                + #""region_leader":\#(region.regionLeader.value),"address":\#(address(region.address))}"#
        case .regionRemoved(let id):
            return #"{"event":"region_removed","id":\#(id.value)}"#
        case .groupView(let group):
            let regions = group.regions.map { #"{"id":\#($0.id.value),"view":\#($0.viewNumber),"address":\#(address($0.address))}"# }
            return #"{"event":"group","name":\#(jsonString(group.name.text)),"id":\#(group.id.value),"view":\#(group.viewNumber),"#
                + #""members":[\#(group.members.map { String($0.value) }.joined(separator: ","))],"#
                + #""mapping":\#(group.mappingVersion),"regions":[\#(regions.joined(separator: ","))],"#
                + #""hybrid_address":\#(address(group.hybridAddress))}"#
        case .groupRemoved(let id, let name):
            return #"{"event":"group_removed","name":\#(jsonString(name.text)),"id":\#(id.value)}"#
        case .rejected(let request, let reason):
            return #"{"event":"rejected","request":\#(jsonString(request)),"reason":\#(jsonString(reason))}"#
        case .evicted(let group, let reason):
            return #"{"event":"evicted","group":\#(jsonString(group.text)),"reason":\#(jsonString(reason))}"#
        case .memberEvicted(let member, let group, let reason):
            return #"{"event":"member_evicted","node":\#(member.value),"group":\#(jsonString(group.text)),"reason":\#(jsonString(reason))}"#
        }
    }

    static func address(_ address: QSMSocketAddress?) -> String {
        address.map { jsonString($0.description) } ?? "null"
    }
}
