// Claims: the "dopt_claim" BEP 10 extension. An agent that starts fetching a
// piece from the origin tells its LAN peers, so they fetch another piece
// instead of the same one (the lower claimant id wins a tie).
//
// Wire format (BEP 10 extended message, so the frame on the wire is
// <len:4 BE = 14><type:1 = 20><peer's id for dopt_claim:1><payload:12>):
//   payload = piece index (4 bytes, big-endian) + claimant id (8 bytes,
//   big-endian). Anything else is ignored, never fatal.
//
// Threads:
//  - ClaimTable is shared: libtorrent's network thread adds and drops claims,
//    the agent's main thread reads and expires them. It has its own mutex.
//  - ClaimsPlugin and the torrent/peer plugins it creates (claims.cpp) live on
//    libtorrent's network thread; the only members the main thread may call
//    are the ones marked "any thread".
//  - run_on_network_thread() is how the main thread gets work done there.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <vector>

#include <libtorrent/extensions.hpp>
#include <libtorrent/info_hash.hpp>
#include <libtorrent/socket.hpp>
#include <libtorrent/span.hpp>
#include <libtorrent/torrent_handle.hpp>

#include "p2p/session.h"  // Claim

namespace dopt::p2p {

// The extension's name in the BEP 10 handshake ("m" dictionary).
inline constexpr char kClaimExtensionName[] = "dopt_claim";
// The id we ask peers to use when they send us a dopt_claim message. It must
// not be one of the ids libtorrent's bt_peer_connection handles itself
// (upload_only 3, ut_holepunch 4, lt_donthave 7, share_mode 8).
inline constexpr int kClaimMessageId = 17;
inline constexpr std::size_t kClaimPayloadSize = 12;
// 4 (length) + 1 (type 20) + 1 (extended id) + payload.
inline constexpr std::size_t kClaimFrameSize = 6 + kClaimPayloadSize;
// How long a received claim holds unless a peer announces the piece or the
// claimant repeats it.
inline constexpr std::int64_t kClaimLifetimeMs = 20'000;
// How long a piece may stay claimed, by anyone, without a peer announcing
// it: claim_hold_ms(piece_length) = max(kClaimMinHoldMs, the piece's time at
// kClaimHoldRate), i.e. max(10 s, piece_length / 1 MiB/s): 10 s up to
// 10 MiB pieces, 16 s for 16 MiB ones. An agent fetches a piece from the
// origin in well under that (1 MiB at 100 Mbit/s shared by 8 requests:
// 0.7 s); one that takes longer (a slow WAN link, a rate cap) only gets its
// piece fetched by another agent too.
inline constexpr std::int64_t kClaimMinHoldMs = 10'000;
inline constexpr std::int64_t kClaimHoldRate = 1024 * 1024;  // bytes/s
std::int64_t claim_hold_ms(std::int64_t piece_length);
// Live claims one connection may hold by default (SessionSettings sets the
// agent's swarm_origin_requests: a connection passes on other agents'
// claims too, and a whole swarm keeps about that many pieces in flight).
inline constexpr std::size_t kDefaultClaimsPerPeer = 8;
// A hostile peer can invent claimant ids; no torrent keeps more claims.
inline constexpr std::size_t kMaxClaimsPerTorrent = 8192;

// CLOCK_MONOTONIC in milliseconds (the clock Claim::expires_ms uses).
std::int64_t monotonic_ms();

struct ClaimMessage {
    int piece = 0;
    std::uint64_t claimant = 0;
};

// The 12-byte payload for `piece` and `claimant`.
std::array<char, kClaimPayloadSize> encode_claim_payload(int piece, std::uint64_t claimant);
// The whole BEP 10 frame for a peer that asked for `peer_msg_id` (1..255).
std::array<char, kClaimFrameSize> encode_claim_frame(int peer_msg_id, int piece,
                                                     std::uint64_t claimant);
// Parses a received payload. nullopt unless it is exactly 12 bytes and the
// piece is in [0, num_pieces). Never throws, whatever the bytes.
std::optional<ClaimMessage> parse_claim_payload(lt::span<char const> payload, int num_pieces);

// Received claims, per torrent, and which connections have told which
// pieces they hold. Any thread; every member takes the mutex.
//
// Rules against a peer that claims pieces and never fetches them (it would
// keep every agent of the swarm from the origin for as long as it likes):
//  - A connection holds at most `per_peer` live claims; more are ignored.
//  - A connection's claims end when it closes.
//  - A piece is held for its torrent's hold (claim_hold_ms) from the first
//    claim on it, whoever claimed it and whatever the claims since: one
//    still unannounced then is "held over", and every claim on it is
//    ignored (so not passed on) until a peer announces it or we get it
//    (drop_piece). Not per claimant address, which a LAN host can change
//    at will: however many addresses it has, a piece is held back once, for
//    one hold. An honest agent slower than the hold only has its piece
//    fetched twice; its other claims keep counting.
//  A claim passed on counts against the connection it came through.
class ClaimTable {
public:
    // `hold_ms` is the hold of torrents without set_hold().
    explicit ClaimTable(std::int64_t lifetime_ms = kClaimLifetimeMs,
                        std::int64_t hold_ms = kClaimMinHoldMs,
                        std::size_t per_peer = kDefaultClaimsPerPeer);

    // The torrent's hold (claim_hold_ms of its piece length); kept until
    // drop_torrent.
    void set_hold(const lt::info_hash_t& torrent, std::int64_t hold_ms);
    // Records (or refreshes) `claimant`'s claim on `piece`, heard from the
    // connection to `from`, expiring at now_ms + lifetime; true when the
    // claim is new (not a refresh). Ignored (false) when the piece is held
    // over, when the connection already holds per_peer live claims, or when
    // the torrent holds kMaxClaimsPerTorrent claims.
    bool add(const lt::info_hash_t& torrent, int piece, std::uint64_t claimant,
             const lt::tcp::endpoint& from, std::int64_t now_ms);
    // Drops every claim on `piece` and its hold: a peer has it now (or we
    // do), so no agent fetches it from the origin any more.
    void drop_piece(const lt::info_hash_t& torrent, int piece);
    // Drops every claim for a torrent (it was removed), what its peers
    // told, its hold and its pieces held over.
    void drop_torrent(const lt::info_hash_t& torrent);
    // Drops claims whose expires_ms <= now_ms and claims on pieces held over.
    void expire(std::int64_t now_ms);
    // The torrent's claims that have not expired at now_ms, on pieces not
    // held over, oldest first.
    std::vector<Claim> get(const lt::info_hash_t& torrent, std::int64_t now_ms) const;
    // The torrent's pieces held over at now_ms.
    std::set<int> held_over(const lt::info_hash_t& torrent, std::int64_t now_ms) const;

    // The connection to `peer` has told which pieces it holds (a bitfield,
    // have-all, have-none or a first HAVE).
    void peer_told_pieces(const lt::info_hash_t& torrent, const lt::tcp::endpoint& peer);
    // The connection to `peer` is gone: its claims end.
    void peer_gone(const lt::info_hash_t& torrent, const lt::tcp::endpoint& peer);
    // The torrent's connections that have told their pieces.
    std::set<lt::tcp::endpoint> peers_that_told(const lt::info_hash_t& torrent) const;
    // The connection to `peer` advertised dopt_claim in its extension
    // handshake: it is a dopt agent, which takes part in the origin plan.
    void peer_speaks_claims(const lt::info_hash_t& torrent, const lt::tcp::endpoint& peer);
    // The torrent's connections that advertised dopt_claim.
    std::set<lt::tcp::endpoint> peers_that_claim(const lt::info_hash_t& torrent) const;

private:
    struct Entry {
        Claim claim;
        lt::tcp::endpoint from;  // the connection it was heard on
    };
    struct TorrentClaims {
        std::vector<Entry> entries;
        // Piece -> when it was first claimed since it was last dropped.
        // Kept when its claims end (a claimer that reconnects does not
        // start a new hold); at most one per piece of the torrent.
        std::map<int, std::int64_t> claimed_since;
        bool empty() const { return entries.empty() && claimed_since.empty(); }
    };
    // Callers hold mutex_.
    std::int64_t hold_of(const lt::info_hash_t& torrent) const;
    static bool is_held_over(const TorrentClaims& t, int piece, std::int64_t hold_ms,
                             std::int64_t now_ms);

    const std::int64_t lifetime_ms_;
    const std::int64_t hold_ms_;
    const std::size_t per_peer_;
    mutable std::mutex mutex_;
    std::map<lt::info_hash_t, TorrentClaims> claims_;  // guarded by mutex_
    std::map<lt::info_hash_t, std::int64_t> holds_;    // guarded by mutex_
    std::map<lt::info_hash_t, std::set<lt::tcp::endpoint>> told_;  // guarded by mutex_
    std::map<lt::info_hash_t, std::set<lt::tcp::endpoint>> claimers_;  // guarded by mutex_
};

// The torrents a session plugin gives a torrent plugin, with what that
// plugin needs to know of each: announced by the main thread before
// session::add_torrent, read on the network thread when libtorrent calls
// new_torrent. Any thread; every member takes the mutex.
template <class Value>
class ExpectedTorrents {
public:
    void expect(const lt::info_hash_t& torrent, Value value) {
        std::lock_guard<std::mutex> lock(mutex_);
        values_[torrent] = std::move(value);
    }
    void forget(const lt::info_hash_t& torrent) {
        std::lock_guard<std::mutex> lock(mutex_);
        values_.erase(torrent);
    }
    std::optional<Value> find(const lt::info_hash_t& torrent) const {
        std::lock_guard<std::mutex> lock(mutex_);
        auto it = values_.find(torrent);
        return it == values_.end() ? std::nullopt : std::optional<Value>(it->second);
    }

private:
    mutable std::mutex mutex_;
    std::map<lt::info_hash_t, Value> values_;  // guarded by mutex_
};

// A session plugin's weak references to its torrent plugins (libtorrent
// owns them): `plugin` is kept for `torrent`, expired ones are dropped.
template <class Plugin>
void keep_torrent_plugin(std::map<lt::info_hash_t, std::weak_ptr<Plugin>>& plugins,
                         const lt::info_hash_t& torrent, const std::shared_ptr<Plugin>& plugin) {
    for (auto it = plugins.begin(); it != plugins.end();)
        it = it->second.expired() ? plugins.erase(it) : std::next(it);
    plugins[torrent] = plugin;
}

class ClaimTorrent;  // claims.cpp

// The session plugin (put it in session_params.extensions). It gives each
// torrent announced with expect_torrent() a torrent plugin, which gives each
// BitTorrent connection a peer plugin that advertises dopt_claim, stores the
// claims the peer sends in the ClaimTable and can send ours. The peer plugin
// also records in the table when the peer has told its pieces (any
// BitTorrent peer, dopt or not): libtorrent's peer_info::pieces is sized
// for the torrent, all zeros, from the moment a connection starts, so it
// cannot tell a peer that holds nothing from one that has not said yet.
//
// A claim heard for the first time is passed on once to the other dopt
// peers of the torrent (not to the one it came from): two agents that are
// not connected to each other (both of their simultaneous connections were
// dropped as duplicates, or one is still connecting) still hear each
// other's claims through any agent both are connected to. Refreshes are not
// passed on, so a claim crosses each connection about once. Claims naming
// `own_id` (ours, coming back) are neither stored nor passed on.
class ClaimsPlugin : public lt::plugin {
public:
    ClaimsPlugin(std::shared_ptr<ClaimTable> table, std::uint64_t own_id);

    // Any thread, before session::add_torrent: the torrent with this info-hash
    // has `num_pieces` pieces (needed to validate received piece indexes;
    // the plugin cannot ask the torrent safely itself). Torrents added
    // without it get no claims plugin.
    void expect_torrent(const lt::info_hash_t& torrent, int num_pieces);
    // Any thread: undoes expect_torrent (after add_torrent returned).
    void forget_expected(const lt::info_hash_t& torrent);

    // Network thread (libtorrent calls it).
    std::shared_ptr<lt::torrent_plugin> new_torrent(const lt::torrent_handle& handle,
                                                    lt::client_data_t) override;

    // Network thread only: sends claim {piece, claimant} to every connected
    // peer of the torrent that advertised dopt_claim. Does nothing for an
    // unknown torrent or a piece out of range.
    void send_claim(const lt::info_hash_t& torrent, int piece, std::uint64_t claimant);
    // Network thread only: closes the torrent's connection to `peer`.
    void disconnect_peer(const lt::info_hash_t& torrent, const lt::tcp::endpoint& peer);
    // Network thread only: the torrent sends no requests to connections to
    // `addresses`, and again to all others (PeerSession::set_no_download).
    void set_no_download(const lt::info_hash_t& torrent, const std::set<lt::address>& addresses);

private:
    std::shared_ptr<ClaimTable> table_;
    const std::uint64_t own_id_;
    ExpectedTorrents<int> expected_;  // their piece counts
    // Touched only on the network thread (new_torrent, send_claim).
    std::map<lt::info_hash_t, std::weak_ptr<ClaimTorrent>> torrents_;
};

// Runs `fn` on libtorrent's network thread, soon and asynchronously; returns
// false (and drops fn) when the handle no longer refers to a torrent.
//
// Why this works: peer connections and plugins may only be touched on the
// network thread, and libtorrent offers no public "post" for that. But
// torrent_handle::add_extension(ext) is an async_call of
// torrent::add_extension_fun, which runs on the network thread, calls
// ext(handle, userdata) there, and adds a plugin only when ext returns one.
// Our ext runs `fn` and returns nullptr, so no plugin is added. (Checked
// against libtorrent 2.0.8: src/torrent_handle.cpp and src/torrent.cpp.)
bool run_on_network_thread(const lt::torrent_handle& handle, std::function<void()> fn);

}  // namespace dopt::p2p
