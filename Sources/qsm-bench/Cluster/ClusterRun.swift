#if canImport(Glibc)
import Glibc
#endif
import QSMCore
import QSMHarness

/// One cluster experiment on this host, in the caller's network namespace: a GMS
/// process, sender and receiver processes. First the raw limit is measured with those
/// same processes (unreliable blasts, two receiving techniques), then the engine runs
/// the workload while the coordinator applies the perturbation and shows progress, and
/// finally every receiver reports what it checked.
struct ClusterRun {
    let options: RunOptions
    /// Progress and diagnostics (standard error in the command).
    let log: (String) -> Void

    static let rawGroup = QSMSocketAddress(IPv4Address(239, 255, 77, 1), port: 17_999)

    func execute() throws -> RunReport {
        var report = RunReport(options: options)
        let cluster = try ClusterProcesses(options: options, log: log)
        let gmsAddress = cluster.gmsAddress
        let senders = cluster.senders

        if options.measureRaw {
            var search = RawLimitSearch(sender: senders[0], receivers: cluster.receivers, size: options.size, group: Self.rawGroup,
                                        trialSeconds: options.rawTrialSeconds, log: log)
            report.rawBlocking = try search.run(mode: .blocking)
            report.noteRawCPU(rate: report.rawBlocking, cpu: search.cpuPerDeliveredMessage)
            report.rawPolling = try search.run(mode: .polling)
            report.noteRawCPU(rate: report.rawPolling, cpu: search.cpuPerDeliveredMessage)
            // The same technique as the engine: as many messages per datagram as its
            // bundles carry (with 1000-byte messages in 1,472-byte bundles, one: the
            // plain search above is that baseline already).
            let packing = DatagramBundle.packing(messageBytes: options.size, bundleBytes: options.bundleBytes ?? QSMNodeConfiguration.defaultBundleBytes,
                                                 authenticated: options.secret != nil)
            report.rawMessagesPerDatagram = packing.messages
            if packing.messages > 1 {
                var bundled = RawLimitSearch(sender: senders[0], receivers: cluster.receivers, size: packing.datagramBytes,
                                             messagesPerDatagram: packing.messages, group: Self.rawGroup,
                                             trialSeconds: options.rawTrialSeconds, log: log)
                report.rawBundledBlocking = try bundled.run(mode: .blocking)
                report.noteRawCPU(rate: report.rawBundledBlocking, cpu: bundled.cpuPerDeliveredMessage)
                report.rawBundledPolling = try bundled.run(mode: .polling)
                report.noteRawCPU(rate: report.rawBundledPolling, cpu: bundled.cpuPerDeliveredMessage)
            }
            if options.segmentationOffload {
                // And the engine's offloads: runs of those datagrams as segmented sends,
                // taken coalesced.
                var offloaded = RawLimitSearch(sender: senders[0], receivers: cluster.receivers, size: packing.datagramBytes,
                                               messagesPerDatagram: packing.messages, group: Self.rawGroup,
                                               trialSeconds: options.rawTrialSeconds, log: log)
                report.rawOffload = try offloaded.run(mode: .offload)
                report.noteRawCPU(rate: report.rawOffload, cpu: offloaded.cpuPerDeliveredMessage)
            }
        }

        if options.measureRawLatency, options.rate > 0 {
            var search = RawLimitSearch(sender: senders[0], receivers: cluster.receivers, size: options.size, group: Self.rawGroup,
                                        trialSeconds: options.rawTrialSeconds, log: log)
            report.rawLatency = try search.latency(rate: options.rate, seconds: min(options.seconds ?? 5, 5))
        }

        // The engine: receivers join every group, senders wait until all are in.
        for receiver in cluster.receivers {
            var fields: [(String, Any)] = [("gms", gmsAddress), ("groups", options.groups), ("senders", options.senders),
                                           ("interface", receiver.interface)]
            if let bundle = options.bundleBytes { fields.append(("bundle", bundle)) }
            if let attempts = options.peerAttempts { fields.append(("peer_attempts", attempts)) }
            if let members = options.senderFirstUpTo { fields.append(("sender_first_up_to", members)) }
            if !options.segmentationOffload { fields.append(("gso", 0)) }
            if let secret = options.secret { fields.append(("secret", secret)) }
            if options.encrypt { fields.append(("encrypt", 1)) }
            try receiver.send(WorkerLine("receive", fields))
        }
        var unicast: [QSMSocketAddress] = []
        var receiverIDs: [UInt64] = []
        for receiver in cluster.receivers {
            let line = try receiver.expect("node", within: 30)
            receiverIDs.append(UInt64(line["id"] ?? "") ?? 0)
            if let address = QSMSocketAddress(line["address"] ?? "") { unicast.append(address) }
        }
        for (index, sender) in senders.enumerated() {
            var fields: [(String, Any)] = [("gms", gmsAddress), ("index", index), ("groups", options.groups),
                                           ("receivers", options.receivers), ("interface", sender.interface)]
            if let window = options.window { fields.append(("window", window)) }
            if let bytes = options.windowBytes { fields.append(("window-bytes", bytes)) }
            if let bundle = options.bundleBytes { fields.append(("bundle", bundle)) }
            if let attempts = options.peerAttempts { fields.append(("peer_attempts", attempts)) }
            if let members = options.senderFirstUpTo { fields.append(("sender_first_up_to", members)) }
            if !options.segmentationOffload { fields.append(("gso", 0)) }
            if let secret = options.secret { fields.append(("secret", secret)) }
            if options.encrypt { fields.append(("encrypt", 1)) }
            try sender.send(WorkerLine("send", fields))
        }
        // Joining takes well under a second here; the bound is generous because a run that
        // gives up wastes everything before it (once, a sender waited past 30 s in a
        // loaded test run, cause unknown; a wait past 10 s now reports its state).
        let joinTimeout = 60 + Double(options.groups) / 100
        var senderIDs: [String] = []
        for sender in senders {
            let line: WorkerLine
            do {
                line = try sender.expect("node", within: joinTimeout)
            } catch {
                // Say what the receivers saw, so that a run that gives up here is explained.
                let seen = cluster.receivers.map { receiver -> String in
                    guard (try? receiver.send(WorkerLine("view"))) != nil,
                          let view = try? receiver.expect("view", within: 5) else { return "\(receiver.name): no answer" }
                    return "\(receiver.name): registered \(view["registered"] ?? "?"), \(view["group_members"] ?? "?") group members"
                }
                throw WorkerProcess.Failure(description: "\(error); \(seen.joined(separator: "; "))")
            }
            senderIDs.append(line["id"] ?? "")
            if let address = QSMSocketAddress(line["address"] ?? "") { unicast.append(address) }
        }
        // Receivers tell the run's messages from anything else that might be delivered.
        for receiver in cluster.receivers { try receiver.send(WorkerLine("senders", [("ids", senderIDs.joined(separator: ","))])) }
        for receiver in cluster.receivers { _ = try receiver.expect("senders-known", within: 10) }
        try chooseVictim(cluster, receiverIDs: receiverIDs)
        let receivers = cluster.receivers
        var hostile: WorkerProcess?
        if options.perturbation == .hostile {
            try receivers[0].send(WorkerLine("targets"))
            let multicast = (try receivers[0].expect("targets", within: 10)["multicast"] ?? "")
                .split(separator: ",").compactMap { QSMSocketAddress(String($0)) }
            let injector = try WorkerProcess(name: "hostile", arguments: ["hostile"], host: cluster.hostileHost, network: cluster.network)
            let targets = (unicast + multicast + [gmsAddress]).map(\.description).joined(separator: ",")
            try injector.send(WorkerLine("hostile", [("targets", targets), ("gms", gmsAddress), ("interface", injector.interface)]))
            _ = try injector.expect("hostile-started", within: 10)
            hostile = injector
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
        // crash-sender: when the live receivers last changed or disagreed.
        var lastDisagreement = start
        var previousCounts: [Int] = []
        let liveSenders = { senders.filter { !$0.killed } }
        while true {
            WorkerProcess.waitForOutput(senders + receivers, milliseconds: 20)
            let now = MonotonicClock.now()
            let elapsed = Double(now.nanoseconds(since: start)) / 1e9
            try schedule.apply(at: elapsed, sendingDone: sendingDone != nil, cluster: cluster, log: log)
            if sendingDone == nil, !liveSenders().isEmpty || options.perturbation == .crashSender,
               liveSenders().allSatisfy({ $0.has("sent") }) {
                sendingDone = now
                for sender in senders {
                    if sender.killed {
                        report.sentBySender.append(sender.latestCount)
                        continue
                    }
                    let line = try sender.expect("sent", within: 1)
                    report.sentBySender.append(line.int("count") ?? 0)
                    report.sendSeconds = max(report.sendSeconds, line.double("seconds") ?? 0)
                }
                sentTotal = zip(senders, report.sentBySender).filter { !$0.0.killed }.map(\.1).reduce(0, +)
                if let hostile { report.hostileDatagrams = try stopHostile(hostile) }
                hostile = nil
                log("senders done: \(report.sentBySender.reduce(0, +)) messages in \(format(report.sendSeconds, 1)) s; waiting for receivers")
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
                let counts = options.checkedReceivers.map { receivers[$0].latestCount }
                // By how far the streams have come: a receiver that rejoined after an
                // exclusion is owed only what was sent from then on, up to the last.
                var complete = options.checkedReceivers.allSatisfy { receivers[$0].latestTail >= sentTotal }
                if options.perturbation == .crashSender {
                    // Nobody knows how much the dead sender got out: the live receivers must
                    // agree, and stay agreed, for two seconds.
                    if counts != previousCounts || Set(counts).count > 1 { lastDisagreement = now }
                    previousCounts = counts
                    if report.agreementSeconds == nil, now.nanoseconds(since: lastDisagreement) >= 2_000_000_000 {
                        report.agreementSeconds = Double(lastDisagreement.nanoseconds(since: start)) / 1e9
                            - (schedule.events.first?.start ?? 0)
                    }
                    complete = complete && report.agreementSeconds != nil
                }
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
        if let hostile { report.hostileDatagrams = try stopHostile(hostile) }
        schedule.finishAll(at: Double(MonotonicClock.now().nanoseconds(since: start)) / 1e9, cluster: cluster)
        report.events = schedule.events
        report.burstMilliseconds = schedule.burstMilliseconds
        if let network = cluster.network { report.networkDrops = cluster.faultHosts.map(network.droppedPackets).reduce(0, +) }

        // Results: every live worker reports what it saw.
        for worker in senders + receivers where !worker.killed { try worker.send(WorkerLine("finish")) }
        for sender in senders where !sender.killed { report.senderResults.append(try sender.expect("result", within: 30)) }
        for receiver in receivers {
            report.receiverResults.append(receiver.killed ? nil : try receiver.expect("result", within: 30))
            report.receiverProgress.append(receiver.progress)
            report.receiverTails.append(receiver.tailProgress)
            report.receiverAllocations.append(receiver.allocationProgress)
        }
        report.senderProgress = senders.map(\.progress)
        report.senderAllocations = senders.map(\.allocationProgress)
        report.settleKilledSenderCounts()
        if options.verbose {
            // How the rate went, every 200 ms: sender 0 and receiver 0 (a burst's start-up
            // shows here).
            let step = 0.2
            let sent = report.rates(report.senderProgress.first ?? [], step: step)
            let delivered = report.rates(report.receiverProgress.first ?? [], step: step)
            for index in 0..<max(sent.count, delivered.count) {
                let time = (sent.indices.contains(index) ? sent[index].time : delivered[index].time)
                log("timeline \(format(time, 2)) s: sender 0 \(Int(sent.indices.contains(index) ? sent[index].rate : 0)) msg/s, "
                    + "receiver 0 \(Int(delivered.indices.contains(index) ? delivered[index].rate : 0)) msg/s")
            }
            for (index, line) in report.senderResults.enumerated() { log("sender \(index): \(line)") }
            for (index, line) in report.receiverResults.enumerated() { log("receiver \(index): \(line.map(\.description) ?? "killed")") }
        }
        for worker in senders + receivers where !worker.killed { worker.process.waitForExit(timeoutMilliseconds: 5000) }
        cluster.gms.signal(SIGTERM)
        return report
    }

    private func stopHostile(_ hostile: WorkerProcess) throws -> Int {
        try hostile.send(WorkerLine("finish"))
        return try hostile.expect("result", within: 10).int("datagrams") ?? 0
    }

    /// Puts the receiver the perturbation is aimed at first: for a crash, one that leads
    /// nothing; for a leader crash, the region leader or a partition leader that is not
    /// also the region leader. The views are read from one receiver once its region view
    /// has every receiver in it (the group views that said everyone joined can reach it
    /// before the region view does).
    private func chooseVictim(_ cluster: ClusterProcesses, receiverIDs: [UInt64]) throws {
        guard options.perturbation.killsReceiver else { return }
        let reader = cluster.receivers[cluster.receivers.count - 1]
        let deadline = MonotonicClock.now().advanced(by: .seconds(20))
        var view: WorkerLine
        while true {
            try reader.send(WorkerLine("view"))
            view = try reader.expect("view", within: 10)
            let members = Set((view["members"] ?? "").split(separator: ",").compactMap { UInt64($0) })
            if members.isSuperset(of: receiverIDs) || MonotonicClock.now() >= deadline { break }
            var none = pollfd(fd: -1, events: 0, revents: 0)
            _ = poll(&none, 1, 50)
        }
        let regionLeader = UInt64(view["region_leader"] ?? "") ?? 0
        let partitionLeaders = Set((view["partition_leaders"] ?? "").split(separator: ",").compactMap { UInt64($0) })
        let victimID: UInt64?
        switch options.perturbation {
        case .crashRegionLeader: victimID = regionLeader
        case .crashPartitionLeader: victimID = partitionLeaders.subtracting([regionLeader]).min()
        default: victimID = receiverIDs.first { !partitionLeaders.contains($0) && $0 != regionLeader }
        }
        guard let victimID, let index = receiverIDs.firstIndex(of: victimID) else {
            throw WorkerProcess.Failure(description: "no receiver has the role --perturb \(options.perturbation.rawValue) needs "
                                        + "(region leader \(regionLeader), partition leaders \(partitionLeaders.sorted()))")
        }
        cluster.makeReceiverZero(index)
        log("\(options.perturbation.rawValue): the victim is node \(victimID) (\(cluster.receivers[0].name)); "
            + "region leader \(regionLeader), partition leaders \(partitionLeaders.sorted().map(String.init).joined(separator: ","))")
    }
}
