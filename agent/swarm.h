// Swarms: the peer session and every torrent in it (swarm.cpp), moved out
// of the Agent. A job's current file goes through a torrent: metainfo
// discovery (the job's, else the origin's `URL.torrent`, else HTTP only),
// the torrents (`Swarm`), origin pieces handed to the peer session, verified
// pieces written into partial files, the session's events and the peer cache
// with its eviction. Internal to agent/; runs on the agent's one thread.
//
// What the swarm asks of the agent goes through the Agent's public section
// "for the swarm" (agent.h): a job's state changes and failures, starting a
// job's next step, opening its partial file, owner operations, progress
// checkpoints and notifications, and the jobs themselves. The job table, the
// origin fetcher and the config are given by reference at construction.
#pragma once

#include <cstdint>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <unistd.h>

#include "agent/agent.h"
#include "agent/cache_copy.h"
#include "agent/config.h"
#include "agent/interface_address.h"
#include "agent/origin_fetcher.h"
#include "p2p/metainfo_summary.h"
#include "p2p/origin_picker.h"
#include "p2p/torrent_session.h"
#include "storage/job_store.h"

namespace dopt::agent {

class Swarms;
struct OriginPiece;
struct CoFetchPiece;

// One torrent in the peer session: content being fetched for jobs, or
// complete and kept in the peer cache to seed.
struct Swarm {
    using Job = Agent::Job;

    std::string info_hash;
    p2p::MetainfoSummary meta;
    p2p::TorrentId torrent = 0;
    // Origin pieces are fetched on behalf of the users in turn (round robin
    // over `users`), each from that job's own URL with its own headers: never
    // from the URL another job (or user) registered the content with. This
    // counts the requests started, to pick the next user.
    std::size_t origin_turn = 0;
    std::set<Job*> users;                 // jobs whose current file this is
    // Addresses of the agents that said they hold this content by its
    // SHA-256: while the swarm is young they count as static peers do.
    std::set<std::string> holder_ips;
    std::vector<bool> have;               // verified, held by the peer session
    int have_count = 0;
    std::vector<bool> reading;            // read_piece() asked, PieceRead event pending
    std::vector<bool> from_origin;        // fetched by our origin fetcher
    // Hash-checked in this run, its PieceVerified event handled: by the
    // peer session as the piece arrived, or, for a co-fetch's own pieces
    // (cofetch_hashed), by this agent as it fetched them
    // (keep_cofetch_piece). Such a piece is copied into partial files in
    // the kernel; any other is read back and hashed again (write_piece).
    std::vector<bool> verified_now;
    std::vector<bool> cofetch_hashed;
    // When the session's status first showed a piece held that was hashed
    // in this run, before its PieceVerified event (0: not so).
    std::vector<std::int64_t> unreported_since_ms;
    int pieces_read_back = 0;             // read_piece() asked, for the log
    // A swarm a co-fetch made: the pieces other co-fetchers fetched (they
    // hold them) are not asked of the origin while the co-fetchers connect
    // (until promised_until_ms), while peers deliver, or while a connected
    // peer has them (busy_pieces).
    std::vector<bool> promised;
    std::int64_t promised_until_ms = 0;
    // Until then, the co-fetchers (listen endpoints) not connected are
    // connected again each tick: one that had not added the torrent yet
    // refused the first connection.
    std::set<std::string> cofetchers;
    std::map<int, OriginPiece*> origin_inflight;
    std::vector<int> order;               // this agent's origin piece order
    std::int64_t attached_ms = 0;         // when the first current user came
    // Peers (addresses) whose connection for this swarm ended since it was
    // attached: a peer without this torrent closes the connection at the
    // handshake, and a duplicate of two simultaneous connections is
    // dropped. The discovery window does not wait for them.
    std::set<std::string> peers_hung_up;
    // What the swarm remembers of each connected peer from one pump to the
    // next (fetch_origin_pieces).
    struct SeenPeer {
        std::int64_t first_seen_ms = 0;
        // Since when it owes us data (0: it does not): we want its pieces
        // and it keeps us choked or leaves our requests unanswered. Too
        // long and its pieces count nowhere.
        std::int64_t owes_since_ms = 0;
        // Since when it leaves our requests unanswered while it unchokes us
        // (0: it does not). Too long and it is disconnected: a choke is a
        // stock client's ordinary rationing (aria2 unchokes 4 peers in 10 s
        // rounds), unanswered requests are not.
        std::int64_t unanswered_since_ms = 0;
        std::int64_t payload = 0;  // bytes of pieces it had sent us by then
    };
    std::map<std::string, SeenPeer> peers_seen;  // connected peers (by endpoint) only
    // Addresses that left our requests unanswered for 2 s since the swarm
    // was attached: disconnected whenever they connect, until the swarm is
    // attached again.
    std::set<std::string> peers_failed;
    // Addresses that kept us choked for 2 s since then (logged once each).
    std::set<std::string> peers_choking;
    // Addresses of peers outside this agent's subnet it takes no pieces
    // from now (p2p::outside_peers_to_skip), as last given to the session.
    std::set<std::string> skipping_outside;
    // Until then the skip stays off (Swarms::prefer_own_subnet).
    std::int64_t subnet_release_until_ms = 0;
    // Pieces held over (p2p/claims.h) when last looked at: a new one is logged.
    std::set<int> claims_held_over;
    std::int64_t last_peer_piece_ms = 0;  // the last piece a peer gave us
    std::int64_t peers_offer_since_ms = 0;  // since when peers hold pieces we lack (0: they don't)
    std::int64_t peers_slow_since_ms = 0;   // since when peers are too slow (origin_picker.h)
    // The rate peers give us pieces: bytes of pieces verified from peers,
    // and the rate over the last window of 2 s or more (-1: not measured yet).
    std::int64_t peer_piece_bytes = 0;
    std::int64_t peer_rate = -1;
    std::int64_t peer_rate_mark_ms = 0;
    std::int64_t peer_rate_mark_bytes = 0;
    std::int64_t origin_piece_ms = 0;     // how long our origin pieces take (average; 0: none yet)
    std::int64_t origin_retry_ms = 0;     // origin backoff after a transient failure
    std::uint32_t origin_failures = 0;    // in a row, for the backoff
    // The job each origin piece not yet verified was fetched for (a piece
    // failing its hash is charged to it), and its hash failures.
    std::map<int, Job*> origin_piece_job;
    std::map<Job*, int> origin_hash_failures;
    std::int64_t next_resume_save_ms = 0;
    std::int64_t next_claim_repeat_ms = 0;
    bool complete = false;
    bool paused = false;
    bool checked = false;                 // the peer session finished checking the cached copy
    // The cached copy, read-only, for copying verified pieces into partial
    // files in the kernel (copy_file_range); -1 until first needed,
    // kCacheFdFailed when it could not be opened.
    static constexpr int kCacheFdFailed = -2;
    int cache_fd = -1;

    Swarm() = default;
    Swarm(const Swarm&) = delete;
    Swarm& operator=(const Swarm&) = delete;
    ~Swarm() {
        if (cache_fd >= 0) ::close(cache_fd);
    }

    std::uint64_t piece_size(int piece) const {
        if (piece == meta.num_pieces - 1) return meta.size - piece_offset(piece);
        return static_cast<std::uint64_t>(meta.piece_length);
    }
    std::uint64_t piece_offset(int piece) const {
        return static_cast<std::uint64_t>(piece) * static_cast<std::uint64_t>(meta.piece_length);
    }
};

// A swarm's connected peers as one pump sees them (fetch_origin_pieces).
struct SwarmView {
    std::vector<p2p::TorrentPeer> peers;
    std::vector<int> peers_with;     // peers that count holding each piece
    std::set<std::string> failing;   // endpoints of peers that owe us data for too long
};

// One origin range request for one piece; the bytes go to the peer session.
struct OriginPiece : TransferSink {
    using Job = Agent::Job;

    Swarms* swarms = nullptr;
    Swarm* swarm = nullptr;
    Job* job = nullptr;  // the user it is fetched for, from its URL, with its headers
    int piece = 0;
    TransferId id = 0;
    std::int64_t started_ms = 0;
    std::vector<char> data;

    int on_response(const ResponseInfo& info) override;
    int on_body(const char* data, std::size_t len) override;
    void on_done(const TransferOutcome& outcome) override;
};

// One origin range request of a co-fetch (swarm_cofetch.cpp): a piece, or
// (piece -1) one byte to learn the file's size.
struct CoFetchPiece : TransferSink {
    Swarms* swarms = nullptr;
    std::string sha256;       // the co-fetch it belongs to; "" once it is dropped
    int piece = -1;
    std::uint64_t offset = 0;
    std::uint64_t length = 0;
    std::uint64_t size = 0;   // the file's, as the co-fetch knows it (0: not yet)
    std::uint64_t total = 0;  // the size the origin said
    TransferId id = 0;
    std::int64_t started_ms = 0;
    std::vector<char> data;

    int on_response(const ResponseInfo& info) override;
    int on_body(const char* data, std::size_t len) override;
    void on_done(const TransferOutcome& outcome) override;
};

// The peer session, its torrents (by info-hash) and the peer cache index.
class Swarms {
public:
    using Job = Agent::Job;

    // `agent` owns this and outlives it, as do `config` (reloaded in place),
    // `store` and `fetcher`. Nothing runs until start().
    Swarms(Agent& agent, const Config& config, storage::JobStore& store, OriginFetcher& fetcher);
    ~Swarms();
    Swarms(const Swarms&) = delete;
    Swarms& operator=(const Swarms&) = delete;

    // Loads the cache index; builds the peer session when [p2p] is enabled
    // with a listen address and seeds every complete cached torrent.
    void start();
    // Graceful stop: every torrent's resume data saved (waits up to 5 s).
    void stop();
    // The config was reloaded (SIGHUP): [p2p] applies to the running
    // session (swarm_listen.cpp); torrents, swarms and jobs are kept. With
    // no session yet, one starts when [p2p] now asks for it; with one,
    // `enabled = false` or no listen pauses peering (listen nowhere, every
    // peer refused, new files over HTTP) until a reload or restart.
    void reconfigure();
    // The netlink socket that tells when the interface [p2p] listen names
    // changes, for the agent's poll; -1 when listen is an address.
    int interface_fd() const { return peers_ && listen_watch_ ? listen_watch_->fd() : -1; }

    // What the agent asks of the swarm.
    // Decides how the job's current file goes: true when peering took it (a
    // metainfo fetch or the swarm); false: the caller goes on over HTTP only.
    bool start_file_with_peers(Job& job);
    // The job stops using its torrent (suspend, cancel, error, yield, done).
    void detach_swarm(Job& job, bool cancelled);
    // Metainfo a job gave (bytes) kept in the peer cache.
    void remember_metainfo(const Job& job, const storage::FileRecord& f,
                           const p2p::MetainfoSummary& meta, const std::string& bytes);
    // The peer session's events, every torrent pumped on its tick, eviction.
    void handle_peer_events();
    void evict_cache();
    // A cache entry's torrent, or its entry and folder, removed (cache_clear).
    void remove_cached_content(const std::string& info_hash);

    // Content identity (swarm_content.cpp, docs/design.md): the job stops
    // (its lookup, or its wait to be seeded, ends with it); the job's HTTP
    // fetch after a lookup is whole and matched its SHA-256 (`fd`: its
    // partial file): it is copied into the peer cache, seeded and announced.
    void leave_content(Job& job, bool stay = false);
    void seed_content(Job& job, int fd);

    // What the agent reads (job objects, cache_list, peer_stats, the loop).
    bool peering() const { return peers_ != nullptr; }
    p2p::TorrentSession* session() const { return peers_.get(); }  // null when peering is off
    const std::map<std::string, storage::CacheEntry>& cache() const { return cache_; }
    const std::map<std::string, std::unique_ptr<Swarm>>& torrents() const { return swarms_; }
    // When handle_peer_events must run next (mono_ms); INT64_MAX with no
    // torrent and no content lookup.
    std::int64_t tick_deadline_ms() const;

private:
    friend struct OriginPiece;  // on_origin_piece_done
    friend struct CoFetchPiece;  // on_cofetch_piece_done

    // The session and what it listens on (swarm_listen.cpp).
    void start_peering();
    void start_session();
    p2p::SessionSettings session_settings() const;
    std::string listen_endpoint() const;
    void watch_listen_interface();
    void follow_listen_interface();
    void note_static_peers();
    void restore_cache();
    void on_metainfo_fetched(Job& job, const TransferOutcome& outcome, long status, std::string bytes);
    void use_http_only(Job& job, const std::string& why);
    void drop_unwanted_cache_entry(const std::string& info_hash);
    bool wanted_by_unfinished_job(const std::string& info_hash, const Job* except = nullptr) const;
    void remove_orphan_cache_folders();

    // Torrents.
    void attach_swarm(Job& job);
    void join_swarm(Job& job, int fd);
    Swarm* add_swarm(const storage::CacheEntry& entry);
    void remove_swarm(Swarm& swarm, bool delete_files);

    // Moving pieces: the steps of fetch_origin_pieces, origin pieces,
    // delivery into partial files.
    void pump_swarm(Swarm& swarm);
    // Whether `swarm` is still one of swarms_ (a delivery or a failure may
    // have removed it while a caller held the reference).
    bool is_live(const Swarm* swarm) const;
    void fetch_origin_pieces(Swarm& swarm);
    std::vector<p2p::Claim> others_claims(Swarm& swarm);
    void track_peers(Swarm& swarm, const std::vector<p2p::TorrentPeer>& peers, std::int64_t now_ms);
    void yield_doubly_claimed_pieces(Swarm& swarm, const std::vector<p2p::Claim>& claims, std::int64_t now_ms);
    std::vector<p2p::SwarmPeer> plan_peers(Swarm& swarm, std::int64_t now_ms, SwarmView& view);
    void prefer_own_subnet(Swarm& swarm, const p2p::OriginPlanInput& in, bool stalled);
    p2p::OriginPlanInput origin_plan_input(Swarm& swarm, const std::vector<p2p::Claim>& claims,
                                           std::int64_t now_ms, SwarmView& view);
    std::vector<bool> busy_pieces(Swarm& swarm, const std::vector<p2p::Claim>& claims, const SwarmView& view,
                                  bool stalled, std::int64_t now_ms);
    void start_origin_piece(Swarm& swarm, int piece, std::int64_t now_ms);
    void log_claims_held_over(Swarm& swarm);
    void on_origin_piece_done(OriginPiece& piece, const TransferOutcome& outcome);
    void back_off_origin(Swarm& swarm, const OriginPiece& piece, const TransferOutcome& outcome,
                         std::int64_t now_ms);
    void write_piece(Swarm& swarm, int piece, const char* data, std::size_t len);
    bool copy_piece_from_cache(Swarm& swarm, int piece);
    bool deliver_piece(Swarm& swarm, int piece, const std::function<int(Job& job, off_t off, std::size_t len)>& put);
    void finish_swarm_file(Job& job);
    void origin_does_not_match(Swarm& swarm, Job& job, const std::string& why);
    void drop_origin_pieces(Swarm& swarm, const Job* only = nullptr);
    void drop_origin_piece(Swarm& swarm, int piece);
    Job& next_origin_job(Swarm& swarm);
    void fail_swarm_users(Swarm& swarm, storage::ErrorContext context, std::int64_t code, const std::string& why);

    // Peer session events (one function an event).
    struct SwarmsToPump {
        std::set<Swarm*> swarms;
        bool evict = false;  // the peer cache grew: evict_cache()
    };
    Swarm* swarm_of(std::uint64_t torrent);
    void keep_resume_data(Swarm& swarm, const std::vector<char>& resume_data);
    void log_peer_event(const p2p::TorrentEvent& event);
    void log_handshake_failure(const p2p::TorrentEvent& event);
    void on_torrent_event(Swarm& swarm, const p2p::TorrentEvent& event, SwarmsToPump& to_pump);
    static bool hashed_in_this_run(const Swarm& s, std::size_t piece);
    void on_piece_verified(Swarm& swarm, int piece);
    bool on_piece_hash_failed(Swarm& swarm, int piece);
    void on_torrent_finished(Swarm& swarm);
    void swarm_tick(Swarm& swarm, std::int64_t now_ms);

    // The peer cache.
    std::vector<std::string> cache_entries_to_drop() const;
    std::uint64_t cache_limit() const;
    bool wanted_by_active_job(const std::string& info_hash) const;
    bool holds_metainfo_a_job_gave(const std::string& info_hash) const;
    void forget_cached_content(const std::string& info_hash);

    // Content identity (swarm_content.cpp): a file with a SHA-256 and no
    // metainfo looks for LAN holders, and is seeded under its SHA-256 once
    // fetched from the origin.
    struct ContentLookup;
    bool look_up_content(Job& job);
    bool use_cached_content(Job& job);
    void handle_content_events();
    void on_holder_found(const p2p::ContentEvent& event);
    void on_wanters_changed(const p2p::ContentEvent& event);
    static bool any_below(const std::vector<std::uint64_t>& nodes, std::uint64_t node);
    bool someone_to_follow(const ContentLookup& lookup) const;
    void yield_origin_fetch(const std::string& sha256);
    void on_content_metadata(std::uint64_t torrent);
    void connect_holders(Swarm& s);
    void forget_holders(const std::string& info_hash, const Job& job);
    void content_tick(std::int64_t now_ms);
    void fetch_content_from_origin(const std::string& sha256, const std::string& why);
    struct CacheCopy;
    void stop_looking_up_unless_wanted(const std::string& sha256);
    void collect_cache_copies();
    bool finish_cache_copy(CacheCopy& copy);
    void content_proven(Job& job, std::uint64_t torrent);
    void drop_content_mapping(const std::string& info_hash, const std::string& why);
    void withdraw_content(const std::string& info_hash);
    void announce_cached_content(const storage::CacheEntry& entry, Swarm* swarm);

    // Co-fetching (swarm_cofetch.cpp): wanters of X that meet with no
    // holder split the origin fetch by pieces, exchange the pieces' v1
    // hashes, build the same metainfo and swarm.
    struct CoFetch;
    std::optional<std::vector<std::uint64_t>> cofetch_split(const ContentLookup& lookup) const;
    void start_cofetch(const std::string& sha256, std::vector<std::uint64_t> split);
    void plan_cofetch(CoFetch& co, std::uint64_t size);
    void pump_cofetch(CoFetch& co, std::int64_t now_ms);
    int next_cofetch_piece(const CoFetch& co, std::int64_t now_ms) const;
    void start_cofetch_request(CoFetch& co, int piece);
    void on_cofetch_piece_done(CoFetchPiece& request, const TransferOutcome& outcome);
    void keep_cofetch_piece(CoFetch& co, int piece, const std::vector<char>& data);
    void on_piece_hash(const p2p::ContentEvent& event);
    void cofetch_wanters_changed(CoFetch& co, const p2p::ContentEvent& event);
    void share_out_cofetch(CoFetch& co);
    static bool own_pieces_known(const CoFetch& co);
    void finish_cofetch(CoFetch& co);
    // By value: callers pass the co-fetch's own sha256, which ending it frees.
    void end_cofetch(std::string sha256, const std::string& why);
    void stop_cofetch_requests(const std::string& x);
    void drop_cofetch(CoFetch& co);
    void cofetch_tick(std::int64_t now_ms);
    void unmask_false_hashes(const std::string& sha256, const std::string& metainfo);
    void start_cofetch_segments(CoFetch& co);
    void on_segment_event(const p2p::TorrentEvent& event);
    void drop_cofetch_segment(CoFetch& co, int segment);
    void give_up_segments(CoFetch& co);
    void open_cofetch_partial(CoFetch& co, Job& job);
    void copy_to_cofetch_partials(CoFetch& co, int piece);
    void connect_segment(CoFetch& co, std::size_t segment, bool only_missing);

    Agent& agent_;
    const Config& config_;
    storage::JobStore& store_;
    OriginFetcher& fetcher_;
    // Destroyed in reverse: origin pieces, torrents, cache index, session.
    std::unique_ptr<p2p::TorrentSession> peers_;  // null when peering is off
    std::map<std::string, storage::CacheEntry> cache_;      // the cache index, by info-hash
    std::map<std::string, std::unique_ptr<Swarm>> swarms_;  // the torrents, by info-hash
    std::vector<std::unique_ptr<OriginPiece>> origin_pieces_;   // in flight
    std::vector<std::string> static_peer_ips_;              // [p2p] peers, addresses only
    // Holders' listen endpoints for a torrent the content lookup found, by
    // info-hash, until its swarm is added (connect_holders).
    std::map<std::string, std::set<std::string>> content_holders_;
    std::string self_address_;  // [p2p] listen's address ("" when unspecified or none)
    // [p2p] listen naming an interface: its address followed; listen_now_
    // the endpoint the session listens on ("" nowhere).
    std::unique_ptr<InterfaceAddressWatch> listen_watch_;
    std::string listen_now_;
    // [p2p] trackers whose last announce failed, warned about once until
    // one answers again (log_peer_event).
    std::set<std::string> trackers_failing_;
    // When a tracker last answered an announce (any torrent's: with a group
    // the answer is for the group's announcer, not the torrent itself);
    // a young swarm waits for one (p2p::OriginPlanInput::tracker_answered).
    std::int64_t last_tracker_reply_ms_ = 0;
    std::int64_t next_swarm_tick_ms_ = 0;
    // A job left unfinished content (suspend, error): evict_cache() on the
    // next pass of handle_peer_events, not inside the caller's loops.
    bool evict_pending_ = false;
    std::map<std::string, std::unique_ptr<ContentLookup>> content_lookups_;  // by SHA-256
    // SHA-256 -> this agent's jobs fetching it from the origin after a
    // lookup: it stays on the rendezvous as a wanter until one is seeded.
    std::map<std::string, int> content_origin_fetches_;
    // SHA-256s whose origin fetch yielded to another fetcher (once each,
    // until seeded: yield_origin_fetch).
    std::set<std::string> content_yielded_;
    // Info-hash -> addresses of the peers that said "X is this info-hash":
    // banned when the mapping proves false.
    std::map<std::string, std::set<std::string>> content_announcers_;
    std::set<std::string> false_mappings_;  // info-hashes proven not to be their X
    std::map<std::string, std::string> content_announced_;  // info-hash -> the SHA-256 announced for it
    std::uint64_t content_messages_ignored_ = 0;
    std::set<std::string> handshake_failures_logged_;  // peer addresses (log_handshake_failure)
    // Files on their way into the peer cache (cache_copy.h), collected on
    // the loop; destroyed first: each waits for its worker.
    std::vector<CacheCopy> cache_copies_;
    // Co-fetches by SHA-256, and their origin requests in flight.
    std::map<std::string, std::unique_ptr<CoFetch>> cofetches_;
    std::vector<std::unique_ptr<CoFetchPiece>> cofetch_requests_;
    // The pieces a co-fetch left in its file, by the info-hash built: those
    // this agent fetched from the origin and hashed itself, and those a
    // segment torrent brought (hashed by the session against the same
    // hashes the metainfo holds): added to the torrent as held without a
    // check; the fetched ones count as origin bytes, the others as peers'.
    // And the other co-fetchers' listen endpoints.
    struct CoFetched {
        std::vector<bool> held;
        std::vector<bool> from_origin;
    };
    std::map<std::string, CoFetched> cofetched_pieces_;
    std::map<std::string, std::set<std::string>> cofetchers_;
    // A co-fetch's segment torrents (CoFetch::segment_torrent) by torrent:
    // the SHA-256, the segment, and the folder of its file (one for each
    // torrent made: a torrent removed may still write into its own).
    struct Segment {
        std::string sha256;
        int segment = 0;
        std::string dir;
    };
    std::map<p2p::TorrentId, Segment> segment_torrents_;
    // Piece hashes other agents sent for a SHA-256 whose co-fetched
    // metainfo is not proven yet: (piece, hash, sender's address). When
    // the file fails X and comes from the origin, the senders of hashes
    // the origin's bytes do not match are banned (unmask_false_hashes).
    struct HashClaim {
        int piece;
        std::string sha1;
        std::string peer;
    };
    std::map<std::string, std::vector<HashClaim>> hash_claims_;
};

// A verified file being copied into the peer cache by a worker, and what
// its cache entry takes from its job.
struct Swarms::CacheCopy {
    std::string sha256;
    std::string origin_url;
    std::uint32_t owner_uid = 0;
    std::future<CacheCopyResult> result;
};

// A lookup of a SHA-256 on the LAN (swarm_content.cpp): the jobs waiting for
// it, until when, and the holder's info dictionary being fetched.
struct Swarms::ContentLookup {
    std::set<Job*> jobs;
    std::int64_t started_ms = 0;       // when the lookup began
    std::int64_t deadline_ms = 0;      // the window's end, or the follower's or the metadata's bound
    bool following = false;            // another wanter fetches it from the origin
    p2p::TorrentId metadata = 0;       // the torrent taking the holder's info dictionary
    std::string info_hash;             // its info-hash
    // Listen endpoints of the agents that said they hold it as info_hash:
    // the swarm connects them to the torrent once its metainfo came (LSD
    // would not answer a second announce of the info-hash so soon).
    std::set<std::string> holders;
    std::vector<std::uint64_t> wanters;   // the other agents that want it (node ids)
    std::vector<std::uint64_t> fetchers;  // those of them fetching it from the origin
    std::map<std::uint64_t, std::vector<std::uint64_t>> splits;  // co-fetchers' splits
    std::vector<p2p::ContentEvent> early_hashes;  // co-fetchers' piece hashes, for a co-fetch here
};

// A co-fetch of SHA-256 X (swarm_cofetch.cpp): the split, this agent's
// pieces, every piece's hash as it becomes known, and the file the pieces
// are written into (the future torrent's content in the peer cache).
struct Swarms::CoFetch {
    std::string sha256;
    std::set<Job*> jobs;
    // The co-fetchers the origin fetch is shared among (node ids, sorted,
    // this agent's included, at most p2p::kMaxSplitNodes): the split this
    // agent started with, grown by every co-fetcher of X seen on R since
    // (never shrunk: a leaver's pieces are taken by work stealing).
    std::vector<std::uint64_t> split;
    std::uint64_t size = 0;            // 0 until known
    int piece_length = 0;
    int num_pieces = 0;
    std::vector<std::uint64_t> owner;  // per piece: its co-fetcher (p2p::cofetch_owners of the split)
    std::vector<bool> own;             // per piece: this agent is its owner
    std::vector<int> own_order;        // those pieces, this agent's highest cofetch_piece_score first
    std::vector<bool> next_for;        // per piece: this agent comes next for it (cofetch_piece_rank 1)
    std::vector<std::string> hashes;   // per piece: 20 bytes, or "" not known yet
    std::vector<std::string> hash_from;  // per piece: who sent it ("" this agent)
    std::vector<bool> fetched;         // fetched by this agent
    std::vector<bool> inflight;
    std::vector<std::int64_t> claimed_ms;  // per piece: when another agent said it fetches it
    int known = 0;                     // pieces whose hash is known
    std::set<std::uint64_t> present;   // other wanters on R now (node ids)
    std::set<std::uint64_t> fetching_members;  // members of the split that claimed a piece
    std::map<std::uint64_t, std::string> endpoints;  // where they accept connections
    std::string dir;                   // the content's folder while co-fetching
    int fd = -1;                       // its file, written piece by piece
    // Per piece: its bytes are in that file, fetched here or brought by a
    // segment torrent (p2p::cofetch_segment_metainfo): segments of
    // segment_pieces pieces whose hashes are all known are traded with the
    // other co-fetchers while the rest is being fetched
    // (start_cofetch_segments).
    std::vector<bool> held;
    int segment_pieces = 0;
    std::vector<p2p::TorrentId> segment_torrent;  // per segment: 0 until added
    std::vector<std::int64_t> segment_added_ms;   // per segment: when added; 0 once
                                                  // connected again (connect_segment)
    std::string segment_dir;           // the segment torrents' files
    int segments_made = 0;             // torrents made: each one's folder in segment_dir
    bool probing = false;              // asking the origin for the size
    std::vector<p2p::ContentEvent> early_hashes;  // hashes that came before the size (replayed)
    std::int64_t started_ms = 0;
    std::int64_t range_done_ms = 0;    // when this agent's own pieces were all known (0: not yet)
    std::int64_t piece_ms_max = 0;     // the longest origin piece of this agent's so far
    std::int64_t member_piece_ms_max = 0;  // the longest claim-to-hash time of a member (capped)
    std::int64_t retry_ms = 0;         // after a transient origin failure
    std::uint32_t failures = 0;
};

}  // namespace dopt::agent
