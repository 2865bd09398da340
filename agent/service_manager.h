// What doptd tells systemd, and what it takes from it (sd_notify(3),
// sd_listen_fds(3)). Without systemd (no $NOTIFY_SOCKET, no $LISTEN_FDS)
// every call here does nothing and the agent binds its own socket.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace dopt::agent {

// The agent's side of Type=notify: READY=1, STATUS=, WATCHDOG=1,
// RELOADING=1, STOPPING=1 on $NOTIFY_SOCKET. Main loop only.
//
// Contract:
//  - STATUS= is sent when its text changes, at most once per
//    kStatusIntervalMs; the text is asked for (status_text) only then, so
//    it may cost a little (it counts peers).
//  - With $WATCHDOG_USEC set for this process (WatchdogSec= in the unit),
//    WATCHDOG=1 goes out every half of it, from the loop: a loop that
//    hangs stops the pings and systemd restarts the agent.
//  - deadline_ms() is when tick() next has something to do; the loop
//    wakes by then.
class ServiceNotifier {
public:
    static constexpr std::int64_t kStatusIntervalMs = 1000;

    // Reads $NOTIFY_SOCKET and $WATCHDOG_USEC / $WATCHDOG_PID.
    explicit ServiceNotifier(std::function<std::string()> status_text);

    bool enabled() const { return enabled_; }
    std::int64_t watchdog_interval_ms() const { return watchdog_ms_; }

    // READY=1 with the first STATUS=; also ends a RELOADING=1.
    void ready(std::int64_t now_ms);
    void reloading();
    void stopping();
    // Sends what is due at `now_ms`: a watchdog ping, a changed status.
    void tick(std::int64_t now_ms);
    std::int64_t deadline_ms() const;

private:
    void send(const std::string& message);

    std::function<std::string()> status_text_;
    bool enabled_ = false;
    std::int64_t watchdog_ms_ = 0;          // between pings; 0: no watchdog
    std::int64_t next_ping_ms_ = 0;
    std::int64_t next_status_ms_ = 0;
    std::string last_status_;
};

// The listening socket systemd passed (a socket unit, or
// systemd-socket-activate), checked to be a listening AF_UNIX stream
// socket bound to `expected_path`; -1 when none was passed. The
// $LISTEN_* variables are removed so that no child sees them, and the
// descriptor is made close-on-exec. Throws std::runtime_error when
// systemd passed something else (several sockets, another kind, another
// path): the unit and the config disagree, and binding a second socket
// would leave clients of the unit's one unanswered.
int take_activated_socket(const std::string& expected_path);

}  // namespace dopt::agent
