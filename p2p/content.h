// Content identity: peering from a file's SHA-256 X when no metainfo is
// published (docs/design.md "Content identity"). Agents that hold or want X
// meet on a rendezvous torrent R whose info-hash is derived from X alone,
// and tell each other on R's connections, with the BEP 10 extension
// "dopt_content", "I hold X as info-hash H" or "I want X" (docs/protocol.md
// has the wire format).
//
// R is added by info-hash only and never gets metadata (no ut_metadata on
// it), so it never exchanges a byte of payload: libtorrent refuses requests
// for a torrent without metadata, and keeps its connections (a torrent
// without metadata is never "redundant", and close_redundant_connections is
// off anyway).
//
// Threads:
//  - ContentTable is shared: the main thread sets what this agent holds or
//    wants and takes the events; libtorrent's network thread records what
//    peers say and queues the events. It has its own mutex.
//  - ContentPlugin and the torrent/peer plugins it creates (content.cpp)
//    live on the network thread, except the members marked "any thread".
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <libtorrent/bdecode.hpp>
#include <libtorrent/entry.hpp>
#include <libtorrent/extensions.hpp>
#include <libtorrent/info_hash.hpp>
#include <libtorrent/socket.hpp>
#include <libtorrent/span.hpp>
#include <libtorrent/torrent_handle.hpp>

#include "p2p/claims.h"            // ExpectedTorrents
#include "p2p/session_settings.h"  // ContentEvent

namespace dopt::p2p {

// A file's SHA-256, as bytes.
using ContentSha256 = std::array<char, 32>;

// The extension's name in the BEP 10 handshake ("m" dictionary), and the key
// of our state in the handshake itself.
inline constexpr char kContentExtensionName[] = "dopt_content";
// The id we ask peers to use for dopt_content messages (not one libtorrent
// handles itself, nor dopt_claim's 17).
inline constexpr int kContentMessageId = 18;
// A dopt_content message or handshake entry longer than this is ignored.
inline constexpr std::size_t kMaxContentMessageSize = 512;
// Events waiting to be taken; more are dropped (and counted as ignored).
inline constexpr std::size_t kMaxContentEvents = 4096;

// "addr:port" ("[addr]:port" for IPv6), as events and TorrentPeer name peers.
std::string endpoint_string(const lt::tcp::endpoint& ep);
// X from 64 hex digits (either case); nullopt when it is not one.
std::optional<ContentSha256> parse_sha256_hex(const std::string& hex);
// A v1 info-hash from 40 hex digits; nullopt when it is not.
std::optional<lt::sha1_hash> parse_info_hash_hex(const std::string& hex);
// R's info-hash: the SHA-1 of "dopt-rendezvous-v1:" followed by X's 32
// bytes (a v1 info-hash; R has no metadata, so nothing else is needed).
lt::info_hash_t rendezvous_info_hash(const ContentSha256& x);

// What an agent says on R about X: its node id and listen port, and, for a
// holder, the (v1) info-hash X is seeded as (make_content_metainfo()); a
// wanter says whether it is fetching X from the origin.
struct ContentState {
    ContentSha256 x{};
    std::uint64_t node = 0;
    int port = 0;                         // where it accepts connections
    std::optional<lt::sha1_hash> holds;   // holder: H; wanter: nullopt
    bool fetching = false;                // wanter only: fetching X from the origin
    // A wanter co-fetching X (fetching only): the node ids, sorted, it
    // splits the origin fetch among (docs/design.md "Content identity").
    std::vector<std::uint64_t> split;
};

// A co-fetcher's v1 SHA-1 of one piece of X it fetched from the origin
// (pieces of choose_piece_size(size)); with no SHA-1, a claim: it is
// fetching that piece from the origin now.
struct ContentPieceHash {
    ContentSha256 x{};
    std::uint64_t node = 0;
    std::uint64_t size = 0;   // the file's size, which sets the pieces
    int piece = 0;
    std::string sha1;         // 20 raw bytes; empty: a claim
};

// Which co-fetcher fetches each of `pieces` pieces from the origin, among
// `nodes` (node ids, non-empty): piece by piece in file order, the node
// with the highest score of (node, piece) (cofetch_piece_score: rendezvous
// hashing) that is still under its share: floor(pieces / k) each, and one
// more for the first pieces % k nodes to reach it. Every agent
// computes the same owners from the same set; two sets that differ by one
// node disagree on few pieces more than that node's (plain rendezvous
// hashing moves only those, but left some node with none or three times
// another's share), so co-fetchers whose views of R differ for a moment
// fetch few pieces twice. Empty when `nodes` is.
std::vector<std::uint64_t> cofetch_owners(const std::vector<std::uint64_t>& nodes, int pieces);
// The owner of one piece with no share bound (plain rendezvous hashing).
std::uint64_t cofetch_piece_owner(const std::vector<std::uint64_t>& nodes, int piece);
// A node's score for a piece (the owner has the highest). The higher its
// score, the likelier a node owns the piece in any larger set too, so a
// co-fetcher fetches its own pieces in that order: while views still
// differ, the pieces it fetches first are seldom another's.
std::uint64_t cofetch_piece_score(std::uint64_t node, int piece);
// Where `node` comes for piece `piece` in that order (0: it owns it, 1: it
// is next, ...); nodes.size() when it is not among `nodes`. Work stealing
// takes the pieces a co-fetcher comes next for first, so that two
// co-fetchers done with their own pieces seldom steal the same one.
std::size_t cofetch_piece_rank(const std::vector<std::uint64_t>& nodes, int piece, std::uint64_t node);

// The bencoded state (the payload of a dopt_content message).
std::string encode_content_state(const ContentState& s);
// The state as an entry, for the extended handshake.
lt::entry content_state_entry(const ContentState& s);
// Reads a state from a bdecoded dictionary. nullopt unless it is exactly
// as docs/protocol.md says and names `x`. Never throws.
std::optional<ContentState> parse_content_state(const lt::bdecode_node& dict, const ContentSha256& x);
// The same from a message payload (bencoded), at most kMaxContentMessageSize.
std::optional<ContentState> parse_content_message(lt::span<char const> payload,
                                                  const ContentSha256& x);
// A piece message (a dictionary with "i": a hash "s", or a claim "g"): encoding and reading;
// nullopt unless exactly as docs/protocol.md says. Never throws.
std::string encode_piece_hash(const ContentPieceHash& h);
std::optional<ContentPieceHash> parse_piece_hash(const lt::bdecode_node& dict, const ContentSha256& x);

// What this agent holds and wants, what R's peers said, and the events
// for the agent. Any thread; every member takes the mutex.
class ContentTable {
public:
    // `notify` (any thread, without the lock held) wakes the main loop when
    // an event is queued.
    explicit ContentTable(std::uint64_t own_node, std::function<void()> notify);

    void set_listen_port(int port);
    // Our state for X: holder of `h`, or wanter (h nullopt), fetching it
    // from the origin or not (a holder never is). Starting to want X
    // reports the holders and wanters already known on R.
    void set_own(const ContentSha256& x, std::optional<lt::sha1_hash> h, bool fetching = false,
                 std::vector<std::uint64_t> split = {});
    void clear_own(const ContentSha256& x);
    // What we tell R's peers about X; nullopt when we neither hold nor want it.
    std::optional<ContentState> own_state(const ContentSha256& x) const;

    // Network thread: the connection `conn` on X's R said `s` (handshake or
    // message). While we want X, a holder gives a ContentHolderFound event
    // (once per connection and mapping) and a change in the wanters'
    // node ids, or in which of them fetch X from the origin, a
    // ContentWantersChanged.
    void peer_said(const ContentSha256& x, const lt::tcp::endpoint& conn, const ContentState& s);
    // The connection is gone: its wanter (if one) leaves the set.
    void peer_gone(const ContentSha256& x, const lt::tcp::endpoint& conn);
    // Network thread: the connection `conn` sent a piece hash; while we
    // want X it becomes a PieceHash event.
    void peer_sent_hash(const lt::tcp::endpoint& conn, const ContentPieceHash& h);
    // A malformed dopt_content message or handshake from `conn`.
    void ignored(const lt::tcp::endpoint& conn, const std::string& why);

    std::vector<ContentEvent> take_events();
    std::uint64_t ignored_count() const { return ignored_count_; }

private:
    struct PeerState {
        std::uint64_t node = 0;
        std::optional<lt::sha1_hash> holds;
        int port = 0;
        bool fetching = false;
        std::vector<std::uint64_t> split;
    };
    struct Content {
        std::optional<ContentState> own;
        std::map<lt::tcp::endpoint, PeerState> peers;  // by R connection
        std::vector<std::uint64_t> wanters_reported;   // last WantersChanged
        std::vector<std::uint64_t> fetchers_reported;
        std::map<std::uint64_t, std::vector<std::uint64_t>> splits_reported;
    };
    // Callers hold mutex_; they return true when they queued an event.
    bool push(ContentEvent e);
    bool report_holder(const ContentSha256& x, const lt::tcp::endpoint& conn, const PeerState& p);
    bool report_wanters(const ContentSha256& x, Content& c, bool always);

    const std::uint64_t own_node_;
    const std::function<void()> notify_;
    std::atomic<std::uint64_t> ignored_count_{0};
    mutable std::mutex mutex_;
    int port_ = 0;                               // guarded by mutex_
    std::map<ContentSha256, Content> contents_;  // guarded by mutex_
    std::vector<ContentEvent> events_;           // guarded by mutex_
};

class ContentTorrent;  // content.cpp

// The session plugin (in session_params.extensions). Each rendezvous torrent
// announced with expect_rendezvous() gets a torrent plugin, which gives each
// BitTorrent connection a peer plugin that sends our state for X in the
// extended handshake and in later messages, and records the peer's.
class ContentPlugin : public lt::plugin {
public:
    explicit ContentPlugin(std::shared_ptr<ContentTable> table);

    // Any thread, before session::add_torrent of R; kept until forget.
    void expect_rendezvous(const lt::info_hash_t& r, const ContentSha256& x);
    void forget_rendezvous(const lt::info_hash_t& r);

    // Network thread (libtorrent calls it).
    std::shared_ptr<lt::torrent_plugin> new_torrent(const lt::torrent_handle& handle,
                                                    lt::client_data_t) override;
    // Network thread only: sends our current state for X to every peer of R
    // that advertised dopt_content.
    void send_state(const lt::info_hash_t& r);
    // Network thread only: sends `payload` (a bencoded dopt_content
    // message) to every peer of R that advertised dopt_content.
    void send_message(const lt::info_hash_t& r, const std::string& payload);

private:
    std::shared_ptr<ContentTable> table_;
    ExpectedTorrents<ContentSha256> expected_;  // rendezvous torrents and their X
    // Touched only on the network thread.
    std::map<lt::info_hash_t, std::weak_ptr<ContentTorrent>> torrents_;
};

}  // namespace dopt::p2p
