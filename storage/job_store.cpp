// JobStore on SQLite's C API. See job_store.h for the contract and README.md
// for how to add a schema migration.
#include "storage/job_store.h"

#include <sqlite3.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <unordered_map>

#include "common/crash_point.h"

namespace dopt::storage {

bool StorageError::disk_full() const { return (sqlite_code_ & 0xff) == SQLITE_FULL; }
namespace {

constexpr int kBusyTimeoutMs = 5000;

// How many values each stored enum has (job_state.h); anything else in a
// column means the database was written by something else, and is refused.
constexpr int kPriorityCount = 4;
constexpr int kStateCount = 9;
constexpr int kContextCount = 7;

// ---------------------------------------------------------------------------
// Schema migrations. kMigrations[i] takes a database from user_version i to
// i + 1, in one transaction. A migration that has shipped is never edited:
// change the schema by appending a new one (README.md says how).

// v1: the initial tables. Sizes that are not known yet are NULL.
constexpr const char* kSchemaV1 = R"sql(
CREATE TABLE jobs (
    id                  TEXT PRIMARY KEY NOT NULL,
    owner_uid           INTEGER NOT NULL,
    owner_gid           INTEGER NOT NULL,
    display_name        TEXT NOT NULL DEFAULT '',
    priority            INTEGER NOT NULL,
    state               INTEGER NOT NULL,
    created             INTEGER NOT NULL,
    modified            INTEGER NOT NULL,
    transfer_completed  INTEGER NOT NULL DEFAULT 0,
    no_progress_timeout INTEGER NOT NULL DEFAULT 0,
    retry_count         INTEGER NOT NULL DEFAULT 0,
    bytes_from_origin   INTEGER NOT NULL DEFAULT 0,
    bytes_from_peers    INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE job_headers (
    job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    idx    INTEGER NOT NULL,
    header TEXT NOT NULL,
    PRIMARY KEY (job_id, idx)
) WITHOUT ROWID;
CREATE TABLE files (
    job_id            TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    idx               INTEGER NOT NULL,
    remote_url        TEXT NOT NULL,
    local_path        TEXT NOT NULL,
    partial_path      TEXT NOT NULL DEFAULT '',
    bytes_total       INTEGER,
    bytes_transferred INTEGER NOT NULL DEFAULT 0,
    etag              TEXT NOT NULL DEFAULT '',
    last_modified     TEXT NOT NULL DEFAULT '',
    sha256            TEXT NOT NULL DEFAULT '',
    completed         INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, idx)
) WITHOUT ROWID;
CREATE TABLE errors (
    job_id            TEXT PRIMARY KEY NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    context           INTEGER NOT NULL,
    code              INTEGER NOT NULL,
    description       TEXT NOT NULL,
    protocol          TEXT NOT NULL DEFAULT '',
    time              INTEGER NOT NULL,
    file_index        INTEGER NOT NULL DEFAULT -1,
    local_name        TEXT NOT NULL DEFAULT '',
    remote_name       TEXT NOT NULL DEFAULT '',
    bytes_total       INTEGER,
    bytes_transferred INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
)sql";

// v2: auto-complete jobs (`dopt get`), and an index for the queries that
// select by state: purge_ended() (ended jobs older than a cutoff) and the
// scheduler's scan for runnable jobs. v1 jobs had no auto-complete: they
// waited for the client's Complete, so 0 keeps their behaviour.
constexpr const char* kSchemaV2 = R"sql(
ALTER TABLE jobs ADD COLUMN auto_complete INTEGER NOT NULL DEFAULT 0;
CREATE INDEX jobs_by_state ON jobs(state, modified);
)sql";

// v3: the notification outbox. A row is written in the same transaction as
// the state change it reports and deleted when a client acknowledges it.
// And `seq`, the creation order (`created` has one-second resolution); jobs
// from v2 keep their (created, id) order through it.
constexpr const char* kSchemaV3 = R"sql(
ALTER TABLE jobs ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
UPDATE jobs SET seq = (SELECT count(*) FROM jobs AS older
                       WHERE older.created < jobs.created
                          OR (older.created = jobs.created AND older.id <= jobs.id));
CREATE TABLE notifications (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id     TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    kind       INTEGER NOT NULL,
    file_index INTEGER NOT NULL DEFAULT -1,
    created    INTEGER NOT NULL
);
CREATE INDEX notifications_by_job ON notifications(job_id, id);
)sql";

// v4: peering. Each file records where its metainfo came from and the
// torrent it belongs to; `cache` is the peer cache index: one row a torrent
// (its metainfo, libtorrent's resume data, and what the LRU eviction needs).
constexpr const char* kSchemaV4 = R"sql(
ALTER TABLE files ADD COLUMN metainfo_source TEXT NOT NULL DEFAULT '';
ALTER TABLE files ADD COLUMN metainfo_url TEXT NOT NULL DEFAULT '';
ALTER TABLE files ADD COLUMN info_hash TEXT NOT NULL DEFAULT '';
CREATE TABLE cache (
    info_hash   TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    size        INTEGER NOT NULL,
    origin_url  TEXT NOT NULL,
    owner_uid   INTEGER NOT NULL,
    complete    INTEGER NOT NULL DEFAULT 0,
    last_used   INTEGER NOT NULL,
    metainfo    BLOB NOT NULL,
    resume_data BLOB
) WITHOUT ROWID;
)sql";

// v5: the umask of the client that created the job; its files are created
// 0666 & ~umask. Jobs from before keep the 0644 they always had (umask 022).
constexpr const char* kSchemaV5 = R"sql(
ALTER TABLE jobs ADD COLUMN umask INTEGER NOT NULL DEFAULT 18;
)sql";

// v6: how much of each partial file was flushed to stable storage: a resume
// trusts that prefix only. Rows from before were never flushed mid-transfer:
// 0, their unfinished files are fetched again from the start.
constexpr const char* kSchemaV6 = R"sql(
ALTER TABLE files ADD COLUMN durable_bytes INTEGER NOT NULL DEFAULT 0;
)sql";

// v7: the SHA-256 a cached torrent's content was verified against, when
// it is seeded under it (content identity): announced again after a
// restart. Entries from before have none.
constexpr const char* kSchemaV7 = R"sql(
ALTER TABLE cache ADD COLUMN sha256 TEXT NOT NULL DEFAULT '';
)sql";

// v8: usage totals per calendar month, owner and counter (bytes from the
// origin and from peers, bytes to peers, origin requests, errors by
// context), so the metrics' counters and month totals outlive a restart.
// Nothing was counted before: no rows.
constexpr const char* kSchemaV8 = R"sql(
CREATE TABLE usage (
    month     TEXT    NOT NULL,
    owner_uid INTEGER NOT NULL,
    counter   TEXT    NOT NULL,
    value     INTEGER NOT NULL,
    PRIMARY KEY (month, owner_uid, counter)
) WITHOUT ROWID;
)sql";

// v9: the size a job gave for a file (dopt_job_set_file_size), so the
// check that the origin sends exactly that many bytes outlives a restart.
// NULL: none given (every row from before).
constexpr const char* kSchemaV9 = R"sql(
ALTER TABLE files ADD COLUMN expected_size INTEGER;
)sql";

constexpr std::array<const char*, 9> kMigrations = {kSchemaV1, kSchemaV2, kSchemaV3,
                                                    kSchemaV4, kSchemaV5, kSchemaV6,
                                                    kSchemaV7, kSchemaV8, kSchemaV9};
constexpr int kSchemaVersion = static_cast<int>(kMigrations.size());

// ---------------------------------------------------------------------------
// Thin RAII over the C API. Every failure becomes a StorageError that says
// what was being done and what SQLite said.

[[noreturn]] void fail(const std::string& what, const char* sqlite_message, int sqlite_code = 0) {
    throw StorageError("job store: " + what + ": " + sqlite_message, sqlite_code);
}

void exec(sqlite3* db, const char* sql, const std::string& what) {
    char* message = nullptr;
    const int rc = sqlite3_exec(db, sql, nullptr, nullptr, &message);
    if (rc != SQLITE_OK) {
        std::string text = message ? message : sqlite3_errmsg(db);
        sqlite3_free(message);
        fail(what, text.c_str(), rc);
    }
}

// A statement prepared once and kept until the store closes.
class PreparedStatement {
public:
    PreparedStatement(sqlite3* db, const char* sql) : db_(db) {
        if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt_,
                               nullptr) != SQLITE_OK) {
            fail(std::string("preparing \"") + sql + "\"", sqlite3_errmsg(db),
                 sqlite3_extended_errcode(db));
        }
    }
    ~PreparedStatement() { sqlite3_finalize(stmt_); }
    PreparedStatement(const PreparedStatement&) = delete;
    PreparedStatement& operator=(const PreparedStatement&) = delete;

    sqlite3* db() const { return db_; }
    sqlite3_stmt* get() const { return stmt_; }

private:
    sqlite3* db_;
    sqlite3_stmt* stmt_ = nullptr;
};

// One execution of a prepared statement: parameters are bound in order, and
// the statement is reset when the Query goes out of scope, ready for reuse.
// `what` must be a string literal (it is kept, not copied).
class Query {
public:
    Query(const PreparedStatement& statement, const char* what)
        : db_(statement.db()), stmt_(statement.get()), what_(what) {}
    ~Query() {
        sqlite3_reset(stmt_);
        sqlite3_clear_bindings(stmt_);
    }
    Query(const Query&) = delete;
    Query& operator=(const Query&) = delete;

    Query& bind(std::int64_t value) {
        check(sqlite3_bind_int64(stmt_, next_parameter_++, value));
        return *this;
    }
    Query& bind_blob(const std::string& value) {
        check(sqlite3_bind_blob(stmt_, next_parameter_++, value.data(),
                                static_cast<int>(value.size()), SQLITE_TRANSIENT));
        return *this;
    }
    Query& bind(const std::string& value) {
        check(sqlite3_bind_text(stmt_, next_parameter_++, value.data(),
                                static_cast<int>(value.size()), SQLITE_TRANSIENT));
        return *this;
    }
    // Byte counts: kUnknownSize is stored as NULL.
    Query& bind_size(std::uint64_t value) {
        if (value == kUnknownSize) {
            check(sqlite3_bind_null(stmt_, next_parameter_++));
            return *this;
        }
        return bind(static_cast<std::int64_t>(value));
    }

    // True with a row to read; false when the statement is done.
    bool next_row() {
        const int rc = sqlite3_step(stmt_);
        if (rc == SQLITE_ROW) return true;
        if (rc == SQLITE_DONE) return false;
        fail(what_, sqlite3_errmsg(db_), rc);
    }
    // Runs a statement that returns no rows; returns how many rows it changed.
    int run() {
        while (next_row()) {
        }
        return sqlite3_changes(db_);
    }

    std::int64_t integer(int column) const { return sqlite3_column_int64(stmt_, column); }
    std::string text(int column) const {
        const auto* bytes = sqlite3_column_text(stmt_, column);
        if (!bytes) return {};
        return std::string(reinterpret_cast<const char*>(bytes),
                           static_cast<std::size_t>(sqlite3_column_bytes(stmt_, column)));
    }
    std::string blob(int column) const {
        const void* bytes = sqlite3_column_blob(stmt_, column);
        if (!bytes) return {};
        return std::string(static_cast<const char*>(bytes),
                           static_cast<std::size_t>(sqlite3_column_bytes(stmt_, column)));
    }
    std::uint64_t size(int column) const {
        if (sqlite3_column_type(stmt_, column) == SQLITE_NULL) return kUnknownSize;
        return static_cast<std::uint64_t>(integer(column));
    }

private:
    void check(int rc) {
        if (rc != SQLITE_OK) fail(what_, sqlite3_errmsg(db_), rc);
    }

    sqlite3* db_;
    sqlite3_stmt* stmt_;
    const char* what_;
    int next_parameter_ = 1;
};

// BEGIN (IMMEDIATE for writers, so the read-check-write in set_state cannot
// be overtaken by another connection); rolled back unless committed.
class Transaction {
public:
    enum class Kind { Read, Write };
    Transaction(sqlite3* db, Kind kind) : db_(db) {
        exec(db, kind == Kind::Write ? "BEGIN IMMEDIATE" : "BEGIN", "starting a transaction");
    }
    ~Transaction() {
        if (open_) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    }
    Transaction(const Transaction&) = delete;
    Transaction& operator=(const Transaction&) = delete;

    void commit() {
        exec(db_, "COMMIT", "committing a transaction");
        open_ = false;
    }

private:
    sqlite3* db_;
    bool open_ = true;
};

// ---------------------------------------------------------------------------
// Opening and migrating.

struct CloseDatabase {
    void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
using DatabaseHandle = std::unique_ptr<sqlite3, CloseDatabase>;

// The value a pragma returns, as text. `what` names the pragma and the file.
std::string pragma_text(sqlite3* db, const char* sql, const std::string& what) {
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr) != SQLITE_OK) {
        fail(what, sqlite3_errmsg(db));
    }
    const int rc = sqlite3_step(stmt);
    std::string value;
    if (rc == SQLITE_ROW && sqlite3_column_text(stmt, 0)) {
        value = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
    }
    sqlite3_finalize(stmt);
    if (rc != SQLITE_ROW) fail(what, rc == SQLITE_DONE ? "no value" : sqlite3_errmsg(db), rc);
    return value;
}

std::int64_t pragma_integer(sqlite3* db, const char* sql, const std::string& what) {
    return std::stoll(pragma_text(db, sql, what));
}

// The job table holds URLs and header values (tokens, API keys): the
// database and its side files are made readable and writable by the agent's
// user only (0600), whatever mode they had (an older agent left 0644) and
// whatever the umask. The database is created here, before SQLite opens it,
// because SQLite creates -wal, -shm and -journal with the database's mode.
// Links are not followed. Throws when a file cannot be made private.
void make_private(const std::string& path) {
    for (const char* suffix : {"", "-wal", "-shm", "-journal"}) {
        const std::string file = path + suffix;
        const int create = suffix[0] == '\0' ? O_CREAT : 0;
        int fd = ::open(file.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC | create, 0600);
        if (fd < 0 && errno == ENOENT && create == 0) continue;
        if (fd < 0) fail("making " + file + " private to the agent", std::strerror(errno));
        struct stat st{};
        int rc = ::fstat(fd, &st);
        if (rc == 0 && S_ISREG(st.st_mode) && (st.st_mode & 07777) != 0600) rc = ::fchmod(fd, 0600);
        int err = errno;
        ::close(fd);
        if (rc != 0) fail("making " + file + " private to the agent (mode 0600)", std::strerror(err));
    }
}

// WAL: readers never block the writer and a commit is one append.
// synchronous=NORMAL: in WAL mode a commit does not fsync (checkpoints do), so
// a crash of the process — kill -9 included — never loses or corrupts a
// committed transaction; a power loss or OS crash may lose the last few
// commits but still leaves a consistent database.
void configure(sqlite3* db, const std::string& path) {
    sqlite3_extended_result_codes(db, 1);
    if (sqlite3_busy_timeout(db, kBusyTimeoutMs) != SQLITE_OK) {
        fail("setting the busy timeout of " + path, sqlite3_errmsg(db));
    }
    const std::string wal_step = "switching " + path + " to WAL mode";
    if (pragma_text(db, "PRAGMA journal_mode = WAL", wal_step) != "wal") {
        fail(wal_step, "SQLite kept another journal mode");
    }
    exec(db, "PRAGMA synchronous = NORMAL", "setting synchronous=NORMAL on " + path);
    exec(db, "PRAGMA foreign_keys = ON", "enabling foreign keys on " + path);
    if (pragma_integer(db, "PRAGMA foreign_keys", "checking foreign keys on " + path) != 1) {
        fail("enabling foreign keys on " + path, "this SQLite has no foreign key support");
    }
}

// Applies every migration the database lacks, each in its own transaction
// together with its user_version bump. Refuses a database whose version is
// newer than this code: running old code on it could lose data.
void migrate(sqlite3* db, const std::string& path) {
    for (;;) {
        Transaction transaction(db, Transaction::Kind::Write);
        const auto version = pragma_integer(db, "PRAGMA user_version",
                                            "reading the schema version of " + path);
        if (version > kSchemaVersion) {
            throw StorageError("job store: " + path + " has schema version " +
                               std::to_string(version) + ", newer than this dopt knows (" +
                               std::to_string(kSchemaVersion) +
                               "); refusing to open it. Run a newer doptd.");
        }
        if (version < 0) {
            throw StorageError("job store: " + path + " has an invalid schema version " +
                               std::to_string(version) + "; refusing to open it.");
        }
        if (version == kSchemaVersion) return;  // nothing written: rollback is fine
        const std::string step = "migrating " + path + " to schema version " +
                                 std::to_string(version + 1);
        exec(db, kMigrations[static_cast<std::size_t>(version)], step);
        exec(db, ("PRAGMA user_version = " + std::to_string(version + 1)).c_str(), step);
        transaction.commit();
    }
}

// ---------------------------------------------------------------------------
// Rows <-> records. Column lists are shared by the single-job and all-jobs
// queries so the readers below have one layout to follow.

#define DOPT_JOB_COLUMNS                                                        \
    "id, owner_uid, owner_gid, display_name, priority, state, created, "       \
    "modified, transfer_completed, no_progress_timeout, retry_count, "         \
    "auto_complete, bytes_from_origin, bytes_from_peers, seq, umask"
#define DOPT_FILE_COLUMNS                                                       \
    "job_id, idx, remote_url, local_path, partial_path, bytes_total, "         \
    "bytes_transferred, etag, last_modified, sha256, completed, metainfo_source, " \
    "metainfo_url, info_hash, durable_bytes, expected_size"
#define DOPT_ERROR_COLUMNS                                                      \
    "job_id, context, code, description, protocol, time, file_index, "         \
    "local_name, remote_name, bytes_total, bytes_transferred"
#define DOPT_HEADER_COLUMNS "job_id, idx, header"
#define DOPT_CACHE_COLUMNS \
    "info_hash, name, size, origin_url, owner_uid, complete, last_used, metainfo, resume_data, sha256"

template <typename Enum>
Enum enum_from_column(std::int64_t value, int count, const char* what, const std::string& id) {
    if (value < 0 || value >= count) {
        throw StorageError("job store: job " + id + " has an unknown " + what + " (" +
                           std::to_string(value) + ")");
    }
    return static_cast<Enum>(value);
}

JobRecord read_job(const Query& row) {
    JobRecord job;
    job.id = row.text(0);
    job.owner_uid = static_cast<std::uint32_t>(row.integer(1));
    job.owner_gid = static_cast<std::uint32_t>(row.integer(2));
    job.display_name = row.text(3);
    job.priority = enum_from_column<Priority>(row.integer(4), kPriorityCount, "priority", job.id);
    job.state = enum_from_column<JobState>(row.integer(5), kStateCount, "state", job.id);
    job.created = row.integer(6);
    job.modified = row.integer(7);
    job.transfer_completed = row.integer(8);
    job.no_progress_timeout = static_cast<std::uint32_t>(row.integer(9));
    job.retry_count = static_cast<std::uint32_t>(row.integer(10));
    job.auto_complete = row.integer(11) != 0;
    job.bytes_from_origin = static_cast<std::uint64_t>(row.integer(12));
    job.bytes_from_peers = static_cast<std::uint64_t>(row.integer(13));
    job.seq = row.integer(14);
    job.umask = static_cast<std::uint32_t>(row.integer(15)) & 0777u;
    return job;
}

// Column 0 (job_id) is read by the caller.
FileRecord read_file(const Query& row) {
    FileRecord file;
    file.index = static_cast<int>(row.integer(1));
    file.remote_url = row.text(2);
    file.local_path = row.text(3);
    file.partial_path = row.text(4);
    file.bytes_total = row.size(5);
    file.bytes_transferred = static_cast<std::uint64_t>(row.integer(6));
    file.etag = row.text(7);
    file.last_modified = row.text(8);
    file.sha256 = row.text(9);
    file.completed = row.integer(10) != 0;
    file.metainfo_source = row.text(11);
    file.metainfo_url = row.text(12);
    file.info_hash = row.text(13);
    file.durable_bytes = static_cast<std::uint64_t>(row.integer(14));
    file.expected_size = row.size(15);
    return file;
}

// Column 0 (job_id) is read by the caller.
ErrorRecord read_error(const Query& row) {
    ErrorRecord error;
    const std::string id = row.text(0);
    error.context = enum_from_column<ErrorContext>(row.integer(1), kContextCount, "error context", id);
    error.code = row.integer(2);
    error.description = row.text(3);
    error.protocol = row.text(4);
    error.time = row.integer(5);
    error.file_index = static_cast<int>(row.integer(6));
    error.local_name = row.text(7);
    error.remote_name = row.text(8);
    error.bytes_total = row.size(9);
    error.bytes_transferred = static_cast<std::uint64_t>(row.integer(10));
    return error;
}

}  // namespace

// Every statement the store runs, prepared once at open.
struct JobStore::Statements {
    explicit Statements(sqlite3* db)
        : insert_job(db, "INSERT INTO jobs (" DOPT_JOB_COLUMNS ") "
                         "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
          insert_header(db, "INSERT INTO job_headers (" DOPT_HEADER_COLUMNS ") VALUES (?, ?, ?)"),
          delete_headers(db, "DELETE FROM job_headers WHERE job_id = ?"),
          insert_file(db, "INSERT INTO files (" DOPT_FILE_COLUMNS ") "
                          "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
          replace_error(db, "INSERT OR REPLACE INTO errors (" DOPT_ERROR_COLUMNS ") "
                            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
          delete_error(db, "DELETE FROM errors WHERE job_id = ?"),
          select_job(db, "SELECT " DOPT_JOB_COLUMNS " FROM jobs WHERE id = ?"),
          select_headers(db, "SELECT " DOPT_HEADER_COLUMNS " FROM job_headers "
                             "WHERE job_id = ? ORDER BY idx"),
          select_files(db, "SELECT " DOPT_FILE_COLUMNS " FROM files WHERE job_id = ? ORDER BY idx"),
          select_error(db, "SELECT " DOPT_ERROR_COLUMNS " FROM errors WHERE job_id = ?"),
          select_all_jobs(db, "SELECT " DOPT_JOB_COLUMNS " FROM jobs ORDER BY seq, created, id"),
          select_all_headers(db, "SELECT " DOPT_HEADER_COLUMNS " FROM job_headers "
                                 "ORDER BY job_id, idx"),
          select_all_files(db, "SELECT " DOPT_FILE_COLUMNS " FROM files ORDER BY job_id, idx"),
          select_all_errors(db, "SELECT " DOPT_ERROR_COLUMNS " FROM errors"),
          update_job(db, "UPDATE jobs SET display_name = ?, priority = ?, "
                         "no_progress_timeout = ?, retry_count = ?, auto_complete = ?, "
                         "bytes_from_origin = ?, bytes_from_peers = ?, modified = ? "
                         "WHERE id = ?"),
          select_state(db, "SELECT state FROM jobs WHERE id = ?"),
          // ?1 state, ?2 now, ?3 id, ?4 whether to stamp transfer_completed.
          update_state(db, "UPDATE jobs SET state = ?1, modified = ?2, "
                           "transfer_completed = CASE WHEN ?4 THEN ?2 "
                           "ELSE transfer_completed END WHERE id = ?3"),
          update_file(db, "UPDATE files SET bytes_total = ?, bytes_transferred = ?, "
                          "etag = ?, last_modified = ?, sha256 = ?, completed = ?, "
                          "metainfo_source = ?, metainfo_url = ?, info_hash = ?, partial_path = ?, "
                          "durable_bytes = ?, expected_size = ? "
                          "WHERE job_id = ? AND idx = ?"),
          delete_job(db, "DELETE FROM jobs WHERE id = ?"),
          purge_ended(db, "DELETE FROM jobs WHERE state IN (7, 8) AND modified < ?"),
          insert_notification(db, "INSERT INTO notifications (job_id, kind, file_index, created) "
                                  "VALUES (?, ?, ?, ?)"),
          select_notifications(db, "SELECT id, job_id, kind, file_index, created "
                                   "FROM notifications ORDER BY id"),
          delete_notification(db, "DELETE FROM notifications WHERE id = ?"),
          put_cache(db, "INSERT OR REPLACE INTO cache (" DOPT_CACHE_COLUMNS ") "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
          select_cache(db, "SELECT " DOPT_CACHE_COLUMNS " FROM cache ORDER BY last_used"),
          delete_cache(db, "DELETE FROM cache WHERE info_hash = ?"),
          add_usage(db, "INSERT INTO usage (month, owner_uid, counter, value) VALUES (?, ?, ?, ?) "
                        "ON CONFLICT (month, owner_uid, counter) DO UPDATE SET value = value + excluded.value"),
          select_usage(db, "SELECT month, owner_uid, counter, value FROM usage "
                           "ORDER BY month, owner_uid, counter") {
        static_assert(static_cast<int>(JobState::Acknowledged) == 7 &&
                          static_cast<int>(JobState::Cancelled) == 8,
                      "purge_ended's SQL names the ended states by number");
    }

    PreparedStatement insert_job, insert_header, delete_headers, insert_file;
    PreparedStatement replace_error, delete_error;
    PreparedStatement select_job, select_headers, select_files, select_error;
    PreparedStatement select_all_jobs, select_all_headers, select_all_files, select_all_errors;
    PreparedStatement update_job, select_state, update_state, update_file;
    PreparedStatement delete_job, purge_ended;
    PreparedStatement insert_notification, select_notifications, delete_notification;
    PreparedStatement put_cache, select_cache, delete_cache;
    PreparedStatement add_usage, select_usage;
};

#undef DOPT_JOB_COLUMNS
#undef DOPT_FILE_COLUMNS
#undef DOPT_ERROR_COLUMNS
#undef DOPT_HEADER_COLUMNS
#undef DOPT_CACHE_COLUMNS

namespace {

// Binds the columns of a file's row that follow its transfer, bytes_total
// to info_hash, in that order: the order both insert and update name them.
Query& bind_file_progress(Query& query, const FileRecord& file) {
    return query.bind_size(file.bytes_total)
        .bind(static_cast<std::int64_t>(file.bytes_transferred))
        .bind(file.etag)
        .bind(file.last_modified)
        .bind(file.sha256)
        .bind(std::int64_t{file.completed})
        .bind(file.metainfo_source)
        .bind(file.metainfo_url)
        .bind(file.info_hash);
}

void bind_file(Query& query, const std::string& job_id, const FileRecord& file) {
    query.bind(job_id)
        .bind(std::int64_t{file.index})
        .bind(file.remote_url)
        .bind(file.local_path)
        .bind(file.partial_path);
    bind_file_progress(query, file)
        .bind(static_cast<std::int64_t>(file.durable_bytes))
        .bind_size(file.expected_size);
}

void bind_error(Query& query, const std::string& job_id, const ErrorRecord& error) {
    query.bind(job_id)
        .bind(static_cast<std::int64_t>(error.context))
        .bind(error.code)
        .bind(error.description)
        .bind(error.protocol)
        .bind(error.time)
        .bind(std::int64_t{error.file_index})
        .bind(error.local_name)
        .bind(error.remote_name)
        .bind_size(error.bytes_total)
        .bind(static_cast<std::int64_t>(error.bytes_transferred));
}

}  // namespace

// ---------------------------------------------------------------------------
// JobStore.

std::unique_ptr<JobStore> JobStore::open(const std::string& path) {
    make_private(path);
    sqlite3* raw = nullptr;
    const int rc = sqlite3_open_v2(path.c_str(), &raw,
                                   SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                                       SQLITE_OPEN_NOMUTEX,
                                   nullptr);
    DatabaseHandle db(raw);
    if (rc != SQLITE_OK) fail("opening " + path, raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc), rc);
    configure(db.get(), path);
    migrate(db.get(), path);
    std::unique_ptr<JobStore> store(new JobStore(db.get()));
    db.release();  // owned by the store from here on
    return store;
}

JobStore::JobStore(sqlite3* db) : db_(db), statements_(std::make_unique<Statements>(db)) {}

JobStore::~JobStore() {
    statements_.reset();  // statements must be finalized before the close
    sqlite3_close_v2(db_);
}

int JobStore::schema_version() {
    return kSchemaVersion;
}

const char* JobStore::migration_sql(int version) {
    if (version < 1 || version > kSchemaVersion) return nullptr;
    return kMigrations[static_cast<std::size_t>(version - 1)];
}

void JobStore::insert_job(const JobRecord& job) {
    Transaction transaction(db_, Transaction::Kind::Write);
    {
        Query query(statements_->insert_job, "inserting a job");
        query.bind(job.id)
            .bind(std::int64_t{job.owner_uid})
            .bind(std::int64_t{job.owner_gid})
            .bind(job.display_name)
            .bind(static_cast<std::int64_t>(job.priority))
            .bind(static_cast<std::int64_t>(job.state))
            .bind(job.created)
            .bind(job.modified)
            .bind(job.transfer_completed)
            .bind(std::int64_t{job.no_progress_timeout})
            .bind(std::int64_t{job.retry_count})
            .bind(std::int64_t{job.auto_complete})
            .bind(static_cast<std::int64_t>(job.bytes_from_origin))
            .bind(static_cast<std::int64_t>(job.bytes_from_peers))
            .bind(job.seq)
            .bind(std::int64_t{job.umask})
            .run();
    }
    insert_files_and_headers(job);
    if (job.error) {
        Query query(statements_->replace_error, "storing a job's error");
        bind_error(query, job.id, *job.error);
        query.run();
    }
    transaction.commit();
}

// REQUIRES: a write transaction is open; the job row exists.
void JobStore::insert_files_and_headers(const JobRecord& job) {
    for (const FileRecord& file : job.files) {
        Query query(statements_->insert_file, "inserting a job's file");
        bind_file(query, job.id, file);
        query.run();
    }
    replace_headers(job.id, job.headers);
}

// REQUIRES: a write transaction is open. Headers keep their order.
void JobStore::replace_headers(const std::string& job_id,
                               const std::vector<std::string>& headers) {
    Query(statements_->delete_headers, "deleting a job's headers").bind(job_id).run();
    for (std::size_t i = 0; i < headers.size(); ++i) {
        Query(statements_->insert_header, "inserting a job's header")
            .bind(job_id)
            .bind(static_cast<std::int64_t>(i))
            .bind(headers[i])
            .run();
    }
}

std::optional<JobRecord> JobStore::load_job(const std::string& id) {
    Transaction transaction(db_, Transaction::Kind::Read);  // one consistent view
    std::optional<JobRecord> job;
    {
        Query query(statements_->select_job, "loading a job");
        if (!query.bind(id).next_row()) return std::nullopt;
        job = read_job(query);
    }
    {
        Query query(statements_->select_headers, "loading a job's headers");
        query.bind(id);
        while (query.next_row()) job->headers.push_back(query.text(2));
    }
    {
        Query query(statements_->select_files, "loading a job's files");
        query.bind(id);
        while (query.next_row()) job->files.push_back(read_file(query));
    }
    {
        Query query(statements_->select_error, "loading a job's error");
        if (query.bind(id).next_row()) job->error = read_error(query);
    }
    transaction.commit();
    return job;
}

// Four queries in all, not four per job: 10,000 jobs load in one pass each
// over jobs, headers, files and errors.
std::vector<JobRecord> JobStore::load_all() {
    Transaction transaction(db_, Transaction::Kind::Read);
    std::vector<JobRecord> jobs;
    std::unordered_map<std::string, std::size_t> position_of;
    {
        Query query(statements_->select_all_jobs, "loading all jobs");
        while (query.next_row()) {
            jobs.push_back(read_job(query));
            position_of.emplace(jobs.back().id, jobs.size() - 1);
        }
    }
    auto job_of = [&](const Query& row) -> JobRecord* {
        const auto found = position_of.find(row.text(0));
        return found == position_of.end() ? nullptr : &jobs[found->second];
    };
    {
        Query query(statements_->select_all_headers, "loading all headers");
        while (query.next_row()) {
            if (JobRecord* job = job_of(query)) job->headers.push_back(query.text(2));
        }
    }
    {
        Query query(statements_->select_all_files, "loading all files");
        while (query.next_row()) {
            if (JobRecord* job = job_of(query)) job->files.push_back(read_file(query));
        }
    }
    {
        Query query(statements_->select_all_errors, "loading all errors");
        while (query.next_row()) {
            if (JobRecord* job = job_of(query)) job->error = read_error(query);
        }
    }
    transaction.commit();
    return jobs;
}

void JobStore::update_job(const JobRecord& job) {
    Transaction transaction(db_, Transaction::Kind::Write);
    const int changed = Query(statements_->update_job, "updating a job")
                            .bind(job.display_name)
                            .bind(static_cast<std::int64_t>(job.priority))
                            .bind(std::int64_t{job.no_progress_timeout})
                            .bind(std::int64_t{job.retry_count})
                            .bind(std::int64_t{job.auto_complete})
                            .bind(static_cast<std::int64_t>(job.bytes_from_origin))
                            .bind(static_cast<std::int64_t>(job.bytes_from_peers))
                            .bind(job.modified)
                            .bind(job.id)
                            .run();
    if (changed == 0) fail("updating job " + job.id, "no such job");
    replace_headers(job.id, job.headers);
    transaction.commit();
}

// When both `error` and `clear_error` are given, the new error wins.
bool JobStore::set_state(const std::string& id, JobState to, std::int64_t now) {
    return change_state(id, to, now, nullptr, false, 0, nullptr);
}

bool JobStore::set_state_clearing_error(const std::string& id, JobState to, std::int64_t now) {
    return change_state(id, to, now, nullptr, true, 0, nullptr);
}

std::optional<std::int64_t> JobStore::set_state_notifying(const std::string& id, JobState to,
                                                          std::int64_t now, int notify_kind) {
    std::int64_t note = 0;
    if (!change_state(id, to, now, nullptr, false, notify_kind, &note)) return std::nullopt;
    return note;
}

bool JobStore::set_error(const std::string& id, const ErrorRecord& error, std::int64_t now) {
    return change_state(id, JobState::Error, now, &error, false, 0, nullptr);
}

std::optional<std::int64_t> JobStore::set_error_notifying(const std::string& id, const ErrorRecord& error,
                                                          std::int64_t now, int notify_kind) {
    std::int64_t note = 0;
    if (!change_state(id, JobState::Error, now, &error, false, notify_kind, &note)) return std::nullopt;
    return note;
}

bool JobStore::change_state(const std::string& id, JobState to, std::int64_t now, const ErrorRecord* error,
                            bool clear_error, int notify_kind, std::int64_t* notification_id) {
    Transaction transaction(db_, Transaction::Kind::Write);
    JobState from;
    {
        Query query(statements_->select_state, "reading a job's state");
        if (!query.bind(id).next_row()) return false;
        from = enum_from_column<JobState>(query.integer(0), kStateCount, "state", id);
    }
    if (!transition_allowed(from, to)) return false;
    Query(statements_->update_state, "changing a job's state")
        .bind(static_cast<std::int64_t>(to))
        .bind(now)
        .bind(id)
        .bind(std::int64_t{to == JobState::Transferred})
        .run();
    DOPT_CRASH_POINT("store_mid_commit");
    if (error) {
        Query query(statements_->replace_error, "storing a job's error");
        bind_error(query, id, *error);
        query.run();
    } else if (clear_error) {
        Query(statements_->delete_error, "clearing a job's error").bind(id).run();
    }
    if (notify_kind != 0) {
        std::int64_t nid = insert_notification(id, notify_kind, -1, now);
        if (notification_id) *notification_id = nid;
    }
    transaction.commit();
    return true;
}

// REQUIRES: a write transaction is open.
std::int64_t JobStore::insert_notification(const std::string& job_id, int kind, int file_index,
                                           std::int64_t now) {
    Query(statements_->insert_notification, "adding a notification")
        .bind(job_id)
        .bind(std::int64_t{kind})
        .bind(std::int64_t{file_index})
        .bind(now)
        .run();
    return sqlite3_last_insert_rowid(db_);
}

std::vector<Notification> JobStore::load_notifications() {
    std::vector<Notification> out;
    Query query(statements_->select_notifications, "reading the outbox");
    while (query.next_row()) {
        Notification n;
        n.id = query.integer(0);
        n.job_id = query.text(1);
        n.kind = static_cast<int>(query.integer(2));
        n.file_index = static_cast<int>(query.integer(3));
        n.created = query.integer(4);
        out.push_back(std::move(n));
    }
    return out;
}

void JobStore::delete_notification(std::int64_t id) {
    Query(statements_->delete_notification, "removing a notification").bind(id).run();
}

// A missing job fails the foreign key; a taken index fails the primary key.
void JobStore::add_file(const std::string& job_id, const FileRecord& file) {
    Query query(statements_->insert_file, "adding a file to a job");
    bind_file(query, job_id, file);
    query.run();
}

std::int64_t JobStore::update_file(const std::string& job_id, const FileRecord& file,
                                   int notify_kind, std::int64_t now) {
    std::optional<Transaction> transaction;
    if (notify_kind != 0) transaction.emplace(db_, Transaction::Kind::Write);
    int changed = 0;
    {  // the statement is reset before the notification is written
        Query query(statements_->update_file, "updating a job's file");
        changed = bind_file_progress(query, file)
                      .bind(file.partial_path)
                      .bind(static_cast<std::int64_t>(file.durable_bytes))
                      .bind_size(file.expected_size)
                      .bind(job_id)
                      .bind(std::int64_t{file.index})
                      .run();
    }
    if (changed == 0) {
        fail("updating file " + std::to_string(file.index) + " of job " + job_id,
             "no such file");
    }
    if (!transaction) return 0;
    DOPT_CRASH_POINT("store_file_mid_commit");
    std::int64_t id = insert_notification(job_id, notify_kind, file.index, now);
    transaction->commit();
    return id;
}

// Files, headers and the error go with the job (ON DELETE CASCADE).
void JobStore::delete_job(const std::string& id) {
    Query(statements_->delete_job, "deleting a job").bind(id).run();
}

void JobStore::put_cache_entry(const CacheEntry& e) {
    Query(statements_->put_cache, "recording a peer cache entry")
        .bind(e.info_hash)
        .bind(e.name)
        .bind(static_cast<std::int64_t>(e.size))
        .bind(e.origin_url)
        .bind(std::int64_t{e.owner_uid})
        .bind(std::int64_t{e.complete})
        .bind(e.last_used)
        .bind_blob(e.metainfo)
        .bind_blob(e.resume_data)
        .bind(e.sha256)
        .run();
}

std::vector<CacheEntry> JobStore::load_cache() {
    std::vector<CacheEntry> out;
    Query query(statements_->select_cache, "loading the peer cache index");
    while (query.next_row()) {
        CacheEntry e;
        e.info_hash = query.text(0);
        e.name = query.text(1);
        e.size = static_cast<std::uint64_t>(query.integer(2));
        e.origin_url = query.text(3);
        e.owner_uid = static_cast<std::uint32_t>(query.integer(4));
        e.complete = query.integer(5) != 0;
        e.last_used = query.integer(6);
        e.metainfo = query.blob(7);
        e.resume_data = query.blob(8);
        e.sha256 = query.text(9);
        out.push_back(std::move(e));
    }
    return out;
}

void JobStore::delete_cache_entry(const std::string& info_hash) {
    Query(statements_->delete_cache, "removing a peer cache entry").bind(info_hash).run();
}

void JobStore::add_usage(const std::vector<UsageCount>& counts) {
    if (counts.empty()) return;
    Transaction transaction(db_, Transaction::Kind::Write);
    for (const UsageCount& c : counts) {
        Query(statements_->add_usage, "adding to the usage totals")
            .bind(c.month)
            .bind(c.owner_uid)
            .bind(c.counter)
            .bind(static_cast<std::int64_t>(c.value))
            .run();
    }
    transaction.commit();
}

std::vector<UsageCount> JobStore::load_usage() {
    std::vector<UsageCount> out;
    Query query(statements_->select_usage, "loading the usage totals");
    while (query.next_row()) {
        UsageCount c;
        c.month = query.text(0);
        c.owner_uid = query.integer(1);
        c.counter = query.text(2);
        c.value = static_cast<std::uint64_t>(query.integer(3));
        out.push_back(std::move(c));
    }
    return out;
}

int JobStore::purge_ended(std::int64_t before) {
    return Query(statements_->purge_ended, "purging ended jobs").bind(before).run();
}

}  // namespace dopt::storage
