/// Authenticates a GMS connection from the cluster secret, then every frame on it.
///
/// The handshake is challenge-response with fresh nonces from both sides. Neither side
/// reveals anything that works without the secret:
///
///     client -> server  hello      nc (32 bytes)
///     server -> client  challenge  ns (32 bytes), HMAC(secret, "QSM GMS server" | nc | ns)
///     client -> server  proof      HMAC(secret, "QSM GMS client" | nc | ns)
///
/// Each side checks the other's proof. The client checks first, so a node whose secret
/// differs from the GMS's learns so from the GMS's first answer. After that, each
/// direction has its own key, HMAC(secret, "QSM GMS client->server" | nc | ns) and its
/// mirror. Every frame is `payload | tag`, where the tag is the first 16 bytes of
/// HMAC(key, counter | payload). The counter counts that direction's frames and is not
/// sent: TCP keeps order, so a replayed, reordered, dropped or spliced frame fails its
/// tag. A recorded handshake or frame is useless on another connection, because the
/// other side's nonce is fresh.
///
/// Handshake frames start with the bytes "QSMA", which no membership message does, so
/// a side without a secret can tell a peer that has one and refuse it with a reason. A
/// side with a secret does the same for a peer without one.
///
/// A value type without I/O or randomness: the caller passes in the fresh nonce.
package struct GMSChannel: Sendable {
    package enum Role: Sendable { case client, server }

    /// What one received frame amounted to.
    package enum Received: Equatable, Sendable {
        /// Part of the handshake; send `reply` if there is one. `opened` is true once
        /// the channel carries messages.
        case handshake(reply: [UInt8]?, opened: Bool)
        /// An authenticated message (its tag removed).
        case message([UInt8])
        /// The peer refused this side, and said why.
        case refusedByPeer(String)
        /// Authentication failed. Send `reply` (a refusal, if any), then close.
        case failed(reason: String, reply: [UInt8]?)
    }

    package static let nonceBytes = 32
    package static let tagBytes = 16
    static let magic: [UInt8] = Array("QSMA".utf8)

    enum Kind: UInt8 { case hello = 1, challenge = 2, proof = 3, refusal = 4 }

    enum State: Sendable {
        case awaitingHello
        case awaitingChallenge
        case awaitingProof(clientNonce: [UInt8], serverNonce: [UInt8])
        case open
        case closed
    }

    package let role: Role
    private let secret: PacketAuthenticator
    private let blockFunction: SHA256.BlockFunction?
    private let nonce: [UInt8]
    private var state: State
    private var sendKey: PacketAuthenticator?
    private var receiveKey: PacketAuthenticator?
    private var sent: UInt64 = 0
    private var received: UInt64 = 0

    /// - Parameters:
    ///   - role: which end of the connection this is.
    ///   - secret: the cluster secret.
    ///   - nonce: `nonceBytes` fresh, unpredictable bytes, never used before.
    ///   - blockFunction: SHA-256 in hardware, or nil.
    package init(role: Role, secret: [UInt8], nonce: [UInt8], blockFunction: SHA256.BlockFunction? = nil) {
        precondition(nonce.count == Self.nonceBytes, "a GMS channel nonce is \(Self.nonceBytes) bytes")
        self.role = role
        self.secret = PacketAuthenticator(secret: secret, blockFunction: blockFunction)
        self.blockFunction = blockFunction
        self.nonce = nonce
        state = role == .client ? .awaitingChallenge : .awaitingHello
    }

    /// True once messages can be sealed and opened.
    package var isOpen: Bool { if case .open = state { return true } else { return false } }

    /// The client's first frame.
    package func hello() -> [UInt8] {
        precondition(role == .client, "only the client says hello")
        return Self.magic + [Kind.hello.rawValue] + nonce
    }

    /// A refusal frame carrying `reason`, for a peer that cannot be served.
    package static func refusal(_ reason: String) -> [UInt8] { magic + [Kind.refusal.rawValue] + Array(reason.utf8.prefix(512)) }

    /// Whether `frame` is a handshake frame. A side without a secret uses this to
    /// recognize (and refuse) a peer that has one.
    package static func isHandshake(_ frame: UnsafeRawBufferPointer) -> Bool {
        frame.count > magic.count && frame.prefix(magic.count).elementsEqual(magic)
    }

    /// The reason in a refusal frame, if `frame` is one.
    package static func refusalReason(_ frame: UnsafeRawBufferPointer) -> String? {
        guard isHandshake(frame), frame[magic.count] == Kind.refusal.rawValue else { return nil }
        return String(decoding: frame[(magic.count + 1)...], as: UTF8.self)
    }

    /// Adds the tag to an outgoing message. Only on an open channel.
    package mutating func seal(_ payload: [UInt8]) -> [UInt8] {
        precondition(isOpen, "sealing on a channel that is not open")
        var sealed = [UInt8]()
        sealed.reserveCapacity(payload.count + Self.tagBytes)
        sealed.append(contentsOf: payload)
        sealed.append(contentsOf: payload.withUnsafeBytes { Self.tag($0, counter: sent, key: sendKey!) })
        sent += 1
        return sealed
    }

    /// Handles one received frame.
    package mutating func receive(_ frame: UnsafeRawBufferPointer) -> Received {
        if !isOpen, let reason = Self.refusalReason(frame) {
            state = .closed
            return .refusedByPeer(reason)
        }
        switch state {
        case .open:
            guard frame.count >= Self.tagBytes, !Self.isHandshake(frame) else {
                return fail("a frame without a valid tag")
            }
            // Verified where it lies, then copied once: a frame with thousands of group
            // views is megabytes, and each copy of it raised a node's peak memory.
            let body = UnsafeRawBufferPointer(rebasing: frame[0..<(frame.count - Self.tagBytes)])
            let expected = Self.tag(body, counter: received, key: receiveKey!)
            guard Self.constantTimeEqual(expected, frame[(frame.count - Self.tagBytes)...]) else {
                return fail("a frame whose tag does not verify (altered, replayed or from another connection)")
            }
            received += 1
            return .message(Array(body))
        case .closed:
            return .failed(reason: "the channel is closed", reply: nil)
        case .awaitingHello:
            guard let body = Self.body(frame, .hello), body.count == Self.nonceBytes else {
                return fail(Self.isHandshake(frame) ? "an unexpected handshake frame" : "a membership message before authenticating (the peer has no cluster secret)",
                            reply: Self.refusal("this GMS requires a cluster secret: give the node the cluster's --secret-file"))
            }
            let clientNonce = Array(body)
            let serverProof = proof("QSM GMS server", clientNonce, nonce)
            state = .awaitingProof(clientNonce: clientNonce, serverNonce: nonce)
            return .handshake(reply: Self.magic + [Kind.challenge.rawValue] + nonce + serverProof, opened: false)
        case .awaitingChallenge:
            guard let body = Self.body(frame, .challenge), body.count == Self.nonceBytes + SHA256.digestBytes else {
                return fail("the GMS did not answer the handshake (it may run without a cluster secret)")
            }
            let serverNonce = Array(body.prefix(Self.nonceBytes))
            guard Self.constantTimeEqual(proof("QSM GMS server", nonce, serverNonce), body.suffix(SHA256.digestBytes)) else {
                return fail("the GMS does not have this node's cluster secret (its proof does not verify): check --secret-file on both",
                            reply: Self.refusal("the GMS's proof does not verify: this node's cluster secret differs"))
            }
            open(clientNonce: nonce, serverNonce: serverNonce)
            return .handshake(reply: Self.magic + [Kind.proof.rawValue] + proof("QSM GMS client", nonce, serverNonce), opened: true)
        case .awaitingProof(let clientNonce, let serverNonce):
            guard let body = Self.body(frame, .proof), body.count == SHA256.digestBytes,
                  Self.constantTimeEqual(proof("QSM GMS client", clientNonce, serverNonce), body) else {
                return fail("the node's proof does not verify: its cluster secret differs from this GMS's",
                            reply: Self.refusal("this node's cluster secret differs from the GMS's: check --secret-file on both"))
            }
            open(clientNonce: clientNonce, serverNonce: serverNonce)
            return .handshake(reply: nil, opened: true)
        }
    }

    // MARK: Internals

    private mutating func fail(_ reason: String, reply: [UInt8]? = nil) -> Received {
        state = .closed
        return .failed(reason: reason, reply: reply)
    }

    private mutating func open(clientNonce: [UInt8], serverNonce: [UInt8]) {
        let toServer = PacketAuthenticator(secret: proof("QSM GMS client->server", clientNonce, serverNonce), blockFunction: blockFunction)
        let toClient = PacketAuthenticator(secret: proof("QSM GMS server->client", clientNonce, serverNonce), blockFunction: blockFunction)
        sendKey = role == .client ? toServer : toClient
        receiveKey = role == .client ? toClient : toServer
        state = .open
    }

    private func proof(_ label: String, _ clientNonce: [UInt8], _ serverNonce: [UInt8]) -> [UInt8] {
        let message = Array(label.utf8) + [0] + clientNonce + serverNonce
        return message.withUnsafeBytes { secret.code(for: $0) }
    }

    /// The tag of `payload` as the `counter`th frame: HMAC of the counter (8 bytes, big
    /// endian, as `WireEncoder` writes it) followed by the payload, truncated.
    private static func tag(_ payload: UnsafeRawBufferPointer, counter: UInt64, key: PacketAuthenticator) -> [UInt8] {
        var counterBytes = counter.bigEndian
        var tag = [UInt8](repeating: 0, count: tagBytes)
        withUnsafeBytes(of: &counterBytes) { prefix in
            tag.withUnsafeMutableBytes { key.write(code: prefix, payload, into: $0, length: tagBytes) }
        }
        return tag
    }

    private static func body(_ frame: UnsafeRawBufferPointer, _ kind: Kind) -> UnsafeRawBufferPointer.SubSequence? {
        guard isHandshake(frame), frame[magic.count] == kind.rawValue else { return nil }
        return frame[(magic.count + 1)...]
    }

    private static func constantTimeEqual<A: Collection<UInt8>, B: Collection<UInt8>>(_ a: A, _ b: B) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for (x, y) in zip(a, b) { difference |= x ^ y }
        return difference == 0
    }
}

/// Fresh nonces from driver-supplied entropy: HMAC-SHA256(entropy, counter), a PRF, so
/// the pure target draws unpredictable values without reading randomness itself.
package struct NonceSource: Sendable {
    private let key: PacketAuthenticator
    private var counter: UInt64 = 0

    /// - Parameter entropy: at least 32 unpredictable bytes (from the OS in the engine, from
    ///   a seed in the simulator).
    package init(entropy: [UInt8]) {
        precondition(entropy.count >= 32, "a nonce source needs at least 32 bytes of entropy")
        key = PacketAuthenticator(secret: entropy)
    }

    /// The next 32-byte nonce.
    package mutating func next() -> [UInt8] {
        counter += 1
        var input = WireEncoder(reservingCapacity: 8)
        input.write(counter)
        return input.bytes.withUnsafeBytes { key.code(for: $0) }
    }
}
