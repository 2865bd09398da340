#include "agent/service_manager.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <limits>
#include <stdexcept>
#include <sys/socket.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>

#include "agent/log.h"

namespace dopt::agent {

ServiceNotifier::ServiceNotifier(std::function<std::string()> status_text)
    : status_text_(std::move(status_text)) {
    const char* socket = std::getenv("NOTIFY_SOCKET");
    enabled_ = socket != nullptr && *socket != '\0';
    std::uint64_t usec = 0;
    // > 0 only when $WATCHDOG_PID (if set) is this process.
    if (enabled_ && sd_watchdog_enabled(0, &usec) > 0 && usec > 0)
        watchdog_ms_ = std::max<std::int64_t>(1, static_cast<std::int64_t>(usec / 2000));
}

void ServiceNotifier::send(const std::string& message) {
    int rc = sd_notify(0, message.c_str());
    if (rc < 0) LOG_DEBUG("sd_notify: %s", std::strerror(-rc));
}

void ServiceNotifier::ready(std::int64_t now_ms) {
    if (!enabled_) return;
    last_status_ = status_text_();
    send("READY=1\nSTATUS=" + last_status_);
    next_status_ms_ = now_ms + kStatusIntervalMs;
    if (watchdog_ms_ > 0) {
        send("WATCHDOG=1");
        next_ping_ms_ = now_ms + watchdog_ms_;
    }
}

void ServiceNotifier::reloading() {
    if (enabled_) send("RELOADING=1\nSTATUS=reloading the configuration");
}

void ServiceNotifier::stopping() {
    if (enabled_) send("STOPPING=1\nSTATUS=stopping");
}

void ServiceNotifier::tick(std::int64_t now_ms) {
    if (!enabled_) return;
    if (watchdog_ms_ > 0 && now_ms >= next_ping_ms_) {
        send("WATCHDOG=1");
        next_ping_ms_ = now_ms + watchdog_ms_;
    }
    if (now_ms >= next_status_ms_) {
        std::string text = status_text_();
        if (text != last_status_) {
            send("STATUS=" + text);
            last_status_ = std::move(text);
        }
        next_status_ms_ = now_ms + kStatusIntervalMs;
    }
}

std::int64_t ServiceNotifier::deadline_ms() const {
    if (!enabled_) return std::numeric_limits<std::int64_t>::max();
    return watchdog_ms_ > 0 ? std::min(next_status_ms_, next_ping_ms_) : next_status_ms_;
}

int take_activated_socket(const std::string& expected_path) {
    int n = sd_listen_fds(1);  // 1: unsets $LISTEN_PID, $LISTEN_FDS, $LISTEN_FDNAMES
    if (n < 0) throw std::runtime_error(std::string("sd_listen_fds: ") + std::strerror(-n));
    if (n == 0) return -1;
    if (n > 1)
        throw std::runtime_error("systemd passed " + std::to_string(n) +
                                 " sockets; doptd takes one (ListenStream= " + expected_path + ")");
    const int fd = SD_LISTEN_FDS_START;
    if (sd_is_socket_unix(fd, SOCK_STREAM, 1, expected_path.c_str(), 0) <= 0) {
        sockaddr_un addr{};
        socklen_t len = sizeof addr;
        std::string bound = "?";
        if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0 &&
            addr.sun_family == AF_UNIX)
            bound = addr.sun_path;
        throw std::runtime_error("the socket systemd passed (" + bound +
                                 ") is not a listening Unix stream socket at " + expected_path +
                                 ", the config's `socket`: make ListenStream= and `socket` agree");
    }
    if (::fcntl(fd, F_SETFD, FD_CLOEXEC) != 0 ||
        ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK) != 0)
        throw std::runtime_error(std::string("fcntl on the passed socket: ") + std::strerror(errno));
    return fd;
}

}  // namespace dopt::agent
