#include "agent/cache_copy.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "agent/agent_internal.h"
#include "p2p/metainfo_summary.h"

namespace dopt::agent {

namespace {

// Test builds only (DOPT_CRASH_POINTS): with DOPT_HOLD_CACHE_COPY=PATH in the
// environment, the worker waits until PATH exists before it copies, so a
// test can see the agent answer while a copy is under way
// (tests/integration/test_peering.py CacheCopyOffTheLoop).
void hold_for_a_test() {
#if defined(DOPT_CRASH_POINTS) && DOPT_CRASH_POINTS
    static const char* release = std::getenv("DOPT_HOLD_CACHE_COPY");
    if (release == nullptr || *release == '\0') return;
    const std::string line = std::string("doptd: cache copy held until ") + release + " exists\n";
    ssize_t n = ::write(STDERR_FILENO, line.data(), line.size());
    (void)n;
    while (::access(release, F_OK) != 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
#endif
}

// Copies `size` bytes of `in` to `out` in the kernel; "" or why not.
std::string copy_bytes(int in, int out, std::uint64_t size) {
    loff_t in_off = 0;
    while (static_cast<std::uint64_t>(in_off) < size) {
        const ssize_t n = ::copy_file_range(in, &in_off, out, nullptr, size - static_cast<std::uint64_t>(in_off), 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return std::strerror(errno);
        if (n == 0) return "the file is shorter than " + std::to_string(size) + " bytes";
    }
    return "";
}

CacheCopyResult copy_and_describe(int fd, std::uint64_t size, const std::string& cache_dir,
                                  const std::string& sha256) {
    hold_for_a_test();
    CacheCopyResult r;
    const std::string dir = cache_dir + "/.content-" + sha256;
    remove_tree(dir);  // left by a crash
    const std::string path = dir + "/" + sha256;
    int out = -1;
    if (::mkdir(dir.c_str(), 0700) == 0)
        out = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    r.error = out < 0 ? std::string(std::strerror(errno)) : copy_bytes(fd, out, size);
    if (out >= 0) ::close(out);
    ::close(fd);
    if (r.error.empty()) {
        try {
            r.metainfo = p2p::make_content_metainfo(path, sha256);
        } catch (const p2p::MetainfoError& e) {
            r.error = std::string("cannot make its metainfo: ") + e.what();
        }
    } else {
        r.error = "cannot copy it into the peer cache: " + r.error;
    }
    if (r.error.empty()) r.dir = dir;
    else remove_tree(dir);
    return r;
}

}  // namespace

std::future<CacheCopyResult> start_cache_copy(int fd, std::uint64_t size, const std::string& cache_dir,
                                              const std::string& sha256) {
    const int own = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (own < 0) {
        std::promise<CacheCopyResult> failed;
        failed.set_value(CacheCopyResult{"", "", std::string("cannot copy it into the peer cache: ") +
                                                     std::strerror(errno)});
        return failed.get_future();
    }
    return std::async(std::launch::async, copy_and_describe, own, size, cache_dir, sha256);
}

}  // namespace dopt::agent
