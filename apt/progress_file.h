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
// - its mtime is 1970-01-01 00:00:00 UTC: apt's http resumes a partial file
//   only with `If-Range: <its mtime>`, which no origin's Last-Modified of a
//   later date matches, so the origin sends the whole file again;
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
