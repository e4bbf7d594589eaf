// Where the packaging lives, and how the tests read and verify the systemd
// units.
#pragma once

#include "support/command.hpp"

#include <fstream>
#include <regex>
#include <string>

namespace fixture {

// The overlay's package directory.
inline std::filesystem::path package_dir() { return repo / "ebuild/net-misc/memcached"; }

// The helper that builds memcached's command line for the units and the
// OpenRC script, and where they all expect it installed.
inline std::filesystem::path cmdline_helper() { return repo / "dist/memcached-cmdline"; }
const std::string installed_helper = "/usr/libexec/memcached/memcached-cmdline";

// The unit's ExecStart= value, "" if it has none.
inline std::string exec_start(const std::string &unit)
{
    std::smatch m;
    if (!std::regex_search(unit, m, std::regex("\nExecStart=([^\n]*)\n")))
        return "";
    return m[1].str();
}

// systemd-analyze verify of `unit_text`, saved as `name` in a scratch
// directory, with its helper at `helper` instead of where it was installed
// (verify requires ExecStart's program to exist); "" when it is clean.
inline std::string verify_unit(const std::string &unit_text, const std::string &name,
                               const std::filesystem::path &helper = cmdline_helper())
{
    ScratchDir dir("verify");
    std::string text = std::regex_replace(unit_text, std::regex("ExecStart=[^ \n]*/memcached-cmdline "),
                                          "ExecStart=" + helper.string() + " ");
    std::ofstream(dir / name) << text;
    // --man=no: the man page is not installed on a build machine. verify
    // reports unknown keys without failing, so any output is a failure.
    CommandResult r = run("systemd-analyze verify --man=no " + quoted(dir / name));
    return r.status == 0 ? r.output : "exit status " + std::to_string(r.status) + "\n" + r.output;
}

} // namespace fixture
