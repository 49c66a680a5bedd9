#if canImport(Glibc)
import Glibc
#endif

/// A failed system call: which call, and the errno it left.
public struct SystemError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The name of the call that failed, e.g. "recvmmsg".
    public let call: String
    /// The errno value the call left.
    public let errno: Int32

    /// An error for the failed `call`, with the `errno` it left.
    public init(call: String, errno: Int32) {
        self.call = call
        self.errno = errno
    }

    public var description: String {
        "\(call) failed: \(String(cString: strerror(errno))) (errno \(errno))"
    }
}

/// The outcome of a non-blocking operation: done, or the kernel said EAGAIN.
package enum IOResult<Value> {
    case completed(Value)
    case wouldBlock
}

extension IOResult: Sendable where Value: Sendable {}
extension IOResult: Equatable where Value: Equatable {}

/// Runs a raw syscall: retries EINTR, reads errno at once after a -1, and throws it typed.
@inline(__always)
package func systemCall<Result: FixedWidthInteger>(
    _ name: StaticString, _ body: () -> Result
) throws(SystemError) -> Result {
    while true {
        let result = body()
        if result != -1 { return result }
        let code = Glibc.errno
        if code == EINTR { continue }
        throw SystemError(call: "\(name)", errno: code)
    }
}

/// Like `systemCall`, but EAGAIN/EWOULDBLOCK becomes `.wouldBlock` rather than an error.
@inline(__always)
package func nonBlockingCall<Result: FixedWidthInteger>(
    _ name: StaticString, _ body: () -> Result
) throws(SystemError) -> IOResult<Result> {
    while true {
        let result = body()
        if result != -1 { return .completed(result) }
        let code = Glibc.errno
        if code == EINTR { continue }
        if code == EAGAIN || code == EWOULDBLOCK { return .wouldBlock }
        throw SystemError(call: "\(name)", errno: code)
    }
}
