// Writes that race on one node, and what "stats replication" reads while
// the replication thread works. Many connections on the threaded build
// (-t 4) write the same few keys at once, and the peer must end with what
// the node holds: each write and the frame it queues for the peer happen
// in one section under the cache lock, since another write in a window
// between two sections is queued in the other order. LockHandoff widens
// such windows, which glibc otherwise keeps a few instructions wide. On
// the single-threaded build nothing can come between, and these pass
// trivially. Tagged [node]: run once per variant.
#include <catch2/catch.hpp>

#include "support/pair.hpp"

#include <atomic>
#include <ctime>
#include <functional>
#include <random>
#include <optional>
#include <thread>
#include <unistd.h>

using namespace fixture;
using namespace std::chrono_literals;

namespace {

// While it lives, the nodes started get tests/tools/lock_handoff.cpp
// preloaded: a thread that releases a mutex now and then sleeps a little,
// so that a window between two sections under the cache lock is wide
// enough for another worker's write, as under production load.
class LockHandoff {
public:
    LockHandoff()
    {
        const std::string lib = REPO_ROOT "/build/tests/lock_handoff.so";
        if (access(lib.c_str(), R_OK) != 0)
            FAIL(lib << " is missing: make test-binaries builds it");
        save("LD_PRELOAD", lib);
        // ASan built with gcc wants its runtime first in the list.
        const char *asan = getenv("ASAN_OPTIONS");
        save("ASAN_OPTIONS", std::string(asan ? asan : "") + (asan && *asan ? ":" : "") +
                                 "verify_asan_link_order=0");
    }
    ~LockHandoff()
    {
        for (auto &[name, value] : saved_)
            value ? setenv(name.c_str(), value->c_str(), 1) : unsetenv(name.c_str());
    }

private:
    void save(const std::string &name, const std::string &value)
    {
        const char *old = getenv(name.c_str());
        saved_.emplace_back(name, old ? std::optional<std::string>(old) : std::nullopt);
        setenv(name.c_str(), value.c_str(), 1);
    }
    std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

// `connections` clients on `node`, each sending `rounds` pipelined batches
// of noreply commands that `batch(connection, round, rng)` makes, and
// waiting after each batch until the node has read it (a `version` behind
// it answers). Pipelining keeps every worker thread busy, so that writes
// of one key meet on the cache lock.
void hammer(const Node &node, int connections, int rounds,
            const std::function<std::string(int, int, std::mt19937 &)> &batch)
{
    std::vector<std::thread> threads;
    for (int n = 0; n < connections; n++) {
        threads.emplace_back([&, n] {
            Client c(node);
            std::mt19937 rng(static_cast<unsigned>(n + 1));
            for (int round = 0; round < rounds; round++) {
                c.send_raw(batch(n, round, rng) + "version\r\n");
                while (c.read_line().rfind("VERSION", 0) != 0)
                    ;
            }
        });
    }
    for (auto &t : threads)
        t.join();
}

std::string set_noreply(const std::string &key, const std::string &value)
{
    return "set " + key + " 0 0 " + std::to_string(value.size()) + " noreply\r\n" + value + "\r\n";
}

} // namespace

TEST_CASE("deletes and incrs of the same keys on one node at once end the same on the peer", "[node][replication]")
{
    LockHandoff handoff;
    Pair pair;
    REQUIRE(wait_online(pair.a));
    REQUIRE(wait_online(pair.b));

    // A delete that read the item's version before an incr raised it sent
    // the older version, and the peer kept the incremented item; an incr
    // of an item deleted after its lookup sent it to the peer anew. Each
    // round has keys of its own, so that what a race leaves on a key is
    // not written over by a later round.
    const int rounds = 200;
    const size_t keys_per_round = 4;
    hammer(pair.a, 8, rounds, [&](int n, int round, std::mt19937 &rng) {
        std::string commands;
        for (int i = 0; i < 40; i++) {
            std::string key = "counter:" + std::to_string(round) + ":" + std::to_string(rng() % keys_per_round);
            switch ((n + i) % 8) {
            case 0: commands += set_noreply(key, "1"); break;
            case 1: case 4: commands += "delete " + key + " noreply\r\n"; break;
            default: commands += "incr " + key + " 1 noreply\r\n"; break;
            }
        }
        return commands;
    });

    std::vector<std::string> keys;
    for (int round = 0; round < rounds; round++)
        for (size_t k = 0; k < keys_per_round; k++)
            keys.push_back("counter:" + std::to_string(round) + ":" + std::to_string(k));
    CHECK(pair.converge(keys, 15s) == "");
}

TEST_CASE("a flush_all racing sets on the same node ends the same on the peer", "[node][replication]")
{
    LockHandoff handoff;
    Pair pair;
    REQUIRE(wait_online(pair.a));
    REQUIRE(wait_online(pair.b));

    // A set between the flush and the queueing of its frame survived on
    // A, and the flush, newer than it, removed it on B. Every set is of a
    // key of its own, and the next flush_all would remove what a race
    // left: the census is taken after each.
    for (int trial = 0; trial < 5; trial++) {
        const std::string prefix = "session:" + std::to_string(trial) + ":";
        hammer(pair.a, 6, 4, [&](int n, int round, std::mt19937 &) {
            std::string commands;
            for (int i = 0; i < 100; i++) {
                if (n == 0 && round == 2 && i == 50)
                    commands += "flush_all noreply\r\n";
                commands += set_noreply(prefix + std::to_string(n) + ":" + std::to_string(round * 100 + i), "v");
            }
            return commands;
        });
        std::vector<std::string> keys;
        for (int n = 0; n < 6; n++)
            for (int i = 0; i < 400; i++)
                keys.push_back(prefix + std::to_string(n) + ":" + std::to_string(i));
        INFO("after flush_all number " << trial + 1);
        REQUIRE(pair.converge(keys, 15s) == "");
    }
}

TEST_CASE("delayed flush_alls crossing between two nodes leave the newest pending on both", "[node][replication]")
{
    Pair pair;
    REQUIRE(wait_online(pair.a));
    REQUIRE(wait_online(pair.b));
    Client a(pair.a), b(pair.b);

    // Each node takes its own flush_all first and the other's, older or
    // newer, after it: the newer must win on both, whatever the order.
    // Absolute times far ahead, so that no flush takes effect meanwhile.
    const long base = static_cast<long>(time(nullptr)) + 100000;
    for (int i = 0; i < 20; i++) {
        const long at_a = base + 2 * i, at_b = base + 2 * i + 1;
        a.send_raw("flush_all " + std::to_string(at_a) + "\r\n");
        b.send_raw("flush_all " + std::to_string(at_b) + "\r\n");
        REQUIRE(a.read_line() == "OK");
        REQUIRE(b.read_line() == "OK");
        std::string last_seen;
        bool same = eventually([&] {
            auto on_a = replication_stats(pair.a)["delayed_flush_at"];
            auto on_b = replication_stats(pair.b)["delayed_flush_at"];
            last_seen = "A: " + on_a + ", B: " + on_b;
            return on_a == on_b && (on_a == std::to_string(at_a) || on_a == std::to_string(at_b));
        }, 5s);
        INFO("after flush_all " << at_a << " on A and flush_all " << at_b << " on B: " << last_seen);
        REQUIRE(same);
    }
}

TEST_CASE("a delayed flush_all made while the peer was away reaches it with the resync", "[node][replication]")
{
    uint16_t repl_a = free_port(), repl_b = free_port();
    Node a(replication_args(repl_a, repl_b));
    const long at = static_cast<long>(time(nullptr)) + 100000;
    REQUIRE(Client(a).flush_all(at) == "OK");
    Node b(replication_args(repl_b, repl_a));
    REQUIRE(wait_online(a));
    CHECK(eventually([&] {
        return replication_stats(b)["delayed_flush_at"] == std::to_string(at);
    }));
    CHECK(replication_stats(a)["delayed_flush_at"] == std::to_string(at));
}

TEST_CASE("stats replication while the peer's links come and go reads no freed link", "[node][replication]")
{
    uint16_t repl_a = free_port(), repl_b = free_port();
    Node a(replication_args(repl_a, repl_b));
    Node b(replication_args(repl_b, repl_a));

    // The replication thread frees a link when it closes, while workers
    // print its state: they read what the thread last published instead.
    // A build with ThreadSanitizer reports such a race on its stderr, with
    // the stats code in the stack; any other build crashes at worst.
    std::atomic<bool> stop{false};
    std::vector<std::thread> readers;
    for (int n = 0; n < 4; n++) {
        readers.emplace_back([&] {
            Client c(a);
            while (!stop)
                c.stats("replication");
        });
    }
    for (int i = 0; i < 6; i++) {
        REQUIRE(wait_online(a));
        b.kill9();
        b.restart();
    }
    REQUIRE(wait_online(a));
    stop = true;
    for (auto &t : readers)
        t.join();
    CHECK(a.running());
    CHECK(Client(a).stats("replication")["peer0:state"] == "online");
    const std::string log = a.log();
    const auto report = log.find("repl_stats");
    INFO("the node's stderr there: "
         << (report == std::string::npos ? "" : log.substr(report > 1000 ? report - 1000 : 0, 2500)));
    CHECK(report == std::string::npos);
}
