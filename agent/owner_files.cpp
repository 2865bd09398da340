#include "agent/owner_files.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <functional>
#include <vector>

namespace dopt::agent {

namespace {

bool needs_switch(const Owner& owner) { return geteuid() == 0 && owner.uid != 0; }

// Supplementary groups of `uid`, computed in the parent: getgrouplist is not
// async-signal-safe and must not run in the forked child.
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

// In the child: become the owner. Only syscalls from here on.
bool drop_to_owner(const Owner& owner, const std::vector<gid_t>& groups) {
    if (setgroups(groups.size(), groups.data()) != 0) return false;
    if (setresgid(owner.gid, owner.gid, owner.gid) != 0) return false;
    if (setresuid(owner.uid, owner.uid, owner.uid) != 0) return false;
    return true;
}

bool send_result(int sock, int result, int fd) {
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
    return sendmsg(sock, &msg, MSG_NOSIGNAL) == static_cast<ssize_t>(sizeof result);
}

// Receives (result, optional fd). Returns the result; *fd gets the descriptor.
int recv_result(int sock, int* fd) {
    int result = -EIO;
    msghdr msg{};
    iovec iov{&result, sizeof result};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n;
    do {
        n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    if (n != static_cast<ssize_t>(sizeof result)) return -EIO;
    *fd = -1;
    for (cmsghdr* cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
        if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS)
            std::memcpy(fd, CMSG_DATA(cm), sizeof(int));
    }
    return result;
}

// Runs `op` as the owner in a forked child. `op` returns a descriptor
// (>= 0, handed back) or -errno (for open); or 0 / -errno (rename, unlink).
int run_as_owner(const Owner& owner, bool returns_fd, const std::function<int()>& op) {
    std::vector<gid_t> groups = groups_of(owner);
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
        close(sv[0]);
        int result = drop_to_owner(owner, groups) ? op() : -EPERM;
        send_result(sv[1], result, returns_fd && result >= 0 ? result : -1);
        _exit(0);
    }
    close(sv[1]);
    int fd = -1;
    int result = recv_result(sv[0], &fd);
    close(sv[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (returns_fd && result >= 0) {
        if (fd < 0) return -EIO;
        return fd;
    }
    return result;
}

int open_direct(const std::string& path, int flags, mode_t mode) {
    int fd = ::open(path.c_str(), flags | O_NOFOLLOW | O_CLOEXEC, mode);
    return fd >= 0 ? fd : -errno;
}

}  // namespace

int open_as_owner(const Owner& owner, const std::string& path, int flags, mode_t mode) {
    if (!needs_switch(owner)) return open_direct(path, flags, mode);
    return run_as_owner(owner, true, [&] { return open_direct(path, flags, mode); });
}

int rename_as_owner(const Owner& owner, const std::string& from, const std::string& to) {
    auto op = [&] { return ::rename(from.c_str(), to.c_str()) == 0 ? 0 : -errno; };
    if (!needs_switch(owner)) return op();
    return run_as_owner(owner, false, op);
}

int unlink_as_owner(const Owner& owner, const std::string& path) {
    auto op = [&] { return ::unlink(path.c_str()) == 0 ? 0 : -errno; };
    if (!needs_switch(owner)) return op();
    return run_as_owner(owner, false, op);
}

gid_t primary_gid_of(uid_t uid, gid_t fallback) {
    passwd pw{};
    passwd* found = nullptr;
    std::vector<char> buf(16384);
    if (getpwuid_r(uid, &pw, buf.data(), buf.size(), &found) != 0 || !found) return fallback;
    return found->pw_gid;
}

}  // namespace dopt::agent
