import QSMProtocol
import QSMGMS

/// What a simulated run measured, and every invariant it broke (empty: it passed).
public struct SimulationResult: Sendable {
    public var seed: UInt64
    public var nodes: Int
    public var groups: Int
    public var simulatedSeconds: Double
    public var published: Int
    public var delivered: Int
    public var violations: [String]
    public var tokenRoundTripMillisecondsMean: Double
    public var acknowledgementLatencyMillisecondsMean: Double
    public var recoveryMillisecondsP99: Double
    public var maximumCachedBytesPerNode: Int
    public var maximumHeldBytesPerNode: Int
    public var controlBytesPerDataByte: Double
    public var retransmissions: Int
    /// Data packets that reached a node that already had them: needless retransmissions
    /// (asked for too early, or answered by more than one peer) and network duplicates.
    public var duplicatesReceived: Int
    public var maximumTokenRecords: Int
    /// Filled in by the caller, who owns a clock (the simulator has none).
    public var wallSeconds: Double
    /// Simulated time from the end of publishing until every live node was quiescent.
    public var drainSeconds: Double
    /// Tokens too large for one datagram, sent in parts.
    public var tokensSplit = 0
    /// Datagrams the network corrupted, and datagrams nodes dropped for a bad tag (never
    /// more than were corrupted).
    public var corruptedDatagrams = 0
    public var unauthenticatedDropped = 0
    /// Authenticated datagrams dropped as replays (a counter seen before, or a dead
    /// incarnation: never more than the network duplicated), and as older than the
    /// replay window.
    public var replayDropped = 0
    public var tooOldDropped = 0
    /// Datagrams the network lost (loss, bursts, the split, no listener) or duplicated.
    public var networkDropped = 0
    public var networkDuplicates = 0
    /// Publications the machine refused because their node had left the group before
    /// they could be committed (the application is told; nobody is owed them).
    public var publishesRefused = 0
    /// Membership updates the GMS sent.
    public var gmsUpdatesSent = 0
    /// Control bytes (and the token part of them) per byte of data sent while
    /// publishing, before the drain.
    public var controlBytesPerDataByteWhilePublishing = 0.0
    public var tokenBytesPerDataByteWhilePublishing = 0.0
    public var tokenTimeouts = 0
    /// Token rounds led around rings of more than one node, partition and region rings.
    public var tokenRounds = 0
}
