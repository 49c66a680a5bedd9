/// The protocol's packets. Data is indexed by the per-(sender, region) sequence number:
/// loss detection, recovery and cleanup use nothing else; group id, group view and
/// per-group sequence ride along for delivery only (section 4.2.1 C).
package enum PacketKind: UInt8 {
    case data = 1
    case retransmission = 2
    case partitionToken = 3
    case regionToken = 4
    case acknowledgement = 5
    case negativeAcknowledgement = 6
    case pull = 7
    case senderStatus = 8
    /// Hybrid mode (section 4.2.1 B): one datagram to a group's own address carrying
    /// every region's header; each receiver keeps the headers of its own regions.
    case hybridData = 9
    /// A member that joined a region in view J, and whose first packet from a sender is
    /// of a later view, asks the sender where its messages of views J and later begin.
    case viewStartQuery = 10
    /// The answer: a `SenderStatusPacket` whose view is the first view at or after the one
    /// asked about in which the sender numbered anything, and its first sequence number.
    case viewStart = 11
    /// "I do not hold these" (a `RequestPacket` whose requester is the peer answering):
    /// the reply to a pull for a departed sender's packets (see `SenderCrashRecovery`).
    case notHeld = 12
    /// Several packets to one address in one datagram (see `DatagramBundle`); never
    /// nested, and never decoded as a packet.
    case bundle = 13
    /// "Are you there?", unicast by a ring leader whose token timed out to each member of
    /// the ring (see `DataPathSuspicion`), and the answer.
    case probe = 14
    case probeReply = 15
    /// "My whole partition lacks these": a `RequestPacket` from a partition leader to the
    /// sender, answered by one multicast retransmission to the region (see
    /// `RepairAggregation`).
    case regionRepair = 16
    /// A retransmission sent by multicast to the whole region (loss seen by many): its
    /// receivers know that every member it reached got it too (see `ReplicaRecovery`).
    case regionRetransmission = 17
    /// "My whole partition lacks these; send them to its members once you hold them": a
    /// `RequestPacket` from a partition leader to a member of the partition that caches
    /// them (the inter-partition push of section 4.2.1 C; see `ReplicaRecovery`).
    case partitionPush = 18
}

/// One region's numbering of a hybrid transmission.
struct RegionHeader: Equatable {
    var region: RegionID
    var regionView: UInt64
    var viewStartSequence: UInt64
    var sequence: UInt64
}

struct DataPacket: Equatable {
    var sender: NodeID
    var region: RegionID
    var regionView: UInt64
    /// The first sequence number the sender used in `regionView`: a member that joined
    /// the region in that view is owed everything from here on.
    var viewStartSequence: UInt64
    var sequence: UInt64
    var group: GroupID
    var groupView: UInt64
    var groupSequence: UInt64
    var fragmentIndex: UInt16
    var fragmentCount: UInt16
    /// When the message was published (sender's clock), for latency measurement.
    var publishedAt: Int64
    var payload: ArraySlice<UInt8>
    /// A retransmission multicast to the region (`PacketKind.regionRetransmission`).
    var repairedToRegion = false
}

/// One active sender's state as a token aggregates it.
struct TokenRecord: Equatable {
    var sender: NodeID
    /// The lowest contiguous prefix among the nodes visited so far.
    var contiguous: UInt64
    /// The highest sequence number any visited node has seen.
    var maximumSeen: UInt64
    /// The highest sequence number known stable in the whole region.
    var stable: UInt64
    /// How many members (partition token) or partitions (region token) contributed their
    /// `contiguous`. A minimum is only a safe stability point once everyone is in it.
    var coverage: UInt32
    /// On a partition token: the lowest run of sequence numbers every member visited so
    /// far lacks (0 and 0: none). See `RepairAggregation`.
    var lackFrom: UInt64 = 0
    /// See `lackFrom`.
    var lackTo: UInt64 = 0
}

struct TokenPacket: Equatable {
    var kind: PacketKind
    var region: RegionID
    var regionView: UInt64
    var partition: UInt32
    var round: UInt64
    var startedAt: Int64
    var records: [TokenRecord]
    /// A token with more records than one datagram holds travels as `parts` datagrams,
    /// each with a share of the records; the next member acts on it once it has them all.
    var part: UInt16 = 0
    var parts: UInt16 = 1
    /// How many copies of the token each hop sends (1, or 2 while its ring loses
    /// tokens: see `ProtocolConfiguration.redundantTokenRounds`). Members act on one
    /// copy and drop the rest (`duplicateTokensDropped`).
    var copies: UInt8 = 1
    /// Whether the ring's view is installed everywhere (see `ViewChangePause`). On a
    /// region token, the low 15 bits count the partitions whose leader has completed a
    /// round of its partition in this view, as the token passes them; on either kind,
    /// `settledFlag` says the region leader found every partition had.
    var settled: UInt16 = 0
}

extension TokenPacket {
    /// `settled`'s bit for "the whole region has installed this view".
    static let settledFlag: UInt16 = 0x8000
    /// Bytes of a token datagram before its records, and of each record.
    static let headerBytes = 1 + 8 + 8 + 4 + 8 + 8 + 2 + 2 + 1 + 2 + 2
    static let recordBytes = 8 + 8 + 8 + 8 + 4 + 8 + 8

    /// How many records fit in one datagram of at most `packetBytes`.
    /// The most copies a hop may send of one token.
    static let maximumCopies: UInt8 = 2

    static func recordsPerDatagram(packetBytes: Int) -> Int {
        max(1, (packetBytes - headerBytes) / recordBytes)
    }
}

extension RegionHeader {
    /// Bytes of one region's header in a hybrid datagram.
    static let bytes = 8 + 8 + 8 + 8
}

extension DataPacket {
    /// Bytes of a data datagram besides its payload.
    static let headerBytes = 1 + 8 + 8 + 8 + 8 + 8 + messageBodyHeaderBytes
    /// Bytes of a hybrid datagram besides its payload and its region headers.
    static let hybridHeaderBytes = 1 + 8 + 2 + messageBodyHeaderBytes
    /// The part of the message body that is not payload: group, group view, group
    /// sequence, fragment index and count, publication time, payload length.
    static let messageBodyHeaderBytes = 4 + 8 + 8 + 2 + 2 + 8 + 4
}

extension RequestPacket {
    static let headerBytes = 1 + 8 + 8 + 8 + 2
}

struct AcknowledgementPacket: Equatable {
    var region: RegionID
    var sender: NodeID
    var stable: UInt64
    /// The region's view the leader acknowledged in: stability covers that view's
    /// members (see `LosslessReconfiguration`'s view checks).
    var regionView: UInt64 = 0
}

/// A NAK to the sender, or a pull from a caching peer: "send me these".
struct RequestPacket: Equatable {
    var kind: PacketKind
    var sender: NodeID
    var region: RegionID
    var requester: NodeID
    var sequences: [UInt64]
}

/// "Where do your messages of `view` (or the first later view you used) in `region`
/// begin?", from `requester` to `sender`.
struct ViewStartQueryPacket: Equatable {
    var sender: NodeID
    var region: RegionID
    var requester: NodeID
    var view: UInt64
}

/// An idle sender's highest sequence number in a region, multicast while some of its
/// messages there are unacknowledged: without it, a loss of the last packets would go
/// unnoticed by anyone who did not see anything after them.
/// A ring leader's probe of a member's data path, or the member's answer: `from` is who
/// sent it, `nonce` matches an answer to its probe.
struct ProbePacket: Equatable {
    var kind: PacketKind
    var from: NodeID
    var region: RegionID
    var nonce: UInt64
    static let bytes = 1 + 8 + 8 + 8
}

struct SenderStatusPacket: Equatable {
    var sender: NodeID
    var region: RegionID
    var regionView: UInt64
    var viewStartSequence: UInt64
    var maximumSequence: UInt64
}

enum ProtocolPacket: Equatable {
    /// A data packet for several regions at once; `template` carries everything but the
    /// per-region numbering.
    case hybridData(DataPacket, headers: [RegionHeader])
    case senderStatus(SenderStatusPacket)
    case viewStartQuery(ViewStartQueryPacket)
    case viewStart(SenderStatusPacket)
    case data(DataPacket, retransmitted: Bool)
    case token(TokenPacket)
    case acknowledgement(AcknowledgementPacket)
    case request(RequestPacket)
    case probe(ProbePacket)
}

extension ProtocolPacket {
    /// The bytes `encode(into:)` writes.
    var encodedByteCount: Int {
        switch self {
        case .data(let d, _): return DataPacket.headerBytes + d.payload.count
        case .token(let t): return TokenPacket.headerBytes + t.records.count * TokenPacket.recordBytes
        case .hybridData(let d, let headers):
            return DataPacket.hybridHeaderBytes + headers.count * RegionHeader.bytes + d.payload.count
        case .viewStartQuery: return 1 + 8 + 8 + 8 + 8
        case .viewStart, .senderStatus: return 1 + SenderStatusPacket.bytes
        case .acknowledgement: return 1 + 8 + 8 + 8 + 8
        case .request(let r): return RequestPacket.headerBytes + r.sequences.count * 8
        case .probe: return ProbePacket.bytes
        }
    }

    /// The packet as a new array (tests, fuzzing; the send path uses `encode(into:)`).
    func encoded() -> [UInt8] {
        let count = encodedByteCount
        return [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            initialized = encode(into: UnsafeMutableRawBufferPointer(buffer))!
        }
    }

    /// Writes the packet at the start of `buffer`; returns its length, or nil (nothing
    /// written) when it does not fit.
    func encode(into buffer: UnsafeMutableRawBufferPointer) -> Int? {
        guard encodedByteCount <= buffer.count else { return nil }
        var e = PacketEncoder(buffer)
        switch self {
        case .data(let d, let retransmitted):
            e.write((retransmitted ? d.repairedToRegion ? PacketKind.regionRetransmission : .retransmission : .data).rawValue)
            e.write(d.sender.value)
            e.write(d.region.value)
            e.write(d.regionView)
            e.write(d.viewStartSequence)
            e.write(d.sequence)
            e.writeMessageBody(d)
        case .token(let t):
            e.write(t.kind.rawValue)
            e.write(t.region.value)
            e.write(t.regionView)
            e.write(t.partition)
            e.write(t.round)
            e.write(t.startedAt)
            e.write(t.part)
            e.write(t.parts)
            e.write(t.copies)
            e.write(t.settled)
            e.write(UInt16(t.records.count))
            for r in t.records {
                e.write(r.sender.value)
                e.write(r.contiguous)
                e.write(r.maximumSeen)
                e.write(r.stable)
                e.write(r.coverage)
                e.write(r.lackFrom)
                e.write(r.lackTo)
            }
        case .hybridData(let d, let headers):
            e.write(PacketKind.hybridData.rawValue)
            e.write(d.sender.value)
            e.write(UInt16(headers.count))
            for header in headers {
                e.write(header.region.value)
                e.write(header.regionView)
                e.write(header.viewStartSequence)
                e.write(header.sequence)
            }
            e.writeMessageBody(d)
        case .viewStartQuery(let query):
            e.write(PacketKind.viewStartQuery.rawValue)
            e.write(query.sender.value)
            e.write(query.region.value)
            e.write(query.requester.value)
            e.write(query.view)
        case .viewStart(let status):
            e.write(PacketKind.viewStart.rawValue)
            e.writeStatus(status)
        case .senderStatus(let status):
            e.write(PacketKind.senderStatus.rawValue)
            e.writeStatus(status)
        case .acknowledgement(let a):
            e.write(PacketKind.acknowledgement.rawValue)
            e.write(a.region.value)
            e.write(a.sender.value)
            e.write(a.stable)
            e.write(a.regionView)
        case .request(let r):
            e.write(r.kind.rawValue)
            e.write(r.sender.value)
            e.write(r.region.value)
            e.write(r.requester.value)
            e.write(UInt16(r.sequences.count))
            for s in r.sequences { e.write(s) }
        case .probe(let p):
            e.write(p.kind.rawValue)
            e.write(p.from.value)
            e.write(p.region.value)
            e.write(p.nonce)
        }
        return e.offset
    }

    init(decoding bytes: UnsafeRawBufferPointer) throws(WireError) {
        var none = PayloadSpares(limit: 0)
        try self.init(decoding: bytes, spares: &none)
    }

    /// Decodes a packet; a data packet's payload is copied into an array taken from
    /// `spares` when it has one (no allocation), else into a new one.
    init(decoding bytes: UnsafeRawBufferPointer, spares: inout PayloadSpares) throws(WireError) {
        var r = WireReader(bytes)
        let kindByte = try r.readUInt8()
        guard let kind = PacketKind(rawValue: kindByte) else { throw .malformed(reason: "unknown packet kind \(kindByte)", offset: 0) }
        switch kind {
        case .data, .retransmission, .regionRetransmission:
            let sender = NodeID(try r.readUInt64())
            let region = RegionID(try r.readUInt64())
            let regionView = try r.readUInt64()
            let viewStart = try r.readUInt64()
            let sequence = try r.readUInt64()
            let group = GroupID(try r.readUInt32())
            let groupView = try r.readUInt64()
            let groupSequence = try r.readUInt64()
            let fragmentIndex = try r.readUInt16()
            let fragmentCount = try r.readUInt16()
            let publishedAt = try r.readInt64()
            let length = Int(try r.readUInt32())
            let payload = try r.readBytes(count: length)
            guard fragmentCount >= 1, fragmentIndex < fragmentCount, sequence >= 1, viewStart >= 1, viewStart <= sequence else {
                throw .malformed(reason: "inconsistent data header", offset: 0)
            }
            self = .data(DataPacket(sender: sender, region: region, regionView: regionView, viewStartSequence: viewStart,
                                    sequence: sequence, group: group, groupView: groupView, groupSequence: groupSequence,
                                    fragmentIndex: fragmentIndex, fragmentCount: fragmentCount, publishedAt: publishedAt,
                                    payload: spares.copy(payload), repairedToRegion: kind == .regionRetransmission),
                         retransmitted: kind != .data)
        case .partitionToken, .regionToken:
            let region = RegionID(try r.readUInt64())
            let regionView = try r.readUInt64()
            let partition = try r.readUInt32()
            let round = try r.readUInt64()
            let startedAt = try r.readInt64()
            let part = try r.readUInt16()
            let parts = try r.readUInt16()
            guard parts >= 1, part < parts else { throw .malformed(reason: "token part \(part) of \(parts)", offset: r.offset) }
            let copies = try r.readUInt8()
            guard (1...TokenPacket.maximumCopies).contains(copies) else { throw .malformed(reason: "token copies \(copies)", offset: r.offset) }
            let settled = try r.readUInt16()
            let count = Int(try r.readUInt16())
            guard count * TokenPacket.recordBytes <= r.remainingCount else { throw .malformed(reason: "token record count \(count)", offset: r.offset) }
            var records = spares.recordArray(reserving: count)
            for _ in 0..<count {
                records.append(TokenRecord(sender: NodeID(try r.readUInt64()), contiguous: try r.readUInt64(),
                                           maximumSeen: try r.readUInt64(), stable: try r.readUInt64(),
                                           coverage: try r.readUInt32(), lackFrom: try r.readUInt64(),
                                           lackTo: try r.readUInt64()))
            }
            self = .token(TokenPacket(kind: kind, region: region, regionView: regionView, partition: partition, round: round,
                                      startedAt: startedAt, records: records, part: part, parts: parts, copies: copies,
                                      settled: settled))
        case .hybridData:
            let sender = NodeID(try r.readUInt64())
            let count = Int(try r.readUInt16())
            guard count >= 1, count * RegionHeader.bytes <= r.remainingCount else { throw .malformed(reason: "hybrid header count \(count)", offset: r.offset) }
            var headers: [RegionHeader] = []
            for _ in 0..<count {
                let header = RegionHeader(region: RegionID(try r.readUInt64()), regionView: try r.readUInt64(),
                                          viewStartSequence: try r.readUInt64(), sequence: try r.readUInt64())
                guard header.sequence >= 1, header.viewStartSequence >= 1, header.viewStartSequence <= header.sequence else {
                    throw .malformed(reason: "inconsistent hybrid header", offset: r.offset)
                }
                headers.append(header)
            }
            let group = GroupID(try r.readUInt32())
            let groupView = try r.readUInt64()
            let groupSequence = try r.readUInt64()
            let fragmentIndex = try r.readUInt16()
            let fragmentCount = try r.readUInt16()
            let publishedAt = try r.readInt64()
            let payload = try r.readBytes(count: Int(try r.readUInt32()))
            guard fragmentCount >= 1, fragmentIndex < fragmentCount else { throw .malformed(reason: "inconsistent fragment", offset: 0) }
            self = .hybridData(DataPacket(sender: sender, region: headers[0].region, regionView: headers[0].regionView,
                                          viewStartSequence: headers[0].viewStartSequence, sequence: headers[0].sequence,
                                          group: group, groupView: groupView, groupSequence: groupSequence,
                                          fragmentIndex: fragmentIndex, fragmentCount: fragmentCount, publishedAt: publishedAt,
                                          payload: spares.copy(payload)), headers: headers)
        case .viewStartQuery:
            self = .viewStartQuery(ViewStartQueryPacket(sender: NodeID(try r.readUInt64()), region: RegionID(try r.readUInt64()),
                                                        requester: NodeID(try r.readUInt64()), view: try r.readUInt64()))
        case .viewStart:
            let status = SenderStatusPacket(sender: NodeID(try r.readUInt64()), region: RegionID(try r.readUInt64()),
                                            regionView: try r.readUInt64(), viewStartSequence: try r.readUInt64(),
                                            maximumSequence: try r.readUInt64())
            guard status.viewStartSequence >= 1, status.viewStartSequence <= status.maximumSequence + 1 else {
                throw .malformed(reason: "inconsistent view start", offset: 0)
            }
            self = .viewStart(status)
        case .senderStatus:
            self = .senderStatus(SenderStatusPacket(sender: NodeID(try r.readUInt64()), region: RegionID(try r.readUInt64()),
                                                    regionView: try r.readUInt64(), viewStartSequence: try r.readUInt64(),
                                                    maximumSequence: try r.readUInt64()))
        case .acknowledgement:
            self = .acknowledgement(AcknowledgementPacket(region: RegionID(try r.readUInt64()), sender: NodeID(try r.readUInt64()),
                                                          stable: try r.readUInt64(), regionView: try r.readUInt64()))
        case .negativeAcknowledgement, .pull, .notHeld, .regionRepair, .partitionPush:
            let sender = NodeID(try r.readUInt64())
            let region = RegionID(try r.readUInt64())
            let requester = NodeID(try r.readUInt64())
            let count = Int(try r.readUInt16())
            guard count * 8 <= r.remainingCount else { throw .malformed(reason: "request count \(count)", offset: r.offset) }
            var sequences: [UInt64] = []
            sequences.reserveCapacity(count)
            for _ in 0..<count { sequences.append(try r.readUInt64()) }
            self = .request(RequestPacket(kind: kind, sender: sender, region: region, requester: requester, sequences: sequences))
        case .probe, .probeReply:
            self = .probe(ProbePacket(kind: kind, from: NodeID(try r.readUInt64()), region: RegionID(try r.readUInt64()),
                                      nonce: try r.readUInt64()))
        case .bundle:
            // Bundles are opened by the node machine; one reaching here was nested.
            throw .malformed(reason: "a bundle where a packet was expected", offset: 0)
        }
        try r.expectEnd()
    }
}

extension ProtocolPacket {
    /// The node that originated a datagram, if the datagram says so and comes from it:
    /// data, hybrid data and sender status carry their sender right after the kind. A
    /// retransmission may come from any peer, so it names no origin here.
    /// The node that asks, in a NAK or pull (read in place, without decoding the rest).
    static func requester(of bytes: UnsafeRawBufferPointer) -> NodeID? {
        guard bytes.count >= 25, let kind = PacketKind(rawValue: bytes[0]),
              kind == .negativeAcknowledgement || kind == .pull else { return nil }
        var reader = WireReader(UnsafeRawBufferPointer(rebasing: bytes[17..<25]))
        return (try? reader.readUInt64()).map(NodeID.init)
    }

    /// A (multicast, non-hybrid) data packet's sender and group, read from its fixed
    /// header without decoding the rest: for a cache hint before the packet is decoded,
    /// so nothing here is trusted (a wrong answer fetches the wrong line, no more).
    static func deliveryKey(of bytes: UnsafeRawBufferPointer) -> DeliveryKey? {
        guard bytes.count >= groupOffset + 4, bytes[0] == PacketKind.data.rawValue else { return nil }
        var sender = WireReader(UnsafeRawBufferPointer(rebasing: bytes[1..<9]))
        var group = WireReader(UnsafeRawBufferPointer(rebasing: bytes[groupOffset..<(groupOffset + 4)]))
        guard let senderID = try? sender.readUInt64(), let groupID = try? group.readUInt32() else { return nil }
        return DeliveryKey(sender: NodeID(senderID), group: GroupID(groupID))
    }

    /// Where a data packet's group id starts: after its kind, sender, region, region
    /// view, view start and sequence (see `encode(into:)`).
    static let groupOffset = 1 + 8 + 8 + 8 + 8 + 8

    static func originalSender(of bytes: UnsafeRawBufferPointer) -> NodeID? {
        guard bytes.count >= 9, let kind = PacketKind(rawValue: bytes[0]),
              kind == .data || kind == .hybridData || kind == .senderStatus else { return nil }
        var reader = WireReader(UnsafeRawBufferPointer(rebasing: bytes[1..<9]))
        return (try? reader.readUInt64()).map(NodeID.init)
    }
}

extension SenderStatusPacket {
    /// Bytes of a sender status's fields.
    static let bytes = 8 + 8 + 8 + 8 + 8
}

extension PacketEncoder {
    /// A sender status's fields (sender status and view start packets share them).
    mutating func writeStatus(_ status: SenderStatusPacket) {
        write(status.sender.value)
        write(status.region.value)
        write(status.regionView)
        write(status.viewStartSequence)
        write(status.maximumSequence)
    }

    /// The part of a data packet that is the same in every region's copy.
    mutating func writeMessageBody(_ d: DataPacket) {
        write(d.group.value)
        write(d.groupView)
        write(d.groupSequence)
        write(d.fragmentIndex)
        write(d.fragmentCount)
        write(d.publishedAt)
        write(UInt32(d.payload.count))
        write(bytes: d.payload)
    }
}
