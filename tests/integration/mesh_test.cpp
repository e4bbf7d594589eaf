// More than two replicating nodes on one address: a full mesh, where every
// node names every other and sends its own writes to each, and the links
// an accepted node gets are told apart by the peers' replication ports.
// Tagged [node]: run once per variant.
#include <catch2/catch.hpp>

#include "support/pair.hpp"

#include <atomic>
#include <set>
#include <thread>

using namespace fixture;
using namespace std::chrono_literals;

namespace {

// The replication port of "127.0.0.1:4711".
uint16_t port_of(const std::string &address)
{
    return uint16_t(std::stoul(address.substr(address.rfind(':') + 1)));
}

// Which node of the mesh each of node i's peers is, by the address its
// stats give; a slot that names no node of the mesh is size().
std::vector<size_t> peers_of(const Mesh &mesh, size_t i)
{
    auto stats = replication_stats(mesh.node(i));
    std::vector<size_t> nodes;
    for (int p = 0; p < std::stoi(stats["peers"]); p++)
        nodes.push_back(mesh.node_at(port_of(stats["peer" + std::to_string(p) + ":address"])));
    return nodes;
}

uint64_t peer_stat(const Node &node, size_t peer, const std::string &name)
{
    return std::stoull(replication_stats(node)["peer" + std::to_string(peer) + ":" + name]);
}

} // namespace

TEST_CASE("three nodes that name each other all get every write, and a restarted one gets everything back",
          "[node][replication][mesh]")
{
    Mesh mesh(3);
    REQUIRE(mesh.wait_online() == "");

    // Versions end in the node id, so two nodes with one id could write
    // one key with one version and two values; ids are random, and a
    // clash is resolved at the handshake.
    std::set<std::string> node_ids;
    for (size_t i = 0; i < mesh.size(); i++)
        node_ids.insert(replication_stats(mesh.node(i))["node_id"]);
    CHECK(node_ids.size() == mesh.size());

    // Each node writes keys of its own, a different number on each, so that
    // a peer's counters say whose writes came over its link.
    const std::vector<size_t> writes = {1000, 2000, 3000};
    std::vector<std::string> keys;
    for (size_t i = 0; i < mesh.size(); i++) {
        Client c(mesh.node(i));
        for (size_t k = 0; k < writes[i]; k++) {
            std::string key = "node" + std::to_string(i) + ":" + std::to_string(k);
            REQUIRE(c.set(key, "written on node " + std::to_string(i), uint32_t(i + 1)) == "STORED");
            keys.push_back(key);
        }
    }
    REQUIRE(mesh.converge(keys) == "");
    CHECK(census(mesh.node(0), keys).size() == keys.size());

    // Every node has each other node as a peer of its own, and counted
    // exactly that node's writes on that peer's link.
    for (size_t i = 0; i < mesh.size(); i++) {
        INFO("node " << i << ": " << peer_states(mesh.node(i)));
        std::vector<size_t> peers = peers_of(mesh, i);
        REQUIRE(peers.size() == 2);
        CHECK(peers[0] != peers[1]);
        for (size_t p = 0; p < peers.size(); p++) {
            REQUIRE(peers[p] < mesh.size());
            CHECK(peers[p] != i);
            CHECK(peer_stat(mesh.node(i), p, "frames_applied") == writes[peers[p]]);
        }
    }

    // Node 2 crashes; the two others go on writing, deleting and
    // rewriting while it is down and while it comes back.
    mesh.node(2).kill9();
    {
        Client c0(mesh.node(0)), c1(mesh.node(1));
        for (size_t k = 0; k < 500; k++) {
            CHECK(c0.del("node2:" + std::to_string(k)) == "DELETED");
            CHECK(c1.set("node0:" + std::to_string(k), "rewritten on node 1", 7) == "STORED");
        }
    }
    mesh.node(2).restart();

    std::atomic<bool> stop{false};
    std::vector<std::string> written;
    std::thread writer([&] {
        Client c0(mesh.node(0)), c1(mesh.node(1));
        // At least 100 writes: the resync of a few thousand keys may end
        // before this thread has connected.
        for (int k = 0; (k < 100 || !stop) && k < 5000; k++) {
            std::string key = "during:" + std::to_string(k);
            if ((k % 2 ? c1 : c0).set(key, "w" + std::to_string(k)) == "STORED")
                written.push_back(key);
        }
    });
    std::string states = mesh.wait_online(30s);
    stop = true;
    writer.join();
    REQUIRE(states == "");
    CHECK(written.size() > 0);

    // The restarted node writes too, and its writes reach both others.
    {
        Client c2(mesh.node(2));
        for (size_t k = 0; k < 100; k++) {
            keys.push_back("after:" + std::to_string(k));
            REQUIRE(c2.set(keys.back(), "written on node 2 again", 9) == "STORED");
        }
    }
    keys.insert(keys.end(), written.begin(), written.end());
    CHECK(mesh.converge(keys, 60s) == "");
    CHECK(census(mesh.node(2), keys).size() == keys.size() - 500);

    // Both others sent the restarted node a full copy, each over its own
    // link to it.
    for (size_t i : {0, 1}) {
        std::vector<size_t> peers = peers_of(mesh, i);
        size_t to_2 = peers[0] == 2 ? 0 : 1;
        INFO("node " << i << ": " << peer_states(mesh.node(i)));
        CHECK(peers[to_2] == 2);
        CHECK(peer_stat(mesh.node(i), to_2, "resyncs") >= 2);
        CHECK(peer_stat(mesh.node(i), to_2, "last_resync_items") > 0);
    }
}

TEST_CASE("a node on a peer's address that no -x names with its port is refused, not taken for that peer",
          "[node][replication][mesh]")
{
    // A names B; B never runs. C, on B's address but with a port of its
    // own, names A: its link passes accept (the address is a peer's) and
    // must be refused at the HELLO.
    uint16_t repl_a = free_port(), repl_b = free_port(), repl_c = free_port();
    Node a(replication_args(repl_a, repl_b));
    Node c(replication_args(repl_c, repl_a));
    Client(c).set("k", "from the stranger");

    std::string last;
    bool refused = eventually([&] { return std::stoull(replication_stats(a)["refused_connections"]) >= 1; }, 10s,
                              &last, [&] { return "A: " + peer_states(a) + "; C: " + peer_states(c); });
    INFO(last);
    CHECK(refused);
    CHECK(a.log().find("replication port " + std::to_string(repl_c)) != std::string::npos);
    CHECK(replication_stats(a)["peer0:state"] != "online");
    CHECK(replication_stats(c)["peer0:state"] != "online");
    CHECK_FALSE(Client(a).get("k"));
}
