import QSMCore
import CQSMLinux
import Synchronization

/// Keeps the multicast traffic of tests and local benchmark runs inside a private network
/// namespace of their own, with only `lo` in it.
///
/// A namespace belongs to a thread: `enterPrivate()` moves only the calling thread, and
/// threads and processes it starts afterwards inherit the namespace. A process-wide tool
/// (qsm-bench) calls it first thing on its main thread; tests use `runIsolated`, which
/// gives each body a fresh thread in a fresh namespace.
public enum NetworkNamespace {
    /// Moves the calling thread into a new network namespace and brings `lo` up there.
    /// Needs CAP_SYS_ADMIN (root, or a user namespace that grants it).
    public static func enterPrivate() throws(SystemError) {
        _ = try systemCall("unshare(CLONE_NEWNET)") { cqsm_unshare_network() }
        _ = try systemCall("ioctl(SIOCSIFFLAGS lo up)") { cqsm_interface_up("lo") }
    }

    /// An identifier of the calling thread's network namespace (its inode number).
    public static var currentIdentifier: Int64 { cqsm_network_namespace_id() }

    /// Runs `body` on a new thread inside a new private network namespace and returns
    /// its result; everything the body creates (sockets, threads) lives in that namespace.
    public static func runIsolated<Result: Sendable>(
        _ body: @escaping @Sendable () throws -> Result
    ) throws -> Result {
        let outcome = Mutex<Swift.Result<Result, any Error>?>(nil)
        let thread = try SystemThread(name: "qsm-netns") {
            let result: Swift.Result<Result, any Error>
            do {
                try enterPrivate()
                result = .success(try body())
            } catch {
                result = .failure(error)
            }
            outcome.withLock { $0 = result }
        }
        thread.join()
        return try outcome.withLock { $0! }.get()
    }

    /// Whether this process may create private network namespaces (probed once).
    public static let isAvailable: Bool = (try? runIsolated { true }) ?? false
}
