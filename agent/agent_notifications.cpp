// Notifications (callbacks): subscriptions, the durable outbox and
// modification events (docs/protocol.md, "Notifications").
#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>

#include "agent/agent_internal.h"
#include "agent/log.h"
#include "agent/url.h"
#include "protocol/frame.h"
#include "dopt/dopt.h"

namespace dopt::agent {

// ---- notifications ----------------------------------------------------------

void Agent::op_subscribe(Request& req, Job& job) {
    Subscription sub;
    auto notify = static_cast<unsigned>(integer_member(req.body, "notify", 0, 0, UINT32_MAX));
    sub.notify = notify & (DOPT_NOTIFY_TRANSFERRED | DOPT_NOTIFY_ERROR | DOPT_NOTIFY_MODIFICATION |
                           DOPT_NOTIFY_FILE_TRANSFERRED);
    sub.percent = static_cast<unsigned>(std::clamp<std::int64_t>(integer_member(req.body, "percent", 1, 0, UINT32_MAX), 1, 100));
    sub.seconds = static_cast<unsigned>(std::max<std::int64_t>(integer_member(req.body, "seconds", 1, 0, UINT32_MAX), 1));
    sub.last_sent_bytes = 0;
    subscriptions_[job.rec.id][req.conn] = sub;
    ipc_->send(req.conn, with_member(reply(req.seq, 0), "job", job.to_json()));
    deliver_notifications();
}

void Agent::op_unsubscribe(Request& req, Job& job) {
    auto it = subscriptions_.find(job.rec.id);
    if (it != subscriptions_.end()) {
        it->second.erase(req.conn);
        if (it->second.empty()) subscriptions_.erase(it);
    }
    auto ot = outbox_.find(job.rec.id);
    if (ot != outbox_.end())
        for (auto& o : ot->second)
            if (o.in_flight == req.conn) o.in_flight = 0;
    ipc_->send(req.conn, reply(req.seq, 0).dump());
}

// The client's callback returned `rc` for a notification: DOPT_OK removes
// it; anything else sends it again after a backoff (1 s doubling to 60 s).
void Agent::op_ack(Request& req) {
    std::int64_t id = integer_field(req.body.at("notification"), "notification", INT64_MIN, INT64_MAX);
    auto rc = static_cast<int>(integer_member(req.body, "rc", 0, INT32_MIN, INT32_MAX));
    for (auto& [job_id, list] : outbox_) {
        auto it = std::find_if(list.begin(), list.end(), [&](const Outgoing& o) { return o.id == id; });
        if (it == list.end()) continue;
        auto jt = jobs_.find(job_id);
        if (it->in_flight != req.conn || jt == jobs_.end() || !jt->second->visible_to(req.peer.uid))
            break;
        if (rc == 0) {
            store_->delete_notification(id);
            list.erase(it);
            if (list.empty()) outbox_.erase(job_id);
        } else {
            it->in_flight = 0;
            std::int64_t delay = 1000LL << std::min(it->attempts - 1, 6u);
            it->next_attempt_ms = mono_ms() + std::min<std::int64_t>(delay, 60000);
            LOG_DEBUG("notification %lld of job %s: callback returned %d; again in %lld ms",
                      static_cast<long long>(id), job_id.c_str(), rc, static_cast<long long>(delay));
        }
        ipc_->send(req.conn, reply(req.seq, 0).dump());
        return;
    }
    ipc_->send(req.conn, reply(req.seq, DOPT_E_NOT_FOUND, "no notification " + std::to_string(id) +
                                                         " is awaiting this connection's ack").dump());
}

void Agent::queue_notification(const std::string& job_id, std::int64_t id, int kind, int file_index) {
    if (id <= 0) return;
    Outgoing o;
    o.id = id;
    o.kind = kind;
    o.file_index = file_index;
    outbox_[job_id].push_back(o);
}

namespace {
const char* event_name(int kind) {
    switch (kind) {
    case DOPT_NOTIFY_TRANSFERRED: return "transferred";
    case DOPT_NOTIFY_ERROR: return "error";
    case DOPT_NOTIFY_FILE_TRANSFERRED: return "file_transferred";
    default: return "modification";
    }
}
}  // namespace

// Per job, one notification in flight at a time: the oldest one that a
// subscribed connection asked for, sent once its backoff has passed.
void Agent::deliver_notifications() {
    if (outbox_.empty() || subscriptions_.empty()) return;
    std::int64_t now = mono_ms();
    for (auto& [job_id, list] : outbox_) {
        auto st = subscriptions_.find(job_id);
        auto jt = jobs_.find(job_id);
        if (st == subscriptions_.end() || jt == jobs_.end()) continue;
        if (std::any_of(list.begin(), list.end(), [](const Outgoing& o) { return o.in_flight != 0; }))
            continue;
        for (auto& o : list) {
            auto sub = std::find_if(st->second.begin(), st->second.end(), [&](const auto& kv) {
                return (kv.second.notify & static_cast<unsigned>(o.kind)) != 0;
            });
            if (sub == st->second.end()) continue;  // nobody here wants this one
            if (o.next_attempt_ms > now) break;     // keep per-job order
            json ev = {{"event", event_name(o.kind)}, {"notification", o.id}};
            if (o.file_index >= 0) ev["file_index"] = o.file_index;
            o.in_flight = sub->first;
            o.attempts++;
            ipc_->send(sub->first, with_member(ev, "job", jt->second->to_json()));
            break;
        }
    }
}

// Modification events: on every state change, and on progress when it moved
// by the subscriber's percent of the bytes or its seconds passed. Never
// queued behind a connection that is not reading.
void Agent::notify_modification(Job& job, bool state_changed) {
    auto st = subscriptions_.find(job.rec.id);
    if (st == subscriptions_.end()) return;
    std::int64_t now = mono_ms();
    std::uint64_t total = 0, done = 0;
    for (const auto& f : job.rec.files) {
        if (f.bytes_total != kUnknownSize) total += f.bytes_total;
        done += f.bytes_transferred;
    }
    std::vector<ConnId> targets;
    for (auto& [conn, sub] : st->second) {
        if (!(sub.notify & DOPT_NOTIFY_MODIFICATION)) continue;
        bool due = state_changed || now - sub.last_sent_ms >= 1000LL * sub.seconds ||
                   (total > 0 && (done - std::min(done, sub.last_sent_bytes)) * 100 >= total * sub.percent);
        if (!due || ipc_->pending_output(conn) > (1u << 20)) continue;
        sub.last_sent_ms = now;
        sub.last_sent_bytes = done;
        targets.push_back(conn);
    }
    if (targets.empty()) return;
    std::string ev = with_member(json{{"event", "modification"}, {"notification", 0}}, "job", job.to_json());
    for (ConnId conn : targets) ipc_->send(conn, ev);
}

}  // namespace dopt::agent

