#include "agent/owner_files.h"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ctime>
#include <deque>
#include <map>
#include <vector>

#include "agent/log.h"
#include "agent/privilege_separation.h"

namespace dopt::agent {

namespace {

// The owner-rights process, once main.cpp has started one; -1 otherwise.
int g_channel = -1;

int g_timeout_ms = 10 * 1000;

// Children killed that had not exited yet: reaped later, tried every
// kReapEveryMs.
std::vector<pid_t> g_unreaped;
constexpr int kReapEveryMs = 100;

bool needs_switch(const Owner& owner) { return geteuid() == 0 && owner.uid != 0; }

// In the child: become the owner. Only syscalls from here on.
bool drop_to_owner(const Owner& owner, const std::vector<gid_t>& groups) {
    if (owner.uid == static_cast<uid_t>(-1) || owner.gid == static_cast<gid_t>(-1)) return false;
    if (setgroups(groups.size(), groups.data()) != 0) return false;
    if (setresgid(owner.gid, owner.gid, owner.gid) != 0) return false;
    if (setresuid(owner.uid, owner.uid, owner.uid) != 0) return false;
    return true;
}

// Opens a regular file (relative to `dir_fd`, or AT_FDCWD), never through a
// symlink in the last component. O_NONBLOCK during the open keeps a FIFO
// planted there from blocking us. Without O_EXCL the file must be this
// process's uid's and have one link; with it, it gets exactly `mode`.
int open_regular(int dir_fd, const char* path, int flags, mode_t mode) {
    int fd = ::openat(dir_fd, path, flags | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY, mode);
    if (fd < 0) return -errno;
    struct stat st{};
    int rc = 0;
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) rc = -EINVAL;
    else if ((flags & O_EXCL) == 0 && (st.st_uid != ::geteuid() || st.st_nlink != 1)) rc = -EEXIST;
    else if ((flags & O_EXCL) != 0 && ::fchmod(fd, mode) != 0) rc = -errno;
    int fl = rc == 0 ? ::fcntl(fd, F_GETFL) : -1;
    if (rc == 0 && (fl < 0 || ::fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0)) rc = -errno;
    if (rc != 0) {
        ::close(fd);
        return rc;
    }
    return fd;
}

// True when the real path of the folder `dir_fd` is one of `dirs` or inside
// one.
bool folder_inside(int dir_fd, const std::vector<std::string>& dirs) {
    char link[64];
    char real[PATH_MAX];
    std::snprintf(link, sizeof link, "/proc/self/fd/%d", dir_fd);
    ssize_t n = ::readlink(link, real, sizeof real - 1);
    if (n <= 0) return false;
    const std::string folder(real, static_cast<std::size_t>(n));
    for (const auto& d : dirs) {
        if (folder == d || d == "/") return true;
        if (folder.size() > d.size() && folder.compare(0, d.size(), d) == 0 && folder[d.size()] == '/')
            return true;
    }
    return false;
}

// The operation of a confined request (OwnerOp::confine_to): in the folder
// of op.path as opened and checked here, by name within it.
int perform_confined(const OwnerOp& op) {
    const std::string::size_type slash = op.path.rfind('/');
    const std::string dir = slash == 0 ? "/" : op.path.substr(0, slash);
    const std::string name = op.path.substr(slash + 1);
    int dfd = ::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return -errno;
    int rc = -EPERM;
    if (folder_inside(dfd, *op.confine_to)) {
        switch (op.kind) {
        case OwnerOpKind::Open: rc = open_regular(dfd, name.c_str(), op.flags, op.mode); break;
        case OwnerOpKind::Rename: {
            const std::string to = op.to.substr(op.to.rfind('/') + 1);  // same folder: checked
            rc = ::renameat(dfd, name.c_str(), dfd, to.c_str()) == 0 ? 0 : -errno;
            break;
        }
        case OwnerOpKind::Unlink: rc = ::unlinkat(dfd, name.c_str(), 0) == 0 ? 0 : -errno; break;
        }
    }
    ::close(dfd);
    return rc;
}

// The operation itself, with whatever rights this process has.
int perform(const OwnerOp& op) {
    if (op.confine_to != nullptr) return perform_confined(op);
    switch (op.kind) {
    case OwnerOpKind::Open: return open_regular(AT_FDCWD, op.path.c_str(), op.flags, op.mode);
    case OwnerOpKind::Rename:
        return ::rename(op.path.c_str(), op.to.c_str()) == 0 ? 0 : -errno;
    case OwnerOpKind::Unlink: return ::unlink(op.path.c_str()) == 0 ? 0 : -errno;
    }
    return -EINVAL;
}

std::int64_t now_ms() {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

// Test builds only (DOPT_CRASH_POINTS): with DOPT_STOP_OWNER_OP=TEXT in the
// environment, the child for a rename whose target contains TEXT stops
// itself (SIGSTOP) before the rename, as if its owner had stopped it: what a
// deadline on owner operations must survive (docs/config.md,
// file_op_timeout). Read before the fork: the child only looks at a bool.
bool stops_itself(const OwnerOp& op) {
#if defined(DOPT_CRASH_POINTS) && DOPT_CRASH_POINTS
    static const char* text = std::getenv("DOPT_STOP_OWNER_OP");
    return text != nullptr && *text != '\0' && op.kind == OwnerOpKind::Rename &&
           op.to.find(text) != std::string::npos;
#else
    (void)op;
    return false;
#endif
}

// Returns how many are left (a child hung in a call on a mount that never
// answers dies only when the call returns).
std::size_t reap_killed_children() {
    for (auto it = g_unreaped.begin(); it != g_unreaped.end();) {
        int status = 0;
        pid_t r = ::waitpid(*it, &status, WNOHANG);
        it = r == 0 ? std::next(it) : g_unreaped.erase(it);
    }
    return g_unreaped.size();
}

}  // namespace

std::vector<gid_t> groups_of(const Owner& owner) {
    std::vector<gid_t> groups(64);
    passwd pw{};
    passwd* found = nullptr;
    std::vector<char> buf(16384);
    if (getpwuid_r(owner.uid, &pw, buf.data(), buf.size(), &found) != 0 || !found)
        return {owner.gid};
    int n = static_cast<int>(groups.size());
    if (getgrouplist(found->pw_name, owner.gid, groups.data(), &n) < 0) {
        groups.resize(static_cast<size_t>(n));
        if (getgrouplist(found->pw_name, owner.gid, groups.data(), &n) < 0) return {owner.gid};
    }
    groups.resize(static_cast<size_t>(n));
    return groups;
}

bool send_owner_result(int sock, std::uint32_t id, int result, int fd) {
    OwnerRightsReply reply{static_cast<std::int32_t>(result), id};
    msghdr msg{};
    iovec iov{&reply, sizeof reply};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
    if (fd >= 0) {
        std::memset(control, 0, sizeof control);
        msg.msg_control = control;
        msg.msg_controllen = sizeof control;
        cmsghdr* cm = CMSG_FIRSTHDR(&msg);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        std::memcpy(CMSG_DATA(cm), &fd, sizeof fd);
    }
    ssize_t n;
    do {
        n = sendmsg(sock, &msg, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    return n == static_cast<ssize_t>(sizeof reply);
}

ssize_t recv_with_descriptors(int sock, void* buf, std::size_t len, int flags, int* msg_flags,
                              std::vector<int>& fds) {
    msghdr msg{};
    iovec iov{buf, len};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(4 * sizeof(int))];
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n;
    do {
        n = ::recvmsg(sock, &msg, flags);
    } while (n < 0 && errno == EINTR);
    *msg_flags = msg.msg_flags;
    if (n <= 0) return n;
    for (cmsghdr* cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) continue;
        std::size_t count = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (std::size_t i = 0; i < count; ++i) {
            int got = -1;
            std::memcpy(&got, CMSG_DATA(cm) + i * sizeof(int), sizeof got);
            fds.push_back(got);
        }
    }
    return n;
}

int recv_owner_result(int sock, std::uint32_t* id, int* fd) {
    *fd = -1;
    *id = 0;
    OwnerRightsReply reply{-EIO, 0};
    int msg_flags = 0;
    std::vector<int> fds;
    ssize_t n = recv_with_descriptors(sock, &reply, sizeof reply, MSG_CMSG_CLOEXEC | MSG_DONTWAIT,
                                      &msg_flags, fds);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return -EAGAIN;
    bool broken = n != static_cast<ssize_t>(sizeof reply) || (msg_flags & MSG_TRUNC);
    for (int got : fds) {
        if (*fd < 0 && !broken) *fd = got;
        else ::close(got);
    }
    if (broken) return -EIO;
    *id = reply.id;
    return reply.result;
}

int start_owner_child(const OwnerOp& op, const std::vector<gid_t>& groups, int timeout_ms,
                      OwnerChild& child) {
    reap_killed_children();
    const bool switch_user = needs_switch(op.owner);
    const bool stop_child = stops_itself(op);
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) return -errno;
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(sv[0]);
        close(sv[1]);
        return -e;
    }
    if (pid == 0) {
        // None of the agent's descriptors: the child runs as the owner, and
        // a copy of doptd.lock's descriptor would keep the agent's lock held
        // after a kill -9 of the agent, for as long as this child lives.
        const unsigned keep = static_cast<unsigned>(sv[1]);
        if (keep > STDERR_FILENO + 1) ::close_range(STDERR_FILENO + 1, keep - 1, 0);
        ::close_range(keep + 1, ~0U, 0);
        bool dropped = !switch_user || drop_to_owner(op.owner, groups);
        if (stop_child) ::raise(SIGSTOP);  // a test build's stand-in for the owner's kill -STOP
        int result = dropped ? perform(op) : -EPERM;
        send_owner_result(sv[1], 0, result, op.kind == OwnerOpKind::Open && result >= 0 ? result : -1);
        _exit(0);
    }
    close(sv[1]);
    child.pid = pid;
    child.sock = sv[0];
    child.deadline_ms = now_ms() + timeout_ms;
    child.returns_fd = op.kind == OwnerOpKind::Open;
    return 0;
}

namespace {
// Kills the child and reaps it if it is gone already; else later.
void end_child(OwnerChild& child) {
    ::close(child.sock);
    child.sock = -1;
    ::kill(child.pid, SIGKILL);
    int status = 0;
    if (::waitpid(child.pid, &status, WNOHANG) == 0) g_unreaped.push_back(child.pid);
    child.pid = -1;
}
}  // namespace

int finish_owner_child(OwnerChild& child) {
    std::uint32_t id = 0;
    int fd = -1;
    int result = recv_owner_result(child.sock, &id, &fd);
    end_child(child);
    if (child.returns_fd && result >= 0) return fd >= 0 ? fd : -EIO;
    if (fd >= 0) ::close(fd);
    return result;
}

int kill_owner_child(OwnerChild& child) {
    end_child(child);
    return -ETIMEDOUT;
}

// ---- without waiting --------------------------------------------------------

namespace {

// An operation whose answer is known already: its `done` runs at the next
// handle_owner_ops().
struct Answered {
    int result;
    OwnerOpDone done;
};
std::vector<Answered> g_answered;

// Operations in children of this process.
struct LocalCall {
    OwnerChild child;
    OwnerOpDone done;
};
std::vector<LocalCall> g_local;

// Operations sent to the owner-rights process, by request id. Its answer
// comes within its own deadline for the child; the agent's deadline (5 s
// later) only guards against a process that stopped answering.
struct ChannelCall {
    std::int64_t deadline_ms = 0;
    bool returns_fd = false;
    OwnerOpDone done;
};
std::map<std::uint32_t, ChannelCall> g_calls;
std::deque<std::string> g_unsent;  // requests the socket had no room for yet
std::uint32_t g_next_id = 1;
bool g_channel_gone = false;

// The descriptors add_owner_op_pollfds() added, in order.
std::vector<int> g_polled;

void channel_gone(const char* why) {
    if (!g_channel_gone)
        LOG_ERROR("the owner-rights process is gone (%s): no job file can be opened, moved or "
                  "removed until doptd restarts", why);
    g_channel_gone = true;
    ::shutdown(g_channel, SHUT_RDWR);  // it exits
    for (auto& [id, call] : g_calls) g_answered.push_back({-EIO, std::move(call.done)});
    g_calls.clear();
    g_unsent.clear();
}

// Sends what waits in g_unsent, as far as the socket takes it.
void flush_unsent() {
    while (!g_unsent.empty() && !g_channel_gone) {
        const std::string& msg = g_unsent.front();
        ssize_t n = ::send(g_channel, msg.data(), msg.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (n != static_cast<ssize_t>(msg.size())) return channel_gone(std::strerror(errno));
        g_unsent.pop_front();
    }
}

void submit_to_channel(const OwnerOp& op, OwnerOpDone done) {
    std::uint32_t id = g_next_id++;
    if (id == 0) id = g_next_id++;
    std::string msg = encode_owner_request(op, id);
    if (g_channel_gone || msg.empty()) {
        g_answered.push_back({g_channel_gone ? -EIO : -ENAMETOOLONG, std::move(done)});
        return;
    }
    g_calls[id] = ChannelCall{now_ms() + g_timeout_ms + 5000, op.kind == OwnerOpKind::Open,
                              std::move(done)};
    g_unsent.push_back(std::move(msg));
    flush_unsent();
}

// Reads every answer the owner-rights process has sent.
void read_channel() {
    for (;;) {
        std::uint32_t id = 0;
        int fd = -1;
        int result = recv_owner_result(g_channel, &id, &fd);
        if (id == 0) {  // requests have ids from 1: nothing more to read, or no process
            if (result == -EAGAIN) return;
            return channel_gone("its socket closed");
        }
        auto it = g_calls.find(id);
        if (it == g_calls.end()) {  // answered after its guard deadline: nobody waits
            if (fd >= 0) ::close(fd);
            continue;
        }
        if (it->second.returns_fd && result >= 0) result = fd >= 0 ? fd : -EIO;
        else if (fd >= 0) ::close(fd);
        g_answered.push_back({result, std::move(it->second.done)});
        g_calls.erase(it);
    }
}

}  // namespace

void submit_owner_op(const OwnerOp& op, OwnerOpDone done) {
    if (g_channel >= 0) return submit_to_channel(op, std::move(done));
    LocalCall call;
    // Groups are looked up here, before the fork: NSS is not for a child.
    std::vector<gid_t> groups = needs_switch(op.owner) ? groups_of(op.owner) : std::vector<gid_t>{};
    int rc = start_owner_child(op, groups, g_timeout_ms, call.child);
    if (rc != 0) {
        g_answered.push_back({rc, std::move(done)});
        return;
    }
    call.done = std::move(done);
    g_local.push_back(std::move(call));
}

std::size_t add_owner_op_pollfds(std::vector<pollfd>& fds) {
    std::size_t first = fds.size();
    g_polled.clear();
    if (g_channel >= 0 && !g_channel_gone && (!g_calls.empty() || !g_unsent.empty())) {
        fds.push_back({g_channel, static_cast<short>(POLLIN | (g_unsent.empty() ? 0 : POLLOUT)), 0});
        g_polled.push_back(g_channel);
    }
    for (const auto& call : g_local) {
        fds.push_back({call.child.sock, POLLIN, 0});
        g_polled.push_back(call.child.sock);
    }
    return first;
}

void handle_owner_ops(const std::vector<pollfd>& fds, std::size_t first) {
    reap_killed_children();
    for (std::size_t i = 0; i < g_polled.size() && first + i < fds.size(); ++i) {
        const pollfd& p = fds[first + i];
        if (p.revents == 0) continue;
        if (p.fd == g_channel) {
            if (p.revents & POLLOUT) flush_unsent();
            if (p.revents & (POLLIN | POLLHUP | POLLERR)) read_channel();
            continue;
        }
        for (auto it = g_local.begin(); it != g_local.end(); ++it) {
            if (it->child.sock != p.fd) continue;
            int result = finish_owner_child(it->child);
            g_answered.push_back({result, std::move(it->done)});
            g_local.erase(it);
            break;
        }
    }
    g_polled.clear();
    const std::int64_t now = now_ms();
    for (auto it = g_local.begin(); it != g_local.end();) {
        if (now < it->child.deadline_ms) {
            ++it;
            continue;
        }
        g_answered.push_back({kill_owner_child(it->child), std::move(it->done)});
        it = g_local.erase(it);
    }
    for (const auto& [id, call] : g_calls) {
        if (now >= call.deadline_ms) {
            channel_gone("it stopped answering");
            break;
        }
    }
    // The `done`s may submit more: they go to fresh lists.
    std::vector<Answered> answered;
    answered.swap(g_answered);
    for (auto& a : answered) a.done(a.result);
}

int owner_ops_timeout_ms() {
    if (!g_answered.empty()) return 0;
    std::int64_t deadline = g_unreaped.empty() ? INT64_MAX : now_ms() + kReapEveryMs;
    for (const auto& call : g_local) deadline = std::min(deadline, call.child.deadline_ms);
    for (const auto& [id, call] : g_calls) deadline = std::min(deadline, call.deadline_ms);
    if (deadline == INT64_MAX) return -1;
    return static_cast<int>(std::clamp<std::int64_t>(deadline - now_ms(), 0, INT32_MAX));
}

std::size_t reap_owner_children() { return reap_killed_children(); }

std::size_t owner_ops_in_flight() { return g_answered.size() + g_local.size() + g_calls.size(); }

void abandon_owner_ops() {
    for (auto& call : g_local) kill_owner_child(call.child);
    g_local.clear();
    g_calls.clear();
    g_unsent.clear();
    g_answered.clear();
}

namespace {
// Submits `op` and waits for its answer (the calls that wait, below).
int run_waiting(const OwnerOp& op) {
    bool finished = false;
    int out = -EIO;
    submit_owner_op(op, [&](int result) {
        finished = true;
        out = result;
    });
    while (!finished) {
        std::vector<pollfd> fds;
        std::size_t first = add_owner_op_pollfds(fds);
        if (::poll(fds.data(), fds.size(), owner_ops_timeout_ms()) < 0 && errno != EINTR) break;
        handle_owner_ops(fds, first);
    }
    return out;
}
}  // namespace

void route_owner_files_through(int channel) { g_channel = channel; }

void set_owner_op_timeout_ms(int timeout_ms) { g_timeout_ms = timeout_ms; }

int owner_op_timeout_ms() { return g_timeout_ms; }

bool acts_as_owner_itself(const Owner& owner) { return g_channel < 0 && !needs_switch(owner); }

int check_writable_folder(const std::string& dir) {
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0) return -errno;
    if (!S_ISDIR(st.st_mode)) return -ENOTDIR;
    return ::faccessat(AT_FDCWD, dir.c_str(), W_OK | X_OK, AT_EACCESS) == 0 ? 0 : -errno;
}

int open_as_owner(const Owner& owner, const std::string& path, int flags, mode_t mode) {
    OwnerOp op;
    op.kind = OwnerOpKind::Open;
    op.owner = owner;
    op.path = path;
    op.flags = flags;
    op.mode = mode;
    return run_waiting(op);
}

int open_partial_as_owner(const Owner& owner, const std::string& path, mode_t mode) {
    // Two rounds: a file that appears between the two opens of the first
    // is opened (or refused) in the second.
    for (int round = 0; round < 2; ++round) {
        int fd = open_as_owner(owner, path, O_RDWR, 0);
        if (fd != -ENOENT) return fd;
        fd = open_as_owner(owner, path, O_RDWR | O_CREAT | O_EXCL, mode);
        if (fd != -EEXIST) return fd;
    }
    return -EEXIST;
}

int rename_as_owner(const Owner& owner, const std::string& from, const std::string& to) {
    OwnerOp op;
    op.kind = OwnerOpKind::Rename;
    op.owner = owner;
    op.path = from;
    op.to = to;
    return run_waiting(op);
}

int unlink_as_owner(const Owner& owner, const std::string& path) {
    OwnerOp op;
    op.kind = OwnerOpKind::Unlink;
    op.owner = owner;
    op.path = path;
    return run_waiting(op);
}

gid_t primary_gid_of(uid_t uid, gid_t fallback) {
    passwd pw{};
    passwd* found = nullptr;
    std::vector<char> buf(16384);
    if (getpwuid_r(uid, &pw, buf.data(), buf.size(), &found) != 0 || !found) return fallback;
    return found->pw_gid;
}

}  // namespace dopt::agent
