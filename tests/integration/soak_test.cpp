// The soak: a pair under a writer on each node, one node killed with
// SIGKILL cycle after cycle (a third of the time again while its resync is
// under way) and restarted empty. After each cycle the writers pause and
// both nodes must hold the same census, with every write the surviving
// node's process acknowledged (one a killed process acknowledged may be
// lost: replication is asynchronous). SOAK_CYCLES sets the number of
// cycles (make check: 5; make soak: 100). Tagged [node][soak].
#include <catch2/catch.hpp>

#include "support/pair.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <mutex>
#include <random>
#include <thread>

using namespace fixture;
using namespace std::chrono_literals;

namespace {

using clock_type = std::chrono::steady_clock;

long ms_since(clock_type::time_point t)
{
    return long(std::chrono::duration_cast<std::chrono::milliseconds>(clock_type::now() - t).count());
}

// Writes keys "<name>:<i>" on one node, for ever, until paused or stopped.
// Each value carries a sequence number that grows per key, so that what a
// node holds says which write it is: the writer remembers the last one the
// node acknowledged and the last one it sent at all (one whose reply never
// came may or may not have been applied).
class Writer {
public:
    Writer(std::string name, const Node &node, size_t keys, uint32_t seed)
        : name_(std::move(name)), port_(node.port()), acked_(keys, 0), sent_(keys, 0), acked_life_(keys, 0),
          rng_(seed)
    {
        thread_ = std::thread([this] { run(); });
    }
    ~Writer()
    {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stop_ = true;
        }
        changed_.notify_all();
        thread_.join();
    }

    std::string key(size_t i) const { return name_ + ":" + std::to_string(i); }
    std::vector<std::string> keys() const
    {
        std::vector<std::string> all;
        for (size_t i = 0; i < acked_.size(); i++)
            all.push_back(key(i));
        return all;
    }
    static std::string value(const std::string &key, uint64_t seq)
    {
        return key + "#" + std::to_string(seq) + "#" + std::string(seq % 13 * 10, 'v');
    }
    // The sequence number of a value this writer wrote, or 0.
    static uint64_t seq_of(const std::string &value)
    {
        size_t a = value.find('#'), b = value.find('#', a + 1);
        return a == std::string::npos || b == std::string::npos ? 0 : std::stoull(value.substr(a + 1, b - a - 1));
    }

    // Writing starts (or goes on) until pause(), which returns once no
    // write is under way; the counters may be read while paused.
    void resume()
    {
        std::lock_guard<std::mutex> lock(mutex_);
        paused_ = false;
        changed_.notify_all();
    }
    void pause()
    {
        std::unique_lock<std::mutex> lock(mutex_);
        paused_ = true;
        changed_.wait(lock, [&] { return idle_; });
    }
    uint64_t acked_total() const { return acked_total_; }
    uint64_t acked(size_t i) const { return acked_[i]; }
    uint64_t sent(size_t i) const { return sent_[i]; }
    // The node this writer writes to was killed: what it acknowledged so
    // far may be lost (replication is asynchronous). Called once the
    // process is gone; a write sent from now on reaches the next one.
    void node_killed() { life_++; }
    // Whether the last write of key i acknowledged was acknowledged by the
    // node's current process, which must then keep it.
    bool acked_by_this_life(size_t i) const { return acked_life_[i] == life_; }

private:
    void run()
    {
        std::unique_ptr<Client> client;
        std::uniform_int_distribution<size_t> pick(0, acked_.size() - 1);
        for (;;) {
            {
                std::unique_lock<std::mutex> lock(mutex_);
                if (paused_ || stop_) {
                    idle_ = true;
                    changed_.notify_all();
                    changed_.wait(lock, [&] { return !paused_ || stop_; });
                    if (stop_)
                        return;
                    idle_ = false;
                }
            }
            try {
                if (!client)
                    client = std::make_unique<Client>(port_);
                size_t i = pick(rng_);
                uint64_t seq = sent_[i] + 1;
                const uint64_t life = life_;
                sent_[i] = seq;
                if (client->set(key(i), value(key(i), seq), uint32_t(seq)) == "STORED") {
                    acked_[i] = seq;
                    acked_life_[i] = life;
                    acked_total_++;
                }
            } catch (const std::exception &) {
                // The node is down (killed): try again shortly. A bounded
                // retry rate, not a synchronisation.
                client.reset();
                std::this_thread::sleep_for(2ms);
            }
        }
    }

    std::string name_;
    uint16_t port_;
    std::vector<uint64_t> acked_, sent_, acked_life_;
    std::atomic<uint64_t> life_{0};
    std::mt19937 rng_;
    std::atomic<uint64_t> acked_total_{0};
    std::mutex mutex_;
    std::condition_variable changed_;
    bool paused_ = true, idle_ = true, stop_ = false;
    std::thread thread_;
};

uint64_t stat_of(const Node &node, const std::string &name)
{
    auto stats = replication_stats(node);
    return stats.count(name) ? std::stoull(stats[name]) : 0;
}

size_t soak_cycles()
{
    const char *cycles = getenv("SOAK_CYCLES");
    return cycles && *cycles ? std::stoul(cycles) : 5;
}

// The soak itself: any difference between the nodes, or a write the
// surviving node's process acknowledged that is gone, fails the cycle.
void soak(size_t cycles)
{
    const size_t writer_keys = 1000;
    std::random_device seed_source;
    const uint32_t seed = getenv("SOAK_SEED") ? uint32_t(std::stoul(getenv("SOAK_SEED"))) : seed_source();
    INFO("SOAK_SEED=" << seed << " repeats this run's choices");
    std::mt19937 rng(seed);

    Pair pair;
    Node *nodes[2] = {&pair.a, &pair.b};
    REQUIRE(wait_online(pair.a));
    // 10,000 items of 400 bytes, so that a resync takes long enough to be
    // killed in the middle of.
    std::vector<std::string> keys = fill(pair.a, "bulk:", 10000, 400);
    REQUIRE(pair.converge(keys, 60s) == "");

    Writer writers[2] = {{"wA", pair.a, writer_keys, seed + 1}, {"wB", pair.b, writer_keys, seed + 2}};
    for (auto &w : writers) {
        auto mine = w.keys();
        keys.insert(keys.end(), mine.begin(), mine.end());
    }
    // What both nodes held at the last census, per writer and key: no
    // node may go back behind it.
    std::vector<std::vector<uint64_t>> verified(2, std::vector<uint64_t>(writer_keys, 0));
    // The acknowledged write of each key last counted as lost with its
    // killed node, so that it is counted once.
    std::vector<std::vector<uint64_t>> counted(2, std::vector<uint64_t>(writer_keys, 0));

    uint64_t resyncs = 0, mid_resync_kills = 0, survivor_writes_lost = 0, killed_writes_lost = 0;
    long slowest_resync_us = 0, slowest_recovery_ms = 0;
    auto soak_started = clock_type::now();
    for (size_t cycle = 1; cycle <= cycles; cycle++) {
        INFO("cycle " << cycle << " of " << cycles);
        int victim = int(rng() % 2), survivor = 1 - victim;
        bool during_resync = rng() % 3 == 0;
        Node &v = *nodes[victim], &s = *nodes[survivor];
        uint64_t survivor_resyncs = stat_of(s, "peer0:resyncs");

        // Load: both writers get some writes acknowledged, then the victim
        // dies under them.
        uint64_t before[2] = {writers[0].acked_total(), writers[1].acked_total()};
        for (auto &w : writers)
            w.resume();
        std::uniform_int_distribution<int> load(100, 1000);
        int wanted = load(rng);
        REQUIRE(eventually([&] {
            return writers[0].acked_total() >= before[0] + wanted && writers[1].acked_total() >= before[1] + wanted;
        }, 30s));
        v.kill9();
        writers[victim].node_killed();
        auto restarted = clock_type::now();
        if (during_resync) {
            // Kill it again while the survivor walks its items to it. Not
            // waiting for it to serve: a node with peers serves only once
            // its first resync is done.
            v.restart(Node::Wait::nothing);
            std::string state;
            bool walking = eventually([&] {
                state = replication_stats(s)["peer0:state"];
                return state == "resyncing";
            }, 10s);
            if (walking) {
                v.kill9();
                writers[victim].node_killed();
                mid_resync_kills++;
                restarted = clock_type::now();
                v.restart();
            } else {
                WARN("cycle " << cycle << ": the resync was over before it could be interrupted (state " << state
                              << ")");
                REQUIRE(v.wait_serving(30s));
            }
        } else {
            v.restart();
        }
        // Both nodes back in touch, then the writers stop for the census.
        std::string seen;
        REQUIRE(eventually([&] { return all_online(s) && all_online(v); }, 30s, &seen,
                           [&] { return "survivor: " + peer_states(s) + "; victim: " + peer_states(v); }));
        for (auto &w : writers)
            w.pause();
        std::string difference = pair.converge(keys, 60s);
        INFO("victim " << (victim == 0 ? "A" : "B") << (during_resync ? ", killed again during its resync" : ""));
        REQUIRE(difference == "");
        slowest_recovery_ms = std::max(slowest_recovery_ms, ms_since(restarted));
        resyncs += stat_of(s, "peer0:resyncs") - survivor_resyncs + stat_of(v, "peer0:resyncs");
        slowest_resync_us = std::max<long>(slowest_resync_us, long(stat_of(s, "peer0:last_resync_usec")));

        // Every write the survivor acknowledged is there; the victim's
        // writes are there from the last census on, up to the last sent.
        auto held = census(s, keys);
        for (int w = 0; w < 2; w++) {
            size_t lost = 0;
            std::string first;
            for (size_t i = 0; i < writer_keys; i++) {
                auto it = held.find(writers[w].key(i));
                uint64_t seq = it == held.end() ? 0 : Writer::seq_of(it->second.value);
                // A write the survivor's current process acknowledged must
                // be there; one its earlier process acknowledged before
                // that was killed (in an earlier cycle) may be lost, as
                // may the victim's.
                bool ok = w == survivor && writers[w].acked_by_this_life(i)
                              ? seq == writers[w].acked(i)
                              : seq >= verified[w][i] && seq <= writers[w].sent(i);
                if (ok && seq != writers[w].acked(i) && counted[w][i] != writers[w].acked(i)) {
                    killed_writes_lost++;   // acknowledged by a process killed since
                    counted[w][i] = writers[w].acked(i);
                }
                if (!ok && lost++ == 0)
                    first = writers[w].key(i) + " holds write " + std::to_string(seq) + "; acknowledged " +
                            std::to_string(writers[w].acked(i)) + ", sent " + std::to_string(writers[w].sent(i)) +
                            ", seen on both before " + std::to_string(verified[w][i]);
                verified[w][i] = seq;
            }
            INFO("writer on " << (w == 0 ? "A" : "B") << (w == survivor ? " (the survivor)" : " (the victim)")
                              << ": first: " << first);
            if (w == survivor)
                survivor_writes_lost += lost;
            CHECK(lost == 0);
        }
    }

    uint64_t writes = writers[0].acked_total() + writers[1].acked_total();
    std::cout << "soak: " << cycles << " cycles in " << ms_since(soak_started) / 1000 << " s, " << writes
              << " writes acknowledged, " << resyncs << " resyncs (" << mid_resync_kills
              << " nodes killed during one), slowest resync " << slowest_resync_us / 1000
              << " ms (as the sender timed it), slowest recovery " << slowest_recovery_ms
              << " ms (restart to identical census), divergences 0, acknowledged writes of the survivor lost "
              << survivor_writes_lost << ", acknowledged by a node killed before it sent them "
              << killed_writes_lost << std::endl;
}

} // namespace

TEST_CASE("a pair under writes survives kill -9 of either node, also during its resync, cycle after cycle",
          "[node][soak]")
{
    soak(soak_cycles());
}
