#if canImport(Glibc)
import Glibc
#endif
import QSMCore

let usage = """
    usage: qsm-bench [micro] [flags]
           qsm-bench regions [flags]
           qsm-bench simulate [flags]

    Benchmarks of the QSM engine. All multicast traffic stays inside a private network
    namespace that qsm-bench creates for itself (it must run as root for that).

    subcommands:
      micro          (the default for now) the event core's building blocks against
                     baselines, measured in the same run:
                     - alarm queue operations/s: splay tree vs binary heap, 1k and 100k
                       pending alarms;
                     - request queue items/s: lock-free queue vs Mutex-guarded array,
                       1 and 2 producer threads;
                     - loopback multicast packets/s through the event core vs a bare
                       sendmmsg/recvmmsg loop (the ratio is the figure that matters).
                     The cluster experiments (throughput, latency, perturbations) come
                     with the engine.
      simulate       the protocol core on a simulated network, with invariants
                     checked (qsm-bench simulate --help)
      regions        the region structure the GMS builds for a Zipf membership
                     (seed Fig. 4.5/4.6); see qsm-bench regions --help

    flags:
      --seconds S    seconds per measurement (default 1, > 0)
      --rounds N     rounds per measurement; the median is reported (default 3, 1...100)
      --size BYTES   multicast datagram size (default 1000, 8...65000)
      --only LIST    run only these parts, comma-separated: alarms, requests, multicast
      -h, --help     show this help
    """

func fail(_ message: String) -> Never {
    writeToStandardError("qsm-bench: \(message)")
    writeToStandardError("see qsm-bench --help")
    exit(2)
}

/// Flags -> a validated benchmark configuration, or a clear message and exit 2.
func parse(_ commandLine: [String]) -> MicroBenchmarks {
    var benchmarks = MicroBenchmarks()
    var arguments = commandLine
    if arguments.first == "micro" { arguments.removeFirst() }
    var index = 0
    func value(for flag: String) -> String {
        index += 1
        guard index < arguments.count else { fail("\(flag) needs a value") }
        return arguments[index]
    }
    while index < arguments.count {
        let argument = arguments[index]
        switch argument {
        case "-h", "--help":
            print(usage)
            exit(0)
        case "--seconds":
            let text = value(for: argument)
            guard let seconds = Double(text), seconds > 0, seconds <= 3600 else {
                fail("--seconds must be a number of seconds in (0, 3600], got '\(text)'")
            }
            benchmarks.seconds = seconds
        case "--rounds":
            let text = value(for: argument)
            guard let rounds = Int(text), (1...100).contains(rounds) else { fail("--rounds must be 1...100, got '\(text)'") }
            benchmarks.rounds = rounds
        case "--size":
            let text = value(for: argument)
            guard let size = Int(text), (8...65_000).contains(size) else { fail("--size must be 8...65000 bytes, got '\(text)'") }
            benchmarks.size = size
        case "--only":
            let text = value(for: argument)
            var parts = Set<MicroBenchmarks.Part>()
            for name in text.split(separator: ",", omittingEmptySubsequences: false) {
                guard let part = MicroBenchmarks.Part(rawValue: String(name)) else {
                    fail("--only takes alarms, requests, multicast (comma-separated), got '\(text)'")
                }
                parts.insert(part)
            }
            benchmarks.parts = parts
        default:
            fail(argument.hasPrefix("-") ? "unknown flag '\(argument)'" : "unknown subcommand '\(argument)'")
        }
        index += 1
    }
    return benchmarks
}

if CommandLine.arguments.dropFirst().first == "_worker" {
    await WorkerCommand.main(Array(CommandLine.arguments.dropFirst(2)))
}
if CommandLine.arguments.count == 1 || CommandLine.arguments.dropFirst().first == "run" {
    RunCommand.main(Array(CommandLine.arguments.dropFirst(CommandLine.arguments.count == 1 ? 1 : 2)))
}
if CommandLine.arguments.dropFirst().first == "regions" {
    RegionsBenchmark.main(Array(CommandLine.arguments.dropFirst(2)))
}
if CommandLine.arguments.dropFirst().first == "simulate" {
    SimulateCommand.main(Array(CommandLine.arguments.dropFirst(2)))
}

do {
    try parse(Array(CommandLine.arguments.dropFirst())).run()
} catch {
    writeToStandardError("qsm-bench: \(error)")
    exit(1)
}
