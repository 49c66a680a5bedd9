/// Tokens that arrive in parts (a ring with more active senders than one datagram's
/// records hold). A member acts on a token only once it has every part: a partial token
/// would make it contribute to, and forward, a record set that is not the ring's.
///
/// One token is assembled per ring at a time. A part of a different round (or view, or
/// part count) replaces the assembly under way: the older round is over, given up by
/// its leader, and its parts are counted as dropped. Memory is bounded by the rings this
/// node is in and by `maximumStreams` records per token.
struct TokenAssemblyKey: Hashable {
    var kind: PacketKind
    var region: RegionID
    var partition: UInt32
}

/// Which round of a ring a token is (see `ProtocolNode.isRepeatedToken`).
struct TokenIdentity: Equatable {
    var regionView: UInt64
    var round: UInt64
    var startedAt: Int64

    init(_ token: TokenPacket) {
        regionView = token.regionView
        round = token.round
        startedAt = token.startedAt
    }
}

struct TokenAssembly {
    var first: TokenPacket
    var parts: [[TokenRecord]?]
    var received: Int
}

extension ProtocolNode {
    /// The whole token once `part` completes it; nil while parts are missing (or when
    /// the part cannot belong to any token this node could act on).
    func assemble(_ part: TokenPacket) -> TokenPacket? {
        guard part.parts > 1 else { return part }
        let perPart = TokenPacket.recordsPerDatagram(packetBytes: configuration.maximumPacketBytes)
        // No ring of this node, or more parts than a token of `maximumStreams` records
        // can need: forged or stale, never assembled.
        guard Int(part.parts) <= (configuration.maximumStreams + perPart - 1) / perPart + 1 else {
            statistics.staleTokensDropped += 1
            return nil
        }
        guard regions[part.region] != nil else {
            // A region this node has not installed yet (its leader had the view first, as
            // for a whole token of a newer view in `receiveToken`): held, within
            // `maximumUnknownPackets`, and replayed once the view arrives; dropped as stale
            // then if this node is not in the region after all.
            statistics.tokensHeldForView += 1
            ProtocolPacket.token(part).encoded().withUnsafeBytes { hold($0) }
            return nil
        }
        let key = TokenAssemblyKey(kind: part.kind, region: part.region, partition: part.partition)
        if let current = tokenAssembly[key],
           TokenIdentity(current.first) != TokenIdentity(part) || current.first.parts != part.parts {
            statistics.tokenPartsDropped += current.received
            tokenAssembly[key] = nil
        }
        var assembly = tokenAssembly[key]
            ?? TokenAssembly(first: part, parts: Array(repeating: nil, count: Int(part.parts)), received: 0)
        guard assembly.parts[Int(part.part)] == nil else {
            statistics.duplicatesDropped += 1
            return nil
        }
        assembly.parts[Int(part.part)] = part.records
        assembly.received += 1
        guard assembly.received == Int(part.parts) else {
            tokenAssembly[key] = assembly
            return nil
        }
        tokenAssembly[key] = nil
        var whole = assembly.first
        whole.records = assembly.parts.flatMap { $0 ?? [] }
        whole.part = 0
        whole.parts = 1
        return whole
    }

    /// Whether this node already acted on this token: a ring that lost tokens sends two
    /// copies of each, and only the first is taken (forwarding both would double the
    /// copies at every hop). Equality only: a leader's rounds, not their order, say
    /// which token is which.
    func isRepeatedToken(_ token: TokenPacket) -> Bool {
        let key = TokenAssemblyKey(kind: token.kind, region: token.region, partition: token.partition)
        let identity = TokenIdentity(token)
        guard tokensHandled[key] != identity else {
            statistics.duplicateTokensDropped += 1
            return true
        }
        tokensHandled[key] = identity
        return false
    }
}
