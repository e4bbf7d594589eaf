#include "support/netns.hpp"

#include "support/command.hpp"
#include "support/node.hpp"

#include <arpa/inet.h>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <deque>
#include <fcntl.h>
#include <filesystem>
#include <memory>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <stdexcept>
#include <sys/socket.h>
#include <unistd.h>
#include <vector>

namespace fixture {

namespace {

const std::string prefix = "rcng";

void must(const std::string &command)
{
    CommandResult r = run(command);
    if (r.status != 0)
        throw std::runtime_error("`" + command + "` failed (status " + std::to_string(r.status) + "): " + r.output);
}

// Namespaces named by a test binary that is no longer running: it was
// killed before its destructors ran.
void remove_stale_namespaces()
{
    std::error_code ec;
    for (auto &entry : std::filesystem::directory_iterator("/run/netns", ec)) {
        std::string name = entry.path().filename();
        if (name.rfind(prefix, 0) != 0)
            continue;
        size_t end = prefix.size();
        while (end < name.size() && isdigit(static_cast<unsigned char>(name[end])))
            end++;
        if (end == prefix.size())
            continue;
        pid_t pid = std::stoi(name.substr(prefix.size(), end - prefix.size()));
        if (pid != getpid() && ::kill(pid, 0) != 0 && errno == ESRCH)
            run("ip netns del " + name);
    }
}

} // namespace

std::string netns_unavailable()
{
    if (geteuid() != 0)
        return "network namespaces need root (this runs as uid " + std::to_string(geteuid()) + ")";
    for (const char *tool : {"ip", "nft"}) {
        if (run(std::string("command -v ") + tool).status != 0)
            return std::string("'") + tool + "' is not installed (Debian: apt-get install iproute2 nftables)";
    }
    remove_stale_namespaces();
    std::string name = prefix + std::to_string(getpid()) + "probe";
    CommandResult r = run("ip netns add " + name + " && ip netns exec " + name +
                          " nft add table ip probe; status=$?; ip netns del " + name + "; exit $status");
    if (r.status != 0)
        return "cannot make a network namespace with an nft table: " + r.output;
    return "";
}

Netns::Netns(const std::string &tag) : name_(prefix + std::to_string(getpid()) + tag)
{
    run("ip netns del " + name_ + " 2>/dev/null");
    must("ip netns add " + name_);
    try {
        must("ip -n " + name_ + " link set lo up");
        fd_ = open(("/run/netns/" + name_).c_str(), O_RDONLY | O_CLOEXEC);
        if (fd_ < 0)
            throw std::runtime_error("open /run/netns/" + name_ + ": " + strerror(errno));
    } catch (...) {
        run("ip netns del " + name_);
        throw;
    }
}

Netns::~Netns()
{
    if (fd_ >= 0)
        close(fd_);
    // Deleting the namespace also deletes its veth end (and so the pair)
    // and its nft tables.
    run("ip netns del " + name_);
}

void Netns::exec(const std::string &command) const { must("ip netns exec " + name_ + " " + command); }

NetnsScope::NetnsScope(const Netns &ns) : home_(open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC))
{
    if (home_ < 0)
        throw std::runtime_error(std::string("open /proc/thread-self/ns/net: ") + strerror(errno));
    if (setns(ns.fd(), CLONE_NEWNET) != 0) {
        int e = errno;
        close(home_);
        throw std::runtime_error("setns into " + ns.name() + ": " + strerror(e));
    }
}

NetnsScope::~NetnsScope()
{
    setns(home_, CLONE_NEWNET);
    close(home_);
}

Veth::Veth(const Netns &a, const std::string &cidr_a, const Netns &b, const std::string &cidr_b)
    : name_a_(a.name() + "v"), name_b_(b.name() + "v")
{
    if (name_a_.size() > 15 || name_b_.size() > 15)
        throw std::runtime_error("veth names " + name_a_ + " and " + name_b_ + " are over 15 characters");
    must("ip link add " + name_a_ + " netns " + a.name() + " type veth peer name " + name_b_ + " netns " +
         b.name());
    must("ip -n " + a.name() + " addr add " + cidr_a + " dev " + name_a_);
    must("ip -n " + b.name() + " addr add " + cidr_b + " dev " + name_b_);
    must("ip -n " + a.name() + " link set " + name_a_ + " up");
    must("ip -n " + b.name() + " link set " + name_b_ + " up");
}

NftTable::NftTable(const Netns &ns, const std::string &name, const std::string &body) : ns_(ns), name_(name)
{
    ScratchDir dir("nft");
    std::string file = (dir / "rules.nft").string();
    FILE *f = fopen(file.c_str(), "w");
    if (!f)
        throw std::runtime_error("cannot write " + file);
    fprintf(f, "table ip %s {\n%s\n}\n", name.c_str(), body.c_str());
    fclose(f);
    ns_.exec("nft -f " + fixture::quoted(std::filesystem::path(file)));
}

NftTable::~NftTable() { run("ip netns exec " + ns_.name() + " nft delete table ip " + name_); }

namespace {

// One proxied connection: fds[0] accepted, fds[1] dialled; what was read
// from one side waits in the queue of the other until it is due.
struct Chunk {
    std::chrono::steady_clock::time_point due;
    std::string bytes;
};

struct Conn {
    int fds[2];
    std::deque<Chunk> to[2]; // to[i]: to be written to fds[i]
    bool broken = false;
    ~Conn()
    {
        close(fds[0]);
        close(fds[1]);
    }
};

} // namespace

DelayProxy::DelayProxy(const Netns &ns, uint16_t listen_port, std::string target_host, uint16_t target_port,
                       std::chrono::milliseconds delay, uint32_t mark)
    : target_host_(std::move(target_host)), target_port_(target_port), delay_(delay), mark_(mark)
{
    int fd, error;
    {
        NetnsScope in(ns);
        fd = listening_socket(INADDR_ANY, listen_port);
        error = errno;
    }
    if (fd < 0)
        throw std::runtime_error("proxy in " + ns.name() + " cannot listen on port " + std::to_string(listen_port) +
                                 ": " + strerror(error));
    thread_ = std::thread([this, &ns, fd] { run(ns, fd); });
}

DelayProxy::~DelayProxy()
{
    stop_ = true;
    thread_.join();
}

void DelayProxy::run(const Netns &ns, int listen_fd)
{
    using clock = std::chrono::steady_clock;
    NetnsScope in(ns); // the dialled sockets belong to the namespace too
    std::vector<std::unique_ptr<Conn>> conns;

    auto dial = [&]() -> int {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return -1;
        setsockopt(fd, SOL_SOCKET, SO_MARK, &mark_, sizeof mark_);
        timeval tv{3, 0}; // bounds connect() and each send()
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_port = htons(target_port_);
        inet_pton(AF_INET, target_host_.c_str(), &addr.sin_addr);
        if (connect(fd, reinterpret_cast<sockaddr *>(&addr), sizeof addr) != 0) {
            close(fd);
            return -1;
        }
        return fd;
    };

    while (!stop_) {
        // Wait for input, or until the next chunk is due (at most 20 ms, to
        // notice stop_).
        auto now = clock::now();
        auto wake = now + std::chrono::milliseconds(20);
        std::vector<pollfd> pfds{{listen_fd, POLLIN, 0}};
        for (auto &c : conns) {
            for (int side = 0; side < 2; side++) {
                pfds.push_back({c->fds[side], POLLIN, 0});
                if (!c->to[side].empty())
                    wake = std::min(wake, c->to[side].front().due);
            }
        }
        int timeout = int(std::chrono::duration_cast<std::chrono::milliseconds>(wake - now).count());
        poll(pfds.data(), pfds.size(), std::max(timeout, 0));

        if (pfds[0].revents & POLLIN) {
            int accepted = accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
            if (accepted >= 0) {
                int dialled = dial();
                if (dialled < 0) {
                    close(accepted);
                } else {
                    timeval tv{3, 0};
                    setsockopt(accepted, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
                    int one = 1;
                    setsockopt(accepted, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    auto c = std::make_unique<Conn>();
                    c->fds[0] = accepted;
                    c->fds[1] = dialled;
                    conns.push_back(std::move(c));
                    connections_++;
                    continue; // pfds no longer matches conns
                }
            }
        }
        for (size_t i = 0; i < conns.size(); i++) {
            Conn &c = *conns[i];
            for (int side = 0; side < 2; side++) {
                if (!(pfds[1 + 2 * i + side].revents & (POLLIN | POLLHUP | POLLERR)))
                    continue;
                char buf[65536];
                ssize_t n = recv(c.fds[side], buf, sizeof buf, MSG_DONTWAIT);
                if (n > 0)
                    c.to[1 - side].push_back({clock::now() + delay_, std::string(buf, n)});
                else if (n == 0 || (errno != EAGAIN && errno != EINTR))
                    c.broken = true;
            }
        }
        now = clock::now();
        for (auto &c : conns) {
            for (int side = 0; side < 2 && !c->broken; side++) {
                while (!c->to[side].empty() && c->to[side].front().due <= now) {
                    const std::string &bytes = c->to[side].front().bytes;
                    ssize_t n = send(c->fds[side], bytes.data(), bytes.size(), MSG_NOSIGNAL);
                    if (n != ssize_t(bytes.size())) {
                        c->broken = true;
                        break;
                    }
                    bytes_ += n;
                    c->to[side].pop_front();
                }
            }
        }
        // A side that broke: what it sent before is lost with it, as on
        // a real connection that is reset.
        for (size_t i = conns.size(); i-- > 0;)
            if (conns[i]->broken)
                conns.erase(conns.begin() + i);
    }
    close(listen_fd);
}

} // namespace fixture
