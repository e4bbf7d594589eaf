// PHP sessions in a replicated pair, with the real PHP clients: two web
// front-ends (`php -S`), each keeping sessions in its own node, one through
// php-memcached and one through pecl memcache, both configured by the
// example files in dist/php/. A browser's session follows it from one
// front-end to the other, survives the crash of a node, and is served again
// by that node once it has resynced. Tagged [node]: run once per variant.
//
// What it shows, and what it does not:
// - Both handlers store the session as PHP's serialized string, flags 0,
//   under one key ("memc_sess_<id>", the prefix set in both dist files), so
//   a session written through one extension is read through the other. The
//   test checks the stored value on both nodes after every request.
// - Between two requests it waits until both nodes hold the same session:
//   replication is asynchronous, and a request that reached the other node
//   within the lag (well under a millisecond on a LAN; a user's next click
//   comes much later) would see the previous count.
// - Requests are sequential: session locking is on and must not get in the
//   way, but concurrent requests of one session are not what this tests.
// - A front-end whose node is down does not fail over by itself: pecl
//   memcache starts an empty session (and fails to save it). The test checks
//   that, then repoints the front-end at the surviving node, as a load
//   balancer or an operator would.
#include <catch2/catch.hpp>

#include "support/command.hpp"
#include "support/pair.hpp"
#include "support/skip.hpp"

#include <arpa/inet.h>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <netinet/in.h>
#include <optional>
#include <sstream>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
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

// What PHP's session serializer makes of the page's session.
std::string stored_session(int visits)
{
    return "visits|i:" + std::to_string(visits) + ";";
}

// The settings of an example file in dist/php/, as `-d name=value`
// options, with session.save_path replaced by `save_path`.
std::vector<std::string> php_options(const std::string &example, const std::string &save_path)
{
    std::istringstream in(slurp(repo / "dist" / "php" / example));
    if (in.str().empty())
        throw std::runtime_error("dist/php/" + example + ": missing or empty");
    std::vector<std::string> options;
    std::string line;
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
        if (name == "session.save_path")
            value = save_path;
        options.push_back("-d");
        options.push_back(name + "=" + value);
    }
    return options;
}

std::vector<std::string> php_memcached_on(const Node &node)
{
    return php_options("memcached-sessions.ini", "127.0.0.1:" + std::to_string(node.port()));
}

std::vector<std::string> pecl_memcache_on(const Node &node)
{
    return php_options("memcache-sessions.ini", "tcp://127.0.0.1:" + std::to_string(node.port()));
}

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

private:
    std::string session_id_;
};

} // namespace

TEST_CASE("a PHP session kept in a replicated pair is shared by php-memcached and pecl memcache "
          "front-ends and outlives the crash of a node",
          "[node][php]")
{
    require_tool("php", "php-cli");
    const std::string modules = run("php -m").output;
    for (const char *extension : {"memcached", "memcache"})
        if (modules.find(std::string("\n") + extension + "\n") == std::string::npos)
            skip_test(std::string("PHP's ") + extension + " extension is not installed (Debian package php-" +
                      extension + "; scripts/build-deps check installs it)");
    Pair pair;
    REQUIRE(wait_online(pair.a));
    REQUIRE(wait_online(pair.b));
    ScratchDir scratch("php-sessions");
    std::filesystem::create_directory(scratch / "docroot");
    std::ofstream(scratch / "docroot" / "index.php") << counter_page;

    // web1 keeps its sessions in node A through php-memcached, web2 in
    // node B through pecl memcache.
    std::optional<WebFrontEnd> web1, web2;
    web1.emplace("web1", scratch / "docroot", php_memcached_on(pair.a));
    web2.emplace("web2", scratch / "docroot", pecl_memcache_on(pair.b));

    Browser browser;
    int visits = 0;
    // One request through `web`: the page must count one more visit in the
    // same session, and then the nodes that are up must all hold that count.
    auto click = [&](const WebFrontEnd &web, std::vector<const Node *> nodes) {
        Visit v = browser.visit(web);
        visits++;
        INFO("visit " << visits << " through " << web.name() << "; response:\n"
                      << v.response << "\n" << web.name() << "'s log:\n" << web.log());
        REQUIRE(v.status == 200);
        REQUIRE(!browser.session_id().empty());
        CHECK(v.session_id == browser.session_id());
        CHECK(v.visits == visits);
        std::string key = session_prefix + browser.session_id(), seen;
        for (const Node *node : nodes) {
            bool holds = eventually([&] {
                auto item = Client(*node).get(key);
                seen = item ? "'" + item->value + "' flags " + std::to_string(item->flags) : "nothing";
                return item && item->value == stored_session(visits) && item->flags == 0;
            }, 5s);
            INFO("node on port " << node->port() << " holds " << seen << " under " << key);
            CHECK(holds);
        }
        if (nodes.size() == 2)
            CHECK(pair.converge({key}, 5s) == "");
    };

    // The session moves between front-ends, and so between nodes and
    // between PHP extensions, at every click.
    click(*web1, {&pair.a, &pair.b});
    click(*web2, {&pair.a, &pair.b});
    click(*web1, {&pair.a, &pair.b});
    click(*web2, {&pair.a, &pair.b});

    // Node B crashes: web1 goes on as if nothing happened.
    pair.b.kill9();
    click(*web1, {&pair.a});
    // web2 still points at B: it does not have the session (pecl memcache
    // answers with a new, empty one), and must be repointed.
    {
        Visit lost = browser.visit(*web2);
        INFO("web2's response with node B down:\n" << lost.response);
        CHECK(lost.visits != visits + 1);
    }
    web2.reset();
    web2.emplace("web2-on-A", scratch / "docroot", pecl_memcache_on(pair.a));
    click(*web2, {&pair.a});
    click(*web1, {&pair.a});

    // B comes back empty and gets the session from A in its resync; web2
    // goes back to B.
    pair.b.restart();
    REQUIRE(wait_online(pair.b));
    CHECK(std::stoull(replication_stats(pair.b)["peer0:resyncs"]) >= 1);
    CHECK(pair.converge({session_prefix + browser.session_id()}, 10s) == "");
    web2.reset();
    web2.emplace("web2", scratch / "docroot", pecl_memcache_on(pair.b));
    click(*web2, {&pair.a, &pair.b});
    click(*web1, {&pair.a, &pair.b});
    CHECK(visits == 9);
}
