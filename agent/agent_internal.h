// Internal to agent/: the record the Agent keeps per job and the helpers
// that agent.cpp (main loop, scheduling, transfers), agent_requests.cpp (IPC
// requests) and agent_notifications.cpp (callbacks) share. Not installed.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <stdexcept>
#include <unistd.h>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/agent.h"
#include "agent/origin_fetcher.h"
#include "agent/owner_files.h"
#include "agent/partial_file.h"
#include "p2p/metainfo_summary.h"
#include "p2p/origin_picker.h"
#include "p2p/torrent_session.h"
#include "storage/job_store.h"

namespace dopt::agent {

using json = nlohmann::json;

// The job store's names, unqualified in the agent's sources.
using storage::CacheEntry;
using storage::ErrorContext;
using storage::ErrorRecord;
using storage::FileRecord;
using storage::JobRecord;
using storage::JobState;
using storage::kUnknownSize;
using storage::Priority;

std::int64_t wall_now();  // unix seconds
std::int64_t mono_ms();   // CLOCK_MONOTONIC, milliseconds
std::string new_uuid();   // a version 4 UUID
std::string dir_of(const std::string& path);
// One owner operation (owner_files.h); `to` for Rename, flags and mode for Open.
OwnerOp owner_op_of(OwnerOpKind kind, const Owner& owner, const std::string& path,
                    const std::string& to = "", int flags = 0, mode_t mode = 0);
std::string base_of(const std::string& path);
// Lexically normalises an absolute path; "" when it climbs above "/" or
// names a folder.
std::string normalise_path(const std::string& path);
// What makes two destinations one file: the folder's device and inode and
// the name, so a folder also reached through a symlink or a bind mount is
// one folder; the path itself when the folder cannot be looked at.
std::string destination_key(const std::string& path);
bool is_waitable(storage::JobState s);  // what `wait` returns at
bool is_running(storage::JobState s);   // CONNECTING or TRANSFERRING
std::string scheme_of(const std::string& url);
// rm -r of a folder the agent owns (a torrent's storage in cache_dir).
void remove_tree(const std::string& path);
// Standard base64 (RFC 4648, padding required). False on bad input.
bool base64_decode(const std::string& in, std::string& out);

// Reads the envelope of one request body (docs/protocol.md): a JSON object
// with a string `op` and an integer `seq`. Returns "" with req->body, op and
// seq set, or why the body is refused (answered DOPT_E_PROTOCOL with seq 0).
// Never throws but for std::bad_alloc. A body nesting deeper than
// kMaxRequestDepth is refused (nothing a client sends goes past 4; a tree
// 500,000 levels deep would overflow the stack of whatever recurses on it).
// The per-op fields are read by the
// handlers (a json::exception there answers DOPT_E_INVALID_ARG).
// In request_envelope.cpp, which tests/fuzz links alone.
std::string decode_request(const std::string& body, Agent::Request* req);
constexpr int kMaxRequestDepth = 64;
// Limits that keep a job object well inside one reply frame.
constexpr std::size_t kMaxUrlBytes = 16384;
constexpr std::size_t kMaxJobFileBytes = 512 * 1024;

// A request field of the wrong type or out of range: answered
// DOPT_E_INVALID_ARG with its message, like a json::exception.
struct BadField : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// The integer field `name` of a request: `v` must be a JSON integer (not a
// float, a string or null) within [lo, hi], else BadField naming it.
// nlohmann's get<int>() would convert 1e300 or 2^40 without a word (and a
// float out of an integer's range is undefined behaviour).
std::int64_t integer_field(const json& v, const char* name, std::int64_t lo, std::int64_t hi);
// obj[name] read as above when the member is present, else `fallback` (also
// when obj is not an object; decode_request refuses such requests anyway).
std::int64_t integer_member(const json& obj, const char* name, std::int64_t fallback, std::int64_t lo,
                            std::int64_t hi);

// A reply envelope: seq, rc, and message when rc != 0.
json reply(std::int64_t seq, int rc, const std::string& message = "");
// `r` serialized with one more member, `key`, holding already-serialized JSON.
std::string with_member(const json& r, const char* key, const std::string& raw_json);

// A job as the agent keeps it: the persisted record plus what only lives
// while the agent runs. It is the sink of its own origin transfer.
struct Agent::Job : TransferSink {
    Agent* agent = nullptr;
    storage::JobRecord rec;

    // Runtime only; rebuilt after a restart.
    TransferId transfer = 0;              // 0: no transfer running
    int current_file = -1;
    std::unique_ptr<PartialFile> partial;
    std::uint64_t request_offset = 0;
    std::int64_t next_retry_ms = 0;       // TRANSIENT_ERROR: when to try again
    std::int64_t last_progress_ms = 0;    // for the no-progress timeout
    std::uint64_t bytes_since_progress = 0;  // new bytes not yet counted as progress
    // The furthest the current file's partial file has reached in this run:
    // only bytes beyond it are new (progress).
    std::uint64_t high_water = 0;
    int high_water_file = -1;             // the file high_water is of
    // Files whose partial file this run of the agent wrote over HTTP: its
    // size is trusted (the kernel holds every byte written); the others'
    // only up to their durable_bytes.
    std::set<int> partials_written;
    std::int64_t last_checkpoint_ms = 0;
    // TRANSIENT_ERROR: why the last attempt failed, and the unix time of
    // the next one; the job object shows it only in that state.
    storage::ErrorRecord last_transient;
    std::int64_t next_retry_time = 0;
    std::vector<std::string> destination_keys;  // its entries in destinations_

    // Peering (agent_swarm.cpp). While the current file goes through a
    // torrent, `swarm` is set, transfer is 0 and each verified piece is
    // written into the partial file through `swarm_fd` (owner's rights).
    Swarm* swarm = nullptr;
    int swarm_fd = -1;
    bool swarm_copy_refused = false;  // copy_file_range into swarm_fd refused (EXDEV, ...)
    std::vector<bool> written;            // pieces in the partial file
    int written_count = 0;
    std::unique_ptr<TransferSink> metainfo_fetch;  // fetching metainfo (job.transfer)
    std::string http_only_reason;         // why the file goes without peers
    // Content identity (agent_content.cpp): waiting in a lookup of the
    // current file's SHA-256; and, once fetched from the origin after one,
    // to be seeded under it.
    bool content_waiting = false;
    bool content_seed = false;

    // Owner operations (Agent::owner_op): one of the job's in flight at a
    // time; the steps that wait for it are queued, in the order asked.
    bool owner_op_running = false;
    std::deque<std::function<void(Job&)>> owner_queue;
    // Changes whenever the job stops moving bytes (stop_transfer): an open
    // for a transfer that completes in another epoch drops its descriptor.
    std::uint64_t epoch = 0;
    bool opening = false;     // the current file's partial file is being opened
    bool delivering = false;  // auto_complete moves the files into place

    storage::FileRecord& file() { return rec.files[static_cast<std::size_t>(current_file)]; }
    // The current file's row follows its partial file: the bytes it holds
    // and the prefix flushed.
    void note_partial() {
        file().bytes_transferred = partial->size();
        file().durable_bytes = partial->durable_size();
    }
    bool busy() const { return transfer != 0 || swarm != nullptr || opening || content_waiting; }
    bool owner_ops_pending() const { return owner_op_running || !owner_queue.empty(); }
    bool visible_to(uid_t uid) const { return uid == 0 || uid == rec.owner_uid; }
    Owner owner() const { return Owner{rec.owner_uid, rec.owner_gid}; }
    // The mode of the files the job creates: 0666 less its client's umask,
    // but the owner always keeps read and write (the agent reopens the
    // partial file as the owner to resume it; 0277 would make it 0400).
    mode_t file_mode() const { return static_cast<mode_t>((0666u & ~rec.umask) | 0600u); }
    std::uint32_t no_progress_timeout() const {
        return rec.no_progress_timeout ? rec.no_progress_timeout
                                       : agent->config_.no_progress_timeout;
    }

    // When the no-progress timeout ends the job (mono_ms), unless it
    // progresses before.
    std::int64_t no_progress_deadline_ms() const {
        return last_progress_ms + 1000LL * no_progress_timeout();
    }

    int on_response(const ResponseInfo& info) override;
    int on_body(const char* data, std::size_t len) override;
    void on_done(const TransferOutcome& outcome) override;

    std::string to_json() const;  // the job object, as JSON text
    const char* mode() const;     // "peer_assisted", "http_only" or "pending"
};

// How often every swarm is pumped, its claims repeated to peers that
// connected since and the peer session ticked (p2p/session.h tick()).
// A lookup of a SHA-256 on the LAN (agent_content.cpp): the jobs waiting for
// it, until when, and the holder's info dictionary being fetched.
struct Agent::ContentLookup {
    std::set<Job*> jobs;
    std::int64_t deadline_ms = 0;      // the window's end, or the follower's or the metadata's bound
    bool following = false;            // a wanter with a lower node id fetches from the origin
    p2p::TorrentId metadata = 0;       // the torrent taking the holder's info dictionary
    std::string info_hash;             // its info-hash
    std::vector<std::uint64_t> wanters;  // the other agents that want it (node ids)
};
// How long a holder's info dictionary may take to come.
constexpr std::int64_t kContentMetadataWaitMs = 10'000;
constexpr std::int64_t kSwarmTickMs = 250;
// How often a swarm's claims are sent again to peers connected since: as
// often as the tick, so a late peer learns of a claim within 250 ms.
constexpr std::int64_t kClaimRepeatMs = 250;
// How often an unfinished torrent's resume data is saved in its cache entry.
constexpr std::int64_t kResumeSaveIntervalMs = 30000;
// The window over which the rate peers give us pieces is measured.
constexpr std::int64_t kPeerRateWindowMs = 2000;
// A piece another agent also claimed, with a lower claimant id, is left to
// it when our request for it started less than this long ago (an older
// request has bytes worth keeping).
constexpr std::int64_t kYieldClaimedPieceWithinMs = 1000;
// How long a graceful stop waits for the torrents' resume data.
constexpr std::int64_t kStopResumeDataWaitMs = 5000;
// Origin pieces that fail their hash check for one job before its origin is
// taken as not matching the metainfo (origin_does_not_match).
constexpr int kOriginHashFailuresToMismatch = 2;

// One torrent in the peer session: content being fetched for jobs, or
// complete and kept in the peer cache to seed.
struct Agent::Swarm {
    std::string info_hash;
    p2p::MetainfoSummary meta;
    p2p::TorrentId torrent = 0;
    // Origin pieces are fetched on behalf of the users in turn (round robin
    // over `users`), each from that job's own URL with its own headers: never
    // from the URL another job (or user) registered the content with. This
    // counts the requests started, to pick the next user.
    std::size_t origin_turn = 0;
    std::set<Job*> users;                 // jobs whose current file this is
    std::vector<bool> have;               // verified, held by the peer session
    int have_count = 0;
    std::vector<bool> reading;            // read_piece() asked, PieceRead event pending
    std::vector<bool> from_origin;        // fetched by our origin fetcher
    std::vector<bool> verified_now;       // hash-checked by the peer session in this run
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
        // and it keeps us choked or leaves our requests unanswered.
        std::int64_t owes_since_ms = 0;
        std::int64_t payload = 0;  // bytes of pieces it had sent us by then
    };
    std::map<std::string, SeenPeer> peers_seen;  // connected peers (by endpoint) only
    // Addresses that owed us data for 2 s since the swarm was attached:
    // disconnected whenever they connect, until the swarm is attached again.
    std::set<std::string> peers_failed;
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
struct Agent::SwarmView {
    std::vector<p2p::TorrentPeer> peers;
    std::vector<int> peers_with;     // peers that count holding each piece
    std::set<std::string> failing;   // endpoints of peers that owe us data for too long
};

// One origin range request for one piece; the bytes go to the peer session.
struct Agent::OriginPiece : TransferSink {
    Agent* agent = nullptr;
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

// One decoded IPC request and who sent it (SO_PEERCRED).
struct Agent::Request {
    ConnId conn;
    PeerCred peer;
    std::int64_t seq = 0;
    std::string op;
    json body;
};

}  // namespace dopt::agent
