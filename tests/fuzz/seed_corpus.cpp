// Writes the fuzzer's seed corpus, made by the encoder so that it follows the
// wire format as it changes: one file per frame type, and one stream of them
// all. Usage: repl-codec-seeds DIR
#include "support/codec_fuzz.hpp"

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

int main(int argc, char **argv)
{
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    std::vector<std::string> seeds = codec::seed_frames();
    std::string stream;
    for (const std::string &s : seeds)
        stream += s;
    seeds.push_back(stream);

    for (size_t i = 0; i < seeds.size(); i++) {
        std::string path = std::string(argv[1]) + "/seed-" + std::to_string(i);
        std::ofstream out(path, std::ios::binary);
        out << seeds[i];
        if (!out.flush()) {
            std::fprintf(stderr, "%s: cannot write %s\n", argv[0], path.c_str());
            return 1;
        }
    }
    return 0;
}
