// The named crash points of crash_point.h. Compiled to nothing unless the
// build has DOPT_CRASH_POINTS; libc only (storage/ has points too, without
// the agent's logging), and writes its two kinds of line with write(2).
#include "common/crash_point.h"

#if defined(DOPT_CRASH_POINTS) && DOPT_CRASH_POINTS

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <unistd.h>

namespace dopt::crash_point {

namespace {

// Every point a DOPT_CRASH_POINT names; DOPT_CRASH_AT must name one of
// them. Keep in step with agent/README.md "Crash points".
constexpr const char* kCrashPointNames[] = {
    "partial_write",          // partial_file.cpp: a buffer written, the next not yet
    "swarm_piece_write",      // agent/swarm.cpp: a verified piece written into a partial file, not counted
    "store_mid_commit",       // job_store.cpp set_state: state updated, error/outbox rows and COMMIT not yet
    "store_file_mid_commit",  // job_store.cpp update_file: a file row updated, outbox row and COMMIT not yet
    "file_transferred",       // agent.cpp on_done: a file whole and synced, the job table not told
    "complete_start",         // agent.cpp deliver_files: Complete (or auto-complete) begins, nothing renamed
    "complete_renamed",       // agent.cpp deliver_files: a partial file renamed, its row not updated
    "complete_delivered",     // agent.cpp deliver_files: every file renamed, ACKNOWLEDGED not recorded
    "cache_row_deleted",      // agent/swarm.cpp: a peer cache row deleted, its folder not yet removed
};

// Written once, before main (static initialization, one thread); read by
// every thread afterwards.
char g_armed[64];                 // "" when nothing is armed
long g_armed_visit = 0;           // the visit that kills (1 = the first)
std::atomic<bool> g_is_armed{false};
std::atomic<long> g_visits{0};    // visits of the armed point so far

void say(const char* line) {
    ssize_t n = ::write(STDERR_FILENO, line, std::strlen(line));
    (void)n;
}

bool known(const char* name) {
    for (const char* k : kCrashPointNames)
        if (std::strcmp(k, name) == 0) return true;
    return false;
}

[[noreturn]] void refuse(const char* value, const char* why) {
    char line[1024];
    int n = std::snprintf(line, sizeof line, "doptd: DOPT_CRASH_AT=%s: %s; known points:", value, why);
    for (const char* k : kCrashPointNames) {
        if (n > 0 && static_cast<std::size_t>(n) < sizeof line)
            n += std::snprintf(line + n, sizeof line - static_cast<std::size_t>(n), " %s", k);
    }
    say(line);
    say("\n");
    std::_Exit(2);
}

// DOPT_CRASH_AT=<name>[:<n>]: arms the point and says so on stderr.
void arm_from_environment() {
    const char* value = std::getenv("DOPT_CRASH_AT");
    if (value == nullptr || *value == '\0') return;
    const char* colon = std::strchr(value, ':');
    std::size_t name_len = colon ? static_cast<std::size_t>(colon - value) : std::strlen(value);
    if (name_len == 0 || name_len >= sizeof g_armed) refuse(value, "no such crash point");
    std::memcpy(g_armed, value, name_len);
    g_armed[name_len] = '\0';
    if (!known(g_armed)) refuse(value, "no such crash point");
    long visit = 1;
    if (colon) {
        char* end = nullptr;
        visit = std::strtol(colon + 1, &end, 10);
        if (end == colon + 1 || *end != '\0' || visit < 1 || visit > 1000000000L)
            refuse(value, "the visit after ':' must be a whole number from 1");
    }
    g_armed_visit = visit;
    g_is_armed.store(true);
    char line[160];
    std::snprintf(line, sizeof line, "doptd: crash point armed: %s (SIGKILL at visit %ld)\n",
                  g_armed, visit);
    say(line);
}

// Arms at start, before main: doptd's log says so before anything else.
struct ArmAtStart {
    ArmAtStart() { arm_from_environment(); }
} g_arm_at_start;

}  // namespace

void reached(const char* name) {
    if (!g_is_armed.load(std::memory_order_relaxed)) return;
    if (std::strcmp(name, g_armed) != 0) return;
    long visit = g_visits.fetch_add(1) + 1;
    if (visit != g_armed_visit) return;
    char line[160];
    std::snprintf(line, sizeof line, "doptd: crash point %s: visit %ld, SIGKILL\n", name, visit);
    say(line);
    std::raise(SIGKILL);
}

}  // namespace dopt::crash_point

#endif
