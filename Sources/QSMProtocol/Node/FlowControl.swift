/// Decides whether one more message may enter the protocol, given what is published and
/// not yet acknowledged. The node machine is the one place that counts what is in flight
/// (the protocol reports acknowledgements, the machine asks this); an embedding API that
/// answers "would block" on its own thread mirrors the machine's `released` events.
package protocol FlowControl: Sendable {
    /// Whether a message of `bytes` bytes may enter while `inFlightMessages` messages of
    /// `inFlightBytes` bytes in all await acknowledgement.
    func admits(bytes: Int, inFlightMessages: Int, inFlightBytes: Int) -> Bool
    /// Messages that may be in flight at once (what an API thread's mirror counts up to).
    var messageCapacity: Int { get }
    /// Rejects settings that could never admit a message of the largest size.
    func validate(maximumMessageBytes: Int) throws(ConfigurationError)
}

/// A window of messages and bytes (section 4.3.8: a sender never has more than a
/// window's worth unacknowledged, so receivers' buffers are bounded too).
package struct WindowFlowControl: FlowControl {
    package var messages: Int
    package var bytes: Int

    package init(messages: Int = 4_096, bytes: Int = 16 << 20) {
        self.messages = messages
        self.bytes = bytes
    }

    @inlinable
    package func admits(bytes: Int, inFlightMessages: Int, inFlightBytes: Int) -> Bool {
        // An empty window admits anything the protocol accepts, so that no single message
        // can block forever.
        inFlightMessages == 0 || (inFlightMessages < messages && inFlightBytes + bytes <= self.bytes)
    }

    package var messageCapacity: Int { messages }

    package func validate(maximumMessageBytes: Int) throws(ConfigurationError) {
        guard messages >= 1, bytes >= maximumMessageBytes else {
            throw ConfigurationError("the window (\(messages) messages, \(bytes) bytes) must hold at least one message of the maximum size (\(maximumMessageBytes) bytes)")
        }
    }
}
