import QSMCore

/// The table a person reads after a run.
enum RunTable {
    static func describe(_ options: RunOptions) -> String {
        let length = options.count.map { "\($0) messages per sender" + (options.seconds.map { " or \(format($0, 1)) s" } ?? "") }
            ?? "\(format(options.seconds ?? 0, 1)) s"
        return "\(options.senders) sender(s), \(options.receivers) receiver(s), \(options.groups) group(s), "
            + "\(options.size)-byte messages, \(length), "
            + (options.rate > 0 ? "\(formatRate(options.rate)) msg/s per sender" : "as fast as flow control allows")
            + (options.perturbation == .none ? "" : ", perturbation: \(options.perturbation.rawValue)")
            + (options.perturbation.isNetworkFault && options.faultAtAllReceivers ? " at every receiver" : "")
            + (options.secret == nil ? "" : options.encrypt ? ", packets encrypted (AES-128-GCM, \(HardwareAESGCM.backend.name))"
                : ", packets authenticated (AES-128-GMAC, \(HardwareAESGCM.backend.name))")
            + (options.hosts ? ", every process on a namespaced host of its own" : ", on loopback")
    }

    static func render(_ report: RunReport) -> String {
        var table = Table("path", "msg/s", "MB/s", "ratio to raw")
        let size = Double(report.options.size)
        if let raw = report.rawBlocking { table.add("raw blast, blocking receivers", formatRate(raw), format(raw * size / 1e6, 1), "") }
        if let raw = report.rawPolling { table.add("raw blast, polling receivers", formatRate(raw), format(raw * size / 1e6, 1), "") }
        if let raw = report.rawBundledBlocking {
            table.add("raw, \(report.rawMessagesPerDatagram) per datagram, blocking", formatRate(raw), format(raw * size / 1e6, 1), "")
        }
        if let raw = report.rawBundledPolling {
            table.add("raw, \(report.rawMessagesPerDatagram) per datagram, polling", formatRate(raw), format(raw * size / 1e6, 1), "")
        }
        if let raw = report.rawOffload {
            table.add("raw, \(report.rawMessagesPerDatagram) per datagram, GSO/GRO", formatRate(raw), format(raw * size / 1e6, 1), "")
        }
        let rate = report.messagesPerSecondMinimum
        table.add("QSM, slowest receiver", formatRate(rate), format(rate * size / 1e6, 1),
                  report.rawLossless.map { formatRatio(rate / $0) } ?? "-")
        var lines = ["qsm-bench run: " + describe(report.options), "", table.render(), ""]
        let verdict = report.complete && report.inOrder && report.duplicates == 0 && report.corrupt == 0
        lines.append((verdict ? "delivery: complete, in order, no duplicates" : "DELIVERY FAILED: "
                      + [report.stalled ? "STALLED (senders stuck with full windows)" : nil, report.complete ? nil : "incomplete", report.inOrder ? nil : "out of order",
                         report.duplicates == 0 ? nil : "\(report.duplicates) duplicates",
                         report.corrupt == 0 ? nil : "\(report.corrupt) corrupted"].compactMap { $0 }.joined(separator: ", "))
                     + " (sent \(report.sent), fewest delivered \(report.deliveredMinimum), lost \(report.lost)"
                     + (report.killedSenders.isEmpty ? "" : ", \(report.diedWithSender) died with the killed sender before anyone had them")
                     + (report.options.perturbation == .gmsRestart || report.options.perturbation == .churn
                        ? ", \(report.skippedByMembersThatStay) skipped by members that stayed in their groups"
                        : report.skippedAfterRejoin > 0
                        ? ", \(report.skippedAfterRejoin) sent while a receiver was excluded (it rejoined)" : "")
                     + ")")
        if report.options.perturbation == .slow {
            lines.append("slow receiver: \(report.evictions) eviction(s)"
                         + (report.evictionSeconds.map { " \(format($0, 1)) s after the slowdown" } ?? "")
                         + ", \(report.evictionNotices) notice(s) at the senders; "
                         + (report.othersRatesAroundEviction.map { rates in
                             "the others took \(formatRate(rates.before)) msg/s before the slowdown and \(formatRate(rates.after)) msg/s "
                                 + "from a second after the eviction (\(formatRatio(rates.before > 0 ? rates.after / rates.before : 0)))"
                         } ?? "no eviction before sending ended"))
        }
        let latency = report.latency
        if let p50 = latency.percentile(0.5), let p99 = latency.percentile(0.99) {
            lines.append("latency, send to deliver: p50 \(p50) us, p99 \(p99) us, max \(latency.maximumMicroseconds) us"
                         + (report.options.rate > 0 ? "" : " (as fast as possible: includes queueing in the window; "
                                                          + "1 message in \(BenchPayload.timedEveryAtFullRate) timed)"))
        }
        if let raw = report.rawLatency, let p50 = raw.percentile(0.5), let p99 = raw.percentile(0.99) {
            lines.append("raw latency floor at the same rate, send to receive: p50 \(p50) us, p99 \(p99) us, max \(raw.maximumMicroseconds) us")
        }
        lines.append((report.options.senders == 1 ? "sender: \(format(report.senderCPUSeconds, 2)) s CPU, peak RSS "
                      : "senders: \(format(report.senderCPUSeconds, 2)) s CPU in all, peak RSS ")
                     + "\(format(report.senderRSSMegabytes, 1)) MB; "
                     + "receivers: \(format(report.receiversCPUSeconds, 2)) s CPU in all, peak RSS \(format(report.receiverRSSMegabytesMaximum, 1)) MB at most")
        lines.append("CPU per delivered message (senders and receivers together): "
                     + (report.cpuPerDeliveredMessage.map { format($0 * 1e6, 2) + " us" } ?? "-")
                     + (report.rawCPUPerDeliveredMessage.map { ", the raw limit's " + format($0 * 1e6, 2) + " us" } ?? ""))
        lines.append("heap allocations per message in steady state: sender "
                     + (report.senderAllocationsPerMessage.map { format($0, 3) } ?? "-")
                     + ", receivers at most " + (report.receiverAllocationsPerMessage.map { format($0, 3) } ?? "-"))
        lines.append("bundling at the senders: " + (report.senderBundledShare.map { share in
            "\(format(100 * share, 0))% of packets went in bundles"
                + (report.senderPacketsPerBundle.map { " of \(format($0, 1)) on average" } ?? "")
        } ?? "-"))
        lines.append("segmentation offload (UDP GSO) at the senders: "
                     + (report.senderSegmentationOffload
                        ? "in use, \(format(100 * (report.senderSegmentedShare ?? 0), 0))% of datagrams in segmented sends of "
                          + "\(format(report.senderDatagramsPerSegmentedSend ?? 0, 1)) on average"
                        : "not in use")
                     + "; receive offload (UDP GRO) at the receivers: "
                     + (report.receiverReceiveOffload
                        ? "in use, \(format(100 * (report.receiverCoalescedShare ?? 0), 0))% of datagrams arrived coalesced, "
                          + "\(format(report.receiverDatagramsPerCoalescedReceive ?? 0, 1)) per message on average"
                        : "not in use"))
        lines.append("protocol memory at its peak: sender held \(format(report.senderHeldMegabytesMaximum, 1)) MB unacknowledged, "
                     + "a receiver cached \(format(report.receiverCachedMegabytesMaximum, 1)) MB at most")
        lines.append("token round trip \(report.tokenRoundTripMilliseconds.map { format($0, 2) + " ms" } ?? "-"), "
                     + "acknowledgement latency \(report.acknowledgementLatencyMilliseconds.map { format($0, 2) + " ms" } ?? "-"), "
                     + "retransmissions \(report.retransmissions) (\(report.duplicatePacketsReceived) arrived as duplicates), "
                     + "kernel socket-buffer drops \(report.kernelReceiveDrops) (events: a dropped segmented send, up to 64 datagrams, counts once)"
                     + (report.messagesCarried > 0 ? ", \(report.messagesCarried) unacknowledged messages carried into new regions" : ""))
        if report.options.perturbation == .hostile {
            lines.append("hostile: \(report.hostileDatagrams) datagrams injected; nodes dropped and counted \(report.hostileDrops) "
                         + "(malformed, implausible, unknown, oversized, unauthenticated or replayed); "
                         + "\(report.foreignDeliveries) forged messages delivered"
                         + (report.options.secret == nil ? " (run with --insecure: without it they are refused)" : ""))
        }
        if report.options.perturbation != .none, report.options.perturbation != .hostile {
            lines.append("perturbation \(report.options.perturbation.rawValue): \(report.events.count) event(s); recovery "
                         + (report.recoverySeconds.map { format($0, 2) + " s (worst)" } ?? "not measured")
                         + (report.networkDrops > 0 ? "; nftables dropped \(report.networkDrops) packets" : "")
                         + (report.meanBurstMilliseconds.map { "; drop-all bursts lasted \(format($0, 1)) ms on average" } ?? "")
                         + (report.injectedDrops > 0 ? "; injected loss dropped \(report.injectedDrops) datagrams" : "")
                         + (report.retransmissionsPerDroppedPacket.map { "; \(format($0, 2)) retransmissions per dropped packet" } ?? ""))
        }
        return lines.joined(separator: "\n")
    }
}

/// The JSON object of `qsm-bench run --json`, keys in a fixed order.
enum RunJSON {
    static func object(_ report: RunReport) -> String {
        let latency = report.latency
        let rate = report.messagesPerSecondMinimum
        let options = report.options
        let fields: [(String, String)] = [
            ("senders", "\(options.senders)"), ("receivers", "\(options.receivers)"), ("groups", "\(options.groups)"),
            ("size", "\(options.size)"), ("seconds", number(report.sendSeconds)), ("rate", number(options.rate)),
            ("perturbation", string(options.perturbation.rawValue)),
            ("peer_attempts", "\(options.effectivePeerAttempts)"),
            ("sender_first_up_to", "\(options.effectiveSenderFirstUpTo)"),
            ("authenticated", "\(options.secret != nil)"),
            ("encrypted", "\(options.encrypt)"),
            ("mac_implementation", options.secret == nil ? "null" : string(HardwareAESGCM.backend.name)),
            ("hosts", "\(options.hosts)"),
            ("fault_at_all", "\(options.faultAtAllReceivers)"),
            ("sent", "\(report.sent)"), ("delivered_min", "\(report.deliveredMinimum)"),
            ("lost", "\(report.lost)"), ("died_with_sender", "\(report.diedWithSender)"),
            ("skipped_after_rejoin", "\(report.skippedAfterRejoin)"),
            ("skipped_by_members_that_stay", "\(report.skippedByMembersThatStay)"),
            ("complete", "\(report.complete)"), ("stalled", "\(report.stalled)"), ("in_order", "\(report.inOrder)"),
            ("duplicates", "\(report.duplicates)"), ("corrupt", "\(report.corrupt)"),
            ("msgs_per_sec_min", number(rate)), ("mbytes_per_sec_min", number(rate * Double(options.size) / 1e6)),
            ("raw_blocking_msgs_per_sec", optional(report.rawBlocking)),
            ("raw_polling_msgs_per_sec", optional(report.rawPolling)),
            ("raw_one_per_datagram_msgs_per_sec", optional(report.rawOnePerDatagram)),
            ("raw_bundled_msgs_per_sec", optional(report.rawBundled)),
            ("raw_offload_msgs_per_sec", optional(report.rawOffload)),
            ("cpu_us_per_delivered_message", optional(report.cpuPerDeliveredMessage.map { $0 * 1e6 })),
            ("raw_cpu_us_per_delivered_message", optional(report.rawCPUPerDeliveredMessage.map { $0 * 1e6 })),
            ("raw_messages_per_datagram", "\(report.rawMessagesPerDatagram)"),
            ("raw_lossless_msgs_per_sec", optional(report.rawLossless)),
            ("ratio_to_raw", optional(report.rawLossless.map { rate / $0 })),
            ("latency_us_p50", optional(latency.percentile(0.5).map(Double.init))),
            ("latency_us_p99", optional(latency.percentile(0.99).map(Double.init))),
            ("latency_us_max", "\(latency.maximumMicroseconds)"),
            ("recovery_us_p50", optional(report.recovery.percentile(0.5).map(Double.init))),
            ("recovery_us_p99", optional(report.recovery.percentile(0.99).map(Double.init))),
            ("raw_latency_us_p50", optional(report.rawLatency?.percentile(0.5).map(Double.init))),
            ("raw_latency_us_p99", optional(report.rawLatency?.percentile(0.99).map(Double.init))),
            ("sender_cpu_s", number(report.senderCPUSeconds)), ("receivers_cpu_s", number(report.receiversCPUSeconds)),
            ("sender_rss_mb", number(report.senderRSSMegabytes)),
            ("sender_allocations_per_message", optional(report.senderAllocationsPerMessage)),
            ("receiver_allocations_per_message_max", optional(report.receiverAllocationsPerMessage)),
            ("receiver_rss_mb_max", number(report.receiverRSSMegabytesMaximum)),
            ("sender_held_mb_max", number(report.senderHeldMegabytesMaximum)),
            ("bundled_share", optional(report.senderBundledShare)),
            ("packets_per_bundle", optional(report.senderPacketsPerBundle)),
            ("segmentation_offload", report.senderSegmentationOffload ? "true" : "false"),
            ("segmented_share", optional(report.senderSegmentedShare)),
            ("datagrams_per_segmented_send", optional(report.senderDatagramsPerSegmentedSend)),
            ("receive_offload", report.receiverReceiveOffload ? "true" : "false"),
            ("coalesced_share", optional(report.receiverCoalescedShare)),
            ("datagrams_per_coalesced_receive", optional(report.receiverDatagramsPerCoalescedReceive)),
            ("receiver_cached_mb_max", number(report.receiverCachedMegabytesMaximum)),
            ("token_rtt_ms", optional(report.tokenRoundTripMilliseconds)),
            ("ack_latency_ms", optional(report.acknowledgementLatencyMilliseconds)),
            ("retransmissions", "\(report.retransmissions)"),
            ("receiver_retransmissions", "\(report.receiverRetransmissions)"),
            ("multicast_repairs", "\(report.multicastRepairs)"),
            ("repair_requests_absorbed", "\(report.repairRequestsAbsorbed)"),
            ("partition_repairs_asked", "\(report.partitionRepairsAsked)"),
            ("token_timeouts", "\(report.tokenTimeouts)"),
            ("view_change_pauses", "\(report.viewChangePauses)"),
            ("view_change_pauses_timed_out", "\(report.viewChangePausesTimedOut)"),
            ("messages_carried", "\(report.messagesCarried)"),
            ("duplicate_packets_received", "\(report.duplicatePacketsReceived)"),
            ("kernel_receive_drops", "\(report.kernelReceiveDrops)"),
            ("receiver_out_of_order_drops", "\(report.receiverOutOfOrderDrops)"),
            ("receiver_pool_exhaustions", "\(report.receiverPoolExhaustions)"),
            ("packets_dropped_by_injection", "\(report.injectedDrops)"),
            ("packets_dropped_by_nftables", "\(report.networkDrops)"),
            ("fault_burst_ms", optional(report.meanBurstMilliseconds)),
            ("retransmissions_per_dropped_packet", optional(report.retransmissionsPerDroppedPacket)),
            ("hostile_datagrams", "\(report.hostileDatagrams)"), ("hostile_drops_counted", "\(report.hostileDrops)"),
            ("foreign_deliveries", "\(report.foreignDeliveries)"),
            ("recovery_s", optional(report.recoverySeconds)),
            ("sender_rate_ratio_during_freeze", optional(report.senderRateRatioDuringFreeze)),
            ("evictions", "\(report.evictions)"), ("eviction_notices", "\(report.evictionNotices)"),
            ("eviction_after_slowdown_s", optional(report.evictionSeconds)),
            ("others_msgs_per_sec_before_slow", optional(report.othersRatesAroundEviction?.before)),
            ("others_msgs_per_sec_after_eviction", optional(report.othersRatesAroundEviction?.after)),
            ("others_rate_ratio_after_eviction", optional(report.othersRatesAroundEviction.map { $0.before > 0 ? $0.after / $0.before : .nan })),
        ]
        return "{" + fields.map { "\"\($0.0)\": \($0.1)" }.joined(separator: ", ") + "}"
    }

    static func number(_ value: Double) -> String {
        guard value.isFinite else { return "null" }
        return format(value, 3)
    }

    static func optional(_ value: Double?) -> String { value.map(number) ?? "null" }

    static func string(_ text: String) -> String { "\"\(text)\"" }
}
