// Network namespaces for tests that cut, delay or lose a link between two
// nodes. Everything is made by the test and removed by destructors (the
// namespaces, and with them their veth ends and nft tables), also when a
// test fails; namespaces left by a test binary killed outright are removed
// by the next one (their names carry the PID that made them).
//
//   if (std::string why = netns_unavailable(); !why.empty()) ...   // skip
//   Netns a("a"), b("b");
//   Veth link(a, "10.231.0.1/30", b, "10.231.0.2/30");
//   std::unique_ptr<Node> node;
//   {
//       NetnsScope in(a);            // this thread's sockets and children
//       node = std::make_unique<Node>(args, 11211, "10.231.0.1");   // live in a
//   }
//   {
//       NftTable cut(a, "partition", link.drop_all_rules_a());     // cut
//       ...
//   }                                // healed
//
// Needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN), ip (iproute2) and nft
// (nftables).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>

namespace fixture {

// "" when this process can make namespaces, veths and nft tables; else why
// not (not root, ip or nft missing, or the kernel refused), for a skip.
std::string netns_unavailable();

// A named network namespace (`ip netns add`), with its loopback up; deleted
// (`ip netns del`) when destroyed. The name is "rcng<pid><tag>".
class Netns {
public:
    explicit Netns(const std::string &tag);
    ~Netns();
    Netns(const Netns &) = delete;
    Netns &operator=(const Netns &) = delete;
    const std::string &name() const { return name_; }
    // Runs a command line inside the namespace; throws with its output if
    // it fails.
    void exec(const std::string &command) const;
    // A descriptor of the namespace, for setns().
    int fd() const { return fd_; }

private:
    std::string name_;
    int fd_ = -1;
};

// Moves the calling thread into a namespace until destroyed. Sockets made
// and processes started meanwhile stay in that namespace.
class NetnsScope {
public:
    explicit NetnsScope(const Netns &ns);
    ~NetnsScope();
    NetnsScope(const NetnsScope &) = delete;
    NetnsScope &operator=(const NetnsScope &) = delete;

private:
    int home_;
};

// A veth pair, one end in each namespace, with an address on each (CIDR),
// up. Named "<namespace>v"; it goes away with its namespaces.
class Veth {
public:
    Veth(const Netns &a, const std::string &cidr_a, const Netns &b, const std::string &cidr_b);
    // The interface name of each end, for nft rules (iifname, oifname).
    const std::string &name_a() const { return name_a_; }
    const std::string &name_b() const { return name_b_; }

private:
    std::string name_a_, name_b_;
};

// An nft table of family ip in a namespace: `body` is what goes between
// the braces of `table ip NAME { ... }` (chains and rules). Deleted when
// destroyed.
class NftTable {
public:
    NftTable(const Netns &ns, const std::string &name, const std::string &body);
    ~NftTable();
    NftTable(const NftTable &) = delete;
    NftTable &operator=(const NftTable &) = delete;

private:
    const Netns &ns_;
    std::string name_;
};

// A TCP proxy in a namespace that holds every byte for `delay` before it
// passes it on, in both directions: it listens on `listen_port` (any
// address of the namespace, so an nft `redirect to :port` reaches it) and
// connects each connection it accepts to target_host:target_port, with
// SO_MARK `mark` on the outgoing socket so that the redirect rule can let
// it through. A connection that breaks on one side is closed on the other.
class DelayProxy {
public:
    DelayProxy(const Netns &ns, uint16_t listen_port, std::string target_host, uint16_t target_port,
               std::chrono::milliseconds delay, uint32_t mark);
    ~DelayProxy();
    DelayProxy(const DelayProxy &) = delete;
    DelayProxy &operator=(const DelayProxy &) = delete;

    // Connections accepted, and bytes passed on, so far.
    uint64_t connections() const { return connections_; }
    uint64_t bytes() const { return bytes_; }

private:
    void run(const Netns &ns, int listen_fd);

    std::string target_host_;
    uint16_t target_port_;
    std::chrono::milliseconds delay_;
    uint32_t mark_;
    std::atomic<bool> stop_{false};
    std::atomic<uint64_t> connections_{0}, bytes_{0};
    std::thread thread_;
};

} // namespace fixture
