// What a node holds never silently departs from what its peer holds: a
// write that arrives expired, a key the peer must carry byte for byte, a
// receiver that runs out of memory, a busy link next to a quiet one.
// Tagged [node]: run once per variant.
#include <catch2/catch.hpp>

#include "support/pair.hpp"

using namespace fixture;
using namespace std::chrono_literals;

namespace {

uint64_t stat(const Node &node, const std::string &name)
{
    return std::stoull(replication_stats(node)[name]);
}

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
