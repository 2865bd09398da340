// IpcServer (ipc_server.h) on a real Unix socket in a temporary folder, with
// blocking clients in the test: framing in both directions, SO_PEERCRED,
// pausing, an oversized frame, the per-uid connection limit, a client that
// closes right after its request.
#include "agent/ipc_server.h"

#include <catch2/catch.hpp>

#include <chrono>
#include <functional>
#include <poll.h>
#include <string>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <vector>

#include "agent/test_support.h"
#include "dopt/dopt.h"
#include "protocol/frame.h"

using dopt::agent::ConnId;
using dopt::agent::IpcHandler;
using dopt::agent::IpcLimits;
using dopt::agent::IpcServer;
using dopt::agent::PeerCred;
using dopt::agent::test::TempDir;
using dopt::protocol::FrameResult;
using dopt::protocol::read_frame;
using dopt::protocol::write_frame;

namespace {

struct Received {
    ConnId conn;
    PeerCred peer;
    std::string body;
};

// Records what the server hands over; `on_each` runs for every request.
struct RecordingHandler : IpcHandler {
    std::vector<Received> requests;
    std::vector<ConnId> closed;
    std::function<void(const Received&)> on_each;

    void on_request(ConnId conn, const PeerCred& peer, const std::string& body) override {
        requests.push_back({conn, peer, body});
        if (on_each) on_each(requests.back());
    }
    void on_close(ConnId conn) override { closed.push_back(conn); }
};

// A blocking client connected to `path`.
int connect_to(const std::string& path) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    REQUIRE(path.size() < sizeof addr.sun_path);
    path.copy(addr.sun_path, path.size());
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    return fd;
}

std::string frame(const std::string& body) {
    unsigned char hdr[4];
    dopt::protocol::encode_length(static_cast<std::uint32_t>(body.size()), hdr);
    return std::string(reinterpret_cast<const char*>(hdr), 4) + body;
}

void send_raw(int fd, const std::string& bytes) {
    REQUIRE(::write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()));
}

// Rounds of the agent's main loop for the server until `done()`; false
// when 5 s pass first.
bool pump_until(IpcServer& server, const std::function<bool()>& done) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!done()) {
        if (std::chrono::steady_clock::now() > deadline) return false;
        std::vector<pollfd> fds;
        std::size_t first = server.add_pollfds(fds);
        ::poll(fds.data(), fds.size(), 100);
        server.handle(fds, first);
    }
    return true;
}

// Everything a test needs: a folder, the server in it, its handler.
struct Fixture {
    TempDir dir;
    std::string path = dir.file("doptd.sock");
    RecordingHandler handler;
    IpcServer server;
    explicit Fixture(IpcLimits limits = IpcLimits{}) : server(path, 0600, &handler, limits) {}

    bool wait_for_requests(std::size_t n) {
        return pump_until(server, [&] { return handler.requests.size() >= n; });
    }
    bool wait_for_connections(std::size_t n) {
        return pump_until(server, [&] { return server.connection_count() == n; });
    }
};

}  // namespace

TEST_CASE("requests arrive whole, however the bytes are cut, with the caller's credentials",
          "[ipc_server]") {
    Fixture f;
    struct stat st{};
    REQUIRE(::stat(f.path.c_str(), &st) == 0);
    CHECK(S_ISSOCK(st.st_mode));
    CHECK((st.st_mode & 0777) == 0600);

    int client = connect_to(f.path);
    const std::string first = frame(R"({"op":"hello","seq":1})");
    const std::string second = frame(R"({"op":"list","seq":2})");
    send_raw(client, first.substr(0, 2));  // half a header
    send_raw(client, first.substr(2, 9));  // the header's end, part of the body
    send_raw(client, first.substr(11) + second);  // the rest and a whole frame
    REQUIRE(f.wait_for_requests(2));

    CHECK(f.handler.requests[0].body == R"({"op":"hello","seq":1})");
    CHECK(f.handler.requests[1].body == R"({"op":"list","seq":2})");
    CHECK(f.handler.requests[0].conn == f.handler.requests[1].conn);
    const PeerCred& peer = f.handler.requests[0].peer;
    CHECK(peer.pid == ::getpid());
    CHECK(peer.uid == ::geteuid());
    CHECK(peer.gid == ::getegid());

    // A reply goes back as one frame.
    f.server.send(f.handler.requests[0].conn, R"({"seq":1,"rc":0})");
    std::string reply;
    REQUIRE(read_frame(client, reply) == FrameResult::Ok);
    CHECK(reply == R"({"seq":1,"rc":0})");
    ::close(client);
}

TEST_CASE("a paused connection's requests wait while the others' go on", "[ipc_server]") {
    Fixture f;
    // The first request pauses its connection, as a parked `wait` does.
    f.handler.on_each = [&](const Received& r) {
        if (r.body == "wait") f.server.set_paused(r.conn, true);
    };
    int waiting = connect_to(f.path);
    send_raw(waiting, frame("wait") + frame("after the wait"));  // one write: read together
    REQUIRE(f.wait_for_requests(1));
    CHECK(f.handler.requests.size() == 1);  // the second frame was read, not handed over

    int other = connect_to(f.path);
    send_raw(other, frame("from another client"));
    REQUIRE(f.wait_for_requests(2));
    CHECK(f.handler.requests[1].body == "from another client");

    f.server.set_paused(f.handler.requests[0].conn, false);
    REQUIRE(f.handler.requests.size() == 3);  // handed over as the pause ends
    CHECK(f.handler.requests[2].body == "after the wait");
    ::close(waiting);
    ::close(other);
}

TEST_CASE("an oversized frame is answered DOPT_E_TOO_LARGE and only its connection closes",
          "[ipc_server]") {
    Fixture f;
    int good = connect_to(f.path);
    int bad = connect_to(f.path);
    REQUIRE(f.wait_for_connections(2));

    unsigned char hdr[4];
    dopt::protocol::encode_length(static_cast<std::uint32_t>(dopt::protocol::kMaxFrame + 1), hdr);
    send_raw(bad, std::string(reinterpret_cast<const char*>(hdr), 4));
    REQUIRE(f.wait_for_connections(1));
    std::string reply;
    REQUIRE(read_frame(bad, reply) == FrameResult::Ok);
    CHECK(reply.find("\"seq\":0") != std::string::npos);
    CHECK(reply.find("\"rc\":" + std::to_string(DOPT_E_TOO_LARGE)) != std::string::npos);
    CHECK(read_frame(bad, reply) == FrameResult::Closed);
    CHECK(f.handler.requests.empty());

    send_raw(good, frame("still served"));
    REQUIRE(f.wait_for_requests(1));
    CHECK(f.handler.requests[0].body == "still served");
    ::close(good);
    ::close(bad);
}

TEST_CASE("past max_connections_per_user a connection gets DOPT_E_CONNECT and is closed",
          "[ipc_server]") {
    IpcLimits limits;
    limits.max_connections_per_user = 2;
    Fixture f(limits);
    int a = connect_to(f.path);
    int b = connect_to(f.path);
    REQUIRE(f.wait_for_connections(2));

    int refused = connect_to(f.path);  // the kernel accepts it; the server refuses it
    REQUIRE(pump_until(f.server, [&] {
        pollfd p{refused, POLLIN, 0};
        return ::poll(&p, 1, 0) == 1;
    }));
    std::string reply;
    REQUIRE(read_frame(refused, reply) == FrameResult::Ok);
    CHECK(reply.find("\"rc\":" + std::to_string(DOPT_E_CONNECT)) != std::string::npos);
    CHECK(reply.find("max_connections_per_user") != std::string::npos);
    CHECK(read_frame(refused, reply) == FrameResult::Closed);
    CHECK(f.server.connection_count() == 2);

    // Once one closes, the uid may connect again.
    ::close(a);
    REQUIRE(f.wait_for_connections(1));
    int again = connect_to(f.path);
    send_raw(again, frame("admitted"));
    REQUIRE(f.wait_for_requests(1));
    CHECK(f.handler.requests[0].body == "admitted");
    ::close(b);
    ::close(refused);
    ::close(again);
}

TEST_CASE("a request sent right before the client closes is still handed over, then on_close",
          "[ipc_server]") {
    Fixture f;
    int client = connect_to(f.path);
    send_raw(client, frame(R"({"op":"cancel","seq":5})"));
    ::close(client);
    REQUIRE(pump_until(f.server, [&] { return !f.handler.closed.empty(); }));
    REQUIRE(f.handler.requests.size() == 1);
    CHECK(f.handler.requests[0].body == R"({"op":"cancel","seq":5})");
    CHECK(f.handler.closed == std::vector<ConnId>{f.handler.requests[0].conn});
    CHECK(f.server.connection_count() == 0);
}
