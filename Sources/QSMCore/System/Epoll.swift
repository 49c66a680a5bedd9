import CQSMLinux

/// Owner of an epoll instance and of a preallocated event array it waits into.
///
/// Each registration carries a 64-bit token chosen by the caller (the event core packs a
/// slot index with a generation, so an event for a descriptor that was closed and reused
/// in the meantime is recognised as stale).
final class Epoll {
    let descriptor: Int32
    private let events: UnsafeMutablePointer<cqsm_epoll_event>
    let eventCapacity: Int

    struct Interest: OptionSet {
        let rawValue: UInt32
        static let readable = Interest(rawValue: UInt32(CQSM_EPOLLIN))
        static let writable = Interest(rawValue: UInt32(CQSM_EPOLLOUT))
    }

    struct Event {
        let token: UInt64
        let flags: UInt32
        var isReadable: Bool { flags & UInt32(CQSM_EPOLLIN) != 0 }
        var isWritable: Bool { flags & UInt32(CQSM_EPOLLOUT) != 0 }
        var isError: Bool { flags & UInt32(CQSM_EPOLLERR | CQSM_EPOLLHUP) != 0 }
    }

    init(eventCapacity: Int = Int(CQSM_MAX_EPOLL_BATCH)) throws(SystemError) {
        descriptor = try systemCall("epoll_create1") { cqsm_epoll_create() }
        self.eventCapacity = min(eventCapacity, Int(CQSM_MAX_EPOLL_BATCH))
        events = .allocate(capacity: self.eventCapacity)
    }

    deinit {
        events.deallocate()
        closeDescriptor(descriptor)
    }

    func add(_ fd: Int32, interest: Interest, token: UInt64) throws(SystemError) {
        _ = try systemCall("epoll_ctl(ADD)") {
            cqsm_epoll_ctl(descriptor, Int32(CQSM_EPOLL_CTL_ADD), fd, interest.rawValue, token)
        }
    }

    func modify(_ fd: Int32, interest: Interest, token: UInt64) throws(SystemError) {
        _ = try systemCall("epoll_ctl(MOD)") {
            cqsm_epoll_ctl(descriptor, Int32(CQSM_EPOLL_CTL_MOD), fd, interest.rawValue, token)
        }
    }

    func remove(_ fd: Int32) throws(SystemError) {
        _ = try systemCall("epoll_ctl(DEL)") {
            cqsm_epoll_ctl(descriptor, Int32(CQSM_EPOLL_CTL_DEL), fd, 0, 0)
        }
    }

    /// Waits up to `timeoutNanoseconds` (-1: forever, 0: poll); returns how many events
    /// are ready, readable through `event(at:)` until the next call.
    func wait(timeoutNanoseconds: Int64) throws(SystemError) -> Int {
        let count = try systemCall("epoll_pwait2") {
            cqsm_epoll_wait(descriptor, events, Int32(eventCapacity), timeoutNanoseconds)
        }
        return Int(count)
    }

    func event(at index: Int) -> Event {
        Event(token: events[index].data, flags: events[index].events)
    }
}
