#include "support/pair.hpp"

#include <cstdlib>
#include <sstream>

namespace fixture {

std::vector<std::string> replication_args(uint16_t repl_port, uint16_t peer_repl_port,
                                          std::vector<std::string> extra)
{
    return replication_args(repl_port, std::vector<uint16_t>{peer_repl_port}, std::move(extra));
}

std::vector<std::string> replication_args(uint16_t repl_port, const std::vector<uint16_t> &peer_repl_ports,
                                          std::vector<std::string> extra)
{
    std::vector<std::string> args = {"-X", std::to_string(repl_port)};
    for (uint16_t peer : peer_repl_ports) {
        args.push_back("-x");
        args.push_back("127.0.0.1:" + std::to_string(peer));
    }
    const char *variant = getenv("MEMCACHED_VARIANT");
    if (variant && std::string(variant) == "threads") {
        args.push_back("-t");
        args.push_back("4");
    }
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
}

std::map<std::string, std::string> replication_stats(const Node &node)
{
    return Client(node).stats("replication");
}

bool wait_online(const Node &node, std::chrono::milliseconds timeout)
{
    return eventually([&] { return replication_stats(node)["peer0:state"] == "online"; }, timeout);
}

bool all_online(const Node &node)
{
    auto stats = replication_stats(node);
    int peers = std::stoi(stats["peers"]);
    for (int i = 0; i < peers; i++)
        if (stats["peer" + std::to_string(i) + ":state"] != "online")
            return false;
    return peers > 0;
}

std::string peer_states(const Node &node)
{
    auto stats = replication_stats(node);
    std::string out;
    for (int i = 0; i < std::stoi(stats["peers"]); i++) {
        std::string peer = "peer" + std::to_string(i);
        out += (out.empty() ? "" : ", ") + peer + " " + stats[peer + ":address"] + " " + stats[peer + ":state"];
        if (stats[peer + ":last_error"] != "none")
            out += " (last error: " + stats[peer + ":last_error"] + ")";
    }
    return out;
}

std::map<std::string, Item> census(const Node &node, const std::vector<std::string> &keys)
{
    Client c(node);
    std::map<std::string, Item> all;
    for (size_t i = 0; i < keys.size(); i += 200) {
        std::vector<std::string> batch(keys.begin() + i, keys.begin() + std::min(keys.size(), i + 200));
        auto found = c.gets_many(batch);
        all.insert(found.begin(), found.end());
    }
    return all;
}

std::string census_difference(const std::map<std::string, Item> &a, const std::map<std::string, Item> &b,
                              size_t show, const std::string &name_a, const std::string &name_b)
{
    std::ostringstream out;
    size_t differences = 0;
    auto describe = [](const Item *item) {
        if (!item)
            return std::string("(missing)");
        std::string v = item->value.size() > 20 ? item->value.substr(0, 20) + "..." : item->value;
        return "'" + v + "' flags " + std::to_string(item->flags) + " cas " + std::to_string(item->cas);
    };
    auto note = [&](const std::string &key, const Item *x, const Item *y) {
        if (differences++ < show)
            out << "  " << key << ": " << name_a << " " << describe(x) << ", " << name_b << " " << describe(y)
                << "\n";
    };
    for (auto &[key, item] : a) {
        auto other = b.find(key);
        if (other == b.end())
            note(key, &item, nullptr);
        else if (other->second.value != item.value || other->second.flags != item.flags ||
                 other->second.cas != item.cas)
            note(key, &item, &other->second);
    }
    for (auto &[key, item] : b)
        if (!a.count(key))
            note(key, nullptr, &item);
    if (differences == 0)
        return "";
    return std::to_string(a.size()) + " keys on " + name_a + ", " + std::to_string(b.size()) + " on " + name_b +
           ", " + std::to_string(differences) + " differ; first ones:\n" + out.str();
}

std::vector<std::string> fill(const Node &node, const std::string &prefix, size_t n, size_t size)
{
    Client c(node);
    std::vector<std::string> keys;
    std::string batch;
    for (size_t i = 0; i < n; i++) {
        keys.push_back(prefix + std::to_string(i));
        std::string value(size, static_cast<char>('a' + i % 26));
        batch += "set " + keys.back() + " " + std::to_string(i % 1000) + " 0 " + std::to_string(size) +
                 " noreply\r\n" + value + "\r\n";
        if (batch.size() > 256 * 1024 || i + 1 == n) {
            c.send_raw(batch);
            batch.clear();
        }
    }
    // A reply to a later command means every set before it was read.
    c.send_raw("version\r\n");
    c.read_line();
    return keys;
}

Pair::Pair(std::vector<std::string> extra)
    : repl_a(free_port()), repl_b(free_port()), a(replication_args(repl_a, repl_b, extra)),
      b(replication_args(repl_b, repl_a, extra))
{
}

std::string Pair::converge(const std::vector<std::string> &keys, std::chrono::milliseconds timeout) const
{
    std::string difference;
    eventually([&] {
        difference = census_difference(census(a, keys), census(b, keys));
        return difference.empty();
    }, timeout);
    return difference;
}

Mesh::Mesh(size_t n, std::vector<std::string> extra)
{
    for (size_t i = 0; i < n; i++)
        repl_ports.push_back(free_port());
    for (size_t i = 0; i < n; i++) {
        std::vector<uint16_t> others;
        for (size_t j = 0; j < n; j++)
            if (j != i)
                others.push_back(repl_ports[j]);
        nodes.push_back(std::make_unique<Node>(replication_args(repl_ports[i], others, extra)));
    }
}

size_t Mesh::node_at(uint16_t repl_port) const
{
    for (size_t i = 0; i < repl_ports.size(); i++)
        if (repl_ports[i] == repl_port)
            return i;
    return repl_ports.size();
}

std::string Mesh::wait_online(std::chrono::milliseconds timeout) const
{
    auto online = [&] {
        for (auto &node : nodes)
            if (!all_online(*node))
                return false;
        return true;
    };
    if (eventually(online, timeout))
        return "";
    std::string states;
    for (size_t i = 0; i < nodes.size(); i++)
        states += "node " + std::to_string(i) + " (replication port " + std::to_string(repl_ports[i]) +
                  "): " + peer_states(*nodes[i]) + "\n";
    return states;
}

std::string converge(const std::vector<const Node *> &nodes, const std::vector<std::string> &keys,
                     std::chrono::milliseconds timeout)
{
    std::string difference;
    eventually([&] {
        difference.clear();
        auto first = census(*nodes[0], keys);
        for (size_t i = 1; i < nodes.size(); i++)
            difference += census_difference(first, census(*nodes[i], keys), 5, "node 0", "node " + std::to_string(i));
        return difference.empty();
    }, timeout);
    return difference;
}

std::string Mesh::converge(const std::vector<std::string> &keys, std::chrono::milliseconds timeout) const
{
    std::vector<const Node *> all;
    for (const auto &node : nodes)
        all.push_back(node.get());
    return fixture::converge(all, keys, timeout);
}

} // namespace fixture
