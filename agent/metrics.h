// The agent's metrics (docs/metrics.md): usage counters kept per calendar
// month (UTC) and job owner in the job table (schema v8, `usage` rows), the
// Prometheus text exposition of them and of the agent's gauges, and the
// textfile written for node_exporter.
//
// Counters are the sums of every stored month, so a `_total` survives a
// restart; what was counted after the last write to the job table (at most
// UsageTotals' flush period) is lost by a crash, which Prometheus reads as
// a counter reset.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "storage/job_store.h"

namespace dopt::agent {

// Counter names as stored in the `usage` rows.
inline constexpr const char* kOriginReceivedBytes = "origin_received_bytes";
inline constexpr const char* kPeerReceivedBytes = "peer_received_bytes";
inline constexpr const char* kPeerSentBytes = "peer_sent_bytes";  // owner kAgentOwner
inline constexpr const char* kOriginRequests = "origin_requests";
std::string job_errors_counter(storage::ErrorContext context);  // "job_errors:transport"
inline constexpr std::int64_t kAgentOwner = -1;  // counts of no one user: bytes to peers

// "YYYY-MM" of a unix time, UTC; and the month before such a month.
std::string month_of(std::int64_t unix_time);
std::string month_before(const std::string& month);

// Which owners' counts a reader may see: root every one; another user
// their own and the agent's (kAgentOwner).
using OwnerFilter = std::function<bool(std::int64_t owner_uid)>;
OwnerFilter owners_visible_to(std::uint32_t uid);

// Every usage count the job table holds, plus what was added since the last
// write. Main loop only.
class UsageTotals {
public:
    explicit UsageTotals(const std::vector<storage::UsageCount>& stored);
    void add(std::int64_t owner_uid, const std::string& counter, std::uint64_t n, std::int64_t now);
    bool unwritten() const { return !unwritten_.empty(); }
    // Writes what was added since the last write in one transaction. Throws
    // StorageError, keeping it for the next try.
    void write(storage::JobStore& store);
    // The sum of `counter` over the owners `visible` accepts, in `month`
    // ("" = every month).
    std::uint64_t sum(const std::string& counter, const std::string& month, const OwnerFilter& visible) const;

private:
    using Key = std::tuple<std::string, std::int64_t, std::string>;  // month, owner, counter
    std::map<Key, std::uint64_t> totals_;
    std::map<Key, std::uint64_t> unwritten_;
};

// The agent's figures of the moment that are not counters, as one reader may
// see them (their own jobs and cache entries; root: all).
struct MetricsGauges {
    std::map<std::string, std::uint64_t> jobs_by_state;  // every state name, zeros included
    std::uint64_t cache_bytes = 0;
    std::uint64_t cache_entries = 0;
    bool peering = false;
    std::uint64_t connected_peers = 0;
    std::map<std::string, std::uint64_t> peers_by_source;  // "tracker" -> n; empty: peering off
};

// The Prometheus text exposition (format 0.0.4) of the counters `visible`
// accepts, this month's and last month's totals (by `now`) and `gauges`.
// Names no job, file, URL or user.
std::string prometheus_text(const UsageTotals& usage, const OwnerFilter& visible,
                            const MetricsGauges& gauges, std::int64_t now);

// Replaces `path` with `text` for node_exporter: a new file in the same
// folder (O_EXCL|O_NOFOLLOW: never an existing file, never through a
// symlink), mode 0644, renamed over `path` (a symlink there is replaced, not
// followed). Refuses a folder owned by another user than root or the
// agent's, or writable by every user. Returns "" or what went wrong.
std::string write_textfile(const std::string& path, const std::string& text);

}  // namespace dopt::agent
