/*
 * A test tool, preloaded into a memcached under test (LD_PRELOAD): the
 * first FIXED_RANDOM_CALLS calls to random() (default 3) return
 * FIXED_RANDOM_VALUE (default 42), the later ones what random() returns.
 * The replication code draws its instance id from the first two and its
 * node id from the third, so that two nodes started with it take the
 * same node id, a clash that random ids make once in 256 pairs. Later
 * draws, such as the new id a node picks after the clash, are random
 * again: a node that drew the clashing id again would loop.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>

static long (*real_random)(void);
static int fixed_calls = 3;
static long fixed_value = 42;

__attribute__((constructor)) static void fixed_random_init(void) {
    const char *calls = getenv("FIXED_RANDOM_CALLS");
    const char *value = getenv("FIXED_RANDOM_VALUE");

    real_random = (long (*)(void)) dlsym(RTLD_NEXT, "random");
    if (calls != NULL)
        fixed_calls = atoi(calls);
    if (value != NULL)
        fixed_value = atol(value);
}

long random(void) {
    /* Called from the main thread only, before the other threads start. */
    if (fixed_calls > 0) {
        fixed_calls--;
        return fixed_value;
    }
    return real_random();
}
