/// One sender's messages in one group, as this node delivers them: a box made on the
/// first delivery and found again by one lookup, or none while deliveries of one sender
/// and group come in a row. The protocol keeps the last group sequence number delivered
/// in it (to drop second copies); the node machine keeps what it counts per stream and
/// the group's name, so a delivery of another group than the last costs it no hashing.
package final class DeliveryStream {
    package let sender: NodeID
    /// Changes only when a restarted GMS gives the group's name another id.
    package internal(set) var group: GroupID
    /// The last group sequence number delivered.
    @exclusivity(unchecked) var last: UInt64 = 0
    /// What was delivered since counting began (`TrafficTally`), and whether the tally
    /// lists this stream.
    @exclusivity(unchecked) var traffic = SenderTraffic()
    @exclusivity(unchecked) var counted = false
    /// The group's name, valid while `nameEpoch` is the node machine's (a restarted GMS
    /// may give the id to another name).
    @exclusivity(unchecked) var name: GroupName?
    @exclusivity(unchecked) var nameEpoch = 0
    /// The group view from which this node has been a member of the group without a
    /// break (`ProtocolNode.memberSince`), valid while `memberSinceEpoch` is the node's:
    /// a message committed to an earlier view is not owed to it (it joined later), and
    /// reaches it only when carried into its region by a reconfiguration.
    @exclusivity(unchecked) var memberSince: UInt64?
    @exclusivity(unchecked) var memberSinceEpoch = -1

    init(sender: NodeID, group: GroupID) {
        self.sender = sender
        self.group = group
    }
}
