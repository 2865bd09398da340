// File operations done with the rights of a job's owner.
//
// The agent never writes a path its job's owner could not write. Which way a
// call takes is chosen once at start (main.cpp):
//
// - per-user agent (not root): a child this process forks makes the
//   syscall, as the agent's own user;
// - privilege-separated system agent (`user` set): the request goes over a
//   socketpair to the owner-rights process (privilege_separation.h), which
//   kept root and runs it in a child dropped to the owner;
// - root without `user`: a child this process forks makes the syscall,
//   dropped to the owner's groups, gid and uid when the owner is not root.
//
// Every operation thus runs in a child with a deadline (file_op_timeout),
// never in the agent's main loop: a folder on a mount that never answers,
// or a child its owner stopped, holds up that operation alone. The child
// hands an opened descriptor back over SCM_RIGHTS. Nothing checks access()
// first: the kernel decides, as the owner.
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

#include <cstdint>
#include <fcntl.h>
#include <functional>
#include <poll.h>
#include <string>
#include <sys/types.h>
#include <vector>

namespace dopt::agent {

struct Owner {
    uid_t uid = 0;
    gid_t gid = 0;
};

// The calls below wait for their answer (up to owner_op_timeout_ms() per
// operation): for tests and start-up. The agent's main loop uses
// submit_owner_op() instead, which does not wait.

// Opens `path` as the owner. `flags` gain O_NOFOLLOW | O_CLOEXEC.
int open_as_owner(const Owner& owner, const std::string& path, int flags, mode_t mode);
// Opens a job's partial file for reading and writing: the owner's existing
// one (one link), or a new one created with O_EXCL and `mode`. A file of
// someone else's there is -EEXIST and stays untouched.
int open_partial_as_owner(const Owner& owner, const std::string& path, mode_t mode);
int rename_as_owner(const Owner& owner, const std::string& from, const std::string& to);
int unlink_as_owner(const Owner& owner, const std::string& path);

// True when file operations for `owner` run with this process's own rights
// (a per-user agent, or root without `user` acting for root): the kernel's
// answer to the agent is then the answer to the owner.
bool acts_as_owner_itself(const Owner& owner);

// Whether this process may create files in `dir`: 0, or -errno (ENOENT: no
// such folder, ENOTDIR, EACCES, EROFS). Only meaningful when
// acts_as_owner_itself(); it is an early, friendly answer, not a permission
// decision: the file is still opened with the owner's rights later. It runs
// in the calling process (a stat and an access of the folder): the one file
// call of an agent for its own user that is not in a child.
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

// One operation running in a forked child (start_owner_child).
struct OwnerChild {
    pid_t pid = -1;
    int sock = -1;             // readable once the child answered (or died)
    std::int64_t deadline_ms = 0;  // CLOCK_MONOTONIC
    bool returns_fd = false;
};

// Starts `op` in a forked child that closes every descriptor but stdio and
// its result socket, sets `groups`, then the owner's gid and uid (only when
// this process is root acting for another uid), and does nothing else
// before the syscall. Returns 0 with `child` filled, or -errno. Does not
// wait: the caller polls child.sock until child.deadline_ms, then calls
// finish_owner_child() or, at the deadline, kill_owner_child().
int start_owner_child(const OwnerOp& op, const std::vector<gid_t>& groups, int timeout_ms,
                      OwnerChild& child);
// The answer of a child whose socket is readable: a descriptor (Open), 0
// or -errno. Kills the child (its owner may stop it at any time, even
// after it answered) and reaps it without waiting.
int finish_owner_child(OwnerChild& child);
// A child that has not answered by its deadline (a folder on a mount that
// never answers, a stopped child): killed, reaped later. -ETIMEDOUT.
int kill_owner_child(OwnerChild& child);
// Reaps the children killed that have exited since; returns how many are
// still to reap (try again within 100 ms).
std::size_t reap_owner_children();

// ---- without waiting: the agent's main loop ----------------------------
//
// submit_owner_op() starts an operation and returns at once; the caller's
// poll loop adds add_owner_op_pollfds(), wakes up within
// owner_ops_timeout_ms() and calls handle_owner_ops(), which runs each
// finished operation's `done` there with its result: a descriptor (Open;
// `done` then owns it), 0, or -errno (-ETIMEDOUT: no answer within
// owner_op_timeout_ms(); the child was killed). `done` never runs inside
// submit_owner_op().
//
// Operations run concurrently, each in a child of its own (directly, or in
// the owner-rights process, which runs its children concurrently too): one
// that hangs delays no other. They keep no order among themselves: a caller
// that needs one (a job's operations, agent.cpp) submits the next from the
// `done` of the one before. Single-threaded: the main loop only.
using OwnerOpDone = std::function<void(int result)>;
void submit_owner_op(const OwnerOp& op, OwnerOpDone done);
// Appends the descriptors to poll; returns the index of the first.
std::size_t add_owner_op_pollfds(std::vector<pollfd>& fds);
// Reads the answers reported at `first` (see add_owner_op_pollfds), ends
// the operations past their deadline, and runs their `done`s.
void handle_owner_ops(const std::vector<pollfd>& fds, std::size_t first);
// Milliseconds until handle_owner_ops() has something to do without a
// descriptor turning ready (a deadline, an answer known already); -1 when
// nothing is in flight.
int owner_ops_timeout_ms();
// How many operations are in flight.
std::size_t owner_ops_in_flight();
// At exit: kills every child and forgets every `done` without running it.
void abandon_owner_ops();

// How long a file operation may take (the children of this process and of
// the owner-rights process); the agent sets it from
// `[jobs] file_op_timeout` at start.
void set_owner_op_timeout_ms(int timeout_ms);
int owner_op_timeout_ms();

// From now on every call above is sent over `channel` to the owner-rights
// process (a SOCK_SEQPACKET socket; the caller keeps it open for good).
void route_owner_files_through(int channel);

// An answer of the owner-rights process or of a child.
struct OwnerRightsReply {
    std::int32_t result;  // >= 0 success, else -errno
    std::uint32_t id;     // the request's (0 from a child)
};

// One answer over a SOCK_SEQPACKET socket: the request's id (0 from a
// child), the result and an optional descriptor.
bool send_owner_result(int sock, std::uint32_t id, int result, int fd);
// Does not wait. Returns the result (-EAGAIN: nothing to read yet; -EIO:
// the message is broken or the peer gone, *id then 0); *id gets the id, *fd the descriptor, or -1. Extra descriptors are closed.
int recv_owner_result(int sock, std::uint32_t* id, int* fd);
// One recvmsg of a message into buf[0, len) on `sock` (retried on EINTR),
// with room for four descriptors beside it. Returns recvmsg's result (-1
// with errno set on failure); *msg_flags gets the message's flags and
// `fds` every descriptor received, which the caller then owns.
ssize_t recv_with_descriptors(int sock, void* buf, std::size_t len, int flags, int* msg_flags,
                              std::vector<int>& fds);

}  // namespace dopt::agent
