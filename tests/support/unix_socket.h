// Unix-socket helpers for C++ tests that play the agent. Header-only;
// include as "tests/support/unix_socket.h".
#pragma once

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <system_error>

namespace dopt::test {

// A stream socket bound to `path` and listening with `backlog`. Throws
// std::system_error when any step fails (the socket is closed then).
inline int listen_unix(const std::string& path, int backlog) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) throw std::system_error(errno, std::generic_category(), "socket");
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || ::listen(fd, backlog) != 0) {
        const int error = errno;
        ::close(fd);
        throw std::system_error(error, std::generic_category(), "bind/listen " + path);
    }
    return fd;
}

}  // namespace dopt::test
