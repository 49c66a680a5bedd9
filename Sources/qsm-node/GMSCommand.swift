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
        HOST:PORT" once ready; statistics go to standard error. SIGINT or SIGTERM stops it.

        flags:
          --listen HOST:PORT             address to listen on (port 0: any free port)
          --mode full|hierarchies        full: one region per distinct set of groups
                                         (default); hierarchies: decompose groups into
                                         perfect hierarchies first, regions per hierarchy
          --partition-size K             nodes per partition (default 5)
          --min-region-size N            hierarchies mode: smallest region a group may
                                         leave behind when added (default 1)
          --batch-ms MS                  apply pending changes every MS ms (default 100)
          --heartbeat-timeout-ms MS      exclude a node silent this long (default 5000)
          --address-pool START/COUNT     multicast addresses for regions (default
                                         239.192.0.0/262144)
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
          --stats-seconds S              print statistics every S seconds, 0 = never
                                         (default 10)
          -h, --help                     show this help
        """

    static func main(_ arguments: [String]) -> Never {
        let flags: CommandLineFlags
        var configuration = MembershipConfiguration()
        let listen: SocketAddress
        let statsSeconds: Int
        do throws(ConfigurationError) {
            flags = try CommandLineFlags(arguments, valued: [
                "--listen", "--mode", "--partition-size", "--min-region-size", "--batch-ms", "--heartbeat-timeout-ms",
                "--address-pool", "--multicast-port", "--hybrid", "--max-nodes", "--max-groups", "--max-groups-per-node",
                "--stats-seconds", "--secret-file",
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
            configuration.batchInterval = .milliseconds(try flags.integer("--batch-ms", in: 1...600_000, default: 100))
            configuration.heartbeatTimeout = .milliseconds(try flags.integer("--heartbeat-timeout-ms", in: 100...3_600_000, default: 5000))
            if let pool = try flags.value("--address-pool") {
                let parts = pool.split(separator: "/")
                guard parts.count == 2, let start = IPv4Address(parts[0]), let count = Int(parts[1]), count > 0 else {
                    throw ConfigurationError("--address-pool must be START/COUNT (like 239.192.0.0/1024), got '\(pool)'")
                }
                configuration.addressPoolStart = start
                configuration.addressPoolSize = count
            }
            configuration.multicastPort = UInt16(try flags.integer("--multicast-port", in: 1...65535, default: 17000))
            configuration.hybridGroups = Set(flags.all("--hybrid"))
            configuration.maximumNodes = try flags.integer("--max-nodes", in: 1...10_000_000, default: 10_000)
            configuration.maximumGroups = try flags.integer("--max-groups", in: 1...100_000_000, default: 100_000)
            configuration.maximumGroupsPerNode = try flags.integer("--max-groups-per-node", in: 1...10_000_000, default: 10_000)
            statsSeconds = try flags.integer("--stats-seconds", in: 0...86_400, default: 10)
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
                writeToStandardError("qsm-node gms: WARNING: running without a cluster secret (--insecure): any host that reaches "
                                     + "\(listen) can register nodes, join any group and read its data")
            }
            let server = try GMSServer(configuration: configuration, listeningOn: listen, core: core)
            server.onRefusal = { writeToStandardError("qsm-node gms: refused connection \($0)") }
            _ = try StopOnSignal(core: core) { core in
                writeToStandardError("qsm-node gms: stopping")
                core.handle.stop()
            }
            if statsSeconds > 0 {
                core.scheduleAlarm(at: core.now.advanced(by: .seconds(statsSeconds)),
                                   handler: StatisticsPrinter(server: server, interval: .seconds(statsSeconds)))
            }
            writeToStandardOutput("gms listening on \(server.listenAddress)")
            try core.run()
            exit(0)
        } catch {
            writeToStandardError("qsm-node gms: \(error)")
            exit(1)
        }
    }
}

private final class StatisticsPrinter: AlarmHandler {
    let server: GMSServer
    let interval: Duration
    init(server: GMSServer, interval: Duration) {
        self.server = server
        self.interval = interval
    }

    func alarmFired(tag: UInt64, deadline: Instant, core: EventCore) {
        let service = server.service
        let s = service.statistics
        writeToStandardError("gms: nodes=\(service.liveNodeCount) groups=\(service.groupCount) regions=\(service.regionViews.count) "
            + "addresses=\(service.addressesInUse) connections=\(server.connectionCount) batches=\(s.batchesApplied) "
            + "updates=\(s.updatesSent) registrations=\(s.registrations) leaves=\(s.cleanLeaves) "
            + "failures(disconnect=\(s.disconnectFailures) heartbeat=\(s.heartbeatFailures)) "
            + "rejected=\(s.rejectedRequests) malformed=\(s.malformedFrames) oversized=\(server.oversizedFrames) "
            + "slow=\(server.slowClientsDisconnected) duplicates=\(s.duplicateRegistrations) "
            + "unauthenticated=\(s.authenticationFailures)")
        core.scheduleAlarm(at: deadline.advanced(by: interval), handler: self)
    }
}
