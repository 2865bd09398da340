// Tests for the owner-rights request format (privilege_separation.cpp) and
// the checks every owner file operation makes (owner_files.cpp). The process
// split itself is tested with real processes in
// tests/integration/test_system_agent.py.
#include "agent/privilege_separation.h"
#include "tests/support/fd_io.h"

#include <catch2/catch.hpp>

#include <climits>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <pwd.h>
#include <sstream>
#include <string>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

using dopt::agent::decode_owner_request;
using dopt::agent::kOwnerRightsVersion;
using dopt::agent::check_owner_policy;
using dopt::agent::partial_file_name;
using dopt::agent::Config;
using dopt::agent::open_as_owner;
using dopt::agent::open_partial_as_owner;
using dopt::agent::OwnerPolicy;
using dopt::agent::rename_as_owner;
using dopt::agent::unlink_as_owner;
using dopt::agent::Owner;
using dopt::agent::OwnerOp;
using dopt::agent::OwnerOpKind;
using dopt::agent::OwnerRightsRequest;

namespace {

std::string request(std::uint32_t op, std::uint32_t uid, std::int32_t flags, std::uint32_t mode,
                    const std::string& path, const std::string& to = "",
                    std::uint32_t version = kOwnerRightsVersion) {
    const OwnerRightsRequest h{version, op, uid, /*gid=*/uid, flags, mode,
                               static_cast<std::uint32_t>(path.size()),
                               static_cast<std::uint32_t>(to.size()), /*id=*/0};
    return std::string(reinterpret_cast<const char*>(&h), sizeof h) + path + to;
}

std::string decode(const std::string& msg, OwnerOp& op) {
    return decode_owner_request(msg.data(), msg.size(), op);
}

std::string decode(const std::string& msg) {
    OwnerOp op;
    return decode(msg, op);
}

constexpr std::uint32_t kOpen = 1, kRename = 2, kUnlink = 3;

}  // namespace

TEST_CASE("well-formed owner-rights requests decode to their operation", "[privsep]") {
    OwnerOp op;
    REQUIRE(decode(request(kOpen, 1000, O_RDWR | O_CREAT | O_EXCL, 0644, "/home/a/.x.dopt-partial"),
                   op) == "");
    CHECK(op.kind == OwnerOpKind::Open);
    CHECK(op.owner.uid == 1000);
    CHECK(op.owner.gid == 1000);
    CHECK(op.flags == (O_RDWR | O_CREAT | O_EXCL));
    CHECK(op.mode == 0644);
    CHECK(op.path == "/home/a/.x.dopt-partial");

    REQUIRE(decode(request(kRename, 0, 0, 0, "/srv/.a.part", "/srv/a"), op) == "");
    CHECK(op.kind == OwnerOpKind::Rename);
    CHECK(op.owner.uid == 0);
    CHECK(op.to == "/srv/a");

    REQUIRE(decode(request(kUnlink, 5, 0, 0, "/tmp/x"), op) == "");
    CHECK(op.kind == OwnerOpKind::Unlink);
    CHECK(decode(request(kOpen, 5, O_RDONLY, 0, "/tmp/x")) == "");
}

TEST_CASE("malformed owner-rights requests are refused", "[privsep]") {
    const std::string good = request(kOpen, 1000, O_RDWR, 0600, "/tmp/x");
    CHECK(decode(good) == "");
    CHECK(decode(good.substr(0, sizeof(OwnerRightsRequest) - 1)) != "");  // short header
    CHECK(decode(good.substr(0, good.size() - 1)) != "");                 // short path
    CHECK(decode(good + "y") != "");                                      // trailing bytes
    CHECK(decode(request(kOpen, 1000, O_RDWR, 0600, "/tmp/x", "", kOwnerRightsVersion + 1)) != "");  // version
    CHECK(decode(request(0, 1000, 0, 0, "/tmp/x")) != "");
    CHECK(decode(request(4, 1000, 0, 0, "/tmp/x")) != "");
    // paths
    CHECK(decode(request(kOpen, 1000, O_RDWR, 0600, "")) != "");
    CHECK(decode(request(kOpen, 1000, O_RDWR, 0600, "tmp/x")) != "");
    CHECK(decode(request(kOpen, 1000, O_RDWR, 0600, std::string("/tmp/x\0/etc/shadow", 18))) != "");
    CHECK(decode(request(kOpen, 1000, O_RDWR, 0600, "/" + std::string(PATH_MAX, 'a'))) != "");
    CHECK(decode(request(kRename, 1000, 0, 0, "/tmp/x", "y")) != "");
    CHECK(decode(request(kRename, 1000, 0, 0, "/tmp/x")) != "");
    CHECK(decode(request(kUnlink, 1000, 0, 0, "/tmp/x", "/tmp/y")) != "");
    // flags and mode: nothing beyond the allowed set, no set-uid files
    for (int bad : {O_APPEND, O_DIRECTORY, O_PATH, O_NOATIME, O_TMPFILE, O_SYNC, O_WRONLY | O_RDWR,
                    static_cast<int>(0x80000000u)}) {
        INFO("flags " << bad);
        CHECK(decode(request(kOpen, 1000, bad, 0600, "/tmp/x")) != "");
    }
    CHECK(decode(request(kOpen, 1000, O_RDWR | O_CREAT, 04755, "/tmp/x")) != "");
    CHECK(decode(request(kOpen, 1000, O_RDWR | O_CREAT, 01777, "/tmp/x")) != "");
    CHECK(decode(request(kRename, 1000, O_RDWR, 0, "/tmp/x", "/tmp/y")) != "");
    CHECK(decode(request(kUnlink, 1000, 0, 0600, "/tmp/x")) != "");
    // uid -1 would mean "keep root" to setresuid
    CHECK(decode(request(kOpen, 0xffffffffu, O_RDWR, 0600, "/tmp/x")) != "");
}

TEST_CASE("an owner open never follows a symlink and returns only regular files", "[privsep]") {
    char tmpl[] = "/tmp/dopt-privsep-test.XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    const std::string dir = tmpl;
    Owner me{::geteuid(), ::getegid()};  // a direct open in every kind of agent

    const std::string target = dir + "/target";
    int fd = open_as_owner(me, target, O_RDWR | O_CREAT | O_EXCL, 0600);
    REQUIRE(fd >= 0);
    ::close(fd);

    const std::string link = dir + "/link";
    REQUIRE(::symlink(target.c_str(), link.c_str()) == 0);
    CHECK(open_as_owner(me, link, O_RDWR | O_CREAT, 0600) == -ELOOP);

    // A FIFO must neither block the caller (no reader) nor be returned.
    const std::string fifo = dir + "/fifo";
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    CHECK(open_as_owner(me, fifo, O_RDWR | O_CREAT, 0600) == -EINVAL);
    CHECK(open_as_owner(me, fifo, O_WRONLY, 0600) < 0);

    CHECK(open_as_owner(me, dir, O_RDONLY, 0) == -EINVAL);  // a folder

    // The descriptor handed back is blocking, as the partial file expects.
    fd = open_as_owner(me, target, O_RDWR, 0);
    REQUIRE(fd >= 0);
    CHECK((::fcntl(fd, F_GETFL) & O_NONBLOCK) == 0);
    CHECK((::fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
    ::close(fd);

    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
}

TEST_CASE("the child that acts as the owner holds none of the agent's descriptors", "[privsep]") {
    if (::geteuid() != 0) {
        WARN("skipped: only root switches to the owner in a child (run as root to test it)");
        return;
    }
    // doptd.lock, sockets, jobs.db: a child that kept them would hold the
    // agent's lock after a kill -9 of the agent. In the child,
    // /proc/self/fd/N is a magic link when N is open there (O_NOFOLLOW
    // refuses it: ELOOP) and missing when it is closed (ENOENT).
    int held = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    REQUIRE(held > STDERR_FILENO);
    const Owner nobody{65534, 65534};
    CHECK(open_as_owner(nobody, "/proc/self/fd/" + std::to_string(held), O_RDONLY, 0) == -ENOENT);
    // stdio stays: the same check sees descriptor 2.
    CHECK(open_as_owner(nobody, "/proc/self/fd/2", O_RDONLY, 0) == -ELOOP);
    ::close(held);
}

namespace {

std::string make_temp_dir() {
    char tmpl[] = "/tmp/dopt-privsep-test.XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    return tmpl;
}

void write_file(const std::string& path, const std::string& content) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    REQUIRE(fd >= 0);
    REQUIRE(::write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size()));
    ::close(fd);
}

std::string read_file(const std::string& path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// The result of an open as 0 (a descriptor, closed here) or -errno.
int opened(int fd) {
    if (fd >= 0) ::close(fd);
    return fd >= 0 ? 0 : fd;
}

// Runs `body` in a child that becomes a real privilege-separated agent
// (separate_privileges: a doptd-owner process keeps root, the child drops to
// `nobody`): the body is what code running in a compromised agent can do.
// Returns the named results the body gave.
std::map<std::string, int> as_separated_agent(
    const Config& config, const std::function<std::map<std::string, int>()>& body) {
    int pipe_fds[2];
    REQUIRE(::pipe2(pipe_fds, O_CLOEXEC) == 0);
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        ::close(pipe_fds[0]);
        std::string out;
        try {
            dopt::agent::separate_privileges(config, dopt::agent::lookup_account("nobody"));
            for (const auto& [name, result] : body()) out += name + "=" + std::to_string(result) + "\n";
        } catch (const std::exception& e) {
            out = std::string("error=") + e.what() + "\n";
        }
        (void)!::write(pipe_fds[1], out.data(), out.size());
        _exit(0);
    }
    ::close(pipe_fds[1]);
    const std::string text = dopt::test::read_to_end(pipe_fds[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    INFO(text);
    REQUIRE(text.find("error=") == std::string::npos);
    std::map<std::string, int> results;
    std::istringstream lines(text);
    std::string line;
    while (std::getline(lines, line)) {
        auto eq = line.rfind('=');
        results[line.substr(0, eq)] = std::stoi(line.substr(eq + 1));
    }
    return results;
}

}  // namespace

TEST_CASE("the owner-rights policy admits only partial files and their delivery", "[privsep]") {
    OwnerPolicy policy;
    policy.system_job_dirs = {"/srv/dl"};
    const std::string partial = "/home/a/.f.iso.0123abcd.dopt-partial";
    auto check = [&](OwnerOpKind kind, uid_t uid, gid_t gid, const std::string& path,
                     const std::string& to = "", int flags = 0, mode_t mode = 0) {
        OwnerOp op;
        op.kind = kind;
        op.owner = Owner{uid, gid};
        op.path = path;
        op.to = to;
        op.flags = flags;
        op.mode = mode;
        return check_owner_policy(op, policy);
    };
    constexpr int kCreate = O_RDWR | O_CREAT | O_EXCL;
    // What the agent asks for.
    CHECK(check(OwnerOpKind::Open, 4242, 4242, partial, "", kCreate, 0640) == "");
    CHECK(check(OwnerOpKind::Open, 4242, 4242, partial, "", O_RDWR) == "");
    CHECK(check(OwnerOpKind::Rename, 4242, 4242, partial, "/home/a/f.iso") == "");
    CHECK(check(OwnerOpKind::Unlink, 4242, 4242, partial) == "");
    CHECK(check(OwnerOpKind::Rename, 4242, 4242, "//.f.0123abcd.dopt-partial", "/f") == "");
    // Other names, other targets, other flags.
    CHECK(check(OwnerOpKind::Open, 4242, 4242, "/home/a/.bashrc", "", O_RDWR) != "");
    CHECK(check(OwnerOpKind::Unlink, 4242, 4242, "/home/a/f.iso") != "");
    CHECK(check(OwnerOpKind::Open, 4242, 4242, "/home/a/.f.0123abcg.dopt-partial", "", O_RDWR) != "");
    CHECK(check(OwnerOpKind::Open, 4242, 4242, "/home/a/..0123abcd.dopt-partial", "", O_RDWR) != "");
    CHECK(check(OwnerOpKind::Open, 4242, 4242, "/home/a/...0123abcd.dopt-partial", "", O_RDWR) != "");
    CHECK(check(OwnerOpKind::Rename, 4242, 4242, partial, "/home/a/.bashrc") != "");
    CHECK(check(OwnerOpKind::Rename, 4242, 4242, partial, "/etc/f.iso") != "");
    CHECK(check(OwnerOpKind::Open, 4242, 4242, partial, "", O_RDWR | O_CREAT) != "");
    CHECK(check(OwnerOpKind::Open, 4242, 4242, partial, "", O_RDWR | O_TRUNC) != "");
    CHECK(check(OwnerOpKind::Open, 4242, 4242, partial, "", O_WRONLY) != "");
    CHECK(check(OwnerOpKind::Open, 4242, 4242, partial, "", kCreate, 0755) != "");
    // A name too long for ".NAME.<id>.dopt-partial": cut and digested, and
    // delivered onto that name only.
    const std::string long_name(240, 'n');
    const std::string cut = partial_file_name(long_name, "0123abcd");
    CHECK(cut == "." + std::string(223, 'n') + "~" + cut.substr(225, 8) + ".0123abcd.dopt-partial");
    CHECK(cut.size() == NAME_MAX);
    CHECK(partial_file_name(long_name + "x", "0123abcd") != cut);
    CHECK(partial_file_name("f.iso", "0123abcd") == ".f.iso.0123abcd.dopt-partial");
    CHECK(check(OwnerOpKind::Open, 4242, 4242, "/home/a/" + cut, "", kCreate, 0640) == "");
    CHECK(check(OwnerOpKind::Rename, 4242, 4242, "/home/a/" + cut, "/home/a/" + long_name) == "");
    CHECK(check(OwnerOpKind::Rename, 4242, 4242, "/home/a/" + cut, "/home/a/" + long_name + "x") != "");
    CHECK(check(OwnerOpKind::Rename, 4242, 4242, "/home/a/" + cut, "/home/a/" + std::string(223, 'n')) != "");
    CHECK(check(OwnerOpKind::Rename, 4242, 4242, "/home/a/" + cut, "/etc/" + long_name) != "");
    // A cut never splits a UTF-8 character.
    std::string accents;
    for (int i = 0; i < 120; ++i) accents += "\xc3\xa9";
    const std::string cut_utf8 = partial_file_name(accents, "0123abcd");
    CHECK(cut_utf8.size() == NAME_MAX - 1);
    CHECK(cut_utf8.substr(0, 224) == "." + accents.substr(0, 222) + "~");
    // A gid the user database does not give the uid (root's group).
    CHECK(check(OwnerOpKind::Open, 4242, 0, partial, "", O_RDWR) != "");
    // Root and system accounts: confined to system_job_dirs, or refused.
    OwnerOp root_op;
    root_op.kind = OwnerOpKind::Open;
    root_op.path = "/srv/dl/.f.0123abcd.dopt-partial";
    root_op.flags = O_RDWR;
    CHECK(check_owner_policy(root_op, policy) == "");
    CHECK(root_op.confine_to == &policy.system_job_dirs);
    policy.system_job_dirs.clear();
    CHECK(check_owner_policy(root_op, policy) != "");
    CHECK(check(OwnerOpKind::Open, 1, 1, partial, "", O_RDWR) != "");
}

TEST_CASE("a compromised system agent cannot use doptd-owner beyond partial files", "[privsep]") {
    if (::geteuid() != 0 || ::getpwnam("nobody") == nullptr) {
        WARN("skipped: the system agent splits only as root, and needs the account nobody");
        return;
    }
    const std::string base = make_temp_dir();
    REQUIRE(::chmod(base.c_str(), 0755) == 0);
    const std::string sys = base + "/sys", other = base + "/other", open_dir = base + "/open";
    for (const auto& d : {sys, other, open_dir}) REQUIRE(::mkdir(d.c_str(), 0755) == 0);
    REQUIRE(::chmod(open_dir.c_str(), 0777) == 0);
    REQUIRE(::symlink(other.c_str(), (sys + "/link").c_str()) == 0);
    const std::string precious = other + "/precious";
    write_file(precious, "root's own bytes\n");

    Config config;
    config.state_dir = base + "/state";
    config.cache_dir = base + "/cache";
    config.socket = base + "/run/doptd.sock";
    config.system_job_dirs = {sys};
    const Owner root{0, 0};
    const std::string id = ".0123abcd.dopt-partial";
    constexpr int kCreate = O_RDWR | O_CREAT | O_EXCL;
    auto r = as_separated_agent(config, [&] {
        std::map<std::string, int> out;
        out["root: reopen a file that is not a partial file"] = opened(open_as_owner(root, precious, O_RDWR, 0));
        out["root: unlink a file that is not a partial file"] = unlink_as_owner(root, precious);
        out["root: create a partial file outside system_job_dirs"] =
            opened(open_as_owner(root, other + "/.x" + id, kCreate, 0644));
        out["root: create one through a link out of system_job_dirs"] =
            opened(open_as_owner(root, sys + "/link/.x" + id, kCreate, 0644));
        out["root: create one in system_job_dirs"] = opened(open_as_owner(root, sys + "/.x" + id, kCreate, 0644));
        out["root: open it with O_TRUNC"] = opened(open_as_owner(root, sys + "/.x" + id, O_RDWR | O_TRUNC, 0));
        out["root: rename it to another name"] = rename_as_owner(root, sys + "/.x" + id, sys + "/y");
        out["root: rename it into another folder"] = rename_as_owner(root, sys + "/.x" + id, other + "/x");
        out["root: rename it into place"] = rename_as_owner(root, sys + "/.x" + id, sys + "/x");
        out["system uid 1: create outside system_job_dirs"] =
            opened(open_as_owner(Owner{1, 1}, open_dir + "/.s" + id, kCreate, 0644));
        out["uid 4242 with gid 0"] = opened(open_as_owner(Owner{4242, 0}, open_dir + "/.g" + id, kCreate, 0644));
        out["uid 4242"] = opened(open_as_owner(Owner{4242, 4242}, open_dir + "/.u" + id, kCreate, 0644));
        return out;
    });
    for (const auto& [name, result] : r) INFO(name << " = " << result);
    CHECK(r.at("root: reopen a file that is not a partial file") == -EPERM);
    CHECK(r.at("root: unlink a file that is not a partial file") == -EPERM);
    CHECK(r.at("root: create a partial file outside system_job_dirs") == -EPERM);
    CHECK(r.at("root: create one through a link out of system_job_dirs") == -EPERM);
    CHECK(r.at("root: create one in system_job_dirs") == 0);
    CHECK(r.at("root: open it with O_TRUNC") == -EPERM);
    CHECK(r.at("root: rename it to another name") == -EPERM);
    CHECK(r.at("root: rename it into another folder") == -EPERM);
    CHECK(r.at("root: rename it into place") == 0);
    CHECK(r.at("system uid 1: create outside system_job_dirs") == -EPERM);
    CHECK(r.at("uid 4242 with gid 0") == -EPERM);
    CHECK(r.at("uid 4242") == 0);

    CHECK(read_file(precious) == "root's own bytes\n");
    std::vector<std::string> in_other;
    for (const auto& e : std::filesystem::directory_iterator(other)) in_other.push_back(e.path().filename());
    CHECK(in_other == std::vector<std::string>{"precious"});
    struct stat st{};
    REQUIRE(::stat((sys + "/x").c_str(), &st) == 0);
    CHECK(st.st_uid == 0);
    REQUIRE(::stat((open_dir + "/.u" + id).c_str(), &st) == 0);
    CHECK(st.st_uid == 4242);
    CHECK(::access((open_dir + "/.g" + id).c_str(), F_OK) != 0);
    CHECK(::access((open_dir + "/.s" + id).c_str(), F_OK) != 0);

    std::error_code ec;
    std::filesystem::remove_all(base, ec);
}

TEST_CASE("a partial file is reopened only when it is the owner's and has one link", "[privsep]") {
    const std::string dir = make_temp_dir();
    const Owner me{::geteuid(), ::getegid()};
    const std::string partial = dir + "/.f.0123abcd.dopt-partial";

    // Created with exactly 0666 & ~(the client's umask), whatever ours is.
    mode_t old_umask = ::umask(077);
    int fd = open_partial_as_owner(me, partial, 0664);
    ::umask(old_umask);
    REQUIRE(fd >= 0);
    struct stat st{};
    REQUIRE(::fstat(fd, &st) == 0);
    CHECK((st.st_mode & 07777) == 0664);
    ::close(fd);
    CHECK(opened(open_partial_as_owner(me, partial, 0664)) == 0);  // our own: reopened

    // A hard link planted as the partial file: refused, its target untouched.
    REQUIRE(::unlink(partial.c_str()) == 0);
    const std::string victim = dir + "/victim";
    write_file(victim, "victim's bytes\n");
    REQUIRE(::link(victim.c_str(), partial.c_str()) == 0);
    CHECK(open_partial_as_owner(me, partial, 0644) == -EEXIST);
    CHECK(read_file(victim) == "victim's bytes\n");

    // Someone else's file planted there: refused and untouched.
    if (::geteuid() == 0) {
        REQUIRE(::unlink(partial.c_str()) == 0);
        write_file(partial, "planted\n");
        REQUIRE(::chown(partial.c_str(), 4242, 4242) == 0);
        CHECK(open_partial_as_owner(me, partial, 0644) == -EEXIST);
        CHECK(read_file(partial) == "planted\n");
    } else {
        WARN("skipped the planted file of another user: needs root to make one");
    }
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
}
