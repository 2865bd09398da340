// TorrentSession: the PeerSession (p2p/session.h) as the agent sees it, in
// dopt's own types. Torrents are named by a TorrentId; libtorrent's alerts
// come out as TorrentEvents; peers, piece states and claims as plain values.
// No libtorrent header is included here: only p2p/ includes them.
//
// Contract:
//  - Built and used like PeerSession: one thread (the agent's main loop)
//    calls every method; event_fd() becomes readable when events wait, and
//    take_events() returns them (the ones it has drained so far, in order).
//  - A TorrentId stays valid until remove_torrent(); an id that is not (0,
//    or removed) makes every call a no-op returning an empty value.
//  - Events of a torrent removed meanwhile are dropped, never delivered
//    with a stale id.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "p2p/session_settings.h"

namespace dopt::p2p {

using TorrentId = std::uint64_t;  // 0: no torrent

// What happened in the session, as the agent reacts to it.
struct TorrentEvent {
    enum class Kind {
        PieceVerified,     // `piece` passed its hash check (from a peer, the origin or the cached copy)
        PieceHashFailed,   // `piece` failed its hash check and was discarded
        PieceRead,         // read_piece() done: `data`, `size` bytes
        PieceReadFailed,   // read_piece() failed: `message`
        TorrentChecked,    // the cached copy is checked: pieces may be added now
        TorrentFinished,   // every piece verified
        FileError,         // the cached copy cannot be read or written: `code` (an errno or 0), `message`
        ResumeData,        // save_resume_data() done: `resume_data`
        ResumeDataFailed,  // save_resume_data() failed
        PeerBanned,        // `peer` sent pieces that failed their hash check; refused from now on
        PeerBlocked,       // `peer` was refused (outside allowed_networks)
        PeerConnected,     // `peer` connected
        PeerDisconnected,  // `peer`'s connection for `torrent` ended: `message`; `in_handshake`
                           // when it ended before the BitTorrent handshake was done
        ListenFailed,      // the listen socket could not be opened: `message`
        MetadataReceived,  // a torrent added for metadata has it: metainfo() gives it
        TrackerFailed,     // an announce to `tracker` failed: `message` says why
        TrackerReplied,    // `tracker` answered an announce, naming `code` peers
    };
    Kind kind = Kind::PieceVerified;
    TorrentId torrent = 0;  // 0 for session-wide events
    int piece = -1;
    std::string peer;       // the peer's address (no port)
    std::string message;
    std::string tracker;    // Tracker*: the URL as in SessionSettings::trackers (a secret may be in it)
    int code = 0;
    bool in_handshake = false;         // PeerDisconnected: see there
    bool encryption_refused = false;   // PeerDisconnected in_handshake: libtorrent refused the
                                       // peer's protocol encryption (mode or handshake)
    std::shared_ptr<const char> data;  // PieceRead: the piece's bytes
    std::size_t size = 0;
    std::vector<char> resume_data;
};

// One address:port as parse_endpoint() reads it (p2p/session.h), in the
// textual form peers' addresses are reported in.
struct PeerAddress {
    std::string address;       // as TorrentEvent::peer and TorrentPeer::address write it
    int port = 0;
    bool unspecified = false;  // 0.0.0.0 or ::
};
// Throws std::runtime_error naming `what` and the value (parse_endpoint()).
PeerAddress parse_peer_address(const std::string& value, const char* what, bool allow_port0);

// A torrent's state: while `checking`, its pieces are not known yet.
struct TorrentStatus {
    bool checking = false;
    bool error = false;          // a file error (reported by a FileError event)
    std::vector<bool> pieces;    // verified pieces (with_pieces only; empty otherwise)
    std::int64_t uploaded = 0;   // bytes given to peers, all time
    int num_peers = 0;           // connected peers
};

// How this agent came to know a connected peer (libtorrent's peer_info
// source flags; a peer known several ways counts as the first of these).
enum class PeerSource { Tracker, Lsd, Static, Incoming, Other };
// "tracker", "lsd", "static" ([p2p] peers), "incoming" (it connected to
// us), "other" (a holder a rendezvous torrent named).
const char* peer_source_name(PeerSource source);
inline constexpr PeerSource kPeerSources[] = {PeerSource::Tracker, PeerSource::Lsd, PeerSource::Static,
                                              PeerSource::Incoming, PeerSource::Other};

// One connected peer of a torrent.
struct TorrentPeer {
    std::string endpoint;       // "addr:port" ("[addr]:port" for IPv6): this connection
    std::string address;        // the address alone
    bool told = false;          // it has told which pieces it holds: `pieces` means something
    bool seed = false;
    bool interesting = false;   // it holds pieces we want
    bool choked_us = false;     // it keeps us choked
    int requests_waiting = 0;   // our requests to it not yet answered
    std::int64_t payload_received = 0;  // bytes of pieces it sent us, all time
    PeerSource source = PeerSource::Other;
    std::vector<bool> pieces;   // when told: the pieces it holds
    bool dopt = false;          // it advertised dopt_claim: a dopt agent, not a stock client
};

class TorrentSession {
public:
    // Throws std::runtime_error as PeerSession's constructor does.
    explicit TorrentSession(const SessionSettings& settings);
    ~TorrentSession();
    TorrentSession(const TorrentSession&) = delete;
    TorrentSession& operator=(const TorrentSession&) = delete;

    std::uint64_t id() const;  // this session's random id, sent with its claims
    int listen_port() const;
    // PeerSession::reconfigure() and listening(): new settings on the
    // running session (listen "" = nowhere), torrents kept.
    void reconfigure(const SessionSettings& settings);
    bool listening() const;
    std::string lsd_listener_error() const;  // PeerSession's

    // PeerSession::add_torrent() for metainfo given as bytes (parse_metainfo;
    // throws MetainfoError); `have_pieces` as there: only pieces the caller
    // hashed on disk itself against the metainfo; `find_peers` as there.
    TorrentId add_torrent(std::string_view metainfo, const std::string& save_path,
                          const std::vector<char>& resume_data, const std::vector<bool>& have_pieces = {},
                          bool find_peers = true);
    // Removes a torrent; with delete_files its files in save_path go too.
    void remove_torrent(TorrentId torrent, bool delete_files);
    // The path of the torrent's one file under its save_path.
    std::string content_path(TorrentId torrent) const;

    void pause(TorrentId torrent);
    void resume(TorrentId torrent);
    // Asks for a ResumeData (or ResumeDataFailed) event.
    void save_resume_data(TorrentId torrent);
    // Hashes the cached copy again; a TorrentChecked event follows.
    void force_recheck(TorrentId torrent);
    // Asks for a PieceRead (or PieceReadFailed) event with the piece's bytes.
    void read_piece(TorrentId torrent, int piece);
    // Gives the piece's bytes (fetched from the origin) to be hash-checked:
    // a PieceVerified or PieceHashFailed event follows. Blocks a peer sent
    // for this piece are replaced, so a peer's bad block is not blamed on
    // the origin. Dropped while the torrent is checking.
    void add_piece(TorrentId torrent, int piece, std::vector<char> data);
    // True when the piece matches its v1 hash in the metainfo, or the
    // metainfo has none (v2 only).
    bool piece_matches_v1_hash(TorrentId torrent, int piece, const char* data, std::size_t len) const;

    TorrentStatus status(TorrentId torrent, bool with_pieces) const;
    // The torrent's connected peers; those with `told` have their pieces.
    std::vector<TorrentPeer> peers(TorrentId torrent) const;
    // Pieces a peer is sending us now: a block being written, or requested
    // of a peer whose endpoint is not in `failing`.
    std::vector<int> pieces_coming_from_peers(TorrentId torrent, const std::set<std::string>& failing) const;
    // Closes this torrent's connection to `endpoint` (TorrentPeer::endpoint).
    void disconnect_peer(TorrentId torrent, const std::string& endpoint);
    // PeerSession::set_no_download with addresses as TorrentPeer::address
    // gives them (std::invalid_argument when malformed).
    void set_no_download(TorrentId torrent, const std::set<std::string>& addresses);
    // PeerSession::in_own_subnet; false for a malformed address.
    bool in_own_subnet(const std::string& address) const;
    // Connects this torrent to the peer listening at `endpoint` ("ip:port";
    // std::invalid_argument when malformed); the IP filter still applies.
    void connect_peer(TorrentId torrent, const std::string& endpoint);

    // PeerSession::claim(), claims() and claims_held_over() (p2p/claims.h).
    void claim(TorrentId torrent, int piece);
    std::vector<Claim> claims(TorrentId torrent) const;
    std::set<int> claims_held_over(TorrentId torrent) const;

    // Content identity (PeerSession's calls of the same names, p2p/session.h):
    // `sha256` is 64 hex digits (else std::invalid_argument); the holder's
    // torrent is named by its id (an unknown id: nothing happens).
    void announce_content(const std::string& sha256, TorrentId torrent);
    void withdraw_content(const std::string& sha256);
    void look_up_content(const std::string& sha256, bool fetching_from_origin = false,
                         const std::vector<std::uint64_t>& split = {});
    void send_piece_hash(const std::string& sha256, std::uint64_t size, int piece, const std::string& sha1);
    void stop_looking_up(const std::string& sha256);
    // Queued content events; event_fd() becomes readable when one is queued.
    std::vector<ContentEvent> take_content_events();
    // PeerSession::add_torrent_for_metadata() for a HolderFound event's
    // info-hash (hex) and peer: a MetadataReceived event follows when a peer
    // gave the info dictionary that matches it. Throws std::invalid_argument
    // for a malformed hash or peer.
    TorrentId add_torrent_for_metadata(const std::string& info_hash, const std::string& save_path,
                                       const std::string& peer);
    // The metainfo of a torrent that has its metadata (metainfo_of(),
    // p2p/metainfo.h), "" otherwise.
    std::string metainfo(TorrentId torrent) const;

    // PeerSession::ban_address(): `address` (TorrentEvent::peer's form) is
    // refused from now on.
    bool ban_peer(const std::string& address);

    void tick();  // PeerSession::tick(): once a second or more often
    int event_fd() const;
    std::vector<TorrentEvent> take_events();

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace dopt::p2p
