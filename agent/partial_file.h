// PartialFile: the hidden file beside a job's destination that receives its
// bytes.
//
// Appends are copied into 1 MiB buffers. When the file is hashed or will be
// synced, a writer thread of this file writes each buffer, hashes it and
// hands it to writeback as it goes, so the thread that receives from the
// network never waits on the disk or the hash, and the final sync before
// Complete is short. Otherwise the caller writes each full buffer itself
// (on two cores, a third busy thread costs more than the write).
//
// Contract:
//  - One thread (the agent's main loop) calls every method; the writer
//    thread is internal.
//  - A write error (ENOSPC for a full disk, EIO, ...) is sticky: the next
//    append() or sync() returns it.
//  - Bytes accepted by append() reach the file in order, so after the
//    agent is killed the file holds a complete prefix of what was appended
//    (its size says how long).
//  - After a power cut only durable_size() bytes are sure: the file may be
//    longer, its tail zeros. With `durable` the file is flushed
//    (fdatasync) about once a second as it is written, and durable_size()
//    follows; the caller records it where a restart finds it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace dopt::agent {

class PartialFile {
public:
    // Takes ownership of `fd` (opened read-write with the owner's rights).
    // The file is truncated to `keep_bytes` (what is trusted of an earlier
    // transfer), of which the first `durable_bytes` are known flushed; when
    // `want_sha256` the kept prefix is hashed now. With `durable` the
    // writer hands written pages to the disk as it goes and flushes them
    // about once a second (for a file that will be sync()ed: the final
    // flush is then short). Returns nullptr with -errno in *err on failure.
    static std::unique_ptr<PartialFile> adopt(int fd, std::uint64_t keep_bytes,
                                              std::uint64_t durable_bytes, bool want_sha256,
                                              bool durable, int* err);
    ~PartialFile();  // waits for pending writes; closes the file
    PartialFile(const PartialFile&) = delete;
    PartialFile& operator=(const PartialFile&) = delete;

    // Bytes accepted so far (written or queued).
    std::uint64_t size() const { return size_; }
    // Bytes in the file once what is queued is written: size() less what a
    // failed write (ENOSPC) lost. Waits for the queued writes.
    std::uint64_t written();
    // The prefix known to be on stable storage (flushed by fdatasync).
    std::uint64_t durable_size() const;

    // Queues bytes for writing. 0, or -errno of an earlier failed write.
    int append(const char* data, std::size_t len);
    // Drops everything (the origin sent a different version); nothing is
    // durable then. 0 or -errno.
    int reset();
    // Writes everything queued and flushes it to stable storage. 0 or -errno.
    int sync();
    // Writes everything queued (to the page cache, no flush). 0 or -errno.
    int flush();
    // Lowercase hex SHA-256 of every byte since byte 0; "" when hashing was
    // not requested. Call once, after sync().
    std::string finish_sha256();
    // The file, for reading it whole after sync() (still owned here).
    int fd() const;

private:
    struct Writer;
    explicit PartialFile(std::uint64_t size);
    std::uint64_t size_;
    std::unique_ptr<Writer> writer_;
};

}  // namespace dopt::agent
