// Replicating nodes for the integration tests.
//
//   Pair pair;                       // A and B name each other as peers
//   Client(pair.a).set("k", "v");
//   REQUIRE(pair.converge(keys) == "");   // same census on both, or a report
//
//   Mesh mesh(3);                    // three nodes, each naming the other two
//   REQUIRE(mesh.wait_online() == "");
//   Client(mesh.node(2)).set("k", "v");
//   REQUIRE(mesh.converge(keys) == "");
//
// Each node gets its own client and replication ports from free_port(); on
// the threaded build (MEMCACHED_VARIANT=threads) nodes run four workers.
#pragma once

#include "support/node.hpp"

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace fixture {

// Arguments that make a node listen for peers on `repl_port` and dial
// 127.0.0.1:`peer_repl_port`, plus -t 4 on the threaded build.
std::vector<std::string> replication_args(uint16_t repl_port, uint16_t peer_repl_port,
                                          std::vector<std::string> extra = {});
// The same with one -x 127.0.0.1:<port> for each of `peer_repl_ports`.
std::vector<std::string> replication_args(uint16_t repl_port, const std::vector<uint16_t> &peer_repl_ports,
                                          std::vector<std::string> extra = {});

// `stats replication` of a node.
std::map<std::string, std::string> replication_stats(const Node &node);

// Waits until the node's link to its first peer is online.
bool wait_online(const Node &node, std::chrono::milliseconds timeout = std::chrono::seconds(20));

// Whether the node's links to all its peers are online.
bool all_online(const Node &node);

// "peer0 127.0.0.1:4711 online, peer1 ... down (last error: ...)": each
// peer's address and link state, for failure messages.
std::string peer_states(const Node &node);

// Every key of `keys` that the node holds, with value, flags and CAS.
std::map<std::string, Item> census(const Node &node, const std::vector<std::string> &keys);

// "" when both censuses are equal, else the first differences, readable,
// the nodes called `name_a` and `name_b`.
std::string census_difference(const std::map<std::string, Item> &a, const std::map<std::string, Item> &b,
                              size_t show = 5, const std::string &name_a = "A", const std::string &name_b = "B");

// Waits until every node of `nodes` holds the census of `keys` that the
// first holds; on timeout the returned string says how they differ ("" means
// converged).
std::string converge(const std::vector<const Node *> &nodes, const std::vector<std::string> &keys,
                     std::chrono::milliseconds timeout = std::chrono::seconds(30));

// Writes n items "<prefix><i>" -> value of `size` bytes, pipelined with
// noreply, and waits until the node has read them all.
std::vector<std::string> fill(const Node &node, const std::string &prefix, size_t n, size_t size);

struct Pair {
    explicit Pair(std::vector<std::string> extra = {});
    uint16_t repl_a, repl_b;
    Node a, b;

    // Waits until both nodes hold the same census of `keys`; on timeout the
    // returned string says how they differ ("" means converged).
    std::string converge(const std::vector<std::string> &keys,
                         std::chrono::milliseconds timeout = std::chrono::seconds(30)) const;
};

// n nodes that all name each other as peers: a full mesh, on one address.
struct Mesh {
    explicit Mesh(size_t n, std::vector<std::string> extra = {});
    size_t size() const { return nodes.size(); }
    Node &node(size_t i) { return *nodes.at(i); }
    const Node &node(size_t i) const { return *nodes.at(i); }
    // The index of the node listening for peers on `repl_port`, or size().
    size_t node_at(uint16_t repl_port) const;

    // Waits until every node has all its links online; on timeout the
    // returned string gives each node's peer states ("" means online).
    std::string wait_online(std::chrono::milliseconds timeout = std::chrono::seconds(20)) const;
    // Waits until every node holds the census of `keys` that node 0 holds;
    // on timeout the returned string says how they differ.
    std::string converge(const std::vector<std::string> &keys,
                         std::chrono::milliseconds timeout = std::chrono::seconds(30)) const;

    std::vector<uint16_t> repl_ports;
    std::vector<std::unique_ptr<Node>> nodes;
};

} // namespace fixture
