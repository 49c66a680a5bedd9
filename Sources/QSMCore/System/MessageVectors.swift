#if canImport(Glibc)
import Glibc
#endif
import CQSMLinux

/// The preallocated `mmsghdr`, `iovec` and `sockaddr_in` arrays of a batched socket call
/// (`recvmmsg`/`sendmmsg`): entry `i`'s header points at iovec `i` (one each) and at
/// address `i`. Owned by a batch class, which calls `deallocate()` from its deinit.
struct MessageVectors {
    let headers: UnsafeMutablePointer<cqsm_mmsghdr>
    let vectors: UnsafeMutablePointer<iovec>
    let addresses: UnsafeMutablePointer<sockaddr_in>

    init(capacity: Int) {
        headers = .allocate(capacity: capacity)
        headers.initialize(repeating: cqsm_mmsghdr(), count: capacity)
        vectors = .allocate(capacity: capacity)
        vectors.initialize(repeating: iovec(), count: capacity)
        addresses = .allocate(capacity: capacity)
        addresses.initialize(repeating: sockaddr_in(), count: capacity)
        for index in 0..<capacity {
            headers[index].msg_hdr.msg_name = UnsafeMutableRawPointer(addresses + index)
            headers[index].msg_hdr.msg_iov = vectors + index
            headers[index].msg_hdr.msg_iovlen = 1
        }
    }

    func deallocate() {
        headers.deallocate()
        vectors.deallocate()
        addresses.deallocate()
    }
}
