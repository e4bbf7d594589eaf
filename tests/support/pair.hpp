// Replicating nodes for the integration tests.
//
//   Pair pair;                       // A and B name each other as peers
//   Client(pair.a).set("k", "v");
//   REQUIRE(pair.converged(keys));   // same census on both, or a report
//
// Each node gets its own client and replication ports from free_port(); on
// the threaded build (MEMCACHED_VARIANT=threads) nodes run four workers.
#pragma once

#include "support/node.hpp"

#include <map>
#include <string>
#include <vector>

namespace fixture {

// Arguments that make a node listen for peers on `repl_port` and dial
// 127.0.0.1:`peer_repl_port`, plus -t 4 on the threaded build.
std::vector<std::string> replication_args(uint16_t repl_port, uint16_t peer_repl_port,
                                          std::vector<std::string> extra = {});

// `stats replication` of a node.
std::map<std::string, std::string> replication_stats(const Node &node);

// Waits until the node's link to its first peer is online.
bool wait_online(const Node &node, std::chrono::milliseconds timeout = std::chrono::seconds(20));

// Every key of `keys` that the node holds, with value, flags and CAS.
std::map<std::string, Item> census(const Node &node, const std::vector<std::string> &keys);

// "" when both censuses are equal, else the first differences, readable.
std::string census_difference(const std::map<std::string, Item> &a, const std::map<std::string, Item> &b,
                              size_t show = 5);

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

} // namespace fixture
