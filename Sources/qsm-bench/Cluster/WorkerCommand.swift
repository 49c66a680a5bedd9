#if canImport(Glibc)
import Glibc
#endif
import CQSMAllocationCounter
import QSMCore
import QSMHarness
import QSMGMS
import Synchronization

/// `qsm-bench _worker ROLE`: a process of a cluster run, started by the coordinator in
/// the same network namespace. It reads commands from standard input and answers with
/// `WorkerLine`s on standard output; it dies with the coordinator.
enum WorkerCommand {
    static func main(_ arguments: [String]) async -> Never {
        do {
            try ChildProcess.exitWithParent()
            switch arguments.first {
            case "gms": try runMembershipService(Array(arguments.dropFirst()))
            case "node": try await runNode()
            case "hostile": try runHostile()
            default: benchLog("qsm-bench _worker: unknown role \(arguments.first ?? "(none)")")
            }
            exit(0)
        } catch {
            benchLog("qsm-bench worker: \(error)")
            exit(1)
        }
    }

    static func say(_ line: WorkerLine) { writeToStandardOutput(line.description) }

    /// The bytes a hex string spells (up to the first character that is not hex).
    static func hexBytes(_ text: String) -> [UInt8] {
        var bytes: [UInt8] = []
        var index = text.startIndex
        while index < text.endIndex, let next = text.index(index, offsetBy: 2, limitedBy: text.endIndex),
              let byte = UInt8(text[index..<next], radix: 16) {
            bytes.append(byte)
            index = next
        }
        return bytes
    }

    // MARK: The GMS

    /// Arguments: heartbeat timeout in milliseconds, partition size, listening address.
    private static func runMembershipService(_ arguments: [String]) throws -> Never {
        var configuration = MembershipConfiguration()
        if let timeout = arguments.first.flatMap(Int.init) { configuration.heartbeatTimeout = .milliseconds(timeout) }
        if arguments.count > 1, let size = Int(arguments[1]) { configuration.partitionSize = size }
        let listen = arguments.count > 2 ? QSMSocketAddress(arguments[2]) : nil
        if let secret = getenv("QSM_BENCH_GMS_SECRET") { configuration.clusterSecret = hexBytes(String(cString: secret)) }
        let core = try EventCore()
        let server = try GMSServer(configuration: configuration, listeningOn: listen ?? QSMSocketAddress(.loopback, port: 0), core: core)
        say(WorkerLine("gms", [("address", server.listenAddress)]))
        try core.run()
        exit(0)
    }

    // MARK: A hostile process

    /// Waits for `hostile targets=… gms=… interface=…`, sprays until `finish`, then
    /// reports how many datagrams it sent.
    private static func runHostile() throws {
        var injector: HostileInjector?
        while let text = readLine() {
            guard let command = WorkerLine(parsing: text) else { continue }
            switch command.verb {
            case "hostile":
                let targets = (command["targets"] ?? "").split(separator: ",").compactMap { QSMSocketAddress(String($0)) }
                injector = try HostileInjector(targets: targets, gms: try address(command, "gms"),
                                               interface: try interface(command), seed: UInt64(command.int("seed") ?? 99))
                say(WorkerLine("hostile-started"))
            case "finish":
                injector?.stop()
                say(WorkerLine("result", [("datagrams", injector?.datagramsSent ?? 0)]))
                return
            default:
                throw ConfigurationError("unknown hostile command '\(command.verb)'")
            }
        }
    }

    // MARK: A node process (raw blasts, then a QSM node)

    private static func runNode() async throws {
        var rawReceiver: RawReceiver?
        var rawSender: RawSender?
        var receiver: BenchReceiver?
        var sender: BenchSender?
        var progress: ProgressReporter?
        while let text = readLine() {
            guard let command = WorkerLine(parsing: text) else { continue }
            switch command.verb {
            case "raw-open":
                rawReceiver?.stop()
                rawReceiver = try RawReceiver(mode: RawReceiveMode(rawValue: command["mode"] ?? "") ?? .blocking,
                                              group: try address(command, "group"), interface: try interface(command),
                                              receiveBufferBytes: command.int("buffer") ?? 8 << 20,
                                              measuresLatency: command.int("latency") == 1)
                say(WorkerLine("raw-ready"))
            case "raw-latency":
                let histogram = rawReceiver?.latencyHistogram ?? LatencyHistogram()
                say(WorkerLine("raw-latency", [("latency", histogram.encoded.isEmpty ? "-" : histogram.encoded),
                                               ("latency_max_us", histogram.maximumMicroseconds)]))
            case "raw-count":
                let trial = command.int("trial") ?? -1
                say(WorkerLine("raw-count", [("trial", trial), ("count", rawReceiver?.count(of: trial) ?? 0)]))
            case "raw-cpu":
                say(WorkerLine("raw-cpu", [("cpu_s", ProcessMetrics.cpuSeconds)]))
            case "raw-close":
                rawReceiver?.stop()
                rawReceiver = nil
                say(WorkerLine("raw-closed"))
            case "raw-blast":
                if rawSender == nil { rawSender = try RawSender(interface: try interface(command), timeToLive: 1) }
                let seconds = try rawSender!.blast(trial: command.int("trial") ?? 0, count: command.int("count") ?? 0,
                                                   rate: command.double("rate") ?? 1000, size: command.int("size") ?? 1000,
                                                   to: try address(command, "group"), segmenting: command.int("gso") == 1,
                                                   stamped: command.int("stamp") != 0)
                say(WorkerLine("raw-blasted", [("seconds", seconds)]))
            case "receive":
                let groups = command.int("groups") ?? 1
                receiver = try BenchReceiver(configuration: try nodeConfiguration(command), groups: groups,
                                             senders: command.int("senders") ?? 1)
                progress = ProgressReporter(count: { [receiver] in receiver!.deliveredCount },
                                            tail: { [receiver] in receiver!.tailCount })
                say(WorkerLine("node", [("id", receiver!.node.id.value), ("address", receiver!.node.address)]))
            case "send":
                sender = try BenchSender(configuration: try nodeConfiguration(command), index: command.int("index") ?? 0,
                                         groups: command.int("groups") ?? 1)
                // A wait that takes long says where it stands (on standard error, which
                // the run passes on), so a run that gives up can be explained.
                let node = sender!.node
                let report = Task {
                    for _ in 0..<6 {
                        try await Task.sleep(for: .seconds(10))
                        benchLog("sender waiting for its receivers: \(BenchSender.membershipState(of: node))")
                    }
                }
                try await sender!.waitForReceivers(command.int("receivers") ?? 1)
                report.cancel()
                say(WorkerLine("node", [("id", sender!.node.id.value), ("address", sender!.node.address)]))
            case "go":
                guard let sender else { throw ConfigurationError("go before send") }
                progress = ProgressReporter { sender.sentCount }
                let seconds = try await sender.run(size: command.int("size") ?? 1000, seconds: command.double("seconds"),
                                                   count: command.int("count"), rate: command.double("rate") ?? 0)
                say(WorkerLine("sent", [("count", sender.sentCount), ("seconds", seconds)]))
            case "senders":
                let ids = (command["ids"] ?? "").split(separator: ",").compactMap { UInt64($0) }.map(NodeID.init)
                receiver?.knowSenders(ids)
                say(WorkerLine("senders-known"))
            case "view":
                let view = receiver?.latestRegionView
                say(WorkerLine("view", [("registered", receiver?.node.isRegistered ?? false),
                                        ("group_members", receiver?.node.memberCount(of: BenchGroups.name(0)) ?? -1),
                                        ("region_leader", view?.regionLeader.value ?? 0),
                                        ("partition_leaders", view.map { $0.partitions.map { "\($0.leader.value)" }.joined(separator: ",") } ?? "-"),
                                        ("members", view.map { $0.members.map { "\($0.id.value)" }.joined(separator: ",") } ?? "-")]))
            case "targets":
                let addresses = receiver?.multicastAddresses.map(\.description).joined(separator: ",") ?? ""
                say(WorkerLine("targets", [("multicast", addresses.isEmpty ? "-" : addresses)]))
            case "lose":
                receiver?.node.injectInboundLoss(for: .milliseconds(command.int("ms") ?? 10))
            case "fault":
                receiver?.node.injectFault(inboundLossPercent: command.int("percent") ?? 100, dropOutbound: command["out"] == "1",
                                           for: .milliseconds(command.int("ms") ?? 0))
            case "slow":
                receiver?.slowDown(perSecond: command.double("per_second") ?? 0)
            case "leave":
                receiver?.leaveAll()
            case "join":
                try receiver?.joinAll()
            case "finish":
                progress?.stop()
                // A slowed application catches up now, so that what it has been handed
                // (and the statistics queued behind it) comes through.
                receiver?.slowDown(perSecond: 0)
                if let receiver { say(try await receiver.result()) }
                if let sender { say(try await sender.result()) }
                receiver?.node.stop()
                sender?.node.stop()
                return
            default:
                throw ConfigurationError("unknown worker command '\(command.verb)'")
            }
        }
    }

    private static func address(_ command: WorkerLine, _ key: String) throws -> QSMSocketAddress {
        guard let text = command[key], let address = QSMSocketAddress(text) else { throw ConfigurationError("worker: bad \(key)") }
        return address
    }

    private static func interface(_ command: WorkerLine) throws -> IPv4Address {
        guard let text = command["interface"] else { return .loopback }
        guard let address = IPv4Address(text) else { throw ConfigurationError("worker: bad interface") }
        return address
    }

    private static func nodeConfiguration(_ command: WorkerLine) throws -> QSMNodeConfiguration {
        var configuration = QSMNodeConfiguration(gms: try address(command, "gms"))
        configuration.interface = try interface(command)
        if let window = command.int("window") { configuration.protocolConfiguration.windowMessages = window }
        if let bytes = command.int("window-bytes") { configuration.protocolConfiguration.windowBytes = bytes }
        if let attempts = command.int("peer_attempts") { configuration.protocolConfiguration.peerAttemptsBeforeSender = attempts }
        if let members = command.int("sender_first_up_to") { configuration.protocolConfiguration.senderFirstUpToMembers = members }
        if let bundle = command.int("bundle") {
            configuration.bundleBytes = bundle
            configuration.eventCoreConfiguration.packetBufferCapacity = max(configuration.eventCoreConfiguration.packetBufferCapacity, bundle)
        }
        if command.int("gso") == 0 {
            configuration.eventCoreConfiguration.segmentationOffload = false
            configuration.eventCoreConfiguration.receiveOffload = false
        }
        if let secret = command["secret"] { configuration.clusterSecret = hexBytes(secret) } else { configuration.insecure = true }
        configuration.encrypt = command.int("encrypt") == 1
        try configuration.validate()
        return configuration
    }
}

/// Prints `p t=NANOSECONDS n=COUNT a=ALLOCATIONS` every 100 ms from a thread of its own,
/// so that the coordinator can draw throughput over time and count heap allocations per
/// message in steady state (`a` is the process's allocations so far, counted by
/// CQSMAllocationCounter); with `tail`, also `l=TAIL`: how far the
/// streams have come (for a receiver that skipped messages while away, more than its
/// count), which tells the coordinator when it has everything it is owed.
final class ProgressReporter: Sendable {
    private let thread: SystemThread?
    private let stopping = SharedFlag()

    init(count: @escaping @Sendable () -> Int, tail: (@Sendable () -> Int)? = nil) {
        let stopping = self.stopping
        thread = try? SystemThread(name: "progress") {
            while !stopping.isSet {
                var pause = timespec(tv_sec: 0, tv_nsec: 100_000_000)
                nanosleep(&pause, nil)
                var fields: [(String, Any)] = [("t", MonotonicClock.now().nanoseconds), ("n", count()),
                                               ("a", Int(cqsm_allocation_count()))]
                if let tail { fields.append(("l", tail())) }
                WorkerCommand.say(WorkerLine("p", fields))
            }
        }
    }

    func stop() {
        stopping.set()
        thread?.join()
    }
}

/// A flag one thread sets and another polls.
final class SharedFlag: Sendable {
    private let value = Atomic<Bool>(false)
    func set() { value.store(true, ordering: .releasing) }
    var isSet: Bool { value.load(ordering: .acquiring) }
}
