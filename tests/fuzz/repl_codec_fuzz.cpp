// libFuzzer target for the replication decoder (make fuzz). An input is what
// a peer might send on the replication port: it is decoded as a stream, frame
// after frame, the way the replication thread reads it, and at every frame
// boundary the decoder must keep the promises of codec::decoder_violation().
// AddressSanitizer catches any read past the input, UBSan any undefined
// arithmetic; a broken promise aborts with what was broken.
#include "support/codec_fuzz.hpp"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = reinterpret_cast<const char *>(data);
    size_t at = 0;

    for (;;) {
        std::string broken = codec::decoder_violation(buf + at, size - at);
        if (!broken.empty()) {
            std::fprintf(stderr, "repl_decode broke a promise at offset %zu of %zu: %s\n", at, size,
                         broken.c_str());
            std::abort();
        }
        repl_frame f;
        size_t consumed = 0;
        if (repl_decode(buf + at, size - at, &f, &consumed) != REPL_OK)
            return 0;
        at += consumed;
    }
}
