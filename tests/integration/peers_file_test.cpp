// Membership without restarts: a node also replicates with the peers its
// peers file (-Y) names, and reads the file again on SIGHUP, so that a node
// joins or leaves a running mesh while the others keep their data and
// their clients.
// Tagged [node]: run once per variant.
#include <catch2/catch.hpp>

#include "support/pair.hpp"

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

using namespace fixture;
using namespace std::chrono_literals;

namespace {

// A peers file, rewritten whole by write(); removed at the end. Readable
// by all: a node started as root reads it after -u drops privileges.
class PeersFile {
public:
    explicit PeersFile(const std::string &text = "")
    {
        char path[] = "/tmp/repcached-peers-XXXXXX";
        int fd = mkstemp(path);
        if (fd < 0)
            throw std::runtime_error(std::string("mkstemp: ") + strerror(errno));
        close(fd);
        path_ = path;
        write(text);
    }
    ~PeersFile() { unlink(path_.c_str()); }
    PeersFile(const PeersFile &) = delete;
    PeersFile &operator=(const PeersFile &) = delete;

    // Replaces the file by rename(), as an editor or a configuration
    // manager does, so that a reload never reads it half written.
    void write(const std::string &text)
    {
        std::string tmp = path_ + ".new";
        {
            std::ofstream out(tmp, std::ios::trunc);
            out << text;
            if (!out)
                throw std::runtime_error("cannot write " + tmp);
        }
        if (chmod(tmp.c_str(), 0644) != 0 || rename(tmp.c_str(), path_.c_str()) != 0)
            throw std::runtime_error("cannot replace " + path_ + ": " + strerror(errno));
    }
    const std::string &path() const { return path_; }
    std::vector<std::string> args() const { return {"-Y", path_}; }

private:
    std::string path_;
};

std::string peer_line(uint16_t repl_port, const std::string &comment = "")
{
    return "127.0.0.1:" + std::to_string(repl_port) + (comment.empty() ? "" : "   # " + comment) + "\n";
}

void reload(const Node &node)
{
    REQUIRE(::kill(node.pid(), SIGHUP) == 0);
}

uint64_t stat(const Node &node, const std::string &name)
{
    return std::stoull(replication_stats(node)[name]);
}

// The addresses of the node's peers, as "stats replication" lists them.
std::vector<std::string> peer_addresses(const Node &node)
{
    auto stats = replication_stats(node);
    std::vector<std::string> addresses;
    for (int i = 0; i < std::stoi(stats["peers"]); i++)
        addresses.push_back(stats["peer" + std::to_string(i) + ":address"]);
    return addresses;
}

// Clients writing keys of their own on each of `nodes` in turn, from a
// thread, until stopped or `limit` writes; keys() is every key written.
class Writer {
public:
    Writer(std::vector<const Node *> nodes, std::string prefix, size_t limit = 20000)
        : thread_([this, nodes, prefix, limit] {
              std::vector<std::unique_ptr<Client>> clients;
              for (auto *node : nodes)
                  clients.push_back(std::make_unique<Client>(*node));
              for (size_t n = 0; n < limit && !stop_; n++) {
                  std::string key = prefix + std::to_string(n);
                  if (clients[n % clients.size()]->set(key, "value of " + key, uint32_t(n % 7)) != "STORED")
                      failed_++;
                  keys_.push_back(key);
                  written_++;
              }
          })
    {
    }
    ~Writer() { stop(); }
    void stop()
    {
        stop_ = true;
        if (thread_.joinable())
            thread_.join();
    }
    size_t written() const { return written_; }
    size_t failed() const { return failed_; }
    // Once stopped.
    const std::vector<std::string> &keys() const { return keys_; }

private:
    std::atomic<bool> stop_{false};
    std::atomic<size_t> written_{0};
    std::atomic<size_t> failed_{0};
    std::vector<std::string> keys_;
    std::thread thread_;
};

bool wait_written(const Writer &writer, size_t more)
{
    size_t target = writer.written() + more;
    return eventually([&] { return writer.written() >= target; });
}

} // namespace

TEST_CASE("a node added to the peers files of a running mesh gets every key, and one removed from them is let go, "
          "while writes go on",
          "[node][replication][peers-file]")
{
    uint16_t repl_a = free_port(), repl_b = free_port(), repl_c = free_port();
    PeersFile file_a("# the other nodes of the mesh\n" + peer_line(repl_b, "B")),
        file_b(peer_line(repl_a)), file_c(peer_line(repl_a) + peer_line(repl_b));
    Node a(replication_args(repl_a, std::vector<uint16_t>{}, file_a.args()));
    Node b(replication_args(repl_b, std::vector<uint16_t>{}, file_b.args()));
    REQUIRE(eventually([&] { return all_online(a) && all_online(b); }));
    std::vector<std::string> keys = fill(a, "before:", 2000, 200);

    // C names A and B, which refuse it until their files name it.
    Node c(replication_args(repl_c, std::vector<uint16_t>{}, file_c.args()));
    std::string c_address = "127.0.0.1:" + std::to_string(repl_c);

    Writer joining({&a, &b}, "joining:");
    REQUIRE(wait_written(joining, 500));
    file_a.write(peer_line(repl_b, "B") + "\n" + peer_line(repl_c, "C, added"));
    file_b.write(peer_line(repl_a) + peer_line(repl_c));
    reload(a);
    reload(b);
    INFO("A: " << peer_states(a) << "\nB: " << peer_states(b) << "\nC: " << peer_states(c));
    REQUIRE(eventually([&] { return all_online(a) && all_online(b) && all_online(c); }, 20s));
    REQUIRE(wait_written(joining, 500));
    joining.stop();
    CHECK(joining.failed() == 0);
    keys.insert(keys.end(), joining.keys().begin(), joining.keys().end());

    REQUIRE(converge({&a, &b, &c}, keys) == "");
    CHECK(census(c, keys).size() == keys.size());
    CHECK(stat(a, "peers") == 2);
    CHECK(stat(a, "peers_reloads") == 1);
    CHECK(replication_stats(a)["peers_reload_error"] == "none");
    CHECK(a.log().find("replication: peer " + c_address + " added (peers file)") != std::string::npos);

    // Writes on C reach both: its links are whole ones.
    REQUIRE(Client(c).set("written-on-C", "by C") == "STORED");
    keys.push_back("written-on-C");
    REQUIRE(converge({&a, &b, &c}, keys) == "");

    // C leaves: A and B close its links and forget it, and go on between
    // themselves.
    Writer leaving({&a, &b}, "leaving:");
    REQUIRE(wait_written(leaving, 500));
    file_a.write(peer_line(repl_b));
    file_b.write(peer_line(repl_a));
    reload(a);
    reload(b);
    auto gone = [&](const Node &node) {
        auto addresses = peer_addresses(node);
        return addresses.size() == 1 && addresses[0] != c_address && all_online(node);
    };
    REQUIRE(eventually([&] { return gone(a) && gone(b); }));
    CHECK(stat(a, "peers_reloads") == 2);
    CHECK(a.log().find("replication: link " + c_address + " (dialled): removed from the peers file")
          != std::string::npos);
    // C is refused from now on: its links stay down.
    REQUIRE(eventually([&] {
        auto stats = replication_stats(c);
        return stats["peer0:state"] != "online" && stats["peer1:state"] != "online";
    }));
    REQUIRE(wait_written(leaving, 500));
    leaving.stop();
    CHECK(leaving.failed() == 0);
    REQUIRE(converge({&a, &b}, leaving.keys()) == "");
    REQUIRE(converge({&a, &b}, keys) == "");
    // What A wrote after C left did not reach C.
    CHECK(census(c, leaving.keys()).size() < leaving.keys().size());
}

TEST_CASE("a peers file that cannot be read whole stops the node at start and says which line",
          "[node][replication][peers-file]")
{
    uint16_t repl_a = free_port();
    std::unique_ptr<PeersFile> file;
    std::string expected;
    SECTION("a line that is not a peer") {
        file = std::make_unique<PeersFile>("# comment\n" + peer_line(free_port()) + "127.0.0.1:99999\n");
        expected = "line 3: invalid replication peer '127.0.0.1:99999': port must be 1-65535";
    }
    SECTION("two peers on one line") {
        file = std::make_unique<PeersFile>("127.0.0.1:4711 127.0.0.1:4712\n");
        expected = "line 1: one peer per line";
    }
    SECTION("a peer named twice") {
        uint16_t port = free_port();
        file = std::make_unique<PeersFile>(peer_line(port) + "\n" + peer_line(port, "again"));
        expected = "line 3: '127.0.0.1:" + std::to_string(port) + "' is named twice (also on line 1)";
    }
    std::string message;
    try {
        Node a(replication_args(repl_a, std::vector<uint16_t>{}, file->args()));
    } catch (const std::exception &e) {
        message = e.what();
    }
    INFO(message);
    CHECK(message.find("exited at start") != std::string::npos);
    CHECK(message.find("replication peers file '" + file->path() + "' " + expected) != std::string::npos);
}

TEST_CASE("a missing peers file stops the node at start and says why", "[node][replication][peers-file]")
{
    std::string message;
    try {
        Node a(replication_args(free_port(), std::vector<uint16_t>{}, {"-Y", "/nonexistent/peers"}));
    } catch (const std::exception &e) {
        message = e.what();
    }
    INFO(message);
    CHECK(message.find("replication peers file '/nonexistent/peers': cannot read it: No such file or directory")
          != std::string::npos);
}

TEST_CASE("a reload of a peers file with a bad line keeps the peers and says why", "[node][replication][peers-file]")
{
    uint16_t repl_a = free_port(), repl_b = free_port();
    PeersFile file_a(peer_line(repl_b));
    Node a(replication_args(repl_a, std::vector<uint16_t>{}, file_a.args()));
    Node b(replication_args(repl_b, repl_a));
    REQUIRE(eventually([&] { return all_online(a) && all_online(b); }));

    file_a.write(peer_line(repl_b) + "not a peer\n");
    reload(a);
    std::string expected = "replication peers file '" + file_a.path() + "' line 2: one peer per line";
    REQUIRE(eventually([&] {
        return replication_stats(a)["peers_reload_error"].find(expected) != std::string::npos;
    }));
    CHECK(a.log().find("replication: peers not reloaded, they stay as they were: " + expected) != std::string::npos);
    CHECK(stat(a, "peers_reloads") == 0);
    CHECK(peer_addresses(a) == std::vector<std::string>{"127.0.0.1:" + std::to_string(repl_b)});
    CHECK(all_online(a));
    REQUIRE(Client(a).set("after-a-bad-reload", "still replicated") == "STORED");
    CHECK(eventually([&] { return Client(b).get("after-a-bad-reload").has_value(); }));

    // A good file again: the error is gone.
    file_a.write(peer_line(repl_b));
    reload(a);
    CHECK(eventually([&] { return replication_stats(a)["peers_reload_error"] == "none"; }));
    CHECK(stat(a, "peers_reloads") == 1);
}

TEST_CASE("a peer named by -x stays when the peers file drops it", "[node][replication][peers-file]")
{
    uint16_t repl_a = free_port(), repl_b = free_port();
    PeersFile file_a(peer_line(repl_b));
    Node a(replication_args(repl_a, repl_b, file_a.args()));
    Node b(replication_args(repl_b, repl_a));
    REQUIRE(eventually([&] { return all_online(a) && all_online(b); }));
    CHECK(stat(a, "peers") == 1);
    // Counted from here, not from 1: when both nodes dial each other at
    // start, the link that came up first may be replaced by the other one
    // (the one the smaller node id dialled stays), with a resync of its
    // own. make check saw 2 here once.
    const uint64_t resyncs = stat(a, "peer0:resyncs");

    file_a.write("");
    reload(a);
    REQUIRE(eventually([&] { return stat(a, "peers_reloads") == 1; }));
    CHECK(peer_addresses(a) == std::vector<std::string>{"127.0.0.1:" + std::to_string(repl_b)});
    CHECK(all_online(a));
    INFO("the link was not made again");
    CHECK(stat(a, "peer0:resyncs") == resyncs);
}

TEST_CASE("SIGHUP does not stop a node, with or without peers", "[node][replication][peers-file]")
{
    SECTION("a node without peers") {
        Node a;
        reload(a);
        REQUIRE(Client(a).set("k", "v") == "STORED");
        CHECK(a.running());
        CHECK(Client(a).get("k").has_value());
    }
    SECTION("a node with peers but no peers file") {
        Pair pair;
        REQUIRE(wait_online(pair.a));
        reload(pair.a);
        CHECK(eventually([&] { return pair.a.log().find("no peers file (-Y), nothing to reload") != std::string::npos; }));
        REQUIRE(Client(pair.a).set("k", "v") == "STORED");
        CHECK(all_online(pair.a));
    }
}
