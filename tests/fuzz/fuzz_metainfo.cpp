// Fuzzes metainfo reading: dopt::p2p::parse_metainfo (p2p/metainfo.h), which
// the agent runs on metainfo from a job (`set file_metainfo`) or an origin
// (URL.torrent). The contract: a Metainfo describing one non-empty file, or
// a MetainfoError; anything else (a crash, a sanitizer report, a leak,
// another exception escaping) is a bug.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "p2p/metainfo.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    try {
        dopt::p2p::Metainfo m =
            dopt::p2p::parse_metainfo(std::string_view(reinterpret_cast<const char*>(data), size));
        // What the agent relies on afterwards.
        if (!m.info || m.size == 0 || m.num_pieces <= 0 || m.piece_length <= 0 ||
            m.piece_length > dopt::p2p::kMaxPieceLength ||
            (m.info_hash.size() != 40 && m.info_hash.size() != 64)) {
            std::fprintf(stderr, "parse_metainfo accepted metainfo it should refuse\n");
            std::abort();
        }
    } catch (const dopt::p2p::MetainfoError&) {
        // The expected refusal.
    }
    return 0;
}
