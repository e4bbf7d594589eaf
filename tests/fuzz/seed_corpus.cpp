// Writes the seed corpus of a fuzz target, made by the encoder so that it
// follows the wire format as it changes; `make fuzz-corpus` writes both
// into tests/fuzz/corpus/, where they are committed.
// Usage: repl-fuzz-seeds repl-codec|repl-link DIR
//  - repl-codec: one frame of each type (support/codec_fuzz.hpp), and one
//    stream of them all;
//  - repl-link: links (support/link_fuzz.hpp): a byte for the kind of
//    link, then what the peer sends.
// The same program makes the same files: nothing depends on the clock.
#include "support/codec_fuzz.hpp"
#include "support/link_fuzz.hpp"

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

int main(int argc, char **argv)
{
    const std::string target = argc == 3 ? argv[1] : "";
    std::vector<std::string> seeds;
    if (target == "repl-codec") {
        seeds = codec::seed_frames();
        std::string stream;
        for (const std::string &s : seeds)
            stream += s;
        seeds.push_back(stream);
    } else if (target == "repl-link") {
        for (const auto &[mode, bytes] : link_fuzz::seeds())
            seeds.push_back(std::string(1, char(mode)) + bytes);
    } else {
        std::fprintf(stderr, "usage: %s repl-codec|repl-link DIR\n", argv[0]);
        return 2;
    }

    for (size_t i = 0; i < seeds.size(); i++) {
        char name[32];
        std::snprintf(name, sizeof name, "/seed-%02zu", i);
        std::string path = std::string(argv[2]) + name;
        std::ofstream out(path, std::ios::binary);
        out << seeds[i];
        if (!out.flush()) {
            std::fprintf(stderr, "%s: cannot write %s\n", argv[0], path.c_str());
            return 1;
        }
    }
    return 0;
}
