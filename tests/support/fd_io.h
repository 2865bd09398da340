// File-descriptor reads for C++ tests, such as collecting what a forked
// child wrote to a pipe. Header-only; include as "tests/support/fd_io.h".
#pragma once

#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <string>

namespace dopt::test {

// Everything read from `fd` until end of file (or a read error), then
// closes `fd`.
inline std::string read_to_end(int fd) {
    std::string text;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR)) {
        if (n > 0) text.append(buf, static_cast<std::size_t>(n));
    }
    ::close(fd);
    return text;
}

}  // namespace dopt::test
