// A peer that comes back as the same process gets only the writes it
// missed (a partial resync), from the backlog of each node it links
// with; a restarted peer, or one further behind than the backlog holds
// (-Q), gets a full resync as before. Links are cut with `ss -K`, which
// aborts a node's TCP connections at once (root, and a kernel with
// CONFIG_INET_DIAG_DESTROY; skipped without). Tagged [node]: run once per
// variant.
#include <catch2/catch.hpp>

#include "support/pair.hpp"
#include "support/skip.hpp"

#include <arpa/inet.h>
#include <atomic>
#include <cerrno>
#include <dirent.h>
#include <fstream>
#include <netinet/in.h>
#include <set>
#include <sstream>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

using namespace fixture;
using namespace std::chrono_literals;

namespace {

uint64_t stat(const Node &node, const std::string &name)
{
    return std::stoull(replication_stats(node)[name]);
}

// The slot ("peer1") under which `node` lists the peer whose replication
// port is `repl_port`.
std::string slot_of(const Node &node, uint16_t repl_port)
{
    auto s = replication_stats(node);
    for (int i = 0; i < std::stoi(s["peers"]); i++) {
        std::string p = "peer" + std::to_string(i);
        const std::string &address = s[p + ":address"];
        if (address.substr(address.rfind(':') + 1) == std::to_string(repl_port))
            return p;
    }
    throw std::runtime_error("no peer with replication port " + std::to_string(repl_port));
}

// What a node's resync counters toward one peer were.
struct Resyncs {
    uint64_t full = 0, partial = 0, frames_sent = 0;
};

Resyncs resyncs(const Node &node, const std::string &slot)
{
    auto s = replication_stats(node);
    return {std::stoull(s[slot + ":full_resyncs"]), std::stoull(s[slot + ":partial_resyncs"]),
            std::stoull(s[slot + ":frames_sent"])};
}

std::string describe(const Node &node)
{
    auto s = replication_stats(node);
    std::string out = "seq " + s["seq"] + ", backlog_first_seq " + s["backlog_first_seq"];
    for (int i = 0; i < std::stoi(s["peers"]); i++) {
        std::string p = "peer" + std::to_string(i);
        out += "; " + p + " " + s[p + ":address"] + " " + s[p + ":state"] + " full " + s[p + ":full_resyncs"] +
               " partial " + s[p + ":partial_resyncs"] + " acked " + s[p + ":acked_seq"] + " sent " +
               s[p + ":frames_sent"] + " (last error: " + s[p + ":last_error"] + ")";
    }
    return out;
}

// Whether `ss -K` can abort a TCP connection here: one of our own, made for
// the purpose.
std::string ss_kill_unavailable()
{
    if (geteuid() != 0)
        return "aborting connections with ss -K needs root";
    if (!have_tool("ss"))
        return "ss is not installed (Debian package iproute2)";
    int listener = socket(AF_INET, SOCK_STREAM, 0), client = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    bind(listener, reinterpret_cast<sockaddr *>(&addr), sizeof addr);
    listen(listener, 1);
    getsockname(listener, reinterpret_cast<sockaddr *>(&addr), &len);
    std::string why;
    if (connect(client, reinterpret_cast<sockaddr *>(&addr), sizeof addr) != 0) {
        why = "cannot make a loopback connection to test ss -K on";
    } else {
        run("ss -K dst 127.0.0.1 dport = :" + std::to_string(ntohs(addr.sin_port)));
        char c;
        if (recv(client, &c, 1, MSG_DONTWAIT) != -1 || errno != ECONNABORTED)
            why = "ss -K does not abort connections here (a kernel without CONFIG_INET_DIAG_DESTROY?)";
    }
    close(client);
    close(listener);
    return why;
}

// The local ports of the node's established TCP connections, but those of
// its clients: its replication links, dialled and accepted.
std::set<uint16_t> link_ports(const Node &node)
{
    std::set<std::string> inodes;
    std::string fd_dir = "/proc/" + std::to_string(node.pid()) + "/fd";
    if (DIR *dir = opendir(fd_dir.c_str())) {
        while (dirent *e = readdir(dir)) {
            char target[64];
            ssize_t n = readlink((fd_dir + "/" + e->d_name).c_str(), target, sizeof target - 1);
            if (n > 0) {
                target[n] = '\0';
                std::string t = target;
                if (t.rfind("socket:[", 0) == 0)
                    inodes.insert(t.substr(8, t.size() - 9));
            }
        }
        closedir(dir);
    }
    std::set<uint16_t> ports;
    std::ifstream tcp("/proc/net/tcp");
    std::string line;
    std::getline(tcp, line);
    while (std::getline(tcp, line)) {
        std::istringstream in(line);
        std::string slot, local, remote, state, queues, timer, retransmits, uid, timeout, inode;
        in >> slot >> local >> remote >> state >> queues >> timer >> retransmits >> uid >> timeout >> inode;
        uint16_t port = uint16_t(std::stoul(local.substr(local.find(':') + 1), nullptr, 16));
        if (state == "01" && inodes.count(inode) && port != node.port())
            ports.insert(port);
    }
    return ports;
}

// Aborts every replication link of the node, both ends of each.
void cut_links(const Node &node)
{
    std::set<uint16_t> ports = link_ports(node);
    if (ports.empty())
        return;
    std::string filter;
    for (uint16_t port : ports)
        filter += std::string(filter.empty() ? "" : " or ") + "sport = :" + std::to_string(port) +
                  " or dport = :" + std::to_string(port);
    run("ss -K state established '( " + filter + " )' >/dev/null");
}

// Writes keys of its own on a node until told to stop, about a thousand a
// second: sets mostly, some deletes of what it wrote, and increments of a
// counter.
class Writer {
public:
    Writer(const Node &node, std::string prefix) : prefix_(std::move(prefix)), thread_([this, &node] { run(node); })
    {
    }
    ~Writer() { stop(); }
    void stop()
    {
        stop_ = true;
        if (thread_.joinable())
            thread_.join();
    }
    // Every key it touched, once stopped.
    const std::vector<std::string> &keys() const { return keys_; }
    size_t writes() const { return writes_; }

private:
    void run(const Node &node)
    {
        for (int i = 0; !stop_; i++) {
            try {
                Client c(node);
                c.set(prefix_ + "counter", "0");
                keys_.push_back(prefix_ + "counter");
                for (; !stop_; i++) {
                    std::string key = prefix_ + std::to_string(i);
                    c.set(key, "value " + std::to_string(i) + " of " + prefix_);
                    keys_.push_back(key);
                    if (i % 7 == 3)
                        c.del(prefix_ + std::to_string(i - 2));
                    if (i % 5 == 0)
                        c.incr(prefix_ + "counter", 1);
                    writes_ += 1 + (i % 7 == 3) + (i % 5 == 0);
                    // About a thousand writes a second: far fewer than
                    // the data set, so that a full resync would show.
                    std::this_thread::sleep_for(1ms);
                }
            } catch (const std::exception &) {
                // A node's client connections are never cut; go on if one is.
            }
        }
    }

    std::string prefix_;
    std::atomic<bool> stop_{false};
    std::vector<std::string> keys_;
    size_t writes_ = 0;
    std::thread thread_;
};

void require_ss_kill()
{
    if (std::string why = ss_kill_unavailable(); !why.empty())
        skip_test(why);
}

bool both_online(const Pair &pair)
{
    return eventually([&] { return all_online(pair.a) && all_online(pair.b); }, 30s);
}

} // namespace

TEST_CASE("a link cut again and again while both nodes write ends identical, by partial resyncs only",
          "[node][replication][partial-resync]")
{
    require_ss_kill();
    Pair pair;
    REQUIRE(both_online(pair));
    // A data set that a full resync would send again: 20,000 items.
    auto keys = fill(pair.a, "data:", 20000, 100);
    REQUIRE(pair.converge(keys) == "");
    const Resyncs a_before = resyncs(pair.a, "peer0"), b_before = resyncs(pair.b, "peer0");
    const uint64_t a_seq = stat(pair.a, "seq"), b_seq = stat(pair.b, "seq");

    {
        Writer on_a(pair.a, "a:"), on_b(pair.b, "b:");
        for (int cut = 0; cut < 10; cut++) {
            std::this_thread::sleep_for(300ms);
            cut_links(pair.a);
        }
        std::this_thread::sleep_for(300ms);
        on_a.stop();
        on_b.stop();
        keys.insert(keys.end(), on_a.keys().begin(), on_a.keys().end());
        keys.insert(keys.end(), on_b.keys().begin(), on_b.keys().end());
    }
    std::string last;
    bool online = eventually([&] { return all_online(pair.a) && all_online(pair.b); }, 30s, &last,
                             [&] { return "A: " + describe(pair.a) + "; B: " + describe(pair.b); });
    INFO(last);
    REQUIRE(online);
    CHECK(pair.converge(keys) == "");

    const Resyncs a_after = resyncs(pair.a, "peer0"), b_after = resyncs(pair.b, "peer0");
    INFO("A: " << describe(pair.a));
    INFO("B: " << describe(pair.b));
    CHECK(a_after.full == a_before.full);
    CHECK(b_after.full == b_before.full);
    CHECK(a_after.partial >= a_before.partial + 5);
    CHECK(b_after.partial >= b_before.partial + 5);
    // What crossed the links was about the writes made meanwhile (some
    // twice: lost with a link, sent again), never the data set again.
    const uint64_t a_writes = stat(pair.a, "seq") - a_seq, b_writes = stat(pair.b, "seq") - b_seq;
    CHECK(a_after.frames_sent - a_before.frames_sent <= 2 * a_writes);
    CHECK(b_after.frames_sent - b_before.frames_sent <= 2 * b_writes);
    CHECK(a_after.frames_sent - a_before.frames_sent < 20000);
    CHECK(stat(pair.a, "protocol_errors") == 0);
    CHECK(stat(pair.b, "protocol_errors") == 0);
    CHECK(stat(pair.a, "peer0:apply_failed") == 0);
    CHECK(stat(pair.b, "peer0:apply_failed") == 0);
}

TEST_CASE("a peer frozen for longer than the backlog holds gets a full resync", "[node][replication][partial-resync]")
{
    Pair pair({"-Q", "1"});
    REQUIRE(both_online(pair));
    auto keys = fill(pair.a, "before:", 1000, 100);
    REQUIRE(pair.converge(keys) == "");
    const Resyncs before = resyncs(pair.a, "peer0");

    pair.b.freeze();
    // 16 MiB of writes through a 1 MiB backlog: more than the sockets
    // between the two hold, so A's queue for B overflows and its link is
    // closed, and B's point is long gone from the backlog.
    auto more = fill(pair.a, "while-frozen:", 16 * 1024, 1024);
    keys.insert(keys.end(), more.begin(), more.end());
    std::string last;
    CHECK(eventually([&] { return stat(pair.a, "peer0:overflows") >= 1; }, 10s, &last,
                     [&] { return describe(pair.a); }));
    CHECK(stat(pair.a, "backlog_first_seq") > 1000 + 8 * 1024);
    pair.b.thaw();

    REQUIRE(both_online(pair));
    CHECK(pair.converge(keys, 60s) == "");
    const Resyncs after = resyncs(pair.a, "peer0");
    INFO("A: " << describe(pair.a));
    CHECK(after.full > before.full);
}

TEST_CASE("a peer killed and restarted empty gets a full resync", "[node][replication][partial-resync]")
{
    Pair pair;
    REQUIRE(both_online(pair));
    auto keys = fill(pair.a, "k:", 2000, 100);
    REQUIRE(pair.converge(keys) == "");
    const Resyncs before = resyncs(pair.a, "peer0");

    pair.b.kill9();
    pair.b.restart();
    REQUIRE(both_online(pair));
    CHECK(pair.converge(keys) == "");
    const Resyncs after = resyncs(pair.a, "peer0");
    INFO("A: " << describe(pair.a));
    CHECK(after.full > before.full);
    CHECK(after.frames_sent - before.frames_sent >= keys.size());
    // B restarted is another instance: a new sequence of its own.
    CHECK(stat(pair.b, "seq") == 0);
}

TEST_CASE("a node of a three-node mesh cut off for a few seconds catches up partially from both others",
          "[node][replication][partial-resync][mesh]")
{
    require_ss_kill();
    Mesh mesh(3);
    REQUIRE(mesh.wait_online() == "");
    auto keys = fill(mesh.node(0), "data:", 10000, 100);
    REQUIRE(mesh.converge(keys) == "");
    const uint16_t cut_port = mesh.repl_ports[2];
    const std::string slot_on_0 = slot_of(mesh.node(0), cut_port), slot_on_1 = slot_of(mesh.node(1), cut_port);
    const Resyncs on_0 = resyncs(mesh.node(0), slot_on_0), on_1 = resyncs(mesh.node(1), slot_on_1);

    {
        // Node 2 keeps losing its links for three seconds while the two
        // others write.
        Writer w0(mesh.node(0), "n0:"), w1(mesh.node(1), "n1:");
        auto until = std::chrono::steady_clock::now() + 3s;
        while (std::chrono::steady_clock::now() < until) {
            cut_links(mesh.node(2));
            std::this_thread::sleep_for(50ms);
        }
        w0.stop();
        w1.stop();
        keys.insert(keys.end(), w0.keys().begin(), w0.keys().end());
        keys.insert(keys.end(), w1.keys().begin(), w1.keys().end());
    }
    REQUIRE(mesh.wait_online(30s) == "");
    CHECK(mesh.converge(keys) == "");

    const Resyncs after_0 = resyncs(mesh.node(0), slot_on_0), after_1 = resyncs(mesh.node(1), slot_on_1);
    INFO("node 0: " << describe(mesh.node(0)));
    INFO("node 1: " << describe(mesh.node(1)));
    CHECK(after_0.full == on_0.full);
    CHECK(after_1.full == on_1.full);
    CHECK(after_0.partial > on_0.partial);
    CHECK(after_1.partial > on_1.partial);
    CHECK(after_0.frames_sent - on_0.frames_sent < 10000);
}

TEST_CASE("a delayed flush_all whose time passes while the peer is away removes the same items on both",
          "[node][replication][partial-resync]")
{
    Pair pair;
    REQUIRE(both_online(pair));
    Client a(pair.a);
    std::vector<std::string> before, between, after;
    for (int i = 0; i < 50; i++) {
        before.push_back("before:" + std::to_string(i));
        REQUIRE(a.set(before.back(), "v") == "STORED");
    }
    REQUIRE(pair.converge(before) == "");

    // B is away (frozen until A gives its link up as silent) while A's
    // delayed flush_all comes due: A removes what was written before its
    // time, the writes made between the command and that time too.
    pair.b.freeze();
    CHECK(a.flush_all(2) == "OK");
    for (int i = 0; i < 50; i++) {
        between.push_back("between:" + std::to_string(i));
        REQUIRE(a.set(between.back(), "v") == "STORED");
    }
    std::this_thread::sleep_for(3500ms);
    for (int i = 0; i < 50; i++) {
        after.push_back("after:" + std::to_string(i));
        REQUIRE(a.set(after.back(), "v") == "STORED");
    }
    CHECK(census(pair.a, before).empty());
    CHECK(census(pair.a, between).empty());
    REQUIRE(eventually([&] { return replication_stats(pair.a)["peer0:state"] != "online"; }, 20s));
    const Resyncs resumed = resyncs(pair.a, "peer0");
    pair.b.thaw();

    REQUIRE(both_online(pair));
    std::vector<std::string> keys = before;
    keys.insert(keys.end(), between.begin(), between.end());
    keys.insert(keys.end(), after.begin(), after.end());
    CHECK(pair.converge(keys) == "");
    CHECK(census(pair.b, before).empty());
    CHECK(census(pair.b, between).empty());
    CHECK(census(pair.b, after).size() == after.size());
    INFO("A: " << describe(pair.a));
    CHECK(resyncs(pair.a, "peer0").partial > resumed.partial);
}

TEST_CASE("a peer that could not apply a write gets a full resync, not a partial one, when its link comes back",
          "[node][replication][partial-resync][integrity]")
{
    require_ss_kill();
    // B has 2 MB and may not evict (-M): most of A's 4 MB of writes do not
    // fit there, and are counted as such.
    uint16_t repl_a = free_port(), repl_b = free_port();
    Node a(replication_args(repl_a, repl_b, {"-m", "64"}));
    Node b(replication_args(repl_b, repl_a, {"-m", "2", "-M"}));
    REQUIRE(eventually([&] { return all_online(a) && all_online(b); }, 30s));
    auto keys = fill(a, "k:", 4000, 1000);
    REQUIRE(eventually([&] { return stat(a, "peer0:acked_seq") == stat(a, "seq"); }, 30s));
    REQUIRE(stat(b, "peer0:apply_failed") > 0);
    const Resyncs before = resyncs(a, "peer0");

    // A partial resync would not bring back what B could not store: A
    // must send it everything it holds again.
    cut_links(a);
    REQUIRE(eventually([&] { return all_online(a) && all_online(b) && resyncs(a, "peer0").full > before.full; },
                       30s));
    INFO("A: " << describe(a));
    CHECK(resyncs(a, "peer0").partial == before.partial);
}

TEST_CASE("frames_sent counts the frames of a resync cut short", "[node][replication][partial-resync][stats]")
{
    require_ss_kill();
    Pair pair({"-m", "512"});
    REQUIRE(both_online(pair));
    pair.b.kill9();
    const size_t items = 200000;    // 200 MB: a walk of a second or more
    auto keys = fill(pair.a, "k:", items, 1024);
    pair.b.restart(Node::Wait::nothing);

    // B is taking A's walk (it serves only once that is done, so only A
    // can be asked): let some of it reach B, then freeze B, cut the link
    // under the stalled walk, and let B come back for a second resync.
    REQUIRE(eventually([&] { return replication_stats(pair.a)["peer0:state"] == "resyncing"; }, 30s, nullptr,
                       [&] { return describe(pair.a); }));
    std::this_thread::sleep_for(50ms);
    pair.b.freeze();
    cut_links(pair.a);
    pair.b.thaw();
    REQUIRE(pair.b.wait_serving(60s));
    REQUIRE(both_online(pair));
    REQUIRE(pair.converge(keys, 60s) == "");

    // B received part of the first walk and all of the second. Every
    // frame B received, A sent; B's count also has a few frames that are
    // not writes (RESUME, the bounds of each resync, pings).
    const uint64_t received = stat(pair.b, "peer0:frames_received");
    const uint64_t sent = stat(pair.a, "peer0:frames_sent");
    INFO("B received " << received << " frames from A; A: " << describe(pair.a));
    REQUIRE(received > items + 200);
    CHECK(sent + 100 >= received);
}
