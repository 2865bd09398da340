// Logging to stderr, or to the journal with fields when stderr is the
// journal (systemd's $JOURNAL_STREAM names stderr's device and inode), with
// levels. printf-style; thread-safe (one write(2) or one journal datagram
// per record).
//
// Journal fields: MESSAGE, PRIORITY (syslog: 3 error .. 7 debug),
// SYSLOG_IDENTIFIER=doptd, and for a record about a job DOPT_JOB=<job id>
// and, when its URL carries no credentials (shareable_url), DOPT_URL. A
// record is about a job when its message starts "job <id>: " (every job
// line does), so `journalctl DOPT_JOB=<id>` tells one job's story.
#pragma once

#include <functional>
#include <string>
#include <vector>

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

// `url` when it may stand whole in a journal field, "" otherwise: an
// http(s) URL with no userinfo, no query and no fragment. Those parts are
// where credentials go (user:password@, ?token=..., signed URLs), and a
// redacted URL would match no search.
std::string shareable_url(const std::string& url);

// The job's URL (its current file's), "" if unknown; the agent installs it
// for DOPT_URL and removes it (nullptr) before its jobs go. Called from the
// thread that logs: only the agent's loop logs about jobs.
void set_job_url_lookup(std::function<std::string(const std::string& job_id)> lookup);

// The journal fields ("NAME=value") of one record whose text, already
// redacted, is `message`.
std::vector<std::string> journal_fields(LogLevel level, const std::string& message);

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
