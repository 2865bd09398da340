// ProgressFile: what apt's progress bar reads while the agent fetches a file.
//
// apt measures a method's progress only by stat() of the item's Filename
// (pkgAcquire::Worker::Pulse), and the agent writes a hidden partial file
// beside it until delivery renames that onto Filename. So the method keeps
// a file of its own at Filename whose size follows the job's bytes. It is
// holes only, never data, and apt must never take it for its file or a
// part of it:
// - its size stays below the file's size (apt's http takes a partial file
//   of the whole size as done when the origin answers 416);
// - its mtime is kMarkSeconds (2038-01-19 03:14:07 UTC) and 1 ns: apt's
//   http resumes a partial file only with `If-Range: <its mtime, whole
//   seconds>`, and an origin's Last-Modified is never later than its clock
//   (RFC 9110 8.8.2.1), so no origin matches it and the origin sends the
//   whole file again. Not 1970 (mtime 0): origins of reproducible builds
//   serve Last-Modified: 1970-01-01 00:00:00 (and Nix stores 00:00:01),
//   whose partial files apt's http dates so. The date is the last second
//   that 32-bit file system times (ext4's small inodes, XFS without
//   bigtime) hold. The nanosecond tells a progress file from any file apt
//   dates (whole seconds, from Last-Modified); a file system that keeps
//   whole seconds only drops it, and a file left there is not taken over
//   (no progress bar for that item, nothing lost). Not an xattr: tmpfs
//   takes user.* xattrs only from Linux 6.6, and a date needs no support;
// - it is removed on every path but delivery, where the agent's rename
//   replaces it; only a killed method leaves one, which the next run takes
//   over.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>

namespace dopt::apt {

class ProgressFile {
public:
    // The progress file's mtime, in seconds since 1970 (INT32_MAX); its
    // nanoseconds are 1.
    static constexpr time_t kMarkSeconds = 2147483647;

    // The progress file at `path` (apt's Filename), created as the caller
    // (apt's sandbox user), or null when `path` holds anything but a
    // progress file a killed method left: apt's own partial file, which
    // apt's http may resume, is never touched.
    static std::unique_ptr<ProgressFile> create(const std::string& path);
    // Removes the file when `path` is still this file, not the file the
    // agent delivered there.
    ~ProgressFile();
    ProgressFile(const ProgressFile&) = delete;
    ProgressFile& operator=(const ProgressFile&) = delete;

    // Shows `bytes` of `total`: the size becomes min(bytes, total - 1). A
    // failure (a full disk) costs the bar only.
    void show(std::uint64_t bytes, std::uint64_t total);

private:
    ProgressFile(std::string path, int fd);

    std::string path_;
    int fd_;
    dev_t dev_ = 0;
    ino_t ino_ = 0;
    std::uint64_t shown_ = 0;
};

}  // namespace dopt::apt
