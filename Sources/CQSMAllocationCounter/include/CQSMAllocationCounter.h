#ifndef CQSM_ALLOCATION_COUNTER_H
#define CQSM_ALLOCATION_COUNTER_H

/// Heap allocations (malloc, calloc, realloc of a new block, posix_memalign,
/// aligned_alloc, memalign) made by every thread of this process so far.
///
/// Linked into an executable, this target's definitions of the allocation functions take
/// the place of the C library's for the whole process (the dynamic linker looks in the
/// executable first) and forward to the C library's own (`__libc_malloc` and friends).
/// Built alone as a shared object (see bench/allocation-count.sh) it does the same for
/// any program through LD_PRELOAD.
unsigned long long cqsm_allocation_count(void);

#endif
