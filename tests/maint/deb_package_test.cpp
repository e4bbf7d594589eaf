// The Debian packages: `make deb` lays out a 3.0 (quilt) source package from
// the pinned upstream archive and patches/, and builds the binary package
// from it. Built once (about half a minute, upstream's suite skipped with
// DEB_BUILD_OPTIONS=nocheck: make check runs it) in a temporary directory.
#include "maint/maint.hpp"
#include "support/skip.hpp"

#include <memory>

using namespace maint;

namespace {

const std::string package = "memcached-repcached-ng";

struct BuiltPackages {
    TempDir tmp;
    fs::path deb_dir = tmp.path / "build/deb";
    CommandResult make;
    std::string version;

    BuiltPackages()
    {
        make = run("DEB_BUILD_OPTIONS=nocheck make --no-print-directory -C " + quoted(repo) +
                   " BUILD=" + quoted(tmp.path / "build") + " deb");
        version = run("dpkg-parsechangelog -l " + quoted(repo / "debian/changelog") + " -S Version").output;
        while (!version.empty() && version.back() == '\n')
            version.pop_back();
    }
    fs::path file(const std::string &suffix) const { return deb_dir / (package + "_" + suffix); }
    fs::path deb() const
    {
        std::string arch = run("dpkg-architecture -qDEB_HOST_ARCH").output;
        arch.pop_back();
        return file(version + "_" + arch + ".deb");
    }
};

// One build for all the test cases of this file; removed at exit.
BuiltPackages &built()
{
    fixture::require_tool("dpkg-buildpackage", "dpkg-dev");
    fixture::require_tool("dh", "debhelper");
    static std::unique_ptr<BuiltPackages> packages;
    if (!packages)
        packages = std::make_unique<BuiltPackages>();
    INFO(packages->make.output);
    REQUIRE(packages->make.status == 0);
    return *packages;
}

} // namespace

TEST_CASE("the source package is 3.0 (quilt): the pinned archive as orig tarball, patches/ as debian/patches", "[maint]")
{
    BuiltPackages &b = built();

    CHECK(read_file(b.file("1.2.8.orig.tar.gz")) == read_file(upstream_archive()));
    std::string dsc = read_file(b.file(b.version + ".dsc"));
    CHECK(dsc.find("Format: 3.0 (quilt)\n") != std::string::npos);
    CHECK(dsc.find("Source: " + package + "\n") != std::string::npos);

    TempDir unpacked;
    REQUIRE(run("tar -xJf " + quoted(b.file(b.version + ".debian.tar.xz")) + " -C " + quoted(unpacked.path)).status == 0);
    fs::path patches = unpacked.path / "debian/patches";
    CHECK(read_file(patches / "series") == read_file(repo / "patches/series"));
    for (const std::string &name : series_names(repo / "patches/series")) {
        INFO(name);
        CHECK(read_file(patches / name) == read_file(repo / "patches" / name));
    }
    CHECK(read_file(unpacked.path / "debian/source/format") == "3.0 (quilt)\n");
}

TEST_CASE("the binary package holds the patched threaded memcached, its man page and a systemd unit", "[maint]")
{
    BuiltPackages &b = built();
    REQUIRE(fs::exists(b.deb()));

    CommandResult listing = run("dpkg-deb -c " + quoted(b.deb()));
    INFO(listing.output);
    REQUIRE(listing.status == 0);
    auto lists = [&](const std::string &path) {
        return listing.output.find(" ./" + path + "\n") != std::string::npos;
    };
    CHECK(lists("usr/bin/memcached"));
    CHECK(lists("usr/share/man/man1/memcached.1.gz"));
    CHECK((lists("lib/systemd/system/" + package + ".service") ||
           lists("usr/lib/systemd/system/" + package + ".service")));
    CHECK_FALSE(lists("usr/bin/memcached-debug"));

    TempDir root;
    REQUIRE(run("dpkg -x " + quoted(b.deb()) + " " + quoted(root.path)).status == 0);
    fs::path memcached = root.path / "usr/bin/memcached";

    SECTION("the server is 1.2.8 built with threads, and it serves") {
        std::string help = run(quoted(memcached) + " -h").output;
        INFO(help);
        CHECK(help.find("memcached 1.2.8") != std::string::npos);
        CHECK(help.find("-t <num>") != std::string::npos); // only with --enable-threads
        CommandResult smoke = run("perl " + quoted(repo / "tests/upstream/smoke.pl") + " " + quoted(memcached));
        INFO(smoke.output);
        CHECK(smoke.status == 0);
    }
    SECTION("the unit is the project's hardened one, starting that server on loopback without UDP") {
        fs::path unit = fs::exists(root.path / "lib/systemd/system" / (package + ".service"))
                            ? root.path / "lib/systemd/system" / (package + ".service")
                            : root.path / "usr/lib/systemd/system" / (package + ".service");
        std::string text = read_file(unit);
        CHECK(text == read_file(repo / "dist/systemd/memcached.service"));
        CHECK(text.find("exec /usr/bin/memcached ") != std::string::npos);
        CHECK(text.find("UDPPORT=0 LISTENON=127.0.0.1") != std::string::npos);
        CHECK(text.find("DynamicUser=yes") != std::string::npos);
        CHECK(text.find("WantedBy=multi-user.target") != std::string::npos);
    }
}
