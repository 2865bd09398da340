#include "protocol/frame.h"

#include <cerrno>
#include <sys/socket.h>
#include <unistd.h>

namespace dopt::protocol {

void encode_length(std::uint32_t len, unsigned char out[4]) {
    out[0] = static_cast<unsigned char>(len >> 24);
    out[1] = static_cast<unsigned char>(len >> 16);
    out[2] = static_cast<unsigned char>(len >> 8);
    out[3] = static_cast<unsigned char>(len);
}

std::uint32_t decode_length(const unsigned char in[4]) {
    return (std::uint32_t{in[0]} << 24) | (std::uint32_t{in[1]} << 16) |
           (std::uint32_t{in[2]} << 8) | std::uint32_t{in[3]};
}

namespace {

// Reads exactly n bytes. Returns n, 0 on EOF before the first byte, -1 else.
ssize_t read_all(int fd, void* buf, std::size_t n) {
    auto* p = static_cast<unsigned char*>(buf);
    std::size_t got = 0;
    while (got < n) {
        ssize_t r = ::read(fd, p + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -1;
        if (r == 0) {
            if (got == 0) return 0;
            errno = EPIPE;
            return -1;
        }
        got += static_cast<std::size_t>(r);
    }
    return static_cast<ssize_t>(got);
}

bool write_all(int fd, const void* buf, std::size_t n) {
    const auto* p = static_cast<const unsigned char*>(buf);
    while (n > 0) {
        // MSG_NOSIGNAL: a peer that went away is an error, not a SIGPIPE.
        ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return false;
        p += w;
        n -= static_cast<std::size_t>(w);
    }
    return true;
}

}  // namespace

FrameResult read_frame(int fd, std::string& body) {
    unsigned char hdr[4];
    ssize_t r = read_all(fd, hdr, 4);
    if (r == 0) return FrameResult::Closed;
    if (r < 0) return FrameResult::IoError;
    std::uint32_t len = decode_length(hdr);
    if (len > kMaxFrame) return FrameResult::TooLarge;
    body.resize(len);
    if (len == 0) return FrameResult::Ok;
    r = read_all(fd, body.data(), len);
    if (r <= 0) {
        if (r == 0) errno = EPIPE;
        return FrameResult::IoError;
    }
    return FrameResult::Ok;
}

FrameResult write_frame(int fd, const std::string& body) {
    if (body.size() > kMaxFrame) return FrameResult::TooLarge;
    unsigned char hdr[4];
    encode_length(static_cast<std::uint32_t>(body.size()), hdr);
    std::string buf;
    buf.reserve(4 + body.size());
    buf.append(reinterpret_cast<const char*>(hdr), 4);
    buf.append(body);
    return write_all(fd, buf.data(), buf.size()) ? FrameResult::Ok : FrameResult::IoError;
}

}  // namespace dopt::protocol
