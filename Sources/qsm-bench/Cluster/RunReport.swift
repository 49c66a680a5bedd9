import QSMCore
import QSMHarness

/// Everything a cluster run measured, and the figures derived from it.
struct RunReport {
    let options: RunOptions
    var rawBlocking: Double?
    var rawPolling: Double?
    /// The same searches with datagrams packed as the engine packs its bundles (only
    /// when more than one message fits), in messages per second.
    var rawBundledBlocking: Double?
    var rawBundledPolling: Double?
    /// The search with the engine's packing and its offloads (segmented sends, coalesced
    /// receives), where the kernel has them, in messages per second.
    var rawOffload: Double?
    var rawMessagesPerDatagram = 1
    /// Raw datagrams' send-to-receive latency at the run's rate (`--raw-latency`).
    var rawLatency: LatencyHistogram?
    /// CPU seconds per delivered message of the raw search that gave `rawLossless`
    /// (sender and receivers together, over its confirming trial).
    var rawCPUPerDeliveredMessage: Double?
    private var rawCPUOfRate: Double?

    /// Keeps the CPU figure of the fastest raw search so far.
    mutating func noteRawCPU(rate: Double?, cpu: Double?) {
        guard let rate, rate >= (rawCPUOfRate ?? 0) else { return }
        rawCPUOfRate = rate
        rawCPUPerDeliveredMessage = cpu
    }
    var startNanoseconds: Int64 = 0
    var sentBySender: [Int] = []
    var sendSeconds = 0.0
    var senderResults: [WorkerLine] = []
    /// nil for a receiver that was killed.
    var receiverResults: [WorkerLine?] = []
    var receiverProgress: [[(time: Int64, count: Int)]] = []
    /// How far each receiver's streams had come over time (above its count only after it
    /// skipped messages while out of its groups).
    var receiverTails: [[(time: Int64, count: Int)]] = []
    var senderProgress: [[(time: Int64, count: Int)]] = []
    /// Per worker: (messages so far, heap allocations so far), every 100 ms.
    var senderAllocations: [[(count: Int, allocations: Int)]] = []
    var receiverAllocations: [[(count: Int, allocations: Int)]] = []
    var events: [(start: Double, end: Double)] = []
    /// The senders never finished (their windows stayed full) and were stopped.
    var stalled = false
    /// Datagrams the hostile injector sent (the `hostile` perturbation).
    var hostileDatagrams = 0
    /// Packets the nftables fault rules dropped (network faults on hosts).
    var networkDrops = 0
    /// The real length of each drop-all burst (hosts), in milliseconds.
    var burstMilliseconds: [Double] = []
    var meanBurstMilliseconds: Double? {
        burstMilliseconds.isEmpty ? nil : burstMilliseconds.reduce(0, +) / Double(burstMilliseconds.count)
    }
    /// crash-sender: seconds from the kill until the live receivers agreed for good on
    /// what they had of the dead sender's messages.
    var agreementSeconds: Double?
    /// Senders killed during the run (by index): nobody knows exactly what they sent.
    var killedSenders: Set<Int> {
        options.perturbation == .crashSender && !events.isEmpty ? [0] : []
    }

    init(options: RunOptions) { self.options = options }

    var sent: Int { sentBySender.reduce(0, +) }

    /// The raw limit with the engine's own techniques: the best of every raw search.
    var rawLossless: Double? { [rawBlocking, rawPolling, rawBundledBlocking, rawBundledPolling, rawOffload].compactMap { $0 }.max() }

    /// The raw limit with one message per datagram (blocking or polling receivers).
    var rawOnePerDatagram: Double? { [rawBlocking, rawPolling].compactMap { $0 }.max() }

    /// The raw limit with the engine's packing, when it packs more than one.
    var rawBundled: Double? { [rawBundledBlocking, rawBundledPolling].compactMap { $0 }.max() }

    private var checked: [WorkerLine] { options.checkedReceivers.compactMap { receiverResults[$0] } }
    private var live: [WorkerLine] { receiverResults.compactMap { $0 } }

    private func unique(_ line: WorkerLine) -> [Int] {
        (line["unique"] ?? "").split(separator: ",").map { Int($0) ?? 0 }
    }

    /// Distinct messages at the receiver that got the fewest (of those that must get all).
    var deliveredMinimum: Int { checked.map { unique($0).reduce(0, +) }.min() ?? 0 }

    /// What each checked receiver must have of each sender: everything a live sender
    /// sent; of a killed sender, whatever any checked receiver has (the per-region
    /// guarantee: live members end with the same set).
    private var expectedBySender: [Int] {
        sentBySender.indices.map { sender in
            killedSenders.contains(sender) ? (checked.map { unique($0).indices.contains(sender) ? unique($0)[sender] : 0 }.max() ?? 0)
                : sentBySender[sender]
        }
    }

    /// Every checked receiver has every message it must have, intact: across a GMS
    /// restart too (what was in flight when the regions changed is carried into the new
    /// ones). A receiver excluded while cut off rejoins, and is owed what is sent from its
    /// new views on.
    var complete: Bool {
        !stalled && checked.count == options.checkedReceivers.count && checked.allSatisfy { line in
            owed(line) == expectedBySender && (line.int("corrupt") ?? 1) == 0
        }
    }

    /// What a receiver has of each sender, as far as it is owed: every message, or, for
    /// one that was excluded and rejoined (its streams resumed in new views), every
    /// message up to the last. A GMS restart excludes nobody: everything is owed.
    private func owed(_ line: WorkerLine) -> [Int] {
        options.perturbation != .gmsRestart && (line.int("skipped") ?? 0) > 0 ? last(line) : unique(line)
    }

    private func last(_ line: WorkerLine) -> [Int] {
        (line["last"] ?? "").split(separator: ",").map { Int($0) ?? 0 }
    }

    /// Messages a checked receiver should have and does not, summed over them.
    var lost: Int {
        let expected = expectedBySender
        return checked.map { line in
            let got = owed(line)
            return expected.indices.map { max(0, expected[$0] - (got.indices.contains($0) ? got[$0] : 0)) }.reduce(0, +)
        }.reduce(0, +) + (options.checkedReceivers.count - checked.count) * expected.reduce(0, +)
    }

    /// Messages a receiver did not get because its streams resumed in other regions (it
    /// left and rejoined, or a restarted GMS moved everyone): sent while it was away, or
    /// in flight at the switch. Summed over the receivers.
    var skippedAfterRejoin: Int { live.map { $0.int("skipped") ?? 0 }.reduce(0, +) }

    /// Messages skipped by receivers that stayed in their groups the whole run
    /// (`RunOptions.stayingReceivers`): lossless reconfiguration keeps this 0, across a
    /// GMS restart and the churn of others.
    var skippedByMembersThatStay: Int {
        options.stayingReceivers.compactMap { receiverResults[$0] }.map { $0.int("skipped") ?? 0 }.reduce(0, +)
    }

    /// A killed sender's count is its last progress report before the kill; the
    /// receivers may have more of its messages than that: the count is raised to them.
    mutating func settleKilledSenderCounts() {
        for sender in killedSenders where sender < sentBySender.count {
            let delivered = live.map { unique($0).indices.contains(sender) ? unique($0)[sender] : 0 }.max() ?? 0
            sentBySender[sender] = max(sentBySender[sender], delivered)
        }
    }

    /// Messages a killed sender had handed to its node that no live receiver delivered
    /// (they died with it: allowed, as long as all live receivers agree).
    var diedWithSender: Int {
        killedSenders.map { max(0, sentBySender[$0] - expectedBySender[$0]) }.reduce(0, +)
    }

    /// No receiver (churning ones included) saw a sequence number skip ahead.
    var inOrder: Bool { live.allSatisfy { ($0.int("gaps") ?? 1) == 0 } }
    var duplicates: Int { live.map { $0.int("duplicates") ?? 0 }.reduce(0, +) }
    var corrupt: Int { live.map { $0.int("corrupt") ?? 0 }.reduce(0, +) }
    /// Deliveries from nodes that were not senders of the run (forged, accepted for want
    /// of a cluster secret).
    var foreignDeliveries: Int { live.map { $0.int("foreign") ?? 0 }.reduce(0, +) }
    /// Datagrams the nodes dropped as malformed, implausible, unknown, oversized,
    /// unauthenticated or replayed, summed over the nodes.
    var hostileDrops: Int {
        (senderResults + live).map { line in
            ["malformed_dropped", "implausible_dropped", "unknown_dropped", "truncated_dropped", "unauthenticated_drops",
             "replay_drops"]
                .map { line.int($0) ?? 0 }.reduce(0, +)
        }.reduce(0, +)
    }

    /// Delivered messages per second at the slowest checked receiver, between its first
    /// and last timed delivery (the deliveries after the first, up to the last).
    var messagesPerSecondMinimum: Double {
        checked.map { line -> Double in
            let first = line.int("first_ns") ?? 0
            let last = line.int("last_ns") ?? 0
            let seconds = Double(last - first) / 1e9
            return seconds > 0 ? Double(line.int("span_delivered") ?? line.int("delivered") ?? 0) / seconds : 0
        }.min() ?? 0
    }

    var latency: LatencyHistogram { merged("latency", of: checked) }

    /// How long receivers' holes stayed open, from noticed to filled (every live
    /// receiver's, merged).
    var recovery: LatencyHistogram { merged("recovery", of: live) }

    private func merged(_ key: String, of lines: [WorkerLine]) -> LatencyHistogram {
        var merged = LatencyHistogram()
        for line in lines {
            if let histogram = LatencyHistogram(encoded: line[key] == "-" ? "" : line[key] ?? "",
                                                maximumMicroseconds: line.int("\(key)_max_us") ?? 0) {
                merged.merge(histogram)
            }
        }
        return merged
    }

    var senderCPUSeconds: Double { senderResults.map { $0.double("cpu_s") ?? 0 }.reduce(0, +) }
    var receiversCPUSeconds: Double { live.map { $0.double("cpu_s") ?? 0 }.reduce(0, +) }
    /// The engine's CPU seconds (senders and receivers together, the whole run) per
    /// message delivered at a receiver.
    var cpuPerDeliveredMessage: Double? {
        let delivered = sent * live.count
        return delivered > 0 ? (senderCPUSeconds + receiversCPUSeconds) / Double(delivered) : nil
    }
    /// Heap allocations per message in steady state, at the sender that allocated most
    /// per message sent, and at the receiver that allocated most per message delivered.
    var senderAllocationsPerMessage: Double? { Self.steadyAllocations(senderAllocations) }
    var receiverAllocationsPerMessage: Double? { Self.steadyAllocations(receiverAllocations) }

    /// The worst of the series' steady-state rates: over the middle half of the samples
    /// taken while messages were flowing (the first and last quarters hold start-up,
    /// where buffers and tables are first allocated, and the drain).
    static func steadyAllocations(_ series: [[(count: Int, allocations: Int)]]) -> Double? {
        series.compactMap { samples -> Double? in
            guard let final = samples.last?.count else { return nil }
            let flowing = samples.filter { $0.count > 0 && $0.count < final }
            guard flowing.count >= 4 else { return nil }
            let from = flowing[flowing.count / 4], to = flowing[flowing.count * 3 / 4]
            guard to.count > from.count else { return nil }
            return Double(to.allocations - from.allocations) / Double(to.count - from.count)
        }.max()
    }

    var senderRSSMegabytes: Double { senderResults.map { $0.double("rss_mb") ?? 0 }.max() ?? 0 }
    var receiverRSSMegabytesMaximum: Double { live.map { $0.double("rss_mb") ?? 0 }.max() ?? 0 }
    /// The most a receiver's protocol cache held at once, and the most a sender held
    /// unacknowledged (bounded by the window: 4,096 messages or 16 MB by default).
    var receiverCachedMegabytesMaximum: Double { live.map { $0.double("cached_mb") ?? 0 }.max() ?? 0 }
    var senderHeldMegabytesMaximum: Double { senderResults.map { $0.double("held_mb") ?? 0 }.max() ?? 0 }
    /// Whether every sender used UDP segmentation offload, and the share of the datagrams
    /// senders handed over that went in segmented sends, and how many each carried.
    var senderSegmentationOffload: Bool { !senderResults.isEmpty && senderResults.allSatisfy { $0.int("gso") == 1 } }
    var senderSegmentedShare: Double? {
        let sent = senderResults.map { $0.int("datagrams_sent") ?? 0 }.reduce(0, +)
        return sent > 0 ? Double(senderResults.map { $0.int("gso_datagrams") ?? 0 }.reduce(0, +)) / Double(sent) : nil
    }
    /// Whether every receiver took coalesced datagrams (UDP GRO), the share of the
    /// datagrams receivers read that came coalesced, and how many each message held.
    var receiverReceiveOffload: Bool { !live.isEmpty && live.allSatisfy { $0.int("gro") == 1 } }
    var receiverCoalescedShare: Double? {
        let read = live.map { $0.int("datagrams") ?? 0 }.reduce(0, +)
        return read > 0 ? Double(live.map { $0.int("gro_datagrams") ?? 0 }.reduce(0, +)) / Double(read) : nil
    }
    var receiverDatagramsPerCoalescedReceive: Double? {
        let receives = live.map { $0.int("gro_receives") ?? 0 }.reduce(0, +)
        return receives > 0 ? Double(live.map { $0.int("gro_datagrams") ?? 0 }.reduce(0, +)) / Double(receives) : nil
    }
    /// The share of the packets senders wrote that went in bundles (several to a
    /// datagram, `--bundle-bytes`), and how many a bundle held on average.
    var senderBundledShare: Double? {
        let datagrams = senderResults.map { $0.int("datagrams_sent") ?? 0 }.reduce(0, +)
        let bundles = senderResults.map { $0.int("bundles") ?? 0 }.reduce(0, +)
        let bundled = senderResults.map { $0.int("bundled_packets") ?? 0 }.reduce(0, +)
        let packets = datagrams - bundles + bundled
        return packets > 0 ? Double(bundled) / Double(packets) : nil
    }
    var senderPacketsPerBundle: Double? {
        let bundles = senderResults.map { $0.int("bundles") ?? 0 }.reduce(0, +)
        return bundles > 0 ? Double(senderResults.map { $0.int("bundled_packets") ?? 0 }.reduce(0, +)) / Double(bundles) : nil
    }
    var senderDatagramsPerSegmentedSend: Double? {
        let sends = senderResults.map { $0.int("gso_sends") ?? 0 }.reduce(0, +)
        return sends > 0 ? Double(senderResults.map { $0.int("gso_datagrams") ?? 0 }.reduce(0, +)) / Double(sends) : nil
    }

    /// Retransmissions per packet a fault dropped (nftables rules or injected loss).
    var retransmissionsPerDroppedPacket: Double? {
        let dropped = networkDrops + injectedDrops
        return dropped > 0 ? Double(retransmissions) / Double(dropped) : nil
    }

    var tokenRoundTripMilliseconds: Double? {
        let rounds = live.map { $0.int("token_rounds") ?? 0 }.reduce(0, +)
        let total = live.map { $0.int("token_rtt_ns") ?? 0 }.reduce(0, +)
        return rounds > 0 ? Double(total) / Double(rounds) / 1e6 : nil
    }

    var acknowledgementLatencyMilliseconds: Double? {
        let acknowledged = senderResults.map { $0.int("acknowledged") ?? 0 }.reduce(0, +)
        let total = senderResults.map { $0.int("ack_latency_ns") ?? 0 }.reduce(0, +)
        return acknowledged > 0 ? Double(total) / Double(acknowledged) / 1e6 : nil
    }

    /// Datagrams thrown away on arrival by injected loss (the `loss` perturbation).
    var injectedDrops: Int { live.map { $0.int("injected_drops") ?? 0 }.reduce(0, +) }

    /// Datagrams the kernel dropped because a socket buffer was full, in the run's
    /// namespace (each worker reads the namespace-wide counter; the largest is the total).
    var kernelReceiveDrops: Int { (senderResults + live).map { $0.int("udp_rcvbuf_errors") ?? 0 }.max() ?? 0 }

    /// Data packets the receivers' engines let go on arrival, summed: beyond a gap with as
    /// many held ahead as allowed. Each is asked for again, so a run that retransmits with
    /// no kernel or injected drop shows here whether the engine lost it.
    var receiverOutOfOrderDrops: Int { live.map { $0.int("out_of_order_dropped") ?? 0 }.reduce(0, +) }

    /// Times a receiver found no free packet buffer, summed: not a drop (its reading
    /// pauses), but a long pause ends in the kernel's (`kernelReceiveDrops`).
    var receiverPoolExhaustions: Int { live.map { $0.int("pool_exhaustions") ?? 0 }.reduce(0, +) }

    /// Data packets that reached a receiver which already had them: retransmissions
    /// asked for needlessly (or answered twice).
    var duplicatePacketsReceived: Int { live.map { $0.int("duplicates_dropped") ?? 0 }.reduce(0, +) }

    var retransmissions: Int {
        (senderResults + live).map { $0.int("retransmissions") ?? 0 }.reduce(0, +)
    }

    /// Of those, what receivers sent: repairs served by caching peers, not the sender.
    var receiverRetransmissions: Int { live.map { $0.int("retransmissions") ?? 0 }.reduce(0, +) }

    /// NAK aggregation (`RepairAggregation`): retransmissions sent by multicast, requests
    /// a recent multicast absorbed, runs partition leaders asked for on their partition's
    /// behalf; and token rounds given up (lost or late tokens), over every node.
    var multicastRepairs: Int { (senderResults + live).map { $0.int("multicast_repairs") ?? 0 }.reduce(0, +) }
    var repairRequestsAbsorbed: Int { (senderResults + live).map { $0.int("repairs_absorbed") ?? 0 }.reduce(0, +) }
    var partitionRepairsAsked: Int { live.map { $0.int("partition_repairs") ?? 0 }.reduce(0, +) }
    var tokenTimeouts: Int { (senderResults + live).map { $0.int("token_timeouts") ?? 0 }.reduce(0, +) }

    /// Pauses of multicast and recovery for a new region view (`ViewChangePause`), over
    /// every node, and those that ran out at the limit instead of ending by the rings.
    var viewChangePauses: Int { (senderResults + live).map { $0.int("view_change_pauses") ?? 0 }.reduce(0, +) }
    var viewChangePausesTimedOut: Int { (senderResults + live).map { $0.int("view_change_pauses_timed_out") ?? 0 }.reduce(0, +) }

    /// Unacknowledged messages the senders carried into the regions their groups'
    /// members moved to (lossless reconfiguration: a GMS restart, churn).
    var messagesCarried: Int { senderResults.map { $0.int("carried") ?? 0 }.reduce(0, +) }

    /// `--perturb slow`: receivers that evicted themselves for a slow application, and
    /// the notices of it the senders got.
    var evictions: Int { receiverResults.compactMap { $0?.int("evictions") }.reduce(0, +) }
    var evictionNotices: Int { senderResults.map { $0.int("eviction_notices") ?? 0 }.reduce(0, +) }

    /// `--perturb slow`: seconds from the slowdown to sender 0's notice of the eviction.
    var evictionSeconds: Double? {
        guard options.perturbation == .slow, let slowed = events.first?.start,
              let evicted = senderResults.first?.int("first_notice_ns"), evicted > 0 else { return nil }
        return Double(Int64(evicted) - startNanoseconds) / 1e9 - slowed
    }

    /// `--perturb slow`: the other receivers' rate (the slowest of them) in the two
    /// seconds before receiver 0's application slowed, and from a second after its
    /// eviction (when sender 0 was told of it; the slow application itself hears of it
    /// only after what it was handed before) to the end of sending; nil without one.
    var othersRatesAroundEviction: (before: Double, after: Double)? {
        guard options.perturbation == .slow, let slowed = events.first?.start,
              let evicted = senderResults.first?.int("first_notice_ns").map(Int64.init), evicted > 0 else { return nil }
        let evictedAt = Double(evicted - startNanoseconds) / 1e9
        let end = sendSeconds > 0 ? sendSeconds : Double(options.seconds ?? 10)
        guard end > evictedAt + 2 else { return nil }
        func rate(_ from: Double, _ to: Double) -> Double {
            options.checkedReceivers.map { Double(count(receiverProgress[$0], at: to) - count(receiverProgress[$0], at: from)) / (to - from) }
                .min() ?? 0
        }
        return (rate(max(0, slowed - 2), slowed), rate(evictedAt + 1, end))
    }

    // MARK: Over time

    /// Messages per second per interval of `step` seconds for one progress series,
    /// from the start of sending.
    func rates(_ series: [(time: Int64, count: Int)], step: Double) -> [(time: Double, rate: Double)] {
        guard let lastTime = series.last?.time else { return [] }
        var result: [(Double, Double)] = []
        var index = 0
        var previousCount = 0.0
        var edge = Double(startNanoseconds) + step * 1e9
        while edge <= Double(lastTime) + step * 1e9 {
            // The count at the edge, interpolated between the samples around it (a sample
            // comes every 100 ms, a little after the edge it belongs to: the last sample
            // before the edge would put up to 100 ms of one bin's messages in the next,
            // and make the first bin look half as fast as it was).
            while index < series.count, Double(series[index].time) <= edge { index += 1 }
            let before = index > 0 ? series[index - 1] : (time: startNanoseconds, count: 0)
            let count: Double
            if index < series.count, series[index].time > before.time {
                let after = series[index]
                let fraction = (edge - Double(before.time)) / Double(after.time - before.time)
                count = Double(before.count) + fraction * Double(after.count - before.count)
            } else {
                count = Double(before.count)
            }
            result.append(((edge - Double(startNanoseconds)) / 1e9, (count - previousCount) / step))
            previousCount = count
            edge += step * 1e9
        }
        return result
    }

    /// The count a progress series had reached `time` seconds after the start.
    private func count(_ series: [(time: Int64, count: Int)], at time: Double) -> Int {
        let limit = Int64(time * 1e9) + startNanoseconds
        return series.last { $0.time <= limit }?.count ?? 0
    }

    /// For a freeze: the senders' rate while the receiver was stopped (leaving out the
    /// first second, in which the window fills) over their rate in the two seconds
    /// before. Flow control should bring it near zero (Fig. 4.62).
    var senderRateRatioDuringFreeze: Double? {
        guard options.perturbation == .freeze, let event = events.first, event.end - event.start > 1.5,
              event.start >= 0.5 else { return nil }
        func rate(_ from: Double, _ to: Double) -> Double {
            Double(senderProgress.map { count($0, at: to) - count($0, at: from) }.reduce(0, +)) / (to - from)
        }
        let before = rate(max(0, event.start - 2), event.start)
        return before > 0 ? rate(event.start + 1, event.end) / before : nil
    }

    /// Seconds to recover from the perturbation, the worst over its events; nil when
    /// nothing was perturbed or it never recovered.
    /// - A receiver stopped or a network fault: after each event ends, until every
    ///   perturbed receiver's streams had reached what had been sent when it ended (for
    ///   one excluded meanwhile, by the last message it delivered, not its count).
    /// - A receiver crash or a GMS restart: until the survivors' throughput is back to 80%
    ///   of what it was in the two seconds before.
    /// - A sender crash: until the live receivers agreed on what they had of its messages.
    var recoverySeconds: Double? {
        guard !events.isEmpty, options.perturbation != .churn, options.perturbation != .slow,
              receiverProgress.count == options.receivers,
              receiverTails.count == options.receivers else { return nil }
        if options.perturbation == .crashSender { return agreementSeconds }
        let end = Double((receiverProgress.flatMap { $0 }.map(\.time).max() ?? startNanoseconds) - startNanoseconds) / 1e9
        var worst = 0.0
        for event in events {
            if options.perturbation.killsReceiver || options.perturbation == .gmsRestart {
                let survivors = options.checkedReceivers
                func rate(_ from: Double, _ to: Double) -> Double {
                    survivors.map { Double(count(receiverProgress[$0], at: to) - count(receiverProgress[$0], at: from)) / (to - from) }
                        .min() ?? 0
                }
                let before = rate(max(0, event.start - 2), event.start)
                var time = event.end + 0.1
                while time + 0.5 <= end, rate(time, time + 0.5) < 0.8 * before { time += 0.1 }
                if time + 0.5 > end { return nil }
                worst = max(worst, time - event.end)
            } else {
                let sentThen = senderProgress.map { count($0, at: event.end) }.reduce(0, +)
                let perturbed = options.faultAtAllReceivers && options.perturbation.isNetworkFault
                    ? Array(0..<options.receivers) : [0]
                var time = event.end
                while time <= end, perturbed.contains(where: { count(receiverTails[$0], at: time) < sentThen }) { time += 0.05 }
                if time > end { return nil }
                worst = max(worst, time - event.end)
            }
        }
        return worst
    }
}
