// libFuzzer target for a replication link's state machine (make fuzz):
// the handshake, with and without a secret, and any sequence of frames
// after it, through the real link code of a real node: repl_link.c's
// accept, dial, link_read() and frame handling, repl_stream.c's queues
// and sending, the apply path (repl_apply.c: do_repl_apply(), tombstones,
// flushes, the resync walk) and items.c/slabs.c/assoc.c with a small
// cache (-m 2).
//
// The node is the patched server built with -DREPL_FUZZING (single-threaded
// variant, ASan, UBSan and libFuzzer's coverage), linked into this program
// with its main() renamed memcached_main(): that sets the node up from
// ordinary options and returns before the event loop, which this program
// turns. The two seams of that build (repl_fuzz_reset(), repl_fuzz_dial())
// make the node new before each input and dial at once.
//
// Each input (its layout: tests/support/link_fuzz.hpp) is one link over
// loopback TCP: the node dials the fuzzer's listener or the fuzzer dials
// the node, the fuzzer sends the input's bytes, shuts its side, and turns
// the node's loop until the node has read everything and closed the link.
// A link the node keeps open after that is a finding like a crash, a leak
// (LeakSanitizer) or undefined behaviour; so is "stats replication"
// failing afterwards.
#include "support/link_fuzz.hpp"

#include <algorithm>
#include <arpa/inet.h>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <string>
#include <sys/socket.h>
#include <unistd.h>
#include <vector>

#include <event.h>

extern "C" {
#include "repl_auth.h"

int memcached_main(int argc, char **argv);
void repl_fuzz_reset(bool with_secret);
void repl_fuzz_dial(void);
char *do_repl_stats(int *bytes);
}

namespace {

int listener = -1;              // the node's first peer: where it dials
bool verbose = false;           // REPL_FUZZ_VERBOSE: the node's log, and its stats after each input
uint16_t node_port = 0;         // the node's replication port (-X)

[[noreturn]] void fail(const char *what)
{
    std::fprintf(stderr, "repl-link-fuzz: %s: %s\n", what, std::strerror(errno));
    std::abort();
}

uint16_t bound_port(int fd)
{
    sockaddr_in sin{};
    socklen_t len = sizeof sin;
    if (getsockname(fd, reinterpret_cast<sockaddr *>(&sin), &len) != 0)
        fail("getsockname");
    return ntohs(sin.sin_port);
}

int loopback_socket(uint16_t port, bool do_bind)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        fail("socket");
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_port = htons(port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int rc = do_bind ? bind(fd, reinterpret_cast<sockaddr *>(&sin), sizeof sin)
                     : connect(fd, reinterpret_cast<sockaddr *>(&sin), sizeof sin);
    if (rc != 0)
        fail(do_bind ? "bind 127.0.0.1" : "connect to the node's replication port");
    return fd;
}

void set_nonblocking(int fd)
{
    if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0)
        fail("fcntl");
}

// One link, seen from the peer's end.
struct peer_end {
    int fd = -1;
    std::string got;            // what the node sent, its first 64 KiB
    bool closed = false;        // the node closed the link

    // One turn of the node's loop, then take what it sent.
    void turn()
    {
        event_loop(EVLOOP_NONBLOCK);
        char buf[65536];
        while (!closed) {
            ssize_t n = recv(fd, buf, sizeof buf, 0);
            if (n > 0) {
                if (got.size() < sizeof buf)
                    got.append(buf, std::min(size_t(n), sizeof buf - got.size()));
            } else if (n == 0 || errno == ECONNRESET) {
                closed = true;
            } else if (errno == EAGAIN || errno == EINTR) {
                break;
            } else {
                fail("recv from the node");
            }
        }
    }

    // Sends bytes, turning the node's loop while its socket is full.
    void send_all(const char *p, size_t n)
    {
        while (n > 0 && !closed) {
            ssize_t sent = send(fd, p, n, MSG_NOSIGNAL);
            if (sent > 0) {
                p += sent;
                n -= size_t(sent);
            } else if (sent < 0 && errno != EAGAIN && errno != EINTR) {
                return;         // the node closed the link: it read enough
            }
            turn();
        }
    }

    // The node's HELLO, once it has arrived whole.
    std::string node_hello() const
    {
        if (got.size() < 4)
            return std::string();
        size_t whole = 4 + codec_be32(got.data());
        return got.size() >= whole ? got.substr(0, whole) : std::string();
    }

    static uint32_t codec_be32(const char *p)
    {
        const unsigned char *b = reinterpret_cast<const unsigned char *>(p);
        return (uint32_t(b[0]) << 24) | (uint32_t(b[1]) << 16) | (uint32_t(b[2]) << 8) | b[3];
    }
};

// A link to the node: dialled by it (to our listener) or by us.
int open_link(bool dialled)
{
    if (!dialled) {
        int fd = loopback_socket(node_port, false);
        set_nonblocking(fd);
        return fd;
    }
    // Dials of the node that are gone (its dial at start, which the
    // reset closed) wait in the backlog before the new one: drop them.
    for (int stale; (stale = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC)) >= 0;)
        close(stale);
    repl_fuzz_dial();
    pollfd p{listener, POLLIN, 0};
    if (poll(&p, 1, 10000) != 1)
        fail("the node did not dial its peer within 10 s");
    int fd = accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        fail("accept the node's dial");
    return fd;
}

// Where the first AUTH frame of the input starts, if a HELLO comes first.
size_t first_auth(const std::string &in)
{
    size_t at = 0;
    while (at + REPL_FRAME_HEADER <= in.size()) {
        size_t whole = 4 + size_t(peer_end::codec_be32(in.data() + at));
        if (whole > in.size() - at)
            break;
        if (at > 0 && uint8_t(in[at + 4]) == REPL_FRAME_AUTH && whole == REPL_FRAME_HEADER + REPL_MAC_LEN)
            return at;
        if (at == 0 && uint8_t(in[at + 4]) != REPL_FRAME_HELLO)
            break;
        at += whole;
    }
    return std::string::npos;
}

} // namespace

extern "C" int LLVMFuzzerInitialize(int *, char ***)
{
    listener = loopback_socket(0, true);
    if (listen(listener, 16) != 0)
        fail("listen");
    set_nonblocking(listener);
    // A port for the node that is free now; the node binds it at once.
    int probe = loopback_socket(0, true);
    node_port = bound_port(probe);
    close(probe);

    char secret_path[] = "/tmp/repl-link-fuzz-secret-XXXXXX";
    int sfd = mkstemp(secret_path);     // mode 0600, as -K wants
    if (sfd < 0 || write(sfd, link_fuzz::secret_bytes.data(), link_fuzz::secret_bytes.size())
                       != ssize_t(link_fuzz::secret_bytes.size()))
        fail("writing the secret file");
    close(sfd);

    std::vector<std::string> args = {
        "memcached", "-p", "0", "-l", "127.0.0.1", "-m", "2",
        "-x", "127.0.0.1:" + std::to_string(bound_port(listener)),
        "-x", "127.0.0.1:" + std::to_string(link_fuzz::accepted_peer_port),
        "-X", std::to_string(node_port), "-K", secret_path,
    };
    if (geteuid() == 0) {
        // memcached refuses to run as root without -u; as itself, the
        // fuzzer keeps its identity.
        const passwd *pw = getpwuid(geteuid());
        args.push_back("-u");
        args.push_back(pw != nullptr ? pw->pw_name : "root");
    }
    std::vector<char *> argv;
    for (std::string &a : args)
        argv.push_back(&a[0]);
    argv.push_back(nullptr);
    int rc = memcached_main(int(args.size()), argv.data());
    unlink(secret_path);
    if (rc != 0) {
        std::fprintf(stderr, "repl-link-fuzz: the node did not start (status %d)\n", rc);
        std::exit(1);
    }
    // What the node logs (a refused link, a closed one) for every input
    // would drown libFuzzer's lines; sanitizers write to the descriptor.
    verbose = std::getenv("REPL_FUZZ_VERBOSE") != nullptr;
    if (!verbose) {
        FILE *quiet = std::fopen("/dev/null", "w");
        if (quiet != nullptr)
            stderr = quiet;
    }
    return 0;
}

namespace {

// One link's life: the peer sends `in` and its end of stream, then waits
// for the node to close the link.
void run_link(uint8_t mode, std::string in)
{
    peer_end peer;
    peer.fd = open_link((mode & link_fuzz::dialled) != 0);

    size_t sent = 0;
    size_t auth_at = first_auth(in);
    if ((mode & link_fuzz::secret) && !(mode & link_fuzz::raw_macs) && auth_at != std::string::npos) {
        // Sign the AUTH as an honest peer would, over both HELLOs: the
        // node's arrives once it has ours (or at once, if it dialled).
        peer.send_all(in.data(), auth_at);
        sent = auth_at;
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (peer.node_hello().empty() && !peer.closed && std::chrono::steady_clock::now() < deadline)
            peer.turn();
        std::string ours = in.substr(0, 4 + peer_end::codec_be32(in.data()));
        std::string theirs = peer.node_hello();
        if (!theirs.empty()) {
            bool node_dialled = (mode & link_fuzz::dialled) != 0;
            const std::string &d = node_dialled ? theirs : ours;
            const std::string &a = node_dialled ? ours : theirs;
            unsigned char mac[REPL_MAC_LEN];
            repl_auth_mac(link_fuzz::secret_bytes.data(), link_fuzz::secret_bytes.size(),
                          node_dialled ? REPL_AUTH_ACCEPTOR : REPL_AUTH_DIALLER,
                          d.data(), d.size(), a.data(), a.size(), mac);
            std::memcpy(&in[auth_at + REPL_FRAME_HEADER], mac, REPL_MAC_LEN);
        }
    }
    peer.send_all(in.data() + sent, in.size() - sent);
    shutdown(peer.fd, SHUT_WR);

    // The node reads to the end of what we sent, then closes the link.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!peer.closed) {
        if (std::chrono::steady_clock::now() > deadline) {
            std::fprintf(stderr, "repl-link-fuzz: the node kept the link open 10 s after the peer's"
                         " end of stream (mode %u, %zu bytes)\n", mode, in.size());
            std::abort();
        }
        peer.turn();
    }
    close(peer.fd);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const uint8_t mode = data[0];
    std::string in(reinterpret_cast<const char *>(data) + 1, size - 1);

    repl_fuzz_reset((mode & link_fuzz::secret) != 0);
    if (mode & link_fuzz::stocked) {
        bool with_secret = (mode & link_fuzz::secret) != 0;
        run_link(mode & link_fuzz::secret, link_fuzz::hello(with_secret)
                 + (with_secret ? link_fuzz::auth() : std::string()) + link_fuzz::stock());
    }
    run_link(mode, in);

    int bytes = 0;
    char *stats = do_repl_stats(&bytes);
    if (stats == nullptr || bytes <= 0 || std::memcmp(stats + bytes - 5, "END\r\n", 5) != 0) {
        std::fprintf(stderr, "repl-link-fuzz: stats replication failed after the input\n");
        std::abort();
    }
    // The link is closed on both ends: the node must hold none.
    std::string shown(stats, size_t(bytes));
    for (size_t at = 0; (at = shown.find(":state ", at)) != std::string::npos; at++) {
        if (shown.compare(at, 12, ":state down\r") != 0) {
            std::fprintf(stderr, "repl-link-fuzz: the node closed the link but keeps a peer's link:\n%s",
                         shown.c_str());
            std::abort();
        }
    }
    if (verbose)
        std::fprintf(stderr, "after %zu bytes on a link of mode %u:\n%.*s", in.size(), mode, bytes, stats);
    std::free(stats);
    // Free now what the input made the node allocate (tombstones), not at
    // the next input: libFuzzer runs LeakSanitizer after every input that
    // allocated more than it freed, which costs more than the input.
    repl_fuzz_reset(false);
    return 0;
}
