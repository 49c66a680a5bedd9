/// Recovery from caching replicas once they hold the message, and the inter-partition
/// push (section 4.2.1 C, Fig. 4.11-4.12; section 4.3.8, 4c: "QSM delays recovery until a
/// message is stable on its caching replicas, then coordinates a parallel recovery").
///
/// Two rules:
///
/// - **A replica answers once it holds the packet.** A member that lacks a packet asks a
///   random member of the partition that caches it. If that replica lacks it too (it
///   was lost there as well, or has not been read from its socket yet), the request used
///   to be dropped, and the member asked again a retry interval later, perhaps the same
///   replica. Now the replica keeps a lone member's request (`awaitedRepairs`, bounded
///   and counted) and answers it the moment the packet is in its cache. A request kept
///   longer than `awaitedRepairWindow` is forgotten: by then the member has asked
///   elsewhere. Requests from several members mean loss seen by many, which the
///   region's repair serves (see `awaitRepair`).
/// - **A partition's known lack is pushed to it.** A partition leader learns from its
///   token the run its whole partition lacks (`RepairAggregation`). Of that run, what its
///   own partition caches goes to the sender as before (if the caching partition lacks
///   it, the region most likely does: one multicast). What another partition caches is
///   asked of one member of that partition as a `partitionPush`: that member sends each
///   packet it holds to every member of the lacking partition, and asks the sender to
///   multicast what it lacks too (two partitions lacking it: loss seen by many). A region
///   of many partitions thus repairs a partition's loss from its peers, by a few
///   unicasts, instead of making the sender multicast to everyone.
///
/// A packet that reaches a replica by multicast to the region (`repairedToRegion`)
/// reached the member it kept a request for too: that request is dropped, counted, not
/// answered with a second copy. (Without these two limits, loss at every member of a
/// region of 20 made the replicas unicast each packet again to most members: about 7
/// retransmissions per loss where 2-4 had done.)
extension ProtocolNode {

    /// How long a replica keeps a request for a packet it does not hold yet: two retry
    /// intervals (the asker tries elsewhere after one; an answer after two is most
    /// likely a duplicate).
    var awaitedRepairWindow: Int64 {
        max(2 * configuration.requestRetryInterval.totalNanoseconds, 1_000_000)
    }

    /// Whether this node will hold `sequence` of `key` once it has it: it caches it (its
    /// partition's share, or every packet under survivor agreement), lacks it now, may
    /// still get it, and its sender is not known gone (a departed sender's gaps have
    /// their own search: `SenderCrashRecovery`).
    func willHold(_ key: StreamKey, _ sequence: UInt64) -> Bool {
        guard key.sender != id, !departed.contains(key.sender), let stream = streams[key],
              let region = regions[key.region] else { return false }
        guard sequence >= stream.start, sequence > stream.contiguous, sequence <= plausibleLimit(stream) else { return false }
        return configuration.survivorAgreement || caches(sequence, in: key.region, view: region.viewNumber)
    }

    /// Keeps a member's request for `sequence`, which this node does not hold yet, to be
    /// answered once it does. False (nothing kept) if this node will not hold it.
    ///
    /// Only a lone asker is kept. A second member asking for the same packet means the
    /// loss is widespread: the region's own repair (the caching partition's leader asks
    /// the sender for one multicast) serves them all, and answering each asker once the
    /// replica had the packet would only send most of them a second copy. The entry then
    /// stays, emptied, so that later askers are not kept either (counted as refused).
    func awaitRepair(_ sequence: UInt64, of key: StreamKey, for requester: NodeID) -> Bool {
        guard configuration.answersOnceHeld, willHold(key, sequence) else { return false }
        forgetOldAwaitedRepairs()
        let repair = RepairKey(stream: key, sequence: sequence)
        if var entry = awaitedRepairs[repair] {
            // (The window runs from the first request: a repeated one does not extend
            // it, nor add to the order, which stays as long as the table at most.)
            if entry.requester != requester {
                // Widespread: answered by the region's repair, not from here. The new
                // asker is refused, and so is the kept one, now given up (counters only
                // rise: `repairsAwaited` stays as it was).
                statistics.awaitedRepairsRefused += entry.requester == nil ? 1 : 2
                entry.requester = nil
                awaitedRepairs[repair] = entry
            }
            return true
        }
        // Bounded: the table, and the order (which also names entries answered since).
        guard awaitedRepairs.count < configuration.maximumPendingRetransmissions,
              awaitedOrder.count < 2 * configuration.maximumPendingRetransmissions else {
            statistics.awaitedRepairsRefused += 1
            return false
        }
        statistics.repairsAwaited += 1
        awaitedRepairs[repair] = AwaitedRepair(at: runningNow, requester: requester)
        awaitedOrder.append((repair, runningNow))
        return true
    }

    /// `packet` is now cached here: the requests kept for it are answered (each as any
    /// request is, so that many at once go by one multicast), unless it came by
    /// multicast to the region, which reached them too.
    func answerAwaitedRepairs(_ key: StreamKey, _ packet: DataPacket) {
        guard let entry = awaitedRepairs.removeValue(forKey: RepairKey(stream: key, sequence: packet.sequence)),
              let requester = entry.requester else { return }
        if packet.repairedToRegion {
            statistics.awaitedRepairsServedByMulticast += 1
            return
        }
        guard runningNow.nanoseconds(since: entry.at) < awaitedRepairWindow else {
            statistics.awaitedRepairsExpired += 1
            return
        }
        statistics.awaitedRepairsAnswered += 1
        queueRepair(packet.sequence, of: key, for: RequestPacket(kind: .pull, sender: key.sender, region: key.region,
                                                                 requester: requester, sequences: []))
    }

    /// Drops requests kept longer than the window, oldest first.
    func forgetOldAwaitedRepairs() {
        let window = awaitedRepairWindow
        while let (repair, at) = awaitedOrder.first, runningNow.nanoseconds(since: at) >= window {
            _ = awaitedOrder.popFirst()
            // Gone (answered), or a later entry for the same packet: not this one's to drop.
            guard let entry = awaitedRepairs[repair], entry.at == at else { continue }
            if entry.requester != nil { statistics.awaitedRepairsExpired += 1 }
            awaitedRepairs[repair] = nil
        }
    }

    /// This node left `region`: what was kept for its streams goes with them.
    func forgetAwaitedRepairs(in region: RegionID) {
        guard !awaitedRepairs.isEmpty else { return }
        statistics.awaitedRepairsExpired += awaitedRepairs.filter { $0.key.stream.region == region && $0.value.requester != nil }.count
        awaitedRepairs = awaitedRepairs.filter { $0.key.stream.region != region }
        awaitedOrder.removeAll { $0.0.stream.region == region }
    }

    // MARK: The inter-partition push

    /// A partition leader's request that this node send `request.sequences` to every
    /// member of the leader's partition. What this node holds is pushed. What it lacks
    /// too was most likely lost region-wide (the caching partition lacks it as well as
    /// the asking one): it is passed to the sender as a region repair, one multicast for
    /// all. At most `recoveryRequestsPerRound` numbers are looked at (a forged request
    /// costs no more).
    func receivePartitionPush(_ request: RequestPacket) {
        let key = StreamKey(sender: request.sender, region: request.region)
        guard let region = regions[key.region],
              let partition = region.partitions.first(where: { $0.members.contains(request.requester) }) else {
            statistics.repairRequestsNotHeld += request.sequences.count
            return
        }
        var lacking: [UInt64] = []
        for sequence in request.sequences.prefix(configuration.recoveryRequestsPerRound) {
            guard let packet = retransmittable(key, sequence) else {
                lacking.append(sequence)
                continue
            }
            // It came here by multicast to the region, which reached that partition too
            // (the request crossed it).
            if packet.repairedToRegion {
                statistics.pushesServedByMulticast += 1
                continue
            }
            for target in partition.members where target != id && target != key.sender {
                statistics.partitionPushes += 1
                queueRepair(sequence, of: key, for: RequestPacket(kind: .pull, sender: key.sender, region: key.region,
                                                                  requester: target, sequences: []))
            }
        }
        guard !lacking.isEmpty else { return }
        guard key.sender != id, !departed.contains(key.sender) else {
            statistics.repairRequestsNotHeld += lacking.count
            return
        }
        statistics.partitionRepairsAsked += 1
        control.append(.request(RequestPacket(kind: .regionRepair, sender: key.sender, region: key.region, requester: id,
                                              sequences: lacking), to: key.sender))
    }

    /// Splits a run the leader's whole partition lacks by the partition that caches each
    /// number: its own partition's share stays for the sender's multicast (returned);
    /// each other partition's is asked of one of its members as a push.
    func askForPushes(of run: ClosedRange<UInt64>, sender: NodeID, in region: RegionView) -> [UInt64] {
        let count = region.partitions.count
        guard configuration.pushesBetweenPartitions, count > 1, let mine = partitionRing(region)?.index else { return Array(run) }
        var own: [UInt64] = []
        var others: [Int: [UInt64]] = [:]
        for sequence in run {
            let caching = Int(sequence % UInt64(count))
            if caching == mine { own.append(sequence) } else { others[caching, default: []].append(sequence) }
        }
        for (caching, sequences) in others.sorted(by: { $0.key < $1.key }) {
            let candidates = region.partitions[caching].members.filter { $0 != id && $0 != sender }
            guard !candidates.isEmpty else {
                own += sequences
                continue
            }
            let target = candidates[Int(random.next() % UInt64(candidates.count))]
            statistics.partitionPushesAsked += 1
            control.append(.request(RequestPacket(kind: .partitionPush, sender: sender, region: region.id, requester: id,
                                                  sequences: sequences), to: target))
        }
        return own.sorted()
    }
}

/// A request for one packet that a replica keeps until it holds it: when the first
/// request came, and whom to answer (nil: several asked, the region's repair serves
/// them).
struct AwaitedRepair {
    var at: Instant
    var requester: NodeID?
}
