// libdopt against a real doptd: each test case starts its own agent on a
// private temporary directory (tests/api/agent_fixture.h) and, where bytes
// move, a tiny HTTP/1.1 origin on 127.0.0.1. Nothing leaves the machine.
#define CATCH_CONFIG_EXTERNAL_INTERFACES
#include "agent_fixture.h"

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

bool read_exact(int fd, char* p, size_t n) {
    while (n > 0) {
        ssize_t r = ::read(fd, p, n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return false;
        p += r;
        n -= static_cast<size_t>(r);
    }
    return true;
}

// One reply frame; REQUIREs it to arrive whole and to be JSON.
json raw_reply(int fd) {
    unsigned char hdr[4];
    REQUIRE(read_exact(fd, reinterpret_cast<char*>(hdr), 4));
    std::uint32_t n = (std::uint32_t{hdr[0]} << 24) | (std::uint32_t{hdr[1]} << 16) |
                      (std::uint32_t{hdr[2]} << 8) | hdr[3];
    REQUIRE(n <= (1u << 20));
    std::string body(n, '\0');
    REQUIRE(read_exact(fd, body.data(), n));
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
    int rc = dopt_job_wait(job.get(), -1, &st);
    INFO(dopt_last_error());
    REQUIRE(rc == DOPT_OK);
    REQUIRE(st == DOPT_STATE_TRANSFERRED);
    CHECK_FALSE(file_exists(dest));  // never before Complete

    dopt_progress p{};
    REQUIRE(dopt_job_get_progress(job.get(), &p) == DOPT_OK);
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
    REQUIRE(dopt_job_get_times(job.get(), &t) == DOPT_OK);
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
    REQUIRE(dopt_job_status_file(s.get(), 0, &fi) == DOPT_OK);
    CHECK(std::string(fi.local_name) == dest);
    CHECK(std::string(fi.remote_name) == origin.url("/file.bin"));
    CHECK(fi.bytes_total == body.size());
    CHECK(dopt_job_status_error(s.get()) == nullptr);
}

TEST_CASE("Bad input gets its specific code and the agent keeps serving") {
    AgentFixture f;
    HttpOrigin origin;
    origin.add("/ok.bin", Route{200, random_bytes(4096, 2)});
    Job job = f.create_job();
    dopt_job* j = job.get();
    const std::string dest = f.files + "/bad-input.bin";
    const std::string url = origin.url("/ok.bin");

    SECTION("each bad argument") {
        CHECK(dopt_job_add_file(j, url.c_str(), "relative/path.bin") == DOPT_E_RELATIVE_PATH);
        CHECK(dopt_job_add_file(j, url.c_str(), "path.bin") == DOPT_E_RELATIVE_PATH);

        CHECK(dopt_job_add_file(j, "http://", dest.c_str()) == DOPT_E_INVALID_URL);
        CHECK(dopt_job_add_file(j, "not a url", dest.c_str()) == DOPT_E_INVALID_URL);
        CHECK(dopt_job_add_file(j, "http://host/with space", dest.c_str()) == DOPT_E_INVALID_URL);
        CHECK(dopt_job_add_file(j, "ftp://x/y", dest.c_str()) == DOPT_E_UNSUPPORTED_SCHEME);
        CHECK(dopt_job_add_file(j, "file:///etc/passwd", dest.c_str()) == DOPT_E_UNSUPPORTED_SCHEME);

        const std::string missing = f.files + "/no-such-folder/x.bin";
        CHECK(dopt_job_add_file(j, url.c_str(), missing.c_str()) == DOPT_E_ACCESS);
        CHECK_FALSE(file_exists(f.files + "/no-such-folder"));

        CHECK(dopt_job_add_file(j, nullptr, dest.c_str()) == DOPT_E_INVALID_ARG);
        CHECK(dopt_job_add_file(j, url.c_str(), nullptr) == DOPT_E_INVALID_ARG);
        CHECK(dopt_job_add_file(nullptr, url.c_str(), dest.c_str()) == DOPT_E_INVALID_ARG);
        CHECK(dopt_job_add_file(j, "", dest.c_str()) == DOPT_E_INVALID_ARG);
        CHECK(dopt_job_add_file(j, url.c_str(), "") == DOPT_E_INVALID_ARG);

        // None of that added a file.
        {
            Status s = AgentFixture::status_of(j);
            CHECK(dopt_job_status_file_count(s.get()) == 0);
            CHECK(partial_files(f.files).empty());
        }

        // SHA-256 hex: checked, and only for a file the job has.
        REQUIRE(dopt_job_add_file(j, url.c_str(), dest.c_str()) == DOPT_E_OK_PLACEHOLDER);
    }
}
