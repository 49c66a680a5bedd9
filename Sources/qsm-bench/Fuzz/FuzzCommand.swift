#if canImport(Glibc)
import Glibc
#endif
import QSMCore
import QSMHarness

/// `qsm-bench fuzz`: hostile input through every decoder and state machine that takes
/// bytes from the network, with checks after every case.
enum FuzzCommand {
    static let usage = """
        usage: qsm-bench fuzz [--cases N] [--seed S]

        Feeds random and mutated valid inputs (bit flips, boundary values over fields,
        truncation, extension, splicing, kind changes, replays) to:
          - the protocol: packet decoding and a member node's state machine, ticked and
            drained as the engine would (the valid packets come from a small simulated
            cluster with two senders, two partitions and 5% loss);
          - the GMS: its state machine on several connections, some properly registered;
          - a node's membership client; and the TCP frame decoder, in random pieces.
        After every case: no crash, no case slower than 1 s, memory and state within
        the configured bounds. Prints progress and a summary; exit status 1 names the
        first failing case (rerun with the same --seed to reproduce it).

        flags:
          --cases N    inputs per target (default 1000000)
          --seed S     random seed (default 1)
          -h, --help   show this help
        """

    static func main(_ arguments: [String]) -> Never {
        let cases: Int
        let seed: UInt64
        do throws(ConfigurationError) {
            let flags = try CommandLineFlags(arguments, valued: ["--cases", "--seed"], switches: ["-h", "--help"])
            if flags.has("-h") || flags.has("--help") {
                print(usage)
                exit(0)
            }
            cases = try flags.integer("--cases", in: 1...1_000_000_000, default: 1_000_000)
            seed = UInt64(try flags.integer("--seed", in: 0...Int.max, default: 1))
        } catch {
            fail(error.message)
        }
        do {
            let started = MonotonicClock.now()
            let protocolTarget = try ProtocolFuzzTarget(seed: seed)
            var mutator = PacketMutator(seed: seed, corpus: protocolTarget.corpus)
            var outcome = ProtocolFuzzTarget.Outcome()
            benchLog("fuzz: protocol, \(protocolTarget.corpus.count) valid packets to mutate")
            for number in 1...cases {
                if let failure = protocolTarget.feed(mutator.next(), caseNumber: number, into: &outcome) {
                    benchLog("fuzz: FAILED (seed \(seed)): \(failure)")
                    exit(1)
                }
                if number % 100_000 == 0 { benchLog("fuzz: protocol \(number)/\(cases)") }
            }
            protocolTarget.finish(&outcome)
            let membership = try MembershipFuzzTarget()
            var serverMutator = PacketMutator(seed: seed &+ 1, corpus: membership.clientCorpus)
            var clientMutator = PacketMutator(seed: seed &+ 2, corpus: membership.serverCorpus)
            var random = SplitMix64(seed: seed &+ 3)
            benchLog("fuzz: membership, \(membership.clientCorpus.count) client and \(membership.serverCorpus.count) server messages to mutate")
            for number in 1...cases {
                let toService = number % 2 == 0
                let input = toService ? serverMutator.next() : clientMutator.next()
                if let failure = membership.feed(input, toService: toService, caseNumber: number, random: &random) {
                    benchLog("fuzz: FAILED (seed \(seed)): \(failure)")
                    exit(1)
                }
                if number % 100_000 == 0 { benchLog("fuzz: membership \(number)/\(cases)") }
            }
            let seconds = Double(MonotonicClock.now().nanoseconds(since: started)) / 1e9
            print("fuzz: \(cases) protocol cases and \(cases) membership cases, no failure (seed \(seed), \(format(seconds, 1)) s)")
            print("  protocol: \(outcome.malformed) dropped as malformed, \(outcome.implausible) absurd sequence numbers or surplus streams ignored, \(outcome.deliveries) delivered (forged but well-formed: "
                  + "no authentication without a cluster secret), \(outcome.outputs) datagrams sent in reaction, slowest case \(outcome.slowestMicroseconds) us")
            print("  gms: \(membership.service.statistics.malformedFrames) malformed frames refused, \(membership.service.statistics.rejectedRequests) requests rejected, "
                  + "\(membership.service.liveNodeCount) nodes live at the end (limit \(membership.configuration.maximumNodes))")
            exit(0)
        } catch {
            benchLog("qsm-bench fuzz: \(error)")
            exit(1)
        }
    }
}
