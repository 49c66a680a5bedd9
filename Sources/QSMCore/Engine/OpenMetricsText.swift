/// Writes counters in the OpenMetrics text format (which Prometheus also reads): a
/// `# TYPE` and `# HELP` line per family, samples with escaped label values, `_total`
/// on counter samples, and `# EOF` at the end.
package struct OpenMetricsText {
    package enum Kind: String { case counter, gauge }

    private(set) var text = ""

    package init() {}

    /// A family of one unlabelled sample.
    package mutating func family(_ name: String, _ kind: Kind, _ help: String, _ value: some BinaryInteger) {
        family(name, kind, help, samples: [([], Int64(clamping: value))])
    }

    /// A family with one sample per label set (a family with no samples is still
    /// declared, so a scraper sees every name from the start).
    package mutating func family(_ name: String, _ kind: Kind, _ help: String, samples: [([(String, String)], Int64)]) {
        text += "# TYPE \(name) \(kind.rawValue)\n# HELP \(name) \(help)\n"
        let sampleName = kind == .counter ? name + "_total" : name
        for (labels, value) in samples {
            text += sampleName
            if !labels.isEmpty {
                text += "{" + labels.map { "\($0.0)=\"\(Self.escaped($0.1))\"" }.joined(separator: ",") + "}"
            }
            text += " \(value)\n"
        }
    }

    /// The finished exposition.
    package mutating func finish() -> String {
        text += "# EOF\n"
        return text
    }

    /// A label value with backslash, double quote and newline escaped.
    static func escaped(_ value: String) -> String {
        guard value.contains(where: { $0 == "\\" || $0 == "\"" || $0 == "\n" }) else { return value }
        var out = ""
        for character in value {
            switch character {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.append(character)
            }
        }
        return out
    }
}

extension QSMNodeStatistics {
    /// The snapshot in the OpenMetrics text format, names prefixed `qsm_`: node-wide
    /// counters, per-group series labelled `group="NAME"`, per-sender series labelled
    /// `sender="ID"` (with `group` where they are per group), and drops by reason.
    public func openMetrics() -> String {
        var out = OpenMetricsText()
        let p = protocolStatistics
        out.family("qsm_node_registered", .gauge, "1 while the node is registered with the GMS.", registered ? 1 : 0)
        out.family("qsm_regions", .gauge, "Regions this node is a member of.", regions)
        out.family("qsm_window_in_use_messages", .gauge, "Published messages not yet acknowledged by every region (the window in use).", unacknowledgedMessages)
        out.family("qsm_held_bytes", .gauge, "Bytes of other senders' messages held for recovery (cached or out of order).", heldBytes)
        out.family("qsm_deliveries_waiting", .gauge, "Deliveries waiting for the application to take them.", deliveriesWaiting)
        out.family("qsm_data_packets_sent", .counter, "Data packets multicast by this node.", p.dataPacketsSent)
        out.family("qsm_delivered_messages", .counter, "Messages delivered to the application, all groups.", p.delivered)
        out.family("qsm_retransmissions_sent", .counter, "Packets this node retransmitted to peers that missed them.", p.retransmissionsSent)
        out.family("qsm_recovery_requests_sent", .counter, "Requests (NAKs and pulls) this node sent for missing packets.", p.requestsSent)
        out.family("qsm_recovery_requests_received", .counter, "Requests for missing packets this node received.", p.requestsReceived)
        out.family("qsm_token_rounds", .counter, "Token rounds this node led that went around a ring.", p.tokenRounds)
        out.family("qsm_token_timeouts", .counter, "Token rounds this node led that were given up as lost.", p.tokenTimeouts)
        out.family("qsm_probes_sent", .counter, "Probes of ring members sent after timed-out rounds.", p.probesSent)
        out.family("qsm_probe_answers_ignored", .counter, "Probe answers that matched no outstanding probe.", p.probeAnswersIgnored)
        out.family("qsm_suspects_reported", .counter, "Ring members reported to the GMS for answering no probe.", p.suspectsReported)
        out.family("qsm_senders_presumed_gone", .counter,
                   "Senders named by no view held here, silent through repeated asks, treated as departed.", p.sendersPresumedGone)
        out.family("qsm_partition_repairs_asked", .counter,
                   "Runs of packets a whole partition lacked, asked of their sender once by this partition leader.", p.partitionRepairsAsked)
        out.family("qsm_multicast_repairs", .counter, "Packets this node retransmitted by multicast to a region (loss seen by many).",
                   p.multicastRepairs)
        out.family("qsm_repair_requests_absorbed", .counter,
                   "Requests for a packet this node had just multicast, or had just answered for the same requester.", p.repairRequestsAbsorbed)
        out.family("qsm_repair_requests_not_held", .counter, "Packets peers asked this node for that it does not hold and will not (nothing sent).",
                   p.repairRequestsNotHeld)
        out.family("qsm_repairs_awaited", .counter,
                   "Requests for packets this node caches but lacked too, kept to be answered once it holds them.", p.repairsAwaited)
        out.family("qsm_awaited_repairs_answered", .counter, "Kept requests answered once the packet arrived here.",
                   p.awaitedRepairsAnswered)
        out.family("qsm_awaited_repairs_served_by_multicast", .counter,
                   "Kept requests dropped because the packet came by multicast to the region, which reached the askers too.",
                   p.awaitedRepairsServedByMulticast)
        out.family("qsm_awaited_repairs_expired", .counter, "Kept requests forgotten unanswered after their window.",
                   p.awaitedRepairsExpired)
        out.family("qsm_awaited_repairs_refused", .counter, "Requests not kept because the table of kept requests was full.",
                   p.awaitedRepairsRefused)
        out.family("qsm_partition_pushes_asked", .counter,
                   "Runs this partition leader's whole partition lacked, asked of the partition caching them as a push.",
                   p.partitionPushesAsked)
        out.family("qsm_partition_pushes", .counter, "Packets this node pushed to the members of a partition that lacked them.",
                   p.partitionPushes)
        out.family("qsm_retransmissions_dropped", .counter, "Requested retransmissions not sent: over the pending limit, or no longer held.",
                   p.retransmissionsDropped)
        out.family("qsm_abandoned_after_sender_left", .counter,
                   "Packets of a departed sender skipped because no live member held them.", p.abandonedAfterSenderLeft)
        out.family("qsm_abandoned_unanswered", .counter,
                   "Of those, skipped because a possible holder never answered (survivors may disagree on them).", p.abandonedUnanswered)
        out.family("qsm_redundant_tokens_sent", .counter, "Second copies of tokens sent by rings whose tokens were lost lately.",
                   p.redundantTokensSent)
        out.family("qsm_token_copies_dropped", .counter, "Copies of a token already acted on, dropped.", p.duplicateTokensDropped)
        out.family("qsm_tokens_held_for_view", .counter, "Tokens and token parts of a region view not yet installed here, held for it.",
                   p.tokensHeldForView)
        out.family("qsm_view_change_pauses", .counter,
                   "Pauses of multicast and recovery in a region while a new view of it was installed everywhere.", p.viewChangePauses)
        out.family("qsm_view_change_pauses_timed_out", .counter,
                   "Of those, pauses that ran out (viewChangePauseLimit) before the rings said the view was installed everywhere.",
                   p.viewChangePausesTimedOut)
        out.family("qsm_view_change_pause_milliseconds", .counter, "Total length of those pauses.",
                   p.viewChangePauseNanoseconds / 1_000_000)
        out.family("qsm_stale_tokens_dropped", .counter, "Tokens of an older view, round or ring, dropped.", p.staleTokensDropped)
        out.family("qsm_token_parts_dropped", .counter, "Parts of multi-part tokens dropped because a newer token replaced them.",
                   p.tokenPartsDropped)
        out.family("qsm_acknowledged_messages", .counter, "Published messages acknowledged by every region.", p.acknowledged)
        out.family("qsm_segmentation_offload", .gauge, "1 while the node sends runs of datagrams as one segmented send (UDP GSO).",
                   core.segmentationOffload ? 1 : 0)
        out.family("qsm_segmented_sends", .counter, "Segmented sends (UDP GSO), each of two datagrams or more.", core.segmentedSends)
        out.family("qsm_segmented_datagrams", .counter, "Datagrams sent in segmented sends.", core.segmentedDatagrams)
        out.family("qsm_receive_offload", .gauge, "1 while the node takes coalesced datagrams (UDP GRO).", core.receiveOffload ? 1 : 0)
        out.family("qsm_coalesced_receives", .counter, "Coalesced messages received (UDP GRO), each of two datagrams or more.",
                   core.coalescedReceives)
        out.family("qsm_coalesced_datagrams", .counter, "Datagrams received in coalesced messages.", core.coalescedDatagrams)
        out.family("qsm_bundles_sent", .counter, "Datagrams sent carrying several packets (bundles).", machine.bundlesSent)
        out.family("qsm_bundled_packets", .counter, "Packets sent inside bundles.", machine.packetsBundled)
        out.family("qsm_bundles_received", .counter, "Bundles received (their packets are counted one by one as well).",
                   machine.bundlesReceived)
        out.family("qsm_io_quantum_expirations", .counter,
                   "Times the event core's I/O or alarm quantum ran out with work left for the next turn.", core.ioQuantumExpirations)
        out.family("qsm_inbound_data_slices", .counter,
                   "Times a turn paused its inbound data after a slice to let control (tokens, requests, repairs) go first.",
                   core.inboundDataSlices)
        out.family("qsm_messages_carried", .counter,
                   "Unacknowledged messages this node carried into regions its groups' members moved to (lossless reconfiguration).",
                   p.messagesCarried)
        out.family("qsm_messages_given_up", .counter,
                   "Unacknowledged messages this node stopped carrying: their group was left while out of view, or members awaited after a GMS restart never came back.",
                   p.messagesGivenUp)
        out.family("qsm_debt_start_queries", .counter,
                   "Queries to a sender for where this node's debt begins in a region it joined.", p.viewStartQueriesSent)
        out.family("qsm_debt_starts_given_up", .counter,
                   "Streams whose debt start went unanswered: begun at the earliest view seen.", p.debtStartsGivenUp)
        out.family("qsm_released_unchecked", .counter,
                   "Messages acknowledged from a newer region view, released unchecked for moved members (group out of view).",
                   p.releasedUnchecked)
        out.family("qsm_gms_authentication_failures", .counter, "GMS connections that failed to authenticate.", machine.gmsAuthenticationFailures)
        out.family("qsm_dropped_datagrams", .counter, "Datagrams and packets dropped, by reason.", samples: [
            ([("reason", "unauthenticated")], Int64(machine.droppedUnauthenticated)),
            ([("reason", "replayed")], Int64(machine.droppedReplayed)),
            ([("reason", "too_old")], Int64(machine.droppedTooOld)),
            ([("reason", "dead_incarnation")], Int64(machine.droppedDeadIncarnation)),
            ([("reason", "too_many_senders")], Int64(machine.droppedTooManySenders)),
            ([("reason", "no_address")], Int64(machine.droppedNoAddress)),
            ([("reason", "oversized")], Int64(machine.droppedOversized)),
            ([("reason", "counters_exhausted")], Int64(machine.droppedCountersExhausted)),
            ([("reason", "malformed")], Int64(p.malformedDropped)),
            ([("reason", "malformed_bundle")], Int64(machine.droppedMalformedBundles)),
            ([("reason", "duplicate")], Int64(p.duplicatesDropped)),
            ([("reason", "not_owed")], Int64(p.notOwedDropped)),
            ([("reason", "delivery_of_unnamed_group")], Int64(machine.droppedUnnamedGroup)),
            ([("reason", "own_multicast")], Int64(p.ownMulticastIgnored)),
            ([("reason", "unknown_sender")], Int64(p.unknownDropped)),
            ([("reason", "out_of_window")], Int64(p.outOfOrderDropped)),
            ([("reason", "not_cached_table_budget")], Int64(p.notCachedForTableBudget)),
            ([("reason", "implausible_sequence")], Int64(p.implausibleDropped)),
            ([("reason", "stream_limit")], Int64(p.streamLimitDropped)),
            ([("reason", "second_copy")], Int64(p.secondCopiesDropped)),
            ([("reason", "not_member_when_committed")], Int64(p.notMemberDropped)),
            ([("reason", "pool_exhausted")], Int64(core.poolExhaustions)),
            ([("reason", "longer_than_packet_buffer")], Int64(core.droppedTruncated)),
            ([("reason", "send_refused")], Int64(core.droppedSendErrors)),
            ([("reason", "oversized_output")], Int64(core.droppedOversizedOutput)),
            ([("reason", "injected_loss")], Int64(core.droppedByInjectedLoss)),
        ])
        // A failed receive call is not a datagram dropped (the kernel keeps what it holds).
        out.family("qsm_receive_errors", .counter, "Receive calls on a socket that failed (other than would-block).", core.receiveErrors)
        let groups = traffic.groups.sorted { $0.key < $1.key }
        func perGroup(_ value: (GroupTraffic) -> Int) -> [([(String, String)], Int64)] {
            groups.map { ([("group", $0.key.text)], Int64(value($0.value))) }
        }
        out.family("qsm_group_sent_messages", .counter, "Messages this node published, per group.", samples: perGroup(\.sentMessages))
        out.family("qsm_group_sent_bytes", .counter, "Payload bytes this node published, per group.", samples: perGroup(\.sentBytes))
        out.family("qsm_group_delivered_messages", .counter, "Messages delivered to the application, per group.", samples: perGroup(\.deliveredMessages))
        out.family("qsm_group_delivered_bytes", .counter, "Payload bytes delivered to the application, per group.", samples: perGroup(\.deliveredBytes))
        let senders = traffic.senders.sorted { ($0.key.group, $0.key.sender) < ($1.key.group, $1.key.sender) }
        func perSender(_ value: (SenderTraffic) -> Int64) -> [([(String, String)], Int64)] {
            senders.map { ([("group", $0.key.group.text), ("sender", String($0.key.sender.value))], value($0.value)) }
        }
        out.family("qsm_sender_delivered_messages", .counter, "Messages of one sender delivered here, per group and sender.",
                   samples: perSender { Int64($0.deliveredMessages) })
        out.family("qsm_sender_delivered_bytes", .counter, "Payload bytes of one sender delivered here, per group and sender.",
                   samples: perSender { Int64($0.deliveredBytes) })
        out.family("qsm_sender_last_sequence", .gauge, "The sender's sequence number of the last message delivered here, per group and sender.",
                   samples: perSender { Int64(clamping: $0.lastSequence) })
        out.family("qsm_sender_untracked_deliveries", .counter, "Deliveries from senders beyond the tracked limit (counted per group only).",
                   traffic.untrackedSenderDeliveries)
        out.family("qsm_sender_lag_messages", .gauge, "Messages a sender is known to have sent that this node has not yet received in order.",
                   samples: senderLags.sorted { $0.key < $1.key }.map { ([("sender", String($0.key.value))], Int64(clamping: $0.value)) })
        out.family("qsm_sender_retransmissions_received", .counter, "Retransmitted packets of a sender's messages that reached this node (repairs of its losses).",
                   samples: senderRetransmissionsReceived.sorted { $0.key < $1.key }.map { ([("sender", String($0.key.value))], Int64($0.value)) })
        return out.finish()
    }
}
