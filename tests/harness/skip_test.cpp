// The runner's skips (tests/support/skip.hpp): a test case that cannot run
// here is counted as skipped, neither passed nor failed, and says why; one
// that failed before it skipped is failed. The two test cases that show it
// are hidden ([.] tags: no spec of scripts/check runs them), and are run by
// tag through this very binary.
#include <catch2/catch.hpp>

#include "support/command.hpp"
#include "support/skip.hpp"

#include <filesystem>
#include <string>

namespace fs = std::filesystem;
using fixture::quoted;
using fixture::run;

TEST_CASE("demo of skip_test(): a test that skips after a check that held", "[.skip-demo]")
{
    CHECK(1 + 1 == 2);
    fixture::require_tool("repcached-no-such-tool", "repcached-no-such-package");
    FAIL("require_tool() went on without the tool");
}

TEST_CASE("demo of skip_test(): a test that fails on purpose, then skips", "[.skip-demo-failing]")
{
    CHECK(1 + 1 == 3);
    fixture::skip_test("too late: a check failed already");
}

TEST_CASE("a test case that skips is counted as skipped, with its reason, and one that failed first as failed", "[harness]")
{
    const std::string self = quoted(fs::read_symlink("/proc/self/exe"));

    auto skipped = run(self + " '[.skip-demo]'");
    INFO(skipped.output);
    CHECK(skipped.status == 0);
    CHECK(skipped.output.find("\nSKIPPED: demo of skip_test(): a test that skips after a check that held: "
                              "repcached-no-such-tool is not installed (Debian package repcached-no-such-package;") !=
          std::string::npos);
    CHECK(skipped.output.find("\ntest cases: 1 | 0 passed | 0 failed | 1 skipped\n") != std::string::npos);
    CHECK(skipped.output.find("\nassertions: 1 | 1 passed | 0 failed\n") != std::string::npos);
    CHECK(skipped.output.find("FAILED") == std::string::npos);

    auto failed = run(self + " '[.skip-demo-failing]'");
    INFO(failed.output);
    CHECK(failed.status != 0);
    CHECK(failed.output.find("\nFAILED, then skipped: demo of skip_test(): a test that fails on purpose, then skips: "
                             "too late: a check failed already\n") != std::string::npos);
    CHECK(failed.output.find("\ntest cases: 1 | 0 passed | 1 failed | 0 skipped\n") != std::string::npos);
    CHECK(failed.output.find("SKIPPED: ") == std::string::npos);
}
