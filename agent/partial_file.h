// PartialFile: the hidden file beside a job's destination that receives its
// bytes. Appends at the current end, starts writeback as it goes (so the
// final sync is short), and hashes as the bytes arrive when a SHA-256 is
// expected (no second pass, except over a prefix already on disk on resume).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace dopt::agent {

class PartialFile {
public:
    // Takes ownership of `fd` (opened read-write by the owner's rights).
    // The file is truncated to `keep_bytes` (what is trusted of an earlier
    // run); when `want_sha256` the kept prefix is hashed now.
    // Returns nullptr with -errno in *err on failure.
    static std::unique_ptr<PartialFile> adopt(int fd, std::uint64_t keep_bytes,
                                              bool want_sha256, int* err);
    ~PartialFile();
    PartialFile(const PartialFile&) = delete;
    PartialFile& operator=(const PartialFile&) = delete;

    std::uint64_t size() const { return size_; }

    // Appends. Returns 0 or -errno (ENOSPC for a full disk).
    int append(const char* data, std::size_t len);
    // Drops everything (the origin sent a different version). 0 or -errno.
    int reset();
    // Flushes to stable storage. 0 or -errno.
    int sync();
    // Lowercase hex SHA-256 of everything appended since byte 0; "" when
    // hashing was not requested. Call once, after the last append.
    std::string finish_sha256();

private:
    PartialFile(int fd, std::uint64_t size);
    int fd_;
    std::uint64_t size_;
    std::uint64_t writeback_started_ = 0;  // bytes handed to sync_file_range
    struct Hasher;
    std::unique_ptr<Hasher> hasher_;
};

}  // namespace dopt::agent
