#if canImport(Glibc)
import Glibc
#endif
import QSMCore
import QSMHarness
import QSMGMS

/// `qsm-bench regions`: the scenario of the seed's Fig. 4.5-4.6. Each node joins a
/// fraction of the groups, chosen by Zipf popularity; the GMS's real view computation
/// then builds regions (one per distinct group set, or per hierarchy after the greedy
/// decomposition), and the figures that matter are printed: regions, addresses, regions
/// per node and per group, and the time one complete computation takes.
enum RegionsBenchmark {
    static let usage = """
        usage: qsm-bench regions [flags]

        Builds a membership where each of N nodes joins a fraction F of G groups chosen by
        Zipf(A) popularity, computes the GMS's views from scratch, and reports the region
        structure (seed Fig. 4.5/4.6; the seed reports 4-14 regions per node after
        decomposition for N=2000, G=10000, F=0.1, A=1.5).

        flags:
          --nodes N                  nodes (default 2000, 1...100000)
          --groups G                 groups (default 10000, 1...1000000)
          --interest F               fraction of the groups each node joins (default 0.1)
          --zipf A                   Zipf popularity exponent (default 1.5, 0...10)
          --mode full|hierarchies    region mode (default hierarchies)
          --min-region-size N        hierarchies mode: smallest region a group may leave
                                     behind when added (default 1)
          --seed S                   random seed (default 1)
          --json                     print one JSON object instead of a table
          -h, --help                 show this help
        """

    static func main(_ arguments: [String]) -> Never {
        let nodes, groups, minimumRegionSize: Int
        let interest, zipf: Double
        let mode: RegionMode
        let seed: UInt64
        let json: Bool
        do throws(ConfigurationError) {
            let flags = try CommandLineFlags(arguments, valued: ["--nodes", "--groups", "--interest", "--zipf", "--mode",
                                                                 "--min-region-size", "--seed"],
                                             switches: ["--json", "-h", "--help"])
            if flags.has("-h") || flags.has("--help") {
                print(usage)
                exit(0)
            }
            nodes = try flags.integer("--nodes", in: 1...100_000, default: 2000)
            groups = try flags.integer("--groups", in: 1...1_000_000, default: 10_000)
            minimumRegionSize = try flags.integer("--min-region-size", in: 1...1_000_000, default: 1)
            let interestText = try flags.value("--interest") ?? "0.1"
            guard let parsedInterest = Double(interestText), parsedInterest > 0, parsedInterest <= 1 else {
                throw ConfigurationError("--interest must be a fraction in (0, 1], got '\(interestText)'")
            }
            interest = parsedInterest
            let zipfText = try flags.value("--zipf") ?? "1.5"
            guard let parsedZipf = Double(zipfText), parsedZipf >= 0, parsedZipf <= 10 else {
                throw ConfigurationError("--zipf must be a number in [0, 10], got '\(zipfText)'")
            }
            zipf = parsedZipf
            let modeText = try flags.value("--mode") ?? "hierarchies"
            guard let parsedMode = RegionMode(rawValue: modeText) else {
                throw ConfigurationError("--mode must be full or hierarchies, got '\(modeText)'")
            }
            mode = parsedMode
            let seedText = try flags.value("--seed") ?? "1"
            guard let parsedSeed = UInt64(seedText) else { throw ConfigurationError("--seed must be a non-negative integer, got '\(seedText)'") }
            seed = parsedSeed
            json = flags.has("--json")
            let perNode = Int((interest * Double(groups)).rounded())
            guard perNode >= 1 else { throw ConfigurationError("--interest \(interest) of \(groups) groups is less than one group per node") }
        } catch {
            benchLog("qsm-bench regions: \(error.message)")
            benchLog("see qsm-bench regions --help")
            exit(2)
        }

        let perNode = Int((interest * Double(groups)).rounded())
        if !json { benchLog("qsm-bench regions: generating \(nodes) nodes x \(perNode) of \(groups) groups (Zipf \(zipf), seed \(seed))") }
        let memberships = ZipfMemberships.generate(nodes: nodes, groups: groups, perNode: perNode, exponent: zipf, seed: seed)
        var configuration = MembershipConfiguration()
        configuration.mode = mode
        configuration.minimumRegionSize = minimumRegionSize
        configuration.maximumNodes = max(nodes, 1)
        configuration.maximumGroups = max(groups, 1)
        var nodeAddresses: [NodeID: QSMSocketAddress] = [:]
        var table: [NodeID: Set<GroupID>] = [:]
        for (index, list) in memberships.enumerated() {
            let node = NodeID(UInt64(index + 1))
            nodeAddresses[node] = QSMSocketAddress(IPv4Address(value: 0x0A00_0000 | UInt32(index)), port: 9000)
            table[node] = Set(list.map { GroupID(UInt32($0)) })
        }
        var names: [GroupID: GroupName] = [:]
        for group in Set(memberships.joined()) { names[GroupID(UInt32(group))] = GroupName("g\(group)")! }

        if !json { benchLog("qsm-bench regions: computing views (\(mode.rawValue) mode)") }
        var computation: ViewComputation
        do {
            computation = try ViewComputation(configuration: configuration)
        } catch {
            benchLog("qsm-bench regions: \(error)")
            exit(1)
        }
        let start = MonotonicClock.now()
        computation.apply(nodes: nodeAddresses, memberships: table, groups: names)
        let computeMilliseconds = Double(MonotonicClock.now().nanoseconds(since: start)) / 1e6

        var regionsPerNode: [NodeID: Int] = [:]
        for region in computation.regions {
            for member in region.members { regionsPerNode[member.id, default: 0] += 1 }
        }
        let perNodeCounts = nodeAddresses.keys.map { regionsPerNode[$0] ?? 0 }
        let groupsWithMembers = computation.groups.filter { !$0.members.isEmpty }
        let regionsPerGroup = groupsWithMembers.map { Double($0.regions.count) }
        let report: [(String, String)] = [
            ("nodes", "\(nodes)"), ("groups", "\(groups)"), ("interest", "\(interest)"), ("zipf", "\(zipf)"),
            ("mode", "\"\(mode.rawValue)\""), ("seed", "\(seed)"),
            ("groups_with_members", "\(groupsWithMembers.count)"),
            ("memberships", "\(memberships.reduce(0) { $0 + $1.count })"),
            ("hierarchies", "\(computation.hierarchyCount)"),
            ("regions", "\(computation.regions.count)"), ("addresses", "\(computation.addressesInUse)"),
            ("regions_per_node_mean", format(Double(perNodeCounts.reduce(0, +)) / Double(max(nodes, 1)))),
            ("regions_per_node_max", "\(perNodeCounts.max() ?? 0)"),
            ("regions_per_group_mean", format(regionsPerGroup.reduce(0, +) / Double(max(regionsPerGroup.count, 1)))),
            ("compute_ms", format(computeMilliseconds)),
        ]
        if json {
            print("{" + report.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}")
        } else {
            var output = Table("figure", "value")
            for (key, value) in report { output.add(key, value.replacingQuotes()) }
            print(output.render())
        }
        exit(0)
    }

    static func format(_ value: Double) -> String {
        let scaled = (value * 100).rounded() / 100
        return "\(scaled)"
    }
}

private extension String {
    func replacingQuotes() -> String { filter { $0 != "\"" } }
}

/// Memberships where each node joins `perNode` distinct groups, each group's chance
/// proportional to rank^-exponent (Zipf), sampled without replacement exactly by
/// Efraimidis-Spirakis keys: each group draws -ln(U)/weight and the smallest keys win.
enum ZipfMemberships {
    static func generate(nodes: Int, groups: Int, perNode: Int, exponent: Double, seed: UInt64) -> [[Int]] {
        var random = SplitMix64(seed: seed)
        let weights = (1...groups).map { pow(Double($0), -exponent) }
        var keys = [Double](repeating: 0, count: groups)
        var indices = Array(0..<groups)
        var result: [[Int]] = []
        result.reserveCapacity(nodes)
        for _ in 0..<nodes {
            for group in 0..<groups {
                let uniform = Double(random.next() >> 11 | 1) * 0x1.0p-53
                keys[group] = -log(uniform) / weights[group]
            }
            for index in 0..<groups { indices[index] = index }
            select(&indices, keys: keys, count: perNode)
            result.append(Array(indices[0..<perNode]).sorted())
        }
        return result
    }

    /// Reorders `indices` so the `count` with the smallest keys come first (quickselect).
    static func select(_ indices: inout [Int], keys: [Double], count: Int) {
        var low = 0
        var high = indices.count - 1
        let target = count - 1
        while low < high {
            let pivot = keys[indices[(low + high) / 2]]
            var left = low
            var right = high
            while left <= right {
                while keys[indices[left]] < pivot { left += 1 }
                while keys[indices[right]] > pivot { right -= 1 }
                if left <= right {
                    indices.swapAt(left, right)
                    left += 1
                    right -= 1
                }
            }
            if target <= right { high = right } else if target >= left { low = left } else { return }
        }
    }
}
