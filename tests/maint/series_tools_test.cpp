// The maintainer's rebase tools: series-import turns patches/ into a git
// branch, series-export writes it back, series-rebase moves it onto another
// upstream release. These tests work on copies in temporary directories and
// never touch the repository's patches/; they hold for any series.
#include "maint/maint.hpp"
#include "support/skip.hpp"

#include <map>
#include <optional>
#include <set>

using namespace maint;

namespace {

// One place where a patch changes a file that no earlier patch touches: a
// line of upstream that the patch removes, or the context line right before
// its first added line. Changing that line upstream makes this patch, and no
// earlier one, conflict.
struct Target {
    std::string patch;
    std::string file;
    size_t line;         // 1-based, in the upstream file
    std::string content; // the line as upstream has it
};

// The file names a patch changes, and the first hunk of each: (old start, hunk lines).
struct PatchFiles {
    std::vector<std::string> files;
    std::map<std::string, std::pair<size_t, std::vector<std::string>>> first_hunk;
};

PatchFiles files_of(const fs::path &patch)
{
    PatchFiles result;
    std::string current;
    bool in_first_hunk = false;
    for (const std::string &line : lines_of(read_file(patch))) {
        if (line.rfind("+++ ", 0) == 0) {
            std::string name = line.substr(4);
            name = name.substr(0, name.find('\t'));
            current = name.rfind("b/", 0) == 0 ? name.substr(2) : name;
            result.files.push_back(current);
            in_first_hunk = false;
        } else if (line.rfind("@@ -", 0) == 0 && !current.empty()) {
            in_first_hunk = result.first_hunk.count(current) == 0;
            if (in_first_hunk)
                result.first_hunk[current] = {std::stoul(line.substr(4)), {}};
        } else if (in_first_hunk && !line.empty() && (line[0] == ' ' || line[0] == '-' || line[0] == '+')) {
            result.first_hunk[current].second.push_back(line);
        } else if (line.rfind("--- ", 0) == 0) {
            in_first_hunk = false;
        }
    }
    return result;
}

// Picks the patch to make conflict: among patches that are the first to touch
// a file of upstream, the last one that is not the last patch (so that both
// earlier and later patches exist around it when the series allows).
std::optional<Target> pick_target(const fs::path &patches)
{
    std::vector<Target> candidates;
    std::set<std::string> touched;
    for (const std::string &name : series_names(patches / "series")) {
        PatchFiles pf = files_of(patches / name);
        for (const std::string &file : pf.files) {
            if (touched.count(file) || !pf.first_hunk.count(file))
                continue;
            auto [start, hunk] = pf.first_hunk[file];
            if (start == 0)
                continue; // a new file: upstream has no line to change
            size_t old_line = start;
            std::optional<Target> found;
            for (size_t i = 0; i < hunk.size() && !found; i++) {
                const std::string &l = hunk[i];
                if (l[0] == '-')
                    found = Target{name, file, old_line, l.substr(1)};
                else if (l[0] == '+' && i > 0 && hunk[i - 1][0] == ' ')
                    found = Target{name, file, old_line - 1, hunk[i - 1].substr(1)};
                if (l[0] != '+')
                    old_line++;
            }
            if (found)
                candidates.push_back(*found);
        }
        for (const std::string &file : pf.files)
            touched.insert(file);
    }
    if (candidates.empty())
        return std::nullopt;
    std::string last_patch = series_names(patches / "series").back();
    for (auto it = candidates.rbegin(); it != candidates.rend(); ++it)
        if (it->patch != last_patch)
            return *it;
    return candidates.back();
}

// The part of a patch before its diff, as quilt cuts it.
std::string header_of(const std::string &patch)
{
    std::string header;
    for (const std::string &line : lines_of(patch)) {
        if (line.rfind("--- ", 0) == 0 || line.rfind("*** ", 0) == 0 || line.rfind("Index: ", 0) == 0 ||
            line.rfind("diff -", 0) == 0)
            break;
        header += line + "\n";
    }
    return header;
}

// A copy of patches/ and a scratch repository made from it by series-import.
struct Imported {
    TempDir tmp;
    fs::path patches = tmp.path / "patches";
    fs::path git = tmp.path / "series-git";
    std::vector<std::string> names;

    Imported()
    {
        fixture::require_tool("git", "git");
        fs::copy(repo / "patches", patches, fs::copy_options::recursive);
        names = series_names(patches / "series");
        CommandResult imported = run(script("series-import") + " -d " + quoted(git) + " -p " +
                                     quoted(patches) + " " + quoted(upstream_archive()));
        INFO(imported.output);
        REQUIRE(imported.status == 0);
    }
    std::string git_cmd(const std::string &args) const { return "git -C " + quoted(git) + " " + args; }
    CommandResult export_to(const fs::path &out) const
    {
        return run(script("series-export") + " -d " + quoted(git) + " -o " + quoted(out));
    }
};

// Every file of `out` equals the same file of the repository's patches/, and
// nothing is missing or extra.
void require_same_series(const fs::path &out)
{
    std::set<std::string> expected{"series"}, got;
    for (const std::string &name : series_names(repo / "patches/series"))
        expected.insert(name);
    for (const auto &entry : fs::recursive_directory_iterator(out))
        if (entry.is_regular_file())
            got.insert(fs::relative(entry.path(), out).string());
    REQUIRE(got == expected);
    for (const std::string &name : expected) {
        INFO(name << " differs after export; diff -u " << (repo / "patches" / name) << " " << (out / name));
        CHECK(read_file(out / name) == read_file(repo / "patches" / name));
    }
}

} // namespace

TEST_CASE("exporting a freshly imported series gives back patches/ byte for byte", "[maint]")
{
    Imported series;

    SECTION("the branch is one upstream commit and one commit per patch, headed by its header") {
        CommandResult log = run(series.git_cmd("log --reverse --format=%H series"));
        REQUIRE(log.status == 0);
        std::vector<std::string> commits = lines_of(log.output);
        REQUIRE(commits.size() == series.names.size() + 1);
        CHECK(run(series.git_cmd("log -1 --format=%s " + commits[0])).output == "upstream memcached 1.2.8\n");
        for (size_t i = 0; i < series.names.size(); i++) {
            std::string message = run(series.git_cmd("cat-file commit " + commits[i + 1] + " | sed '1,/^$/d'")).output;
            std::string header = header_of(read_file(repo / "patches" / series.names[i]));
            CHECK(message == header + "\nGbp-Pq: Name " + series.names[i] + "\n");
        }
    }
    SECTION("into an empty directory") {
        fs::path out = series.tmp.path / "out";
        CommandResult exported = series.export_to(out);
        INFO(exported.output);
        REQUIRE(exported.status == 0);
        require_same_series(out);
    }
    SECTION("over the series it came from") {
        CommandResult exported = series.export_to(series.patches);
        INFO(exported.output);
        REQUIRE(exported.status == 0);
        require_same_series(series.patches);
    }
}

TEST_CASE("rebasing onto an upstream that changed a line one patch touches stops at exactly that patch", "[maint]")
{
    Imported series;
    std::optional<Target> target = pick_target(repo / "patches");
    REQUIRE(target);
    INFO("the test changes line " << target->line << " of " << target->file << ", which "
                                  << target->patch << " changes: " << target->content);

    // The "new upstream": the pinned one with that line changed, as a tarball.
    fs::path up = series.tmp.path / "up";
    fs::create_directories(up);
    REQUIRE(run("tar -xzf " + quoted(upstream_archive()) + " -C " + quoted(up)).status == 0);
    fs::rename(up / "memcached-1.2.8", up / "memcached-1.2.8-changed");
    fs::path file = up / "memcached-1.2.8-changed" / target->file;
    std::vector<std::string> lines = lines_of(read_file(file));
    REQUIRE(lines.size() >= target->line);
    REQUIRE(lines[target->line - 1] == target->content);
    lines[target->line - 1] += " changed-upstream";
    std::string text;
    for (const std::string &l : lines)
        text += l + "\n";
    write_file(file, text);
    fs::path tarball = series.tmp.path / "memcached-1.2.8-changed.tar.gz";
    REQUIRE(run("tar -C " + quoted(up) + " -czf " + quoted(tarball) + " memcached-1.2.8-changed").status == 0);

    std::string branch_before = run(series.git_cmd("rev-parse series")).output;
    CommandResult rebase = run(script("series-rebase") + " -d " + quoted(series.git) + " " + quoted(tarball));
    INFO(rebase.output);

    // It names that patch and that file, and no other patch as conflicting.
    CHECK(rebase.status == 1);
    CHECK(rebase.output.find("CONFLICT: " + target->patch + " does not apply to upstream memcached 1.2.8-changed; "
                             "conflicting files: " + target->file + "\n") != std::string::npos);
    for (const std::string &name : series.names)
        if (name != target->patch)
            CHECK(rebase.output.find("CONFLICT: " + name) == std::string::npos);
    CHECK(rebase.output.find("--continue") != std::string::npos);
    CHECK(rebase.output.find("--abort") != std::string::npos);

    // The scratch repository is stopped there, with only that file to resolve.
    CHECK(run(series.git_cmd("diff --name-only --diff-filter=U")).output == target->file + "\n");
    CHECK(run(series.git_cmd("rev-parse series")).output == branch_before);

    SECTION("export refuses while the rebase is stopped") {
        CommandResult exported = series.export_to(series.tmp.path / "out");
        CHECK(exported.status != 0);
        CHECK(exported.output.find("a rebase is stopped") != std::string::npos);
    }
    SECTION("once resolved, the series exports with the same headers and applies to the new upstream with fuzz 0") {
        REQUIRE(run(series.git_cmd("checkout --theirs -- " + maint::quoted(fs::path(target->file)))).status == 0);
        REQUIRE(run(series.git_cmd("add -- " + maint::quoted(fs::path(target->file)))).status == 0);
        CommandResult resumed = run(script("series-rebase") + " -d " + quoted(series.git) + " --continue");
        INFO(resumed.output);
        REQUIRE(resumed.status == 0);

        fs::path out = series.tmp.path / "out";
        CommandResult exported = series.export_to(out);
        INFO(exported.output);
        REQUIRE(exported.status == 0);
        REQUIRE(series_names(out / "series") == series.names);
        for (const std::string &name : series.names) {
            INFO(name);
            CHECK(header_of(read_file(out / name)) == header_of(read_file(repo / "patches" / name)));
            CommandResult applied = run("cd " + quoted(up / "memcached-1.2.8-changed") +
                                        " && patch -p1 -F0 -N -i " + quoted(out / name));
            INFO(applied.output);
            CHECK(applied.status == 0);
            CHECK(applied.output.find("offset") == std::string::npos);
            CHECK(applied.output.find("fuzz") == std::string::npos);
        }
        CHECK(read_file(out / target->patch).find("-" + target->content + " changed-upstream\n") != std::string::npos);
    }
    SECTION("--abort puts the branch back, and it still exports byte for byte") {
        CommandResult aborted = run(script("series-rebase") + " -d " + quoted(series.git) + " --abort");
        INFO(aborted.output);
        REQUIRE(aborted.status == 0);
        CHECK(run(series.git_cmd("rev-parse series")).output == branch_before);
        fs::path out = series.tmp.path / "out";
        REQUIRE(series.export_to(out).status == 0);
        require_same_series(out);
    }
}
