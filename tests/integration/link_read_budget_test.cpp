// A node reads each link a bounded amount per turn of its event loop
// (256 KiB, the links patch): a peer streaming a long resync to it must not
// keep the other links waiting, or their peers hear nothing from the node
// and close them as silent (after 10 s). Tagged [node]: run once per
// variant.
#include <catch2/catch.hpp>

#include "support/pair.hpp"

#include <atomic>
#include <cstdlib>
#include <optional>
#include <thread>
#include <unistd.h>

using namespace fixture;
using namespace std::chrono_literals;

namespace {

// Sets environment variables for the processes started while it lives.
class ScopedEnv {
public:
    void set(const std::string &name, const std::string &value)
    {
        const char *old = getenv(name.c_str());
        saved_.emplace_back(name, old ? std::optional<std::string>(old) : std::nullopt);
        setenv(name.c_str(), value.c_str(), 1);
    }
    ~ScopedEnv()
    {
        for (auto it = saved_.rbegin(); it != saved_.rend(); ++it)
            it->second ? setenv(it->first.c_str(), it->second->c_str(), 1) : unsetenv(it->first.c_str());
    }

private:
    std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

uint16_t port_of(const std::string &address)
{
    return uint16_t(std::stoul(address.substr(address.rfind(':') + 1)));
}

// The "peerN" prefix under which `node` reports its link to `peer`.
std::string peer_prefix(const Mesh &mesh, size_t node, size_t peer)
{
    auto stats = replication_stats(mesh.node(node));
    for (int p = 0; p < std::stoi(stats["peers"]); p++) {
        const std::string prefix = "peer" + std::to_string(p);
        if (mesh.node_at(port_of(stats[prefix + ":address"])) == peer)
            return prefix;
    }
    return "";
}

} // namespace

TEST_CASE("a long resync from one peer does not starve a node's other links",
          "[node][replication][mesh][budget]")
{
    Mesh mesh(3);
    REQUIRE(mesh.wait_online() == "");
    Node &a = mesh.node(0), &b = mesh.node(1), &c = mesh.node(2);

    // 15,000 items on every node; C restarted empty then takes them from A
    // and from B.
    const size_t items = 15000;
    auto keys = fill(a, "bulk:", items, 100);
    REQUIRE(eventually([&] {
        for (size_t i = 1; i < mesh.size(); i++)
            if (Client(mesh.node(i)).stats()["curr_items"] != std::to_string(items))
                return false;
        return true;
    }, 60s));
    const std::string b_to_c = peer_prefix(mesh, 1, 2), a_to_c = peer_prefix(mesh, 0, 2);
    REQUIRE(!b_to_c.empty());
    REQUIRE(!a_to_c.empty());
    const uint64_t b_resyncs = std::stoull(replication_stats(b)[b_to_c + ":resyncs"]);
    const uint64_t a_resyncs = std::stoull(replication_stats(a)[a_to_c + ":resyncs"]);

    // C applies slowly: after every unlock its threads sleep 300 us
    // (tests/tools/lock_handoff.c), so that the peers' resyncs keep its
    // sockets full for longer than the 10 s after which a silent link is
    // closed. A node that read one socket until it was empty would spend
    // that whole time on one link.
    c.kill9();
    {
        const std::string lib = REPO_ROOT "/build/tests/lock_handoff.so";
        if (access(lib.c_str(), R_OK) != 0)
            FAIL(lib << " is missing: make test-binaries builds it");
        ScopedEnv env;
        env.set("LD_PRELOAD", lib);
        env.set("LOCK_HANDOFF_EVERY", "1");
        env.set("LOCK_HANDOFF_USEC", "300");
        const char *asan = getenv("ASAN_OPTIONS");
        env.set("ASAN_OPTIONS", std::string(asan ? asan : "") + (asan && *asan ? ":" : "") +
                                    "verify_asan_link_order=0");
        c.restart(Node::Wait::nothing);
    }

    // B writes on while C takes the resyncs: those writes share B's link
    // with B's own resync to C.
    std::atomic<bool> stop{false};
    std::atomic<int> written{0};
    std::thread writer([&] {
        Client client(b);
        for (int i = 0; !stop && i < 100000; i++) {
            client.set("b:" + std::to_string(i), "written during C's resync");
            written = i + 1;
            std::this_thread::sleep_for(5ms);   // a bounded write rate, not a synchronisation
        }
    });
    std::string last_seen;
    const bool ready = c.wait_serving(90s);
    stop = true;
    writer.join();
    REQUIRE(ready);
    std::vector<std::string> b_keys;
    for (int i = 0; i < written; i++)
        b_keys.push_back("b:" + std::to_string(i));
    INFO(written << " writes on B during C's resync");
    REQUIRE(mesh.converge(b_keys, 60s) == "");
    CHECK(mesh.wait_online() == "");

    // Neither link was closed and made again: one more resync each (a
    // new link clears last_error; its sender's count of resyncs stays).
    auto b_stats = replication_stats(b), a_stats = replication_stats(a), c_stats = replication_stats(c);
    INFO("B's link to C: " << b_stats[b_to_c + ":state"] << ", last error " << b_stats[b_to_c + ":last_error"]
                           << "; A's link to C: " << a_stats[a_to_c + ":state"] << ", last error "
                           << a_stats[a_to_c + ":last_error"]);
    CHECK(std::stoull(b_stats[b_to_c + ":resyncs"]) == b_resyncs + 1);
    CHECK(std::stoull(a_stats[a_to_c + ":resyncs"]) == a_resyncs + 1);
    CHECK(c.log().find("silent") == std::string::npos);
    for (auto *node : {&a, &b, &c})
        CHECK(replication_stats(*node)["protocol_errors"] == "0");
    CHECK(Client(c).stats()["curr_items"] == std::to_string(items + written));
}
