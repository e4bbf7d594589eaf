// Replication frames as the codec encodes them, for the tests that play a
// peer (or a forger) on a node's replication port and for the link
// fuzzer's seeds:
//
//   peer.send_bytes(hello_frame(repl_port, 7) + simple_frame(REPL_FRAME_SYNC_BEGIN)
//                   + set_frame("k", "v", version) + simple_frame(REPL_FRAME_SYNC_END, 1));
#pragma once

#include "repl_codec.h"

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

namespace fixture {

inline repl_frame blank_frame(uint8_t type)
{
    repl_frame f;
    std::memset(&f, 0, sizeof f);
    f.type = type;
    return f;
}

// Throws if the codec refuses the frame: a test that means to send a
// malformed one writes its bytes itself.
inline std::string encoded(const repl_frame &f)
{
    std::string bytes(repl_encoded_size(&f), '\0');
    size_t written = 0;
    if (repl_encode(&f, &bytes[0], bytes.size(), &written) != REPL_OK)
        throw std::runtime_error("cannot encode a frame of type " + std::to_string(f.type));
    bytes.resize(written);
    return bytes;
}

// The HELLO of node `node_id` (instance `instance_id`) that listens for
// peers on `listen_port`; `auth` and `nonce` (REPL_NONCE_LEN bytes) as a
// node with or without a secret (-K); the default cluster (-Z).
inline std::string hello_frame(uint16_t listen_port, uint8_t node_id, uint64_t instance_id = 0x0123456789abcdefULL,
                               uint8_t auth = REPL_AUTH_NONE, const std::string &nonce = "",
                               const std::string &cluster = "memcached")
{
    repl_frame f = blank_frame(REPL_FRAME_HELLO);
    f.proto_version = REPL_PROTO_VERSION;
    f.node_id = node_id;
    f.instance_id = instance_id;
    f.listen_port = listen_port;
    f.cluster = cluster.data();
    f.ncluster = uint8_t(cluster.size());
    f.auth = auth;
    f.nonce = nonce.empty() ? nullptr : nonce.data();
    return encoded(f);
}

// A SET of a resync (seq 0), or the sender's own write number `seq`.
inline std::string set_frame(const std::string &key, const std::string &value, uint64_t version,
                             uint64_t exptime = 0, uint32_t flags = 0, uint64_t seq = 0)
{
    repl_frame f = blank_frame(REPL_FRAME_SET);
    f.seq = seq;
    f.version = version;
    f.exptime = exptime;
    f.flags = flags;
    f.key = key.data(), f.nkey = uint8_t(key.size());
    f.value = value.data(), f.nvalue = uint32_t(value.size());
    return encoded(f);
}

inline std::string delete_frame(const std::string &key, uint64_t version, uint64_t hold_until = 0,
                                uint64_t seq = 0)
{
    repl_frame f = blank_frame(REPL_FRAME_DELETE);
    f.seq = seq;
    f.version = version;
    f.exptime = hold_until;
    f.key = key.data(), f.nkey = uint8_t(key.size());
    return encoded(f);
}

inline std::string flush_frame(uint64_t version, uint64_t when = 0, uint64_t seq = 0)
{
    repl_frame f = blank_frame(REPL_FRAME_FLUSH);
    f.seq = seq;
    f.version = version;
    f.exptime = when;
    return encoded(f);
}

// SYNC_BEGIN, SYNC_END (with its item count), PING; AUTH of zeros.
inline std::string simple_frame(uint8_t type, uint64_t items = 0)
{
    repl_frame f = blank_frame(type);
    f.items = items;
    return encoded(f);
}

// What a peer says it holds of the node's writes, sent after its HELLO:
// nothing (a full resync follows).
inline std::string resume_frame()
{
    return encoded(blank_frame(REPL_FRAME_RESUME));
}

} // namespace fixture
