// owner_files.h on real files in a temporary folder: what is created as
// another user and with which mode, the kernel deciding as the owner,
// symlinks never followed, and the calls that do not wait (an answer only
// on the loop, a stopped child timed out without holding up the others).
// The checks every open makes (FIFO, planted and hard-linked files) are in
// privilege_separation_test.cpp.
#include "agent/owner_files.h"

#include <catch2/catch.hpp>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

#include "agent/test_support.h"

using dopt::agent::Owner;
using dopt::agent::OwnerOp;
using dopt::agent::OwnerOpKind;
using dopt::agent::test::read_file;
using dopt::agent::test::TempDir;
using dopt::agent::test::write_file;

namespace {

// The rename child of a target containing this stops itself (SIGSTOP) in a
// test build (owner_files.cpp, DOPT_STOP_OWNER_OP), as a child its owner
// stopped. Set before main: owner_files reads it once, at its first rename.
constexpr const char* kStopText = "stopped-by-owner-files-test";
const bool g_stop_text_set = ::setenv("DOPT_STOP_OWNER_OP", kStopText, 1) == 0;

bool is_root() { return ::geteuid() == 0; }

// As root: true with the account nobody in *owner. False, with a
// warning, when the test cannot run.
bool acting_for_nobody(Owner* owner) {
    const passwd* pw = ::getpwnam("nobody");
    if (!is_root() || !pw) {
        WARN("skipped: only root acts as another user, and this needs the account nobody");
        return false;
    }
    *owner = Owner{pw->pw_uid, pw->pw_gid};
    return true;
}

bool exists(const std::string& path) {
    struct stat st{};
    return ::lstat(path.c_str(), &st) == 0;
}

// Runs the main loop's part for owner operations until `n` of the `done`s
// counted by `answered` have run; false when 10 s pass first.
bool run_owner_ops_until(const int& answered, int n) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (answered < n) {
        if (std::chrono::steady_clock::now() > deadline) return false;
        std::vector<pollfd> fds;
        std::size_t first = dopt::agent::add_owner_op_pollfds(fds);
        int timeout = dopt::agent::owner_ops_timeout_ms();
        ::poll(fds.data(), fds.size(), timeout < 0 || timeout > 100 ? 100 : timeout);
        dopt::agent::handle_owner_ops(fds, first);
    }
    return true;
}

}  // namespace

TEST_CASE("as root for another user, a file is created as that user with exactly its mode",
          "[owner_files]") {
    Owner owner;
    if (!acting_for_nobody(&owner)) return;
    TempDir dir;
    REQUIRE(::chmod(dir.path().c_str(), 0755) == 0);
    const std::string folder = dir.file("shared");
    REQUIRE(::mkdir(folder.c_str(), 0777) == 0);
    REQUIRE(::chmod(folder.c_str(), 0777) == 0);
    CHECK_FALSE(dopt::agent::acts_as_owner_itself(owner));

    mode_t old_umask = ::umask(077);
    int fd = dopt::agent::open_partial_as_owner(owner, folder + "/.f.0123abcd.dopt-partial", 0640);
    ::umask(old_umask);
    REQUIRE(fd >= 0);
    struct stat st{};
    REQUIRE(::fstat(fd, &st) == 0);
    CHECK(st.st_uid == owner.uid);
    CHECK((st.st_mode & 07777) == 0640);
    ::close(fd);
}

TEST_CASE("the kernel decides as the owner: what the owner may not do is refused and untouched",
          "[owner_files]") {
    Owner owner;
    if (!acting_for_nobody(&owner)) return;
    TempDir dir;
    REQUIRE(::chmod(dir.path().c_str(), 0755) == 0);  // root's: others read, not write
    const std::string roots_file = dir.file("root.bin");
    write_file(roots_file, "root's bytes");

    CHECK(dopt::agent::open_partial_as_owner(owner, dir.file(".x.0123abcd.dopt-partial"), 0600) == -EACCES);
    CHECK(dopt::agent::rename_as_owner(owner, roots_file, dir.file("moved.bin")) == -EACCES);
    CHECK(dopt::agent::unlink_as_owner(owner, roots_file) == -EACCES);
    CHECK(dopt::agent::open_as_owner(owner, roots_file, O_RDWR, 0) == -EACCES);  // 0644, root's
    CHECK(read_file(roots_file) == "root's bytes");
    CHECK_FALSE(exists(dir.file("moved.bin")));

    // In the owner's own folder the same calls succeed.
    const std::string own = dir.file("own");
    REQUIRE(::mkdir(own.c_str(), 0755) == 0);
    REQUIRE(::chown(own.c_str(), owner.uid, owner.gid) == 0);
    int fd = dopt::agent::open_partial_as_owner(owner, own + "/.f.0123abcd.dopt-partial", 0600);
    REQUIRE(fd >= 0);
    ::close(fd);
    CHECK(dopt::agent::rename_as_owner(owner, own + "/.f.0123abcd.dopt-partial", own + "/f") == 0);
    CHECK(exists(own + "/f"));
    CHECK(dopt::agent::unlink_as_owner(owner, own + "/f") == 0);
    CHECK_FALSE(exists(own + "/f"));
}

TEST_CASE("rename and unlink act on a symlink itself, never on its target", "[owner_files]") {
    TempDir dir;
    const Owner me{::geteuid(), ::getegid()};
    const std::string target = dir.file("target");
    write_file(target, "target's bytes");
    const std::string link = dir.file("link");
    REQUIRE(::symlink(target.c_str(), link.c_str()) == 0);

    REQUIRE(dopt::agent::rename_as_owner(me, link, dir.file("moved")) == 0);
    struct stat st{};
    REQUIRE(::lstat(dir.file("moved").c_str(), &st) == 0);
    CHECK(S_ISLNK(st.st_mode));
    CHECK(read_file(target) == "target's bytes");

    REQUIRE(dopt::agent::unlink_as_owner(me, dir.file("moved")) == 0);
    CHECK_FALSE(exists(dir.file("moved")));
    CHECK(read_file(target) == "target's bytes");
}

TEST_CASE("check_writable_folder and primary_gid_of", "[owner_files]") {
    TempDir dir;
    write_file(dir.file("plain"), "x");
    CHECK(dopt::agent::check_writable_folder(dir.path()) == 0);
    CHECK(dopt::agent::check_writable_folder(dir.file("missing")) == -ENOENT);
    CHECK(dopt::agent::check_writable_folder(dir.file("plain")) == -ENOTDIR);

    const passwd* pw = ::getpwuid(::geteuid());
    REQUIRE(pw != nullptr);
    CHECK(dopt::agent::primary_gid_of(pw->pw_uid, 4242) == pw->pw_gid);
    CHECK(dopt::agent::primary_gid_of(3999999999u, 4242) == 4242);  // no such account
}

TEST_CASE("an operation submitted is answered on the loop, never inside submit_owner_op",
          "[owner_files]") {
    TempDir dir;
    const Owner me{::geteuid(), ::getegid()};
    OwnerOp op;
    op.kind = OwnerOpKind::Open;
    op.owner = me;
    op.path = dir.file("new.bin");
    op.flags = O_RDWR | O_CREAT | O_EXCL;
    op.mode = 0600;
    int answered = 0, result = -1;
    dopt::agent::submit_owner_op(op, [&](int r) {
        ++answered;
        result = r;
    });
    CHECK(answered == 0);
    CHECK(dopt::agent::owner_ops_in_flight() == 1);
    REQUIRE(run_owner_ops_until(answered, 1));
    REQUIRE(result >= 0);  // the descriptor, now ours
    CHECK(::write(result, "ok", 2) == 2);
    ::close(result);
    CHECK(read_file(dir.file("new.bin")) == "ok");
    CHECK(dopt::agent::owner_ops_in_flight() == 0);
}

TEST_CASE("a stopped child times out and holds up no other operation", "[owner_files]") {
#if !(defined(DOPT_CRASH_POINTS) && DOPT_CRASH_POINTS)
    WARN("skipped: a child stops itself only in a test build (-DDOPT_CRASH_POINTS=ON)");
    return;
#endif
    REQUIRE(g_stop_text_set);
    TempDir dir;
    const Owner me{::geteuid(), ::getegid()};
    write_file(dir.file("a"), "a");
    write_file(dir.file("b"), "b");
    const int old_timeout = dopt::agent::owner_op_timeout_ms();
    dopt::agent::set_owner_op_timeout_ms(500);

    OwnerOp stuck;
    stuck.kind = OwnerOpKind::Rename;
    stuck.owner = me;
    stuck.path = dir.file("a");
    stuck.to = dir.file(std::string("a-") + kStopText);
    OwnerOp quick = stuck;
    quick.kind = OwnerOpKind::Unlink;
    quick.path = dir.file("b");
    quick.to.clear();

    int answered = 0, stuck_result = 1, quick_result = 1, quick_order = 0, stuck_order = 0;
    dopt::agent::submit_owner_op(stuck, [&](int r) { stuck_result = r; stuck_order = ++answered; });
    dopt::agent::submit_owner_op(quick, [&](int r) { quick_result = r; quick_order = ++answered; });
    bool both = run_owner_ops_until(answered, 2);
    dopt::agent::set_owner_op_timeout_ms(old_timeout);
    REQUIRE(both);

    CHECK(quick_result == 0);
    CHECK(quick_order == 1);  // answered while the stopped child still held its rename
    CHECK(stuck_result == -ETIMEDOUT);
    CHECK(stuck_order == 2);
    CHECK(exists(dir.file("a")));  // not renamed
    CHECK_FALSE(exists(dir.file("b")));
    // The killed child is reaped.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (dopt::agent::reap_owner_children() > 0 && std::chrono::steady_clock::now() < deadline)
        ::usleep(10 * 1000);
    CHECK(dopt::agent::reap_owner_children() == 0);
}
