// PHP sessions on a replicated pair that fail over by themselves, with the
// real PHP clients: two web front-ends (`php -S`), each listing both nodes
// in session.save_path, configured by the example files in dist/php/, one
// test case per extension (php-memcached, pecl memcache). Tagged [node]:
// run once per variant.
//
// A browser clicks a page that counts its visits in the session, going
// from one front-end to the other at every click. In each round (a new
// browser, so a new session id: the id decides which node the session
// hashes to) one node is killed with kill -9 while the browser goes on
// clicking, then restarted empty while it still clicks: the counter must
// never go back. Each node is killed with a session read from it and with
// one read from the other node (for php-memcached, with the session's
// lock on either node: it matters, see docs/php-sessions.md). Node A
// holds a data set (200,000 items of 1 KiB) that a returning node's
// resync takes seconds to bring back (the figures are printed), so that
// many clicks fall while it resyncs.
//
// What it shows, and what it does not:
// - Before a kill, the test waits until both nodes hold the same session:
//   replication is asynchronous, and a write still in the dying node's
//   queue is lost with it (the counter goes back one); that is the price
//   of asynchronous replication, not what this tests.
// - Requests are sequential: one browser, one click at a time.
// - Every click that did not count one more is recorded (round, phase,
//   front-end, what the page said, what the nodes held) and printed at
//   the end, with the rounds, clicks, failovers and resync times:
//   docs/php-sessions.md quotes them. A counter that goes back, or a
//   session that does not count on to the end of its round, fails the
//   test; a request that fails (the extension could not read the session
//   and ran the page without one) is the extension's doing, and is
//   reported only.
// - PHP_SESSIONS_OVERRIDE="name=value ..." replaces settings of the
//   dist/php/ files, to measure what one changes.
#include <catch2/catch.hpp>

#include "support/command.hpp"
#include "support/pair.hpp"
#include "support/skip.hpp"

#include <arpa/inet.h>
#include <array>
#include <chrono>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <netinet/in.h>
#include <optional>
#include <random>
#include <sstream>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

using namespace fixture;
using namespace std::chrono_literals;

namespace {

const std::string session_prefix = "memc_sess_";

// One more visit in the session, printed after the session id.
const char counter_page[] = R"(<?php
session_start();
$_SESSION['visits'] = ($_SESSION['visits'] ?? 0) + 1;
header('Content-Type: text/plain');
echo session_id(), ' ', $_SESSION['visits'], "\n";
)";

// The settings of an example file in dist/php/, as `-d name=value`
// options, with session.save_path replaced by `save_path`.
std::vector<std::string> php_options(const std::string &example, const std::string &save_path)
{
    std::istringstream in(slurp(repo / "dist" / "php" / example));
    if (in.str().empty())
        throw std::runtime_error("dist/php/" + example + ": missing or empty");
    std::vector<std::string> options;
    std::string line;
    bool has_save_path = false;
    while (std::getline(in, line)) {
        auto eq = line.find('=');
        if (line.empty() || line[0] == ';' || eq == std::string::npos)
            continue;
        auto trim = [](std::string s) {
            s.erase(0, s.find_first_not_of(" \t\""));
            s.erase(s.find_last_not_of(" \t\"") + 1);
            return s;
        };
        std::string name = trim(line.substr(0, eq)), value = trim(line.substr(eq + 1));
        if (name == "session.save_path") {
            value = save_path;
            has_save_path = true;
        }
        options.push_back("-d");
        options.push_back(name + "=" + value);
    }
    if (!has_save_path)
        throw std::runtime_error("dist/php/" + example + ": no session.save_path");
    // Warnings go to the front-end's log, not into the page.
    for (const char *o : {"display_errors=0", "log_errors=1"}) {
        options.push_back("-d");
        options.push_back(o);
    }
    // PHP_SESSIONS_OVERRIDE="name=value name=value": settings that replace
    // the file's (a later -d wins), to measure what a setting of
    // docs/php-sessions.md changes. Not set by make check.
    if (const char *extra = getenv("PHP_SESSIONS_OVERRIDE")) {
        std::istringstream words(extra);
        for (std::string word; words >> word;) {
            options.push_back("-d");
            options.push_back(word);
        }
    }
    return options;
}

// One PHP extension, as dist/php/ configures it, with both nodes listed.
struct Extension {
    std::string name;   // the Debian package, php-<module>
    std::string module; // what `php -m` lists
    std::string ini;    // the example file in dist/php/
    std::string (*server)(const Node &node);
};

const Extension php_memcached{"php-memcached", "memcached", "memcached-sessions.ini",
                              [](const Node &n) { return "127.0.0.1:" + std::to_string(n.port()); }};
const Extension pecl_memcache{"php-memcache", "memcache", "memcache-sessions.ini",
                              [](const Node &n) { return "tcp://127.0.0.1:" + std::to_string(n.port()); }};

// A web front-end: PHP's built-in server on a free loopback port, serving
// `docroot` with `options`; killed by PID when destroyed.
class WebFrontEnd {
public:
    WebFrontEnd(std::string name, const std::filesystem::path &docroot, std::vector<std::string> options)
        : name_(std::move(name)), port_(free_port()), log_(docroot.parent_path() / (name_ + ".log"))
    {
        std::vector<std::string> argv = {"php", "-S", "127.0.0.1:" + std::to_string(port_), "-t", docroot};
        argv.insert(argv.end(), options.begin(), options.end());
        std::vector<char *> cargv;
        for (auto &a : argv)
            cargv.push_back(a.data());
        cargv.push_back(nullptr);
        int log_fd = open(log_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (log_fd < 0)
            throw std::runtime_error("open " + log_.string() + ": " + strerror(errno));
        pid_ = fork();
        if (pid_ == 0) {
            int null_fd = open("/dev/null", O_RDONLY);
            dup2(null_fd, 0);
            dup2(log_fd, 1);
            dup2(log_fd, 2);
            execvp(cargv[0], cargv.data());
            dprintf(2, "exec php: %s\n", strerror(errno));
            _exit(127);
        }
        close(log_fd);
        if (pid_ < 0)
            throw std::runtime_error(std::string("fork: ") + strerror(errno));
        if (!eventually([&] { return listening() || exited(); }, 10s) || exited())
            throw std::runtime_error(name_ + " (php -S) did not start; its output:\n" + log());
    }
    ~WebFrontEnd()
    {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            waitpid(pid_, nullptr, 0);
        }
    }
    WebFrontEnd(const WebFrontEnd &) = delete;
    WebFrontEnd &operator=(const WebFrontEnd &) = delete;

    const std::string &name() const { return name_; }
    uint16_t port() const { return port_; }
    std::string log() const { return slurp(log_); }

private:
    bool listening() const
    {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_port = htons(port_);
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        bool ok = connect(fd, reinterpret_cast<sockaddr *>(&addr), sizeof addr) == 0;
        close(fd);
        return ok;
    }
    bool exited()
    {
        if (pid_ > 0 && waitpid(pid_, nullptr, WNOHANG) == pid_)
            pid_ = -1;
        return pid_ < 0;
    }

    std::string name_;
    uint16_t port_;
    std::filesystem::path log_;
    pid_t pid_ = -1;
};

// What the counter page answered.
struct Visit {
    int status = 0;
    std::string session_id;
    int visits = 0;
    std::string response; // the whole HTTP response, for failure messages
};

// A browser with one cookie jar: PHP's session cookie.
class Browser {
public:
    Visit visit(const WebFrontEnd &web)
    {
        std::string request = "GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n";
        if (!session_id_.empty())
            request += "Cookie: PHPSESSID=" + session_id_ + "\r\n";
        request += "\r\n";

        Visit v;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_port = htons(web.port());
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        timeval tv{10, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        if (connect(fd, reinterpret_cast<sockaddr *>(&addr), sizeof addr) == 0 &&
            send(fd, request.data(), request.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(request.size())) {
            char buf[4096];
            ssize_t n;
            while ((n = recv(fd, buf, sizeof buf, 0)) > 0)
                v.response.append(buf, n);
        }
        close(fd);

        // "HTTP/1.1 200 OK" ... "\r\n\r\n" "<session id> <visits>\n"
        std::istringstream status_line(v.response);
        std::string version;
        status_line >> version >> v.status;
        auto cookie = v.response.find("Set-Cookie: PHPSESSID=");
        if (cookie != std::string::npos) {
            auto start = cookie + std::strlen("Set-Cookie: PHPSESSID=");
            session_id_ = v.response.substr(start, v.response.find_first_of(";\r", start) - start);
        }
        auto body = v.response.find("\r\n\r\n");
        if (body != std::string::npos)
            std::istringstream(v.response.substr(body + 4)) >> v.session_id >> v.visits;
        return v;
    }
    const std::string &session_id() const { return session_id_; }
    // A session id of the browser's choosing, as a cookie it already has
    // (PHP takes it: session.use_strict_mode is off by default).
    void use_session_id(std::string id) { session_id_ = std::move(id); }

private:
    std::string session_id_;
};


// Every click, and those that did not count one more.
struct Tally {
    int rounds = 0, clicks = 0, failovers = 0, clicks_while_resyncing = 0;
    // Clicks that failed (no page, or a page without the session), and
    // clicks whose counter went back, while the node was down (`kill`) and
    // while it restarted and after (`restart`).
    int failed_kill = 0, back_kill = 0, failed_restart = 0, back_restart = 0;
    std::vector<std::string> at_kill, at_restart; // those clicks, readable
    std::vector<std::string> lost;                // rounds whose session did not count on
    std::vector<std::string> figures;             // resync times
};

uint64_t stat(const Node &node, const std::string &name) { return std::stoull(Client(node).stats()[name]); }

// Where a round's session lives: the node the front-ends read it from,
// and, for php-memcached, the node its lock key hashes to (pecl memcache
// writes its lock to both nodes: `lock` is then not chosen).
struct Placement {
    bool session_on_victim;
    std::optional<bool> lock_on_victim;
};

// One round: a new session counts on both front-ends, `victim` is killed
// with kill -9 while the browser clicks, then restarted empty while it
// still clicks. `survivor` is the other node. The session is one that the
// front-ends read from the victim or from the survivor, as `placement`
// asks: the browser tries session ids until the first click of one reads
// from that node (the one whose cmd_get grew; a replicated write is no
// get) and, if asked, takes its lock there (php-memcached's first click
// stores two keys, its lock with `add` and the session with `set`: two
// sets on one node, or one on each).
void round(Tally &tally, Pair &pair, Node &victim, Node &survivor, const std::string &victim_name,
           Placement placement, std::array<WebFrontEnd *, 2> webs, const std::vector<std::string> &data_keys)
{
    static std::mt19937_64 random{std::random_device{}()};
    Browser browser;
    int highest = 0, click_no = 0;
    const int round_no = ++tally.rounds;
    const std::string other_name = victim_name == "A" ? "B" : "A";
    std::string home = placement.session_on_victim ? victim_name : other_name;
    if (placement.lock_on_victim)
        home += ", its lock on " + (*placement.lock_on_victim ? victim_name : other_name);
    for (int tries = 0;; tries++) {
        REQUIRE(tries < 64);
        browser = Browser();
        std::string id;
        for (int i = 0; i < 26; i++)
            id += "abcdefghijklmnopqrstuvwxyz0123456789"[random() % 36];
        browser.use_session_id(id);
        uint64_t victim_gets = stat(victim, "cmd_get"), survivor_gets = stat(survivor, "cmd_get");
        uint64_t victim_sets = stat(victim, "cmd_set");
        Visit v = browser.visit(*webs[0]);
        REQUIRE(v.visits == 1);
        bool on_victim = stat(victim, "cmd_get") > victim_gets, on_survivor = stat(survivor, "cmd_get") > survivor_gets;
        REQUIRE(on_victim != on_survivor);
        uint64_t sets_on_victim = stat(victim, "cmd_set") - victim_sets;
        bool lock_on_victim = sets_on_victim > (on_victim ? 1u : 0u);
        if (on_victim == placement.session_on_victim &&
            (!placement.lock_on_victim || lock_on_victim == *placement.lock_on_victim))
            break;
    }
    highest = 1;
    click_no = 1;
    tally.clicks++;
    // One click, on the front-ends in turn: the page must count one more
    // visit in the same session. What did not is recorded in `wrong`.
    bool last_counted = true;
    auto click = [&](const std::string &phase, bool at_kill) {
        std::vector<std::string> &wrong = at_kill ? tally.at_kill : tally.at_restart;
        WebFrontEnd &web = *webs[click_no++ % 2];
        const size_t recorded = wrong.size();
        Visit v = browser.visit(web);
        tally.clicks++;
        std::ostringstream what;
        what << "round " << round_no << " (session read from " << home << ", " << victim_name << " " << phase
             << "), click " << click_no
             << " through " << web.name() << ": ";
        if (v.status != 200 || v.visits == 0 || v.session_id != browser.session_id()) {
            what << "request failed (HTTP " << v.status << ", page '" << v.session_id << " " << v.visits << "')";
            wrong.push_back(what.str());
            (at_kill ? tally.failed_kill : tally.failed_restart)++;
        } else if (v.visits != highest + 1) {
            what << "counter " << v.visits << " after " << highest
                 << (v.visits <= highest ? " (went back)" : " (skipped)");
            wrong.push_back(what.str());
            if (v.visits <= highest)
                (at_kill ? tally.back_kill : tally.back_restart)++;
        }
        last_counted = wrong.size() == recorded;
        if (wrong.size() > recorded) {
            // What the nodes hold now, to tell a node's miss from the
            // client's own failure.
            std::string key = session_prefix + browser.session_id();
            for (Node *node : {&victim, &survivor}) {
                wrong.back() += node == &victim ? "; " + victim_name + " " : ", the other ";
                if (!node->accepts_connections()) {
                    wrong.back() += "refuses connections";
                    continue;
                }
                auto item = Client(*node).get(key);
                wrong.back() += item ? "holds '" + item->value + "'" : "holds nothing";
            }
        }
        highest = std::max(highest, v.visits);
        return v;
    };
    auto session_keys = [&] {
        // The session and both extensions' lock keys.
        const std::string &id = browser.session_id();
        return std::vector<std::string>{session_prefix + id, session_prefix + "lock." + id,
                                        session_prefix + id + ".lock"};
    };

    for (int i = 0; i < 3; i++)
        click("up", false);
    // The last write has reached both nodes: only the crash is tested.
    REQUIRE(pair.converge(session_keys(), 10s) == "");

    victim.kill9();
    tally.failovers++;
    for (int i = 0; i < 6; i++)
        click("killed", true);

    // Restarted empty: it resyncs from the survivor, and the browser
    // clicks all along, through the front-ends that list it.
    auto restarted = std::chrono::steady_clock::now();
    victim.restart(Node::Wait::nothing);
    std::optional<std::chrono::steady_clock::time_point> serving;
    int after = 0;
    auto deadline = restarted + 60s;
    while (after < 6 && std::chrono::steady_clock::now() < deadline) {
        bool was_serving = serving.has_value();
        // A user's pace, not a synchronisation: some tens of clicks per
        // second of resync are enough, and leave the CPUs to the nodes.
        std::this_thread::sleep_for(20ms);
        click(was_serving ? "back" : "restarting", false);
        if (!was_serving) {
            tally.clicks_while_resyncing++;
            if (victim.accepts_connections())
                serving = std::chrono::steady_clock::now();
        } else {
            after++;
        }
    }
    REQUIRE(serving);
    if (!last_counted)
        tally.lost.push_back("round " + std::to_string(round_no) + ": the last click did not count one more");
    INFO("round " << round_no << ": " << peer_states(victim));
    REQUIRE(wait_online(victim));
    REQUIRE(wait_online(survivor));
    // The survivor's walk is the resync the victim waited for.
    std::ostringstream fig;
    fig << "round " << round_no << " (session read from " << home << "): " << victim_name << " served "
        << std::chrono::duration_cast<std::chrono::milliseconds>(*serving - restarted).count()
        << " ms after its restart (" << replication_stats(victim)["ready_because"] << "; the walk took "
        << std::stoull(replication_stats(survivor)["peer0:last_resync_usec"]) / 1000 << " ms)";
    tally.figures.push_back(fig.str());
    // The data set came back whole.
    CHECK(std::stoull(Client(victim).stats()["curr_items"]) >= data_keys.size());
    CHECK(census(victim, {data_keys.front(), data_keys.back()}).size() == 2);
    CHECK(pair.converge(session_keys(), 10s) == "");
}

void failover_rounds(const Extension &extension)
{
    require_tool("php", "php-cli");
    const std::string modules = run("php -m").output;
    if (modules.find("\n" + extension.module + "\n") == std::string::npos)
        skip_test("PHP's " + extension.module + " extension is not installed (Debian package " + extension.name +
                  "; scripts/build-deps check installs it)");

    Pair pair({"-m", "512"});
    REQUIRE(wait_online(pair.a));
    REQUIRE(wait_online(pair.b));
    // A data set whose resync takes a while: a returning node refuses
    // clients for all that time.
    const size_t items = 200000;
    auto data_keys = fill(pair.a, "data:", items, 1024);
    REQUIRE(eventually([&] { return Client(pair.b).stats()["curr_items"] == std::to_string(items); }, 60s));

    ScratchDir scratch("php-sessions");
    std::filesystem::create_directory(scratch / "docroot");
    std::ofstream(scratch / "docroot" / "index.php") << counter_page;
    // Both front-ends list both nodes, as dist/php/ shows.
    const std::string both = extension.server(pair.a) + "," + extension.server(pair.b);
    WebFrontEnd web1("web1", scratch / "docroot", php_options(extension.ini, both));
    WebFrontEnd web2("web2", scratch / "docroot", php_options(extension.ini, both));

    Tally tally;
    // Each node is killed with a session read from it, and with one read
    // from the other node; for php-memcached, with the session's lock on
    // the node killed and on the other one.
    std::vector<Placement> placements = {{true, std::nullopt}, {false, std::nullopt}};
    if (extension.module == "memcached")
        placements = {{true, true}, {true, false}, {false, std::nullopt}};
    for (const Placement &placement : placements) {
        round(tally, pair, pair.a, pair.b, "A", placement, {&web1, &web2}, data_keys);
        round(tally, pair, pair.b, pair.a, "B", placement, {&web1, &web2}, data_keys);
    }

    std::ostringstream report;
    if (const char *extra = getenv("PHP_SESSIONS_OVERRIDE"))
        report << "with PHP_SESSIONS_OVERRIDE=\"" << extra << "\": ";
    report << extension.name << ": " << tally.rounds << " rounds, " << tally.clicks << " clicks, "
           << tally.failovers << " failovers, " << tally.clicks_while_resyncing
           << " clicks while the killed node was restarting\n";
    for (const auto &f : tally.figures)
        report << "  " << f << "\n";
    report << "  while the node was down: " << tally.failed_kill << " requests failed, the counter went back "
           << tally.back_kill << " times\n";
    for (const auto &w : tally.at_kill)
        report << "    " << w << "\n";
    report << "  while it restarted, and after: " << tally.failed_restart << " requests failed, the counter went "
           << "back " << tally.back_restart << " times\n";
    for (const auto &w : tally.at_restart)
        report << "    " << w << "\n";
    for (const auto &l : tally.lost)
        report << "  session lost: " << l << "\n";
    WARN(report.str());
    INFO(report.str() << "web1's log:\n" << web1.log() << "\nweb2's log:\n" << web2.log());
    CHECK(tally.clicks_while_resyncing > 0);
    // The counter never goes back: not when a node dies, and not while it
    // comes back (a returning node never hands out a miss), and every
    // round's session counts on to the end. A request that fails is the
    // extension's doing, and is reported above, not failed here.
    CHECK(tally.back_kill == 0);
    CHECK(tally.back_restart == 0);
    CHECK(tally.lost.empty());
}

} // namespace

TEST_CASE("php-memcached front-ends listing both nodes keep counting a session through kill -9 and an empty "
          "restart of either node",
          "[node][php]")
{
    failover_rounds(php_memcached);
}

TEST_CASE("pecl memcache front-ends listing both nodes keep counting a session through kill -9 and an empty "
          "restart of either node",
          "[node][php]")
{
    failover_rounds(pecl_memcache);
}
