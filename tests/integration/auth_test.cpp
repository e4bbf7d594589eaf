// Trusted links: with a shared secret (-K), a link is admitted only when
// both ends prove they hold it; a connection that merely comes from a
// peer's address and claims its port gets nothing in and nothing out.
// Tagged [node]: run once per variant.
#include <catch2/catch.hpp>

#include "repl_codec.h"
#include "support/frames.hpp"
#include "support/pair.hpp"

#include <arpa/inet.h>
#include <cerrno>
#include <cstring>
#include <netinet/in.h>
#include <stdexcept>
#include <sys/socket.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

using namespace fixture;
using namespace std::chrono_literals;

namespace {

uint64_t stat(const Node &node, const std::string &name)
{
    return std::stoull(replication_stats(node)[name]);
}

// A file holding a secret, with the given mode; removed at the end.
class SecretFile {
public:
    explicit SecretFile(const std::string &secret, mode_t mode = 0600)
    {
        char path[] = "/tmp/repcached-secret-XXXXXX";
        int fd = mkstemp(path);
        if (fd < 0)
            throw std::runtime_error(std::string("mkstemp: ") + strerror(errno));
        path_ = path;
        bool ok = write(fd, secret.data(), secret.size()) == ssize_t(secret.size()) && fchmod(fd, mode) == 0;
        close(fd);
        if (!ok)
            throw std::runtime_error("cannot write " + path_);
    }
    ~SecretFile() { unlink(path_.c_str()); }
    SecretFile(const SecretFile &) = delete;
    SecretFile &operator=(const SecretFile &) = delete;

    const std::string &path() const { return path_; }
    std::vector<std::string> args() const { return {"-K", path_}; }

private:
    std::string path_;
};

// The HELLO a node listening for peers on `listen_port` sends, as encoded
// by the codec; `auth` and `nonce` as a node with or without a secret.
std::string hello(uint16_t listen_port, uint8_t auth = REPL_AUTH_NONE, const std::string &nonce = "")
{
    return hello_frame(listen_port, 7, 0x0123456789abcdefULL, auth, nonce);
}

std::string forged_set(const std::string &key, const std::string &value)
{
    return set_frame(key, value, 0xFFFFFFFFFFFFFE00ULL);
}

// The flush of the issue: versioned so far ahead that every write after
// it, on any node, looks older and is dropped.
std::string forged_flush()
{
    return flush_frame(0xFFFFFFFFFFFFFF00ULL);
}

std::string forged_auth()
{
    repl_frame f = blank_frame(REPL_FRAME_AUTH);
    std::string mac(REPL_MAC_LEN, '\x42');
    f.mac = mac.data();
    return encoded(f);
}

// Connects to a replication port as whoever runs the test (from
// 127.0.0.1, a peer's address), sends `bytes`, and reads what comes back
// until the node closes the connection (or 5 s pass, then closed is false).
struct Exchange {
    bool closed;
    std::string received;
};

Exchange forge(uint16_t repl_port, const std::string &bytes)
{
    int fd = connected_socket(repl_port);
    if (fd < 0)
        throw std::runtime_error("cannot connect to the replication port");
    timeval tv{5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    Exchange out{false, ""};
    char buf[4096];
    ssize_t n;
    while ((n = recv(fd, buf, sizeof buf, 0)) > 0)
        out.received.append(buf, n);
    out.closed = n == 0 || (n < 0 && errno == ECONNRESET);
    close(fd);
    return out;
}

// The types of the frames in `bytes`, in order ("HELLO AUTH"); "?" for
// bytes that do not decode.
std::string frame_types(const std::string &bytes)
{
    static const char *const names[] = {"", "HELLO", "SET", "DELETE", "FLUSH", "SYNC_BEGIN", "SYNC_END", "PING", "AUTH"};
    std::string out;
    size_t pos = 0;
    while (pos < bytes.size()) {
        repl_frame f;
        size_t consumed = 0;
        if (repl_decode(bytes.data() + pos, bytes.size() - pos, &f, &consumed) != REPL_OK)
            return out + (out.empty() ? "?" : " ?");
        out += (out.empty() ? "" : " ") + std::string(names[f.type]);
        pos += consumed;
    }
    return out;
}

std::vector<std::string> keys_named(const std::string &prefix, size_t n)
{
    std::vector<std::string> keys;
    for (size_t i = 0; i < n; i++)
        keys.push_back(prefix + std::to_string(i));
    return keys;
}

// Whether a write on each node reaches the other.
std::string replicates_both_ways(Pair &pair, const std::string &tag)
{
    Client(pair.a).set("from-a:" + tag, "a");
    Client(pair.b).set("from-b:" + tag, "b");
    return pair.converge({"from-a:" + tag, "from-b:" + tag}, 10s);
}

} // namespace

TEST_CASE("a forged HELLO and FLUSH from a peer's address never reach the data, and the pair keeps replicating",
          "[node][replication][auth]")
{
    SecretFile secret("correct horse battery staple\n");
    Pair pair(secret.args());
    REQUIRE(wait_online(pair.a));
    REQUIRE(wait_online(pair.b));
    auto keys = keys_named("k", 50);
    for (const auto &key : keys)
        Client(pair.a).set(key, "before");
    REQUIRE(pair.converge(keys) == "");
    uint64_t resyncs = stat(pair.a, "peer0:resyncs");

    // The forger dials A from 127.0.0.1 and claims to be B (B's listen
    // port), then sends a write and the flush of the issue.
    const std::string attack = forged_set("k0", "forged") + forged_flush();
    SECTION("claiming to have no secret") {
        Exchange e = forge(pair.repl_a, hello(pair.repl_b) + attack);
        CHECK(e.closed);
        CHECK(e.received == "");
    }
    SECTION("claiming to have a secret, and sending data instead of its proof") {
        Exchange e = forge(pair.repl_a, hello(pair.repl_b, REPL_AUTH_HMAC_SHA256, std::string(REPL_NONCE_LEN, 'n'))
                                            + attack);
        CHECK(e.closed);
        INFO("received " << frame_types(e.received));
        CHECK((e.received == "" || frame_types(e.received) == "HELLO AUTH"));
    }
    SECTION("claiming to have a secret, with a made-up proof") {
        Exchange e = forge(pair.repl_a, hello(pair.repl_b, REPL_AUTH_HMAC_SHA256, std::string(REPL_NONCE_LEN, 'n'))
                                            + forged_auth() + attack);
        CHECK(e.closed);
        INFO("received " << frame_types(e.received));
        CHECK((e.received == "" || frame_types(e.received) == "HELLO AUTH"));
    }

    CHECK(eventually([&] { return stat(pair.a, "auth_failures") >= 1; }));
    CHECK(pair.a.log().find("refused 127.0.0.1:") != std::string::npos);
    INFO("A's link to B was never replaced, its items never flushed");
    CHECK(stat(pair.a, "peer0:resyncs") == resyncs);
    CHECK(census_difference(census(pair.a, keys), census(pair.b, keys)) == "");
    CHECK(Client(pair.a).get("k0").value_or(Item{}).value == "before");
    CHECK(replicates_both_ways(pair, "after") == "");
    CHECK(all_online(pair.a));
    CHECK(all_online(pair.b));
}

TEST_CASE("nodes with the same secret link, say so, and replicate", "[node][replication][auth]")
{
    SecretFile secret("s3cret");
    Pair pair(secret.args());
    REQUIRE(wait_online(pair.a));
    REQUIRE(wait_online(pair.b));
    CHECK(replication_stats(pair.a)["auth"] == "hmac-sha256");
    CHECK(replication_stats(pair.b)["auth"] == "hmac-sha256");
    CHECK(stat(pair.a, "auth_failures") + stat(pair.b, "auth_failures") == 0);
    CHECK(replicates_both_ways(pair, "same") == "");
    CHECK(pair.a.log().find("no shared secret") == std::string::npos);
}

TEST_CASE("nodes whose secrets differ never link, and count and log the refusals", "[node][replication][auth]")
{
    uint16_t repl_a = free_port(), repl_b = free_port();
    SecretFile secret_a("one secret");
    std::unique_ptr<SecretFile> secret_b;
    std::vector<std::string> b_args;
    SECTION("another secret") {
        secret_b = std::make_unique<SecretFile>("another secret");
        b_args = secret_b->args();
    }
    SECTION("a prefix of the secret") {
        secret_b = std::make_unique<SecretFile>("one secre");
        b_args = secret_b->args();
    }
    SECTION("no secret at all") {
    }
    Node a(replication_args(repl_a, repl_b, secret_a.args()));
    Node b(replication_args(repl_b, repl_a, b_args));
    Client(a).set("k", "a's data");
    Client(b).set("j", "b's data");

    // Both ends dial: every attempt is refused, and counted.
    CHECK(eventually([&] { return stat(a, "auth_failures") + stat(b, "auth_failures") >= 4; }, 15s));
    CHECK_FALSE(Client(b).get("k"));
    CHECK_FALSE(Client(a).get("j"));
    CHECK(replication_stats(a)["peer0:state"] != "online");
    CHECK(replication_stats(b)["peer0:state"] != "online");
    std::string logs = a.log() + b.log();
    CHECK(logs.find("refused 127.0.0.1:") != std::string::npos);
    CHECK(logs.find("authentication failed") != std::string::npos);
}

TEST_CASE("a secret file that others may read, or an empty one, stops the node at start and says why",
          "[node][replication][auth]")
{
    uint16_t repl_a = free_port(), repl_b = free_port();
    std::unique_ptr<SecretFile> secret;
    std::string expected;
    SECTION("mode 0644") {
        secret = std::make_unique<SecretFile>("s3cret", 0644);
        expected = "group or others may access it (mode 0644)";
    }
    SECTION("mode 0640") {
        secret = std::make_unique<SecretFile>("s3cret", 0640);
        expected = "group or others may access it (mode 0640)";
    }
    SECTION("empty") {
        secret = std::make_unique<SecretFile>("");
        expected = "empty";
    }
    SECTION("only a newline") {
        secret = std::make_unique<SecretFile>("\n");
        expected = "empty";
    }
    std::string message;
    try {
        Node a(replication_args(repl_a, repl_b, secret->args()));
    } catch (const std::exception &e) {
        message = e.what();
    }
    INFO(message);
    CHECK(message.find("exited at start") != std::string::npos);
    CHECK(message.find("replication secret file '" + secret->path() + "': " + expected) != std::string::npos);
}

TEST_CASE("a missing secret file stops the node at start and says why", "[node][replication][auth]")
{
    uint16_t repl_a = free_port(), repl_b = free_port();
    std::string message;
    try {
        Node a(replication_args(repl_a, repl_b, {"-K", "/nonexistent/secret"}));
    } catch (const std::exception &e) {
        message = e.what();
    }
    INFO(message);
    CHECK(message.find("replication secret file '/nonexistent/secret': cannot read it: No such file or directory")
          != std::string::npos);
}

TEST_CASE("a node of the previous protocol version is refused, and the log says so", "[node][replication][auth]")
{
    uint16_t repl_a = free_port(), repl_b = free_port();
    Node a(replication_args(repl_a, repl_b));
    // Version 2's HELLO: no authentication method, no nonce.
    std::string v2;
    auto u8 = [&](uint64_t v) { v2 += char(v & 0xff); };
    auto u16 = [&](uint64_t v) { u8(v >> 8); u8(v); };
    auto u32 = [&](uint64_t v) { u16(v >> 16); u16(v); };
    u32(1 + 4 + 2 + 1 + 8 + 2 + 1 + 9);
    u8(REPL_FRAME_HELLO);
    u32(REPL_MAGIC), u16(2), u8(7), u32(0), u32(99), u16(repl_b), u8(9);
    v2 += "memcached";

    Exchange e = forge(repl_a, v2);
    CHECK(e.closed);
    CHECK(e.received == "");
    std::string expected = "it speaks replication protocol version 2, this node version "
                           + std::to_string(REPL_PROTO_VERSION);
    CHECK(eventually([&] { return a.log().find(expected) != std::string::npos; }));
    // The counters are published after the turn of the loop that refused it.
    CHECK(eventually([&] { return stat(a, "refused_connections") >= 1; }));
}

TEST_CASE("without a secret, nodes link as before, warn at start and say auth none", "[node][replication][auth]")
{
    Pair pair;
    REQUIRE(wait_online(pair.a));
    CHECK(replication_stats(pair.a)["auth"] == "none");
    CHECK(stat(pair.a, "auth_failures") == 0);
    CHECK(pair.a.log().find("replication: warning: no shared secret (-K)") != std::string::npos);
    CHECK(replicates_both_ways(pair, "open") == "");
}

TEST_CASE("a node refused for its secret dials again with a growing delay, not in a loop", "[node][replication][auth]")
{
    SecretFile secret_a("alpha"), secret_b("bravo");
    uint16_t repl_a = free_port(), repl_b = free_port(), nobody = free_port();
    // B names a peer that never runs, on A's address: it admits A's dials
    // to the handshake and never dials A, so every refusal A counts is a
    // dial of its own.
    Node b(replication_args(repl_b, nobody, secret_b.args()));
    Node a(replication_args(repl_a, repl_b, secret_a.args()));
    REQUIRE(eventually([&] { return stat(a, "auth_failures") >= 2; }));
    uint64_t before = stat(a, "auth_failures");
    // The window the dials are counted in, not a synchronisation.
    std::this_thread::sleep_for(5s);
    uint64_t dials = stat(a, "auth_failures") - before;
    // The delay doubles from 50 ms up to 2 s: from the second dial on, at
    // most 6 fit in 5 s (0.15, 0.35, 0.75, 1.55, 3.15 and 5.15 s after
    // the first). Without it, the 100 ms tick would dial 50 times.
    CHECK(dials >= 1);
    CHECK(dials <= 8);
    CHECK(stat(a, "peer0:frames_received") == 0);
    CHECK(stat(b, "peer0:frames_received") == 0);
}
