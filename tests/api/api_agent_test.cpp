// libdopt against a real doptd: each test case starts its own agent on a
// private temporary directory (tests/api/agent_fixture.h) and, where bytes
// move, a tiny HTTP/1.1 origin on 127.0.0.1. Nothing leaves the machine.
#define CATCH_CONFIG_EXTERNAL_INTERFACES
#include "agent_fixture.h"
#include "protocol/frame.h"

#include <nlohmann/json.hpp>

#include <set>

#include <grp.h>
#include <sys/un.h>

using namespace dopt_test;
using nlohmann::json;

namespace {

const std::string kZeroSha(64, '0');

// A job with one file of `origin` at `path`, destination `dest`, resumed.
Job start_download(AgentFixture& f, HttpOrigin& origin, const std::string& path,
                   const std::string& dest) {
    Job job = f.create_job();
    INFO(dopt_last_error());
    REQUIRE(dopt_job_add_file(job.get(), origin.url(path).c_str(), dest.c_str()) == DOPT_OK);
    REQUIRE(dopt_job_resume(job.get()) == DOPT_OK);
    return job;
}

// Waits until the agent's retry delay has passed `retries` times from now:
// a control job on a route that always answers 503 is retried with the
// same delays as any job, so once the origin saw its `retries` retries, any
// job the agent meant to retry would have been retried too.
void wait_retry_periods(AgentFixture& f, HttpOrigin& origin, int retries) {
    origin.add("/unavailable.bin", Route{503, ""});
    const std::string folder = f.files + "/control";  // its files are not the test's
    REQUIRE(::mkdir(folder.c_str(), 0755) == 0);
    Job control = start_download(f, origin, "/unavailable.bin", folder + "/unavailable.bin");
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (origin.requests("/unavailable.bin") < 1 + retries &&
           std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    REQUIRE(origin.requests("/unavailable.bin") >= 1 + retries);
    REQUIRE(dopt_job_cancel(control.get()) == DOPT_OK);
}

// ---- raw protocol helpers (no libdopt) ---------------------------------------

int raw_connect(const std::string& path) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    timeval tv{10, 0};  // no test hangs on a missing reply
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

void raw_send(int fd, const std::string& bytes) {
    REQUIRE(::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size()));
}

std::string frame(const std::string& body, std::uint32_t announced) {
    char hdr[4] = {char(announced >> 24), char(announced >> 16), char(announced >> 8), char(announced)};
    return std::string(hdr, 4) + body;
}
std::string frame(const std::string& body) { return frame(body, static_cast<std::uint32_t>(body.size())); }

// One reply frame; REQUIREs it to arrive whole, within the frame limit, and
// to be JSON.
json raw_reply(int fd) {
    std::string body;
    REQUIRE(dopt::protocol::read_frame(fd, body) == dopt::protocol::FrameResult::Ok);
    INFO(body);
    json j = json::parse(body, nullptr, false);
    REQUIRE(!j.is_discarded());
    return j;
}

// True when the peer closed the connection (EOF) within the receive timeout.
bool raw_closed(int fd) {
    char c;
    ssize_t r;
    do {
        r = ::read(fd, &c, 1);
    } while (r < 0 && errno == EINTR);
    return r == 0 || (r < 0 && errno == ECONNRESET);
}

json hello_req(int seq) {
    return {{"op", "hello"}, {"seq", seq}, {"protocol", 1}, {"client", "api_agent_test"}};
}

// A client that must still work: it creates a job and reads it back.
void check_client_works(AgentFixture& f, dopt_client* c) {
    Job j = f.create_job(c, "still-works");
    CHECK(AgentFixture::state_of(j.get()) == DOPT_STATE_SUSPENDED);
}

}  // namespace

// -----------------------------------------------------------------------------

TEST_CASE("A job downloads a file through the C API and lands only on complete") {
    AgentFixture f;
    HttpOrigin origin;
    const std::string body = random_bytes(300 * 1024 + 17, 1);
    origin.add("/file.bin", Route{200, body});
    const std::string dest = f.files + "/file.bin";

    Job job = f.create_job(nullptr, "download");
    REQUIRE(dopt_job_add_file(job.get(), origin.url("/file.bin").c_str(), dest.c_str()) == DOPT_OK);
    REQUIRE(dopt_job_set_file_sha256(job.get(), 0, sha256_hex(body).c_str()) == DOPT_OK);
    REQUIRE(dopt_job_resume(job.get()) == DOPT_OK);

    dopt_job_state st = DOPT_STATE_QUEUED;
    int rc = dopt_job_wait(&st, job.get(), -1);
    INFO(dopt_last_error());
    REQUIRE(rc == DOPT_OK);
    REQUIRE(st == DOPT_STATE_TRANSFERRED);
    CHECK_FALSE(file_exists(dest));  // never before Complete

    dopt_progress p{};
    REQUIRE(dopt_job_fetch_progress(&p, job.get()) == DOPT_OK);
    CHECK(p.bytes_total == body.size());
    CHECK(p.bytes_transferred == body.size());
    CHECK(p.files_total == 1);
    CHECK(p.files_transferred == 1);
    CHECK(p.bytes_from_origin == body.size());

    REQUIRE(dopt_job_complete(job.get()) == DOPT_OK);
    CHECK(AgentFixture::state_of(job.get()) == DOPT_STATE_ACKNOWLEDGED);
    REQUIRE(file_exists(dest));
    CHECK(read_file(dest) == body);
    CHECK(partial_files(f.files).empty());

    dopt_times t{};
    REQUIRE(dopt_job_fetch_times(&t, job.get()) == DOPT_OK);
    CHECK(t.created > 0);
    CHECK(t.created <= t.modified);
    CHECK(t.transfer_completed > 0);
    CHECK(t.transfer_completed >= t.created);

    Status s = AgentFixture::status_of(job.get());
    CHECK(std::string(dopt_job_status_id(s.get())) == dopt_job_id(job.get()));
    CHECK(std::string(dopt_job_status_display_name(s.get())) == "download");
    CHECK(std::string(dopt_job_status_mode(s.get())) == "http_only");
    REQUIRE(dopt_job_status_file_count(s.get()) == 1);
    dopt_file_info fi{};
    REQUIRE(dopt_job_status_file(&fi, s.get(), 0) == DOPT_OK);
    CHECK(std::string(fi.local_name) == dest);
    CHECK(std::string(fi.remote_name) == origin.url("/file.bin"));
    CHECK(fi.bytes_total == body.size());
    CHECK(dopt_job_status_error(s.get()) == nullptr);
}

TEST_CASE("A client names its agent; a status gives the no-progress timeout in force") {
    AgentFixture f;
    CHECK(std::string(dopt_client_agent_version(f.client.get())) == "doptd " DOPT_VERSION_STRING);
    Job job = f.create_job();
    const std::uint32_t agent_default = 14 * 24 * 3600;  // [jobs] no_progress_timeout, unset
    CHECK(dopt_job_status_no_progress_timeout(AgentFixture::status_of(job.get()).get()) == agent_default);
    REQUIRE(dopt_job_set_no_progress_timeout(job.get(), 77) == DOPT_OK);
    CHECK(dopt_job_status_no_progress_timeout(AgentFixture::status_of(job.get()).get()) == 77);
    REQUIRE(dopt_job_set_no_progress_timeout(job.get(), 0) == DOPT_OK);  // the agent's again
    CHECK(dopt_job_status_no_progress_timeout(AgentFixture::status_of(job.get()).get()) == agent_default);
}

TEST_CASE("Bad input gets its specific code and the agent keeps serving") {
    AgentFixture f;
    HttpOrigin origin;
    const std::string body = random_bytes(4096, 2);
    origin.add("/ok.bin", Route{200, body});
    Job job = f.create_job();
    dopt_job* j = job.get();
    const std::string dest = f.files + "/bad-input.bin";
    const std::string url = origin.url("/ok.bin");

    // Local paths.
    CHECK(dopt_job_add_file(j, url.c_str(), "relative/path.bin") == DOPT_E_RELATIVE_PATH);
    CHECK(std::strlen(dopt_last_error()) > 0);
    CHECK(dopt_job_add_file(j, url.c_str(), "path.bin") == DOPT_E_RELATIVE_PATH);
    const std::string missing = f.files + "/no-such-folder/x.bin";
    CHECK(dopt_job_add_file(j, url.c_str(), missing.c_str()) == DOPT_E_ACCESS);
    CHECK_FALSE(file_exists(f.files + "/no-such-folder"));
    CHECK(dopt_job_add_file(j, url.c_str(), (f.files + "/").c_str()) == DOPT_E_INVALID_ARG);

    // URLs.
    CHECK(dopt_job_add_file(j, "http://", dest.c_str()) == DOPT_E_INVALID_URL);
    CHECK(dopt_job_add_file(j, "not a url", dest.c_str()) == DOPT_E_INVALID_URL);
    CHECK(dopt_job_add_file(j, "http://host/with space", dest.c_str()) == DOPT_E_INVALID_URL);
    CHECK(dopt_job_add_file(j, "ftp://x/y", dest.c_str()) == DOPT_E_UNSUPPORTED_SCHEME);
    CHECK(dopt_job_add_file(j, "file:///etc/passwd", dest.c_str()) == DOPT_E_UNSUPPORTED_SCHEME);

    // NULL and empty arguments.
    CHECK(dopt_job_add_file(j, nullptr, dest.c_str()) == DOPT_E_INVALID_ARG);
    CHECK(dopt_job_add_file(j, url.c_str(), nullptr) == DOPT_E_INVALID_ARG);
    CHECK(dopt_job_add_file(nullptr, url.c_str(), dest.c_str()) == DOPT_E_INVALID_ARG);
    CHECK(dopt_job_add_file(j, "", dest.c_str()) == DOPT_E_INVALID_ARG);
    CHECK(dopt_job_add_file(j, url.c_str(), "") == DOPT_E_INVALID_ARG);

    // None of that added a file or left one behind.
    {
        Status s = AgentFixture::status_of(j);
        CHECK(dopt_job_status_file_count(s.get()) == 0);
        CHECK(partial_files(f.files).empty());
    }
    REQUIRE(dopt_job_add_file(j, url.c_str(), dest.c_str()) == DOPT_OK);

    // SHA-256: 64 hex digits, for a file the job has.
    CHECK(dopt_job_set_file_sha256(j, 0, "xyz") == DOPT_E_INVALID_ARG);
    CHECK(dopt_job_set_file_sha256(j, 0, std::string(63, 'a').c_str()) == DOPT_E_INVALID_ARG);
    CHECK(dopt_job_set_file_sha256(j, 0, std::string(65, 'a').c_str()) == DOPT_E_INVALID_ARG);
    CHECK(dopt_job_set_file_sha256(j, 0, std::string(64, 'g').c_str()) == DOPT_E_INVALID_ARG);
    CHECK(dopt_job_set_file_sha256(j, 0, "") == DOPT_E_INVALID_ARG);
    CHECK(dopt_job_set_file_sha256(j, 0, nullptr) == DOPT_E_INVALID_ARG);
    CHECK(dopt_job_set_file_sha256(j, 1, kZeroSha.c_str()) == DOPT_E_INVALID_ARG);

    // Headers: one line "Name: value".
    CHECK(dopt_job_add_http_header(j, "X-A: b\r\nX-Evil: c") == DOPT_E_INVALID_ARG);
    CHECK(dopt_job_add_http_header(j, "X-A: b\n") == DOPT_E_INVALID_ARG);
    CHECK(dopt_job_add_http_header(j, "X-A: b\rc") == DOPT_E_INVALID_ARG);
    CHECK(dopt_job_add_http_header(j, "no colon") == DOPT_E_INVALID_ARG);
    CHECK(dopt_job_add_http_header(j, "") == DOPT_E_INVALID_ARG);
    CHECK(dopt_job_add_http_header(j, nullptr) == DOPT_E_INVALID_ARG);

    // Job ids.
    dopt_job* none = reinterpret_cast<dopt_job*>(1);
    CHECK(dopt_job_open(&none, f.client.get(), "00000000-0000-4000-8000-000000000000") == DOPT_E_NOT_FOUND);
    CHECK(none == nullptr);
    CHECK(dopt_job_open(&none, f.client.get(), "garbage") == DOPT_E_NOT_FOUND);
    CHECK(dopt_job_open(&none, f.client.get(), "../../etc/passwd") == DOPT_E_NOT_FOUND);
    CHECK(dopt_job_open(&none, f.client.get(), "") == DOPT_E_INVALID_ARG);
    CHECK(dopt_job_open(&none, f.client.get(), nullptr) == DOPT_E_INVALID_ARG);
    CHECK(dopt_job_open(nullptr, f.client.get(), dopt_job_id(j)) == DOPT_E_INVALID_ARG);
    CHECK(dopt_job_open(&none, nullptr, dopt_job_id(j)) == DOPT_E_INVALID_ARG);
    CHECK(dopt_job_create(&none, nullptr, "x") == DOPT_E_INVALID_ARG);
    CHECK(none == nullptr);

    // Sizes: over the 1 MiB frame (refused before sending), and over the
    // agent's own limits (refused by the agent).
    const std::string huge(2u << 20, 'n');
    CHECK(dopt_job_create(&none, f.client.get(), huge.c_str()) == DOPT_E_TOO_LARGE);
    CHECK(none == nullptr);
    CHECK(dopt_job_set_display_name(j, huge.c_str()) == DOPT_E_TOO_LARGE);
    CHECK(dopt_job_open(&none, f.client.get(), huge.c_str()) == DOPT_E_TOO_LARGE);
    CHECK(dopt_job_add_file(j, ("http://127.0.0.1/" + huge).c_str(), dest.c_str()) == DOPT_E_TOO_LARGE);
    CHECK(dopt_job_add_http_header(j, ("X-Big: " + huge).c_str()) == DOPT_E_TOO_LARGE);
    const std::string big(4096, 'n');
    CHECK(dopt_job_create(&none, f.client.get(), big.c_str()) == DOPT_E_TOO_LARGE);
    CHECK(dopt_job_set_display_name(j, big.c_str()) == DOPT_E_TOO_LARGE);
    CHECK(dopt_job_add_http_header(j, ("X-Big: " + std::string(20000, 'v')).c_str()) == DOPT_E_TOO_LARGE);
    const std::string long_path = f.files + "/" + std::string(600 * 1024, 'p');
    CHECK(dopt_job_add_file(j, url.c_str(), long_path.c_str()) == DOPT_E_INVALID_ARG);
    CHECK(dopt_job_add_file(j, url.c_str(), (f.files + "/" + std::string(300, 'p')).c_str()) ==
          DOPT_E_INVALID_ARG);  // a name longer than NAME_MAX
    // Refused files leave nothing behind; the accepted one gets its partial
    // file only when its transfer starts (the agent runs as the caller here).
    CHECK(partial_files(f.files).empty());

    // The same connection still works, and so does a new one.
    check_client_works(f, f.client.get());
    Client other = f.open_client();
    check_client_works(f, other.get());

    // And a normal job still completes.
    REQUIRE(dopt_job_set_file_sha256(j, 0, sha256_hex(body).c_str()) == DOPT_OK);
    REQUIRE(dopt_job_resume(j) == DOPT_OK);
    REQUIRE(AgentFixture::wait_for(j) == DOPT_STATE_TRANSFERRED);
    REQUIRE(dopt_job_complete(j) == DOPT_OK);
    CHECK(read_file(dest) == body);
    Status s = AgentFixture::status_of(j);
    CHECK(dopt_job_status_file_count(s.get()) == 1);
    CHECK(std::string(dopt_job_status_display_name(s.get())) == "bad-input.bin");
}

TEST_CASE("Illegal state requests return INVALID_STATE and change nothing") {
    AgentFixture f;
    HttpOrigin origin;
    const std::string body = random_bytes(10000, 3);
    origin.add("/ok.bin", Route{200, body});
    const std::string url = origin.url("/ok.bin");

    // A new job is SUSPENDED; with no file it can be neither completed nor resumed.
    Job a = f.create_job();
    CHECK(AgentFixture::state_of(a.get()) == DOPT_STATE_SUSPENDED);
    CHECK(dopt_job_complete(a.get()) == DOPT_E_INVALID_STATE);
    CHECK(AgentFixture::state_of(a.get()) == DOPT_STATE_SUSPENDED);
    CHECK(dopt_job_resume(a.get()) == DOPT_E_INVALID_STATE);
    CHECK(AgentFixture::state_of(a.get()) == DOPT_STATE_SUSPENDED);

    // With a file, still not completable before it transferred.
    const std::string dest_a = f.files + "/a.bin";
    REQUIRE(dopt_job_add_file(a.get(), url.c_str(), dest_a.c_str()) == DOPT_OK);
    CHECK(dopt_job_complete(a.get()) == DOPT_E_INVALID_STATE);
    CHECK(AgentFixture::state_of(a.get()) == DOPT_STATE_SUSPENDED);
    CHECK_FALSE(file_exists(dest_a));

    // TRANSFERRED: no suspend; ACKNOWLEDGED: nothing more.
    const std::string dest_b = f.files + "/b.bin";
    Job b = start_download(f, origin, "/ok.bin", dest_b);
    REQUIRE(AgentFixture::wait_for(b.get()) == DOPT_STATE_TRANSFERRED);
    CHECK(dopt_job_suspend(b.get()) == DOPT_E_INVALID_STATE);
    CHECK(AgentFixture::state_of(b.get()) == DOPT_STATE_TRANSFERRED);
    CHECK(dopt_job_add_file(b.get(), url.c_str(), (f.files + "/b2.bin").c_str()) == DOPT_E_INVALID_STATE);
    REQUIRE(dopt_job_complete(b.get()) == DOPT_OK);
    CHECK(AgentFixture::state_of(b.get()) == DOPT_STATE_ACKNOWLEDGED);
    CHECK(dopt_job_add_file(b.get(), url.c_str(), (f.files + "/b3.bin").c_str()) == DOPT_E_INVALID_STATE);
    CHECK(dopt_job_complete(b.get()) == DOPT_E_INVALID_STATE);
    CHECK(dopt_job_cancel(b.get()) == DOPT_E_INVALID_STATE);
    CHECK(dopt_job_resume(b.get()) == DOPT_E_INVALID_STATE);
    CHECK(dopt_job_suspend(b.get()) == DOPT_E_INVALID_STATE);
    CHECK(dopt_job_set_priority(b.get(), DOPT_PRIORITY_HIGH) == DOPT_E_INVALID_STATE);
    {
        Status s = AgentFixture::status_of(b.get());
        CHECK(dopt_job_status_state(s.get()) == DOPT_STATE_ACKNOWLEDGED);
        CHECK(dopt_job_status_file_count(s.get()) == 1);
        CHECK(dopt_job_status_priority(s.get()) == DOPT_PRIORITY_NORMAL);
    }
    CHECK(read_file(dest_b) == body);
    CHECK_FALSE(file_exists(f.files + "/b2.bin"));
    CHECK_FALSE(file_exists(f.files + "/b3.bin"));

    // Cancel twice: the second is refused; nothing brings it back.
    REQUIRE(dopt_job_cancel(a.get()) == DOPT_OK);
    CHECK(AgentFixture::state_of(a.get()) == DOPT_STATE_CANCELLED);
    CHECK(dopt_job_cancel(a.get()) == DOPT_E_INVALID_STATE);
    CHECK(dopt_job_resume(a.get()) == DOPT_E_INVALID_STATE);
    CHECK(dopt_job_complete(a.get()) == DOPT_E_INVALID_STATE);
    CHECK(dopt_job_add_file(a.get(), url.c_str(), (f.files + "/a2.bin").c_str()) == DOPT_E_INVALID_STATE);
    CHECK(AgentFixture::state_of(a.get()) == DOPT_STATE_CANCELLED);
    CHECK_FALSE(file_exists(dest_a));
    CHECK(partial_files(f.files).empty());
}

TEST_CASE("403 from the origin is a fatal REMOTE_FILE error with a readable error object") {
    AgentFixture f;
    HttpOrigin origin;
    origin.add("/forbidden.bin", Route{403, ""});
    const std::string url = origin.url("/forbidden.bin");
    const std::string dest = f.files + "/forbidden.bin";
    Job job = start_download(f, origin, "/forbidden.bin", dest);

    REQUIRE(AgentFixture::wait_for(job.get()) == DOPT_STATE_ERROR);
    dopt_error* raw = nullptr;
    REQUIRE(dopt_job_fetch_error(&raw, job.get()) == DOPT_OK);
    REQUIRE(raw != nullptr);
    Error err(raw);

    // The copy a snapshot owns, kept past the snapshot.
    Error copy;
    {
        Status s = AgentFixture::status_of(job.get());
        const dopt_error* in_status = dopt_job_status_error(s.get());
        REQUIRE(in_status != nullptr);
        dopt_error* c = nullptr;
        REQUIRE(dopt_error_copy(&c, in_status) == DOPT_OK);
        copy.reset(c);
    }

    // 403 is not retried: the job stays in ERROR past the retry delays.
    int hits = origin.requests("/forbidden.bin");
    CHECK(hits >= 1);
    wait_retry_periods(f, origin, 2);
    CHECK(origin.requests("/forbidden.bin") == hits);
    CHECK(AgentFixture::state_of(job.get()) == DOPT_STATE_ERROR);

    REQUIRE(dopt_job_cancel(job.get()) == DOPT_OK);
    CHECK(AgentFixture::state_of(job.get()) == DOPT_STATE_CANCELLED);
    CHECK(partial_files(f.files).empty());

    for (const dopt_error* e : {static_cast<const dopt_error*>(err.get()),
                                static_cast<const dopt_error*>(copy.get())}) {
        CHECK(dopt_error_context(e) == DOPT_CONTEXT_REMOTE_FILE);
        CHECK(dopt_error_code(e) == 403);
        CHECK(std::string(dopt_error_protocol(e)) == "http");
        std::string desc = dopt_error_description(e);
        INFO(desc);
        CHECK(desc.find(url) != std::string::npos);
        CHECK(dopt_error_time(e) > 0);
        dopt_file_info fi{};
        REQUIRE(dopt_error_file(&fi, e) == DOPT_OK);
        CHECK(std::string(fi.local_name) == dest);
        CHECK(std::string(fi.remote_name) == url);
        CHECK(fi.bytes_transferred == 0);
    }
    CHECK(std::string(dopt_context_name(dopt_error_context(err.get()))) == "remote_file");
}

TEST_CASE("Complete from ERROR keeps only the files fully transferred") {
    AgentFixture f;
    HttpOrigin origin;
    const std::string body = random_bytes(64 * 1024 + 3, 4);
    origin.add("/ok.bin", Route{200, body});
    origin.add("/denied.bin", Route{403, ""});
    const std::string dest0 = f.files + "/zero.bin";
    const std::string dest1 = f.files + "/one.bin";

    Job job = f.create_job();
    REQUIRE(dopt_job_add_file(job.get(), origin.url("/ok.bin").c_str(), dest0.c_str()) == DOPT_OK);
    REQUIRE(dopt_job_add_file(job.get(), origin.url("/denied.bin").c_str(), dest1.c_str()) == DOPT_OK);
    REQUIRE(dopt_job_resume(job.get()) == DOPT_OK);
    REQUIRE(AgentFixture::wait_for(job.get()) == DOPT_STATE_ERROR);

    dopt_error* raw = nullptr;
    REQUIRE(dopt_job_fetch_error(&raw, job.get()) == DOPT_OK);
    REQUIRE(raw != nullptr);
    Error err(raw);
    CHECK(dopt_error_code(err.get()) == 403);
    dopt_file_info fi{};
    REQUIRE(dopt_error_file(&fi, err.get()) == DOPT_OK);
    CHECK(std::string(fi.remote_name) == origin.url("/denied.bin"));
    CHECK(std::string(fi.local_name) == dest1);
    CHECK_FALSE(file_exists(dest0));

    dopt_progress p{};
    REQUIRE(dopt_job_fetch_progress(&p, job.get()) == DOPT_OK);
    CHECK(p.files_total == 2);
    CHECK(p.files_transferred == 1);

    REQUIRE(dopt_job_complete(job.get()) == DOPT_OK);
    CHECK(AgentFixture::state_of(job.get()) == DOPT_STATE_ACKNOWLEDGED);
    REQUIRE(file_exists(dest0));
    CHECK(read_file(dest0) == body);
    CHECK_FALSE(file_exists(dest1));
    CHECK(partial_files(f.files).empty());
}

TEST_CASE("Cancel during a transfer removes the partial data") {
    AgentFixture f;
    HttpOrigin origin;
    // 8 MiB at about 80 KB/s: it is still running when the test cancels.
    origin.add("/slow.bin", Route{200, random_bytes(8u << 20, 5), 4096, 50});
    const std::string dest = f.files + "/slow.bin";
    Job job = start_download(f, origin, "/slow.bin", dest);

    dopt_progress p{};
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
    while (p.bytes_transferred == 0 && std::chrono::steady_clock::now() < deadline) {
        REQUIRE(dopt_job_fetch_progress(&p, job.get()) == DOPT_OK);
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    REQUIRE(p.bytes_transferred > 0);
    CHECK(p.bytes_transferred < p.bytes_total);
    CHECK(AgentFixture::state_of(job.get()) == DOPT_STATE_TRANSFERRING);
    CHECK(partial_files(f.files).size() == 1);  // beside its destination

    REQUIRE(dopt_job_cancel(job.get()) == DOPT_OK);
    CHECK(AgentFixture::wait_for(job.get(), 5000) == DOPT_STATE_CANCELLED);
    CHECK(partial_files(f.files).empty());
    CHECK_FALSE(file_exists(dest));
    // Nothing writes it back later: once the origin saw the transfer's
    // connection end, no byte of it is in flight.
    auto gone = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (origin.requests_ended("/slow.bin") < origin.requests("/slow.bin") &&
           std::chrono::steady_clock::now() < gone)
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    CHECK(origin.requests_ended("/slow.bin") == origin.requests("/slow.bin"));
    CHECK(partial_files(f.files).empty());
    CHECK(AgentFixture::state_of(job.get()) == DOPT_STATE_CANCELLED);
}

TEST_CASE("Listing follows the agent's pages: 2500 jobs each once oldest first") {
    AgentFixture f;
    std::vector<std::string> ids;
    for (int i = 0; i < 3; ++i) ids.push_back(dopt_job_id(f.create_job(nullptr, "before").get()));
    REQUIRE(::mkdir((f.files + "/e").c_str(), 0755) == 0);
    const int n = 2500;
    for (int i = 0; i < n; ++i) {
        Job j = f.create_job();
        std::string dest = f.files + "/e/" + std::to_string(i) + ".bin";
        int rc = dopt_job_add_file(j.get(), ("http://127.0.0.1:9/" + std::to_string(i)).c_str(),
                                   dest.c_str());
        if (rc != DOPT_OK) FAIL("add_file " << i << ": " << dopt_last_error());
        ids.push_back(dopt_job_id(j.get()));
    }

    StatusList list;
    int rc = dopt_client_list_jobs(&list.items, &list.count, f.client.get());
    INFO(dopt_last_error());
    REQUIRE(rc == DOPT_OK);
    REQUIRE(list.count == ids.size());
    std::set<std::string> seen;
    std::int64_t last_created = 0;
    bool ordered = true;
    for (size_t i = 0; i < list.count; ++i) {
        const dopt_job_status* s = list.items[i];
        seen.insert(dopt_job_status_id(s));
        dopt_times t{};
        dopt_job_status_times(&t, s);
        if (t.created < last_created) ordered = false;
        last_created = t.created;
        CHECK(dopt_job_status_state(s) == DOPT_STATE_SUSPENDED);
    }
    CHECK(ordered);
    CHECK(seen.size() == ids.size());
    CHECK(seen == std::set<std::string>(ids.begin(), ids.end()));
    // Exact creation order within one second is pinned by the next test.
}

// "oldest first" (dopt.h, protocol.md): the job created first comes first,
// also when several share the same `created` second.
TEST_CASE("Listing is in creation order even for jobs made within one second") {
    AgentFixture f;
    std::vector<std::string> ids;
    for (int i = 0; i < 40; ++i) ids.push_back(dopt_job_id(f.create_job().get()));
    StatusList list;
    REQUIRE(dopt_client_list_jobs(&list.items, &list.count, f.client.get()) == DOPT_OK);
    std::vector<std::string> listed;
    for (size_t i = 0; i < list.count; ++i) listed.push_back(dopt_job_status_id(list.items[i]));
    CHECK(listed == ids);
}

TEST_CASE("Jobs survive kill -9 of the agent") {
    AgentFixture f;
    HttpOrigin origin;
    const std::string body = random_bytes(50000, 6);
    origin.add("/ok.bin", Route{200, body});

    // A: suspended with one file and properties. B: transferred, not completed.
    Job a = f.create_job(nullptr, "persist-a");
    const std::string dest_a = f.files + "/a.bin";
    REQUIRE(dopt_job_add_file(a.get(), origin.url("/ok.bin").c_str(), dest_a.c_str()) == DOPT_OK);
    REQUIRE(dopt_job_set_priority(a.get(), DOPT_PRIORITY_HIGH) == DOPT_OK);
    const std::string dest_b = f.files + "/b.bin";
    Job b = start_download(f, origin, "/ok.bin", dest_b);
    REQUIRE(AgentFixture::wait_for(b.get()) == DOPT_STATE_TRANSFERRED);
    const std::string id_a = dopt_job_id(a.get()), id_b = dopt_job_id(b.get());
    Status before = AgentFixture::status_of(a.get());
    dopt_times times_b{};
    REQUIRE(dopt_job_fetch_times(&times_b, b.get()) == DOPT_OK);

    f.agent.kill9();
    // The old connection is gone, and says so.
    dopt_job_state st;
    CHECK(dopt_job_fetch_state(&st, a.get()) == DOPT_E_DISCONNECTED);
    a.reset();
    b.reset();
    f.client.reset();

    f.agent.start();
    f.client = f.open_client();
    Job a2 = f.open_job(id_a);
    Status after = AgentFixture::status_of(a2.get());
    CHECK(dopt_job_status_state(after.get()) == DOPT_STATE_SUSPENDED);
    CHECK(std::string(dopt_job_status_display_name(after.get())) == "persist-a");
    CHECK(dopt_job_status_priority(after.get()) == DOPT_PRIORITY_HIGH);
    CHECK(dopt_job_status_owner_uid(after.get()) == dopt_job_status_owner_uid(before.get()));
    dopt_times t0{}, t1{};
    dopt_job_status_times(&t0, before.get());
    dopt_job_status_times(&t1, after.get());
    CHECK(t1.created == t0.created);
    REQUIRE(dopt_job_status_file_count(after.get()) == 1);
    dopt_file_info fi{};
    REQUIRE(dopt_job_status_file(&fi, after.get(), 0) == DOPT_OK);
    CHECK(std::string(fi.local_name) == dest_a);
    CHECK(std::string(fi.remote_name) == origin.url("/ok.bin"));

    Job b2 = f.open_job(id_b);
    CHECK(AgentFixture::state_of(b2.get()) == DOPT_STATE_TRANSFERRED);
    dopt_times tb{};
    REQUIRE(dopt_job_fetch_times(&tb, b2.get()) == DOPT_OK);
    CHECK(tb.transfer_completed == times_b.transfer_completed);
    REQUIRE(dopt_job_complete(b2.get()) == DOPT_OK);
    CHECK(read_file(dest_b) == body);

    StatusList list;
    REQUIRE(dopt_client_list_jobs(&list.items, &list.count, f.client.get()) == DOPT_OK);
    CHECK(list.count == 2);

    // The restarted agent still downloads: A runs to the end.
    REQUIRE(dopt_job_resume(a2.get()) == DOPT_OK);
    REQUIRE(AgentFixture::wait_for(a2.get()) == DOPT_STATE_TRANSFERRED);
    REQUIRE(dopt_job_complete(a2.get()) == DOPT_OK);
    CHECK(read_file(dest_a) == body);
}

namespace {

// In a forked child, without Catch: one request on a raw connection, the rc
// of the reply (or 1 when there is none).
int child_raw_rc(const std::string& socket, const json& request) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return 1;
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, socket.c_str(), sizeof a.sun_path - 1);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return 1;
    timeval tv{10, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    int rc = 1;
    for (const json& req : {hello_req(1), request}) {
        std::string out = frame(req.dump());
        if (::send(fd, out.data(), out.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(out.size())) break;
        std::string body;
        if (dopt::protocol::read_frame(fd, body) != dopt::protocol::FrameResult::Ok) break;
        json j = json::parse(body, nullptr, false);
        if (j.is_discarded() || !j.contains("rc")) break;
        rc = j["rc"].get<int>();
    }
    ::close(fd);
    return rc;
}

}  // namespace

TEST_CASE("Another user can neither see nor touch a job") {
    if (::geteuid() != 0) {
        WARN("needs root: switches uid");
        return;
    }
    AgentFixture f;
    // The agent as root makes its socket 0666 and its folders 0755; the
    // test's own temporary folder must be reachable too.
    REQUIRE(::chmod(f.dir.path().c_str(), 0755) == 0);
    Job job = f.create_job(nullptr, "root's");
    const std::string dest = f.files + "/root.bin";
    REQUIRE(dopt_job_add_file(job.get(), "http://127.0.0.1:9/x", dest.c_str()) == DOPT_OK);
    const std::string id = dopt_job_id(job.get());
    const std::string socket = f.agent.socket();

    // The child's results come back as its exit status: 0 when all held.
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        if (::setgroups(0, nullptr) != 0 || ::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(10);
        if (::getuid() != 65534 || ::setuid(0) == 0) ::_exit(11);
        dopt_client* c = nullptr;
        if (dopt_client_open(&c, socket.c_str()) != DOPT_OK) ::_exit(12);
        dopt_job* j = nullptr;
        if (dopt_job_open(&j, c, id.c_str()) != DOPT_E_NOT_FOUND || j != nullptr) ::_exit(13);
        dopt_job_status** items = nullptr;
        size_t count = 99;
        if (dopt_client_list_jobs(&items, &count, c) != DOPT_OK) ::_exit(14);
        if (count != 0) ::_exit(15);
        // Requests naming the id directly fare no better.
        if (child_raw_rc(socket, {{"op", "cancel"}, {"seq", 2}, {"job", id}}) != DOPT_E_NOT_FOUND) ::_exit(16);
        if (child_raw_rc(socket, {{"op", "status"}, {"seq", 2}, {"job", id}}) != DOPT_E_NOT_FOUND) ::_exit(17);
        // Its own job is its own.
        if (dopt_job_create(&j, c, "nobody's") != DOPT_OK) ::_exit(18);
        if (dopt_client_list_jobs(&items, &count, c) != DOPT_OK || count != 1) ::_exit(19);
        bool mine = dopt_job_status_owner_uid(items[0]) == 65534;
        dopt_job_status_list_free(items, count);
        dopt_job_close(j);
        dopt_client_close(c);
        ::_exit(mine ? 0 : 20);
    }
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    REQUIRE(WIFEXITED(status));
    INFO("child exit: 10 setuid, 11 uid check, 12 connect, 13 open, 14/15 list, "
         "16 raw cancel, 17 raw status, 18 create, 19/20 own job");
    CHECK(WEXITSTATUS(status) == 0);

    // Root's job is untouched; root sees both.
    CHECK(AgentFixture::state_of(job.get()) == DOPT_STATE_SUSPENDED);
    StatusList list;
    REQUIRE(dopt_client_list_jobs(&list.items, &list.count, f.client.get()) == DOPT_OK);
    CHECK(list.count == 2);
}

TEST_CASE("Eight threads share one client") {
    AgentFixture f;
    constexpr int kThreads = 8, kJobs = 100;
    struct Result {
        std::vector<std::string> ids;
        std::vector<std::string> failures;
    };
    std::vector<Result> results(kThreads);
    std::vector<std::thread> threads;
    dopt_client* client = f.client.get();
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([t, client, &results] {
            Result& r = results[static_cast<size_t>(t)];
            for (int i = 0; i < kJobs; ++i) {
                std::string name = "t" + std::to_string(t) + "-" + std::to_string(i);
                dopt_job* j = nullptr;
                if (dopt_job_create(&j, client, name.c_str()) != DOPT_OK) {
                    r.failures.push_back("create " + name + ": " + dopt_last_error());
                    continue;
                }
                dopt_job_status* s = nullptr;
                if (dopt_job_fetch_status(&s, j) != DOPT_OK) {
                    r.failures.push_back("status " + name + ": " + dopt_last_error());
                } else {
                    if (std::string(dopt_job_status_id(s)) != dopt_job_id(j) ||
                        std::string(dopt_job_status_display_name(s)) != name ||
                        dopt_job_status_state(s) != DOPT_STATE_SUSPENDED)
                        r.failures.push_back("status " + name + " does not match its job");
                    dopt_job_status_free(s);
                }
                r.ids.push_back(dopt_job_id(j));
                dopt_job_close(j);
            }
        });
    }
    for (auto& th : threads) th.join();
    std::set<std::string> ids;
    size_t total = 0;
    for (const auto& r : results) {
        for (const auto& msg : r.failures) FAIL_CHECK(msg);
        total += r.ids.size();
        ids.insert(r.ids.begin(), r.ids.end());
    }
    CHECK(total == kThreads * kJobs);
    CHECK(ids.size() == total);
    StatusList list;
    REQUIRE(dopt_client_list_jobs(&list.items, &list.count, client) == DOPT_OK);
    CHECK(list.count == kThreads * kJobs);
}

TEST_CASE("The agent answers bad frames and keeps serving") {
    AgentFixture f;

    SECTION("a frame header announcing 2 MiB gets TOO_LARGE and a closed connection") {
        int fd = raw_connect(f.agent.socket());
        raw_send(fd, frame(hello_req(1).dump()));
        json r = raw_reply(fd);
        CHECK(r["rc"] == 0);
        CHECK(r["seq"] == 1);
        CHECK(r["protocol"] == 1);
        CHECK(r["uid"] == ::geteuid());
        raw_send(fd, frame("", 2u << 20));
        r = raw_reply(fd);
        CHECK(r["rc"] == DOPT_E_TOO_LARGE);
        CHECK(r["seq"] == 0);
        CHECK(r["message"].is_string());
        CHECK(raw_closed(fd));
        ::close(fd);
        Client fresh = f.open_client();
        check_client_works(f, fresh.get());
        check_client_works(f, f.client.get());
    }

    SECTION("invalid JSON gets PROTOCOL and the connection stays usable") {
        int fd = raw_connect(f.agent.socket());
        raw_send(fd, frame(hello_req(1).dump()));
        CHECK(raw_reply(fd)["rc"] == 0);
        for (const std::string bad : {"{not json", "", "[1,2]", "\"op\"", "{\"op\":\"list\"}",
                                      "{\"op\":7,\"seq\":2}", "{\"op\":\"list\",\"seq\":\"2\"}"}) {
            INFO("body: " << bad);
            raw_send(fd, frame(bad));
            json r = raw_reply(fd);
            CHECK(r["rc"] == DOPT_E_PROTOCOL);
            CHECK(r["message"].is_string());
        }
        raw_send(fd, frame(json{{"op", "no_such_op"}, {"seq", 3}}.dump()));
        json r = raw_reply(fd);
        CHECK(r["rc"] == DOPT_E_PROTOCOL);
        CHECK(r["seq"] == 3);
        raw_send(fd, frame(json{{"op", "list"}, {"seq", 4}}.dump()));
        r = raw_reply(fd);
        CHECK(r["rc"] == 0);
        CHECK(r["seq"] == 4);
        CHECK(r["jobs"].is_array());
        ::close(fd);
    }

    SECTION("a request before hello gets PROTOCOL and does nothing") {
        int fd = raw_connect(f.agent.socket());
        raw_send(fd, frame(json{{"op", "create"}, {"seq", 7}}.dump()));
        json r = raw_reply(fd);
        CHECK(r["rc"] == DOPT_E_PROTOCOL);
        CHECK(r["seq"] == 7);
        CHECK(r.value("job", json()).is_null());
        raw_send(fd, frame(json{{"op", "list"}, {"seq", 8}}.dump()));
        r = raw_reply(fd);
        CHECK(r["rc"] == DOPT_E_PROTOCOL);
        CHECK(r["seq"] == 8);
        // hello is still possible afterwards.
        raw_send(fd, frame(hello_req(9).dump()));
        r = raw_reply(fd);
        CHECK(r["rc"] == 0);
        CHECK(r["seq"] == 9);
        ::close(fd);
        StatusList list;
        REQUIRE(dopt_client_list_jobs(&list.items, &list.count, f.client.get()) == DOPT_OK);
        CHECK(list.count == 0);
    }

    SECTION("a wrong protocol version is refused") {
        int fd = raw_connect(f.agent.socket());
        json hello = hello_req(1);
        hello["protocol"] = 99;
        raw_send(fd, frame(hello.dump()));
        json r = raw_reply(fd);
        CHECK(r["rc"] == DOPT_E_VERSION);
        CHECK(r["message"].get<std::string>().find("99") != std::string::npos);
        ::close(fd);
    }

    SECTION("a truncated frame and a hang-up leave the agent serving") {
        int fd = raw_connect(f.agent.socket());
        raw_send(fd, frame(hello_req(1).dump()));
        CHECK(raw_reply(fd)["rc"] == 0);
        raw_send(fd, frame("{\"op\":\"li", 100));
        ::close(fd);
        check_client_works(f, f.client.get());
    }
}
