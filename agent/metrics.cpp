#include "agent/metrics.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <random>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "storage/job_state.h"

namespace dopt::agent {

std::string job_errors_counter(storage::ErrorContext context) {
    return std::string("job_errors:") + storage::context_name(context);
}

std::string month_of(std::int64_t unix_time) {
    std::time_t t = static_cast<std::time_t>(unix_time);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char text[32];
    std::snprintf(text, sizeof text, "%04d-%02d", tm.tm_year + 1900, tm.tm_mon + 1);
    return text;
}

std::string month_before(const std::string& month) {
    int year = std::stoi(month.substr(0, 4));
    int mon = std::stoi(month.substr(5, 2)) - 1;
    if (mon == 0) {
        mon = 12;
        --year;
    }
    char text[32];
    std::snprintf(text, sizeof text, "%04d-%02d", year, mon);
    return text;
}

OwnerFilter owners_visible_to(std::uint32_t uid) {
    if (uid == 0) return [](std::int64_t) { return true; };
    return [uid](std::int64_t owner) { return owner == kAgentOwner || owner == static_cast<std::int64_t>(uid); };
}

// ---- UsageTotals -------------------------------------------------------------

UsageTotals::UsageTotals(const std::vector<storage::UsageCount>& stored) {
    for (const auto& c : stored) totals_[{c.month, c.owner_uid, c.counter}] += c.value;
}

void UsageTotals::add(std::int64_t owner_uid, const std::string& counter, std::uint64_t n, std::int64_t now) {
    if (n == 0) return;
    Key key{month_of(now), owner_uid, counter};
    totals_[key] += n;
    unwritten_[key] += n;
}

void UsageTotals::write(storage::JobStore& store) {
    std::vector<storage::UsageCount> rows;
    for (const auto& [key, n] : unwritten_)
        rows.push_back({std::get<0>(key), std::get<1>(key), std::get<2>(key), n});
    store.add_usage(rows);
    unwritten_.clear();
}

std::uint64_t UsageTotals::sum(const std::string& counter, const std::string& month,
                               const OwnerFilter& visible) const {
    std::uint64_t total = 0;
    for (const auto& [key, n] : totals_) {
        const auto& [m, owner, name] = key;
        if (name == counter && (month.empty() || m == month) && visible(owner)) total += n;
    }
    return total;
}

// ---- the text exposition -------------------------------------------------------

namespace {

// One metric family: its HELP and TYPE lines, then samples added by the caller.
class Exposition {
public:
    void family(const char* name, const char* type, const char* help) {
        text_ += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
    }
    // `labels` is "" or `name="value"` pairs whose values need no escaping
    // (state, context and month names only).
    void sample(const char* name, const std::string& labels, std::uint64_t value) {
        text_ += name;
        if (!labels.empty()) text_ += "{" + labels + "}";
        text_ += " " + std::to_string(value) + "\n";
    }
    const std::string& text() const { return text_; }

private:
    std::string text_;
};

struct CounterFamily {
    const char* counter;     // the `usage` rows' name
    const char* total_name;  // the all-time counter
    const char* month_name;  // the per-month gauge
    const char* what;
};

constexpr CounterFamily kCounters[] = {
    {kOriginReceivedBytes, "dopt_origin_received_bytes_total", "dopt_month_origin_received_bytes",
     "Bytes received from origin servers (HTTP)"},
    {kPeerReceivedBytes, "dopt_peer_received_bytes_total", "dopt_month_peer_received_bytes",
     "Verified bytes received from LAN peers"},
    {kPeerSentBytes, "dopt_peer_sent_bytes_total", "dopt_month_peer_sent_bytes",
     "Bytes sent to LAN peers (all users' content)"},
    {kOriginRequests, "dopt_origin_requests_total", "dopt_month_origin_requests",
     "HTTP requests made to origin servers"},
};

void counters(Exposition& out, const UsageTotals& usage, const OwnerFilter& visible, std::int64_t now) {
    for (const auto& c : kCounters) {
        out.family(c.total_name, "counter", (std::string(c.what) + ", since the job table was made.").c_str());
        out.sample(c.total_name, "", usage.sum(c.counter, "", visible));
    }
    const std::string month = month_of(now);
    const std::string last = month_before(month);
    for (const auto& c : kCounters) {
        out.family(c.month_name, "gauge",
                   (std::string(c.what) + " in a calendar month (UTC): this month and the one before.").c_str());
        out.sample(c.month_name, "month=\"" + month + "\"", usage.sum(c.counter, month, visible));
        out.sample(c.month_name, "month=\"" + last + "\"", usage.sum(c.counter, last, visible));
    }
    out.family("dopt_job_errors_total", "counter",
               "Jobs that ended in ERROR, by error context, since the job table was made.");
    for (int c = static_cast<int>(storage::ErrorContext::LocalFile);
         c <= static_cast<int>(storage::ErrorContext::Integrity); ++c) {
        auto context = static_cast<storage::ErrorContext>(c);
        out.sample("dopt_job_errors_total", std::string("context=\"") + storage::context_name(context) + "\"",
                   usage.sum(job_errors_counter(context), "", visible));
    }
}

}  // namespace

std::string prometheus_text(const UsageTotals& usage, const OwnerFilter& visible,
                            const MetricsGauges& gauges, std::int64_t now) {
    Exposition out;
    counters(out, usage, visible, now);
    out.family("dopt_jobs", "gauge", "Jobs in the job table, by state.");
    for (const auto& [state, n] : gauges.jobs_by_state) out.sample("dopt_jobs", "state=\"" + state + "\"", n);
    out.family("dopt_cache_size_bytes", "gauge", "Bytes of content in the peer cache.");
    out.sample("dopt_cache_size_bytes", "", gauges.cache_bytes);
    out.family("dopt_cache_entries", "gauge", "Files (torrents) in the peer cache.");
    out.sample("dopt_cache_entries", "", gauges.cache_entries);
    out.family("dopt_peering_enabled", "gauge", "1 when the agent peers on the LAN, else 0.");
    out.sample("dopt_peering_enabled", "", gauges.peering ? 1 : 0);
    out.family("dopt_connected_peers", "gauge", "LAN peer connections open now, summed over torrents.");
    out.sample("dopt_connected_peers", "", gauges.connected_peers);
    out.family("dopt_connected_peers_by_source", "gauge",
               "LAN peer connections open now by how the peer was found (tracker, lsd, static, incoming, other).");
    for (const auto& [source, n] : gauges.peers_by_source)
        out.sample("dopt_connected_peers_by_source", "source=\"" + source + "\"", n);
    return out.text();
}

// ---- the textfile ----------------------------------------------------------------

namespace {

std::string errno_text(const std::string& what) { return what + ": " + std::strerror(errno); }

// A name in the textfile's folder that node_exporter skips (not "*.prom").
std::string temporary_name(const std::string& base) {
    static std::mt19937_64 rng{std::random_device{}()};
    char suffix[24];
    std::snprintf(suffix, sizeof suffix, ".%016llx", static_cast<unsigned long long>(rng()));
    return "." + base + suffix;
}

std::string write_all(int fd, const std::string& text) {
    std::size_t done = 0;
    while (done < text.size()) {
        ssize_t n = ::write(fd, text.data() + done, text.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return errno_text("write");
        done += static_cast<std::size_t>(n);
    }
    return "";
}

}  // namespace

std::string write_textfile(const std::string& path, const std::string& text) {
    const std::size_t slash = path.rfind('/');
    const std::string dir = slash == 0 ? "/" : path.substr(0, slash);
    const std::string base = path.substr(slash + 1);
    int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd < 0) return errno_text("cannot open the folder " + dir);
    struct stat st{};
    std::string error;
    if (::fstat(dir_fd, &st) != 0) error = errno_text("cannot stat " + dir);
    else if (st.st_uid != 0 && st.st_uid != ::geteuid())
        error = dir + " belongs to uid " + std::to_string(st.st_uid) + ", neither root nor the agent's user";
    else if (st.st_mode & S_IWOTH)
        error = dir + " is writable by every user";
    const std::string tmp = temporary_name(base);
    int fd = -1;
    if (error.empty()) {
        fd = ::openat(dir_fd, tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0) error = errno_text("cannot create a file in " + dir);
    }
    if (fd >= 0) {
        error = write_all(fd, text);
        if (error.empty() && ::fchmod(fd, 0644) != 0) error = errno_text("fchmod");
        if (::close(fd) != 0 && error.empty()) error = errno_text("close");
        if (error.empty() && ::renameat(dir_fd, tmp.c_str(), dir_fd, base.c_str()) != 0)
            error = errno_text("cannot rename over " + path);
        if (!error.empty()) ::unlinkat(dir_fd, tmp.c_str(), 0);
    }
    ::close(dir_fd);
    return error;
}

}  // namespace dopt::agent
