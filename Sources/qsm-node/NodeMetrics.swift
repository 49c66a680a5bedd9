#if canImport(Glibc)
import Glibc
#endif
import QSMCore
import QSMHarness
import Synchronization

/// The operator's window into a running node or GMS: a local stats socket that
/// `qsm-node stats` reads, and with `--metrics-listen`, `/metrics` over HTTP. Both serve
/// a snapshot at most a second old, so reading them never waits on the core.
enum NodeMetrics {
    static let help = """
          --metrics-listen HOST:PORT
                                   also serve the counters at http://HOST:PORT/metrics
                                   (OpenMetrics text; port 0: any free port, printed)
        """

    /// The local stats socket of a process: `<run dir>/<name>.sock`.
    static func socketPath(_ name: String) -> String? {
        let directory = MetricsServer.runDirectory
        if mkdir(directory, 0o700) != 0 && errno != EEXIST { return nil }
        return directory + "/" + name + ".sock"
    }

    /// Stats sockets this process made, removed when it exits (`exit` runs `atexit`
    /// handlers: the normal ends, usage errors and the stop signals all exit that way).
    static let sockets = Mutex<[String]>([])

    static func removeAtExit(_ path: String) {
        let first = sockets.withLock { paths in
            paths.append(path)
            return paths.count == 1
        }
        if first {
            atexit {
                for path in NodeMetrics.sockets.withLock({ $0 }) { unlink(path) }
            }
        }
    }

    /// Opens the stats socket and the `/metrics` listener, or exits 1 with the reason
    /// (a node asked to serve metrics that cannot is misconfigured; a stats socket that
    /// cannot be made only costs `qsm-node stats`, so that is a warning).
    static func start(name: String, listen: QSMSocketAddress?, command: String) -> MetricsServer? {
        let path = socketPath(name)
        if path == nil { log(.warning, "qsm-node \(command)", "no stats socket: cannot create \(MetricsServer.runDirectory)") }
        do {
            let server = try MetricsServer(listen: listen, socketPath: path)
            if let path { removeAtExit(path) }
            if let address = server.tcpAddress { log(.info, "qsm-node \(command)", "metrics at http://\(address)/metrics", ["metrics": "\(address)"]) }
            return server
        } catch {
            guard listen == nil else {
                log(.error, "qsm-node \(command)", "cannot serve metrics on \(listen!): \(error)")
                exit(1)
            }
            log(.warning, "qsm-node \(command)", "no stats socket: \(error)")
            return nil
        }
    }

    /// Keeps the server's text fresh: a snapshot a second.
    static func refresh(_ server: MetricsServer?, from node: QSMNode) {
        guard let server else { return }
        Task.detached {
            while !Task.isCancelled {
                if let statistics = try? await node.statistics(timeout: .seconds(5)) { server.update(statistics.openMetrics()) }
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }

    /// Starts both for an engine command's node.
    static func serve(_ node: QSMNode, listen: QSMSocketAddress?, command: String) -> MetricsServer? {
        let server = start(name: "node-\(node.id.value)", listen: listen, command: command)
        refresh(server, from: node)
        return server
    }
}
