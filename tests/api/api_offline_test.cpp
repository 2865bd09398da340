// libdopt behaviour that needs no real agent: result texts, names, argument
// checks, and the client side of the protocol against small scripted
// listeners on a Unix socket in a private temporary directory.
#include "dopt/dopt.h"

#include "protocol/frame.h"
#include "tests/support/json_frame.h"
#include "tests/support/sample_job.h"
#include "tests/support/temp_dir.h"
#include "tests/support/unix_socket.h"
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <set>
#include <string>
#include <thread>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace {

using nlohmann::json;

using dopt::test::TempDir;

void write_raw(int fd, const std::string& bytes) {
    (void)!::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
}

void write_json(int fd, const json& j) { (void)dopt::protocol::write_frame(fd, j.dump()); }

// Listens on a fresh socket and serves ONE connection with `serve` in a
// thread. The destructor wakes a pending accept and joins.
class Listener {
public:
    explicit Listener(std::function<void(int)> serve) {
        path_ = dir_.path() + "/agent.sock";
        fd_ = dopt::test::listen_unix(path_, 1);
        thread_ = std::thread([this, serve] {
            int c = ::accept(fd_, nullptr, nullptr);
            if (c < 0) return;
            serve(c);
            ::close(c);
        });
    }
    ~Listener() {
        ::shutdown(fd_, SHUT_RDWR);  // wakes accept() if nobody connected
        thread_.join();
        ::close(fd_);
    }
    const char* path() const { return path_.c_str(); }

private:
    TempDir dir_;
    std::string path_;
    int fd_ = -1;
    std::thread thread_;
};

// An agent that answers each request with handler(request); a null reply
// closes the connection. seq is echoed. hello is answered with protocol 1,
// or by the handler when `handler_says_hello`.
std::function<void(int)> scripted(std::function<json(const json&)> handler,
                                  bool handler_says_hello = false) {
    return [handler, handler_says_hello](int fd) {
        json req;
        while (dopt::test::read_json_frame(fd, &req)) {
            json reply;
            if (req["op"] == "hello" && !handler_says_hello)
                reply = {{"rc", 0}, {"protocol", 1}, {"agent", "test"}, {"uid", 1000}};
            else
                reply = handler(req);
            if (reply.is_null()) return;
            reply["seq"] = req["seq"];
            write_json(fd, reply);
        }
    };
}

json canned_job(const std::string& state) {
    dopt::test::SampleJobText text;
    text.state = state;
    return dopt::test::sample_job(text);
}

// A client connected to a scripted agent whose `create` returns canned_job.
struct Connected {
    Listener listener;
    dopt_client* client = nullptr;
    dopt_job* job = nullptr;
    explicit Connected(std::function<json(const json&)> handler)
        : listener(scripted([handler](const json& req) -> json {
              if (req["op"] == "create") return {{"rc", 0}, {"job", canned_job("suspended")}};
              return handler(req);
          })) {
        REQUIRE(dopt_client_open(&client, listener.path()) == DOPT_OK);
        REQUIRE(dopt_job_create(&job, client, "big.iso") == DOPT_OK);
    }
    ~Connected() {
        dopt_job_close(job);
        dopt_client_close(client);
    }
};

}  // namespace

TEST_CASE("dopt_strerror gives a distinct, non-empty text for every code") {
    std::set<std::string> seen;
    for (int code = DOPT_OK; code >= DOPT_E_TLS; --code) {
        const char* text = dopt_strerror(code);
        REQUIRE(text != nullptr);
        CHECK(std::strlen(text) > 0);
        CHECK(seen.insert(text).second);
    }
    REQUIRE(dopt_strerror(-1000) != nullptr);
    CHECK(seen.count(dopt_strerror(-1000)) == 0);
}

TEST_CASE("dopt_version is DOPT_VERSION_STRING and dopt_last_error is never NULL") {
    CHECK(std::string(dopt_version()) == DOPT_VERSION_STRING);
    REQUIRE(dopt_last_error() != nullptr);
}

TEST_CASE("state and context names are the --json names") {
    const char* states[] = {"queued",          "connecting",  "transferring",
                            "suspended",       "error",       "transient_error",
                            "transferred",     "acknowledged", "cancelled"};
    for (int i = 0; i <= DOPT_STATE_CANCELLED; ++i)
        CHECK(std::string(dopt_state_name(static_cast<dopt_job_state>(i))) == states[i]);
    CHECK(std::string(dopt_state_name(static_cast<dopt_job_state>(9))) == "unknown");
    const char* contexts[] = {"none", "local_file", "remote_file", "transport",
                              "peer", "agent",      "integrity"};
    for (int i = 0; i <= DOPT_CONTEXT_INTEGRITY; ++i)
        CHECK(std::string(dopt_context_name(static_cast<dopt_context>(i))) == contexts[i]);
    CHECK(std::string(dopt_context_name(static_cast<dopt_context>(7))) == "unknown");
}

TEST_CASE("every function rejects NULL handles with DOPT_E_INVALID_ARG and does not crash") {
    dopt_client* client = reinterpret_cast<dopt_client*>(0x1);
    CHECK(dopt_client_open(nullptr, "/nonexistent") == DOPT_E_INVALID_ARG);
    CHECK(std::strlen(dopt_last_error()) > 0);
    CHECK(dopt_client_open(&client, "") == DOPT_E_INVALID_ARG);
    CHECK(client == nullptr);

    dopt_job_status** list = reinterpret_cast<dopt_job_status**>(0x1);
    size_t count = 7;
    CHECK(dopt_client_list_jobs(&list, &count, nullptr) == DOPT_E_INVALID_ARG);
    CHECK(list == nullptr);
    CHECK(count == 0);
    CHECK(dopt_client_list_jobs(nullptr, &count, nullptr) == DOPT_E_INVALID_ARG);
    char* metrics = reinterpret_cast<char*>(0x1);
    CHECK(dopt_metrics_text(&metrics, nullptr) == DOPT_E_INVALID_ARG);
    CHECK(metrics == nullptr);

    dopt_job* job = reinterpret_cast<dopt_job*>(0x1);
    CHECK(dopt_job_create(&job, nullptr, "x") == DOPT_E_INVALID_ARG);
    CHECK(job == nullptr);
    CHECK(dopt_job_create(nullptr, nullptr, nullptr) == DOPT_E_INVALID_ARG);
    CHECK(dopt_job_open(&job, nullptr, "id") == DOPT_E_INVALID_ARG);
    CHECK(dopt_job_open(nullptr, nullptr, nullptr) == DOPT_E_INVALID_ARG);
    CHECK(std::string(dopt_job_id(nullptr)).empty());

    CHECK(dopt_job_add_file(nullptr, "http://h/f", "/tmp/f") == DOPT_E_INVALID_ARG);
    CHECK(dopt_job_set_file_sha256(nullptr, 0, "00") == DOPT_E_INVALID_ARG);
    CHECK(dopt_job_set_priority(nullptr, DOPT_PRIORITY_LOW) == DOPT_E_INVALID_ARG);
    CHECK(dopt_job_set_display_name(nullptr, "x") == DOPT_E_INVALID_ARG);
    CHECK(dopt_job_set_no_progress_timeout(nullptr, 5) == DOPT_E_INVALID_ARG);
    CHECK(dopt_job_add_http_header(nullptr, "A: b") == DOPT_E_INVALID_ARG);
    CHECK(dopt_job_clear_http_headers(nullptr) == DOPT_E_INVALID_ARG);
    CHECK(dopt_job_set_auto_complete(nullptr, 1) == DOPT_E_INVALID_ARG);
    CHECK(dopt_job_resume(nullptr) == DOPT_E_INVALID_ARG);
    CHECK(dopt_job_suspend(nullptr) == DOPT_E_INVALID_ARG);
    CHECK(dopt_job_cancel(nullptr) == DOPT_E_INVALID_ARG);
    CHECK(dopt_job_complete(nullptr) == DOPT_E_INVALID_ARG);
    CHECK(dopt_job_wait(nullptr, nullptr, 0) == DOPT_E_INVALID_ARG);

    dopt_job_state state;
    dopt_progress progress;
    dopt_times times;
    CHECK(dopt_job_fetch_state(&state, nullptr) == DOPT_E_INVALID_ARG);
    CHECK(dopt_job_fetch_progress(&progress, nullptr) == DOPT_E_INVALID_ARG);
    CHECK(dopt_job_fetch_times(&times, nullptr) == DOPT_E_INVALID_ARG);
    dopt_error* err = reinterpret_cast<dopt_error*>(0x1);
    CHECK(dopt_job_fetch_error(&err, nullptr) == DOPT_E_INVALID_ARG);
    CHECK(err == nullptr);
    dopt_job_status* status = reinterpret_cast<dopt_job_status*>(0x1);
    CHECK(dopt_job_fetch_status(&status, nullptr) == DOPT_E_INVALID_ARG);
    CHECK(status == nullptr);

    CHECK(std::string(dopt_job_status_id(nullptr)).empty());
    CHECK(std::string(dopt_job_status_display_name(nullptr)).empty());
    CHECK(std::string(dopt_job_status_mode(nullptr)).empty());
    CHECK(std::string(dopt_job_status_http_only_reason(nullptr)).empty());
    CHECK(dopt_job_status_file_count(nullptr) == 0);
    CHECK(dopt_job_status_owner_uid(nullptr) == 0);
    CHECK(dopt_job_status_no_progress_timeout(nullptr) == 0);
    CHECK(std::string(dopt_client_agent_version(nullptr)).empty());
    (void)dopt_job_status_state(nullptr);
    (void)dopt_job_status_priority(nullptr);
    dopt_job_status_progress(&progress, nullptr);
    CHECK(progress.bytes_transferred == 0);
    dopt_job_status_progress(nullptr, nullptr);
    dopt_job_status_times(&times, nullptr);
    dopt_job_status_times(nullptr, nullptr);
    dopt_file_info file;
    CHECK(dopt_job_status_file(&file, nullptr, 0) == DOPT_E_INVALID_ARG);
    CHECK(dopt_job_status_error(nullptr) == nullptr);
    CHECK(dopt_job_status_transient_error(nullptr) == nullptr);

    CHECK(dopt_error_context(nullptr) == DOPT_CONTEXT_NONE);
    CHECK(dopt_error_code(nullptr) == 0);
    CHECK(std::string(dopt_error_description(nullptr)).empty());
    CHECK(std::string(dopt_error_protocol(nullptr)).empty());
    CHECK(dopt_error_time(nullptr) == 0);
    CHECK(dopt_error_next_retry(nullptr) == 0);
    CHECK(dopt_error_file(&file, nullptr) == DOPT_E_INVALID_ARG);
    err = reinterpret_cast<dopt_error*>(0x1);
    CHECK(dopt_error_copy(&err, nullptr) == DOPT_E_INVALID_ARG);
    CHECK(err == nullptr);
    CHECK(dopt_error_copy(nullptr, nullptr) == DOPT_E_INVALID_ARG);
}

TEST_CASE("closing or freeing NULL is a no-op") {
    dopt_client_close(nullptr);
    dopt_job_close(nullptr);
    dopt_job_status_free(nullptr);
    dopt_job_status_list_free(nullptr, 0);
    dopt_job_status_list_free(nullptr, 3);
    dopt_error_free(nullptr);
    SUCCEED();
}

TEST_CASE("open on a socket nobody listens on is DOPT_E_CONNECT and *out is NULL") {
    TempDir dir;
    dopt_client* client = reinterpret_cast<dopt_client*>(0x1);
    CHECK(dopt_client_open(&client, (dir.path() + "/none.sock").c_str()) == DOPT_E_CONNECT);
    CHECK(client == nullptr);
    CHECK(std::string(dopt_last_error()).find("none.sock") != std::string::npos);
}

TEST_CASE("open with no path and no agent anywhere is DOPT_E_CONNECT") {
    TempDir dir;
    const char* old_sock = std::getenv("DOPT_SOCKET");
    const char* old_xdg = std::getenv("XDG_RUNTIME_DIR");
    std::string saved_sock = old_sock ? old_sock : "", saved_xdg = old_xdg ? old_xdg : "";
    ::setenv("DOPT_SOCKET", (dir.path() + "/none.sock").c_str(), 1);
    ::setenv("XDG_RUNTIME_DIR", dir.path().c_str(), 1);
    dopt_client* client = reinterpret_cast<dopt_client*>(0x1);
    int rc = dopt_client_open(&client, nullptr);
    // /run/dopt/doptd.sock may exist on a machine with a system agent.
    if (::access("/run/dopt/doptd.sock", F_OK) != 0) {
        CHECK(rc == DOPT_E_CONNECT);
        CHECK(client == nullptr);
    }
    dopt_client_close(client);
    old_sock ? ::setenv("DOPT_SOCKET", saved_sock.c_str(), 1) : ::unsetenv("DOPT_SOCKET");
    old_xdg ? ::setenv("XDG_RUNTIME_DIR", saved_xdg.c_str(), 1) : ::unsetenv("XDG_RUNTIME_DIR");
}

TEST_CASE("an agent refusing protocol 1 (it speaks 99) gives DOPT_E_VERSION naming both") {
    Listener agent(scripted([](const json& req) -> json {
        CHECK(req["op"] == "hello");
        CHECK(req["protocol"] == 1);
        return {{"rc", DOPT_E_VERSION}, {"protocol", 99}, {"message", "agent speaks 99"}};
    }, true));
    dopt_client* client = reinterpret_cast<dopt_client*>(0x1);
    CHECK(dopt_client_open(&client, agent.path()) == DOPT_E_VERSION);
    CHECK(client == nullptr);
    std::string detail = dopt_last_error();
    CHECK(detail.find('1') != std::string::npos);
    CHECK(detail.find("99") != std::string::npos);
}

TEST_CASE("an agent answering hello with protocol 99 and rc 0 is DOPT_E_VERSION") {
    Listener agent(scripted([](const json&) -> json {
        return {{"rc", 0}, {"protocol", 99}, {"agent", "doptd 9"}, {"uid", 0}};
    }, true));
    dopt_client* client = reinterpret_cast<dopt_client*>(0x1);
    CHECK(dopt_client_open(&client, agent.path()) == DOPT_E_VERSION);
    CHECK(client == nullptr);
    CHECK(std::string(dopt_last_error()).find("99") != std::string::npos);
}

TEST_CASE("an oversized frame header from the agent is an error, not a crash") {
    Listener agent([](int fd) {
        json hello;
        if (!dopt::test::read_json_frame(fd, &hello)) return;
        write_raw(fd, std::string("\xff\xff\xff\xff", 4));
    });
    dopt_client* client = reinterpret_cast<dopt_client*>(0x1);
    int rc = dopt_client_open(&client, agent.path());
    CHECK(rc < 0);
    CHECK(client == nullptr);
    CHECK(std::strlen(dopt_last_error()) > 0);
}

TEST_CASE("a status snapshot parses the job object and bytes_total -1 is UINT64_MAX") {
    Connected c([](const json& req) -> json {
        if (req["op"] == "status") return {{"rc", 0}, {"job", canned_job("error")}};
        return nullptr;
    });
    CHECK(std::string(dopt_job_id(c.job)) == "7d0c3e0e-1b9e-4f5c-9d0b-2f3c8a6e4b11");
    dopt_job_status* s = nullptr;
    REQUIRE(dopt_job_fetch_status(&s, c.job) == DOPT_OK);
    CHECK(dopt_job_status_state(s) == DOPT_STATE_ERROR);
    CHECK(dopt_job_status_priority(s) == DOPT_PRIORITY_HIGH);
    CHECK(dopt_job_status_owner_uid(s) == 1000);
    CHECK(std::string(dopt_job_status_display_name(s)) == "big.iso");
    CHECK(std::string(dopt_job_status_mode(s)) == "http_only");
    dopt_progress p{};
    dopt_job_status_progress(&p, s);
    CHECK(p.bytes_total == UINT64_MAX);
    CHECK(p.bytes_transferred == 512);
    CHECK(p.bytes_from_peers == 12);
    CHECK(p.bytes_from_origin == 500);
    CHECK(p.files_total == 1);
    dopt_times t{};
    dopt_job_status_times(&t, s);
    CHECK(t.created == 1795000000);
    REQUIRE(dopt_job_status_file_count(s) == 1);
    dopt_file_info f{};
    REQUIRE(dopt_job_status_file(&f, s, 0) == DOPT_OK);
    CHECK(std::string(f.local_name) == "/home/ann/big.iso");
    CHECK(f.bytes_total == UINT64_MAX);
    CHECK(dopt_job_status_file(&f, s, 1) == DOPT_E_INVALID_ARG);

    const dopt_error* e = dopt_job_status_error(s);
    REQUIRE(e != nullptr);
    dopt_error* copy = nullptr;
    REQUIRE(dopt_error_copy(&copy, e) == DOPT_OK);
    dopt_job_status_free(s);  // the copy owns its strings
    CHECK(dopt_error_context(copy) == DOPT_CONTEXT_REMOTE_FILE);
    CHECK(dopt_error_code(copy) == 403);
    CHECK(std::string(dopt_error_description(copy)) == "403 Forbidden from https://host/big.iso");
    CHECK(std::string(dopt_error_protocol(copy)) == "https");
    CHECK(dopt_error_time(copy) == 1795000100);
    REQUIRE(dopt_error_file(&f, copy) == DOPT_OK);
    CHECK(std::string(f.remote_name) == "https://host/big.iso");
    CHECK(f.bytes_total == 4096);
    dopt_error_free(copy);
}

TEST_CASE("a transient_error snapshot says why the job waits and when it tries again") {
    Connected c([](const json& req) -> json {
        json job = canned_job("transient_error");
        job["error"] = nullptr;
        job["transient_error"] = {{"context", "transport"}, {"code", DOPT_E_TRANSPORT},
                                  {"description", "cannot connect to 127.0.0.1:9"},
                                  {"protocol", "http"}, {"time", 1795000100},
                                  {"file", nullptr}, {"next_retry", 1795000109}};
        if (req["op"] == "status") return {{"rc", 0}, {"job", job}};
        return nullptr;
    });
    dopt_job_status* s = nullptr;
    REQUIRE(dopt_job_fetch_status(&s, c.job) == DOPT_OK);
    CHECK(dopt_job_status_error(s) == nullptr);
    const dopt_error* e = dopt_job_status_transient_error(s);
    REQUIRE(e != nullptr);
    CHECK(dopt_error_context(e) == DOPT_CONTEXT_TRANSPORT);
    CHECK(dopt_error_code(e) == DOPT_E_TRANSPORT);
    CHECK(std::string(dopt_error_description(e)) == "cannot connect to 127.0.0.1:9");
    CHECK(dopt_error_time(e) == 1795000100);
    CHECK(dopt_error_next_retry(e) == 1795000109);
    dopt_file_info f{};
    CHECK(dopt_error_file(&f, e) == DOPT_E_NOT_FOUND);
    dopt_job_status_free(s);

    Connected fatal([](const json& req) -> json {
        if (req["op"] == "status") return {{"rc", 0}, {"job", canned_job("error")}};
        return nullptr;
    });
    REQUIRE(dopt_job_fetch_status(&s, fatal.job) == DOPT_OK);
    CHECK(dopt_job_status_transient_error(s) == nullptr);
    CHECK(dopt_error_next_retry(dopt_job_status_error(s)) == 0);
    dopt_job_status_free(s);
}

TEST_CASE("add_file rejects NULL, empty and relative paths before sending") {
    std::atomic<int> add_requests{0};
    Connected c([&](const json& req) -> json {
        if (req["op"] == "add_file") ++add_requests;
        return {{"rc", 0}, {"job", canned_job("suspended")}};
    });
    CHECK(dopt_job_add_file(c.job, nullptr, "/tmp/x") == DOPT_E_INVALID_ARG);
    CHECK(dopt_job_add_file(c.job, "http://h/x", nullptr) == DOPT_E_INVALID_ARG);
    CHECK(dopt_job_add_file(c.job, "", "/tmp/x") == DOPT_E_INVALID_ARG);
    CHECK(dopt_job_add_file(c.job, "http://h/x", "") == DOPT_E_INVALID_ARG);
    CHECK(dopt_job_add_file(c.job, "http://h/x", "rel/x") == DOPT_E_RELATIVE_PATH);
    CHECK(std::string(dopt_last_error()).find("rel/x") != std::string::npos);
    CHECK(dopt_job_set_file_sha256(c.job, 0, "abc") == DOPT_E_INVALID_ARG);
    CHECK(dopt_job_add_http_header(c.job, "X: a\r\nY: b") == DOPT_E_INVALID_ARG);
    CHECK(dopt_job_add_file(c.job, "http://h/x", "/tmp/x") == DOPT_OK);
    CHECK(add_requests == 1);
}

TEST_CASE("a reply's rc and message come back as is") {
    Connected c([](const json& req) -> json {
        if (req["op"] == "resume")
            return {{"rc", DOPT_E_INVALID_STATE}, {"message", "job is acknowledged"}};
        return {{"rc", 0}, {"job", canned_job("suspended")}};
    });
    CHECK(dopt_job_resume(c.job) == DOPT_E_INVALID_STATE);
    CHECK(std::string(dopt_last_error()) == "job is acknowledged");
    CHECK(dopt_job_suspend(c.job) == DOPT_OK);
    CHECK(std::string(dopt_last_error()).empty());
}

TEST_CASE("wait's timeout still gives the job's state") {
    Connected c([](const json& req) -> json {
        if (req["op"] == "wait") {
            CHECK(req["timeout_ms"] == 50);
            return {{"rc", DOPT_E_TIMEOUT}, {"message", "timed out"}, {"job", canned_job("transferring")}};
        }
        return nullptr;
    });
    dopt_job_state st = DOPT_STATE_QUEUED;
    CHECK(dopt_job_wait(&st, c.job, 50) == DOPT_E_TIMEOUT);
    CHECK(st == DOPT_STATE_TRANSFERRING);
}

TEST_CASE("the agent closing the connection is DOPT_E_DISCONNECTED and a silent socket stays so") {
    // The next call connects again; a listener that never answers hello
    // (this one serves a single connection) keeps the client disconnected.
    Connected c([](const json&) -> json { return nullptr; });
    dopt_job_state st;
    CHECK(dopt_job_fetch_state(&st, c.job) == DOPT_E_DISCONNECTED);
    CHECK(dopt_job_resume(c.job) == DOPT_E_DISCONNECTED);
}
