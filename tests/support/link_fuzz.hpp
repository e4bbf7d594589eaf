// The input of the link fuzzer (tests/fuzz/repl_link_fuzz.cpp) and seeds
// made by the encoder to start from (tests/fuzz/seed_corpus.cpp writes them
// to tests/fuzz/corpus/repl-link/). An input is one link's life:
//
//   byte 0     what kind of link (the bits of link_fuzz::mode)
//   the rest   every byte the peer sends on it, in order
//
// The fuzzer resets the node before each input (repl_fuzz_reset()), so an
// input means the same whatever ran before it.
#pragma once

#include "repl_codec.h"
#include "support/frames.hpp"

#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

namespace link_fuzz {

enum mode : uint8_t {
    // The node dialled the peer (its first peer, the fuzzer's listener);
    // without it, the peer dials the node's replication port.
    dialled = 1,
    // The node has its secret (-K): the link must authenticate.
    secret = 2,
    // AUTH frames go out as the input has them. Without this bit the
    // fuzzer signs each one with the secret over both HELLOs, as an honest
    // peer would (no input could, the node's nonce being random), so that
    // authenticated links get past the handshake.
    raw_macs = 4,
    // The node holds data when the link comes up (items, tombstones, a
    // flush made and one to come): the fuzzer first runs stock() on a
    // link from the peer, so that this link's resync has something to walk.
    stocked = 8,
};

// The node's second peer: an address and replication port nobody dials,
// which a HELLO on a link the peer dialled names (its listen port) to be
// admitted. The first peer's port is the fuzzer's listener, known only at
// run time.
constexpr uint16_t accepted_peer_port = 11299;
// What repl_fuzz_reset() makes the node: its ids.
constexpr uint8_t node_id = 1;
constexpr uint64_t node_instance = 0x1000000000000001ULL;
// The peer of the seeds.
constexpr uint8_t peer_node = 2;
constexpr uint64_t peer_instance = 0x0123456789abcdefULL;
// The secret the fuzzer starts the node with (-K).
inline const std::string secret_bytes = "fuzzing-secret";

// A version of the peer's clock (hlc.h) at a fixed time in 2026, so that
// the committed seeds do not change when they are made again; a version
// from the past is as good as any (only one far ahead is dropped).
inline uint64_t version(uint64_t logical, uint8_t node = peer_node)
{
    const uint64_t ms_since_2020 = 217000000000ULL;
    return (ms_since_2020 << 20) | ((logical & 0xfff) << 8) | node;
}

// Absolute unix times, for expiries and hold times.
constexpr uint64_t long_ago = 1000000000;       // 2001: already expired
constexpr uint64_t far_ahead = 4000000000;      // 2096

inline std::string hello(bool with_auth, uint8_t node = peer_node, uint64_t instance = peer_instance,
                         const std::string &cluster = "memcached")
{
    return fixture::hello_frame(accepted_peer_port, node, instance,
                                with_auth ? REPL_AUTH_HMAC_SHA256 : REPL_AUTH_NONE,
                                with_auth ? std::string(REPL_NONCE_LEN, '\x3c') : std::string(), cluster);
}

inline std::string auth()
{
    return fixture::simple_frame(REPL_FRAME_AUTH);     // zeros: the fuzzer signs it
}

using fixture::delete_frame;
using fixture::flush_frame;
using fixture::set_frame;
using fixture::simple_frame;

// What the peer holds of the node's writes (nothing: a full resync), a
// whole resync from it, then writes made on it while online, numbered
// from 1 as protocol 4 wants them.
inline std::string session()
{
    std::string s;
    s += fixture::resume_frame();
    s += simple_frame(REPL_FRAME_SYNC_BEGIN);
    s += delete_frame("gone", version(1), 0);
    s += set_frame("user:42", "hello\r\n\0world", version(2), 0, 0xdeadbeef);
    s += set_frame("session:\xc3\xa9t\xc3\xa9", std::string(3000, 's'), version(3), far_ahead, 7);
    s += set_frame("expired", "old", version(4), long_ago);
    s += set_frame("tab\tkey", "v", version(5));
    s += simple_frame(REPL_FRAME_SYNC_END, 4);
    s += simple_frame(REPL_FRAME_PING);
    s += set_frame("user:42", "newer", version(10), 0, 0, 1);
    s += set_frame("user:42", "older", version(9), 0, 0, 2);                   // a conflict
    s += delete_frame("user:42", version(10), far_ahead, 3);                    // delete-locked
    s += set_frame("user:42", "after the lock", version(11), 0, 0, 4);
    s += delete_frame("session:\xc3\xa9t\xc3\xa9", version(3), 0, 5);
    s += set_frame("session:\xc3\xa9t\xc3\xa9", "resurrected?", version(3), 0, 0, 6);  // a tombstone's
    s += flush_frame(version(20), far_ahead, 7);                                // delayed
    s += flush_frame(version(21), 0, 8);                                        // now
    s += set_frame("k", "", version(22), 0, 0, 9);
    s += simple_frame(REPL_FRAME_ACK_REQUEST);
    return s;
}

// What a stocked node (mode::stocked) was sent before the link, after
// its HELLO (and AUTH).
inline std::string stock()
{
    std::string s = session();
    for (int i = 0; i < 20; i++)
        s += set_frame("stock:" + std::to_string(i), std::string(size_t(i) * 50, 'v'), version(30 + i),
                       i % 2 ? far_ahead : 0, 0, uint64_t(10 + i));
    return s;
}

// (mode, bytes the peer sends) of each seed.
inline std::vector<std::pair<uint8_t, std::string>> seeds()
{
    std::vector<std::pair<uint8_t, std::string>> s;
    const std::string body = session();

    // The handshake and a session on each kind of link, with and without
    // the secret; with the secret, a wrong mac too.
    s.push_back({0, hello(false) + body});
    s.push_back({dialled, hello(false) + body});
    s.push_back({secret, hello(true) + auth() + body});
    s.push_back({dialled | secret, hello(true) + auth() + body});
    s.push_back({secret | raw_macs, hello(true) + auth() + body});
    s.push_back({dialled | secret | raw_macs, hello(true) + auth() + body});
    // The same on a node that holds data: both sides resync.
    s.push_back({stocked, hello(false) + body});
    s.push_back({stocked | dialled, hello(false) + body});
    s.push_back({stocked | secret, hello(true) + auth() + body});
    s.push_back({stocked | dialled | secret, hello(true) + auth() + body});
    // The two ends disagree about the secret; a frame before the AUTH.
    s.push_back({0, hello(true) + body});
    s.push_back({secret, hello(false) + body});
    s.push_back({secret, hello(true) + simple_frame(REPL_FRAME_PING) + auth()});
    // Handshakes that are refused or end otherwise.
    s.push_back({0, body});                                     // not a HELLO first
    s.push_back({0, hello(false, peer_node, peer_instance, "another")});
    s.push_back({0, hello(false, peer_node, node_instance)});   // itself
    s.push_back({0, hello(false, node_id, node_instance + 1) + body});  // id clash, it yields
    s.push_back({0, hello(false, node_id, 1) + body});          // id clash, the node yields
    s.push_back({dialled, hello(false, node_id, 1) + body});
    {
        std::string old = hello(false);
        old[10] = 2;                                            // protocol version 2
        s.push_back({0, old});
    }
    // Protocol errors once online, and a short resync.
    s.push_back({0, hello(false) + simple_frame(REPL_FRAME_SYNC_END) + hello(false)});
    s.push_back({0, hello(false) + simple_frame(REPL_FRAME_SYNC_END) + set_frame("k", "v", version(1, 9))});
    s.push_back({0, hello(false) + simple_frame(REPL_FRAME_SYNC_BEGIN) + simple_frame(REPL_FRAME_SYNC_END, 5)});
    const uint64_t ten_years_ms = 10ULL * 366 * 24 * 3600 * 1000;
    s.push_back({0, hello(false) + set_frame("ahead", "v", version(1) + (ten_years_ms << 20))});
    s.push_back({0, hello(false) + std::string("\0\0\0\x01\x63", 5)});      // unknown type
    s.push_back({0, hello(false) + std::string("\x7f\0\0\0\x02", 5)});      // too long
    s.push_back({0, hello(false) + set_frame("half", "a frame cut short", version(1)).substr(0, 20)});
    return s;
}

} // namespace link_fuzz
