// The Agent's side of the metrics (metrics.h): what it counts, when the
// counts are written and the textfile replaced, and the `metrics` request.
#include "agent/agent.h"
#include "agent/agent_internal.h"
#include "agent/log.h"
#include "agent/swarm.h"
#include "p2p/torrent_session.h"
#include "storage/job_state.h"

namespace dopt::agent {

namespace {
constexpr std::int64_t kUsageWritePeriodMs = 5000;
}

void Agent::count_usage(const Job& job, const char* counter, std::uint64_t n) {
    usage_->add(job.rec.owner_uid, counter, n, wall_now());
}

// Bytes given to peers since the last sample, from each torrent's all-time
// upload: a torrent new in this run counts from 0; one that was seeding
// when the agent started counts from its figure then (counted before).
void Agent::sample_uploads() {
    p2p::TorrentSession* session = swarms_->session();
    if (!session) return;
    std::uint64_t sent = 0;
    std::map<std::string, std::int64_t> seen;
    for (const auto& [ih, s] : swarms_->torrents()) {
        std::int64_t now_up = session->status(s->torrent, false).uploaded;
        auto before = uploaded_seen_.find(ih);
        std::int64_t from = before == uploaded_seen_.end() || before->second > now_up ? 0 : before->second;
        sent += static_cast<std::uint64_t>(now_up - from);
        seen[ih] = now_up;
    }
    uploaded_seen_ = std::move(seen);
    if (sent) usage_->add(kAgentOwner, kPeerSentBytes, sent, wall_now());
}

// The torrents a peer session starts with were restored from the peer
// cache: their all-time upload was counted in an earlier run, so the
// sampling counts from their figure now (at start, and when a SIGHUP
// starts a session).
void Agent::count_uploads_from_now() {
    p2p::TorrentSession* session = swarms_->session();
    if (!session) return;
    for (const auto& [ih, s] : swarms_->torrents())
        uploaded_seen_[ih] = session->status(s->torrent, false).uploaded;
}

// Never throws: a job table that cannot be written keeps the counts for the
// next try.
void Agent::metrics_tick(std::int64_t now, bool all_due) {
    if (all_due || now >= next_usage_write_ms_) {
        next_usage_write_ms_ = now + kUsageWritePeriodMs;
        sample_uploads();
        try {
            if (usage_->unwritten()) usage_->write(*store_);
        } catch (const storage::StorageError& e) {
            LOG_WARN("job table: cannot write the usage totals (kept for the next try): %s", e.what());
        }
    }
    if (config_.metrics_textfile.empty() || !(all_due || now >= next_textfile_ms_)) return;
    next_textfile_ms_ = now + 1000LL * config_.metrics_interval;
    std::string error = write_textfile(config_.metrics_textfile, metrics_text(0));
    if (error != textfile_error_) {
        if (error.empty()) LOG_INFO("metrics: writing %s again", config_.metrics_textfile.c_str());
        else LOG_WARN("metrics: cannot write %s: %s", config_.metrics_textfile.c_str(), error.c_str());
        textfile_error_ = error;
    }
}

// Wakes the loop for the textfile, and for the usage totals only while
// there is something to write or a torrent that may upload.
std::int64_t Agent::metrics_deadline_ms() const {
    std::int64_t deadline = config_.metrics_textfile.empty() ? INT64_MAX : next_textfile_ms_;
    if (usage_->unwritten() || !swarms_->torrents().empty()) deadline = std::min(deadline, next_usage_write_ms_);
    return deadline;
}

MetricsGauges Agent::metrics_gauges(uid_t uid) const {
    MetricsGauges g;
    for (int st = static_cast<int>(JobState::Queued); st <= static_cast<int>(JobState::Cancelled); ++st)
        g.jobs_by_state[storage::state_name(static_cast<JobState>(st))] = 0;
    for (const auto& [id, job] : jobs_)
        if (job->visible_to(uid)) ++g.jobs_by_state[storage::state_name(job->rec.state)];
    for (const auto& [ih, e] : swarms_->cache()) {
        if (uid != 0 && e.owner_uid != uid) continue;
        g.cache_bytes += e.size;
        ++g.cache_entries;
    }
    p2p::TorrentSession* session = swarms_->session();
    g.peering = session != nullptr;
    if (session)
        for (const auto& [ih, s] : swarms_->torrents())
            g.connected_peers += static_cast<std::uint64_t>(session->status(s->torrent, false).num_peers);
    g.peers_by_source = peers_by_source();
    return g;
}

std::map<std::string, std::uint64_t> Agent::peers_by_source() const {
    std::map<std::string, std::uint64_t> out;
    p2p::TorrentSession* session = swarms_->session();
    if (!session) return out;
    for (p2p::PeerSource source : p2p::kPeerSources) out[p2p::peer_source_name(source)] = 0;
    for (const auto& [ih, s] : swarms_->torrents())
        for (const auto& peer : session->peers(s->torrent)) ++out[p2p::peer_source_name(peer.source)];
    return out;
}

// What `uid` may see (root: everything): their own jobs, cache entries and
// counts, and the agent's (bytes to peers, peers). Never a name or URL.
std::string Agent::metrics_text(uid_t uid) {
    sample_uploads();
    return prometheus_text(*usage_, owners_visible_to(uid), metrics_gauges(uid), wall_now());
}

void Agent::op_metrics(Request& req) {
    json r = reply(req.seq, 0);
    r["text"] = metrics_text(req.peer.uid);
    ipc_->send(req.conn, r.dump());
}

}  // namespace dopt::agent
