// InterfaceAddressWatch: see interface_address.h.
#include "agent/interface_address.h"

#include <arpa/inet.h>
#include <cerrno>
#include <cstring>
#include <ifaddrs.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <netinet/in.h>
#include <stdexcept>
#include <sys/socket.h>
#include <unistd.h>

namespace dopt::agent {

InterfaceAddressWatch::InterfaceAddressWatch(std::string name) : name_(std::move(name)) {
    fd_ = ::socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd_ < 0) throw std::runtime_error(std::string("netlink socket: ") + std::strerror(errno));
    sockaddr_nl sa{};
    sa.nl_family = AF_NETLINK;
    sa.nl_groups = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR;
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
        const int err = errno;
        ::close(fd_);
        throw std::runtime_error(std::string("netlink bind: ") + std::strerror(err));
    }
}

InterfaceAddressWatch::~InterfaceAddressWatch() { ::close(fd_); }

bool InterfaceAddressWatch::drain() {
    bool any = false;
    char buf[8192];
    for (;;) {
        const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
        if (n > 0) {
            any = true;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && errno == ENOBUFS) {
            any = true;  // messages lost: whatever they said, look again
        } else {
            return any;  // EAGAIN: nothing more
        }
    }
}

std::string interface_address(const std::string& name) {
    ifaddrs* list = nullptr;
    if (::getifaddrs(&list) != 0) return "";
    std::string v4, v6;
    for (const ifaddrs* ifa = list; ifa != nullptr; ifa = ifa->ifa_next) {
        if (ifa->ifa_addr == nullptr || name != ifa->ifa_name) continue;
        char text[INET6_ADDRSTRLEN] = {};
        if (ifa->ifa_addr->sa_family == AF_INET && v4.empty()) {
            const auto* in = reinterpret_cast<const sockaddr_in*>(ifa->ifa_addr);
            if (::inet_ntop(AF_INET, &in->sin_addr, text, sizeof text)) v4 = text;
        } else if (ifa->ifa_addr->sa_family == AF_INET6 && v6.empty()) {
            const auto* in6 = reinterpret_cast<const sockaddr_in6*>(ifa->ifa_addr);
            if (!IN6_IS_ADDR_LINKLOCAL(&in6->sin6_addr) &&
                ::inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text))
                v6 = text;
        }
    }
    ::freeifaddrs(list);
    return !v4.empty() ? v4 : v6;
}

}  // namespace dopt::agent
