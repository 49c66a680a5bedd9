/// Seals a node's datagrams and opens its peers' (with a cluster secret): AES-128-GCM
/// under a key for each sender incarnation, derived from the secret; the replay envelope
/// (see `DatagramEnvelope`) is authenticated with the packet, and its counter is the
/// nonce.
///
///     packet | sender (8) | epoch (8) | counter (8) | tag (16)
///
/// - Authentication (the default): GMAC over the whole datagram. The packet travels in
///   the clear.
/// - Encryption (`encrypt`): the packet, every header field and payload byte, is
///   encrypted; only the envelope is in the clear, because a receiver needs it to pick
///   the key and the nonce. The kernel routes by the IP and UDP headers alone.
///
/// Keys: HMAC-SHA256(secret, "QSM datagram key" | mode | sender | epoch), first 16
/// bytes. A nonce never repeats under one key: the counter (channel and count, see
/// `ReplayChannel`) is used once per incarnation, and each incarnation (epoch) of each
/// sender has its own key. The mode
/// is in the key, so a node that encrypts and one that does not cannot read each
/// other: every datagram between them is dropped as unauthenticated.
package final class DatagramSeal {
    package enum Mode: UInt8, Sendable {
        case authenticate = 1
        case encrypt = 2
    }

    /// Bytes each datagram carries beyond its packet.
    package static let overheadBytes = DatagramEnvelope.bytes + AESGCM.tagBytes
    /// Senders whose keys are kept; a datagram from one more is checked with a key made
    /// for it and not kept.
    static let maximumPeers = 65_536

    package let mode: Mode
    private let derivation: PacketAuthenticator
    private let backend: AESGCM.Backend
    private let sender: NodeID
    private let epoch: UInt64
    private let own: AESGCM
    /// The keys of peers' incarnations, looked up for every datagram: an
    /// `IdentifierTable`, seeded from the secret (entries are added only for authentic
    /// datagrams, so an outsider can neither choose nor learn where they go).
    @exclusivity(unchecked) private var peers: IdentifierTable<NodeID, (epoch: UInt64, key: AESGCM)>

    package init(secret: [UInt8], sender: NodeID, epoch: UInt64, mode: Mode, backend: AESGCM.Backend,
                 blockFunction: SHA256.BlockFunction?) {
        self.mode = mode
        derivation = PacketAuthenticator(secret: secret, blockFunction: blockFunction)
        self.backend = backend
        self.sender = sender
        self.epoch = epoch
        own = AESGCM(key: Self.key(derivation, mode: mode, sender: sender, epoch: epoch), backend: backend)
        let derivation = self.derivation
        let seedBytes = Array("QSM datagram peer table".utf8).withUnsafeBytes { derivation.code(for: $0) }
        peers = IdentifierTable(seed: seedBytes.prefix(8).reduce(0) { $0 << 8 | UInt64($1) })
    }

    static func key(_ derivation: PacketAuthenticator, mode: Mode, sender: NodeID, epoch: UInt64) -> [UInt8] {
        var input = Array("QSM datagram key".utf8)
        input.append(mode.rawValue)
        for shift in stride(from: 56, through: 0, by: -8) { input.append(UInt8(truncatingIfNeeded: sender.value >> UInt64(shift))) }
        for shift in stride(from: 56, through: 0, by: -8) { input.append(UInt8(truncatingIfNeeded: epoch >> UInt64(shift))) }
        return Array(input.withUnsafeBytes { derivation.code(for: $0) }.prefix(AESGCM.keyBytes))
    }

    /// The 12-byte nonce of `counter`: the counter, then four zero bytes.
    @inline(__always)
    private static func withNonce<R>(_ counter: UInt64, _ body: (UnsafeRawBufferPointer) -> R) -> R {
        var nonce: (UInt64, UInt32) = (counter.bigEndian, 0)
        return withUnsafeBytes(of: &nonce) { body(UnsafeRawBufferPointer(rebasing: $0[0..<AESGCM.nonceBytes])) }
    }

    /// Seals the packet of `length` bytes at the start of `buffer` (which has room for
    /// `overheadBytes` more) as datagram `counter` of this incarnation; returns the
    /// datagram's length.
    package func seal(_ buffer: UnsafeMutableRawBufferPointer, length: Int, counter: UInt64) -> Int {
        DatagramEnvelope.write(sender: sender, epoch: epoch, counter: counter, into: buffer, at: length)
        let tagAt = length + DatagramEnvelope.bytes
        let tag = UnsafeMutableRawBufferPointer(rebasing: buffer[tagAt..<(tagAt + AESGCM.tagBytes)])
        Self.withNonce(counter) { nonce in
            switch mode {
            case .authenticate:
                own.seal(nonce: nonce, aad: UnsafeRawBufferPointer(rebasing: buffer[0..<tagAt]),
                         plaintext: UnsafeRawBufferPointer(start: nil, count: 0),
                         ciphertext: UnsafeMutableRawBufferPointer(start: nil, count: 0), tag: tag)
            case .encrypt:
                let packet = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<length])
                own.seal(nonce: nonce, aad: UnsafeRawBufferPointer(rebasing: buffer[length..<tagAt]),
                         plaintext: UnsafeRawBufferPointer(packet), ciphertext: packet, tag: tag)
            }
        }
        return tagAt + AESGCM.tagBytes
    }

    /// Opens `datagram`: nil if it is too short or its tag does not hold. Otherwise its
    /// envelope, and the packet: in place when only authenticated, decrypted into
    /// `scratch` (at least as long as the datagram) when encrypted. Valid until the next
    /// call. `superseded`: a newer incarnation of the sender has been seen (on any
    /// channel: each channel's replay window knows only its own).
    package func open(_ datagram: UnsafeRawBufferPointer, scratch: UnsafeMutableRawBufferPointer)
        -> (packet: UnsafeRawBufferPointer, sender: NodeID, epoch: UInt64, counter: UInt64, superseded: Bool)? {
        guard datagram.count >= Self.overheadBytes else { return nil }
        let tagAt = datagram.count - AESGCM.tagBytes
        let length = tagAt - DatagramEnvelope.bytes
        guard let envelope = DatagramEnvelope.read(UnsafeRawBufferPointer(rebasing: datagram[0..<tagAt])) else { return nil }
        let cached = peers[envelope.sender]
        let key: AESGCM
        if let cached, cached.epoch == envelope.epoch {
            key = cached.key
        } else {
            key = AESGCM(key: Self.key(derivation, mode: mode, sender: envelope.sender, epoch: envelope.epoch), backend: backend)
        }
        let tag = UnsafeRawBufferPointer(rebasing: datagram[tagAt...])
        let authentic = Self.withNonce(envelope.counter) { nonce in
            switch mode {
            case .authenticate:
                return key.open(nonce: nonce, aad: UnsafeRawBufferPointer(rebasing: datagram[0..<tagAt]),
                                ciphertext: UnsafeRawBufferPointer(start: nil, count: 0),
                                plaintext: UnsafeMutableRawBufferPointer(start: nil, count: 0), tag: tag)
            case .encrypt:
                return key.open(nonce: nonce, aad: UnsafeRawBufferPointer(rebasing: datagram[length..<tagAt]),
                                ciphertext: UnsafeRawBufferPointer(rebasing: datagram[0..<length]),
                                plaintext: UnsafeMutableRawBufferPointer(rebasing: scratch[0..<length]), tag: tag)
            }
        }
        guard authentic else { return nil }
        // Authentic: a newer incarnation's key replaces the old one (an older one's is
        // used once, and its datagram is dropped by the replay check).
        if cached == nil ? peers.count < Self.maximumPeers : cached!.epoch < envelope.epoch {
            peers[envelope.sender] = (envelope.epoch, key)
        }
        let packet = mode == .encrypt ? UnsafeRawBufferPointer(rebasing: scratch[0..<length])
            : UnsafeRawBufferPointer(rebasing: datagram[0..<length])
        return (packet, envelope.sender, envelope.epoch, envelope.counter, cached.map { $0.epoch > envelope.epoch } ?? false)
    }
}
