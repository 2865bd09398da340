// The IPC requests of docs/protocol.md: one handler an op. Every change is
// persisted (JobStore) before the reply is queued.
#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <fcntl.h>
#include <memory>
#include <optional>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/agent_internal.h"
#include "agent/swarm.h"
#include "agent/log.h"
#include "agent/privilege_separation.h"
#include "agent/url.h"
#include "common/hex.h"
#include "protocol/frame.h"
#include "dopt/dopt.h"
#include "p2p/metainfo.h"
#include "p2p/session.h"

namespace dopt::agent {

json reply(std::int64_t seq, int rc, const std::string& message) {
    json r = {{"seq", seq}, {"rc", rc}};
    if (rc != 0) r["message"] = message;
    return r;
}

std::string with_member(const json& r, const char* key, const std::string& raw_json) {
    std::string s = r.dump();
    s.pop_back();  // the closing brace
    s += ",\"";
    s += key;
    s += "\":";
    s += raw_json;
    s += '}';
    return s;
}

void Agent::on_close(ConnId conn) {
    hello_done_.erase(conn);
    for (auto it = subscriptions_.begin(); it != subscriptions_.end();) {
        it->second.erase(conn);
        it = it->second.empty() ? subscriptions_.erase(it) : std::next(it);
    }
    // What was in flight to it goes to the next subscriber, at once.
    for (auto& [job_id, list] : outbox_)
        for (auto& o : list)
            if (o.in_flight == conn) o.in_flight = 0;
    waits_.erase(std::remove_if(waits_.begin(), waits_.end(),
                                [conn](const PendingWait& w) { return w.conn == conn; }),
                 waits_.end());
}

void Agent::on_request(ConnId conn, const PeerCred& peer, const std::string& body) {
    Request req;
    req.conn = conn;
    req.peer = peer;
    std::string refused = decode_request(body, &req);
    if (!refused.empty()) {
        ipc_->send(conn, reply(0, DOPT_E_PROTOCOL, refused).dump());
        return;
    }
    try {
        handle(req);
    } catch (const json::exception& e) {
        ipc_->send(conn, reply(req.seq, DOPT_E_INVALID_ARG, std::string("bad field: ") + e.what()).dump());
    } catch (const BadField& e) {
        ipc_->send(conn, reply(req.seq, DOPT_E_INVALID_ARG, std::string("bad field: ") + e.what()).dump());
    } catch (const storage::StorageError& e) {
        LOG_ERROR("job table: %s", e.what());
        ipc_->send(conn, reply(req.seq, DOPT_E_INTERNAL, e.what()).dump());
    } catch (const std::exception& e) {
        LOG_ERROR("request %s: %s", req.op.c_str(), e.what());
        ipc_->send(conn, reply(req.seq, DOPT_E_INTERNAL, e.what()).dump());
    }
}

void Agent::handle(Request& req) {
    auto send = [&](int rc, const std::string& msg, const Job* job) {
        json r = reply(req.seq, rc, msg);
        ipc_->send(req.conn, job ? with_member(r, "job", job->to_json()) : r.dump());
    };
    if (req.op == "hello") {
        auto theirs = integer_member(req.body, "protocol", 0, INT32_MIN, INT32_MAX);
        if (theirs != protocol::kVersion) {
            send(DOPT_E_VERSION,
                 "protocol version mismatch: the client speaks " + std::to_string(theirs) +
                     ", doptd " DOPT_VERSION_STRING " speaks " + std::to_string(protocol::kVersion),
                 nullptr);
            return;
        }
        hello_done_[req.conn] = true;
        json r = reply(req.seq, 0);
        r["protocol"] = protocol::kVersion;
        r["agent"] = "doptd " DOPT_VERSION_STRING;
        r["uid"] = req.peer.uid;
        ipc_->send(req.conn, r.dump());
        return;
    }
    if (!hello_done_.count(req.conn)) {
        send(DOPT_E_PROTOCOL, "the first request must be 'hello'", nullptr);
        return;
    }
    if (req.op == "create") return op_create(req);
    if (req.op == "list") return op_list(req);
    if (req.op == "ack") return op_ack(req);
    if (req.op == "cache_list") return op_cache_list(req);
    if (req.op == "cache_clear") return op_cache_clear(req);
    if (req.op == "peer_stats") return op_peer_stats(req);
    if (req.op == "metrics") return op_metrics(req);

    static const char* job_ops[] = {"open",     "status", "add_file", "set",         "resume",
                                    "suspend",  "cancel", "complete", "wait",        "subscribe",
                                    "unsubscribe"};
    if (std::find_if(std::begin(job_ops), std::end(job_ops),
                     [&](const char* o) { return req.op == o; }) == std::end(job_ops)) {
        send(DOPT_E_PROTOCOL, "unknown op '" + req.op + "'", nullptr);
        return;
    }
    if (!req.body.contains("job") || !req.body["job"].is_string()) {
        send(DOPT_E_INVALID_ARG, "'" + req.op + "' needs a job id", nullptr);
        return;
    }
    std::string id = req.body["job"].get<std::string>();
    auto it = jobs_.find(id);
    // Another user's job answers exactly as a missing one.
    if (it == jobs_.end() || !it->second->visible_to(req.peer.uid)) {
        send(DOPT_E_NOT_FOUND, "no job " + id, nullptr);
        return;
    }
    Job& job = *it->second;
    if (req.op == "open" || req.op == "status") return send(0, "", &job);
    if (req.op == "add_file") return op_add_file(req, job);
    if (req.op == "set") return op_set(req, job);
    if (req.op == "resume") return op_resume(req, job);
    if (req.op == "suspend") return op_suspend(req, job);
    if (req.op == "cancel") return op_cancel(req, job);
    if (req.op == "complete") return op_complete(req, job);
    if (req.op == "wait") return op_wait(req, job);
    if (req.op == "subscribe") return op_subscribe(req, job);
    if (req.op == "unsubscribe") return op_unsubscribe(req, job);
}

// Purges `uid`'s ended job (ACKNOWLEDGED or CANCELLED) that ended first, as
// the hourly purge would after [jobs] retention. False when it has none (or
// only ones with owner operations in flight, kept for their continuations).
bool Agent::purge_oldest_ended_job(uid_t uid) {
    Job* oldest = nullptr;
    for (auto& [id, job] : jobs_) {
        const JobRecord& r = job->rec;
        if (r.owner_uid != uid || !storage::is_final(r.state) || job->owner_ops_pending()) continue;
        if (!oldest || r.modified < oldest->rec.modified) oldest = job.get();
    }
    if (!oldest) return false;
    const std::string id = oldest->rec.id;
    store_->delete_job(id);
    forget_job(*oldest);
    jobs_.erase(id);
    LOG_INFO("job %s: purged early to make room for a new job of uid %u", id.c_str(),
             static_cast<unsigned>(uid));
    return true;
}

void Agent::op_create(Request& req) {
    auto job = std::make_unique<Job>();
    job->agent = this;
    JobRecord& r = job->rec;
    r.id = new_uuid();
    r.owner_uid = req.peer.uid;
    r.owner_gid = req.peer.gid;
    r.display_name = req.body.value("display_name", std::string());
    // The client's umask (libdopt sends it): the job's files get
    // 0666 & ~umask, as if the client had made them. Older clients: 022.
    if (req.body.contains("umask"))
        r.umask = static_cast<std::uint32_t>(integer_field(req.body["umask"], "umask", 0, 0777));
    if (r.display_name.size() > 1024) {
        ipc_->send(req.conn, reply(req.seq, DOPT_E_TOO_LARGE, "display name longer than 1024 bytes").dump());
        return;
    }
    // Every job a uid has in the table counts, ended ones too (they take
    // room until purged): one user cannot fill the state folder's disk. At
    // the limit the uid's oldest ended job is purged early to make room, so
    // only unended jobs can fill a user's quota.
    auto owned = std::count_if(jobs_.begin(), jobs_.end(),
                               [&](const auto& j) { return j.second->rec.owner_uid == req.peer.uid; });
    if (owned >= config_.max_jobs_per_user && purge_oldest_ended_job(req.peer.uid)) --owned;
    if (owned >= config_.max_jobs_per_user) {
        ipc_->send(req.conn, reply(req.seq, DOPT_E_TOO_LARGE,
                                   "uid " + std::to_string(req.peer.uid) + " has " + std::to_string(owned) +
                                       " unended jobs, the most [jobs] max_jobs_per_user allows; "
                                       "cancel or complete some").dump());
        return;
    }
    r.state = JobState::Suspended;
    r.created = r.modified = wall_now();
    r.seq = ++last_seq_;
    job->last_progress_ms = mono_ms();
    store_->insert_job(r);  // persisted before the answer
    std::string out = with_member(reply(req.seq, 0), "job", job->to_json());
    by_seq_[r.seq] = job.get();
    jobs_[r.id] = std::move(job);
    ipc_->send(req.conn, out);
}

namespace {
// errno from creating a partial file -> a DOPT_E_* code for add_file.
int add_file_errno_code(int e) {
    if (e == EEXIST) return DOPT_E_EXISTS;
    if (e == ENAMETOOLONG) return DOPT_E_INVALID_ARG;
    return DOPT_E_ACCESS;
}
}  // namespace

// The job that holds the destination of `key` (destination_key), nullptr
// when none does. A job in ERROR does not hold its destination: a new job
// may retry it.
const Agent::Job* Agent::destination_holder(const std::string& key) const {
    for (auto [it, end] = destinations_.equal_range(key); it != end; ++it) {
        auto other = jobs_.find(it->second);
        if (other == jobs_.end() || storage::is_final(other->second->rec.state) ||
            other->second->rec.state == JobState::Error)
            continue;
        return other->second.get();
    }
    return nullptr;
}

// The reply to a request that may need an owner operation: `start` gets
// the function that sends it, and calls it at once or later, on the main
// loop, when the operation completes. Until then the connection is paused:
// no later request of it is read first, so its replies keep their order.
// Whoever holds the function must call it exactly once.
void Agent::answer_later(const Request& req, const std::function<void(Reply)>& start) {
    enum Progress { kRunning, kAnswered, kWaiting };
    auto progress = std::make_shared<Progress>(kRunning);
    const ConnId conn = req.conn;
    start([this, conn, progress](const std::string& body) {
        ipc_->send(conn, body);
        if (*progress == kWaiting) ipc_->set_paused(conn, false);
        *progress = kAnswered;
    });
    if (*progress == kRunning) {
        *progress = kWaiting;
        ipc_->set_paused(conn, true);
    }
}

// add_file: the fields are read now (a bad one is answered at once); the
// rest waits for the job's owner operations in flight, since it may create
// the partial file with the owner's rights.
void Agent::op_add_file(Request& req, Job& job) {
    std::string url = req.body.at("url").get<std::string>();
    std::string path = req.body.at("local_path").get<std::string>();
    const std::int64_t seq = req.seq;
    answer_later(req, [&](const Reply& answer) {
        after_owner_ops(job, [this, seq, url, path, answer](Job& j) { add_file(j, seq, url, path, answer); });
    });
}

void Agent::add_file(Job& job, std::int64_t seq, const std::string& url, const std::string& path,
                     const Reply& answer) {
    auto send = [&](int rc, const std::string& msg) {
        json r = reply(seq, rc, msg);
        answer(rc == 0 ? with_member(r, "job", job.to_json()) : r.dump());
    };
    if (job.rec.state != JobState::Suspended && job.rec.state != JobState::Queued)
        return send(DOPT_E_INVALID_STATE, std::string("files can be added only to a suspended or queued job; this one is ") +
                                              storage::state_name(job.rec.state));
    if (job.rec.files.size() >= 1000) return send(DOPT_E_TOO_LARGE, "a job holds at most 1000 files");
    // Every reply carries the whole job object, which must fit in a frame
    // (1 MiB) with room to spare: URLs are capped, and so are the bytes of
    // all of a job's URLs and paths together (a path appears twice in the
    // job object: the file and its partial file).
    if (url.size() > kMaxUrlBytes)
        return send(DOPT_E_TOO_LARGE, "a URL is at most " + std::to_string(kMaxUrlBytes) + " bytes");
    UrlCheck uc = check_url(url);
    if (uc.rc != 0) return send(uc.rc, uc.message);
    if (path.empty() || path[0] != '/')
        return send(DOPT_E_RELATIVE_PATH, "the local path '" + path + "' is not absolute");
    if (path.size() >= PATH_MAX || path.find('\0') != std::string::npos)
        return send(DOPT_E_INVALID_ARG, "the local path is too long or contains NUL");
    std::size_t job_bytes = url.size() + 2 * path.size();
    for (const auto& f : job.rec.files) job_bytes += f.remote_url.size() + 2 * f.local_path.size();
    if (job_bytes > kMaxJobFileBytes)
        return send(DOPT_E_TOO_LARGE, "the URLs and paths of a job's files are at most " +
                                          std::to_string(kMaxJobFileBytes) + " bytes in all");
    std::string norm = normalise_path(path);
    if (norm.empty()) return send(DOPT_E_INVALID_ARG, "'" + path + "' does not name a file");
    FileRecord f;
    f.index = static_cast<int>(job.rec.files.size());
    f.remote_url = url;
    f.local_path = norm;
    f.partial_path = dir_of(norm) + "/" + partial_file_name(base_of(norm), job.rec.id.substr(0, 8));
    // Can the owner write there? An agent that runs as the owner asks the
    // kernel about the folder (cheap: no file is made until the transfer
    // starts). Otherwise the partial file is created now with the owner's
    // rights, which both answers and reserves the name. Either way the
    // transfer later opens the file with the owner's rights, so this is an
    // early answer for the client, not the permission decision. It comes
    // before the look for another job with that destination, so that a path
    // the caller may not write says only that.
    if (base_of(norm).size() > NAME_MAX)
        return send(DOPT_E_INVALID_ARG, "the file name of " + norm + " is too long");
    // Found now rather than at the rename after the whole download (a
    // folder the agent may not look into is found there).
    struct stat dest{};
    if (::stat(norm.c_str(), &dest) == 0 && S_ISDIR(dest.st_mode))
        return send(DOPT_E_INVALID_ARG, norm + " is a folder; the destination must name a file");
    if (acts_as_owner_itself(job.owner()))
        return add_file_checked(job, seq, f, check_writable_folder(dir_of(norm)), false, answer);
    OwnerOp create = owner_op_of(OwnerOpKind::Open, job.owner(), f.partial_path, "",
                                 O_RDWR | O_CREAT | O_EXCL, job.file_mode());
    owner_op(job, create, [this, seq, f, answer](Job& j, int fd) {
        if (fd >= 0) ::close(fd);
        add_file_checked(j, seq, f, fd < 0 ? fd : 0, true, answer);
    });
}

// The rest of add_file once the owner's answer `rc` is known (0, or -errno
// from the folder check or the creation of the partial file; `created`: the
// partial file was made, and goes again if the file is not added).
void Agent::add_file_checked(Job& job, std::int64_t seq, const FileRecord& f, int rc, bool created,
                             const Reply& answer) {
    auto send = [&](int code, const std::string& msg) {
        json r = reply(seq, code, msg);
        answer(code == 0 ? with_member(r, "job", job.to_json()) : r.dump());
    };
    const std::string& norm = f.local_path;
    if (rc != 0) {
        int e = -rc;
        std::string why = e == ENOENT ? "the folder " + dir_of(norm) + " does not exist"
                                      : std::string(std::strerror(e));
        const bool system_account =
            job.rec.owner_uid < read_first_regular_uid("/etc/login.defs");  // root too
        if (e == EPERM && privilege_separated() && system_account)
            why += " (the system agent writes files of root and of system accounts only under "
                   "system_job_dirs: docs/config.md)";
        return send(add_file_errno_code(e), "cannot write " + norm + ": " + why);
    }
    // A refusal once the partial file was made: it is removed before the
    // reply, so that the client finds nothing left of its request.
    auto refuse = [&](int code, const std::string& msg) {
        if (!created) return send(code, msg);
        owner_op(job, owner_op_of(OwnerOpKind::Unlink, job.owner(), f.partial_path),
                 [body = reply(seq, code, msg).dump(), answer](Job&, int) { answer(body); });
    };
    // The job may have moved on while the owner's answer came (a resume, a
    // cancel from another connection).
    if (job.rec.state != JobState::Suspended && job.rec.state != JobState::Queued)
        return refuse(DOPT_E_INVALID_STATE, std::string("files can be added only to a suspended or queued job; this one is ") +
                                                storage::state_name(job.rec.state));
    const std::string key = destination_key(norm);
    if (const Job* holder = destination_holder(key)) {
        // Another user's job id is not the caller's to know.
        std::string whose = holder->rec.owner_uid == job.rec.owner_uid ? "job " + holder->rec.id
                                                                       : "another user's job";
        return refuse(DOPT_E_EXISTS, norm + " is already the destination of " + whose);
    }
    try {
        store_->add_file(job.rec.id, f);
    } catch (const storage::StorageError& e) {
        LOG_ERROR("job table: %s", e.what());
        return refuse(DOPT_E_INTERNAL, e.what());
    }
    job.rec.files.push_back(f);
    job.destination_keys.push_back(key);
    destinations_.emplace(key, job.rec.id);
    send(0, "");
}

void Agent::op_set(Request& req, Job& job) {
    auto send = [&](int rc, const std::string& msg) {
        json r = reply(req.seq, rc, msg);
        ipc_->send(req.conn, rc == 0 ? with_member(r, "job", job.to_json()) : r.dump());
    };
    if (storage::is_final(job.rec.state))
        return send(DOPT_E_INVALID_STATE, std::string("the job is ") + storage::state_name(job.rec.state));
    JobRecord next = job.rec;
    const json& b = req.body;
    if (b.contains("priority")) {
        // 0 (foreground) to 3 (low)
        next.priority = static_cast<Priority>(integer_field(b["priority"], "priority", 0, 3));
    }
    if (b.contains("display_name")) {
        next.display_name = b["display_name"].get<std::string>();
        if (next.display_name.size() > 1024) return send(DOPT_E_TOO_LARGE, "display name longer than 1024 bytes");
    }
    if (b.contains("no_progress_timeout")) next.no_progress_timeout = static_cast<std::uint32_t>(integer_field(b["no_progress_timeout"], "no_progress_timeout", 0, UINT32_MAX));
    if (b.contains("auto_complete")) next.auto_complete = b["auto_complete"].get<bool>();
    if (b.contains("headers")) {
        next.headers.clear();
        std::size_t total = 0;
        for (const auto& h : b["headers"]) {
            std::string s = h.get<std::string>();
            total += s.size();
            if (s.find_first_of("\r\n") != std::string::npos || s.find(':') == std::string::npos || s[0] == ':')
                return send(DOPT_E_INVALID_ARG, "a header must be 'Name: value' on one line");
            next.headers.push_back(s);
        }
        if (next.headers.size() > 64 || total > 16384) return send(DOPT_E_TOO_LARGE, "too many header bytes");
    }
    int sha_index = -1;
    std::string sha;
    if (b.contains("file_sha256")) {
        sha_index = static_cast<int>(integer_field(b["file_sha256"].at("index"), "index", INT32_MIN, INT32_MAX));
        sha = b["file_sha256"].at("sha256").get<std::string>();
        if (sha_index < 0 || static_cast<std::size_t>(sha_index) >= job.rec.files.size())
            return send(DOPT_E_INVALID_ARG, "no file number " + std::to_string(sha_index));
        std::transform(sha.begin(), sha.end(), sha.begin(), [](unsigned char c) { return std::tolower(c); });
        if (!is_hex(sha, 64, /*lowercase_only=*/true))
            return send(DOPT_E_INVALID_ARG, "a SHA-256 is 64 hex digits");
        const FileRecord& f = job.rec.files[static_cast<std::size_t>(sha_index)];
        if (f.completed || (job.current_file == sha_index && job.transfer))
            return send(DOPT_E_INVALID_STATE, "the file is already being transferred");
    }
    // The size of one file, which the origin must match.
    int size_index = -1;
    std::uint64_t size = 0;
    if (b.contains("file_size")) {
        const json& z = b["file_size"];
        size_index = static_cast<int>(integer_field(z.at("index"), "index", INT32_MIN, INT32_MAX));
        size = static_cast<std::uint64_t>(integer_field(z.at("size"), "size", 0, INT64_MAX));
        if (size_index < 0 || static_cast<std::size_t>(size_index) >= job.rec.files.size())
            return send(DOPT_E_INVALID_ARG, "no file number " + std::to_string(size_index));
        const FileRecord& f = job.rec.files[static_cast<std::size_t>(size_index)];
        if (f.completed || (job.current_file == size_index && job.busy()))
            return send(DOPT_E_INVALID_STATE, "the file is already being transferred");
    }
    // Metainfo for one file: bencoded bytes (base64, checked now) or a URL
    // fetched when the file starts.
    int meta_index = -1;
    std::optional<p2p::MetainfoSummary> meta;
    std::string meta_bytes, meta_url;
    if (b.contains("file_metainfo")) {
        const json& m = b["file_metainfo"];
        meta_index = static_cast<int>(integer_field(m.at("index"), "index", INT32_MIN, INT32_MAX));
        if (meta_index < 0 || static_cast<std::size_t>(meta_index) >= job.rec.files.size())
            return send(DOPT_E_INVALID_ARG, "no file number " + std::to_string(meta_index));
        const FileRecord& f = job.rec.files[static_cast<std::size_t>(meta_index)];
        if (f.completed || (job.current_file == meta_index && job.busy()))
            return send(DOPT_E_INVALID_STATE, "the file is already being transferred");
        if (m.contains("url")) {
            meta_url = m["url"].get<std::string>();
            std::string scheme = scheme_of(meta_url);
            if (scheme != "http" && scheme != "https")
                return send(DOPT_E_INVALID_URL, "a metainfo URL must be http:// or https://: " + meta_url);
        } else {
            if (!base64_decode(m.at("base64").get<std::string>(), meta_bytes))
                return send(DOPT_E_INVALID_ARG, "the metainfo is not valid base64");
            try {
                meta = p2p::summarize_metainfo(meta_bytes);
            } catch (const p2p::MetainfoError& e) {
                return send(DOPT_E_INVALID_ARG, std::string("unusable metainfo: ") + e.what());
            }
        }
    }
    bool priority_changed = next.priority != job.rec.priority;
    job.rec.priority = next.priority;
    job.rec.display_name = next.display_name;
    job.rec.no_progress_timeout = next.no_progress_timeout;
    job.rec.auto_complete = next.auto_complete;
    job.rec.headers = next.headers;
    store_->update_job(job.rec);
    if (sha_index >= 0) {
        job.rec.files[static_cast<std::size_t>(sha_index)].sha256 = sha;
        store_->update_file(job.rec.id, job.rec.files[static_cast<std::size_t>(sha_index)]);
    }
    if (size_index >= 0) {
        FileRecord& f = job.rec.files[static_cast<std::size_t>(size_index)];
        f.expected_size = size;
        f.bytes_total = size;  // shown before the origin answers
        store_->update_file(job.rec.id, f);
    }
    if (meta_index >= 0) {
        FileRecord& f = job.rec.files[static_cast<std::size_t>(meta_index)];
        f.metainfo_source = "job";
        f.metainfo_url = meta_url;
        f.info_hash.clear();
        if (meta) {
            swarms_->remember_metainfo(job, f, *meta, meta_bytes);
            f.info_hash = meta->info_hash;
        }
        store_->update_file(job.rec.id, f);
    }
    if (priority_changed) schedule_needed_ = true;
    send(0, "");
}

void Agent::op_resume(Request& req, Job& job) {
    JobState s = job.rec.state;
    int rc = 0;
    std::string msg;
    if (s == JobState::Queued || is_running(s)) {
        // Already on its way: nothing to do.
    } else if (job.rec.files.empty()) {
        rc = DOPT_E_INVALID_STATE;
        msg = "the job has no files";
    } else if (s == JobState::Suspended || s == JobState::Error || s == JobState::TransientError ||
               (s == JobState::Transferred && !job.delivering && forget_lost_files(job) > 0)) {
        job.rec.retry_count = 0;
        job.last_progress_ms = mono_ms();
        store_->update_job(job.rec);
        change_state(job, JobState::Queued);
    } else {
        rc = DOPT_E_INVALID_STATE;
        msg = std::string("a job that is ") + storage::state_name(s) + " cannot be resumed";
    }
    ipc_->send(req.conn, with_member(reply(req.seq, rc, msg), "job", job.to_json()));
}

void Agent::op_suspend(Request& req, Job& job) {
    JobState s = job.rec.state;
    int rc = 0;
    std::string msg;
    if (s == JobState::Suspended) {
    } else if (s == JobState::Queued || is_running(s) || s == JobState::TransientError) {
        stop_transfer(job, true);
        change_state(job, JobState::Suspended);
    } else {
        rc = DOPT_E_INVALID_STATE;
        msg = std::string("a job that is ") + storage::state_name(s) + " cannot be suspended";
    }
    ipc_->send(req.conn, with_member(reply(req.seq, rc, msg), "job", job.to_json()));
}

// cancel: the job is CANCELLED at once; the reply comes when its partial
// files are removed (with the owner's rights, after its owner operations in
// flight), so a client that got DOPT_OK finds them gone.
void Agent::op_cancel(Request& req, Job& job) {
    if (storage::is_final(job.rec.state)) {
        std::string msg = std::string("the job is already ") + storage::state_name(job.rec.state);
        ipc_->send(req.conn, with_member(reply(req.seq, DOPT_E_INVALID_STATE, msg), "job", job.to_json()));
        return;
    }
    stop_transfer(job, false);
    change_state(job, JobState::Cancelled);
    const std::int64_t seq = req.seq;
    answer_later(req, [&](const Reply& answer) {
        remove_partials(job, [this, seq, answer](Job& j) {
            answer(with_member(reply(seq, 0, ""), "job", j.to_json()));
        });
    });
}

// complete: the files are moved into place with the owner's rights, after
// the job's owner operations in flight; the reply comes when they are.
void Agent::op_complete(Request& req, Job& job) {
    const std::int64_t seq = req.seq;
    answer_later(req, [&](const Reply& answer) {
        after_owner_ops(job, [this, seq, answer](Job& j) { complete(j, seq, answer); });
    });
}

void Agent::complete(Job& job, std::int64_t seq, const Reply& answer) {
    JobState s = job.rec.state;
    if (s != JobState::Transferred && s != JobState::Error) {
        std::string msg = std::string("only a transferred job (or one in error) can be completed; this one is ") +
                          storage::state_name(s);
        return answer(with_member(reply(seq, DOPT_E_INVALID_STATE, msg), "job", job.to_json()));
    }
    deliver_files(job, s == JobState::Error, s,
                  [this, seq, answer](Job& j, int err, const std::string& message) {
                      int rc = 0;
                      std::string msg = message;
                      if (err == ECANCELED) {
                          rc = DOPT_E_INVALID_STATE;
                      } else if (err != 0) {
                          rc = DOPT_E_LOCAL_IO;
                      } else {
                          try {
                              change_state(j, JobState::Acknowledged);
                          } catch (const storage::StorageError& e) {
                              LOG_ERROR("job table: %s", e.what());
                              rc = DOPT_E_INTERNAL;
                              msg = e.what();
                          }
                      }
                      answer(with_member(reply(seq, rc, msg), "job", j.to_json()));
                  });
}

// Pages of job objects, so that no reply outgrows the frame limit: the
// client passes the last id it got as `after` until `more` is false.
void Agent::op_list(Request& req) {
    std::string after = req.body.value("after", std::string());
    auto limit = static_cast<std::size_t>(std::clamp<std::int64_t>(
        integer_member(req.body, "limit", 1000, INT64_MIN, INT64_MAX), 1, 1000));
    // Resume after the cursor's position (creation order). A cursor job
    // purged between pages ends the listing rather than repeating it.
    auto it = by_seq_.begin();
    if (!after.empty()) {
        auto ct = jobs_.find(after);
        it = ct == jobs_.end() ? by_seq_.end() : by_seq_.upper_bound(ct->second->rec.seq);
    }
    std::string jobs = "[";
    std::size_t count = 0;
    for (; it != by_seq_.end() && count < limit; ++it) {
        if (!it->second->visible_to(req.peer.uid)) continue;
        std::string j = it->second->to_json();
        if (jobs.size() + j.size() > protocol::kMaxFrame - 4096 && count > 0) break;
        if (count++ > 0) jobs += ',';
        jobs += j;
    }
    jobs += ']';
    bool more = false;
    for (; it != by_seq_.end() && !more; ++it) more = it->second->visible_to(req.peer.uid);
    json r = reply(req.seq, 0);
    r["more"] = more;
    ipc_->send(req.conn, with_member(r, "jobs", jobs));
}

void Agent::op_wait(Request& req, Job& job) {
    // Negative: no timeout. At most ~290 million years, so that the deadline
    // cannot overflow.
    std::int64_t timeout = integer_member(req.body, "timeout_ms", -1, INT64_MIN, INT64_MAX / 1024);
    PendingWait w{req.conn, req.seq, job.rec.id, timeout < 0 ? -1 : mono_ms() + timeout};
    waits_.push_back(w);
    ipc_->set_paused(req.conn, true);
    answer_waits();
}

// Answers every parked wait whose job reached a waitable state, or whose
// time ran out.
void Agent::answer_waits() {
    if (waits_.empty()) return;
    std::int64_t now = mono_ms();
    std::vector<PendingWait> done;
    for (auto it = waits_.begin(); it != waits_.end();) {
        auto jt = jobs_.find(it->job_id);
        bool gone = jt == jobs_.end();
        // A job that auto-completes is TRANSFERRED while it delivers: not yet.
        bool ready = gone || (is_waitable(jt->second->rec.state) && !jt->second->delivering);
        bool expired = it->deadline_ms >= 0 && now >= it->deadline_ms;
        if (ready || expired) {
            done.push_back(*it);
            it = waits_.erase(it);
        } else {
            ++it;
        }
    }
    for (const auto& w : done) {
        auto jt = jobs_.find(w.job_id);
        if (jt == jobs_.end()) {
            ipc_->send(w.conn, reply(w.seq, DOPT_E_NOT_FOUND, "the job was purged").dump());
        } else {
            bool ready = is_waitable(jt->second->rec.state) && !jt->second->delivering;
            json r = reply(w.seq, ready ? 0 : DOPT_E_TIMEOUT, ready ? "" : "the wait timed out");
            ipc_->send(w.conn, with_member(r, "job", jt->second->to_json()));
        }
        ipc_->set_paused(w.conn, false);
    }
}

}  // namespace dopt::agent

namespace dopt::agent {

// The peer cache entries the caller may see: their own (root: all).
void Agent::op_cache_list(Request& req) {
    json list = json::array();
    const auto& torrents = swarms_->torrents();
    for (const auto& [ih, e] : swarms_->cache()) {
        if (req.peer.uid != 0 && e.owner_uid != req.peer.uid) continue;
        auto s = torrents.find(ih);
        bool in_use = s != torrents.end() && !s->second->users.empty();
        list.push_back({{"info_hash", ih},
                        {"name", e.name},
                        {"size", e.size},
                        {"origin_url", e.origin_url},
                        {"owner_uid", e.owner_uid},
                        {"complete", e.complete},
                        {"seeding", s != torrents.end() && s->second->complete && swarms_->peering()},
                        {"in_use", in_use},
                        {"last_used", e.last_used}});
    }
    json r = reply(req.seq, 0);
    r["entries"] = list;
    ipc_->send(req.conn, r.dump());
}

// Removes the caller's cache entries (root: every one) that no running job
// is using; answers how many went and how many bytes.
void Agent::op_cache_clear(Request& req) {
    std::vector<std::string> drop;
    std::uint64_t bytes = 0;
    int kept = 0;
    for (const auto& [ih, e] : swarms_->cache()) {
        if (req.peer.uid != 0 && e.owner_uid != req.peer.uid) continue;
        bool wanted = false;
        for (const auto& [id, job] : jobs_) {
            if (storage::is_final(job->rec.state)) continue;
            for (const auto& f : job->rec.files)
                if (f.info_hash == ih && !f.completed) wanted = true;
        }
        if (wanted) {
            ++kept;
            continue;
        }
        drop.push_back(ih);
        bytes += e.size;
    }
    for (const auto& ih : drop) swarms_->remove_cached_content(ih);
    LOG_INFO("peer cache: uid %u cleared %zu entries (%llu bytes)", req.peer.uid, drop.size(),
             static_cast<unsigned long long>(bytes));
    json r = reply(req.seq, 0);
    r["removed"] = drop.size();
    r["bytes"] = bytes;
    r["kept_in_use"] = kept;
    ipc_->send(req.conn, r.dump());
}

// Session-wide peer figures: what this agent gave to the LAN, its torrents and peers.
void Agent::op_peer_stats(Request& req) {
    json r = reply(req.seq, 0);
    p2p::TorrentSession* session = swarms_->session();
    r["peering"] = session != nullptr;
    std::uint64_t up = 0;
    int peers = 0;
    for (const auto& [ih, s] : swarms_->torrents()) {
        const p2p::TorrentStatus st = session->status(s->torrent, false);
        up += static_cast<std::uint64_t>(st.uploaded);
        peers += st.num_peers;
    }
    r["bytes_to_peers"] = up;
    r["torrents"] = swarms_->torrents().size();
    r["connected_peers"] = peers;
    r["peers_by_source"] = peers_by_source();
    if (session) r["listen_port"] = session->listen_port();
    ipc_->send(req.conn, r.dump());
}

}  // namespace dopt::agent
