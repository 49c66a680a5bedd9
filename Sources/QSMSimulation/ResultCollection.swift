import QSMProtocol
import QSMGMS

/// The run's result: deliveries, invariants and liveness, collected from every node.
extension Simulator {
    func result() -> SimulationResult {
        var tokenRounds = 0, tokenTime: Int64 = 0, acknowledged = 0, ackTime: Int64 = 0
        var regionRounds = 0, regionTime: Int64 = 0, leaderRounds = 0, leaderTime: Int64 = 0, ringLevels = 0
        var recoveries = LatencyHistogram()
        var maximumCached = 0, maximumHeld = 0, controlBytes = 0, dataBytes = 0, retransmissions = 0, tokenRecords = 0
        var published = 0, duplicates = 0, oversized = 0, unauthenticated = 0, tokensSplit = 0, timeouts = 0
        var replays = 0, tooOld = 0, carried = 0, notMember = 0, givenUp = 0, suspects = 0
        var awaited = 0, awaitedAnswered = 0, awaitedByMulticast = 0, notHeld = 0, pushesAsked = 0, pushes = 0, requests = 0
        var partitionRepairs = 0, multicastRepairs = 0, absorbed = 0, pauses = 0, pausesTimedOut = 0, pauseTime: Int64 = 0
        for node in nodes {
            let s = node.machine.protocolNode.statistics
            tokenRounds += s.tokenRounds
            tokenTime += s.tokenRoundTripNanoseconds
            regionRounds += s.regionTokenRounds
            regionTime += s.regionTokenRoundTripNanoseconds
            leaderRounds += s.leaderTokenRounds
            leaderTime += s.leaderTokenRoundTripNanoseconds
            ringLevels = max(ringLevels, node.machine.protocolNode.ringLevels)
            acknowledged += s.acknowledged
            ackTime += s.acknowledgementLatencyNanoseconds
            recoveries.merge(s.recoveryMicroseconds)
            maximumCached = max(maximumCached, s.maximumCachedBytes)
            maximumHeld = max(maximumHeld, s.maximumHeldBytes)
            controlBytes += s.controlBytesSent
            dataBytes += s.dataPayloadBytesSent
            duplicates += s.duplicatesDropped
            retransmissions += s.retransmissionsSent
            tokenRecords = max(tokenRecords, s.maximumTokenRecords)
            tokensSplit += s.tokensSplit
            carried += s.messagesCarried
            notMember += s.notMemberDropped
            givenUp += s.messagesGivenUp
            suspects += s.suspectsReported
            partitionRepairs += s.partitionRepairsAsked
            multicastRepairs += s.multicastRepairs
            absorbed += s.repairRequestsAbsorbed
            awaited += s.repairsAwaited
            awaitedAnswered += s.awaitedRepairsAnswered
            awaitedByMulticast += s.awaitedRepairsServedByMulticast
            notHeld += s.repairRequestsNotHeld
            pushesAsked += s.partitionPushesAsked
            pushes += s.partitionPushes
            requests += s.requestsSent
            pauses += s.viewChangePauses
            pausesTimedOut += s.viewChangePausesTimedOut
            pauseTime += s.viewChangePauseNanoseconds
            timeouts += s.tokenTimeouts
            published += s.published
            oversized += node.machine.statistics.droppedOversized
            unauthenticated += node.machine.statistics.droppedUnauthenticated
            replays += node.machine.statistics.droppedReplayed + node.machine.statistics.droppedDeadIncarnation
            tooOld += node.machine.statistics.droppedTooOld
        }
        let configuration = scenario.protocolConfiguration
        let bound = configuration.windowBytes * (scenario.senders + 1)
            + configuration.maximumOutOfOrderPackets * configuration.maximumFragmentBytes
        if maximumHeld > bound { checker.violation("a node held \(maximumHeld) bytes, above the bound of \(bound)") }
        if tokenRecords > scenario.senders { checker.violation("a token carried \(tokenRecords) records for \(scenario.senders) senders") }
        if oversized > 0 { checker.violation("\(oversized) datagrams were too large for the network's \(scenario.maximumDatagramBytes) bytes") }
        if unauthenticated > corrupted { checker.violation("\(unauthenticated) datagrams failed authentication, but only \(corrupted) were corrupted") }
        // Only the network's duplicates repeat a counter (every send, retransmissions
        // included, takes a new one; no node restarts here).
        if replays > networkDuplicates {
            checker.violation("\(replays) datagrams were dropped as replays, but the network duplicated only \(networkDuplicates)")
        }
        let p99 = Double(recoveries.percentile(0.99) ?? 0) / 1e3
        var result = SimulationResult(
            seed: seed, nodes: scenario.nodes, groups: scenario.groups,
            simulatedSeconds: Double(now.nanoseconds) / 1e9, published: published, delivered: checker.deliveries,
            violations: checker.violations,
            tokenRoundTripMillisecondsMean: tokenRounds == 0 ? 0 : Double(tokenTime) / Double(tokenRounds) / 1e6,
            acknowledgementLatencyMillisecondsMean: acknowledged == 0 ? 0 : Double(ackTime) / Double(acknowledged) / 1e6,
            recoveryMillisecondsP99: p99, maximumCachedBytesPerNode: maximumCached, maximumHeldBytesPerNode: maximumHeld,
            controlBytesPerDataByte: dataBytes == 0 ? 0 : Double(controlBytes) / Double(dataBytes),
            retransmissions: retransmissions, duplicatesReceived: duplicates, maximumTokenRecords: tokenRecords, wallSeconds: 0,
            drainSeconds: quietAt.map { Double($0.nanoseconds(since: publishingEnds)) / 1e9 } ?? scenario.drainSeconds,
            tokensSplit: tokensSplit, corruptedDatagrams: corrupted, unauthenticatedDropped: unauthenticated,
            replayDropped: replays, tooOldDropped: tooOld,
            networkDropped: networkDropped, networkDuplicates: networkDuplicates,
            publishesRefused: publishesRefused, gmsUpdatesSent: service?.statistics.updatesSent ?? 0,
            controlBytesPerDataByteWhilePublishing: trafficAtEnd.map { $0.data == 0 ? 0 : Double($0.control) / Double($0.data) } ?? 0,
            tokenBytesPerDataByteWhilePublishing: trafficAtEnd.map { $0.data == 0 ? 0 : Double($0.tokens) / Double($0.data) } ?? 0,
            tokenTimeouts: timeouts, tokenRounds: tokenRounds, messagesCarried: carried, notMemberDropped: notMember,
            messagesGivenUp: givenUp, suspectsReported: suspects,
            suspicionExclusions: service?.statistics.suspicionExclusions ?? 0,
            regionWideDropped: regionWideDropped, partitionRepairsAsked: partitionRepairs,
            multicastRepairs: multicastRepairs, repairRequestsAbsorbed: absorbed,
            viewChangePauses: pauses, viewChangePausesTimedOut: pausesTimedOut,
            viewChangePauseMillisecondsMean: pauses == 0 ? 0 : Double(pauseTime) / Double(pauses) / 1e6,
            partitionRoundMillisecondsMean: tokenRounds > regionRounds + leaderRounds
                ? Double(tokenTime - regionTime - leaderTime) / Double(tokenRounds - regionRounds - leaderRounds) / 1e6 : 0,
            leaderRoundMillisecondsMean: leaderRounds == 0 ? 0 : Double(leaderTime) / Double(leaderRounds) / 1e6,
            regionRoundMillisecondsMean: regionRounds == 0 ? 0 : Double(regionTime) / Double(regionRounds) / 1e6,
            ringLevels: ringLevels)
        result.requestsSent = requests
        result.partitionDropped = partitionDropped
        result.regionTokenRounds = regionRounds
        result.leaderTokenRounds = leaderRounds
        result.repairRequestsNotHeld = notHeld
        result.repairsAwaited = awaited
        result.awaitedRepairsAnswered = awaitedAnswered
        result.awaitedRepairsServedByMulticast = awaitedByMulticast
        result.partitionPushesAsked = pushesAsked
        result.partitionPushes = pushes
        return result
    }
}
