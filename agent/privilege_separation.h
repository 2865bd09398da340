// Privilege separation of the system-wide agent (docs/design.md, "Where bytes
// live").
//
// A doptd started as root with `user` set splits in two at start, before any
// thread exists:
//
//   doptd (runs as `user`)  <-- socketpair (SOCK_SEQPACKET) -->  owner-rights
//   IPC, SQLite, curl, jobs                                      process (root)
//
// The owner-rights process is a child that keeps root and does one thing:
// open, rename or unlink a job's partial file as a given owner. For each
// request it forks a grandchild that sets the owner's groups, gid and uid and
// makes the one syscall (open with O_NOFOLLOW | O_CLOEXEC, regular files
// only); an opened descriptor comes back to the agent over SCM_RIGHTS.
// Requests run concurrently, one grandchild each, and are answered as they
// finish (in any order, by id): one owner's grandchild that hangs or is
// stopped until its deadline (file_op_timeout) delays no other request. It has
// no other descriptor than its end of the socketpair (and
// stdin/stdout/stderr), serves only the process that created the pair
// (SO_PEERCRED), refuses malformed requests, and exits when the agent's end
// closes (or the agent dies).
//
// It trusts nothing the agent sends (the agent parses network input): every
// request must pass check_owner_policy() below, so a compromised agent can
// reach no more than the names the agent makes, in folders regular users
// could write anyway, or in the folders root listed in `system_job_dirs`.
//
// Wire format (one SOCK_SEQPACKET message each way):
//   request: OwnerRightsRequest (below), then `path_len` bytes of the path and
//            `to_len` bytes of the rename target; no NUL terminators.
//   reply:   OwnerRightsReply (owner_files.h): the request's id and its result
//            (>= 0 success, else -errno), with the descriptor attached
//            (SCM_RIGHTS) for a successful open.
#pragma once

#include <cstdint>
#include <string>
#include <sys/types.h>
#include <vector>

#include "agent/config.h"
#include "agent/owner_files.h"

namespace dopt::agent {

// The account the network-facing part runs as.
struct ServiceAccount {
    std::string name;
    uid_t uid = 0;
    gid_t gid = 0;
    std::vector<gid_t> groups;  // supplementary groups, primary included
};

// Looks `name` up in the user database. Throws std::runtime_error
// "user 'x' does not exist" (or names the lookup error).
ServiceAccount lookup_account(const std::string& name);

// As root, before any thread exists: creates state_dir and cache_dir (0700)
// and the socket's folder (0755), hands them and the agent's own files in
// state_dir (lock, jobs.db and its WAL files) to `account`, starts the
// owner-rights process, routes owner_files.h through it, and drops this
// process to `account` for good (groups, gid, uid; setuid(0) then must fail;
// not dumpable; no_new_privs). Throws std::runtime_error when any step fails;
// the caller must then exit.
void separate_privileges(const Config& config, const ServiceAccount& account);

// True once separate_privileges() succeeded in this process: the agent is
// the system agent although it no longer runs as root.
bool privilege_separated();

// The request message for `op` with `id` (the agent's side,
// owner_files.cpp); "" when a path is too long.
std::string encode_owner_request(const OwnerOp& op, std::uint32_t id);

// The fixed part of a request. Exposed for the tests.
struct OwnerRightsRequest {
    std::uint32_t version;  // kOwnerRightsVersion
    std::uint32_t op;       // OwnerOpKind
    std::uint32_t uid;
    std::uint32_t gid;
    std::int32_t flags;     // a subset of kOwnerOpenFlags (open only)
    std::uint32_t mode;     // at most 0777 (open only)
    std::uint32_t path_len; // 1 .. PATH_MAX-1
    std::uint32_t to_len;   // rename: 1 .. PATH_MAX-1; otherwise 0
    std::uint32_t id;       // echoed in the reply; never 0
};
constexpr std::uint32_t kOwnerRightsVersion = 2;

// Checks and decodes one request message. Returns "" and fills `op`, or
// says what is wrong with it.
// `id` (when given) gets the request's id.
std::string decode_owner_request(const char* data, std::size_t len, OwnerOp& op,
                                 std::uint32_t* id = nullptr);

// What the owner-rights process lets a (decoded) request do. Fixed at start,
// from root's config: the agent cannot change it.
struct OwnerPolicy {
    // Below it a uid is a system account (UID_MIN of /etc/login.defs).
    uid_t first_regular_uid = 1000;
    // `system_job_dirs`, as real paths: the only folders (with what is below
    // them) where root and system accounts get files.
    std::vector<std::string> system_job_dirs;
};

// The partial file's name for a destination named `name` (no folder) of
// the job whose id starts with `job8`: ".NAME.<job8>.dopt-partial", or when
// that is longer than NAME_MAX, NAME cut (at a UTF-8 character's start)
// and followed by "~<8 hex digits of a digest of NAME>" to fit: unique per
// name, and still starting with it.
std::string partial_file_name(const std::string& name, const std::string& job8);

// UID_MIN from the login.defs file `path`; 1000 when it says nothing usable.
uid_t read_first_regular_uid(const std::string& path);

// Checks a decoded request against `policy`. Returns "" when the
// owner-rights process may run it, or why not:
// - the path's last component is a partial file name, ".NAME.<8 hex
//   digits>.dopt-partial"; a rename moves it to the name in the same folder
//   it is the partial file of (partial_file_name);
// - open either creates (O_RDWR | O_CREAT | O_EXCL, mode within 0666) or
//   reopens (O_RDWR);
// - the gid is one of the uid's groups in the user database (a uid the
//   database does not know: a gid at or above first_regular_uid);
// - uid 0 or a system uid: `op.confine_to` is set to system_job_dirs (it
//   must then not be empty), which the child checks on the real folder.
std::string check_owner_policy(OwnerOp& op, const OwnerPolicy& policy);

}  // namespace dopt::agent
