// Helpers for p2p's tests on loopback (session_test.cpp, content_test.cpp):
// sessions with static peers, a pump that drives them as the agent's main
// loop does, and a hand-made peer for sending what libtorrent never would.
#pragma once

#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

#include <libtorrent/alert.hpp>
#include <libtorrent/sha1_hash.hpp>
#include <libtorrent/torrent_handle.hpp>
#include <libtorrent/torrent_status.hpp>

#include "p2p/session.h"

namespace dopt::p2p::test_support {

// Runs `check` in a child process inside a new, empty network namespace
// (nothing there can reach this machine's networks), its loopback brought
// up when `loopback_up`. Returns 0 when check() returned true, 1 when
// false, 77 when no namespace could be made.
inline int run_in_private_netns(const std::function<bool()>& check, bool loopback_up = false) {
    const pid_t pid = fork();
    if (pid < 0) return 77;
    if (pid == 0) {
        if (unshare(CLONE_NEWNET) != 0 && unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0) _exit(77);
        if (loopback_up) {
            const int s = socket(AF_INET, SOCK_DGRAM, 0);
            ifreq ifr{};
            std::strcpy(ifr.ifr_name, "lo");
            if (s < 0 || ioctl(s, SIOCGIFFLAGS, &ifr) != 0) _exit(77);
            ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
            if (ioctl(s, SIOCSIFFLAGS, &ifr) != 0) _exit(77);
            close(s);
        }
        bool ok = false;
        try {
            ok = check();
        } catch (...) {
        }
        _exit(ok ? 0 : 1);
    }
    int status = 0;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return 1;
    return WEXITSTATUS(status);
}

inline std::vector<char> read_file(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::vector<char>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline SessionSettings loopback_settings() {
    SessionSettings s;
    s.listen = "127.0.0.1:0";
    s.lan_discovery = false;
    return s;
}

inline std::string address_of(const PeerSession& s) {
    return "127.0.0.1:" + std::to_string(s.listen_port());
}

inline SessionSettings with_static_peer(const PeerSession& peer) {
    SessionSettings s = loopback_settings();
    s.peers = {address_of(peer)};
    return s;
}

// Drives sessions the way the agent's main loop does: poll on their
// alert_fds, pop alerts, tick once a second, until `done` or the timeout.
class Pump {
public:
    using AlertFn = std::function<void(std::size_t session_index, lt::alert*)>;

    explicit Pump(std::vector<PeerSession*> sessions, AlertFn on_alert = {})
        : sessions_(std::move(sessions)), on_alert_(std::move(on_alert)) {}

    bool run_until(const std::function<bool()>& done,
                   std::chrono::milliseconds timeout = std::chrono::seconds(30),
                   const std::function<void()>& every_second = {}) {
        using clock = std::chrono::steady_clock;
        const auto deadline = clock::now() + timeout;
        auto next_tick = clock::now();
        while (clock::now() < deadline) {
            std::vector<pollfd> fds;
            for (auto* s : sessions_) fds.push_back({s->alert_fd(), POLLIN, 0});
            poll(fds.data(), fds.size(), 100);
            for (std::size_t i = 0; i < sessions_.size(); ++i)
                for (lt::alert* a : sessions_[i]->pop_alerts())
                    if (on_alert_) on_alert_(i, a);
            if (clock::now() >= next_tick) {
                for (auto* s : sessions_) s->tick();
                if (every_second) every_second();
                next_tick = clock::now() + std::chrono::seconds(1);
            }
            if (done()) return true;
        }
        return false;
    }

private:
    std::vector<PeerSession*> sessions_;
    AlertFn on_alert_;
};

inline bool is_state(const lt::torrent_handle& h, lt::torrent_status::state_t state) {
    return h.status({}).state == state;
}

// A torrent ready for add_piece: libtorrent drops pieces added while it is
// still checking files.
inline bool ready_for_pieces(const lt::torrent_handle& h) {
    const auto state = h.status({}).state;
    return state == lt::torrent_status::downloading || state == lt::torrent_status::seeding ||
           state == lt::torrent_status::finished;
}

// A hand-made BitTorrent peer on a plain TCP socket, for sending what a
// well-behaved libtorrent never would.
class RawPeer {
public:
    // Connects to 127.0.0.1:port from `from` (a loopback address; nullptr:
    // whichever the kernel picks).
    explicit RawPeer(int port, const char* from = nullptr)
        : fd_(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
        if (fd_ >= 0 && from != nullptr) {
            sockaddr_in src{};
            src.sin_family = AF_INET;
            if (inet_pton(AF_INET, from, &src.sin_addr) != 1 ||
                bind(fd_, reinterpret_cast<sockaddr*>(&src), sizeof src) != 0) {
                close(fd_);
                throw std::runtime_error("RawPeer: cannot bind the source address");
            }
        }
        sockaddr_in sa{};
        sa.sin_family = AF_INET;
        sa.sin_port = htons(static_cast<std::uint16_t>(port));
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (fd_ < 0 || connect(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0)
            throw std::runtime_error("RawPeer: cannot connect");
    }
    ~RawPeer() { close(fd_); }
    RawPeer(const RawPeer&) = delete;
    RawPeer& operator=(const RawPeer&) = delete;

    void send(const std::string& bytes) {
        std::size_t done = 0;
        while (done < bytes.size()) {
            const ssize_t n = ::send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
            if (n <= 0) throw std::runtime_error("RawPeer: send failed");
            done += static_cast<std::size_t>(n);
        }
    }
    // BitTorrent handshake announcing the extension protocol (BEP 10).
    void handshake(const lt::sha1_hash& info_hash) {
        std::string h("\x13" "BitTorrent protocol", 20);
        std::string reserved(8, '\0');
        reserved[5] = 0x10;
        h += reserved;
        h.append(info_hash.data(), info_hash.size());
        h += "-XX0000-hostilepeer0";
        send(h);
    }
    // A length-prefixed message: <len><type><body>.
    static std::string message(char type, const std::string& body) {
        std::string m(4, '\0');
        const auto len = static_cast<std::uint32_t>(body.size() + 1);
        for (int i = 0; i < 4; ++i) m[static_cast<std::size_t>(i)] = static_cast<char>(len >> (24 - 8 * i));
        m += type;
        return m + body;
    }
    static std::string extended(int id, const std::string& payload) {
        return message(20, std::string(1, static_cast<char>(id)) + payload);
    }

private:
    int fd_;
};

}  // namespace dopt::p2p::test_support
