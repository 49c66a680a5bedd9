#if canImport(Glibc)
import Glibc
#endif
import QSMCore
import QSMHarness

/// `qsm-node secret new PATH`: makes a cluster secret.
enum SecretCommand {
    static let usage = """
        usage: qsm-node secret new PATH

        Writes a new cluster secret to PATH: 32 bytes from the operating system's random
        source, as 64 hex digits and a newline, readable and writable by the owner only
        (mode 600). Refuses to overwrite an existing file. Give the same file to every
        node and to the GMS with --secret-file PATH.
        """

    static func main(_ arguments: [String]) -> Never {
        if arguments.first == "-h" || arguments.first == "--help" {
            print(usage)
            exit(0)
        }
        guard arguments.count == 2, arguments[0] == "new" else {
            fail(arguments.first == "new" ? "give exactly one PATH" : "the only subcommand is 'new PATH'", command: "secret")
        }
        let path = arguments[1]
        let text = SystemRandom.hex(32) + "\n"
        // O_EXCL: an existing file (a secret in use, or a link planted there) is never touched.
        let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard descriptor >= 0 else {
            let reason = errno == EEXIST ? "it already exists (a secret is never overwritten)" : String(cString: strerror(errno))
            log(.error, "qsm-node secret", "cannot create '\(path)': \(reason)")
            exit(1)
        }
        let written = text.withCString { write(descriptor, $0, strlen($0)) }
        guard written == text.utf8.count, fsync(descriptor) == 0, close(descriptor) == 0 else {
            log(.error, "qsm-node secret", "cannot write '\(path)': \(String(cString: strerror(errno)))")
            unlink(path)
            exit(1)
        }
        writeToStandardOutput("wrote a new cluster secret to \(path) (mode 600); give it to every node and the GMS with --secret-file \(path)")
        exit(0)
    }
}
