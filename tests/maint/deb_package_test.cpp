// The Debian packages: `make deb` lays out a 3.0 (quilt) source package from
// the pinned upstream archive and patches/, and builds the binary package
// from it. Built once (about half a minute, upstream's suite skipped with
// DEB_BUILD_OPTIONS=nocheck: make check runs it) in a temporary directory.
#include "maint/maint.hpp"
#include "support/skip.hpp"

#include <memory>
#include <regex>
#include <string>
#include <vector>

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

TEST_CASE("the binary package holds the patched threaded memcached, its man page, systemd units, settings and tools", "[maint]")
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
    SECTION("the unit is the project's hardened one, also named memcached.service, starting that server on loopback without UDP") {
        fs::path unit = fs::exists(root.path / "lib/systemd/system" / (package + ".service"))
                            ? root.path / "lib/systemd/system" / (package + ".service")
                            : root.path / "usr/lib/systemd/system" / (package + ".service");
        std::string text = read_file(unit);
        std::string dist = read_file(repo / "dist/systemd/memcached.service");
        // The project's unit, with Alias= after WantedBy=: enabling it makes
        // memcached.service a name of it, so `systemctl restart memcached` works.
        std::string wanted = "WantedBy=multi-user.target\n";
        CHECK(text == dist.replace(dist.find(wanted), wanted.size(), wanted + "Alias=memcached.service\n"));
        CHECK(text.find("ExecStart=/usr/libexec/memcached/memcached-cmdline exec /usr/bin/memcached\n") != std::string::npos);
        CHECK(text.find("DynamicUser=yes") != std::string::npos);
        CHECK(read_file(unit.parent_path() / "memcached@.service") == read_file(repo / "dist/systemd/memcached@.service"));
    }
    SECTION("the helper both units run, the settings and upstream's memcached-tool are where the units and Debian's memcached have them") {
        CHECK(read_file(root.path / "usr/libexec/memcached/memcached-cmdline") == read_file(repo / "dist/memcached-cmdline"));
        CHECK(run("test -x " + quoted(root.path / "usr/libexec/memcached/memcached-cmdline")).status == 0);
        CHECK(read_file(root.path / "etc/default/memcached") == read_file(repo / "dist/systemd/memcached.env"));
        CHECK(run("test -x " + quoted(root.path / "usr/share/memcached/scripts/memcached-tool")).status == 0);
        CHECK(read_file(root.path / "usr/share/memcached/scripts/memcached-tool").rfind("#!/usr/bin/perl", 0) == 0);
    }
    SECTION("the server links libcrypto for -K, built against libssl-dev, and the package depends on it through shlibs") {
        CHECK(read_file(repo / "debian/control").find("\nBuild-Depends: debhelper-compat (= 13), libevent-dev, libssl-dev\n") !=
              std::string::npos);
        std::string ldd = run("ldd " + quoted(memcached)).output;
        INFO(ldd);
        CHECK(ldd.find("libcrypto.so.3") != std::string::npos);
        // Debian 12 names it libssl3, later releases libssl3t64.
        std::string depends = run("dpkg-deb -f " + quoted(b.deb()) + " Depends").output;
        INFO(depends);
        CHECK(std::regex_search(depends, std::regex("(^|, )libssl3(t64)? \\(>= 3")));
    }
    SECTION("the settings file is a conffile: dpkg keeps an operator's changes") {
        TempDir control;
        REQUIRE(run("dpkg-deb -e " + quoted(b.deb()) + " " + quoted(control.path)).status == 0);
        CHECK(read_file(control.path / "conffiles") == "/etc/default/memcached\n");
    }
    SECTION("README.Debian and NEWS.Debian say that Debian's /etc/memcached.conf is not read") {
        fs::path doc = root.path / ("usr/share/doc/" + package);
        CHECK(read_file(doc / "README.Debian").find("/etc/memcached.conf, the settings file of Debian's own memcached package,\nis NOT read") != std::string::npos);
        CommandResult news = run("zcat " + quoted(doc / "NEWS.Debian.gz"));
        CHECK(news.output.find("/etc/memcached.conf, the settings file of Debian's memcached, is not read") != std::string::npos);
    }
}

TEST_CASE("the source package has a watch file, upstream metadata, an autopkgtest, current standards and no stale text", "[maint]")
{
    BuiltPackages &b = built();
    TempDir unpacked;
    REQUIRE(run("tar -xJf " + quoted(b.file(b.version + ".debian.tar.xz")) + " -C " + quoted(unpacked.path)).status == 0);
    fs::path debian = unpacked.path / "debian";
    CHECK(read_file(debian / "watch").find("refs/tags/(1\\.2\\.[\\d.]+)\\.tar\\.gz") != std::string::npos);
    CHECK(read_file(debian / "upstream/metadata").find("Repository: https://github.com/memcached/memcached.git\n") != std::string::npos);
    CHECK(read_file(debian / "tests/control").find("Tests: replication\n") != std::string::npos);
    CHECK(run("test -x " + quoted(debian / "tests/replication")).status == 0);
    std::string control = read_file(debian / "control");
    CHECK(control.find("\nStandards-Version: 4.7.0\n") != std::string::npos);
    for (const fs::path &file : {debian / "control", debian / "changelog"}) {
        std::string text = read_file(file);
        INFO(file.filename().string());
        CHECK(text.find("replication patches follow") == std::string::npos);
        CHECK(text.find("between two") == std::string::npos);
        CHECK(text.find("full mesh") != std::string::npos);
    }
}

TEST_CASE("lintian -I --pedantic finds nothing in the packages but the tags explained here", "[maint]")
{
    BuiltPackages &b = built();
    REQUIRE(run("command -v lintian").status == 0);
    std::string arch = run("dpkg-architecture -qDEB_HOST_ARCH").output;
    arch.pop_back();
    CommandResult lintian = run("lintian -I --pedantic " + quoted(b.file(b.version + "_" + arch + ".changes")) + " " +
                                quoted(b.file(b.version + ".dsc")) + " 2>&1");
    INFO(lintian.output);
    // Tags that stay, and why (overrides in debian/*.lintian-overrides
    // cover the others lintian would show):
    // - newer-standards-version: the package follows Policy 4.7.0; the
    //   lintian of Debian 12 knows 4.6.2 at most.
    const std::vector<std::string> explained = {"newer-standards-version"};
    std::vector<std::string> unexplained;
    for (const std::string &line : lines_of(lintian.output)) {
        if (line.size() < 3 || line[1] != ':' || std::string("EWIPXCO").find(line[0]) == std::string::npos)
            continue; // not a tag ("running with root privileges ...")
        bool known = false;
        for (const std::string &tag : explained)
            known = known || line.find(": " + tag + " ") != std::string::npos;
        if (!known)
            unexplained.push_back(line);
    }
    CHECK(unexplained.empty());
}

TEST_CASE("the source package takes only the one orig tarball upstream/debian-orig pins", "[maint]")
{
    // The tag archive compressed again: its tar stream is the pinned one, so
    // make builds from it, but as a file it is not the Debian orig tarball.
    TempDir tmp;
    fs::path archive = upstream_archive();
    fs::create_directories(tmp.path / "upstream");
    REQUIRE(run("gzip -dc " + quoted(archive) + " | gzip -1n >" + quoted(tmp.path / "upstream/memcached-1.2.8.tar.gz")).status == 0);
    CommandResult r = run("UPSTREAM_DIR=" + quoted(tmp.path / "upstream") + " OFFLINE=1 " + script("deb-package") +
                          " source " + quoted(tmp.path / "deb"));
    INFO(r.output);
    CHECK(r.status != 0);
    CHECK(r.output.find("is not the orig tarball the Debian package pins") != std::string::npos);
    CHECK_FALSE(fs::exists(tmp.path / "deb/memcached-repcached-ng_1.2.8.orig.tar.gz"));
}
