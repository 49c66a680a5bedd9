#if canImport(Glibc)
import Glibc
#endif
import QSMCore
import QSMHarness

/// What is done during a run: to one receiver (receiver 0, chosen for its role where
/// that matters), to every receiver's host, to a sender or to the GMS.
enum Perturbation: String, CaseIterable, Sendable {
    case none
    /// SIGSTOP for 0.5 s every 5 s.
    case sleep
    /// All inbound packets dropped for 10 ms every second (on hosts: an nftables
    /// drop-all rule added and removed; on loopback: the node's fault-injection hook).
    case loss
    /// A share of inbound packets dropped at random (nftables on hosts; on loopback the
    /// node's fault injection).
    case randomLoss = "random-loss"
    /// SIGSTOP once, for 10 s.
    case freeze
    /// A host cut off from the network, both ways, for a while (nftables on hosts; on
    /// loopback the node's fault injection drops everything in and out).
    case cut
    /// SIGKILL mid-run to a receiver that leads nothing.
    case crash
    /// SIGKILL mid-run to the region leader.
    case crashRegionLeader = "crash-region-leader"
    /// SIGKILL mid-run to a partition leader that is not the region leader.
    case crashPartitionLeader = "crash-partition-leader"
    /// SIGKILL mid-run to sender 0: the live receivers must end with the same messages.
    case crashSender = "crash-sender"
    /// The GMS killed mid-run and started again on the same address a second later.
    case gmsRestart = "gms-restart"
    /// Half the receivers (at least one) leave and rejoin all groups in turn, an event
    /// every half second (or `--churn-events` spread over the run).
    case churn
    /// A hostile process sprays garbage and forged packets at every node and the GMS.
    case hostile
    /// Receiver 0's application takes deliveries at a tenth of the rate from 2 s on: it
    /// holds the senders back until its node evicts itself (slow-consumer eviction, 10 s).
    case slow


    /// A receiver is killed (and is not checked).
    var killsReceiver: Bool { self == .crash || self == .crashRegionLeader || self == .crashPartitionLeader }

    /// Applied with nftables when the run has hosts (and so can hit every receiver).
    var isNetworkFault: Bool { self == .loss || self == .randomLoss || self == .cut }
}

/// One cluster run: who takes part, what is sent, what is done to it.
struct RunOptions {
    var senders = 1
    var receivers = 4
    var groups = 1
    var size = 1000
    /// Send for this long, or until `count` messages per sender, whichever comes first.
    var seconds: Double? = 10
    var count: Int?
    /// Messages per second per sender; 0 means as fast as flow control allows.
    var rate = 0.0
    var perturbation = Perturbation.none
    var measureRaw = true
    /// Also measure raw datagrams' send-to-receive latency at `rate` (`--raw-latency`).
    var measureRawLatency = false
    var rawTrialSeconds = 0.5
    /// The sender's flow-control window in messages (nil: the engine's default).
    var window: Int?
    /// The sender's flow-control window in payload bytes (nil: the engine's default).
    var windowBytes: Int?
    /// How many times a node asks caching peers for a missing packet between two asks of
    /// the sender (nil: the engine's default; 0: the sender every time).
    var peerAttempts: Int?
    /// `peerAttempts`, or the engine's default: what the run used.
    var effectivePeerAttempts: Int { peerAttempts ?? ProtocolConfiguration().peerAttemptsBeforeSender }
    /// In a region of at most this many members a node asks the sender first, then
    /// peers (nil: the engine's default; 0: peers first in every region).
    var senderFirstUpTo: Int?
    /// `senderFirstUpTo`, or the engine's default: what the run used.
    var effectiveSenderFirstUpTo: Int { senderFirstUpTo ?? ProtocolConfiguration().senderFirstUpToMembers }
    /// Every node's bundle size (nil: the engine's default, 1,472 bytes; 0: no bundling).
    var bundleBytes: Int?
    /// Whether nodes (and the raw baseline) may use UDP segmentation offload where the
    /// kernel offers it (`--no-gso` turns it off, for comparison).
    var segmentationOffload = true
    /// How long the GMS waits for a silent node's heartbeat before excluding it; longer
    /// than a 10 s freeze, so that a frozen receiver is waited for, not excluded.
    var heartbeatTimeoutMilliseconds = 15_000
    /// Most seconds to wait, after the senders finish, for every receiver to have
    /// everything.
    var drainSeconds = 60.0
    var interface = IPv4Address.loopback
    /// Log every worker's full result line.
    var verbose = false
    /// A cluster secret (hex) for every node: packets carry AES-128-GMAC tags.
    var secret: String?
    /// With the secret: packets are encrypted too (AES-128-GCM).
    var encrypt = false
    /// Every process on a namespaced host of its own, on a bridge (instead of all of
    /// them on loopback in one namespace).
    var hosts = false
    /// Network faults hit every receiver's host, not only receiver 0's.
    var faultAtAllReceivers = false
    /// `random-loss`: the share of inbound packets dropped.
    var lossPercent = 5
    /// When a timed fault (random-loss, cut) starts and how long it lasts; nil: from the
    /// start of sending to its end (random-loss), or 5 s from 30% of the run (cut).
    var faultStart: Double?
    var faultSeconds: Double?
    /// `churn`: this many join/leave events spread over the run (nil: one every 0.5 s).
    var churnEvents: Int?
    /// Nodes per partition (token ring) in the GMS.
    var partitionSize = 5

    /// Receivers that must end with every message (the others crashed or churned).
    var checkedReceivers: Range<Int> {
        switch perturbation {
        case .crash, .crashRegionLeader, .crashPartitionLeader, .slow: return 1..<receivers
        case .churn: return churningReceivers..<receivers
        default: return 0..<receivers
        }
    }

    /// 32 bytes from the OS's random source, as hex: the run's cluster secret.
    static func randomSecret() -> String { SystemRandom.hex(32) }

    /// Checked receivers that stay in their groups the whole run: the perturbed receiver
    /// 0 may be excluded (frozen or cut off too long) and rejoin, owed only what is sent
    /// from its new views on. Lossless reconfiguration owes the others everything, across
    /// a GMS restart or the churn of others.
    var stayingReceivers: [Int] {
        switch perturbation {
        case .sleep, .loss, .randomLoss, .freeze, .cut: return checkedReceivers.filter { $0 != 0 }
        default: return Array(checkedReceivers)
        }
    }

    var churningReceivers: Int { perturbation == .churn ? max(1, receivers / 2) : 0 }

    func validate() throws(ConfigurationError) {
        guard (1...64).contains(senders) else { throw ConfigurationError("--senders must be 1...64") }
        guard (1...256).contains(receivers) else { throw ConfigurationError("--receivers must be 1...256") }
        guard (1...100_000).contains(groups) else { throw ConfigurationError("--groups must be 1...100000") }
        guard (BenchPayload.minimumSize...65_000).contains(size) else {
            throw ConfigurationError("--size must be \(BenchPayload.minimumSize)...65000 bytes (the header takes \(BenchPayload.minimumSize))")
        }
        guard seconds != nil || count != nil else { throw ConfigurationError("give --seconds or --count") }
        if let seconds, !(seconds > 0 && seconds <= 86_400) { throw ConfigurationError("--seconds must be in (0, 86400]") }
        if let count, count < 1 { throw ConfigurationError("--count must be at least 1") }
        guard rate >= 0, rate <= 10_000_000 else { throw ConfigurationError("--rate must be 0 (as fast as possible) to 10000000") }
        if perturbation.killsReceiver || perturbation == .churn, receivers < 2 {
            throw ConfigurationError("--perturb \(perturbation.rawValue) needs at least 2 receivers (someone must stay to check)")
        }
        if perturbation == .crashPartitionLeader, receivers <= partitionSize {
            throw ConfigurationError("--perturb crash-partition-leader needs more receivers than --partition-size (\(partitionSize)), "
                                     + "so that some partition is not led by the region leader")
        }
        if perturbation == .crashSender, seconds == nil {
            throw ConfigurationError("--perturb crash-sender kills the sender at 40% of --seconds: give --seconds")
        }
        guard (1...64).contains(partitionSize) else { throw ConfigurationError("--partition-size must be 1...64") }
        guard (1...100).contains(lossPercent) else { throw ConfigurationError("--loss-percent must be 1...100") }
        if let churnEvents, !(1...10_000).contains(churnEvents) { throw ConfigurationError("--churn-events must be 1...10000") }
        if hosts, senders + receivers + 2 > 200 { throw ConfigurationError("--hosts builds at most 200 hosts: fewer processes") }
        if perturbation == .slow, let seconds, seconds < 16 {
            throw ConfigurationError("--perturb slow holds the senders for about 12 s before the eviction: give --seconds 16 or more")
        }
        if perturbation == .freeze, let seconds, seconds < 15 {
            throw ConfigurationError("--perturb freeze stops a receiver for 10 s: give --seconds 15 or more")
        }
    }
}
