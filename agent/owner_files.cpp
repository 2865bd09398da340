#include "agent/owner_files.h"

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

#include <vector>

#include "agent/privilege_separation.h"

namespace dopt::agent {

namespace {

// The owner-rights process, once main.cpp has started one; -1 otherwise.
int g_channel = -1;

int g_timeout_ms = 10 * 1000;

// Children killed at their deadline that had not exited yet: reaped later.
std::vector<pid_t> g_unreaped;

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

// Without an owner-rights process: directly, or in a forked child when this
// (root) process acts for another user.
int run_here(const OwnerOp& op) {
    if (g_channel >= 0) return owner_rights_call(g_channel, op);
    if (!needs_switch(op.owner)) return perform(op);
    return run_forked_as_owner(op, groups_of(op.owner), g_timeout_ms);
}

// Waits up to `timeout_ms` for `sock` to have something to read (or hang up).
bool readable_within(int sock, int timeout_ms) {
    pollfd p{sock, POLLIN, 0};
    int n;
    do {
        n = ::poll(&p, 1, timeout_ms);  // EINTR restarts the whole wait: signals are rare here
    } while (n < 0 && errno == EINTR);
    return n > 0;
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

void reap_killed_children() {
    for (auto it = g_unreaped.begin(); it != g_unreaped.end();) {
        int status = 0;
        pid_t r = ::waitpid(*it, &status, WNOHANG);
        it = r == 0 ? std::next(it) : g_unreaped.erase(it);
    }
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

bool send_owner_result(int sock, int result, int fd) {
    msghdr msg{};
    iovec iov{&result, sizeof result};
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
    return n == static_cast<ssize_t>(sizeof result);
}

int recv_owner_result(int sock, int* fd) {
    *fd = -1;
    int result = -EIO;
    msghdr msg{};
    iovec iov{&result, sizeof result};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(4 * sizeof(int))];
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n;
    do {
        n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    bool broken = n != static_cast<ssize_t>(sizeof result) || (msg.msg_flags & MSG_TRUNC);
    if (n > 0) {
        for (cmsghdr* cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
            if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) continue;
            std::size_t count = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (std::size_t i = 0; i < count; ++i) {
                int got = -1;
                std::memcpy(&got, CMSG_DATA(cm) + i * sizeof(int), sizeof got);
                if (*fd < 0 && !broken) *fd = got;
                else ::close(got);
            }
        }
    }
    if (broken) return -EIO;
    return result;
}

int run_forked_as_owner(const OwnerOp& op, const std::vector<gid_t>& groups, int timeout_ms) {
    reap_killed_children();
    bool returns_fd = op.kind == OwnerOpKind::Open;
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
        bool dropped = drop_to_owner(op.owner, groups);
        if (stop_child) ::raise(SIGSTOP);  // a test build's stand-in for the owner's kill -STOP
        int result = dropped ? perform(op) : -EPERM;
        send_owner_result(sv[1], result, returns_fd && result >= 0 ? result : -1);
        _exit(0);
    }
    close(sv[1]);
    int fd = -1;
    int result = -ETIMEDOUT;
    if (readable_within(sv[0], timeout_ms)) result = recv_owner_result(sv[0], &fd);
    close(sv[0]);
    // The child runs as the owner, who may stop it (SIGSTOP) at any time,
    // even after it answered: it is killed, never waited for while stopped.
    ::kill(pid, SIGKILL);
    int status = 0;
    if (result == -ETIMEDOUT) {
        // Stopped, it dies at once; hung in a call (a mount that never
        // answers), it may take long: it is reaped later then.
        bool reaped = false;
        for (int i = 0; i < 100 && !reaped; ++i) {
            reaped = ::waitpid(pid, &status, WNOHANG) != 0;
            if (!reaped) ::usleep(10 * 1000);
        }
        if (!reaped) g_unreaped.push_back(pid);
    } else {
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
    }
    if (returns_fd && result >= 0) return fd >= 0 ? fd : -EIO;
    if (fd >= 0) ::close(fd);
    return result;
}

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
    return run_here(op);
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
    return run_here(op);
}

int unlink_as_owner(const Owner& owner, const std::string& path) {
    OwnerOp op;
    op.kind = OwnerOpKind::Unlink;
    op.owner = owner;
    op.path = path;
    return run_here(op);
}

gid_t primary_gid_of(uid_t uid, gid_t fallback) {
    passwd pw{};
    passwd* found = nullptr;
    std::vector<char> buf(16384);
    if (getpwuid_r(uid, &pw, buf.data(), buf.size(), &found) != 0 || !found) return fallback;
    return found->pw_gid;
}

}  // namespace dopt::agent
