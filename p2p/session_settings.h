// What a PeerSession is built from, and the claims it reports: plain values,
// no libtorrent type, shared by p2p/session.h and p2p/torrent_session.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace dopt::p2p {

struct SessionSettings {
    std::string listen;                          // "addr:port", IPv4 or [IPv6]
    bool lan_discovery = true;                   // LSD (BEP 14)
    std::vector<std::string> peers;              // static "addr:port"
    std::vector<std::string> allowed_networks;   // CIDRs; empty: the listen subnet
    std::uint64_t upload_rate_limit = 0;         // bytes/s to peers, 0 = unlimited
    std::uint64_t download_rate_limit = 0;       // bytes/s from peers, 0 = unlimited
    bool throttle_lan = false;  // apply the two limits to LAN peers too
                                // (libtorrent exempts them by default)
    int claims_per_peer = 8;    // live claims one connection may hold (claims.h)
    // Tracker announce URLs ("http[s]://host:port/path", "udp://host:port"),
    // checked by the caller; every torrent is announced to all of them.
    std::vector<std::string> trackers;
    // Non-empty: torrent H is announced to the trackers as the group's
    // hash of H (group_info_hash), never as H: agents of other groups on the
    // same tracker never learn this one.
    std::string group;
};

// At most this many node ids in a co-fetcher's split ("c", p2p/content.h).
inline constexpr std::size_t kMaxSplitNodes = 32;

// What the content extension (p2p/content.h) reports: agents on the LAN
// that hold or want a file by its SHA-256. Reported only while this agent
// looks the SHA-256 up (look_up_content), except MessageIgnored.
struct ContentEvent {
    enum class Kind {
        HolderFound,     // `peer` holds `sha256` as `info_hash`: a mapping not verified yet
        WantersChanged,  // the other agents that want `sha256` now: `wanters` (node ids, sorted),
                         // and those of them fetching it from the origin: `fetchers`
        MessageIgnored,  // `peer` sent a malformed dopt_content message: `message` says why
        PieceHash,       // `peer` (node `node`) fetched `piece` of `sha256` (a file of `size`
                         // bytes) from the origin; its v1 SHA-1 is `piece_sha1` (20 bytes);
                         // an empty `piece_sha1`: it is fetching that piece now
    };
    Kind kind = Kind::HolderFound;
    std::string sha256;        // lowercase hex (64 digits)
    std::string info_hash;     // HolderFound: the (v1) info-hash, lowercase hex (40 digits)
    std::string peer;          // "addr:port" where the holder accepts connections; the sender
    std::vector<std::uint64_t> wanters;
    std::vector<std::uint64_t> fetchers;  // a subset of `wanters`
    // WantersChanged: each co-fetcher's split (node -> the node ids it
    // splits the origin fetch among), and where each wanter accepts
    // connections (node -> "addr:port").
    std::map<std::uint64_t, std::vector<std::uint64_t>> splits;
    std::map<std::uint64_t, std::string> endpoints;
    std::string message;
    std::uint64_t node = 0;     // PieceHash
    std::uint64_t size = 0;
    int piece = -1;
    std::string piece_sha1;
};

// A claim another agent sent: it is fetching `piece` from the origin.
struct Claim {
    int piece = 0;
    std::uint64_t claimant = 0;  // the sender's session id (lower wins a tie)
    std::int64_t expires_ms = 0; // CLOCK_MONOTONIC milliseconds
};

}  // namespace dopt::p2p
