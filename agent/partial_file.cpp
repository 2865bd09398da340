#include "agent/partial_file.h"

#include <cerrno>
#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

namespace dopt::agent {

namespace {
// Writeback is started for every this many bytes written, so dirty pages
// never pile up into one long sync at the end.
constexpr std::uint64_t kWritebackChunk = 16u << 20;
}  // namespace

struct PartialFile::Hasher {
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    ~Hasher() { EVP_MD_CTX_free(ctx); }
};

PartialFile::PartialFile(int fd, std::uint64_t size) : fd_(fd), size_(size) {}

PartialFile::~PartialFile() {
    if (fd_ >= 0) ::close(fd_);
}

std::unique_ptr<PartialFile> PartialFile::adopt(int fd, std::uint64_t keep_bytes,
                                                bool want_sha256, int* err) {
    std::unique_ptr<PartialFile> pf(new PartialFile(fd, keep_bytes));
    if (::ftruncate(fd, static_cast<off_t>(keep_bytes)) != 0) {
        *err = -errno;
        return nullptr;
    }
    pf->writeback_started_ = keep_bytes;
    if (!want_sha256) return pf;
    pf->hasher_ = std::make_unique<Hasher>();
    if (!pf->hasher_->ctx || EVP_DigestInit_ex(pf->hasher_->ctx, EVP_sha256(), nullptr) != 1) {
        *err = -ENOMEM;
        return nullptr;
    }
    std::vector<char> buf(1 << 20);
    std::uint64_t off = 0;
    while (off < keep_bytes) {
        size_t want = static_cast<size_t>(std::min<std::uint64_t>(buf.size(), keep_bytes - off));
        ssize_t n = ::pread(fd, buf.data(), want, static_cast<off_t>(off));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            *err = n < 0 ? -errno : -EIO;
            return nullptr;
        }
        EVP_DigestUpdate(pf->hasher_->ctx, buf.data(), static_cast<size_t>(n));
        off += static_cast<std::uint64_t>(n);
    }
    return pf;
}

int PartialFile::append(const char* data, std::size_t len) {
    std::size_t done = 0;
    while (done < len) {
        ssize_t n = ::pwrite(fd_, data + done, len - done, static_cast<off_t>(size_ + done));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -errno;
        done += static_cast<std::size_t>(n);
    }
    if (hasher_) EVP_DigestUpdate(hasher_->ctx, data, len);
    size_ += len;
    if (size_ - writeback_started_ >= kWritebackChunk) {
        // Asynchronous: queues the pages for writeback without waiting.
        ::sync_file_range(fd_, static_cast<off_t>(writeback_started_),
                          static_cast<off_t>(size_ - writeback_started_), SYNC_FILE_RANGE_WRITE);
        writeback_started_ = size_;
    }
    return 0;
}

int PartialFile::reset() {
    if (::ftruncate(fd_, 0) != 0) return -errno;
    size_ = 0;
    writeback_started_ = 0;
    if (hasher_) EVP_DigestInit_ex(hasher_->ctx, EVP_sha256(), nullptr);
    return 0;
}

int PartialFile::sync() { return ::fdatasync(fd_) == 0 ? 0 : -errno; }

std::string PartialFile::finish_sha256() {
    if (!hasher_) return "";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex(hasher_->ctx, md, &len);
    static const char* hex = "0123456789abcdef";
    std::string out;
    for (unsigned int i = 0; i < len; ++i) {
        out += hex[md[i] >> 4];
        out += hex[md[i] & 15];
    }
    return out;
}

}  // namespace dopt::agent
