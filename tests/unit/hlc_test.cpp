// The hybrid logical clock that gives every write its version (hlc.h).
#include <catch2/catch.hpp>

#include "hlc.h"

#include <cstdint>

namespace {
// 2026-11-24T00:00:00Z in milliseconds; any time after HLC_EPOCH_MS will do.
const uint64_t now_ms = 1795478400000ULL;
// One step of the logical counter.
const uint64_t tick = 1ULL << HLC_NODE_BITS;

uint64_t millis_of(uint64_t version) { return version >> HLC_TIME_SHIFT; }
uint64_t logical_of(uint64_t version) { return (version >> HLC_NODE_BITS) & ((1ULL << HLC_LOGICAL_BITS) - 1); }

// Issues n versions at the wall times time_at(i); returns the index of the
// first one not larger than its predecessor, or -1 if they all increase.
template <typename TimeAt>
long first_not_increasing(hlc_clock *clock, long n, TimeAt time_at)
{
    uint64_t previous = hlc_next(clock, time_at(0));
    for (long i = 1; i < n; i++) {
        uint64_t v = hlc_next(clock, time_at(i));
        if (v <= previous)
            return i;
        previous = v;
    }
    return -1;
}
} // namespace

TEST_CASE("a version carries the wall time, then a logical counter, then the node id", "[hlc]")
{
    hlc_clock clock;
    hlc_init(&clock, 200);

    uint64_t v = hlc_next(&clock, now_ms);

    CHECK(millis_of(v) == now_ms - HLC_EPOCH_MS);
    CHECK(logical_of(v) == 0);
    CHECK(hlc_node_of(v) == 200);
}

TEST_CASE("a node's versions always increase, even when the wall clock stands still or goes back", "[hlc]")
{
    hlc_clock clock;
    hlc_init(&clock, 7);

    // Still, then back by 1 s, then back by 2 s, over and over.
    CHECK(first_not_increasing(&clock, 10000, [](long i) { return now_ms - (i % 3) * 1000; }) == -1);
}

TEST_CASE("a burst of writes within one millisecond borrows from the next one rather than wrapping", "[hlc]")
{
    hlc_clock clock;
    hlc_init(&clock, 5);
    const long burst = (1L << HLC_LOGICAL_BITS) + 1000;   // more than one millisecond holds

    CHECK(first_not_increasing(&clock, burst, [](long) { return now_ms; }) == -1);
    uint64_t last = hlc_next(&clock, now_ms);
    CHECK(millis_of(last) == now_ms - HLC_EPOCH_MS + 1);
    CHECK(hlc_node_of(last) == 5);
}

TEST_CASE("when the wall clock moves on, versions follow it and the logical counter starts again", "[hlc]")
{
    hlc_clock clock;
    hlc_init(&clock, 5);
    for (int i = 0; i < 100; i++)
        hlc_next(&clock, now_ms);

    uint64_t v = hlc_next(&clock, now_ms + 1000);

    CHECK(millis_of(v) == now_ms + 1000 - HLC_EPOCH_MS);
    CHECK(logical_of(v) == 0);
}

TEST_CASE("after observing a peer's version a node only issues larger ones, with its own node id", "[hlc]")
{
    hlc_clock behind, ahead;
    hlc_init(&behind, 1);
    hlc_init(&ahead, 2);
    uint64_t peer_version = hlc_next(&ahead, now_ms + 60000);   // a clock one minute fast

    hlc_observe(&behind, peer_version);
    uint64_t v = hlc_next(&behind, now_ms);

    CHECK(v > peer_version);
    CHECK(hlc_node_of(v) == 1);
}

TEST_CASE("observing an older version changes nothing", "[hlc]")
{
    hlc_clock clock, old;
    hlc_init(&clock, 4);
    hlc_init(&old, 9);
    uint64_t v1 = hlc_next(&clock, now_ms);

    hlc_observe(&clock, hlc_next(&old, now_ms - 1000));
    uint64_t v2 = hlc_next(&clock, now_ms);

    CHECK(v2 == v1 + tick);
}

TEST_CASE("concurrent writes are ordered by time, then by node id, whichever node compares them", "[hlc]")
{
    hlc_clock a, b;
    hlc_init(&a, 3);
    hlc_init(&b, 9);

    SECTION("at the same instant the larger node id wins") {
        uint64_t va = hlc_next(&a, now_ms);
        uint64_t vb = hlc_next(&b, now_ms);
        CHECK(vb > va);
    }
    SECTION("a millisecond later wins whatever the node ids") {
        uint64_t vb = hlc_next(&b, now_ms);
        uint64_t va = hlc_next(&a, now_ms + 1);
        CHECK(va > vb);
    }
}

TEST_CASE("a clock set before 2020 still issues increasing versions, from the logical counter alone", "[hlc]")
{
    hlc_clock clock;
    hlc_init(&clock, 6);

    uint64_t first = hlc_next(&clock, 0);
    uint64_t second = hlc_next(&clock, HLC_EPOCH_MS - 1);

    CHECK(first == (tick | 6));
    CHECK(second == (2 * tick | 6));
}

TEST_CASE("a clock pushed to the end of its range saturates instead of wrapping", "[hlc]")
{
    hlc_clock clock;
    hlc_init(&clock, 3);
    hlc_observe(&clock, UINT64_MAX);   // the largest version there is, from anyone

    uint64_t first = hlc_next(&clock, now_ms);
    CHECK(first == (HLC_MAX | 3));
    INFO("every later version is at least as large: the clock stays at its end");
    CHECK(first_not_increasing(&clock, 100, [](long) { return now_ms; }) == 1);
    CHECK(hlc_next(&clock, now_ms) == (HLC_MAX | 3));
    CHECK(hlc_next(&clock, UINT64_MAX) == (HLC_MAX | 3));
}

TEST_CASE("one step before the end of its range the clock takes the last version, not a wrapped one", "[hlc]")
{
    hlc_clock clock;
    hlc_init(&clock, 3);
    hlc_observe(&clock, HLC_MAX - tick / 2);

    CHECK(hlc_next(&clock, now_ms) == (HLC_MAX | 3));
}

TEST_CASE("a wall clock past the year 2577 saturates the version instead of wrapping it", "[hlc]")
{
    hlc_clock clock;
    hlc_init(&clock, 3);
    uint64_t today = hlc_next(&clock, now_ms);

    CHECK(hlc_next(&clock, UINT64_MAX) == (HLC_MAX | 3));
    CHECK(hlc_next(&clock, UINT64_MAX) > today);
}

TEST_CASE("a version more than the bound ahead of the wall clock is too far ahead, one within it is not", "[hlc]")
{
    hlc_clock peer;
    hlc_init(&peer, 2);
    const uint64_t bound = 60000;

    CHECK_FALSE(hlc_too_far_ahead(hlc_next(&peer, now_ms), now_ms, bound));
    CHECK_FALSE(hlc_too_far_ahead(hlc_next(&peer, now_ms + bound), now_ms, bound));
    CHECK(hlc_too_far_ahead(hlc_next(&peer, now_ms + bound + 1), now_ms, bound));
    CHECK(hlc_too_far_ahead(0xFFFFFFFFFFFFFF00ULL, now_ms, bound));
    CHECK(hlc_too_far_ahead(UINT64_MAX, now_ms, bound));
    INFO("a wall clock before 2020 trusts only versions of the first minute after it");
    CHECK(hlc_too_far_ahead(hlc_next(&peer, now_ms), 0, bound));
    CHECK_FALSE(hlc_too_far_ahead(1, 0, bound));
}
