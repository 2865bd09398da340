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
// The SHA-256 (lowercase hex) an origin's digest fields give: RFC 9530
// `Repr-Digest: sha-256=:BASE64:` first, else RFC 3230 `Digest:
// SHA-256=BASE64`; "" when neither has a well-formed one.
std::string sha256_of_digest_fields(const std::string& repr_digest, const std::string& digest);

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
    // Why the current transfer's response was refused for its size (the
    // file's expected_size); on_done makes it the job's error.
    std::string wrong_size;
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

    // Peering (swarm.cpp). While the current file goes through a
    // torrent, `swarm` is set, transfer is 0 and each verified piece is
    // written into the partial file through `swarm_fd` (owner's rights).
    Swarm* swarm = nullptr;
    int swarm_fd = -1;
    bool swarm_copy_refused = false;  // copy_file_range into swarm_fd refused (EXDEV, ...)
    std::vector<bool> written;            // pieces in the partial file
    int written_count = 0;
    // While the current file is co-fetched (swarm_cofetch.cpp): its partial
    // file, open with the owner's rights, receives each piece the co-fetch
    // holds as it comes (cofetch_written: which, in pieces of the
    // co-fetch's size, the metainfo's); join_swarm takes them as written.
    // Closed when the job leaves the co-fetch, joins its swarm or stops.
    struct CoFetchPartial {
        int fd = -1;
        std::string sha256;  // the co-fetch's, and the file it is of
        int file = -1;
        std::vector<bool> written;
        CoFetchPartial() = default;
        CoFetchPartial(const CoFetchPartial&) = delete;
        CoFetchPartial& operator=(const CoFetchPartial&) = delete;
        ~CoFetchPartial() { reset(); }
        void reset() {
            if (fd >= 0) ::close(fd);
            fd = -1;
            sha256.clear();
            file = -1;
            written.clear();
        }
    } cofetch_partial;
    std::unique_ptr<TransferSink> metainfo_fetch;  // fetching metainfo (job.transfer)
    std::string http_only_reason;         // why the file goes without peers
    // Content identity (agent_content.cpp): waiting in a lookup of the
    // current file's SHA-256; and, once fetched from the origin after one,
    // to be seeded under it.
    bool content_waiting = false;
    bool content_seed = false;
    // The current file has no SHA-256 and comes from an origin whose digest
    // may stand for one (origin_digest_may_stand_for_sha256, agent.cpp): its
    // partial file is hashed, and a digest in the response becomes the
    // file's SHA-256.
    bool origin_digest_welcome = false;

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
    void take_origin_digest(const ResponseInfo& info);
    int on_body(const char* data, std::size_t len) override;
    void on_done(const TransferOutcome& outcome) override;
    int refuse_size(const std::string& sent);
    void discard_file(storage::ErrorContext context, const std::string& why);

    std::string to_json() const;  // the job object, as JSON text
    const char* mode() const;     // "peer_assisted", "http_only" or "pending"
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
