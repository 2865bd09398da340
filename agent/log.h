// Logging to stderr (the journal when run by systemd), with levels.
// printf-style; thread-safe (one write(2) per line).
#pragma once

#include <string>

namespace dopt::agent {

enum class LogLevel { Error = 0, Warn = 1, Info = 2, Debug = 3 };

// Lines below `level` are dropped. Parses "error", "warn", "info", "debug";
// anything else leaves the level unchanged and returns false.
bool set_log_level(const std::string& level);
bool log_enabled(LogLevel level);

void log(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

}  // namespace dopt::agent

#define DOPT_LOG(level, ...)                                                  \
    do {                                                                      \
        if (::dopt::agent::log_enabled(::dopt::agent::LogLevel::level))       \
            ::dopt::agent::log(::dopt::agent::LogLevel::level, __VA_ARGS__);  \
    } while (0)
#define LOG_ERROR(...) DOPT_LOG(Error, __VA_ARGS__)
#define LOG_WARN(...) DOPT_LOG(Warn, __VA_ARGS__)
#define LOG_INFO(...) DOPT_LOG(Info, __VA_ARGS__)
#define LOG_DEBUG(...) DOPT_LOG(Debug, __VA_ARGS__)
