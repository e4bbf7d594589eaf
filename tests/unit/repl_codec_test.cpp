// The replication wire format (repl_codec.h): what goes out comes back the
// same, and every way a peer's bytes can be wrong gets its own status.
#include <catch2/catch.hpp>

#include "repl_codec.h"
#include "support/codec_fuzz.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace {

using namespace std::string_literals;

// A frame as a value: repl_frame, with the bytes it points to copied in.
struct Frame {
    int type = 0;
    uint64_t seq = 0;
    uint64_t version = 0, exptime = 0;
    uint32_t flags = 0;
    std::string key, value;
    uint64_t items = 0;
    uint16_t proto_version = 0;
    uint8_t node_id = 0;
    uint64_t instance_id = 0;
    uint16_t listen_port = 0;
    std::string cluster;
    uint8_t auth = 0;
    std::string nonce;      // HELLO: REPL_NONCE_LEN bytes
    std::string mac;        // AUTH: REPL_MAC_LEN bytes
    uint8_t mode = 0;       // SYNC_BEGIN

    bool operator==(const Frame &o) const
    {
        return type == o.type && seq == o.seq && mode == o.mode && version == o.version && exptime == o.exptime && flags == o.flags
            && key == o.key && value == o.value && items == o.items && proto_version == o.proto_version
            && node_id == o.node_id && instance_id == o.instance_id && listen_port == o.listen_port
            && cluster == o.cluster && auth == o.auth && nonce == o.nonce && mac == o.mac;
    }
};

Frame set_frame(uint64_t version, uint64_t exptime, uint32_t flags, std::string key, std::string value)
{
    Frame f;
    f.type = REPL_FRAME_SET;
    f.version = version, f.exptime = exptime, f.flags = flags;
    f.key = std::move(key), f.value = std::move(value);
    return f;
}

Frame delete_frame(uint64_t version, uint64_t hold_until, std::string key)
{
    Frame f;
    f.type = REPL_FRAME_DELETE;
    f.version = version, f.exptime = hold_until, f.key = std::move(key);
    return f;
}

Frame flush_frame(uint64_t version, uint64_t when)
{
    Frame f;
    f.type = REPL_FRAME_FLUSH;
    f.version = version, f.exptime = when;
    return f;
}

// A write as its origin queues it: numbered.
Frame numbered(Frame f, uint64_t seq)
{
    f.seq = seq;
    return f;
}

Frame sync_begin_frame(uint8_t mode, uint64_t seq)
{
    Frame f;
    f.type = REPL_FRAME_SYNC_BEGIN;
    f.mode = mode, f.seq = seq;
    return f;
}

Frame ack_frame(uint64_t seq)
{
    Frame f;
    f.type = REPL_FRAME_ACK;
    f.seq = seq;
    return f;
}

Frame resume_frame(uint64_t instance_id, uint64_t seq)
{
    Frame f;
    f.type = REPL_FRAME_RESUME;
    f.instance_id = instance_id, f.seq = seq;
    return f;
}

Frame sync_end_frame(uint64_t items)
{
    Frame f;
    f.type = REPL_FRAME_SYNC_END;
    f.items = items;
    return f;
}

Frame empty_frame(int type)
{
    Frame f;
    f.type = type;
    return f;
}

Frame hello_frame(uint8_t node_id, uint64_t instance_id, std::string cluster, uint16_t listen_port = 11212)
{
    Frame f;
    f.type = REPL_FRAME_HELLO;
    f.proto_version = REPL_PROTO_VERSION, f.node_id = node_id, f.instance_id = instance_id;
    f.listen_port = listen_port;
    f.cluster = std::move(cluster);
    f.nonce = std::string(REPL_NONCE_LEN, '\0');
    return f;
}

// A HELLO of a node with a secret (-K): its method, and its nonce.
Frame authenticating_hello(uint8_t node_id, uint64_t instance_id, std::string cluster, std::string nonce)
{
    Frame f = hello_frame(node_id, instance_id, std::move(cluster));
    f.auth = REPL_AUTH_HMAC_SHA256;
    f.nonce = std::move(nonce);
    return f;
}

Frame auth_frame(std::string mac)
{
    Frame f;
    f.type = REPL_FRAME_AUTH;
    f.mac = std::move(mac);
    return f;
}

// The repl_frame that f describes; it points into f.
repl_frame view(const Frame &f)
{
    repl_frame r;
    std::memset(&r, 0, sizeof r);
    r.type = uint8_t(f.type);
    r.seq = f.seq, r.mode = f.mode;
    r.version = f.version, r.exptime = f.exptime, r.flags = f.flags;
    r.key = f.key.data(), r.nkey = uint8_t(f.key.size());
    r.value = f.value.data(), r.nvalue = uint32_t(f.value.size());
    r.items = f.items;
    r.proto_version = f.proto_version, r.node_id = f.node_id, r.instance_id = f.instance_id;
    r.listen_port = f.listen_port;
    r.cluster = f.cluster.data(), r.ncluster = uint8_t(f.cluster.size());
    r.auth = f.auth;
    r.nonce = f.nonce.empty() ? nullptr : f.nonce.data();
    r.mac = f.mac.empty() ? nullptr : f.mac.data();
    return r;
}

Frame copy(const repl_frame &r)
{
    Frame f;
    f.type = r.type;
    f.seq = r.seq, f.mode = r.mode;
    f.version = r.version, f.exptime = r.exptime, f.flags = r.flags;
    if (r.key)
        f.key.assign(r.key, r.nkey);
    if (r.value)
        f.value.assign(r.value, r.nvalue);
    f.items = r.items;
    f.proto_version = r.proto_version, f.node_id = r.node_id, f.instance_id = r.instance_id;
    f.listen_port = r.listen_port;
    if (r.cluster)
        f.cluster.assign(r.cluster, r.ncluster);
    f.auth = r.auth;
    if (r.nonce)
        f.nonce.assign(r.nonce, REPL_NONCE_LEN);
    if (r.mac)
        f.mac.assign(r.mac, REPL_MAC_LEN);
    return f;
}

std::string encode(const Frame &f)
{
    repl_frame r = view(f);
    std::string bytes(repl_encoded_size(&r), '\0');
    size_t written = 0;
    int status = repl_encode(&r, &bytes[0], bytes.size(), &written);
    if (status != REPL_OK || written != bytes.size())
        throw std::runtime_error("repl_encode: "s + repl_strerror(status));
    return bytes;
}

// Memory whose end is followed by an unreadable page: the decoder reading
// one byte past the buffer it is given crashes the test instead of passing.
class GuardedBuffer {
public:
    explicit GuardedBuffer(size_t capacity)
        : page_(size_t(sysconf(_SC_PAGESIZE))), size_((capacity + page_ - 1) / page_ * page_ + page_)
    {
        void *p = mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            throw std::runtime_error("GuardedBuffer: mmap failed");
        base_ = static_cast<char *>(p);
        if (mprotect(base_ + size_ - page_, page_, PROT_NONE) != 0)
            throw std::runtime_error("GuardedBuffer: mprotect failed");
    }
    ~GuardedBuffer() { munmap(base_, size_); }
    GuardedBuffer(const GuardedBuffer &) = delete;
    GuardedBuffer &operator=(const GuardedBuffer &) = delete;

    // Copies bytes[0, n) so that they end right before the guard page.
    const char *place(const std::string &bytes, size_t n)
    {
        if (n > size_ - page_)
            throw std::runtime_error("GuardedBuffer: too small");
        char *p = base_ + size_ - page_ - n;
        std::memcpy(p, bytes.data(), n);
        return p;
    }
    const char *place(const std::string &bytes) { return place(bytes, bytes.size()); }

private:
    size_t page_, size_;
    char *base_ = nullptr;
};

GuardedBuffer &guarded()
{
    static GuardedBuffer buffer(2 * REPL_FRAME_MAX);
    return buffer;
}

struct Decoded {
    int status;
    size_t consumed;
    Frame frame;
};

// Decodes bytes[0, n), placed right before a guard page.
Decoded decode(const std::string &bytes, size_t n)
{
    repl_frame r;
    std::memset(&r, 0, sizeof r);
    size_t consumed = 0;
    int status = repl_decode(guarded().place(bytes, n), n, &r, &consumed);
    return {status, consumed, status == REPL_OK ? copy(r) : Frame()};
}

Decoded decode(const std::string &bytes) { return decode(bytes, bytes.size()); }

// Hand-made wire bytes, for what the encoder refuses to write.
struct Wire {
    std::string bytes;
    Wire &u8(uint64_t v) { bytes += char(v & 0xff); return *this; }
    Wire &u16(uint64_t v) { return u8(v >> 8).u8(v); }
    Wire &u32(uint64_t v) { return u16(v >> 16).u16(v); }
    Wire &u64(uint64_t v) { return u32(v >> 32).u32(v); }
    Wire &raw(const std::string &s) { bytes += s; return *this; }
};

// A frame around a body: the length counts the type and the body.
std::string frame_of(uint8_t type, const std::string &body)
{
    return Wire().u32(1 + body.size()).u8(type).raw(body).bytes;
}

std::string hello_body(uint32_t magic, uint16_t version, const std::string &cluster, uint8_t auth = 0)
{
    return Wire().u32(magic).u16(version).u8(2).u64(99).u16(11212).u8(cluster.size()).raw(cluster)
        .u8(auth).raw(std::string(REPL_NONCE_LEN, 'n')).bytes;
}

std::string set_body(const std::string &key, const std::string &value)
{
    return Wire().u64(5).u64(1).u64(0).u32(0).u8(key.size()).raw(key).u32(value.size()).raw(value).bytes;
}

std::string delete_body(const std::string &key)
{
    return Wire().u64(5).u64(1).u64(0).u8(key.size()).raw(key).bytes;
}

// Every byte value, so that nothing in a value is special.
std::string all_bytes()
{
    std::string s;
    for (int c = 0; c < 256; c++)
        s += char(c);
    return s;
}

std::string pseudo_random_bytes(size_t n, uint32_t seed)
{
    std::mt19937 rng(seed);
    std::string s(n, '\0');
    for (auto &c : s)
        c = char(rng());
    return s;
}

// One of each frame type and the edges of each field; the last one is
// the largest SET there is.
std::vector<std::pair<std::string, Frame>> sample_frames()
{
    const uint64_t max64 = UINT64_MAX;
    std::string high_key;   // the bytes 0x80-0xff: allowed, the ASCII protocol lets them through
    for (int c = 0x80; c <= 0xff; c++)
        high_key += char(c);
    return {
        {"HELLO", hello_frame(2, 0x0123456789abcdefULL, "cache-eu", 11212)},
        {"HELLO, extreme ids, the highest listen port and the longest cluster name",
         hello_frame(255, max64, std::string(REPL_MAX_CLUSTER_NAME, '~'), UINT16_MAX)},
        {"HELLO, listen port 1", hello_frame(0, 0, "c", 1)},
        {"HELLO of a node with a secret", authenticating_hello(3, 42, "cache-eu", pseudo_random_bytes(REPL_NONCE_LEN, 7))},
        {"AUTH", auth_frame(pseudo_random_bytes(REPL_MAC_LEN, 8))},
        {"AUTH of every byte value at its ends", auth_frame("\0"s + std::string(REPL_MAC_LEN - 2, '\x80') + "\xff")},
        {"SET", set_frame(0x0000123456789a02ULL, 1795478400, 0xdeadbeef, "user:42", "hello")},
        {"SET of every byte value", set_frame(1, 0, 0, "bin", all_bytes())},
        {"SET, key of bytes 0x80-0xff", set_frame(2, 0, 0, high_key.substr(0, 100), "v")},
        {"SET, empty value", set_frame(3, 0, 0, "k", "")},
        {"SET, longest key", set_frame(4, 0, 0, std::string(REPL_KEY_MAX, 'k'), "v")},
        {"SET, extreme numbers", set_frame(max64, max64, UINT32_MAX, "!", "~")},
        {"DELETE", delete_frame(77, 0, "user:42")},
        {"DELETE, held, longest key", delete_frame(max64, 1795478460, std::string(REPL_KEY_MAX, 'd'))},
        {"FLUSH", flush_frame(78, 0)},
        {"FLUSH, delayed", flush_frame(max64, max64)},
        {"SYNC_BEGIN", sync_begin_frame(REPL_SYNC_FULL, 0)},
        {"SYNC_BEGIN of a full resync, the stream going on after write 1000",
         sync_begin_frame(REPL_SYNC_FULL, 1000)},
        {"SYNC_BEGIN of a partial resync, extreme seq", sync_begin_frame(REPL_SYNC_PARTIAL, max64)},
        {"SET, numbered", numbered(set_frame(6, 0, 0, "user:42", "v"), 1)},
        {"SET, extreme seq", numbered(set_frame(7, 0, 0, "k", "v"), max64)},
        {"DELETE, numbered", numbered(delete_frame(78, 0, "user:42"), 2)},
        {"FLUSH, numbered", numbered(flush_frame(79, 0), 3)},
        {"ACK", ack_frame(3)},
        {"ACK of nothing yet", ack_frame(0)},
        {"ACK, extreme seq", ack_frame(max64)},
        {"ACK_REQUEST", empty_frame(REPL_FRAME_ACK_REQUEST)},
        {"RESUME", resume_frame(0x0123456789abcdefULL, 1000)},
        {"RESUME of nothing", resume_frame(0, 0)},
        {"RESUME, extreme numbers", resume_frame(max64, max64)},
        {"SYNC_END", sync_end_frame(1000000)},
        {"SYNC_END, extreme count", sync_end_frame(max64)},
        {"PING", empty_frame(REPL_FRAME_PING)},
        {"SET, largest value",
         set_frame(5, 0, 0, std::string(REPL_KEY_MAX, 'K'), pseudo_random_bytes(REPL_VALUE_MAX, 1))},
    };
}

// A value as test output: short, escaped, with its length.
std::string printable(const std::string &s)
{
    std::string out = "\"";
    for (size_t i = 0; i < s.size() && i < 48; i++) {
        unsigned char c = s[i];
        if (c >= ' ' && c < 0x7f && c != '"' && c != '\\') {
            out += char(c);
        } else {
            char hex[8];
            std::snprintf(hex, sizeof hex, "\\x%02x", c);
            out += hex;
        }
    }
    return out + (s.size() > 48 ? "\"... (" : "\" (") + std::to_string(s.size()) + " bytes)";
}

} // namespace

namespace Catch {
template <> struct StringMaker<Frame> {
    static std::string convert(const Frame &f)
    {
        return "{type " + std::to_string(f.type) + ", seq " + std::to_string(f.seq) + ", mode "
            + std::to_string(f.mode) + ", version " + std::to_string(f.version) + ", exptime "
            + std::to_string(f.exptime) + ", flags " + std::to_string(f.flags) + ", key " + printable(f.key)
            + ", value " + printable(f.value) + ", items " + std::to_string(f.items) + ", proto "
            + std::to_string(f.proto_version) + ", node " + std::to_string(f.node_id) + ", instance "
            + std::to_string(f.instance_id) + ", listen port " + std::to_string(f.listen_port) + ", cluster "
            + printable(f.cluster) + ", auth " + std::to_string(f.auth) + ", nonce " + printable(f.nonce)
            + ", mac " + printable(f.mac) + "}";
    }
};
} // namespace Catch

// --- What goes out comes back -------------------------------------------------

TEST_CASE("every frame type comes back from the wire exactly as it was sent", "[codec]")
{
    for (const auto &[name, frame] : sample_frames()) {
        INFO(name);
        std::string bytes = encode(frame);
        repl_frame r = view(frame);
        CHECK(repl_encoded_size(&r) == bytes.size());

        Decoded d = decode(bytes);
        REQUIRE(d.status == REPL_OK);
        CHECK(d.consumed == bytes.size());
        CHECK(d.frame == frame);
    }
}

TEST_CASE("frames are laid out big-endian, the length counting the type and the body", "[codec]")
{
    SECTION("SET") {
        std::string bytes = encode(numbered(
            set_frame(0x0102030405060708ULL, 0x1112131415161718ULL, 0x21222324, "k", "v"), 0x3132333435363738ULL));
        CHECK(bytes == "\x00\x00\x00\x24\x02"
                       "\x31\x32\x33\x34\x35\x36\x37\x38"
                       "\x01\x02\x03\x04\x05\x06\x07\x08" "\x11\x12\x13\x14\x15\x16\x17\x18"
                       "\x21\x22\x23\x24" "\x01k" "\x00\x00\x00\x01v"s);
    }
    SECTION("HELLO") {
        std::string bytes = encode(hello_frame(7, 0x0102030405060708ULL, "eu", 0x2bcc));
        CHECK(bytes == "\x00\x00\x00\x36\x01" "RPNG" "\x00\x04" "\x07"
                       "\x01\x02\x03\x04\x05\x06\x07\x08" "\x2b\xcc" "\x02" "eu" "\x00"s
                       + std::string(REPL_NONCE_LEN, '\0'));
    }
    SECTION("HELLO of a node with a secret") {
        std::string nonce = pseudo_random_bytes(REPL_NONCE_LEN, 3);
        std::string bytes = encode(authenticating_hello(7, 0x0102030405060708ULL, "eu", nonce));
        CHECK(bytes.size() == 0x3a);
        CHECK(bytes.substr(bytes.size() - REPL_NONCE_LEN - 1) == "\x01"s + nonce);
    }
    SECTION("AUTH") {
        std::string mac = pseudo_random_bytes(REPL_MAC_LEN, 4);
        CHECK(encode(auth_frame(mac)) == "\x00\x00\x00\x21\x08"s + mac);
    }
    SECTION("PING") {
        CHECK(encode(empty_frame(REPL_FRAME_PING)) == "\x00\x00\x00\x01\x07"s);
    }
    SECTION("DELETE and FLUSH: the seq first") {
        CHECK(encode(numbered(delete_frame(2, 3, "k"), 1)) == "\x00\x00\x00\x1b\x03"
                                                              "\x00\x00\x00\x00\x00\x00\x00\x01"
                                                              "\x00\x00\x00\x00\x00\x00\x00\x02"
                                                              "\x00\x00\x00\x00\x00\x00\x00\x03" "\x01k"s);
        CHECK(encode(numbered(flush_frame(2, 3), 1)) == "\x00\x00\x00\x19\x04"
                                                        "\x00\x00\x00\x00\x00\x00\x00\x01"
                                                        "\x00\x00\x00\x00\x00\x00\x00\x02"
                                                        "\x00\x00\x00\x00\x00\x00\x00\x03"s);
    }
    SECTION("SYNC_BEGIN, ACK, ACK_REQUEST and RESUME") {
        CHECK(encode(sync_begin_frame(REPL_SYNC_PARTIAL, 0x0102030405060708ULL))
              == "\x00\x00\x00\x0a\x05" "\x01" "\x01\x02\x03\x04\x05\x06\x07\x08"s);
        CHECK(encode(ack_frame(0x0102030405060708ULL)) == "\x00\x00\x00\x09\x09" "\x01\x02\x03\x04\x05\x06\x07\x08"s);
        CHECK(encode(empty_frame(REPL_FRAME_ACK_REQUEST)) == "\x00\x00\x00\x01\x0a"s);
        CHECK(encode(resume_frame(0x1112131415161718ULL, 0x0102030405060708ULL))
              == "\x00\x00\x00\x11\x0b" "\x11\x12\x13\x14\x15\x16\x17\x18"
                 "\x01\x02\x03\x04\x05\x06\x07\x08"s);
    }
    SECTION("a numbered write holds its seq at REPL_SEQ_OFFSET, whatever its type") {
        for (const Frame &f : {numbered(set_frame(1, 2, 3, "k", "v"), 0x0102030405060708ULL),
                               numbered(delete_frame(1, 2, "k"), 0x0102030405060708ULL),
                               numbered(flush_frame(1, 2), 0x0102030405060708ULL)})
            CHECK(encode(f).substr(REPL_SEQ_OFFSET, 8) == "\x01\x02\x03\x04\x05\x06\x07\x08"s);
    }
}

TEST_CASE("the hot-path SET encoder writes what the general encoder writes", "[codec]")
{
    Frame f = numbered(set_frame(9, 1795478400, 42, "user:42", all_bytes()), 77);
    std::string expected = encode(f);

    std::string bytes(repl_set_size(uint8_t(f.key.size()), uint32_t(f.value.size())), '\0');
    size_t written = 0;
    REQUIRE(repl_encode_set(&bytes[0], bytes.size(), &written, f.seq, f.version, f.exptime, f.flags, f.key.data(),
                            uint8_t(f.key.size()), f.value.data(), uint32_t(f.value.size())) == REPL_OK);
    CHECK(written == bytes.size());
    CHECK(bytes == expected);
}

TEST_CASE("a stream of frames decodes one frame at a time", "[codec]")
{
    std::vector<std::pair<std::string, Frame>> samples = sample_frames();
    std::string stream;
    for (const auto &sample : samples)
        stream += encode(sample.second);
    std::string partial = encode(samples[0].second);
    stream += partial.substr(0, partial.size() - 1);

    size_t at = 0;
    for (const auto &[name, frame] : samples) {
        INFO(name << " at offset " << at);
        Decoded d = decode(stream.substr(at));
        REQUIRE(d.status == REPL_OK);
        CHECK(d.frame == frame);
        at += d.consumed;
    }
    CHECK(decode(stream.substr(at)).status == REPL_NEED_MORE);
}

// --- Frames that have not all arrived ---------------------------------------

TEST_CASE("a frame cut at any byte asks for more and reads nothing past the cut", "[codec]")
{
    auto samples = sample_frames();
    for (const auto &[name, frame] : samples) {
        std::string bytes = encode(frame);
        bool large = bytes.size() > 4096;
        std::vector<size_t> cuts;
        for (size_t cut = 0; cut < bytes.size(); cut++)
            if (!large || cut < 64 || cut % 4093 == 0 || cut + 64 > bytes.size())
                cuts.push_back(cut);

        INFO(name);
        size_t wrong = 0, first_wrong = 0;
        int first_status = 0;
        for (size_t cut : cuts) {
            int status = decode(bytes, cut).status;
            if (status != REPL_NEED_MORE && wrong++ == 0)
                first_wrong = cut, first_status = status;
        }
        INFO(wrong << " of " << cuts.size() << " cuts did not ask for more; the first, after "
             << first_wrong << " bytes: " << repl_strerror(first_status));
        CHECK(wrong == 0);
    }
}

// --- What a peer can get wrong ----------------------------------------------

TEST_CASE("a length over the frame limit is refused as soon as the length arrives", "[codec]")
{
    CHECK(decode(Wire().u32(REPL_FRAME_MAX + 1).bytes).status == REPL_E_TOO_LARGE);
    CHECK(decode(Wire().u32(UINT32_MAX).u8(REPL_FRAME_SET).bytes).status == REPL_E_TOO_LARGE);
    // The limit itself is allowed: wait for the rest.
    CHECK(decode(Wire().u32(REPL_FRAME_MAX).u8(REPL_FRAME_SET).bytes).status == REPL_NEED_MORE);
}

TEST_CASE("a frame without a type is malformed", "[codec]")
{
    CHECK(decode(Wire().u32(0).bytes).status == REPL_E_MALFORMED);
    CHECK(decode(Wire().u32(0).raw(encode(empty_frame(REPL_FRAME_PING))).bytes).status == REPL_E_MALFORMED);
}

TEST_CASE("a frame of an unknown type is refused, and the encoder will not write one", "[codec]")
{
    for (int type : {0, REPL_FRAME_RESUME + 1, 0x80, 0xff}) {
        INFO("type " << type);
        CHECK(decode(frame_of(uint8_t(type), "")).status == REPL_E_UNKNOWN_TYPE);
        CHECK(decode(frame_of(uint8_t(type), std::string(16, 'x'))).status == REPL_E_UNKNOWN_TYPE);

        repl_frame r = view(empty_frame(type));
        char buf[64];
        size_t written = 0;
        CHECK(repl_encoded_size(&r) == 0);
        CHECK(repl_encode(&r, buf, sizeof buf, &written) == REPL_E_UNKNOWN_TYPE);
    }
}

TEST_CASE("a body longer than its fields is malformed", "[codec]")
{
    for (const auto &[name, frame] : sample_frames()) {
        INFO(name << ", one byte of garbage inside the frame");
        std::string body = encode(frame).substr(REPL_FRAME_HEADER);
        CHECK(decode(frame_of(uint8_t(frame.type), body + "\0"s)).status == REPL_E_MALFORMED);
    }
}

TEST_CASE("a body cut short anywhere is malformed, however consistent its length", "[codec]")
{
    auto samples = sample_frames();
    samples.pop_back();   // the largest SET: its cuts are like the other SETs', only slower
    for (const auto &[name, frame] : samples) {
        std::string body = encode(frame).substr(REPL_FRAME_HEADER);
        for (size_t n = 0; n < body.size(); n++) {
            Decoded d = decode(frame_of(uint8_t(frame.type), body.substr(0, n)));
            if (d.status != REPL_E_MALFORMED) {
                FAIL_CHECK(name << " with " << n << " of its " << body.size() << " body bytes: "
                                << repl_strerror(d.status));
                break;
            }
        }
    }
}

TEST_CASE("a HELLO from something that is not a peer of this protocol is refused", "[codec]")
{
    SECTION("bad magic") {
        for (uint32_t magic : {0U, REPL_MAGIC + 1, 0x474e5052U /* "GNPR" */, UINT32_MAX}) {
            INFO("magic " << std::hex << magic);
            CHECK(decode(frame_of(REPL_FRAME_HELLO, hello_body(magic, REPL_PROTO_VERSION, "eu"))).status
                  == REPL_E_BAD_MAGIC);
        }
        // A memcached client speaking ASCII to the replication port.
        CHECK(decode("get foo\r\n"s).status == REPL_E_TOO_LARGE);
    }
    SECTION("another protocol version") {
        for (uint16_t version : {0, REPL_PROTO_VERSION + 1, 0xffff}) {
            INFO("version " << version);
            CHECK(decode(frame_of(REPL_FRAME_HELLO, hello_body(REPL_MAGIC, version, "eu"))).status
                  == REPL_E_BAD_VERSION);

            Frame hello = hello_frame(2, 99, "eu");
            hello.proto_version = version;
            repl_frame r = view(hello);
            char buf[128];
            size_t written = 0;
            CHECK(repl_encode(&r, buf, sizeof buf, &written) == REPL_E_BAD_VERSION);
        }
    }
}

TEST_CASE("a HELLO of another protocol version is refused as such, whatever the layout of the rest", "[codec]")
{
    // Version 1 had no listen port: read in this version's layout, its
    // cluster name length and first letter would make the port, and the
    // frame would only be malformed.
    SECTION("version 1, without the listen port") {
        std::string v1 = Wire().u32(REPL_MAGIC).u16(1).u8(2).u64(99).u8(2).raw("eu").bytes;
        CHECK(decode(frame_of(REPL_FRAME_HELLO, v1)).status == REPL_E_BAD_VERSION);
    }
    SECTION("a later version, longer or shorter than this one") {
        const uint16_t later = REPL_PROTO_VERSION + 1;
        std::string longer = hello_body(REPL_MAGIC, later, "eu") + std::string(32, '\x01');
        CHECK(decode(frame_of(REPL_FRAME_HELLO, longer)).status == REPL_E_BAD_VERSION);
        CHECK(decode(frame_of(REPL_FRAME_HELLO, Wire().u32(REPL_MAGIC).u16(later).bytes)).status
              == REPL_E_BAD_VERSION);
    }
    SECTION("version 2, without the authentication method and nonce") {
        std::string v2 = Wire().u32(REPL_MAGIC).u16(2).u8(2).u64(99).u16(11212).u8(2).raw("eu").bytes;
        repl_frame r;
        size_t consumed = 0;
        std::string bytes = frame_of(REPL_FRAME_HELLO, v2);
        CHECK(repl_decode(bytes.data(), bytes.size(), &r, &consumed) == REPL_E_BAD_VERSION);
        INFO("the refusal can name the version the peer speaks");
        CHECK(r.proto_version == 2);
    }
    SECTION("version 3, whose writes carry no seq") {
        std::string v3 = hello_body(REPL_MAGIC, 3, "eu");
        repl_frame r;
        size_t consumed = 0;
        std::string bytes = frame_of(REPL_FRAME_HELLO, v3);
        CHECK(repl_decode(bytes.data(), bytes.size(), &r, &consumed) == REPL_E_BAD_VERSION);
        CHECK(r.proto_version == 3);
    }
    SECTION("the version itself cut short is malformed") {
        CHECK(decode(frame_of(REPL_FRAME_HELLO, Wire().u32(REPL_MAGIC).u8(0).bytes)).status == REPL_E_MALFORMED);
    }
}

TEST_CASE("a HELLO names an authentication method this protocol knows, on both ends of the wire", "[codec]")
{
    for (int method : {REPL_AUTH_NONE, REPL_AUTH_HMAC_SHA256})
        CHECK(decode(frame_of(REPL_FRAME_HELLO, hello_body(REPL_MAGIC, REPL_PROTO_VERSION, "eu", uint8_t(method))))
                  .status == REPL_OK);
    for (int method : {2, 0x80, 0xff}) {
        INFO("method " << method);
        CHECK(decode(frame_of(REPL_FRAME_HELLO, hello_body(REPL_MAGIC, REPL_PROTO_VERSION, "eu", uint8_t(method))))
                  .status == REPL_E_BAD_AUTH);
        Frame hello = hello_frame(2, 99, "eu");
        hello.auth = uint8_t(method);
        repl_frame r = view(hello);
        char buf[256];
        size_t written = 0;
        CHECK(repl_encode(&r, buf, sizeof buf, &written) == REPL_E_BAD_AUTH);
    }
}

TEST_CASE("a SYNC_BEGIN is of a full or a partial resync, on both ends of the wire", "[codec]")
{
    for (int mode : {REPL_SYNC_FULL, REPL_SYNC_PARTIAL})
        CHECK(decode(frame_of(REPL_FRAME_SYNC_BEGIN, Wire().u8(mode).u64(9).bytes)).status == REPL_OK);
    for (int mode : {2, 0x80, 0xff}) {
        INFO("mode " << mode);
        CHECK(decode(frame_of(REPL_FRAME_SYNC_BEGIN, Wire().u8(mode).u64(9).bytes)).status == REPL_E_MALFORMED);
        repl_frame r = view(sync_begin_frame(uint8_t(mode), 9));
        char buf[64];
        size_t written = 0;
        CHECK(repl_encode(&r, buf, sizeof buf, &written) == REPL_E_MALFORMED);
    }
    INFO("version 3's SYNC_BEGIN had no body");
    CHECK(decode(frame_of(REPL_FRAME_SYNC_BEGIN, "")).status == REPL_E_MALFORMED);
}

TEST_CASE("a HELLO or AUTH encoded without its nonce or mac carries zeros in their place", "[codec]")
{
    Frame hello = hello_frame(2, 99, "eu");
    repl_frame r = view(hello);
    r.nonce = nullptr;
    std::string bytes(repl_encoded_size(&r), 'x');
    size_t written = 0;
    REQUIRE(repl_encode(&r, &bytes[0], bytes.size(), &written) == REPL_OK);
    CHECK(decode(bytes).frame.nonce == std::string(REPL_NONCE_LEN, '\0'));

    repl_frame a = view(auth_frame(""));
    std::string auth(repl_encoded_size(&a), 'x');
    REQUIRE(repl_encode(&a, &auth[0], auth.size(), &written) == REPL_OK);
    CHECK(decode(auth).frame.mac == std::string(REPL_MAC_LEN, '\0'));
}

TEST_CASE("a cluster name is 1 to 64 printable ASCII characters, on both ends of the wire", "[codec]")
{
    const std::vector<std::string> refused = {
        "", std::string(REPL_MAX_CLUSTER_NAME + 1, 'c'), std::string(255, 'c'),
        "eu west", "eu\twest", "eu\nwest", "eu\0west"s, "eu\x7fwest", "\xc3\xa9t\xc3\xa9",
    };
    for (const std::string &name : refused) {
        INFO("cluster " << printable(name));
        CHECK(decode(frame_of(REPL_FRAME_HELLO, hello_body(REPL_MAGIC, REPL_PROTO_VERSION, name))).status
              == REPL_E_BAD_CLUSTER);

        repl_frame r = view(hello_frame(2, 99, name));
        char buf[512];
        size_t written = 0;
        CHECK(repl_encode(&r, buf, sizeof buf, &written) == REPL_E_BAD_CLUSTER);
    }
    std::string printable_ascii;
    for (char c = '!'; c <= '~' && printable_ascii.size() < REPL_MAX_CLUSTER_NAME; c++)
        printable_ascii += c;
    CHECK(decode(encode(hello_frame(2, 99, printable_ascii))).status == REPL_OK);
}

TEST_CASE("a key is 1 to 250 bytes without NUL, space or newline, on both ends of the wire", "[codec]")
{
    // What memcached 1.2.8 cannot hand over as a key: it splits command
    // lines on spaces only, and a line ends at a newline or a NUL.
    const std::vector<std::string> refused = {
        "", std::string(REPL_KEY_MAX + 1, 'k'), std::string(255, 'k'),
        "user 42", "user\r\n42", "user\n", "user\0" "42"s,
    };
    for (const std::string &key : refused) {
        INFO("key " << printable(key));
        CHECK(decode(frame_of(REPL_FRAME_SET, set_body(key, "v"))).status == REPL_E_BAD_KEY);
        CHECK(decode(frame_of(REPL_FRAME_DELETE, delete_body(key))).status == REPL_E_BAD_KEY);

        char buf[512];
        size_t written = 0;
        repl_frame set = view(set_frame(1, 0, 0, key, "v"));
        repl_frame del = view(delete_frame(1, 0, key));
        CHECK(repl_encode(&set, buf, sizeof buf, &written) == REPL_E_BAD_KEY);
        CHECK(repl_encode(&del, buf, sizeof buf, &written) == REPL_E_BAD_KEY);
        CHECK(repl_encode_set(buf, sizeof buf, &written, 1, 1, 0, 0, key.data(), set.nkey, "v", 1) == REPL_E_BAD_KEY);
    }
}

TEST_CASE("every key a client of 1.2.8 can store crosses the wire byte for byte", "[codec]")
{
    // 1.2.8 stores `set a<TAB>b 0 0 1`: a key may hold any byte but NUL,
    // space and newline, control characters, DEL and bytes over 0x7f too.
    std::string every_byte;
    for (int c = 1; c <= 0xff; c++)
        if (c != ' ' && c != '\n')
            every_byte += char(c);
    const std::vector<std::string> keys = {
        "a\tb", "user\r42", "\x01", "\x7f", "tail\r", "\x1b[0m",
        every_byte.substr(0, REPL_KEY_MAX), every_byte.substr(REPL_KEY_MAX),
    };
    for (const std::string &key : keys) {
        INFO("key " << printable(key));
        for (const Frame &f : {set_frame(1, 0, 0, key, "v"), delete_frame(1, 0, key)}) {
            Decoded d = decode(encode(f));
            REQUIRE(d.status == REPL_OK);
            CHECK(d.frame.key == key);
        }
    }
}

TEST_CASE("a value over 1 MiB is refused, on both ends of the wire", "[codec]")
{
    std::string value(REPL_VALUE_MAX + 1, 'v');
    CHECK(decode(frame_of(REPL_FRAME_SET, set_body("k", value))).status == REPL_E_TOO_LARGE);
    // Said, not sent.
    std::string claim = Wire().u64(1).u64(1).u64(0).u32(0).u8(1).raw("k").u32(UINT32_MAX).bytes;
    CHECK(decode(frame_of(REPL_FRAME_SET, claim)).status == REPL_E_TOO_LARGE);

    std::string buf(repl_set_size(1, REPL_VALUE_MAX + 1), '\0');
    size_t written = 0;
    CHECK(repl_encode_set(&buf[0], buf.size(), &written, 1, 1, 0, 0, "k", 1, value.data(), uint32_t(value.size()))
          == REPL_E_TOO_LARGE);
}

// --- The encoder's side -------------------------------------------------------

TEST_CASE("the encoder refuses a buffer too small and writes nothing past it", "[codec]")
{
    for (const auto &[name, frame] : sample_frames()) {
        INFO(name);
        repl_frame r = view(frame);
        size_t size = repl_encoded_size(&r);
        std::string buf(size + 1, '\xa5');
        bool large = size > 4096;
        for (size_t cap = large ? size - 1 : 0; cap < size; cap++) {
            size_t written = 12345;
            int status = repl_encode(&r, &buf[0], cap, &written);
            if (status != REPL_E_NO_SPACE || written != 12345
                || buf.find_first_not_of('\xa5', cap) != std::string::npos) {
                FAIL_CHECK("with room for " << cap << " of " << size << " bytes: " << repl_strerror(status)
                                            << ", or it wrote past the room it had");
                break;
            }
        }
    }
}

TEST_CASE("every status has a message of its own", "[codec]")
{
    std::set<std::string> messages;
    for (int status = REPL_E_BAD_AUTH; status <= REPL_NEED_MORE; status++)
        messages.insert(repl_strerror(status));
    CHECK(messages.size() == size_t(REPL_NEED_MORE - REPL_E_BAD_AUTH + 1));
    CHECK(std::string(repl_strerror(42)) == "unknown status");
}

// --- Anything at all ----------------------------------------------------------

TEST_CASE("random and mutated bytes never make the decoder break its promises", "[codec]")
{
    const uint64_t seed = 20261124;
    const int rounds = 1000000;
    std::mt19937_64 rng(seed);
    auto below = [&](uint64_t n) { return n ? rng() % n : 0; };
    const std::vector<std::string> seeds = codec::seed_frames();
    const unsigned char interesting[] = {0, 1, 0x20, 0x21, 0x40, 0x41, 0x7e, 0x7f, 0x80,
                                         REPL_KEY_MAX, REPL_KEY_MAX + 1, 0xff};

    std::map<int, int> seen;   // status -> count
    int broken = 0;
    std::string first_broken;
    for (int round = 0; round < rounds; round++) {
        std::string buf = seeds[below(seeds.size())];
        if (below(8) == 0)
            buf += seeds[below(seeds.size())];
        for (uint64_t m = 1 + below(4); m > 0; m--) {
            size_t at = below(buf.size());
            switch (below(7)) {
            case 0: if (!buf.empty()) buf[at] ^= char(1 << below(8)); break;
            case 1: if (!buf.empty()) buf[at] = char(interesting[below(sizeof interesting)]); break;
            case 2: if (!buf.empty()) buf[at] = char(rng()); break;
            case 3: buf.resize(below(buf.size() + 1)); break;
            case 4: buf.insert(at, std::string(1 + below(8), char(rng()))); break;
            case 5: buf.erase(at, 1 + below(8)); break;
            case 6: if (buf.size() >= 5) buf[4] = char(below(REPL_FRAME_RESUME + 2)); break;
            }
        }
        // Mostly, say the length the bytes have, so that the body gets parsed.
        if (buf.size() >= 4 && below(4) != 0)
            buf.replace(0, 4, Wire().u32(buf.size() - 4 + below(3) - 1).bytes);
        if (below(50) == 0)
            buf = pseudo_random_bytes(below(64), uint32_t(rng()));

        const char *placed = guarded().place(buf);
        std::string violation = codec::decoder_violation(placed, buf.size());
        if (!violation.empty() && broken++ == 0)
            first_broken = violation + " on " + printable(buf);
        repl_frame f;
        size_t consumed;
        seen[repl_decode(placed, buf.size(), &f, &consumed)]++;
    }

    INFO("seed " << seed << ", " << rounds << " buffers; the first broken promise: " << first_broken);
    CHECK(broken == 0);
    // The buffers reach every outcome, or they test less than they seem to.
    for (int status : {REPL_OK, REPL_NEED_MORE, REPL_E_TOO_LARGE, REPL_E_UNKNOWN_TYPE, REPL_E_MALFORMED,
                       REPL_E_BAD_KEY, REPL_E_BAD_MAGIC, REPL_E_BAD_VERSION, REPL_E_BAD_CLUSTER}) {
        INFO("status " << repl_strerror(status));
        CHECK(seen[status] > 0);
    }
}
