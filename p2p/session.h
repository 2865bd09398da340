// PeerSession: doptd's one libtorrent session, built with dopt's safety
// defaults (docs/design.md "Safety defaults") and the "claims" extension that lets
// agents on one LAN tell each other which pieces they fetch from the origin.
//
// Contract:
//  - The constructor builds the session from a complete settings pack and an
//    explicit plugin list: no DHT, UPnP, NAT-PMP or ut_pex, no tracker but
//    SessionSettings::trackers (every torrent announces to them all), and
//    ut_metadata (BEP 9: a torrent's info dictionary to a peer that knows its
//    info-hash, as a magnet client does) on every torrent; uTP off; TCP only, listening only on `listen`; LSD as
//    configured; an IP filter that admits only `allowed_networks` (default:
//    the subnet of the listen address, from the interface that holds it;
//    127.0.0.0/8 for a loopback address); POSIX disk I/O (a full disk is an
//    error, never a SIGBUS); smart_ban on, so a peer that sends bad pieces is
//    banned, and a banned peer's address is then blocked in the IP filter
//    (any port, every torrent, until the session ends); every interested
//    peer unchoked (no upload slots: agents cooperate). Throws
//    std::runtime_error with a clear message when the settings cannot be
//    used (a malformed listen address, a bad CIDR).
//  - Every method is called from one thread (the agent's main loop). Alerts
//    are drained there too: alert_fd() becomes readable when libtorrent has
//    alerts waiting; pop_alerts() returns them (valid until the next call).
//  - add_torrent() takes metainfo whose web seeds and trackers the caller
//    has already stripped; it stores the content under save_path only.
#pragma once

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <libtorrent/alert.hpp>
#include <libtorrent/pex_flags.hpp>
#include <libtorrent/socket.hpp>
#include <libtorrent/torrent_handle.hpp>
#include <libtorrent/torrent_info.hpp>

#include "p2p/session_settings.h"

namespace lt = libtorrent;

namespace dopt::p2p {

// "addr:port" or "[v6addr]:port", the form of SessionSettings::listen and
// SessionSettings::peers. Throws std::runtime_error naming `what` and the value
// when it is not one; port 0 only when allow_port0.
lt::tcp::endpoint parse_endpoint(const std::string& value, const char* what, bool allow_port0);

// The info-hash torrent `torrent` is announced to trackers as in `group`:
// SHA-1("dopt-group-v1:" || group || v1 info-hash) (the v2 hash's first 20
// bytes for a v2-only torrent). Who lacks the group key cannot tell H from
// it, nor find the agents of the group that announce it.
lt::sha1_hash group_info_hash(const std::string& group, const lt::info_hash_t& torrent);

// The flags every torrent_handle::connect_peer of the agent passes: without
// pex_encryption, libtorrent opens the connection in plaintext and tries an
// encrypted handshake only after a plaintext one failed (out_enc_policy
// pe_enabled; docs/design.md "Safety defaults").
constexpr lt::pex_flags_t kPlaintextFirst{};

class PeerSession {
public:
    explicit PeerSession(const SessionSettings& settings);
    ~PeerSession();
    PeerSession(const PeerSession&) = delete;
    PeerSession& operator=(const PeerSession&) = delete;

    // Applies new settings to the running session: listen ("" = listen
    // nowhere: no peer reaches this agent, LSD is silent), lan_discovery
    // (every torrent), peers and allowed_networks (the IP filter is rebuilt
    // from them; addresses banned so far stay blocked; connections it now
    // refuses close), the rate limits, throttle_lan and trackers (every
    // torrent announces to the new list at once). claims_per_peer
    // keeps its first value. Torrents and connections the new settings
    // still allow are kept. Throws std::runtime_error as the constructor
    // does, changing nothing. An empty listen is allowed at construction
    // too.
    void reconfigure(const SessionSettings& settings);
    // False while listen is "".
    bool listening() const;
    // Why the LSD listener (p2p/lsd_listener.h) could not be made for the
    // current settings, or "": peering goes on without it.
    std::string lsd_listener_error() const;

    // This session's random id, sent with its claims.
    std::uint64_t id() const;
    // The port peers connect to (the configured one, or the one the OS chose
    // for port 0).
    int listen_port() const;

    // Adds a torrent (not paused, not auto-managed, seeding once complete)
    // with its storage in save_path; `resume_data` (from save_resume_data,
    // may be empty) spares a full recheck. Connects the static peers to it,
    // and the peers that announced it on LSD in the last 10 minutes
    // (p2p/lsd_listener.h), and announces it on LSD now and again a few times in the next seconds
    // (tick() does the repeats), not only on libtorrent's 0/2/6 s schedule.
    // Resume data for another torrent, or unreadable, means a fresh start.
    // The session keeps its own copy of `info`. Only torrents added here
    // speak the claims extension (not ones added through native()).
    // Note: libtorrent drops handle.add_piece() calls while the torrent is
    // still checking its files; wait for the downloading state first.
    // `have_pieces` (empty, or one flag per piece), used only when no
    // resume data is: the pieces set are taken as held without a check
    // (libtorrent then checks only that the file is long enough; a file too
    // short means a full check). The caller must have hashed each such
    // piece on disk against `info`'s hash itself: libtorrent serves it to
    // peers as it is.
    // With find_peers false the torrent finds no peers of its own: no
    // tracker, LSD, static peers or peers heard on LSD, now or in tick();
    // only those the caller connects (connect_peer) and those that connect
    // to it (a co-fetch's segment torrents, whose peers the caller knows).
    lt::torrent_handle add_torrent(std::shared_ptr<const lt::torrent_info> info,
                                   const std::string& save_path,
                                   const std::vector<char>& resume_data,
                                   const std::vector<bool>& have_pieces = {}, bool find_peers = true);
    // Removes a torrent; with delete_files its files in save_path go too.
    void remove_torrent(const lt::torrent_handle& handle, bool delete_files);

    // Once a second: LSD re-announces for young torrents, and once a
    // minute for a torrent that lacks pieces and has no peer; static peers
    // reconnected to incomplete torrents that lost them; expired claims
    // dropped.
    void tick();

    // Tells every connected peer of this torrent that supports the claims
    // extension that this agent is fetching `piece` from the origin. Returns
    // at once; the message goes out on libtorrent's thread. Peers that are
    // not connected yet (or a piece out of range) get nothing: callers that
    // need a claim to reach late peers send it again.
    void claim(const lt::torrent_handle& handle, int piece);
    // Claims from other agents for this torrent that have not expired
    // (claims live 20 s unless repeated, or until a peer announces the
    // piece), on pieces not held over (p2p/claims.h has the rules against
    // peers that claim and never fetch).
    std::vector<Claim> claims(const lt::torrent_handle& handle) const;
    // The torrent's pieces held over: claimed for longer than
    // claim_hold_ms(piece length) without a peer announcing them; their
    // claims are ignored until one does (or we get the piece).
    std::set<int> claims_held_over(const lt::torrent_handle& handle) const;
    // This torrent's connections (remote endpoints, as in peer_info::ip)
    // whose peer has told which pieces it holds. Until then a peer's
    // peer_info::pieces is all zeros, whatever it holds. Take this before
    // get_peer_info: a peer in the set has its pieces in the peer_info
    // taken after.
    std::set<lt::tcp::endpoint> peers_that_told(const lt::torrent_handle& handle) const;
    // The torrent's connections that advertised dopt_claim (dopt agents).
    std::set<lt::tcp::endpoint> peers_that_claim(const lt::torrent_handle& handle) const;
    // Closes this torrent's connection to `peer` (a remote endpoint, as in
    // peer_info::ip), soon, on libtorrent's thread; its outstanding requests
    // go back to the piece picker for other peers. A static peer is
    // connected again by tick().
    void disconnect_peer(const lt::torrent_handle& handle, const lt::tcp::endpoint& peer);
    // Takes no pieces, from now on, from this torrent's connections to the
    // addresses in `addresses` (and no others): they stay connected, we
    // still serve them and hear their pieces and claims, we only send them
    // no requests (requests already sent are answered). Soon, on
    // libtorrent's thread; a connection made later gets the current set.
    // A peer taken off the set is asked for pieces again at its next HAVE
    // or unchoke.
    void set_no_download(const lt::torrent_handle& handle, const std::set<lt::address>& addresses);
    // Whether `address` is in this agent's own subnet: the network of the
    // listen address on the interface that holds it (what LSD reaches and
    // what does not cross a router). True for every address when that is
    // unknown (listening nowhere, or on an address no interface holds), so
    // that nothing is then held back.
    bool in_own_subnet(const lt::address& address) const;

    // ---- content identity (p2p/content.h, docs/design.md "Content identity") ----
    // `sha256` is the file's SHA-256 X as 64 hex digits; anything else throws
    // std::invalid_argument. Each joins X's rendezvous torrent R (added by
    // info-hash, no metadata: it never exchanges payload) with the static
    // peers and LSD, or tells the peers already on it what changed.
    //
    // Holder: this agent seeds X as the torrent `torrent` (added with
    // add_torrent, from metainfo make_content_metainfo() made: v1, else
    // std::invalid_argument), and tells R's peers "X is torrent". The torrent serves its info dictionary to
    // peers (BEP 9), as every torrent does. withdraw_content() leaves R (unless this
    // agent also looks X up, then it becomes a wanter again).
    void announce_content(const std::string& sha256, const lt::info_hash_t& torrent);
    void withdraw_content(const std::string& sha256);
    // Wanter: tells R's peers "I want X" (with this session's id() as node
    // id), and reports, as ContentEvents, each holder of X (HolderFound,
    // once per connection and mapping) and each change in the set of other
    // wanters (WantersChanged), until stop_looking_up(). Announcing X as
    // held ends looking it up. Called again, it tells R's peers whether this
    // agent now fetches X from the origin, and, co-fetching, the node ids
    // it splits that fetch among (`split`, sorted, at most kMaxSplitNodes).
    void look_up_content(const std::string& sha256, bool fetching_from_origin = false,
                         const std::vector<std::uint64_t>& split = {});
    // Co-fetching X: tells R's peers the v1 SHA-1 (20 bytes) of `piece` of
    // X (a file of `size` bytes) as fetched from the origin; with an empty
    // `sha1`, that this agent is fetching that piece now (a claim).
    void send_piece_hash(const std::string& sha256, std::uint64_t size, int piece, const std::string& sha1);
    void stop_looking_up(const std::string& sha256);
    // The content events queued so far, in order. alert_fd() becomes
    // readable when one is queued.
    std::vector<ContentEvent> take_content_events();
    // Malformed dopt_content messages and handshake entries ignored so far
    // (each is also a MessageIgnored event).
    std::uint64_t content_messages_ignored() const;
    // X's rendezvous torrent; invalid while this agent neither holds nor
    // wants X.
    lt::torrent_handle rendezvous_torrent(const std::string& sha256) const;
    // Adds torrent `info_hash` without metadata, in upload mode (it fetches
    // no piece), to take its info dictionary from peers by BEP 9 (libtorrent
    // checks it against the info-hash); connects `peer` ("addr:port", a
    // holder) and the static peers. A metadata_received_alert follows; then
    // metainfo_of() gives the metainfo, and the caller removes this torrent
    // and adds the metainfo with add_torrent().
    lt::torrent_handle add_torrent_for_metadata(const lt::sha1_hash& info_hash,
                                                const std::string& save_path,
                                                const std::string& peer);

    // Whether `peer` is one of [p2p] peers (address and port).
    bool is_static_peer(const lt::tcp::endpoint& peer) const;

    // Refuses `address` (an IP address, no port) from now on, on every port
    // and torrent, until the session ends, as a peer banned for bad pieces
    // is; its connections close. False (nothing done) when it is not an
    // address. For peers that announced a false content mapping.
    bool ban_address(const std::string& address);

    int alert_fd() const;
    std::vector<lt::alert*> pop_alerts();

    lt::session& native();  // for what this class does not wrap

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace dopt::p2p
