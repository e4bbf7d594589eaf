// What a node holds never silently departs from what its peer holds: a
// write that arrives expired, a key the peer must carry byte for byte, a
// receiver that runs out of memory, a busy link next to a quiet one.
// Tagged [node]: run once per variant.
#include <catch2/catch.hpp>

#include "support/pair.hpp"

using namespace fixture;
using namespace std::chrono_literals;

namespace {

// Sets `key` on the writer and waits until the reader has it: the link
// carries frames in order, so whatever the writer sent before has then
// been applied by the reader.
void barrier(const Node &writer, const Node &reader, const std::string &key = "barrier")
{
    static int round = 0;
    const std::string value = "round " + std::to_string(++round);
    REQUIRE(Client(writer).set(key, value) == "STORED");
    std::string seen;
    bool arrived = eventually([&] {
        auto item = Client(reader).get(key);
        seen = item ? item->value : "(miss)";
        return item && item->value == value;
    }, 20s);
    INFO("the reader holds " << key << " = " << seen << ", expected " << value);
    REQUIRE(arrived);
}

} // namespace

TEST_CASE("a set that arrives already expired removes the older value on the peer", "[node][replication][integrity]")
{
    Pair pair;
    REQUIRE(wait_online(pair.a));
    Client a(pair.a), b(pair.b);
    REQUIRE(a.set("k", "old") == "STORED");
    REQUIRE(pair.converge({"k"}) == "");

    // A negative expiry time is in the past: A stores the write and it
    // has expired at once, on A and on the way to B.
    REQUIRE(a.set("k", "new", 0, -1) == "STORED");
    CHECK_FALSE(a.get("k"));
    barrier(pair.a, pair.b);
    auto on_b = b.get("k");
    INFO("B still serves k = " << (on_b ? on_b->value : "(miss)"));
    CHECK_FALSE(on_b);
    CHECK(pair.converge({"k", "barrier"}) == "");
}

TEST_CASE("a node that cannot store what its peer sends drops the older value and says so", "[node][replication][integrity]")
{
    // B has 2 MB and may not evict (-M): most of A's 4 MB of writes do
    // not fit there.
    uint16_t repl_a = free_port(), repl_b = free_port();
    Node a(replication_args(repl_a, repl_b, {"-m", "64"}));
    Node b(replication_args(repl_b, repl_a, {"-m", "2", "-M"}));
    REQUIRE(wait_online(a));
    REQUIRE(wait_online(b));

    auto keys = fill(a, "k:", 4000, 10);
    std::string difference;
    CHECK(eventually([&] { return (difference = census_difference(census(a, keys), census(b, keys))).empty(); }, 30s));
    REQUIRE(difference == "");

    fill(a, "k:", 4000, 1000);
    barrier(a, b);
    auto on_a = census(a, keys);
    auto on_b = census(b, keys);
    REQUIRE(on_a.size() == keys.size());

    SECTION("B serves A's value or nothing, never the value A replaced") {
        size_t stale = 0;
        std::string first_stale;
        for (const auto &[key, item] : on_b) {
            if (item.value != on_a[key].value && stale++ == 0)
                first_stale = key + " = '" + item.value + "'";
        }
        INFO("B holds " << on_b.size() << " of " << keys.size() << " keys, " << stale
                        << " of them older than A's; the first: " << first_stale);
        CHECK(stale == 0);
        CHECK(on_b.size() < keys.size());
    }
    SECTION("every write B could not store is counted, with the reason") {
        auto stats = replication_stats(b);
        INFO("B's peer0: state " << stats["peer0:state"] << ", apply_failed '" << stats["peer0:apply_failed"]
                                 << "', last_error " << stats["peer0:last_error"]);
        REQUIRE(stats.count("peer0:apply_failed") == 1);
        CHECK(std::stoull(stats["peer0:apply_failed"]) == keys.size() - on_b.size());
        CHECK(stats["peer0:last_error"].find("out of memory") != std::string::npos);
    }
    SECTION("a resync that B cannot store in full is counted, with the reason") {
        b.kill9();
        b.restart();
        REQUIRE(wait_online(b, 30s));
        std::map<std::string, std::string> stats;
        bool counted = eventually([&] {
            stats = replication_stats(b);
            return stats.count("peer0:resync_mismatches") == 1 && stats["peer0:resync_mismatches"] != "0";
        }, 20s);
        INFO("B's peer0: resync_mismatches '" << stats["peer0:resync_mismatches"] << "', last_resync_items "
                                              << stats["peer0:last_resync_items"] << ", last_error "
                                              << stats["peer0:last_error"]);
        CHECK(counted);
        CHECK(stats["peer0:last_error"].find("resync incomplete") != std::string::npos);
    }
}

TEST_CASE("every key a client can store reaches the peer byte for byte", "[node][replication][integrity]")
{
    Pair pair;
    REQUIRE(wait_online(pair.a));
    Client a(pair.a), b(pair.b);
    // 1.2.8 splits a command line on spaces only: a tab, a carriage return
    // inside a key, any control character, DEL and bytes over 0x7f are
    // part of the key.
    std::string high;
    for (int c = 0x80; c <= 0xff; c++)
        high += char(c);
    const std::vector<std::string> keys = {"a\tb", "user\r42", "\x01", "bell\x07", "\x7f", "esc\x1b[0m", high.substr(0, 100)};
    for (const auto &key : keys)
        REQUIRE(a.set(key, "v:" + key) == "STORED");
    barrier(pair.a, pair.b);
    auto on_b = census(pair.b, keys);
    INFO(census_difference(census(pair.a, keys), on_b));
    CHECK(on_b.size() == keys.size());
    CHECK(pair.converge(keys) == "");
    CHECK(replication_stats(pair.b)["peer0:last_error"] == "none");

    // A delete of such a key reaches the peer too.
    REQUIRE(a.del("a\tb") == "DELETED");
    barrier(pair.a, pair.b);
    CHECK_FALSE(b.get("a\tb"));
}
