// The OpenRC script and the systemd units turn the same settings into the
// same memcached command line, through the one helper they share
// (dist/memcached-cmdline), and refuse what the server cannot do. The
// scripts run under sh with stand-ins: openrc-run's helpers for the init
// script, and a memcached that only prints its arguments.
#include <catch2/catch.hpp>

#include "support/node.hpp"
#include "support/packaging.hpp"

#include <algorithm>
#include <arpa/inet.h>
#include <cstring>
#include <future>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <sys/stat.h>
#include <vector>

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
// checkconfig and memcached_args (with the helper of this tree), and reads
// its quoted words back the way openrc-run's eval does.
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
        << "cmdline_helper=" << quoted(fixture::cmdline_helper()) << "\n"
        << "if checkconfig; then echo 'checkconfig: accepted'; else echo 'checkconfig: refused'; fi\n"
           "command_args=$(memcached_args) || echo 'memcached_args: failed'\n"
           "eval \"set -- $command_args\"\n"
           "echo \"args: $*\"\n";
    CommandResult r = run("sh " + quoted(dir / "run.sh"));
    OpenRC result{r.output.find("checkconfig: accepted") != std::string::npos, "", r.output};
    std::smatch m;
    if (std::regex_search(r.output, m, std::regex("args: ([^\n]*)")))
        result.args = std::regex_replace(m[1].str(), std::regex(" +$"), "");
    return result;
}

// Runs the units' ExecStart= (the helper of this tree, on a memcached that
// prints its arguments) with the environment systemd would give it: the
// settings file, then `edits`.
std::string systemd_args(const std::map<std::string, std::string> &edits, const Servers &servers,
                         bool with_settings_file = true)
{
    std::map<std::string, std::string> env;
    if (with_settings_file)
        for (const auto &[name, value] : fixture::settings(fixture::slurp(envfile)))
            env[name] = value;
    for (const auto &[name, value] : edits)
        env[name] = value;
    std::string exec_start = fixture::exec_start(fixture::slurp(unit));
    REQUIRE(exec_start == fixture::installed_helper + " exec /usr/bin/memcached");
    std::string command = "env -i PATH=/usr/bin:/bin";
    for (const auto &[name, value] : env)
        command += " " + name + "='" + value + "'";
    CommandResult r = run(command + " " + quoted(fixture::cmdline_helper()) + " exec " + quoted(servers.echo_args));
    INFO(r.output);
    REQUIRE(r.status == 0);
    return std::regex_replace(r.output, std::regex(" *\n$"), "");
}

const std::string default_args = "-p 11211 -U 0 -m 64 -c 1024 -t 4 -l 127.0.0.1";

} // namespace

TEST_CASE("the OpenRC script starts memcached with the conf.d's settings and no replication options by default", "[packaging]")
{
    Servers servers;
    OpenRC rc = openrc("", servers.without_replication);
    INFO(rc.output);
    CHECK(rc.accepted);
    CHECK(rc.args == default_args);
}

TEST_CASE("with peers named, the OpenRC script passes one -x per peer and the other replication settings", "[packaging]")
{
    Servers servers;
    OpenRC rc = openrc("REPLICATION_PEERS=\"10.0.0.2 db3.example:11300\"\n"
                       "REPLICATION_QUEUE_MB=\"128\"\nREPLICATION_CLUSTER=\"prod-eu\"\nMISC_OPTS=\"-v\"",
                       servers.with_replication);
    INFO(rc.output);
    CHECK(rc.accepted);
    CHECK(rc.args == default_args +
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
        CHECK(rc.output.find("\"db1:\" is not host, host:port or host:port=port") != std::string::npos);
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

std::vector<std::string> directives(const std::string &text);

// A secret file of `mode` in `dir`, owned by whoever runs the tests.
fs::path secret_file(const ScratchDir &dir, mode_t mode, const std::string &name = "replication-secret")
{
    fs::path path = dir / name;
    std::ofstream(path) << "s3cret\n";
    chmod(path.c_str(), mode);
    return path;
}

// The user the tests run as, for MEMCACHED_RUNAS.
std::string me()
{
    std::string name = run("id -un").output;
    return name.substr(0, name.find('\n'));
}

TEST_CASE("a peer behind a tunnel, host:port=port, passes checkconfig and reaches -x as it is", "[packaging]")
{
    Servers servers;
    OpenRC rc = openrc("REPLICATION_PEERS=\"127.0.0.1:21212=11212 10.0.0.3\"", servers.with_replication);
    INFO(rc.output);
    CHECK(rc.accepted);
    CHECK(rc.args == default_args + " -x 127.0.0.1:21212=11212 -x 10.0.0.3 -X 11212 -Q 64");
    CHECK(systemd_args({{"REPLICATION_PEERS", "127.0.0.1:21212=11212 10.0.0.3"}}, servers) == rc.args);

    OpenRC bad = openrc("REPLICATION_PEERS=\"127.0.0.1:21212=\"", servers.with_replication);
    INFO(bad.output);
    CHECK_FALSE(bad.accepted);
    CHECK(bad.output.find("\"127.0.0.1:21212\" is not host, host:port or host:port=port") != std::string::npos);
}

TEST_CASE("with REPLICATION_SECRET_FILE and peers, both init systems pass -K; systemd's the credential it loaded", "[packaging]")
{
    Servers servers;
    ScratchDir dir("secret");
    fs::path secret = secret_file(dir, 0600);
    const std::string peers = "10.0.0.2";
    const std::string expected = default_args + " -x 10.0.0.2 -X 11212 -Q 64 -K ";

    SECTION("OpenRC and systemd without a credential: the file") {
        OpenRC rc = openrc("REPLICATION_PEERS=\"" + peers + "\"\nREPLICATION_SECRET_FILE=\"" + secret.string() +
                               "\"\nMEMCACHED_RUNAS=\"" + me() + "\"",
                           servers.with_replication);
        INFO(rc.output);
        CHECK(rc.accepted);
        CHECK(rc.args == expected + secret.string());
        CHECK(systemd_args({{"REPLICATION_PEERS", peers}, {"REPLICATION_SECRET_FILE", secret.string()}}, servers) ==
              rc.args);
    }
    SECTION("systemd with the credential of LoadCredential=: its copy, which its dynamic user can read") {
        ScratchDir credentials("credentials");
        secret_file(credentials, 0400);
        CHECK(systemd_args({{"REPLICATION_PEERS", peers},
                            {"REPLICATION_SECRET_FILE", secret.string()},
                            {"CREDENTIALS_DIRECTORY", credentials.path().string()}},
                           servers) == expected + (credentials / "replication-secret").string());
    }
    SECTION("systemd with credentials but not this one (no file in the store): the file, which memcached names if it cannot read it") {
        ScratchDir credentials("credentials");
        CHECK(systemd_args({{"REPLICATION_PEERS", peers},
                            {"REPLICATION_SECRET_FILE", secret.string()},
                            {"CREDENTIALS_DIRECTORY", credentials.path().string()}},
                           servers) == expected + secret.string());
    }
    SECTION("no -K without peers, nor without the setting") {
        CHECK(systemd_args({{"REPLICATION_SECRET_FILE", secret.string()}}, servers) == default_args);
        CHECK(systemd_args({{"REPLICATION_PEERS", peers}}, servers) == default_args + " -x 10.0.0.2 -X 11212 -Q 64");
    }
}

TEST_CASE("checkconfig refuses a secret file that is missing, that others may read, or that the service user cannot read",
          "[packaging]")
{
    Servers servers;
    ScratchDir dir("secret");
    auto check = [&](const fs::path &secret, const std::string &runas) {
        return openrc("REPLICATION_PEERS=\"10.0.0.2\"\nREPLICATION_SECRET_FILE=\"" + secret.string() +
                          "\"\nMEMCACHED_RUNAS=\"" + runas + "\"",
                      servers.with_replication);
    };
    SECTION("missing") {
        OpenRC rc = check(dir / "nonexistent", me());
        INFO(rc.output);
        CHECK_FALSE(rc.accepted);
        CHECK(rc.output.find("ERROR: REPLICATION_SECRET_FILE=\"" + (dir / "nonexistent").string() +
                             "\" (/etc/conf.d/memcached): no such file") != std::string::npos);
    }
    SECTION("readable by group or others") {
        for (mode_t mode : {0644, 0640, 0604}) {
            fs::path secret = secret_file(dir, mode, "loose");
            OpenRC rc = check(secret, me());
            INFO(rc.output);
            CHECK_FALSE(rc.accepted);
            CHECK(rc.output.find("group or others may") != std::string::npos);
            CHECK(rc.output.find("chmod 600 " + secret.string()) != std::string::npos);
        }
    }
    SECTION("owned by another user than the one memcached runs as") {
        REQUIRE(run("id -u nobody").status == 0);
        REQUIRE(me() != "nobody");
        fs::path secret = secret_file(dir, 0600);
        OpenRC rc = check(secret, "nobody");
        INFO(rc.output);
        CHECK_FALSE(rc.accepted);
        CHECK(rc.output.find("nobody, whom") != std::string::npos);
        CHECK(rc.output.find("memcached runs as, cannot read it: chown nobody " + secret.string()) != std::string::npos);
    }
    SECTION("not readable even by its owner") {
        fs::path secret = secret_file(dir, 0200);
        OpenRC rc = check(secret, "nobody");
        INFO(rc.output);
        CHECK_FALSE(rc.accepted);
        CHECK(rc.output.find("cannot read it") != std::string::npos);
    }
    SECTION("0600 and the service user's (or 0400): accepted") {
        for (mode_t mode : {0600, 0400}) {
            fs::path secret = secret_file(dir, mode, "good");
            OpenRC rc = check(secret, me());
            INFO(rc.output);
            CHECK(rc.accepted);
            CHECK(rc.output.find("ERROR") == std::string::npos);
        }
    }
}

TEST_CASE("both units hand the replication secret to their dynamic user as a credential, from systemd's store",
          "[packaging]")
{
    for (const char *name : {"memcached.service", "memcached@.service"}) {
        INFO(name);
        std::vector<std::string> lines = directives(fixture::slurp(repo / "dist/systemd" / name));
        // A name, not a path: systemd looks in /etc/credstore and the like,
        // and a missing file does not stop the unit.
        CHECK(std::count(lines.begin(), lines.end(), "LoadCredential=replication-secret:memcached-replication-secret") ==
              1);
        CHECK(std::count(lines.begin(), lines.end(), "DynamicUser=yes") == 1);
    }
    std::string env = fixture::slurp(envfile);
    CHECK(env.find("# REPLICATION_SECRET_FILE=\"/etc/credstore/memcached-replication-secret\"\n") != std::string::npos);
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
        CHECK(rc.args == args);
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
    SECTION("the systemd file has every setting of conf.d but the three OpenRC ones, with the same value") {
        for (const auto &[name, value] : confd_settings) {
            INFO(name);
            if (name == "MEMCACHED_RUNAS" || name == "MEMCACHED_BINARY" || name == "START_TIMEOUT") {
                CHECK(env_settings.count(name) == 0);
                continue;
            }
            REQUIRE(env_settings.count(name) == 1);
            CHECK(env_settings[name] == value);
        }
        CHECK(env_settings.size() == confd_settings.size() - 3);
    }
    SECTION("the helper's defaults, for settings a file leaves out, are the settings file's values") {
        Servers servers;
        CHECK(systemd_args({}, servers, false) == systemd_args({}, servers));
        CHECK(systemd_args({{"REPLICATION_PEERS", "10.0.0.2"}}, servers, false) ==
              systemd_args({{"REPLICATION_PEERS", "10.0.0.2"}}, servers));
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

TEST_CASE("the ebuild's files/ hold the units and the helper of dist/ unchanged", "[packaging]")
{
    for (const char *name : {"systemd/memcached.service", "systemd/memcached@.service", "memcached-cmdline"}) {
        fs::path dist = repo / "dist" / name;
        INFO("ebuild/net-misc/memcached/files/" << dist.filename().string() << " differs from dist/" << name
             << ": edit the one in dist/, then cp dist/" << name << " ebuild/net-misc/memcached/files/");
        CHECK(fixture::slurp(fixture::package_dir() / "files" / dist.filename()) == fixture::slurp(dist));
    }
}

// The lines of a unit that are not comments or blank.
std::vector<std::string> directives(const std::string &text)
{
    std::vector<std::string> lines;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);)
        if (!line.empty() && line[0] != '#')
            lines.push_back(line);
    return lines;
}

TEST_CASE("the unit is Type=notify for memcached itself, with time for a resync, runs the helper and has /run/memcached for a unix socket", "[packaging]")
{
    std::vector<std::string> lines = directives(fixture::slurp(unit));
    auto has = [&](const std::string &line) { return std::find(lines.begin(), lines.end(), line) != lines.end(); };
    // Started when memcached says READY=1, i.e. when it serves; only the
    // main PID (memcached, which the helper execs) may say it; and a node
    // resyncing a large data set is not killed for taking minutes.
    CHECK(has("Type=notify"));
    CHECK(has("NotifyAccess=main"));
    CHECK(has("TimeoutStartSec=30min"));
    CHECK(has("RuntimeDirectory=memcached"));
    CHECK(has("ExecStart=" + fixture::installed_helper + " exec /usr/bin/memcached"));

    SECTION("a socket under /run/memcached is passed on as is") {
        Servers servers;
        CHECK(systemd_args({{"MISC_OPTS", "-s /run/memcached/memcached.sock -a 0770"}}, servers) ==
              default_args + " -s /run/memcached/memcached.sock -a 0770");
    }
}

TEST_CASE("memcached@NAME.service is memcached.service with NAME's settings files and runtime directory", "[packaging]")
{
    std::vector<std::string> service = directives(fixture::slurp(unit));
    std::vector<std::string> instance = directives(fixture::slurp(repo / "dist/systemd/memcached@.service"));
    std::vector<std::string> instance_only;
    for (const std::string &line : instance)
        if (line.find("%i") != std::string::npos)
            instance_only.push_back(line);
    CHECK(instance_only == std::vector<std::string>{
                               "Description=memcached with repcached-ng replication (instance %i)",
                               "EnvironmentFile=-/etc/default/memcached.%i",
                               "EnvironmentFile=-/etc/conf.d/memcached.%i",
                               "RuntimeDirectory=memcached-%i",
                           });
    // Everything else is the service's, in the same order.
    instance.erase(std::remove_if(instance.begin(), instance.end(),
                                  [](const std::string &l) { return l.find("%i") != std::string::npos; }),
                   instance.end());
    service.erase(std::remove_if(service.begin(), service.end(),
                                 [](const std::string &l) {
                                     return l.rfind("Description=", 0) == 0 || l == "RuntimeDirectory=memcached";
                                 }),
                  service.end());
    CHECK(instance == service);
}

TEST_CASE("the OpenRC script and both units run the one helper, where the packages install it", "[packaging]")
{
    std::string text = fixture::slurp(initd);
    CHECK(text.find("\ncmdline_helper=\"" + fixture::installed_helper + "\"\n") != std::string::npos);
    for (const char *name : {"memcached.service", "memcached@.service"}) {
        INFO(name);
        CHECK(fixture::exec_start(fixture::slurp(repo / "dist/systemd" / name)) ==
              fixture::installed_helper + " exec /usr/bin/memcached");
    }
}

TEST_CASE("the OpenRC script runs memcached under supervise-daemon, as command_user, respawned, with -v's output in a log", "[packaging]")
{
    ScratchDir dir("openrc-vars");
    std::ofstream(dir / "vars.sh") << "RC_SVCNAME=memcached.cache2\n. " << quoted(confd) << "\n. " << quoted(initd) << "\n"
                                   << "echo \"supervisor=$supervisor command=$command command_user=$command_user\"\n"
                                      "echo \"pidfile=$pidfile output_log=$output_log error_log=$error_log\"\n"
                                      "echo \"respawn=$respawn_delay/$respawn_max/$respawn_period ssd=${start_stop_daemon_args:-}\"\n";
    CommandResult r = run("sh " + quoted(dir / "vars.sh"));
    INFO(r.output);
    REQUIRE(r.status == 0);
    CHECK(r.output.find("supervisor=supervise-daemon command=/usr/bin/memcached command_user=memcached\n") != std::string::npos);
    CHECK(r.output.find("pidfile=/run/memcached.cache2.pid output_log=/var/log/memcached/memcached.cache2.log "
                        "error_log=/var/log/memcached/memcached.cache2.log\n") != std::string::npos);
    CHECK(r.output.find("respawn=2/5/60 ssd=\n") != std::string::npos);

    SECTION("memcached stays in the foreground and is not asked to switch users itself") {
        Servers servers;
        OpenRC rc = openrc("MISC_OPTS=\"-v\"", servers.without_replication);
        INFO(rc.output);
        CHECK(rc.args == default_args + " -v");
    }
}

TEST_CASE("the helper execs memcached: the process systemd started is memcached, which alone may notify", "[packaging]")
{
    // A stand-in server that prints its own PID; sh prints the PID it
    // runs the helper in. One PID for both: no process in between.
    ScratchDir dir("exec");
    write_executable(dir / "print-pid", "#!/bin/sh\necho \"server $$\"\n");
    CommandResult r = run("sh -c 'echo \"started $$\"; exec \"$0\" exec \"$1\"' " +
                          quoted(fixture::cmdline_helper()) + " " + quoted(dir / "print-pid"));
    INFO(r.output);
    REQUIRE(r.status == 0);
    std::smatch m;
    REQUIRE(std::regex_search(r.output, m, std::regex("started ([0-9]+)\nserver ([0-9]+)\n")));
    CHECK(m[1].str() == m[2].str());
}

namespace {

// A socket memcached would have: bound at start, listening only once the
// node serves (a node with peers, after its first resync).
class ClientSocket {
public:
    // TCP on 127.0.0.1:port.
    explicit ClientSocket(uint16_t port)
    {
        fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int one = 1;
        setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_port = htons(port);
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (bind(fd_, reinterpret_cast<sockaddr *>(&addr), sizeof addr) != 0)
            throw std::runtime_error("bind port " + std::to_string(port) + ": " + strerror(errno));
    }
    // A unix socket at `path`.
    explicit ClientSocket(const fs::path &path)
    {
        fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
        if (bind(fd_, reinterpret_cast<sockaddr *>(&addr), sizeof addr) != 0)
            throw std::runtime_error("bind " + path.string() + ": " + strerror(errno));
    }
    ~ClientSocket() { close(fd_); }
    ClientSocket(const ClientSocket &) = delete;
    ClientSocket &operator=(const ClientSocket &) = delete;

    void listen() { ::listen(fd_, 16); }

private:
    int fd_;
};

// Sources conf.d, `edits` and the init script, as openrc-run would, and
// runs wait_until_serving, the start's last step; "einfo" lines also go to
// `dir`/waiting, so that a test can tell when the script waits.
CommandResult wait_until_serving(const ScratchDir &dir, const std::string &edits)
{
    std::ofstream(dir / "start.sh")
        << "eerror() { echo \"ERROR: $*\"; }\n"
           "einfo() { echo \"INFO: $*\"; echo \"$*\" >>" << quoted(dir / "waiting") << "; }\n"
           "RC_SVCNAME=memcached\n"
           ". " << quoted(confd) << "\n"
        << edits << "\n"
        << ". " << quoted(initd) << "\n"
        << "if wait_until_serving; then echo 'start: serving'; else echo 'start: failed'; fi\n";
    return run("sh " + quoted(dir / "start.sh"));
}

} // namespace

TEST_CASE("the OpenRC script's start returns once memcached listens for clients, not when it has only bound its port", "[packaging]")
{
    ScratchDir dir("openrc-start");
    uint16_t port = fixture::free_port();

    SECTION("a port that listens already") {
        ClientSocket memcached(port);
        memcached.listen();
        CommandResult r = wait_until_serving(dir, "PORT=\"" + std::to_string(port) + "\"");
        INFO(r.output);
        CHECK(r.output.find("start: serving") != std::string::npos);
    }
    SECTION("a port that is bound, then listens once the resync is done") {
        ClientSocket memcached(port);
        auto start = std::async(std::launch::async, [&] {
            return wait_until_serving(dir, "PORT=\"" + std::to_string(port) + "\"\nSTART_TIMEOUT=\"600\"");
        });
        REQUIRE(fixture::eventually([&] { return fs::exists(dir / "waiting"); }));
        CHECK(fixture::slurp(dir / "waiting").find("Waiting for memcached to serve on port " + std::to_string(port)) !=
              std::string::npos);
        memcached.listen();
        CommandResult r = start.get();
        INFO(r.output);
        CHECK(r.output.find("start: serving") != std::string::npos);
    }
    SECTION("a unix socket (-s) that exists but does not listen yet, then listens") {
        fs::path path = dir / "memcached.sock";
        ClientSocket memcached(path);
        std::string edits = "MISC_OPTS=\"-s " + path.string() + " -a 0700\"\nSTART_TIMEOUT=\"600\"";
        auto start = std::async(std::launch::async, [&] { return wait_until_serving(dir, edits); });
        REQUIRE(fixture::eventually([&] { return fs::exists(dir / "waiting"); }));
        CHECK(fixture::slurp(dir / "waiting").find("on " + path.string()) != std::string::npos);
        memcached.listen();
        CommandResult r = start.get();
        INFO(r.output);
        CHECK(r.output.find("start: serving") != std::string::npos);
    }
}

TEST_CASE("the OpenRC script's start fails after START_TIMEOUT, saying what it waited for and what to do", "[packaging]")
{
    ScratchDir dir("openrc-timeout");
    uint16_t port = fixture::free_port();
    ClientSocket memcached(port);
    CommandResult r = wait_until_serving(dir, "PORT=\"" + std::to_string(port) + "\"\nSTART_TIMEOUT=\"1\"");
    INFO(r.output);
    CHECK(r.output.find("start: failed") != std::string::npos);
    CHECK(r.output.find("ERROR: memcached does not accept connections on port " + std::to_string(port) + " after 1 s") !=
          std::string::npos);
    CHECK(r.output.find("raise START_TIMEOUT for a large data set") != std::string::npos);
}

TEST_CASE("the OpenRC script's start stops waiting when memcached has exited", "[packaging]")
{
    ScratchDir dir("openrc-exited");
    uint16_t port = fixture::free_port();
    // A PID that no process has: one of a child that has been reaped.
    CommandResult child = run("sh -c 'echo $$'");
    std::string pid = child.output.substr(0, child.output.find('\n'));
    CommandResult r = wait_until_serving(dir, "PORT=\"" + std::to_string(port) + "\"\nSTART_TIMEOUT=\"600\"\n"
                                              "service_get_value() { [ \"$1\" = child_pid ] && echo " + pid + "; }");
    INFO(r.output);
    CHECK(r.output.find("start: failed") != std::string::npos);
    CHECK(r.output.find("ERROR: memcached (PID " + pid + ") exited before it served clients") != std::string::npos);
}

TEST_CASE("an option with a quote in it reaches memcached as one word through OpenRC's eval", "[packaging]")
{
    Servers servers;
    OpenRC rc = openrc("REPLICATION_PEERS=\"db1\"\nMISC_OPTS=\"-s /run/it's.sock\"", servers.with_replication);
    INFO(rc.output);
    CHECK(rc.args == default_args + " -x db1 -X 11212 -Q 64 -s /run/it's.sock");
}

TEST_CASE("a peers file turns replication on with -Y, alone or with peers, through OpenRC and systemd alike", "[packaging]")
{
    Servers servers;
    ScratchDir dir("peers-file");
    std::string peers = (dir / "peers").string();
    std::ofstream(peers) << "10.0.0.3\n";
    SECTION("alone") {
        std::string args = systemd_args({{"REPLICATION_PEERS_FILE", peers}}, servers);
        CHECK(args == default_args + " -Y " + peers + " -X 11212 -Q 64");
        OpenRC rc = openrc("REPLICATION_PEERS_FILE=\"" + peers + "\"", servers.with_replication);
        INFO(rc.output);
        CHECK(rc.accepted);
        CHECK(rc.args == args);
    }
    SECTION("with peers") {
        std::string args = systemd_args({{"REPLICATION_PEERS", "10.0.0.2"}, {"REPLICATION_PEERS_FILE", peers}}, servers);
        CHECK(args == default_args + " -x 10.0.0.2 -Y " + peers + " -X 11212 -Q 64");
        OpenRC rc = openrc("REPLICATION_PEERS=\"10.0.0.2\"\nREPLICATION_PEERS_FILE=\"" + peers + "\"",
                           servers.with_replication);
        INFO(rc.output);
        CHECK(rc.args == args);
    }
    SECTION("checkconfig refuses a peers file that is not there, and one the server cannot use") {
        OpenRC rc = openrc("REPLICATION_PEERS_FILE=\"" + peers + ".missing\"", servers.with_replication);
        INFO(rc.output);
        CHECK_FALSE(rc.accepted);
        CHECK(rc.output.find("ERROR: REPLICATION_PEERS_FILE=\"" + peers + ".missing\" (/etc/conf.d/memcached) is not a file")
              != std::string::npos);
        OpenRC plain = openrc("REPLICATION_PEERS_FILE=\"" + peers + "\"", servers.without_replication);
        INFO(plain.output);
        CHECK_FALSE(plain.accepted);
        CHECK(plain.output.find("REPLICATION_PEERS_FILE=\"" + peers + "\" (/etc/conf.d/memcached) asks for replication")
              != std::string::npos);
    }
}

TEST_CASE("a reload of either service sends memcached SIGHUP, which re-reads its peers file", "[packaging]")
{
    for (const char *name : {"memcached.service", "memcached@.service"}) {
        INFO(name);
        std::vector<std::string> lines = directives(fixture::slurp(repo / "dist/systemd" / name));
        CHECK(std::count(lines.begin(), lines.end(), "ExecReload=/bin/kill -HUP $MAINPID") == 1);
    }
    // OpenRC: supervise-daemon passes the signal on to memcached.
    ScratchDir dir("openrc-reload");
    write_executable(dir / "supervise-daemon", "#!/bin/sh\necho \"supervise-daemon $*\"\n");
    std::ofstream(dir / "reload.sh") << "ebegin() { echo \"ebegin $*\"; }\n"
                                        "eend() { echo \"eend $*\"; }\n"
                                        "ewarn() { echo \"WARNING: $*\"; }\n"
                                        "PATH=" << quoted(dir.path()) << ":$PATH\n"
                                        "RC_SVCNAME=memcached.cache2\n. "
                                     << quoted(confd) << "\nREPLICATION_PEERS_FILE=/etc/memcached/peers\n. "
                                     << quoted(initd) << "\n"
                                     << "echo \"extra_started_commands=$extra_started_commands\"\n"
                                        "reload\n";
    CommandResult r = run("sh " + quoted(dir / "reload.sh"));
    INFO(r.output);
    REQUIRE(r.status == 0);
    CHECK(r.output.find("extra_started_commands=reload\n") != std::string::npos);
    CHECK(r.output.find("supervise-daemon memcached.cache2 --signal HUP --pidfile /run/memcached.cache2.pid\neend 0\n")
          != std::string::npos);
    CHECK(r.output.find("WARNING") == std::string::npos);
}
