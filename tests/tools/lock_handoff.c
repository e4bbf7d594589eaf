/*
 * A test tool, preloaded into a memcached under test (LD_PRELOAD): after a
 * thread releases a mutex, it sleeps a little now and then, so that
 * another thread waiting for that mutex takes it first. Without it, glibc
 * lets the releasing thread take the mutex straight back, and a window
 * between two sections under one lock (a write and what it queues for the
 * peers, say) is a few instructions wide: a race there happens in
 * production under load, and almost never in a test. With it, writes
 * that race on a few keys land in such windows within seconds.
 *
 * LOCK_HANDOFF_EVERY=N sleeps after one unlock in N (default 4), for
 * LOCK_HANDOFF_USEC microseconds (default 20).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

static int (*real_unlock)(pthread_mutex_t *);
static unsigned int every = 4;
static useconds_t usec = 20;

__attribute__((constructor)) static void lock_handoff_init(void) {
    const char *e = getenv("LOCK_HANDOFF_EVERY");
    const char *u = getenv("LOCK_HANDOFF_USEC");

    real_unlock = (int (*)(pthread_mutex_t *)) dlsym(RTLD_NEXT, "pthread_mutex_unlock");
    if (e != NULL && atoi(e) > 0)
        every = (unsigned int) atoi(e);
    if (u != NULL && atoi(u) >= 0)
        usec = (useconds_t) atoi(u);
}

int pthread_mutex_unlock(pthread_mutex_t *mutex) {
    static __thread unsigned int seed;
    int rc;

    if (real_unlock == NULL)
        lock_handoff_init();
    rc = real_unlock(mutex);
    if (seed == 0)
        seed = (unsigned int) (size_t) &seed | 1;
    if (rand_r(&seed) % every == 0)
        usleep(usec);
    return rc;
}
