// File operations done with the rights of a job's owner.
//
// The agent never writes a path its job's owner could not write. When the
// agent runs as that user (per-user agent) the calls are plain syscalls. When
// it runs as root for another user, each call runs in a forked child that
// drops to the owner's groups, gid and uid before touching the path, and an
// opened descriptor comes back over SCM_RIGHTS. Nothing checks access()
// first: the kernel decides, as the owner.
//
// Every call refuses to follow a symlink in the last component (O_NOFOLLOW;
// rename and unlink act on the link itself, never its target).
// Results: 0 / a descriptor on success, -errno on failure.
#pragma once

#include <string>
#include <sys/types.h>

namespace dopt::agent {

struct Owner {
    uid_t uid = 0;
    gid_t gid = 0;
};

// Opens `path` as the owner. `flags` gain O_NOFOLLOW | O_CLOEXEC.
int open_as_owner(const Owner& owner, const std::string& path, int flags, mode_t mode);
int rename_as_owner(const Owner& owner, const std::string& from, const std::string& to);
int unlink_as_owner(const Owner& owner, const std::string& path);

// The owner's primary gid (from the password database); `fallback` when
// the uid has no entry.
gid_t primary_gid_of(uid_t uid, gid_t fallback);

}  // namespace dopt::agent
