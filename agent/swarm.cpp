// Peering: how a file goes through the LAN swarm (docs/design.md "Data flow",
// "Trust", "Where bytes live").
//
//  1. Metainfo: the job's own (bytes given with the job, or a URL fetched
//     now), else the origin's beside the content (URL path + ".torrent"),
//     else none: HTTP only, and the file says so ("metainfo": "none").
//  2. The torrent joins the peer session (p2p::TorrentSession) with its
//     storage in cache_dir/<info-hash>. LAN peers give pieces through the
//     session; this agent fetches from the origin only the pieces no
//     connected peer has, is giving us or was claimed by another agent
//     (p2p/origin_picker.h), and hands them to the session (add_piece),
//     which checks every piece against its hash.
//  3. Each piece the session holds verified is copied into the owner's
//     partial file at its offset (copy_file_range from the cached copy when
//     it was hashed in this run, by the session or by a co-fetch; else read
//     back with read_piece and hashed again), so Complete is a rename and
//     the cached copy stays to seed.
//  4. Complete torrents stay in the session, seeding, within the cache
//     limits ([cache]); least recently used go first.
//
// The class `Swarms` (swarm.h). Everything here runs on the agent's one
// thread; the session's events are handled here too (handle_peer_events).
#include <algorithm>
#include <cerrno>
#include <dirent.h>
#include <cstring>
#include <fcntl.h>
#include <functional>
#include <optional>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>


#include "agent/agent.h"
#include "agent/agent_internal.h"
#include "agent/swarm.h"
#include "common/crash_point.h"
#include "common/hex.h"
#include "common/sha256.h"
#include "agent/log.h"
#include "agent/owner_files.h"
#include "agent/url.h"
#include "dopt/dopt.h"
#include "p2p/claims.h"  // claim_hold_ms
#include "p2p/origin_picker.h"
#include "p2p/torrent_session.h"

namespace dopt::agent {

namespace {

// How often every swarm is pumped, its claims repeated to peers that
// connected since and the peer session ticked (p2p/session.h tick()).
constexpr std::int64_t kSwarmTickMs = 250;
// How often a swarm's claims are sent again to peers connected since: as
// often as the tick, so a late peer learns of a claim within 250 ms.
constexpr std::int64_t kClaimRepeatMs = 250;
// How often an unfinished torrent's resume data is saved in its cache entry.
constexpr std::int64_t kResumeSaveIntervalMs = 30000;
// How long a co-fetched swarm leaves to the other co-fetchers the pieces
// they hashed while they connect (their torrents are added meanwhile);
// after it, only while they hold them connected or peers deliver.
constexpr std::int64_t kCoFetchPromiseMs = 5000;
// How long a piece the session's status shows held may wait for its
// PieceVerified event before it is read back instead (pump_swarm).
constexpr std::int64_t kUnreportedPieceMs = 2000;
// Peers that gave us a piece within this long deliver: the pieces other
// co-fetchers hashed stay theirs.
constexpr std::int64_t kCoFetchDeliveringMs = 2000;
// The window over which the rate peers give us pieces is measured.
constexpr std::int64_t kPeerRateWindowMs = 2000;
// How long peers outside this agent's subnet stay in use once the subnet
// preference was released (Swarms::prefer_own_subnet).
constexpr std::int64_t kSubnetReleaseHoldMs = 15000;
// A piece another agent also claimed, with a lower claimant id, is left to
// it when our request for it started less than this long ago (an older
// request has bytes worth keeping).
constexpr std::int64_t kYieldClaimedPieceWithinMs = 1000;
// How long a graceful stop waits for the torrents' resume data.
constexpr std::int64_t kStopResumeDataWaitMs = 5000;
// Origin pieces that fail their hash check for one job before its origin is
// taken as not matching the metainfo (origin_does_not_match).
constexpr int kOriginHashFailuresToMismatch = 2;

// A metainfo download: the whole body in memory, at most kMaxMetainfoBytes.
class MetainfoFetch : public TransferSink {
public:
    MetainfoFetch(Agent::Job* job, std::function<void(Agent::Job&, const TransferOutcome&, long,
                                                      std::string)> done)
        : job_(job), done_(std::move(done)) {}
    int on_response(const ResponseInfo& info) override {
        status_ = info.status;
        if (info.status != 200) return DOPT_E_REMOTE_CHANGED;  // a range is not metainfo
        if (info.total != UINT64_MAX && info.total > p2p::kMaxMetainfoBytes) return DOPT_E_TOO_LARGE;
        return 0;
    }
    int on_body(const char* data, std::size_t len) override {
        if (bytes_.size() + len > p2p::kMaxMetainfoBytes) return DOPT_E_TOO_LARGE;
        bytes_.append(data, len);
        return 0;
    }
    void on_done(const TransferOutcome& outcome) override {
        done_(*job_, outcome, status_, std::move(bytes_));  // may retire this sink
    }

private:
    Agent::Job* job_;
    std::function<void(Agent::Job&, const TransferOutcome&, long, std::string)> done_;
    long status_ = 0;
    std::string bytes_;
};

// The URL of the metainfo published beside `url`: its path with `suffix`
// appended, the query kept (docs/design.md "Trust").
std::string metainfo_url_beside(const std::string& url, const std::string& suffix) {
    std::size_t end = url.find_first_of("?#");
    if (end == std::string::npos) return url + suffix;
    return url.substr(0, end) + suffix + url.substr(end);
}

std::vector<char> to_vector(const std::string& s) { return std::vector<char>(s.begin(), s.end()); }

}  // namespace

// ---- session life -----------------------------------------------------------

Swarms::Swarms(Agent& agent, const Config& config, storage::JobStore& store, OriginFetcher& fetcher)
    : agent_(agent), config_(config), store_(store), fetcher_(fetcher) {}

Swarms::~Swarms() = default;

std::int64_t Swarms::tick_deadline_ms() const {
    return swarms_.empty() && content_lookups_.empty() && cache_copies_.empty() && cofetches_.empty()
               ? INT64_MAX
               : next_swarm_tick_ms_;
}

// Builds the PeerSession when [p2p] is enabled with a listen address, and
// puts every complete torrent of the cache index back in it to seed.
// Incomplete torrents that no unfinished job needs are removed.
void Swarms::start() {
    for (auto& e : store_.load_cache()) cache_[e.info_hash] = std::move(e);
    start_peering();
}

// The session, when [p2p] asks for one, and the cache put back in it.
void Swarms::start_peering() {
    if (!config_.p2p_enabled || config_.p2p_listen.empty()) {
        if (config_.p2p_enabled)
            LOG_WARN("[p2p] enabled but no listen address: peering stays off (HTTP only)");
        return;
    }
    start_session();
    remove_orphan_cache_folders();
    restore_cache();
    evict_cache();
}

// Every complete torrent of the cache index back in the session to seed;
// the unfinished ones no unfinished job wants are removed.
void Swarms::restore_cache() {
    for (auto it = cache_.begin(); it != cache_.end();) {
        const CacheEntry& e = it->second;
        if (e.complete) {
            announce_cached_content(e, add_swarm(e));
            ++it;
        } else if (!wanted_by_unfinished_job(e.info_hash)) {
            // A torrent no job wants any more (its job ended while we were down).
            std::string dir = config_.cache_dir + "/" + e.info_hash;
            LOG_INFO("peer cache: dropping unfinished %s (%s)", e.info_hash.c_str(), e.name.c_str());
            store_.delete_cache_entry(e.info_hash);
            remove_tree(dir);
            it = cache_.erase(it);
        } else {
            ++it;
        }
    }
}

// Graceful stop: every torrent's resume data saved (waits up to 5 s).
void Swarms::stop() {
    if (!peers_) return;
    int pending = 0;
    for (auto& [ih, s] : swarms_) {
        peers_->save_resume_data(s->torrent);
        ++pending;
    }
    std::int64_t deadline = mono_ms() + kStopResumeDataWaitMs;
    while (pending > 0 && mono_ms() < deadline) {
        pollfd p{peers_->event_fd(), POLLIN, 0};
        ::poll(&p, 1, 200);
        for (p2p::TorrentEvent& e : peers_->take_events()) {
            if (e.kind == p2p::TorrentEvent::Kind::ResumeData) {
                if (Swarm* s = swarm_of(e.torrent)) keep_resume_data(*s, e.resume_data);
                --pending;
            } else if (e.kind == p2p::TorrentEvent::Kind::ResumeDataFailed) {
                --pending;
            }
        }
    }
    swarms_.clear();
    peers_.reset();
}

// ---- metainfo ---------------------------------------------------------------

// Decides how the current file goes. Returns true when peering took it (a
// metainfo fetch or the swarm); false: the caller goes on with HTTP only.
bool Swarms::start_file_with_peers(Job& job) {
    FileRecord& f = job.file();
    if (!peers_ || f.metainfo_source == "none") return false;
    if (!peers_->listening()) {
        // This transfer only: nothing is stored, so the file's metainfo (the
        // job's too) and its cache entry stay for the next start with peers.
        job.http_only_reason = "peering is paused: no [p2p] listen address now";
        return false;
    }
    // Content behind credentials (headers, or in the URL) is not shared
    // unless the job asks for it (by giving metainfo): nothing is probed
    // for metainfo with them, cached or seeded.
    if (f.metainfo_source != "job") {
        if (!job.rec.headers.empty()) {
            use_http_only(job, "the job sends its own HTTP headers");
            return false;
        }
        if (url_may_carry_credentials(f.remote_url)) {
            use_http_only(job, "the URL has a user name, password or query string");
            return false;
        }
    }
    if (!f.info_hash.empty() && cache_.count(f.info_hash)) {
        attach_swarm(job);
        return true;
    }
    // A size known to be small (the job's expected size, or the origin's
    // from an earlier try): no metainfo probe, no content lookup.
    if (f.metainfo_source != "job" && f.bytes_total != kUnknownSize &&
        f.bytes_total < config_.cache_min_file_size) {
        use_http_only(job, "smaller than [cache] min_file_size");
        return false;
    }
    std::string url;
    if (!f.metainfo_url.empty()) url = f.metainfo_url;
    else if (f.metainfo_source.empty() && config_.metainfo_probe)
        url = metainfo_url_beside(f.remote_url, config_.metainfo_suffix);
    if (url.empty()) {
        if (look_up_content(job)) return true;
        use_http_only(job, config_.metainfo_probe ? "no metainfo" : "metainfo probing is off");
        return false;
    }
    if (job.rec.state != JobState::Connecting) agent_.change_state(job, JobState::Connecting);
    TransferRequest req;
    req.url = url;
    req.headers = job.rec.headers;
    auto fetch = std::make_unique<MetainfoFetch>(
        &job, [this](Job& j, const TransferOutcome& o, long status, std::string bytes) {
            on_metainfo_fetched(j, o, status, std::move(bytes));
        });
    job.transfer = fetcher_.start(req, fetch.get());
    agent_.count_usage(job, kOriginRequests, 1);
    job.metainfo_fetch = std::move(fetch);
    LOG_DEBUG("job %s: looking for metainfo at %s", job.rec.id.c_str(), url.c_str());
    return true;
}

void Swarms::on_metainfo_fetched(Job& job, const TransferOutcome& outcome, long status,
                                std::string bytes) {
    job.transfer = 0;
    agent_.retire_sink(std::move(job.metainfo_fetch));
    FileRecord& f = job.file();
    bool from_job = !f.metainfo_url.empty();
    std::string parse_error;
    std::optional<p2p::MetainfoSummary> meta;
    if (outcome.ok) {
        try {
            meta = p2p::summarize_metainfo(bytes);
        } catch (const p2p::MetainfoError& e) {
            parse_error = e.what();
        }
    }
    if (!meta) {
        if (!from_job) {
            // No metainfo beside the content (404, an HTML page, garbage):
            // its SHA-256 on the LAN, else quietly HTTP only.
            if (look_up_content(job)) return;
            use_http_only(job, outcome.ok ? "the origin's metainfo is not usable: " + parse_error
                                          : "no metainfo beside the content");
            agent_.start_job(job);
            return;
        }
        if (!outcome.ok && outcome.transient) {
            agent_.transient_failure(job, outcome);
            return;
        }
        agent_.fail(job, outcome.ok ? ErrorContext::Integrity : outcome.context,
                    outcome.ok ? std::int64_t{DOPT_E_INTEGRITY} : (outcome.code ? outcome.code : status),
                    outcome.ok ? "the job's metainfo " + f.metainfo_url + " is not usable: " + parse_error
                               : "cannot fetch the job's metainfo: " + outcome.description,
                    job.current_file);
        return;
    }
    remember_metainfo(job, f, *meta, bytes);
    f.info_hash = meta->info_hash;
    f.metainfo_source = from_job ? "job" : "origin";
    store_.update_file(job.rec.id, f);
    LOG_INFO("job %s: metainfo %s for %s (%s, %d pieces of %d KiB)", job.rec.id.c_str(),
             meta->info_hash.c_str(), f.remote_url.c_str(), f.metainfo_source.c_str(),
             meta->num_pieces, meta->piece_length / 1024);
    agent_.start_job(job);
}

// The current file goes over HTTP only from now on; `why` is logged and
// shown in the job object.
void Swarms::use_http_only(Job& job, const std::string& why) {
    FileRecord& f = job.file();
    job.http_only_reason = why;
    job.cofetch_partial.reset();
    if (f.metainfo_source == "none" && f.info_hash.empty()) return;
    LOG_INFO("job %s: %s over HTTP only: %s", job.rec.id.c_str(), f.remote_url.c_str(), why.c_str());
    std::string ih = f.info_hash;
    f.metainfo_source = "none";
    f.info_hash.clear();
    store_.update_file(job.rec.id, f);
    if (!ih.empty()) {
        forget_holders(ih, job);
        drop_unwanted_cache_entry(ih);
    }
}

// Whether a job not ended (other than `except`) has a file not yet whole
// whose content is this torrent.
bool Swarms::wanted_by_unfinished_job(const std::string& info_hash, const Job* except) const {
    for (const auto& [id, job] : agent_.jobs()) {
        if (job.get() == except || storage::is_final(job->rec.state)) continue;
        for (const auto& f : job->rec.files)
            if (f.info_hash == info_hash && !f.completed) return true;
    }
    return false;
}

// Folders in cache_dir named like an info-hash with no cache entry: left by
// a crash between deleting an entry's row and its folder (eviction, clear);
// and co-fetches' folders (".cofetch-*"), which no restart resumes.
void Swarms::remove_orphan_cache_folders() {
    DIR* d = ::opendir(config_.cache_dir.c_str());
    if (!d) return;
    std::vector<std::string> orphans;
    while (dirent* ent = ::readdir(d)) {
        std::string name = ent->d_name;
        bool hash_like = is_hex(name, 40, /*lowercase_only=*/true) ||  // v1
                         is_hex(name, 64, /*lowercase_only=*/true);    // v2
        if ((hash_like && !cache_.count(name)) || name.rfind(".cofetch-", 0) == 0) orphans.push_back(name);
    }
    ::closedir(d);
    for (const auto& name : orphans) {
        LOG_INFO("peer cache: removing %s, which has no cache entry", name.c_str());
        remove_tree(config_.cache_dir + "/" + name);
    }
}

// Keeps the metainfo `bytes` (summarized as `meta`) of job's file `f` in the
// peer cache: a new entry (stored now) for its info-hash, or the existing one
// unchanged.
void Swarms::remember_metainfo(const Job& job, const FileRecord& f, const p2p::MetainfoSummary& meta,
                              const std::string& bytes) {
    CacheEntry& e = cache_[meta.info_hash];
    if (!e.info_hash.empty()) return;
    e.info_hash = meta.info_hash;
    e.name = meta.name;
    e.size = meta.size;
    e.origin_url = f.remote_url;
    e.owner_uid = job.rec.owner_uid;
    e.last_used = wall_now();
    e.metainfo = bytes;
    store_.put_cache_entry(e);
}

// Removes an unfinished torrent (its cache entry, files and place in the
// session) that no unfinished job wants any more.
void Swarms::drop_unwanted_cache_entry(const std::string& info_hash) {
    auto c = cache_.find(info_hash);
    if (c == cache_.end() || c->second.complete) return;
    if (wanted_by_unfinished_job(info_hash)) return;
    auto s = swarms_.find(info_hash);
    if (s != swarms_.end()) {
        if (!s->second->users.empty()) return;
        remove_swarm(*s->second, true);
        return;
    }
    cache_.erase(c);
    store_.delete_cache_entry(info_hash);
    remove_tree(config_.cache_dir + "/" + info_hash);
}

// ---- torrents -----------------------------------------------------------------

Swarm* Swarms::add_swarm(const CacheEntry& e) {
    auto it = swarms_.find(e.info_hash);
    if (it != swarms_.end()) return it->second.get();
    p2p::MetainfoSummary meta;
    p2p::TorrentId torrent = 0;
    std::string dir = config_.cache_dir + "/" + e.info_hash;
    // The pieces a co-fetch left (fetched and hashed here, or brought by its
    // segment torrents: hashed against the hashes the metainfo holds) are
    // added as held without a check of the file.
    std::vector<bool> own_pieces;
    if (auto co = cofetched_pieces_.find(e.info_hash); co != cofetched_pieces_.end() && e.resume_data.empty())
        own_pieces = co->second.held;
    try {
        meta = p2p::summarize_metainfo(e.metainfo);
        ::mkdir(dir.c_str(), 0700);
        if (own_pieces.size() != static_cast<std::size_t>(meta.num_pieces)) own_pieces.clear();
        torrent = peers_->add_torrent(e.metainfo, dir, to_vector(e.resume_data), own_pieces);
    } catch (const p2p::MetainfoError& err) {
        LOG_ERROR("peer cache: entry %s has unusable metainfo (%s); dropping it", e.info_hash.c_str(),
                  err.what());
        return nullptr;
    }
    auto s = std::make_unique<Swarm>();
    s->info_hash = e.info_hash;
    s->meta = meta;
    s->complete = e.complete;  // a seed from the cache: never paused
    s->torrent = torrent;
    auto n = static_cast<std::size_t>(meta.num_pieces);
    s->have.assign(n, false);
    s->reading.assign(n, false);
    s->from_origin.assign(n, false);
    s->verified_now.assign(n, false);
    s->unreported_since_ms.assign(n, 0);
    s->order = p2p::random_piece_order(meta.num_pieces);
    // Pieces co-fetched here count as origin bytes (held at once, or when
    // the check finds them), those segments brought as peers' bytes.
    if (auto co = cofetched_pieces_.find(e.info_hash); co != cofetched_pieces_.end()) {
        if (co->second.held.size() == n && co->second.from_origin.size() == n) {
            s->from_origin = co->second.from_origin;
            // Held at once (own_pieces): hashed as they were fetched.
            if (own_pieces.size() == n) s->cofetch_hashed = own_pieces;
            s->promised.assign(n, false);
            for (std::size_t i = 0; i < n; ++i) s->promised[i] = !co->second.held[i];
            s->promised_until_ms = mono_ms() + kCoFetchPromiseMs;
        }
        cofetched_pieces_.erase(co);
        s->cofetchers = std::move(cofetchers_[e.info_hash]);
        cofetchers_.erase(e.info_hash);
    }
    s->next_resume_save_ms = mono_ms() + kResumeSaveIntervalMs;
    Swarm* raw = s.get();
    swarms_[e.info_hash] = std::move(s);
    connect_holders(*raw);
    return raw;
}

void Swarms::remove_swarm(Swarm& s, bool delete_files) {
    withdraw_content(s.info_hash);
    drop_origin_pieces(s);
    peers_->remove_torrent(s.torrent, delete_files);
    std::string ih = s.info_hash;
    swarms_.erase(ih);  // s is gone
    if (delete_files) {
        cache_.erase(ih);
        store_.delete_cache_entry(ih);
        DOPT_CRASH_POINT("cache_row_deleted");
        remove_tree(config_.cache_dir + "/" + ih);
    }
}

// The job's current file joins its torrent: the partial file is opened with
// the owner's rights and receives every verified piece.
void Swarms::attach_swarm(Job& job) {
    FileRecord& f = job.file();
    const CacheEntry& e = cache_.at(f.info_hash);
    if (e.size < config_.cache_min_file_size) {
        use_http_only(job, "smaller than [cache] min_file_size");
        agent_.start_job(job);
        return;
    }
    if (f.bytes_total != kUnknownSize && f.bytes_total != e.size) {
        use_http_only(job, "the metainfo's size does not match the origin's");
        agent_.start_job(job);
        return;
    }
    if (job.rec.state != JobState::Connecting) agent_.change_state(job, JobState::Connecting);
    agent_.open_current_partial(job, [this](Job& j, int fd) { join_swarm(j, fd); });
}

// The job's current file joins its torrent, its partial file open as `fd`.
void Swarms::join_swarm(Job& job, int fd) {
    FileRecord& f = job.file();
    auto entry = cache_.find(f.info_hash);  // cache_clear may have dropped it meanwhile
    Swarm* s = entry == cache_.end() ? nullptr : add_swarm(entry->second);
    if (!s) {
        ::close(fd);
        use_http_only(job, entry == cache_.end() ? "the metainfo left the peer cache" : "unusable metainfo");
        agent_.start_job(job);
        return;
    }
    if (::ftruncate(fd, static_cast<off_t>(s->meta.size)) != 0) {
        int err = errno;
        ::close(fd);
        agent_.fail(job, ErrorContext::LocalFile, err,
                    "cannot size " + f.partial_path + ": " + std::strerror(err), job.current_file);
        return;
    }
    job.swarm_fd = fd;
    job.swarm_copy_refused = false;
    job.swarm = s;
    job.written.assign(static_cast<std::size_t>(s->meta.num_pieces), false);
    job.written_count = 0;
    f.bytes_total = s->meta.size;
    f.bytes_transferred = 0;
    // A co-fetch's pieces already in this file's partial file: each was
    // hashed against the hash this metainfo holds (fetched and hashed
    // here, or checked by a segment torrent and again once copied), the
    // file a copy of them. Counted here, where they came from: their
    // PieceVerified events skip the jobs that have them.
    const Job::CoFetchPartial& pre = job.cofetch_partial;
    if (pre.sha256 == f.sha256 && pre.file == job.current_file && pre.written.size() == job.written.size()) {
        for (std::size_t i = 0; i < job.written.size(); ++i) {
            if (!pre.written[i]) continue;
            const std::uint64_t size = s->piece_size(static_cast<int>(i));
            job.written[i] = true;
            ++job.written_count;
            f.bytes_transferred += size;
            (s->from_origin[i] ? job.rec.bytes_from_origin : job.rec.bytes_from_peers) += size;
            // The agent received it once: counted for the first job only.
            if (s->users.empty())
                agent_.count_usage(job, s->from_origin[i] ? kOriginReceivedBytes : kPeerReceivedBytes, size);
        }
    }
    job.cofetch_partial.reset();
    // Pieces land anywhere in the file: no prefix of it is sure.
    f.durable_bytes = 0;
    job.partials_written.erase(job.current_file);
    store_.update_file(job.rec.id, f);
    if (s->users.empty()) {
        // Timers and rates from before (the swarm may have been idle for
        // hours) say nothing about the peers now.
        s->attached_ms = mono_ms();
        s->peers_hung_up.clear();
        s->peers_failed.clear();
        s->peers_choking.clear();
        s->peers_offer_since_ms = 0;
        s->peers_slow_since_ms = 0;
        s->peer_rate = -1;
        s->peer_rate_mark_ms = 0;
    }
    s->users.insert(&job);
    if (s->paused) {
        peers_->resume(s->torrent);
        s->paused = false;
    }
    job.last_progress_ms = mono_ms();
    if (job.rec.state != JobState::Connecting) agent_.change_state(job, JobState::Connecting);
    agent_.change_state(job, JobState::Transferring);
    if (job.written_count > 0)
        LOG_INFO("job %s: %s through the swarm %s (%d of its %d pieces already in the file from the co-fetch)",
                 job.rec.id.c_str(), f.remote_url.c_str(), s->info_hash.c_str(), job.written_count,
                 s->meta.num_pieces);
    else
        LOG_INFO("job %s: %s through the swarm %s", job.rec.id.c_str(), f.remote_url.c_str(),
                 s->info_hash.c_str());
    pump_swarm(*s);
}

// The job stops using its torrent (suspend, cancel, error, yield, done).
// The torrent stays: seeding when complete, paused when no job wants it,
// removed with its files when the last job that wanted it was cancelled.
void Swarms::detach_swarm(Job& job, bool cancelled) {
    Swarm* s = job.swarm;
    if (!s) return;
    if (job.swarm_fd >= 0) ::close(job.swarm_fd);
    job.swarm_fd = -1;
    job.swarm = nullptr;
    s->users.erase(&job);
    // The pieces fetched for it stop with it; the other users fetch them
    // from their own origins.
    drop_origin_pieces(*s, &job);
    s->origin_hash_failures.erase(&job);
    for (auto& [piece, j] : s->origin_piece_job)
        if (j == &job) j = nullptr;
    if (!s->users.empty() || s->complete) return;
    drop_origin_pieces(*s);
    evict_pending_ = true;  // unfinished content no job is fetching now counts
    if (cancelled && !wanted_by_unfinished_job(s->info_hash, &job)) {
        remove_swarm(*s, true);
        return;
    }
    peers_->save_resume_data(s->torrent);
    peers_->pause(s->torrent);
    s->paused = true;
}

// ---- moving pieces --------------------------------------------------------------

// Looks at what the session holds and schedules the work that follows:
// pieces to copy into partial files, pieces to fetch from the origin.
bool Swarms::is_live(const Swarm* swarm) const {
    return std::any_of(swarms_.begin(), swarms_.end(),
                       [swarm](const auto& entry) { return entry.second.get() == swarm; });
}

void Swarms::pump_swarm(Swarm& s) {
    if (s.torrent == 0 || s.users.empty()) return;
    const p2p::TorrentStatus st = peers_->status(s.torrent, true);
    if (st.checking) return;
    if (st.error) return;  // reported by an event
    const std::int64_t now = mono_ms();
    for (int i = 0; i < s.meta.num_pieces; ++i) {
        auto idx = static_cast<std::size_t>(i);
        if (!s.have[idx] && idx < st.pieces.size() && st.pieces[idx]) {
            s.have[idx] = true;
            if (++s.have_count == s.meta.num_pieces) s.complete = true;
            if (hashed_in_this_run(s, idx) && !s.verified_now[idx]) s.unreported_since_ms[idx] = now;
        }
        if (!s.have[idx] || s.reading[idx]) continue;
        // Its PieceVerified event is coming (the status runs ahead of the
        // events): it is copied then, after its bytes are counted, rather
        // than read back now; read back only if no event came in time.
        if (!s.verified_now[idx] && s.unreported_since_ms[idx] != 0 &&
            now - s.unreported_since_ms[idx] < kUnreportedPieceMs)
            continue;
        for (Job* j : s.users) {
            if (!j->written[idx]) {
                // Hashed in this run: copied from the cached copy in the
                // kernel. Otherwise read back through the session and
                // hashed again (write_piece).
                if (s.verified_now[idx]) {
                    const bool copied = copy_piece_from_cache(s, i);
                    // Delivering may have finished or failed the file and
                    // removed the swarm.
                    if (!is_live(&s)) return;
                    if (copied) break;
                }
                peers_->read_piece(s.torrent, i);
                s.reading[idx] = true;
                ++s.pieces_read_back;
                break;
            }
        }
        if (s.users.empty()) return;  // the swarm's jobs failed
    }
    // Files a co-fetch wrote whole (join_swarm): no piece comes to finish
    // them, so they are finished once the session holds every piece (the
    // torrent seeds on: a complete swarm is not paused when they leave).
    if (s.have_count == s.meta.num_pieces) {
        if (auto c = cache_.find(s.info_hash); c != cache_.end() && !c->second.complete) on_torrent_finished(s);
        std::vector<Job*> whole;
        for (Job* j : s.users)
            if (j->written_count == s.meta.num_pieces) whole.push_back(j);
        for (Job* j : whole) {
            finish_swarm_file(*j);
            if (!is_live(&s) || s.users.empty()) return;
        }
    }
    fetch_origin_pieces(s);
}

// Logs the pieces newly held over (p2p/claims.h): claimed by some agent
// for the whole hold without arriving, so their claims are ignored now and
// we may fetch them ourselves. One line per new batch, not per piece.
void Swarms::log_claims_held_over(Swarm& s) {
    std::set<int> held = peers_->claims_held_over(s.torrent);
    std::size_t fresh = 0;
    int first = -1;
    for (int piece : held)
        if (!s.claims_held_over.count(piece) && ++fresh == 1) first = piece;
    s.claims_held_over = std::move(held);
    if (fresh == 0) return;
    LOG_INFO("swarm %s: %zu piece(s) (piece %d first) claimed by peers for %lld s without coming: "
             "their claims are ignored until a peer has them",
             s.info_hash.c_str(), fresh, first,
             static_cast<long long>(p2p::claim_hold_ms(s.meta.piece_length) / 1000));
}

// Origin-aware scheduling: pieces in flight to the origin, up to [p2p]
// origin_requests for this agent and swarm_origin_requests for the whole
// swarm, fetched by the swarm's designated fetchers only, each from its own
// share of the pieces, chosen among those no connected peer has, is giving
// us or was claimed by another agent. While the swarm does not deliver
// every agent may fetch; when the peers stall, the origin takes everything
// that is missing (p2p/origin_picker.h has the rules and their timings).
void Swarms::fetch_origin_pieces(Swarm& s) {
    const std::int64_t now = mono_ms();
    if (s.users.empty() || s.have_count == s.meta.num_pieces) return;
    // Claims first, then the peers' bitfields: a claim is dropped when a
    // peer announces the piece, so in this order a piece is always seen
    // either claimed or held, never neither.
    const std::vector<p2p::Claim> claims = others_claims(s);
    SwarmView view;
    view.peers = peers_->peers(s.torrent);
    track_peers(s, view.peers, now);
    yield_doubly_claimed_pieces(s, claims, now);
    const p2p::OriginPlanInput plan_in = origin_plan_input(s, claims, now, view);
    const p2p::OriginPlan plan = p2p::plan_origin_requests(plan_in);
    s.peers_offer_since_ms = plan.peers_offer_since_ms;
    s.peers_slow_since_ms = plan.peers_slow_since_ms;
    // Peers too slow sends the agent to the origin for pieces peers hold:
    // outside peers are tried first (the router is cheaper than the origin).
    prefer_own_subnet(s, plan_in, plan.stalled || plan.peers_slow);
    if (plan.want <= 0 || now < s.origin_retry_ms) return;
    if (plan.peers_slow)
        LOG_DEBUG("swarm %s: peers too slow (%lld KiB/s for %lld KiB we lack; origin pieces take %lld ms)",
                  s.info_hash.c_str(), static_cast<long long>(plan_in.peer_rate / 1024),
                  static_cast<long long>(plan_in.lack_bytes / 1024), static_cast<long long>(s.origin_piece_ms));
    const std::vector<bool> busy = busy_pieces(s, claims, view, plan.stalled, now);
    p2p::OriginPickInput in;
    in.have = &s.have;
    in.busy = &busy;
    in.peers_with = &view.peers_with;
    in.order = &s.order;
    in.held_too = plan.stalled || plan.peers_slow;
    in.share_count = plan.share_count;
    in.share_index = plan.share_index;
    const char* why = plan.stalled ? "peers stalled" : plan.peers_slow ? "peers too slow" : "no peer offers it";
    for (int piece : p2p::pick_origin_pieces(in, plan.want)) {
        start_origin_piece(s, piece, now);
        LOG_DEBUG("swarm %s: piece %d from the origin (%zu peers, %d hold it, %s)", s.info_hash.c_str(), piece,
                  view.peers.size(), view.peers_with[static_cast<std::size_t>(piece)], why);
    }
}

// Peers of this agent's own subnet first: unless it is its subnet's
// gateway for the swarm, the agent takes pieces only from peers inside
// while they deliver (p2p::outside_peers_to_skip has the rule). The
// session is told only when the set changes.
//
// Once released (the rule stopped skipping while this agent skipped), the
// release holds for kSubnetReleaseHoldMs: a host inside that drips a piece
// now and then (or a slow stock seed) would otherwise switch the skip
// back on at each piece, and the subnet would crawl at its pace.
void Swarms::prefer_own_subnet(Swarm& s, const p2p::OriginPlanInput& in, bool stalled) {
    std::set<std::string> skip;
    if (in.now_ms >= s.subnet_release_until_ms) {
        skip = p2p::outside_peers_to_skip(in, stalled);
        if (skip.empty() && !s.skipping_outside.empty())
            s.subnet_release_until_ms = in.now_ms + kSubnetReleaseHoldMs;
    }
    if (skip == s.skipping_outside) return;
    if (skip.empty() != s.skipping_outside.empty())
        LOG_DEBUG("swarm %s: %s", s.info_hash.c_str(),
                  skip.empty() ? "pieces from peers outside this subnet too"
                               : "pieces from peers inside this subnet only (another agent here is its gateway)");
    peers_->set_no_download(s.torrent, skip);
    s.skipping_outside = std::move(skip);
}

// Other agents' claims on pieces of this torrent. The table keeps neither
// ours nor out-of-range ones; filtered once more here, since every use
// indexes by piece.
std::vector<p2p::Claim> Swarms::others_claims(Swarm& s) {
    const auto n = static_cast<std::size_t>(s.meta.num_pieces);
    std::vector<p2p::Claim> claims = peers_->claims(s.torrent);
    log_claims_held_over(s);
    claims.erase(std::remove_if(claims.begin(), claims.end(),
                                [&](const p2p::Claim& c) {
                                    return c.claimant == peers_->id() || c.piece < 0 ||
                                           static_cast<std::size_t>(c.piece) >= n;
                                }),
                 claims.end());
    return claims;
}

// Each connected peer: when it was first seen (a peer that has not told its
// pieces within p2p::kHandshakeMs of connecting does not count), since when
// it owes us data (we want its pieces and it keeps us choked, or our
// requests to it are unanswered) and since when it leaves our requests
// unanswered while it unchokes us. An agent unchokes at once
// (p2p/session.cpp) and answers in milliseconds on a LAN. A peer that has
// owed for p2p::kPeerOwesTooLongMs counts nowhere (p2p/origin_picker.h), so
// a peer that advertises pieces and never delivers cannot hold the origin
// back; one that has left requests unanswered that long is disconnected
// too (plan_peers). A choke alone is not: stock clients ration their
// uploads by choking. Payload from the peer starts both counts again.
void Swarms::track_peers(Swarm& s, const std::vector<p2p::TorrentPeer>& peers, std::int64_t now) {
    std::map<std::string, Swarm::SeenPeer> seen;
    for (const auto& p : peers) {
        auto it = s.peers_seen.find(p.endpoint);
        const Swarm::SeenPeer* before = it == s.peers_seen.end() ? nullptr : &it->second;
        Swarm::SeenPeer& entry = seen[p.endpoint];
        entry.first_seen_ms = before ? before->first_seen_ms : now;
        entry.payload = p.payload_received;
        const bool nothing_since = before && p.payload_received <= before->payload;
        auto since = [&](bool owing, std::int64_t previous) {
            if (!owing) return std::int64_t{0};
            return nothing_since && previous != 0 ? previous : now;
        };
        // Requests left waiting count whether or not it chokes us: a peer
        // with the fast extension keeps them queued over a choke until it
        // rejects them, and a choke-unchoke cycle must not reset the count.
        const bool unanswered = p.interesting && p.requests_waiting > 0;
        entry.owes_since_ms = since(unanswered || (p.interesting && p.choked_us), before ? before->owes_since_ms : 0);
        entry.unanswered_since_ms = since(unanswered, before ? before->unanswered_since_ms : 0);
    }
    s.peers_seen.swap(seen);
}

// Two agents that claimed the same piece at the same moment: the lower
// claimant id keeps it, the other drops its request (if it is young: an
// older request has bytes worth keeping).
void Swarms::yield_doubly_claimed_pieces(Swarm& s, const std::vector<p2p::Claim>& claims, std::int64_t now) {
    for (const auto& c : claims) {
        auto it = s.origin_inflight.find(c.piece);
        if (it == s.origin_inflight.end() || c.claimant >= peers_->id()) continue;
        if (now - it->second->started_ms > kYieldClaimedPieceWithinMs) continue;
        LOG_DEBUG("swarm %s: piece %d claimed by another agent too; leaving it to them", s.info_hash.c_str(),
                  c.piece);
        fetcher_.stop(it->second->id);
        it->second->swarm = nullptr;
        s.origin_inflight.erase(it);
    }
    origin_pieces_.erase(std::remove_if(origin_pieces_.begin(), origin_pieces_.end(),
                                        [](const auto& op) { return op->swarm == nullptr; }),
                         origin_pieces_.end());
}

// The peers as plan_origin_requests sees them; fills view.peers_with and
// view.failing, and disconnects the failing peers.
std::vector<p2p::SwarmPeer> Swarms::plan_peers(Swarm& s, std::int64_t now, SwarmView& view) {
    const auto n = static_cast<std::size_t>(s.meta.num_pieces);
    view.peers_with.assign(n, 0);
    std::vector<p2p::SwarmPeer> out;
    for (const auto& p : view.peers) {
        p2p::SwarmPeer sp;
        sp.address = p.address;
        sp.inside = peers_->in_own_subnet(p.address);
        sp.told = p.told && p.pieces.size() == n;
        sp.seed = p.seed;
        sp.stock = !p.dopt;
        const Swarm::SeenPeer& seen_peer = s.peers_seen[p.endpoint];
        sp.connected_ms = now - seen_peer.first_seen_ms;
        auto too_long = [now](std::int64_t since) { return since != 0 && now - since >= p2p::kPeerOwesTooLongMs; };
        const bool unanswering = too_long(seen_peer.unanswered_since_ms) || s.peers_failed.count(sp.address) > 0;
        sp.failing = unanswering || too_long(seen_peer.owes_since_ms);
        if (sp.failing) view.failing.insert(p.endpoint);
        if (unanswering) {
            // Disconnected, now and each time it comes back while this
            // swarm is attached: blocks asked of it are asked of no other
            // peer, and the session gives them to the peers that deliver
            // only at their next message, so a failing peer's connection
            // costs more than its pieces are worth.
            if (s.peers_failed.insert(sp.address).second)
                LOG_INFO("swarm %s: peer %s has owed us data for 2 s (unchoked us and left our "
                         "requests unanswered): disconnected, and again whenever it comes back "
                         "while this swarm has jobs",
                         s.info_hash.c_str(), sp.address.c_str());
            peers_->disconnect_peer(s.torrent, p.endpoint);
        } else if (sp.failing && s.peers_choking.insert(sp.address).second) {
            LOG_INFO("swarm %s: peer %s has owed us data for 2 s (kept us choked): its pieces "
                     "count nowhere until it serves us; it stays connected",
                     s.info_hash.c_str(), sp.address.c_str());
        }
        if (sp.told && !sp.failing) {
            sp.pieces = static_cast<int>(std::count(p.pieces.begin(), p.pieces.end(), true));
            for (std::size_t i = 0; i < n; ++i) {
                if (p.pieces[i]) {
                    ++view.peers_with[i];
                    if (!s.have[i]) sp.offers = true;
                }
            }
        }
        out.push_back(std::move(sp));
    }
    return out;
}

// What plan_origin_requests needs to know of the swarm now.
p2p::OriginPlanInput Swarms::origin_plan_input(Swarm& s, const std::vector<p2p::Claim>& claims, std::int64_t now,
                                              SwarmView& view) {
    const auto n = static_cast<std::size_t>(s.meta.num_pieces);
    p2p::OriginPlanInput in;
    in.now_ms = now;
    in.attached_ms = s.attached_ms;
    in.last_peer_piece_ms = s.last_peer_piece_ms;
    in.peers_offer_since_ms = s.peers_offer_since_ms;
    in.peers = plan_peers(s, now, view);
    in.static_peers.assign(static_peer_ips_.begin(), static_peer_ips_.end());
    in.static_peers.insert(in.static_peers.end(), s.holder_ips.begin(), s.holder_ips.end());
    in.hung_up = s.peers_hung_up;
    in.trackers = !config_.trackers.empty() && trackers_failing_.size() < config_.trackers.size();
    in.tracker_answered = last_tracker_reply_ms_ >= s.attached_ms;
    std::set<int> in_swarm;  // pieces in flight in the whole swarm
    for (const auto& [piece, op] : s.origin_inflight) in_swarm.insert(piece);
    for (const auto& c : claims)
        if (!s.have[static_cast<std::size_t>(c.piece)]) in_swarm.insert(c.piece);
    in.our_requests = static_cast<int>(s.origin_inflight.size());
    in.swarm_requests = static_cast<int>(in_swarm.size());
    in.origin_requests = config_.origin_requests;
    in.swarm_origin_requests = config_.swarm_origin_requests;
    in.info_hash = s.info_hash;
    in.self_address = self_address_;
    // Peers too slow? The rate peers give us pieces, over windows of
    // kPeerRateWindowMs.
    if (s.peer_rate_mark_ms == 0 || now - s.peer_rate_mark_ms >= kPeerRateWindowMs) {
        if (s.peer_rate_mark_ms != 0)
            s.peer_rate = (s.peer_piece_bytes - s.peer_rate_mark_bytes) * 1000 / (now - s.peer_rate_mark_ms);
        s.peer_rate_mark_ms = now;
        s.peer_rate_mark_bytes = s.peer_piece_bytes;
    }
    in.all_in_swarm = true;
    for (std::size_t i = 0; i < n && in.all_in_swarm; ++i)
        if (!s.have[i] && view.peers_with[i] == 0 && !in_swarm.count(static_cast<int>(i))) in.all_in_swarm = false;
    in.lack_bytes = static_cast<std::int64_t>(s.meta.num_pieces - s.have_count) * s.meta.piece_length;
    in.peer_rate = s.peer_rate;
    in.origin_piece_ms = s.origin_piece_ms;
    in.peers_slow_since_ms = s.peers_slow_since_ms;
    return in;
}

// Pieces the origin must not be asked for: in flight to the origin, or
// fetched and handed to the session but not yet verified (from_origin
// until a hash failure clears it); unless the peers stalled, also those a
// peer is sending us right now and those other agents claimed. A piece
// whose blocks came from a peer that left, or are asked of a failing peer
// (endpoints in view.failing), is not busy: the origin completes it. In a
// co-fetched swarm the pieces other co-fetchers hashed (promised) are
// busy too, unless the peers stalled, while the co-fetchers connect
// (promised_until_ms), while peers deliver (a piece within
// kCoFetchDeliveringMs), or while a connected peer has the piece: the
// origin takes one only when no connected peer has it and the swarm gives
// nothing.
std::vector<bool> Swarms::busy_pieces(Swarm& s, const std::vector<p2p::Claim>& claims, const SwarmView& view,
                                     bool stalled, std::int64_t now) {
    std::vector<bool> busy = s.from_origin;
    for (const auto& [piece, op] : s.origin_inflight) busy[static_cast<std::size_t>(piece)] = true;
    if (stalled) return busy;
    const bool promise_all = now < s.promised_until_ms ||
                             (s.last_peer_piece_ms != 0 && now - s.last_peer_piece_ms < kCoFetchDeliveringMs);
    for (std::size_t i = 0; i < busy.size() && i < s.promised.size(); ++i)
        if (s.promised[i] && (promise_all || (i < view.peers_with.size() && view.peers_with[i] > 0))) busy[i] = true;
    for (int piece : peers_->pieces_coming_from_peers(s.torrent, view.failing))
        busy[static_cast<std::size_t>(piece)] = true;
    for (const auto& c : claims) busy[static_cast<std::size_t>(c.piece)] = true;
    return busy;
}

// One origin range request for `piece`, for the next user in turn, from
// its own URL with its own headers; the piece is claimed to peers.
void Swarms::start_origin_piece(Swarm& s, int piece, std::int64_t now) {
    Job& lead = next_origin_job(s);
    auto op = std::make_unique<OriginPiece>();
    op->swarms = this;
    op->swarm = &s;
    op->job = &lead;
    op->piece = piece;
    op->started_ms = now;
    op->data.reserve(s.piece_size(piece));
    TransferRequest req;
    req.url = lead.file().remote_url;
    req.headers = lead.rec.headers;
    req.offset = s.piece_offset(piece);
    req.length = s.piece_size(piece);
    // The [http] cap is per file: shared among its piece requests.
    bool foreground = lead.rec.priority == storage::Priority::Foreground;
    std::uint64_t cap = foreground ? config_.max_rate_foreground : config_.max_rate_background;
    req.max_recv_rate = cap / static_cast<std::uint64_t>(std::max(1, config_.origin_requests));
    if (cap > 0 && req.max_recv_rate == 0) req.max_recv_rate = 1;
    op->id = fetcher_.start(req, op.get());
    agent_.count_usage(lead, kOriginRequests, 1);
    peers_->claim(s.torrent, piece);
    s.origin_inflight[piece] = op.get();
    origin_pieces_.push_back(std::move(op));
}

int OriginPiece::on_response(const ResponseInfo& info) {
    if (!swarm) return DOPT_E_INTERNAL;
    // A 200 means the origin ignored Range: useless for pieces.
    if (info.status != 206 || info.body_offset != swarm->piece_offset(piece)) return DOPT_E_REMOTE_CHANGED;
    if (info.total != UINT64_MAX && info.total != swarm->meta.size) return DOPT_E_REMOTE_CHANGED;
    return 0;
}

int OriginPiece::on_body(const char* bytes, std::size_t len) {
    if (!swarm || data.size() + len > swarm->piece_size(piece)) return DOPT_E_REMOTE_CHANGED;
    data.insert(data.end(), bytes, bytes + len);
    return 0;
}

void OriginPiece::on_done(const TransferOutcome& outcome) { swarms->on_origin_piece_done(*this, outcome); }

void Swarms::on_origin_piece_done(OriginPiece& op, const TransferOutcome& outcome) {
    Swarm* sp = op.swarm;
    auto owned = std::find_if(origin_pieces_.begin(), origin_pieces_.end(),
                              [&](const auto& p) { return p.get() == &op; });
    std::unique_ptr<OriginPiece> keep;
    if (owned != origin_pieces_.end()) {
        keep = std::move(*owned);
        origin_pieces_.erase(owned);
    }
    if (!sp) return;
    Swarm& s = *sp;
    s.origin_inflight.erase(op.piece);
    std::int64_t now = mono_ms();
    if (outcome.ok && op.data.size() == s.piece_size(op.piece)) {
        LOG_DEBUG("swarm %s: piece %d came from the origin in %lld ms", s.info_hash.c_str(), op.piece,
                  static_cast<long long>(now - op.started_ms));
        s.origin_piece_ms = s.origin_piece_ms == 0 ? now - op.started_ms
                                                   : (3 * s.origin_piece_ms + (now - op.started_ms)) / 4;
        s.origin_failures = 0;
        s.from_origin[static_cast<std::size_t>(op.piece)] = true;
        s.origin_piece_job[op.piece] = op.job;
        // overwrite_existing: blocks a peer sent for this piece are replaced,
        // so that a peer's bad block is not blamed on the origin.
        peers_->add_piece(s.torrent, op.piece, std::move(op.data));
        pump_swarm(s);
        return;
    }
    // 416: the piece lies past the end of the origin's content, which is
    // shorter than the metainfo says.
    bool mismatch = outcome.code == DOPT_E_REMOTE_CHANGED || outcome.code == 416;
    if (!outcome.ok && !outcome.transient && !mismatch) {
        // 404, 403, ...: the content is gone from that job's origin; the
        // others go on with theirs.
        Job& j = *op.job;
        agent_.fail(j, outcome.context, outcome.code, outcome.description, j.current_file);
        return;
    }
    if (outcome.ok || mismatch) {
        origin_does_not_match(s, *op.job, outcome.ok ? "a short piece" : outcome.description);
        return;
    }
    // Transient: back off; peers may still give the piece meanwhile.
    back_off_origin(s, op, outcome, now);
}

// An origin piece failed transiently: the origin is asked again after a
// backoff (doubling, within [retry_min_delay, retry_max_delay], at least its
// Retry-After), and a user that made no progress for its no-progress
// timeout fails.
void Swarms::back_off_origin(Swarm& s, const OriginPiece& op, const TransferOutcome& outcome,
                             std::int64_t now) {
    ++s.origin_failures;
    double delay = config_.retry_min_delay;
    for (std::uint32_t i = 1; i < s.origin_failures && delay < config_.retry_max_delay; ++i) delay *= 2;
    delay = std::min<double>(delay, config_.retry_max_delay);
    if (outcome.retry_after > 0) delay = std::max<double>(delay, std::min<long>(outcome.retry_after, 3600));
    s.origin_retry_ms = now + static_cast<std::int64_t>(delay * 1000);
    LOG_INFO("swarm %s: origin piece %d failed (%s); origin again in %.0f s", s.info_hash.c_str(),
             op.piece, outcome.description.c_str(), delay);
    std::vector<Job*> users(s.users.begin(), s.users.end());
    for (Job* j : users) {
        j->last_transient = agent_.error_record(*j, outcome.context, outcome.code, outcome.description,
                                                j->current_file);
        if (now >= j->no_progress_deadline_ms()) agent_.fail_no_progress(*j, outcome.description);
    }
}

// The origin of `job` (a user of the swarm) does not serve this content as
// its metainfo describes it (no range support, another size, pieces failing
// their hashes). Metainfo the job gave makes that the job's error; metainfo
// found beside the content is simply not used: the file goes over HTTP
// only. The other users go on, each with its own origin.
void Swarms::origin_does_not_match(Swarm& s, Job& job, const std::string& why) {
    if (!s.users.count(&job)) return;
    const FileRecord& f = job.file();
    if (f.metainfo_source == "job") {
        agent_.fail(job, ErrorContext::Integrity, DOPT_E_INTEGRITY,
                    f.remote_url + " does not match the job's metainfo: " + why, job.current_file);
    } else {
        if (f.metainfo_source == "peers") drop_content_mapping(s.info_hash, "the origin's bytes fail its hashes");
        detach_swarm(job, false);
        use_http_only(job, "the origin's content does not match its metainfo: " + why);
        agent_.start_job(job);
    }
}

// The user the next origin piece is fetched for: each in turn.
Agent::Job& Swarms::next_origin_job(Swarm& s) {
    auto it = s.users.begin();
    std::advance(it, static_cast<std::ptrdiff_t>(s.origin_turn++ % s.users.size()));
    return **it;
}

// Stops the origin requests of a swarm (only those fetched for `only`,
// when given); their sinks are freed.
void Swarms::drop_origin_pieces(Swarm& s, const Job* only) {
    for (auto it = s.origin_inflight.begin(); it != s.origin_inflight.end();) {
        OriginPiece* op = it->second;
        if (only && op->job != only) {
            ++it;
            continue;
        }
        fetcher_.stop(op->id);
        op->swarm = nullptr;
        it = s.origin_inflight.erase(it);
    }
    origin_pieces_.erase(std::remove_if(origin_pieces_.begin(), origin_pieces_.end(),
                                        [](const auto& op) { return op->swarm == nullptr; }),
                         origin_pieces_.end());
}

// Stops the origin request for `piece`, if one is in flight: the piece
// came from a peer, so the rest of its bytes would cross the origin link
// for nothing.
void Swarms::drop_origin_piece(Swarm& s, int piece) {
    auto it = s.origin_inflight.find(piece);
    if (it == s.origin_inflight.end()) return;
    OriginPiece* op = it->second;
    LOG_DEBUG("swarm %s: piece %d came from a peer; its origin request stopped after %zu bytes",
              s.info_hash.c_str(), piece, op->data.size());
    fetcher_.stop(op->id);
    op->swarm = nullptr;
    s.origin_inflight.erase(it);
    origin_pieces_.erase(std::remove_if(origin_pieces_.begin(), origin_pieces_.end(),
                                        [op](const auto& p) { return p.get() == op; }),
                         origin_pieces_.end());
}

void Swarms::fail_swarm_users(Swarm& s, ErrorContext context, std::int64_t code, const std::string& why) {
    std::vector<Job*> users(s.users.begin(), s.users.end());
    for (Job* j : users) agent_.fail(*j, context, code, why, j->current_file);
}

// A verified piece, read back from the session: into every partial file
// that lacks it.
void Swarms::write_piece(Swarm& s, int piece, const char* data, std::size_t len) {
    auto idx = static_cast<std::size_t>(piece);
    s.reading[idx] = false;
    // The session checked the piece when it arrived, not when it reads it back:
    // a cached copy altered on disk since would pass unseen. A piece that did
    // not arrive in this run (the cache of an earlier one) is checked again
    // against its v1 hash before it reaches a user's file; a bad one makes
    // the session recheck the whole cached copy and fetch again what fails.
    if (!s.verified_now[idx]) {
        if (!peers_->piece_matches_v1_hash(s.torrent, piece, data, len)) {
            LOG_ERROR("swarm %s: piece %d in the peer cache no longer matches its hash; "
                      "rechecking the cached copy", s.info_hash.c_str(), piece);
            peers_->force_recheck(s.torrent);
            s.checked = false;
            std::fill(s.have.begin(), s.have.end(), false);
            s.have_count = 0;
            s.complete = false;
            return;
        }
    }
    deliver_piece(s, piece, [data](Job& j, off_t off, std::size_t len) {
        std::size_t put = 0;
        while (put < len) {
            ssize_t n = ::pwrite(j.swarm_fd, data + put, len - put, off + static_cast<off_t>(put));
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) return n < 0 ? errno : EIO;
            put += static_cast<std::size_t>(n);
        }
        return 0;
    });
}

// A piece the session hashed in this run, copied from the cached copy into
// every partial file that lacks it without passing through this process
// (copy_file_range). True when every one has it; false when some are left
// for read_piece: a file on another file system, where the kernel refuses
// (from then on for that job), or the cached copy cannot be opened
// (read_piece then reports the error).
bool Swarms::copy_piece_from_cache(Swarm& s, int piece) {
    if (s.cache_fd == Swarm::kCacheFdFailed) return false;
    if (s.cache_fd < 0) {
        std::string path = peers_->content_path(s.torrent);
        s.cache_fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (s.cache_fd < 0) {
            // Said once: the pieces are read back through the session instead.
            LOG_WARN("swarm %s: cannot open %s: %s; reading pieces back instead", s.info_hash.c_str(),
                     path.c_str(), std::strerror(errno));
            s.cache_fd = Swarm::kCacheFdFailed;
            return false;
        }
    }
    int src = s.cache_fd;
    return deliver_piece(s, piece, [src, &s](Job& j, off_t off, std::size_t len) {
        if (j.swarm_copy_refused) return -1;
        loff_t in = off, out = off;
        std::size_t put = 0;
        while (put < len) {
            ssize_t n = ::copy_file_range(src, &in, j.swarm_fd, &out, len - put, 0);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && put == 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS ||
                                      errno == EOPNOTSUPP || errno == EBADF)) {
                LOG_DEBUG("swarm %s: copy_file_range into job %s's file refused (%s); reading "
                          "pieces back instead", s.info_hash.c_str(), j.rec.id.c_str(), std::strerror(errno));
                j.swarm_copy_refused = true;
                return -1;
            }
            if (n <= 0) return n < 0 ? errno : EIO;  // 0: the cached copy is short
            put += static_cast<std::size_t>(n);
        }
        return 0;
    });
}

// Writes a verified piece into every partial file that lacks it with
// put(job, offset, length) -> 0, an errno (the job fails), or -1 (not
// written: left for another way), and finishes the files now whole. True
// when no file was left without it.
bool Swarms::deliver_piece(Swarm& s, int piece, const std::function<int(Job&, off_t, std::size_t)>& put) {
    auto idx = static_cast<std::size_t>(piece);
    std::uint64_t off = s.piece_offset(piece);
    std::uint64_t len = s.piece_size(piece);
    bool left = false;
    std::vector<Job*> done;
    std::vector<Job*> users(s.users.begin(), s.users.end());
    for (Job* j : users) {
        if (j->written[idx]) continue;
        int err = put(*j, static_cast<off_t>(off), static_cast<std::size_t>(len));
        if (err < 0) {
            left = true;
            continue;
        }
        if (err) {
            FileRecord& f = j->file();
            agent_.fail(*j, ErrorContext::LocalFile, err,
                        "cannot write " + f.partial_path + ": " + std::strerror(err), j->current_file);
            continue;
        }
        DOPT_CRASH_POINT("swarm_piece_write");
        j->written[idx] = true;
        ++j->written_count;
        FileRecord& f = j->file();
        f.bytes_transferred += len;
        std::int64_t now = mono_ms();
        j->last_progress_ms = now;
        if (now - j->last_checkpoint_ms >= 1000) agent_.checkpoint(*j);
        agent_.notify_modification(*j, false);
        if (j->written_count == s.meta.num_pieces) done.push_back(j);
    }
    for (Job* j : done) finish_swarm_file(*j);
    return !left;
}

// Every piece is in the partial file: flush it, check the whole-file
// SHA-256 when one is known, and go on with the job's next file.
void Swarms::finish_swarm_file(Job& job) {
    FileRecord& f = job.file();
    int fd = job.swarm_fd;
    if (config_.sync_on_complete && ::fdatasync(fd) != 0) {
        int err = errno;
        agent_.fail(job, ErrorContext::LocalFile, err,
                    "cannot write " + f.partial_path + ": " + std::strerror(err), job.current_file);
        return;
    }
    // For the log: how long the X check takes, and since when the file's
    // last piece is here (docs/performance.md, goal 10).
    const std::int64_t check_start_ms = mono_ms();
    std::int64_t check_ms = 0;
    if (!f.sha256.empty()) {
        std::string digest = sha256_of_fd(fd);
        check_ms = mono_ms() - check_start_ms;
        if (digest != f.sha256 && f.metainfo_source == "peers") {
            // "X is H" was a lie: H goes, its announcers are banned, and
            // the file comes from the origin.
            const std::string ih = job.swarm->info_hash;
            drop_content_mapping(ih, "its bytes are not that SHA-256");
            // Co-fetched metainfo: once the origin's copy is whole, its
            // true piece hashes unmask who sent false ones (seed_content).
            job.content_seed = hash_claims_.count(f.sha256) > 0;
            detach_swarm(job, false);
            if (auto s = swarms_.find(ih); s != swarms_.end() && s->second->users.empty())
                remove_swarm(*s->second, true);
            f.bytes_transferred = 0;
            use_http_only(job, "the LAN's copy of SHA-256 " + f.sha256 + " was not it");
            agent_.start_job(job);
            return;
        }
        if (digest != f.sha256) {
            detach_swarm(job, false);
            // A resume's open comes after it (owner_op's order).
            agent_.owner_op(job, owner_op_of(OwnerOpKind::Unlink, job.owner(), f.partial_path),
                            [](Job&, int) {});
            f.bytes_transferred = 0;
            store_.update_file(job.rec.id, f);
            agent_.fail(job, ErrorContext::Integrity, DOPT_E_INTEGRITY,
                        "the SHA-256 of " + f.remote_url + " is " + digest + ", expected " + f.sha256 +
                            "; the data was discarded",
                        job.current_file);
            return;
        }
    }
    Swarm* s = job.swarm;
    const std::int64_t since_peer_piece_ms = s->last_peer_piece_ms ? check_start_ms - s->last_peer_piece_ms : -1;
    const int read_back = s->pieces_read_back;
    content_proven(job, s->torrent);
    auto c = cache_.find(s->info_hash);
    if (c != cache_.end()) {
        c->second.last_used = wall_now();
        store_.put_cache_entry(c->second);
    }
    detach_swarm(job, false);
    f.completed = true;
    f.bytes_transferred = f.bytes_total;
    std::int64_t note = store_.update_file(job.rec.id, f, DOPT_NOTIFY_FILE_TRANSFERRED, wall_now());
    agent_.queue_notification(job.rec.id, note, DOPT_NOTIFY_FILE_TRANSFERRED, job.current_file);
    store_.update_job(job.rec);
    LOG_INFO("job %s: file %d done through the swarm (%llu bytes from peers, %llu from the origin; the "
             "last peer piece %lld ms before the SHA-256 check, which took %lld ms; %d piece(s) read back "
             "and hashed again)",
             job.rec.id.c_str(), job.current_file,
             static_cast<unsigned long long>(job.rec.bytes_from_peers),
             static_cast<unsigned long long>(job.rec.bytes_from_origin), static_cast<long long>(since_peer_piece_ms),
             static_cast<long long>(check_ms), read_back);
    agent_.start_job(job);
}

// ---- peer session events --------------------------------------------------------

Swarm* Swarms::swarm_of(p2p::TorrentId torrent) {
    for (auto& [ih, s] : swarms_)
        if (s->torrent == torrent) return s.get();
    return nullptr;
}

// The torrent's resume data goes into its cache entry (it spares a full
// recheck at the next start).
void Swarms::keep_resume_data(Swarm& s, const std::vector<char>& resume_data) {
    auto c = cache_.find(s.info_hash);
    if (c == cache_.end()) return;
    c->second.resume_data.assign(resume_data.begin(), resume_data.end());
    store_.put_cache_entry(c->second);
}

// Reacts to what the peer session reports, then pumps the swarms it
// concerned, and every kSwarmTickMs all of them (swarm_tick).
void Swarms::handle_peer_events() {
    if (!peers_) return;
    if (listen_watch_ && listen_watch_->drain()) follow_listen_interface();
    SwarmsToPump to_pump;
    for (const p2p::TorrentEvent& e : peers_->take_events()) {
        if (e.kind == p2p::TorrentEvent::Kind::TrackerReplied) last_tracker_reply_ms_ = mono_ms();
        if (e.kind == p2p::TorrentEvent::Kind::MetadataReceived) on_content_metadata(e.torrent);
        else if (Swarm* s = swarm_of(e.torrent)) on_torrent_event(*s, e, to_pump);
        else if (segment_torrents_.count(e.torrent)) on_segment_event(e);
        else log_peer_event(e);
    }
    handle_content_events();
    collect_cache_copies();
    for (Swarm* s : to_pump.swarms) {
        // A swarm may be gone by now (a failure removed it), and pumping may
        // remove it (a false "X is H"): look it up, then pump outside the loop.
        if (is_live(s)) pump_swarm(*s);
    }
    // A torrent completed (the cache grew), or a job left unfinished content.
    if (to_pump.evict || evict_pending_) {
        evict_pending_ = false;
        evict_cache();
    }
    const std::int64_t now = mono_ms();
    if (now >= next_swarm_tick_ms_) {
        next_swarm_tick_ms_ = now + kSwarmTickMs;
        peers_->tick();
        std::vector<Swarm*> all;
        for (auto& [ih, s] : swarms_) all.push_back(s.get());
        for (Swarm* s : all) swarm_tick(*s, now);
        content_tick(now);
        cofetch_tick(now);
    }
}

// Events about no torrent of ours: logged only.
void Swarms::log_peer_event(const p2p::TorrentEvent& e) {
    using Kind = p2p::TorrentEvent::Kind;
    switch (e.kind) {
    case Kind::PeerBanned:
        LOG_WARN("banned peer %s (it sent pieces that failed their hash check)", e.peer.c_str());
        break;
    case Kind::PeerBlocked:
        LOG_DEBUG("refused peer %s (outside [p2p] allowed_networks)", e.peer.c_str());
        break;
    case Kind::PeerConnected:
        LOG_DEBUG("peer %s connected", e.peer.c_str());
        break;
    case Kind::PeerDisconnected:
        LOG_DEBUG("peer %s disconnected: %s", e.peer.c_str(), e.message.c_str());
        if (e.in_handshake) log_handshake_failure(e);
        break;
    case Kind::ListenFailed:
        LOG_ERROR("peering: cannot listen on %s: %s", listen_now_.c_str(), e.message.c_str());
        break;
    case Kind::TrackerFailed:
        // Once per tracker until it answers again: every torrent announces
        // to it, and it is retried with backoff.
        if (trackers_failing_.insert(e.tracker).second)
            LOG_WARN("tracker %s: announce failed: %s; peers only from the others, LSD and static peers "
                     "until it answers",
                     redacted_tracker(e.tracker).c_str(), e.message.c_str());
        break;
    case Kind::TrackerReplied:
        if (trackers_failing_.erase(e.tracker) > 0)
            LOG_INFO("tracker %s answers again", redacted_tracker(e.tracker).c_str());
        LOG_DEBUG("tracker %s: %d peer(s)", redacted_tracker(e.tracker).c_str(), e.code);
        break;
    default:
        break;
    }
}

// A connection that ended in its BitTorrent handshake: at info, once per
// peer address (a client that requires encryption ends every plaintext
// connection the agent makes to it, and tries again and again).
void Swarms::log_handshake_failure(const p2p::TorrentEvent& e) {
    constexpr std::size_t kMaxRemembered = 1024;
    if (handshake_failures_logged_.size() >= kMaxRemembered || !handshake_failures_logged_.insert(e.peer).second)
        return;
    if (e.encryption_refused)
        LOG_INFO("peer %s: refused its encrypted handshake (%s); logged once a peer", e.peer.c_str(),
                 e.message.c_str());
    else
        LOG_INFO("peer %s: connection ended in the BitTorrent handshake (%s); a client that requires "
                 "encryption ends the agent's plaintext connections so, and can still connect to it; "
                 "logged once a peer",
                 e.peer.c_str(), e.message.c_str());
}

void Swarms::on_torrent_event(Swarm& s, const p2p::TorrentEvent& e, SwarmsToPump& to_pump) {
    using Kind = p2p::TorrentEvent::Kind;
    switch (e.kind) {
    case Kind::PieceVerified:
        on_piece_verified(s, e.piece);
        to_pump.swarms.insert(&s);
        break;
    case Kind::PieceRead:
        write_piece(s, e.piece, e.data.get(), e.size);
        break;
    case Kind::PieceReadFailed:
        s.reading[static_cast<std::size_t>(e.piece)] = false;
        LOG_WARN("swarm %s: cannot read piece %d back: %s", s.info_hash.c_str(), e.piece, e.message.c_str());
        fail_swarm_users(s, ErrorContext::LocalFile, DOPT_E_LOCAL_IO,
                         "peer cache: cannot read " + s.meta.name + ": " + e.message);
        break;
    case Kind::PieceHashFailed:
        if (on_piece_hash_failed(s, e.piece)) to_pump.swarms.insert(&s);
        break;
    case Kind::TorrentChecked:
        // pump_swarm waits out the check: start now, not on the next tick.
        s.checked = true;
        to_pump.swarms.insert(&s);
        break;
    case Kind::FileError: {
        const std::string why = "peer cache: " + e.message;
        LOG_ERROR("swarm %s: %s", s.info_hash.c_str(), why.c_str());
        fail_swarm_users(s, ErrorContext::LocalFile, e.code ? e.code : DOPT_E_LOCAL_IO, why);
        break;
    }
    case Kind::TorrentFinished:
        on_torrent_finished(s);
        to_pump.swarms.insert(&s);
        to_pump.evict = true;
        break;
    case Kind::ResumeData:
        keep_resume_data(s, e.resume_data);
        break;
    case Kind::PeerDisconnected:
        log_peer_event(e);
        s.peers_hung_up.insert(e.peer);
        break;
    default:
        log_peer_event(e);
        break;
    }
}

// Whether a piece the session holds now was hashed in this run: one that
// came after the session's check (hashed as it arrived), or one a co-fetch
// fetched and hashed here (added as held).
bool Swarms::hashed_in_this_run(const Swarm& s, std::size_t piece) {
    return s.checked || (piece < s.cofetch_hashed.size() && s.cofetch_hashed[piece]);
}

// A piece passed its hash check: counted once, where it came from (an
// origin piece that a peer completed first is ignored by the session).
void Swarms::on_piece_verified(Swarm& s, int piece) {
    // Pieces restored while the torrent is checked are reported too; only
    // those that arrive afterwards were hashed from the wire.
    if (hashed_in_this_run(s, static_cast<std::size_t>(piece))) s.verified_now[static_cast<std::size_t>(piece)] = true;
    s.origin_piece_job.erase(piece);
    drop_origin_piece(s, piece);  // a peer gave it first
    // Jobs whose partial file a co-fetch already gave the piece counted it
    // when they joined (join_swarm).
    std::vector<Job*> counted;
    for (Job* j : s.users)
        if (!j->written[static_cast<std::size_t>(piece)]) counted.push_back(j);
    if (s.from_origin[static_cast<std::size_t>(piece)]) {
        for (Job* j : counted) j->rec.bytes_from_origin += s.piece_size(piece);
        // The agent received it once, whatever number of its jobs share it.
        if (!counted.empty()) agent_.count_usage(*counted.front(), kOriginReceivedBytes, s.piece_size(piece));
    } else {
        s.last_peer_piece_ms = mono_ms();
        s.peer_piece_bytes += static_cast<std::int64_t>(s.piece_size(piece));
        for (Job* j : counted) j->rec.bytes_from_peers += s.piece_size(piece);
        if (!counted.empty()) agent_.count_usage(*counted.front(), kPeerReceivedBytes, s.piece_size(piece));
    }
}

// A piece failed its hash check. One from the origin is charged to the job
// it was fetched for (unless it left); the second such failure means that
// origin does not match the metainfo. Returns false when the swarm must not
// be pumped (origin_does_not_match handled it).
bool Swarms::on_piece_hash_failed(Swarm& s, int piece) {
    auto idx = static_cast<std::size_t>(piece);
    if (!s.from_origin[idx]) {
        LOG_WARN("swarm %s: piece %d from a peer failed its hash check; discarded", s.info_hash.c_str(), piece);
        return true;
    }
    s.from_origin[idx] = false;
    LOG_WARN("swarm %s: piece %d from the origin failed its hash check", s.info_hash.c_str(), piece);
    Job* j = s.origin_piece_job[piece];
    s.origin_piece_job.erase(piece);
    if (j && ++s.origin_hash_failures[j] >= kOriginHashFailuresToMismatch) {
        origin_does_not_match(s, *j, "its pieces fail the metainfo's hashes");
        return false;
    }
    return true;
}

// Every piece verified: the cache entry says complete, and the torrent's
// resume data is saved.
void Swarms::on_torrent_finished(Swarm& s) {
    s.complete = true;
    drop_origin_pieces(s);  // none is needed now
    auto c = cache_.find(s.info_hash);
    if (c != cache_.end() && !c->second.complete) {
        c->second.complete = true;
        store_.put_cache_entry(c->second);
    }
    peers_->save_resume_data(s.torrent);
}

// Each kSwarmTickMs: the swarm is pumped, its claims repeated, its resume
// data saved now and then.
void Swarms::swarm_tick(Swarm& s, std::int64_t now) {
    pump_swarm(s);
    if (now < s.promised_until_ms && !s.complete) {
        std::set<std::string> connected;
        for (const p2p::TorrentPeer& p : peers_->peers(s.torrent)) connected.insert(p.address);
        for (const std::string& ep : s.cofetchers) {
            try {
                if (!connected.count(p2p::parse_peer_address(ep, "co-fetcher", false).address))
                    peers_->connect_peer(s.torrent, ep);
            } catch (const std::exception&) {
            }
        }
    }
    // Claims reach only peers connected when they were sent: repeat them
    // for peers that came since, for pieces in flight and those fetched but
    // not yet verified and announced.
    if (now >= s.next_claim_repeat_ms && !s.users.empty() && !s.complete) {
        s.next_claim_repeat_ms = now + kClaimRepeatMs;
        for (int i = 0; i < s.meta.num_pieces; ++i) {
            auto idx = static_cast<std::size_t>(i);
            if (s.origin_inflight.count(i) || (s.from_origin[idx] && !s.have[idx])) peers_->claim(s.torrent, i);
        }
    }
    if (!s.complete && !s.users.empty() && now >= s.next_resume_save_ms) {
        s.next_resume_save_ms = now + kResumeSaveIntervalMs;
        peers_->save_resume_data(s.torrent);
    }
}

// ---- the peer cache ---------------------------------------------------------------

// The peer cache's size limit: [cache] max_size, and max_disk_percent of
// the file system cache_dir is on.
std::uint64_t Swarms::cache_limit() const {
    std::uint64_t limit = config_.cache_max_size;
    struct statvfs vfs{};
    if (::statvfs(config_.cache_dir.c_str(), &vfs) == 0) {
        std::uint64_t disk = static_cast<std::uint64_t>(vfs.f_blocks) * vfs.f_frsize;
        limit = std::min<std::uint64_t>(limit, disk / 100 * static_cast<std::uint64_t>(config_.cache_max_disk_percent));
    }
    return limit;
}

// Whether a job in an active state (queued, connecting, transferring,
// transient error: storage::is_active) has a file not yet whole whose
// content is this torrent.
bool Swarms::wanted_by_active_job(const std::string& info_hash) const {
    for (const auto& [id, job] : agent_.jobs()) {
        if (!storage::is_active(job->rec.state)) continue;
        for (const auto& f : job->rec.files)
            if (f.info_hash == info_hash && !f.completed) return true;
    }
    return false;
}

// True when an unended job's unfinished file has its metainfo only in this
// entry: the job gave it as bytes. That metainfo is the job's trust root;
// dropping it would send the file over HTTP with no hash check at all, so
// such an entry is never evicted as parked content (it still counts).
bool Swarms::holds_metainfo_a_job_gave(const std::string& info_hash) const {
    for (const auto& [id, job] : agent_.jobs()) {
        if (storage::is_final(job->rec.state)) continue;
        for (const auto& f : job->rec.files)
            if (f.info_hash == info_hash && !f.completed && f.metainfo_source == "job" &&
                f.metainfo_url.empty())
                return true;
    }
    return false;
}

// Removes the peer cache's content `info_hash`: its torrent with its files
// when it has one, else its cache entry, row and folder.
void Swarms::remove_cached_content(const std::string& info_hash) {
    auto s = swarms_.find(info_hash);
    if (s != swarms_.end()) {
        remove_swarm(*s->second, true);
        return;
    }
    cache_.erase(info_hash);
    store_.delete_cache_entry(info_hash);
    DOPT_CRASH_POINT("cache_row_deleted");
    remove_tree(config_.cache_dir + "/" + info_hash);
}

// Unfinished content about to be dropped: the files of the (suspended or
// failed) jobs that want it forget it. When such a job runs again, metainfo
// found beside the content is looked for again, metainfo the job named by
// URL fetched again. (Entries holding metainfo a job gave as bytes are not
// dropped: holds_metainfo_a_job_gave.)
void Swarms::forget_cached_content(const std::string& info_hash) {
    for (auto& [id, job] : agent_.jobs()) {
        if (storage::is_final(job->rec.state)) continue;
        for (auto& f : job->rec.files) {
            if (f.info_hash != info_hash || f.completed) continue;
            f.info_hash.clear();
            if (f.metainfo_source == "origin") f.metainfo_source.clear();
            else if (f.metainfo_source == "job" && f.metainfo_url.empty()) f.metainfo_source = "none";
            store_.update_file(job->rec.id, f);
        }
    }
}

// Keeps the peer cache within [cache] max_size and max_disk_percent of its
// file system. All of it counts: complete content and unfinished content.
// Dropped, least recently used first, while over the limit, and whatever
// has been unused longer than max_age:
//  - complete content no job is using or will need;
//  - parked content: unfinished content no active job wants (its jobs are
//    suspended or failed), unless it holds metainfo a job gave as bytes. A user's parked content (by the entry's owner)
//    is also dropped while it is over half the limit: agent-owned disk
//    outside the user's quota, which they could otherwise fill by
//    suspending jobs near their end and deleting the partial files.
// Unfinished content an active job wants is never dropped.
void Swarms::evict_cache() {
    for (const auto& ih : cache_entries_to_drop()) {
        LOG_INFO("peer cache: evicting %s (%s%s)", ih.c_str(), cache_[ih].name.c_str(),
                 cache_[ih].complete ? "" : ", unfinished, its jobs suspended or failed");
        if (!cache_[ih].complete) forget_cached_content(ih);
        remove_cached_content(ih);
    }
}

// The entries evict_cache() drops, in that order (the rules above).
std::vector<std::string> Swarms::cache_entries_to_drop() const {
    const std::uint64_t limit = cache_limit();
    std::int64_t oldest = wall_now() - static_cast<std::int64_t>(config_.cache_max_age);
    std::vector<const CacheEntry*> entries;  // the ones that may go
    std::map<std::uint32_t, std::uint64_t> parked_bytes;  // by owner
    std::uint64_t total = 0;
    for (const auto& [ih, e] : cache_) {
        total += e.size;
        auto s = swarms_.find(ih);
        if (s != swarms_.end() && !s->second->users.empty()) continue;
        if (e.complete) {
            // Also content a job will need when it runs again (at start no
            // job is attached yet).
            if (!wanted_by_unfinished_job(ih)) entries.push_back(&e);
        } else if (!wanted_by_active_job(ih) && !holds_metainfo_a_job_gave(ih)) {
            entries.push_back(&e);
            parked_bytes[e.owner_uid] += e.size;
        }
    }
    std::sort(entries.begin(), entries.end(),
              [](const CacheEntry* a, const CacheEntry* b) { return a->last_used < b->last_used; });
    // First each user's parked content over their share, then whatever
    // keeps the cache over the limit or is too old.
    std::vector<std::string> drop;
    std::set<const CacheEntry*> dropped;
    for (const CacheEntry* e : entries) {
        if (e->complete || parked_bytes[e->owner_uid] <= limit / 2) continue;
        dropped.insert(e);
        drop.push_back(e->info_hash);
        parked_bytes[e->owner_uid] -= e->size;
        total -= e->size;
    }
    for (const CacheEntry* e : entries) {
        if (dropped.count(e) || (total <= limit && e->last_used >= oldest)) continue;
        drop.push_back(e->info_hash);
        total -= e->size;
    }
    return drop;
}

}  // namespace dopt::agent
