// The fixture against a plain (non-replicating) node: what every later
// replication test relies on. Tagged [node]: scripts/check runs these once
// per built variant, with MEMCACHED_BIN and MEMCACHED_VARIANT set.
#include <catch2/catch.hpp>

#include "support/node.hpp"

#include <cstdlib>
#include <filesystem>
#include <string>

using fixture::Client;
using fixture::Node;

TEST_CASE("a node answers every write command and reads back what was written", "[node]")
{
    Node node;
    Client c(node);

    CHECK(c.set("k", "hello", 42) == "STORED");
    auto item = c.gets("k");
    REQUIRE(item);
    CHECK(item->value == "hello");
    CHECK(item->flags == 42);

    CHECK(c.add("k", "x") == "NOT_STORED");
    CHECK(c.replace("k", "world", 7) == "STORED");
    CHECK(c.append("k", "!") == "STORED");
    CHECK(c.prepend("k", "<") == "STORED");
    CHECK(c.get("k")->value == "<world!");

    SECTION("cas succeeds with the current unique and fails with a stale one") {
        uint64_t unique = c.gets("k")->cas;
        CHECK(c.cas("k", "v2", unique) == "STORED");
        CHECK(c.cas("k", "v3", unique) == "EXISTS");
        CHECK(c.get("k")->value == "v2");
    }
    SECTION("incr and decr return the new value") {
        CHECK(c.set("n", "10") == "STORED");
        CHECK(c.incr("n", 5) == "15");
        CHECK(c.decr("n", 20) == "0");
        CHECK(c.incr("missing", 1) == "NOT_FOUND");
    }
    SECTION("delete and flush_all remove items") {
        CHECK(c.set("other", "o") == "STORED");
        CHECK(c.del("k") == "DELETED");
        CHECK_FALSE(c.get("k"));
        CHECK(c.flush_all() == "OK");
        CHECK_FALSE(c.get("other"));
    }
}

TEST_CASE("nodes started side by side get their own ports and can be killed and restarted", "[node]")
{
    Node a, b;
    REQUIRE(a.port() != b.port());
    Client(a).set("only-on-a", "1");
    CHECK_FALSE(Client(b).get("only-on-a"));

    pid_t first = a.pid();
    a.kill9();
    CHECK_FALSE(a.running());
    CHECK_THROWS(Client(a.port()));
    a.restart();
    CHECK(a.pid() != first);
    CHECK_FALSE(Client(a).get("only-on-a"));
}

TEST_CASE("a server that cannot start is reported with what it printed", "[node]")
{
    try {
        Node bad({"-y"});
        FAIL("memcached started with an illegal option");
    } catch (const std::runtime_error &e) {
        CHECK(std::string(e.what()).find("Illegal argument") != std::string::npos);
    }
}

TEST_CASE("the threaded variant really runs worker threads, the single one does not", "[node]")
{
    const char *variant = getenv("MEMCACHED_VARIANT");
    INFO("scripts/check sets MEMCACHED_VARIANT to the build under test (single or threads)");
    REQUIRE(variant != nullptr);

    Node node({"-t", "4"});
    auto tasks = std::distance(std::filesystem::directory_iterator("/proc/" + std::to_string(node.pid()) + "/task"),
                               std::filesystem::directory_iterator{});
    if (std::string(variant) == "threads")
        CHECK(tasks == 5); // the dispatcher and four workers
    else
        CHECK(tasks == 1);
}
