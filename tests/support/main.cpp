// The Catch2 main, compiled once and linked into every test binary, with
// its reporter: Catch2's console reporter, which also counts the test cases
// that called fixture::skip_test() (support/skip.hpp) as skipped.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "support/skip.hpp"

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

namespace {

// Catch2 v2 reports a TestSkipped like any exception that escapes a test
// case: as a failed assertion, whose message comes from the translator
// below. The translator runs for a TestSkipped only and leaves its reason
// here, so that the reporter tells a skip from an error by more than the
// wording of a message.
std::optional<std::string> skip_in_flight;
const std::string skip_message = "skipped: ";

// What the reporter made of the run, for main()'s exit status.
struct {
    bool counted = false;
    size_t skips = 0;          // skip_test() calls: failed assertions to Catch2
    size_t catch_failed = 0;   // failed assertions as Catch2 counts them
    size_t failed = 0;         // failed assertions, skips excluded
} run_outcome;

int exit_status(size_t failed_assertions)
{
    return static_cast<int>(std::min<size_t>(failed_assertions, 255));
}

// The console reporter, with skips. A test case whose only failed
// assertions are skips is skipped: "SKIPPED: <test case>: <reason>" when it
// ends, the list of them at the end, and totals that always read
//   test cases: N | N passed | N failed | N skipped
//   assertions: N | N passed | N failed
// with a skip counted in neither passed nor failed. A test case that failed
// an assertion before it skipped is failed, and says it skipped.
class SkipCountingReporter : public Catch::ConsoleReporter {
public:
    using ConsoleReporter::ConsoleReporter;

    static std::string getDescription()
    {
        return "Catch2's console reporter, counting fixture::skip_test() as a skip (the default)";
    }

    void testCaseStarting(Catch::TestCaseInfo const &info) override
    {
        reasons_.clear();
        case_skips_ = 0;
        skip_in_flight.reset();
        ConsoleReporter::testCaseStarting(info);
    }

    bool assertionEnded(Catch::AssertionStats const &stats) override
    {
        const Catch::AssertionResult &result = stats.assertionResult;
        if (skip_in_flight && result.getResultType() == Catch::ResultWas::ThrewException &&
            result.getMessage() == skip_message + *skip_in_flight) {
            // Once per run of the test case: each SECTION path may skip.
            if (std::find(reasons_.begin(), reasons_.end(), *skip_in_flight) == reasons_.end())
                reasons_.push_back(*skip_in_flight);
            case_skips_++;
            skip_in_flight.reset();
            return true;
        }
        return ConsoleReporter::assertionEnded(stats);
    }

    void testCaseEnded(Catch::TestCaseStats const &stats) override
    {
        if (case_skips_ > 0) {
            skip_assertions_ += case_skips_;
            const bool failed_too = stats.totals.assertions.failed > case_skips_;
            for (const std::string &reason : reasons_) {
                std::string line = stats.testInfo.name + ": " + reason;
                Catch::Colour colour(Catch::Colour::Warning);
                if (failed_too) {
                    stream << "FAILED, then skipped: " << line << '\n';
                } else {
                    stream << "SKIPPED: " << line << '\n';
                    skipped_.push_back(line);
                }
            }
            stream.flush();
            if (!failed_too)
                skipped_cases_++;
        }
        ConsoleReporter::testCaseEnded(stats);
    }

    void testRunEnded(Catch::TestRunStats const &stats) override
    {
        Catch::Totals totals = stats.totals;
        totals.testCases.failed -= skipped_cases_;
        totals.assertions.failed -= skip_assertions_;

        if (!skipped_.empty()) {
            stream << "\nSkipped test cases (neither passed nor failed):\n";
            for (const std::string &line : skipped_)
                stream << "  " << line << '\n';
        }
        stream << std::string(CATCH_CONFIG_CONSOLE_WIDTH - 1, '=') << '\n';
        if (totals.testCases.total() + skipped_cases_ == 0) {
            stream << "No tests ran\n";
        } else {
            stream << "test cases: " << totals.testCases.total() + skipped_cases_ << " | "
                   << totals.testCases.passed << " passed | " << totals.testCases.failed << " failed | "
                   << skipped_cases_ << " skipped";
            if (totals.testCases.failedButOk > 0)
                stream << " | " << totals.testCases.failedButOk << " failed as expected";
            stream << "\nassertions: " << totals.assertions.total() << " | " << totals.assertions.passed
                   << " passed | " << totals.assertions.failed << " failed\n";
        }
        stream << std::endl;

        run_outcome.counted = true;
        run_outcome.skips = skip_assertions_;
        run_outcome.catch_failed = stats.totals.assertions.failed;
        run_outcome.failed = totals.assertions.failed;
        // Not ConsoleReporter's: its totals count every skip as a failure.
        StreamingReporterBase<ConsoleReporter>::testRunEnded(stats);
    }

private:
    std::vector<std::string> reasons_;   // of the current test case
    size_t case_skips_ = 0;              // of the current test case
    size_t skip_assertions_ = 0;
    size_t skipped_cases_ = 0;
    std::vector<std::string> skipped_;   // "<test case>: <reason>"
};

} // namespace

CATCH_TRANSLATE_EXCEPTION(fixture::TestSkipped const &skip)
{
    skip_in_flight = skip.reason;
    return skip_message + skip.reason;
}

CATCH_REGISTER_REPORTER("repcached", SkipCountingReporter)

int main(int argc, char *argv[])
{
    Catch::Session session;
    // Ours, unless -r names another (which then counts a skip as a failure).
    session.configData().reporterName = "repcached";
    int status = session.applyCommandLine(argc, argv);
    if (status != 0)
        return status;
    status = session.run();
    // Catch2 exits with the number of failed assertions, skips among them.
    if (run_outcome.counted && run_outcome.skips > 0 && status == exit_status(run_outcome.catch_failed))
        status = exit_status(run_outcome.failed);
    return status;
}
