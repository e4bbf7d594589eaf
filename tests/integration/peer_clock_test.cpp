// Bounded trust in a peer's clock and node id: a version far ahead of the
// local wall clock is dropped and counted and never moves the local clock,
// and outside its resync a peer's writes carry its own node id.
// Tagged [node]: run once per variant.
#include <catch2/catch.hpp>

#include "hlc.h"
#include "repl_codec.h"
#include "support/frames.hpp"
#include "support/pair.hpp"

#include <arpa/inet.h>
#include <cstdlib>
#include <cstring>
#include <netinet/in.h>
#include <stdexcept>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

using namespace fixture;
using namespace std::chrono_literals;

namespace {

// The raw peer's node id: not the node's own, or the node would take a
// new one and make the link again (see "node id clash").
uint8_t forger_node = 7;

uint64_t stat(const Node &node, const std::string &name)
{
    return std::stoull(replication_stats(node)[name]);
}

uint64_t wall_ms()
{
    timeval tv;
    gettimeofday(&tv, nullptr);
    return uint64_t(tv.tv_sec) * 1000 + tv.tv_usec / 1000;
}

// The version a node with `node` as its id gives a write at unix time `ms`.
uint64_t version_at(uint64_t ms, uint8_t node = forger_node)
{
    return ((ms - HLC_EPOCH_MS) << HLC_TIME_SHIFT) | node;
}

std::string hello(uint16_t listen_port)
{
    return hello_frame(listen_port, forger_node);
}

// A peer played over a raw socket: it connects to a node's replication
// port and sends what it is told; closed when it goes out of scope.
class RawPeer {
public:
    explicit RawPeer(uint16_t repl_port)
    {
        fd_ = connected_socket(repl_port);
        if (fd_ < 0)
            throw std::runtime_error("cannot connect to the replication port");
    }
    ~RawPeer() { close(fd_); }
    RawPeer(const RawPeer &) = delete;
    RawPeer &operator=(const RawPeer &) = delete;

    void send_bytes(const std::string &bytes) { ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL); }

private:
    int fd_;
};

// A node whose peer B is played by a RawPeer: B's own node never runs.
// The forger takes a node id that is not the node's own.
struct ForgedPeer {
    ForgedPeer() { forger_node = uint8_t(stat(a, "node_id") + 1); }

    uint16_t repl_a = free_port(), repl_b = free_port();
    Node a{replication_args(repl_a, repl_b)};
    Client ca{a};

    // B's handshake, its RESUME (it holds nothing) and the start of its resync.
    std::string start_resync() const { return hello(repl_b) + resume_frame() + simple_frame(REPL_FRAME_SYNC_BEGIN); }
};

} // namespace

// The node has no secret here: what is checked is what a peer that got in
// (a wild clock, or a forger without -K) can do to the clock.
TEST_CASE_METHOD(ForgedPeer, "frames with versions far in the future are refused, counted, and do not move the clock",
                 "[node][replication][clock]")
{
    REQUIRE(ca.set("before", "kept") == "STORED");

    RawPeer b(repl_a);
    const uint64_t now = wall_ms();
    b.send_bytes(start_resync()
                 + set_frame("an-hour-ahead", "x", version_at(now + 3600 * 1000))
                 + flush_frame(0xFFFFFFFFFFFFFF00ULL)
                 + set_frame("near-the-end", "x", 0xFFFFFFFFFFFFFE00ULL | forger_node)
                 + set_frame("a-second-ahead", "applied", version_at(now + 1000)));

    // Frames are applied in order: the last one arriving says the others were seen.
    REQUIRE(eventually([&] { return ca.get("a-second-ahead").has_value(); }));
    // Counters are published once the replication thread is done with
    // what it read: a moment after the last write is applied.
    CHECK(eventually([&] { return stat(a, "peer0:too_far_ahead") == 3; }));
    CHECK_FALSE(ca.get("an-hour-ahead"));
    CHECK_FALSE(ca.get("near-the-end"));
    CHECK(ca.get("before").value_or(Item{}).value == "kept");

    INFO("a write made here now is versioned by this node's clock, not by the refused frames");
    REQUIRE(ca.set("after", "v") == "STORED");
    uint64_t cas = ca.gets("after").value_or(Item{}).cas;
    CHECK(cas > version_at(now + 1000, 0));
    CHECK(cas < version_at(wall_ms() + 60 * 1000, 0));
    INFO("and a write after the refused flush is not dropped as older than it");
    b.send_bytes(set_frame("from-the-peer", "applied", version_at(wall_ms())));
    CHECK(eventually([&] { return ca.get("from-the-peer").has_value(); }));
}

TEST_CASE_METHOD(ForgedPeer, "outside its resync, a peer's write versioned with another node's id closes the link unapplied",
                 "[node][replication][clock]")
{
    const uint8_t third_node = uint8_t(forger_node + 1);

    RawPeer b(repl_a);
    b.send_bytes(start_resync()
                 + set_frame("in-the-resync", "applied", version_at(wall_ms(), third_node))
                 + simple_frame(REPL_FRAME_SYNC_END)
                 + set_frame("its-own", "applied", version_at(wall_ms()), 0, 0, 1)
                 + set_frame("another-nodes", "x", version_at(wall_ms(), third_node), 0, 0, 2));

    CHECK(eventually([&] { return stat(a, "protocol_errors") >= 1; }));
    INFO("a resync brings items written anywhere; a peer's own writes carry its id");
    CHECK(ca.get("in-the-resync").value_or(Item{}).value == "applied");
    CHECK(ca.get("its-own").value_or(Item{}).value == "applied");
    CHECK_FALSE(ca.get("another-nodes"));
}

TEST_CASE("a pair writing with every command on both nodes never sees a protocol error", "[node][replication][clock]")
{
    Pair pair;
    REQUIRE(wait_online(pair.a));
    REQUIRE(wait_online(pair.b));
    Client a(pair.a), b(pair.b);
    std::vector<std::string> keys;
    for (int i = 0; i < 20; i++) {
        std::string k = "k" + std::to_string(i);
        keys.push_back(k);
        Client &c = i % 2 ? a : b;
        Client &other = i % 2 ? b : a;
        c.set(k, "1");
        REQUIRE(pair.converge({k}) == "");
        other.append(k, "0");
        c.prepend(k, "2");
        REQUIRE(pair.converge({k}) == "");
        other.incr(k, 5);
        c.decr(k, 1);
        REQUIRE(pair.converge({k}) == "");
        auto item = other.gets(k);
        REQUIRE(item);
        other.cas(k, "cas", item->cas);
        if (i % 3 == 0)
            c.del(k);
        if (i % 5 == 0)
            other.add(k, "added");
    }
    a.flush_all();
    b.set("after-flush", "v");
    keys.push_back("after-flush");
    CHECK(pair.converge(keys) == "");
    CHECK(stat(pair.a, "protocol_errors") == 0);
    CHECK(stat(pair.b, "protocol_errors") == 0);
    CHECK(all_online(pair.a));
    CHECK(all_online(pair.b));
}

TEST_CASE_METHOD(ForgedPeer, "stats show how far ahead a peer's clock is, as its writes show it, and warn past the bound",
                 "[node][replication][clock]")
{
    auto stats = [&] { return replication_stats(a); };
    auto offset = [&] { return std::stoll(stats()["peer0:clock_offset_ms"]); };

    RawPeer b(repl_a);
    b.send_bytes(start_resync()
                 + set_frame("in-the-resync", "old", version_at(wall_ms() + 3600 * 1000))
                 + simple_frame(REPL_FRAME_SYNC_END));
    INFO("a resync's items may be old or refused: they say nothing of the peer's clock now");
    REQUIRE(eventually([&] { return stats()["peer0:state"] == "online"; }));
    CHECK(stats()["peer0:clock"] == "unknown");

    b.send_bytes(set_frame("on-time", "applied", version_at(wall_ms()), 0, 0, 1));
    REQUIRE(eventually([&] { return stats()["peer0:clock"] == "ok"; }));
    // The frame's time on the way is all that separates the clocks here:
    // far below the bound, whatever the load.
    CHECK(std::llabs(offset()) < 30 * 1000);

    b.send_bytes(set_frame("an-hour-ahead", "x", version_at(wall_ms() + 3600 * 1000), 0, 0, 2));
    REQUIRE(eventually([&] { return stats()["peer0:clock"] == "warn"; }));
    CHECK(offset() > 3500 * 1000);
    CHECK(offset() <= 3600 * 1000);
    CHECK(eventually([&] { return stat(a, "peer0:too_far_ahead") == 2; }));
    CHECK_FALSE(ca.get("an-hour-ahead"));

    INFO("a peer whose clock is put right is ok again");
    b.send_bytes(set_frame("on-time-again", "applied", version_at(wall_ms()), 0, 0, 3));
    CHECK(eventually([&] { return stats()["peer0:clock"] == "ok"; }));
    CHECK(ca.get("on-time-again").value_or(Item{}).value == "applied");
}

TEST_CASE("nodes whose clocks agree show each other's clock ok", "[node][replication][clock]")
{
    Pair pair;
    REQUIRE(wait_online(pair.a));
    REQUIRE(wait_online(pair.b));
    CHECK(replication_stats(pair.a)["peer0:clock"] == "unknown");
    REQUIRE(Client(pair.b).set("from-b", "v") == "STORED");
    REQUIRE(Client(pair.a).set("from-a", "v") == "STORED");
    for (const Node *node : {&pair.a, &pair.b}) {
        CHECK(eventually([&] { return replication_stats(*node)["peer0:clock"] == "ok"; }));
        CHECK(std::llabs(std::stoll(replication_stats(*node)["peer0:clock_offset_ms"])) < 30 * 1000);
    }
}

TEST_CASE("two nodes that draw the same node id end with distinct ids, link again and replicate",
          "[node][replication][clock]")
{
    // Both nodes draw node id 42 (tests/tools/fixed_random.cpp): the node
    // with the larger instance id takes another, makes its links again,
    // and its writes carry the new one.
    const std::string lib = REPO_ROOT "/build/tests/fixed_random.so";
    if (access(lib.c_str(), R_OK) != 0)
        FAIL(lib << " is missing: make test-binaries builds it");
    const char *asan = getenv("ASAN_OPTIONS");
    std::vector<std::string> env = {"LD_PRELOAD=" + lib, "FIXED_RANDOM_VALUE=42",
                                    // ASan built with gcc wants its runtime first in the list.
                                    "ASAN_OPTIONS=" + std::string(asan ? asan : "") + (asan && *asan ? ":" : "") +
                                        "verify_asan_link_order=0"};
    uint16_t repl_a = free_port(), repl_b = free_port();
    Node a(replication_args(repl_a, repl_b), 0, Node::Wait::serving, env);
    Node b(replication_args(repl_b, repl_a), 0, Node::Wait::serving, env);

    INFO("A: " << a.log() << "\nB: " << b.log());
    REQUIRE(eventually([&] { return all_online(a) && all_online(b); }));
    std::string id_a = replication_stats(a)["node_id"], id_b = replication_stats(b)["node_id"];
    CHECK(id_a != id_b);
    CHECK((id_a == "42" || id_b == "42"));
    const Node &renamed = id_a == "42" ? b : a;
    CHECK(renamed.log().find("replication: node id clash with 127.0.0.1:") != std::string::npos);

    std::vector<std::string> keys;
    for (int i = 0; i < 200; i++) {
        keys.push_back("clash" + std::to_string(i));
        REQUIRE(Client(i % 2 ? a : b).set(keys.back(), "written on " + std::string(i % 2 ? "A" : "B")) == "STORED");
    }
    std::string difference;
    CHECK(eventually([&] {
        difference = census_difference(census(a, keys), census(b, keys));
        return difference.empty();
    }, 30s));
    INFO(difference);
    CHECK(census(a, keys).size() == keys.size());
    CHECK(stat(a, "protocol_errors") == 0);
    CHECK(stat(b, "protocol_errors") == 0);
    // Every CAS value ends with the node id of the node that wrote it.
    for (auto &[key, item] : census(a, keys)) {
        INFO(key);
        unsigned long writer = std::stoul(key.substr(5)) % 2 ? std::stoul(id_a) : std::stoul(id_b);
        CHECK(hlc_node_of(item.cas) == writer);
    }
}

TEST_CASE_METHOD(ForgedPeer, "a peer's writes come numbered one after the other, or the link closes before they are applied",
                 "[node][replication][clock]")
{
    const std::string start = start_resync()
                              + simple_frame(REPL_FRAME_SYNC_END) + set_frame("first", "applied", version_at(wall_ms()), 0, 0, 1);
    uint64_t errors = 0;

    SECTION("a number skipped") {
        RawPeer b(repl_a);
        b.send_bytes(start + set_frame("skipped", "x", version_at(wall_ms()), 0, 0, 3));
        CHECK(eventually([&] { return stat(a, "protocol_errors") > errors; }));
        CHECK(ca.get("first").value_or(Item{}).value == "applied");
        CHECK_FALSE(ca.get("skipped"));
    }
    SECTION("a number again") {
        RawPeer b(repl_a);
        b.send_bytes(start + set_frame("again", "x", version_at(wall_ms()), 0, 0, 1));
        CHECK(eventually([&] { return stat(a, "protocol_errors") > errors; }));
        CHECK_FALSE(ca.get("again"));
    }
    SECTION("a write without a number once its resync is over") {
        RawPeer b(repl_a);
        b.send_bytes(start + set_frame("unnumbered", "x", version_at(wall_ms())));
        CHECK(eventually([&] { return stat(a, "protocol_errors") > errors; }));
        CHECK_FALSE(ca.get("unnumbered"));
    }
    SECTION("an acknowledgement of a write the node never made") {
        REQUIRE(ca.set("made-here", "v") == "STORED");
        repl_frame f;
        std::memset(&f, 0, sizeof f);
        f.type = REPL_FRAME_ACK;
        f.seq = 2;
        RawPeer b(repl_a);
        b.send_bytes(start + encoded(f));
        CHECK(eventually([&] { return stat(a, "protocol_errors") > errors; }));
    }
    SECTION("anything but a RESUME first") {
        RawPeer b(repl_a);
        b.send_bytes(hello(repl_b) + simple_frame(REPL_FRAME_SYNC_BEGIN));
        CHECK(eventually([&] { return stat(a, "protocol_errors") > errors; }));
    }
    CHECK(replication_stats(a)["peer0:state"] != "online");
}
