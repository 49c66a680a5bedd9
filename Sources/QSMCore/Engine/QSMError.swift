/// Why a call on a `QSMNode` failed; every throwing call of the API throws this, so a
/// caller can switch over what went wrong.
public enum QSMError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The wait did not end within its deadline; says what was awaited.
    case timedOut(String)
    /// The calling task was cancelled.
    case cancelled
    /// The node was stopped (or stopped while the call waited).
    case stopped
    /// A setting or argument cannot work (an invalid configuration, a malformed group
    /// name, a message over the size limit); the error names it.
    case invalid(ConfigurationError)
    /// A system call failed (a socket could not be made or bound, a thread not started),
    /// with the call and its errno.
    case system(SystemError)

    /// A readable account of the error.
    public var description: String {
        switch self {
        case .timedOut(let what): "timed out waiting for \(what)"
        case .cancelled: "cancelled"
        case .stopped: "the node is stopped"
        case .invalid(let error): error.message
        case .system(let error): error.description
        }
    }

    /// Any error from the layers below, as a `QSMError`.
    static func wrapping(_ error: any Error) -> QSMError {
        switch error {
        case let error as QSMError: error
        case let error as ConfigurationError: .invalid(error)
        case let error as SystemError: .system(error)
        default: .invalid(ConfigurationError("\(error)"))
        }
    }
}
