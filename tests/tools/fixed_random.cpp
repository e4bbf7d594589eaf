// A test tool, preloaded into a memcached under test (LD_PRELOAD): the
// first FIXED_RANDOM_CALLS calls to random() (default 3) return
// FIXED_RANDOM_VALUE (default 42), the later ones what random() returns.
// The replication code draws its instance id from the first two and its
// node id from the third, so that two nodes started with it take the
// same node id, a clash that random ids make once in 256 pairs. Later
// draws, such as the new id a node picks after the clash, are random
// again: a node that drew the clashing id again would loop.
//
// It interposes a C function, so random() is extern "C"; it uses nothing
// of the C++ library, which it does not load (--as-needed).
#include <cstdlib>
#include <dlfcn.h>

namespace {

using random_function = long (*)();

random_function real_random = nullptr;
int fixed_calls = 3;
long fixed_value = 42;

__attribute__((constructor)) void fixed_random_init()
{
    const char *calls = std::getenv("FIXED_RANDOM_CALLS");
    const char *value = std::getenv("FIXED_RANDOM_VALUE");

    real_random = reinterpret_cast<random_function>(dlsym(RTLD_NEXT, "random"));
    if (calls != nullptr)
        fixed_calls = std::atoi(calls);
    if (value != nullptr)
        fixed_value = std::atol(value);
}

} // namespace

// glibc declares it noexcept for C++; so must the interposer be.
extern "C" long random() noexcept
{
    // Called from the main thread only, before the other threads start.
    if (fixed_calls > 0) {
        fixed_calls--;
        return fixed_value;
    }
    return real_random();
}
