// Running shell commands and reading files from tests that exercise the
// build harness and the packaging (scripts, Makefile, ebuild, init files).
//
//   auto r = fixture::run("make -s -C " + fixture::quoted(fixture::repo) + " dist");
//   INFO(r.output);                  // stdout and stderr, interleaved
//   CHECK(r.status == 0);
#pragma once

#include <filesystem>
#include <map>
#include <string>

namespace fixture {

// The root of this repository.
extern const std::filesystem::path repo;

struct CommandResult {
    int status;          // exit status, or -1 if killed by a signal
    std::string output;  // stdout and stderr together
};

// Runs a command line with /bin/sh, capturing stdout and stderr together.
CommandResult run(const std::string &command);

// 'path', for a shell command line (paths here never contain quotes).
std::string quoted(const std::filesystem::path &p);

// The whole file as a string ("" if it cannot be read).
std::string slurp(const std::filesystem::path &path);

// NAME="value" lines of a settings file (conf.d, systemd EnvironmentFile),
// without comments; quotes removed.
std::map<std::string, std::string> settings(const std::string &text);

// A temporary directory, removed with everything in it when destroyed.
class ScratchDir {
public:
    explicit ScratchDir(const std::string &purpose);
    ~ScratchDir();
    ScratchDir(const ScratchDir &) = delete;
    ScratchDir &operator=(const ScratchDir &) = delete;
    const std::filesystem::path &path() const { return path_; }
    std::filesystem::path operator/(const std::string &name) const { return path_ / name; }

private:
    std::filesystem::path path_;
};

} // namespace fixture
