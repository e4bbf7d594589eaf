// A node that starts empty while its peers hold the data serves clients
// only once it holds it: until its first resync is done its client port
// refuses connections, as a stopped node's does, so clients fail over
// instead of taking its misses for the truth. A node that nobody can help
// still starts, and systemd is told when the port opens. Tagged [node]:
// run once per variant.
#include <catch2/catch.hpp>

#include "support/pair.hpp"

#include <arpa/inet.h>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdexcept>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

using namespace fixture;
using namespace std::chrono_literals;

namespace {

bool contains(const std::string &text, const std::string &part)
{
    return text.find(part) != std::string::npos;
}

// A TCP port on 127.0.0.1 that takes connections (the kernel completes
// them) and never says a word: a peer whose host is up but whose node
// hangs, or that a firewall hides after the handshake.
class BlackHole {
public:
    explicit BlackHole(uint16_t port) : port_(port)
    {
        fd_ = listening_socket(INADDR_LOOPBACK, port);
        if (fd_ < 0)
            throw std::runtime_error("black hole on port " + std::to_string(port) + ": " + strerror(errno));
    }
    ~BlackHole()
    {
        if (fd_ >= 0)
            close(fd_);
        for (int fd : swallowed_)
            close(fd);
    }
    BlackHole(const BlackHole &) = delete;
    BlackHole &operator=(const BlackHole &) = delete;

    uint16_t port() const { return port_; }

    // Waits until someone has connected (and is waiting for an answer).
    bool dialled()
    {
        return eventually([&] {
            pollfd p{fd_, POLLIN, 0};
            return poll(&p, 1, 0) == 1;
        });
    }

    // Takes the next connection, waits for its first bytes (the dialling
    // node's HELLO) and closes it: what a node does with a dial it
    // refuses, and once with a dial whose HELLO gives its own node id.
    bool hang_up_next()
    {
        if (!dialled())
            return false;
        int fd = accept(fd_, nullptr, nullptr);
        if (fd < 0)
            return false;
        pollfd p{fd, POLLIN, 0};
        bool spoke = poll(&p, 1, 10000) == 1;
        close(fd);
        return spoke;
    }

    // Frees the port for a real node, keeping the connections made so
    // far open and silent.
    void stop_listening()
    {
        fcntl(fd_, F_SETFL, fcntl(fd_, F_GETFL) | O_NONBLOCK);
        int fd;
        while ((fd = accept(fd_, nullptr, nullptr)) >= 0)
            swallowed_.push_back(fd);
        close(fd_);
        fd_ = -1;
    }

private:
    uint16_t port_;
    int fd_ = -1;
    std::vector<int> swallowed_;
};

// A node whose only peer is a BlackHole, started without waiting for it to
// serve, and willing to wait ten minutes (-w) for a peer that does not
// answer: serving within a test's few seconds shows it gave up on the peer
// for another reason.
struct NodeBeforeBlackHole {
    BlackHole peer{free_port()};
    Node node{replication_args(free_port(), peer.port(), {"-w", "600"}), 0, Node::Wait::nothing};
};

// The unix datagram socket a systemd unit of Type=notify gives its
// service in $NOTIFY_SOCKET: a path, or a name in the abstract namespace
// (written with a leading '@').
class NotifySocket {
public:
    explicit NotifySocket(bool abstract)
    {
        name_ = (abstract ? "@repcached-notify-" : "/tmp/repcached-notify-") + std::to_string(getpid()) + "-" +
                std::to_string(free_port());
        fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        memcpy(addr.sun_path, name_.data(), name_.size());
        if (abstract)
            addr.sun_path[0] = '\0';
        socklen_t len = offsetof(sockaddr_un, sun_path) + name_.size();
        if (bind(fd_, reinterpret_cast<sockaddr *>(&addr), len) != 0)
            throw std::runtime_error("notify socket " + name_ + ": " + strerror(errno));
    }
    ~NotifySocket()
    {
        close(fd_);
        if (name_[0] == '/')
            unlink(name_.c_str());
    }
    NotifySocket(const NotifySocket &) = delete;
    NotifySocket &operator=(const NotifySocket &) = delete;

    std::string environment() const { return "NOTIFY_SOCKET=" + name_; }

    // Every message received so far, in order.
    const std::vector<std::string> &messages()
    {
        char buf[4096];
        ssize_t n;
        while ((n = recv(fd_, buf, sizeof buf, 0)) >= 0)
            messages_.emplace_back(buf, n);
        return messages_;
    }

private:
    std::string name_;
    int fd_;
    std::vector<std::string> messages_;
};

// Whether a message of sd_notify(3)'s protocol has the line "READY=1".
bool says_ready(const std::string &message)
{
    return ("\n" + message + "\n").find("\nREADY=1\n") != std::string::npos;
}

} // namespace

TEST_CASE("a node restarted empty takes no client until it holds every item of its peer, then serves them all",
          "[node][replication][readiness]")
{
    Pair pair({"-m", "256"});
    REQUIRE(wait_online(pair.a));
    auto keys = fill(pair.b, "item:", 100000, 1024);
    REQUIRE(Client(pair.b).stats()["curr_items"] == "100000");

    pair.a.kill9();
    pair.a.restart(Node::Wait::nothing);

    // The first connection A accepts already finds everything.
    std::unique_ptr<Client> first;
    REQUIRE(eventually([&] {
        try {
            first = std::make_unique<Client>(pair.a.port());
            return true;
        } catch (const std::runtime_error &) {
            return false;
        }
    }, 60s));
    CHECK(first->stats()["curr_items"] == "100000");
    CHECK(census_difference(census(pair.b, keys), census(pair.a, keys), 5, "B", "A") == "");
    auto stats = replication_stats(pair.a);
    CHECK(stats["state"] == "ready");
    CHECK(stats["ready_because"] == "resync from 127.0.0.1:" + std::to_string(pair.repl_b) + " done (100000 items)");
}

TEST_CASE("a node whose only peer refuses connections serves at once", "[node][replication][readiness]")
{
    uint16_t repl = free_port(), nobody = free_port();
    // Ten minutes for a silent peer: serving within the fixture's 10 s
    // shows it did not wait for one that refused.
    Node node(replication_args(repl, nobody, {"-w", "600"}));
    auto stats = replication_stats(node);
    CHECK(stats["state"] == "ready");
    CHECK(stats["ready_because"] == "no peer holds data: 0 sent an empty resync, 1 refused the connection");
}

// A node that draws the node id of the peer it dials has its dial closed
// in the handshake by that peer, which takes another id and links again:
// seen in make check-sanitize after a node was restarted empty, which then
// served before its peer's resync came.
TEST_CASE("a node whose peer closes its first dial in the handshake waits for that peer's resync",
          "[node][replication][readiness]")
{
    NodeBeforeBlackHole t;

    REQUIRE(t.peer.hang_up_next());
    REQUIRE(t.peer.dialled());  // the next dial, which the peer leaves unanswered
    CHECK_FALSE(eventually([&] { return t.node.accepts_connections(); }, 2s));
}

TEST_CASE("a node whose peer closes every dial in the handshake takes it as refusing, and serves",
          "[node][replication][readiness]")
{
    NodeBeforeBlackHole t;

    REQUIRE(t.peer.hang_up_next());
    REQUIRE(t.peer.hang_up_next());
    REQUIRE(t.node.wait_serving(10s));
    CHECK(replication_stats(t.node)["ready_because"] ==
          "no peer holds data: 0 sent an empty resync, 1 refused the connection");
}

TEST_CASE("a node whose only peer never answers serves once -w has passed", "[node][replication][readiness]")
{
    uint16_t repl = free_port();
    BlackHole peer(free_port());
    Node node(replication_args(repl, peer.port(), {"-w", "3", "-v"}), 0, Node::Wait::nothing);

    REQUIRE(peer.dialled());
    CHECK_FALSE(node.accepts_connections());
    REQUIRE(node.wait_serving(20s));
    auto stats = replication_stats(node);
    CHECK(stats["state"] == "ready");
    CHECK(stats["ready_because"] == "no resync within 3 s (-w), serving without one");
    // -v said what it waited for, since stats cannot be read meanwhile.
    CHECK(contains(node.log(), "replication: state waiting_for_resync peer=127.0.0.1:" +
                                   std::to_string(peer.port()) + " (handshaking)"));
}

TEST_CASE("two nodes that start empty together are both ready at once", "[node][replication][readiness]")
{
    uint16_t repl_a = free_port(), repl_b = free_port();
    // A's dial reaches B's port before B runs, and hangs there: A cannot
    // take B for dead, so only B's empty resync can make A ready.
    BlackHole b_not_yet(repl_b);
    Node a(replication_args(repl_a, repl_b, {"-w", "600"}), 0, Node::Wait::nothing);
    REQUIRE(b_not_yet.dialled());
    b_not_yet.stop_listening();
    Node b(replication_args(repl_b, repl_a, {"-w", "600"}), 0, Node::Wait::nothing);

    CHECK(a.wait_serving(10s));
    CHECK(b.wait_serving(10s));
    for (const Node *node : {&a, &b}) {
        auto stats = replication_stats(*node);
        INFO("node on port " << node->port());
        CHECK(stats["state"] == "ready");
        CHECK(stats["ready_because"] == "no peer holds data: 1 sent an empty resync, 0 refused the connection");
    }
}

TEST_CASE("a serving node whose peer dies keeps serving", "[node][replication][readiness]")
{
    Pair pair;
    REQUIRE(wait_online(pair.a));
    REQUIRE(Client(pair.a).set("k", "v") == "STORED");
    pair.b.kill9();
    REQUIRE(eventually([&] { return replication_stats(pair.a)["peer0:state"] != "online"; }));

    CHECK(pair.a.accepts_connections());
    auto k = Client(pair.a).get("k");
    REQUIRE(k);
    CHECK(k->value == "v");
    CHECK(replication_stats(pair.a)["state"] == "ready");
}

TEST_CASE("NOTIFY_SOCKET gets READY=1 when the client port opens, not before", "[node][readiness]")
{
    const bool abstract = GENERATE(false, true);
    INFO((abstract ? "an abstract socket name" : "a socket path"));
    NotifySocket systemd(abstract);

    SECTION("a node waiting for a peer tells systemd once it serves") {
        BlackHole peer(free_port());
        Node node(replication_args(free_port(), peer.port(), {"-w", "3"}), 0, Node::Wait::nothing,
                  {systemd.environment()});
        REQUIRE(peer.dialled());
        const auto early = systemd.messages();
        const bool open_early = node.accepts_connections();
        CHECK(early.empty());
        CHECK_FALSE(open_early);

        REQUIRE(eventually([&] { return !systemd.messages().empty(); }, 20s));
        // READY=1 is sent after the port listens.
        CHECK(node.accepts_connections());
        REQUIRE(systemd.messages().size() == 1);
        CHECK(says_ready(systemd.messages()[0]));
    }
    SECTION("a node without peers tells systemd as soon as it listens") {
        Node node({}, 0, Node::Wait::serving, {systemd.environment()});
        REQUIRE(eventually([&] { return !systemd.messages().empty(); }));
        REQUIRE(systemd.messages().size() == 1);
        CHECK(says_ready(systemd.messages()[0]));
    }
}
