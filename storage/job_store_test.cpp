// JobStore against real SQLite files in a fresh temporary directory per test.
#include "storage/job_store.h"
#include "common/sha256.h"
#include "tests/support/temp_dir.h"

#include <catch2/catch.hpp>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

using namespace dopt::storage;

namespace {

using dopt::test::TempDir;

void exec_sql(sqlite3* db, const std::string& sql) {
    char* message = nullptr;
    const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &message);
    const std::string text = message ? message : "";
    sqlite3_free(message);
    if (rc != SQLITE_OK) FAIL("SQL failed: " << text << "\n" << sql);
}

// The first column of the first row of `sql`, as text ("" when NULL).
std::string query_text(sqlite3* db, const std::string& sql) {
    sqlite3_stmt* stmt = nullptr;
    REQUIRE(sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) == SQLITE_OK);
    std::string value;
    if (sqlite3_step(stmt) == SQLITE_ROW && sqlite3_column_text(stmt, 0)) {
        value = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
    }
    sqlite3_finalize(stmt);
    return value;
}

long long query_int(sqlite3* db, const std::string& sql) {
    return std::stoll(query_text(db, sql));
}

// A raw connection for building or inspecting a database behind the store.
struct RawDatabase {
    explicit RawDatabase(const std::string& path) {
        REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
    }
    ~RawDatabase() { sqlite3_close(db); }
    sqlite3* db = nullptr;
};

// A database at schema `version`, made by the shipped migrations, with the
// rows `inserts` adds.
void make_database_at(const std::string& path, int version, const std::string& inserts) {
    RawDatabase raw(path);
    for (int v = 1; v <= version; ++v) exec_sql(raw.db, JobStore::migration_sql(v));
    exec_sql(raw.db, "PRAGMA user_version = " + std::to_string(version));
    exec_sql(raw.db, inserts);
}

FileRecord make_file(int index) {
    FileRecord file;
    file.index = index;
    file.remote_url = "https://origin.example/pkg/part" + std::to_string(index) + ".bin";
    file.local_path = "/home/ann/Downloads/part" + std::to_string(index) + ".bin";
    file.partial_path = "/home/ann/Downloads/.part" + std::to_string(index) + ".bin.dopt";
    return file;
}

ErrorRecord make_error(const std::string& description) {
    ErrorRecord error;
    error.context = ErrorContext::RemoteFile;
    error.code = 403;
    error.description = description;
    error.protocol = "https";
    error.time = 1'700'000'500;
    error.file_index = 1;
    error.local_name = "/home/ann/Downloads/part1.bin";
    error.remote_name = "https://origin.example/pkg/part1.bin";
    error.bytes_total = 5'000'000'000ULL;  // beyond 32 bits on purpose
    error.bytes_transferred = 4096;
    return error;
}

JobRecord make_job(const std::string& id, std::int64_t created = 1'700'000'000) {
    JobRecord job;
    job.id = id;
    job.owner_uid = 1000;
    job.owner_gid = 100;
    job.display_name = "job " + id;
    job.priority = Priority::High;
    job.state = JobState::Queued;
    job.created = created;
    job.modified = created;
    job.no_progress_timeout = 600;
    job.retry_count = 2;
    job.auto_complete = true;
    job.headers = {"Authorization: Bearer abc", "X-Trace: 1", "Accept: */*"};
    job.bytes_from_origin = 1234;
    job.bytes_from_peers = 5678;
    job.files = {make_file(0), make_file(1)};
    job.files[1].bytes_total = 5'000'000'000ULL;
    job.files[1].bytes_transferred = 4'000'000'000ULL;
    job.files[1].etag = "\"abc\"";
    job.files[1].last_modified = "Tue, 14 Nov 2023 22:13:20 GMT";
    job.files[1].sha256 = std::string(64, 'a');
    job.files[1].completed = true;
    return job;
}

std::string uuid(int n) {
    char text[40];
    std::snprintf(text, sizeof text, "00000000-0000-4000-8000-%012d", n);
    return text;
}

void check_same_file(const FileRecord& a, const FileRecord& b) {
    CHECK(a.index == b.index);
    CHECK(a.remote_url == b.remote_url);
    CHECK(a.local_path == b.local_path);
    CHECK(a.partial_path == b.partial_path);
    CHECK(a.bytes_total == b.bytes_total);
    CHECK(a.bytes_transferred == b.bytes_transferred);
    CHECK(a.durable_bytes == b.durable_bytes);
    CHECK(a.expected_size == b.expected_size);
    CHECK(a.etag == b.etag);
    CHECK(a.last_modified == b.last_modified);
    CHECK(a.sha256 == b.sha256);
    CHECK(a.completed == b.completed);
}

void check_same_error(const ErrorRecord& a, const ErrorRecord& b) {
    CHECK(a.context == b.context);
    CHECK(a.code == b.code);
    CHECK(a.description == b.description);
    CHECK(a.protocol == b.protocol);
    CHECK(a.time == b.time);
    CHECK(a.file_index == b.file_index);
    CHECK(a.local_name == b.local_name);
    CHECK(a.remote_name == b.remote_name);
    CHECK(a.bytes_total == b.bytes_total);
    CHECK(a.bytes_transferred == b.bytes_transferred);
}

void check_same_job(const JobRecord& a, const JobRecord& b) {
    CHECK(a.id == b.id);
    CHECK(a.owner_uid == b.owner_uid);
    CHECK(a.owner_gid == b.owner_gid);
    CHECK(a.display_name == b.display_name);
    CHECK(a.priority == b.priority);
    CHECK(a.state == b.state);
    CHECK(a.created == b.created);
    CHECK(a.modified == b.modified);
    CHECK(a.transfer_completed == b.transfer_completed);
    CHECK(a.no_progress_timeout == b.no_progress_timeout);
    CHECK(a.retry_count == b.retry_count);
    CHECK(a.auto_complete == b.auto_complete);
    CHECK(a.headers == b.headers);
    CHECK(a.bytes_from_origin == b.bytes_from_origin);
    CHECK(a.bytes_from_peers == b.bytes_from_peers);
    REQUIRE(a.files.size() == b.files.size());
    for (std::size_t i = 0; i < a.files.size(); ++i) check_same_file(a.files[i], b.files[i]);
    REQUIRE(a.error.has_value() == b.error.has_value());
    if (a.error) check_same_error(*a.error, *b.error);
}

JobState state_of(JobStore& store, const std::string& id) {
    const auto job = store.load_job(id);
    REQUIRE(job);
    return job->state;
}

}  // namespace

TEST_CASE("a job with files, headers and an error round-trips through the store",
          "[job_store]") {
    TempDir dir;
    auto store = JobStore::open(dir.file("jobs.db"));
    JobRecord job = make_job(uuid(1));
    job.error = make_error("403 Forbidden");
    store->insert_job(job);

    const auto loaded = store->load_job(job.id);
    REQUIRE(loaded);
    check_same_job(*loaded, job);
    CHECK(loaded->files[0].bytes_total == kUnknownSize);
}

// The mode bits of `path`, or -1 when it does not exist.
int mode_of(const std::string& path) {
    struct stat st{};
    return ::stat(path.c_str(), &st) == 0 ? static_cast<int>(st.st_mode & 07777) : -1;
}

TEST_CASE("the database and its WAL files are private (0600) even when they were 0644",
          "[job_store]") {
    TempDir dir;
    const std::string db = dir.file("jobs.db");
    const mode_t old_umask = ::umask(022);  // what a daemon usually has
    JobStore::open(db)->insert_job(make_job(uuid(1)));
    ::chmod(db.c_str(), 0644);  // as an older agent left it
    {
        std::ofstream stale_wal(db + "-wal");  // empty: SQLite ignores it
    }
    ::chmod((db + "-wal").c_str(), 0644);

    auto store = JobStore::open(db);
    store->insert_job(make_job(uuid(2)));  // writes the WAL and its index
    ::umask(old_umask);
    CHECK(mode_of(db) == 0600);
    CHECK(mode_of(db + "-wal") == 0600);
    CHECK(mode_of(db + "-shm") == 0600);
    CHECK(store->load_job(uuid(1)));
}

TEST_CASE("a new database is created private (0600) whatever the umask", "[job_store]") {
    TempDir dir;
    const std::string db = dir.file("jobs.db");
    const mode_t old_umask = ::umask(0);
    auto store = JobStore::open(db);
    store->insert_job(make_job(uuid(1)));
    ::umask(old_umask);
    CHECK(mode_of(db) == 0600);
    CHECK(mode_of(db + "-wal") == 0600);
    CHECK(mode_of(db + "-shm") == 0600);
}

TEST_CASE("an unknown size is stored as NULL, not as a huge number", "[job_store]") {
    TempDir dir;
    auto store = JobStore::open(dir.file("jobs.db"));
    store->insert_job(make_job(uuid(1)));
    CHECK(query_text(store->handle(), "SELECT typeof(bytes_total) FROM files WHERE idx = 0") ==
          "null");
}

TEST_CASE("load_job of an unknown id returns nothing", "[job_store]") {
    TempDir dir;
    auto store = JobStore::open(dir.file("jobs.db"));
    CHECK_FALSE(store->load_job(uuid(404)).has_value());
}

TEST_CASE("insert_job refuses an id that exists and leaves the first job intact",
          "[job_store]") {
    TempDir dir;
    auto store = JobStore::open(dir.file("jobs.db"));
    const JobRecord first = make_job(uuid(1));
    store->insert_job(first);
    JobRecord second = make_job(uuid(1));
    second.display_name = "impostor";
    second.files.push_back(make_file(2));
    CHECK_THROWS_AS(store->insert_job(second), StorageError);
    check_same_job(*store->load_job(first.id), first);
}

TEST_CASE("load_all returns every job oldest first, each with its own files", "[job_store]") {
    TempDir dir;
    auto store = JobStore::open(dir.file("jobs.db"));
    JobRecord late = make_job(uuid(1), 300);
    JobRecord early = make_job(uuid(2), 100);
    early.files = {make_file(0)};
    early.headers = {};
    early.error = make_error("early failed");
    JobRecord middle = make_job(uuid(3), 200);
    middle.files = {};
    for (const auto& job : {late, early, middle}) store->insert_job(job);

    const auto all = store->load_all();
    REQUIRE(all.size() == 3);
    check_same_job(all[0], early);
    check_same_job(all[1], middle);
    check_same_job(all[2], late);
}

TEST_CASE("set_state performs a legal transition and stamps modified", "[job_store]") {
    TempDir dir;
    auto store = JobStore::open(dir.file("jobs.db"));
    store->insert_job(make_job(uuid(1)));

    REQUIRE(store->set_state(uuid(1), JobState::Connecting, 1'700'000'100));
    const auto job = store->load_job(uuid(1));
    CHECK(job->state == JobState::Connecting);
    CHECK(job->modified == 1'700'000'100);
    CHECK(job->transfer_completed == 0);
}

TEST_CASE("set_state refuses an illegal transition and changes nothing", "[job_store]") {
    TempDir dir;
    auto store = JobStore::open(dir.file("jobs.db"));
    JobRecord job = make_job(uuid(1));
    job.state = JobState::Suspended;
    job.error = make_error("old error");
    store->insert_job(job);

    CHECK_FALSE(store->set_state(uuid(1), JobState::Transferring, 1'700'009'999));
    CHECK_FALSE(store->set_state_clearing_error(uuid(1), JobState::Suspended, 1'700'009'999));
    check_same_job(*store->load_job(uuid(1)), job);
}

TEST_CASE("set_state of a missing job returns false", "[job_store]") {
    TempDir dir;
    auto store = JobStore::open(dir.file("jobs.db"));
    CHECK_FALSE(store->set_state(uuid(404), JobState::Connecting, 1));
    CHECK(query_int(store->handle(), "SELECT count(*) FROM jobs") == 0);
}

TEST_CASE("set_state never leaves a final state", "[job_store]") {
    TempDir dir;
    auto store = JobStore::open(dir.file("jobs.db"));
    store->insert_job(make_job(uuid(1)));
    REQUIRE(store->set_state(uuid(1), JobState::Cancelled, 10));
    CHECK_FALSE(store->set_state(uuid(1), JobState::Queued, 11));
    CHECK(state_of(*store, uuid(1)) == JobState::Cancelled);
}

TEST_CASE("reaching Transferred stamps transfer_completed, and it stays", "[job_store]") {
    TempDir dir;
    auto store = JobStore::open(dir.file("jobs.db"));
    store->insert_job(make_job(uuid(1)));
    REQUIRE(store->set_state(uuid(1), JobState::Connecting, 100));
    REQUIRE(store->set_state(uuid(1), JobState::Transferring, 110));
    CHECK(store->load_job(uuid(1))->transfer_completed == 0);
    REQUIRE(store->set_state(uuid(1), JobState::Transferred, 120));
    CHECK(store->load_job(uuid(1))->transfer_completed == 120);
    REQUIRE(store->set_state(uuid(1), JobState::Acknowledged, 130));
    const auto job = store->load_job(uuid(1));
    CHECK(job->transfer_completed == 120);
    CHECK(job->modified == 130);
}

TEST_CASE("set_state replaces the error record, and clear_error removes it", "[job_store]") {
    TempDir dir;
    auto store = JobStore::open(dir.file("jobs.db"));
    store->insert_job(make_job(uuid(1)));

    REQUIRE(store->set_error(uuid(1), make_error("first"), 100));
    check_same_error(*store->load_job(uuid(1))->error, make_error("first"));

    REQUIRE(store->set_state(uuid(1), JobState::Queued, 110));
    CHECK(store->load_job(uuid(1))->error.has_value());  // kept unless asked

    ErrorRecord second = make_error("second");
    second.context = ErrorContext::Integrity;
    second.file_index = -1;
    second.bytes_total = kUnknownSize;
    REQUIRE(store->set_error(uuid(1), second, 120));
    check_same_error(*store->load_job(uuid(1))->error, second);
    CHECK(query_int(store->handle(), "SELECT count(*) FROM errors") == 1);

    REQUIRE(store->set_state_clearing_error(uuid(1), JobState::Queued, 130));
    CHECK_FALSE(store->load_job(uuid(1))->error.has_value());
}

TEST_CASE("update_file stores size, progress, durable prefix, validators and completion",
          "[job_store]") {
    TempDir dir;
    auto store = JobStore::open(dir.file("jobs.db"));
    const JobRecord job = make_job(uuid(1));
    store->insert_job(job);

    FileRecord file = job.files[0];
    file.bytes_total = 1 << 20;
    file.bytes_transferred = 4096;
    file.durable_bytes = 2048;
    file.expected_size = 1 << 20;
    file.etag = "\"v2\"";
    file.last_modified = "Wed, 15 Nov 2023 00:00:00 GMT";
    file.sha256 = std::string(64, 'f');
    file.completed = true;
    store->update_file(job.id, file);

    const auto loaded = store->load_job(job.id);
    check_same_file(loaded->files[0], file);
    check_same_file(loaded->files[1], job.files[1]);  // the other file is untouched
}

TEST_CASE("update_file of a file that does not exist throws", "[job_store]") {
    TempDir dir;
    auto store = JobStore::open(dir.file("jobs.db"));
    store->insert_job(make_job(uuid(1)));
    CHECK_THROWS_AS(store->update_file(uuid(1), make_file(7)), StorageError);
    CHECK_THROWS_AS(store->update_file(uuid(404), make_file(0)), StorageError);
}

TEST_CASE("add_file appends a file, and adding one to a missing job throws", "[job_store]") {
    TempDir dir;
    auto store = JobStore::open(dir.file("jobs.db"));
    JobRecord job = make_job(uuid(1));
    job.files = {};
    store->insert_job(job);

    store->add_file(job.id, make_file(0));
    store->add_file(job.id, make_file(1));
    const auto loaded = store->load_job(job.id);
    REQUIRE(loaded->files.size() == 2);
    check_same_file(loaded->files[1], make_file(1));

    CHECK_THROWS_AS(store->add_file(job.id, make_file(1)), StorageError);      // index taken
    CHECK_THROWS_AS(store->add_file(uuid(404), make_file(0)), StorageError);   // foreign key
}

TEST_CASE("update_job changes properties and headers but not state, files or error",
          "[job_store]") {
    TempDir dir;
    auto store = JobStore::open(dir.file("jobs.db"));
    JobRecord job = make_job(uuid(1));
    job.error = make_error("kept");
    store->insert_job(job);

    JobRecord changed = job;
    changed.display_name = "renamed";
    changed.priority = Priority::Low;
    changed.no_progress_timeout = 30;
    changed.retry_count = 9;
    changed.auto_complete = false;
    changed.headers = {"X-Only: this"};
    changed.bytes_from_origin = 1;
    changed.bytes_from_peers = 99'000'000'000ULL;
    changed.modified = job.modified + 5;
    changed.state = JobState::Transferred;    // ignored: set_state's job
    changed.files = {};                       // ignored
    changed.error = std::nullopt;             // ignored
    store->update_job(changed);

    JobRecord expected = changed;
    expected.state = job.state;
    expected.files = job.files;
    expected.error = job.error;
    check_same_job(*store->load_job(job.id), expected);

    changed.id = uuid(404);
    CHECK_THROWS_AS(store->update_job(changed), StorageError);
}

TEST_CASE("delete_job removes the job with its files, headers and error", "[job_store]") {
    TempDir dir;
    auto store = JobStore::open(dir.file("jobs.db"));
    JobRecord doomed = make_job(uuid(1));
    doomed.error = make_error("x");
    store->insert_job(doomed);
    store->insert_job(make_job(uuid(2)));

    store->delete_job(uuid(1));
    CHECK_FALSE(store->load_job(uuid(1)).has_value());
    sqlite3* db = store->handle();
    for (const char* table : {"files", "job_headers", "errors"}) {
        INFO(table);
        CHECK(query_int(db, std::string("SELECT count(*) FROM ") + table +
                                " WHERE job_id = '" + uuid(1) + "'") == 0);
    }
    CHECK(store->load_job(uuid(2))->files.size() == 2);
}

TEST_CASE("purge_ended deletes only ended jobs modified before the cutoff", "[job_store]") {
    TempDir dir;
    auto store = JobStore::open(dir.file("jobs.db"));
    const JobState states[] = {JobState::Acknowledged, JobState::Cancelled, JobState::Error,
                               JobState::Transferred, JobState::Suspended};
    int n = 0;
    for (JobState state : states) {
        for (std::int64_t modified : {100, 200}) {
            JobRecord job = make_job(uuid(++n));
            job.state = state;
            job.modified = modified;
            job.error = make_error("e");
            store->insert_job(job);
        }
    }

    CHECK(store->purge_ended(150) == 2);  // Acknowledged@100 and Cancelled@100
    sqlite3* db = store->handle();
    CHECK(query_int(db, "SELECT count(*) FROM jobs") == 8);
    CHECK(query_int(db, "SELECT count(*) FROM jobs WHERE state IN (7, 8) AND modified < 150") ==
          0);
    CHECK(query_int(db, "SELECT count(*) FROM files") == 16);   // cascaded
    CHECK(query_int(db, "SELECT count(*) FROM errors") == 8);
    CHECK(query_int(db, "SELECT count(*) FROM job_headers") == 24);
    CHECK(store->purge_ended(150) == 0);
}

TEST_CASE("purge_ended finds ended jobs through the jobs_by_state index", "[job_store]") {
    TempDir dir;
    auto store = JobStore::open(dir.file("jobs.db"));
    sqlite3_stmt* stmt = nullptr;
    REQUIRE(sqlite3_prepare_v2(store->handle(),
                               "EXPLAIN QUERY PLAN DELETE FROM jobs WHERE state IN (7, 8) "
                               "AND modified < 1",
                               -1, &stmt, nullptr) == SQLITE_OK);
    std::string details;
    while (sqlite3_step(stmt) == SQLITE_ROW) {
        details += reinterpret_cast<const char*>(sqlite3_column_text(stmt, 3));
        details += "\n";
    }
    sqlite3_finalize(stmt);
    INFO(details);
    CHECK(details.find("jobs_by_state") != std::string::npos);
}

TEST_CASE("the database runs in WAL mode with foreign keys, a busy timeout and "
          "synchronous=NORMAL",
          "[job_store]") {
    TempDir dir;
    auto store = JobStore::open(dir.file("jobs.db"));
    sqlite3* db = store->handle();
    CHECK(query_text(db, "PRAGMA journal_mode") == "wal");
    CHECK(query_int(db, "PRAGMA foreign_keys") == 1);
    CHECK(query_int(db, "PRAGMA busy_timeout") == 5000);
    CHECK(query_int(db, "PRAGMA synchronous") == 1);  // NORMAL
    CHECK(query_int(db, "PRAGMA user_version") == JobStore::schema_version());
}

// A shipped migration is never edited: databases in the field already ran it.
// Each one's SHA-256 is recorded here when it ships; a new migration adds a
// line, and a changed hash means a shipped one was edited in place.
TEST_CASE("shipped migrations are never edited", "[job_store][migration]") {
    const char* const shipped[] = {
        "d8a2a915404d8322c636377e34d8075571a32cb345fce05622a2a64b5cf32897",
        "81a9796e483a3e99c18f655b993757d2276454500cef57544ebd0a59b33d5faf",
        "183f5af6aac7e960a1b819c528faf033b91458fb74e914839450a43ce6796e3c",
        "44d94c0d90fe56816b5edbb518f96c54a4fbf12ec6e41e5d19bed7d4337fe4f0",
        "61314c91073591a662e8f93d42570abdc6b773ae897b11a04c3da11a8d6b23af",
        "faf1f88dd47405727dc6e37be7f4aeb5411640d40fbad413095a9c7403fc4548",
        "3a783528c2fed2b432f218286f730f3bfb60988eabc6ecfef311ec73d1063270",
        "ad2e496f40fce51bde8b1078cb6e2b69becf4d73590779f04d0614b4a8a1db84",
        "78d57385e8e745e9ebbf795f082dc593455c9c7a8a0f0500d40f8e327afec6b5",
    };
    const int count = static_cast<int>(sizeof shipped / sizeof shipped[0]);
    REQUIRE(JobStore::schema_version() == count);
    for (int v = 1; v <= count; ++v) {
        INFO("migration " << v);
        const char* sql = JobStore::migration_sql(v);
        REQUIRE(sql != nullptr);
        dopt::Sha256 hash;
        hash.update(sql, std::strlen(sql));
        CHECK(hash.finish_hex() == shipped[v - 1]);
    }
    CHECK(JobStore::migration_sql(0) == nullptr);
    CHECK(JobStore::migration_sql(count + 1) == nullptr);
}

TEST_CASE("a v6 cache entry is migrated with no SHA-256", "[job_store][migration]") {
    TempDir dir;
    const std::string path = dir.file("jobs.db");
    make_database_at(path, 6,
                     "INSERT INTO cache (info_hash, name, size, origin_url, owner_uid, complete, "
                     "last_used, metainfo, resume_data) VALUES ('" + std::string(40, 'a') +
                         "', 'x', 5, 'http://o/x', 0, 1, 9, x'00', x'');");
    auto store = JobStore::open(path);
    const auto cache = store->load_cache();
    REQUIRE(cache.size() == 1);
    CHECK(cache[0].name == "x");
    CHECK(cache[0].complete);
    CHECK(cache[0].sha256.empty());
}

TEST_CASE("a v8 file is migrated with no expected size", "[job_store][migration]") {
    TempDir dir;
    const std::string path = dir.file("jobs.db");
    make_database_at(path, 8,
                     "INSERT INTO jobs (id, owner_uid, owner_gid, display_name, priority, state, "
                     "created, modified, transfer_completed, no_progress_timeout, retry_count, "
                     "bytes_from_origin, bytes_from_peers) VALUES ('" + uuid(1) +
                         "', 1000, 100, 'v8 job', 2, 2, 10, 20, 0, 600, 0, 0, 0);"
                     "INSERT INTO files (job_id, idx, remote_url, local_path, partial_path, "
                     "bytes_total) VALUES ('" + uuid(1) + "', 0, 'http://o/x', '/d/x', '/d/.x', 5);");
    auto store = JobStore::open(path);
    auto job = store->load_job(uuid(1));
    REQUIRE(job);
    REQUIRE(job->files.size() == 1);
    CHECK(job->files[0].bytes_total == 5);
    CHECK(job->files[0].expected_size == kUnknownSize);
}

TEST_CASE("a v7 database gets an empty usage table that adds up and survives reopening",
          "[job_store][migration]") {
    TempDir dir;
    const std::string path = dir.file("jobs.db");
    make_database_at(path, 7,
                     "INSERT INTO jobs (id, owner_uid, owner_gid, display_name, priority, state, "
                     "created, modified, transfer_completed, no_progress_timeout, retry_count, "
                     "bytes_from_origin, bytes_from_peers) VALUES ('" + uuid(1) +
                         "', 1000, 100, 'v7 job', 2, 7, 10, 20, 0, 600, 0, 5, 0);");
    {
        auto store = JobStore::open(path);
        CHECK(store->load_job(uuid(1))->display_name == "v7 job");
        CHECK(store->load_usage().empty());
        store->add_usage({{"2026-11", 1000, "origin_received_bytes", 7},
                          {"2026-12", 1000, "origin_received_bytes", 5},
                          {"2026-12", -1, "peer_sent_bytes", 9}});
        store->add_usage({{"2026-12", 1000, "origin_received_bytes", 6}});
    }
    auto store = JobStore::open(path);
    const auto usage = store->load_usage();
    REQUIRE(usage.size() == 3);
    CHECK(usage[0].month == "2026-11");
    CHECK(usage[0].value == 7);
    CHECK(usage[1].owner_uid == -1);
    CHECK(usage[1].counter == "peer_sent_bytes");
    CHECK(usage[1].value == 9);
    CHECK(usage[2].owner_uid == 1000);
    CHECK(usage[2].value == 11);  // 5 + 6: added, not replaced
}

TEST_CASE("a v1 database is migrated to the current schema with its data intact",
          "[job_store][migration]") {
    TempDir dir;
    const std::string path = dir.file("jobs.db");
    {
        RawDatabase raw(path);
        exec_sql(raw.db, JobStore::migration_sql(1));
        exec_sql(raw.db, "PRAGMA user_version = 1");
        exec_sql(raw.db,
                 "INSERT INTO jobs (id, owner_uid, owner_gid, display_name, priority, state, "
                 "created, modified, transfer_completed, no_progress_timeout, retry_count, "
                 "bytes_from_origin, bytes_from_peers) VALUES ('" + uuid(1) +
                     "', 1000, 100, 'old job', 1, 4, 10, 20, 0, 600, 3, 111, 222);"
                     "INSERT INTO job_headers VALUES ('" + uuid(1) + "', 0, 'X-A: 1');"
                     "INSERT INTO job_headers VALUES ('" + uuid(1) + "', 1, 'X-B: 2');"
                     "INSERT INTO files (job_id, idx, remote_url, local_path, bytes_total, "
                     "bytes_transferred) VALUES ('" + uuid(1) +
                     "', 0, 'https://o/a', '/tmp/a', NULL, 7);"
                     "INSERT INTO errors (job_id, context, code, description, time) VALUES ('" +
                     uuid(1) + "', 2, 404, 'Not Found', 15);");
    }

    auto store = JobStore::open(path);
    CHECK(query_int(store->handle(), "PRAGMA user_version") == JobStore::schema_version());
    CHECK(query_int(store->handle(),
                    "SELECT count(*) FROM sqlite_schema WHERE name = 'jobs_by_state'") == 1);

    const auto job = store->load_job(uuid(1));
    REQUIRE(job);
    CHECK(job->display_name == "old job");
    CHECK(job->owner_uid == 1000);
    CHECK(job->priority == Priority::High);
    CHECK(job->state == JobState::Error);
    CHECK(job->retry_count == 3);
    CHECK(job->bytes_from_peers == 222);
    CHECK_FALSE(job->auto_complete);  // v1 jobs waited for the client's Complete
    CHECK(job->umask == 022);         // files of older jobs stay 0644
    CHECK(job->headers == std::vector<std::string>{"X-A: 1", "X-B: 2"});
    REQUIRE(job->files.size() == 1);
    CHECK(job->files[0].bytes_total == kUnknownSize);
    CHECK(job->files[0].bytes_transferred == 7);
    CHECK(job->files[0].durable_bytes == 0);  // never flushed mid-transfer: fetched again
    REQUIRE(job->error);
    CHECK(job->error->code == 404);
    CHECK(job->error->file_index == -1);

    // The migrated database is fully usable.
    REQUIRE(store->set_state_clearing_error(uuid(1), JobState::Queued, 30));
    auto fresh = make_job(uuid(2));
    fresh.umask = 077;
    store->insert_job(fresh);
    CHECK(store->load_job(uuid(2))->auto_complete);
    CHECK(store->load_job(uuid(2))->umask == 077);
}

TEST_CASE("a database from a newer dopt is refused, not downgraded", "[job_store][migration]") {
    TempDir dir;
    const std::string path = dir.file("jobs.db");
    { auto store = JobStore::open(path); }
    const int newer = JobStore::schema_version() + 1;
    {
        RawDatabase raw(path);
        exec_sql(raw.db, "PRAGMA user_version = " + std::to_string(newer));
    }

    try {
        JobStore::open(path);
        FAIL("open() accepted a database newer than the code");
    } catch (const StorageError& e) {
        const std::string message = e.what();
        INFO(message);
        CHECK(message.find("newer") != std::string::npos);
        CHECK(message.find(std::to_string(newer)) != std::string::npos);
    }
    RawDatabase raw(path);
    CHECK(query_int(raw.db, "PRAGMA user_version") == newer);
}

TEST_CASE("a file that is not a database fails open with StorageError", "[job_store]") {
    TempDir dir;
    const std::string path = dir.file("jobs.db");
    std::ofstream(path) << "this is not an SQLite database, not even close........\n";
    CHECK_THROWS_AS(JobStore::open(path), StorageError);
    CHECK_THROWS_AS(JobStore::open(dir.file("no/such/dir/jobs.db")), StorageError);
}

TEST_CASE("jobs survive closing and reopening the store", "[job_store]") {
    TempDir dir;
    const std::string path = dir.file("jobs.db");
    JobRecord job = make_job(uuid(1));
    {
        auto store = JobStore::open(path);
        store->insert_job(job);
        REQUIRE(store->set_state(job.id, JobState::Connecting, 50));
        REQUIRE(store->set_error(job.id, make_error("gone"), 60));
    }
    auto store = JobStore::open(path);
    job.state = JobState::Error;
    job.modified = 60;
    job.error = make_error("gone");
    check_same_job(*store->load_job(job.id), job);
}

TEST_CASE("2,000 jobs inserted one call each all load back", "[job_store][volume]") {
    TempDir dir;
    auto store = JobStore::open(dir.file("jobs.db"));
    constexpr int kJobs = 2000;
    for (int i = 0; i < kJobs; ++i) store->insert_job(make_job(uuid(i), i));
    const auto all = store->load_all();
    REQUIRE(all.size() == kJobs);
    CHECK(all.front().id == uuid(0));
    CHECK(all.back().id == uuid(kJobs - 1));
    CHECK(all.back().files.size() == 2);
    CHECK(all.back().headers.size() == 3);
}

TEST_CASE("a notification is stored in the same transaction as the state change it reports",
          "[store][outbox]") {
    TempDir dir;
    auto store = JobStore::open(dir.file("jobs.db"));
    JobRecord job = make_job(uuid(1));
    job.files = {make_file(0), make_file(1)};
    store->insert_job(job);

    REQUIRE(store->set_state(job.id, JobState::Connecting, 10));
    const std::optional<std::int64_t> error_note = store->set_error_notifying(job.id, make_error("403"), 11, 2);
    REQUIRE(error_note.has_value());
    CHECK(*error_note > 0);
    // An illegal transition adds no notification either.
    CHECK_FALSE(store->set_state_notifying(job.id, JobState::Transferred, 12, 1).has_value());

    FileRecord file = make_file(0);
    file.completed = true;
    std::int64_t file_note = store->update_file(job.id, file, 8, 13);
    CHECK(file_note > *error_note);
    CHECK(store->update_file(job.id, file) == 0);

    auto pending = store->load_notifications();
    REQUIRE(pending.size() == 2);
    CHECK(pending[0].id == *error_note);
    CHECK(pending[0].kind == 2);
    CHECK(pending[0].file_index == -1);
    CHECK(pending[1].kind == 8);
    CHECK(pending[1].file_index == 0);
    CHECK(pending[1].created == 13);
}

TEST_CASE("notifications survive a reopen and go when acknowledged or when their job goes",
          "[store][outbox]") {
    TempDir dir;
    std::int64_t first = 0, second = 0;
    {
        auto store = JobStore::open(dir.file("jobs.db"));
        store->insert_job(make_job(uuid(1)));
        store->insert_job(make_job(uuid(2)));
        first = store->set_error_notifying(uuid(1), make_error("x"), 5, 2).value_or(0);
        second = store->set_error_notifying(uuid(2), make_error("y"), 5, 2).value_or(0);
        REQUIRE(first > 0);
        REQUIRE(second > 0);
    }
    auto store = JobStore::open(dir.file("jobs.db"));
    REQUIRE(store->load_notifications().size() == 2);
    store->delete_notification(first);
    auto left = store->load_notifications();
    REQUIRE(left.size() == 1);
    CHECK(left[0].id == second);
    store->delete_job(uuid(2));
    CHECK(store->load_notifications().empty());
}

TEST_CASE("peer cache entries and a file's metainfo fields survive a reopen", "[job_store]") {
    TempDir dir;
    std::string blob("d4:infod6:lengthi5ee\0binary\xff", 29);
    {
        auto store = JobStore::open(dir.file("jobs.db"));
        JobRecord job = make_job(uuid(1));
        job.files[0].metainfo_source = "origin";
        job.files[0].info_hash = std::string(40, 'a');
        store->insert_job(job);
        job.files[0].metainfo_url = "http://127.0.0.1/x.torrent";
        store->update_file(job.id, job.files[0]);

        CacheEntry e;
        e.info_hash = std::string(40, 'a');
        e.name = "x.iso";
        e.size = 5;
        e.origin_url = "http://127.0.0.1/x.iso";
        e.owner_uid = 1000;
        e.last_used = 42;
        e.metainfo = blob;
        store->put_cache_entry(e);
        e.info_hash = std::string(40, 'b');
        e.last_used = 7;
        e.complete = true;
        e.resume_data = blob;
        e.sha256 = std::string(64, 'c');
        store->put_cache_entry(e);
    }
    auto store = JobStore::open(dir.file("jobs.db"));
    auto job = store->load_job(uuid(1));
    REQUIRE(job);
    CHECK(job->files[0].metainfo_source == "origin");
    CHECK(job->files[0].metainfo_url == "http://127.0.0.1/x.torrent");
    CHECK(job->files[0].info_hash == std::string(40, 'a'));
    auto cache = store->load_cache();
    REQUIRE(cache.size() == 2);
    CHECK(cache[0].info_hash == std::string(40, 'b'));  // least recently used first
    CHECK(cache[0].complete);
    CHECK(cache[0].resume_data == blob);
    CHECK(cache[0].sha256 == std::string(64, 'c'));
    CHECK(cache[1].sha256.empty());
    CHECK(cache[1].metainfo == blob);
    CHECK(cache[1].resume_data.empty());
    CHECK(cache[1].owner_uid == 1000);
    store->delete_cache_entry(std::string(40, 'b'));
    CHECK(store->load_cache().size() == 1);
}

TEST_CASE("a StorageError says whether SQLite found the disk full") {
    // SQLite reports ENOSPC from a write as SQLITE_FULL; the agent turns it
    // into ENOSPC for the job, and any other failure into EIO.
    CHECK(StorageError("job store: x: database or disk is full", SQLITE_FULL).disk_full());
    CHECK_FALSE(StorageError("job store: x: disk I/O error", SQLITE_IOERR_WRITE).disk_full());
    // The text alone decides nothing: a path may contain the word "full".
    CHECK_FALSE(StorageError("job store: opening /srv/full/jobs.db: unable to open").disk_full());
}
