#if canImport(Glibc)
import Glibc
#endif
import QSMCore
import QSMHarness

/// Several "hosts" on this machine for one run: network namespaces PREFIX-1...N, each
/// with an eth0 (10.77.0.I/24) on a bridge in namespace PREFIX-br, with real kernel IP
/// multicast across the bridge (snooping off, so groups flood). The same construction as
/// bench/hosts.sh, so a run here and a run by hand see the same network. Faults are
/// nftables rules in a host's own table; `tearDown` removes every namespace it made.
/// It only ever touches namespaces named after its own prefix.
final class HostNetwork {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// What a host's nftables rules do.
    enum Fault {
        /// Drops PCT% of inbound packets at random.
        case randomLoss(percent: Int)
        /// Drops every inbound packet.
        case dropInbound
        /// Drops everything, both ways.
        case cutOff
    }

    let prefix: String
    let count: Int
    private var torndown = false

    static let ip = "/usr/sbin/ip"
    static let nft = "/usr/sbin/nft"

    /// Whether hosts can be built here: root and both tools.
    static var unavailableReason: String? {
        if getuid() != 0 { return "namespaced hosts need root" }
        if access(ip, X_OK) != 0 { return "namespaced hosts need \(ip) (apt-get install iproute2)" }
        if access(nft, X_OK) != 0 { return "namespaced hosts need \(nft) (apt-get install nftables)" }
        return nil
    }

    /// Builds `count` hosts named after this process ("qb<pid>"), first removing hosts
    /// left behind by earlier runs whose process is gone.
    init(count: Int) throws {
        precondition((1...200).contains(count))
        prefix = "qb\(getpid())"
        self.count = count
        Self.removeOrphans()
        do {
            try build()
        } catch {
            tearDown()
            throw error
        }
    }

    deinit { tearDown() }

    static func address(of host: Int) -> IPv4Address { IPv4Address(10, 77, 0, UInt8(host)) }
    func namespace(_ host: Int) -> String { "\(prefix)-\(host)" }

    /// The command line that runs `arguments` on `host` (`ip netns exec` execs in place,
    /// so the process it starts is the command itself: signals reach it directly).
    func command(on host: Int, _ arguments: [String]) -> (executable: String, arguments: [String]) {
        (Self.ip, ["netns", "exec", namespace(host)] + arguments)
    }

    /// Replaces `host`'s fault rules with `fault`'s (none: healed). Drops are counted by
    /// one named counter per host that outlives the rules.
    func setFault(_ fault: Fault?, on host: Int) throws {
        try runChecked(Self.nft, ["-f", "-"], on: host, input: Self.rules(fault))
    }

    func heal(_ host: Int) throws { try setFault(nil, on: host) }

    /// Rule changes for several hosts, started ahead (each an `nft` waiting for its
    /// input), so that applying them costs only nft's own work, not starting processes:
    /// a 10 ms burst stays near 10 ms.
    final class PreparedRules {
        private let children: [ChildProcess]
        private let text: String

        fileprivate init(children: [ChildProcess], text: String) {
            self.children = children
            self.text = text
        }

        /// Applies the rules on every host and waits until they are in place.
        func apply() throws {
            for child in children {
                child.writeLine(text)
                child.closeInput()
            }
            for child in children {
                var output: [String] = []
                while let line = child.readLine(timeoutMilliseconds: 10_000) { output.append(line) }
                guard child.waitForExit(timeoutMilliseconds: 10_000) == 0 else {
                    child.signal(SIGKILL)
                    throw Failure(description: "nft did not apply the rules: \(output.joined(separator: " "))")
                }
            }
        }
    }

    func prepare(_ fault: Fault?, on hosts: [Int]) throws -> PreparedRules {
        let children = try hosts.map { host in
            let (launcher, full) = command(on: host, [Self.nft, "-f", "-"])
            return try ChildProcess(executable: "/bin/sh", arguments: ["-c", "exec \"$0\" \"$@\" 2>&1", launcher] + full)
        }
        return PreparedRules(children: children, text: Self.rules(fault))
    }

    private static func rules(_ fault: Fault?) -> String {
        var lines = ["flush chain inet qsmfault input", "flush chain inet qsmfault output"]
        let count = "counter name \"drops\" drop"
        switch fault {
        case nil: break
        case .randomLoss(let percent)?: lines.append("add rule inet qsmfault input iifname \"eth0\" numgen random mod 100 < \(percent) \(count)")
        case .dropInbound?: lines.append("add rule inet qsmfault input iifname \"eth0\" \(count)")
        case .cutOff?:
            lines.append("add rule inet qsmfault input iifname \"eth0\" \(count)")
            lines.append("add rule inet qsmfault output oifname \"eth0\" \(count)")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// Packets dropped so far by `host`'s fault rules.
    func droppedPackets(on host: Int) -> Int {
        guard let text = try? run(Self.nft, ["list", "counter", "inet", "qsmfault", "drops"], on: host).output else { return 0 }
        for line in text.split(separator: "\n") {
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            if let index = words.firstIndex(of: "packets"), index + 1 < words.count, let value = Int(words[index + 1]) {
                return value
            }
        }
        return 0
    }

    /// Removes every namespace of this run (idempotent).
    func tearDown() {
        guard !torndown else { return }
        torndown = true
        for name in Self.namespaces() where name.hasPrefix(prefix + "-") {
            _ = try? Self.run(Self.ip, ["netns", "delete", name])
        }
    }

    // MARK: Building

    private func build() throws {
        let bridge = "\(prefix)-br"
        try Self.runChecked(Self.ip, ["netns", "add", bridge])
        try Self.runChecked(Self.ip, ["-n", bridge, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0"])
        try Self.runChecked(Self.ip, ["-n", bridge, "link", "set", "br0", "up"])
        for host in 1...count {
            let name = namespace(host)
            let hostEnd = "\(prefix)h\(host)"
            let bridgeEnd = "\(prefix)b\(host)"
            try Self.runChecked(Self.ip, ["netns", "add", name])
            try Self.runChecked(Self.ip, ["link", "add", hostEnd, "type", "veth", "peer", "name", bridgeEnd])
            try Self.runChecked(Self.ip, ["link", "set", hostEnd, "netns", name, "name", "eth0"])
            try Self.runChecked(Self.ip, ["link", "set", bridgeEnd, "netns", bridge])
            try Self.runChecked(Self.ip, ["-n", bridge, "link", "set", bridgeEnd, "master", "br0", "up"])
            try Self.runChecked(Self.ip, ["-n", name, "addr", "add", "\(Self.address(of: host))/24", "dev", "eth0"])
            try Self.runChecked(Self.ip, ["-n", name, "link", "set", "eth0", "up"])
            try Self.runChecked(Self.ip, ["-n", name, "link", "set", "lo", "up"])
            try Self.runChecked(Self.ip, ["-n", name, "route", "add", "224.0.0.0/4", "dev", "eth0"])
            // An empty fault table whose counter lasts the whole run.
            try runChecked(Self.nft, ["-f", "-"], on: host, input: """
                table inet qsmfault {
                    counter drops { }
                    chain input { type filter hook input priority 0; }
                    chain output { type filter hook output priority 0; }
                }
                """)
        }
    }

    /// Deletes hosts of earlier runs ("qb<pid>-…") whose process no longer exists, so an
    /// interrupted run leaves nothing behind for long.
    private static func removeOrphans() {
        for name in namespaces() where name.hasPrefix("qb") {
            guard let dash = name.firstIndex(of: "-"), let pid = Int32(name[name.index(name.startIndex, offsetBy: 2)..<dash])
            else { continue }
            if kill(pid, 0) != 0, errno == ESRCH { _ = try? run(ip, ["netns", "delete", name]) }
        }
    }

    /// The named network namespaces, read from the directory where `ip netns` keeps one
    /// file per name: `ip netns list` can print warnings among the names ("Peer netns
    /// reference is invalid") while other runs add and delete namespaces.
    private static func namespaces() -> [String] {
        guard let directory = opendir("/run/netns") else { return [] }
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    // MARK: Running commands

    private func run(_ executable: String, _ arguments: [String], on host: Int, input: String? = nil) throws
        -> (status: Int32, output: String) {
        let (launcher, full) = command(on: host, [executable] + arguments)
        return try Self.run(launcher, full, input: input)
    }

    @discardableResult
    private func runChecked(_ executable: String, _ arguments: [String], on host: Int, input: String? = nil) throws -> String {
        let (launcher, full) = command(on: host, [executable] + arguments)
        return try Self.runChecked(launcher, full, input: input)
    }

    @discardableResult
    private static func runChecked(_ executable: String, _ arguments: [String], input: String? = nil) throws -> String {
        let (status, output) = try run(executable, arguments, input: input)
        guard status == 0 else {
            throw Failure(description: "\(([executable] + arguments).joined(separator: " ")) failed (status \(status)): \(output)")
        }
        return output
    }

    /// Runs a command to completion (at most 30 s) with its standard error merged into
    /// its output.
    private static func run(_ executable: String, _ arguments: [String], input: String? = nil) throws
        -> (status: Int32, output: String) {
        let child = try ChildProcess(executable: "/bin/sh", arguments: ["-c", "exec \"$0\" \"$@\" 2>&1", executable] + arguments)
        if let input { child.writeLine(input) }
        child.closeInput()
        var lines: [String] = []
        let deadline = MonotonicClock.now().advanced(by: .seconds(30))
        while let line = child.readLine(timeoutMilliseconds: 30_000) {
            lines.append(line)
            if MonotonicClock.now() >= deadline { break }
        }
        guard let status = child.waitForExit(timeoutMilliseconds: 30_000) else {
            child.signal(SIGKILL)
            throw Failure(description: "\(executable) \(arguments.joined(separator: " ")) did not finish within 30 s")
        }
        return (status, lines.joined(separator: "\n"))
    }
}
