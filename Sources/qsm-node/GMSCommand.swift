#if canImport(Glibc)
import Glibc
#endif
import QSMCore
import QSMHarness
import QSMGMS

enum GMSCommand {
    static let usage = """
        usage: qsm-node gms --listen HOST:PORT [flags]

        Runs the global membership service: nodes register, join and leave groups and
        send heartbeats over TCP; the service applies changes in batches and sends each
        node versioned updates of its regions and groups. Prints "gms listening on
        HOST:PORT" on standard output once ready; logs (JSON lines) and statistics go to
        standard error, and 'qsm-node stats' reads its counters. SIGINT or SIGTERM stops it.

        Durations take a unit: 250ms, 5s, 2m (a bare number is seconds). Older names
        still work: --batch-ms, --heartbeat-timeout-ms and --stats-seconds.

        flags:
          --listen HOST:PORT             address to listen on (port 0: any free port)
          --mode full|hierarchies        full: one region per distinct set of groups
                                         (default); hierarchies: decompose groups into
                                         perfect hierarchies first, regions per hierarchy
          --partition-size K             nodes per partition (default 5)
          --min-region-size N            hierarchies mode: smallest region a group may
                                         leave behind when added (default 1)
          --batch D                      apply pending changes every D (default 100ms)
          --heartbeat-timeout D          exclude a node silent this long, 100ms...1h
                                         (default 5s); nodes learn it when they
                                         register and heartbeat four times within it
          --suspect-confirm D            exclude a node whose data path answers no
                                         probe (its ring peers report it, every few
                                         seconds, after several token timeouts) once it
                                         has been reported for D (default 5s; 0: at the
                                         first report); a node silent to the GMS too is
                                         left to --heartbeat-timeout
          --suspect-quarantine D         such a node may not register again for D
                                         (default 30s; 0: at once)
          --address-pool CIDR            multicast addresses for regions: a prefix
                                         (default 239.192.0.0/14, 262144 addresses),
                                         or START+COUNT (like 239.192.0.0+1024)
          --multicast-port PORT          UDP port of every region address (default 17000)
          --hybrid NAME                  also give group NAME its own multicast address
                                         (repeatable)
          --max-nodes N                  (default 10000)
          --max-groups N                 (default 100000)
          --max-groups-per-node N        (default 10000)
          --secret-file PATH             the cluster secret (the same file as every
                                         node's; make one with 'qsm-node secret new
                                         PATH'): each connection must prove it has the
                                         secret before it can register, and every frame
                                         after that carries a MAC. Required unless
                                         --insecure is given
          --insecure                     run without a secret (warns): any host that
                                         reaches the port can register, join any group
                                         and read its data
          --stats-interval D             log statistics every D, 0 = never (default 10s)
          --metrics-listen HOST:PORT     also serve the counters at
                                         http://HOST:PORT/metrics (OpenMetrics text)
          -h, --help                     show this help
        """

    static func main(_ arguments: [String]) -> Never {
        let flags: CommandLineFlags
        var configuration = MembershipConfiguration()
        let listen: QSMSocketAddress
        let statsSeconds: Int
        let metricsListen: QSMSocketAddress?
        do throws(ConfigurationError) {
            flags = try CommandLineFlags(arguments, valued: [
                "--listen", "--mode", "--partition-size", "--min-region-size", "--batch-ms", "--heartbeat-timeout-ms", "--batch", "--heartbeat-timeout", "--stats-interval",
                "--address-pool", "--multicast-port", "--hybrid", "--max-nodes", "--max-groups", "--max-groups-per-node",
                "--stats-seconds", "--secret-file", "--metrics-listen", "--suspect-quarantine", "--suspect-confirm",
            ], switches: ["-h", "--help", "--insecure"])
            if flags.has("-h") || flags.has("--help") {
                print(usage)
                exit(0)
            }
            guard let address = try flags.address("--listen") else { throw ConfigurationError("--listen is required") }
            listen = address
            if let mode = try flags.value("--mode") {
                guard let parsed = RegionMode(rawValue: mode) else { throw ConfigurationError("--mode must be full or hierarchies, got '\(mode)'") }
                configuration.mode = parsed
            }
            configuration.partitionSize = try flags.integer("--partition-size", in: 1...1000, default: 5)
            configuration.minimumRegionSize = try flags.integer("--min-region-size", in: 1...1_000_000, default: 1)
            configuration.batchInterval = try flags.duration("--batch", alias: "--batch-ms", aliasUnit: .milliseconds(1),
                                                             in: .milliseconds(1)...(.seconds(600)), default: .milliseconds(100))
            configuration.heartbeatTimeout = try flags.duration("--heartbeat-timeout", alias: "--heartbeat-timeout-ms", aliasUnit: .milliseconds(1),
                                                                in: MembershipConfiguration.heartbeatTimeoutRange, default: .seconds(5))
            configuration.suspectQuarantine = try flags.duration("--suspect-quarantine", in: .zero...(.seconds(86_400)), default: .seconds(30))
            configuration.suspectConfirmation = try flags.duration("--suspect-confirm", in: .zero...(.seconds(3600)), default: .seconds(5))
            if let pool = try flags.value("--address-pool") {
                (configuration.addressPoolStart, configuration.addressPoolSize) = try addressPool(pool)
            }
            configuration.multicastPort = UInt16(try flags.integer("--multicast-port", in: 1...65535, default: 17000))
            configuration.hybridGroups = Set(flags.all("--hybrid"))
            configuration.maximumNodes = try flags.integer("--max-nodes", in: 1...10_000_000, default: 10_000)
            configuration.maximumGroups = try flags.integer("--max-groups", in: 1...100_000_000, default: 100_000)
            configuration.maximumGroupsPerNode = try flags.integer("--max-groups-per-node", in: 1...10_000_000, default: 10_000)
            let interval = try flags.duration("--stats-interval", alias: "--stats-seconds", in: .zero...(.seconds(86_400)), default: .seconds(10))
            statsSeconds = Int(interval.components.seconds) + (interval.components.attoseconds > 0 ? 1 : 0)
            metricsListen = try flags.address("--metrics-listen")
            if let path = try flags.value("--secret-file") {
                configuration.clusterSecret = try NodeFlags.readSecret(path)
                configuration.entropy = SystemRandom.bytes(32)
            }
            if configuration.clusterSecret == nil, !flags.has("--insecure") {
                throw ConfigurationError("no cluster secret: give --secret-file PATH (make one with 'qsm-node secret new PATH'), or --insecure to run without one")
            }
            if configuration.clusterSecret != nil, flags.has("--insecure") {
                throw ConfigurationError("--secret-file and --insecure exclude each other")
            }
            try configuration.validate()
        } catch {
            fail(error.message, command: "gms")
        }

        do {
            let core = try EventCore()
            if configuration.clusterSecret == nil {
                log(.warning, "qsm-node gms", "running without a cluster secret (--insecure): any host that reaches "
                                     + "\(listen) can register nodes, join any group and read its data")
            }
            let server = try GMSServer(configuration: configuration, listeningOn: listen, core: core)
            server.onRefusal = { log(.warning, "qsm-node gms", "refused connection \($0)") }
            server.onExclusion = { log(.warning, "qsm-node gms", $0) }
            _ = try StopOnSignal(core: core) { core in
                log(.info, "qsm-node gms", "stopping")
                core.handle.stop()
            }
            let metrics = NodeMetrics.start(name: "gms-\(server.listenAddress.port)", listen: metricsListen, command: "gms")
            core.scheduleAlarm(at: core.now, handler: GMSStatistics(server: server, metrics: metrics, logEvery: statsSeconds))
            writeToStandardOutput("gms listening on \(server.listenAddress)")
            try core.run()
            exit(0)
        } catch {
            log(.error, "qsm-node gms", "\(error)")
            exit(1)
        }
    }
}

/// Every second on the core thread: the GMS's counters, rendered for `/metrics` and the
/// stats socket, and every `logInterval` logged as one JSON line.
/// An address pool: `A.B.C.D/PREFIX` (the prefix's addresses, A.B.C.D aligned to it) or
/// `A.B.C.D+COUNT`; all of it within 224.0.0.0/4.
func addressPool(_ text: String) throws(ConfigurationError) -> (IPv4Address, Int) {
    let start: IPv4Address, count: Int
    if let slash = text.firstIndex(of: "/") {
        guard let address = IPv4Address(String(text[..<slash])), let prefix = Int(text[text.index(after: slash)...]), (4...32).contains(prefix) else {
            throw ConfigurationError("--address-pool: '\(text)' is not a multicast prefix like 239.192.0.0/14 (prefix 4...32; for a count write START+COUNT)")
        }
        let size = UInt32(1) << UInt32(32 - prefix)
        guard address.value & (size &- 1) == 0 else {
            throw ConfigurationError("--address-pool: \(address) is not the start of a /\(prefix) (host bits set)")
        }
        (start, count) = (address, Int(size))
    } else if let plus = text.firstIndex(of: "+") {
        guard let address = IPv4Address(String(text[..<plus])), let number = Int(text[text.index(after: plus)...]), number > 0 else {
            throw ConfigurationError("--address-pool: '\(text)' is not START+COUNT like 239.192.0.0+1024")
        }
        (start, count) = (address, number)
    } else {
        throw ConfigurationError("--address-pool must be a prefix like 239.192.0.0/14 or START+COUNT like 239.192.0.0+1024, got '\(text)'")
    }
    let last = UInt64(start.value) + UInt64(count) - 1
    guard start.value >> 28 == 0xE, last >> 28 == 0xE else {
        throw ConfigurationError("--address-pool: \(text) is not all within the multicast range 224.0.0.0/4")
    }
    return (start, count)
}

private final class GMSStatistics: AlarmHandler {
    let server: GMSServer
    let metrics: MetricsServer?
    let logEvery: Int
    var ticks = 0

    init(server: GMSServer, metrics: MetricsServer?, logEvery: Int) {
        self.server = server
        self.metrics = metrics
        self.logEvery = logEvery
    }

    func alarmFired(tag: UInt64, deadline: Instant, core: EventCore) {
        let service = server.service
        let s = service.statistics
        let gauges: [(String, String, Int)] = [
            ("nodes", "Live nodes registered.", service.liveNodeCount),
            ("groups", "Groups with members or publishers.", service.groupCount),
            ("regions", "Regions in the current views.", service.regionViews.count),
            ("addresses", "Multicast addresses in use.", service.addressesInUse),
            ("connections", "Open node connections.", server.connectionCount),
        ]
        let counters: [(String, String, Int)] = [
            ("batches", "Batches of changes applied.", s.batchesApplied),
            ("updates", "View updates sent to nodes.", s.updatesSent),
            ("registrations", "Node registrations.", s.registrations),
            ("leaves", "Nodes that left cleanly.", s.cleanLeaves),
            ("disconnect_failures", "Nodes excluded because their connection closed.", s.disconnectFailures),
            ("heartbeat_failures", "Nodes excluded for missing heartbeats.", s.heartbeatFailures),
            ("suspicions", "Suspects reported by ring leaders (no answer on the data path).", s.suspicionsReceived),
            ("suspicions_ignored", "Suspicions ignored (suspect not live, or sharing no region with its reporter).", s.suspicionsIgnored),
            ("suspicion_exclusions", "Nodes excluded on a ring leader's suspicion.", s.suspicionExclusions),
            ("suspicions_unconfirmed", "Suspicions of a node reported for less than --suspect-confirm so far.", s.suspicionsAwaitingConfirmation),
            ("evictions", "Nodes that left a group because their application was too slow (announced to the group).", s.evictionsAnnounced),
            ("quarantine_refusals", "Registrations refused while the node was quarantined after such an exclusion.", s.quarantineRefusals),
            ("rejected", "Requests refused (limits, bad names).", s.rejectedRequests),
            ("malformed", "Malformed frames received.", s.malformedFrames),
            ("oversized", "Frames over the size limit.", server.oversizedFrames),
            ("slow_clients", "Connections closed for not reading their updates.", server.slowClientsDisconnected),
            ("duplicates", "Registrations of an id already registered.", s.duplicateRegistrations),
            ("unauthenticated", "Connections that failed to authenticate.", s.authenticationFailures),
        ]
        if let metrics {
            var text = OpenMetricsText()
            for (name, help, value) in gauges { text.family("qsm_gms_\(name)", .gauge, help, value) }
            for (name, help, value) in counters { text.family("qsm_gms_\(name)", .counter, help, value) }
            metrics.update(text.finish())
        }
        ticks += 1
        if logEvery > 0, ticks % logEvery == 0 {
            var fields: [(String, any Sendable)] = []
            for (name, _, value) in gauges + counters { fields.append((name, value)) }
            logFields(.info, "qsm-node gms", "statistics", fields)
        }
        core.scheduleAlarm(at: deadline.advanced(by: .seconds(1)), handler: self)
    }
}
