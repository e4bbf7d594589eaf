// Skipping a test that cannot run here: for want of a tool, a package or a
// kernel feature. Catch2 v2 has no skip, so skip_test() throws TestSkipped,
// and the runner's reporter (tests/support/main.cpp) counts the test case as
// skipped: neither passed nor failed, with its reason on a line of its own,
//
//   SKIPPED: <test case name>: <reason>
//
// and in the totals, "test cases: N | N passed | N failed | N skipped",
// which scripts/check adds up. A test case that failed an assertion before
// it skipped is counted as failed.
//
//   fixture::require_tool("checkbashisms", "devscripts");  // skips if absent
//   if (!thp_enabled)
//       fixture::skip_test("the kernel gives no transparent huge pages");
//
// Call skip_test() as a statement, never inside CHECK()/REQUIRE(); assertions
// made before it still count (a failure among them fails the test case).
#pragma once

#include "support/command.hpp"

#include <string>

namespace fixture {

// Not a std::exception, so that no catch (const std::exception &) in a test
// or in the fixture mistakes a skip for an error and swallows it.
struct TestSkipped {
    std::string reason;
};

[[noreturn]] inline void skip_test(const std::string &reason)
{
    throw TestSkipped{reason};
}

// Whether `tool` is a command on PATH.
inline bool have_tool(const std::string &tool)
{
    return run("command -v " + tool + " >/dev/null").status == 0;
}

// Skips the test unless `tool` is on PATH; `package` is the Debian package
// that has it (scripts/build-deps check installs it).
inline void require_tool(const std::string &tool, const std::string &package)
{
    if (!have_tool(tool))
        skip_test(tool + " is not installed (Debian package " + package + "; scripts/build-deps check installs it)");
}

} // namespace fixture
