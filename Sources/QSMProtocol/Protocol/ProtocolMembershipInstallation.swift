/// Installing membership (what the GMS sent): region and group views, the rings built from
/// them, and the regions a publisher sends to.
extension ProtocolNode {
    /// Installs the current views of this node's regions and of the groups it belongs or
    /// publishes to (what the GMS sent it). Rings are rebuilt from the new views; tokens of
    /// older views are dropped when they arrive.
    package func installMembership(regions newRegions: [RegionView], groups newGroups: [GroupView], now: Instant) {
        installMembership(regions: newRegions, groups: Dictionary(uniqueKeysWithValues: newGroups.map { ($0.id, $0) }), now: now)
    }

    /// `groups` keyed by id, as the membership client keeps them: taken as they are, so
    /// node and client share one copy (copy-on-write) instead of each keeping its own.
    package func installMembership(regions newRegions: [RegionView], groups newGroups: [GroupID: GroupView], now: Instant) {
        enter(now)
        // Rebuilt from the new views when next needed (a restarted GMS may reuse a region
        // id and view number for other members).
        rings = [:]
        var next: [RegionID: RegionView] = [:]
        for region in newRegions where region.members.contains(where: { $0.id == id }) {
            next[region.id] = region
            if regions[region.id] == nil {
                joinedView[region.id] = region.viewNumber
                if region.viewNumber == 1 { foundingMember.insert(region.id) }
            }
        }
        // Departures are seen only in regions this node stays in: leaving a region oneself
        // says nothing about who else is alive.
        for (regionID, old) in regions {
            guard let new = next[regionID] else { continue }
            let stillThere = Set(new.members.map(\.id))
            for member in old.members where !stillThere.contains(member.id) { departed.insert(member.id) }
        }
        // A sender of another region reaches this one as an outsider: its departure shows
        // only in the group views, where it was a member and is one no more (crashed, or
        // left). Without this its gaps here could never be abandoned.
        // (Sets filled view by view, not from one flattened array of every group's
        // members: with thousands of groups over few nodes that array was the larger.)
        var groupMembers = Set<NodeID>()
        // A sender that published without joining shows only in the groups' publisher
        // lists: gone from them (crashed, or stopped publishing), it is gone.
        var publishing = Set<NodeID>()
        for view in newGroups.values {
            groupMembers.formUnion(view.members)
            publishing.formUnion(view.publishers)
        }
        for view in groups.values where newGroups[view.id] != nil {
            for member in view.members where !groupMembers.contains(member) && !publishing.contains(member) {
                departed.insert(member)
            }
            for publisher in view.publishers where !groupMembers.contains(publisher) && !publishing.contains(publisher) {
                departed.insert(publisher)
            }
        }
        for region in next.values { for member in region.members { departed.remove(member.id) } }
        for publisher in publishing { departed.remove(publisher) }
        recordDepartures(previous: regions, next: next)
        for gone in regions.keys where next[gone] == nil {
            // Left the region: its streams and leadership go (cached copies with them).
            streams = streams.filter { $0.key.region != gone }
            owedNothing = owedNothing.filter { $0.region != gone }
            for key in debtQueries.keys where key.region == gone {
                heldForDebt -= debtQueries.removeValue(forKey: key)?.held.count ?? 0
            }
            outOfOrderTotal = streams.values.reduce(0) { $0 + $1.heldAhead }
            partitionRounds[gone] = nil
            regionRounds[gone] = nil
            leaderRounds[gone] = nil
            partitionAggregate[gone] = nil
            tokenAssembly = tokenAssembly.filter { $0.key.region != gone }
            tokensHandled = tokensHandled.filter { $0.key.region != gone }
            partitionAsks = partitionAsks.filter { $0.key.region != gone }
            forgetAwaitedRepairs(in: gone)
            announcements[gone] = nil
            joinedView[gone] = nil
            // Coming back later is a new join: owed only what is sent from then on.
            foundingMember.remove(gone)
        }
        let previous = regions
        let previousTargets = Dictionary(publishTargets.entries.filter { $0.value.inView }.map { ($0.key, $0.value.regions) },
                                         uniquingKeysWith: { first, _ in first })
        regions = next
        cachePartition = [:]
        for region in next.values {
            let mine = region.partitions.firstIndex(where: { $0.members.contains(id) })
            if let mine { cachePartition[region.id] = (mine, region.partitions.count) }
            var layouts = cacheLayouts[region.id] ?? []
            if layouts.last?.view != region.viewNumber {
                // Older layouts matter only while some stream of the region has packets
                // not yet stable (a departed sender's gaps are sought by them). A settled
                // region keeps none: joins in a burst would otherwise keep 16 copies of a
                // large region's partitions at every member.
                let settled = !streams.contains { $0.key.region == region.id && ($0.value.isActive || !$0.value.cache.isEmpty) }
                if settled { layouts.removeAll() }
                layouts.append(CacheLayout(view: region.viewNumber, partitions: region.partitions, mine: mine))
                if layouts.count > CacheLayout.kept { layouts.removeFirst() }
                cacheLayouts[region.id] = layouts
            }
        }
        cacheLayouts = cacheLayouts.filter { next[$0.key] != nil }
        forgetProbes(keeping: Set(next.values.flatMap { $0.members.map(\.id) }))
        leaderWatch = leaderWatch.filter { next[$0.key]?.viewNumber == previous[$0.key]?.viewNumber }
        for region in next.values where leaderWatch[region.id] == nil { heardFromLeader(region) }
        let previousGroups = groups
        groups = newGroups
        updatePublishTargets()
        settledView = settledView.filter { next[$0.key] != nil }
        partitionSettledView = partitionSettledView.filter { next[$0.key] != nil }
        for region in regions.values {
            if leadsPartition(region), partitionRounds[region.id] == nil {
                partitionRounds[region.id] = LeaderRound(nextStart: now)
            } else if !leadsPartition(region) {
                partitionRounds[region.id] = nil
            }
            if region.regionLeader == id, regionRounds[region.id] == nil {
                regionRounds[region.id] = LeaderRound(nextStart: now)
            } else if region.regionLeader != id {
                regionRounds[region.id] = nil
            }
            // A new view restarts rounds at once (the old view's tokens are void); an
            // unchanged one (only some group changed) lets the rounds under way finish.
            if previous[region.id]?.viewNumber != region.viewNumber {
                partitionRounds[region.id]?.inProgress = false
                regionRounds[region.id]?.inProgress = false
            }
            updateLeaderRounds(region, newView: previous[region.id]?.viewNumber != region.viewNumber)
        }
        pauseForViewChanges(previous: previous)
        // Regions a sender's messages are waiting on that no longer exist: nobody is left
        // to acknowledge there (section 4.3.7, item 5). Their messages are carried into
        // the group's new regions, or kept until the group is back in view.
        let live = Set(regions.keys).union(groups.values.flatMap { $0.regions.map(\.id) })
        var displaced: [OutgoingMessage] = []
        for (region, state) in regionSend where !live.contains(region) {
            while let (_, message) = state.awaiting.popFirst() {
                message.unacknowledgedRegions -= 1
                displaced.append(message)
            }
            if retiredSendSequences.count >= Self.retiredSendSequencesKept, let any = retiredSendSequences.keys.first {
                retiredSendSequences[any] = nil
            }
            retiredSendSequences[region] = state.nextSequence
            regionSend[region] = nil
        }
        carryUnacknowledged(previousTargets: previousTargets, previousRegions: previous, previousGroups: previousGroups,
                            displaced: displaced)
        updateAwaitedAfterRestart()
        updateMemberSince()
        // Packets that arrived early for a view now known.
        var held = unknownPackets
        unknownPackets = RingBuffer(initialCapacity: 16)
        while let bytes = held.popFirst() { receive(bytes, now: now) }
    }

    func leadsPartition(_ region: RegionView) -> Bool {
        region.partition(of: id)?.leader == id
    }

    func isPresent(_ node: NodeID, in region: RegionID) -> Bool {
        regions[region]?.members.contains { $0.id == node } ?? false
    }
}
