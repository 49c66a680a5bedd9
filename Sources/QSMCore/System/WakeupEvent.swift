#if canImport(Glibc)
import Glibc
#endif
import CQSMLinux

/// A non-blocking eventfd that another thread writes to wake the core out of epoll.
/// It is the only descriptor threads other than the core touch.
final class WakeupEvent: Sendable {
    let descriptor: Int32

    init() throws(SystemError) {
        descriptor = try systemCall("eventfd") { cqsm_eventfd() }
    }

    deinit { closeDescriptor(descriptor) }

    /// Adds one to the counter. EAGAIN (counter saturated) still leaves it readable, so
    /// it is not an error; other failures cannot happen on a valid eventfd.
    func signal() {
        var one: UInt64 = 1
        _ = try? nonBlockingCall("write(eventfd)") {
            withUnsafeBytes(of: &one) { Glibc.write(descriptor, $0.baseAddress, 8) }
        }
    }

    /// Resets the counter so the descriptor stops being readable.
    func drain() {
        var value: UInt64 = 0
        _ = try? nonBlockingCall("read(eventfd)") {
            withUnsafeMutableBytes(of: &value) { Glibc.read(descriptor, $0.baseAddress, 8) }
        }
    }
}
