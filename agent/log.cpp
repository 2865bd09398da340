#include "agent/log.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <strings.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/uio.h>
// CODE_FILE/LINE/FUNC would name this file's sender, not the line that logged.
#define SD_JOURNAL_SUPPRESS_LOCATION
#include <systemd/sd-journal.h>
#include <unistd.h>

namespace dopt::agent {

namespace {
std::atomic<int> g_level{static_cast<int>(LogLevel::Info)};

std::function<std::string(const std::string&)> g_job_url;

// True when stderr is the journal's stream: $JOURNAL_STREAM ("DEV:INO",
// set by systemd) names stderr's device and inode. A child whose stderr
// was redirected elsewhere inherits the variable but not the stream.
bool stderr_is_journal() {
    const char* stream = std::getenv("JOURNAL_STREAM");
    struct stat st{};
    if (stream == nullptr || ::fstat(STDERR_FILENO, &st) != 0) return false;
    unsigned long long dev = 0, ino = 0;
    if (std::sscanf(stream, "%llu:%llu", &dev, &ino) != 2) return false;
    return dev == static_cast<unsigned long long>(st.st_dev) &&
           ino == static_cast<unsigned long long>(st.st_ino);
}

bool to_journal() {
    static const bool journal = stderr_is_journal();
    return journal;
}

// Sends one record with its fields; false when the journal did not take it.
bool send_to_journal(LogLevel level, const std::string& message) {
    std::vector<std::string> fields = journal_fields(level, message);
    std::vector<iovec> iov;
    for (auto& f : fields) iov.push_back({f.data(), f.size()});
    return sd_journal_sendv(iov.data(), static_cast<int>(iov.size())) == 0;
}

// "job <id>: ..." -> id (a job id is a UUID: hex digits and dashes); ""
// for a record about no job ("job table: ...").
std::string job_of(const std::string& message) {
    if (message.rfind("job ", 0) != 0) return "";
    size_t end = message.find(": ", 4);
    if (end == std::string::npos || end == 4) return "";
    std::string id = message.substr(4, end - 4);
    bool job_id = std::all_of(id.begin(), id.end(), [](char c) {
        return c == '-' || std::isxdigit(static_cast<unsigned char>(c));
    });
    return job_id ? id : "";
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

std::string redact_url_secrets(const std::string& text) {
    auto starts_with_scheme = [&](size_t i) -> size_t {  // length of "http[s]://", or 0
        for (const char* scheme : {"http://", "https://"}) {
            size_t n = std::strlen(scheme);
            if (text.size() - i >= n && strncasecmp(text.c_str() + i, scheme, n) == 0) return n;
        }
        return 0;
    };
    auto ends_url = [](char c) {
        return std::isspace(static_cast<unsigned char>(c)) || c == '\'' || c == '"' || c == '<' ||
               c == '>';
    };
    std::string out;
    out.reserve(text.size());
    size_t i = 0;
    while (i < text.size()) {
        size_t scheme_len = starts_with_scheme(i);
        if (scheme_len == 0) {
            out += text[i++];
            continue;
        }
        size_t end = i + scheme_len;
        while (end < text.size() && !ends_url(text[end])) ++end;
        const std::string url = text.substr(i, end - i);
        size_t authority_end = url.find_first_of("/?#", scheme_len);
        if (authority_end == std::string::npos) authority_end = url.size();
        size_t at = url.rfind('@', authority_end);
        out += url.substr(0, scheme_len);
        size_t host_start = scheme_len;
        if (at != std::string::npos && at >= scheme_len) {
            out += "[redacted]@";
            host_start = at + 1;
        }
        size_t secret = url.find_first_of("?#", authority_end);
        out += url.substr(host_start, (secret == std::string::npos ? url.size() : secret) - host_start);
        if (secret != std::string::npos) out += "?[redacted]";
        i = end;
    }
    return out;
}

std::string shareable_url(const std::string& url) {
    size_t scheme = url.find("://");
    if (scheme == std::string::npos) return "";
    std::string name = url.substr(0, scheme);
    if (strcasecmp(name.c_str(), "http") != 0 && strcasecmp(name.c_str(), "https") != 0) return "";
    size_t authority_end = url.find('/', scheme + 3);
    std::string authority = url.substr(scheme + 3, authority_end == std::string::npos
                                                       ? std::string::npos
                                                       : authority_end - scheme - 3);
    if (authority.find('@') != std::string::npos || url.find_first_of("?#") != std::string::npos)
        return "";
    for (char c : url)
        if (std::iscntrl(static_cast<unsigned char>(c)) || c == ' ') return "";
    return url;
}

void set_job_url_lookup(std::function<std::string(const std::string& job_id)> lookup) {
    g_job_url = std::move(lookup);
}

std::vector<std::string> journal_fields(LogLevel level, const std::string& message) {
    std::vector<std::string> fields = {"MESSAGE=" + message,
                                       "PRIORITY=" + std::to_string(syslog_priority(level)),
                                       "SYSLOG_IDENTIFIER=doptd"};
    const std::string job = job_of(message);
    if (job.empty()) return fields;
    fields.push_back("DOPT_JOB=" + job);
    const std::string url = g_job_url ? shareable_url(g_job_url(job)) : "";
    if (!url.empty()) fields.push_back("DOPT_URL=" + url);
    return fields;
}

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
    int n = 0;
    if (!to_journal()) {
        timeval tv{};
        gettimeofday(&tv, nullptr);
        tm t{};
        localtime_r(&tv.tv_sec, &t);
        n = std::snprintf(line, sizeof line, "%02d:%02d:%02d.%03d doptd %s: ", t.tm_hour,
                          t.tm_min, t.tm_sec, static_cast<int>(tv.tv_usec / 1000),
                          level_tag(level));
    }
    // The whole message first, then the redaction, then the cut to one
    // line's length: a cut before the redaction could leave half a secret.
    std::string text(line, static_cast<size_t>(n));
    va_list ap;
    va_start(ap, fmt);
    va_list again;
    va_copy(again, ap);
    int m = std::vsnprintf(nullptr, 0, fmt, ap);
    va_end(ap);
    if (m > 0) {
        std::string message(static_cast<size_t>(m) + 1, '\0');
        std::vsnprintf(message.data(), message.size(), fmt, again);
        message.resize(static_cast<size_t>(m));
        text += message;
    }
    va_end(again);
    if (text.find("://") != std::string::npos) text = redact_url_secrets(text);
    if (text.size() > sizeof line - 2) text.resize(sizeof line - 2);
    if (to_journal()) {
        if (send_to_journal(level, text)) return;
        text = "<" + std::to_string(syslog_priority(level)) + ">" + text;  // the stream then
    }
    text += '\n';
    ssize_t w = ::write(STDERR_FILENO, text.data(), text.size());
    (void)w;
}

}  // namespace dopt::agent
