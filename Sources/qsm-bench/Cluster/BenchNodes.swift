#if canImport(Glibc)
import Glibc
#endif
import QSMCore
import QSMHarness
import Synchronization

/// The groups of a benchmark run: all receivers join all of them, senders publish to
/// them round robin (the seed's Fig. 4.46 workload).
enum BenchGroups {
    static func name(_ index: Int) -> GroupName { GroupName("bench-\(index)")! }

    /// Membership requests of this process the GMS refused (a join over a limit, say).
    private static let refusals = Atomic<Int>(0)

    /// Says the first refusal (a run of thousands of groups can draw thousands; the run
    /// would otherwise only time out waiting for members).
    static func warnOfRefusal(_ request: String, _ reason: String) {
        guard refusals.add(1, ordering: .relaxed).newValue == 1 else { return }
        log(.warning, "qsm-bench worker", "the GMS refused \(request): \(reason) (further refusals not shown)")
    }
    /// The index in a name `name(_:)` made, read from its bytes: this runs for every
    /// delivery, and the benchmark should measure the engine, not string slicing (nor a
    /// lazily made global: the prefix is compared as two words).
    static func index(of name: GroupName) -> Int? {
        var text = name.text
        return text.withUTF8 { bytes -> Int? in
            // "bench-" then 1 to 9 decimal digits.
            guard bytes.count > 6, bytes.count <= 15,
                  UnsafeRawBufferPointer(bytes).loadUnaligned(as: UInt32.self) == UInt32(littleEndian: 0x636e_6562),  // "benc"
                  UnsafeRawBufferPointer(bytes).loadUnaligned(fromByteOffset: 4, as: UInt16.self) == UInt16(littleEndian: 0x2d68)  // "h-"
            else { return nil }
            var index = 0
            for byte in bytes[6...] {
                guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
                index = index * 10 + Int(byte - UInt8(ascii: "0"))
            }
            return index
        }
    }
}

/// A benchmark receiver: a QSM node in every group that checks each delivery and
/// reports progress.
final class BenchReceiver: Sendable {
    let node: QSMNode
    let groups: Int
    private let check: Mutex<DeliveryCheck>
    private let delivered = Atomic<Int>(0)
    /// The multicast addresses of this node's regions, from its membership events.
    private let regionAddresses = Mutex<Set<QSMSocketAddress>>([])
    private let regionView = Mutex<RegionView?>(nil)
    /// CPU time used before the node existed (the raw phase), left out of its figure.
    private let cpuBaseline = ProcessMetrics.cpuSeconds
    /// `--perturb slow`: nanoseconds the application spends on each delivery (0: none),
    /// until the node is evicted for it; and when that happened (monotonic ns, 0: never).
    private let deliveryDelay = Atomic<Int>(0)
    private let evictedAt = Atomic<Int64>(0)

    init(configuration: QSMNodeConfiguration, groups: Int, senders: Int) throws {
        node = try QSMNode(configuration: configuration)
        self.groups = groups
        check = Mutex(DeliveryCheck(senders: senders, groups: groups))
        node.onMembershipEvent { [self] event in
            switch event {
            case .regionView(let view):
                if let address = view.address { regionAddresses.withLock { _ = $0.insert(address) } }
                regionView.withLock { $0 = view }
            case .regionRemoved:
                // Moved to other regions (a new GMS numbers its regions afresh): the
                // streams resume there, possibly past messages in flight in the old one.
                check.withLock { $0.rejoined() }
            case .rejected(let request, let reason):
                BenchGroups.warnOfRefusal(request, reason)
            case .evicted:
                // The slow application is told, and stops being slow (it drains what it
                // was handed; it does not rejoin, so the run measures the others).
                deliveryDelay.store(0, ordering: .relaxed)
                _ = evictedAt.compareExchange(expected: 0, desired: MonotonicClock.now().nanoseconds, ordering: .relaxed)
            default:
                break
            }
        }
        node.onDelivery { [self] delivery in
            // Timed only if its sender stamped it (see `BenchPayload.isTimed`), and the
            // first delivery always (where the delivery rate's span starts).
            let now = delivery.withPayload { BenchPayload.isTimed($0) } || deliveredCount == 0 ? MonotonicClock.now() : nil
            let group = BenchGroups.index(of: delivery.group) ?? Int.max
            check.withLock { $0.observe(sender: delivery.sender, group: group, sequence: delivery.sequence, delivery: delivery, at: now) }
            delivered.add(1, ordering: .relaxed)
            let delay = deliveryDelay.load(ordering: .relaxed)
            if delay > 0 {
                var pause = timespec(tv_sec: delay / 1_000_000_000, tv_nsec: delay % 1_000_000_000)
                nanosleep(&pause, nil)
            }
        }
        try node.start()
        try joinAll()
    }

    func joinAll() throws {
        check.withLock { $0.rejoined() }
        for index in 0..<groups { try node.join(BenchGroups.name(index).text) }
    }

    func leaveAll() {
        for index in 0..<groups { node.leave(BenchGroups.name(index)) }
    }

    var deliveredCount: Int { delivered.load(ordering: .relaxed) }

    /// The application takes at most `perSecond` deliveries a second from now on.
    func slowDown(perSecond: Double) {
        deliveryDelay.store(perSecond > 0 ? Int(1e9 / perSecond) : 0, ordering: .relaxed)
    }

    /// The last message delivered of every stream, summed: equal to the delivered count
    /// unless messages were skipped while this node was out of its groups.
    var tailCount: Int { check.withLock { $0.lastBySender.reduce(0, +) } }

    var multicastAddresses: [QSMSocketAddress] { regionAddresses.withLock { Array($0) } }

    /// The newest view of a region this node is in (who leads the rings).
    var latestRegionView: RegionView? { regionView.withLock { $0 } }

    func knowSenders(_ ids: [NodeID]) { check.withLock { $0.knowSenders(ids) } }

    func result() async throws(QSMError) -> WorkerLine {
        // The peak is read before the statistics snapshot: the run's memory, not the
        // snapshot's (its tables of every group's counters are the harness's request).
        let memory = ProcessMetrics.residentMegabytes()
        let statistics = try await node.statistics()
        let check = self.check.withLock { $0 }
        let protocolStatistics = statistics.protocolStatistics
        return WorkerLine("result", [
            ("delivered", check.delivered), ("duplicates", check.duplicates), ("gaps", check.gaps),
            ("corrupt", check.corrupt), ("foreign", check.foreign),
            ("unique", check.uniqueBySender.map(String.init).joined(separator: ",")),
            ("last", check.lastBySender.map(String.init).joined(separator: ",")), ("skipped", check.skipped),
            ("first_ns", check.firstAt?.nanoseconds ?? 0), ("last_ns", check.lastAt?.nanoseconds ?? 0),
            ("span_delivered", check.deliveredInSpan),
            ("latency", check.latency.encoded.isEmpty ? "-" : check.latency.encoded),
            ("latency_max_us", check.latency.maximumMicroseconds),
            ("recovery", protocolStatistics.recoveryMicroseconds.encoded.isEmpty ? "-" : protocolStatistics.recoveryMicroseconds.encoded),
            ("recovery_max_us", protocolStatistics.recoveryMicroseconds.maximumMicroseconds),
            ("cpu_s", ProcessMetrics.cpuSeconds - cpuBaseline), ("rss_mb", memory.peak),
            ("retransmissions", protocolStatistics.retransmissionsSent),
            ("requests", protocolStatistics.requestsSent),
            ("asked_holes", protocolStatistics.holesAsked), ("asked_tails", protocolStatistics.tailsAsked),
            ("asked_again", protocolStatistics.askedAgain),
            ("token_rounds", protocolStatistics.tokenRounds),
            ("token_rtt_ns", protocolStatistics.tokenRoundTripNanoseconds),
            ("token_timeouts", protocolStatistics.tokenTimeouts),
            ("redundant_tokens", protocolStatistics.redundantTokensSent),
            ("duplicate_tokens", protocolStatistics.duplicateTokensDropped),
            ("stale_tokens", protocolStatistics.staleTokensDropped),
            ("partition_repairs", protocolStatistics.partitionRepairsAsked),
            ("view_change_pauses", protocolStatistics.viewChangePauses),
            ("view_change_pauses_timed_out", protocolStatistics.viewChangePausesTimedOut),
            ("multicast_repairs", protocolStatistics.multicastRepairs),
            ("repairs_absorbed", protocolStatistics.repairRequestsAbsorbed),
            ("repairs_awaited", protocolStatistics.repairsAwaited),
            ("awaited_repairs_answered", protocolStatistics.awaitedRepairsAnswered),
            ("partition_pushes", protocolStatistics.partitionPushes),
            ("injected_drops", statistics.core.droppedByInjectedLoss),
            ("malformed_dropped", protocolStatistics.malformedDropped),
            ("implausible_dropped", protocolStatistics.implausibleDropped + protocolStatistics.streamLimitDropped),
            ("unknown_dropped", protocolStatistics.unknownDropped), ("truncated_dropped", statistics.core.droppedTruncated),
            ("unauthenticated_drops", statistics.droppedUnauthenticated),
            ("replay_drops", statistics.machine.droppedReplayed + statistics.machine.droppedTooOld
                + statistics.machine.droppedDeadIncarnation + statistics.machine.droppedTooManySenders),
            ("udp_rcvbuf_errors", ProcessMetrics.udpReceiveBufferErrors()),
            ("requests_received", protocolStatistics.requestsReceived),
            ("out_of_order_dropped", protocolStatistics.outOfOrderDropped),
            ("duplicates_dropped", protocolStatistics.duplicatesDropped),
            ("datagrams", statistics.core.datagramsReceived), ("sleeps", statistics.core.sleeps),
            ("gro", statistics.core.receiveOffload ? 1 : 0), ("gro_datagrams", statistics.core.coalescedDatagrams),
            ("gro_receives", statistics.core.coalescedReceives),
            ("busy_polls", statistics.core.busyPolls), ("pool_exhaustions", statistics.core.poolExhaustions),
            ("alarm_late_max_us", statistics.alarmLateness.maxNanoseconds / 1000),
            ("cached_mb", Double(protocolStatistics.maximumCachedBytes) / 1_048_576),
            ("evictions", statistics.machine.evictions), ("evicted_ns", evictedAt.load(ordering: .relaxed)),
        ])
    }
}

/// A benchmark sender: publishes to every group round robin, as fast as flow control
/// allows or at a fixed rate, for a duration or a message count.
final class BenchSender: Sendable {
    let node: QSMNode
    let index: Int
    let groups: Int
    private let sent = Atomic<Int>(0)
    private let cpuBaseline = ProcessMetrics.cpuSeconds
    /// Evictions of receivers from this sender's groups it was told of, and when the
    /// first came (monotonic ns, 0: none).
    private let evictionNotices = Atomic<Int>(0)
    private let firstNoticeAt = Atomic<Int64>(0)

    init(configuration: QSMNodeConfiguration, index: Int, groups: Int) throws {
        node = try QSMNode(configuration: configuration)
        self.index = index
        self.groups = groups
        node.onMembershipEvent { [self] event in
            if case .rejected(let request, let reason) = event { BenchGroups.warnOfRefusal(request, reason) }
            if case .memberEvicted = event {
                evictionNotices.add(1, ordering: .relaxed)
                _ = firstNoticeAt.compareExchange(expected: 0, desired: MonotonicClock.now().nanoseconds, ordering: .relaxed)
            }
        }
        try node.start()
        for group in 0..<groups { node.publishWithoutJoining(BenchGroups.name(group)) }
    }

    func waitForReceivers(_ receivers: Int) async throws(QSMError) {
        for group in 0..<groups { try await node.waitForMembers(receivers, in: BenchGroups.name(group), timeout: .seconds(120)) }
    }

    /// Where a node stands with the GMS, for reports of a wait that takes too long.
    static func membershipState(of node: QSMNode) -> String {
        let members = node.memberCount(of: BenchGroups.name(0)).map(String.init) ?? "no view"
        return "registered \(node.isRegistered), \(BenchGroups.name(0).text): \(members) members, "
            + "last connection problem: \(node.lastConnectionProblem ?? "none")"
    }

    var sentCount: Int { sent.load(ordering: .relaxed) }

    /// Publishes until `seconds` pass or `count` messages are out (whichever is given
    /// and comes first); `rate` 0 means as fast as the window allows.
    func run(size: Int, seconds: Double?, count: Int?, rate: Double) async throws -> Double {
        let start = MonotonicClock.now()
        let deadline = seconds.map { start.advanced(byNanoseconds: Int64($0 * 1e9)) }
        var payload = [UInt8](repeating: 0, count: size)
        // Handles, not names: the node finds each group's id without hashing its name.
        let publishers = (0..<groups).map { node.publisher(for: BenchGroups.name($0)) }
        var sequence: UInt64 = 0
        let watchdog = watchForStalls()
        defer { watchdog.cancel() }
        // At a set rate every message is timed; as fast as possible, one in
        // `timedEveryAtFullRate` (the clock is then read for those only, here and at the
        // receivers).
        let timedEvery: UInt64 = rate > 0 ? 1 : BenchPayload.timedEveryAtFullRate
        var now = start
        while count.map({ Int(sequence) < $0 }) ?? true {
            // (And the last of a counted run: a short run's delivery rate spans first to last.)
            let timed = sequence % timedEvery == 0 || count.map { Int(sequence) == $0 - 1 } ?? false
            if timed {
                now = MonotonicClock.now()
                if let deadline, now >= deadline { break }
            }
            if rate > 0 {
                let due = start.advanced(byNanoseconds: Int64(Double(sequence) / rate * 1e9))
                if due > now {
                    let wait = due.nanoseconds(since: now)
                    var pause = timespec(tv_sec: Int(wait / 1_000_000_000), tv_nsec: Int(wait % 1_000_000_000))
                    nanosleep(&pause, nil)
                    now = MonotonicClock.now()
                }
            }
            let group = publishers[Int(sequence % UInt64(groups))]
            BenchPayload.fill(&payload, sender: index, sequence: sequence, publishedAt: timed ? now : .zero)
            publishing: while true {
                // Copied into an array the node reuses: no allocation per message.
                switch payload.withUnsafeBytes({ node.tryPublish(copying: $0, to: group) }) {
                case .accepted: break publishing
                case .rejected(let reason): throw ConfigurationError(reason)
                case .wouldBlock:
                    // Window full: wait for acknowledgements, then stamp the message again.
                    await node.waitForWindow()
                    BenchPayload.fill(&payload, sender: index, sequence: sequence,
                                      publishedAt: timed ? MonotonicClock.now() : .zero)
                }
            }
            sequence += 1
            sent.store(Int(sequence), ordering: .relaxed)
        }
        return Double(MonotonicClock.now().nanoseconds(since: start)) / 1e9
    }

    /// Watches the run: if no message goes out for 5 s, says so on standard error with
    /// the node's figures (what a stalled run needs explained), once per stall.
    private func watchForStalls() -> Task<Void, Never> {
        Task { [self] in
            var last = -1
            var quietSeconds = 0
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(1))
                let now = sentCount
                quietSeconds = now == last ? quietSeconds + 1 : 0
                last = now
                guard quietSeconds == 5 else { continue }
                guard let statistics = try? await node.statistics() else { continue }
                let figures = statistics.protocolStatistics
                benchLog("sender \(index): nothing sent for 5 s after \(now) messages: "
                                     + "\(statistics.unacknowledgedMessages) unacknowledged, \(figures.acknowledged) acknowledged, "
                                     + "\(figures.dataPacketsSent) data packets and \(figures.retransmissionsSent) retransmissions sent, "
                                     + "\(figures.requestsReceived) requests received, \(statistics.core.datagramsSent) datagrams out, "
                                     + "\(statistics.core.droppedSendErrors) send errors (last: \(statistics.core.lastSocketError.map { "\($0)" } ?? "none")), "
                                     + "\(statistics.core.datagramsReceived) datagrams in")
            }
        }
    }

    func result() async throws(QSMError) -> WorkerLine {
        let memory = ProcessMetrics.residentMegabytes()  // before the snapshot, as above
        let statistics = try await node.statistics()
        let protocolStatistics = statistics.protocolStatistics
        return WorkerLine("result", [
            ("sent", sentCount), ("cpu_s", ProcessMetrics.cpuSeconds - cpuBaseline), ("rss_mb", memory.peak),
            ("eviction_notices", evictionNotices.load(ordering: .relaxed)), ("first_notice_ns", firstNoticeAt.load(ordering: .relaxed)),
            ("udp_rcvbuf_errors", ProcessMetrics.udpReceiveBufferErrors()),
            ("retransmissions", protocolStatistics.retransmissionsSent),
            ("carried", protocolStatistics.messagesCarried),
            ("acknowledged", protocolStatistics.acknowledged),
            ("ack_latency_ns", protocolStatistics.acknowledgementLatencyNanoseconds),
            ("unacknowledged", statistics.unacknowledgedMessages),
            ("token_timeouts", protocolStatistics.tokenTimeouts), ("sleeps", statistics.core.sleeps),
            ("view_change_pauses", protocolStatistics.viewChangePauses),
            ("view_change_pauses_timed_out", protocolStatistics.viewChangePausesTimedOut),
            ("multicast_repairs", protocolStatistics.multicastRepairs),
            ("repairs_absorbed", protocolStatistics.repairRequestsAbsorbed),
            ("repairs_awaited", protocolStatistics.repairsAwaited),
            ("awaited_repairs_answered", protocolStatistics.awaitedRepairsAnswered),
            ("partition_pushes", protocolStatistics.partitionPushes),
            ("busy_polls", statistics.core.busyPolls), ("pool_exhaustions", statistics.core.poolExhaustions),
            ("held_mb", Double(protocolStatistics.maximumHeldBytes) / 1_048_576),
            ("datagrams_sent", statistics.core.datagramsSent),
            ("gso", statistics.core.segmentationOffload ? 1 : 0), ("gso_sends", statistics.core.segmentedSends),
            ("gso_datagrams", statistics.core.segmentedDatagrams),
            ("bundles", statistics.machine.bundlesSent), ("bundled_packets", statistics.machine.packetsBundled),
        ])
    }
}
