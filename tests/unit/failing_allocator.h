/*
 * failing_allocator: a test-only replacement for malloc, calloc, realloc and free.
 *
 * While allocator_armed is set, the allocation numbered failing_allocation (from 0)
 * fails, so a test can walk code through every allocation it makes; blocks that this
 * program's own code (or libc on its behalf) allocates while armed are tracked until
 * freed, so a failure path that leaks shows as tracked_count != 0. The sanitizers and
 * valgrind bring their own allocators, so under them SANITIZED is defined, nothing
 * here is compiled, and tests that need it skip themselves.
 *
 * Include it in exactly one file of a test program: it defines the allocator.
 */
#ifndef JOBGATE_TESTS_FAILING_ALLOCATOR_H
#define JOBGATE_TESTS_FAILING_ALLOCATOR_H

#include <dlfcn.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif

#ifndef SANITIZED
/* volatile: the compiler takes strdup() and friends for builtins that read no globals,
 * and would otherwise drop the stores that disarm the allocator around them. */
static volatile int allocator_armed;
static long allocations_made;
static long failing_allocation = -1;

#define TRACKED_MAX 4096

static void *(*next_malloc)(size_t);
static void *(*next_calloc)(size_t, size_t);
static void *(*next_realloc)(void *, size_t);
static void (*next_free)(void *);

static void *tracked[TRACKED_MAX];
static size_t tracked_count;
static int tracking_overflowed;

/* dlsym() may allocate while it resolves the real allocator; this serves it until then. */
static unsigned char bootstrap_arena[4096];
static size_t bootstrap_used;
static int resolving;

static void *bootstrap_allocate(size_t size)
{
    size = (size + 15) & ~(size_t)15;
    if (size > sizeof bootstrap_arena - bootstrap_used)
        return NULL;
    void *block = bootstrap_arena + bootstrap_used;
    bootstrap_used += size;
    return block;
}

static int in_bootstrap_arena(const void *block)
{
    const unsigned char *byte = block;
    return byte >= bootstrap_arena && byte < bootstrap_arena + sizeof bootstrap_arena;
}

static int resolve_allocator(void)
{
    if (next_free != NULL)
        return 1;
    if (resolving)
        return 0;
    resolving = 1;
    next_malloc = (void *(*)(size_t))dlsym(RTLD_NEXT, "malloc");
    next_calloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "calloc");
    next_realloc = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
    next_free = (void (*)(void *))dlsym(RTLD_NEXT, "free");
    resolving = 0;
    return next_free != NULL;
}

/* Whether code at address belongs to this program or to libc, not to another library. */
static int is_own_code(const void *address)
{
    static void *program_base, *libc_base;
    Dl_info info;

    if (program_base == NULL && dladdr((void *)is_own_code, &info) != 0)
        program_base = info.dli_fbase;
    if (libc_base == NULL && dladdr((void *)next_free, &info) != 0)
        libc_base = info.dli_fbase;
    if (dladdr(address, &info) == 0)
        return 0;
    return info.dli_fbase == program_base || info.dli_fbase == libc_base;
}

static void track(void *block, const void *caller)
{
    if (block == NULL || !allocator_armed || !is_own_code(caller))
        return;
    if (tracked_count == TRACKED_MAX) {
        tracking_overflowed = 1;
        return;
    }
    tracked[tracked_count++] = block;
}

static int untrack(void *block)
{
    for (size_t i = 0; i < tracked_count; i++) {
        if (tracked[i] == block) {
            tracked[i] = tracked[--tracked_count];
            return 1;
        }
    }
    return 0;
}

static int allocation_fails(void)
{
    if (!allocator_armed)
        return 0;
    if (allocations_made++ != failing_allocation)
        return 0;
    errno = ENOMEM;
    return 1;
}

void *malloc(size_t size)
{
    if (!resolve_allocator())
        return bootstrap_allocate(size);
    if (allocation_fails())
        return NULL;
    void *block = next_malloc(size);
    track(block, __builtin_return_address(0));
    return block;
}

void *calloc(size_t count, size_t size)
{
    if (!resolve_allocator()) {
        if (size != 0 && count > SIZE_MAX / size)
            return NULL;
        return bootstrap_allocate(count * size);
    }
    if (allocation_fails())
        return NULL;
    void *block = next_calloc(count, size);
    track(block, __builtin_return_address(0));
    return block;
}

void *realloc(void *block, size_t size)
{
    if (allocation_fails())
        return NULL;
    int was_tracked = block != NULL && untrack(block);
    void *moved = next_realloc(block, size);
    if (moved == NULL && was_tracked)
        tracked[tracked_count++] = block;
    else if (moved != NULL && was_tracked)
        tracked[tracked_count++] = moved;
    else
        track(moved, __builtin_return_address(0));
    return moved;
}

void free(void *block)
{
    if (block == NULL || in_bootstrap_arena(block) || !resolve_allocator())
        return;
    untrack(block);
    next_free(block);
}

/*
 * Whether an armed allocation fails here. Under valgrind, whose allocator replaces this
 * one, none can, and a test that needs failures should skip.
 */
static inline int allocator_can_fail(void)
{
    void *(*volatile allocate)(size_t) = malloc;

    failing_allocation = 0;
    allocations_made = 0;
    allocator_armed = 1;
    void *probe = allocate(1);
    allocator_armed = 0;
    if (probe == NULL)
        return 1;
    free(probe);
    return 0;
}

#endif

#endif
