// Fuzzes both ends of the IPC protocol (docs/protocol.md). Each input is a
// byte stream on the socket, read twice:
//
//  1. as a client's requests, by doptd: the real IpcServer on a Unix socket
//     cuts it into frames (4-byte big-endian length, 1 MiB at most) and hands
//     each body to decode_request() (agent/request_envelope.cpp), the
//     envelope check of Agent::on_request.
//     The per-op fields are read inside the Agent's handlers, which need a
//     job table and are not reached here.
//  2. as the agent's replies, by libdopt: a client on a socketpair makes a
//     fixed series of calls, each reading the next frame (read_frame) and
//     decoding it: list (JsonReader, read_list_reply), open, status, wait
//     (json tree, parse_job), cache_list, peer_stats, cache_clear.
//
// The contract checked: no crash, no sanitizer report, no leak, no
// exception out of dopt_* (each returns a DOPT_E_* code instead).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "agent/agent_internal.h"
#include "agent/ipc_server.h"
#include "agent/log.h"
#include "api/libdopt/internal.h"
#include "dopt/dopt.h"

namespace {

using dopt::agent::Agent;
using dopt::agent::ConnId;
using dopt::agent::IpcServer;
using dopt::agent::PeerCred;

// Writes what fits in the socket buffer without blocking (all of it for
// inputs up to -max_len, far below the buffer size).
void write_some(int fd, const std::uint8_t* data, std::size_t size) {
    int flags = ::fcntl(fd, F_GETFL);
    ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    while (size > 0) {
        ssize_t n = ::send(fd, data, size, MSG_NOSIGNAL);
        if (n <= 0) break;
        data += n;
        size -= static_cast<std::size_t>(n);
    }
    ::fcntl(fd, F_SETFL, flags);
}

// ---- 1. the agent side ----

class RequestDecoder : public dopt::agent::IpcHandler {
public:
    void on_request(ConnId, const PeerCred&, const std::string& body) override {
        Agent::Request req;
        (void)dopt::agent::decode_request(body, &req);
    }
    void on_close(ConnId) override {}
};

// One round of the agent's main loop for the server's descriptors.
void pump(IpcServer& server) {
    std::vector<pollfd> fds;
    std::size_t first = server.add_pollfds(fds);
    ::poll(fds.data(), fds.size(), 0);
    server.handle(fds, first);
}

// A private folder for the socket, removed at exit.
struct SocketDir {
    std::string dir;
    std::string socket;
    SocketDir() {
        char tmpl[] = "/tmp/dopt-fuzz-ipc-XXXXXX";
        if (::mkdtemp(tmpl) == nullptr) std::abort();
        dir = tmpl;
        socket = dir + "/doptd.sock";
    }
    ~SocketDir() { ::rmdir(dir.c_str()); }  // after the server unlinked the socket
};

void feed_agent(const std::uint8_t* data, std::size_t size) {
    static SocketDir where;
    static RequestDecoder decoder;
    static bool quiet = dopt::agent::set_log_level("error");  // oversized frames warn
    static IpcServer server(where.socket, 0600, &decoder, dopt::agent::IpcLimits{});
    (void)quiet;

    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, where.socket.c_str(), where.socket.size() + 1);
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0)
        std::abort();
    write_some(fd, data, size);
    pump(server);  // accepts
    pump(server);  // reads, hands every whole frame to the decoder
    ::close(fd);
    // EOF: the connection must go (at once; a few rounds allowed).
    for (int i = 0; i < 8 && server.connection_count() > 0; ++i) pump(server);
    if (server.connection_count() > 0) std::abort();
}

// ---- 2. the client side ----

void feed_client(const std::uint8_t* data, std::size_t size) {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) std::abort();
    write_some(sv[1], data, size);
    ::shutdown(sv[1], SHUT_WR);  // then EOF: no read ever blocks

    // Non-blocking: reads never wait (EOF is queued), and a request that
    // would block on a full buffer (nobody reads them) fails instead.
    ::fcntl(sv[0], F_SETFL, O_NONBLOCK);
    auto* client = new dopt_client;
    client->fd = sv[0];  // peer_protocol 0: a broken client does not reconnect
    client->path = "/nonexistent/doptd.sock";

    dopt_job_status** list = nullptr;
    std::size_t count = 0;
    if (dopt_client_list_jobs(&list, &count, client) == DOPT_OK) {
        for (std::size_t i = 0; i < count; ++i) {
            dopt_file_info info;
            for (std::size_t f = 0; f < dopt_job_status_file_count(list[i]); ++f)
                (void)dopt_job_status_file(&info, list[i], f);
            if (const dopt_error* e = dopt_job_status_error(list[i])) (void)dopt_error_file(&info, e);
        }
        dopt_job_status_list_free(list, count);
    }

    dopt_job* job = nullptr;
    if (dopt_job_open(&job, client, "7d0c3e0e-1b9e-4f5c-9d0b-2f3c8a6e4b11") == DOPT_OK) {
        dopt_job_status* status = nullptr;
        if (dopt_job_fetch_status(&status, job) == DOPT_OK) dopt_job_status_free(status);
        dopt_job_state state;
        (void)dopt_job_wait(&state, job, 0);
        dopt_job_close(job);
    }

    char* text = nullptr;
    if (dopt_cache_list_json(&text, client) == DOPT_OK) dopt_string_free(text);
    if (dopt_peer_stats_json(&text, client) == DOPT_OK) dopt_string_free(text);
    std::uint64_t bytes = 0;
    (void)dopt_cache_clear(&bytes, client);

    dopt_client_close(client);  // closes sv[0]
    ::close(sv[1]);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    feed_agent(data, size);
    feed_client(data, size);
    return 0;
}
