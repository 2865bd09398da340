// Test fixtures for libdopt against a real doptd: a private temporary
// directory, a doptd process on it (started, killed, restarted), a tiny
// HTTP/1.1 origin on 127.0.0.1, RAII handles for the C API, and SHA-256.
// Nothing here leaves the machine: loopback TCP and Unix sockets only.
//
// Include once per test binary (it registers a Catch2 listener that prints
// the agent's log when an assertion fails), before any other include of
// catch.hpp: it needs CATCH_CONFIG_EXTERNAL_INTERFACES, and defines it itself
// when catch.hpp is not included yet.
#pragma once

#include "dopt/dopt.h"
#include "tests/support/program_path.h"
#include "tests/support/temp_dir.h"

#if !defined(TWOBLUECUBES_SINGLE_INCLUDE_CATCH_HPP_INCLUDED) && \
    !defined(CATCH_CONFIG_EXTERNAL_INTERFACES)
#define CATCH_CONFIG_EXTERNAL_INTERFACES
#endif
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

namespace dopt_test {

namespace fs = std::filesystem;

// ---- failure reporting -----------------------------------------------------

// Set when an assertion of the running test case failed; an agent printed
// its log on the way out then.
inline std::atomic<bool>& test_failed() {
    static std::atomic<bool> flag{false};
    return flag;
}

#if defined(CATCH_CONFIG_EXTERNAL_INTERFACES)
struct FailureListener : Catch::TestEventListenerBase {
    using TestEventListenerBase::TestEventListenerBase;
    void testCaseStarting(Catch::TestCaseInfo const& info) override {
        test_failed() = false;
        TestEventListenerBase::testCaseStarting(info);
    }
    bool assertionEnded(Catch::AssertionStats const& stats) override {
        if (!stats.assertionResult.isOk()) test_failed() = true;
        return true;
    }
};
CATCH_REGISTER_LISTENER(FailureListener)
#endif  // without it, the log is printed only when a REQUIRE unwinds

// ---- RAII handles ----------------------------------------------------------

struct ClientCloser { void operator()(dopt_client* c) const { dopt_client_close(c); } };
struct JobCloser { void operator()(dopt_job* j) const { dopt_job_close(j); } };
struct ErrorFree { void operator()(dopt_error* e) const { dopt_error_free(e); } };
struct StatusFree { void operator()(dopt_job_status* s) const { dopt_job_status_free(s); } };
using Client = std::unique_ptr<dopt_client, ClientCloser>;
using Job = std::unique_ptr<dopt_job, JobCloser>;
using Error = std::unique_ptr<dopt_error, ErrorFree>;
using Status = std::unique_ptr<dopt_job_status, StatusFree>;

// A list from dopt_client_list_jobs, freed as a whole.
struct StatusList {
    dopt_job_status** items = nullptr;
    size_t count = 0;
    StatusList() = default;
    StatusList(const StatusList&) = delete;
    StatusList& operator=(const StatusList&) = delete;
    ~StatusList() { dopt_job_status_list_free(items, count); }
};

// ---- files -----------------------------------------------------------------

using dopt::test::read_file;
using dopt::test::TempDir;
using dopt::test::write_file;

inline bool file_exists(const std::string& path) {
    struct stat st;
    return ::lstat(path.c_str(), &st) == 0;
}

// Names in `dir` that end in ".dopt-partial" (the agent's hidden partial files).
inline std::vector<std::string> partial_files(const std::string& dir) {
    std::vector<std::string> out;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
        std::string name = e.path().filename().string();
        const std::string suffix = ".dopt-partial";
        if (name.size() >= suffix.size() &&
            name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
            out.push_back(name);
    }
    return out;
}

// Deterministic pseudo-random bytes (content that no off-by-one can fake).
inline std::string random_bytes(size_t n, std::uint32_t seed) {
    std::string s(n, '\0');
    std::uint32_t x = seed ? seed : 1;
    for (auto& c : s) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        c = static_cast<char>(x & 0xff);
    }
    return s;
}

// ---- SHA-256 (FIPS 180-4), lowercase hex -----------------------------------

inline std::string sha256_hex(const std::string& data) {
    static const std::uint32_t k[64] = {
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2};
    std::uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                          0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    std::string m = data;
    std::uint64_t bits = static_cast<std::uint64_t>(data.size()) * 8;
    m += static_cast<char>(0x80);
    while (m.size() % 64 != 56) m += '\0';
    for (int i = 7; i >= 0; --i) m += static_cast<char>((bits >> (i * 8)) & 0xff);
    auto rotr = [](std::uint32_t x, int n) { return (x >> n) | (x << (32 - n)); };
    for (size_t off = 0; off < m.size(); off += 64) {
        std::uint32_t w[64];
        for (int i = 0; i < 16; ++i) {
            const auto* p = reinterpret_cast<const unsigned char*>(m.data() + off + 4 * i);
            w[i] = (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) |
                   (std::uint32_t{p[2]} << 8) | p[3];
        }
        for (int i = 16; i < 64; ++i) {
            std::uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
            std::uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16] + s0 + w[i - 7] + s1;
        }
        std::uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6],
                      hh = h[7];
        for (int i = 0; i < 64; ++i) {
            std::uint32_t t1 = hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) +
                               ((e & f) ^ (~e & g)) + k[i] + w[i];
            std::uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) +
                               ((a & b) ^ (a & c) ^ (b & c));
            hh = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
        }
        h[0] += a; h[1] += b; h[2] += c; h[3] += d;
        h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
    }
    char out[65];
    for (int i = 0; i < 8; ++i) std::snprintf(out + 8 * i, 9, "%08x", h[i]);
    return std::string(out, 64);
}

// ---- doptd -----------------------------------------------------------------

#ifndef DOPTD_PATH
#define DOPTD_PATH "doptd"
#endif

inline std::string doptd_path() { return dopt::test::program_path("DOPTD", DOPTD_PATH); }

// One doptd on a state directory of its own. start() may be called again
// after kill9()/stop() to restart it on the same state.
class AgentProcess {
public:
    explicit AgentProcess(const std::string& dir)
        : dir_(dir), socket_(dir + "/run/doptd.sock"), log_(dir + "/doptd.log"),
          config_(dir + "/doptd.conf") {
        std::ofstream conf(config_);
        conf << "state_dir = \"" << dir_ << "/state\"\n"
             << "cache_dir = \"" << dir_ << "/cache\"\n"
             << "socket = \"" << socket_ << "\"\n"
             << "log_level = \"debug\"\n"
             << "[jobs]\n"
             << "max_jobs_per_user = 10000\n"  // the listing test makes 2503
             << "retry_min_delay = 1\n"
             << "retry_max_delay = 2\n";
        REQUIRE(conf.good());
    }
    AgentProcess(const AgentProcess&) = delete;
    AgentProcess& operator=(const AgentProcess&) = delete;
    ~AgentProcess() {
        if (test_failed() || std::uncaught_exceptions() > 0) print_log();
        stop();
    }

    const std::string& socket() const { return socket_; }
    pid_t pid() const { return pid_; }
    std::string log() const { return read_file(log_); }

    void print_log() const {
        std::fprintf(stderr, "----- doptd log (%s) -----\n%s----- end of doptd log -----\n",
                     log_.c_str(), log().c_str());
    }

    // Starts doptd and waits (at most 10 s) until a client can open it.
    void start() {
        REQUIRE(pid_ < 0);
        std::string exe = doptd_path();
        std::vector<std::string> args = {exe, "--config", config_};
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        int logfd = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        REQUIRE(logfd >= 0);
        pid_t parent = ::getpid();
        pid_t pid = ::fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            // Only async-signal-safe calls from here to exec.
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (::getppid() != parent) ::_exit(127);
            ::dup2(logfd, 1);
            ::dup2(logfd, 2);
            ::execv(argv[0], argv.data());
            static const char msg[] = "test: cannot exec doptd\n";
            (void)!::write(2, msg, sizeof msg - 1);
            ::_exit(127);
        }
        ::close(logfd);
        pid_ = pid;
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        for (;;) {
            int status = 0;
            if (::waitpid(pid_, &status, WNOHANG) == pid_) {
                pid_ = -1;
                print_log();
                FAIL("doptd (" << exe << ") exited at start, status " << status);
            }
            dopt_client* c = nullptr;
            if (dopt_client_open(&c, socket_.c_str()) == DOPT_OK) {
                dopt_client_close(c);
                return;
            }
            if (std::chrono::steady_clock::now() > deadline) {
                print_log();
                FAIL("doptd did not answer on " << socket_ << " within 10 s: " << dopt_last_error());
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
    }

    // kill -9: no cleanup of any kind in the agent.
    void kill9() {
        if (pid_ < 0) return;
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
        pid_ = -1;
    }

    // SIGTERM, then SIGKILL after 5 s.
    void stop() {
        if (pid_ < 0) return;
        ::kill(pid_, SIGTERM);
        for (int i = 0; i < 100; ++i) {
            if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
                pid_ = -1;
                return;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        kill9();
    }

private:
    std::string dir_, socket_, log_, config_;
    pid_t pid_ = -1;
};

// ---- a tiny HTTP/1.1 origin ------------------------------------------------

// What the origin answers for one path. status 200 serves `body` (with
// Range: bytes=N- or N-M as 206); any other status answers with a short
// body. chunk/delay_ms trickle the body: `chunk` bytes, then a pause.
struct Route {
    int status = 200;
    std::string body;
    size_t chunk = 0;
    int delay_ms = 0;
};

class HttpOrigin {
public:
    HttpOrigin() {
        fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        REQUIRE(fd_ >= 0);
        int one = 1;
        ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = 0;
        REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
        REQUIRE(::listen(fd_, 64) == 0);
        socklen_t len = sizeof a;
        REQUIRE(::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) == 0);
        port_ = ntohs(a.sin_port);
        acceptor_ = std::thread([this] { accept_loop(); });
    }
    HttpOrigin(const HttpOrigin&) = delete;
    HttpOrigin& operator=(const HttpOrigin&) = delete;
    ~HttpOrigin() {
        stop_ = true;
        acceptor_.join();
        std::vector<std::thread> conns;
        {
            std::lock_guard<std::mutex> lock(mu_);
            conns.swap(conns_);
        }
        for (auto& t : conns) t.join();
        ::close(fd_);
    }

    void add(const std::string& path, Route route) {
        std::lock_guard<std::mutex> lock(mu_);
        routes_[path] = std::move(route);
    }
    std::string url(const std::string& path) const {
        return "http://127.0.0.1:" + std::to_string(port_) + path;
    }
    int requests(const std::string& path) {
        std::lock_guard<std::mutex> lock(mu_);
        return hits_[path];
    }
    // Requests for `path` whose connection is closed: served to the end, or
    // cut when the client went away.
    int requests_ended(const std::string& path) {
        std::lock_guard<std::mutex> lock(mu_);
        return ended_[path];
    }

private:
    void accept_loop() {
        while (!stop_) {
            pollfd p{fd_, POLLIN, 0};
            if (::poll(&p, 1, 100) <= 0) continue;
            int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
            if (c < 0) continue;
            std::lock_guard<std::mutex> lock(mu_);
            conns_.emplace_back([this, c] {
                const std::string target = serve(c);
                ::close(c);
                std::lock_guard<std::mutex> lock(mu_);
                ended_[target]++;
            });
        }
    }

    bool send_all(int c, const char* p, size_t n) {
        while (n > 0) {
            if (stop_) return false;
            ssize_t w = ::send(c, p, n, MSG_NOSIGNAL);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) return false;
            p += w;
            n -= static_cast<size_t>(w);
        }
        return true;
    }

    static const char* reason(int status) {
        switch (status) {
            case 200: return "OK";
            case 206: return "Partial Content";
            case 403: return "Forbidden";
            case 404: return "Not Found";
            case 416: return "Range Not Satisfiable";
            default: return "Status";
        }
    }

    // Answers one request on `c`; returns its target ("" when none came).
    std::string serve(int c) {
        timeval tv{5, 0};
        ::setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        std::string req;
        char buf[4096];
        while (req.find("\r\n\r\n") == std::string::npos && req.size() < 65536) {
            ssize_t n = ::recv(c, buf, sizeof buf, 0);
            if (n <= 0) return "";
            req.append(buf, static_cast<size_t>(n));
        }
        std::istringstream lines(req);
        std::string method, target, line;
        lines >> method >> target;
        std::string range;
        while (std::getline(lines, line)) {
            if (!line.empty() && line.back() == '\r') line.pop_back();
            std::string lower = line;
            std::transform(lower.begin(), lower.end(), lower.begin(),
                           [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
            if (lower.rfind("range:", 0) == 0) range = line.substr(6);
        }
        Route route;
        {
            std::lock_guard<std::mutex> lock(mu_);
            hits_[target]++;
            auto it = routes_.find(target);
            if (it == routes_.end()) route.status = 404;
            else route = it->second;
        }
        int status = route.status;
        std::string extra;
        size_t from = 0, to = route.body.size();  // [from, to)
        if (status == 200) {
            extra = "ETag: \"v1\"\r\nAccept-Ranges: bytes\r\n";
            range.erase(0, range.find_first_not_of(' '));
            if (range.rfind("bytes=", 0) == 0) {
                std::string spec = range.substr(6);
                size_t dash = spec.find('-');
                size_t first = std::strtoull(spec.substr(0, dash).c_str(), nullptr, 10);
                size_t last = route.body.size() ? route.body.size() - 1 : 0;
                if (dash != std::string::npos && dash + 1 < spec.size())
                    last = std::min<size_t>(last, std::strtoull(spec.c_str() + dash + 1, nullptr, 10));
                if (first >= route.body.size()) {
                    status = 416;
                    extra += "Content-Range: bytes */" + std::to_string(route.body.size()) + "\r\n";
                    from = to = 0;
                } else {
                    status = 206;
                    from = first;
                    to = last + 1;
                    extra += "Content-Range: bytes " + std::to_string(first) + "-" +
                             std::to_string(last) + "/" + std::to_string(route.body.size()) + "\r\n";
                }
            }
        } else {
            route.body = std::string(reason(status)) + "\n";
            to = route.body.size();
        }
        std::string head = "HTTP/1.1 " + std::to_string(status) + " " + reason(status) + "\r\n" +
                           "Content-Length: " + std::to_string(to - from) + "\r\n" +
                           "Connection: close\r\n" + extra + "\r\n";
        if (!send_all(c, head.data(), head.size())) return target;
        if (method == "HEAD") return target;
        size_t chunk = route.chunk ? route.chunk : (to - from);
        for (size_t off = from; off < to; off += chunk) {
            size_t n = std::min(chunk, to - off);
            if (!send_all(c, route.body.data() + off, n)) return target;
            if (route.delay_ms > 0 && off + n < to)
                std::this_thread::sleep_for(std::chrono::milliseconds(route.delay_ms));
        }
        return target;
    }

    int fd_ = -1;
    int port_ = 0;
    std::atomic<bool> stop_{false};
    std::thread acceptor_;
    std::mutex mu_;
    std::vector<std::thread> conns_;
    std::map<std::string, Route> routes_;
    std::map<std::string, int> ended_;  // GUARDED_BY(mu_)
    std::map<std::string, int> hits_;
};

// ---- the usual setup: a temp dir, an agent on it, one client ----------------

struct AgentFixture {
    TempDir dir;
    AgentProcess agent{dir.path()};
    Client client;
    std::string files;  // a folder for download destinations

    AgentFixture() {
        files = dir.path() + "/files";
        REQUIRE(::mkdir(files.c_str(), 0755) == 0);
        agent.start();
        client = open_client();
    }

    Client open_client() {
        dopt_client* c = nullptr;
        int rc = dopt_client_open(&c, agent.socket().c_str());
        INFO(dopt_last_error());
        REQUIRE(rc == DOPT_OK);
        REQUIRE(c != nullptr);
        return Client(c);
    }

    Job create_job(dopt_client* on = nullptr, const char* name = nullptr) {
        dopt_job* j = nullptr;
        int rc = dopt_job_create(&j, on ? on : client.get(), name);
        INFO(dopt_last_error());
        REQUIRE(rc == DOPT_OK);
        REQUIRE(j != nullptr);
        return Job(j);
    }

    Job open_job(const std::string& id, dopt_client* on = nullptr) {
        dopt_job* j = nullptr;
        int rc = dopt_job_open(&j, on ? on : client.get(), id.c_str());
        INFO(dopt_last_error());
        REQUIRE(rc == DOPT_OK);
        return Job(j);
    }

    static dopt_job_state state_of(dopt_job* job) {
        dopt_job_state s = DOPT_STATE_QUEUED;
        int rc = dopt_job_fetch_state(&s, job);
        INFO(dopt_last_error());
        REQUIRE(rc == DOPT_OK);
        return s;
    }

    static Status status_of(dopt_job* job) {
        dopt_job_status* s = nullptr;
        int rc = dopt_job_fetch_status(&s, job);
        INFO(dopt_last_error());
        REQUIRE(rc == DOPT_OK);
        return Status(s);
    }

    // Waits (bounded) for a waitable state and returns it.
    static dopt_job_state wait_for(dopt_job* job, int timeout_ms = 30000) {
        dopt_job_state s = DOPT_STATE_QUEUED;
        int rc = dopt_job_wait(&s, job, timeout_ms);
        INFO(dopt_last_error());
        REQUIRE(rc == DOPT_OK);
        return s;
    }
};

}  // namespace dopt_test
