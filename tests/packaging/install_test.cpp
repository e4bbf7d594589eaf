// make install and make install-systemd put the files where PREFIX and
// DESTDIR say, and never overwrite an operator's settings.
#include <catch2/catch.hpp>

#include "support/packaging.hpp"
#include "support/skip.hpp"

#include <fstream>
#include <string>
#include <sys/stat.h>

namespace fs = std::filesystem;
using fixture::quoted;
using fixture::repo;
using fixture::run;

namespace {

fixture::CommandResult make(const std::string &arguments)
{
    return run("make -s --no-print-directory -C " + quoted(repo) + " " + arguments);
}

bool executable(const fs::path &p)
{
    struct stat st;
    return stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111) == 0111;
}

} // namespace

TEST_CASE("make install puts the threaded server and its man page under DESTDIR and PREFIX", "[packaging]")
{
    fixture::ScratchDir destdir("install");
    fs::path bin = destdir / "opt/mc/bin/memcached";
    fs::path man = destdir / "opt/mc/share/man/man1/memcached.1";

    SECTION("by default, the threaded variant") {
        auto result = make("install DESTDIR=" + quoted(destdir.path()) + " PREFIX=/opt/mc");
        INFO(result.output);
        REQUIRE(result.status == 0);
        CHECK(executable(bin));
        CHECK(fixture::slurp(bin) == fixture::slurp(repo / "build/threads/memcached"));
        CHECK(fixture::slurp(man) == fixture::slurp(repo / "build/memcached-1.2.8/doc/memcached.1"));
        CHECK(run(quoted(bin) + " -h").output.find("-t <num>") != std::string::npos);
    }
    SECTION("INSTALL_VARIANT=single installs the single-threaded one") {
        auto result = make("install DESTDIR=" + quoted(destdir.path()) + " PREFIX=/opt/mc INSTALL_VARIANT=single");
        INFO(result.output);
        REQUIRE(result.status == 0);
        CHECK(fixture::slurp(bin) == fixture::slurp(repo / "build/single/memcached"));
    }
    SECTION("an unknown INSTALL_VARIANT stops make with the variants it knows") {
        auto result = make("install DESTDIR=" + quoted(destdir.path()) + " INSTALL_VARIANT=fast");
        INFO(result.output);
        CHECK(result.status != 0);
        CHECK(result.output.find("INSTALL_VARIANT=fast is not a variant we build; use one of: single threads") != std::string::npos);
        CHECK_FALSE(fs::exists(destdir / "usr"));
    }
    SECTION("make uninstall removes them again") {
        REQUIRE(make("install DESTDIR=" + quoted(destdir.path()) + " PREFIX=/opt/mc").status == 0);
        auto result = make("uninstall DESTDIR=" + quoted(destdir.path()) + " PREFIX=/opt/mc");
        INFO(result.output);
        CHECK(result.status == 0);
        CHECK_FALSE(fs::exists(bin));
        CHECK_FALSE(fs::exists(man));
    }
    SECTION("make uninstall also removes what install-systemd installed, but not the settings") {
        std::string args = "DESTDIR=" + quoted(destdir.path()) + " PREFIX=/opt/mc";
        REQUIRE(make("install install-systemd " + args).status == 0);
        auto result = make("uninstall " + args);
        INFO(result.output);
        CHECK(result.status == 0);
        CHECK_FALSE(fs::exists(destdir / "opt/mc/lib/systemd/system/memcached.service"));
        CHECK_FALSE(fs::exists(destdir / "opt/mc/lib/systemd/system/memcached@.service"));
        CHECK_FALSE(fs::exists(destdir / "opt/mc/libexec/memcached/memcached-cmdline"));
        CHECK(fs::exists(destdir / "etc/default/memcached"));
    }
}

TEST_CASE("make install-systemd points the units at PREFIX's server and helper and keeps an existing settings file", "[packaging]")
{
    fixture::ScratchDir destdir("install-systemd");
    fs::path unitdir = destdir / "opt/mc/lib/systemd/system";
    fs::path helper = destdir / "opt/mc/libexec/memcached/memcached-cmdline";
    fs::path envfile = destdir / "etc/default/memcached";

    auto result = make("install-systemd DESTDIR=" + quoted(destdir.path()) + " PREFIX=/opt/mc");
    INFO(result.output);
    REQUIRE(result.status == 0);
    CHECK(executable(helper));
    CHECK(fixture::slurp(helper) == fixture::slurp(fixture::cmdline_helper()));
    CHECK(fixture::slurp(envfile) == fixture::slurp(repo / "dist/systemd/memcached.env"));
    for (const char *name : {"memcached.service", "memcached@.service"}) {
        INFO(name);
        std::string text = fixture::slurp(unitdir / name);
        CHECK(fixture::exec_start(text) == "/opt/mc/libexec/memcached/memcached-cmdline exec /opt/mc/bin/memcached");
        CHECK(text.find("/usr/bin/memcached") == std::string::npos);
        CHECK(text.find("/usr/libexec") == std::string::npos);
    }

    std::ofstream(envfile) << "PORT=\"22122\"\n";
    auto again = make("install-systemd DESTDIR=" + quoted(destdir.path()) + " PREFIX=/opt/mc");
    INFO(again.output);
    CHECK(again.status == 0);
    CHECK(again.output.find("kept the existing") != std::string::npos);
    CHECK(fixture::slurp(envfile) == "PORT=\"22122\"\n");

    // Last, since only this needs a tool: the units, installed again just
    // now the same way, are ones systemd accepts.
    fixture::require_tool("systemd-analyze", "systemd");
    for (const char *name : {"memcached.service", "memcached@.service"}) {
        std::string verify = fixture::verify_unit(fixture::slurp(unitdir / name),
                                                  name == std::string("memcached.service") ? name : "memcached@a.service", helper);
        INFO(name << ": " << verify);
        CHECK(verify.empty());
    }
}
