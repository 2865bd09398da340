// LsdListener: LSD announces remembered for torrents added later. See
// lsd_listener.h for the contract.
#include "p2p/lsd_listener.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

#include "common/hex.h"

namespace dopt::p2p {

namespace {

constexpr char kLsdGroup[] = "239.192.152.143";
constexpr std::uint16_t kLsdPort = 6771;

bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() &&
           std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
           });
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
    return s;
}

// The next line of `rest` (without its "\r\n" or "\n"), consumed.
std::string_view next_line(std::string_view& rest) {
    const auto end = rest.find('\n');
    std::string_view line = rest.substr(0, end);
    rest = end == std::string_view::npos ? std::string_view{} : rest.substr(end + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    return line;
}

std::optional<int> parse_port(std::string_view s) {
    if (s.empty() || s.size() > 5 || s.find_first_not_of("0123456789") != std::string_view::npos)
        return std::nullopt;
    const int port = std::stoi(std::string(s));
    if (port < 1 || port > 65535) return std::nullopt;
    return port;
}

[[noreturn]] void fail(const char* what) {
    throw std::runtime_error(std::string("LSD listener: ") + what + ": " + std::strerror(errno));
}

}  // namespace

std::optional<LsdAnnounce> parse_lsd_announce(std::string_view datagram) {
    std::string_view rest = datagram;
    const std::string_view request = next_line(rest);
    const auto space = request.find(' ');
    if (!iequals(request.substr(0, space), "BT-SEARCH")) return std::nullopt;
    LsdAnnounce out;
    while (!rest.empty()) {
        const std::string_view line = next_line(rest);
        if (line.empty()) break;  // end of the headers
        const auto colon = line.find(':');
        if (colon == std::string_view::npos) return std::nullopt;
        const std::string_view name = trim(line.substr(0, colon));
        const std::string_view value = trim(line.substr(colon + 1));
        if (iequals(name, "Port")) {
            const auto port = parse_port(value);
            if (!port) return std::nullopt;
            out.port = *port;
        } else if (iequals(name, "Infohash")) {
            lt::sha1_hash ih;
            if (!from_hex(value, ih.data(), ih.size())) continue;  // as libtorrent: skip that one
            if (!ih.is_all_zeros()) out.info_hashes.push_back(ih);
        }
    }
    if (out.port == 0 || out.info_hashes.empty()) return std::nullopt;
    return out;
}

LsdListener::LsdListener(const lt::address& interface_address) {
    if (!interface_address.is_v4()) throw std::runtime_error("LSD listener: IPv4 only");
    fd_ = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd_ < 0) fail("socket");
    try {
        const int one = 1, zero = 0;
        if (setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) fail("SO_REUSEADDR");
        // Only the group joined here, on that interface.
        if (setsockopt(fd_, IPPROTO_IP, IP_MULTICAST_ALL, &zero, sizeof zero) != 0) fail("IP_MULTICAST_ALL");
        // Bound to the group's address, not INADDR_ANY: a datagram sent to
        // one of this host's own addresses at port 6771 (unicast, from
        // anyone who can reach it, not only the LAN's multicast scope) is
        // not delivered here.
        sockaddr_in bind_to{};
        bind_to.sin_family = AF_INET;
        bind_to.sin_port = htons(kLsdPort);
        inet_pton(AF_INET, kLsdGroup, &bind_to.sin_addr);
        if (bind(fd_, reinterpret_cast<const sockaddr*>(&bind_to), sizeof bind_to) != 0) fail("bind");
        ip_mreq join{};
        join.imr_multiaddr = bind_to.sin_addr;
        const auto bytes = interface_address.to_v4().to_bytes();
        std::memcpy(&join.imr_interface, bytes.data(), bytes.size());
        if (setsockopt(fd_, IPPROTO_IP, IP_ADD_MEMBERSHIP, &join, sizeof join) != 0) fail("join group");
    } catch (...) {
        close(fd_);
        throw;
    }
}

LsdListener::~LsdListener() { close(fd_); }

// At most this many datagrams a call: a LAN host flooding the LSD port
// costs the agent's loop a bounded time per tick (the kernel drops the rest).
constexpr int kMaxDatagramsPerDrain = 64;

void LsdListener::drain(std::int64_t now_ms) {
    std::array<char, 1500> buffer;
    for (int taken = 0; taken < kMaxDatagramsPerDrain; ++taken) {
        sockaddr_in from{};
        socklen_t from_len = sizeof from;
        const ssize_t n = recvfrom(fd_, buffer.data(), buffer.size(), 0, reinterpret_cast<sockaddr*>(&from),
                                   &from_len);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return;  // EAGAIN: nothing more; anything else: try again next time
        const auto announce = parse_lsd_announce({buffer.data(), static_cast<std::size_t>(n)});
        if (!announce || from.sin_family != AF_INET) continue;
        lt::address_v4::bytes_type addr;
        std::memcpy(addr.data(), &from.sin_addr, addr.size());
        heard(lt::address_v4(addr), *announce, now_ms);
    }
}

void LsdListener::heard(const lt::address& from, const LsdAnnounce& announce, std::int64_t now_ms) {
    for (const auto& ih : announce.info_hashes) {
        heard_[{ih, lt::tcp::endpoint(from, static_cast<std::uint16_t>(announce.port))}] = now_ms;
        if (heard_.size() <= kMaxEntries) continue;
        auto oldest = std::min_element(heard_.begin(), heard_.end(),
                                       [](const auto& a, const auto& b) { return a.second < b.second; });
        heard_.erase(oldest);
    }
}

std::vector<lt::tcp::endpoint> LsdListener::announced(const lt::sha1_hash& info_hash, std::int64_t now_ms) const {
    std::vector<lt::tcp::endpoint> out;
    for (auto it = heard_.lower_bound({info_hash, lt::tcp::endpoint()});
         it != heard_.end() && it->first.first == info_hash; ++it)
        if (now_ms - it->second < kRememberMs) out.push_back(it->first.second);
    return out;
}

}  // namespace dopt::p2p
