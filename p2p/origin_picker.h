// Origin-aware piece choice: which pieces of a torrent this agent fetches
// from the HTTP origin itself. The origin link is the scarce resource, so the
// origin only gets pieces that no LAN peer can give.
//
// Contract (a pure function; the agent gathers the inputs from libtorrent):
//  - Never a piece we have, nor one marked busy (being fetched from the
//    origin by us, claimed by another agent, or being downloaded from a
//    connected peer right now).
//  - First the pieces no connected peer has, in this agent's own order (a
//    random permutation, so agents starting together spread their choices).
//  - Pieces some peer has only when `peers_stalled` (the peers stopped
//    delivering): then the origin takes over smoothly instead of waiting.
#pragma once

#include <cstdint>
#include <vector>

namespace dopt::p2p {

struct OriginPickInput {
    const std::vector<bool>* have = nullptr;       // pieces we hold, verified
    const std::vector<bool>* busy = nullptr;
    const std::vector<int>* peers_with = nullptr;  // connected peers that hold each piece
    const std::vector<int>* order = nullptr;       // every piece index once, in preference order
    bool peers_stalled = false;
};

// Up to `want` piece indices, best first.
std::vector<int> pick_origin_pieces(const OriginPickInput& in, int want);

// A random permutation of 0..num_pieces-1 (this agent's preference order).
std::vector<int> random_piece_order(int num_pieces);

}  // namespace dopt::p2p
