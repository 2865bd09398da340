#include "agent/privilege_separation.h"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <dirent.h>
#include <fcntl.h>
#include <fstream>
#include <grp.h>
#include <linux/capability.h>
#include <poll.h>
#include <pwd.h>
#include <sstream>
#include <stdexcept>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "agent/log.h"
#include "common/hex.h"

namespace dopt::agent {

namespace {

bool g_separated = false;

std::runtime_error sys_error(const std::string& what) {
    return std::runtime_error(what + ": " + std::strerror(errno));
}

std::string dir_of(const std::string& path) {
    auto slash = path.rfind('/');
    return slash == 0 ? "/" : path.substr(0, slash);
}

std::string base_of(const std::string& path) { return path.substr(path.rfind('/') + 1); }

// mkdir -p: parents 0755 (the account must traverse them), the last one
// `mode`.
void make_dirs(const std::string& path, mode_t mode) {
    std::size_t pos = 0;
    while (pos != std::string::npos) {
        pos = path.find('/', pos + 1);
        std::string cur = path.substr(0, pos);
        if (cur.empty()) continue;
        bool last = pos == std::string::npos || pos + 1 == path.size();
        if (::mkdir(cur.c_str(), last ? mode : 0755) != 0 && errno != EEXIST)
            throw sys_error("cannot create " + cur);
        if (last) break;
    }
}

// Refuses a folder that exists, is not the account's yet and holds files
// none of which is in `marker_files`: that is not a folder of the agent's (a
// config naming /var/lib or /run must not make us hand it away). A missing
// folder is fine: it will be created.
void check_folder(const std::string& path, const ServiceAccount& account,
                  const std::vector<std::string>& marker_files) {
    struct stat st{};
    if (::stat(path.c_str(), &st) != 0) {
        if (errno == ENOENT) return;
        throw sys_error("cannot stat " + path);
    }
    if (st.st_uid == account.uid) return;
    DIR* d = ::opendir(path.c_str());
    if (d == nullptr) throw sys_error("cannot list " + path);
    bool empty = true, ours = false;
    while (dirent* e = ::readdir(d)) {
        std::string name = e->d_name;
        if (name == "." || name == "..") continue;
        empty = false;
        for (const auto& m : marker_files) ours = ours || name == m;
    }
    ::closedir(d);
    if (!empty && !ours)
        throw std::runtime_error("will not hand " + path + " to user '" + account.name +
                                 "': it holds other files and none of the agent's; "
                                 "give the agent a folder of its own");
}

// Hands the folder `path` (checked by check_folder) to the account: creates
// it (`mode`) when missing, chowns it, and chowns those of `own_files` in it
// that are plain files of root's or the account's. Entries are opened with
// O_NOFOLLOW and chowned by descriptor, so a link planted there never
// redirects a chown.
void hand_over_folder(const std::string& path, mode_t mode, bool force_mode,
                      const ServiceAccount& account, const std::vector<std::string>& own_files) {
    make_dirs(path, mode);
    int dfd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) throw sys_error("cannot open the folder " + path);
    if (::fchown(dfd, account.uid, account.gid) != 0 ||
        (force_mode && ::fchmod(dfd, mode) != 0)) {
        int e = errno;
        ::close(dfd);
        errno = e;
        throw sys_error("cannot hand " + path + " to user '" + account.name + "'");
    }
    for (const auto& name : own_files) {
        int fd = ::openat(dfd, name.c_str(),
                          O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
        if (fd < 0) {
            if (errno != ENOENT)
                LOG_WARN("not handing %s/%s to user '%s': %s", path.c_str(), name.c_str(),
                         account.name.c_str(), std::strerror(errno));
            continue;
        }
        struct stat fst{};
        bool plain = ::fstat(fd, &fst) == 0 && S_ISREG(fst.st_mode) && fst.st_nlink == 1 &&
                     (fst.st_uid == 0 || fst.st_uid == account.uid);
        if (!plain)
            LOG_WARN("not handing %s/%s to user '%s': not a plain file of root's or the "
                     "account's", path.c_str(), name.c_str(), account.name.c_str());
        else if (::fchown(fd, account.uid, account.gid) != 0)
            LOG_WARN("cannot hand %s/%s to user '%s': %s", path.c_str(), name.c_str(),
                     account.name.c_str(), std::strerror(errno));
        ::close(fd);
    }
    ::close(dfd);
}

// ---- the owner-rights process ---------------------------------------------

// Closes every descriptor but `sock` and 0..2 (stdin becomes /dev/null).
// Returns the socket's descriptor (moved above 2 if it was not).
int keep_only(int sock) {
    if (sock <= STDERR_FILENO) {
        int moved = ::fcntl(sock, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
        if (moved < 0) _exit(1);
        ::close(sock);
        sock = moved;
    }
    if (sock > STDERR_FILENO + 1) ::close_range(STDERR_FILENO + 1, static_cast<unsigned>(sock) - 1, 0);
    ::close_range(static_cast<unsigned>(sock) + 1, ~0U, 0);
    int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null >= 0 && null != STDIN_FILENO) {
        ::dup2(null, STDIN_FILENO);
        ::close(null);
    }
    return sock;
}

const char* op_name(OwnerOpKind k) {
    switch (k) {
    case OwnerOpKind::Open: return "open";
    case OwnerOpKind::Rename: return "rename";
    case OwnerOpKind::Unlink: return "unlink";
    }
    return "?";
}

// One request the owner-rights process runs: its id, what it does, its child.
struct RunningOp {
    std::uint32_t id = 0;
    OwnerOp op;
    OwnerChild child;
};

std::int64_t monotonic_ms() {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

constexpr int kAgentGone = 1;

// Reads one request into `r` (id and op, checked against `policy`). Returns
// 0 when it may run, kAgentGone when the agent closed its end (or died), or
// the -errno to answer (-EINVAL: malformed; -EPERM: against the policy).
int receive_request(int sock, RunningOp& r, const OwnerPolicy& policy) {
    constexpr std::size_t max_len = sizeof(OwnerRightsRequest) + 2 * PATH_MAX;
    std::vector<char> buf(max_len + 1);
    int msg_flags = 0;
    std::vector<int> fds;
    ssize_t n = recv_with_descriptors(sock, buf.data(), buf.size(), MSG_CMSG_CLOEXEC, &msg_flags, fds);
    if (n <= 0) return kAgentGone;
    for (int got : fds) ::close(got);
    std::string why;
    if (!fds.empty() || (msg_flags & (MSG_TRUNC | MSG_CTRUNC)))
        why = "it is too long or carries descriptors";
    else
        why = decode_owner_request(buf.data(), static_cast<std::size_t>(n), r.op, &r.id);
    if (!why.empty()) {
        LOG_WARN("owner-rights: refused a malformed request: %s", why.c_str());
        return -EINVAL;
    }
    OwnerOp& op = r.op;
    why = check_owner_policy(op, policy);
    if (!why.empty()) {
        LOG_WARN("owner-rights: refused to %s %s as %u:%u: %s", op_name(op.kind),
                 op.path.c_str(), static_cast<unsigned>(op.owner.uid),
                 static_cast<unsigned>(op.owner.gid), why.c_str());
        return -EPERM;
    }
    return 0;
}

// Sends the result of the request `id` back to the agent (with the
// descriptor of an open, which is then closed here), logging what is worth it.
void answer(int sock, std::uint32_t id, const OwnerOp& op, int result) {
    if (result == -EPERM && op.confine_to != nullptr)
        LOG_WARN("owner-rights: refused to %s %s as %u: uid 0 and system accounts get "
                 "files only under system_job_dirs", op_name(op.kind), op.path.c_str(),
                 static_cast<unsigned>(op.owner.uid));
    if (result == -ETIMEDOUT)
        LOG_WARN("owner-rights: %s %s as %u took more than %d ms; killed", op_name(op.kind),
                 op.path.c_str(), static_cast<unsigned>(op.owner.uid), owner_op_timeout_ms());
    LOG_DEBUG("owner-rights: %s %s%s%s as %u:%u: %s", op_name(op.kind), op.path.c_str(),
              op.to.empty() ? "" : " -> ", op.to.c_str(), static_cast<unsigned>(op.owner.uid),
              static_cast<unsigned>(op.owner.gid), result >= 0 ? "ok" : std::strerror(-result));
    if (op.kind == OwnerOpKind::Open && result >= 0) {
        send_owner_result(sock, id, 0, result);
        ::close(result);
    } else {
        send_owner_result(sock, id, result, -1);
    }
}

[[noreturn]] void serve_owner_rights(int sock, pid_t agent, const OwnerPolicy& policy) {
    // Gone with the agent: the socketpair's EOF below (its children killed
    // first), seen as soon as it comes, whatever runs. The death signal
    // covers only an agent that dies before it drops root: the kernel checks
    // it like a kill(2) from the dying agent, which as the account may not
    // signal root (seen: a doptd-owner left behind, its agent gone).
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != agent) _exit(0);
    ::prctl(PR_SET_NAME, "doptd-owner", 0, 0, 0);
    ::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    sock = keep_only(sock);

    ucred peer{};
    socklen_t plen = sizeof peer;
    if (::getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &peer, &plen) != 0 || peer.pid != agent) {
        LOG_ERROR("owner-rights: the socket's peer is pid %d, not the agent (%d); exiting",
                  static_cast<int>(peer.pid), static_cast<int>(agent));
        _exit(1);
    }

    std::vector<RunningOp> running;
    for (;;) {
        std::vector<pollfd> fds{{sock, POLLIN, 0}};
        std::int64_t deadline = -1;
        for (const auto& r : running) {
            fds.push_back({r.child.sock, POLLIN, 0});
            if (deadline < 0 || r.child.deadline_ms < deadline) deadline = r.child.deadline_ms;
        }
        int timeout = deadline < 0 ? -1 : static_cast<int>(std::max<std::int64_t>(deadline - monotonic_ms(), 0));
        if (reap_owner_children() > 0 && (timeout < 0 || timeout > 100)) timeout = 100;
        if (::poll(fds.data(), fds.size(), timeout) < 0 && errno != EINTR) _exit(1);
        // Answers first, then deadlines, then one new request.
        std::vector<int> ready;
        for (std::size_t i = 1; i < fds.size(); ++i)
            if (fds[i].revents != 0) ready.push_back(fds[i].fd);
        const std::int64_t now = monotonic_ms();
        for (auto it = running.begin(); it != running.end();) {
            bool answered = std::find(ready.begin(), ready.end(), it->child.sock) != ready.end();
            if (!answered && now < it->child.deadline_ms) {
                ++it;
                continue;
            }
            int result = answered ? finish_owner_child(it->child) : kill_owner_child(it->child);
            answer(sock, it->id, it->op, result);
            it = running.erase(it);
        }
        if ((fds[0].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
        RunningOp r;
        int refused = receive_request(sock, r, policy);
        if (refused == kAgentGone) {
            for (auto& gone : running) kill_owner_child(gone.child);
            _exit(0);
        }
        if (refused != 0) {
            send_owner_result(sock, r.id, refused, -1);
            continue;
        }
        // Groups are looked up here, before the fork: NSS is not for a child.
        int rc = start_owner_child(r.op, groups_of(r.op.owner), owner_op_timeout_ms(), r.child);
        if (rc != 0) answer(sock, r.id, r.op, rc);
        else running.push_back(std::move(r));
    }
}

// ---- dropping root -----------------------------------------------------------

bool has_any_capability() {
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3]{};
    if (::syscall(SYS_capget, &header, data) != 0) return true;  // cannot tell: assume so
    for (const auto& d : data)
        if (d.effective != 0 || d.permitted != 0) return true;
    return false;
}

void drop_to(const ServiceAccount& a) {
    if (::setgroups(a.groups.size(), a.groups.data()) != 0) throw sys_error("setgroups");
    if (::setresgid(a.gid, a.gid, a.gid) != 0) throw sys_error("setresgid");
    if (::setresuid(a.uid, a.uid, a.uid) != 0) throw sys_error("setresuid");
    uid_t ru = 0, eu = 0, su = 0;
    gid_t rg = 0, eg = 0, sg = 0;
    if (::getresuid(&ru, &eu, &su) != 0 || ru != a.uid || eu != a.uid || su != a.uid ||
        ::getresgid(&rg, &eg, &sg) != 0 || rg != a.gid || eg != a.gid || sg != a.gid)
        throw std::runtime_error("the switch to user '" + a.name + "' did not take");
    // The point of it all: root must be gone for good.
    if (::setuid(0) == 0 || ::seteuid(0) == 0 || has_any_capability())
        throw std::runtime_error("after switching to user '" + a.name +
                                 "' this process could still get root back; refusing to run");
    // Not dumpable: the agent holds descriptors of other users' files, and
    // another process of the same account must not ptrace it or read them
    // through /proc/PID/fd. It never executes anything, so no_new_privs
    // costs nothing and stops a set-uid binary from being of use.
    if (::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) throw sys_error("PR_SET_DUMPABLE");
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) throw sys_error("PR_SET_NO_NEW_PRIVS");
    if (::chdir("/") != 0) throw sys_error("chdir /");
}

bool path_ok(const std::string& p) {
    return !p.empty() && p.size() < PATH_MAX && p[0] == '/' && p.find('\0') == std::string::npos;
}

// The owner-rights process's rules, read as root from root's config.
OwnerPolicy owner_policy_of(const Config& config) {
    OwnerPolicy p;
    p.first_regular_uid = read_first_regular_uid("/etc/login.defs");
    for (const auto& d : config.system_job_dirs) {
        char* real = ::realpath(d.c_str(), nullptr);
        if (real == nullptr) {
            LOG_WARN("system_job_dirs: %s: %s; ignored until a restart finds it", d.c_str(),
                     std::strerror(errno));
            continue;
        }
        p.system_job_dirs.emplace_back(real);
        std::free(real);
    }
    return p;
}

constexpr char kPartialSuffix[] = ".dopt-partial";

// 8 hex digits of the FNV-1a hash of `name`: what keeps two long names
// cut to the same prefix apart.
std::string name_digest(const std::string& name) {
    std::uint32_t h = 2166136261u;
    for (unsigned char c : name) h = (h ^ c) * 16777619u;
    char hex[9];
    std::snprintf(hex, sizeof hex, "%08x", h);
    return hex;
}

// NAME of a partial file name ".NAME.<8 hex digits>.dopt-partial", or "".
std::string partial_target_name(const std::string& base) {
    static const std::string suffix = kPartialSuffix;
    constexpr std::size_t id_len = 8;
    const std::size_t fixed = 1 + 1 + id_len + suffix.size();  // ".", ".", id, suffix
    if (base.size() <= fixed || base[0] != '.' ||
        base.compare(base.size() - suffix.size(), suffix.size(), suffix) != 0)
        return "";
    const std::size_t id_at = base.size() - suffix.size() - id_len;
    if (base[id_at - 1] != '.') return "";
    if (!is_hex(std::string_view(base).substr(id_at, id_len), id_len)) return "";
    std::string name = base.substr(1, id_at - 2);
    return name == "." || name == ".." ? "" : name;
}

// Whether `gid` may go with `uid` (check_owner_policy).
bool gid_of_user(uid_t uid, gid_t gid, uid_t first_regular_uid) {
    passwd pw{};
    passwd* found = nullptr;
    std::vector<char> buf(16384);
    if (::getpwuid_r(uid, &pw, buf.data(), buf.size(), &found) != 0 || found == nullptr)
        return gid >= first_regular_uid;
    const std::vector<gid_t> groups = groups_of(Owner{uid, pw.pw_gid});
    return std::find(groups.begin(), groups.end(), gid) != groups.end();
}

}  // namespace

std::string partial_file_name(const std::string& name, const std::string& job8) {
    std::string full = "." + name + "." + job8 + kPartialSuffix;
    if (full.size() <= NAME_MAX) return full;
    // Cut NAME, at a UTF-8 character's start, to make room for "~" and its digest.
    std::size_t keep = NAME_MAX - (full.size() - name.size()) - 9;
    while (keep > 0 && (static_cast<unsigned char>(name[keep]) & 0xC0) == 0x80) --keep;
    return "." + name.substr(0, keep) + "~" + name_digest(name) + "." + job8 + kPartialSuffix;
}

ServiceAccount lookup_account(const std::string& name) {
    passwd pw{};
    passwd* found = nullptr;
    std::vector<char> buf(16384);
    int rc;
    while ((rc = ::getpwnam_r(name.c_str(), &pw, buf.data(), buf.size(), &found)) == ERANGE &&
           buf.size() < (1u << 20))
        buf.resize(buf.size() * 2);
    if (rc != 0 && rc != ENOENT && rc != ESRCH)
        throw std::runtime_error("cannot look up user '" + name + "': " + std::strerror(rc));
    if (found == nullptr) throw std::runtime_error("user '" + name + "' does not exist");
    if (pw.pw_uid == 0)
        throw std::runtime_error("user '" + name + "' is uid 0; `user` must name an "
                                 "unprivileged account (or be \"\" to run as root)");
    ServiceAccount a;
    a.name = name;
    a.uid = pw.pw_uid;
    a.gid = pw.pw_gid;
    a.groups = groups_of(Owner{a.uid, a.gid});
    return a;
}

void separate_privileges(const Config& config, const ServiceAccount& account) {
    if (::geteuid() != 0) throw std::runtime_error("privilege separation needs root");
    const std::vector<std::string> state_files = {"doptd.lock", "jobs.db", "jobs.db-wal",
                                                  "jobs.db-shm", "jobs.db-journal"};
    const std::vector<std::string> markers = {"doptd.lock", "jobs.db", base_of(config.socket)};
    const std::string socket_dir = dir_of(config.socket);
    for (const auto& folder : {config.state_dir, config.cache_dir, socket_dir})
        check_folder(folder, account, markers);  // all of them before any change
    hand_over_folder(config.state_dir, 0700, false, account, state_files);
    hand_over_folder(config.cache_dir, 0700, false, account, {});
    // The agent binds (and replaces a stale) socket there as `account`;
    // every user must reach it.
    hand_over_folder(socket_dir, 0755, true, account, {});

    const OwnerPolicy policy = owner_policy_of(config);
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
        throw sys_error("socketpair");
    pid_t agent = ::getpid();
    pid_t pid = ::fork();
    if (pid < 0) throw sys_error("fork");
    if (pid == 0) {
        ::close(sv[0]);
        serve_owner_rights(sv[1], agent, policy);
    }
    ::close(sv[1]);
    route_owner_files_through(sv[0]);
    drop_to(account);
    g_separated = true;
    LOG_INFO("privilege-separated: running as user '%s' (uid %u, gid %u); the owner-rights "
             "process (pid %d) keeps root to open, rename and unlink as jobs' owners",
             account.name.c_str(), static_cast<unsigned>(account.uid),
             static_cast<unsigned>(account.gid), static_cast<int>(pid));
}

bool privilege_separated() { return g_separated; }

std::string decode_owner_request(const char* data, std::size_t len, OwnerOp& op, std::uint32_t* id) {
    OwnerRightsRequest h{};
    if (len < sizeof h) return "shorter than its header";
    std::memcpy(&h, data, sizeof h);
    if (id != nullptr) *id = h.id;  // the refusal of a malformed request carries it too
    if (h.version != kOwnerRightsVersion) return "unknown version " + std::to_string(h.version);
    if (h.path_len == 0 || h.path_len >= PATH_MAX || h.to_len >= PATH_MAX)
        return "a path length is out of range";
    if (len != sizeof h + h.path_len + h.to_len) return "its length does not match its header";
    if (h.uid == static_cast<std::uint32_t>(-1) || h.gid == static_cast<std::uint32_t>(-1))
        return "uid or gid is -1";
    op = OwnerOp{};
    op.owner = Owner{static_cast<uid_t>(h.uid), static_cast<gid_t>(h.gid)};
    op.path.assign(data + sizeof h, h.path_len);
    op.to.assign(data + sizeof h + h.path_len, h.to_len);
    if (!path_ok(op.path)) return "the path is not absolute or holds a NUL";
    switch (h.op) {
    case static_cast<std::uint32_t>(OwnerOpKind::Open):
        op.kind = OwnerOpKind::Open;
        if ((h.flags & ~kOwnerOpenFlags) != 0 || (h.flags & O_ACCMODE) == O_ACCMODE)
            return "open flags outside O_RDWR|O_WRONLY|O_CREAT|O_EXCL|O_TRUNC";
        if ((h.mode & ~0777u) != 0) return "a mode beyond 0777";
        op.flags = h.flags;
        op.mode = static_cast<mode_t>(h.mode);
        if (h.to_len != 0) return "open with a second path";
        break;
    case static_cast<std::uint32_t>(OwnerOpKind::Rename):
        op.kind = OwnerOpKind::Rename;
        if (!path_ok(op.to)) return "the rename target is not absolute or holds a NUL";
        if (h.flags != 0 || h.mode != 0) return "rename with flags or a mode";
        break;
    case static_cast<std::uint32_t>(OwnerOpKind::Unlink):
        op.kind = OwnerOpKind::Unlink;
        if (h.to_len != 0 || h.flags != 0 || h.mode != 0) return "unlink with extra fields";
        break;
    default:
        return "unknown operation " + std::to_string(h.op);
    }
    return "";
}

uid_t read_first_regular_uid(const std::string& path) {
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream words(line);
        std::string key;
        long value = 0;
        if (words >> key >> value && key == "UID_MIN" && value > 0 && value < 65534)
            return static_cast<uid_t>(value);
    }
    return 1000;
}

std::string check_owner_policy(OwnerOp& op, const OwnerPolicy& policy) {
    const std::string base = base_of(op.path);
    const std::string name = partial_target_name(base);
    if (name.empty()) return "not a partial file name (.NAME.<id>.dopt-partial)";
    switch (op.kind) {
    case OwnerOpKind::Open:
        if (op.flags != O_RDWR && op.flags != (O_RDWR | O_CREAT | O_EXCL))
            return "open flags other than O_RDWR, or O_RDWR|O_CREAT|O_EXCL";
        if ((op.mode & ~0666u) != 0) return "a mode beyond 0666";
        break;
    case OwnerOpKind::Rename: {
        const std::string to = base_of(op.to);
        const std::string job8 = base.substr(base.size() - std::strlen(kPartialSuffix) - 8, 8);
        if (op.to.empty() || op.to[0] != '/' || dir_of(op.to) != dir_of(op.path) || to == "." ||
            to == ".." || partial_file_name(to, job8) != base)
            return "a rename to another name than the partial file's in the same folder";
        break;
    }
    case OwnerOpKind::Unlink: break;
    }
    if (!gid_of_user(op.owner.uid, op.owner.gid, policy.first_regular_uid))
        return "gid " + std::to_string(op.owner.gid) + " is not one of uid " +
               std::to_string(op.owner.uid) + "'s groups";
    op.confine_to = nullptr;
    if (op.owner.uid == 0 || op.owner.uid < policy.first_regular_uid) {
        if (policy.system_job_dirs.empty())
            return "uid 0 and system accounts get files only under system_job_dirs, "
                   "and it is empty";
        op.confine_to = &policy.system_job_dirs;
    }
    return "";
}

std::string encode_owner_request(const OwnerOp& op, std::uint32_t id) {
    if (op.path.size() >= PATH_MAX || op.to.size() >= PATH_MAX) return "";
    OwnerRightsRequest h{};
    h.version = kOwnerRightsVersion;
    h.op = static_cast<std::uint32_t>(op.kind);
    h.uid = static_cast<std::uint32_t>(op.owner.uid);
    h.gid = static_cast<std::uint32_t>(op.owner.gid);
    h.flags = op.flags;
    h.mode = static_cast<std::uint32_t>(op.mode);
    h.path_len = static_cast<std::uint32_t>(op.path.size());
    h.to_len = static_cast<std::uint32_t>(op.to.size());
    h.id = id;
    std::string msg(reinterpret_cast<const char*>(&h), sizeof h);
    msg += op.path;
    msg += op.to;
    return msg;
}

}  // namespace dopt::agent
