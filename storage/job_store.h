// JobStore: the SQLite job table. Every job, its files and its last error
// live here, so jobs survive crashes, restarts and reboots.
//
// Contract:
//  - The database is opened in WAL mode with foreign keys on and a busy
//    timeout; the schema is versioned with PRAGMA user_version and migrated
//    forward on open, from every earlier version.
//  - Each public mutating call is one transaction: it either happens whole or
//    not at all.
//  - set_state() checks the transition table (job_state.h) against the state
//    stored in the database; an illegal transition changes nothing.
//  - Not thread-safe: one JobStore is used by one thread (the agent's main
//    loop). Errors throw StorageError.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "storage/job_state.h"

struct sqlite3;

namespace dopt::storage {

// A job table operation that failed; what() says what was being done and
// what SQLite said.
class StorageError : public std::runtime_error {
public:
    explicit StorageError(const std::string& what, int sqlite_code = 0)
        : std::runtime_error(what), sqlite_code_(sqlite_code) {}
    // SQLite's (extended) result code; 0 when the error is not SQLite's.
    int sqlite_code() const { return sqlite_code_; }
    // SQLite said the disk is full (SQLITE_FULL: it also maps ENOSPC so).
    bool disk_full() const;

private:
    int sqlite_code_;
};

constexpr std::uint64_t kUnknownSize = UINT64_MAX;

struct FileRecord {
    int index = 0;                       // 0-based position in the job
    std::string remote_url;
    std::string local_path;              // absolute final path
    std::string partial_path;            // hidden partial file beside it
    std::uint64_t bytes_total = kUnknownSize;
    // The size the job gave (dopt_job_set_file_size): the origin must send
    // exactly this many bytes (column expected_size, NULL: none given).
    std::uint64_t expected_size = kUnknownSize;
    std::uint64_t bytes_transferred = 0;
    // The prefix of the partial file flushed to stable storage (fdatasync)
    // before this was recorded: all that a resume after a restart trusts (a
    // power cut may leave the file longer, its tail zeros).
    std::uint64_t durable_bytes = 0;
    std::string etag;                    // validators of the bytes we hold
    std::string last_modified;
    std::string sha256;                  // expected, lowercase hex; "" = none
    bool completed = false;              // whole and verified
    // Peering (docs/design.md "Trust"): where this file's metainfo came from:
    // "" not looked for yet, "job" given with the job, "origin" found beside
    // the content, "none" HTTP only.
    std::string metainfo_source;
    std::string metainfo_url;            // a job's metainfo URL, fetched when it starts
    std::string info_hash;               // the torrent (a `cache` entry); "" = none
};

// One torrent in the peer cache (whole or not): its metainfo and what
// libtorrent needs to resume it without a recheck.
struct CacheEntry {
    std::string info_hash;               // lowercase hex
    std::string name;
    std::uint64_t size = 0;
    std::string origin_url;              // where the agent fetched it from
    std::uint32_t owner_uid = 0;         // the user whose job brought it in
    bool complete = false;
    std::int64_t last_used = 0;          // unix seconds; LRU eviction order
    std::string metainfo;                // bencoded
    std::string resume_data;             // bencoded, may be empty
    // The SHA-256 (lowercase hex) the content was verified against and is
    // announced under (docs/design.md "Content identity"); "" = none.
    std::string sha256;
};

struct ErrorRecord {
    ErrorContext context = ErrorContext::None;
    std::int64_t code = 0;               // HTTP status, errno, or DOPT_E_*
    std::string description;
    std::string protocol;                // "http", "https", "peer", ""
    std::int64_t time = 0;               // unix seconds
    int file_index = -1;                 // -1: the error concerns no file
    std::string local_name;
    std::string remote_name;
    std::uint64_t bytes_total = kUnknownSize;
    std::uint64_t bytes_transferred = 0;
};

struct JobRecord {
    std::string id;                      // UUID, lowercase
    std::uint32_t owner_uid = 0;
    std::uint32_t owner_gid = 0;
    std::string display_name;
    Priority priority = Priority::Normal;
    JobState state = JobState::Suspended;
    std::int64_t seq = 0;                // creation order, given by the caller
    std::int64_t created = 0;            // unix seconds
    std::int64_t modified = 0;
    std::int64_t transfer_completed = 0; // 0 = not yet
    std::uint32_t no_progress_timeout = 0;  // seconds; 0 = agent default
    std::uint32_t retry_count = 0;
    bool auto_complete = false;
    std::uint32_t umask = 022;           // the creating client's; files get 0666 & ~umask
    std::vector<std::string> headers;    // "Name: value"
    std::uint64_t bytes_from_origin = 0;
    std::uint64_t bytes_from_peers = 0;
    std::vector<FileRecord> files;       // ordered by index
    std::optional<ErrorRecord> error;    // last fatal error
};

// A durable notification in the outbox (docs/protocol.md, "Notifications"):
// kept until a client acknowledges it with DOPT_OK, or the job is purged.
struct Notification {
    std::int64_t id = 0;                 // increasing: per-job order is id order
    std::string job_id;
    int kind = 0;                        // a DOPT_NOTIFY_* bit
    int file_index = -1;                 // for file_transferred
    std::int64_t created = 0;            // unix seconds
};

// One usage counter of one month (schema v8, `usage`): what the agent's
// metrics report as totals per calendar month (docs/metrics.md).
struct UsageCount {
    std::string month;                   // "YYYY-MM", UTC
    std::int64_t owner_uid = -1;         // the job owner's; -1: the agent's own (bytes to peers)
    std::string counter;                 // e.g. "origin_received_bytes"
    std::uint64_t value = 0;
};

class JobStore {
public:
    // Opens (creating if needed) and migrates the database at `path`. The
    // database and its -wal, -shm and -journal files are set to mode 0600
    // first, whatever mode they had (they hold URLs and header values).
    static std::unique_ptr<JobStore> open(const std::string& path);
    ~JobStore();
    JobStore(const JobStore&) = delete;
    JobStore& operator=(const JobStore&) = delete;

    static int schema_version();         // the version open() migrates to
    // The SQL that takes a database from version - 1 to `version` (1 to
    // schema_version()), as shipped; nullptr for any other version. Tests
    // build databases of older versions with it.
    static const char* migration_sql(int version);

    // Inserts a new job with its files (if any). Throws if the id exists.
    void insert_job(const JobRecord& job);
    std::optional<JobRecord> load_job(const std::string& id);
    // Every job, oldest first (seq, then created, then id).
    std::vector<JobRecord> load_all();

    // Job properties (name, priority, timeout, retry count, auto_complete,
    // headers, byte counters, modified). State, files and error untouched.
    void update_job(const JobRecord& job);

    // State changes. Each moves the job from the state stored in the
    // database to `to`, in one transaction, stamping `modified = now` (and
    // transfer_completed when `to` is Transferred), and returns false (or
    // nullopt), changing nothing, when the job does not exist or the
    // transition is illegal (job_state.h).
    //
    // The state alone; the job's error record is untouched.
    bool set_state(const std::string& id, JobState to, std::int64_t now);
    // The state, and the job's error record is deleted.
    bool set_state_clearing_error(const std::string& id, JobState to, std::int64_t now);
    // The state, and an outbox notification of `notify_kind` (not 0) is
    // added: its id.
    std::optional<std::int64_t> set_state_notifying(const std::string& id, JobState to,
                                                    std::int64_t now, int notify_kind);
    // To Error, with `error` replacing the job's error record.
    bool set_error(const std::string& id, const ErrorRecord& error, std::int64_t now);
    // set_error(), and an outbox notification of `notify_kind` (not 0) is
    // added: its id.
    std::optional<std::int64_t> set_error_notifying(const std::string& id, const ErrorRecord& error,
                                                    std::int64_t now, int notify_kind);

    void add_file(const std::string& job_id, const FileRecord& file);
    // Size, progress, durable prefix, validators, sha256, completed flag and partial path
    // ("" once delivered or removed) of one file.
    // With `notify_kind` not 0, adds an outbox notification for this file in
    // the same transaction and returns its id (else 0).
    std::int64_t update_file(const std::string& job_id, const FileRecord& file,
                             int notify_kind = 0, std::int64_t now = 0);

    // The outbox: every pending notification, oldest first; removal once a
    // client acknowledged it.
    std::vector<Notification> load_notifications();
    void delete_notification(std::int64_t id);

    // The peer cache index: insert or replace one entry; every entry, least
    // recently used first; remove one.
    void put_cache_entry(const CacheEntry& entry);
    std::vector<CacheEntry> load_cache();
    void delete_cache_entry(const std::string& info_hash);

    // Usage totals: adds each count to its (month, owner, counter) row in
    // one transaction; every row, oldest month first.
    void add_usage(const std::vector<UsageCount>& counts);
    std::vector<UsageCount> load_usage();

    void delete_job(const std::string& id);
    // Deletes ACKNOWLEDGED/CANCELLED jobs modified before `before`; returns
    // how many went.
    int purge_ended(std::int64_t before);

    sqlite3* handle() { return db_; }    // for tests

private:
    // The state changes above: `error` (when not null) replaces the error
    // record, clear_error deletes it, notify_kind (not 0) adds an outbox
    // notification whose id *notification_id gets.
    bool change_state(const std::string& id, JobState to, std::int64_t now, const ErrorRecord* error,
                      bool clear_error, int notify_kind, std::int64_t* notification_id);
    struct Statements;                   // prepared statements, job_store.cpp

    explicit JobStore(sqlite3* db);
    void insert_files_and_headers(const JobRecord& job);
    std::int64_t insert_notification(const std::string& job_id, int kind, int file_index,
                                     std::int64_t now);
    void replace_headers(const std::string& job_id,
                         const std::vector<std::string>& headers);

    sqlite3* db_;
    std::unique_ptr<Statements> statements_;  // prepared once, at open
};

}  // namespace dopt::storage
