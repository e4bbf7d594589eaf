// `stats replication` is answered by a worker thread while the replication
// thread opens, moves and frees the links it reports on. Run under
// ThreadSanitizer (make check-sanitize) this test is the shortest way to
// the race between them; on any build, the node must answer every time.
// Tagged [node]: run once per variant.
#include <catch2/catch.hpp>

#include "support/pair.hpp"

#include <atomic>
#include <mutex>
#include <thread>

using namespace fixture;
using namespace std::chrono_literals;

TEST_CASE("stats replication answers while the peer's link drops and comes back", "[node][replication]")
{
    Pair pair;
    REQUIRE(wait_online(pair.a));

    std::atomic<bool> stop{false};
    std::atomic<int> answers{0};
    std::mutex errors_lock;
    std::vector<std::string> errors;
    auto reader = [&] {
        try {
            Client a(pair.a);
            while (!stop) {
                a.stats("replication");
                answers++;
            }
        } catch (const std::exception &e) {
            std::lock_guard<std::mutex> hold(errors_lock);
            errors.push_back(e.what());
        }
    };
    std::vector<std::thread> readers;
    for (int i = 0; i < 4; i++)
        readers.emplace_back(reader);

    // Each restart closes A's link (freed by the replication thread) and
    // brings a new one through every state.
    for (int i = 0; i < 5; i++) {
        pair.b.kill9();
        pair.b.restart();
        if (!wait_online(pair.a))
            break;
    }
    stop = true;
    for (auto &t : readers)
        t.join();

    INFO(answers << " answers to stats replication; A's peers: " << peer_states(pair.a));
    for (auto &e : errors)
        FAIL_CHECK("a reader: " << e);
    CHECK(answers > 0);
    CHECK(replication_stats(pair.a)["peer0:state"] == "online");
}
