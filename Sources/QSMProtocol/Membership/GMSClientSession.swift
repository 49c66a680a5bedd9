/// The client end of a GMS connection, with or without a cluster secret: runs the
/// handshake (`GMSChannel`), seals what the membership client sends, holds it until the
/// channel opens, opens what arrives, and turns a refusal or a failed proof into one
/// plain reason. Shared by the node machine and `MembershipAgent`, so every client of
/// the GMS authenticates the same way.
package struct GMSClientSession: Sendable {
    /// What one frame from the GMS amounted to.
    package struct Incoming: Sendable {
        /// Frames to send now (handshake replies, and frames held for the channel).
        package var send: [[UInt8]] = []
        /// A membership message for the client.
        package var message: [UInt8]?
        /// Authentication failed, and why: close the connection and report it.
        package var failure: String?
    }

    private let secret: [UInt8]?
    private let blockFunction: SHA256.BlockFunction?
    private var channel: GMSChannel?
    private var held: [[UInt8]] = []

    package init(secret: [UInt8]?, blockFunction: SHA256.BlockFunction? = nil) {
        self.secret = secret
        self.blockFunction = blockFunction
    }

    /// The connection opened. With a secret, returns the hello to send first; `nonce`
    /// must be `GMSChannel.nonceBytes` fresh, unpredictable bytes.
    package mutating func connected(nonce: @autoclosure () -> [UInt8]) -> [UInt8]? {
        held = []
        guard let secret else { return nil }
        let opened = GMSChannel(role: .client, secret: secret, nonce: nonce(), blockFunction: blockFunction)
        channel = opened
        return opened.hello()
    }

    /// The connection closed or failed.
    package mutating func disconnected() {
        channel = nil
        held = []
    }

    /// A membership frame to send: returned sealed (or as it is, without a secret), or
    /// nil while the channel is not open yet (it goes out once it opens).
    package mutating func outgoing(_ frame: [UInt8]) -> [UInt8]? {
        guard secret != nil else { return frame }
        guard var open = channel, open.isOpen else {
            held.append(frame)
            return nil
        }
        let sealed = open.seal(frame)
        channel = open
        return sealed
    }

    /// One frame from the GMS.
    package mutating func incoming(_ frame: UnsafeRawBufferPointer) -> Incoming {
        var result = Incoming()
        guard var current = channel else {
            if let reason = GMSChannel.refusalReason(frame) {
                result.failure = "the GMS refused this node: \(reason)"
            } else if secret == nil {
                result.message = Array(frame)
            } else {
                result.failure = "a frame from the GMS outside an authenticated connection"
            }
            return result
        }
        switch current.receive(frame) {
        case .handshake(let reply, let opened):
            if let reply { result.send.append(reply) }
            if opened {
                for waiting in held { result.send.append(current.seal(waiting)) }
                held = []
            }
        case .message(let payload):
            result.message = payload
        case .refusedByPeer(let reason):
            result.failure = "the GMS refused this node: \(reason)"
        case .failed(let reason, let reply):
            if let reply { result.send.append(reply) }
            result.failure = reason
        }
        if result.failure == nil {
            channel = current
        } else {
            disconnected()
        }
        return result
    }
}
