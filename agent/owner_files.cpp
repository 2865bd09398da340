#include "agent/owner_files.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <grp.h>
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

bool needs_switch(const Owner& owner) { return geteuid() == 0 && owner.uid != 0; }

// In the child: become the owner. Only syscalls from here on.
bool drop_to_owner(const Owner& owner, const std::vector<gid_t>& groups) {
    if (owner.uid == static_cast<uid_t>(-1) || owner.gid == static_cast<gid_t>(-1)) return false;
    if (setgroups(groups.size(), groups.data()) != 0) return false;
    if (setresgid(owner.gid, owner.gid, owner.gid) != 0) return false;
    if (setresuid(owner.uid, owner.uid, owner.uid) != 0) return false;
    return true;
}

// Opens a regular file, never through a symlink in the last component.
// O_NONBLOCK during the open keeps a FIFO planted there from blocking us.
int open_regular(const std::string& path, int flags, mode_t mode) {
    int fd = ::open(path.c_str(), flags | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY, mode);
    if (fd < 0) return -errno;
    struct stat st{};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        ::close(fd);
        return -EINVAL;
    }
    int fl = ::fcntl(fd, F_GETFL);
    if (fl < 0 || ::fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0) {
        int e = errno;
        ::close(fd);
        return -e;
    }
    return fd;
}

// The operation itself, with whatever rights this process has.
int perform(const OwnerOp& op) {
    switch (op.kind) {
    case OwnerOpKind::Open: return open_regular(op.path, op.flags, op.mode);
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
    return run_forked_as_owner(op, groups_of(op.owner));
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

int run_forked_as_owner(const OwnerOp& op, const std::vector<gid_t>& groups) {
    bool returns_fd = op.kind == OwnerOpKind::Open;
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
        int result = drop_to_owner(op.owner, groups) ? perform(op) : -EPERM;
        send_owner_result(sv[1], result, returns_fd && result >= 0 ? result : -1);
        _exit(0);
    }
    close(sv[1]);
    int fd = -1;
    int result = recv_owner_result(sv[0], &fd);
    close(sv[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (returns_fd && result >= 0) return fd >= 0 ? fd : -EIO;
    if (fd >= 0) ::close(fd);
    return result;
}

void route_owner_files_through(int channel) { g_channel = channel; }

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
