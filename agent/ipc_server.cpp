#include "agent/ipc_server.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <stdexcept>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "agent/log.h"
#include "protocol/frame.h"
#include "dopt/dopt.h"

namespace dopt::agent {

namespace {
constexpr std::size_t kMaxConnections = 1024;  // all uids together
// A client that reads none of its replies is dropped past this backlog.
constexpr std::size_t kMaxOutput = 64u << 20;
// True unless a connect to addr is refused: a socket file nobody listens on
// is stale, anything else (a listener, even one with a full backlog, or a
// socket we may not connect to) belongs to someone and is left alone.
bool socket_answers(const sockaddr_un& addr) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
    int rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
    int e = errno;
    ::close(fd);
    return rc == 0 || (e != ECONNREFUSED && e != ENOENT);
}
}  // namespace

IpcServer::IpcServer(const std::string& path, mode_t mode, IpcHandler* handler, IpcLimits limits)
    : path_(path), handler_(handler), limits_(limits) {
    sockaddr_un addr{};
    if (path.size() >= sizeof addr.sun_path)
        throw std::runtime_error("socket path too long: " + path);
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (listen_fd_ < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
    struct stat st{};
    if (::lstat(path.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            throw std::runtime_error(path + " exists and is not a socket; not replacing it");
        if (socket_answers(addr))
            throw std::runtime_error("another doptd is serving " + path +
                                     "; not replacing its socket (stop it first or set another socket)");
        LOG_INFO("replacing stale socket %s", path.c_str());
        ::unlink(path.c_str());
    }
    // Create the socket with restrictive permissions, then widen as asked.
    mode_t old = ::umask(0177);
    int rc = ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    int e = errno;
    ::umask(old);
    if (rc != 0) throw std::runtime_error("bind " + path + ": " + std::strerror(e));
    if (::chmod(path.c_str(), mode) != 0)
        throw std::runtime_error("chmod " + path + ": " + std::strerror(errno));
    if (::listen(listen_fd_, 128) != 0)
        throw std::runtime_error("listen " + path + ": " + std::strerror(errno));
}

IpcServer::IpcServer(int listening_fd, const std::string& path, IpcHandler* handler,
                     IpcLimits limits)
    : path_(path), listen_fd_(listening_fd), unlink_at_end_(false), handler_(handler),
      limits_(limits) {}

IpcServer::~IpcServer() {
    for (auto& [id, c] : conns_) ::close(c.fd);
    if (listen_fd_ >= 0) {
        ::close(listen_fd_);
        if (unlink_at_end_) ::unlink(path_.c_str());
    }
}

std::size_t IpcServer::add_pollfds(std::vector<pollfd>& fds) {
    std::size_t first = fds.size();
    fds.push_back({listen_fd_, POLLIN, 0});
    poll_order_.clear();
    for (const auto& [id, c] : conns_) {
        short ev = 0;
        if (!on_hold(c) && !c.close_after_flush) ev |= POLLIN;
        if (!c.out.empty()) ev |= POLLOUT;
        fds.push_back({c.fd, ev, 0});
        poll_order_.push_back(id);
    }
    return first;
}

void IpcServer::handle(const std::vector<pollfd>& fds, std::size_t first) {
    for (std::size_t i = 0; i < poll_order_.size(); ++i) {
        ConnId id = poll_order_[i];
        auto it = conns_.find(id);
        if (it == conns_.end()) continue;
        short re = fds[first + 1 + i].revents;
        if (re & POLLOUT) flush(it->second);
        it = conns_.find(id);
        if (it == conns_.end()) continue;
        if (re & (POLLIN | POLLHUP | POLLERR))
            read_from(id, it->second, (re & (POLLHUP | POLLERR)) != 0);
        // A connection held for its uid's backlog resumes once the backlog
        // drains, perhaps through another connection: dispatch what it holds.
        dispatch(id);
    }
    // After the reads: a connection its client closed no longer counts
    // against the uid's limit when the client's next one arrives.
    if (fds[first].revents & POLLIN) accept_all();
}

void IpcServer::accept_all() {
    for (;;) {
        int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR) continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                LOG_WARN("accept: %s", std::strerror(errno));
            return;
        }
        ucred cred{};
        socklen_t len = sizeof cred;
        if (conns_.size() >= kMaxConnections ||
            ::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
            LOG_WARN("refusing a connection (%zu open)", conns_.size());
            ::close(fd);
            continue;
        }
        PeerCred peer{cred.pid, cred.uid, cred.gid};
        if (!admit(fd, peer)) {
            ::close(fd);
            continue;
        }
        Conn c;
        c.fd = fd;
        c.peer = peer;
        ++usage_[peer.uid].connections;
        conns_.emplace(next_id_++, std::move(c));
    }
}

// Whether the uid may open one more connection. When not, the client gets
// one error frame (seq 0: libdopt reads it as the answer to its hello) and
// the caller closes the descriptor.
bool IpcServer::admit(int fd, const PeerCred& peer) {
    Usage& u = usage_[peer.uid];
    if (u.connections < limits_.max_connections_per_user) return true;
    if (!u.refusal_logged) {
        LOG_WARN("uid %u has %zu connections open, the most [ipc] max_connections_per_user "
                 "allows; refusing more until it closes some",
                 static_cast<unsigned>(peer.uid), u.connections);
        u.refusal_logged = true;
    }
    std::string body = "{\"seq\":0,\"rc\":" + std::to_string(DOPT_E_CONNECT) +
                       ",\"message\":\"doptd refuses more than " +
                       std::to_string(limits_.max_connections_per_user) +
                       " connections at once from one user ([ipc] max_connections_per_user); uid " +
                       std::to_string(peer.uid) + " has them all open\"}";
    unsigned char hdr[4];
    protocol::encode_length(static_cast<std::uint32_t>(body.size()), hdr);
    std::string frame(reinterpret_cast<const char*>(hdr), 4);
    frame += body;
    // A fresh socket's buffer takes a few hundred bytes; nothing to retry.
    ssize_t n = ::send(fd, frame.data(), frame.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)n;
    return false;
}

// Reads what the client sent, dispatching whole requests as they come.
// While the connection is on hold it stops once a whole frame's worth is
// buffered (the rest waits in the socket), unless the client hung up: then
// what is left in the socket (bounded by its buffer) is read to find the end.
void IpcServer::read_from(ConnId id, Conn& c, bool hung_up) {
    char buf[65536];
    for (;;) {
        if (!hung_up && on_hold(c) && c.in.size() > protocol::kMaxFrame + 4) return;
        ssize_t n = ::read(c.fd, buf, sizeof buf);
        if (n > 0) {
            c.in.append(buf, static_cast<std::size_t>(n));
            dispatch(id);
            if (conns_.find(id) == conns_.end()) return;  // a reply closed it
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        // EOF or error. Whole requests read before it are still carried
        // out (a client may send a cancel and close at once); their
        // replies have nowhere to go.
        c.at_eof = true;
        discard_out(c, c.out.size());
        dispatch(id);
        drop(id);
        return;
    }
}

// Hands every whole frame to the handler, in order, until paused.
void IpcServer::dispatch(ConnId id) {
    for (;;) {
        auto it = conns_.find(id);
        if (it == conns_.end()) return;
        Conn& c = it->second;
        if (on_hold(c) || c.close_after_flush || c.in.size() < 4) return;
        std::uint32_t len = protocol::decode_length(reinterpret_cast<const unsigned char*>(c.in.data()));
        if (len > protocol::kMaxFrame) {
            LOG_WARN("connection from pid %d sent a %u-byte frame; closing it", c.peer.pid, len);
            c.in.clear();
            c.close_after_flush = true;  // send() drops the connection once flushed
            send(id, "{\"seq\":0,\"rc\":" + std::to_string(DOPT_E_TOO_LARGE) +
                         ",\"message\":\"frame of " + std::to_string(len) +
                         " bytes exceeds the 1 MiB limit\"}");
            return;
        }
        if (c.in.size() < 4 + static_cast<std::size_t>(len)) return;
        std::string body = c.in.substr(4, len);
        c.in.erase(0, 4 + static_cast<std::size_t>(len));
        PeerCred peer = c.peer;
        handler_->on_request(id, peer, body);
    }
}

void IpcServer::send(ConnId id, const std::string& body) {
    auto it = conns_.find(id);
    if (it == conns_.end()) return;
    Conn& c = it->second;
    unsigned char hdr[4];
    protocol::encode_length(static_cast<std::uint32_t>(body.size()), hdr);
    queue_out(c, std::string(reinterpret_cast<const char*>(hdr), 4));
    queue_out(c, body);
    if (c.out.size() > kMaxOutput) {
        LOG_WARN("client pid %d reads none of its replies; dropping it", c.peer.pid);
        drop(id);
        return;
    }
    flush(c);
}

void IpcServer::flush(Conn& c) {
    while (!c.out.empty()) {
        ssize_t n = ::send(c.fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
        if (n > 0) {
            discard_out(c, static_cast<std::size_t>(n));
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        // The peer is gone. Requests it sent before are still carried out;
        // read_from drops the connection when it sees the end.
        discard_out(c, c.out.size());
        c.at_eof = true;
        return;
    }
    if (c.close_after_flush && c.out.empty()) {
        for (auto& [id, conn] : conns_) {
            if (&conn == &c) {
                drop(id);
                return;
            }
        }
    }
}

void IpcServer::set_paused(ConnId id, bool paused) {
    auto it = conns_.find(id);
    if (it == conns_.end()) return;
    it->second.paused = paused;
    if (!paused) dispatch(id);
}

std::size_t IpcServer::pending_output(ConnId id) const {
    auto it = conns_.find(id);
    return it == conns_.end() ? 0 : it->second.out.size();
}

void IpcServer::drop(ConnId id) {
    auto it = conns_.find(id);
    if (it == conns_.end()) return;
    Conn& c = it->second;
    discard_out(c, c.out.size());
    auto u = usage_.find(c.peer.uid);
    if (--u->second.connections == 0) usage_.erase(u);
    ::close(c.fd);
    conns_.erase(it);
    handler_->on_close(id);
}

void IpcServer::queue_out(Conn& c, const std::string& bytes) {
    c.out += bytes;
    usage_[c.peer.uid].backlog += bytes.size();
}

void IpcServer::discard_out(Conn& c, std::size_t n) {
    c.out.erase(0, n);
    usage_[c.peer.uid].backlog -= n;
}

bool IpcServer::backlogged(const Conn& c) const {
    if (c.out.empty() || c.at_eof) return false;
    auto u = usage_.find(c.peer.uid);
    return u != usage_.end() && u->second.backlog > limits_.max_reply_backlog_per_user;
}

}  // namespace dopt::agent
