#if canImport(Glibc)
import Glibc
#endif
import QSMCore
import QSMHarness

ProcessMemoryPolicy.apply()

// qsm-node: flags -> validated configuration -> run. Each subcommand lives in its own file.

let usage = """
    usage: qsm-node <subcommand> [flags]

    QuickSilver-style scalable multicast node.

    subcommands:
      gms       run the global membership service (qsm-node gms --help)
      member    register with a GMS, join groups and print membership events as JSON
                lines (qsm-node member --help)
      publish   publish each line of standard input to a group (qsm-node publish --help)
      subscribe write each message of a group to standard output (qsm-node subscribe --help)
      run       join groups and print statistics until stopped (qsm-node run --help)
      secret    make a cluster secret: qsm-node secret new PATH (qsm-node secret --help)
      stats     print the counters of the qsm-node processes on this machine
                (qsm-node stats --help)

    Every node and the GMS need the same cluster secret (--secret-file PATH), or an
    explicit --insecure.

    Every subcommand also takes --config PATH: a JSON object whose keys are its flags
    without the dashes ({"gms": "10.0.0.1:7000", "group": ["a", "b"], "insecure": true});
    flags on the command line override it.

    Logs are JSON lines on standard error. Exit status: 0 done, 1 failed (the reason is
    logged), 2 bad flags or configuration, 130 publish stopped by a signal.

    flags:
      -h, --help    show this help
      --version     print the version and exit (after any subcommand too)
    """

func fail(_ message: String, command: String) -> Never {
    log(.error, "qsm-node \(command)", message, ["hint": "see qsm-node \(command) --help"])
    exit(2)
}

let arguments = Array(CommandLine.arguments.dropFirst())
if arguments.contains("--version") {
    print("qsm-node \(QSMVersion.string)")
    exit(0)
}
switch arguments.first {
case "gms":
    GMSCommand.main(Array(arguments.dropFirst()))
case "member":
    MemberCommand.main(Array(arguments.dropFirst()))
case "publish":
    await PublishCommand.main(Array(arguments.dropFirst()))
case "subscribe":
    await SubscribeCommand.main(Array(arguments.dropFirst()))
case "run":
    await RunCommand.main(Array(arguments.dropFirst()))
case "secret":
    SecretCommand.main(Array(arguments.dropFirst()))
case "stats":
    StatsCommand.main(Array(arguments.dropFirst()))
case "-h", "--help":
    print(usage)
    exit(0)
case nil:
    print(usage)
    exit(2)
case let other?:
    log(.error, "qsm-node", "unknown subcommand or flag '\(other)'", ["hint": "see qsm-node --help"])
    exit(2)
}
