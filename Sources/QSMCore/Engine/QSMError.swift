/// Why an async call on a `QSMNode` ended without its result.
public enum QSMError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The wait did not end within its deadline; says what was awaited.
    case timedOut(String)
    /// The calling task was cancelled.
    case cancelled
    /// The node was stopped (or stopped while the call waited).
    case stopped

    public var description: String {
        switch self {
        case .timedOut(let what): "timed out waiting for \(what)"
        case .cancelled: "cancelled"
        case .stopped: "the node is stopped"
        }
    }
}
