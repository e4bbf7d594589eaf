// Bounded trust in a peer's clock and node id: a version far ahead of the
// local wall clock is dropped and counted and never moves the local clock,
// and outside its resync a peer's writes carry its own node id.
// Tagged [node]: run once per variant.
#include <catch2/catch.hpp>

#include "hlc.h"
#include "repl_codec.h"
#include "support/pair.hpp"

#include <arpa/inet.h>
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

std::string encoded(const repl_frame &f)
{
    std::string bytes(repl_encoded_size(&f), '\0');
    size_t written = 0;
    if (repl_encode(&f, &bytes[0], bytes.size(), &written) != REPL_OK)
        throw std::runtime_error("cannot encode a frame");
    return bytes;
}

std::string hello(uint16_t listen_port)
{
    repl_frame f;
    std::memset(&f, 0, sizeof f);
    f.type = REPL_FRAME_HELLO;
    f.proto_version = REPL_PROTO_VERSION;
    f.node_id = forger_node;
    f.instance_id = 0x0123456789abcdefULL;
    f.listen_port = listen_port;
    f.cluster = "memcached";
    f.ncluster = 9;
    return encoded(f);
}

// A SET: of a resync (seq 0), or the peer's own write number `seq`.
std::string set(const std::string &key, const std::string &value, uint64_t version, uint64_t seq = 0)
{
    repl_frame f;
    std::memset(&f, 0, sizeof f);
    f.type = REPL_FRAME_SET;
    f.seq = seq;
    f.version = version;
    f.key = key.data(), f.nkey = uint8_t(key.size());
    f.value = value.data(), f.nvalue = uint32_t(value.size());
    return encoded(f);
}

std::string flush(uint64_t version)
{
    repl_frame f;
    std::memset(&f, 0, sizeof f);
    f.type = REPL_FRAME_FLUSH;
    f.version = version;
    return encoded(f);
}

// What the raw peer says it holds of the node's writes: nothing.
std::string resume()
{
    repl_frame f;
    std::memset(&f, 0, sizeof f);
    f.type = REPL_FRAME_RESUME;
    return encoded(f);
}

// SYNC_BEGIN (of a full resync, after which the peer's writes start at
// number 1) or SYNC_END (of a resync that walked no item).
std::string sync_frame(int type)
{
    repl_frame f;
    std::memset(&f, 0, sizeof f);
    f.type = uint8_t(type);
    return encoded(f);
}

// A peer played over a raw socket: it connects to a node's replication
// port and sends what it is told; closed when it goes out of scope.
class RawPeer {
public:
    explicit RawPeer(uint16_t repl_port)
    {
        fd_ = socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_port = htons(repl_port);
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (connect(fd_, reinterpret_cast<sockaddr *>(&addr), sizeof addr) != 0) {
            close(fd_);
            throw std::runtime_error("cannot connect to the replication port");
        }
    }
    ~RawPeer() { close(fd_); }
    RawPeer(const RawPeer &) = delete;
    RawPeer &operator=(const RawPeer &) = delete;

    void send_bytes(const std::string &bytes) { ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL); }

private:
    int fd_;
};

} // namespace

// The node has no secret here: what is checked is what a peer that got in
// (a wild clock, or a forger without -K) can do to the clock.
TEST_CASE("frames with versions far in the future are refused, counted, and do not move the clock",
          "[node][replication][clock]")
{
    uint16_t repl_a = free_port(), repl_b = free_port();
    Node a(replication_args(repl_a, repl_b));   // B never runs: the raw peer plays it
    Client ca(a);
    forger_node = uint8_t(stat(a, "node_id") + 1);
    REQUIRE(ca.set("before", "kept") == "STORED");

    RawPeer b(repl_a);
    const uint64_t now = wall_ms();
    b.send_bytes(hello(repl_b) + resume() + sync_frame(REPL_FRAME_SYNC_BEGIN)
                 + set("an-hour-ahead", "x", version_at(now + 3600 * 1000))
                 + flush(0xFFFFFFFFFFFFFF00ULL)
                 + set("near-the-end", "x", 0xFFFFFFFFFFFFFE00ULL | forger_node)
                 + set("a-second-ahead", "applied", version_at(now + 1000)));

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
    b.send_bytes(set("from-the-peer", "applied", version_at(wall_ms())));
    CHECK(eventually([&] { return ca.get("from-the-peer").has_value(); }));
}

TEST_CASE("outside its resync, a peer's write versioned with another node's id closes the link unapplied",
          "[node][replication][clock]")
{
    uint16_t repl_a = free_port(), repl_b = free_port();
    Node a(replication_args(repl_a, repl_b));
    Client ca(a);
    forger_node = uint8_t(stat(a, "node_id") + 1);
    const uint8_t third_node = uint8_t(forger_node + 1);

    RawPeer b(repl_a);
    b.send_bytes(hello(repl_b) + resume() + sync_frame(REPL_FRAME_SYNC_BEGIN)
                 + set("in-the-resync", "applied", version_at(wall_ms(), third_node))
                 + sync_frame(REPL_FRAME_SYNC_END)
                 + set("its-own", "applied", version_at(wall_ms()), 1)
                 + set("another-nodes", "x", version_at(wall_ms(), third_node), 2));

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

TEST_CASE("a peer's writes come numbered one after the other, or the link closes before they are applied",
          "[node][replication][clock]")
{
    uint16_t repl_a = free_port(), repl_b = free_port();
    Node a(replication_args(repl_a, repl_b));
    Client ca(a);
    forger_node = uint8_t(stat(a, "node_id") + 1);
    const std::string start = hello(repl_b) + resume() + sync_frame(REPL_FRAME_SYNC_BEGIN)
                              + sync_frame(REPL_FRAME_SYNC_END) + set("first", "applied", version_at(wall_ms()), 1);
    uint64_t errors = 0;

    SECTION("a number skipped") {
        RawPeer b(repl_a);
        b.send_bytes(start + set("skipped", "x", version_at(wall_ms()), 3));
        CHECK(eventually([&] { return stat(a, "protocol_errors") > errors; }));
        CHECK(ca.get("first").value_or(Item{}).value == "applied");
        CHECK_FALSE(ca.get("skipped"));
    }
    SECTION("a number again") {
        RawPeer b(repl_a);
        b.send_bytes(start + set("again", "x", version_at(wall_ms()), 1));
        CHECK(eventually([&] { return stat(a, "protocol_errors") > errors; }));
        CHECK_FALSE(ca.get("again"));
    }
    SECTION("a write without a number once its resync is over") {
        RawPeer b(repl_a);
        b.send_bytes(start + set("unnumbered", "x", version_at(wall_ms())));
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
        b.send_bytes(hello(repl_b) + sync_frame(REPL_FRAME_SYNC_BEGIN));
        CHECK(eventually([&] { return stat(a, "protocol_errors") > errors; }));
    }
    CHECK(replication_stats(a)["peer0:state"] != "online");
}
