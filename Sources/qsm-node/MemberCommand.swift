#if canImport(Glibc)
import Glibc
#endif
import QSMCore
import QSMHarness
import QSMGMS

enum MemberCommand {
    static let usage = """
        usage: qsm-node member --gms HOST:PORT --id N [flags]

        Registers node N with the GMS, joins and publishes to groups, and prints every
        membership event (registration, exclusion, region and group views, refusals) as
        one JSON object per line on standard output. Lines on standard input change what
        it belongs to: "join NAME", "leave NAME", "publish NAME", "unpublish NAME", and
        "quit" (leaves cleanly and exits). End of input is not a quit: the node stays
        until "quit", SIGINT or SIGTERM, each of which leaves cleanly.

        flags:
          --gms HOST:PORT          the membership service
          --id N                   this node's id, 1...18446744073709551615
          --address HOST:PORT      unicast address to advertise (default 127.0.0.1:0;
                                   this command receives no data itself)
          --group NAME[,NAME...]   groups to join (repeatable; --join is the older name)
          --publish NAME[,NAME...] groups to publish to without joining (repeatable)
          --heartbeat D            heartbeat interval (default 1s; a duration like 250ms;
                                   --heartbeat-ms is the older name); shorter when the
                                   GMS's timeout is under four of them
          --secret-file PATH       the cluster secret (as for the GMS and every node): the
                                   GMS connection is mutually authenticated
          --insecure               run without a secret, against a GMS run with --insecure
          -h, --help               show this help
        """

    static func main(_ arguments: [String]) -> Never {
        let gms: QSMSocketAddress
        let node: NodeID
        let address: QSMSocketAddress
        var joins: [GroupName] = []
        var publishes: [GroupName] = []
        let heartbeat: Duration
        var secret: [UInt8]?
        do throws(ConfigurationError) {
            let flags = try CommandLineFlags(arguments, valued: ["--gms", "--id", "--address", "--join", "--group", "--publish", "--heartbeat-ms", "--heartbeat",
                                                                 "--secret-file"],
                                             switches: ["-h", "--help", "--insecure"])
            if flags.has("-h") || flags.has("--help") {
                print(usage)
                exit(0)
            }
            if let path = try flags.value("--secret-file") { secret = try NodeFlags.readSecret(path) }
            if secret == nil, !flags.has("--insecure") {
                throw ConfigurationError("no cluster secret: give --secret-file PATH (make one with 'qsm-node secret new PATH'), or --insecure to run without one")
            }
            if secret != nil, flags.has("--insecure") { throw ConfigurationError("--secret-file and --insecure exclude each other") }
            guard let gmsAddress = try flags.address("--gms") else { throw ConfigurationError("--gms is required") }
            gms = gmsAddress
            let idText = try flags.required("--id")
            guard let id = UInt64(idText), id > 0 else { throw ConfigurationError("--id must be 1...18446744073709551615, got '\(idText)'") }
            node = NodeID(id)
            address = try flags.address("--address") ?? QSMSocketAddress(.loopback, port: 0)
            joins = try names(flags.all("--group") + flags.all("--join"), flag: "--group")
            publishes = try names(flags.all("--publish"), flag: "--publish")
            heartbeat = try flags.duration("--heartbeat", alias: "--heartbeat-ms", aliasUnit: .milliseconds(1),
                                           in: .milliseconds(10)...(.seconds(60)), default: .seconds(1))
        } catch {
            fail(error.message, command: "member")
        }

        do {
            let core = try EventCore()
            let agent = MembershipAgent(node: node, address: address, gms: gms, core: core,
                                        heartbeatInterval: heartbeat, clusterSecret: secret) { events, agent in
                for event in events { writeToStandardOutput(MembershipJSON.line(for: event, node: agent.client.node)) }
            }
            for group in joins { agent.join(group) }
            for group in publishes { agent.publish(group) }
            let leave: (EventCore) -> Void = { core in
                agent.stop()
                core.handle.stop()
            }
            _ = try StopOnSignal(core: core, action: leave)
            let commands = StandardInputCommands(agent: agent, quit: leave)
            commands.register(with: core)
            agent.start()
            try core.run()
            exit(0)
        } catch {
            log(.error, "qsm-node member", "\(error)")
            exit(1)
        }
    }

    static func names(_ lists: [String], flag: String) throws(ConfigurationError) -> [GroupName] {
        var result: [GroupName] = []
        for list in lists {
            for part in list.split(separator: ",", omittingEmptySubsequences: false) {
                guard let name = GroupName(String(part)) else {
                    throw ConfigurationError("\(flag): '\(part)' is not a group name (1-255 bytes, no control characters)")
                }
                result.append(name)
            }
        }
        return result
    }
}

/// Reads commands from standard input on the core, one per line.
private final class StandardInputCommands: DescriptorHandler {
    let agent: MembershipAgent
    let quit: (EventCore) -> Void
    private var pending: [UInt8] = []
    private var registration: RegistrationID?

    init(agent: MembershipAgent, quit: @escaping (EventCore) -> Void) {
        self.agent = agent
        self.quit = quit
    }

    func register(with core: EventCore) {
        let flags = fcntl(0, F_GETFL)
        guard flags >= 0, fcntl(0, F_SETFL, flags | O_NONBLOCK) == 0 else { return }
        // A regular file or /dev/null cannot be watched by epoll: then there are no commands.
        registration = try? core.registerDescriptor(0, medium: .local, traffic: .control, readable: true,
                                                    writable: false, handler: self)
    }

    func descriptorReadable(_ registration: RegistrationID, core: EventCore) {
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(0, $0.baseAddress, $0.count) }
            if count > 0 {
                pending += chunk[0..<count]
                continue
            }
            if count == 0 {
                core.unregister(registration)
                self.registration = nil
            }
            break
        }
        while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
            let line = String(decoding: pending[..<newline], as: UTF8.self)
            pending.removeSubrange(...newline)
            run(line, core: core)
        }
        if pending.count > 1 << 16 { pending.removeAll() }
    }

    func descriptorWritable(_ registration: RegistrationID, core: EventCore) {}

    private func run(_ line: String, core: EventCore) {
        let words = line.split(separator: " ", maxSplits: 1).map(String.init)
        guard let command = words.first else { return }
        if command == "quit" { return quit(core) }
        guard words.count == 2, let group = GroupName(words[1]) else {
            return writeToStandardOutput(#"{"event":"rejected","request":\#(jsonString(line)),"reason":"expected: join|leave|publish|unpublish NAME, or quit"}"#)
        }
        switch command {
        case "join": agent.join(group)
        case "leave": agent.leave(group)
        case "publish": agent.publish(group)
        case "unpublish": agent.unpublish(group)
        default:
            writeToStandardOutput(#"{"event":"rejected","request":\#(jsonString(line)),"reason":"unknown command '\#(command)'"}"#)
        }
    }
}
