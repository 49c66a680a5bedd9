#if canImport(Glibc)
import Glibc
#endif
import QSMCore
import QSMHarness

/// When to do what during a run, in seconds since sending started: to receiver 0 (or,
/// for churn, to the churning receivers), to receivers' hosts, to sender 0 or to the
/// GMS. Records what it did for the report.
struct PerturbationSchedule {
    let options: RunOptions
    /// Each perturbation's start and end, in seconds since sending started.
    private(set) var events: [(start: Double, end: Double)] = []
    /// How long each drop-all burst really lasted (from the rule in place until its
    /// removal was done), ms.
    private(set) var burstMilliseconds: [Double] = []
    private var stoppedUntil: Double?
    private var faultUntil: Double?
    private var gmsDownUntil: Double?
    private var nextAt: Double
    private var churnIndex = 0
    private var churnEventsLeft: Int
    private var churnLeft: [Bool]
    private(set) var killed: String?

    init(options: RunOptions) {
        self.options = options
        churnLeft = [Bool](repeating: false, count: options.churningReceivers)
        churnEventsLeft = options.churnEvents ?? .max
        let seconds = options.seconds ?? 10
        switch options.perturbation {
        case .sleep: nextAt = 2.5
        case .loss: nextAt = 1
        case .randomLoss: nextAt = options.faultStart ?? 0
        case .cut: nextAt = options.faultStart ?? seconds * 0.3
        case .freeze: nextAt = min(3, seconds * 0.2)
        case .crash, .crashRegionLeader, .crashPartitionLeader, .crashSender, .gmsRestart: nextAt = seconds * 0.4
        case .churn: nextAt = Self.churnInterval(options)
        case .slow: nextAt = 2
        case .none, .hostile: nextAt = .infinity
        }
    }

    private static func churnInterval(_ options: RunOptions) -> Double {
        guard let events = options.churnEvents else { return 0.5 }
        return (options.seconds ?? 10) * 0.9 / Double(events)
    }

    /// Whether nothing remains to undo (no receiver stopped or out of its groups, no
    /// fault rule in place, the GMS up).
    var finished: Bool { stoppedUntil == nil && faultUntil == nil && gmsDownUntil == nil && !churnLeft.contains(true) }

    var activeNote: String? {
        if stoppedUntil != nil { return "receiver 0 stopped" }
        if faultUntil != nil { return "network fault in place" }
        if gmsDownUntil != nil { return "GMS down" }
        return killed
    }

    mutating func apply(at elapsed: Double, sendingDone: Bool, cluster: ClusterProcesses, log: (String) -> Void) throws {
        let receivers = cluster.receivers
        if let until = stoppedUntil, elapsed >= until {
            receivers[0].signal(SIGCONT)
            stoppedUntil = nil
            log("  \(receivers[0].name) continued (SIGCONT)")
        }
        if let until = faultUntil, elapsed >= until || (sendingDone && options.faultSeconds == nil) {
            try healNetwork(cluster)
            events[events.count - 1].end = elapsed
            log("  network fault removed after \(format(elapsed - events[events.count - 1].start, 1)) s")
        }
        if let until = gmsDownUntil, elapsed >= until {
            try cluster.restartGMS()
            gmsDownUntil = nil
            events[events.count - 1].end = elapsed
            log("  GMS started again on \(cluster.gmsAddress), with no memory of the old one")
        }
        if sendingDone {
            nextAt = .infinity
            rejoinAll(receivers: receivers)
            return
        }
        guard elapsed >= nextAt else { return }
        switch options.perturbation {
        case .none, .hostile:
            break
        case .slow:
            // A tenth of what receiver 0 has been taking (of the fixed rate, if one is set).
            let taken = Double(receivers[0].latestCount) / max(elapsed, 0.1)
            let full = options.rate > 0 ? options.rate * Double(options.senders) : taken
            let perSecond = max(1, full / 10)
            try? receivers[0].send(WorkerLine("slow", [("per_second", perSecond)]))
            events.append((elapsed, elapsed))
            log("  \(receivers[0].name)'s application slowed to \(Int(perSecond)) deliveries/s")
            nextAt = .infinity
        case .sleep, .freeze:
            let length = options.perturbation == .sleep ? 0.5 : 10
            receivers[0].signal(SIGSTOP)
            stoppedUntil = elapsed + length
            events.append((elapsed, elapsed + length))
            log("  \(receivers[0].name) stopped (SIGSTOP) for \(length) s")
            nextAt = options.perturbation == .sleep ? nextAt + 5 : .infinity
        case .loss:
            if let network = cluster.network {
                // A drop-all rule for 10 ms: both changes are started ahead, so applying
                // them costs nft's own work only (the report gives the real length).
                let add = try network.prepare(.dropInbound, on: cluster.faultHosts)
                let heal = try network.prepare(nil, on: cluster.faultHosts)
                try add.apply()
                let started = MonotonicClock.now()
                var pause = timespec(tv_sec: 0, tv_nsec: 10_000_000)
                nanosleep(&pause, nil)
                try heal.apply()
                burstMilliseconds.append(Double(MonotonicClock.now().nanoseconds(since: started)) / 1e6)
            } else {
                for receiver in faultedReceivers(cluster) { try? receiver.send(WorkerLine("lose", [("ms", 10)])) }
            }
            events.append((elapsed, elapsed + 0.01))
            nextAt += 1
        case .randomLoss, .cut:
            let length = options.faultSeconds ?? (options.perturbation == .cut ? 5 : .infinity)
            if let network = cluster.network {
                let fault: HostNetwork.Fault = options.perturbation == .cut ? .cutOff : .randomLoss(percent: options.lossPercent)
                for host in cluster.faultHosts { try network.setFault(fault, on: host) }
            } else {
                // On loopback the nodes' own fault injection stands in for the firewall.
                let cut = options.perturbation == .cut
                for receiver in faultedReceivers(cluster) {
                    try? receiver.send(WorkerLine("fault", [("percent", cut ? 100 : options.lossPercent), ("out", cut ? 1 : 0),
                                                            ("ms", length.isFinite ? Int(length * 1000) : 86_400_000)]))
                }
            }
            faultUntil = elapsed + length
            events.append((elapsed, elapsed + length))
            log("  " + (cluster.network == nil ? "receiver(s) \(faultedReceivers(cluster).map(\.name).joined(separator: ", "))"
                           : "host(s) \(cluster.faultHosts.map(String.init).joined(separator: ","))") + ": "
                + (options.perturbation == .cut ? "cut off" : "\(options.lossPercent)% inbound loss")
                + (length.isFinite ? " for \(format(length, 1)) s" : " until sending ends"))
            nextAt = .infinity
        case .crash, .crashRegionLeader, .crashPartitionLeader:
            receivers[0].signal(SIGKILL)
            killed = "\(receivers[0].name) killed"
            events.append((elapsed, elapsed))
            log("  \(receivers[0].name) killed (SIGKILL)")
            nextAt = .infinity
        case .crashSender:
            cluster.senders[0].signal(SIGKILL)
            killed = "sender 0 killed"
            events.append((elapsed, elapsed))
            log("  sender 0 killed (SIGKILL)")
            nextAt = .infinity
        case .gmsRestart:
            cluster.killGMS()
            gmsDownUntil = elapsed + 1
            events.append((elapsed, elapsed + 1))
            log("  GMS killed (SIGKILL); it starts again in 1 s")
            nextAt = .infinity
        case .churn:
            guard churnEventsLeft > 0 else { nextAt = .infinity; break }
            churnEventsLeft -= 1
            let index = churnIndex % churnLeft.count
            churnIndex += 1
            churnLeft[index].toggle()
            try? receivers[index].send(WorkerLine(churnLeft[index] ? "leave" : "join"))
            events.append((elapsed, elapsed))
            log("  \(receivers[index].name) \(churnLeft[index] ? "leaves" : "rejoins") all groups")
            nextAt += Self.churnInterval(options)
        }
    }

    /// Undoes whatever is still in effect (a stopped receiver continues, fault rules go,
    /// the GMS comes back), so that every worker can report.
    mutating func finishAll(at elapsed: Double, cluster: ClusterProcesses) {
        if stoppedUntil != nil {
            cluster.receivers[0].signal(SIGCONT)
            stoppedUntil = nil
        }
        if faultUntil != nil {
            try? healNetwork(cluster)
            events[events.count - 1].end = min(events[events.count - 1].end, elapsed)
        }
        if gmsDownUntil != nil {
            try? cluster.restartGMS()
            gmsDownUntil = nil
        }
    }

    private mutating func healNetwork(_ cluster: ClusterProcesses) throws {
        if let network = cluster.network {
            for host in cluster.faultHosts { try network.heal(host) }
        } else {
            for receiver in faultedReceivers(cluster) { try? receiver.send(WorkerLine("fault", [("ms", 0)])) }
        }
        faultUntil = nil
    }

    private func faultedReceivers(_ cluster: ClusterProcesses) -> [WorkerProcess] {
        options.faultAtAllReceivers ? cluster.receivers : [cluster.receivers[0]]
    }

    /// Makes churned receivers rejoin once the senders are done.
    private mutating func rejoinAll(receivers: [WorkerProcess]) {
        for index in churnLeft.indices where churnLeft[index] {
            try? receivers[index].send(WorkerLine("join"))
            churnLeft[index] = false
        }
    }
}
