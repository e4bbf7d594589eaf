// Two replicating nodes on loopback: every write reaches the peer, a
// restarted node gets everything back, concurrent writers converge, and a
// bad or frozen peer harms nobody. Tagged [node]: run once per variant.
#include <catch2/catch.hpp>

#include "support/pair.hpp"
#include "support/skip.hpp"

#include <arpa/inet.h>
#include <atomic>
#include <csignal>
#include <cstdlib>
#include <netinet/in.h>
#include <optional>
#include <random>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

using namespace fixture;
using namespace std::chrono_literals;

namespace {

std::vector<std::string> keys_named(const std::string &prefix, size_t n)
{
    std::vector<std::string> keys;
    for (size_t i = 0; i < n; i++)
        keys.push_back(prefix + std::to_string(i));
    return keys;
}

uint64_t stat(const Node &node, const std::string &name)
{
    return std::stoull(replication_stats(node)[name]);
}

// Writes `keys` on A and waits until B holds them too; then freezes B and
// overflows A's queue for it (16 MiB against the 1 MiB bound of a pair
// started with -Q 1): A drops that queue and queues nothing more for B
// until they resync, so what A does next reaches B only with the resync.
// Returns the keys of the overflowing writes.
std::vector<std::string> cut_b_off(Pair &pair, const std::vector<std::string> &keys, const std::string &value)
{
    Client a(pair.a);
    for (const auto &key : keys)
        REQUIRE(a.set(key, value) == "STORED");
    REQUIRE(pair.converge(keys) == "");
    pair.b.freeze();
    auto filler = fill(pair.a, "filler:", 16384, 1024);
    REQUIRE(stat(pair.a, "peer0:overflows") >= 1);
    return filler;
}

} // namespace

TEST_CASE("every write command on one node reaches the other, in both directions", "[node][replication]")
{
    Pair pair;
    REQUIRE(wait_online(pair.a));
    REQUIRE(wait_online(pair.b));
    const std::vector<std::string> keys = {"s", "a", "r", "ap", "pre", "c", "n", "d", "dt", "x"};

    for (bool a_to_b : {true, false}) {
        const Node &writer_node = a_to_b ? pair.a : pair.b;
        const Node &reader_node = a_to_b ? pair.b : pair.a;
        INFO((a_to_b ? "writes on A" : "writes on B"));
        Client w(writer_node), r(reader_node);

        CHECK(w.set("s", "set-value", 3) == "STORED");
        CHECK(w.add("a", "added", 4) == "STORED");
        CHECK(w.set("r", "old") == "STORED");
        CHECK(w.replace("r", "replaced", 5) == "STORED");
        CHECK(w.set("ap", "head") == "STORED");
        CHECK(w.append("ap", "+tail") == "STORED");
        CHECK(w.set("pre", "tail") == "STORED");
        CHECK(w.prepend("pre", "head+") == "STORED");
        CHECK(w.set("c", "v1") == "STORED");
        CHECK(w.cas("c", "v2", w.gets("c")->cas) == "STORED");
        CHECK(w.set("n", "100") == "STORED");
        CHECK(w.incr("n", 23) == "123");
        CHECK(w.decr("n", 3) == "120");
        CHECK(w.set("d", "doomed") == "STORED");
        CHECK(w.set("dt", "held") == "STORED");
        CHECK(w.set("x", "flushed later") == "STORED");
        CHECK(pair.converge(keys) == "");
        CHECK(r.get("n")->value.substr(0, 3) == "120");
        CHECK(r.get("ap")->value == "head+tail");

        CHECK(w.del("d") == "DELETED");
        CHECK(w.del("dt", 5) == "DELETED");
        CHECK(pair.converge(keys) == "");
        CHECK_FALSE(r.get("d"));
        CHECK_FALSE(r.get("dt"));
        // `delete key time` holds the key: add is refused on both nodes.
        CHECK(r.add("dt", "too soon") == "NOT_STORED");

        CHECK(w.flush_all() == "OK");
        CHECK(eventually([&] { return r.gets_many(keys).empty(); }));
        std::string reader_has;
        for (auto &[k, v] : r.gets_many(keys))
            reader_has += k + " ";
        INFO("still on the reader: " << reader_has);
        CHECK(r.gets_many(keys).empty());
    }
}

TEST_CASE("flush_all with a delay takes effect on both nodes at the same time", "[node][replication]")
{
    Pair pair;
    REQUIRE(wait_online(pair.a));
    Client a(pair.a), b(pair.b);
    a.set("k", "v");
    REQUIRE(pair.converge({"k"}) == "");

    // memcached's clock moves in one-second steps, each node's at its own
    // moment, and a delayed flush takes effect at the step to its time less
    // one: 'flush_all 4' removes k within 2 to 3 s on A, and on B, whose
    // clock may be a step ahead, no sooner than 1 s. So for the first
    // second k is on both (B did not flush at once); then both drop it,
    // less than a second apart (the offset of their steps), which is
    // checked with a second's margin for a loaded machine.
    const auto flushed = std::chrono::steady_clock::now();
    auto since_flush = [&] {
        return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - flushed);
    };
    CHECK(a.flush_all(4) == "OK");
    const bool on_b = bool(b.get("k")), on_a = bool(a.get("k"));
    const auto checked = since_flush();
    INFO("k looked up on both " << checked.count() << " ms after flush_all 4 (meaningful within 1000 ms)");
    CHECK(checked < 1000ms);
    CHECK(on_b);
    CHECK(on_a);

    std::optional<std::chrono::milliseconds> gone_a, gone_b;
    std::string seen;
    bool both_gone = eventually([&] {
        if (!gone_a && !a.get("k"))
            gone_a = since_flush();
        if (!gone_b && !b.get("k"))
            gone_b = since_flush();
        return gone_a && gone_b;
    }, 8s, &seen, [&] {
        return std::string("k still on ") + (gone_a ? "" : "A ") + (gone_b ? "" : "B ") + "8 s after flush_all 4";
    });
    INFO(seen);
    CHECK(both_gone);
    if (both_gone) {
        INFO("k gone from A " << gone_a->count() << " ms and from B " << gone_b->count() << " ms after flush_all 4");
        CHECK(std::chrono::abs(*gone_a - *gone_b) < 2s);
    }
}

TEST_CASE("a flush_all racing writes on the other node leaves both nodes identical", "[node][replication]")
{
    Pair pair;
    REQUIRE(wait_online(pair.a));
    REQUIRE(wait_online(pair.b));
    auto keys = keys_named("race:", 500);

    // B writes without pause while A flushes now and then: B's writes in
    // flight when A flushes must end the same on both nodes (dead if made
    // before the flush, alive if after), whichever arrives first where.
    std::atomic<bool> stop{false};
    std::thread writer([&] {
        Client b(pair.b);
        for (int i = 0; !stop && i < 200000; i++)
            b.set(keys[static_cast<size_t>(i) % keys.size()], std::to_string(i));
    });
    Client a(pair.a);
    for (int i = 0; i < 20; i++) {
        std::this_thread::sleep_for(20ms);   // pacing, not synchronisation
        CHECK(a.flush_all() == "OK");
    }
    stop = true;
    writer.join();

    // A write made after the last flush lives on both nodes.
    Client(pair.b).set(keys.front(), "after the last flush");
    CHECK(pair.converge(keys) == "");
    auto survivor = a.get(keys.front());
    REQUIRE(survivor);
    CHECK(survivor->value == "after the last flush");
}

TEST_CASE("a pipelined delete and set of one key reach the peer in that order", "[node][replication]")
{
    Pair pair;
    REQUIRE(wait_online(pair.a));
    Client a(pair.a);
    a.set("k", "first");
    REQUIRE(pair.converge({"k"}) == "");

    a.send_raw("delete k\r\nset k 0 0 6\r\nsecond\r\n");
    CHECK(a.read_line() == "DELETED");
    CHECK(a.read_line() == "STORED");
    CHECK(pair.converge({"k"}) == "");
    CHECK(Client(pair.b).get("k")->value == "second");
}

TEST_CASE("a gets on one node and a cas on the other behave as on one node", "[node][replication]")
{
    Pair pair;
    REQUIRE(wait_online(pair.a));
    Client a(pair.a), b(pair.b);
    a.set("k", "v1");
    REQUIRE(pair.converge({"k"}) == "");

    uint64_t unique = a.gets("k")->cas;
    CHECK(b.gets("k")->cas == unique);
    CHECK(b.cas("k", "v2", unique) == "STORED");
    REQUIRE(pair.converge({"k"}) == "");
    // A's client still holds the old unique: its cas must now fail on A.
    CHECK(a.cas("k", "stale", unique) == "EXISTS");
    CHECK(a.get("k")->value == "v2");
    CHECK(pair.converge({"k"}) == "");
}

TEST_CASE("an item with an expiry time expires on both nodes", "[node][replication]")
{
    Pair pair;
    REQUIRE(wait_online(pair.a));
    Client a(pair.a), b(pair.b);
    a.set("short", "lived", 0, 2);
    a.set("long", "lived", 0, 3600);
    REQUIRE(pair.converge({"short", "long"}) == "");
    CHECK(eventually([&] { return !a.get("short") && !b.get("short"); }, 6s));
    CHECK(b.get("long"));
}

TEST_CASE("a node restarted empty gets every key back while writes go on", "[node][replication]")
{
    Pair pair;
    REQUIRE(wait_online(pair.a));
    auto keys = fill(pair.a, "bulk:", 100000, 100);
    REQUIRE(pair.converge(keys, 60s) == "");

    pair.b.kill9();
    pair.b.restart(Node::Wait::nothing);

    // A writer keeps going on A while B resyncs.
    std::atomic<bool> stop{false};
    std::vector<std::string> written;
    std::thread writer([&] {
        Client a(pair.a);
        for (int i = 0; !stop && i < 20000; i++) {
            std::string key = "during:" + std::to_string(i);
            if (a.set(key, "w" + std::to_string(i)) == "STORED")
                written.push_back(key);
            if (i % 7 == 0)
                a.set("bulk:" + std::to_string(i), "rewritten");
        }
    });
    bool online = pair.b.wait_serving(60s) && wait_online(pair.b, 60s);
    stop = true;
    writer.join();
    REQUIRE(online);
    CHECK(written.size() > 0);

    keys.insert(keys.end(), written.begin(), written.end());
    CHECK(pair.converge(keys, 60s) == "");
    CHECK(census(pair.b, keys).size() == keys.size());
    CHECK(stat(pair.b, "peer0:resyncs") >= 1);
}

TEST_CASE("a node restarted empty does not send the peer's items back to it", "[node][replication]")
{
    // Values large enough that A streams faster than B applies: B then
    // receives while its own resync would walk, the case that echoed.
    Pair pair({"-m", "256"});
    REQUIRE(wait_online(pair.a));
    auto keys = fill(pair.a, "big:", 150000, 1024);
    REQUIRE(pair.converge(keys, 60s) == "");
    const auto conflicts_before = stat(pair.a, "peer0:conflicts");

    // Restart B once A's redials have backed off to seconds apart, so that
    // B dials first: then A's stream arrives with its HELLO, before B's
    // resync would walk (a setup, not a synchronisation).
    pair.b.kill9();
    std::this_thread::sleep_for(4s);
    // B opens its client port only once it holds A's 150,000 items.
    pair.b.restart(Node::Wait::nothing);
    REQUIRE(pair.b.wait_serving(60s));
    REQUIRE(wait_online(pair.b, 60s));
    CHECK(pair.converge(keys, 60s) == "");

    // B held nothing when its link came up, so it walked nothing. Only if
    // A's redial raced B's dial and the second link replaced the first
    // (B then held items) does B walk: its resync count tells. Then the
    // case under test did not come about, and there is nothing to check.
    const auto resyncs = stat(pair.b, "peer0:resyncs");
    if (resyncs != 1)
        skip_test("A's redial raced B's dial (B resynced " + std::to_string(resyncs) +
                  " times, not once), so B held items when a link came up: not the case under test");
    CHECK(stat(pair.b, "peer0:last_resync_items") == 0);
    CHECK(stat(pair.a, "peer0:conflicts") == conflicts_before);
}

TEST_CASE("both nodes setting, incrementing and deleting the same keys at once end identical", "[node][replication]")
{
    Pair pair;
    REQUIRE(wait_online(pair.a));
    REQUIRE(wait_online(pair.b));
    auto keys = keys_named("hot:", 1000);

    auto hammer = [&](const Node &node, int seed) {
        Client c(node);
        std::mt19937 rng(seed);
        for (int i = 0; i < 10000; i++) {
            const std::string &key = keys[rng() % keys.size()];
            if (i % 10 == 9)
                c.incr(key, 1);
            else if (i % 10 == 8)
                c.del(key);
            else
                c.set(key, std::to_string(seed * 1000000 + i), seed);
        }
    };
    std::thread on_a(hammer, std::cref(pair.a), 1), on_b(hammer, std::cref(pair.b), 2);
    on_a.join();
    on_b.join();

    CHECK(pair.converge(keys) == "");
    CHECK(census(pair.a, keys).size() > keys.size() / 2);
}

TEST_CASE("a peer absent at start is brought up to date when it arrives", "[node][replication]")
{
    uint16_t repl_a = free_port(), repl_b = free_port();
    Node a(replication_args(repl_a, repl_b));
    Client ca(a);
    auto keys = keys_named("early:", 500);
    for (auto &k : keys)
        REQUIRE(ca.set(k, "v-" + k) == "STORED");
    CHECK(replication_stats(a)["peer0:state"] != "online");

    Node b(replication_args(repl_b, repl_a));
    REQUIRE(wait_online(a));
    std::string difference;
    CHECK(eventually([&] { return (difference = census_difference(census(a, keys), census(b, keys))).empty(); }, 20s));
    CHECK(difference == "");
}

TEST_CASE("garbage and strangers on the replication port are refused and the node keeps serving", "[node][replication]")
{
    uint16_t repl_a = free_port(), repl_b = free_port();
    // B never runs: A's peer is away, the situation repcached got wrong.
    Node a(replication_args(repl_a, repl_b));
    Client ca(a);
    ca.set("secret", "data");

    auto talk = [&](const std::string &bytes) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_port = htons(repl_a);
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(connect(fd, reinterpret_cast<sockaddr *>(&addr), sizeof addr) == 0);
        timeval tv{3, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
        std::string received;
        char buf[4096];
        ssize_t n;
        while ((n = recv(fd, buf, sizeof buf, 0)) > 0)
            received.append(buf, n);
        close(fd);
        return std::make_pair(n == 0, received);
    };

    SECTION("random bytes close the connection") {
        std::mt19937 rng(42);
        std::string junk(4096, '\0');
        for (auto &ch : junk)
            ch = static_cast<char>(rng());
        auto [closed, received] = talk(junk);
        CHECK(closed);
        CHECK(received.find("secret") == std::string::npos);
        // Counters are published after the turn of the replication
        // thread's loop that closed the link: soon, not at once.
        CHECK(eventually([&] { return stat(a, "protocol_errors") >= 1; }));
    }
    SECTION("a memcached command is not a handshake") {
        auto [closed, received] = talk("set secret 0 0 6\r\nforged\r\nget secret\r\n");
        CHECK(closed);
        CHECK(received.find("data") == std::string::npos);
        // Counters are published after the turn of the replication
        // thread's loop that closed the link: soon, not at once.
        CHECK(eventually([&] { return stat(a, "protocol_errors") >= 1; }));
    }
    SECTION("silence does not get the data set") {
        auto [closed, received] = talk("");
        CHECK(received.find("secret") == std::string::npos);
    }
    CHECK(ca.get("secret")->value == "data");
}

TEST_CASE("nodes of different clusters refuse each other", "[node][replication]")
{
    uint16_t repl_a = free_port(), repl_b = free_port();
    Node a(replication_args(repl_a, repl_b, {"-Z", "blue"}));
    Node b(replication_args(repl_b, repl_a, {"-Z", "green"}));
    Client(a).set("k", "blue data");
    CHECK(eventually([&] { return stat(a, "refused_connections") + stat(b, "refused_connections") >= 1; }));
    CHECK_FALSE(Client(b).get("k"));
    CHECK(replication_stats(a)["peer0:state"] != "online");
}

TEST_CASE("a frozen peer costs at most the queue bound, and thawed it resyncs", "[node][replication]")
{
    Pair pair({"-Q", "1"});
    REQUIRE(wait_online(pair.a));
    REQUIRE(wait_online(pair.b));
    long rss_before = pair.a.rss_kib();

    pair.b.freeze();
    // 8 MiB of writes, eight times the 1 MiB bound.
    auto keys = fill(pair.a, "while-frozen:", 8192, 1024);
    Client a(pair.a);
    CHECK(a.get("while-frozen:8191"));
    auto stats = replication_stats(pair.a);
    INFO("A's stats replication: queue_bytes " << stats["peer0:queue_bytes"] << ", overflows "
                                                << stats["peer0:overflows"]);
    CHECK(std::stoull(stats["peer0:queue_bytes"]) <= 1024 * 1024 + 64 * 1024);
    CHECK(std::stoull(stats["peer0:overflows"]) >= 1);
    // The data itself is ~9 MiB in the slabs; the queue may add 1 MiB more.
    // Under a sanitizer (make check-sanitize sets MEMCACHED_SANITIZER) the
    // process also holds shadow memory for all of it (ASan one byte per
    // eight, TSan four per byte), and ASan keeps every freed queue buffer
    // resident in its quarantine (256 MB by default): measured (2026-11-27)
    // at 37 MiB (TSan) and 40 MiB (ASan). There the bound only catches a
    // gross leak; the queue_bytes check above is what holds the queue to -Q.
    const char *sanitizer = getenv("MEMCACHED_SANITIZER");
    const long rss_bound_kib = sanitizer && *sanitizer ? 64 * 1024 : 24 * 1024;
    INFO("MEMCACHED_SANITIZER=" << (sanitizer ? sanitizer : "") << ": RSS bound " << rss_bound_kib << " KiB");
    CHECK(pair.a.rss_kib() - rss_before < rss_bound_kib);

    // Nor does A spin on the frozen peer (repcached 2.2 took a whole CPU
    // and stopped answering): over two idle seconds it uses less than a
    // fifth of one CPU, and answers at once.
    const long ticks_before = pair.a.cpu_ticks();
    REQUIRE(ticks_before >= 0);
    std::this_thread::sleep_for(2s);
    const long idle_ticks = pair.a.cpu_ticks() - ticks_before;
    INFO("A's CPU ticks in 2 s with B frozen: " << idle_ticks << " (" << sysconf(_SC_CLK_TCK) << " per second)");
    CHECK(idle_ticks >= 0);
    CHECK(idle_ticks < 2 * sysconf(_SC_CLK_TCK) / 5);
    CHECK(a.get("while-frozen:0"));

    pair.b.thaw();
    CHECK(pair.converge(keys, 60s) == "");
}

TEST_CASE("a flush_all made while the peer was cut off reaches it with the resync", "[node][replication]")
{
    Pair pair({"-Q", "1"});
    REQUIRE(wait_online(pair.a));
    REQUIRE(wait_online(pair.b));
    auto old_keys = keys_named("before-flush:", 200);
    auto filler = cut_b_off(pair, old_keys, "old");
    Client a(pair.a);
    CHECK(a.flush_all() == "OK");
    auto new_keys = keys_named("after-flush:", 200);
    for (const auto &key : new_keys)
        REQUIRE(a.set(key, "new") == "STORED");
    pair.b.thaw();

    auto keys = old_keys;
    keys.insert(keys.end(), filler.begin(), filler.end());
    keys.insert(keys.end(), new_keys.begin(), new_keys.end());
    CHECK(pair.converge(keys, 60s) == "");
    CHECK(census(pair.b, old_keys).empty());
    CHECK(census(pair.b, filler).empty());
    CHECK(census(pair.b, new_keys).size() == new_keys.size());
}

TEST_CASE("a delete made while the peer was cut off is not undone by the resync", "[node][replication]")
{
    Pair pair({"-Q", "1"});
    REQUIRE(wait_online(pair.a));
    REQUIRE(wait_online(pair.b));
    auto sessions = keys_named("session:", 200);
    // A's deletes reach B only with the resync, after B has sent those
    // sessions back.
    cut_b_off(pair, sessions, "logged in");
    Client a(pair.a);
    const std::vector<std::string> logged_out(sessions.begin(), sessions.begin() + 100);
    const std::vector<std::string> still_in(sessions.begin() + 100, sessions.end());
    for (const auto &key : logged_out)
        REQUIRE(a.del(key) == "DELETED");
    // A write after its delete is newer than the delete, and wins.
    const std::string back = logged_out.front();
    REQUIRE(a.set(back, "logged in again") == "STORED");
    pair.b.thaw();

    CHECK(pair.converge(sessions, 60s) == "");
    const std::vector<std::string> gone(logged_out.begin() + 1, logged_out.end());
    CHECK(census(pair.a, gone).empty());
    CHECK(census(pair.b, gone).empty());
    CHECK(census(pair.b, still_in).size() == still_in.size());
    auto again = Client(pair.b).get(back);
    REQUIRE(again);
    CHECK(again->value == "logged in again");
}
