// Metainfo: reading, checking and publishing .torrent files (docs/design.md
// "Trust"). Piece hashes from metainfo are what make LAN peers' bytes usable.
//
// Contract:
//  - parse_metainfo() accepts v1, v2 and hybrid metainfo describing exactly
//    a single file, in pieces of at most kMaxPieceLength (the agent holds
//    several whole pieces in memory per swarm; libtorrent alone would take
//    pieces of up to 1 GiB). Web seeds and trackers in it are dropped:
//    the agent fetches from the origin itself and never talks to trackers.
//    Anything else throws MetainfoError with a message a person can act on.
//  - Making metainfo, and what needs no libtorrent type, is in
//    metainfo_summary.h (included here).
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include <libtorrent/torrent_info.hpp>

#include "p2p/metainfo_summary.h"

namespace dopt::p2p {

struct Metainfo : MetainfoSummary {
    std::shared_ptr<const libtorrent::torrent_info> info;  // web seeds, trackers stripped
};

Metainfo parse_metainfo(std::string_view bytes);
// Reads a whole file, then parse_metainfo(). Throws MetainfoError naming the
// path when it cannot be read.
Metainfo load_metainfo_file(const std::string& path);
// Metainfo holding only the info dictionary of `info` (as taken from peers
// by BEP 9): the whole metainfo of a v1 torrent.
std::string metainfo_of(const libtorrent::torrent_info& info);

}  // namespace dopt::p2p
