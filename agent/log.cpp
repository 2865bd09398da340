#include "agent/log.h"

#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <sys/time.h>
#include <unistd.h>

namespace dopt::agent {

namespace {
std::atomic<int> g_level{static_cast<int>(LogLevel::Info)};

// Under systemd (JOURNAL_STREAM set) lines carry a "<N>" priority prefix the
// journal understands and no timestamp of their own.
bool to_journal() {
    static const bool journal = std::getenv("JOURNAL_STREAM") != nullptr;
    return journal;
}

const char* level_tag(LogLevel level) {
    switch (level) {
    case LogLevel::Error: return "error";
    case LogLevel::Warn: return "warn";
    case LogLevel::Info: return "info";
    case LogLevel::Debug: return "debug";
    }
    return "?";
}

int syslog_priority(LogLevel level) {
    switch (level) {
    case LogLevel::Error: return 3;
    case LogLevel::Warn: return 4;
    case LogLevel::Info: return 6;
    case LogLevel::Debug: return 7;
    }
    return 6;
}
}  // namespace

bool set_log_level(const std::string& level) {
    static const char* names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; ++i) {
        if (level == names[i]) {
            g_level = i;
            return true;
        }
    }
    return false;
}

bool log_enabled(LogLevel level) { return static_cast<int>(level) <= g_level.load(); }

void log(LogLevel level, const char* fmt, ...) {
    char line[2048];
    int n;
    if (to_journal()) {
        n = std::snprintf(line, sizeof line, "<%d>", syslog_priority(level));
    } else {
        timeval tv{};
        gettimeofday(&tv, nullptr);
        tm t{};
        localtime_r(&tv.tv_sec, &t);
        n = std::snprintf(line, sizeof line, "%02d:%02d:%02d.%03d doptd %s: ", t.tm_hour,
                          t.tm_min, t.tm_sec, static_cast<int>(tv.tv_usec / 1000),
                          level_tag(level));
    }
    va_list ap;
    va_start(ap, fmt);
    int m = std::vsnprintf(line + n, sizeof line - static_cast<size_t>(n) - 1, fmt, ap);
    va_end(ap);
    size_t len = static_cast<size_t>(n) + (m < 0 ? 0 : static_cast<size_t>(m));
    if (len > sizeof line - 2) len = sizeof line - 2;
    line[len++] = '\n';
    ssize_t w = ::write(STDERR_FILENO, line, len);
    (void)w;
}

}  // namespace dopt::agent
