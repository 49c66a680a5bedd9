#if canImport(Glibc)
import Glibc
#endif
import QSMCore
import QSMGMS
import QSMHarness

/// `qsm-bench run` (and the default run): one cluster experiment with a table or JSON.
enum RunCommand {
    static let usage = """
        usage: qsm-bench run [flags]
               qsm-bench            (the same as: qsm-bench run)

        Starts a GMS, sender and receiver processes inside a private network namespace
        (root needed; with --hosts, each on a namespaced host of its own) and measures,
        in this order and with the same processes:
          1. the raw kernel limit: an unreliable sendmmsg/recvmmsg multicast blast of the
             same message size and socket buffers, searched for the highest paced rate
             at which no receiver loses anything (confirmed by a trial four times as
             long), once with receivers blocking in recvmmsg and once with receivers
             polling with a spin/yield/sleep backoff; then with datagrams packed as the
             engine packs its bundles (when more than one message fits), and with the
             engine's offloads (segmented sends, coalesced receives: UDP GSO/GRO, where
             the kernel has them); the best of them counts;
          2. the engine: every receiver joins every group, the senders publish to the
             groups round robin, and each receiver checks every delivery (every message,
             FIFO per sender and group, none twice, payload intact).
        Progress goes to standard error; the result table (or JSON) to standard output.
        The default: 1 sender, 4 receivers, 1 group, 1000-byte messages, 10 seconds.

        flags:
          --senders N          sender processes (default 1, 1...64)
          --receivers N        receiver processes (default 4, 1...256)
          --groups N           groups (default 1, 1...10000: the GMS's limit of groups
                               per node)
          --size BYTES         message size (default 1000, 24...65000)
          --seconds S          send for S seconds (default 10)
          --count N            send N messages per sender (stops at whichever of
                               --seconds and --count comes first; --count alone lifts
                               the time limit)
          --rate R             messages per second per sender (default 0: as fast as
                               flow control allows); latency is meaningful at a fixed rate
                               (every message is timed then; at full rate, 1 in 16)
          --perturb KIND       what is done during the run (to "receiver 0": a receiver
                               picked for its role where that matters):
                                 none    (default)
                                 sleep   receiver 0 SIGSTOPped for 0.5 s every 5 s
                                 loss    all of receiver 0's inbound packets dropped for
                                         10 ms every second (with --hosts: an nftables
                                         drop-all rule; else the node's injection hook)
                                 random-loss  --loss-percent of receiver 0's inbound
                                         packets dropped at random (with --hosts by
                                         nftables; else the node's injection hook)
                                 freeze  receiver 0 SIGSTOPped once for 10 s (needs
                                         --seconds >= 15; the default becomes 20)
                                 cut     receiver 0 cut off both ways for 5 s from 30%
                                         of the run (with --hosts by nftables on its
                                         host; else the node drops all in and out)
                                 crash   a receiver that leads no ring SIGKILLed at 40%
                                 crash-region-leader     the region leader, at 40%
                                 crash-partition-leader  a partition leader that is not
                                         the region leader, at 40% (needs more receivers
                                         than --partition-size)
                                 crash-sender  sender 0 SIGKILLed at 40%: the live
                                         receivers must end with the same set of its
                                         messages, none twice
                                 gms-restart  the GMS SIGKILLed at 40% and started again
                                         on the same address 1 s later, empty
                                 churn   half the receivers leave and rejoin all groups
                                         in turn, an event every 0.5 s
                                 hostile a hostile process sprays ~20,000 datagrams/s of
                                         garbage, oversized and forged packets at every
                                         node and region address, and junk at the GMS
                                 slow    receiver 0's application takes deliveries at a
                                         tenth of the rate from 2 s on; its node evicts
                                         itself after 10 s of holding the others back
                                         (needs --seconds >= 16; the default becomes 25)
          --hosts              run every process on a host of its own: network
                               namespaces on a bridge with real kernel IP multicast
                               between them (10.77.0.0/24, removed afterwards)
          --fault-at one|all   network faults (loss, random-loss, cut) hit receiver 0's
                               host or every receiver's host (default one)
          --loss-percent P     random-loss: share of inbound packets dropped (default 5)
          --fault-start S      random-loss, cut: seconds into the run the fault starts
                               (default: random-loss at once, cut at 30%)
          --fault-seconds S    random-loss, cut: how long it lasts (default: random-loss
                               until sending ends, cut 5 s)
          --churn-events N     churn: N join/leave events spread over the run
          --partition-size N   nodes per token ring in the GMS (default 5)
          --heartbeat-timeout D  how long the GMS waits for a silent node before it
                               excludes it, 100ms...1h (default 15s: longer than a
                               freeze; every duration here takes 250ms, 5s or 2m,
                               bare numbers are seconds)
          --window N           sender flow-control window in messages (default: the
                               engine's, 16384)
          --window-bytes N     and in payload bytes, whichever binds first (default:
                               the engine's, 4194304: about 4,000 1000-byte messages)
          --peer-attempts N    recovery: asks of caching peers for a missing packet between
                               two asks of the sender (default: the engine's, \(ProtocolConfiguration().peerAttemptsBeforeSender); 0: the
                               sender every time while it is thought live)
          --sender-first-up-to N  recovery: in a region of at most N members (the
                               senders and receivers of its groups) a receiver asks the
                               sender first, then peers; in a larger one, peers first
                               (default: the engine's, \(ProtocolConfiguration().senderFirstUpToMembers); 0: peers first everywhere)
          --bundle-bytes N     packets ready together for one address share a datagram of
                               up to N bytes (default: the engine's, 1472, an Ethernet
                               MTU; 0: one packet per datagram; else 256...65507, above
                               the MTU on loopback only)
          --no-gso             nodes neither hand runs of datagrams to the kernel as one
                               segmented send (UDP GSO) nor take coalesced ones (UDP
                               GRO), and the raw search leaves them out too; both are
                               used by default where the kernel offers them
          --no-raw             skip the raw-limit search (no ratio is reported)
          --raw-trial-seconds S  length of one raw trial (default 0.5)
          --raw-latency        with --rate: first measure the latency floor, raw
                               datagrams of the same size paced at the same rate
                               (up to 5 s) to receivers blocking in recvmmsg, and
                               report it beside the engine's (raw_latency_us_p50/p99)
          --drain-seconds S    after sending, how long to wait for receivers to have
                               everything before reporting them incomplete (default 60)
          --insecure           run without a cluster secret (each node warns): by default
                               the GMS and every node share one random secret, the GMS
                               connection is authenticated and every datagram carries an
                               AES-128-GMAC tag; compare the two to see what that costs
          --encrypt            also encrypt every packet (AES-128-GCM); compare with the
                               default to see what encryption costs
          --authenticate       the default (kept for scripts that name it)
          --json               print one JSON object instead of the table
          --verbose            also log every worker's full result line
          -h, --help           show this help

        exit status: 0 when every checked receiver got everything, in order, once;
        3 when anything was lost, duplicated, reordered or corrupted; 1 on an error;
        2 on bad flags.
        """

    static func parse(_ arguments: [String]) throws(ConfigurationError) -> (RunOptions, json: Bool) {
        let flags = try CommandLineFlags(arguments, valued: [
            "--senders", "--receivers", "--groups", "--size", "--seconds", "--count", "--rate", "--perturb",
            "--window", "--window-bytes", "--peer-attempts", "--sender-first-up-to", "--bundle-bytes", "--raw-trial-seconds", "--drain-seconds", "--fault-at", "--loss-percent", "--fault-start",
            "--fault-seconds", "--churn-events", "--partition-size", "--heartbeat-timeout",
        ], switches: ["--json", "--no-raw", "--raw-latency", "--no-gso", "--verbose", "--authenticate", "--insecure", "--encrypt", "--hosts", "-h", "--help"])
        if flags.has("-h") || flags.has("--help") {
            print(usage)
            exit(0)
        }
        var options = RunOptions()
        options.senders = try flags.integer("--senders", in: 1...64, default: 1)
        options.receivers = try flags.integer("--receivers", in: 1...256, default: 4)
        // Every receiver joins every group, and the sender publishes to each: more than
        // the GMS's groups per node were refused, and the run waited two minutes for
        // members that could not come.
        options.groups = try flags.integer("--groups", in: 1...MembershipConfiguration().maximumGroupsPerNode, default: 1)
        options.size = try flags.integer("--size", in: BenchPayload.minimumSize...65_000, default: 1000)
        if let text = try flags.value("--perturb") {
            guard let kind = Perturbation(rawValue: text) else {
                throw ConfigurationError("--perturb takes \(Perturbation.allCases.map(\.rawValue).joined(separator: ", ")), got '\(text)'")
            }
            options.perturbation = kind
            if kind == .freeze { options.seconds = 20 }
            if kind == .slow { options.seconds = 25 }
        }
        if let text = try flags.value("--count") {
            guard let count = Int(text), count >= 1 else { throw ConfigurationError("--count must be a whole number >= 1, got '\(text)'") }
            options.count = count
            options.seconds = nil
        }
        if let text = try flags.value("--seconds") { options.seconds = try seconds(text, flag: "--seconds") }
        if let text = try flags.value("--rate") {
            guard let rate = Double(text), rate >= 0, rate <= 10_000_000 else {
                throw ConfigurationError("--rate must be 0...10000000 messages per second, got '\(text)'")
            }
            options.rate = rate
        }
        if let text = try flags.value("--peer-attempts") {
            guard let attempts = Int(text), (0...100).contains(attempts) else {
                throw ConfigurationError("--peer-attempts must be 0...100, got '\(text)'")
            }
            options.peerAttempts = attempts
        }
        if let text = try flags.value("--sender-first-up-to") {
            guard let members = Int(text), (0...100_000).contains(members) else {
                throw ConfigurationError("--sender-first-up-to must be 0...100000, got '\(text)'")
            }
            options.senderFirstUpTo = members
        }
        if let text = try flags.value("--window") {
            guard let window = Int(text), (1...65_536).contains(window) else { throw ConfigurationError("--window must be 1...65536 (the engine's largest sequence jump), got '\(text)'") }
            options.window = window
        }
        if let text = try flags.value("--window-bytes") {
            guard let bytes = Int(text), ((1 << 20)...(1 << 32)).contains(bytes) else {
                throw ConfigurationError("--window-bytes must be 1048576...4294967296 (at least the largest message), got '\(text)'")
            }
            options.windowBytes = bytes
        }
        if flags.has("--bundle-bytes") {
            options.bundleBytes = try flags.integer("--bundle-bytes", zeroOr: QSMNodeConfiguration.bundleBytesRange,
                                                    default: QSMNodeConfiguration.defaultBundleBytes)
        }
        options.measureRaw = !flags.has("--no-raw")
        options.measureRawLatency = flags.has("--raw-latency")
        if options.measureRawLatency, options.rate <= 0 {
            throw ConfigurationError("--raw-latency needs --rate: latency is measured at a fixed rate")
        }
        options.segmentationOffload = !flags.has("--no-gso")
        options.verbose = flags.has("--verbose")
        if flags.has("--insecure"), flags.has("--authenticate") {
            throw ConfigurationError("--insecure and --authenticate exclude each other")
        }
        options.secret = flags.has("--insecure") ? nil : RunOptions.randomSecret()
        options.encrypt = flags.has("--encrypt")
        if options.encrypt, options.secret == nil { throw ConfigurationError("--encrypt needs the cluster secret that --insecure turns off") }
        if let text = try flags.value("--raw-trial-seconds") { options.rawTrialSeconds = try seconds(text, flag: "--raw-trial-seconds") }
        if let text = try flags.value("--drain-seconds") { options.drainSeconds = try seconds(text, flag: "--drain-seconds") }
        options.hosts = flags.has("--hosts")
        if let text = try flags.value("--fault-at") {
            guard text == "one" || text == "all" else { throw ConfigurationError("--fault-at takes one or all, got '\(text)'") }
            options.faultAtAllReceivers = text == "all"
        }
        options.lossPercent = try flags.integer("--loss-percent", in: 1...100, default: 5)
        if let text = try flags.value("--fault-start") {
            guard let start = Double(text), start >= 0, start <= 86_400 else {
                throw ConfigurationError("--fault-start must be 0...86400 seconds, got '\(text)'")
            }
            options.faultStart = start
        }
        if let text = try flags.value("--fault-seconds") { options.faultSeconds = try seconds(text, flag: "--fault-seconds") }
        if try flags.value("--churn-events") != nil {
            options.churnEvents = try flags.integer("--churn-events", in: 1...10_000, default: 1)
        }
        options.partitionSize = try flags.integer("--partition-size", in: 1...64, default: 5)
        if let text = try flags.value("--heartbeat-timeout") {
            let timeout = try seconds(text, flag: "--heartbeat-timeout")
            // The run's GMS takes what qsm-node gms takes.
            guard MembershipConfiguration.heartbeatTimeoutRange.contains(.milliseconds(timeout * 1000)) else {
                throw ConfigurationError("--heartbeat-timeout must be 100ms...1h, got '\(text)'")
            }
            options.heartbeatTimeoutMilliseconds = Int(timeout * 1000)
        }
        try options.validate()
        return (options, flags.has("--json"))
    }

    /// A duration flag's value in seconds: `2.5`, `2500ms`, `2.5s` or `1m` (a bare number is
    /// seconds, as in every qsm-node and qsm-bench duration).
    private static func seconds(_ text: String, flag: String) throws(ConfigurationError) -> Double {
        guard let duration = CommandLineFlags.parseDuration(text, bareUnit: .seconds(1)) else {
            throw ConfigurationError("\(flag) must be a duration like 2.5, 2500ms or 1m (bare numbers are seconds), got '\(text)'")
        }
        let value = Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
        guard value > 0, value <= 86_400 else {
            throw ConfigurationError("\(flag) must be within (0, 86400] seconds, got '\(text)'")
        }
        return value
    }

    static func main(_ arguments: [String]) -> Never {
        let options: RunOptions
        let json: Bool
        do throws(ConfigurationError) {
            (options, json) = try parse(arguments)
        } catch {
            fail(error.message)
        }
        BenchNamespace.enter()
        let report: RunReport
        do {
            benchLog("qsm-bench run: \(RunTable.describe(options))")
            report = try ClusterRun(options: options, log: { benchLog($0) }).execute()
        } catch {
            benchLog("qsm-bench run: \(error)")
            exit(1)
        }
        writeToStandardOutput(json ? RunJSON.object(report) : RunTable.render(report))
        exit(report.complete && report.inOrder && report.duplicates == 0 && report.corrupt == 0 ? 0 : 3)
    }
}

/// Every cluster command runs in a private network namespace of its own: multicast
/// never leaves this host, and runs cannot disturb each other.
enum BenchNamespace {
    static func enter() {
        do {
            try NetworkNamespace.enterPrivate()
        } catch {
            benchLog("qsm-bench: cannot create a private network namespace (\(error)); run as root")
            exit(1)
        }
    }
}
