// Bad input to the C API against a real doptd (issue 5, docs/reliability.md):
// empty and huge strings, unknown and malformed job ids, requests in the
// wrong state, jobs of a client that was closed, and many threads using one
// client and the same jobs at once. Every call must give the exact DOPT_E_*
// code dopt.h / docs/api.md document for the case, nothing may crash, and
// the agent must keep serving: each test case ends with a good job that is
// transferred, completed and whose file is checked byte for byte.
#include "agent_fixture.h"

#include <atomic>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

using namespace dopt_test;

namespace {

// The agent is still the same process and serves a whole job: create, add a
// file from `origin`, resume, TRANSFERRED, complete, the file's bytes.
void require_agent_serves(AgentFixture& f, HttpOrigin& origin, const std::string& name) {
    int status = 0;
    REQUIRE(::waitpid(f.agent.pid(), &status, WNOHANG) == 0);  // never exited
    const std::string body = random_bytes(100 * 1024, 77);
    origin.add("/good-" + name, Route{200, body, 0, 0});
    Client c = f.open_client();  // a fresh client: the agent takes new ones
    Job job = f.create_job(c.get(), "good job");
    const std::string dest = f.files + "/good-" + name;
    REQUIRE(dopt_job_add_file(job.get(), origin.url("/good-" + name).c_str(), dest.c_str()) == DOPT_OK);
    REQUIRE(dopt_job_resume(job.get()) == DOPT_OK);
    REQUIRE(AgentFixture::wait_for(job.get()) == DOPT_STATE_TRANSFERRED);
    REQUIRE(dopt_job_complete(job.get()) == DOPT_OK);
    REQUIRE(read_file(dest) == body);
}

// rc with the detail, for INFO.
std::string why(int rc) {
    return std::to_string(rc) + " " + dopt_strerror(rc) + ": " + dopt_last_error();
}

#define REQUIRE_RC(call, code)        \
    do {                              \
        int rc_ = (call);             \
        INFO(#call << " -> " << why(rc_)); \
        REQUIRE(rc_ == (code));       \
    } while (0)

// A route the origin trickles out (1 KiB every 100 ms: 6 s for 60 KiB), so
// a job on it stays CONNECTING / TRANSFERRING while a test pokes it.
Route slow_route(std::uint32_t seed, size_t kib = 60) {
    return Route{200, random_bytes(kib * 1024, seed), 1024, 100};
}

}  // namespace

TEST_CASE("empty and huge strings get their documented codes", "[abuse]") {
    AgentFixture f;
    HttpOrigin origin;
    origin.add("/small", Route{200, "0123456789", 0, 0});
    dopt_client* c = f.client.get();

    // display names: "" is any text; 1024 bytes is the limit (the agent's);
    // 1 MiB does not fit a frame (libdopt's check); both are TOO_LARGE.
    dopt_job* raw = nullptr;
    REQUIRE_RC(dopt_job_create(&raw, c, ""), DOPT_OK);
    Job empty_name(raw);
    REQUIRE_RC(dopt_job_create(&raw, c, std::string(1024, 'n').c_str()), DOPT_OK);
    Job max_name(raw);
    REQUIRE_RC(dopt_job_create(&raw, c, std::string(1025, 'n').c_str()), DOPT_E_TOO_LARGE);
    CHECK(raw == nullptr);
    REQUIRE_RC(dopt_job_create(&raw, c, std::string(1u << 20, 'n').c_str()), DOPT_E_TOO_LARGE);
    CHECK(raw == nullptr);
    // Not UTF-8: a malformed argument, and the client stays usable.
    REQUIRE_RC(dopt_job_create(&raw, c, "caf\xc3"), DOPT_E_INVALID_ARG);
    CHECK(raw == nullptr);
    REQUIRE(AgentFixture::state_of(empty_name.get()) == DOPT_STATE_SUSPENDED);

    dopt_job* j = empty_name.get();
    REQUIRE_RC(dopt_job_set_display_name(j, ""), DOPT_OK);
    REQUIRE_RC(dopt_job_set_display_name(j, std::string(1025, 'n').c_str()), DOPT_E_TOO_LARGE);
    REQUIRE_RC(dopt_job_set_display_name(j, std::string(1u << 20, 'n').c_str()), DOPT_E_TOO_LARGE);
    REQUIRE_RC(dopt_job_set_display_name(j, "\xff\xfe"), DOPT_E_INVALID_ARG);

    // add_file: empty url / path (libdopt), a 2 MiB URL (over the frame), a
    // 64 KiB path (over PATH_MAX: the agent's check), a 300-byte file name
    // (over NAME_MAX), URLs that are not URLs, a relative path, a path that
    // names no file.
    const std::string dest = f.files + "/a";
    const std::string url = origin.url("/small");
    REQUIRE_RC(dopt_job_add_file(j, "", dest.c_str()), DOPT_E_INVALID_ARG);
    REQUIRE_RC(dopt_job_add_file(j, url.c_str(), ""), DOPT_E_INVALID_ARG);
    std::string huge_url = origin.url("/") + std::string(2u << 20, 'u');
    REQUIRE_RC(dopt_job_add_file(j, huge_url.c_str(), dest.c_str()), DOPT_E_TOO_LARGE);
    std::string long_path = "/" + std::string(64 * 1024 - 1, 'p');
    REQUIRE_RC(dopt_job_add_file(j, url.c_str(), long_path.c_str()), DOPT_E_INVALID_ARG);
    std::string long_name = f.files + "/" + std::string(300, 'p');
    REQUIRE_RC(dopt_job_add_file(j, url.c_str(), long_name.c_str()), DOPT_E_INVALID_ARG);
    REQUIRE_RC(dopt_job_add_file(j, "not a url", dest.c_str()), DOPT_E_INVALID_URL);
    REQUIRE_RC(dopt_job_add_file(j, "http://", dest.c_str()), DOPT_E_INVALID_URL);
    REQUIRE_RC(dopt_job_add_file(j, "http://127.0.0.1/a\x01", dest.c_str()), DOPT_E_INVALID_URL);
    REQUIRE_RC(dopt_job_add_file(j, "ftp://127.0.0.1/x", dest.c_str()), DOPT_E_UNSUPPORTED_SCHEME);
    REQUIRE_RC(dopt_job_add_file(j, "file:///etc/passwd", dest.c_str()), DOPT_E_UNSUPPORTED_SCHEME);
    REQUIRE_RC(dopt_job_add_file(j, url.c_str(), "relative/x"), DOPT_E_RELATIVE_PATH);
    REQUIRE_RC(dopt_job_add_file(j, url.c_str(), (f.files + "/").c_str()), DOPT_E_INVALID_ARG);
    REQUIRE_RC(dopt_job_add_file(j, url.c_str(), (f.files + "/no/such/dir/x").c_str()), DOPT_E_ACCESS);
    REQUIRE_RC(dopt_job_add_file(j, "http://127.0.0.1/\xc3\x28", dest.c_str()), DOPT_E_INVALID_ARG);
    {
        Status s = AgentFixture::status_of(j);  // nothing of the above was added
        CHECK(dopt_job_status_file_count(s.get()) == 0);
    }

    // Properties with empty / huge / malformed values.
    REQUIRE_RC(dopt_job_add_file(j, url.c_str(), dest.c_str()), DOPT_OK);
    REQUIRE_RC(dopt_job_set_file_sha256(j, 0, ""), DOPT_E_INVALID_ARG);
    REQUIRE_RC(dopt_job_set_file_sha256(j, 0, std::string(1u << 20, 'a').c_str()), DOPT_E_INVALID_ARG);
    REQUIRE_RC(dopt_job_set_file_sha256(j, 1, std::string(64, 'a').c_str()), DOPT_E_INVALID_ARG);
    REQUIRE_RC(dopt_job_set_file_sha256(j, SIZE_MAX, std::string(64, 'a').c_str()), DOPT_E_INVALID_ARG);
    REQUIRE_RC(dopt_job_add_http_header(j, ""), DOPT_E_INVALID_ARG);
    REQUIRE_RC(dopt_job_add_http_header(j, "X-A: 1\r\nX-B: 2"), DOPT_E_INVALID_ARG);
    REQUIRE_RC(dopt_job_add_http_header(j, ("X-Big: " + std::string(17 * 1024, 'h')).c_str()),
               DOPT_E_TOO_LARGE);
    REQUIRE_RC(dopt_job_add_http_header(j, ("X-Huge: " + std::string(2u << 20, 'h')).c_str()),
               DOPT_E_TOO_LARGE);
    REQUIRE_RC(dopt_job_set_file_metainfo_url(j, 0, ""), DOPT_E_INVALID_ARG);
    REQUIRE_RC(dopt_job_set_file_metainfo_url(j, 0, "ftp://127.0.0.1/x.torrent"), DOPT_E_INVALID_URL);
    REQUIRE_RC(dopt_job_set_file_metainfo(j, 0, "d", 1), DOPT_E_INVALID_ARG);
    // Well-formed v1 metainfo in one piece of 32 MiB: over the 16 MiB limit.
    const std::string huge_pieces = "d4:infod6:lengthi10e4:name1:x12:piece lengthi33554432e6:pieces20:" +
                                    std::string(20, 'h') + "ee";
    REQUIRE_RC(dopt_job_set_file_metainfo(j, 0, huge_pieces.data(), huge_pieces.size()), DOPT_E_INVALID_ARG);
    CHECK_THAT(dopt_last_error(), Catch::Contains("piece length is 33554432 bytes"));
    std::string big_meta(700 * 1024 + 1, 'd');
    REQUIRE_RC(dopt_job_set_file_metainfo(j, 0, big_meta.data(), big_meta.size()), DOPT_E_TOO_LARGE);
    REQUIRE_RC(dopt_job_set_priority(j, static_cast<dopt_priority>(99)), DOPT_E_INVALID_ARG);
    REQUIRE_RC(dopt_job_set_priority(j, static_cast<dopt_priority>(-1)), DOPT_E_INVALID_ARG);
    dopt_job_state st;
    REQUIRE_RC(dopt_job_wait(&st, j, -2), DOPT_E_INVALID_ARG);

    // The job, after all that, is intact and works.
    REQUIRE_RC(dopt_job_resume(j), DOPT_OK);
    REQUIRE(AgentFixture::wait_for(j) == DOPT_STATE_TRANSFERRED);
    REQUIRE_RC(dopt_job_complete(j), DOPT_OK);
    REQUIRE(read_file(dest) == "0123456789");
    require_agent_serves(f, origin, "strings");
}

// Found here: the agent took a URL of any length that fits a request frame
// (~1,048,300 bytes), but not the job object every later reply carries: from
// then on get_state, cancel and list gave DOPT_E_TOO_LARGE, for the owner
// and for root, until the job was purged. URLs are now capped (16 KiB), and
// so are a job's URLs and paths together (512 KiB).
TEST_CASE("a URL just under the frame limit does not make the job unreadable", "[abuse]") {
    AgentFixture f;
    Job job = f.create_job();
    std::string url = "http://127.0.0.1:9/" + std::string(1048300 - 19, 'u');
    REQUIRE_RC(dopt_job_add_file(job.get(), url.c_str(), (f.files + "/x").c_str()), DOPT_E_TOO_LARGE);
    // Many files whose URLs are each allowed but together too many bytes.
    std::string long_url = "http://127.0.0.1:9/" + std::string(16000, 'u');
    int rc = DOPT_OK, added = 0;
    while (rc == DOPT_OK && added < 100) {
        rc = dopt_job_add_file(job.get(), long_url.c_str(), (f.files + "/x" + std::to_string(added)).c_str());
        if (rc == DOPT_OK) ++added;
    }
    CHECK(rc == DOPT_E_TOO_LARGE);
    CHECK(added >= 30);
    dopt_job_state st;
    REQUIRE_RC(dopt_job_fetch_state(&st, job.get()), DOPT_OK);
    StatusList list;
    REQUIRE_RC(dopt_client_list_jobs(&list.items, &list.count, f.client.get()), DOPT_OK);
    REQUIRE_RC(dopt_job_cancel(job.get()), DOPT_OK);
}

TEST_CASE("unknown and malformed job ids are NOT_FOUND or INVALID_ARG", "[abuse]") {
    AgentFixture f;
    HttpOrigin origin;
    dopt_client* c = f.client.get();
    dopt_job* raw = nullptr;
    const char* ids[] = {
        "00000000-0000-4000-8000-000000000000",  // well-formed, unknown
        "ffffffff-ffff-ffff-ffff-ffffffffffff",
        "not-a-uuid",
        "../../etc/passwd",
        "' OR 1=1 --",                            // SQL in a job id
        "%s%s%n",
        "x",
    };
    for (const char* id : ids) {
        INFO("id " << id);
        REQUIRE_RC(dopt_job_open(&raw, c, id), DOPT_E_NOT_FOUND);
        CHECK(raw == nullptr);
    }
    REQUIRE_RC(dopt_job_open(&raw, c, ""), DOPT_E_INVALID_ARG);
    REQUIRE_RC(dopt_job_open(&raw, c, "\xff"), DOPT_E_INVALID_ARG);
    REQUIRE_RC(dopt_job_open(&raw, c, std::string(64 * 1024, 'i').c_str()), DOPT_E_NOT_FOUND);
    REQUIRE_RC(dopt_job_open(&raw, c, std::string(2u << 20, 'i').c_str()), DOPT_E_TOO_LARGE);
    // A real id with one character changed, in another case, with a suffix.
    Job job = f.create_job();
    std::string id = dopt_job_id(job.get());
    std::string other = id;
    other[0] = other[0] == 'a' ? 'b' : 'a';
    std::string upper = id;
    for (char& ch : upper) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    REQUIRE_RC(dopt_job_open(&raw, c, other.c_str()), DOPT_E_NOT_FOUND);
    if (upper != id) REQUIRE_RC(dopt_job_open(&raw, c, upper.c_str()), DOPT_E_NOT_FOUND);
    REQUIRE_RC(dopt_job_open(&raw, c, (id + " ").c_str()), DOPT_E_NOT_FOUND);
    REQUIRE_RC(dopt_job_open(&raw, c, id.c_str()), DOPT_OK);
    Job same(raw);
    CHECK(std::string(dopt_job_id(same.get())) == id);
    require_agent_serves(f, origin, "ids");
}

TEST_CASE("requests in the wrong state are INVALID_STATE and change nothing", "[abuse]") {
    AgentFixture f;
    HttpOrigin origin;
    origin.add("/slow", slow_route(5));
    origin.add("/fast", Route{200, random_bytes(4096, 6), 0, 0});

    // A new job has no files: resume is INVALID_STATE, complete too;
    // suspend of a suspended job is a no-op.
    Job empty = f.create_job();
    REQUIRE_RC(dopt_job_resume(empty.get()), DOPT_E_INVALID_STATE);
    REQUIRE_RC(dopt_job_complete(empty.get()), DOPT_E_INVALID_STATE);
    REQUIRE_RC(dopt_job_suspend(empty.get()), DOPT_OK);
    REQUIRE(AgentFixture::state_of(empty.get()) == DOPT_STATE_SUSPENDED);

    // A job being transferred (slow origin): complete is INVALID_STATE;
    // suspended, it still cannot be completed; files may be added to it.
    Job running = f.create_job();
    REQUIRE_RC(dopt_job_add_file(running.get(), origin.url("/slow").c_str(), (f.files + "/slow").c_str()),
               DOPT_OK);
    REQUIRE_RC(dopt_job_resume(running.get()), DOPT_OK);
    REQUIRE_RC(dopt_job_resume(running.get()), DOPT_OK);  // no-op
    REQUIRE_RC(dopt_job_complete(running.get()), DOPT_E_INVALID_STATE);
    REQUIRE_RC(dopt_job_suspend(running.get()), DOPT_OK);
    REQUIRE_RC(dopt_job_complete(running.get()), DOPT_E_INVALID_STATE);
    REQUIRE_RC(dopt_job_add_file(running.get(), origin.url("/fast").c_str(), (f.files + "/slow2").c_str()),
               DOPT_OK);
    REQUIRE(AgentFixture::state_of(running.get()) == DOPT_STATE_SUSPENDED);
    // The same destination on another live job.
    Job rival = f.create_job();
    REQUIRE_RC(dopt_job_add_file(rival.get(), origin.url("/fast").c_str(), (f.files + "/slow").c_str()),
               DOPT_E_EXISTS);

    // TRANSFERRED: no more files, no suspend, no resume; complete once.
    Job done = f.create_job();
    const std::string dest = f.files + "/fast";
    REQUIRE_RC(dopt_job_add_file(done.get(), origin.url("/fast").c_str(), dest.c_str()), DOPT_OK);
    REQUIRE_RC(dopt_job_resume(done.get()), DOPT_OK);
    REQUIRE(AgentFixture::wait_for(done.get()) == DOPT_STATE_TRANSFERRED);
    REQUIRE_RC(dopt_job_add_file(done.get(), origin.url("/fast").c_str(), (f.files + "/f2").c_str()),
               DOPT_E_INVALID_STATE);
    REQUIRE_RC(dopt_job_suspend(done.get()), DOPT_E_INVALID_STATE);
    REQUIRE_RC(dopt_job_resume(done.get()), DOPT_E_INVALID_STATE);
    REQUIRE_RC(dopt_job_set_file_sha256(done.get(), 0, std::string(64, 'a').c_str()),
               DOPT_E_INVALID_STATE);
    REQUIRE(AgentFixture::state_of(done.get()) == DOPT_STATE_TRANSFERRED);
    REQUIRE_RC(dopt_job_complete(done.get()), DOPT_OK);
    // ACKNOWLEDGED: everything that changes the job is INVALID_STATE.
    REQUIRE_RC(dopt_job_complete(done.get()), DOPT_E_INVALID_STATE);
    REQUIRE_RC(dopt_job_cancel(done.get()), DOPT_E_INVALID_STATE);
    REQUIRE_RC(dopt_job_resume(done.get()), DOPT_E_INVALID_STATE);
    REQUIRE_RC(dopt_job_suspend(done.get()), DOPT_E_INVALID_STATE);
    REQUIRE_RC(dopt_job_add_file(done.get(), origin.url("/fast").c_str(), (f.files + "/f3").c_str()),
               DOPT_E_INVALID_STATE);
    REQUIRE_RC(dopt_job_set_display_name(done.get(), "late"), DOPT_E_INVALID_STATE);
    REQUIRE_RC(dopt_job_set_priority(done.get(), DOPT_PRIORITY_HIGH), DOPT_E_INVALID_STATE);
    REQUIRE_RC(dopt_job_add_http_header(done.get(), "X-Late: 1"), DOPT_E_INVALID_STATE);
    REQUIRE_RC(dopt_job_set_auto_complete(done.get(), 1), DOPT_E_INVALID_STATE);
    REQUIRE(AgentFixture::state_of(done.get()) == DOPT_STATE_ACKNOWLEDGED);
    REQUIRE(read_file(dest) == random_bytes(4096, 6));

    // CANCELLED (from SUSPENDED, with files): likewise; wait returns at once.
    REQUIRE_RC(dopt_job_cancel(running.get()), DOPT_OK);
    REQUIRE_RC(dopt_job_resume(running.get()), DOPT_E_INVALID_STATE);
    REQUIRE_RC(dopt_job_suspend(running.get()), DOPT_E_INVALID_STATE);
    REQUIRE_RC(dopt_job_complete(running.get()), DOPT_E_INVALID_STATE);
    REQUIRE_RC(dopt_job_cancel(running.get()), DOPT_E_INVALID_STATE);
    REQUIRE_RC(dopt_job_add_file(running.get(), origin.url("/fast").c_str(), (f.files + "/f4").c_str()),
               DOPT_E_INVALID_STATE);
    REQUIRE_RC(dopt_job_set_no_progress_timeout(running.get(), 5), DOPT_E_INVALID_STATE);
    REQUIRE(AgentFixture::wait_for(running.get(), 1000) == DOPT_STATE_CANCELLED);
    CHECK(partial_files(f.files).empty());
    // The destination of a cancelled job is free again.
    REQUIRE_RC(dopt_job_add_file(rival.get(), origin.url("/fast").c_str(), (f.files + "/slow").c_str()),
               DOPT_OK);
    require_agent_serves(f, origin, "states");
}

TEST_CASE("a closed client's jobs go on and can be taken over by id", "[abuse]") {
    AgentFixture f;
    HttpOrigin origin;
    const std::string body = random_bytes(20 * 1024, 9);
    origin.add("/slow", slow_route(9, 20));  // about 2 s
    std::string running_id, idle_id, cancelled_id;
    {
        Client a = f.open_client();
        Job running = f.create_job(a.get(), "running");
        Job idle = f.create_job(a.get(), "idle");
        Job cancelled = f.create_job(a.get(), "cancelled");
        running_id = dopt_job_id(running.get());
        idle_id = dopt_job_id(idle.get());
        cancelled_id = dopt_job_id(cancelled.get());
        // Callbacks registered and never removed: the client goes away.
        dopt_callbacks cb = DOPT_CALLBACKS_INIT;
        cb.transferred = [](dopt_job*, void*) -> int { return DOPT_OK; };
        REQUIRE_RC(dopt_job_set_callbacks(running.get(), &cb, nullptr), DOPT_OK);
        REQUIRE_RC(dopt_job_add_file(running.get(), origin.url("/slow").c_str(), (f.files + "/r").c_str()),
                   DOPT_OK);
        REQUIRE_RC(dopt_job_resume(running.get()), DOPT_OK);
        REQUIRE_RC(dopt_job_cancel(cancelled.get()), DOPT_OK);
        // Handles first, then the client (dopt.h); the jobs go on.
    }
    Client b = f.open_client();
    dopt_job* raw = nullptr;
    REQUIRE_RC(dopt_job_open(&raw, b.get(), idle_id.c_str()), DOPT_OK);
    Job idle(raw);
    REQUIRE(AgentFixture::state_of(idle.get()) == DOPT_STATE_SUSPENDED);
    REQUIRE_RC(dopt_job_resume(idle.get()), DOPT_E_INVALID_STATE);  // still no files
    REQUIRE_RC(dopt_job_open(&raw, b.get(), cancelled_id.c_str()), DOPT_OK);
    Job cancelled(raw);
    REQUIRE(AgentFixture::state_of(cancelled.get()) == DOPT_STATE_CANCELLED);
    REQUIRE_RC(dopt_job_resume(cancelled.get()), DOPT_E_INVALID_STATE);

    // The running job's durable `transferred` reaches the new client.
    REQUIRE_RC(dopt_job_open(&raw, b.get(), running_id.c_str()), DOPT_OK);
    Job running(raw);
    static std::atomic<int> transferred{0};
    transferred = 0;
    dopt_callbacks cb = DOPT_CALLBACKS_INIT;
    cb.transferred = [](dopt_job*, void*) -> int {
        transferred++;
        return DOPT_OK;
    };
    REQUIRE_RC(dopt_job_set_callbacks(running.get(), &cb, nullptr), DOPT_OK);
    REQUIRE(AgentFixture::wait_for(running.get(), 60000) == DOPT_STATE_TRANSFERRED);
    for (int i = 0; i < 100 && transferred == 0; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    CHECK(transferred >= 1);
    REQUIRE_RC(dopt_job_complete(running.get()), DOPT_OK);
    REQUIRE(read_file(f.files + "/r") == body);
    REQUIRE_RC(dopt_job_cancel(idle.get()), DOPT_OK);
    require_agent_serves(f, origin, "closed");
}

TEST_CASE("8 threads x 200 calls on one client and the same jobs", "[abuse][threads]") {
    AgentFixture f;
    HttpOrigin origin;
    constexpr int kJobs = 4, kThreads = 8, kCalls = 200;
    std::vector<Job> jobs;
    for (int i = 0; i < kJobs; ++i) {
        origin.add("/slow" + std::to_string(i), slow_route(static_cast<std::uint32_t>(100 + i)));
        Job j = f.create_job();
        REQUIRE_RC(dopt_job_add_file(j.get(), origin.url("/slow" + std::to_string(i)).c_str(),
                                     (f.files + "/j" + std::to_string(i)).c_str()),
                   DOPT_OK);
        REQUIRE_RC(dopt_job_resume(j.get()), DOPT_OK);
        jobs.push_back(std::move(j));
    }
    origin.add("/tiny", Route{200, "tiny", 0, 0});
    dopt_client* c = f.client.get();

    // Which codes each call may give while the others change the job under
    // it: the documented ones for every state the job can be in.
    enum Op { Suspend, Resume, GetState, GetStatus, AddFile, Cancel, SetName, OpenClose, Callbacks, List, kOps };
    const char* names[kOps] = {"suspend", "resume", "get_state", "status", "add_file",
                               "cancel", "set_display_name", "open+close", "set_callbacks", "list"};
    std::mutex mu;
    std::map<std::pair<int, int>, int> seen;  // (op, rc) -> count
    std::vector<std::string> surprises;
    std::atomic<int> callbacks{0};
    auto allowed = [](int op, int rc) {
        switch (op) {
            // INVALID_STATE: the job was cancelled (or transferred) meanwhile.
            case Suspend: case Resume: case Cancel: case SetName: case AddFile:
                return rc == DOPT_OK || rc == DOPT_E_INVALID_STATE;
            default:
                return rc == DOPT_OK;
        }
    };

    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            std::uint32_t x = 12345u + static_cast<std::uint32_t>(t) * 7919u;
            for (int i = 0; i < kCalls; ++i) {
                x ^= x << 13; x ^= x >> 17; x ^= x << 5;
                int op = static_cast<int>(x % kOps);
                // Cancels are rare: most of the run has live jobs.
                if (op == Cancel && (x / kOps) % 20 != 0) op = GetState;
                dopt_job* j = jobs[(x / 64) % kJobs].get();
                int rc = DOPT_OK;
                switch (op) {
                    case Suspend: rc = dopt_job_suspend(j); break;
                    case Resume: rc = dopt_job_resume(j); break;
                    case GetState: {
                        dopt_job_state s;
                        rc = dopt_job_fetch_state(&s, j);
                        break;
                    }
                    case GetStatus: {
                        dopt_job_status* s = nullptr;
                        rc = dopt_job_fetch_status(&s, j);
                        if (rc == DOPT_OK && std::string(dopt_job_status_id(s)) != dopt_job_id(j))
                            rc = 1;  // someone else's reply: a surprise
                        dopt_job_status_free(s);
                        break;
                    }
                    case AddFile: {
                        std::string dest = f.files + "/t" + std::to_string(t) + "-" + std::to_string(i);
                        rc = dopt_job_add_file(j, origin.url("/tiny").c_str(), dest.c_str());
                        break;
                    }
                    case Cancel: rc = dopt_job_cancel(j); break;
                    case SetName:
                        rc = dopt_job_set_display_name(j, ("thread " + std::to_string(t)).c_str());
                        break;
                    case OpenClose: {
                        dopt_job* h = nullptr;
                        rc = dopt_job_open(&h, c, dopt_job_id(j));
                        dopt_job_close(h);
                        break;
                    }
                    case Callbacks: {
                        dopt_callbacks cb = DOPT_CALLBACKS_INIT;
                        cb.modification = [](dopt_job*, const dopt_job_status*, void* u) {
                            static_cast<std::atomic<int>*>(u)->fetch_add(1);
                        };
                        rc = dopt_job_set_callbacks(j, &cb, &callbacks);
                        break;
                    }
                    case List: {
                        dopt_job_status** list = nullptr;
                        size_t n = 0;
                        rc = dopt_client_list_jobs(&list, &n, c);
                        if (rc == DOPT_OK && n < kJobs) rc = 2;  // jobs missing: a surprise
                        dopt_job_status_list_free(list, n);
                        break;
                    }
                }
                std::lock_guard<std::mutex> lock(mu);
                seen[{op, rc}]++;
                if (!allowed(op, rc))
                    surprises.push_back(std::string(names[op]) + " -> " + why(rc));
            }
        });
    }
    for (auto& th : threads) th.join();

    for (const auto& [key, n] : seen)
        std::printf("  %-16s %-28s x%d\n", names[key.first], dopt_strerror(key.second), n);
    std::printf("  modification callbacks: %d\n", callbacks.load());
    INFO("first surprise: " << (surprises.empty() ? std::string() : surprises.front()));
    CHECK(surprises.empty());
    // Every job answers, in a state it can be in, with the files added.
    for (auto& j : jobs) {
        Status s = AgentFixture::status_of(j.get());
        CHECK(dopt_job_status_file_count(s.get()) >= 1);
        dopt_job_state st = dopt_job_status_state(s.get());
        CHECK(st != DOPT_STATE_ERROR);
        if (st != DOPT_STATE_CANCELLED) REQUIRE_RC(dopt_job_cancel(j.get()), DOPT_OK);
    }
    // Handles before the client; callbacks stop with them.
    jobs.clear();
    require_agent_serves(f, origin, "threads");
}
