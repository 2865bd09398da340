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
//  - Only pieces in this agent's share (share_count, share_index).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dopt::p2p {

struct OriginPickInput {
    const std::vector<bool>* have = nullptr;       // pieces we hold, verified
    const std::vector<bool>* busy = nullptr;
    const std::vector<int>* peers_with = nullptr;  // connected peers that hold each piece
    const std::vector<int>* order = nullptr;       // every piece index once, in preference order
    bool peers_stalled = false;
    // This agent's share of the pieces: only pieces with index %
    // share_count == share_index (the designated fetchers split the pieces
    // between them, so that two of them never pick the same last piece).
    int share_count = 1;
    int share_index = 0;
};

// Up to `want` piece indices, best first.
std::vector<int> pick_origin_pieces(const OriginPickInput& in, int want);

// A random permutation of 0..num_pieces-1 (this agent's preference order).
std::vector<int> random_piece_order(int num_pieces);

// Designated origin fetchers. Of the agents downloading a torrent, the few
// with the lowest keys fetch from the origin and the rest take everything
// from them, so the origin serves a few pieces at a time (see
// agent/agent_swarm.cpp for when the agent ignores this). Each agent works
// out its place alone, from the addresses of its connected peers, and they
// agree without talking: the key depends only on the torrent and the
// address (FNV-1a, the same on every machine), and a different torrent
// designates other agents.
std::uint64_t fetcher_key(const std::string& info_hash, const std::string& address);
// How many of `others` have a smaller key than `self`: 0 is the first
// fetcher. Agents on one address (tests on loopback) share a place.
int fetcher_rank(std::uint64_t self, const std::vector<std::uint64_t>& others);

}  // namespace dopt::p2p
