// InterfaceAddressWatch: the address of one network interface, followed as
// it changes (DHCP, a cable moved), for `[p2p] listen = "eth0:7881"`.
//
// Contract: a NETLINK_ROUTE socket subscribed to address and link changes
// (IPv4 and IPv6) becomes readable when anything may have changed; the
// owner polls fd(), calls drain(), then address() for the address to
// listen on now. Used from one thread (the agent's main loop).
#pragma once

#include <string>

namespace dopt::agent {

// The address to listen on of interface `name` now, as "a.b.c.d" or
// "v6addr": its first IPv4 address (the primary one), else its first IPv6
// address that is not link-local (a link-local address needs a scope that
// peers' configs cannot name). "" when it has none, or does not exist.
std::string interface_address(const std::string& name);

class InterfaceAddressWatch {
public:
    // Throws std::runtime_error when the netlink socket cannot be opened.
    explicit InterfaceAddressWatch(std::string name);
    ~InterfaceAddressWatch();
    InterfaceAddressWatch(const InterfaceAddressWatch&) = delete;
    InterfaceAddressWatch& operator=(const InterfaceAddressWatch&) = delete;

    const std::string& name() const { return name_; }
    int fd() const { return fd_; }
    // Reads every message waiting (never blocks). True when any came, or
    // the kernel dropped some (its queue overflowed): look again.
    bool drain();
    // interface_address(name()).
    std::string address() const { return interface_address(name_); }

private:
    std::string name_;
    int fd_ = -1;
};

}  // namespace dopt::agent
