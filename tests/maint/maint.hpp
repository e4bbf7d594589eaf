// Helpers for the maintainer-tool tests ([maint]): run a script, read a
// file, own a temporary directory, and read a quilt series.
#pragma once

#include <catch2/catch.hpp>

#include "support/command.hpp"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

namespace maint {

namespace fs = std::filesystem;

using fixture::CommandResult;
using fixture::quoted;
using fixture::repo;
using fixture::run;

inline std::string script(const std::string &name) { return quoted(repo / "scripts" / name); }

inline std::string read_file(const fs::path &p)
{
    std::ifstream in(p, std::ios::binary);
    REQUIRE(in);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline void write_file(const fs::path &p, const std::string &text)
{
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    REQUIRE(out);
    out << text;
}

inline std::vector<std::string> lines_of(const std::string &text)
{
    std::vector<std::string> lines;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);)
        lines.push_back(line);
    return lines;
}

// The patch names in a quilt series file (no comments, no blank lines).
inline std::vector<std::string> series_names(const fs::path &series)
{
    std::vector<std::string> names;
    for (const std::string &line : lines_of(read_file(series)))
        if (!line.empty() && line[0] != '#')
            names.push_back(line.substr(0, line.find_first_of(" \t")));
    return names;
}

// A temporary directory, removed with everything in it at the end of the test.
struct TempDir {
    fs::path path;
    TempDir()
    {
        char tmpl[] = "/tmp/repcached-maint-XXXXXX";
        REQUIRE(mkdtemp(tmpl) != nullptr);
        path = tmpl;
    }
    ~TempDir() { fs::remove_all(path); }
    TempDir(const TempDir &) = delete;
    TempDir &operator=(const TempDir &) = delete;
};

// The verified upstream archive, found the way make finds it.
inline fs::path upstream_archive()
{
    CommandResult found = run("(OFFLINE=1 " + script("fetch-upstream") + " 2>/dev/null)");
    INFO(found.output);
    REQUIRE(found.status == 0);
    std::string out = found.output;
    while (!out.empty() && out.back() == '\n')
        out.pop_back();
    REQUIRE(fs::exists(out));
    return out;
}

} // namespace maint
