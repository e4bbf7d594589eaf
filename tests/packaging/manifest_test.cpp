// The overlay's Manifest matches the distfiles: the series tarball that
// make dist writes, and the upstream release as pinned in upstream/checksums.
#include <catch2/catch.hpp>

#include "support/packaging.hpp"

#include <fstream>
#include <regex>
#include <string>

using fixture::quoted;
using fixture::repo;
using fixture::run;

namespace {
const std::string update_manifest = quoted(repo / "scripts/update-manifest");
}

TEST_CASE("the Manifest lists the series tarball of make dist and the pinned upstream release", "[packaging]")
{
    auto result = run(update_manifest + " --check");
    INFO(result.output);
    CHECK(result.status == 0);
}

TEST_CASE("a stale Manifest is reported with the difference and the command that fixes it", "[packaging]")
{
    fixture::ScratchDir scratch("manifest");
    std::string manifest = fixture::slurp(fixture::package_dir() / "Manifest");
    // A series tarball whose BLAKE2B no longer matches: a patch changed.
    std::string stale = std::regex_replace(manifest, std::regex("(-patches\\.tar\\.gz [0-9]+ BLAKE2B )."), "$1x");
    REQUIRE(stale != manifest);
    std::ofstream(scratch / "Manifest") << stale;

    auto result = run("MANIFEST=" + quoted(scratch / "Manifest") + " " + update_manifest + " --check");

    INFO(result.output);
    CHECK(result.status != 0);
    CHECK(result.output.find("Manifest is stale") != std::string::npos);
    CHECK(result.output.find("-DIST memcached-1.2.8-repcached-ng-") != std::string::npos);
    CHECK(result.output.find("run scripts/update-manifest and commit the Manifest") != std::string::npos);
}

TEST_CASE("the ebuild applies the series of this tree's VERSION", "[packaging]")
{
    std::string version = fixture::slurp(repo / "VERSION");
    version = version.substr(0, version.find('\n'));
    std::string ebuild = fixture::slurp(fixture::package_dir() / "memcached-1.2.8-r101.ebuild");
    INFO("VERSION is " + version + ": the newest ebuild must set SERIES_PV=\"" + version +
         "\" (a new series is a new revision: copy the ebuild to the next -rN), then run scripts/update-manifest");
    CHECK(ebuild.find("\nSERIES_PV=\"" + version + "\"\n") != std::string::npos);
}
