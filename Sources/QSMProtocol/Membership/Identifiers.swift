
/// A node's identity, chosen by the node and stable across its re-registrations.
public struct NodeID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let value: UInt64
    public init(_ value: UInt64) { self.value = value }
    public static func < (lhs: NodeID, rhs: NodeID) -> Bool { lhs.value < rhs.value }
    public var description: String { "n\(value)" }
}

/// A group's identity, assigned by the GMS when the group's name is first used. Group ids
/// are never reused while the GMS runs.
public struct GroupID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let value: UInt32
    public init(_ value: UInt32) { self.value = value }
    public static func < (lhs: GroupID, rhs: GroupID) -> Bool { lhs.value < rhs.value }
    public var description: String { "g\(value)" }
}

/// A region's identity (section 4.1.2: the nodes whose set of groups is exactly S, per
/// hierarchy). Assigned when the region first has members; never reused.
public struct RegionID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let value: UInt64
    public init(_ value: UInt64) { self.value = value }
    public static func < (lhs: RegionID, rhs: RegionID) -> Bool { lhs.value < rhs.value }
    public var description: String { "r\(value)" }
}

/// A node as others need to know it: its identity and unicast control address.
public struct NodeEntry: Hashable, Sendable {
    public var id: NodeID
    public var address: SocketAddress
    public init(id: NodeID, address: SocketAddress) {
        self.id = id
        self.address = address
    }
}
