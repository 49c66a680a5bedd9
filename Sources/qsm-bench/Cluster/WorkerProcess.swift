#if canImport(Glibc)
import Glibc
#endif
import QSMCore
import QSMHarness

/// The coordinator's side of a worker process: commands in, `WorkerLine`s out. Progress
/// lines are kept as a time series; other lines wait in order for `expect`.
final class WorkerProcess {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    let name: String
    let process: ChildProcess
    /// The address its nodes and sockets use: its host's, or loopback.
    let interface: IPv4Address
    private var pending: [WorkerLine] = []
    /// (monotonic nanoseconds, count) from `p` lines.
    private(set) var progress: [(time: Int64, count: Int)] = []
    private(set) var killed = false

    /// Starts `qsm-bench _worker ARGUMENTS`, on `host` of `network` if given, else in
    /// the coordinator's namespace.
    init(name: String, arguments: [String], host: Int? = nil, network: HostNetwork? = nil) throws {
        self.name = name
        if let host, let network {
            let (launcher, full) = network.command(on: host, [WorkerProcess.executable, "_worker"] + arguments)
            process = try ChildProcess(executable: launcher, arguments: full)
            interface = HostNetwork.address(of: host)
        } else {
            process = try ChildProcess(executable: WorkerProcess.executable, arguments: ["_worker"] + arguments)
            interface = .loopback
        }
    }

    static var executable: String { ChildProcess.currentExecutableDirectory + "/qsm-bench" }

    func send(_ line: WorkerLine) throws {
        guard process.writeLine(line.description) else { throw Failure(description: "\(name) stopped taking commands") }
    }

    /// Takes whatever the worker printed since the last call.
    func collect() {
        for text in process.availableLines() {
            guard let line = WorkerLine(parsing: text) else { continue }
            if line.verb == "p", let time = line[ "t"].flatMap({ Int64($0) }), let count = line.int("n") {
                progress.append((time, count))
                tailProgress.append((time, line.int("l") ?? count))
                if let allocations = line.int("a") { allocationProgress.append((count, allocations)) }
            } else {
                pending.append(line)
            }
        }
    }

    var latestCount: Int { progress.last?.count ?? 0 }
    /// (messages so far, heap allocations so far) from `p` lines.
    private(set) var allocationProgress: [(count: Int, allocations: Int)] = []
    /// How far the worker's streams have come (see `ProgressReporter`), over time.
    private(set) var tailProgress: [(time: Int64, count: Int)] = []
    var latestTail: Int { tailProgress.last?.count ?? 0 }

    /// Waits for the next line with `verb`, up to `seconds`.
    func expect(_ verb: String, within seconds: Double) throws -> WorkerLine {
        let deadline = MonotonicClock.now().advanced(byNanoseconds: Int64(seconds * 1e9))
        while true {
            collect()
            if let index = pending.firstIndex(where: { $0.verb == verb }) { return pending.remove(at: index) }
            if process.outputEnded {
                let status = process.waitForExit(timeoutMilliseconds: 1000).map { " (exit status \($0))" } ?? ""
                throw Failure(description: "\(name) ended before saying '\(verb)'\(status)")
            }
            let left = deadline.nanoseconds(since: MonotonicClock.now())
            if left <= 0 { throw Failure(description: "\(name) did not say '\(verb)' within \(seconds) s") }
            var descriptor = pollfd(fd: process.outputDescriptor, events: Int16(POLLIN), revents: 0)
            _ = poll(&descriptor, 1, Int32(min(100, max(1, left / 1_000_000))))
        }
    }

    /// Whether a line with `verb` has arrived (it stays queued).
    func has(_ verb: String) -> Bool {
        collect()
        return pending.contains { $0.verb == verb }
    }

    func signal(_ number: Int32) {
        if number == SIGKILL { killed = true }
        process.signal(number)
    }

    /// Waits up to `milliseconds` for any of `workers` to print something.
    static func waitForOutput(_ workers: [WorkerProcess], milliseconds: Int) {
        var descriptors = workers.filter { !$0.process.outputEnded }
            .map { pollfd(fd: $0.process.outputDescriptor, events: Int16(POLLIN), revents: 0) }
        guard !descriptors.isEmpty else {
            var pause = timespec(tv_sec: 0, tv_nsec: milliseconds * 1_000_000)
            nanosleep(&pause, nil)
            return
        }
        _ = poll(&descriptors, nfds_t(descriptors.count), Int32(milliseconds))
        for worker in workers { worker.collect() }
    }
}
