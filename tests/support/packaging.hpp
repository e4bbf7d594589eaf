// Where the packaging lives, and how the tests read the systemd unit.
#pragma once

#include "support/command.hpp"

#include <regex>
#include <string>

namespace fixture {

// The overlay's package directory.
inline std::filesystem::path package_dir() { return repo / "ebuild/net-misc/memcached"; }

// The sh script memcached.service's ExecStart runs: continuation lines
// joined, the sh -c quotes removed, and systemd's "$$" turned back into "$".
// "" if the unit has no ExecStart=/bin/sh -c '...'.
inline std::string exec_start_script(const std::string &unit)
{
    std::string joined = std::regex_replace(unit, std::regex("\\\\\n"), " ");
    std::smatch m;
    if (!std::regex_search(joined, m, std::regex("\nExecStart=/bin/sh -c '([^\n]*)'\n")))
        return "";
    return std::regex_replace(m[1].str(), std::regex("\\$\\$"), "$");
}

} // namespace fixture
