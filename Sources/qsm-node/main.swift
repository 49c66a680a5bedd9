#if canImport(Glibc)
import Glibc
#endif
import QSMCore

// qsm-node: flags -> validated configuration -> run. Each subcommand lives in its own file.

let usage = """
    usage: qsm-node <subcommand> [flags]

    QuickSilver-style scalable multicast node.

    subcommands:
      gms       run the global membership service (qsm-node gms --help)
      member    register with a GMS, join groups and print membership events as JSON
                lines (qsm-node member --help)

    The engine commands (publish, subscribe, run) arrive with the engine.

    flags:
      -h, --help    show this help
    """

func fail(_ message: String, command: String) -> Never {
    writeToStandardError("qsm-node \(command): \(message)")
    writeToStandardError("see qsm-node \(command) --help")
    exit(2)
}

let arguments = Array(CommandLine.arguments.dropFirst())
switch arguments.first {
case "gms":
    GMSCommand.main(Array(arguments.dropFirst()))
case "member":
    MemberCommand.main(Array(arguments.dropFirst()))
case "-h", "--help":
    print(usage)
    exit(0)
case nil:
    print(usage)
    exit(2)
case let other?:
    writeToStandardError("qsm-node: unknown subcommand or flag '\(other)'; see qsm-node --help")
    exit(2)
}
