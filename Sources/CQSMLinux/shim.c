#define _GNU_SOURCE
#include "CQSMLinux.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stddef.h>
#include <stdio.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <pthread.h>
#include <unistd.h>

_Static_assert(sizeof(cqsm_mmsghdr) == sizeof(struct mmsghdr), "mmsghdr layout");
_Static_assert(offsetof(cqsm_mmsghdr, msg_len) == offsetof(struct mmsghdr, msg_len), "mmsghdr layout");
_Static_assert(CQSM_EPOLLIN == EPOLLIN && CQSM_EPOLLOUT == EPOLLOUT, "epoll flags");
_Static_assert(CQSM_EPOLLERR == EPOLLERR && CQSM_EPOLLHUP == EPOLLHUP, "epoll flags");
_Static_assert(CQSM_EPOLL_CTL_ADD == EPOLL_CTL_ADD && CQSM_EPOLL_CTL_DEL == EPOLL_CTL_DEL &&
               CQSM_EPOLL_CTL_MOD == EPOLL_CTL_MOD, "epoll ops");
_Static_assert(CQSM_MSG_TRUNC == MSG_TRUNC, "MSG_TRUNC");
_Static_assert(CQSM_IP_MULTICAST_ALL == IP_MULTICAST_ALL, "IP_MULTICAST_ALL");
#include <netinet/udp.h>
_Static_assert(CQSM_UDP_SEGMENT == UDP_SEGMENT && CQSM_UDP_GRO == UDP_GRO, "UDP offload options");

_Static_assert(CQSM_UDP_SEGMENT_CONTROL_BYTES >= CMSG_SPACE(sizeof(uint16_t)), "UDP_SEGMENT control space");

#ifndef SOL_UDP
#define SOL_UDP 17
#endif

void cqsm_set_udp_segment(struct msghdr *message, void *control, uint16_t segment_bytes) {
    memset(control, 0, CQSM_UDP_SEGMENT_CONTROL_BYTES);
    message->msg_control = control;
    message->msg_controllen = CMSG_SPACE(sizeof(uint16_t));
    struct cmsghdr *header = CMSG_FIRSTHDR(message);
    header->cmsg_level = SOL_UDP;
    header->cmsg_type = UDP_SEGMENT;
    header->cmsg_len = CMSG_LEN(sizeof(uint16_t));
    memcpy(CMSG_DATA(header), &segment_bytes, sizeof segment_bytes);
}

_Static_assert(CQSM_UDP_GRO_CONTROL_BYTES >= CMSG_SPACE(sizeof(int)), "UDP_GRO control space");

int cqsm_udp_gro_segment_bytes(const struct msghdr *message) {
    for (struct cmsghdr *header = CMSG_FIRSTHDR((struct msghdr *)message); header != NULL;
         header = CMSG_NXTHDR((struct msghdr *)message, header)) {
        if (header->cmsg_level == SOL_UDP && header->cmsg_type == UDP_GRO) {
            int size = 0;
            memcpy(&size, CMSG_DATA(header), sizeof size);
            return size;
        }
    }
    return 0;
}

int cqsm_epoll_create(void) { return epoll_create1(EPOLL_CLOEXEC); }

int cqsm_epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t data) {
    struct epoll_event event;
    memset(&event, 0, sizeof event);
    event.events = events;
    event.data.u64 = data;
    return epoll_ctl(epfd, op, fd, &event);
}

static int pwait2_missing = 0;

int cqsm_epoll_wait(int epfd, cqsm_epoll_event *events, int max_events, int64_t timeout_ns) {
    struct epoll_event raw[CQSM_MAX_EPOLL_BATCH];
    if (max_events > CQSM_MAX_EPOLL_BATCH) max_events = CQSM_MAX_EPOLL_BATCH;
    if (max_events < 1) { errno = EINVAL; return -1; }
    int n;
    if (!pwait2_missing) {
        struct timespec ts, *tsp = NULL;
        if (timeout_ns >= 0) {
            ts.tv_sec = timeout_ns / 1000000000;
            ts.tv_nsec = timeout_ns % 1000000000;
            tsp = &ts;
        }
        n = epoll_pwait2(epfd, raw, max_events, tsp, NULL);
        if (n < 0 && errno == ENOSYS) pwait2_missing = 1;
    }
    if (pwait2_missing) {
        int ms = -1;
        if (timeout_ns >= 0) {
            int64_t rounded = (timeout_ns + 999999) / 1000000;
            ms = rounded > 2000000000 ? 2000000000 : (int)rounded;
        }
        n = epoll_wait(epfd, raw, max_events, ms);
    }
    for (int i = 0; i < n; i++) {
        events[i].events = raw[i].events;
        events[i].data = raw[i].data.u64;
    }
    return n;
}

int cqsm_eventfd(void) { return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC); }

int cqsm_recvmmsg(int fd, cqsm_mmsghdr *msgs, unsigned int count, int flags) {
    return recvmmsg(fd, (struct mmsghdr *)msgs, count, flags, NULL);
}

int cqsm_sendmmsg(int fd, cqsm_mmsghdr *msgs, unsigned int count, int flags) {
    return sendmmsg(fd, (struct mmsghdr *)msgs, count, flags);
}

int cqsm_unshare_network(void) { return unshare(CLONE_NEWNET); }

int cqsm_interface_up(const char *name) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct ifreq request;
    memset(&request, 0, sizeof request);
    strncpy(request.ifr_name, name, IFNAMSIZ - 1);
    int result = ioctl(fd, SIOCGIFFLAGS, &request);
    if (result == 0) {
        request.ifr_flags |= IFF_UP | IFF_RUNNING;
        result = ioctl(fd, SIOCSIFFLAGS, &request);
    }
    int saved = errno;
    close(fd);
    errno = saved;
    return result;
}

int64_t cqsm_network_namespace_id(void) {
    struct stat info;
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%ld/ns/net", (long)syscall(SYS_gettid));
    if (stat(path, &info) != 0) return -1;
    return (int64_t)info.st_ino;
}

int64_t cqsm_gettid(void) { return (int64_t)syscall(SYS_gettid); }

int cqsm_exit_with_parent(void) { return prctl(PR_SET_PDEATHSIG, SIGKILL); }

void cqsm_set_thread_name(const char *name) {
    char truncated[16];
    strncpy(truncated, name, 15);
    truncated[15] = 0;
    pthread_setname_np(pthread_self(), truncated);
}

int cqsm_accept(int fd) { return accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC); }

static int stop_signal_fd = -1;

static void on_stop_signal(int signal_number) {
    (void)signal_number;
    int saved = errno;
    uint64_t one = 1;
    ssize_t ignored = write(stop_signal_fd, &one, sizeof one);
    (void)ignored;
    errno = saved;
}

int cqsm_stop_signal_eventfd(void) {
    if (stop_signal_fd >= 0) return stop_signal_fd;
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0) return -1;
    stop_signal_fd = fd;
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_stop_signal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    sigaction(SIGINT, &action, NULL);
    sigaction(SIGTERM, &action, NULL);
    signal(SIGPIPE, SIG_IGN);
    // A parent may have started us with these blocked (posix_spawn inherits the mask).
    sigset_t stops;
    sigemptyset(&stops);
    sigaddset(&stops, SIGINT);
    sigaddset(&stops, SIGTERM);
    pthread_sigmask(SIG_UNBLOCK, &stops, NULL);
    return fd;
}

void cqsm_ignore_sigpipe(void) { signal(SIGPIPE, SIG_IGN); }

int cqsm_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

int cqsm_spawn(pid_t *pid, const char *path, int stdin_fd, int stdout_fd, char *const argv[], char *const envp[]) {
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attributes;
    posix_spawn_file_actions_init(&actions);
    posix_spawnattr_init(&attributes);
    posix_spawn_file_actions_adddup2(&actions, stdin_fd, 0);
    posix_spawn_file_actions_adddup2(&actions, stdout_fd, 1);
    // The child starts with no signal blocked and default dispositions, whatever the
    // spawning thread had (test runners block some; this process ignores SIGPIPE).
    sigset_t empty, defaults;
    sigemptyset(&empty);
    sigfillset(&defaults);
    posix_spawnattr_setsigmask(&attributes, &empty);
    posix_spawnattr_setsigdefault(&attributes, &defaults);
    posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    int result = posix_spawn(pid, path, &actions, &attributes, argv, envp);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attributes);
    return result;
}

int cqsm_fix_mmap_threshold(int bytes) { return mallopt(M_MMAP_THRESHOLD, bytes); }

void cqsm_prefetch_object(const void *address) {
    if (address != NULL) cqsm_prefetch_for_write(address, 128);
}
