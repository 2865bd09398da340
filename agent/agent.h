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
#include "agent/origin_fetcher.h"
#include "agent/owner_files.h"
#include "storage/job_store.h"

namespace dopt::p2p {
class TorrentSession;
struct TorrentEvent;
struct ContentEvent;
struct TorrentPeer;
struct Claim;
struct SwarmPeer;
struct OriginPlanInput;
struct MetainfoSummary;
}

namespace dopt::agent {

class Agent : public IpcHandler {
public:
    // Takes the state lock, opens the job table, binds the socket and loads
    // every job. Throws std::runtime_error when any of that fails.
    explicit Agent(const Config& config);
    ~Agent() override;
    Agent(const Agent&) = delete;
    Agent& operator=(const Agent&) = delete;

    // Runs until SIGTERM or SIGINT (graceful: transfers stopped, progress
    // persisted, partial files kept). SIGHUP reloads the config file.
    // The caller must have blocked SIGTERM, SIGINT and SIGHUP in every thread.
    int run();

    void on_request(ConnId conn, const PeerCred& peer, const std::string& body) override;
    void on_close(ConnId conn) override;

    struct Job;       // a job and its runtime state (agent.cpp)
    struct Request;   // one decoded IPC request
    struct Swarm;       // a torrent in the peer session (agent_internal.h)
    struct OriginPiece; // an origin request for one piece

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

    // Notifications (callbacks): the durable outbox and the modification
    // events of subscribed connections.
    void queue_notification(const std::string& job_id, std::int64_t id, int kind, int file_index);
    void deliver_notifications();
    void notify_modification(Job& job, bool state_changed);

    // Job life.
    bool change_state(Job& job, storage::JobState to);
    void track_active(Job& job);
    void forget_job(Job& job);
    void schedule();
    void yield_slot(Job& job);  // stops a running job, back to QUEUED
    void start_job(Job& job);
    void open_current_partial(Job& job, void (Agent::*then)(Job& job, int fd));
    void start_http_transfer(Job& job, int fd);
    void auto_complete(Job& job);
    void stop_transfer(Job& job, bool checkpoint);
    void fail(Job& job, storage::ErrorContext context, std::int64_t code, const std::string& description,
              int file_index);
    // Records `outcome` (transient) as the job's last transient error and
    // retries after a backoff, or fails the job when it made no progress
    // for its no-progress timeout.
    void transient_failure(Job& job, const TransferOutcome& outcome);
    // An error record of the job, about file_index (-1: no file).
    storage::ErrorRecord error_record(const Job& job, storage::ErrorContext context,
                                      std::int64_t code, const std::string& description,
                                      int file_index) const;
    void fail_no_progress(Job& job, const std::string& last_failure);
    int forget_lost_files(Job& job);
    // Owner operations of a job (agent.cpp, "files"): off the main loop,
    // one at a time, in the order asked.
    using OwnerStep = std::function<void(Job& job)>;
    using OwnerResult = std::function<void(Job& job, int result)>;
    void after_owner_ops(Job& job, OwnerStep step);
    void owner_op(Job& job, const OwnerOp& op, OwnerResult then);
    void run_owner_queue(Job& job);
    void open_partial(Job& job, const std::string& path, OwnerResult then, int round = 0);
    using Delivered = std::function<void(Job& job, int err, const std::string& message)>;
    void deliver_files(Job& job, bool only_completed, storage::JobState from_state, Delivered done);
    void deliver_next(Job& job, bool only_completed, storage::JobState from_state, Delivered done);
    void remove_partials(Job& job, OwnerStep then = nullptr);
    void checkpoint(Job& job);
    void timers();
    void answer_waits();
    void reload_config();
    int next_timeout_ms() const;

    // Peering (agent_swarm.cpp): metainfo discovery, the torrents, origin
    // pieces, writing verified pieces into partial files, the peer cache.
    void start_peering();
    void stop_peering();
    bool start_file_with_peers(Job& job);
    void on_metainfo_fetched(Job& job, const TransferOutcome& outcome, long status,
                             std::string bytes);
    void remember_metainfo(const Job& job, const storage::FileRecord& f,
                           const p2p::MetainfoSummary& meta, const std::string& bytes);
    void use_http_only(Job& job, const std::string& why);
    void drop_unwanted_cache_entry(const std::string& info_hash);
    bool wanted_by_unfinished_job(const std::string& info_hash, const Job* except = nullptr) const;
    void remove_orphan_cache_folders();
    void attach_swarm(Job& job);
    void join_swarm(Job& job, int fd);
    void detach_swarm(Job& job, bool cancelled);
    Swarm* add_swarm(const storage::CacheEntry& entry);
    void remove_swarm(Swarm& swarm, bool delete_files);
    void pump_swarm(Swarm& swarm);
    void fetch_origin_pieces(Swarm& swarm);
    // The steps of fetch_origin_pieces.
    struct SwarmView;  // the swarm's peers as one pump sees them (agent_internal.h)
    std::vector<p2p::Claim> others_claims(Swarm& swarm);
    void track_peers(Swarm& swarm, const std::vector<p2p::TorrentPeer>& peers, std::int64_t now_ms);
    void yield_doubly_claimed_pieces(Swarm& swarm, const std::vector<p2p::Claim>& claims, std::int64_t now_ms);
    std::vector<p2p::SwarmPeer> plan_peers(Swarm& swarm, std::int64_t now_ms, SwarmView& view);
    p2p::OriginPlanInput origin_plan_input(Swarm& swarm, const std::vector<p2p::Claim>& claims,
                                           std::int64_t now_ms, SwarmView& view);
    std::vector<bool> busy_pieces(Swarm& swarm, const std::vector<p2p::Claim>& claims,
                                  const std::set<std::string>& failing, bool stalled);
    void start_origin_piece(Swarm& swarm, int piece, std::int64_t now_ms);
    void log_claims_held_over(Swarm& swarm);
    void on_origin_piece_done(OriginPiece& piece, const TransferOutcome& outcome);
    // What the peer session reports (agent_swarm.cpp "peer session events").
    struct SwarmsToPump {
        std::set<Swarm*> swarms;
        bool evict = false;  // the peer cache grew: evict_cache()
    };
    void handle_peer_events();
    Swarm* swarm_of(std::uint64_t torrent);
    void keep_resume_data(Swarm& swarm, const std::vector<char>& resume_data);
    void log_peer_event(const p2p::TorrentEvent& event);
    void on_torrent_event(Swarm& swarm, const p2p::TorrentEvent& event, SwarmsToPump& to_pump);
    void on_piece_verified(Swarm& swarm, int piece);
    bool on_piece_hash_failed(Swarm& swarm, int piece);
    void on_torrent_finished(Swarm& swarm);
    void swarm_tick(Swarm& swarm, std::int64_t now_ms);
    void write_piece(Swarm& swarm, int piece, const char* data, std::size_t len);
    bool copy_piece_from_cache(Swarm& swarm, int piece);
    bool deliver_piece(Swarm& swarm, int piece, const std::function<int(Job& job, off_t off, std::size_t len)>& put);
    void finish_swarm_file(Job& job);
    void origin_does_not_match(Swarm& swarm, Job& job, const std::string& why);
    void drop_origin_pieces(Swarm& swarm, const Job* only = nullptr);
    Job& next_origin_job(Swarm& swarm);
    void fail_swarm_users(Swarm& swarm, storage::ErrorContext context, std::int64_t code, const std::string& why);
    void evict_cache();
    std::vector<std::string> cache_entries_to_drop() const;
    std::uint64_t cache_limit() const;
    bool wanted_by_active_job(const std::string& info_hash) const;
    bool holds_metainfo_a_job_gave(const std::string& info_hash) const;
    void forget_cached_content(const std::string& info_hash);
    void remove_cached_content(const std::string& info_hash);  // its torrent, or its entry and folder

    // Content identity (agent_content.cpp, docs/design.md): a file with a
    // SHA-256 and no metainfo looks for LAN holders, and is seeded under its
    // SHA-256 once fetched from the origin.
    struct ContentLookup;  // agent_internal.h
    bool look_up_content(Job& job);
    bool use_cached_content(Job& job);
    void leave_content(Job& job, bool stay = false);
    void handle_content_events();
    void on_holder_found(const p2p::ContentEvent& event);
    void on_wanters_changed(const p2p::ContentEvent& event);
    void on_content_metadata(std::uint64_t torrent);
    void content_tick(std::int64_t now_ms);
    void fetch_content_from_origin(const std::string& sha256, const std::string& why);
    void seed_content(Job& job, int fd);
    bool seed_into_cache(Job& job, int fd);
    std::string copy_into_cache(const storage::FileRecord& f, int fd);
    void content_proven(Job& job, std::uint64_t torrent);
    void drop_content_mapping(const std::string& info_hash, const std::string& why);
    std::map<std::string, std::unique_ptr<ContentLookup>> content_lookups_;  // by SHA-256
    // SHA-256 -> this agent's jobs fetching it from the origin after a
    // lookup: it stays on the rendezvous as a wanter until one is seeded.
    std::map<std::string, int> content_origin_fetches_;
    // Info-hash -> addresses of the peers that said "X is this info-hash":
    // banned when the mapping proves false.
    std::map<std::string, std::set<std::string>> content_announcers_;
    std::set<std::string> false_mappings_;  // info-hashes proven not to be their X

    friend struct Job;
    // A job left unfinished content (suspend, error): evict_cache() on the
    // next pass of handle_peer_events, not inside the caller's loops.
    bool evict_pending_ = false;
    Config config_;
    int lock_fd_ = -1;
    int signal_fd_ = -1;
    bool stopping_ = false;
    std::unique_ptr<storage::JobStore> store_;
    std::unique_ptr<OriginFetcher> fetcher_;
    std::unique_ptr<IpcServer> ipc_;
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
    std::unique_ptr<p2p::TorrentSession> peers_;  // null when peering is off
    std::map<std::string, std::unique_ptr<Swarm>> swarms_;  // by info-hash
    std::map<std::string, storage::CacheEntry> cache_;      // the cache index, by info-hash
    std::vector<std::string> static_peer_ips_;              // [p2p] peers, addresses only
    std::string self_address_;  // [p2p] listen's address ("" when unspecified)
    std::vector<std::unique_ptr<TransferSink>> retired_sinks_;  // freed at the loop's top
    std::vector<std::unique_ptr<OriginPiece>> origin_pieces_;   // in flight
    std::int64_t next_swarm_tick_ms_ = 0;
    std::int64_t next_purge_ms_ = 0;
    bool job_table_failed_ = false;  // a StorageError reached the main loop (timers() recovers)
    std::int64_t last_seq_ = 0;      // creation order of the newest job
    bool schedule_needed_ = false;
};

}  // namespace dopt::agent
