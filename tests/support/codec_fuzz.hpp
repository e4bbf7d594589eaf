// What repl_decode() promises for any input whatsoever, and a few frames made
// by the encoder to start mutating from. Shared by the unit tests (plain
// build, tests/unit/repl_codec_test.cpp) and the libFuzzer target (ASan and
// UBSan, tests/fuzz/repl_codec_fuzz.cpp), so both check the same promises:
//
//   std::string broken = codec::decoder_violation(buf, len);
//   if (!broken.empty()) ...        // what the decoder did wrong
#pragma once

#include "repl_codec.h"

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace codec {

inline uint32_t be32(const char *p)
{
    const unsigned char *b = reinterpret_cast<const unsigned char *>(p);
    return (uint32_t(b[0]) << 24) | (uint32_t(b[1]) << 16) | (uint32_t(b[2]) << 8) | b[3];
}

inline bool is_status(int s)
{
    switch (s) {
    case REPL_OK: case REPL_NEED_MORE: case REPL_E_TOO_LARGE: case REPL_E_UNKNOWN_TYPE:
    case REPL_E_MALFORMED: case REPL_E_BAD_KEY: case REPL_E_BAD_MAGIC:
    case REPL_E_BAD_VERSION: case REPL_E_BAD_CLUSTER: case REPL_E_BAD_AUTH:
        return true;
    }
    return false;   // REPL_E_NO_SPACE is the encoder's alone
}

// The key rules of repl_codec.h: 1 to 250 bytes, no NUL, space or newline.
inline bool key_is_valid(const char *key, size_t n)
{
    if (n == 0 || n > REPL_KEY_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (key[i] == '\0' || key[i] == ' ' || key[i] == '\n')
            return false;
    }
    return true;
}

inline bool cluster_is_valid(const char *name, size_t n)
{
    if (n == 0 || n > REPL_MAX_CLUSTER_NAME)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = name[i];
        if (c <= ' ' || c >= 0x7f)
            return false;
    }
    return true;
}

// Decodes buf[0, len) and returns "" if the decoder kept its promises,
// otherwise what it broke. The decoder may read buf[0, len) only; the
// caller makes reads past it fault (a guard page, or AddressSanitizer).
inline std::string decoder_violation(const char *buf, size_t len)
{
    repl_frame f;
    size_t consumed = SIZE_MAX;
    int status = repl_decode(buf, len, &f, &consumed);

    if (!is_status(status))
        return "status " + std::to_string(status) + " is not a decoder status";
    if (len < 4)
        return status == REPL_NEED_MORE ? "" : "fewer than 4 bytes, yet not REPL_NEED_MORE";

    uint32_t length = be32(buf);
    size_t whole = 4 + size_t(length);
    bool complete = len >= whole;
    if (length > REPL_FRAME_MAX)
        return status == REPL_E_TOO_LARGE ? "" : "length over REPL_FRAME_MAX, yet not REPL_E_TOO_LARGE";
    if (length == 0)
        return status == REPL_E_MALFORMED ? "" : "length 0 (no type), yet not REPL_E_MALFORMED";
    if ((status == REPL_NEED_MORE) != !complete)
        return complete ? "a whole frame, yet REPL_NEED_MORE" : "part of a frame, yet not REPL_NEED_MORE";
    if (!complete)
        return "";

    // Bytes after the frame belong to the next one: they change nothing.
    if (len > whole) {
        repl_frame alone;
        size_t alone_consumed;
        int alone_status = repl_decode(buf, whole, &alone, &alone_consumed);
        if (alone_status != status)
            return "the bytes after the frame changed its status from " + std::to_string(alone_status)
                + " to " + std::to_string(status);
    }
    if (status != REPL_OK)
        return "";

    if (consumed != whole)
        return "consumed " + std::to_string(consumed) + " bytes of a " + std::to_string(whole) + "-byte frame";
    if (f.type != uint8_t(buf[4]))
        return "type " + std::to_string(f.type) + " but the frame says " + std::to_string(uint8_t(buf[4]));
    // Keys, values and names point into the frame's body.
    auto inside = [&](const char *p, size_t n) {
        return p >= buf + REPL_FRAME_HEADER && p <= buf + whole && n <= size_t(buf + whole - p);
    };
    switch (f.type) {
    case REPL_FRAME_SET:
        if (!inside(f.value, f.nvalue))
            return "SET value outside the frame";
        if (f.nvalue > REPL_VALUE_MAX)
            return "SET value over REPL_VALUE_MAX accepted";
        [[fallthrough]];
    case REPL_FRAME_DELETE:
        if (!inside(f.key, f.nkey))
            return "key outside the frame";
        if (!key_is_valid(f.key, f.nkey))
            return "invalid key accepted";
        break;
    case REPL_FRAME_HELLO:
        if (!inside(f.cluster, f.ncluster))
            return "cluster name outside the frame";
        if (!cluster_is_valid(f.cluster, f.ncluster))
            return "invalid cluster name accepted";
        if (f.proto_version != REPL_PROTO_VERSION)
            return "protocol version " + std::to_string(f.proto_version) + " accepted";
        if (f.auth != REPL_AUTH_NONE && f.auth != REPL_AUTH_HMAC_SHA256)
            return "authentication method " + std::to_string(f.auth) + " accepted";
        if (!inside(f.nonce, REPL_NONCE_LEN))
            return "nonce outside the frame";
        break;
    case REPL_FRAME_AUTH:
        if (!inside(f.mac, REPL_MAC_LEN))
            return "mac outside the frame";
        break;
    case REPL_FRAME_SYNC_BEGIN:
        if (f.mode != REPL_SYNC_FULL && f.mode != REPL_SYNC_PARTIAL)
            return "resync mode " + std::to_string(f.mode) + " accepted";
        break;
    case REPL_FRAME_FLUSH: case REPL_FRAME_SYNC_END: case REPL_FRAME_PING:
    case REPL_FRAME_ACK: case REPL_FRAME_ACK_REQUEST: case REPL_FRAME_RESUME:
        break;
    default:
        return "unknown type " + std::to_string(f.type) + " accepted";
    }

    // There is one encoding of a frame: what was accepted re-encodes to
    // the very same bytes.
    if (repl_encoded_size(&f) != whole)
        return "repl_encoded_size() of the decoded frame is " + std::to_string(repl_encoded_size(&f))
            + ", not " + std::to_string(whole);
    std::vector<char> again(whole);
    size_t written = 0;
    int encoded = repl_encode(&f, again.data(), again.size(), &written);
    if (encoded != REPL_OK)
        return "the decoded frame does not encode: " + std::string(repl_strerror(encoded));
    if (written != whole || std::memcmp(again.data(), buf, whole) != 0)
        return "the decoded frame encodes to different bytes";
    return "";
}

// One small frame of each type (a HELLO with and without a secret, a full
// and a partial SYNC_BEGIN, numbered writes and a resync's SET), and the
// longest key and cluster name, made by the encoder: seeds to mutate.
inline std::vector<std::string> seed_frames()
{
    static const std::string longest_key(REPL_KEY_MAX, 'k');
    static const std::string longest_cluster(REPL_MAX_CLUSTER_NAME, 'c');
    static const std::string nonce(REPL_NONCE_LEN, '\x5a');
    static const std::string mac(REPL_MAC_LEN, '\xa5');
    std::vector<repl_frame> frames(17);
    for (auto &f : frames)
        std::memset(&f, 0, sizeof f);
    frames[0].type = REPL_FRAME_HELLO;
    frames[0].proto_version = REPL_PROTO_VERSION;
    frames[0].node_id = 2;
    frames[0].instance_id = 0x0123456789abcdefULL;
    frames[0].listen_port = 11212;
    frames[0].cluster = "cache-eu";
    frames[0].ncluster = 8;
    frames[1].type = REPL_FRAME_SET;
    frames[1].seq = 1234567;
    frames[1].version = 0x0000123456789a02ULL;
    frames[1].exptime = 1795478400;
    frames[1].flags = 0xdeadbeef;
    frames[1].key = "user:42";
    frames[1].nkey = 7;
    frames[1].value = "hello\r\n\0world";
    frames[1].nvalue = 13;
    frames[2].type = REPL_FRAME_SET;   // empty value
    frames[2].key = "k";
    frames[2].nkey = 1;
    frames[3].type = REPL_FRAME_DELETE;
    frames[3].seq = 1234568;
    frames[3].version = 77;
    frames[3].exptime = 1795478460;
    frames[3].key = "session:\xc3\xa9t\xc3\xa9";
    frames[3].nkey = 13;
    frames[4].type = REPL_FRAME_FLUSH;
    frames[4].seq = 1234569;
    frames[4].version = 78;
    frames[5].type = REPL_FRAME_SYNC_BEGIN;
    frames[5].seq = 1234000;
    frames[6].type = REPL_FRAME_SYNC_END;
    frames[6].items = 1000000;
    frames[7].type = REPL_FRAME_PING;
    frames[8] = frames[0];
    frames[8].listen_port = UINT16_MAX;
    frames[8].cluster = longest_cluster.data();
    frames[8].ncluster = REPL_MAX_CLUSTER_NAME;
    frames[9] = frames[3];
    frames[9].key = longest_key.data();
    frames[9].nkey = REPL_KEY_MAX;
    frames[10] = frames[0];             // a node with a secret (-K)
    frames[10].auth = REPL_AUTH_HMAC_SHA256;
    frames[10].nonce = nonce.data();
    frames[11].type = REPL_FRAME_AUTH;
    frames[11].mac = mac.data();
    frames[12].type = REPL_FRAME_ACK;
    frames[12].seq = 1234569;
    frames[13].type = REPL_FRAME_ACK_REQUEST;
    frames[14].type = REPL_FRAME_RESUME;
    frames[14].instance_id = 0x0123456789abcdefULL;
    frames[14].seq = 1234000;
    frames[15] = frames[5];             // a partial resync
    frames[15].mode = REPL_SYNC_PARTIAL;
    frames[16] = frames[1];             // a SET a resync carries: no seq
    frames[16].seq = 0;

    std::vector<std::string> seeds;
    for (const auto &f : frames) {
        std::string bytes(repl_encoded_size(&f), '\0');
        size_t written = 0;
        if (repl_encode(&f, &bytes[0], bytes.size(), &written) == REPL_OK)
            seeds.push_back(bytes);
    }
    return seeds;
}

} // namespace codec
