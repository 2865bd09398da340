#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "common/hex.h"
#include "p2p/lsd_listener.h"
#include "p2p/session_test_support.h"

using dopt::p2p::LsdAnnounce;
using dopt::p2p::LsdListener;
using dopt::p2p::parse_lsd_announce;
using dopt::p2p::test_support::run_in_private_netns;

namespace {

const std::string kHashA = "0123456789abcdef0123456789abcdef01234567";
const std::string kHashB = "fedcba9876543210fedcba9876543210fedcba98";

lt::sha1_hash hash(const std::string& hex) {
    lt::sha1_hash h;
    REQUIRE(dopt::from_hex(hex, h.data(), h.size()));
    return h;
}

std::string announce(const std::string& port, const std::string& hashes_lines) {
    return "BT-SEARCH * HTTP/1.1\r\nHost: 239.192.152.143:6771\r\nPort: " + port + "\r\n" + hashes_lines +
           "cookie: 1a2b\r\n\r\n\r\n";
}

}  // namespace

TEST_CASE("parse_lsd_announce reads BEP 14 announces and refuses the rest", "[p2p][lsd]") {
    SECTION("libtorrent's and aria2's forms, one or more info-hashes") {
        auto a = parse_lsd_announce(announce("6881", "Infohash: " + kHashA + "\r\n"));
        REQUIRE(a);
        CHECK(a->port == 6881);
        REQUIRE(a->info_hashes.size() == 1);
        CHECK(a->info_hashes[0] == hash(kHashA));
        // Header names in any case, bare "\n" line ends, upper-case hex.
        std::string upper = kHashB;
        for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
        a = parse_lsd_announce("bt-search * HTTP/1.1\nPORT: 7881\ninfohash: " + kHashA + "\nInfoHash: " +
                               upper + "\n\n");
        REQUIRE(a);
        CHECK(a->port == 7881);
        REQUIRE(a->info_hashes.size() == 2);
        CHECK(a->info_hashes[1] == hash(kHashB));
    }
    SECTION("a bad info-hash is skipped, the good ones kept") {
        const auto a = parse_lsd_announce(
            announce("6881", "Infohash: xyz\r\nInfohash: " + kHashA + "\r\nInfohash: " + std::string(40, '0') + "\r\n"));
        REQUIRE(a);
        REQUIRE(a->info_hashes.size() == 1);
        CHECK(a->info_hashes[0] == hash(kHashA));
    }
    SECTION("not an announce") {
        const std::string ih = "Infohash: " + kHashA + "\r\n";
        CHECK_FALSE(parse_lsd_announce(""));
        CHECK_FALSE(parse_lsd_announce("M-SEARCH * HTTP/1.1\r\nPort: 6881\r\n" + ih + "\r\n"));
        CHECK_FALSE(parse_lsd_announce(announce("", ih)));
        CHECK_FALSE(parse_lsd_announce(announce("0", ih)));
        CHECK_FALSE(parse_lsd_announce(announce("65536", ih)));
        CHECK_FALSE(parse_lsd_announce(announce("68a1", ih)));
        CHECK_FALSE(parse_lsd_announce(announce("123456", ih)));
        CHECK_FALSE(parse_lsd_announce(announce("6881", "")));
        CHECK_FALSE(parse_lsd_announce(announce("6881", "no colon here\r\n" + ih)));
        CHECK_FALSE(parse_lsd_announce(std::string("BT-SEARCH * HTTP/1.1\r\nPort: 6881\r\nInfohash: ") +
                                       std::string(1000, 'a') + "\r\n\r\n"));
    }
}

TEST_CASE("LsdListener remembers who announced what, for a while and up to a bound", "[p2p][lsd]") {
    const int rc = run_in_private_netns([] {
        LsdListener listener(lt::make_address("127.0.0.1"));
        const lt::address peer = lt::make_address("10.1.2.3");
        LsdAnnounce a;
        a.port = 6881;
        a.info_hashes = {hash(kHashA), hash(kHashB)};
        listener.heard(peer, a, 1000);
        a.port = 6882;
        a.info_hashes = {hash(kHashA)};
        listener.heard(peer, a, 2000);
        bool ok = listener.announced(hash(kHashA), 2000).size() == 2 &&
                  listener.announced(hash(kHashB), 2000) ==
                      std::vector<lt::tcp::endpoint>{lt::tcp::endpoint(peer, 6881)};
        // Forgotten kRememberMs after it was last heard.
        ok = ok && listener.announced(hash(kHashA), 1000 + LsdListener::kRememberMs) ==
                       std::vector<lt::tcp::endpoint>{lt::tcp::endpoint(peer, 6882)};
        ok = ok && listener.announced(hash(kHashB), 1000 + LsdListener::kRememberMs).empty();
        // Bounded: the oldest entries go first.
        for (std::size_t i = 0; i < LsdListener::kMaxEntries; ++i) {
            a.port = static_cast<int>(10000 + i);
            a.info_hashes = {hash(kHashB)};
            listener.heard(peer, a, 3000 + static_cast<std::int64_t>(i));
        }
        ok = ok && listener.announced(hash(kHashA), 4000).empty() &&
             listener.announced(hash(kHashB), 4000).size() == LsdListener::kMaxEntries;
        return ok;
    }, true);
    if (rc == 77) WARN("skipped: cannot create a network namespace");
    else CHECK(rc == 0);
}

// Sends datagrams to 239.192.152.143:6771 on loopback, or to
// 127.0.0.1:6771 (unicast) with `to_group` false.
class LsdSender {
public:
    LsdSender() {
        const in_addr lo{htonl(INADDR_LOOPBACK)};
        ok_ = fd_ >= 0 && setsockopt(fd_, IPPROTO_IP, IP_MULTICAST_IF, &lo, sizeof lo) == 0;
    }
    ~LsdSender() { close(fd_); }
    bool send(const std::string& datagram, bool to_group = true) {
        sockaddr_in to{};
        to.sin_family = AF_INET;
        to.sin_port = htons(6771);
        inet_pton(AF_INET, to_group ? "239.192.152.143" : "127.0.0.1", &to.sin_addr);
        ok_ = ok_ && sendto(fd_, datagram.data(), datagram.size(), 0, reinterpret_cast<const sockaddr*>(&to),
                            sizeof to) == static_cast<ssize_t>(datagram.size());
        return ok_;
    }

private:
    int fd_ = socket(AF_INET, SOCK_DGRAM, 0);
    bool ok_ = false;
};

TEST_CASE("LsdListener hears announces to the LSD group and ignores other datagrams", "[p2p][lsd]") {
    const int rc = run_in_private_netns([] {
        LsdListener listener(lt::make_address("127.0.0.1"));
        LsdSender sender;
        bool ok = sender.send("garbage") && sender.send(announce("6881", "Infohash: " + kHashA + "\r\n"));
        // A unicast datagram to port 6771 is not the group's: not heard.
        ok = ok && sender.send(announce("6882", "Infohash: " + kHashA + "\r\n"), false);
        usleep(100 * 1000);
        listener.drain(5000);
        const auto peers = listener.announced(hash(kHashA), 5000);
        return ok && peers == std::vector<lt::tcp::endpoint>{
                                  lt::tcp::endpoint(lt::make_address("127.0.0.1"), 6881)};
    }, true);
    if (rc == 77) WARN("skipped: cannot create a network namespace");
    else CHECK(rc == 0);
}

TEST_CASE("LsdListener reads at most 64 datagrams a drain, so that a flood costs a tick a bounded time",
          "[p2p][lsd]") {
    const int rc = run_in_private_netns([] {
        LsdListener listener(lt::make_address("127.0.0.1"));
        LsdSender sender;
        bool ok = true;
        for (int i = 0; i < 100; ++i)  // each one a peer of its own
            ok = ok && sender.send(announce(std::to_string(10000 + i), "Infohash: " + kHashA + "\r\n"));
        usleep(100 * 1000);
        listener.drain(5000);
        ok = ok && listener.announced(hash(kHashA), 5000).size() == 64;
        listener.drain(5000);  // the rest, on the next tick
        return ok && listener.announced(hash(kHashA), 5000).size() == 100;
    }, true);
    if (rc == 77) WARN("skipped: cannot create a network namespace");
    else CHECK(rc == 0);
}

TEST_CASE("a session whose LSD listener cannot be made says why and peers on", "[p2p][lsd]") {
    const int rc = run_in_private_netns([] {
        // Port 6771 taken without SO_REUSEADDR: neither the listener nor
        // libtorrent's own LSD socket can have it.
        const int taken = socket(AF_INET, SOCK_DGRAM, 0);
        sockaddr_in at{};
        at.sin_family = AF_INET;
        at.sin_port = htons(6771);
        if (bind(taken, reinterpret_cast<const sockaddr*>(&at), sizeof at) != 0) return false;
        dopt::p2p::SessionSettings s = dopt::p2p::test_support::loopback_settings();
        s.lan_discovery = true;
        dopt::p2p::PeerSession session(s);
        const bool failed = session.lsd_listener_error().find("LSD listener: bind") == 0;
        close(taken);
        s.listen = "127.0.0.1:0";
        session.reconfigure(s);  // the port free again: made
        return failed && session.listening() && session.lsd_listener_error().empty();
    }, true);
    if (rc == 77) WARN("skipped: cannot create a network namespace");
    else CHECK(rc == 0);
}
