#if canImport(Glibc)
import Glibc
#endif
import CQSMLinux

/// A plain POSIX thread. The event core runs on one; it is also how a body is run inside
/// a network namespace entered by that thread alone.
package final class SystemThread: @unchecked Sendable {
    private let thread: pthread_t
    private let joined = AtomicFlag()

    private final class Start: @unchecked Sendable {
        let name: String
        let body: @Sendable () -> Void
        init(_ name: String, _ body: @escaping @Sendable () -> Void) {
            self.name = String(name.utf8.prefix(15))!
            self.body = body
        }
    }

    /// Starts `body` on a new thread.
    package init(name: String, _ body: @escaping @Sendable () -> Void) throws(SystemError) {
        let start = Unmanaged.passRetained(Start(name, body)).toOpaque()
        var handle = pthread_t()
        let result = pthread_create(&handle, nil, { argument in
            let start = Unmanaged<Start>.fromOpaque(argument!).takeRetainedValue()
            cqsm_set_thread_name(start.name)
            start.body()
            return nil
        }, start)
        guard result == 0 else {
            Unmanaged<Start>.fromOpaque(start).release()
            throw SystemError(call: "pthread_create", errno: result)
        }
        thread = handle
    }

    /// Waits for the thread to finish. Safe to call more than once; called on the thread
    /// itself, it returns at once (the thread is detached when this object goes).
    package func join() {
        guard !isCurrent, joined.setIfClear() else { return }
        pthread_join(thread, nil)
    }

    /// Whether the calling thread is this one.
    package var isCurrent: Bool { pthread_equal(thread, pthread_self()) != 0 }

    deinit {
        if joined.setIfClear() { pthread_detach(thread) }
    }
}

extension SystemThread {
    /// The kernel's id for the calling thread.
    package static var currentThreadID: Int64 { cqsm_gettid() }

    /// Lets other runnable threads have the processor (sched_yield).
    package static func yieldProcessor() { sched_yield() }
}
