// Counts heap allocations by interposing the C library's allocation functions: the
// definitions here are found before glibc's, count, and forward to glibc's exported
// internal entry points. Counting is one relaxed atomic add per call.
#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include "CQSMAllocationCounter.h"

extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t count, size_t size);
extern void *__libc_realloc(void *pointer, size_t size);
extern void __libc_free(void *pointer);
extern void *__libc_memalign(size_t alignment, size_t size);

static _Atomic unsigned long long allocations;

static inline void counted(void) { atomic_fetch_add_explicit(&allocations, 1, memory_order_relaxed); }

unsigned long long cqsm_allocation_count(void) {
    return atomic_load_explicit(&allocations, memory_order_relaxed);
}

void *malloc(size_t size) {
    counted();
    return __libc_malloc(size);
}

void *calloc(size_t count, size_t size) {
    counted();
    return __libc_calloc(count, size);
}

void *realloc(void *pointer, size_t size) {
    // Growing in place is not a new allocation for this count's purpose; a realloc of
    // NULL is a malloc, and a moving realloc allocates: both are counted.
    void *result = __libc_realloc(pointer, size);
    if (pointer == NULL || result != pointer) counted();
    return result;
}

void free(void *pointer) { __libc_free(pointer); }

void *memalign(size_t alignment, size_t size) {
    counted();
    return __libc_memalign(alignment, size);
}

void *aligned_alloc(size_t alignment, size_t size) {
    counted();
    return __libc_memalign(alignment, size);
}

int posix_memalign(void **out, size_t alignment, size_t size) {
    if (alignment == 0 || (alignment & (alignment - 1)) != 0 || alignment % sizeof(void *) != 0) return EINVAL;
    counted();
    void *result = __libc_memalign(alignment, size);
    if (result == NULL) return ENOMEM;
    *out = result;
    return 0;
}

#ifdef CQSM_ALLOCATION_PRELOAD
// As an LD_PRELOAD object: the total goes to the file named by QSM_ALLOCATION_COUNT_FILE
// (appended, one line per process: pid and count) when the process exits normally.
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

__attribute__((destructor)) static void report(void) {
    const char *path = getenv("QSM_ALLOCATION_COUNT_FILE");
    if (path == NULL) return;
    FILE *file = fopen(path, "a");
    if (file == NULL) return;
    fprintf(file, "%d %llu\n", (int)getpid(), cqsm_allocation_count());
    fclose(file);
}
#endif
