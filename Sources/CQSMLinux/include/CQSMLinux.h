// The one C target: Linux calls that Swift's Glibc module does not export, and the
// CPU's SHA instructions (sha256_x86.c).
//
// Swift cannot see `struct mmsghdr`, `recvmmsg` or `sendmmsg` (they need _GNU_SOURCE,
// which a header cannot turn on for the already-built Glibc module), nor the epoll and
// eventfd headers. This shim mirrors the few types with identical layout and forwards
// each call unchanged; errno is left as the kernel set it, for Swift to read at once.
#ifndef CQSM_LINUX_H
#define CQSM_LINUX_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Same layout as `struct mmsghdr` (checked by a static assert in the .c file).
typedef struct {
    struct msghdr msg_hdr;
    unsigned int msg_len;
} cqsm_mmsghdr;

/// An epoll event without the x86-64 `packed` attribute, which Swift imports poorly.
typedef struct {
    uint32_t events;
    uint64_t data;
} cqsm_epoll_event;

enum {
    CQSM_EPOLLIN = 0x001,
    CQSM_EPOLLOUT = 0x004,
    CQSM_EPOLLERR = 0x008,
    CQSM_EPOLLHUP = 0x010,
    CQSM_EPOLL_CTL_ADD = 1,
    CQSM_EPOLL_CTL_DEL = 2,
    CQSM_EPOLL_CTL_MOD = 3,
    CQSM_MSG_TRUNC = 0x20,
    CQSM_MSG_WAITFORONE = 0x10000,
    CQSM_IP_MULTICAST_ALL = 49,
    CQSM_UDP_SEGMENT = 103,
    CQSM_UDP_GRO = 104,
    CQSM_MAX_EPOLL_BATCH = 256,
};

int cqsm_epoll_create(void);
int cqsm_epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t data);
/// Waits up to `timeout_ns` nanoseconds (-1 forever, 0 poll) with nanosecond precision
/// through epoll_pwait2, falling back to epoll_wait (rounded up to whole milliseconds)
/// on kernels without it. At most CQSM_MAX_EPOLL_BATCH events are returned.
int cqsm_epoll_wait(int epfd, cqsm_epoll_event *events, int max_events, int64_t timeout_ns);

int cqsm_eventfd(void);
int cqsm_recvmmsg(int fd, cqsm_mmsghdr *msgs, unsigned int count, int flags);
int cqsm_sendmmsg(int fd, cqsm_mmsghdr *msgs, unsigned int count, int flags);

/// Bytes of control space one UDP_SEGMENT option takes (CMSG_SPACE of a uint16_t).
enum { CQSM_UDP_SEGMENT_CONTROL_BYTES = 24 };
/// Makes `message` carry UDP generic segmentation offload: the kernel cuts its payload
/// into datagrams of `segment_bytes` (the last may be shorter). `control` must hold
/// CQSM_UDP_SEGMENT_CONTROL_BYTES and outlive the send.
void cqsm_set_udp_segment(struct msghdr *message, void *control, uint16_t segment_bytes);
/// Bytes of control space for receiving one UDP_GRO option (CMSG_SPACE of an int).
enum { CQSM_UDP_GRO_CONTROL_BYTES = 24 };
/// The segment size of a coalesced datagram received into `message` (its UDP_GRO
/// control message), or 0 if it is a single datagram.
int cqsm_udp_gro_segment_bytes(const struct msghdr *message);

/// unshare(CLONE_NEWNET) for the calling thread; threads and processes it creates
/// afterwards inherit the new namespace.
int cqsm_unshare_network(void);
/// Sets IFF_UP on interface `name` in the calling thread's network namespace.
int cqsm_interface_up(const char *name);
/// The inode of the calling thread's network namespace (identifies it), or -1.
int64_t cqsm_network_namespace_id(void);
/// accept4 with SOCK_NONBLOCK | SOCK_CLOEXEC.
int cqsm_accept(int fd);
/// Returns a non-blocking eventfd that becomes readable when SIGINT or SIGTERM arrives
/// (the handler only writes to it), and ignores SIGPIPE so a closed peer is an EPIPE
/// error rather than a dead process. Call once per process.
int cqsm_stop_signal_eventfd(void);
/// pipe2(fds, O_CLOEXEC): a pipe whose ends no child inherits unless given them.
int cqsm_pipe_cloexec(int fds[2]);
/// posix_spawn with stdin/stdout redirected, an empty signal mask and default signal
/// dispositions in the child. Returns 0 or an errno value.
int cqsm_spawn(pid_t *pid, const char *path, int stdin_fd, int stdout_fd, char *const argv[], char *const envp[]);
/// Ignores SIGPIPE: writing to a closed pipe or socket then fails with EPIPE.
void cqsm_ignore_sigpipe(void);
/// Asks the kernel to SIGKILL this process when its parent dies (worker processes of
/// a benchmark must never outlive it). Returns 0 or -1 with errno.
int cqsm_exit_with_parent(void);
/// Names the calling thread (at most 15 bytes are kept).
void cqsm_set_thread_name(const char *name);
/// The kernel thread id of the caller.
int64_t cqsm_gettid(void);

/// 1 if this CPU has the SHA extensions (and the SSSE3/SSE4.1 they are used with).
int cqsm_cpu_has_sha_extensions(void);
/// Compresses `blocks` 64-byte blocks at `data` into the SHA-256 state `state` (eight
/// words, FIPS 180-4 order) with the SHA extensions. Only when the check above says 1.
void cqsm_sha256_blocks_sha_extensions(uint32_t *state, const uint8_t *data, size_t blocks);

/// 1 if this CPU has the AES and carry-less multiply instructions (and SSSE3/SSE4.1),
/// which the AES-128-GCM functions below need (aes_gcm_x86.c).
int cqsm_cpu_has_aes_gcm(void);
/// 1 if this CPU can also hash sixteen blocks at a time (VPCLMULQDQ with AVX-512, and
/// the OS saves that state).
int cqsm_cpu_has_wide_ghash(void);
/// Expands a 16-byte key into a 512-byte context (round keys and hash-key powers); the
/// wide hash is used where the CPU has it.
void cqsm_aes128_gcm_init(uint8_t *context, const uint8_t *key);
/// Turns the wide hash of an initialized context off (0) or back on (1, only where the
/// CPU has it): for tests that compare both paths.
void cqsm_aes128_gcm_set_wide(uint8_t *context, int enabled);
/// Encrypts `length` bytes (`ciphertext` may equal `plaintext`) under a 12-byte nonce,
/// authenticating `aad` too, and writes the 16-byte tag.
void cqsm_aes128_gcm_seal(const uint8_t *context, const uint8_t *nonce, const uint8_t *aad, size_t aad_length,
                          const uint8_t *plaintext, uint8_t *ciphertext, size_t length, uint8_t *tag);
/// Checks the tag (in constant time) and only then decrypts; 1 if authentic, else 0 and
/// `plaintext` untouched.
int cqsm_aes128_gcm_open(const uint8_t *context, const uint8_t *nonce, const uint8_t *aad, size_t aad_length,
                         const uint8_t *ciphertext, uint8_t *plaintext, size_t length, const uint8_t *tag);

/// Fixes glibc's mmap threshold at `bytes` (mallopt M_MMAP_THRESHOLD), which also stops
/// glibc raising it each time a large block is freed. Returns 1 on success, 0 if refused.
int cqsm_fix_mmap_threshold(int bytes);

/// Asks the processor to bring the first 128 bytes of the object at `address` into its
/// cache for writing (`cqsm_prefetch_for_write`), as a function a pure Swift target can be
/// handed as a `@convention(c)` pointer. Never faults: any address will do.
void cqsm_prefetch_object(const void *address);

/// Asks the processor to bring `bytes` from `address` into its cache for writing
/// (PREFETCHW, one per 64-byte line): a hint only, never a fault, whatever the address.
static inline void cqsm_prefetch_for_write(const void *address, size_t bytes) {
    for (size_t offset = 0; offset < bytes; offset += 64) {
#if defined(__x86_64__)
        // As an instruction: the compiler's builtin emits a read prefetch unless the
        // whole target is built for PRFCHW. Processors without it run it as a no-op.
        __asm__ volatile("prefetchw %0" : : "m"(*((const char *)address + offset)));
#else
        __builtin_prefetch((const char *)address + offset, 1, 3);
#endif
    }
}

#ifdef __cplusplus
}
#endif
#endif
