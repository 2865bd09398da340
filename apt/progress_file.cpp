#include "apt/progress_file.h"

#include <algorithm>
#include <utility>
#include <cerrno>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace dopt::apt {

namespace {

// The progress file's date, as access and modification time (header):
// 2038-01-19 03:14:07 UTC and one nanosecond.
const struct timespec kMark[2] = {{ProgressFile::kMarkSeconds, 1}, {ProgressFile::kMarkSeconds, 1}};

// A progress file an earlier, killed run of the method left at `path`:
// a regular file of the caller's, one link, dated kMark to the nanosecond.
bool is_left_progress_file(const std::string& path) {
    struct stat st;
    return lstat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid() &&
           st.st_nlink == 1 && st.st_mtim.tv_sec == ProgressFile::kMarkSeconds && st.st_mtim.tv_nsec == 1;
}

int create_exclusive(const std::string& path) {
    return open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
}

}  // namespace

std::unique_ptr<ProgressFile> ProgressFile::create(const std::string& path) {
    int fd = create_exclusive(path);
    if (fd < 0 && errno == EEXIST && is_left_progress_file(path) && unlink(path.c_str()) == 0)
        fd = create_exclusive(path);
    if (fd < 0) return nullptr;
    struct stat st;
    if (futimens(fd, kMark) != 0 || fstat(fd, &st) != 0) {
        unlink(path.c_str());
        close(fd);
        return nullptr;
    }
    std::unique_ptr<ProgressFile> file(new ProgressFile(path, fd));
    file->dev_ = st.st_dev;
    file->ino_ = st.st_ino;
    return file;
}

ProgressFile::ProgressFile(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}

ProgressFile::~ProgressFile() {
    struct stat st;
    if (lstat(path_.c_str(), &st) == 0 && st.st_dev == dev_ && st.st_ino == ino_) unlink(path_.c_str());
    close(fd_);
}

void ProgressFile::show(std::uint64_t bytes, std::uint64_t total) {
    std::uint64_t size = std::min(bytes, total == 0 ? 0 : total - 1);
    if (size == shown_ || ftruncate(fd_, static_cast<off_t>(size)) != 0) return;
    futimens(fd_, kMark);  // ftruncate dated it now
    shown_ = size;
}

}  // namespace dopt::apt
