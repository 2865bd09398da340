// LsdListener: remembers the LSD (BEP 14) announces heard on the LAN, so a
// torrent added later still finds the peers that announced it before.
//
// libtorrent acts on an announce only for a torrent it has at that moment
// and drops the rest; stock clients announce a torrent when they add it
// and then every 5 minutes (BEP 14), so a seeder that announced before the
// agent added the torrent stays unknown for minutes. This socket only
// listens (it never sends); PeerSession connects out to what it heard when
// it adds a torrent (docs/design.md "Finding peers").
//
// Contract:
//  - Joins 239.192.152.143:6771 (IPv4 only) on the interface that holds
//    `interface_address` (any interface for 0.0.0.0), beside libtorrent's
//    own LSD socket (both set SO_REUSEADDR; each gets every datagram).
//    Bound to the group's address: datagrams to the group only, never
//    unicast ones to port 6771. Throws std::runtime_error saying what
//    failed.
//  - drain() reads what is waiting without blocking, at most 64 datagrams
//    a call (a flood costs each tick a bounded time). A datagram that is
//    not a BT-SEARCH announce with a port and 40-hex-digit info-hashes is
//    ignored. At most kMaxEntries (info-hash, address:port) pairs are kept,
//    each for kRememberMs after it was last heard; the oldest goes first.
//  - Announces are claims by anyone on the LAN: the caller still applies
//    its IP filter to every address, as for LSD peers libtorrent finds.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include <libtorrent/address.hpp>
#include <libtorrent/sha1_hash.hpp>
#include <libtorrent/socket.hpp>

namespace lt = libtorrent;

namespace dopt::p2p {

struct LsdAnnounce {
    int port = 0;                          // where the sender takes connections
    std::vector<lt::sha1_hash> info_hashes;  // one or more (BEP 14 allows several)
};

// The announce in one datagram; nullopt when it is not a well-formed one.
std::optional<LsdAnnounce> parse_lsd_announce(std::string_view datagram);

class LsdListener {
public:
    static constexpr std::int64_t kRememberMs = 10 * 60 * 1000;  // 2 of BEP 14's 5-minute rounds
    static constexpr std::size_t kMaxEntries = 512;

    explicit LsdListener(const lt::address& interface_address);
    ~LsdListener();
    LsdListener(const LsdListener&) = delete;
    LsdListener& operator=(const LsdListener&) = delete;

    // Reads every datagram waiting; `now_ms` is CLOCK_MONOTONIC ms.
    void drain(std::int64_t now_ms);
    // Remembers an announce from `from` (drain() calls this for each one).
    void heard(const lt::address& from, const LsdAnnounce& announce, std::int64_t now_ms);
    // The peers that announced `info_hash` within kRememberMs of `now_ms`.
    std::vector<lt::tcp::endpoint> announced(const lt::sha1_hash& info_hash, std::int64_t now_ms) const;

private:
    int fd_ = -1;
    // (info-hash, peer) -> when last heard.
    std::map<std::pair<lt::sha1_hash, lt::tcp::endpoint>, std::int64_t> heard_;
};

}  // namespace dopt::p2p
