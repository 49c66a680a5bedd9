/// NAK aggregation and multicast repair (section 4.3.7, item 2: the convoy).
///
/// Left to themselves, receivers ask on their own and every repair is a unicast: a packet
/// that a whole region lost costs its sender one retransmission per member. Two rules
/// turn that into one multicast:
///
/// - **The partition asks once.** A partition token carries, per sender, the lowest run
///   of sequence numbers that every member it visited lacks (`TokenRecord.lackFrom` to
///   `lackTo`: the first member writes its own first missing run, each next one keeps the
///   first part of it that it lacks too). Back at the leader, a run that the whole
///   partition lacks is asked for once, from the sender, as a `regionRepair`: "multicast
///   these to the region". Members go on asking caching peers as before; a run that only
///   some of them lack never reaches the sender this way.
/// - **The repairer answers once.** A node asked for a packet that it has just
///   retransmitted by multicast absorbs the request (the multicast serves it). When
///   enough members ask for one packet within `repairAggregationWindow` (more than half
///   of the others, at least two: `multicastRepairRequesters`), it sends it once more, by
///   multicast to the region, for every member still missing it (loss seen by many); a
///   packet few members lack stays a unicast from a caching peer (loss seen by few).
///
/// Recovery stays per message (per region sequence number), as before: the unit of loss
/// detection, caching and stability. Repairs go out as packets and are bundled by the
/// node machine like any other packet to the same address.
extension ProtocolNode {

    // MARK: The token's common run

    /// This node's first missing run of `stream` (at most `recoveryRequestsPerRound`
    /// numbers), or nil if it lacks nothing that it knows was lost. Only holes count:
    /// numbers below a packet the sender's own transmissions brought (which arrive in
    /// order, so what is missing below one is lost). A tail may still be on its way to
    /// every member at once; asking the region to be sent it again would only send it
    /// twice.
    func firstMissingRun(_ stream: ReceiveStream) -> ClosedRange<UInt64>? {
        guard stream.contiguous + 1 < stream.maximumReceived, !stream.missing.isEmpty else { return nil }
        let first = stream.contiguous + 1
        guard stream.missing[first] != nil else { return nil }
        return extendRun(from: first, to: first + UInt64(configuration.recoveryRequestsPerRound - 1), stream)
    }

    /// The first part of `run` that this node lacks too (nil if it lacks none of it).
    /// Only what lies above its contiguous prefix is looked at, at most
    /// `recoveryRequestsPerRound` numbers: a forged or corrupt run costs no more.
    func commonRun(_ run: ClosedRange<UInt64>, _ stream: ReceiveStream) -> ClosedRange<UInt64>? {
        let lower = max(run.lowerBound, stream.contiguous + 1)
        guard !stream.missing.isEmpty, stream.maximumReceived > lower, run.upperBound >= lower else { return nil }
        let upper = min(run.upperBound, stream.maximumReceived - 1, lower + UInt64(configuration.recoveryRequestsPerRound - 1))
        var sequence = lower
        while sequence <= upper, stream.missing[sequence] == nil { sequence += 1 }
        guard sequence <= upper else { return nil }
        return extendRun(from: sequence, to: upper, stream)
    }

    /// `first` (missing) and the missing holes after it, up to `limit`.
    private func extendRun(from first: UInt64, to limit: UInt64, _ stream: ReceiveStream) -> ClosedRange<UInt64> {
        let limit = min(limit, stream.maximumReceived - 1)
        var last = first
        while last < limit, stream.missing[last + 1] != nil { last += 1 }
        return first...last
    }

    /// Folds this node's lack of `stream` into a partition token's record: the first
    /// contributor sets the run, each later one narrows it.
    func contributeLack(to record: inout TokenRecord, _ stream: ReceiveStream?) {
        let run: ClosedRange<UInt64>?
        if record.coverage == 0 {
            run = stream.flatMap(firstMissingRun)
        } else if let common = record.lackRun, let stream {
            run = commonRun(common, stream)
        } else {
            run = nil
        }
        record.lackRun = run
    }

    // MARK: The leader's request

    /// A partition round came back: every sender's run that the whole partition lacks is
    /// asked for once, by multicast, from the sender (not again within a retry interval).
    func askForPartitionLoss(_ records: [TokenRecord], ringLength: Int, in region: RegionView) {
        guard configuration.aggregatesRepairs, ringLength > 1, !recoverySuspended, !isPausedForViewChange(region.id) else { return }
        for record in records where record.coverage >= UInt32(ringLength) {
            guard let run = record.lackRun, record.sender != id, !departed.contains(record.sender),
                  run.upperBound - run.lowerBound < UInt64(configuration.recoveryRequestsPerRound) else { continue }
            let key = StreamKey(sender: record.sender, region: region.id)
            if let asked = partitionAsks[key], asked.run.overlaps(run),
               runningNow.nanoseconds(since: asked.at) < configuration.requestRetryInterval.totalNanoseconds {
                continue
            }
            partitionAsks[key] = (run, runningNow)
            // The leader's own requests for these wait for the multicast (its members'
            // go to caching peers first, and reach the sender only later).
            if let stream = streams[key] {
                for sequence in run where stream.missing[sequence] != nil {
                    stream.missing[sequence]!.attempts += 1
                    stream.missing[sequence]!.askedAt = runningNow
                }
            }
            // Numbers other partitions cache are pushed from there (`ReplicaRecovery`);
            // the sender is asked for this partition's own share.
            let own = askForPushes(of: run, sender: record.sender, in: region)
            guard !own.isEmpty else { continue }
            statistics.partitionRepairsAsked += 1
            control.append(.request(RequestPacket(kind: .regionRepair, sender: record.sender, region: region.id,
                                                  requester: id, sequences: own), to: record.sender))
        }
    }

    // MARK: The repairer's answer

    /// Queues the retransmission of `sequence` asked for by `request`: by unicast to a
    /// lone requester, by multicast to the region when a whole partition or a second
    /// requester lacks it, not at all when a multicast of it went out just now.
    func queueRepair(_ sequence: UInt64, of key: StreamKey, for request: RequestPacket) {
        // Not held here (never cached, or released): nothing to send, and nothing to
        // absorb later requests with.
        guard holdsForRepair(key, sequence) else {
            // A caching replica that lacks it too answers once it holds it.
            if request.kind == .pull, awaitRepair(sequence, of: key, for: request.requester) { return }
            statistics.repairRequestsNotHeld += 1
            return
        }
        guard retransmissions.count < configuration.maximumPendingRetransmissions else {
            statistics.retransmissionsDropped += 1
            return
        }
        guard configuration.aggregatesRepairs else { return retransmissions.append((.node(request.requester), key, sequence)) }
        let window = configuration.repairAggregationWindow.totalNanoseconds
        forgetOldRepairs(window: window)
        let repair = RepairKey(stream: key, sequence: sequence)
        var multicast = request.kind == .regionRepair
        var requests = 1
        if let recent = recentRepairs[repair], runningNow.nanoseconds(since: recent.at) < window {
            if recent.multicast || recent.requester == request.requester {
                statistics.repairRequestsAbsorbed += 1
                return
            }
            requests = recent.requests + 1
            if requests >= multicastRepairRequesters(key.region) { multicast = true }
        }
        // This node can reach the region's address if it is in the region or is the
        // sender (which sends there without joining); otherwise it answers by unicast.
        if multicast, regions[key.region] == nil, key.sender != id { multicast = false }
        retransmissions.append((multicast ? .region(key.region) : .node(request.requester), key, sequence))
        if recentRepairs.updateValue(RecentRepair(at: runningNow, requester: request.requester, multicast: multicast,
                                                  requests: requests),
                                     forKey: repair) == nil {
            repairOrder.append((repair, runningNow))
        }
    }

    /// How many members asking for one packet within the window make it "loss seen by
    /// many": more than half of the others, and at least two. A multicast costs every
    /// other member a receive (and its link the bytes); unicasts cost the requesters
    /// only. Past half, the multicast costs the members less than the unicasts would,
    /// and the repairer far less.
    ///
    /// A sender outside the region (one that publishes without joining) has no view of
    /// it, but the views of the groups it publishes to: a region's members belong to
    /// every group mapped to it, so the fewest members of such a group bound the region
    /// from above, and more than half of that many is asked for. (Counted as a region of
    /// none, as it was, two requesters made a multicast: in a region of one sender and
    /// eight receivers under 5% random loss, asked first by every receiver, the sender
    /// sent 23k multicast repairs a run, each a duplicate at six or seven receivers.)
    func multicastRepairRequesters(_ region: RegionID) -> Int {
        if let view = regions[region] { return max(2, (view.members.count - 1) / 2 + 1) }
        let members: Int
        if let known = outsideRegionMembers[region] {
            members = known
        } else {
            // Once per change of the group views, not per request: a sender may publish
            // to thousands of groups.
            var fewest = Int.max
            for view in groups.values where view.regions.contains(where: { $0.id == region }) {
                fewest = min(fewest, view.members.count)
            }
            members = fewest == .max ? 0 : fewest
            outsideRegionMembers[region] = members
        }
        return max(2, members / 2 + 1)
    }

    /// Drops what was repaired longer ago than `window` (oldest first; a repair renewed
    /// since stays).
    private func forgetOldRepairs(window: Int64) {
        while let (repair, at) = repairOrder.first, runningNow.nanoseconds(since: at) >= window {
            _ = repairOrder.popFirst()
            if let recent = recentRepairs[repair], runningNow.nanoseconds(since: recent.at) >= window {
                recentRepairs[repair] = nil
            } else if let recent = recentRepairs[repair] {
                repairOrder.append((repair, recent.at))
            }
        }
    }
}

/// One packet of one stream, repaired recently.
struct RepairKey: Hashable {
    var stream: StreamKey
    var sequence: UInt64
}

/// When a packet was last retransmitted, to whom, whether by multicast, and how many
/// asked for it.
struct RecentRepair {
    var at: Instant
    var requester: NodeID
    var multicast: Bool
    /// Requests for it within the window, this one included.
    var requests: Int
}

extension TokenRecord {
    /// The run every member visited so far lacks (`lackFrom` 0: none).
    var lackRun: ClosedRange<UInt64>? {
        get { lackFrom == 0 || lackTo < lackFrom ? nil : lackFrom...lackTo }
        set {
            lackFrom = newValue?.lowerBound ?? 0
            lackTo = newValue?.upperBound ?? 0
        }
    }
}
