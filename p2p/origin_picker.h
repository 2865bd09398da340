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
//  - Pieces some peer has only when `held_too` (the peers stopped
//    delivering, or deliver too slowly: OriginPlan): then the origin takes
//    over smoothly instead of waiting.
//  - Only pieces in this agent's share (share_count, share_index).
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

namespace dopt::p2p {

struct OriginPickInput {
    const std::vector<bool>* have = nullptr;       // pieces we hold, verified
    const std::vector<bool>* busy = nullptr;
    const std::vector<int>* peers_with = nullptr;  // connected peers that hold each piece
    const std::vector<int>* order = nullptr;       // every piece index once, in preference order
    bool held_too = false;  // pieces some peer holds may be picked too
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
// agent/swarm.cpp for when the agent ignores this). Each agent works
// out its place alone, from the addresses of its connected peers, and they
// agree without talking: the key depends only on the torrent and the
// address (FNV-1a, the same on every machine), and a different torrent
// designates other agents.
std::uint64_t fetcher_key(const std::string& info_hash, const std::string& address);
// How many of `others` have a smaller key than `self`: 0 is the first
// fetcher. Agents on one address (tests on loopback) share a place.
int fetcher_rank(std::uint64_t self, const std::vector<std::uint64_t>& others);

// ---- how many origin requests to start now ----
//
// The rules (agent/swarm.cpp gathers the inputs and then picks the
// pieces with pick_origin_pieces; docs/performance.md, "What the figures
// rest on", and the commits that made each rule say what it bought):
//  - A peer counts (below, and in the pieces peers hold) once it has told
//    its pieces, and as long as it is not failing: it has not owed us
//    data (kept us choked, or left our requests unanswered, while we want
//    its pieces) for 2 s. A peer that advertises pieces and never delivers
//    would otherwise hold the origin back until the whole swarm stalled,
//    and again after each burst.
//  - Share of the link: each agent takes swarm_origin_requests / (1 + peers
//    that count), at least 1, at most origin_requests.
//  - One request at a time while the swarm is young (1.5 s after a job
//    attached) or a peer is in its handshake (connected < 2 s and has not
//    told its pieces): agents starting together should not fetch the same
//    pieces before they can see and claim them.
//  - Discovery window: while young, with static peers configured, none at
//    all while a peer is in its handshake or a static peer is neither
//    connected nor has hung up on this swarm (it may hold every piece).
//  - Waiting for the trackers: while young, with [p2p] trackers configured
//    and not all failing, none while a peer is in its handshake, nor until
//    a tracker has answered since the job attached or kTrackerWaitMs have
//    passed. Without it every agent of a young swarm took a piece from the
//    origin before its tracker named any peer.
//  - Stalled: peers have offered pieces we lack for 4 s and none came. Then
//    the budget and the designation below do not hold.
//  - Peers too slow: every piece we lack is in the swarm (a peer that
//    counts holds it, or it is in flight from the origin), yet at the rate
//    the peers give us pieces what we lack would take more than twice as
//    long as one origin piece does, and that for 1 s. When the LAN, not
//    the origin, is the narrow link, the origin falls idle once the swarm
//    holds the whole file; then every agent may use the room left in the
//    swarm's budget (none beyond it, no designation) for pieces peers hold
//    but are not sending it. With a fast LAN this does not hold: peers
//    give a piece faster than the origin can.
//  - The swarm's budget: swarm_origin_requests pieces in flight in the
//    whole swarm (ours and the claims of others on pieces we lack). Full:
//    none, unless the swarm is not delivering (no piece from a peer for
//    1 s), when this agent fetches one anyway.
//  - Designated fetchers (while delivering, and only when the agent knows
//    its own address): the first swarm_origin_requests of the downloading
//    agents by fetcher_key fetch, each from its share of the pieces. A
//    downloading agent is this one, and every peer on another address
//    that counts, is not a seed, and holds a piece or connected less than
//    3 s ago.

// The timings of the rules above, in milliseconds.
// A peer that has owed us data this long is failing: it counts nowhere.
constexpr std::int64_t kPeerOwesTooLongMs = 2000;
// A peer connected for less than this that has not told its pieces is in
// its handshake.
constexpr std::int64_t kHandshakeMs = 2000;
// A swarm is young for this long after a job attached to it.
constexpr std::int64_t kYoungSwarmMs = 1500;
// An agent that is not its subnet's gateway takes pieces from peers outside
// again when no piece came from a peer for this long.
constexpr std::int64_t kSubnetQuietMs = 3000;
// The longest a young swarm waits for a tracker's first answer.
constexpr std::int64_t kTrackerWaitMs = 500;
// Peers that offer pieces we lack and send none for this long have stalled.
constexpr std::int64_t kStalledMs = 4000;
// Peers are too slow once they have been so for this long.
constexpr std::int64_t kPeersSlowForMs = 1000;
// The time one origin piece is taken to need before any has come.
constexpr std::int64_t kFirstOriginPieceMs = 2000;
// The swarm delivers while a piece came from a peer (or a job attached)
// less than this long ago.
constexpr std::int64_t kDeliveringMs = 1000;
// A peer connected less than this long ago counts as downloading (for the
// designated fetchers) even before it holds a piece.
constexpr std::int64_t kNewPeerDownloadsMs = 3000;

// One connection of the swarm.
struct SwarmPeer {
    std::string address;        // the peer's IP address
    bool told = false;          // it has told its pieces (PeerSession::peers_that_told)
    int pieces = 0;             // how many pieces it holds (when told)
    bool offers = false;        // it holds a piece we lack (when told)
    bool seed = false;          // it holds every piece
    bool failing = false;       // it has owed us data for kPeerOwesTooLongMs (the rules above)
    // A stock client: it did not advertise dopt_claim, so it sends no
    // claims and fetches from its web seeds on its own (the rules above).
    bool stock = false;
    std::int64_t connected_ms = 0;  // how long it has been connected
    bool inside = true;         // in this agent's own subnet (PeerSession::in_own_subnet)
};

struct OriginPlanInput {
    std::int64_t now_ms = 0;
    std::int64_t attached_ms = 0;         // when a job last attached to the idle swarm
    std::int64_t last_peer_piece_ms = 0;  // when a piece last came from a peer (0: never)
    std::int64_t peers_offer_since_ms = 0;  // the previous plan's (0 at first)
    std::vector<SwarmPeer> peers;
    std::vector<std::string> static_peers;  // [p2p] peers and holders found by SHA-256 (addresses)
    std::set<std::string> hung_up;          // addresses that hung up on this swarm
    // For "waiting for the trackers": [p2p] trackers are configured and
    // not all failing; one has answered since the job attached.
    bool trackers = false;
    bool tracker_answered = false;
    int our_requests = 0;    // ours in flight to the origin
    int swarm_requests = 0;  // pieces in flight in the swarm: ours, and others' claims on pieces we lack
    int origin_requests = 4;        // [p2p] origin_requests
    int swarm_origin_requests = 8;  // [p2p] swarm_origin_requests
    std::string info_hash;          // for fetcher_key
    std::string self_address;       // this agent's address; empty: unknown (no designation)
    // For "peers too slow":
    bool all_in_swarm = false;           // every piece we lack is held by a peer that counts, or in flight
    std::int64_t lack_bytes = 0;         // what we lack
    std::int64_t peer_rate = -1;         // bytes/s peers give us now (-1: not measured yet)
    std::int64_t origin_piece_ms = 0;    // how long our origin pieces take (0: none yet)
    std::int64_t peers_slow_since_ms = 0;  // the previous plan's (0 at first)
};

struct OriginPlan {
    int want = 0;  // how many more origin requests to start now
    bool stalled = false;
    bool peers_slow = false;  // peers too slow: pieces peers hold may come from the origin
    int share_count = 1;  // pick only pieces with index % share_count == share_index
    int share_index = 0;
    std::int64_t peers_offer_since_ms = 0;  // keep it for the next plan
    std::int64_t peers_slow_since_ms = 0;   // keep it for the next plan
};

OriginPlan plan_origin_requests(const OriginPlanInput& in);

// ---- peers of this agent's own subnet are preferred ----
//
// A byte from a peer outside the agent's subnet crosses a router, whose
// link all the subnet's hosts share; a byte from a peer inside does not.
// Taking pieces from any peer that has them made every agent of a subnet
// fetch each new piece across the router itself (4 subnets x 4 agents:
// 12.5 copies crossed where 3 must). So, per torrent, one agent of each
// subnet, its gateway, takes pieces from peers outside; the others take
// pieces only from peers inside (their connections to outside peers stay
// up: they still serve them and hear their pieces and claims). Each piece
// then crosses into a subnet about once.
//  - The gateway: of the downloading agents inside (this one, and every
//    connected agent inside that counts, is not a seed, and holds a piece
//    or connected less than kNewPeerDownloadsMs ago), the one with the
//    lowest subnet_gateway_key. Every agent of the subnet sees the same
//    peers inside (LSD and the tracker), so they agree without talking;
//    an agent alone in its subnet is its gateway.
//  - An agent with a seed inside (an agent that counts) needs no peer
//    outside: none, the gateway included. Stock clients inside count for
//    neither rule (a stock seed may ration its uploads).
//  - Only while a piece came from a peer (or a job attached) less than
//    kSubnetQuietMs ago, and the peers have neither stalled nor are too
//    slow (the caller passes both as `stalled`; it also keeps a release
//    for a while, agent/swarm.cpp prefer_own_subnet): a subnet whose
//    gateway gives nothing takes pieces from every peer again, and the
//    origin takes over from stalled peers as before. Longer than
//    kDeliveringMs: a young swarm's first pieces take the origin's time
//    (and its tracker's) to come; pieces from every peer then would cross
//    the router as before.
//  - Nothing is held back when this agent's address is unknown.
// Returns the addresses (SwarmPeer::address) to take no pieces from now.
std::uint64_t subnet_gateway_key(const std::string& info_hash, const std::string& address);
std::set<std::string> outside_peers_to_skip(const OriginPlanInput& in, bool stalled);

}  // namespace dopt::p2p
