#if canImport(Glibc)
import Glibc
#endif
import QSMCore
import QSMHarness
import Synchronization


/// Flags shared by publish, subscribe and run.
struct NodeFlags {
    static let valued: Set<String> = ["--gms", "--group", "--interface", "--port", "--id", "--ttl", "--timeout-seconds", "--timeout",
                                      "--secret-file", "--metrics-listen", "--bundle-bytes"]
    static let switches: Set<String> = ["-h", "--help", "--insecure", "--encrypt", "--no-offload"]
    static let help = """
          --gms HOST:PORT          the membership service (HOST: an IPv4 address or a name)
          --group NAME             the group
          --interface IF           the interface for multicast: its IPv4 address, its name
                                   (eth0) or a subnet it is in (10.0.0.0/24); default
                                   127.0.0.1 (this host only; a warning says so when the
                                   GMS is elsewhere)
          --port P                 unicast port for control traffic (default: any free port)
          --id N                   this node's id (default: random)
          --ttl N                  multicast time to live, 0...255 (default 1)
          --bundle-bytes N         packets ready together for one address (small
                                   messages) share a datagram of up to N bytes, 256 at
                                   least; 0: each alone (default 1472: an Ethernet MTU
                                   without IP fragmentation; on loopback or jumbo frames
                                   up to 65507). It also sets the largest datagram this node
                                   accepts (at least 8192): give every node of a cluster
                                   the same value, or one that receives drops the larger
                                   datagrams (counted, and warned of)
          --no-offload             neither hand runs of datagrams to the kernel as one
                                   segmented send (UDP GSO) nor take coalesced ones (UDP
                                   GRO); by default both are used where the kernel offers
                                   them ('gso' and 'gro' in the statistics say which are)
          --secret-file PATH       the cluster secret (at least 16 bytes; a trailing newline
                                   is ignored; make one with 'qsm-node secret new PATH'):
                                   every datagram is authenticated (AES-128-GMAC, a key per
                                   sender incarnation) and forged or replayed ones are
                                   dropped and counted; the GMS connection is mutually
                                   authenticated. Every node and the GMS need the same
                                   file. Required unless --insecure is given.
          --encrypt                also encrypt every packet, headers and payload
                                   (AES-128-GCM); needs --secret-file, and every node of
                                   the cluster must give it (the GMS needs nothing more)
          --insecure               run without a cluster secret (warns every time): anyone
                                   who can send a datagram can forge data this node
                                   delivers, and anyone who reaches the GMS can join
          --timeout D              give up if the GMS cannot be reached, or (publish) if the
                                   members asked for by --wait-members do not join, or the
                                   messages are not all acknowledged, within D each (default
                                   30s; exit status 1). Durations take a unit: 250ms, 5s, 2m
                                   (a bare number is seconds); --timeout-seconds is the
                                   older name
        \(NodeMetrics.help)
        Counters: 'qsm-node stats' reads them from this node's local stats socket.
        """

    /// The node settings every engine command shares: GMS, interface, port, id, TTL.
    static func node(_ flags: CommandLineFlags) throws(ConfigurationError) -> QSMNodeConfiguration {
        guard let gms = try flags.address("--gms") else { throw ConfigurationError("--gms is required") }
        var configuration = QSMNodeConfiguration(gms: gms)
        configuration.onWarning = { log(.warning, "qsm-node", $0) }
        if let text = try flags.value("--interface") {
            configuration.interface = try AddressResolution.interface(text)
        } else if configuration.gms.address != .loopback {
            // The loopback default cannot reach a remote GMS's cluster: say so, not silently.
            log(.warning, "qsm-node", "no --interface given: multicast stays on 127.0.0.1, which nodes on other hosts cannot reach "
                + "(give the address, name or subnet of the NIC to use, like --interface eth0)")
        }
        configuration.port = UInt16(try flags.integer("--port", in: 0...65535, default: 0))
        if let text = try flags.value("--id") {
            guard let id = UInt64(text), id > 0 else { throw ConfigurationError("--id must be 1...18446744073709551615, got '\(text)'") }
            configuration.nodeID = id
        }
        configuration.multicastTimeToLive = UInt8(try flags.integer("--ttl", in: 0...255, default: 1))
        configuration.bundleBytes = try flags.integer("--bundle-bytes", zeroOr: QSMNodeConfiguration.bundleBytesRange,
                                                      default: configuration.bundleBytes)
        if configuration.bundleBytes > configuration.eventCoreConfiguration.packetBufferCapacity {
            configuration.eventCoreConfiguration.packetBufferCapacity = configuration.bundleBytes
        }
        if let path = try flags.value("--secret-file") { configuration.clusterSecret = try readSecret(path) }
        configuration.insecure = flags.has("--insecure")
        if configuration.clusterSecret == nil, !configuration.insecure {
            throw ConfigurationError("no cluster secret: give --secret-file PATH (make one with 'qsm-node secret new PATH'), or --insecure to run without one")
        }
        if configuration.clusterSecret != nil, configuration.insecure {
            throw ConfigurationError("--secret-file and --insecure exclude each other")
        }
        configuration.encrypt = flags.has("--encrypt")
        if flags.has("--no-offload") {
            configuration.eventCoreConfiguration.segmentationOffload = false
            configuration.eventCoreConfiguration.receiveOffload = false
        }
        if configuration.encrypt, configuration.clusterSecret == nil {
            throw ConfigurationError("--encrypt needs --secret-file: the keys are derived from the cluster secret")
        }
        return configuration
    }

    /// The bytes of a secret file, without a trailing newline.
    static func readSecret(_ path: String) throws(ConfigurationError) -> [UInt8] {
        guard let file = fopen(path, "r") else { throw ConfigurationError("cannot read the secret file '\(path)': \(String(cString: strerror(errno)))") }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        while bytes.count <= 65_536 {
            let character = fgetc(file)
            if character == EOF { break }
            bytes.append(UInt8(truncatingIfNeeded: character))
        }
        while bytes.last == UInt8(ascii: "\n") || bytes.last == UInt8(ascii: "\r") { bytes.removeLast() }
        guard bytes.count >= 16 else { throw ConfigurationError("the secret in '\(path)' must be at least 16 bytes, got \(bytes.count)") }
        return bytes
    }

    static func configuration(_ flags: CommandLineFlags) throws(ConfigurationError) -> (QSMNodeConfiguration, GroupName, Double) {
        let configuration = try node(flags)
        let groupText = try flags.required("--group")
        guard let group = GroupName(groupText) else { throw ConfigurationError("--group '\(groupText)' is not a group name") }
        let limit = try flags.duration("--timeout", alias: "--timeout-seconds", in: .milliseconds(100)...(.seconds(86_400)), default: .seconds(30))
        let timeout = Double(limit.components.seconds) + Double(limit.components.attoseconds) / 1e18
        try configuration.validate()
        return (configuration, group, timeout)
    }
}

/// Waits until the node is registered with the GMS, or gives up with the last reason.
/// Says so when the GMS excludes this node (it registers again at once, but what its
/// groups sent meanwhile is not owed to it): an exclusion was silent before.
func warnOfExclusion(_ event: MembershipEvent, command: String) {
    guard case .excluded(let reason) = event else { return }
    log(.warning, "qsm-node \(command)", "excluded by the GMS: \(reason); registering again")
}

func waitForRegistration(_ node: QSMNode, timeoutSeconds: Double, command: String) async {
    let deadline = MonotonicClock.now().advanced(byNanoseconds: Int64(timeoutSeconds * 1e9))
    while !node.isRegistered {
        if let problem = node.authenticationProblem {
            log(.error, "qsm-node \(command)", "the GMS at \(node.configuration.gms) and this node do not authenticate each other: \(problem)")
            node.stop()
            exit(1)
        }
        if MonotonicClock.now() >= deadline {
            let reason = node.lastConnectionProblem ?? "no answer"
            log(.error, "qsm-node \(command)", "could not register with the GMS at \(node.configuration.gms) within \(Int(timeoutSeconds)) s: \(reason)")
            node.stop()
            exit(1)
        }
        try? await Task.sleep(for: .milliseconds(20))
    }
}

/// Stops the node cleanly on SIGINT/SIGTERM, then exits with `code`.
func stopOnSignals(_ node: QSMNode, exitCode: Int32) {
    guard let descriptor = try? StopSignals.descriptor() else { return }
    _ = try? SystemThread(name: "qsm-signals") {
        var poller = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
        while poll(&poller, 1, -1) < 0 {}
        node.stop()
        exit(exitCode)
    }
}

enum PublishCommand {
    static let usage = """
        usage: qsm-node publish --gms HOST:PORT --group NAME [flags]

        Joins NAME and publishes each line of standard input as one message. At the end of
        input, waits until every message is acknowledged by every member, leaves, and exits
        0; exits 1 with a reason if the GMS cannot be reached or acknowledgement does not
        come within the timeout.

        flags:
        \(NodeFlags.help)
          --wait-members N         before publishing, wait until the group has N members
                                   besides this node
          -h, --help               show this help
        """

    static func main(_ arguments: [String]) async -> Never {
        let configuration: QSMNodeConfiguration, group: GroupName, timeout: Double, waitMembers: Int
        let metricsListen: QSMSocketAddress?, format: MessageFormat
        do throws(ConfigurationError) {
            let flags = try CommandLineFlags(arguments, valued: NodeFlags.valued.union(["--wait-members", "--format"]), switches: NodeFlags.switches)
            if flags.has("-h") || flags.has("--help") { print(usage); exit(0) }
            (configuration, group, timeout) = try NodeFlags.configuration(flags)
            waitMembers = try flags.integer("--wait-members", in: 0...1_000_000, default: 0)
            format = try MessageFormat.parse(flags)
            metricsListen = try flags.address("--metrics-listen")
        } catch {
            fail(error.message, command: "publish")
        }
        do {
            let node = try QSMNode(configuration: configuration)
            node.onMembershipEvent { warnOfExclusion($0, command: "publish") }
            try node.start()
            _ = NodeMetrics.serve(node, listen: metricsListen, command: "publish")
            stopOnSignals(node, exitCode: 130)
            try node.join(group.text)
            await waitForRegistration(node, timeoutSeconds: timeout, command: "publish")
            if waitMembers > 0 {
                do throws(QSMError) {
                    try await node.waitForMembers(waitMembers + 1, in: group, timeout: .nanoseconds(Int64(timeout * 1e9)))
                } catch {
                    log(.error, "qsm-node publish", "\(waitMembers) other member(s) did not join \(group.text) within \(Int(timeout)) s "
                                         + "(the view has \(node.memberCount(of: group) ?? 0) member(s), this node included)")
                    node.stop()
                    exit(1)
                }
            }
            var published = 0
            let publisher = node.publisher(for: group)
            let reader = MessageReader(format: format, maximumBytes: configuration.protocolConfiguration.maximumMessageBytes)
            while true {
                let message: UnsafeRawBufferPointer
                do throws(ConfigurationError) {
                    guard let next = try reader.next() else { break }
                    message = next
                } catch {
                    log(.error, "qsm-node publish", "bad input: \(error.message)", ["published": published])
                    node.stop()
                    exit(1)
                }
                // Copied once, into an array the node reuses (the reader's buffer is
                // not touched until the next message is read).
                try await node.publish(copying: message, to: publisher)
                published += 1
            }
            do throws(QSMError) {
                try await node.waitForAcknowledgements(timeout: .nanoseconds(Int64(timeout * 1e9)))
            } catch {
                var fields: [(String, any Sendable)] = [("reason", "\(error)")]
                if let s = try? await node.statistics() {
                    let p = s.protocolStatistics
                    fields += [("recovery_requests_received", p.requestsReceived), ("retransmissions_sent", p.retransmissionsSent),
                               ("dropped_unauthenticated", s.machine.droppedUnauthenticated),
                               ("dropped_longer_than_buffer", s.core.droppedTruncated)]
                    if p.requestsReceived > 0 || s.machine.droppedUnauthenticated > 0 || s.core.droppedTruncated > 0 {
                        // Members that ask again and again, or datagrams this node cannot
                        // take: most often settings that differ between nodes.
                        fields.append(("hint", "members asked for repairs, or their datagrams failed here: look for warnings "
                                       + "in their logs; every node needs the same secret, the same --encrypt, and a "
                                       + "--bundle-bytes at least as large as this node's"))
                    }
                }
                logFields(.error, "qsm-node publish", "\(node.unacknowledgedMessages) of \(published) messages not acknowledged within \(timeout) s",
                          fields)
                node.stop()
                exit(1)
            }
            node.stop()
            exit(0)
        } catch {
            log(.error, "qsm-node publish", "\(error)")
            exit(1)
        }
    }
}

enum SubscribeCommand {
    static let usage = """
        usage: qsm-node subscribe --gms HOST:PORT --group NAME [flags]

        Joins NAME and writes each delivered message to standard output (a line, unless
        --format says otherwise), in delivery order. With --count N, leaves cleanly and
        exits 0 after N messages; otherwise runs until SIGINT or SIGTERM, then leaves
        cleanly.

        flags:
        \(NodeFlags.help)
          --count N                exit after N messages
        \(MessageFormat.help)
          -h, --help               show this help

        A reader of standard output that falls far behind holds the node back; after
        10 s of that the node is evicted from the group (the other members go on): it
        says why and exits 1, after writing every message delivered before.

        exit status: 0 after --count messages or a stop signal, 1 on a failure (the GMS
        not reached, or refusing this node, or an eviction), 2 on bad flags.
        """

    static func main(_ arguments: [String]) async -> Never {
        let configuration: QSMNodeConfiguration, group: GroupName, timeout: Double, count: Int
        let metricsListen: QSMSocketAddress?, format: MessageFormat
        do throws(ConfigurationError) {
            let flags = try CommandLineFlags(arguments, valued: NodeFlags.valued.union(["--count", "--format"]), switches: NodeFlags.switches)
            if flags.has("-h") || flags.has("--help") { print(usage); exit(0) }
            (configuration, group, timeout) = try NodeFlags.configuration(flags)
            count = try flags.integer("--count", in: 0...Int.max, default: 0)
            format = try MessageFormat.parse(flags)
            metricsListen = try flags.address("--metrics-listen")
        } catch {
            fail(error.message, command: "subscribe")
        }
        do {
            let node = try QSMNode(configuration: configuration)
            let received = Atomic<Int>(0)
            let done = Atomic<Bool>(false)
            let writer = MessageWriter(format: format)
            node.onDelivery { delivery in
                guard delivery.group == group, !done.load(ordering: .acquiring) else { return }
                writer.write(delivery)
                let total = received.add(1, ordering: .acquiringAndReleasing).newValue
                if count > 0 && total >= count { done.store(true, ordering: .releasing) }
            }
            // Evicted for a slow reader: said, after the deliveries handed over before it.
            let evicted = Atomic<Bool>(false)
            node.onMembershipEvent { event in
                warnOfExclusion(event, command: "subscribe")
                guard case .evicted(let name, let reason) = event, name == group else { return }
                log(.error, "qsm-node subscribe", "evicted from '\(name)': \(reason)")
                evicted.store(true, ordering: .releasing)
            }
            try node.start()
            _ = NodeMetrics.serve(node, listen: metricsListen, command: "subscribe")
            stopOnSignals(node, exitCode: 0)
            try node.join(group.text)
            await waitForRegistration(node, timeoutSeconds: timeout, command: "subscribe")
            while !done.load(ordering: .acquiring), !evicted.load(ordering: .acquiring) {
                try? await Task.sleep(for: .milliseconds(10))
            }
            node.stop()
            exit(evicted.load(ordering: .acquiring) && !done.load(ordering: .acquiring) ? 1 : 0)
        } catch {
            log(.error, "qsm-node subscribe", "\(error)")
            exit(1)
        }
    }
}

enum RunCommand {
    static let usage = """
        usage: qsm-node run --gms HOST:PORT --group NAME [--group NAME ...] [flags]

        The long-running mode for cluster machines: joins the groups, counts what it
        receives, logs statistics every few seconds (JSON lines on standard error), and
        leaves cleanly on SIGINT or SIGTERM.

        flags:
        \(NodeFlags.help)
          --group NAME[,NAME...]   groups to join (repeatable; --groups is the same)
          --stats-interval D       log statistics every D (default 5s; --stats-seconds is
                                   the older name)
          -h, --help               show this help
        """

    static func main(_ arguments: [String]) async -> Never {
        var configuration: QSMNodeConfiguration
        var groups: [GroupName] = []
        let interval: Duration
        let metricsListen: QSMSocketAddress?
        do throws(ConfigurationError) {
            let flags = try CommandLineFlags(arguments, valued: NodeFlags.valued.union(["--groups", "--stats-seconds", "--stats-interval"]),
                                             switches: NodeFlags.switches)
            if flags.has("-h") || flags.has("--help") { print(usage); exit(0) }
            configuration = try NodeFlags.node(flags)
            groups = try MemberCommand.names(flags.all("--group") + flags.all("--groups"), flag: "--group")
            guard !groups.isEmpty else { throw ConfigurationError("--group is required") }
            interval = try flags.duration("--stats-interval", alias: "--stats-seconds", in: .milliseconds(100)...(.seconds(86_400)), default: .seconds(5))
            metricsListen = try flags.address("--metrics-listen")
            try configuration.validate()
        } catch {
            fail(error.message, command: "run")
        }
        do {
            let node = try QSMNode(configuration: configuration)
            let received = Atomic<Int>(0)
            node.onDelivery { _ in received.add(1, ordering: .relaxed) }
            node.onMembershipEvent { warnOfExclusion($0, command: "run") }
            try node.start()
            _ = NodeMetrics.serve(node, listen: metricsListen, command: "run")
            stopOnSignals(node, exitCode: 0)
            for group in groups { try node.join(group.text) }
            log(.info, "qsm-node run", "joining", ["node": node.id.value, "address": "\(node.address)",
                                                   "groups": groups.map(\.text).joined(separator: ",")])
            while true {
                try? await Task.sleep(for: interval)
                guard let s = try? await node.statistics() else { continue }
                let p = s.protocolStatistics
                let rtt = p.tokenRounds == 0 ? 0 : Double(p.tokenRoundTripNanoseconds) / Double(p.tokenRounds) / 1e6
                let ack = p.acknowledged == 0 ? 0 : Double(p.acknowledgementLatencyNanoseconds) / Double(p.acknowledged) / 1e6
                logFields(.info, "qsm-node run", "statistics", [
                    ("registered", s.registered), ("regions", s.regions), ("received", received.load(ordering: .relaxed)),
                    ("sent", p.dataPacketsSent), ("delivered", p.delivered), ("retransmitted", p.retransmissionsSent),
                    ("naks_sent", p.requestsSent), ("naks_received", p.requestsReceived), ("token_rtt_ms", rtt), ("ack_ms", ack),
                    ("pending_ack", s.unacknowledgedMessages), ("cached_bytes", s.heldBytes),
                    ("alarm_late_max_us", Int(s.alarmLateness.maxNanoseconds / 1000)),
                    ("dropped_malformed", p.malformedDropped), ("ignored_own_multicast", p.ownMulticastIgnored),
                    ("dropped_unknown", p.unknownDropped),
                    ("dropped_out_of_window", p.outOfOrderDropped), ("dropped_unauthenticated", s.machine.droppedUnauthenticated),
                    ("dropped_replayed", s.machine.droppedReplayed), ("dropped_too_old", s.machine.droppedTooOld),
                    ("dropped_dead_incarnation", s.machine.droppedDeadIncarnation), ("pool_exhausted", s.core.poolExhaustions),
                    ("dropped_longer_than_buffer", s.core.droppedTruncated),
                    ("gms_auth_failures", s.machine.gmsAuthenticationFailures),
                    ("gso", s.core.segmentationOffload), ("gso_datagrams", s.core.segmentedDatagrams),
                    ("gro", s.core.receiveOffload), ("gro_datagrams", s.core.coalescedDatagrams),
                ])
            }
        } catch {
            log(.error, "qsm-node run", "\(error)")
            exit(1)
        }
    }
}
