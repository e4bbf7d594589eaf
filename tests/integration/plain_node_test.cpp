// The fixture against a plain (non-replicating) node: what every later
// replication test relies on. Tagged [node]: scripts/check runs these once
// per built variant, with MEMCACHED_BIN and MEMCACHED_VARIANT set.
#include <catch2/catch.hpp>

#include "support/node.hpp"
#include "support/skip.hpp"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

using fixture::Client;
using fixture::Node;
using fixture::skip_test;

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
    // ThreadSanitizer runs a thread of its own in every process it checks
    // (make check-sanitize sets MEMCACHED_SANITIZER).
    const char *sanitizer = getenv("MEMCACHED_SANITIZER");
    const long own = sanitizer && std::string(sanitizer) == "tsan" ? 1 : 0;
    if (std::string(variant) == "threads")
        CHECK(tasks == 5 + own); // the dispatcher and four workers
    else
        CHECK(tasks == 1 + own);
}

// The large-pages-on-linux patch: -L on Linux backs the item cache with transparent huge pages,
// so that a cache filled at once (a resync into an empty node) takes one
// page fault per 2 MB instead of one per 4 KB.
TEST_CASE("-L keeps the item cache in transparent huge pages on Linux", "[node]")
{
    std::ifstream thp("/sys/kernel/mm/transparent_hugepage/enabled");
    std::string modes;
    std::getline(thp, modes);
    Node node({"-L", "-m", "64"});
    Client c(node);

    // 16 MB of 1 KB values: eight whole huge pages at least, wherever the
    // slabs start in the chunk.
    const std::string value(1000, 'v');
    for (int i = 0; i < 16 * 1024; i++)
        REQUIRE(c.set("key" + std::to_string(i), value) == "STORED");
    CHECK(c.get("key0")->value == value);

    std::ifstream smaps("/proc/" + std::to_string(node.pid()) + "/smaps_rollup");
    std::string line;
    long huge_kib = -1;
    while (std::getline(smaps, line))
        if (line.rfind("AnonHugePages:", 0) == 0)
            huge_kib = std::stol(line.substr(14));
    INFO("transparent_hugepage/enabled: " << modes);
    if (modes.empty() || modes.find("[never]") != std::string::npos) {
        // Checked that -L is accepted and changes nothing here; what the
        // test is about needs a kernel that gives huge pages.
        CHECK(huge_kib <= 0);
        skip_test("this kernel gives no transparent huge pages (/sys/kernel/mm/transparent_hugepage/enabled: '" +
                  modes + "'); only checked that -L is accepted");
    }
    CHECK(huge_kib >= 8 * 2048);
}
