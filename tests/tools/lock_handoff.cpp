// A test tool, preloaded into a memcached under test (LD_PRELOAD): after a
// thread releases a mutex, it sleeps a little now and then, so that
// another thread waiting for that mutex takes it first. Without it, glibc
// lets the releasing thread take the mutex straight back, and a window
// between two sections under one lock (a write and what it queues for the
// peers, say) is a few instructions wide: a race there happens in
// production under load, and almost never in a test. With it, writes
// that race on a few keys land in such windows within seconds.
//
// LOCK_HANDOFF_EVERY=N sleeps after one unlock in N (default 4), for
// LOCK_HANDOFF_USEC microseconds (default 20).
//
// It interposes a C function, so pthread_mutex_unlock() is extern "C"; it
// uses nothing of the C++ library, which it does not load (--as-needed).
#include <cstdlib>
#include <dlfcn.h>
#include <pthread.h>
#include <unistd.h>

namespace {

using unlock_function = int (*)(pthread_mutex_t *);

unlock_function real_unlock = nullptr;
unsigned int every = 4;
useconds_t usec = 20;

// When the library is loaded; or at the first unlock, if a constructor of
// another library unlocks a mutex before this one has run.
__attribute__((constructor)) void lock_handoff_init()
{
    const char *e = std::getenv("LOCK_HANDOFF_EVERY");
    const char *u = std::getenv("LOCK_HANDOFF_USEC");

    real_unlock = reinterpret_cast<unlock_function>(dlsym(RTLD_NEXT, "pthread_mutex_unlock"));
    if (e != nullptr && std::atoi(e) > 0)
        every = static_cast<unsigned int>(std::atoi(e));
    if (u != nullptr && std::atoi(u) >= 0)
        usec = static_cast<useconds_t>(std::atoi(u));
}

} // namespace

// glibc declares it noexcept for C++; so must the interposer be.
extern "C" int pthread_mutex_unlock(pthread_mutex_t *mutex) noexcept
{
    static thread_local unsigned int seed = 0;

    if (real_unlock == nullptr)
        lock_handoff_init();
    int rc = real_unlock(mutex);
    if (seed == 0)
        seed = static_cast<unsigned int>(reinterpret_cast<size_t>(&seed)) | 1;
    if (rand_r(&seed) % every == 0)
        usleep(usec);
    return rc;
}
