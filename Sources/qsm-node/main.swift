#if canImport(Glibc)
import Glibc
#endif
import QSMCore

// qsm-node is the cluster-machine entry point. Its subcommands (gms, publish, subscribe,
// run) arrive with the membership and engine work; until then it says so plainly.
let usage = """
    usage: qsm-node <subcommand> [flags]

    QuickSilver-style scalable multicast node.

    No subcommands are available yet in this build: the membership service (gms) and the
    engine commands (publish, subscribe, run) are not implemented. Use qsm-bench micro to
    exercise the event core.

    flags:
      -h, --help    show this help
    """

let arguments = Array(CommandLine.arguments.dropFirst())
if arguments.isEmpty || arguments == ["-h"] || arguments == ["--help"] {
    print(usage)
    exit(arguments.isEmpty ? 2 : 0)
}
writeToStandardError("qsm-node: unknown subcommand or flag '\(arguments[0])'; see qsm-node --help")
exit(2)
