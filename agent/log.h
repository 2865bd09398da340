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

// Writes one line to stderr, with the secrets of any http(s) URL in it
// removed (redact_url_secrets): a job's URL may carry a password or a token,
// and the journal is readable by more users than the job's owner.
void log(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

// `text` with, in every http:// or https:// URL in it (up to whitespace or a
// quote), the userinfo ("user:pass@") replaced by "[redacted]@" and the query
// and fragment by "?[redacted]". Host and path stay, so a line still says
// which file it is about. Job URLs reach the log only through this.
std::string redact_url_secrets(const std::string& text);

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
