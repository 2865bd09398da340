// IpcServer: the agent's Unix socket. Non-blocking, driven by the agent's
// main loop: it accepts connections, learns each caller's uid with
// SO_PEERCRED, cuts the byte stream into frames (docs/protocol.md) and hands
// each whole request to the Handler; replies are queued and written as the
// socket drains.
//
// Contract:
//  - A frame announcing more than kMaxFrame bytes gets an error reply and
//    the connection is closed; nothing else is affected.
//  - While a connection is paused (a parked `wait`), no further request of
//    it is dispatched; its bytes stay buffered.
//  - One uid cannot starve the others (IpcLimits): a connection past its
//    uid's limit gets one error reply (DOPT_E_CONNECT) and is closed; a
//    connection with replies unsent while its uid's backlog is over the
//    limit is neither read nor dispatched until its client reads.
//  - Not thread-safe: one thread (the main loop) uses it.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <sys/types.h>
#include <vector>

#include <poll.h>

namespace dopt::agent {

struct PeerCred {
    pid_t pid = 0;
    uid_t uid = 0;
    gid_t gid = 0;
};

using ConnId = std::uint64_t;

// Per-uid limits (docs/config.md, [ipc]).
struct IpcLimits {
    std::size_t max_connections_per_user = 128;  // the defaults of [ipc] (config.h)
    // Reply bytes queued and unread, all of a uid's connections together,
    // past which its backlogged connections are no longer read.
    std::size_t max_reply_backlog_per_user = 8u << 20;
};

class IpcHandler {
public:
    virtual ~IpcHandler() = default;
    virtual void on_request(ConnId conn, const PeerCred& peer, const std::string& body) = 0;
    virtual void on_close(ConnId conn) = 0;
};

class IpcServer {
public:
    // Binds `path` (a stale socket file there is replaced: the caller holds
    // the state lock, so no live agent owns it) with permissions `mode`.
    // Throws std::runtime_error naming the path and the cause.
    IpcServer(const std::string& path, mode_t mode, IpcHandler* handler, IpcLimits limits);
    // Serves `listening_fd`, a socket bound at `path` by someone else
    // (systemd's socket unit): takes the descriptor, never unlinks `path`.
    IpcServer(int listening_fd, const std::string& path, IpcHandler* handler, IpcLimits limits);
    ~IpcServer();
    IpcServer(const IpcServer&) = delete;
    IpcServer& operator=(const IpcServer&) = delete;

    // Appends the descriptors to poll; remember the returned first index.
    std::size_t add_pollfds(std::vector<pollfd>& fds);
    // Handles readiness reported for the descriptors added at `first`.
    void handle(const std::vector<pollfd>& fds, std::size_t first);

    void send(ConnId conn, const std::string& body);
    void set_paused(ConnId conn, bool paused);
    // Bytes queued for `conn` and not yet written (0 for an unknown conn).
    std::size_t pending_output(ConnId conn) const;
    std::size_t connection_count() const { return conns_.size(); }
    // New limits apply to what happens next; nothing open is closed.
    void set_limits(IpcLimits limits) { limits_ = limits; }

private:
    struct Conn {
        int fd = -1;
        PeerCred peer;
        std::string in;
        std::string out;
        bool paused = false;
        bool close_after_flush = false;
        bool at_eof = false;  // the client closed: requests still read are carried out, replies dropped
    };
    // What one uid holds: its connections and their unsent reply bytes.
    struct Usage {
        std::size_t connections = 0;
        std::size_t backlog = 0;
        bool refusal_logged = false;  // warned once, until all its connections close
    };
    void accept_all();
    bool admit(int fd, const PeerCred& peer);
    void read_from(ConnId id, Conn& c, bool hung_up);
    void dispatch(ConnId id);
    void flush(Conn& c);
    void drop(ConnId id);
    // Every change to Conn::out goes through these two (they keep Usage::backlog).
    void queue_out(Conn& c, const std::string& bytes);
    void discard_out(Conn& c, std::size_t n);
    // A connection whose client does not read while its uid is over the backlog limit.
    bool backlogged(const Conn& c) const;
    bool on_hold(const Conn& c) const { return c.paused || backlogged(c); }

    std::string path_;
    int listen_fd_ = -1;
    bool unlink_at_end_ = true;  // false for a socket systemd bound
    IpcHandler* handler_;
    IpcLimits limits_;
    std::map<uid_t, Usage> usage_;
    ConnId next_id_ = 1;
    std::map<ConnId, Conn> conns_;
    std::vector<ConnId> poll_order_;  // conn ids in the order add_pollfds added them
};

}  // namespace dopt::agent
