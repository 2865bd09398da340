// Tests for the owner-rights request format (privilege_separation.cpp) and
// the checks every owner file operation makes (owner_files.cpp). The process
// split itself is tested with real processes in
// tests/integration/test_system_agent.py.
#include "agent/privilege_separation.h"

#include <catch2/catch.hpp>

#include <climits>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <string>
#include <sys/stat.h>
#include <unistd.h>

using dopt::agent::decode_owner_request;
using dopt::agent::kOwnerRightsVersion;
using dopt::agent::open_as_owner;
using dopt::agent::Owner;
using dopt::agent::OwnerOp;
using dopt::agent::OwnerOpKind;
using dopt::agent::OwnerRightsRequest;

namespace {

std::string request(std::uint32_t op, std::uint32_t uid, std::int32_t flags, std::uint32_t mode,
                    const std::string& path, const std::string& to = "",
                    std::uint32_t version = kOwnerRightsVersion) {
    OwnerRightsRequest h{};
    h.version = version;
    h.op = op;
    h.uid = uid;
    h.gid = uid;
    h.flags = flags;
    h.mode = mode;
    h.path_len = static_cast<std::uint32_t>(path.size());
    h.to_len = static_cast<std::uint32_t>(to.size());
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
    CHECK(decode(request(kOpen, 1000, O_RDWR, 0600, "/tmp/x", "", 2)) != "");  // version
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
