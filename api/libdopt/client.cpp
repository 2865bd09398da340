// libdopt's connection to doptd: socket discovery, the hello handshake and
// the request/reply exchange of docs/protocol.md.
#include "api/libdopt/internal.h"

#include "protocol/frame.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

namespace dopt::client {

namespace {

namespace proto = dopt::protocol;

std::string errno_text(int err) { return std::strerror(err); }

// Sends one frame and reads one back. REQUIRES: client->mu held.
// Returns DOPT_OK with *body filled, or a local failure with the detail set.
// Any failure leaves the stream in an unknown place: the client is broken.
int exchange_locked(dopt_client* client, const std::string& out, std::string* body) {
    if (client->broken)
        return fail(DOPT_E_DISCONNECTED, "the connection to the agent was lost earlier");
    proto::FrameResult r = proto::write_frame(client->fd, out);
    if (r == proto::FrameResult::TooLarge)
        return fail(DOPT_E_TOO_LARGE, "the request exceeds the 1 MiB frame limit");
    if (r != proto::FrameResult::Ok) {
        client->broken = true;
        int err = errno;
        // The agent may have said why before it closed (a connection over
        // its per-user limit gets one error frame): that answer wins.
        if ((err == EPIPE || err == ECONNRESET) &&
            proto::read_frame(client->fd, *body) == proto::FrameResult::Ok)
            return DOPT_OK;
        return fail(DOPT_E_DISCONNECTED, "sending to the agent failed: " + errno_text(err));
    }
    r = proto::read_frame(client->fd, *body);
    if (r == proto::FrameResult::Ok) return DOPT_OK;
    client->broken = true;
    if (r == proto::FrameResult::TooLarge)
        return fail(DOPT_E_TOO_LARGE, "the agent's reply announces more than the 1 MiB frame limit");
    if (r == proto::FrameResult::Closed)
        return fail(DOPT_E_DISCONNECTED, "the agent closed the connection");
    return fail(DOPT_E_DISCONNECTED, "reading from the agent failed: " + errno_text(errno));
}

// Checks the envelope of a reply (object, matching seq, integer rc) and
// returns its rc, with `message` as the last error when rc != 0.
int check_reply(dopt_client* client, const json& reply, std::int64_t seq) {
    if (!reply.is_object() || !reply.contains("rc") || !reply["rc"].is_number_integer()) {
        client->broken = true;
        return fail(DOPT_E_PROTOCOL, "the agent's reply is not an object with an integer rc");
    }
    int rc = reply["rc"].get<int>();
    // seq 0 is the agent's answer to a frame it could not read at all.
    if (reply.contains("seq") && reply["seq"].is_number_integer()) {
        std::int64_t got = reply["seq"].get<std::int64_t>();
        if (got != seq && !(got == 0 && rc != DOPT_OK)) {
            client->broken = true;
            return fail(DOPT_E_PROTOCOL, "the agent answered seq " + std::to_string(got) +
                                             " to request " + std::to_string(seq));
        }
    }
    if (rc == DOPT_OK) return DOPT_OK;
    if (rc > 0) return fail(DOPT_E_PROTOCOL, "the agent answered a positive rc");
    std::string message;
    if (reply.contains("message") && reply["message"].is_string())
        message = reply["message"].get<std::string>();
    return fail(rc, message.empty() ? std::string(dopt_strerror(rc)) : message);
}

// A client whose connection broke (the agent restarted, say) connects again
// to the same path before its next request; the request that failed is not
// sent again (it may have been carried out). REQUIRES: client->mu held.
void reconnect_locked(dopt_client* client);

}  // namespace

int call(dopt_client* client, json request, json* reply) {
    return call(client, std::move(request), reply, parse_tree);
}

int call(dopt_client* client, json request, json* reply, const ReplyParser& parse) {
    std::lock_guard<std::mutex> lock(client->mu);
    if (client->broken && client->peer_protocol != 0) reconnect_locked(client);
    std::int64_t seq = ++client->seq;
    request["seq"] = seq;
    // A string argument that is not UTF-8 (dopt.h: strings are UTF-8) is the
    // caller's malformed argument, not a protocol failure: nothing was sent
    // and the client stays usable.
    std::string text;
    try {
        text = request.dump();
    } catch (const json::type_error&) {
        return fail(DOPT_E_INVALID_ARG, "a string argument is not valid UTF-8");
    }
    std::string body;
    int rc = exchange_locked(client, text, &body);
    if (rc != DOPT_OK) return rc;
    json parsed = parse(body);
    if (parsed.is_discarded()) {
        client->broken = true;
        return fail(DOPT_E_PROTOCOL, "the agent's reply is not valid JSON (or nests too deeply)");
    }
    rc = check_reply(client, parsed, seq);
    *reply = std::move(parsed);
    return rc;
}

namespace {

// Connects a stream socket to `path`. Returns the fd, or -1 with the detail set.
int connect_unix(const std::string& path) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof(addr.sun_path)) {
        set_error("socket path too long: " + path);
        return -1;
    }
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        set_error("socket(): " + errno_text(errno));
        return -1;
    }
    int r;
    do {
        r = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
        set_error("cannot connect to the agent at " + path + ": " + errno_text(errno));
        ::close(fd);
        return -1;
    }
    return fd;
}

void set_io_timeout(int fd, int seconds) {
    timeval tv{};
    tv.tv_sec = seconds;
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

void reconnect_locked(dopt_client* client) {
    int fd = connect_unix(client->path);
    if (fd < 0) return;  // still broken; the caller's request says so
    // Whatever listens there must say hello promptly to count as the agent.
    set_io_timeout(fd, 2);
    int old = client->fd;
    client->fd = fd;
    client->broken = false;
    json req = {{"op", "hello"},
                {"seq", ++client->seq},
                {"protocol", protocol::kVersion},
                {"client", std::string("libdopt ") + DOPT_VERSION_STRING}};
    std::string body;
    bool ok = exchange_locked(client, req.dump(), &body) == DOPT_OK;
    json reply = ok ? parse_tree(body) : json();
    ok = ok && reply.is_object() && reply.value("rc", -1) == 0 &&
         reply.value("protocol", 0) == protocol::kVersion;
    if (ok) {
        set_io_timeout(fd, 0);
        ::close(old);
    } else {
        ::close(fd);
        client->fd = old;
        client->broken = true;
    }
}

// Says hello on a connected client. DOPT_OK, DOPT_E_VERSION, or another code
// when what answers is not an agent we can talk to.
int hello(dopt_client* client) {
    json req = {{"op", "hello"},
                {"protocol", protocol::kVersion},
                {"client", std::string("libdopt ") + DOPT_VERSION_STRING}};
    json reply;
    int rc = call(client, std::move(req), &reply);
    int theirs = 0;
    if (reply.is_object() && reply.contains("protocol") && reply["protocol"].is_number_integer())
        theirs = reply["protocol"].get<int>();
    if (rc == DOPT_E_VERSION || (rc == DOPT_OK && theirs != protocol::kVersion)) {
        std::string detail = "libdopt speaks protocol " + std::to_string(protocol::kVersion) +
                             ", the agent at " + client->path + " speaks " +
                             (theirs ? std::to_string(theirs) : std::string("another one"));
        if (rc == DOPT_E_VERSION && *dopt_last_error()) detail += " (" + std::string(dopt_last_error()) + ")";
        return fail(DOPT_E_VERSION, detail);
    }
    if (rc != DOPT_OK) return rc;
    client->peer_protocol = theirs;
    if (reply.contains("agent") && reply["agent"].is_string())
        client->agent = reply["agent"].get<std::string>();
    if (reply.contains("uid") && reply["uid"].is_number_unsigned())
        client->uid = reply["uid"].get<std::uint32_t>();
    return DOPT_OK;
}

// Opens one candidate path: connect + hello. DOPT_OK with *out set, or a code.
int open_path(std::unique_ptr<dopt_client>* out, const std::string& path) {
    auto client = std::make_unique<dopt_client>();
    client->path = path;
    client->fd = connect_unix(path);
    if (client->fd < 0) return DOPT_E_CONNECT;
    int rc = hello(client.get());
    if (rc != DOPT_OK) {
        ::close(client->fd);
        if (rc == DOPT_E_DISCONNECTED)
            return fail(DOPT_E_CONNECT, "the agent at " + path + " closed the connection at hello");
        return rc;
    }
    *out = std::move(client);
    return DOPT_OK;
}

// The default candidates, in order: $DOPT_SOCKET, the per-user socket, the
// system socket. Only those that exist are returned.
std::vector<std::string> default_paths() {
    std::vector<std::string> all;
    if (const char* env = std::getenv("DOPT_SOCKET"); env && *env) all.emplace_back(env);
    if (const char* xdg = std::getenv("XDG_RUNTIME_DIR"); xdg && *xdg)
        all.push_back(std::string(xdg) + "/dopt/doptd.sock");
    all.emplace_back("/run/dopt/doptd.sock");
    std::vector<std::string> existing;
    for (const auto& p : all) {
        struct stat st;
        if (::stat(p.c_str(), &st) == 0) existing.push_back(p);
    }
    return existing;
}

// Ranks a failure of one candidate: the most telling one is reported.
int rank(int rc) {
    if (rc == DOPT_E_VERSION) return 3;
    if (rc == DOPT_E_CONNECT) return 1;
    return 2;  // something answered, but not as an agent should
}

int open_default(std::unique_ptr<dopt_client>* out) {
    std::vector<std::string> paths = default_paths();
    if (paths.empty())
        return fail(DOPT_E_CONNECT,
                    "no agent socket found ($DOPT_SOCKET, $XDG_RUNTIME_DIR/dopt/doptd.sock, "
                    "/run/dopt/doptd.sock)");
    int best = DOPT_OK;
    std::string best_detail;
    for (const auto& p : paths) {
        int rc = open_path(out, p);
        if (rc == DOPT_OK) {
            clear_error();  // an earlier candidate's failure is no longer news
            return DOPT_OK;
        }
        if (best == DOPT_OK || rank(rc) > rank(best)) {
            best = rc;
            best_detail = dopt_last_error();
        }
    }
    return fail(best, best_detail);
}

}  // namespace

int open_connection(std::unique_ptr<dopt_client>* out, const std::string& path) {
    return open_path(out, path);
}

}  // namespace dopt::client

using namespace dopt::client;

extern "C" {

int dopt_client_open(dopt_client** out, const char* socket_path) {
    if (out) *out = nullptr;
    return guarded([&]() -> int {
        if (!out) return fail(DOPT_E_INVALID_ARG, "dopt_client_open: out is NULL");
        if (socket_path && !*socket_path)
            return fail(DOPT_E_INVALID_ARG, "dopt_client_open: socket_path is empty");
        std::unique_ptr<dopt_client> client;
        int rc = socket_path ? open_path(&client, socket_path) : open_default(&client);
        if (rc != DOPT_OK) return rc;
        *out = client.release();
        return DOPT_OK;
    });
}

const char* dopt_client_agent_version(const dopt_client* client) {
    if (client) return client->agent.c_str();
    set_error("dopt_client_agent_version: NULL argument");
    return "";
}

void dopt_client_close(dopt_client* client) {
    if (!client) return;
    stop_dispatcher(client);  // first: no callback runs once this returns
    if (client->fd >= 0) ::close(client->fd);
    delete client;
}

}  // extern "C"
