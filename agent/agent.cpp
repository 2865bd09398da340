#include "agent/agent.h"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <csignal>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <ftw.h>
#include <random>
#include <stdexcept>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "agent/agent_internal.h"
#include "agent/swarm.h"
#include "common/crash_point.h"
#include "common/hex.h"
#include "common/json_writer.h"
#include "agent/log.h"
#include "agent/origin_fetcher.h"
#include "agent/owner_files.h"
#include "agent/partial_file.h"
#include "agent/privilege_separation.h"
#include "agent/url.h"
#include "protocol/frame.h"
#include "dopt/dopt.h"
#include "p2p/session.h"
#include "storage/job_store.h"

namespace dopt::agent {

// ---- helpers shared by agent*.cpp (agent_internal.h) ----------------------

std::int64_t wall_now() { return static_cast<std::int64_t>(::time(nullptr)); }

std::int64_t mono_ms() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

// A version 4 UUID from the kernel's random source.
std::string new_uuid() {
    unsigned char b[16];
    std::size_t got = 0;
    while (got < sizeof b) {
        ssize_t n = getrandom(b + got, sizeof b - got, 0);
        if (n > 0) got += static_cast<std::size_t>(n);
    }
    b[6] = static_cast<unsigned char>((b[6] & 0x0f) | 0x40);
    b[8] = static_cast<unsigned char>((b[8] & 0x3f) | 0x80);
    std::string s = to_hex(b, sizeof b);
    for (std::size_t at : {8, 13, 18, 23}) s.insert(at, 1, '-');
    return s;
}

// mkdir -p: the last folder `mode`, the parents it creates 0755 (less the
// umask), as `mkdir -p` would.
void make_dirs(const std::string& path, mode_t mode) {
    std::string cur;
    std::size_t pos = 0;
    while (pos != std::string::npos) {
        pos = path.find('/', pos + 1);
        cur = path.substr(0, pos);
        if (cur.empty()) continue;
        bool last = pos == std::string::npos || pos + 1 == path.size();
        if (::mkdir(cur.c_str(), last ? mode : 0755) != 0 && errno != EEXIST)
            throw std::runtime_error("cannot create " + cur + ": " + std::strerror(errno));
        if (last) break;
    }
}

// Creates `path` if missing and sets it to 0700 whatever mode it had: the
// agent's own folders (the job table holds URLs and header values) are no
// other user's business. Throws when the mode cannot be set.
void make_private_folder(const std::string& path) {
    make_dirs(path, 0700);
    int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || ::fchmod(fd, 0700) != 0) {
        int err = errno;
        if (fd >= 0) ::close(fd);
        throw std::runtime_error("cannot make " + path + " private to the agent (mode 0700): " +
                                 std::strerror(err));
    }
    ::close(fd);
}

OwnerOp owner_op_of(OwnerOpKind kind, const Owner& owner, const std::string& path,
                    const std::string& to, int flags, mode_t mode) {
    OwnerOp op;
    op.kind = kind;
    op.owner = owner;
    op.path = path;
    op.to = to;
    op.flags = flags;
    op.mode = mode;
    return op;
}

std::string dir_of(const std::string& path) {
    auto slash = path.rfind('/');
    return slash == 0 ? "/" : path.substr(0, slash);
}

std::string base_of(const std::string& path) { return path.substr(path.rfind('/') + 1); }

// Lexically normalises an absolute path ("." and ".." segments, repeated
// slashes). Returns "" when the path climbs above "/" or names a folder.
std::string normalise_path(const std::string& path) {
    std::vector<std::string> parts;
    std::size_t i = 0;
    while (i < path.size()) {
        std::size_t j = path.find('/', i);
        if (j == std::string::npos) j = path.size();
        std::string seg = path.substr(i, j - i);
        if (seg == "..") {
            if (parts.empty()) return "";
            parts.pop_back();
        } else if (!seg.empty() && seg != ".") {
            parts.push_back(seg);
        }
        i = j + 1;
    }
    if (parts.empty() || path.back() == '/') return "";
    std::string out;
    for (const auto& p : parts) out += "/" + p;
    return out;
}

std::string destination_key(const std::string& path) {
    struct stat st{};
    if (::stat(dir_of(path).c_str(), &st) != 0) return path;
    return std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino) + "/" + base_of(path);
}

bool is_waitable(JobState s) {
    return s == JobState::Transferred || s == JobState::Acknowledged || s == JobState::Error ||
           s == JobState::Cancelled;
}

bool is_running(JobState s) { return s == JobState::Connecting || s == JobState::Transferring; }

std::string scheme_of(const std::string& url) {
    auto colon = url.find(':');
    return colon == std::string::npos ? "" : url.substr(0, colon);
}


void remove_tree(const std::string& path) {
    ::nftw(
        path.c_str(),
        [](const char* p, const struct stat*, int type, FTW*) {
            if (type == FTW_DP) ::rmdir(p);
            else ::unlink(p);
            return 0;
        },
        16, FTW_DEPTH | FTW_PHYS);
}

namespace {

// Whether an origin's digest (Repr-Digest, Digest) may stand for the SHA-256
// of the job's current file: only with peering on (it is what lets the file
// be shared), over HTTPS all the way (the agent never follows https to
// http), and only for a request with no credentials in it (no headers of
// the job's, nothing in the URL), like any content the agent shares.
bool origin_digest_may_stand_for_sha256(const FileRecord& f, const std::vector<std::string>& headers,
                                        bool peering) {
    return peering && scheme_of(f.remote_url) == "https" && headers.empty() &&
           !url_may_carry_credentials(f.remote_url);
}

// The base64 value of the first member named `name` in a digest field:
// `sha-256=:B64:` (a structured field: lowercase name, value between colons,
// parameters after ';') or `SHA-256=B64` (RFC 3230: any case). "" if none.
std::string digest_member(const std::string& field, const char* name, bool structured) {
    std::size_t start = 0;
    while (start < field.size()) {
        std::size_t comma = std::min(field.find(',', start), field.size());
        std::string member = field.substr(start, comma - start);
        start = comma + 1;
        member.erase(0, member.find_first_not_of(" \t"));
        member.erase(member.find_last_not_of(" \t") + 1);
        std::size_t eq = member.find('=');
        if (eq == std::string::npos) continue;
        std::string key = member.substr(0, eq), value = member.substr(eq + 1);
        if (structured ? key != name : strcasecmp(key.c_str(), name) != 0) continue;
        if (!structured) return value;
        value = value.substr(0, value.find(';'));
        if (value.size() < 2 || value.front() != ':' || value.back() != ':') return "";
        return value.substr(1, value.size() - 2);
    }
    return "";
}

}  // namespace

std::string sha256_of_digest_fields(const std::string& repr_digest, const std::string& digest) {
    for (auto [field, structured] : {std::pair{&repr_digest, true}, std::pair{&digest, false}}) {
        std::string bytes;
        if (base64_decode(digest_member(*field, "sha-256", structured), bytes) && bytes.size() == 32)
            return to_hex(bytes.data(), bytes.size());
    }
    return "";
}

bool base64_decode(const std::string& in, std::string& out) {
    auto value = [](char c) -> int {
        if (c >= 'A' && c <= 'Z') return c - 'A';
        if (c >= 'a' && c <= 'z') return c - 'a' + 26;
        if (c >= '0' && c <= '9') return c - '0' + 52;
        if (c == '+') return 62;
        if (c == '/') return 63;
        return -1;
    };
    out.clear();
    if (in.size() % 4 != 0) return false;
    for (std::size_t i = 0; i < in.size(); i += 4) {
        int v[4];
        int pad = 0;
        for (int k = 0; k < 4; ++k) {
            char c = in[i + static_cast<std::size_t>(k)];
            if (c == '=' && i + 4 == in.size() && k >= 2) {
                v[k] = 0;
                ++pad;
            } else {
                if (pad) return false;  // data after padding
                v[k] = value(c);
                if (v[k] < 0) return false;
            }
        }
        std::uint32_t n = (static_cast<std::uint32_t>(v[0]) << 18) | (static_cast<std::uint32_t>(v[1]) << 12) |
                          (static_cast<std::uint32_t>(v[2]) << 6) | static_cast<std::uint32_t>(v[3]);
        out += static_cast<char>((n >> 16) & 0xff);
        if (pad < 2) out += static_cast<char>((n >> 8) & 0xff);
        if (pad < 1) out += static_cast<char>(n & 0xff);
    }
    return true;
}

// ---- Job ------------------------------------------------------------------

// The job object of docs/protocol.md, written directly as text: `list`
// sends thousands of them.
std::string Agent::Job::to_json() const {
    std::string out;
    out.reserve(768);
    JsonWriter w(out);
    auto size = [&](std::string_view k, std::uint64_t v) {
        if (v == kUnknownSize) w.field(k, -1);
        else w.field(k, v);
    };
    std::uint64_t total = 0, done = 0;
    bool known = true;
    for (const auto& f : rec.files) {
        if (f.bytes_total == kUnknownSize) known = false;
        else total += f.bytes_total;
        done += f.bytes_transferred;
    }
    w.begin_object()
        .field("id", rec.id)
        // A job without a name of its own goes by its first file's name.
        .field("display_name", !rec.display_name.empty() || rec.files.empty()
                                   ? rec.display_name
                                   : base_of(rec.files.front().local_path))
        .field("owner_uid", rec.owner_uid)
        .field("state", storage::state_name(rec.state))
        .field("priority", static_cast<int>(rec.priority))
        .field("mode", mode())
        .field("auto_complete", rec.auto_complete)
        .field("no_progress_timeout", no_progress_timeout())
        .field("created", rec.created)
        .field("modified", rec.modified)
        .field("transfer_completed", rec.transfer_completed);
    if (known) w.field("bytes_total", total);
    else w.field("bytes_total", -1);
    w.field("bytes_transferred", done)
        .field("bytes_from_peers", rec.bytes_from_peers)
        .field("bytes_from_origin", rec.bytes_from_origin);
    w.key("files").begin_array();
    for (const auto& f : rec.files) {
        w.begin_object().field("local_name", f.local_path).field("remote_name", f.remote_url);
        size("bytes_total", f.bytes_total);
        w.field("bytes_transferred", f.bytes_transferred)
            .field("completed", f.completed)
            .field("metainfo", !f.metainfo_source.empty() ? f.metainfo_source
                               : agent->swarms_->peering() ? "pending"
                                                           : "none");
        if (!f.info_hash.empty()) w.field("info_hash", f.info_hash);
        w.end_object();
    }
    w.end_array();
    w.key("headers").begin_array();
    for (const auto& h : rec.headers) w.value(h);
    w.end_array();
    // The members of an error object, without its braces.
    auto error_members = [&](const ErrorRecord& e) {
        w.field("context", storage::context_name(e.context))
            .field("code", e.code)
            .field("description", e.description)
            .field("protocol", e.protocol)
            .field("time", e.time)
            .key("file");
        if (e.file_index < 0) {
            w.null();
        } else {
            w.begin_object().field("local_name", e.local_name).field("remote_name", e.remote_name);
            size("bytes_total", e.bytes_total);
            w.field("bytes_transferred", e.bytes_transferred).end_object();
        }
    };
    w.key("error");
    if (!rec.error) {
        w.null();
    } else {
        w.begin_object();
        error_members(*rec.error);
        w.end_object();
    }
    w.key("transient_error");
    if (rec.state != JobState::TransientError) {
        w.null();
    } else {
        w.begin_object();
        error_members(last_transient);
        w.field("next_retry", next_retry_time).end_object();
    }
    if (!http_only_reason.empty()) w.field("http_only_reason", http_only_reason);
    w.end_object();
    return out;
}

// "peer_assisted" when some file goes (or went) through a torrent,
// "http_only" when every file was decided to go without, "pending" before
// the agent has looked for metainfo.
const char* Agent::Job::mode() const {
    bool pending = false;
    for (const auto& f : rec.files) {
        if (!f.info_hash.empty()) return "peer_assisted";
        if (f.metainfo_source.empty() && !f.completed) pending = true;
    }
    return pending && agent->swarms_->peering() ? "pending" : "http_only";
}

namespace {

// -errno for a sink whose job table write failed: ENOSPC when SQLite says
// its disk is full.
int job_table_failed(const std::string& job_id, const storage::StorageError& e) {
    LOG_ERROR("job %s: the job table cannot be written: %s", job_id.c_str(), e.what());
    return e.disk_full() ? -ENOSPC : -EIO;
}

}  // namespace

// An HTTPS origin's digest of the file becomes the file's SHA-256 when the
// job gave none (origin_digest_may_stand_for_sha256): checked against the
// bytes at the end as a job's is, persisted with the validators, and the
// verified file is seeded under it.
void Agent::Job::take_origin_digest(const ResponseInfo& info) {
    FileRecord& f = file();
    if (!origin_digest_welcome || !f.sha256.empty()) return;
    std::string x = sha256_of_digest_fields(info.repr_digest, info.digest);
    if (x.empty()) return;
    LOG_INFO("job %s: the origin's digest gives the SHA-256 of %s: %s", rec.id.c_str(), f.remote_url.c_str(),
             x.c_str());
    f.sha256 = x;
    content_seed = true;
}

// The final response of a transfer: decide where its body goes.
// on_response and on_body run inside libcurl's callbacks, which no exception
// may cross: a job table that cannot be written ends the transfer as a
// local error.
int Agent::Job::on_response(const ResponseInfo& info) try {
    FileRecord& f = file();
    if (info.status == 200 && partial->size() > 0) {
        // The origin ignored Range, or If-Range said the file changed:
        // start over with the version it is sending now.
        LOG_INFO("job %s: %s answered 200 to a ranged request; restarting the file",
                 rec.id.c_str(), f.remote_url.c_str());
        int rc = partial->reset();
        if (rc != 0) return rc;
    } else if (info.status == 206 && info.body_offset != partial->size()) {
        return DOPT_E_REMOTE_CHANGED;
    }
    if (f.expected_size != kUnknownSize && info.total != UINT64_MAX && info.total != f.expected_size)
        return refuse_size(std::to_string(info.total) + " bytes");
    f.etag = info.etag;
    f.last_modified = info.last_modified;
    if (info.total != UINT64_MAX) f.bytes_total = info.total;
    take_origin_digest(info);
    note_partial();
    // Validators are persisted before any byte they vouch for is written.
    agent->store_->update_file(rec.id, f);
    if (rec.state == JobState::Connecting) agent->change_state(*this, JobState::Transferring);
    return 0;
} catch (const storage::StorageError& e) {
    return job_table_failed(rec.id, e);
}

int Agent::Job::on_body(const char* data, std::size_t len) try {
    FileRecord& f = file();
    if (f.expected_size != kUnknownSize && partial->size() + len > f.expected_size)
        return refuse_size("more than " + std::to_string(f.expected_size) + " bytes");
    if (f.bytes_total != kUnknownSize && partial->size() + len > f.bytes_total)
        return DOPT_E_REMOTE_CHANGED;  // more bytes than the origin announced
    int rc = partial->append(data, len);
    if (rc != 0) return rc;
    f.bytes_transferred = partial->size();
    rec.bytes_from_origin += len;
    agent->count_usage(*this, kOriginReceivedBytes, len);
    std::int64_t now = mono_ms();
    // Progress is new bytes of the file, at least 1 byte/s on average since
    // the last progress: bytes fetched again (a retry from 0) are none, and
    // an origin trickling below that rate (each transfer ending in a stall)
    // must not hold off the no-progress timeout forever.
    if (partial->size() > high_water) {
        bytes_since_progress += partial->size() - high_water;
        high_water = partial->size();
    }
    if (bytes_since_progress > 0 &&
        bytes_since_progress * 1000 >= static_cast<std::uint64_t>(std::max<std::int64_t>(now - last_progress_ms, 0))) {
        last_progress_ms = now;
        bytes_since_progress = 0;
    }
    // A flush is recorded at once: what a crash costs is what came after it.
    if (now - last_checkpoint_ms >= 1000 || partial->durable_size() != f.durable_bytes)
        agent->checkpoint(*this);
    if (agent->subscriptions_.count(rec.id)) agent->notify_modification(*this, false);
    return 0;
} catch (const storage::StorageError& e) {
    return job_table_failed(rec.id, e);
}

// A response of another size than the job's expected size: refused before
// its bytes are kept (`sent`: what the origin sends); on_done fails the job.
int Agent::Job::refuse_size(const std::string& sent) {
    const FileRecord& f = file();
    wrong_size = "the origin sends " + sent + " for " + f.remote_url + ", expected " +
                 std::to_string(f.expected_size) + "; nothing was kept";
    return DOPT_E_INTEGRITY;
}

// The current file's bytes are not the file the job wants: they are
// discarded and the job fails (DOPT_E_INTEGRITY, in `context`).
void Agent::Job::discard_file(ErrorContext context, const std::string& why) {
    FileRecord& f = file();
    if (partial) {
        partial->reset();
        note_partial();
        partial.reset();
    }
    f.etag.clear();
    f.last_modified.clear();
    agent->store_->update_file(rec.id, f);
    agent->fail(*this, context, DOPT_E_INTEGRITY, why, current_file);
}

void Agent::Job::on_done(const TransferOutcome& outcome) {
    transfer = 0;
    Agent& a = *agent;
    FileRecord& f = file();
    if (!wrong_size.empty()) {
        const std::string why = std::move(wrong_size);
        wrong_size.clear();
        discard_file(ErrorContext::RemoteFile, why);
        return;
    }
    if (!outcome.ok) {
        std::uint64_t held = partial ? partial->written() : 0;
        // A 416 to a Range (the file shrank or changed) is retried from 0;
        // one to a request for the whole file never succeeds.
        bool range_refused = outcome.code == 416 && request_offset > 0;
        if (outcome.code == DOPT_E_REMOTE_CHANGED || range_refused) {
            // What we hold no longer matches the origin: drop it and retry.
            if (partial) partial->reset();
            f.etag.clear();
            f.last_modified.clear();
            held = 0;
        }
        f.bytes_transferred = held;
        if (partial) f.durable_bytes = partial->durable_size();
        partial.reset();
        a.store_->update_file(rec.id, f);
        if (outcome.transient || range_refused) {
            a.transient_failure(*this, outcome);
        } else if (outcome.context == ErrorContext::LocalFile && outcome.code > 0) {
            // A write that failed (code: errno): say which file and why.
            int err = static_cast<int>(outcome.code);
            a.fail(*this, outcome.context, outcome.code,
                   "cannot write " + f.partial_path + ": " + std::strerror(err) +
                       (err == ENOSPC ? " (the disk is full)" : ""),
                   current_file);
        } else {
            a.fail(*this, outcome.context, outcome.code, outcome.description,
                   current_file);
        }
        return;
    }
    if (f.bytes_total != kUnknownSize && partial->size() != f.bytes_total) {
        std::string why = "the origin sent " + std::to_string(partial->size()) + " of " +
                          std::to_string(f.bytes_total) + " bytes of " + f.remote_url;
        note_partial();
        partial.reset();
        a.store_->update_file(rec.id, f);
        TransferOutcome short_body;
        short_body.context = ErrorContext::Transport;
        short_body.code = DOPT_E_TRANSPORT;
        short_body.description = why;
        a.transient_failure(*this, short_body);
        return;
    }
    f.bytes_total = partial->size();
    int rc = a.config_.sync_on_complete ? partial->sync() : partial->flush();
    if (rc != 0) {
        partial.reset();
        a.fail(*this, ErrorContext::LocalFile, -rc,
               "cannot write " + f.partial_path + ": " + std::strerror(-rc), current_file);
        return;
    }
    std::string digest = partial->finish_sha256();
    if (!f.sha256.empty() && digest != f.sha256) {
        discard_file(ErrorContext::Integrity, "the SHA-256 of " + f.remote_url + " is " + digest +
                                                  ", expected " + f.sha256 + "; the data was discarded");
        return;
    }
    // Flushed whole: a restart from here only checks the last byte.
    note_partial();
    a.store_->update_file(rec.id, f);
    a.swarms_->seed_content(*this, partial->fd());
    DOPT_CRASH_POINT("file_transferred");
    partial.reset();
    f.completed = true;
    f.bytes_transferred = f.bytes_total;
    std::int64_t note = a.store_->update_file(rec.id, f, DOPT_NOTIFY_FILE_TRANSFERRED, wall_now());
    a.queue_notification(rec.id, note, DOPT_NOTIFY_FILE_TRANSFERRED, current_file);
    a.store_->update_job(rec);
    LOG_INFO("job %s: file %d done (%s)", rec.id.c_str(), current_file, f.local_path.c_str());
    a.start_job(*this);  // the next file, or TRANSFERRED
}

// ---- construction and the main loop ---------------------------------------

namespace {
IpcLimits ipc_limits(const Config& config) {
    IpcLimits l;
    l.max_connections_per_user = static_cast<std::size_t>(config.max_connections_per_user);
    l.max_reply_backlog_per_user = static_cast<std::size_t>(config.max_reply_backlog_per_user);
    return l;
}

// The origin fetcher's settings taken from `config` (proxy, timeouts, connections).
FetcherSettings fetcher_settings(const Config& config) {
    FetcherSettings fs;
    fs.proxy = config.proxy;
    fs.user_agent = config.user_agent;
    fs.ca_file = config.ca_file;
    fs.connect_timeout = static_cast<long>(config.connect_timeout);
    fs.low_speed_time = static_cast<long>(config.low_speed_time);
    fs.max_connections = config.max_connections;
    return fs;
}
}  // namespace

Agent::Agent(const Config& config, int activated_socket) : config_(config) {
    set_log_level(config_.log_level);
    // A privilege-separated agent no longer runs as root but is still the
    // system agent: folders and socket for every user.
    bool system_agent = geteuid() == 0 || privilege_separated();
    make_private_folder(config_.state_dir);
    make_private_folder(config_.cache_dir);
    make_dirs(dir_of(config_.socket), system_agent ? 0755 : 0700);

    std::string lock_path = config_.state_dir + "/doptd.lock";
    lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lock_fd_ < 0) throw std::runtime_error("cannot open " + lock_path + ": " + std::strerror(errno));
    if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0)
        throw std::runtime_error("another doptd is running on " + config_.state_dir +
                                 " (it holds the lock " + lock_path + ")");

    store_ = storage::JobStore::open(config_.state_dir + "/jobs.db");
    fetcher_ = std::make_unique<OriginFetcher>(fetcher_settings(config_));
    swarms_ = std::make_unique<Swarms>(*this, config_, *store_, *fetcher_);
    usage_ = std::make_unique<UsageTotals>(store_->load_usage());

    std::int64_t now = mono_ms();
    for (auto& rec : store_->load_all()) {
        auto job = std::make_unique<Job>();
        job->agent = this;
        job->rec = std::move(rec);
        job->last_progress_ms = now;
        std::string id = job->rec.id;
        last_seq_ = std::max(last_seq_, job->rec.seq);
        for (const auto& f : job->rec.files) {
            job->destination_keys.push_back(destination_key(f.local_path));
            destinations_.emplace(job->destination_keys.back(), id);
        }
        track_active(*job);
        by_seq_[job->rec.seq] = job.get();
        jobs_[id] = std::move(job);
    }
    for (const auto& n : store_->load_notifications()) {
        Outgoing o;
        o.id = n.id;
        o.kind = n.kind;
        o.file_index = n.file_index;
        outbox_[n.job_id].push_back(o);
    }
    // Jobs that were moving bytes when the agent stopped start again.
    std::size_t resumed = 0;
    for (auto& [id, job] : jobs_) {
        if (is_running(job->rec.state)) {
            change_state(*job, JobState::Queued);
            ++resumed;
        } else if (job->rec.state == JobState::TransientError) {
            job->next_retry_ms = now + 1000L * config_.retry_min_delay;
            job->last_transient = error_record(*job, ErrorContext::Agent, 0,
                                               "the agent restarted while the job waited to retry", -1);
            job->next_retry_time = job->last_transient.time + config_.retry_min_delay;
        } else if (job->rec.state == JobState::Transferred && job->rec.auto_complete) {
            auto_complete(*job);  // the agent stopped before (or while) it delivered
        }
    }
    swarms_->start();
    count_uploads_from_now();
    socket_activated_ = activated_socket >= 0;
    if (socket_activated_)
        ipc_ = std::make_unique<IpcServer>(activated_socket, config_.socket, this, ipc_limits(config_));
    else
        ipc_ = std::make_unique<IpcServer>(config_.socket, system_agent ? 0666 : 0600, this,
                                           ipc_limits(config_));
    notifier_ = std::make_unique<ServiceNotifier>([this] { return service_status(); });
    set_job_url_lookup([this](const std::string& id) -> std::string {  // DOPT_URL in the journal
        auto it = jobs_.find(id);
        if (it == jobs_.end() || it->second->rec.files.empty()) return "";
        const Job& job = *it->second;
        std::size_t i = job.current_file < 0 ? 0 : static_cast<std::size_t>(job.current_file);
        return job.rec.files[std::min(i, job.rec.files.size() - 1)].remote_url;
    });
    LOG_INFO("doptd %s: %zu jobs loaded (%zu resumed), socket %s%s", DOPT_VERSION_STRING,
             jobs_.size(), resumed, config_.socket.c_str(),
             socket_activated_ ? " (passed by systemd)" : "");
    schedule_needed_ = true;
}

Agent::~Agent() {
    set_job_url_lookup(nullptr);
    ipc_.reset();
    abandon_owner_ops();
    for (auto& [id, job] : jobs_) {
        if (job->swarm_fd >= 0) ::close(job->swarm_fd);
        job->swarm = nullptr;
    }
    swarms_.reset();
    fetcher_.reset();
    store_.reset();
    if (lock_fd_ >= 0) ::close(lock_fd_);
    if (signal_fd_ >= 0) ::close(signal_fd_);
}

int Agent::run() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    signal_fd_ = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (signal_fd_ < 0) throw std::runtime_error(std::string("signalfd: ") + std::strerror(errno));
    next_purge_ms_ = mono_ms();
    notifier_->ready(mono_ms());  // the socket listens: connections queue from here

    while (!stopping_) {
        if (schedule_needed_) schedule();
        std::vector<pollfd> fds;
        fds.push_back({signal_fd_, POLLIN, 0});
        if (swarms_->session()) fds.push_back({swarms_->session()->event_fd(), POLLIN, 0});
        if (swarms_->interface_fd() >= 0) fds.push_back({swarms_->interface_fd(), POLLIN, 0});
        std::size_t ipc_first = ipc_->add_pollfds(fds);
        std::size_t owner_first = add_owner_op_pollfds(fds);
        retired_sinks_.clear();
        fetcher_->wait(fds, next_timeout_ms());
        if (fds[0].revents & POLLIN) {
            signalfd_siginfo si{};
            while (::read(signal_fd_, &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
                if (si.ssi_signo == SIGHUP) {
                    notifier_->reloading();
                    reload_config();
                    notifier_->ready(mono_ms());
                } else {
                    LOG_INFO("signal %u: stopping", si.ssi_signo);
                    stopping_ = true;
                }
            }
        }
        // A job table that cannot be written (its disk full) fails the one
        // step that wrote; the agent carries on with every other job, and
        // timers() requeues a job left running with nothing moving it.
        try {
            fetcher_->perform();
            handle_owner_ops(fds, owner_first);
            swarms_->handle_peer_events();
            ipc_->handle(fds, ipc_first);
            timers();
            answer_waits();
            deliver_notifications();
            notifier_->tick(mono_ms());
            exit_when_idle(mono_ms());
        } catch (const storage::StorageError& e) {
            LOG_ERROR("job table: %s; carrying on", e.what());
            job_table_failed_ = true;
        }
    }
    notifier_->stopping();
    // Graceful stop: every partial file flushed and checkpointed, and kept;
    // the jobs are QUEUED again on the next start and resume where they
    // stopped.
    for (Job* job : std::vector<Job*>(active_.begin(), active_.end())) {
        if (job->partial && job->partial->sync() != 0)
            LOG_WARN("job %s: cannot flush its partial file; it resumes from its last flush",
                     job->rec.id.c_str());
        if (job->busy()) stop_transfer(*job, true);
    }
    metrics_tick(mono_ms(), true);  // the last counts written, the textfile current
    swarms_->stop();
    LOG_INFO("stopped");
    return 0;
}

int Agent::next_timeout_ms() const {
    if (schedule_needed_) return 0;
    std::int64_t now = mono_ms();
    std::int64_t deadline = next_purge_ms_;
    if (!fetcher_->idle()) deadline = std::min(deadline, now + 1000);
    deadline = std::min(deadline, swarms_->tick_deadline_ms());
    deadline = std::min(deadline, metrics_deadline_ms());
    int owner_ops_ms = owner_ops_timeout_ms();
    if (owner_ops_ms >= 0) deadline = std::min(deadline, now + owner_ops_ms);
    deadline = std::min(deadline, notifier_->deadline_ms());
    if (idle_since_ms_ >= 0) deadline = std::min(deadline, idle_since_ms_ + 1000L * config_.idle_exit);
    for (const Job* job : active_) {
        if (job->rec.state == JobState::TransientError)
            deadline = std::min({deadline, job->next_retry_ms, job->no_progress_deadline_ms()});
    }
    for (const auto& w : waits_) {
        if (w.deadline_ms >= 0) deadline = std::min(deadline, w.deadline_ms);
    }
    for (const auto& [job_id, list] : outbox_) {
        if (!subscriptions_.count(job_id)) continue;
        for (const auto& o : list)
            if (!o.in_flight) deadline = std::min(deadline, o.next_attempt_ms);
    }
    std::int64_t t = deadline - now;
    return static_cast<int>(std::clamp<std::int64_t>(t, 0, 3600 * 1000));
}

// ---- systemd ----------------------------------------------------------------

// "2 jobs running, 1 waiting; 3 peers": what `systemctl status` shows.
std::string Agent::service_status() const {
    int running = 0;
    for (const Job* job : active_)
        if (job->rec.state == JobState::Connecting || job->rec.state == JobState::Transferring)
            ++running;
    std::string text = std::to_string(running) + (running == 1 ? " job" : " jobs") + " running, " +
                       std::to_string(active_.size() - static_cast<std::size_t>(running)) +
                       " waiting; ";
    p2p::TorrentSession* session = swarms_->session();
    if (session == nullptr) return text + "peering off";
    int peers = 0;
    for (const auto& [ih, s] : swarms_->torrents()) peers += session->status(s->torrent, false).num_peers;
    return text + std::to_string(peers) + (peers == 1 ? " peer" : " peers");
}

// Nothing to do and nobody to answer: no job that is not at rest (QUEUED,
// CONNECTING, TRANSFERRING, TRANSIENT_ERROR), no client connected (a
// `wait` or a subscription holds its connection), no owner operation in
// flight, and no peer session (its cache serves the LAN). Every job is in
// the job table, so an agent started again picks up where this one left.
bool Agent::idle() const {
    return active_.empty() && ipc_->connection_count() == 0 && owner_ops_in_flight() == 0 &&
           swarms_->session() == nullptr;
}

// A socket-activated agent exits after `idle_exit` idle seconds; systemd
// keeps the socket and starts it again for the next client. One that bound
// its own socket never does: nobody would start it again.
void Agent::exit_when_idle(std::int64_t now_ms) {
    if (!socket_activated_ || config_.idle_exit == 0 || !idle()) {
        idle_since_ms_ = -1;
        return;
    }
    if (idle_since_ms_ < 0) idle_since_ms_ = now_ms;
    if (now_ms - idle_since_ms_ < 1000L * config_.idle_exit) return;
    LOG_INFO("idle for %u s: exiting (the socket stays with systemd, which starts doptd for "
             "the next client)", config_.idle_exit);
    stopping_ = true;
}

void Agent::reload_config() {
    if (config_.source.empty()) {
        LOG_INFO("SIGHUP: running on built-in defaults; nothing to reload");
        return;
    }
    try {
        std::vector<std::string> warnings;
        Config fresh = load_config(config_.source, warnings);
        for (const auto& w : warnings) LOG_WARN("%s", w.c_str());
        // Paths need a restart; the rest applies now ([p2p] to the running
        // peer session, which keeps its torrents).
        fresh.state_dir = config_.state_dir;
        fresh.cache_dir = config_.cache_dir;
        fresh.socket = config_.socket;
        // Fixed in the owner-rights process at start: a restart too.
        fresh.system_job_dirs = config_.system_job_dirs;
        fresh.file_op_timeout = config_.file_op_timeout;
        config_ = fresh;
        set_log_level(config_.log_level);
        fetcher_->apply_settings(fetcher_settings(config_));
        ipc_->set_limits(ipc_limits(config_));
        const bool had_session = swarms_->session() != nullptr;
        swarms_->reconfigure();
        if (!had_session) count_uploads_from_now();  // a session started: torrents restored
        schedule_needed_ = true;
        LOG_INFO("SIGHUP: reloaded %s", config_.source.c_str());
    } catch (const std::exception& e) {
        LOG_ERROR("SIGHUP: keeping the old configuration: %s", e.what());
    }
}

// ---- state changes ----------------------------------------------------------

// Keeps active_ (the jobs the scheduler and timers look at) in step with
// the job's state.
void Agent::track_active(Job& job) {
    if (storage::is_active(job.rec.state)) active_.insert(&job);
    else active_.erase(&job);
}

// Drops every index entry of a job about to be erased from jobs_.
void Agent::forget_job(Job& job) {
    active_.erase(&job);
    by_seq_.erase(job.rec.seq);
    outbox_.erase(job.rec.id);
    subscriptions_.erase(job.rec.id);
    for (const auto& key : job.destination_keys) {
        for (auto [it, end] = destinations_.equal_range(key); it != end;) {
            it = it->second == job.rec.id ? destinations_.erase(it) : std::next(it);
        }
    }
}

// Persists `to` and mirrors it in memory. Returns false (changing nothing)
// when the transition table forbids it.
bool Agent::change_state(Job& job, JobState to) {
    bool clear_error = to == JobState::Queued && job.rec.state == JobState::Error;
    std::int64_t now = wall_now();
    if (clear_error) {
        if (!store_->set_state_clearing_error(job.rec.id, to, now)) return false;
    } else if (to == JobState::Transferred) {
        std::optional<std::int64_t> note =
            store_->set_state_notifying(job.rec.id, to, now, DOPT_NOTIFY_TRANSFERRED);
        if (!note) return false;
        queue_notification(job.rec.id, *note, DOPT_NOTIFY_TRANSFERRED, -1);
    } else if (!store_->set_state(job.rec.id, to, now)) {
        return false;
    }
    LOG_DEBUG("job %s: %s -> %s", job.rec.id.c_str(), storage::state_name(job.rec.state),
              storage::state_name(to));
    job.rec.state = to;
    track_active(job);
    job.rec.modified = now;
    if (to == JobState::Transferred) job.rec.transfer_completed = now;
    if (clear_error) job.rec.error.reset();
    schedule_needed_ = true;
    notify_modification(job, true);
    return true;
}

ErrorRecord Agent::error_record(const Job& job, ErrorContext context, std::int64_t code,
                               const std::string& description, int file_index) const {
    ErrorRecord e;
    e.context = context;
    e.code = code;
    e.description = description;
    e.time = wall_now();
    e.file_index = file_index;
    if (file_index >= 0) {
        const FileRecord& f = job.rec.files[static_cast<std::size_t>(file_index)];
        e.protocol = e.context == ErrorContext::LocalFile ? "" : scheme_of(f.remote_url);
        e.local_name = f.local_path;
        e.remote_name = f.remote_url;
        e.bytes_total = f.bytes_total;
        e.bytes_transferred = f.bytes_transferred;
    }
    return e;
}

void Agent::fail(Job& job, ErrorContext context, std::int64_t code, const std::string& description,
                 int file_index) {
    ErrorRecord e = error_record(job, context, code, description, file_index);
    if (job.busy()) stop_transfer(job, true);
    const std::optional<std::int64_t> note = store_->set_error_notifying(job.rec.id, e, e.time, DOPT_NOTIFY_ERROR);
    if (!note) {
        LOG_ERROR("job %s: cannot move from %s to error", job.rec.id.c_str(),
                  storage::state_name(job.rec.state));
        return;
    }
    LOG_WARN("job %s: error: %s", job.rec.id.c_str(), description.c_str());
    count_usage(job, job_errors_counter(context).c_str(), 1);
    job.rec.state = JobState::Error;
    track_active(job);
    job.rec.modified = e.time;
    job.rec.error = e;
    schedule_needed_ = true;
    queue_notification(job.rec.id, *note, DOPT_NOTIFY_ERROR, -1);
    notify_modification(job, true);
}

// Retry later with exponential backoff and jitter, unless the job has made
// no progress for its no-progress timeout: then it is a fatal error.
void Agent::transient_failure(Job& job, const TransferOutcome& outcome) {
    const std::string& description = outcome.description;
    long retry_after = outcome.retry_after;
    std::int64_t now = mono_ms();
    if (now >= job.no_progress_deadline_ms()) {
        fail_no_progress(job, description);
        return;
    }
    job.rec.retry_count++;
    store_->update_job(job.rec);
    double delay = config_.retry_min_delay;
    for (std::uint32_t i = 1; i < job.rec.retry_count && delay < config_.retry_max_delay; ++i) delay *= 2;
    delay = std::min<double>(delay, config_.retry_max_delay);
    static std::mt19937 rng{std::random_device{}()};
    delay *= std::uniform_real_distribution<double>(0.75, 1.25)(rng);
    if (retry_after > 0) delay = std::max<double>(delay, std::min<long>(retry_after, 3600));
    job.next_retry_ms = now + static_cast<std::int64_t>(delay * 1000);
    job.last_transient = error_record(job, outcome.context, outcome.code, description, job.current_file);
    job.next_retry_time = job.last_transient.time + (job.next_retry_ms - now + 999) / 1000;
    LOG_INFO("job %s: transient error (retry %u in %.1f s): %s", job.rec.id.c_str(),
             job.rec.retry_count, delay, description.c_str());
    if (job.rec.state != JobState::TransientError)
        change_state(job, JobState::TransientError);
}

// The job's no-progress timeout has passed: ERROR, with the last failure.
void Agent::fail_no_progress(Job& job, const std::string& last_failure) {
    fail(job, ErrorContext::Transport, DOPT_E_NO_PROGRESS,
         "no progress for " + std::to_string(job.no_progress_timeout()) +
             " s; last failure: " + last_failure,
         job.current_file >= 0 ? job.current_file : 0);
}

// Never throws: a job table that cannot be written (its disk full) leaves
// the job running on what it holds in memory; the next checkpoint tries
// again, and after a crash the job resumes from the last one written.
void Agent::checkpoint(Job& job) {
    job.last_checkpoint_ms = mono_ms();
    try {
        if (job.partial && job.current_file >= 0) job.note_partial();
        if (job.current_file >= 0) store_->update_file(job.rec.id, job.file());
        store_->update_job(job.rec);
    } catch (const storage::StorageError& e) {
        LOG_ERROR("job %s: cannot checkpoint: %s", job.rec.id.c_str(), e.what());
    }
}

// Stops whatever moves the job's bytes: its origin transfer, its metainfo
// fetch or its place in a swarm. save=false is for a job being cancelled:
// a torrent no other job wants goes with it.
void Agent::stop_transfer(Job& job, bool save) {
    ++job.epoch;  // an open in flight for the transfer is dropped when it completes
    job.opening = false;
    if (job.transfer) fetcher_->stop(job.transfer);
    job.transfer = 0;
    if (job.metainfo_fetch) retired_sinks_.push_back(std::move(job.metainfo_fetch));
    if (job.swarm) swarms_->detach_swarm(job, !save);
    if (job.current_file >= 0) swarms_->leave_content(job);
    job.cofetch_partial.reset();
    if (job.partial && job.current_file >= 0) job.note_partial();
    job.partial.reset();
    if (save) checkpoint(job);
}

// ---- scheduling -------------------------------------------------------------

// Runs up to max_jobs jobs, the most urgent first. A waiting job takes a
// free slot; when none is free, a QUEUED job takes the slot of a running job
// of a worse priority, which yields (back to QUEUED). A job whose retry is
// due (TRANSIENT_ERROR) takes only a free slot: it stops no one.
void Agent::schedule() {
    schedule_needed_ = false;
    std::int64_t now = mono_ms();
    std::vector<Job*> running, waiting;
    for (Job* job : active_) {
        JobState s = job->rec.state;
        bool due = s == JobState::Queued || (s == JobState::TransientError && job->next_retry_ms <= now);
        if (is_running(s) || (due && job->busy()))
            running.push_back(job);
        else if (due)
            waiting.push_back(job);
    }
    auto more_urgent = [](const Job* a, const Job* b) {
        if (a->rec.priority != b->rec.priority) return a->rec.priority < b->rec.priority;
        return a->rec.seq < b->rec.seq;
    };
    std::sort(running.begin(), running.end(), more_urgent);
    std::sort(waiting.begin(), waiting.end(), more_urgent);
    const std::size_t slots = static_cast<std::size_t>(config_.max_jobs);
    while (running.size() > slots) {  // max_jobs was lowered
        yield_slot(*running.back());
        running.pop_back();
    }
    std::vector<Job*> to_start;
    for (Job* job : waiting) {
        if (running.size() + to_start.size() < slots) {
            to_start.push_back(job);
        } else if (job->rec.state == JobState::Queued && !running.empty() &&
                   running.back()->rec.priority > job->rec.priority) {
            yield_slot(*running.back());
            running.pop_back();
            to_start.push_back(job);
        }
    }
    for (Job* job : to_start) start_job(*job);
    schedule_needed_ = false;
}

void Agent::yield_slot(Job& job) {
    LOG_INFO("job %s yields to a more urgent job", job.rec.id.c_str());
    stop_transfer(job, true);
    change_state(job, JobState::Queued);
}

// Delivers a TRANSFERRED job that completes itself: ACKNOWLEDGED, or ERROR
// (local_file) when a file cannot be moved into place. Until then a `wait`
// does not take the job for TRANSFERRED (delivering).
void Agent::auto_complete(Job& job) {
    job.delivering = true;
    after_owner_ops(job, [this](Job& j) {
        deliver_files(j, false, JobState::Transferred,
                      [this](Job& jj, int err, const std::string& message) {
                          jj.delivering = false;
                          if (err == 0)
                              change_state(jj, JobState::Acknowledged);
                          else if (jj.rec.state == JobState::Transferred)
                              fail(jj, ErrorContext::LocalFile, err, message, -1);
                      });
    });
}

// Starts (or continues with the next file of) a job; with every file done
// the job becomes TRANSFERRED (and ACKNOWLEDGED when it auto-completes).
void Agent::start_job(Job& job) {
    forget_lost_files(job);
    auto& files = job.rec.files;
    auto next = std::find_if(files.begin(), files.end(), [](const FileRecord& f) { return !f.completed; });
    if (next == files.end()) {
        job.current_file = -1;
        // Every file was whole already (a crash after the last one): pass
        // through CONNECTING, as the transition table wants.
        if (!is_running(job.rec.state)) change_state(job, JobState::Connecting);
        change_state(job, JobState::Transferred);
        if (job.rec.auto_complete) auto_complete(job);
        return;
    }
    job.current_file = static_cast<int>(next - files.begin());
    if (swarms_->start_file_with_peers(job)) return;
    if (job.rec.state != JobState::Connecting) change_state(job, JobState::Connecting);
    open_current_partial(job, [this](Job& j, int fd) { start_http_transfer(j, fd); });
}

// Opens the current file's partial file, the job busy (opening) meanwhile,
// then `then(job, descriptor)`. A job stopped meanwhile (suspend,
// cancel, yield, error) has another epoch then, and the descriptor is
// dropped; an open that fails fails the job (LOCAL_FILE).
void Agent::open_current_partial(Job& job, std::function<void(Job& job, int fd)> then, bool mark_opening) {
    if (mark_opening) job.opening = true;
    const std::uint64_t epoch = job.epoch;
    open_partial(job, job.file().partial_path, [this, epoch, then, mark_opening](Job& j, int fd) {
        if (j.epoch != epoch) {
            if (fd >= 0) ::close(fd);
            return;
        }
        if (mark_opening) j.opening = false;
        if (fd < 0 && !mark_opening) return then(j, fd);  // the caller's to handle
        if (fd < 0) {
            fail(j, ErrorContext::LocalFile, -fd,
                 "cannot open " + j.file().partial_path + ": " + std::strerror(-fd), j.current_file);
            return;
        }
        then(j, fd);
    });
}

// The origin transfer of the current file into its open partial file `fd`.
void Agent::start_http_transfer(Job& job, int fd) {
    FileRecord& f = job.file();
    job.cofetch_partial.reset();  // over HTTP after all: the co-fetch's copy is over
    struct stat st{};
    ::fstat(fd, &st);
    // Keep what is on disk only when a validator lets us ask for "the rest
    // of this same version" (If-Range); a weak ETag does not qualify. And
    // only what is sure: every byte this run of the agent wrote (the kernel
    // holds them), else the prefix flushed before the restart (a power cut
    // may have left the file longer, its tail zeros).
    bool strong_etag = !f.etag.empty() && f.etag.compare(0, 2, "W/") != 0;
    std::string validator = strong_etag ? f.etag : f.last_modified;
    auto on_disk = static_cast<std::uint64_t>(st.st_size);
    std::uint64_t sure = job.partials_written.count(job.current_file)
                             ? on_disk
                             : std::min(on_disk, f.durable_bytes);
    std::uint64_t keep = validator.empty() ? 0 : sure;
    if (f.bytes_total != kUnknownSize && keep > f.bytes_total) keep = 0;
    // Whole already (the agent stopped before it recorded so): ask for the
    // last byte again, which checks the version (If-Range) where asking for
    // none would be a 416, taken as "changed".
    if (f.bytes_total != kUnknownSize && keep == f.bytes_total && keep > 0) keep -= 1;
    int err = 0;
    job.origin_digest_welcome =
        f.sha256.empty() && origin_digest_may_stand_for_sha256(f, job.rec.headers, swarms_->peering());
    job.partial = PartialFile::adopt(fd, keep, f.durable_bytes, !f.sha256.empty() || job.origin_digest_welcome,
                                     config_.sync_on_complete, &err);
    if (!job.partial) {
        fail(job, ErrorContext::LocalFile, -err,
             "cannot prepare " + f.partial_path + ": " + std::strerror(-err), job.current_file);
        return;
    }
    job.partials_written.insert(job.current_file);
    job.note_partial();
    if (job.high_water_file != job.current_file) {
        job.high_water_file = job.current_file;
        job.high_water = keep;
    }
    TransferRequest req;
    req.url = f.remote_url;
    req.offset = keep;
    req.if_range = validator;
    req.headers = job.rec.headers;
    bool foreground = job.rec.priority == Priority::Foreground;
    req.max_recv_rate = foreground ? config_.max_rate_foreground : config_.max_rate_background;
    job.request_offset = keep;
    job.last_checkpoint_ms = mono_ms();
    LOG_DEBUG("job %s: GET %s from byte %llu", job.rec.id.c_str(), f.remote_url.c_str(),
              static_cast<unsigned long long>(keep));
    job.transfer = fetcher_->start(req, &job);
    count_usage(job, kOriginRequests, 1);
}

void Agent::timers() {
    std::int64_t now = mono_ms();
    metrics_tick(now);
    for (Job* job : std::vector<Job*>(active_.begin(), active_.end())) {
        if (job->rec.state != JobState::TransientError) continue;
        if (now >= job->no_progress_deadline_ms()) fail_no_progress(*job, job->last_transient.description);
        else if (job->next_retry_ms <= now) schedule_needed_ = true;
    }
    if (job_table_failed_) {
        // A state change the job table refused leaves a job CONNECTING or
        // TRANSFERRING with nothing moving its bytes: queue it again (its
        // partial file holds what it had).
        job_table_failed_ = false;
        for (Job* job : std::vector<Job*>(active_.begin(), active_.end())) {
            if (!is_running(job->rec.state) || job->busy()) continue;
            LOG_WARN("job %s: running with no transfer after a job table failure; queueing it again",
                     job->rec.id.c_str());
            job->partial.reset();
            if (!change_state(*job, JobState::Queued)) job_table_failed_ = true;
        }
    }
    if (now >= next_purge_ms_) {
        next_purge_ms_ = now + 3600 * 1000;
        std::int64_t wall = wall_now();
        // Jobs never completed are cancelled after max_job_age, as DO does.
        for (auto& [id, job] : jobs_) {
            if (!storage::is_final(job->rec.state) &&
                job->rec.created + static_cast<std::int64_t>(config_.max_job_age) < wall) {
                LOG_INFO("job %s: older than %u s; cancelling", id.c_str(), config_.max_job_age);
                if (job->busy()) stop_transfer(*job, false);
                remove_partials(*job);
                change_state(*job, JobState::Cancelled);
            }
        }
        int purged = store_->purge_ended(wall - static_cast<std::int64_t>(config_.retention));
        if (purged > 0) {
            for (auto it = jobs_.begin(); it != jobs_.end();) {
                const JobRecord& r = it->second->rec;
                // A continuation finds its job (owner_op): kept until the next purge.
                bool gone = storage::is_final(r.state) &&
                            r.modified < wall - static_cast<std::int64_t>(config_.retention) &&
                            !it->second->owner_ops_pending();
                if (gone) forget_job(*it->second);
                it = gone ? jobs_.erase(it) : std::next(it);
            }
            LOG_INFO("purged %d ended jobs", purged);
        }
        swarms_->evict_cache();
    }
}

// ---- files --------------------------------------------------------------------

// A job's owner operations (open, rename, unlink of its partial files with
// its owner's rights, owner_files.h) never make the main loop wait: each
// runs in a child (or the owner-rights process's), and its continuation
// runs on the main loop when the answer comes, or -ETIMEDOUT at the
// deadline ([jobs] file_op_timeout). Contracts:
// - Order: one operation of a job is in flight at a time. A step queued
//   with after_owner_ops() (or an owner_op() asked meanwhile) runs once
//   every operation asked before it has completed and its continuation has
//   run; a continuation that asks for the next operation of its own chain
//   (open_partial's second open, a delivery's next file) goes first.
//   Operations of different jobs run concurrently, in no order.
// - A continuation gets the job as it is then; it checks that the job still
//   wants the result (epoch: not stopped meanwhile; state: not cancelled)
//   and else drops it, closing a descriptor. A cancelled job's partial
//   files are removed after its operation in flight (remove_partials), so
//   an open that creates one cannot come after the unlink.
// - A job with operations in flight or queued is not purged; a
//   continuation whose job is gone only closes a descriptor.
// - Crash safety: the job table is written only by continuations, after the
//   operation's result, as when operations were synchronous. A kill -9 with
//   operations in flight leaves it as before them: a CONNECTING job is
//   queued again at start, a TRANSFERRED one that auto-completes is
//   delivered again (a file renamed whose row did not say so yet is found
//   in place), a partial file created by an add_file not yet recorded stays
//   unused, as before.
void Agent::after_owner_ops(Job& job, OwnerStep step) {
    if (job.owner_ops_pending()) {
        job.owner_queue.push_back(std::move(step));
        return;
    }
    step(job);
}

void Agent::owner_op(Job& job, const OwnerOp& op, OwnerResult then) {
    if (job.owner_op_running) {
        job.owner_queue.push_back([this, op, then](Job& j) { owner_op(j, op, then); });
        return;
    }
    job.owner_op_running = true;
    submit_owner_op(op, [this, id = job.rec.id, returns_fd = op.kind == OwnerOpKind::Open,
                         then](int result) {
        auto it = jobs_.find(id);
        if (it == jobs_.end()) {
            if (returns_fd && result >= 0) ::close(result);
            return;
        }
        Job& j = *it->second;
        j.owner_op_running = false;
        try {
            then(j, result);
        } catch (const storage::StorageError& e) {
            LOG_ERROR("job %s: job table: %s; carrying on", id.c_str(), e.what());
            job_table_failed_ = true;
        }
        run_owner_queue(j);
    });
}

// Runs the queued steps until one starts an operation.
void Agent::run_owner_queue(Job& job) {
    while (!job.owner_op_running && !job.owner_queue.empty()) {
        OwnerStep step = std::move(job.owner_queue.front());
        job.owner_queue.pop_front();
        try {
            step(job);
        } catch (const storage::StorageError& e) {
            LOG_ERROR("job %s: job table: %s; carrying on", job.rec.id.c_str(), e.what());
            job_table_failed_ = true;
        }
    }
}

// Opens the job's partial file `path` with the owner's rights: the owner's
// existing one (one link), or a new one created O_EXCL with the job's file
// mode; then `then(job, descriptor or -errno)`. A file that appears between
// the two opens is opened (or refused) in a second round.
void Agent::open_partial(Job& job, const std::string& path, OwnerResult then, int round) {
    owner_op(job, owner_op_of(OwnerOpKind::Open, job.owner(), path, "", O_RDWR),
             [this, path, then, round](Job& j, int fd) {
                 if (fd != -ENOENT) return then(j, fd);
                 owner_op(j, owner_op_of(OwnerOpKind::Open, j.owner(), path, "",
                                         O_RDWR | O_CREAT | O_EXCL, j.file_mode()),
                          [this, path, then, round](Job& jj, int fd2) {
                              if (fd2 == -EEXIST && round == 0) return open_partial(jj, path, then, 1);
                              then(jj, fd2);
                          });
             });
}

// Renames partial files to their final names (with the owner's rights), one
// at a time, then done(job, 0 or errno, message). only_completed: files not
// whole are removed instead (Complete from ERROR). The job must be in
// `from_state` now and before each file: a job cancelled meanwhile stops
// the delivery (ECANCELED), and its remaining partial files are removed.
void Agent::deliver_files(Job& job, bool only_completed, JobState from_state, Delivered done) {
    DOPT_CRASH_POINT("complete_start");
    deliver_next(job, only_completed, from_state, std::move(done));
}

void Agent::deliver_next(Job& job, bool only_completed, JobState from_state, Delivered done) {
    if (job.rec.state != from_state)
        return done(job, ECANCELED, std::string("the job became ") + storage::state_name(job.rec.state) +
                                        " before its files were moved into place");
    auto& files = job.rec.files;
    auto next = std::find_if(files.begin(), files.end(), [&](const FileRecord& f) {
        return !f.partial_path.empty() && (f.completed || only_completed);
    });
    if (next == files.end()) {
        DOPT_CRASH_POINT("complete_delivered");
        return done(job, 0, "");
    }
    const std::size_t index = static_cast<std::size_t>(next - files.begin());
    // The file is where it belongs (or gone): recorded, then the next one.
    auto recorded = [this, index, only_completed, from_state, done](Job& j) {
        FileRecord& f = j.rec.files[index];
        f.partial_path.clear();
        try {
            store_->update_file(j.rec.id, f);
        } catch (const storage::StorageError& e) {
            job_table_failed_ = true;
            return done(j, EIO, std::string("the job table cannot be written: ") + e.what());
        }
        deliver_next(j, only_completed, from_state, done);
    };
    if (!next->completed) {
        owner_op(job, owner_op_of(OwnerOpKind::Unlink, job.owner(), next->partial_path),
                 [recorded](Job& j, int) { recorded(j); });
        return;
    }
    owner_op(job, owner_op_of(OwnerOpKind::Rename, job.owner(), next->partial_path, next->local_path),
             [index, recorded, done](Job& j, int rc) {
                 const FileRecord& f = j.rec.files[index];
                 struct stat st {};
                 if (rc == -ENOENT && ::lstat(f.local_path.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
                     static_cast<std::uint64_t>(st.st_size) == f.bytes_total) {
                     // Renamed before a crash that came before the job table knew.
                     LOG_INFO("job %s: %s was delivered before the agent stopped", j.rec.id.c_str(),
                              f.local_path.c_str());
                     rc = 0;
                 }
                 if (rc == -ENOENT)
                     return done(j, ENOENT, "cannot move " + f.partial_path + " to " + f.local_path +
                                                ": the partial file is gone; resume the job to "
                                                "fetch it again");
                 if (rc != 0)
                     return done(j, -rc, "cannot move " + f.partial_path + " to " + f.local_path +
                                             ": " + std::strerror(-rc));
                 DOPT_CRASH_POINT("complete_renamed");
                 recorded(j);
             });
}

// A whole file's bytes are gone when its partial file is (removed, or its
// folder removed and made again) and it is not at its final path either (a
// crash between the rename and the job table's commit). Such files are
// marked not transferred, to be fetched again. Returns how many. A partial
// file the agent cannot look at (EACCES) counts as there: its rename says
// what is wrong.
int Agent::forget_lost_files(Job& job) {
    int lost = 0;
    for (FileRecord& f : job.rec.files) {
        struct stat st {};
        if (!f.completed || f.partial_path.empty() || ::lstat(f.partial_path.c_str(), &st) == 0 ||
            errno != ENOENT)
            continue;
        if (::lstat(f.local_path.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
            static_cast<std::uint64_t>(st.st_size) == f.bytes_total)
            continue;
        LOG_WARN("job %s: %s is gone; fetching %s again", job.rec.id.c_str(), f.partial_path.c_str(),
                 f.remote_url.c_str());
        f.completed = false;
        f.bytes_transferred = 0;
        f.durable_bytes = 0;
        job.partials_written.erase(f.index);
        store_->update_file(job.rec.id, f);
        ++lost;
    }
    return lost;
}

// Removes the job's partial files (cancel, max_job_age), after whatever
// owner operation of the job is in flight, then runs `then` (if any) once
// every unlink has completed. Failures are logged only.
void Agent::remove_partials(Job& job, OwnerStep then) {
    after_owner_ops(job, [this, then](Job& j) {
        for (const auto& f : j.rec.files) {
            if (f.partial_path.empty()) continue;
            owner_op(j, owner_op_of(OwnerOpKind::Unlink, j.owner(), f.partial_path),
                     [path = f.partial_path](Job& jj, int rc) {
                         if (rc != 0 && rc != -ENOENT)
                             LOG_WARN("job %s: cannot remove %s: %s", jj.rec.id.c_str(), path.c_str(),
                                      std::strerror(-rc));
                     });
        }
        if (then) after_owner_ops(j, then);
    });
}

}  // namespace dopt::agent
