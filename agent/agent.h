// Agent: doptd's core. One thread runs everything: the IPC socket, the job
// scheduler, the origin transfers (libcurl multi) and the job table.
//
// Where a job's state lives: the JobStore (SQLite) is the truth that
// survives; the Agent keeps every job in memory as well (jobs_) and writes
// each change through to the store before it answers the client. Bytes of a
// file in flight are checkpointed to the store about once a second; after a
// crash the partial file on disk says how far the transfer got.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include <sys/types.h>

#include "agent/config.h"
#include "agent/ipc_server.h"
#include "agent/metrics.h"
#include "agent/origin_fetcher.h"
#include "agent/owner_files.h"
#include "agent/service_manager.h"
#include "storage/job_store.h"

namespace dopt::agent {

class Swarms;  // swarm.h
struct Swarm;

class Agent : public IpcHandler {
public:
    // Takes the state lock, opens the job table, binds the socket (or
    // serves `activated_socket`, a listening socket systemd bound: see
    // take_activated_socket) and loads every job. Throws
    // std::runtime_error when any of that fails.
    explicit Agent(const Config& config, int activated_socket = -1);
    ~Agent() override;
    Agent(const Agent&) = delete;
    Agent& operator=(const Agent&) = delete;

    // Runs until SIGTERM or SIGINT (graceful: transfers stopped, progress
    // persisted, partial files kept), or, socket-activated, until idle for
    // `idle_exit` seconds (idle()). SIGHUP reloads the config file. Tells
    // systemd READY=1 once the socket accepts, then STATUS= and watchdog
    // pings (ServiceNotifier).
    // The caller must have blocked SIGTERM, SIGINT and SIGHUP in every thread.
    int run();

    void on_request(ConnId conn, const PeerCred& peer, const std::string& body) override;
    void on_close(ConnId conn) override;

    struct Job;       // a job and its runtime state (agent.cpp)
    struct Request;   // one decoded IPC request

    // For the swarm (swarm.h), which moves a job's current file through a
    // torrent: what it may ask of the agent. A job's state changes only
    // here (change_state, fail, transient_failure, fail_no_progress);
    // start_job takes the job on to its next step; open_current_partial
    // opens the current file's partial file with the owner's rights, then
    // calls `then` (not when the job stopped meanwhile); owner_op runs a
    // job's owner operation in order.
    bool change_state(Job& job, storage::JobState to);
    void fail(Job& job, storage::ErrorContext context, std::int64_t code, const std::string& description,
              int file_index);
    // Records `outcome` (transient) as the job's last transient error and
    // retries after a backoff, or fails the job when it made no progress
    // for its no-progress timeout.
    void transient_failure(Job& job, const TransferOutcome& outcome);
    // Fails the job with DOPT_E_NO_PROGRESS, naming its last failure.
    void fail_no_progress(Job& job, const std::string& last_failure);
    // An error record of the job, about file_index (-1: no file).
    storage::ErrorRecord error_record(const Job& job, storage::ErrorContext context,
                                      std::int64_t code, const std::string& description,
                                      int file_index) const;
    void start_job(Job& job);
    // Stops whatever moves the job's bytes (checkpoint: save its progress).
    void stop_transfer(Job& job, bool checkpoint);
    // mark_opening false: the job is not marked `opening` meanwhile, and a
    // failed open is `then`'s to handle (a negative errno as fd), not the
    // job's failure (a co-fetch's early copy, beside the open that moves
    // its bytes).
    void open_current_partial(Job& job, std::function<void(Job& job, int fd)> then, bool mark_opening = true);
    using OwnerResult = std::function<void(Job& job, int result)>;
    void owner_op(Job& job, const OwnerOp& op, OwnerResult then);
    // Progress: the job's row checkpointed, its subscribers told.
    void checkpoint(Job& job);
    void notify_modification(Job& job, bool state_changed);
    void queue_notification(const std::string& job_id, std::int64_t id, int kind, int file_index);
    // Every job, by id; and a transfer sink to free at the loop's top.
    const std::map<std::string, std::unique_ptr<Job>>& jobs() const { return jobs_; }
    void retire_sink(std::unique_ptr<TransferSink> sink) { retired_sinks_.push_back(std::move(sink)); }
    // Adds n to a usage counter of the job's owner (metrics.h), this month.
    void count_usage(const Job& job, const char* counter, std::uint64_t n);

private:
    // IPC requests, one handler an op (docs/protocol.md).
    void handle(Request& req);
    void op_create(Request& req);
    bool purge_oldest_ended_job(uid_t uid);
    // A reply sent at once or later, when an owner operation completes.
    using Reply = std::function<void(const std::string& body)>;
    void answer_later(const Request& req, const std::function<void(Reply)>& start);
    void op_add_file(Request& req, Job& job);
    void add_file(Job& job, std::int64_t seq, const std::string& url, const std::string& path,
                  const Reply& answer);
    void add_file_checked(Job& job, std::int64_t seq, const storage::FileRecord& f, int rc,
                          bool created, const Reply& answer);
    const Job* destination_holder(const std::string& key) const;
    void op_set(Request& req, Job& job);
    void op_resume(Request& req, Job& job);
    void op_suspend(Request& req, Job& job);
    void op_cancel(Request& req, Job& job);
    void op_complete(Request& req, Job& job);
    void complete(Job& job, std::int64_t seq, const Reply& answer);
    void op_list(Request& req);
    void op_wait(Request& req, Job& job);
    void op_subscribe(Request& req, Job& job);
    void op_unsubscribe(Request& req, Job& job);
    void op_ack(Request& req);
    void op_cache_list(Request& req);
    void op_cache_clear(Request& req);
    void op_peer_stats(Request& req);
    void op_metrics(Request& req);

    // Metrics (metrics.h, agent_metrics.cpp): bytes given to peers sampled
    // into the usage totals, the totals written to the job table, the
    // textfile written, each when due; the gauges one uid may see.
    void metrics_tick(std::int64_t now, bool all_due = false);
    std::int64_t metrics_deadline_ms() const;
    void sample_uploads();
    void count_uploads_from_now();
    MetricsGauges metrics_gauges(uid_t uid) const;
    // Connected peers of every torrent by how they were found, every source
    // named (zeros included); empty when peering is off.
    std::map<std::string, std::uint64_t> peers_by_source() const;
    std::string metrics_text(uid_t uid);

    // Notifications (callbacks): the durable outbox and the modification
    // events of subscribed connections.
    void deliver_notifications();

    // Job life.
    void track_active(Job& job);
    void forget_job(Job& job);
    void schedule();
    void yield_slot(Job& job);  // stops a running job, back to QUEUED
    void start_http_transfer(Job& job, int fd);
    void auto_complete(Job& job);
    int forget_lost_files(Job& job);
    // Owner operations of a job (agent.cpp, "files"): off the main loop,
    // one at a time, in the order asked.
    using OwnerStep = std::function<void(Job& job)>;
    void after_owner_ops(Job& job, OwnerStep step);
    void run_owner_queue(Job& job);
    void open_partial(Job& job, const std::string& path, OwnerResult then, int round = 0);
    using Delivered = std::function<void(Job& job, int err, const std::string& message)>;
    void deliver_files(Job& job, bool only_completed, storage::JobState from_state, Delivered done);
    void deliver_next(Job& job, bool only_completed, storage::JobState from_state, Delivered done);
    void remove_partials(Job& job, OwnerStep then = nullptr);
    void timers();
    void answer_waits();
    void reload_config();
    int next_timeout_ms() const;
    // systemd: the STATUS= text, and idle exit (socket activation only).
    std::string service_status() const;
    bool idle() const;
    void exit_when_idle(std::int64_t now_ms);

    friend struct Job;
    Config config_;
    int lock_fd_ = -1;
    int signal_fd_ = -1;
    bool stopping_ = false;
    std::unique_ptr<storage::JobStore> store_;
    std::unique_ptr<OriginFetcher> fetcher_;
    std::unique_ptr<IpcServer> ipc_;
    std::unique_ptr<ServiceNotifier> notifier_;
    bool socket_activated_ = false;
    std::int64_t idle_since_ms_ = -1;  // -1: not idle
    std::map<std::string, std::unique_ptr<Job>> jobs_;
    std::set<Job*> active_;  // QUEUED, CONNECTING, TRANSFERRING, TRANSIENT_ERROR
    std::map<std::int64_t, Job*> by_seq_;  // every job, in creation order
    std::unordered_multimap<std::string, std::string> destinations_;  // destination_key -> job id
    std::map<ConnId, bool> hello_done_;

    struct PendingWait {
        ConnId conn;
        std::int64_t seq;
        std::string job_id;
        std::int64_t deadline_ms;  // -1: none
    };
    std::vector<PendingWait> waits_;

    // One connection's interest in one job (`subscribe`).
    struct Subscription {
        unsigned notify = 0;            // DOPT_NOTIFY_* bits
        unsigned percent = 1;           // modification throttle
        unsigned seconds = 1;
        std::int64_t last_sent_ms = 0;
        std::uint64_t last_sent_bytes = 0;
    };
    std::map<std::string, std::map<ConnId, Subscription>> subscriptions_;  // by job id

    // A pending outbox entry (mirrors the notifications table).
    struct Outgoing {
        std::int64_t id = 0;
        int kind = 0;
        int file_index = -1;
        ConnId in_flight = 0;           // sent there, awaiting its ack
        unsigned attempts = 0;
        std::int64_t next_attempt_ms = 0;
    };
    std::map<std::string, std::vector<Outgoing>> outbox_;  // by job id, oldest first
    std::unique_ptr<Swarms> swarms_;  // peering: the peer session, torrents, peer cache
    std::vector<std::unique_ptr<TransferSink>> retired_sinks_;  // freed at the loop's top
    std::int64_t next_purge_ms_ = 0;
    bool job_table_failed_ = false;  // a StorageError reached the main loop (timers() recovers)
    std::int64_t last_seq_ = 0;      // creation order of the newest job
    bool schedule_needed_ = false;
    std::unique_ptr<UsageTotals> usage_;
    std::map<std::string, std::int64_t> uploaded_seen_;  // info-hash -> its upload counted so far
    std::int64_t next_usage_write_ms_ = 0;
    std::int64_t next_textfile_ms_ = 0;
    std::string textfile_error_;  // the last one logged, so each is logged once
};

}  // namespace dopt::agent
