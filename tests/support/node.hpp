// The test fixture: real memcached processes on loopback, and a client that
// speaks their ASCII protocol.
//
//   Node node;                       // starts build/single/memcached (or
//                                    // $MEMCACHED_BIN) on a free port
//   Client c(node);
//   c.set("k", "v");
//   CHECK(c.get("k")->value == "v");
//                                    // ~Node kills it by PID
//
// Every process a Node starts is stopped by its PID; ports come from the
// kernel (bind to port 0), so tests can run in parallel.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <sys/types.h>
#include <vector>

namespace fixture {

// A TCP port on 127.0.0.1 that was free when asked. A test that needs
// several distinct ports asks several times; the kernel does not hand out
// the same ephemeral port twice in a row.
uint16_t free_port();

// A TCP socket listening on `address` (host order, e.g. INADDR_LOOPBACK)
// and `port`, in the network namespace of the calling thread; -1 with
// errno set if it cannot be had.
int listening_socket(uint32_t address, uint16_t port);

// A TCP socket connected to 127.0.0.1:`port`, with the fixture's send and
// receive time-outs (10 s); -1 if the connection cannot be made.
int connected_socket(uint16_t port);

// The memcached binary under test: $MEMCACHED_BIN, else the single-threaded
// build of this tree.
std::string memcached_binary();

// Waits until `condition` holds, polling, for at most `timeout` (four
// times as long against a sanitized server: MEMCACHED_SANITIZER set). On
// timeout returns false; `last_seen`, if given, says what was observed
// last so the failure message can show it.
bool eventually(const std::function<bool()> &condition,
                std::chrono::milliseconds timeout = std::chrono::seconds(10),
                std::string *last_seen = nullptr,
                const std::function<std::string()> &describe = nullptr);

// One memcached process listening on one address only: 127.0.0.1, or
// `host` (a node in a network namespace, started while the calling thread
// is in it: see support/netns.hpp).
class Node {
public:
    // What starting a node waits for: until it answers `version` (a node
    // with peers opens its port only once its first resync is done), or
    // nothing, for a test that watches a node before it serves.
    enum class Wait { serving, nothing };

    // Starts the server with `-l <host> -p <port> -U 0` plus `args`, and
    // waits until it answers `version`. Throws (with the server's stderr) if
    // it exits or does not answer within 10 s. `env` ("NAME=value") is
    // added to the environment it inherits.
    explicit Node(std::vector<std::string> args = {}, uint16_t port = 0, Wait wait = Wait::serving,
                  std::vector<std::string> env = {}, std::string host = "127.0.0.1");
    ~Node();
    Node(const Node &) = delete;
    Node &operator=(const Node &) = delete;

    uint16_t port() const { return port_; }
    const std::string &host() const { return host_; }
    pid_t pid() const { return pid_; }
    bool running() const { return pid_ > 0; }

    // Stops the process by PID: SIGKILL (a crash) or SIGTERM (a clean stop).
    void kill9();
    void terminate();
    // Starts it again with the same port, arguments and environment.
    void restart(Wait wait = Wait::serving);
    // Waits until it answers `version`, for at most `timeout`: false on
    // timeout; throws (with its output) if it exits.
    bool wait_serving(std::chrono::milliseconds timeout);
    // Whether a client can connect to its port now.
    bool accepts_connections() const;
    // SIGSTOP / SIGCONT: a frozen peer.
    void freeze();
    void thaw();

    // What the server wrote on stderr so far.
    std::string log() const;
    // Resident set size in KiB, from /proc.
    long rss_kib() const;
    // CPU time used so far (user + system), in clock ticks (sysconf(_SC_CLK_TCK)).
    long cpu_ticks() const;

private:
    void start(Wait wait);
    void reap(int signal);

    std::vector<std::string> args_;
    std::vector<std::string> env_;
    uint16_t port_;
    std::string host_;
    pid_t pid_ = -1;
    std::string log_path_;
};

// An item as `gets` returns it.
struct Item {
    std::string value;
    uint32_t flags = 0;
    uint64_t cas = 0;
};

// A blocking ASCII-protocol connection. Each call sends one command and
// reads its whole reply; a reply the protocol does not allow throws.
class Client {
public:
    explicit Client(uint16_t port) : Client("127.0.0.1", port) {}
    Client(const std::string &host, uint16_t port);
    explicit Client(const Node &node) : Client(node.host(), node.port()) {}
    ~Client();
    Client(const Client &) = delete;
    Client &operator=(const Client &) = delete;

    // Storage commands return the server's reply line ("STORED", ...).
    std::string set(const std::string &key, const std::string &value,
                    uint32_t flags = 0, long exptime = 0);
    std::string add(const std::string &key, const std::string &value,
                    uint32_t flags = 0, long exptime = 0);
    std::string replace(const std::string &key, const std::string &value,
                        uint32_t flags = 0, long exptime = 0);
    std::string append(const std::string &key, const std::string &value);
    std::string prepend(const std::string &key, const std::string &value);
    std::string cas(const std::string &key, const std::string &value,
                    uint64_t unique, uint32_t flags = 0, long exptime = 0);
    std::optional<Item> get(const std::string &key);
    std::optional<Item> gets(const std::string &key);
    // Several keys in one request: only those found are in the map.
    std::map<std::string, Item> gets_many(const std::vector<std::string> &keys);
    std::string incr(const std::string &key, uint64_t by);
    std::string decr(const std::string &key, uint64_t by);
    std::string del(const std::string &key, long time = 0);
    std::string flush_all(long delay = -1);
    // `stats` or `stats <sub>`: name -> value.
    std::map<std::string, std::string> stats(const std::string &sub = "");

    // Sends raw bytes as they are (pipelining, malformed input).
    void send_raw(const std::string &bytes);
    // Reads one reply line, without its "\r\n".
    std::string read_line();

private:
    std::string store(const std::string &verb, const std::string &key,
                      const std::string &value, uint32_t flags, long exptime,
                      const std::string &extra = "");
    // Appends what the server sent next to buffer_; throws on EOF or error.
    void receive_more();
    std::string read_exact(size_t n);
    // Sends `get` or `gets` for the keys and reads the VALUE lines.
    std::map<std::string, Item> retrieve(const std::string &verb, const std::vector<std::string> &keys);
    std::string simple(const std::string &command);

    int fd_;
    std::string buffer_;
};

} // namespace fixture
