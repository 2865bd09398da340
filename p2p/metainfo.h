// Metainfo: reading, checking and publishing .torrent files (DESIGN.md
// "Trust"). Piece hashes from metainfo are what make LAN peers' bytes usable.
//
// Contract:
//  - parse_metainfo() accepts v1, v2 and hybrid metainfo describing exactly
//    a single file, in pieces of at most kMaxPieceLength (the agent holds
//    several whole pieces in memory per swarm; libtorrent alone would take
//    pieces of up to 1 GiB). Web seeds and trackers in it are dropped:
//    the agent fetches from the origin itself and never talks to trackers.
//    Anything else throws MetainfoError with a message a person can act on.
//  - make_metainfo() writes hybrid (v1 + v2) metainfo for one file, with the
//    given web seed, and a piece size chosen for the file (1 MiB or larger).
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

#include <libtorrent/torrent_info.hpp>

namespace dopt::p2p {

class MetainfoError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

struct Metainfo {
    std::shared_ptr<const libtorrent::torrent_info> info;  // web seeds, trackers stripped
    std::string info_hash;      // lowercase hex: the v1 hash, else the v2 hash (64 digits)
    std::string name;           // the file's name in the metainfo
    std::uint64_t size = 0;     // the file's size in bytes
    int piece_length = 0;
    int num_pieces = 0;
};

// Largest metainfo accepted (from a job or an origin).
constexpr std::size_t kMaxMetainfoBytes = 16 * 1024 * 1024;
// Largest piece accepted: the largest make_metainfo() (`dopt publish`) makes.
constexpr int kMaxPieceLength = 16 * 1024 * 1024;

Metainfo parse_metainfo(std::string_view bytes);
// Reads a whole file, then parse_metainfo(). Throws MetainfoError naming the
// path when it cannot be read.
Metainfo load_metainfo_file(const std::string& path);

// The piece size make_metainfo() uses for a file of `size` bytes: a power of
// two, at least 1 MiB, aiming at no more than about 2,000 pieces, at most
// kMaxPieceLength.
int choose_piece_size(std::uint64_t size);

// Hybrid v1+v2 metainfo (bencoded) for the file at `path`, hashed now, with
// `web_seed` as its url-list. Throws MetainfoError (unreadable file, empty
// file, a folder).
std::string make_metainfo(const std::string& path, const std::string& web_seed);

}  // namespace dopt::p2p
