// Many clients on both nodes of a pair run every write command at once on a
// few keys; once replication has settled, both nodes must hold exactly the
// same items: value, flags, CAS and expiry. Tagged [node]: run once per
// variant (the threaded build with -t 4), and [stress].
//
// A delayed flush_all takes effect on every node as a flush of the version
// of the moment it comes due, by the wall clock: by 1.2.8's oldest_live,
// which compares the local time an item was linked at with each node's
// own one-second clock, the nodes removed different items (seen here as
// every key on one node and none on the other, in 3 runs of 16).
#include <catch2/catch.hpp>

#include "support/pair.hpp"

#include <array>
#include <atomic>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>

using namespace fixture;
using namespace std::chrono_literals;

namespace {

// Every write command of 1.2.8, and how often the mix picks it (per 1000).
enum Op { SET, ADD, REPLACE, APPEND, PREPEND, CAS, INCR, DECR, DEL, DEL_HOLD, FLUSH, FLUSH_DELAY, OPS };
const std::array<const char *, OPS> op_names = {"set", "add", "replace", "append", "prepend", "cas",
                                                "incr", "decr", "delete", "delete <hold>", "flush_all",
                                                "flush_all <delay>"};
using Mix = std::array<int, OPS>;
const Mix every_command = {200, 85, 85, 80, 80, 120, 90, 70, 110, 60, 10, 10};
// The same without the delayed flush_all, which the mix above makes now
// and then remove every key: this one keeps the other commands' census
// large.
const Mix but_delayed_flush = {210, 85, 85, 80, 80, 120, 90, 70, 110, 60, 10, 0};

Op pick_op(std::mt19937 &rng, const Mix &mix)
{
    int n = static_cast<int>(rng() % 1000);
    for (int op = 0; op < OPS; op++) {
        if (n < mix[op])
            return static_cast<Op>(op);
        n -= mix[op];
    }
    return SET;
}

// Expiry times that never pass during the test (0 is "never"), so that
// each one must travel and none may lapse on one node only.
long pick_exptime(std::mt19937 &rng)
{
    static const long exptimes[] = {0, 0, 0, 600, 3600, 86400};
    return exptimes[rng() % 6];
}

// A value incr and decr can work on, half of the time.
std::string pick_value(std::mt19937 &rng, int client, int i)
{
    if (rng() % 2)
        return std::to_string(rng() % 100000);
    return "c" + std::to_string(client) + "." + std::to_string(i);
}

// When each item of the node expires, as an absolute time (0: never), from
// `stats cachedump` of every slab class that holds items. The dump gives
// `exptime + started`, so an item that never expires shows the node's
// start time, which `stats` gives as time - uptime.
std::map<std::string, long> expiries(const Node &node)
{
    Client c(node);
    auto general = c.stats();
    const long started = std::stol(general["time"]) - std::stol(general["uptime"]);
    std::map<std::string, long> when;
    for (auto &[name, value] : c.stats("items")) {
        // items:<class>:number
        auto colon = name.rfind(':');
        if (name.compare(0, 6, "items:") != 0 || name.substr(colon + 1) != "number")
            continue;
        c.send_raw("stats cachedump " + name.substr(6, colon - 6) + " 0\r\n");
        for (std::string line; (line = c.read_line()) != "END";) {
            // ITEM <key> [<bytes> b; <time> s]
            std::istringstream in(line);
            std::string word, key, bytes, b, time;
            in >> word >> key >> bytes >> b >> time;
            const long t = std::stol(time);
            when[key] = t == started ? 0 : t;
        }
    }
    return when;
}

// Sixteen clients, eight on each node of a pair, run `mix` on 50 keys;
// then both nodes must hold the same census and expiry times.
void stress_pair(const Mix &mix)
{
    Pair pair;
    REQUIRE(wait_online(pair.a));
    REQUIRE(wait_online(pair.b));
    std::vector<std::string> keys;
    for (int i = 0; i < 50; i++)
        keys.push_back("key:" + std::to_string(i));

    // Eight clients on each node, 20,000 commands in all, 30 s at most.
    const int clients = 16, ops_per_client = 20000 / clients;
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    std::array<std::atomic<int>, OPS> done{};
    std::mutex errors_lock;
    std::vector<std::string> errors;
    // When the last delayed flush_all made takes effect, at the latest.
    std::atomic<std::chrono::steady_clock::rep> last_flush_due{0};

    auto run = [&](int client) {
        try {
            Client c(client % 2 ? pair.b : pair.a);
            std::mt19937 rng(static_cast<unsigned>(client) * 7919u + 1);
            for (int i = 0; i < ops_per_client && std::chrono::steady_clock::now() < deadline; i++) {
                const std::string &key = keys[rng() % keys.size()];
                const Op op = pick_op(rng, mix);
                const uint32_t flags = rng() % 4;
                switch (op) {
                case SET: c.set(key, pick_value(rng, client, i), flags, pick_exptime(rng)); break;
                case ADD: c.add(key, pick_value(rng, client, i), flags, pick_exptime(rng)); break;
                case REPLACE: c.replace(key, pick_value(rng, client, i), flags, pick_exptime(rng)); break;
                case APPEND: c.append(key, std::to_string(rng() % 10)); break;
                case PREPEND: c.prepend(key, std::to_string(rng() % 10)); break;
                case CAS:
                    if (auto item = c.gets(key))
                        c.cas(key, pick_value(rng, client, i), item->cas, flags, pick_exptime(rng));
                    break;
                case INCR: c.incr(key, rng() % 10 + 1); break;
                case DECR: c.decr(key, rng() % 10 + 1); break;
                case DEL: c.del(key); break;
                case DEL_HOLD: c.del(key, static_cast<long>(rng() % 5 + 1)); break;
                case FLUSH: c.flush_all(); break;
                case FLUSH_DELAY: {
                    const long delay = static_cast<long>(rng() % 2 + 1);
                    c.flush_all(delay);
                    const auto due = (std::chrono::steady_clock::now() + std::chrono::seconds(delay + 1))
                                         .time_since_epoch().count();
                    for (auto seen = last_flush_due.load(); seen < due &&
                                                            !last_flush_due.compare_exchange_weak(seen, due);)
                        ;
                    break;
                }
                case OPS: break;
                }
                done[op]++;
            }
        } catch (const std::exception &e) {
            std::lock_guard<std::mutex> hold(errors_lock);
            errors.push_back("client " + std::to_string(client) + ": " + e.what());
        }
    };
    std::vector<std::thread> threads;
    for (int client = 0; client < clients; client++)
        threads.emplace_back(run, client);
    for (auto &t : threads)
        t.join();

    std::ostringstream counts;
    int total = 0;
    for (int op = 0; op < OPS; op++) {
        counts << " " << op_names[op] << " " << done[op];
        total += done[op];
    }
    INFO(total << " commands:" << counts.str());
    for (auto &e : errors)
        FAIL_CHECK(e);
    CHECK(total > 0);

    // A delayed flush_all takes effect by the clock, on both nodes at the
    // same second, and removes what was written before it, the markers
    // below too: wait for the last one's second to pass (a clock, not an
    // event).
    std::this_thread::sleep_until(std::chrono::steady_clock::time_point(
        std::chrono::steady_clock::duration(last_flush_due.load())));

    // Settled: each node's link is online with nothing queued, and holds a
    // marker the other wrote last (a link delivers in order, so all the
    // other's writes before it have been applied).
    Client(pair.a).set("settled:a", "a", 0, 0);
    Client(pair.b).set("settled:b", "b", 0, 0);
    auto settled = [&] {
        for (const Node *node : {&pair.a, &pair.b}) {
            auto stats = replication_stats(*node);
            if (stats["peer0:state"] != "online" || stats["peer0:queue_bytes"] != "0")
                return false;
        }
        return Client(pair.a).get("settled:b") && Client(pair.b).get("settled:a");
    };
    std::string last_seen;
    const bool settled_in_time = eventually(settled, 30s, &last_seen, [&] {
        auto a = replication_stats(pair.a), b = replication_stats(pair.b);
        return "A: " + peer_states(pair.a) + ", queue " + a["peer0:queue_bytes"] + " bytes, holds B's marker: " +
               (Client(pair.a).get("settled:b") ? "yes" : "no") + "; B: " + peer_states(pair.b) + ", queue " +
               b["peer0:queue_bytes"] + " bytes, holds A's marker: " + (Client(pair.b).get("settled:a") ? "yes" : "no");
    });
    INFO("not settled after 30 s; last seen: " << last_seen);
    REQUIRE(settled_in_time);

    auto census_a = census(pair.a, keys), census_b = census(pair.b, keys);
    INFO(census_a.size() << " keys on A, " << census_b.size() << " on B");
    CHECK(census_difference(census_a, census_b) == "");

    // Expiry, for the keys both nodes hold (the dump also lists items that
    // are deleted with a hold time, or expired, and not yet reclaimed).
    auto when_a = expiries(pair.a), when_b = expiries(pair.b);
    std::ostringstream expiry_differences;
    int differing = 0;
    for (auto &[key, item] : census_a) {
        if (!census_b.count(key))
            continue;
        if (when_a[key] != when_b[key] && differing++ < 5)
            expiry_differences << "  " << key << ": A expires at " << when_a[key] << ", B at " << when_b[key]
                               << "\n";
    }
    INFO(differing << " keys expire at different times; first ones:\n" << expiry_differences.str());
    CHECK(differing == 0);
}

} // namespace

TEST_CASE("sixteen clients running every write command on both nodes at once leave them identical",
          "[node][replication][stress]")
{
    stress_pair(every_command);
}

TEST_CASE("sixteen clients running every write command but a delayed flush_all on both nodes leave them identical",
          "[node][replication][stress]")
{
    stress_pair(but_delayed_flush);
}

// What the stress test above found, reduced: 1.2.8 keeps one pending
// delayed flush (settings.oldest_live), and a later flush_all replaces it;
// B's immediate flush_all cancels on B the delayed one A made, but reaches
// A as a versioned flush that leaves A's pending, so A alone loses a key
// written after both.
TEST_CASE("an immediate flush_all after a delayed one cancels it on both nodes",
          "[node][replication][flush]")
{
    Pair pair;
    REQUIRE(wait_online(pair.a));
    REQUIRE(wait_online(pair.b));
    Client a(pair.a), b(pair.b);

    REQUIRE(a.flush_all(2) == "OK");
    // A link delivers in order: once B holds A's marker, it has A's flush.
    REQUIRE(a.set("after-delayed", "a") == "STORED");
    REQUIRE(eventually([&] { return bool(b.get("after-delayed")); }));
    REQUIRE(b.flush_all() == "OK");
    REQUIRE(b.set("k", "written after both flushes") == "STORED");
    REQUIRE(pair.converge({"k"}) == "");

    // The delayed flush was due two seconds after A took it; on one node,
    // 1.2.8 keeps "k" (the immediate flush replaced the delayed one).
    std::this_thread::sleep_for(3s);    // a clock, not an event
    CHECK(b.get("k"));
    CHECK(pair.converge({"k"}, 2s) == "");
}

// 1.2.8 flushes lazily: flush_all unlinks only the items of its last
// second and lets oldest_live hide the older ones, and a flush_all with a
// delay then moves oldest_live into the future, which shows them again
// until that time. The peer removed them for good, so the two nodes served
// different values.
TEST_CASE("a flush_all with a delay does not bring back what an earlier flush_all removed",
          "[node][replication][flush]")
{
    Pair pair;
    REQUIRE(wait_online(pair.a));
    REQUIRE(wait_online(pair.b));
    Client a(pair.a), b(pair.b);

    REQUIRE(a.set("old", "set two seconds before the flush") == "STORED");
    REQUIRE(pair.converge({"old"}) == "");
    // Older than the flush's own second by the server's one-second clock.
    std::this_thread::sleep_for(3s);    // a clock, not an event
    REQUIRE(a.flush_all() == "OK");
    // Not a get of "old" on A before the next flush_all: 1.2.8 unlinks a
    // hidden item when a lookup finds it. A link delivers in order: once
    // B holds the marker, it has applied the flush.
    REQUIRE(a.set("marker", "after the flush") == "STORED");
    REQUIRE(eventually([&] { return bool(b.get("marker")); }));
    REQUIRE(a.flush_all(60) == "OK");
    CHECK_FALSE(a.get("old"));
    CHECK_FALSE(b.get("old"));
    CHECK(pair.converge({"old"}, 2s) == "");
}
