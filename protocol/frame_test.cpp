#include <catch2/catch.hpp>

#include <string>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

#include "protocol/frame.h"

using namespace dopt::protocol;

namespace {

// Both ends of a connected Unix stream socketpair, closed at scope exit.
struct SocketPair {
    int a = -1, b = -1;
    SocketPair() {
        int fds[2];
        REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
        a = fds[0];
        b = fds[1];
    }
    ~SocketPair() {
        if (a >= 0) ::close(a);
        if (b >= 0) ::close(b);
    }
    void close_a() { ::close(a); a = -1; }
};

void send_bytes(int fd, const std::string& bytes) {
    REQUIRE(::write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()));
}

}  // namespace

TEST_CASE("the length header is 4 bytes, big-endian", "[frame]") {
    unsigned char hdr[4];
    encode_length(0x01020304, hdr);
    CHECK((hdr[0] == 1 && hdr[1] == 2 && hdr[2] == 3 && hdr[3] == 4));
    CHECK(decode_length(hdr) == 0x01020304u);
}

TEST_CASE("frames written are read back whole and in order", "[frame]") {
    SocketPair s;
    // A largest frame does not fit in the socket buffer: read while writing.
    const std::string big(kMaxFrame, 'x');
    std::thread writer([&] {
        CHECK(write_frame(s.a, R"({"op":"hello","seq":1})") == FrameResult::Ok);
        CHECK(write_frame(s.a, "") == FrameResult::Ok);
        CHECK(write_frame(s.a, big) == FrameResult::Ok);
    });
    std::string body;
    CHECK(read_frame(s.b, body) == FrameResult::Ok);
    CHECK(body == R"({"op":"hello","seq":1})");
    CHECK(read_frame(s.b, body) == FrameResult::Ok);
    CHECK(body.empty());
    CHECK(read_frame(s.b, body) == FrameResult::Ok);
    CHECK(body == big);
    writer.join();
    s.close_a();
    CHECK(read_frame(s.b, body) == FrameResult::Closed);
}

TEST_CASE("a frame over kMaxFrame is refused on both sides", "[frame]") {
    SocketPair s;
    CHECK(write_frame(s.a, std::string(kMaxFrame + 1, 'x')) == FrameResult::TooLarge);
    unsigned char hdr[4];
    encode_length(static_cast<std::uint32_t>(kMaxFrame + 1), hdr);
    send_bytes(s.a, std::string(reinterpret_cast<const char*>(hdr), 4));
    std::string body;
    CHECK(read_frame(s.b, body) == FrameResult::TooLarge);
}

TEST_CASE("an end of stream inside a frame is an I/O error, not a frame", "[frame]") {
    std::string body;
    SECTION("inside the header") {
        SocketPair s;
        send_bytes(s.a, std::string("\0\0", 2));
        s.close_a();
        CHECK(read_frame(s.b, body) == FrameResult::IoError);
    }
    SECTION("inside the body") {
        SocketPair s;
        send_bytes(s.a, std::string("\0\0\0\x05" "abc", 7));
        s.close_a();
        CHECK(read_frame(s.b, body) == FrameResult::IoError);
    }
    SECTION("writing to a closed peer") {
        SocketPair s;
        ::close(s.b);
        s.b = -1;
        CHECK(write_frame(s.a, "{}") == FrameResult::IoError);  // EPIPE, no SIGPIPE
    }
}
