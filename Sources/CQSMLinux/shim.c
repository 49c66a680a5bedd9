#define _GNU_SOURCE
#include "CQSMLinux.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
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

void cqsm_set_thread_name(const char *name) {
    char truncated[16];
    strncpy(truncated, name, 15);
    truncated[15] = 0;
    pthread_setname_np(pthread_self(), truncated);
}
