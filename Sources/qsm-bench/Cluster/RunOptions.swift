#if canImport(Glibc)
import Glibc
#endif
import QSMCore

/// What is done to one receiver (receiver 0) during a run.
enum Perturbation: String, CaseIterable, Sendable {
    case none
    /// SIGSTOP for 0.5 s every 5 s.
    case sleep
    /// All inbound packets dropped for 10 ms every second.
    case loss
    /// SIGSTOP once, for 10 s.
    case freeze
    /// SIGKILL mid-run.
    case crash
    /// Half the receivers (at least one) leave and rejoin all groups in turn, an event
    /// every half second.
    case churn
    /// A hostile process sprays garbage and forged packets at every node and the GMS.
    case hostile
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
    var rawTrialSeconds = 0.5
    /// The sender's flow-control window in messages (nil: the engine's default).
    var window: Int?
    /// How long the GMS waits for a silent node's heartbeat before excluding it; longer
    /// than a 10 s freeze, so that a frozen receiver is waited for, not excluded.
    var heartbeatTimeoutMilliseconds = 15_000
    /// Most seconds to wait, after the senders finish, for every receiver to have
    /// everything.
    var drainSeconds = 60.0
    var interface = IPv4Address.loopback
    /// Log every worker's full result line.
    var verbose = false
    /// A cluster secret (hex) for every node: packets carry HMAC-SHA256 tags.
    var secret: String?

    /// Receivers that must end with every message (the others crashed or churned).
    var checkedReceivers: Range<Int> {
        switch perturbation {
        case .crash: return 1..<receivers
        case .churn: return churningReceivers..<receivers
        default: return 0..<receivers
        }
    }

    /// 32 random bytes as hex, from the clock and the process id (a benchmark's secret).
    static func randomSecret() -> String {
        var random = SplitMix64(seed: UInt64(bitPattern: MonotonicClock.now().nanoseconds) ^ UInt64(getpid()) << 32)
        return (0..<32).map { _ in
            let byte = UInt8(truncatingIfNeeded: random.next())
            return (byte < 16 ? "0" : "") + String(byte, radix: 16)
        }.joined()
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
        if perturbation == .crash || perturbation == .churn, receivers < 2 {
            throw ConfigurationError("--perturb \(perturbation.rawValue) needs at least 2 receivers (someone must stay to check)")
        }
        if perturbation == .freeze, let seconds, seconds < 15 {
            throw ConfigurationError("--perturb freeze stops a receiver for 10 s: give --seconds 15 or more")
        }
    }
}
