// Each node numbers its own writes and keeps the recent ones (its backlog,
// bounded by -Q); its peers acknowledge by number what they applied, and
// `stats replication` shows how far behind each peer is, in writes, bytes
// and milliseconds. Tagged [node]: run once per variant.
#include <catch2/catch.hpp>

#include "support/pair.hpp"

#include <thread>

using namespace fixture;
using namespace std::chrono_literals;

namespace {

uint64_t stat(const Node &node, const std::string &name)
{
    return std::stoull(replication_stats(node)[name]);
}

// "seq 361, backlog_bytes ..., peer0: acked_seq ..., lag_frames ...": what a
// failed wait shows of a node's numbering.
std::string numbering(const Node &node)
{
    auto s = replication_stats(node);
    std::string out = "seq " + s["seq"] + ", backlog_bytes " + s["backlog_bytes"] + ", backlog_first_seq " +
                      s["backlog_first_seq"];
    for (int i = 0; i < std::stoi(s["peers"]); i++) {
        std::string p = "peer" + std::to_string(i);
        out += "; " + p + " " + s[p + ":state"] + ": acked_seq " + s[p + ":acked_seq"] + ", lag_frames " +
               s[p + ":lag_frames"] + ", lag_bytes " + s[p + ":lag_bytes"] + ", lag_ms " + s[p + ":lag_ms"];
    }
    return out;
}

// Waits until the node's first peer acknowledged every write the node made.
bool caught_up(const Node &node, std::string *last_seen)
{
    return eventually(
        [&] {
            auto s = replication_stats(node);
            return s["peer0:state"] == "online" && s["peer0:acked_seq"] == s["seq"] && s["peer0:lag_frames"] == "0" &&
                   s["peer0:lag_bytes"] == "0";
        },
        20s, last_seen, [&] { return numbering(node); });
}

} // namespace

TEST_CASE("a peer acknowledges every write it applied, and while it is frozen its lag shows and grows",
          "[node][replication][backlog]")
{
    Pair pair;
    REQUIRE(wait_online(pair.a));
    REQUIRE(wait_online(pair.b));
    CHECK(stat(pair.a, "seq") == 0);

    // Every write command a client can send is a numbered write of A's.
    Client a(pair.a);
    uint64_t writes = 0;
    for (int i = 0; i < 300; i++, writes++)
        REQUIRE(a.set("key:" + std::to_string(i), std::string(1000, 'v')) == "STORED");
    for (int i = 0; i < 50; i++, writes++)
        REQUIRE(a.del("key:" + std::to_string(i)) == "DELETED");
    REQUIRE(a.set("counter", "0") == "STORED");
    writes++;
    for (int i = 0; i < 10; i++, writes++)
        REQUIRE(a.incr("counter", 1) == std::to_string(i + 1));
    REQUIRE(a.append("counter", "0") == "STORED");
    writes++;
    // Commands that write nothing are not numbered.
    CHECK(a.del("never-set") == "NOT_FOUND");
    CHECK(a.replace("never-set", "v") == "NOT_STORED");

    std::string last;
    bool acknowledged = caught_up(pair.a, &last);
    INFO("A: " << last);
    REQUIRE(acknowledged);
    CHECK(stat(pair.a, "seq") == writes);
    CHECK(stat(pair.a, "backlog_first_seq") == 1);
    CHECK(stat(pair.a, "backlog_bytes") > 300 * 1000);
    // B wrote nothing of its own, and applied all of A's.
    CHECK(stat(pair.b, "seq") == 0);
    CHECK(stat(pair.b, "peer0:frames_applied") == writes);
    CHECK(stat(pair.b, "peer0:lag_frames") == 0);

    // A frozen peer acknowledges nothing: A sees it fall behind by exactly
    // what it wrote since, and for longer and longer.
    pair.b.freeze();
    for (int i = 0; i < 100; i++)
        REQUIRE(a.set("while-frozen:" + std::to_string(i), std::string(1000, 'f')) == "STORED");
    bool behind = eventually([&] { return stat(pair.a, "peer0:lag_frames") == 100; }, 10s, &last,
                             [&] { return numbering(pair.a); });
    INFO("A: " << last);
    CHECK(behind);
    CHECK(stat(pair.a, "peer0:acked_seq") == writes);
    CHECK(stat(pair.a, "peer0:lag_bytes") > 100 * 1000);
    CHECK(stat(pair.a, "peer0:lag_bytes") < 100 * 1100);
    bool growing = eventually([&] { return stat(pair.a, "peer0:lag_ms") >= 500; }, 10s, &last,
                              [&] { return numbering(pair.a); });
    INFO("A: " << last);
    CHECK(growing);

    pair.b.thaw();
    acknowledged = caught_up(pair.a, &last);
    INFO("A after B thawed: " << last);
    CHECK(acknowledged);
    CHECK(stat(pair.a, "peer0:lag_ms") == 0);
}

TEST_CASE("the backlog holds the newest writes up to -Q", "[node][replication][backlog]")
{
    Pair pair({"-Q", "1"});
    REQUIRE(wait_online(pair.a));
    REQUIRE(wait_online(pair.b));

    // 3 MiB of writes through a 1 MiB backlog: the oldest go.
    auto keys = fill(pair.a, "filler:", 3 * 1024, 1024);
    std::string last;
    bool acknowledged = caught_up(pair.a, &last);
    INFO("A: " << last);
    REQUIRE(acknowledged);
    CHECK(stat(pair.a, "seq") == keys.size());
    CHECK(stat(pair.a, "backlog_bytes") <= 1024 * 1024);
    CHECK(stat(pair.a, "backlog_bytes") > 1024 * 1024 - 2 * 1100);
    // Every write past the first one held is there: about a thousand.
    uint64_t first = stat(pair.a, "backlog_first_seq");
    CHECK(first > 1);
    CHECK(keys.size() - first + 1 > 900);
    CHECK(pair.converge(keys) == "");
}
