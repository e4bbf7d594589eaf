#include "support/node.hpp"

#include <arpa/inet.h>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sstream>
#include <stdexcept>
#include <set>
#include <random>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace fixture {

namespace {

using namespace std::chrono_literals;

// Connects to host:port (an IPv4 address), or returns -1.
int connect_to(const std::string &host, uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    if (inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
        close(fd);
        errno = EINVAL;
        return -1;
    }
    if (connect(fd, reinterpret_cast<sockaddr *>(&addr), sizeof addr) != 0) {
        close(fd);
        return -1;
    }
    // A reply that never comes fails the test instead of hanging it. A
    // sanitized server (make check-sanitize sets MEMCACHED_SANITIZER) runs
    // several times slower: a pipelined fill of 100,000 items takes longer
    // than 10 s to answer under TSan on a loaded machine.
    const char *sanitizer = getenv("MEMCACHED_SANITIZER");
    timeval tv{sanitizer && *sanitizer ? 60 : 10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

bool answers_version(const std::string &host, uint16_t port)
{
    int fd = connect_to(host, port);
    if (fd < 0)
        return false;
    timeval tv{0, 200000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    const char request[] = "version\r\n";
    char reply[64] = {};
    bool ok = send(fd, request, sizeof request - 1, MSG_NOSIGNAL) == (ssize_t)(sizeof request - 1) &&
              recv(fd, reply, sizeof reply - 1, 0) > 0 && strncmp(reply, "VERSION ", 8) == 0;
    close(fd);
    return ok;
}

std::string slurp(const std::string &path)
{
    std::ifstream in(path, std::ios::binary);
    std::ostringstream out;
    out << in.rdbuf();
    return out.str();
}

} // namespace

// Ports for our servers come from 12000-15999: below the kernel's
// ephemeral ports (32768 and up), where every outgoing connection (a
// client, a replication dialler) takes one at any moment and could take a
// port between our pick and the server's bind; and below the upstream
// suites' blocks (16000-31999, scripts/check). A port is handed out once
// per process, and only if it can be bound now.
int listening_socket(uint32_t address, uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(address);
    if (bind(fd, reinterpret_cast<sockaddr *>(&addr), sizeof addr) != 0 || listen(fd, 16) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

int connected_socket(uint16_t port)
{
    return connect_to("127.0.0.1", port);
}

uint16_t free_port()
{
    static std::mt19937 random(std::random_device{}() ^ static_cast<unsigned>(getpid()));
    static std::set<uint16_t> handed_out;
    for (int attempt = 0; attempt < 4000; attempt++) {
        uint16_t port = static_cast<uint16_t>(12000 + random() % 4000);
        if (handed_out.count(port))
            continue;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            throw std::runtime_error(std::string("socket: ") + strerror(errno));
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        addr.sin_port = htons(port);
        bool bound = bind(fd, reinterpret_cast<sockaddr *>(&addr), sizeof addr) == 0;
        close(fd);
        if (bound) {
            handed_out.insert(port);
            return port;
        }
    }
    throw std::runtime_error("no free port in 12000-15999 on 127.0.0.1");
}

std::string memcached_binary()
{
    const char *bin = getenv("MEMCACHED_BIN");
    return bin && *bin ? bin : REPO_ROOT "/build/single/memcached";
}

bool eventually(const std::function<bool()> &condition, std::chrono::milliseconds timeout,
                std::string *last_seen, const std::function<std::string()> &describe)
{
    // A sanitized server (make check-sanitize sets MEMCACHED_SANITIZER)
    // runs several times slower: a resync of 150 MB takes longer than a
    // minute under TSan. Waiting longer for a condition never makes a
    // test pass that should fail, only fail later.
    const char *sanitizer = getenv("MEMCACHED_SANITIZER");
    if (sanitizer && *sanitizer)
        timeout *= 4;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    auto pause = 1ms;
    for (;;) {
        if (condition())
            return true;
        if (std::chrono::steady_clock::now() >= deadline) {
            if (last_seen && describe)
                *last_seen = describe();
            return false;
        }
        std::this_thread::sleep_for(pause);
        pause = std::min(pause * 2, std::chrono::milliseconds(50));
    }
}

Node::Node(std::vector<std::string> args, uint16_t port, Wait wait, std::vector<std::string> env, std::string host)
    : args_(std::move(args)), env_(std::move(env)), port_(port), host_(std::move(host))
{
    char path[] = "/tmp/repcached-node-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        throw std::runtime_error(std::string("mkstemp: ") + strerror(errno));
    close(fd);
    log_path_ = path;

    // A port picked for us may be taken by someone else before the server
    // binds it: then pick another, a few times.
    bool chosen = port_ == 0;
    for (int attempt = 0;; attempt++) {
        if (chosen)
            port_ = free_port();
        try {
            start(wait);
            return;
        } catch (const std::exception &) {
            bool port_taken = log().find("failed to listen") != std::string::npos ||
                              log().find("Address already in use") != std::string::npos;
            if (!chosen || !port_taken || attempt == 3) {
                unlink(log_path_.c_str());
                throw;
            }
        }
    }
}

Node::~Node()
{
    if (pid_ > 0)
        reap(SIGKILL);
    unlink(log_path_.c_str());
}

void Node::start(Wait wait)
{
    std::vector<std::string> argv = {memcached_binary(), "-l", host_, "-p", std::to_string(port_), "-U", "0"};
    // memcached refuses to run as root without a user to switch to.
    if (geteuid() == 0) {
        argv.push_back("-u");
        argv.push_back("root");
    }
    argv.insert(argv.end(), args_.begin(), args_.end());

    int log_fd = open(log_path_.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
    if (log_fd < 0)
        throw std::runtime_error("open " + log_path_ + ": " + strerror(errno));
    std::vector<char *> cargv;
    for (auto &a : argv)
        cargv.push_back(a.data());
    cargv.push_back(nullptr);
    std::vector<char *> cenv;
    for (char **e = environ; *e != nullptr; e++)
        cenv.push_back(*e);
    for (auto &e : env_)
        cenv.push_back(e.data());
    cenv.push_back(nullptr);

    pid_t pid = fork();
    if (pid < 0) {
        close(log_fd);
        throw std::runtime_error(std::string("fork: ") + strerror(errno));
    }
    if (pid == 0) {
        int null_fd = open("/dev/null", O_RDONLY);
        dup2(null_fd, 0);
        dup2(log_fd, 1);
        dup2(log_fd, 2);
        execve(cargv[0], cargv.data(), cenv.data());
        dprintf(2, "exec %s: %s\n", cargv[0], strerror(errno));
        _exit(127);
    }
    close(log_fd);
    pid_ = pid;

    if (wait == Wait::serving && !wait_serving(10s)) {
        reap(SIGKILL);
        throw std::runtime_error("memcached on port " + std::to_string(port_) +
                                 " did not answer within 10 s; its output:\n" + log());
    }
}

bool Node::wait_serving(std::chrono::milliseconds timeout)
{
    if (pid_ <= 0)
        throw std::runtime_error("memcached on port " + std::to_string(port_) + " is not running");
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!answers_version(host_, port_)) {
        int status;
        if (waitpid(pid_, &status, WNOHANG) == pid_) {
            pid_ = -1;
            throw std::runtime_error("memcached on port " + std::to_string(port_) +
                                     " exited at start; its output:\n" + log());
        }
        if (std::chrono::steady_clock::now() > deadline)
            return false;
        std::this_thread::sleep_for(5ms);
    }
    return true;
}

bool Node::accepts_connections() const
{
    int fd = connect_to(host_, port_);
    if (fd < 0)
        return false;
    close(fd);
    return true;
}

void Node::reap(int signal)
{
    if (pid_ <= 0)
        return;
    ::kill(pid_, SIGCONT); // a frozen process would never handle SIGTERM
    ::kill(pid_, signal);
    int status;
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (waitpid(pid_, &status, WNOHANG) == 0) {
        if (std::chrono::steady_clock::now() > deadline) {
            ::kill(pid_, SIGKILL);
            waitpid(pid_, &status, 0);
            break;
        }
        std::this_thread::sleep_for(2ms);
    }
    pid_ = -1;
}

void Node::kill9() { reap(SIGKILL); }
void Node::terminate() { reap(SIGTERM); }

void Node::restart(Wait wait)
{
    if (pid_ > 0)
        reap(SIGKILL);
    start(wait);
}

void Node::freeze()
{
    if (pid_ > 0)
        ::kill(pid_, SIGSTOP);
}

void Node::thaw()
{
    if (pid_ > 0)
        ::kill(pid_, SIGCONT);
}

std::string Node::log() const { return slurp(log_path_); }

long Node::rss_kib() const
{
    std::ifstream status("/proc/" + std::to_string(pid_) + "/status");
    std::string line;
    while (std::getline(status, line))
        if (line.rfind("VmRSS:", 0) == 0)
            return std::stol(line.substr(6));
    return -1;
}

long Node::cpu_ticks() const
{
    std::ifstream stat("/proc/" + std::to_string(pid_) + "/stat");
    std::string line;
    std::getline(stat, line);
    // Fields after the command name, which is in parentheses: state is
    // field 3, utime and stime are fields 14 and 15.
    std::istringstream fields(line.substr(line.rfind(')') + 2));
    std::string field;
    long utime = -1, stime = -1;
    for (int i = 3; i <= 15 && fields >> field; i++) {
        if (i == 14)
            utime = std::stol(field);
        if (i == 15)
            stime = std::stol(field);
    }
    return utime < 0 || stime < 0 ? -1 : utime + stime;
}

Client::Client(const std::string &host, uint16_t port) : fd_(connect_to(host, port))
{
    if (fd_ < 0)
        throw std::runtime_error("cannot connect to " + host + ":" + std::to_string(port) + ": " + strerror(errno));
}

Client::~Client() { close(fd_); }

void Client::send_raw(const std::string &bytes)
{
    size_t sent = 0;
    while (sent < bytes.size()) {
        ssize_t n = send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
        if (n <= 0)
            throw std::runtime_error(std::string("send: ") + (n == 0 ? "closed" : strerror(errno)));
        sent += n;
    }
}

void Client::receive_more()
{
    char chunk[16384];
    ssize_t got = recv(fd_, chunk, sizeof chunk, 0);
    if (got <= 0)
        throw std::runtime_error(got == 0 ? "server closed the connection" : std::string("recv: ") + strerror(errno));
    buffer_.append(chunk, got);
}

std::string Client::read_exact(size_t n)
{
    while (buffer_.size() < n)
        receive_more();
    std::string out = buffer_.substr(0, n);
    buffer_.erase(0, n);
    return out;
}

std::string Client::read_line()
{
    size_t eol;
    while ((eol = buffer_.find("\r\n")) == std::string::npos)
        receive_more();
    std::string line = buffer_.substr(0, eol);
    buffer_.erase(0, eol + 2);
    return line;
}

std::string Client::simple(const std::string &command)
{
    send_raw(command + "\r\n");
    return read_line();
}

std::string Client::store(const std::string &verb, const std::string &key, const std::string &value,
                          uint32_t flags, long exptime, const std::string &extra)
{
    std::string command = verb + " " + key + " " + std::to_string(flags) + " " + std::to_string(exptime) + " " +
                          std::to_string(value.size()) + extra + "\r\n" + value;
    return simple(command);
}

std::string Client::set(const std::string &key, const std::string &value, uint32_t flags, long exptime)
{
    return store("set", key, value, flags, exptime);
}

std::string Client::add(const std::string &key, const std::string &value, uint32_t flags, long exptime)
{
    return store("add", key, value, flags, exptime);
}

std::string Client::replace(const std::string &key, const std::string &value, uint32_t flags, long exptime)
{
    return store("replace", key, value, flags, exptime);
}

std::string Client::append(const std::string &key, const std::string &value)
{
    return store("append", key, value, 0, 0);
}

std::string Client::prepend(const std::string &key, const std::string &value)
{
    return store("prepend", key, value, 0, 0);
}

std::string Client::cas(const std::string &key, const std::string &value, uint64_t unique, uint32_t flags,
                        long exptime)
{
    return store("cas", key, value, flags, exptime, " " + std::to_string(unique));
}

std::map<std::string, Item> Client::retrieve(const std::string &verb, const std::vector<std::string> &keys)
{
    std::string command = verb;
    for (auto &k : keys)
        command += " " + k;
    send_raw(command + "\r\n");
    std::map<std::string, Item> found;
    for (;;) {
        std::string line = read_line();
        if (line == "END")
            return found;
        // The server separates fields with spaces only, and a key may hold
        // any other byte (a tab, a carriage return): not operator>>.
        size_t key_end = line.find(' ', 6);
        if (line.compare(0, 6, "VALUE ") != 0 || key_end == std::string::npos || key_end == 6)
            throw std::runtime_error("unexpected reply to " + verb + ": " + line);
        std::string key = line.substr(6, key_end - 6);
        std::istringstream header(line.substr(key_end));
        size_t bytes = 0;
        Item item;
        header >> item.flags >> bytes;
        if (verb == "gets")
            header >> item.cas;
        if (!header)
            throw std::runtime_error("unexpected reply to " + verb + ": " + line);
        item.value = read_exact(bytes);
        if (read_exact(2) != "\r\n")
            throw std::runtime_error("value of " + key + " not followed by CRLF");
        found[key] = item;
    }
}

std::map<std::string, Item> Client::gets_many(const std::vector<std::string> &keys)
{
    return retrieve("gets", keys);
}

std::optional<Item> Client::gets(const std::string &key)
{
    auto found = retrieve("gets", {key});
    if (found.empty())
        return std::nullopt;
    return found.begin()->second;
}

std::optional<Item> Client::get(const std::string &key)
{
    auto found = retrieve("get", {key});
    if (found.empty())
        return std::nullopt;
    return found.begin()->second;
}

std::string Client::incr(const std::string &key, uint64_t by) { return simple("incr " + key + " " + std::to_string(by)); }

std::string Client::decr(const std::string &key, uint64_t by) { return simple("decr " + key + " " + std::to_string(by)); }

std::string Client::del(const std::string &key, long time)
{
    return simple("delete " + key + (time ? " " + std::to_string(time) : ""));
}

std::string Client::flush_all(long delay)
{
    return simple(delay < 0 ? "flush_all" : "flush_all " + std::to_string(delay));
}

std::map<std::string, std::string> Client::stats(const std::string &sub)
{
    send_raw(sub.empty() ? "stats\r\n" : "stats " + sub + "\r\n");
    std::map<std::string, std::string> stats;
    for (;;) {
        std::string line = read_line();
        if (line == "END")
            return stats;
        std::istringstream in(line);
        std::string word, name, value;
        if (!(in >> word >> name) || word != "STAT")
            throw std::runtime_error("unexpected reply to stats: " + line);
        std::getline(in >> std::ws, value);
        stats[name] = value;
    }
}

} // namespace fixture
