// File operations done with the rights of a job's owner.
//
// The agent never writes a path its job's owner could not write. Which way a
// call takes is chosen once at start (main.cpp):
//
// - per-user agent (not root): plain syscalls, as the agent's own user;
// - privilege-separated system agent (`user` set): the request goes over a
//   socketpair to the owner-rights process (privilege_separation.h), which
//   kept root and runs it in a child dropped to the owner;
// - root without `user`: each call for another user runs in a child this
//   process forks, dropped to the owner's groups, gid and uid.
//
// A child that drops to the owner hands an opened descriptor back over
// SCM_RIGHTS. Nothing checks access() first: the kernel decides, as the owner.
//
// Every call refuses to follow a symlink in the last component (O_NOFOLLOW;
// rename and unlink act on the link itself, never its target), and open
// returns only regular files (a FIFO or device there is EINVAL; it is opened
// O_NONBLOCK first, so a FIFO cannot hang the call). An open without O_EXCL
// returns only a file of the uid that opens it with no other link (else
// -EEXIST): a file planted or hard-linked there by someone else is never
// written. A file created (O_CREAT | O_EXCL) gets exactly `mode`, whatever
// the umask of the process that creates it.
// Results: 0 / a descriptor on success, -errno on failure.
#pragma once

#include <fcntl.h>
#include <string>
#include <sys/types.h>
#include <vector>

namespace dopt::agent {

struct Owner {
    uid_t uid = 0;
    gid_t gid = 0;
};

// Opens `path` as the owner. `flags` gain O_NOFOLLOW | O_CLOEXEC.
int open_as_owner(const Owner& owner, const std::string& path, int flags, mode_t mode);
// Opens a job's partial file for reading and writing: the owner's existing
// one (one link), or a new one created with O_EXCL and `mode`. A file of
// someone else's there is -EEXIST and stays untouched.
int open_partial_as_owner(const Owner& owner, const std::string& path, mode_t mode);
int rename_as_owner(const Owner& owner, const std::string& from, const std::string& to);
int unlink_as_owner(const Owner& owner, const std::string& path);

// True when file operations for `owner` are plain syscalls of this process
// (a per-user agent, or root acting for root): the kernel's answer to the
// agent is then the answer to the owner.
bool acts_as_owner_itself(const Owner& owner);

// Whether this process may create files in `dir`: 0, or -errno (ENOENT: no
// such folder, ENOTDIR, EACCES, EROFS). Only meaningful when
// acts_as_owner_itself(); it is an early, friendly answer, not a permission
// decision: the file is still opened with the owner's rights later.
int check_writable_folder(const std::string& dir);

// The owner's primary gid (from the password database); `fallback` when
// the uid has no entry.
gid_t primary_gid_of(uid_t uid, gid_t fallback);

// ---- for the owner-rights process (privilege_separation.cpp) ---------------

// The only open flags a request may carry (O_RDONLY is 0).
constexpr int kOwnerOpenFlags = O_WRONLY | O_RDWR | O_CREAT | O_EXCL | O_TRUNC;

enum class OwnerOpKind { Open = 1, Rename = 2, Unlink = 3 };

// One file operation for one owner. `to` is used by Rename only; `flags`
// and `mode` by Open only.
struct OwnerOp {
    OwnerOpKind kind = OwnerOpKind::Open;
    Owner owner;
    std::string path;
    std::string to;
    int flags = 0;
    mode_t mode = 0;
    // Set by the owner-rights process only (never sent): the folder of
    // `path`, after every symlink, must be one of these or inside one (real
    // paths). The child checks it on the folder it opened, then acts
    // relative to that descriptor, so a folder swapped meanwhile changes
    // nothing. The child then uses the heap: only for a single-threaded
    // parent.
    const std::vector<std::string>* confine_to = nullptr;
};

// The supplementary groups of `owner` (getgrouplist of its name), or just
// its gid when the uid has no entry. Not async-signal-safe: call before fork.
std::vector<gid_t> groups_of(const Owner& owner);

// Runs `op` in a forked child that closes every descriptor but stdio and
// its result socket, sets `groups`, then the owner's gid and uid, and does
// nothing else before the syscall. The caller must be root.
// Returns a descriptor (Open), 0 (Rename, Unlink) or -errno. A child that
// has not answered after `timeout_ms` (a folder on a mount that never
// answers, a stopped child) is killed: -ETIMEDOUT.
int run_forked_as_owner(const OwnerOp& op, const std::vector<gid_t>& groups, int timeout_ms);

// How long a file operation for another user may take (run_forked_as_owner
// and the owner-rights process use it); the agent sets it from
// `[jobs] file_op_timeout` at start.
void set_owner_op_timeout_ms(int timeout_ms);
int owner_op_timeout_ms();

// From now on every call above is sent over `channel` to the owner-rights
// process (a SOCK_SEQPACKET socket; the caller keeps it open for good).
void route_owner_files_through(int channel);

// One (result, optional descriptor) message over a SOCK_SEQPACKET socket.
bool send_owner_result(int sock, int result, int fd);
// Returns the result (-EIO when the message is broken or the peer gone);
// *fd gets the descriptor, or -1. Extra descriptors are closed.
int recv_owner_result(int sock, int* fd);

}  // namespace dopt::agent
