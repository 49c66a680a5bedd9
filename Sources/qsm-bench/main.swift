#if canImport(Glibc)
import Glibc
#endif
import QSMCore
import QSMHarness

ProcessMemoryPolicy.apply()

let overview = """
    usage: qsm-bench [run] [flags]      the cluster benchmark (the default)
           qsm-bench experiment NAME    sweeps that write CSV and SVG
           qsm-bench micro [flags]      the event core's building blocks
           qsm-bench simulate [flags]   the protocol on a simulated network
           qsm-bench regions [flags]    the GMS's region structure
           qsm-bench fuzz [flags]       hostile input through every decoder

    Benchmarks of the QSM engine. With no arguments: a GMS, 1 sender and 4 receiver
    processes, 1000-byte messages for 10 seconds, against the raw kernel limit measured
    in the same run; a table at the end (about 30 seconds in all). All multicast stays
    inside a private network namespace qsm-bench creates for itself (run it as root).

    Each subcommand has its own --help; --version prints the version (after any
    subcommand too).
    """

let usage = """
    usage: qsm-bench micro [flags]

    The event core's building blocks against baselines, measured in the same run:
      - alarm queue operations/s: splay tree vs binary heap, 1k and 100k pending alarms;
      - request queue items/s: lock-free queue vs Mutex-guarded array, 1 and 2 producer
        threads;
      - loopback multicast packets/s through the event core vs a bare sendmmsg/recvmmsg
        loop (the ratio is the figure that matters);
      - sealing one datagram (AES-128-GMAC, as every datagram is by default): ns per
        datagram of 150, 1,070 and 1,472 bytes, per backend this CPU runs, vs portable.

    flags:
      --seconds S    seconds per measurement (default 1, > 0)
      --rounds N     rounds per measurement; the median is reported (default 3, 1...100)
      --size BYTES   multicast datagram size (default 1000, 8...65000)
      --only LIST    run only these parts, comma-separated: alarms, requests, multicast,
                     seal
      -h, --help     show this help
    """

func fail(_ message: String) -> Never {
    benchLog("qsm-bench: \(message)", level: .error)
    benchLog("see qsm-bench --help", level: .error)
    exit(2)
}

/// Flags -> a validated benchmark configuration, or a clear message and exit 2.
func parse(_ commandLine: [String]) -> MicroBenchmarks {
    var benchmarks = MicroBenchmarks()
    let arguments = commandLine
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
                    fail("--only takes alarms, requests, multicast, seal (comma-separated), got '\(text)'")
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

let arguments = Array(CommandLine.arguments.dropFirst())
if arguments.first != "_worker", arguments.contains("--version") {
    print("qsm-bench \(QSMVersion.string)")
    exit(0)
}
switch arguments.first {
case "_worker":
    await WorkerCommand.main(Array(arguments.dropFirst()))
case "-h", "--help", "help":
    print(overview)
    exit(0)
case nil:
    RunCommand.main([])
case "run":
    RunCommand.main(Array(arguments.dropFirst()))
case "experiment":
    ExperimentCommand.main(Array(arguments.dropFirst()))
case "fuzz":
    FuzzCommand.main(Array(arguments.dropFirst()))
case "regions":
    RegionsBenchmark.main(Array(arguments.dropFirst()))
case "simulate":
    SimulateCommand.main(Array(arguments.dropFirst()))
case "micro":
    do {
        try parse(Array(arguments.dropFirst())).run()
    } catch {
        benchLog("qsm-bench: \(error)")
        exit(1)
    }
case let first? where first.hasPrefix("-"):
    // Flags alone go to the default command.
    RunCommand.main(arguments)
default:
    fail("unknown subcommand '\(arguments[0])'")
}
exit(0)
