
/// A node's identity, chosen by the node and stable across its re-registrations.
public struct NodeID: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The id as a number (1 and up).
    public let value: UInt64
    /// The node with this id.
    public init(_ value: UInt64) { self.value = value }
    public static func < (lhs: NodeID, rhs: NodeID) -> Bool { lhs.value < rhs.value }
    public var description: String { "n\(value)" }
}

/// A group's identity, assigned by the GMS when the group's name is first used. Group ids
/// are never reused while the GMS runs.
public struct GroupID: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The id as a number.
    public let value: UInt32
    package init(_ value: UInt32) { self.value = value }
    public static func < (lhs: GroupID, rhs: GroupID) -> Bool { lhs.value < rhs.value }
    public var description: String { "g\(value)" }
}

/// A region's identity (section 4.1.2: the nodes whose set of groups is exactly S, per
/// hierarchy). Assigned when the region first has members; never reused.
public struct RegionID: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The id as a number.
    public let value: UInt64
    package init(_ value: UInt64) { self.value = value }
    public static func < (lhs: RegionID, rhs: RegionID) -> Bool { lhs.value < rhs.value }
    public var description: String { "r\(value)" }
}

/// A node as others need to know it: its identity and unicast control address.
public struct NodeEntry: Hashable, Sendable {
    /// The node.
    public var id: NodeID
    /// Its unicast control address.
    public var address: QSMSocketAddress
    package init(id: NodeID, address: QSMSocketAddress) {
        self.id = id
        self.address = address
    }
}
