// The OpenRC script and the systemd unit turn the same settings into the
// same memcached command line, and refuse what the server cannot do. The
// scripts run under sh with stand-ins: openrc-run's helpers for the init
// script, and a memcached that only prints its arguments.
#include <catch2/catch.hpp>

#include "support/packaging.hpp"

#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <sys/stat.h>

namespace fs = std::filesystem;
using fixture::CommandResult;
using fixture::quoted;
using fixture::repo;
using fixture::run;
using fixture::ScratchDir;

namespace {

const fs::path confd = fixture::package_dir() / "files/memcached.confd";
const fs::path initd = fixture::package_dir() / "files/memcached.initd";
const fs::path unit = repo / "dist/systemd/memcached.service";
const fs::path envfile = repo / "dist/systemd/memcached.env";

void write_executable(const fs::path &path, const std::string &text)
{
    {
        std::ofstream out(path);
        out << text;
    }
    chmod(path.c_str(), 0755);
}

// Stand-ins for the installed server: what `memcached -h` prints, with or
// without the replication options.
const std::string help_head = "memcached 1.2.8\n-p <num>      TCP port number to listen on (default: 11211)\n";
const std::string help_replication = "-x <host[:port]> replicate with this peer (may be repeated)\n-X <num>      replication port\n";

struct Servers {
    ScratchDir dir{"servers"};
    fs::path with_replication = dir / "with-replication";
    fs::path without_replication = dir / "without-replication";
    fs::path echo_args = dir / "echo-args";
    Servers()
    {
        write_executable(with_replication, "#!/bin/sh\ncat <<'EOF'\n" + help_head + help_replication + "EOF\n");
        write_executable(without_replication, "#!/bin/sh\ncat <<'EOF'\n" + help_head + "EOF\n");
        write_executable(echo_args, "#!/bin/sh\nprintf '%s\\n' \"$*\"\n");
    }
};

struct OpenRC {
    bool accepted;
    std::string args;    // what memcached_args prints
    std::string output;  // everything, for failure messages
};

// Sources the shipped conf.d, then `edits` (lines an operator would change),
// then the init script, as openrc-run would for /etc/init.d/memcached; runs
// checkconfig and memcached_args.
OpenRC openrc(const std::string &edits, const fs::path &server)
{
    ScratchDir dir("openrc");
    std::ofstream(dir / "run.sh")
        << "eerror() { echo \"ERROR: $*\"; }\n"
           "ewarn() { echo \"WARNING: $*\"; }\n"
           "einfo() { echo \"INFO: $*\"; }\n"
           "RC_SVCNAME=memcached\n"
           ". " << quoted(confd) << "\n"
        << edits << "\n"
        << "MEMCACHED_BINARY=" << quoted(server) << "\n"
        << ". " << quoted(initd) << "\n"
        << "if checkconfig; then echo 'checkconfig: accepted'; else echo 'checkconfig: refused'; fi\n"
           "echo \"args: $(memcached_args)\"\n";
    CommandResult r = run("sh " + quoted(dir / "run.sh"));
    OpenRC result{r.output.find("checkconfig: accepted") != std::string::npos, "", r.output};
    std::smatch m;
    if (std::regex_search(r.output, m, std::regex("args: ([^\n]*)")))
        result.args = std::regex_replace(m[1].str(), std::regex(" +$"), "");
    return result;
}

// The Environment= defaults of the unit, as NAME -> value.
std::map<std::string, std::string> unit_defaults()
{
    std::map<std::string, std::string> result;
    std::istringstream in(fixture::slurp(unit));
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("Environment=", 0) != 0)
            continue;
        std::istringstream words(line.substr(12));
        std::string word;
        while (words >> word)
            result[word.substr(0, word.find('='))] = word.substr(word.find('=') + 1);
    }
    return result;
}

// Runs the unit's ExecStart script with the environment systemd would give
// it (the unit's defaults, then the settings file, then `edits`) and a
// memcached that prints its arguments.
std::string systemd_args(const std::map<std::string, std::string> &edits, const Servers &servers)
{
    std::map<std::string, std::string> env = unit_defaults();
    for (const auto &[name, value] : fixture::settings(fixture::slurp(envfile)))
        env[name] = value;
    for (const auto &[name, value] : edits)
        env[name] = value;
    std::string script = std::regex_replace(fixture::exec_start_script(fixture::slurp(unit)),
                                            std::regex("/usr/bin/memcached"), servers.echo_args.string());
    ScratchDir dir("systemd");
    std::ofstream(dir / "exec-start.sh") << script << "\n";
    std::string command = "env -i PATH=/usr/bin:/bin";
    for (const auto &[name, value] : env)
        command += " " + name + "='" + value + "'";
    CommandResult r = run(command + " sh " + quoted(dir / "exec-start.sh"));
    INFO(r.output);
    REQUIRE(r.status == 0);
    return std::regex_replace(r.output, std::regex(" *\n$"), "");
}

const std::string default_args = "-p 11211 -U 0 -m 64 -c 1024 -t 4 -l 127.0.0.1";
const std::string openrc_prefix = "-d -P /run/memcached/memcached.pid -u memcached ";

} // namespace

TEST_CASE("the OpenRC script starts memcached with the conf.d's settings and no replication options by default", "[packaging]")
{
    Servers servers;
    OpenRC rc = openrc("", servers.without_replication);
    INFO(rc.output);
    CHECK(rc.accepted);
    CHECK(rc.args == openrc_prefix + default_args);
}

TEST_CASE("with peers named, the OpenRC script passes one -x per peer and the other replication settings", "[packaging]")
{
    Servers servers;
    OpenRC rc = openrc("REPLICATION_PEERS=\"10.0.0.2 db3.example:11300\"\n"
                       "REPLICATION_QUEUE_MB=\"128\"\nREPLICATION_CLUSTER=\"prod-eu\"\nMISC_OPTS=\"-v\"",
                       servers.with_replication);
    INFO(rc.output);
    CHECK(rc.accepted);
    CHECK(rc.args == openrc_prefix + default_args +
                         " -x 10.0.0.2 -x db3.example:11300 -X 11212 -Q 128 -Z prod-eu -v");
}

TEST_CASE("checkconfig refuses replication peers when the server was built without replication, and says what to do", "[packaging]")
{
    Servers servers;
    OpenRC rc = openrc("REPLICATION_PEERS=\"10.0.0.2\"", servers.without_replication);
    INFO(rc.output);
    CHECK_FALSE(rc.accepted);
    CHECK(rc.output.find("ERROR: REPLICATION_PEERS=\"10.0.0.2\" (/etc/conf.d/memcached) asks for replication") != std::string::npos);
    CHECK(rc.output.find("was built without it (its -h lists no -x option)") != std::string::npos);
    CHECK(rc.output.find("USE=replication") != std::string::npos);
    CHECK(rc.output.find("or empty REPLICATION_PEERS") != std::string::npos);
}

TEST_CASE("checkconfig refuses settings memcached would misread, naming each one", "[packaging]")
{
    Servers servers;
    SECTION("a port that is not a number") {
        OpenRC rc = openrc("PORT=\"11211x\"", servers.without_replication);
        INFO(rc.output);
        CHECK_FALSE(rc.accepted);
        CHECK(rc.output.find("ERROR: PORT=\"11211x\" (/etc/conf.d/memcached): expected a whole number") != std::string::npos);
    }
    SECTION("a peer with an empty port, and a cluster name with a space") {
        OpenRC rc = openrc("REPLICATION_PEERS=\"db1:\"\nREPLICATION_CLUSTER=\"prod eu\"", servers.with_replication);
        INFO(rc.output);
        CHECK_FALSE(rc.accepted);
        CHECK(rc.output.find("\"db1:\" is not host or host:port") != std::string::npos);
        CHECK(rc.output.find("REPLICATION_CLUSTER=\"prod eu\"") != std::string::npos);
    }
    SECTION("no listen address is allowed, with a warning") {
        OpenRC rc = openrc("LISTENON=\"\"", servers.without_replication);
        INFO(rc.output);
        CHECK(rc.accepted);
        CHECK(rc.output.find("WARNING: LISTENON is empty") != std::string::npos);
        CHECK(rc.args.find(" -l") == std::string::npos);
    }
}

TEST_CASE("the systemd unit builds the command line the OpenRC script builds from the same settings", "[packaging]")
{
    Servers servers;
    SECTION("the shipped settings") {
        CHECK(systemd_args({}, servers) == default_args);
    }
    SECTION("three peers, a cluster name and extra options") {
        std::string edits = "REPLICATION_PEERS=\"10.0.0.2 10.0.0.3 db3.example:11300\"\n"
                            "REPLICATION_CLUSTER=\"prod\"\nLISTENON=\"\"\nMISC_OPTS=\"-v -M\"";
        std::string args = systemd_args({{"REPLICATION_PEERS", "10.0.0.2 10.0.0.3 db3.example:11300"},
                                          {"REPLICATION_CLUSTER", "prod"},
                                          {"LISTENON", ""},
                                          {"MISC_OPTS", "-v -M"}},
                                         servers);
        CHECK(args == "-p 11211 -U 0 -m 64 -c 1024 -t 4 -x 10.0.0.2 -x 10.0.0.3 -x db3.example:11300 "
                      "-X 11212 -Q 64 -Z prod -v -M");
        OpenRC rc = openrc(edits, servers.with_replication);
        INFO(rc.output);
        CHECK(rc.args == openrc_prefix + args);
    }
}

TEST_CASE("conf.d, the systemd settings file and the defaults in the unit and the init script agree", "[packaging]")
{
    std::string confd_text = fixture::slurp(confd);
    std::string env_text = fixture::slurp(envfile);
    auto confd_settings = fixture::settings(confd_text);
    auto env_settings = fixture::settings(env_text);
    REQUIRE(confd_settings.size() >= 12);

    SECTION("both files are plain NAME=\"value\" lines that systemd and sh read alike") {
        std::regex plain("(#.*|[A-Z_]+=\"[^\"$`\\\\]*\"|)");
        for (const std::string &text : {confd_text, env_text}) {
            std::istringstream in(text);
            std::string line;
            while (std::getline(in, line)) {
                INFO(line);
                CHECK(std::regex_match(line, plain));
            }
        }
    }
    SECTION("the systemd file has every setting of conf.d but the two OpenRC ones, with the same value") {
        for (const auto &[name, value] : confd_settings) {
            INFO(name);
            if (name == "MEMCACHED_RUNAS" || name == "MEMCACHED_BINARY") {
                CHECK(env_settings.count(name) == 0);
                continue;
            }
            REQUIRE(env_settings.count(name) == 1);
            CHECK(env_settings[name] == value);
        }
        CHECK(env_settings.size() == confd_settings.size() - 2);
    }
    SECTION("the unit's defaults are the settings file's values") {
        auto defaults = unit_defaults();
        CHECK(defaults.size() == env_settings.size());
        for (const auto &[name, value] : env_settings) {
            INFO(name);
            CHECK(defaults[name] == value);
        }
    }
    SECTION("the init script's defaults are conf.d's values") {
        std::string text = fixture::slurp(initd);
        std::regex fallback(": \"\\$\\{([A-Z_]+):=([^}]*)\\}\"");
        int found = 0;
        for (std::sregex_iterator it(text.begin(), text.end(), fallback), end; it != end; ++it, ++found) {
            INFO((*it)[1].str());
            CHECK(confd_settings[(*it)[1].str()] == (*it)[2].str());
        }
        CHECK(found >= 8);
    }
}

TEST_CASE("the ebuild installs the unit of dist/systemd unchanged", "[packaging]")
{
    INFO("ebuild/net-misc/memcached/files/memcached.service differs from dist/systemd/memcached.service: "
         "edit the one in dist/systemd, then cp dist/systemd/memcached.service ebuild/net-misc/memcached/files/");
    CHECK(fixture::slurp(fixture::package_dir() / "files/memcached.service") == fixture::slurp(unit));
}
