// OriginFetcher (origin_fetcher.h) against an HTTP origin written here, on a
// loopback socket: what it sends (Range, If-Range, the job's headers), how
// it reads what comes back and how it classifies failures.
#include "agent/origin_fetcher.h"
#include "agent/agent_internal.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <arpa/inet.h>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <fcntl.h>
#include <functional>
#include <mutex>
#include <netinet/in.h>
#include <poll.h>
#include <string>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include "dopt/dopt.h"

using dopt::agent::FetcherSettings;
using dopt::agent::OriginFetcher;
using dopt::agent::ResponseInfo;
using dopt::agent::TransferOutcome;
using dopt::agent::TransferRequest;
using dopt::agent::TransferSink;
using dopt::storage::ErrorContext;

namespace {

// An HTTP origin on 127.0.0.1 and a port of its own, run by one thread: each
// connection gets one request, answered with what `respond` returns for the
// request's head, then closed.
class LoopbackOrigin {
public:
    using Responder = std::function<std::string(const std::string& head)>;

    explicit LoopbackOrigin(Responder respond) : respond_(std::move(respond)) {
        listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        REQUIRE(listen_fd_ >= 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
        REQUIRE(::listen(listen_fd_, 16) == 0);
        socklen_t len = sizeof addr;
        REQUIRE(::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
        port_ = ntohs(addr.sin_port);
        REQUIRE(::pipe2(stop_pipe_, O_CLOEXEC) == 0);
        thread_ = std::thread([this] { serve(); });
    }
    ~LoopbackOrigin() {
        (void)!::write(stop_pipe_[1], "x", 1);
        thread_.join();
        ::close(listen_fd_);
        ::close(stop_pipe_[0]);
        ::close(stop_pipe_[1]);
    }

    std::string url(const std::string& path) const {
        return "http://127.0.0.1:" + std::to_string(port_) + path;
    }
    // The heads of the requests received so far, in order.
    std::vector<std::string> heads() const {
        std::lock_guard<std::mutex> lock(mu_);
        return heads_;
    }

private:
    void serve() {
        for (;;) {
            pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {stop_pipe_[0], POLLIN, 0}};
            if (::poll(fds, 2, -1) < 0) continue;
            if (fds[1].revents) return;
            int conn = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
            if (conn < 0) continue;
            std::string head;
            char buf[4096];
            while (head.find("\r\n\r\n") == std::string::npos) {
                ssize_t n = ::read(conn, buf, sizeof buf);
                if (n <= 0) break;
                head.append(buf, static_cast<std::size_t>(n));
            }
            {
                std::lock_guard<std::mutex> lock(mu_);
                heads_.push_back(head);
            }
            std::string reply = respond_(head);
            for (std::size_t at = 0; at < reply.size();) {
                ssize_t n = ::send(conn, reply.data() + at, reply.size() - at, MSG_NOSIGNAL);
                if (n <= 0) break;
                at += static_cast<std::size_t>(n);
            }
            ::shutdown(conn, SHUT_WR);
            while (::read(conn, buf, sizeof buf) > 0) {}  // until the client closes
            ::close(conn);
        }
    }

    Responder respond_;
    int listen_fd_ = -1;
    int stop_pipe_[2] = {-1, -1};
    int port_ = 0;
    mutable std::mutex mu_;
    std::vector<std::string> heads_;
    std::thread thread_;
};

std::string response(const std::string& status_line, const std::string& headers, const std::string& body) {
    return "HTTP/1.1 " + status_line + "\r\nContent-Length: " + std::to_string(body.size()) +
           "\r\nConnection: close\r\n" + headers + "\r\n" + body;
}

bool has_header(const std::string& head, const std::string& line) {
    return head.find("\r\n" + line + "\r\n") != std::string::npos;
}

// What a transfer told its sink.
struct RecordingSink : TransferSink {
    int responses = 0;
    int dones = 0;
    ResponseInfo info;
    std::string body;
    TransferOutcome outcome;

    int on_response(const ResponseInfo& i) override {
        ++responses;
        info = i;
        return 0;
    }
    int on_body(const char* data, std::size_t len) override {
        body.append(data, len);
        return 0;
    }
    void on_done(const TransferOutcome& o) override {
        ++dones;
        outcome = o;
    }
};

// A fetcher that reaches 127.0.0.1 directly, whatever proxy the
// environment names.
FetcherSettings direct() {
    ::setenv("no_proxy", "*", 1);
    return FetcherSettings{};
}

// Drives the fetcher as the agent's main loop does until `sink` has heard
// on_done (true) or 10 s have passed (false).
bool run_until_done(OriginFetcher& fetcher, const RecordingSink& sink) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (sink.dones == 0 && std::chrono::steady_clock::now() < deadline) {
        std::vector<pollfd> none;
        fetcher.wait(none, 100);
        fetcher.perform();
    }
    return sink.dones > 0;
}

// A GET of `url` from byte `offset`.
TransferRequest get(const std::string& url, std::uint64_t offset = 0) {
    TransferRequest req;
    req.url = url;
    req.offset = offset;
    return req;
}

// Runs one transfer on a fresh fetcher until its on_done; what it heard.
RecordingSink fetch(const TransferRequest& req) {
    OriginFetcher fetcher(direct());
    RecordingSink sink;
    fetcher.start(req, &sink);
    REQUIRE(run_until_done(fetcher, sink));
    return sink;
}

std::string pattern(std::size_t n) {
    std::string s(n, '\0');
    for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>(i * 13 % 251);
    return s;
}

}  // namespace

TEST_CASE("a 200 answer: its validators and size, its body in order, one on_done", "[origin_fetcher]") {
    const std::string file = pattern(300 * 1000);
    LoopbackOrigin origin([&](const std::string&) {
        return response("200 OK", "ETag: \"v1\"\r\nLast-Modified: Tue, 01 Dec 2026 10:00:00 GMT\r\n", file);
    });
    RecordingSink sink = fetch(get(origin.url("/f.bin")));

    CHECK(sink.outcome.ok);
    CHECK(sink.responses == 1);
    CHECK(sink.dones == 1);
    CHECK(sink.info.status == 200);
    CHECK(sink.info.body_offset == 0);
    CHECK(sink.info.total == file.size());
    CHECK(sink.info.etag == "\"v1\"");
    CHECK(sink.info.last_modified == "Tue, 01 Dec 2026 10:00:00 GMT");
    CHECK(sink.body == file);
    const std::string head = origin.heads().at(0);
    CHECK(head.rfind("GET /f.bin HTTP/1.1\r\n", 0) == 0);
    CHECK(head.find("Range:") == std::string::npos);  // from byte 0: no range
}

TEST_CASE("a resume sends Range and If-Range, and the 206 body belongs at its offset", "[origin_fetcher]") {
    const std::string file = pattern(5000);
    LoopbackOrigin origin([&](const std::string&) {
        return response("206 Partial Content", "Content-Range: bytes 1000-4999/5000\r\nETag: \"v1\"\r\n",
                        file.substr(1000));
    });
    TransferRequest req = get(origin.url("/f.bin"), 1000);
    req.if_range = "\"v1\"";
    RecordingSink sink = fetch(req);

    const std::string head = origin.heads().at(0);
    CHECK(has_header(head, "Range: bytes=1000-"));
    CHECK(has_header(head, "If-Range: \"v1\""));
    CHECK(sink.outcome.ok);
    CHECK(sink.info.status == 206);
    CHECK(sink.info.body_offset == 1000);
    CHECK(sink.info.total == 5000);
    CHECK(sink.body == file.substr(1000));
}

TEST_CASE("a piece request asks for exactly its bytes", "[origin_fetcher]") {
    const std::string file = pattern(100);
    LoopbackOrigin origin([&](const std::string&) {
        return response("206 Partial Content", "Content-Range: bytes 10-29/100\r\n", file.substr(10, 20));
    });
    TransferRequest req = get(origin.url("/f.bin"), 10);
    req.length = 20;
    RecordingSink sink = fetch(req);

    CHECK(has_header(origin.heads().at(0), "Range: bytes=10-29"));
    CHECK(sink.outcome.ok);
    CHECK(sink.info.body_offset == 10);
    CHECK(sink.body == file.substr(10, 20));
}

TEST_CASE("HTTP failures are classified: 404 is fatal, 503 transient with its Retry-After",
          "[origin_fetcher]") {
    std::string status_line;
    std::string extra;
    long status = 0;
    bool transient = false;
    SECTION("404") {
        status_line = "404 Not Found";
        status = 404;
    }
    SECTION("503 with Retry-After") {
        status_line = "503 Service Unavailable";
        extra = "Retry-After: 7\r\n";
        status = 503;
        transient = true;
    }
    LoopbackOrigin origin([&](const std::string&) { return response(status_line, extra, "no\n"); });
    RecordingSink sink = fetch(get(origin.url("/missing.bin")));

    CHECK_FALSE(sink.outcome.ok);
    CHECK(sink.outcome.code == status);
    CHECK(sink.outcome.transient == transient);
    CHECK(sink.outcome.context == ErrorContext::RemoteFile);
    CHECK(sink.outcome.retry_after == (transient ? 7 : 0));
    CHECK(sink.outcome.description.find(std::to_string(status)) != std::string::npos);
    CHECK(sink.outcome.description.find("/missing.bin") != std::string::npos);
    CHECK(sink.body.empty());  // an error page is not the file
}

TEST_CASE("a refused connection is a transient transport error", "[origin_fetcher]") {
    // A port nothing listens on: bound, then closed.
    std::string url;
    { LoopbackOrigin gone([](const std::string&) { return std::string(); }); url = gone.url("/f"); }
    RecordingSink sink = fetch(get(url));

    CHECK_FALSE(sink.outcome.ok);
    CHECK(sink.outcome.transient);
    CHECK(sink.outcome.context == ErrorContext::Transport);
    CHECK(sink.outcome.code == DOPT_E_TRANSPORT);
    CHECK(sink.responses == 0);
}

TEST_CASE("the job's headers go to its origin only: a redirect elsewhere carries Range, not them",
          "[origin_fetcher]") {
    const std::string file = pattern(2000);
    LoopbackOrigin mirror([&](const std::string&) {
        return response("206 Partial Content", "Content-Range: bytes 500-1999/2000\r\n", file.substr(500));
    });
    LoopbackOrigin origin([&](const std::string&) {
        return response("302 Found", "Location: " + mirror.url("/mirror/f.bin") + "\r\n", "");
    });
    TransferRequest req = get(origin.url("/f.bin"), 500);
    req.headers = {"Authorization: Bearer s3cret"};
    RecordingSink sink = fetch(req);

    CHECK(sink.outcome.ok);
    CHECK(sink.body == file.substr(500));
    CHECK(sink.responses == 1);  // the redirect is not the final response
    const std::string asked_origin = origin.heads().at(0);
    const std::string asked_mirror = mirror.heads().at(0);
    CHECK(has_header(asked_origin, "Authorization: Bearer s3cret"));
    CHECK(asked_mirror.rfind("GET /mirror/f.bin HTTP/1.1\r\n", 0) == 0);
    CHECK(asked_mirror.find("s3cret") == std::string::npos);
    CHECK(has_header(asked_mirror, "Range: bytes=500-"));
}

TEST_CASE("stop() ends a transfer at once and its sink hears nothing more", "[origin_fetcher]") {
    const std::string file = pattern(1000);
    LoopbackOrigin origin([&](const std::string&) { return response("200 OK", "", file); });
    OriginFetcher fetcher(direct());
    RecordingSink stopped, other;
    const TransferRequest req = get(origin.url("/f.bin"));
    auto id = fetcher.start(req, &stopped);
    fetcher.stop(id);
    CHECK(fetcher.idle());

    // A second transfer run to its end: the fetcher has done all it had to.
    fetcher.start(req, &other);
    REQUIRE(run_until_done(fetcher, other));
    CHECK(other.body == file);
    CHECK(stopped.responses == 0);
    CHECK(stopped.body.empty());
    CHECK(stopped.dones == 0);
}

namespace {

// A sink as slow as a busy disk: each chunk takes 2 ms, so the origin keeps
// the socket full. Counts the chunks; refuses chunk `fail_at` (ENOSPC).
struct SlowSink : RecordingSink {
    int chunks = 0;
    int fail_at = -1;
    int on_body(const char* data, std::size_t len) override {
        if (chunks++ == fail_at) return -ENOSPC;
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
        return RecordingSink::on_body(data, len);
    }
};

// Fetches `file` from a loopback origin into `sink` until its on_done (or
// 10 s); returns the most chunks one perform() gave it. `after_first` runs
// once, after the first perform() that gave any.
int most_chunks_a_perform(const std::string& file, SlowSink& sink,
                          const std::function<void()>& after_first = nullptr) {
    LoopbackOrigin origin([&](const std::string&) { return response("200 OK", "", file); });
    OriginFetcher fetcher(direct());
    fetcher.start(get(origin.url("/f.bin")), &sink);
    int most = 0;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (sink.dones == 0 && std::chrono::steady_clock::now() < deadline) {
        std::vector<pollfd> none;
        fetcher.wait(none, 100);
        int before = sink.chunks;
        fetcher.perform();
        if (sink.chunks > before && most == 0 && after_first) after_first();
        most = std::max(most, sink.chunks - before);
    }
    return most;
}

}  // namespace

TEST_CASE("perform() hands the loop back while a fast transfer runs, and the body arrives whole",
          "[origin_fetcher]") {
    // libcurl alone would read up to 100 buffers (50 MiB) in one call while
    // the socket has data: the agent's loop would answer nothing meanwhile.
    const std::string file = pattern(8 * 1024 * 1024);
    SlowSink sink;
    int most = most_chunks_a_perform(file, sink);
    CAPTURE(most, sink.chunks);

    REQUIRE(sink.dones == 1);
    CHECK(sink.outcome.ok);
    CHECK(sink.body == file);
    // One slice of 2 ms chunks, the first being the chunk kept at the last pause.
    CHECK(most <= OriginFetcher::kSliceMs / 2 + 2);
}

TEST_CASE("a sink that refuses the chunk kept at a pause ends its transfer with its error",
          "[origin_fetcher]") {
    const std::string file = pattern(8 * 1024 * 1024);
    SlowSink sink;
    // The next chunk is the one libcurl kept when it paused the transfer.
    most_chunks_a_perform(file, sink, [&] { sink.fail_at = sink.chunks; });

    REQUIRE(sink.dones == 1);
    CHECK_FALSE(sink.outcome.ok);
    CHECK(sink.outcome.context == ErrorContext::LocalFile);
    CHECK(sink.outcome.code == ENOSPC);
    CHECK(sink.body.size() < file.size());
}

TEST_CASE("an origin's digest fields give the SHA-256 in them, Repr-Digest first, or none",
          "[origin_fetcher]") {
    using dopt::agent::sha256_of_digest_fields;
    // SHA-256 of "abc", in base64 and hex.
    const std::string b64 = "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=";
    const std::string hex = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    CHECK(sha256_of_digest_fields("sha-256=:" + b64 + ":", "") == hex);
    CHECK(sha256_of_digest_fields("sha-512=:AAAA:, sha-256=:" + b64 + ":;x=1", "") == hex);
    CHECK(sha256_of_digest_fields("", "SHA-256=" + b64) == hex);
    CHECK(sha256_of_digest_fields("", "md5=AAAA, sha-256=" + b64) == hex);
    CHECK(sha256_of_digest_fields("sha-512=:AAAA:", "SHA-256=" + b64) == hex);  // none of its own
    CHECK(sha256_of_digest_fields("", "").empty());
    CHECK(sha256_of_digest_fields("sha-256=" + b64, "").empty());          // not a byte sequence
    CHECK(sha256_of_digest_fields("SHA-256=:" + b64 + ":", "").empty());   // keys are lowercase
    CHECK(sha256_of_digest_fields("sha-256=:AAAA:", "").empty());          // not 32 bytes
    CHECK(sha256_of_digest_fields("sha-256=:not base64!:", "").empty());
    CHECK(sha256_of_digest_fields("sha-256", "sha-256=").empty());
}
