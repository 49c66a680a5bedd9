import QSMProtocol
import QSMGMS

/// What a simulated run measured, and every invariant it broke (empty: it passed).
package struct SimulationResult: Sendable {
    package var seed: UInt64
    package var nodes: Int
    package var groups: Int
    package var simulatedSeconds: Double
    package var published: Int
    package var delivered: Int
    package var violations: [String]
    package var tokenRoundTripMillisecondsMean: Double
    package var acknowledgementLatencyMillisecondsMean: Double
    package var recoveryMillisecondsP99: Double
    package var maximumCachedBytesPerNode: Int
    package var maximumHeldBytesPerNode: Int
    package var controlBytesPerDataByte: Double
    package var retransmissions: Int
    /// Data packets that reached a node that already had them: needless retransmissions
    /// (asked for too early, or answered by more than one peer) and network duplicates.
    package var duplicatesReceived: Int
    package var maximumTokenRecords: Int
    /// Filled in by the caller, who owns a clock (the simulator has none).
    package var wallSeconds: Double
    /// Simulated time from the end of publishing until every live node was quiescent.
    package var drainSeconds: Double
    /// Tokens too large for one datagram, sent in parts.
    package var tokensSplit = 0
    /// Datagrams the network corrupted, and datagrams nodes dropped for a bad tag (never
    /// more than were corrupted).
    package var corruptedDatagrams = 0
    package var unauthenticatedDropped = 0
    /// Authenticated datagrams dropped as replays (a counter seen before, or a dead
    /// incarnation: never more than the network duplicated), and as older than the
    /// replay window.
    package var replayDropped = 0
    package var tooOldDropped = 0
    /// Datagrams the network lost (loss, bursts, the split, no listener) or duplicated.
    package var networkDropped = 0
    package var networkDuplicates = 0
    /// Publications the machine refused because their node had left the group before
    /// they could be committed (the application is told; nobody is owed them).
    package var publishesRefused = 0
    /// Membership updates the GMS sent.
    package var gmsUpdatesSent = 0
    /// Control bytes (and the token part of them) per byte of data sent while
    /// publishing, before the drain.
    package var controlBytesPerDataByteWhilePublishing = 0.0
    package var tokenBytesPerDataByteWhilePublishing = 0.0
    package var tokenTimeouts = 0
    /// Token rounds led around rings of more than one node, partition and region rings.
    package var tokenRounds = 0
    /// Unacknowledged messages senders carried into the regions members moved to, and
    /// carried copies dropped by members that joined after they were committed.
    package var messagesCarried = 0
    package var notMemberDropped = 0
    /// Unacknowledged messages senders stopped carrying (`ProtocolStatistics.messagesGivenUp`).
    package var messagesGivenUp = 0
    /// Ring members reported to the GMS as suspects (no answer on the data path), and
    /// nodes the GMS excluded on such a report.
    package var suspectsReported = 0
    package var suspicionExclusions = 0
    /// Multicast datagrams lost for every listener at once (`regionWideLoss`).
    package var regionWideDropped = 0
    /// Multicast datagrams lost at every member of one partition at once (`partitionLoss`).
    package var partitionDropped = 0
    /// NAK aggregation: runs partition leaders asked for on their partition's behalf,
    /// retransmissions sent by multicast, and requests a recent multicast absorbed.
    package var partitionRepairsAsked = 0
    package var multicastRepairs = 0
    package var repairRequestsAbsorbed = 0
    /// Recovery requests sent (pulls, NAKs, partition requests), and those asked of a
    /// node that did not hold the packet and never would.
    package var requestsSent = 0
    package var repairRequestsNotHeld = 0
    /// Replica recovery (`ReplicaRecovery`): requests kept by a replica until it held
    /// the packet, those answered, and those the region's multicast served; runs pushed
    /// between partitions, and the packets pushed.
    package var repairsAwaited = 0
    package var awaitedRepairsAnswered = 0
    package var awaitedRepairsServedByMulticast = 0
    package var partitionPushesAsked = 0
    package var partitionPushes = 0
    /// Pauses for a new region view (`ViewChangePause`) at every node, and those that
    /// ran out at the limit rather than ending when the rings said the view was in.
    package var viewChangePauses = 0
    package var viewChangePausesTimedOut = 0
    /// Their mean length (of those that ended).
    package var viewChangePauseMillisecondsMean = 0.0
    /// The mean round trip of partition rings, of the leader rings between them and the
    /// region ring in large regions, and of region rings (0: none went round).
    package var partitionRoundMillisecondsMean = 0.0
    /// Rounds of region rings and of the leader rings between them and the partition
    /// rings (the rest of `tokenRounds` are partition rounds).
    package var regionTokenRounds = 0
    package var leaderTokenRounds = 0
    package var leaderRoundMillisecondsMean = 0.0
    package var regionRoundMillisecondsMean = 0.0
    /// Levels of token rings in the deepest region (2: partitions and the region ring).
    package var ringLevels = 0
}
