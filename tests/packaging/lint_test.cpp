// Every shell file we ship or run passes shellcheck, the sh ones have no
// bashisms, the systemd units pass systemd-analyze, and the overlay's
// metadata.xml its schema. Each file is checked in the shell it runs in,
// with the files it sources (-x). Without the tool (shellcheck,
// checkbashisms from devscripts, systemd-analyze from systemd, xmllint from
// libxml2-utils), a test is skipped.
#include <catch2/catch.hpp>

#include "support/packaging.hpp"
#include "support/skip.hpp"

#include <fstream>
#include <regex>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using fixture::quoted;
using fixture::repo;
using fixture::require_tool;
using fixture::run;

namespace {

const fs::path pkgdir = fixture::package_dir();

// The shell a script's #! line names: "sh" or "bash".
std::string shell_of(const fs::path &script)
{
    std::string first = fixture::slurp(script).substr(0, 80);
    first = first.substr(0, first.find('\n'));
    if (first.find("bash") != std::string::npos)
        return "bash";
    if (first == "#!/bin/sh")
        return "sh";
    return "";
}

// The shell scripts of scripts/, tests/ebuild/, .ci/, dist/ and debian/tests/.
std::vector<fs::path> our_scripts()
{
    std::vector<fs::path> scripts;
    for (const char *dir : {"scripts", "tests/ebuild", ".ci", "dist", "debian/tests"})
        for (const auto &entry : fs::directory_iterator(repo / dir))
            if (entry.is_regular_file() && !shell_of(entry.path()).empty())
                scripts.push_back(entry.path());
    return scripts;
}

} // namespace

TEST_CASE("every script in scripts/, tests/, dist/ and debian/tests/ passes shellcheck in its own shell", "[packaging]")
{
    require_tool("shellcheck", "shellcheck");
    std::vector<fs::path> scripts = our_scripts();
    REQUIRE(scripts.size() >= 10);
    for (const auto &script : scripts) {
        std::string shell = shell_of(script);
        auto result = run("shellcheck -x -s " + shell + " " + quoted(script));
        INFO(script.string() + " (" + shell + "):\n" + result.output);
        CHECK(result.status == 0);
    }
}

TEST_CASE("the sh scripts in scripts/, tests/, dist/ and debian/tests/ have no bashisms", "[packaging]")
{
    require_tool("checkbashisms", "devscripts");
    size_t sh_scripts = 0;
    for (const auto &script : our_scripts()) {
        if (shell_of(script) != "sh")
            continue;
        sh_scripts++;
        auto bashisms = run("checkbashisms " + quoted(script));
        INFO(script.string() + ": checkbashisms:\n" + bashisms.output);
        CHECK(bashisms.status == 0);
    }
    CHECK(sh_scripts >= 3);
}

TEST_CASE("the ebuild passes shellcheck as bash", "[packaging]")
{
    require_tool("shellcheck", "shellcheck");
    // SC2034: DESCRIPTION, SRC_URI, IUSE, DOCS, ... look unused, but the
    // package manager reads them after sourcing the ebuild.
    auto result = run("shellcheck -s bash -e SC2034 " + quoted(pkgdir / "memcached-1.2.8-r101.ebuild"));
    INFO(result.output);
    CHECK(result.status == 0);
}

TEST_CASE("the OpenRC init script passes shellcheck as bash and as POSIX sh", "[packaging]")
{
    // openrc-run runs it with /bin/sh, so POSIX sh is checked too. The
    // script itself disables SC2034 (description, command, pidfile... are
    // read by openrc-run); ebegin, checkpath and RC_SVCNAME come from
    // openrc-run and need no exclusion.
    require_tool("shellcheck", "shellcheck");
    fs::path initd = pkgdir / "files/memcached.initd";
    for (const char *shell : {"bash", "sh"}) {
        auto result = run(std::string("shellcheck -s ") + shell + " " + quoted(initd));
        INFO(shell << ":\n" << result.output);
        CHECK(result.status == 0);
    }
}

TEST_CASE("the OpenRC init script has no bashisms", "[packaging]")
{
    require_tool("checkbashisms", "devscripts");
    auto bashisms = run("checkbashisms -f " + quoted(pkgdir / "files/memcached.initd"));
    INFO("checkbashisms:\n" + bashisms.output);
    CHECK(bashisms.status == 0);
}

TEST_CASE("both systemd units pass systemd-analyze verify, and the service rates as well confined", "[packaging]")
{
    fs::path unit = repo / "dist/systemd/memcached.service";
    require_tool("systemd-analyze", "systemd");

    std::string verify = fixture::verify_unit(fixture::slurp(unit), "memcached.service");
    INFO("systemd-analyze verify memcached.service:\n" + verify);
    CHECK(verify.empty());
    // A template is verified as one of its instances.
    std::string instance = fixture::verify_unit(fixture::slurp(repo / "dist/systemd/memcached@.service"), "memcached@cache2.service");
    INFO("systemd-analyze verify memcached@cache2.service:\n" + instance);
    CHECK(instance.empty());

    // Exposure 0 (locked down) to 10 (unprotected), in tenths for
    // --threshold; the unit rates 1.6.
    auto security = run("systemd-analyze security --offline=yes --threshold=25 " + quoted(unit));
    INFO("systemd-analyze security:\n" + security.output);
    CHECK(security.status == 0);
}

TEST_CASE("the overlay's metadata.xml is valid against the metadata.xml schema, which refuses a maintainer without an email", "[packaging]")
{
    require_tool("xmllint", "libxml2-utils");
    // tests/ebuild/metadata.xsd: GLEP 68's rules, written for these tests
    // (Gentoo's own schema is not installable here); see its header.
    std::string xsd = quoted(repo / "tests/ebuild/metadata.xsd");
    auto result = run("xmllint --nonet --noout --schema " + xsd + " " + quoted(pkgdir / "metadata.xml"));
    INFO(result.output);
    CHECK(result.status == 0);

    fixture::ScratchDir scratch("metadata");
    std::string text = fixture::slurp(pkgdir / "metadata.xml");
    std::string without = std::regex_replace(text, std::regex("\n\t*<email>[^<]*</email>"), "");
    REQUIRE(without != text);
    std::ofstream(scratch / "metadata.xml") << without;
    auto refused = run("xmllint --nonet --noout --schema " + xsd + " " + quoted(scratch / "metadata.xml"));
    INFO(refused.output);
    CHECK(refused.status != 0);
    CHECK(refused.output.find("Expected is ( email )") != std::string::npos);
}
