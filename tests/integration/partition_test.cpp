// Two nodes in network namespaces of their own, joined by a veth pair: the
// link between them is cut for longer than a peer may stay silent while
// both take writes, or made slow and lossy, and the pair must still end
// identical, with every write either node acknowledged. Tagged
// [node][netns]: needs root, ip and nft, and is skipped (with the reason)
// without them.
#include <catch2/catch.hpp>

#include "support/netns.hpp"
#include "support/pair.hpp"
#include "support/skip.hpp"

#include <cstdlib>
#include <memory>
#include <thread>

using namespace fixture;
using namespace std::chrono_literals;

namespace {

const std::string host_a = "10.231.0.1", host_b = "10.231.0.2";
// Each node has a namespace to itself: fixed ports do not clash.
const uint16_t client_port = 11211, repl_port = 11212, proxy_port = 11300;
// What the delaying proxies set on their own connections, so that the
// redirect that sends the nodes' connections to them lets theirs through.
const uint32_t proxy_mark = 0x231;

std::vector<std::string> args_for(const std::string &peer_host)
{
    std::vector<std::string> args = {"-X", std::to_string(repl_port), "-x", peer_host + ":" + std::to_string(repl_port)};
    const char *variant = getenv("MEMCACHED_VARIANT");
    if (variant && std::string(variant) == "threads")
        args.insert(args.end(), {"-t", "4"});
    return args;
}

// Two namespaces, a veth between them, a node in each that names the other
// by its veth address.
struct SplitPair {
    Netns ns_a{"a"}, ns_b{"b"};
    Veth veth{ns_a, host_a + "/30", ns_b, host_b + "/30"};
    std::unique_ptr<Node> a, b;

    void start()
    {
        {
            NetnsScope in(ns_a);
            a = std::make_unique<Node>(args_for(host_b), client_port, Node::Wait::serving, std::vector<std::string>{}, host_a);
        }
        NetnsScope in(ns_b);
        b = std::make_unique<Node>(args_for(host_a), client_port, Node::Wait::serving, std::vector<std::string>{}, host_b);
    }

    // Starts both nodes and waits up to `timeout` for their link to be
    // online: "" once it is, else the link states last seen.
    std::string start_online(std::chrono::milliseconds timeout)
    {
        start();
        std::string seen;
        if (eventually([&] { return online(*a) && online(*b); }, timeout, &seen, [&] { return states(); }))
            return "";
        return "not online; link states when last seen: " + seen;
    }

    const Netns &ns_of(const Node &node) const { return &node == a.get() ? ns_a : ns_b; }

    std::map<std::string, std::string> stats(const Node &node) const
    {
        NetnsScope in(ns_of(node));
        return Client(node).stats("replication");
    }

    bool online(const Node &node) const { return stats(node)["peer0:state"] == "online"; }

    std::string states() const
    {
        auto sa = stats(*a), sb = stats(*b);
        return "A: " + sa["peer0:state"] + " (last error: " + sa["peer0:last_error"] + "), B: " + sb["peer0:state"] +
               " (last error: " + sb["peer0:last_error"] + ")";
    }

    std::map<std::string, Item> census_of(const Node &node, const std::vector<std::string> &keys) const
    {
        NetnsScope in(ns_of(node));
        return census(node, keys);
    }

    std::string converge(const std::vector<std::string> &keys, std::chrono::milliseconds timeout) const
    {
        std::string difference;
        eventually([&] {
            difference = census_difference(census_of(*a, keys), census_of(*b, keys));
            return difference.empty();
        }, timeout);
        return difference;
    }
};

// What one writer wrote: its own keys ("<name>:<i>") and the keys both
// writers write ("s:<i>"), each value naming its writer.
struct Writes {
    std::vector<std::string> own, shared;
    std::string value(const std::string &writer, const std::string &key) const
    {
        return writer + " wrote " + key + std::string(key.size() % 7 * 20, '.');
    }
};

// Sets keys [from, to) of `writer`'s own keys and of the shared keys on
// `node`, inside its namespace, and requires every set acknowledged.
void write_range(const SplitPair &pair, const Node &node, const std::string &writer, size_t from, size_t to)
{
    NetnsScope in(pair.ns_of(node));
    Client c(node);
    Writes w;
    for (size_t i = from; i < to; i++) {
        std::string own = writer + ":" + std::to_string(i), shared = "s:" + std::to_string(i);
        REQUIRE(c.set(own, w.value(writer, own), uint32_t(i)) == "STORED");
        REQUIRE(c.set(shared, w.value(writer, shared), uint32_t(i) + 7) == "STORED");
    }
}

std::vector<std::string> keys_of(const std::string &prefix, size_t n)
{
    std::vector<std::string> keys;
    for (size_t i = 0; i < n; i++)
        keys.push_back(prefix + ":" + std::to_string(i));
    return keys;
}

// Every key the two writers of write_range() write, n of each kind.
std::vector<std::string> all_keys(size_t n)
{
    std::vector<std::string> keys = keys_of("A", n), more = keys_of("B", n), shared = keys_of("s", n);
    keys.insert(keys.end(), more.begin(), more.end());
    keys.insert(keys.end(), shared.begin(), shared.end());
    return keys;
}

// Each node holds exactly what its writer wrote under its own keys, and
// for every shared key one of the two writers' values, the same on both
// (the census comparison has already said they are identical).
void check_every_write_kept(const SplitPair &pair, size_t n)
{
    Writes w;
    for (const Node *node : {pair.a.get(), pair.b.get()}) {
        for (const std::string writer : {"A", "B"}) {
            auto held = pair.census_of(*node, keys_of(writer, n));
            size_t lost = 0;
            std::string first;
            for (const std::string &key : keys_of(writer, n)) {
                auto it = held.find(key);
                if (it == held.end() || it->second.value != w.value(writer, key)) {
                    if (lost++ == 0)
                        first = key + (it == held.end() ? " missing" : " holds '" + it->second.value + "'");
                }
            }
            INFO("node " << (node == pair.a.get() ? "A" : "B") << ", writer " << writer << ": first: " << first);
            CHECK(lost == 0);
        }
        auto shared = pair.census_of(*node, keys_of("s", n));
        size_t wrong = 0;
        for (const std::string &key : keys_of("s", n)) {
            auto it = shared.find(key);
            if (it == shared.end() || (it->second.value != w.value("A", key) && it->second.value != w.value("B", key)))
                wrong++;
        }
        CHECK(wrong == 0);
    }
}

} // namespace

TEST_CASE("a pair cut apart while both sides write is identical once the link heals", "[node][netns]")
{
    if (std::string why = netns_unavailable(); !why.empty())
        skip_test(why);
    SplitPair pair;
    REQUIRE(pair.start_online(20s) == "");

    // 1,000 own and 1,000 shared keys per writer: 2,000 sets on each side,
    // half while the link still looks up to both nodes, half after both
    // have given up on it (REPL_SILENCE_TIMEOUT).
    const size_t n = 1000;
    std::vector<std::string> keys = all_keys(n);
    std::string seen;
    {
        std::string body = "chain in { type filter hook input priority 0; iifname \"" + pair.veth.name_a() +
                           "\" drop; }\nchain out { type filter hook output priority 0; oifname \"" +
                           pair.veth.name_a() + "\" drop; }";
        NftTable cut(pair.ns_a, "partition", body);
        auto cut_at = std::chrono::steady_clock::now();
        std::thread writer_b([&] { write_range(pair, *pair.b, "B", 0, n / 2); });
        write_range(pair, *pair.a, "A", 0, n / 2);
        writer_b.join();
        REQUIRE(eventually([&] { return !pair.online(*pair.a) && !pair.online(*pair.b); }, 30s, &seen,
                           [&] { return pair.states(); }));
        std::thread writer_b2([&] { write_range(pair, *pair.b, "B", n / 2, n); });
        write_range(pair, *pair.a, "A", n / 2, n);
        writer_b2.join();
        auto partition = std::chrono::steady_clock::now() - cut_at;
        WARN("partition: " << std::chrono::duration_cast<std::chrono::milliseconds>(partition).count()
                           << " ms, 2,000 sets acknowledged on each side meanwhile");
        REQUIRE(census_difference(pair.census_of(*pair.a, keys), pair.census_of(*pair.b, keys)) != "");
    }
    auto healed_at = std::chrono::steady_clock::now();
    std::string difference = pair.converge(keys, 60s);
    INFO("link states: " << pair.states());
    REQUIRE(difference == "");
    auto took = std::chrono::steady_clock::now() - healed_at;
    check_every_write_kept(pair, n);
    auto sa = pair.stats(*pair.a), sb = pair.stats(*pair.b);
    WARN("healed: identical after " << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                                    << " ms; resyncs A " << sa["peer0:resyncs"] << ", B " << sb["peer0:resyncs"]
                                    << "; conflicts A " << sa["peer0:conflicts"] << ", B " << sb["peer0:conflicts"]);
}

TEST_CASE("a pair whose link delays by 50 ms and loses 2 % of packets converges", "[node][netns]")
{
    if (std::string why = netns_unavailable(); !why.empty())
        skip_test(why);
    SplitPair pair;
    // Every connection a node makes to the other goes to a proxy in its own
    // namespace that holds each byte for 50 ms, both ways; both ends drop
    // one packet in 50 that arrive on the veth.
    auto rules = [&](const std::string &peer_host, const std::string &veth) {
        return "chain to_proxy { type nat hook output priority -100; meta mark != " + std::to_string(proxy_mark) +
               " ip daddr " + peer_host + " tcp dport " + std::to_string(repl_port) + " redirect to :" +
               std::to_string(proxy_port) + "; }\n" + "chain lossy { type filter hook input priority 0; iifname \"" +
               veth + "\" numgen random mod 50 0 drop; }";
    };
    NftTable slow_a(pair.ns_a, "slow", rules(host_b, pair.veth.name_a()));
    NftTable slow_b(pair.ns_b, "slow", rules(host_a, pair.veth.name_b()));
    DelayProxy proxy_a(pair.ns_a, proxy_port, host_b, repl_port, 50ms, proxy_mark);
    DelayProxy proxy_b(pair.ns_b, proxy_port, host_a, repl_port, 50ms, proxy_mark);
    REQUIRE(pair.start_online(30s) == "");

    const size_t n = 1000;
    std::vector<std::string> keys = all_keys(n);
    auto started = std::chrono::steady_clock::now();
    std::thread writer_b([&] { write_range(pair, *pair.b, "B", 0, n); });
    write_range(pair, *pair.a, "A", 0, n);
    writer_b.join();
    std::string difference = pair.converge(keys, 60s);
    INFO("link states: " << pair.states());
    REQUIRE(difference == "");
    auto took = std::chrono::steady_clock::now() - started;
    check_every_write_kept(pair, n);
    // The link really went through the proxies.
    CHECK(proxy_a.connections() + proxy_b.connections() >= 1);
    CHECK(proxy_a.bytes() + proxy_b.bytes() > 0);
    auto sa = pair.stats(*pair.a), sb = pair.stats(*pair.b);
    WARN("50 ms, 2 % loss: 2,000 sets on each side identical on both after "
         << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms; proxied connections "
         << proxy_a.connections() + proxy_b.connections() << ", bytes " << proxy_a.bytes() + proxy_b.bytes()
         << "; conflicts A " << sa["peer0:conflicts"] << ", B " << sb["peer0:conflicts"]);
}
