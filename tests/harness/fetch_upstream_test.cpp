// The build harness refuses archives it cannot trust and says what to do
// when it has none. These tests run scripts/fetch-upstream and make itself
// against temporary directories, offline.
#include <catch2/catch.hpp>

#include "support/command.hpp"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace fs = std::filesystem;

namespace {

using fixture::CommandResult;
using fixture::quoted;
using fixture::repo;
using fixture::run;

// A scratch directory with an empty upstream cache and an empty DISTDIR.
struct Scratch {
    fs::path root, upstream, distdir;
    Scratch()
    {
        char tmpl[] = "/tmp/repcached-harness-XXXXXX";
        REQUIRE(mkdtemp(tmpl) != nullptr);
        root = tmpl;
        upstream = root / "upstream";
        distdir = root / "distfiles";
        fs::create_directories(upstream);
        fs::create_directories(distdir);
    }
    ~Scratch() { fs::remove_all(root); }
    std::string env() const
    {
        return "OFFLINE=1 UPSTREAM_DIR=" + quoted(upstream) + " DISTDIR=" + quoted(distdir) + " ";
    }
};

const std::string fetch = quoted(repo / "scripts/fetch-upstream");

// The archive this machine builds from (found the way make finds it).
fs::path good_archive()
{
    CommandResult found = run("OFFLINE=1 " + fetch);
    INFO(found.output);
    REQUIRE(found.status == 0);
    // Messages go to stderr, the path alone to stdout, last.
    std::string out = found.output;
    while (!out.empty() && out.back() == '\n')
        out.pop_back();
    std::string path = out.substr(out.rfind('\n') + 1);
    REQUIRE(fs::exists(path));
    return path;
}

} // namespace

TEST_CASE("an archive that matches a pinned checksum is accepted from DISTDIR", "[harness]")
{
    Scratch scratch;
    fs::copy_file(good_archive(), scratch.distdir / "memcached-1.2.8.tar.gz");

    CommandResult result = run(scratch.env() + fetch);

    INFO(result.output);
    CHECK(result.status == 0);
    CHECK(result.output.find("checksum OK") != std::string::npos);
    CHECK(result.output.find((scratch.distdir / "memcached-1.2.8.tar.gz").string()) != std::string::npos);
}

TEST_CASE("an archive with one byte changed is refused, naming the file and both hashes", "[harness]")
{
    Scratch scratch;
    fs::path bad = scratch.distdir / "memcached-1.2.8.tar.gz";
    fs::copy_file(good_archive(), bad);
    {
        std::fstream f(bad, std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(5000);
        char c = 0;
        f.seekg(5000);
        f.get(c);
        f.seekp(5000);
        f.put(static_cast<char>(c ^ 0x01));
    }

    SECTION("by fetch-upstream") {
        CommandResult result = run(scratch.env() + fetch);
        INFO(result.output);
        CHECK(result.status != 0);
        CHECK(result.output.find(bad.string() + ": checksum mismatch") != std::string::npos);
        CHECK(result.output.find("got      sha256 ") != std::string::npos);
        CHECK(result.output.find("expected release sha256 9e36702833a9213d") != std::string::npos);
        CHECK(result.output.find("expected tag tar-sha256 b886aebc1d5e4d4c") != std::string::npos);
    }
    SECTION("by make, which builds nothing from it") {
        fs::path build = scratch.root / "build";
        CommandResult result = run(scratch.env() + "make --no-print-directory -C " + quoted(repo) +
                                   " BUILD=" + quoted(build) + " " + quoted(build / ".patched"));
        INFO(result.output);
        CHECK(result.status != 0);
        CHECK(result.output.find("checksum mismatch") != std::string::npos);
        CHECK_FALSE(fs::exists(build / "memcached-1.2.8"));
        CHECK_FALSE(fs::exists(build / ".patched"));
    }
}

TEST_CASE("with no archive and downloads off, one message says which files to put where", "[harness]")
{
    Scratch scratch;

    CommandResult result = run(scratch.env() + fetch);

    INFO(result.output);
    CHECK(result.status != 0);
    CHECK(result.output.find("no memcached-1.2.8.tar.gz in " + scratch.upstream.string()) != std::string::npos);
    CHECK(result.output.find("DISTDIR=" + scratch.distdir.string()) != std::string::npos);
    CHECK(result.output.find("OFFLINE=1") != std::string::npos);
    CHECK(result.output.find("official release tarball") != std::string::npos);
    CHECK(result.output.find("git archive --format=tar.gz --prefix=memcached-1.2.8/ 1.2.8") != std::string::npos);
}
