#include "agent/partial_file.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <fcntl.h>
#include <mutex>
#include <new>
#include <thread>
#include <unistd.h>
#include <vector>

#include "common/crash_point.h"
#include "common/sha256.h"

namespace dopt::agent {

namespace {
constexpr std::size_t kBufferSize = 1u << 20;
// The main loop blocks in append() while this much waits for the disk.
constexpr std::size_t kMaxQueued = 64;
// Writeback is started for every this many bytes written.
constexpr std::uint64_t kWritebackChunk = 16u << 20;
// A durable file is flushed (fdatasync) when a write comes this long after
// the last flush: what a crash may cost is about this much of the transfer.
constexpr std::chrono::milliseconds kFlushInterval{1000};
}  // namespace

// The writer thread and everything it touches. Fields marked GUARDED_BY(mu)
// are shared with the main loop.
struct PartialFile::Writer {
    int fd = -1;
    std::unique_ptr<Sha256> sha;          // null: no hashing
    std::vector<char> current;            // main loop only: filling buffer

    std::mutex mu;
    std::condition_variable cv;
    std::deque<std::vector<char>> queue;  // GUARDED_BY(mu)
    bool busy = false;                    // GUARDED_BY(mu): a buffer is being written
    bool stop = false;                    // GUARDED_BY(mu)
    int error = 0;                        // GUARDED_BY(mu): first -errno, sticky

    bool durable = true;  // writeback started as it goes, flushed every kFlushInterval
    // The prefix known flushed. Written by whichever thread writes; read by
    // the main loop.
    std::atomic<std::uint64_t> durable_offset{0};
    // No hash and no writeback to start: the main loop writes each full
    // buffer itself. On two cores shared with the origin, a third busy thread
    // costs more than the write it would take over.
    bool write_inline = false;

    // Writer thread only.
    std::uint64_t offset = 0;
    std::uint64_t writeback_started = 0;
    std::chrono::steady_clock::time_point last_flush = std::chrono::steady_clock::now();
    std::thread thread;

    void run() {
        std::unique_lock<std::mutex> lock(mu);
        for (;;) {
            cv.wait(lock, [&] { return stop || !queue.empty(); });
            if (queue.empty()) return;  // stop, and nothing left
            std::vector<char> buf = std::move(queue.front());
            queue.pop_front();
            busy = true;
            bool failed = error != 0;
            lock.unlock();
            int rc = failed ? 0 : write_out(buf);
            lock.lock();
            if (rc != 0 && error == 0) error = rc;
            busy = false;
            cv.notify_all();
        }
    }

    int write_out(const std::vector<char>& buf) {
        std::size_t done = 0;
        while (done < buf.size()) {
            ssize_t n = ::pwrite(fd, buf.data() + done, buf.size() - done,
                                 static_cast<off_t>(offset + done));
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) return -errno;
            done += static_cast<std::size_t>(n);
        }
        DOPT_CRASH_POINT("partial_write");
        if (sha) sha->update(buf.data(), buf.size());
        offset += buf.size();
        if (!durable) return 0;
        if (offset - writeback_started >= kWritebackChunk) {
            // Asynchronous: queues the pages for writeback without waiting.
            ::sync_file_range(fd, static_cast<off_t>(writeback_started),
                              static_cast<off_t>(offset - writeback_started), SYNC_FILE_RANGE_WRITE);
            writeback_started = offset;
        }
        auto now = std::chrono::steady_clock::now();
        if (now - last_flush >= kFlushInterval) {
            if (::fdatasync(fd) != 0) return -errno;
            durable_offset.store(offset);
            last_flush = now;
        }
        return 0;
    }

    // Main loop: hands the filling buffer to the writer.
    void submit() {
        if (current.empty()) return;
        if (write_inline) {
            int rc = error ? 0 : write_out(current);
            if (rc != 0 && error == 0) error = rc;
            current.clear();
            return;
        }
        std::unique_lock<std::mutex> lock(mu);
        cv.wait(lock, [&] { return queue.size() < kMaxQueued; });
        queue.push_back(std::move(current));
        current = std::vector<char>();
        cv.notify_all();
    }

    // Main loop: waits until everything submitted is written. Returns the
    // sticky error.
    int drain() {
        submit();
        std::unique_lock<std::mutex> lock(mu);
        cv.wait(lock, [&] { return queue.empty() && !busy; });
        return error;
    }

    int sticky_error() {
        std::lock_guard<std::mutex> lock(mu);
        return error;
    }
};

PartialFile::PartialFile(std::uint64_t size) : size_(size), writer_(std::make_unique<Writer>()) {}

PartialFile::~PartialFile() {
    writer_->drain();
    {
        std::lock_guard<std::mutex> lock(writer_->mu);
        writer_->stop = true;
    }
    writer_->cv.notify_all();
    if (writer_->thread.joinable()) writer_->thread.join();
    if (writer_->fd >= 0) ::close(writer_->fd);
}

std::unique_ptr<PartialFile> PartialFile::adopt(int fd, std::uint64_t keep_bytes,
                                                std::uint64_t durable_bytes, bool want_sha256,
                                                bool durable, int* err) {
    std::unique_ptr<PartialFile> pf(new PartialFile(keep_bytes));
    Writer& w = *pf->writer_;
    w.fd = fd;
    w.durable = durable;
    w.durable_offset.store(std::min(durable_bytes, keep_bytes));
    w.offset = w.writeback_started = keep_bytes;
    if (::ftruncate(fd, static_cast<off_t>(keep_bytes)) != 0) {
        *err = -errno;
        return nullptr;
    }
    if (want_sha256) {
        try {
            w.sha = std::make_unique<Sha256>();
        } catch (const std::bad_alloc&) {
            *err = -ENOMEM;
            return nullptr;
        }
        // The prefix kept from an earlier run is hashed once, here.
        std::vector<char> buf(kBufferSize);
        std::uint64_t off = 0;
        while (off < keep_bytes) {
            std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), keep_bytes - off));
            ssize_t n = ::pread(fd, buf.data(), want, static_cast<off_t>(off));
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) {
                *err = n < 0 ? -errno : -EIO;
                return nullptr;
            }
            w.sha->update(buf.data(), static_cast<std::size_t>(n));
            off += static_cast<std::uint64_t>(n);
        }
    }
    w.write_inline = !want_sha256 && !durable;
    if (!w.write_inline) w.thread = std::thread([&w] { w.run(); });
    return pf;
}

int PartialFile::append(const char* data, std::size_t len) {
    Writer& w = *writer_;
    if (int e = w.sticky_error()) return e;
    while (len > 0) {
        if (w.current.capacity() < kBufferSize) w.current.reserve(kBufferSize);
        std::size_t room = kBufferSize - w.current.size();
        std::size_t n = std::min(room, len);
        w.current.insert(w.current.end(), data, data + n);
        data += n;
        len -= n;
        size_ += n;
        if (w.current.size() == kBufferSize) w.submit();
    }
    return 0;
}

int PartialFile::reset() {
    Writer& w = *writer_;
    w.current.clear();
    w.drain();
    std::lock_guard<std::mutex> lock(w.mu);  // the writer is idle: drain() returned
    if (::ftruncate(w.fd, 0) != 0) return -errno;
    w.offset = w.writeback_started = 0;
    w.durable_offset.store(0);
    w.error = 0;
    size_ = 0;
    if (w.sha) w.sha->reset();
    return 0;
}

std::uint64_t PartialFile::durable_size() const { return writer_->durable_offset.load(); }

int PartialFile::flush() { return writer_->drain(); }

std::uint64_t PartialFile::written() {
    writer_->drain();
    std::lock_guard<std::mutex> lock(writer_->mu);  // the writer is idle: drain() returned
    return writer_->offset;
}

int PartialFile::sync() {
    if (int e = writer_->drain()) return e;
    if (::fdatasync(writer_->fd) != 0) return -errno;
    writer_->durable_offset.store(size_);
    return 0;
}

int PartialFile::fd() const { return writer_->fd; }

std::string PartialFile::finish_sha256() {
    Writer& w = *writer_;
    w.drain();
    return w.sha ? w.sha->finish_hex() : "";
}

}  // namespace dopt::agent
