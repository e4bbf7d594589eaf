// Semi-synchronous writes (-W <ms>): the reply to a write goes only once
// every peer whose link is online has acknowledged it, or after <ms> at
// most, counted; noreply writes never wait, and without -W nothing
// changes. Tagged [node]: run once per variant.
#include <catch2/catch.hpp>

#include "support/pair.hpp"

#include <chrono>
#include <thread>

using namespace fixture;
using namespace std::chrono_literals;

namespace {

uint64_t stat(const Node &node, const std::string &name)
{
    return std::stoull(replication_stats(node)[name]);
}

bool both_online(const Pair &pair)
{
    return eventually([&] { return all_online(pair.a) && all_online(pair.b); }, 30s);
}

} // namespace

TEST_CASE("with -W, a write acknowledged to its client survives kill -9 of its node, round after round",
          "[node][replication][semi-sync]")
{
    // B waits as long as A, so that its own writes (none here) would too.
    Pair pair({"-W", "2000"});
    REQUIRE(both_online(pair));

    const int rounds = 40;
    int lost = 0, timed_out = 0;
    std::string first_lost;
    for (int round = 0; round < rounds; round++) {
        INFO("round " << round);
        // Keep the link busy: 12.5 MiB of noreply writes ahead of the one
        // that is acknowledged, still in flight when A dies.
        std::string bulk;
        const std::string value(64 * 1024, char('a' + round % 26));
        for (int i = 0; i < 200; i++)
            bulk += "set bulk:" + std::to_string(i) + " 0 0 " + std::to_string(value.size()) + " noreply\r\n" +
                    value + "\r\n";
        const std::string key = "acknowledged:" + std::to_string(round);
        {
            Client a(pair.a);
            a.send_raw(bulk);
            auto started = std::chrono::steady_clock::now();
            REQUIRE(a.set(key, "round " + std::to_string(round)) == "STORED");
            pair.a.kill9();
            // A reply after the whole wait is one B did not acknowledge.
            if (std::chrono::steady_clock::now() - started >= 2s)
                timed_out++;
        }
        // At once, without waiting for anything: B acknowledged it, so B
        // holds it.
        auto held = Client(pair.b).get(key);
        if (!held || held->value != "round " + std::to_string(round)) {
            if (lost++ == 0)
                first_lost = key;
        }

        pair.a.restart();
        REQUIRE(both_online(pair));
    }
    INFO(lost << " of " << rounds << " acknowledged writes were not on the peer when their node died; the first: "
              << first_lost);
    CHECK(lost == 0);
    CHECK(timed_out == 0);
}

TEST_CASE("with -W and a frozen peer, a write returns once the wait is over, and is counted",
          "[node][replication][semi-sync]")
{
    Pair pair({"-W", "300"});
    REQUIRE(both_online(pair));
    Client a(pair.a);

    // Every acknowledged write waited for B, and none waited long.
    for (int i = 0; i < 100; i++)
        REQUIRE(a.set("before:" + std::to_string(i), "v") == "STORED");
    CHECK(a.del("before:0") == "DELETED");
    CHECK(a.incr("counter", 1) == "NOT_FOUND");
    CHECK(a.set("counter", "1") == "STORED");
    CHECK(a.incr("counter", 1) == "2");
    CHECK(stat(pair.a, "sync_wait_ms") == 300);
    CHECK(stat(pair.a, "sync_waits") == 103);
    CHECK(stat(pair.a, "sync_timeouts") == 0);

    pair.b.freeze();
    // The link stays online (B is only silent): each write waits for the
    // whole 300 ms, then is answered anyway and counted.
    CHECK(a.set("while-frozen", "v") == "STORED");
    CHECK(a.del("before:1") == "DELETED");
    CHECK(stat(pair.a, "sync_timeouts") == 2);
    // A reply the client does not want is not waited for, nor counted.
    a.send_raw("set noreply-while-frozen 0 0 1 noreply\r\nv\r\n");
    CHECK(a.get("noreply-while-frozen"));
    CHECK(stat(pair.a, "sync_waits") == 105);
    // Reads never wait, and the node serves other clients meanwhile.
    Client other(pair.a);
    CHECK(other.get("before:2"));

    pair.b.thaw();
    CHECK(eventually([&] { return stat(pair.a, "peer0:acked_seq") == stat(pair.a, "seq"); }));
    CHECK(a.set("after-thaw", "v") == "STORED");
    CHECK(stat(pair.a, "sync_timeouts") == 2);
    std::vector<std::string> keys = {"while-frozen", "before:1", "noreply-while-frozen", "after-thaw"};
    CHECK(pair.converge(keys) == "");
}

TEST_CASE("with -W and a dead peer, writes do not wait for it", "[node][replication][semi-sync]")
{
    Pair pair({"-W", "5000"});
    REQUIRE(both_online(pair));
    pair.b.kill9();
    REQUIRE(eventually([&] { return replication_stats(pair.a)["peer0:state"] != "online"; }));

    Client a(pair.a);
    uint64_t waits = stat(pair.a, "sync_waits");
    auto started = std::chrono::steady_clock::now();
    for (int i = 0; i < 10; i++)
        REQUIRE(a.set("alone:" + std::to_string(i), "v") == "STORED");
    auto took = std::chrono::steady_clock::now() - started;
    INFO("10 writes took " << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms");
    // Not a timing bound: far below one wait of 5 s, or they waited.
    CHECK(took < 5s);
    CHECK(stat(pair.a, "sync_waits") == waits);
    CHECK(stat(pair.a, "sync_timeouts") == 0);
}

TEST_CASE("without -W, a write's reply waits for no peer", "[node][replication][semi-sync]")
{
    Pair pair;
    REQUIRE(both_online(pair));
    Client a(pair.a);
    pair.b.freeze();
    for (int i = 0; i < 10; i++)
        REQUIRE(a.set("k" + std::to_string(i), "v") == "STORED");
    CHECK(stat(pair.a, "sync_wait_ms") == 0);
    CHECK(stat(pair.a, "sync_waits") == 0);
    CHECK(stat(pair.a, "sync_timeouts") == 0);
    pair.b.thaw();
}

TEST_CASE("-W is checked at start", "[node][replication][semi-sync]")
{
    for (const char *bad : {"0", "-5", "60001", "10ms", ""}) {
        INFO("-W '" << bad << "'");
        CHECK_THROWS_WITH(Node(replication_args(free_port(), free_port(), {"-W", bad})),
                          Catch::Contains("invalid wait for acknowledgements"));
    }
    CHECK_THROWS_WITH(Node({"-W", "100"}), Catch::Contains("-W needs at least one replication peer"));
}
