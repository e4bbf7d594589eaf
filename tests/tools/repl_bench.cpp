// repl-bench: load and timing tool for memcached 1.2.8 over the ASCII protocol.
//
// It measures what memaslap (memcaslap on Debian) cannot: latency
// percentiles (memaslap prints only min/avg/max and a log2 histogram),
// replication lag between two nodes, and how fast a node resyncs.
//
//   repl-bench run PORT THREADS REQUESTS SIZE GET_PERCENT [RATE]
//       THREADS connections, REQUESTS requests in all, SIZE-byte values,
//       GET_PERCENT gets (the rest sets) over 10,000 keys preloaded first.
//       RATE (requests/s, all threads together) paces the load; 0 or absent:
//       as fast as the server answers (closed loop, one request in flight
//       per connection).
//   repl-bench lag A_PORT B_PORT COUNT [GAP_US]
//       COUNT times: set a new key on A, then get it on B until it is there.
//       A sample is the time from sending the set to the first get on B
//       that returns it (so it includes A's set and B's get round trips).
//   repl-bench fill PORT COUNT SIZE [FIRST]
//       COUNT sets of SIZE-byte values, keys item:FIRST.. (default item:0..),
//       pipelined.
//   repl-bench wait-items PORT COUNT TIMEOUT_S [POLL_MS]
//       Polls `stats` every POLL_MS (default 5) until curr_items >= COUNT
//       (connecting as soon as the node listens); prints the time from our
//       start.
//   repl-bench thaw-wait PID PORT COUNT TIMEOUT_S
//       For a node frozen with SIGSTOP: connects to it (its kernel still
//       accepts), sends PID a SIGCONT, then polls `stats` every millisecond
//       until curr_items >= COUNT; prints the time from the SIGCONT (a
//       script that thaws the node, then starts wait-items, adds the
//       milliseconds of the start to a catch-up that may take fewer).
//   repl-bench fresh-memory MEGABYTES PAUSE_S
//       How fast this machine hands a process memory it has not touched yet:
//       writes one byte per 4 KB page of MEGABYTES of new anonymous memory,
//       first in 4 KB pages, then in transparent huge pages, each after
//       PAUSE_S seconds idle (a virtual machine's balloon driver may hand
//       pages freed earlier back to the hypervisor meanwhile, as it does to
//       the memory a new node gets). A node restarted empty pays this for
//       every slab a resync fills.
//
// Every mode prints one line of key=value pairs for scripts. Every loop is
// bounded by its count and by a deadline; only 127.0.0.1 is ever used.
#include <arpa/inet.h>
#include <csignal>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using Clock = std::chrono::steady_clock;
using std::chrono::duration;
using std::chrono::duration_cast;
using std::chrono::microseconds;
using std::chrono::nanoseconds;
using std::chrono::seconds;

namespace {

// No run may take longer than this, whatever its count.
const auto run_deadline = seconds(120);
const int keyspace = 10000;

class Connection {
public:
    explicit Connection(int port)
    {
        fd_ = socket(AF_INET, SOCK_STREAM, 0);
        if (fd_ < 0)
            throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
        sockaddr_in sa{};
        sa.sin_family = AF_INET;
        sa.sin_port = htons(static_cast<uint16_t>(port));
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (connect(fd_, reinterpret_cast<sockaddr *>(&sa), sizeof sa) != 0) {
            int err = errno;
            close(fd_);
            throw std::runtime_error("cannot connect to 127.0.0.1:" + std::to_string(port) + ": " +
                                     std::strerror(err));
        }
        int one = 1;
        setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        timeval tv{10, 0};
        setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    }
    ~Connection() { close(fd_); }
    Connection(const Connection &) = delete;
    Connection &operator=(const Connection &) = delete;

    void send_all(const std::string &data)
    {
        size_t done = 0;
        while (done < data.size()) {
            ssize_t n = ::send(fd_, data.data() + done, data.size() - done, MSG_NOSIGNAL);
            if (n <= 0)
                throw std::runtime_error(std::string("send: ") + std::strerror(errno));
            done += static_cast<size_t>(n);
        }
    }

    // Reads until `marker` has been seen `times` times; returns what was read.
    std::string read_until(const std::string &marker, size_t times = 1)
    {
        size_t seen = 0, scan = 0;
        for (;;) {
            size_t at;
            while ((at = buffer_.find(marker, scan)) != std::string::npos) {
                scan = at + marker.size();
                if (++seen == times) {
                    std::string out = buffer_.substr(0, scan);
                    buffer_.erase(0, scan);
                    return out;
                }
            }
            // The marker may straddle what we have and what comes next.
            scan = buffer_.size() >= marker.size() ? std::max(scan, buffer_.size() - marker.size() + 1) : scan;
            char chunk[65536];
            ssize_t n = recv(fd_, chunk, sizeof chunk, 0);
            if (n == 0)
                throw std::runtime_error("the server closed the connection");
            if (n < 0)
                throw std::runtime_error(std::string("recv: ") + std::strerror(errno));
            buffer_.append(chunk, static_cast<size_t>(n));
        }
    }

private:
    int fd_;
    std::string buffer_;
};

std::string set_command(const std::string &key, const std::string &value)
{
    return "set " + key + " 0 0 " + std::to_string(value.size()) + "\r\n" + value + "\r\n";
}

// Percentile p (0..1) of samples, nearest rank; sorts in place.
double percentile_us(std::vector<int64_t> &ns, double p)
{
    if (ns.empty())
        return 0;
    std::sort(ns.begin(), ns.end());
    size_t rank = static_cast<size_t>(p * static_cast<double>(ns.size()) + 0.999999);
    rank = std::min(ns.size(), std::max<size_t>(rank, 1));
    return static_cast<double>(ns[rank - 1]) / 1000.0;
}

// Cheap per-thread generator; quality is irrelevant, speed is not.
struct XorShift {
    uint64_t s;
    uint64_t next()
    {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        return s;
    }
};

int run(int port, int threads, long requests, long size, int get_percent, double rate)
{
    const std::string value(static_cast<size_t>(size), 'x');
    if (get_percent > 0) {
        // Gets should hit: store every key once, untimed.
        Connection c(port);
        for (int i = 0; i < keyspace; i += 100) {
            std::string out;
            for (int j = i; j < i + 100; j++)
                out += set_command("bench:" + std::to_string(j), value);
            c.send_all(out);
            c.read_until("STORED\r\n", 100);
        }
    }

    std::vector<std::vector<int64_t>> latencies(static_cast<size_t>(threads));
    std::atomic<long> errors{0}, misses{0};
    std::vector<std::string> failures(static_cast<size_t>(threads));
    const auto start = Clock::now();
    const auto deadline = start + run_deadline;
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; t++) {
        workers.emplace_back([&, t] {
            long mine = requests / threads + (t < requests % threads ? 1 : 0);
            auto &lat = latencies[static_cast<size_t>(t)];
            lat.reserve(static_cast<size_t>(mine));
            XorShift rng{0x9E3779B97F4A7C15ULL * static_cast<uint64_t>(t + 1)};
            // Each thread paces itself at its share of the rate.
            const nanoseconds gap = rate > 0 ? nanoseconds(static_cast<int64_t>(1e9 * threads / rate)) : nanoseconds(0);
            try {
                Connection c(port);
                auto due = Clock::now();
                for (long i = 0; i < mine; i++) {
                    if (gap.count() > 0) {
                        due += gap;
                        std::this_thread::sleep_until(due);
                    }
                    if ((i & 1023) == 0 && Clock::now() > deadline)
                        break;
                    std::string key = "bench:" + std::to_string(rng.next() % keyspace);
                    bool get = static_cast<int>(rng.next() % 100) < get_percent;
                    auto sent = Clock::now();
                    if (get) {
                        c.send_all("get " + key + "\r\n");
                        std::string reply = c.read_until("END\r\n");
                        if (reply.compare(0, 6, "VALUE ") != 0)
                            misses++;
                    } else {
                        c.send_all(set_command(key, value));
                        std::string reply = c.read_until("\r\n");
                        if (reply != "STORED\r\n")
                            errors++;
                    }
                    lat.push_back(duration_cast<nanoseconds>(Clock::now() - sent).count());
                }
            } catch (const std::exception &e) {
                failures[static_cast<size_t>(t)] = e.what();
                errors++;
            }
        });
    }
    for (auto &w : workers)
        w.join();
    double elapsed = duration<double>(Clock::now() - start).count();

    std::vector<int64_t> all;
    for (auto &l : latencies)
        all.insert(all.end(), l.begin(), l.end());
    for (auto &f : failures)
        if (!f.empty())
            std::fprintf(stderr, "repl-bench run: a connection failed: %s\n", f.c_str());
    double p50 = percentile_us(all, 0.50), p99 = percentile_us(all, 0.99), max = percentile_us(all, 1.0);
    std::printf("requests=%zu seconds=%.3f ops_per_s=%.0f p50_us=%.1f p99_us=%.1f max_us=%.1f "
                "misses=%ld errors=%ld\n",
                all.size(), elapsed, static_cast<double>(all.size()) / elapsed, p50, p99, max,
                misses.load(), errors.load());
    return errors == 0 && static_cast<long>(all.size()) == requests ? 0 : 1;
}

int lag(int a_port, int b_port, long count, long gap_us)
{
    Connection a(a_port), b(b_port);
    std::vector<int64_t> lags;
    long lost = 0, polls = 0;
    const auto deadline = Clock::now() + run_deadline;
    // A run-unique prefix, so that keys from an earlier run never count.
    const std::string prefix = "lag:" + std::to_string(getpid()) + ":";
    for (long i = 0; i < count && Clock::now() < deadline; i++) {
        const std::string key = prefix + std::to_string(i);
        const auto start = Clock::now();
        a.send_all(set_command(key, std::to_string(i)));
        if (a.read_until("\r\n") != "STORED\r\n")
            throw std::runtime_error("set on A failed");
        bool seen = false;
        while (Clock::now() - start < seconds(2)) {
            b.send_all("get " + key + "\r\n");
            polls++;
            if (b.read_until("END\r\n").compare(0, 6, "VALUE ") == 0) {
                seen = true;
                break;
            }
        }
        auto ns = duration_cast<nanoseconds>(Clock::now() - start).count();
        if (seen)
            lags.push_back(ns);
        else
            lost++;
        if (gap_us > 0)
            std::this_thread::sleep_until(start + microseconds(gap_us));
    }
    size_t n = lags.size();
    double p50 = percentile_us(lags, 0.50), p99 = percentile_us(lags, 0.99), max = percentile_us(lags, 1.0);
    std::printf("samples=%zu p50_us=%.1f p99_us=%.1f max_us=%.1f gets_per_sample=%.2f not_seen_in_2s=%ld\n", n,
                p50, p99, max, n ? static_cast<double>(polls) / static_cast<double>(n + static_cast<size_t>(lost)) : 0.0,
                lost);
    return lost == 0 ? 0 : 1;
}

int fill(int port, long count, long size, long first)
{
    Connection c(port);
    const std::string value(static_cast<size_t>(size), 'v');
    // About 32 KiB of sets per round trip: 1.2.8 slows down sharply when
    // a connection's read buffer holds more (64 KiB batches: 2x slower).
    const long batch = std::max(1L, 32768 / (size + 32));
    const auto start = Clock::now();
    for (long i = 0; i < count; i += batch) {
        if (Clock::now() - start > run_deadline)
            throw std::runtime_error("fill: not done after 120 s, at item " + std::to_string(first + i));
        std::string out;
        long n = std::min(batch, count - i);
        for (long j = 0; j < n; j++)
            out += set_command("item:" + std::to_string(first + i + j), value);
        c.send_all(out);
        std::string replies = c.read_until("\r\n", static_cast<size_t>(n));
        if (replies.find("STORED\r\n") != 0 || replies.size() != static_cast<size_t>(n) * 8)
            throw std::runtime_error("fill: a set was not stored near item " + std::to_string(first + i) + ": " +
                                     replies.substr(0, 80));
    }
    double s = duration<double>(Clock::now() - start).count();
    std::printf("items=%ld size=%ld seconds=%.3f items_per_s=%.0f\n", count, size, s, static_cast<double>(count) / s);
    return 0;
}

long curr_items(Connection &c)
{
    c.send_all("stats\r\n");
    std::string reply = c.read_until("END\r\n");
    size_t at = reply.find("STAT curr_items ");
    if (at == std::string::npos)
        throw std::runtime_error("stats has no curr_items");
    return std::atol(reply.c_str() + at + 16);
}

// Polls `stats` every poll_ms until curr_items >= count or the deadline;
// prints the time since start.
int poll_items(Connection &c, long count, Clock::time_point start, Clock::time_point deadline, long poll_ms)
{
    long items = 0;
    while ((items = curr_items(c)) < count && Clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(poll_ms));
    double s = duration<double>(Clock::now() - start).count();
    std::printf("items=%ld seconds=%.4f items_per_s=%.0f complete=%d\n", items, s, static_cast<double>(items) / s,
                items >= count ? 1 : 0);
    return items >= count ? 0 : 1;
}

int wait_items(int port, long count, long timeout_s, long poll_ms)
{
    const auto start = Clock::now();
    const auto deadline = start + seconds(timeout_s);
    std::unique_ptr<Connection> c;
    while (!c) {
        try {
            c = std::make_unique<Connection>(port);
        } catch (const std::exception &e) {
            if (Clock::now() > deadline)
                throw;
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
        }
    }
    return poll_items(*c, count, start, deadline, poll_ms);
}

int thaw_wait(long pid, int port, long count, long timeout_s)
{
    Connection c(port);
    const auto start = Clock::now();
    if (kill(static_cast<pid_t>(pid), SIGCONT) != 0)
        throw std::runtime_error("cannot send SIGCONT to " + std::to_string(pid) + ": " + std::strerror(errno));
    return poll_items(c, count, start, start + seconds(timeout_s), 1);
}

// fresh_touch: seconds to write one byte per 4 KB page of `bytes` of new
// memory, in huge pages or not.
double fresh_touch(size_t bytes, bool huge)
{
    const size_t huge_page = 2 << 20;
    // Over-map by one huge page to align the start, as THP needs.
    void *raw = mmap(nullptr, bytes + huge_page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED)
        throw std::runtime_error(std::string("mmap: ") + std::strerror(errno));
    auto *p = reinterpret_cast<char *>((reinterpret_cast<uintptr_t>(raw) + huge_page - 1) & ~(huge_page - 1));
    if (madvise(p, bytes, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE) != 0)
        throw std::runtime_error(std::string("madvise: ") + std::strerror(errno));
    const auto start = Clock::now();
    for (size_t off = 0; off < bytes; off += 4096)
        p[off] = 1;
    double s = duration<double>(Clock::now() - start).count();
    munmap(raw, bytes + huge_page);
    return s;
}

int fresh_memory(long megabytes, long pause_s)
{
    const size_t bytes = static_cast<size_t>(megabytes) << 20;
    std::this_thread::sleep_for(seconds(pause_s));
    double small_s = fresh_touch(bytes, false);
    std::this_thread::sleep_for(seconds(pause_s));
    double huge_s = fresh_touch(bytes, true);
    std::printf("megabytes=%ld pages_4k_s=%.3f pages_4k_gb_per_s=%.2f huge_pages_s=%.3f huge_pages_gb_per_s=%.2f\n",
                megabytes, small_s, static_cast<double>(bytes) / 1e9 / small_s, huge_s,
                static_cast<double>(bytes) / 1e9 / huge_s);
    return 0;
}

[[noreturn]] void usage()
{
    std::fprintf(stderr, "usage: repl-bench run PORT THREADS REQUESTS SIZE GET_PERCENT [RATE]\n"
                         "       repl-bench lag A_PORT B_PORT COUNT [GAP_US]\n"
                         "       repl-bench fill PORT COUNT SIZE [FIRST]\n"
                         "       repl-bench wait-items PORT COUNT TIMEOUT_S [POLL_MS]\n"
                         "       repl-bench thaw-wait PID PORT COUNT TIMEOUT_S\n"
                         "       repl-bench fresh-memory MEGABYTES PAUSE_S\n");
    std::exit(2);
}

long number(const char *arg)
{
    char *end;
    long v = std::strtol(arg, &end, 10);
    if (*arg == '\0' || *end != '\0' || v < 0) {
        std::fprintf(stderr, "repl-bench: '%s' is not a non-negative number\n", arg);
        usage();
    }
    return v;
}

} // namespace

int main(int argc, char **argv)
{
    std::vector<long> n;
    for (int i = 2; i < argc; i++)
        n.push_back(number(argv[i]));
    const std::string mode = argc > 1 ? argv[1] : "";
    try {
        if (mode == "run" && (n.size() == 5 || n.size() == 6) && n[1] > 0 && n[4] <= 100)
            return run(static_cast<int>(n[0]), static_cast<int>(n[1]), n[2], n[3], static_cast<int>(n[4]),
                       n.size() == 6 ? static_cast<double>(n[5]) : 0.0);
        if (mode == "lag" && (n.size() == 3 || n.size() == 4))
            return lag(static_cast<int>(n[0]), static_cast<int>(n[1]), n[2], n.size() == 4 ? n[3] : 0);
        if (mode == "fill" && (n.size() == 3 || n.size() == 4))
            return fill(static_cast<int>(n[0]), n[1], n[2], n.size() == 4 ? n[3] : 0);
        if (mode == "wait-items" && (n.size() == 3 || n.size() == 4))
            return wait_items(static_cast<int>(n[0]), n[1], n[2], n.size() == 4 ? n[3] : 5);
        if (mode == "thaw-wait" && n.size() == 4 && n[0] > 0)
            return thaw_wait(n[0], static_cast<int>(n[1]), n[2], n[3]);
        if (mode == "fresh-memory" && n.size() == 2 && n[0] > 0)
            return fresh_memory(n[0], n[1]);
    } catch (const std::exception &e) {
        std::fprintf(stderr, "repl-bench %s: %s\n", mode.c_str(), e.what());
        return 2;
    }
    usage();
}
