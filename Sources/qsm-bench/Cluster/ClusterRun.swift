#if canImport(Glibc)
import Glibc
#endif
import QSMCore

/// One cluster experiment on this host, in the caller's network namespace: a GMS
/// process, sender and receiver processes. First the raw limit is measured with those
/// same processes (unreliable blasts, two receiving techniques), then the engine runs
/// the workload while the coordinator applies the perturbation and shows progress, and
/// finally every receiver reports what it checked.
struct ClusterRun {
    let options: RunOptions
    /// Progress and diagnostics (standard error in the command).
    let log: (String) -> Void

    static let rawGroup = SocketAddress(IPv4Address(239, 255, 77, 1), port: 17_999)

    func execute() throws -> RunReport {
        var report = RunReport(options: options)
        let gms = try WorkerProcess(name: "gms", arguments: ["gms", "\(options.heartbeatTimeoutMilliseconds)"])
        let gmsAddress = try gms.expect("gms", within: 10)["address"] ?? ""
        let senders = try (0..<options.senders).map { try WorkerProcess(name: "sender \($0)", arguments: ["node"]) }
        let receivers = try (0..<options.receivers).map { try WorkerProcess(name: "receiver \($0)", arguments: ["node"]) }
        defer {
            for worker in senders + receivers + [gms] where worker.process.waitForExit(timeoutMilliseconds: 0) == nil {
                worker.signal(SIGKILL)
                worker.process.waitForExit(timeoutMilliseconds: 2000)
            }
        }

        if options.measureRaw {
            var search = RawLimitSearch(sender: senders[0], receivers: receivers, size: options.size, group: Self.rawGroup,
                                        interface: options.interface, trialSeconds: options.rawTrialSeconds, log: log)
            report.rawBlocking = try search.run(mode: .blocking)
            report.rawPolling = try search.run(mode: .polling)
        }

        // The engine: receivers join every group, senders wait until all are in.
        for receiver in receivers {
            var fields: [(String, Any)] = [("gms", gmsAddress), ("groups", options.groups), ("senders", options.senders),
                                           ("interface", options.interface)]
            if let secret = options.secret { fields.append(("secret", secret)) }
            try receiver.send(WorkerLine("receive", fields))
        }
        var unicast: [SocketAddress] = []
        for receiver in receivers {
            if let address = SocketAddress(try receiver.expect("node", within: 30)["address"] ?? "") { unicast.append(address) }
        }
        for (index, sender) in senders.enumerated() {
            var fields: [(String, Any)] = [("gms", gmsAddress), ("index", index), ("groups", options.groups),
                                           ("receivers", options.receivers), ("interface", options.interface)]
            if let window = options.window { fields.append(("window", window)) }
            if let secret = options.secret { fields.append(("secret", secret)) }
            try sender.send(WorkerLine("send", fields))
        }
        let joinTimeout = 30 + Double(options.groups) / 100
        var senderIDs: [String] = []
        for sender in senders {
            let line = try sender.expect("node", within: joinTimeout)
            senderIDs.append(line["id"] ?? "")
            if let address = SocketAddress(line["address"] ?? "") { unicast.append(address) }
        }
        // Receivers tell the run's messages from anything else that might be delivered.
        for receiver in receivers { try receiver.send(WorkerLine("senders", [("ids", senderIDs.joined(separator: ","))])) }
        for receiver in receivers { _ = try receiver.expect("senders-known", within: 10) }
        var injector: HostileInjector?
        if options.perturbation == .hostile, let gmsSocket = SocketAddress(gmsAddress) {
            try receivers[0].send(WorkerLine("targets"))
            let multicast = (try receivers[0].expect("targets", within: 10)["multicast"] ?? "")
                .split(separator: ",").compactMap { SocketAddress(String($0)) }
            injector = try HostileInjector(targets: unicast + multicast + [gmsSocket], gms: gmsSocket,
                                           interface: options.interface, seed: 99)
            log("hostile: injecting garbage at \(unicast.count) unicast and \(multicast.count) multicast addresses and the GMS")
        }
        log("engine: \(options.receivers) receivers in \(options.groups) group(s), \(options.senders) sender(s) ready")

        var go: [(String, Any)] = [("size", options.size), ("rate", options.rate)]
        if let seconds = options.seconds { go.append(("seconds", seconds)) }
        if let count = options.count { go.append(("count", count)) }
        let start = MonotonicClock.now()
        report.startNanoseconds = start.nanoseconds
        for sender in senders { try sender.send(WorkerLine("go", go)) }

        var schedule = PerturbationSchedule(options: options)
        var lastLog = start
        var sendingDone: Instant?
        var sentTotal = 0
        while true {
            WorkerProcess.waitForOutput(senders + receivers, milliseconds: 20)
            let now = MonotonicClock.now()
            let elapsed = Double(now.nanoseconds(since: start)) / 1e9
            schedule.apply(at: elapsed, sendingDone: sendingDone != nil, receivers: receivers, log: log)
            if sendingDone == nil, senders.allSatisfy({ $0.has("sent") }) {
                sendingDone = now
                sentTotal = 0
                for sender in senders {
                    let line = try sender.expect("sent", within: 1)
                    report.sentBySender.append(line.int("count") ?? 0)
                    report.sendSeconds = max(report.sendSeconds, line.double("seconds") ?? 0)
                }
                sentTotal = report.sentBySender.reduce(0, +)
                if let injector {
                    injector.stop()
                    report.hostileDatagrams = injector.datagramsSent
                }
                log("senders done: \(sentTotal) messages in \(format(report.sendSeconds, 1)) s; waiting for receivers")
            }
            if now.nanoseconds(since: lastLog) >= 1_000_000_000 {
                lastLog = now
                let sent = senders.map(\.latestCount).reduce(0, +)
                let checked = options.checkedReceivers.map { receivers[$0].latestCount }
                log("  \(format(elapsed, 1)) s: sent \(sent), slowest receiver \(checked.min() ?? 0)"
                    + (schedule.activeNote.map { " [\($0)]" } ?? ""))
            }
            if sendingDone == nil, let seconds = options.seconds, elapsed > seconds + options.drainSeconds {
                // The senders are stuck (a window that never opens): a stalled run is
                // reported as such, not waited for forever.
                log("the senders did not finish within \(Int(seconds + options.drainSeconds)) s: the run STALLED; stopping")
                report.stalled = true
                for sender in senders {
                    report.sentBySender.append(sender.latestCount)
                    sender.signal(SIGKILL)
                }
                break
            }
            if let done = sendingDone {
                let complete = options.checkedReceivers.allSatisfy { receivers[$0].latestCount >= sentTotal }
                if complete, schedule.finished { break }
                if Double(now.nanoseconds(since: done)) / 1e9 > options.drainSeconds {
                    log("receivers still missing messages \(Int(options.drainSeconds)) s after the senders finished; stopping")
                    break
                }
            }
            for worker in receivers where worker.process.outputEnded && !worker.killed {
                throw WorkerProcess.Failure(description: "\(worker.name) exited during the run")
            }
        }
        injector?.stop()
        if let injector { report.hostileDatagrams = injector.datagramsSent }
        schedule.finishAll(receivers: receivers)
        report.events = schedule.events

        // Results: every live worker reports what it saw.
        for worker in senders + receivers where !worker.killed { try worker.send(WorkerLine("finish")) }
        for sender in senders where !sender.killed { report.senderResults.append(try sender.expect("result", within: 30)) }
        for (index, receiver) in receivers.enumerated() {
            report.receiverResults.append(receiver.killed ? nil : try receiver.expect("result", within: 30))
            report.receiverProgress.append(receiver.progress)
            _ = index
        }
        report.senderProgress = senders.map(\.progress)
        if options.verbose {
            for (index, line) in report.senderResults.enumerated() { log("sender \(index): \(line)") }
            for (index, line) in report.receiverResults.enumerated() { log("receiver \(index): \(line.map(\.description) ?? "killed")") }
        }
        for worker in senders + receivers where !worker.killed { worker.process.waitForExit(timeoutMilliseconds: 5000) }
        gms.signal(SIGTERM)
        return report
    }
}
