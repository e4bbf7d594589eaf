// Replication links through an encrypted tunnel, as docs/security.md sets
// one up: on each "host" one stunnel carries the node's own dial, over TLS
// with a pre-shared key, to the stunnel in front of the other node's
// replication port. A node dials its local stunnel, and sees its peer's
// connections come out of the tunnel from an address of its own host, not
// from the peer's: the peer is named with the port it listens on
// (-x host:port=its port), and with the secret (-K) the handshake, not the
// address, admits it.
// Tagged [node]: run once per variant; [stunnel]: needs stunnel4.
#include <catch2/catch.hpp>

#include "support/pair.hpp"
#include "support/skip.hpp"

#include <arpa/inet.h>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <netinet/in.h>
#include <stdexcept>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace fixture;
using namespace std::chrono_literals;

namespace {

uint64_t stat(const Node &node, const std::string &name)
{
    return std::stoull(replication_stats(node)[name]);
}

bool listening(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = connect(fd, reinterpret_cast<sockaddr *>(&addr), sizeof addr) == 0;
    close(fd);
    return ok;
}

void write_file(const std::filesystem::path &path, const std::string &text, mode_t mode)
{
    std::ofstream(path) << text;
    if (chmod(path.c_str(), mode) != 0)
        throw std::runtime_error("chmod " + path.string() + ": " + strerror(errno));
}

// The tunnel on one host: one stunnel in the foreground, with two services.
// "replication-in" takes TLS on `in_port` and connects to this host's node
// at `node_repl_port` (from `source`, stunnel's "local", if given);
// "replication-out" takes this node's dial on `out_port` and carries it to
// the other host's `peer_in_port`. Killed by PID when destroyed.
class Stunnel {
public:
    Stunnel(const ScratchDir &dir, const std::string &name, uint16_t in_port, uint16_t node_repl_port,
            uint16_t out_port, uint16_t peer_in_port, const std::string &source = "")
        : name_(name), log_(dir / (name + ".log"))
    {
        std::filesystem::path conf = dir / (name + ".conf");
        std::string psk = (dir / "psk.txt").string();
        std::string text = "foreground = yes\n"
                           "pid =\n"
                           "syslog = no\n"
                           "output = " + log_.string() + "\n"
                           "\n"
                           "[replication-in]\n"
                           "accept = 127.0.0.1:" + std::to_string(in_port) + "\n"
                           "connect = 127.0.0.1:" + std::to_string(node_repl_port) + "\n"
                           + (source.empty() ? "" : "local = " + source + "\n") +
                           "PSKsecrets = " + psk + "\n"
                           "\n"
                           "[replication-out]\n"
                           "client = yes\n"
                           "accept = 127.0.0.1:" + std::to_string(out_port) + "\n"
                           "connect = 127.0.0.1:" + std::to_string(peer_in_port) + "\n"
                           "PSKsecrets = " + psk + "\n";
        write_file(conf, text, 0600);

        pid_ = fork();
        if (pid_ == 0) {
            int null_fd = open("/dev/null", O_RDWR);
            dup2(null_fd, 0);
            dup2(null_fd, 1);
            dup2(null_fd, 2);
            execlp("stunnel4", "stunnel4", conf.c_str(), static_cast<char *>(nullptr));
            _exit(127);
        }
        if (pid_ < 0)
            throw std::runtime_error(std::string("fork: ") + strerror(errno));
        if (!eventually([&] { return (listening(in_port) && listening(out_port)) || exited(); }, 10s) || exited())
            throw std::runtime_error("stunnel " + name_ + " did not start; its log:\n" + log());
    }
    ~Stunnel()
    {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            waitpid(pid_, nullptr, 0);
        }
    }
    Stunnel(const Stunnel &) = delete;
    Stunnel &operator=(const Stunnel &) = delete;

    std::string log() const { return name_ + ": " + slurp(log_); }

private:
    bool exited()
    {
        if (pid_ > 0 && waitpid(pid_, nullptr, WNOHANG) == pid_)
            pid_ = -1;
        return pid_ < 0;
    }

    std::string name_;
    std::filesystem::path log_;
    pid_t pid_ = -1;
};

// How a node names its tunnelled peer: with -x, or on a line of a peers
// file (-Y), which takes the same host:port=port.
enum class Naming { option, peers_file };

// Two nodes, A and B, each behind its own stunnel: A's peer is its
// stunnel's "replication-out" port, which leads to B's stunnel and on to
// B, and the other way round. `secret` (may be empty) is each node's -K;
// `source` the address each stunnel connects to its node from.
struct TunnelledPair {
    TunnelledPair(const std::string &secret, const std::string &source = "", Naming naming = Naming::option)
        : dir("tunnel"), repl_a(free_port()), repl_b(free_port())
    {
        write_file(dir / "psk.txt", "repcached-ng:" + std::string(48, 'k') + "\n", 0600);
        uint16_t in_a = free_port(), in_b = free_port(), out_a = free_port(), out_b = free_port();
        tunnel_a = std::make_unique<Stunnel>(dir, "stunnel-a", in_a, repl_a, out_a, in_b, source);
        tunnel_b = std::make_unique<Stunnel>(dir, "stunnel-b", in_b, repl_b, out_b, in_a, source);
        std::vector<std::string> secret_args;
        if (!secret.empty()) {
            write_file(dir / "secret", secret, 0600);
            secret_args = {"-K", (dir / "secret").string()};
        }
        auto args = [&](const std::string &name, uint16_t out, uint16_t peer_repl) {
            const std::string peer = "127.0.0.1:" + std::to_string(out) + "=" + std::to_string(peer_repl);
            std::vector<std::string> extra = {"-x", peer};
            if (naming == Naming::peers_file) {
                write_file(dir / name, "# the tunnel's end here = the peer's own -X\n" + peer + "\n", 0644);
                extra = {"-Y", (dir / name).string()};
            }
            extra.insert(extra.end(), secret_args.begin(), secret_args.end());
            return extra;
        };
        a = std::make_unique<Node>(replication_args(repl_a, std::vector<uint16_t>{}, args("peers-a", out_a, repl_b)),
                                   0, Node::Wait::nothing);
        b = std::make_unique<Node>(replication_args(repl_b, std::vector<uint16_t>{}, args("peers-b", out_b, repl_a)),
                                   0, Node::Wait::nothing);
        if (!a->wait_serving(40s) || !b->wait_serving(40s))
            throw std::runtime_error("the nodes do not serve; logs:\n" + a->log() + b->log() + logs());
    }

    std::string logs() const { return tunnel_a->log() + tunnel_b->log(); }

    ScratchDir dir;
    uint16_t repl_a, repl_b;
    std::unique_ptr<Stunnel> tunnel_a, tunnel_b;
    std::unique_ptr<Node> a, b;
};

std::vector<std::string> keys_named(const std::string &prefix, size_t n)
{
    std::vector<std::string> keys;
    for (size_t i = 0; i < n; i++)
        keys.push_back(prefix + std::to_string(i));
    return keys;
}

} // namespace

TEST_CASE("a pair whose links go through stunnel with a shared secret links, and writes on both sides reach the other",
          "[node][replication][stunnel]")
{
    require_tool("stunnel4", "stunnel4");
    std::unique_ptr<TunnelledPair> pair;
    SECTION("the tunnel reaches each node from 127.0.0.1") {
        pair = std::make_unique<TunnelledPair>("correct horse battery staple\n");
    }
    SECTION("the tunnel reaches each node from an address no -x names (127.0.0.2)") {
        pair = std::make_unique<TunnelledPair>("correct horse battery staple\n", "127.0.0.2");
    }
    SECTION("each node names its tunnelled peer in a peers file (-Y)") {
        pair = std::make_unique<TunnelledPair>("correct horse battery staple\n", "", Naming::peers_file);
    }
    Node &a = *pair->a, &b = *pair->b;
    INFO(pair->logs());
    std::string states;
    REQUIRE(eventually([&] { return all_online(a) && all_online(b); }, 20s, &states,
                       [&] { return "A: " + peer_states(a) + "; B: " + peer_states(b); }));

    auto from_a = keys_named("from-a:", 100), from_b = keys_named("from-b:", 100);
    for (size_t i = 0; i < from_a.size(); i++) {
        Client(a).set(from_a[i], "written on A " + std::to_string(i), uint32_t(i));
        Client(b).set(from_b[i], "written on B " + std::to_string(i), uint32_t(i));
    }
    Client(a).del(from_a[0]);
    Client(b).set("counter", "41");
    Client(a).incr("counter", 1);    // may run before B's set arrives: then NOT_FOUND
    std::vector<std::string> keys = from_a;
    keys.insert(keys.end(), from_b.begin(), from_b.end());
    keys.push_back("counter");

    std::string last_seen;
    REQUIRE(eventually([&] { return census_difference(census(a, keys), census(b, keys)) == ""; }, 20s, &last_seen,
                       [&] { return census_difference(census(a, keys), census(b, keys)); }));
    auto on_a = census(a, keys);
    CHECK(on_a.size() == keys.size() - 1);
    CHECK(on_a.count(from_a[0]) == 0);
    CHECK(on_a[from_b[99]].value == "written on B 99");
    CHECK(census(b, keys)[from_a[99]].value == "written on A 99");

    for (Node *node : {&a, &b}) {
        auto stats = replication_stats(*node);
        CHECK(stats["auth"] == "hmac-sha256");
        CHECK(stats["auth_failures"] == "0");
        CHECK(stats["peer0:state"] == "online");
    }
    // Each node took its peer's connections out of the tunnel for its peer.
    // (Both may dial at once: the duplicate link is refused as such.)
    for (Node *node : {&a, &b}) {
        INFO(node->log());
        CHECK(node->log().find("no -x names its address") == std::string::npos);
        CHECK(node->log().find("authentication failed") == std::string::npos);
    }
}

TEST_CASE("without a secret, a tunnelled peer's connections from an address no -x names are refused",
          "[node][replication][stunnel]")
{
    require_tool("stunnel4", "stunnel4");
    TunnelledPair pair("", "127.0.0.2");
    Node &a = *pair.a, &b = *pair.b;
    INFO(pair.logs());
    CHECK(eventually([&] { return stat(a, "refused_connections") >= 2 && stat(b, "refused_connections") >= 2; }, 15s));
    CHECK(replication_stats(a)["auth"] == "none");
    CHECK(replication_stats(a)["peer0:state"] != "online");
    CHECK(replication_stats(b)["peer0:state"] != "online");
    Client(a).set("k", "only on A");
    CHECK_FALSE(Client(b).get("k"));
}

TEST_CASE("two tunnelled peers that listen on one port stop the node at start", "[node][replication]")
{
    uint16_t repl = free_port(), one = free_port(), other = free_port(), peer_repl = free_port();
    std::string message;
    try {
        Node a(replication_args(repl, std::vector<uint16_t>{},
                                {"-x", "127.0.0.1:" + std::to_string(one) + "=" + std::to_string(peer_repl),
                                 "-x", "127.0.0.2:" + std::to_string(other) + "=" + std::to_string(peer_repl)}));
    } catch (const std::exception &e) {
        message = e.what();
    }
    INFO(message);
    CHECK(message.find("exited at start") != std::string::npos);
    CHECK(message.find("cannot be told apart: both listen on port " + std::to_string(peer_repl)) != std::string::npos);
}

TEST_CASE("a tunnelled peer's own port must be a port", "[node][replication]")
{
    uint16_t repl = free_port(), out = free_port();
    std::string spec = GENERATE(std::string("=0"), std::string("="), std::string("=70000"), std::string("=12x"));
    std::string message;
    try {
        Node a(replication_args(repl, std::vector<uint16_t>{}, {"-x", "127.0.0.1:" + std::to_string(out) + spec}));
    } catch (const std::exception &e) {
        message = e.what();
    }
    INFO(message);
    CHECK(message.find("the port after '=' must be 1-65535") != std::string::npos);
}
