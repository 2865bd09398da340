// doptd's configuration: built-in defaults, overridden by a TOML file.
// See docs/config.md for every key.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace dopt::agent {

// A config file that cannot be used. what() names the file and line:
// "/etc/dopt/doptd.conf:12: max_jobs must be a positive integer".
class ConfigError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

struct Config {
    // Paths. Defaults depend on who runs the agent (default_config()).
    std::string state_dir;               // SQLite job table (jobs.db), lock file
    std::string cache_dir;               // peer cache
    std::string socket;                  // Unix socket libdopt connects to
    std::string log_level = "info";      // error, warn, info, debug
    // The account the system agent runs its network-facing part as. Used only
    // when doptd starts as root: "" keeps everything root (a warning at
    // start); a name makes doptd privilege-separated (docs/config.md, "user").
    std::string user;
    // Real folders (and what is below them) where a privilege-separated
    // agent writes files of root and of system accounts (uid below UID_MIN);
    // empty: nowhere (docs/config.md, "system_job_dirs").
    std::vector<std::string> system_job_dirs;

    // [jobs]
    int max_jobs = 4;                    // jobs transferring at once
    int max_jobs_per_user = 1000;        // jobs one uid may have in the table, any state
    int max_connections = 8;             // origin connections at once, all jobs
    std::uint32_t no_progress_timeout = 14 * 24 * 3600;  // seconds (BITS default)
    std::uint32_t retention = 7 * 24 * 3600;      // ended jobs kept this long
    std::uint32_t max_job_age = 30 * 24 * 3600;   // never-completed jobs cancelled after
    std::uint32_t retry_min_delay = 5;   // seconds, first retry after a transient error
    std::uint32_t retry_max_delay = 600; // seconds, backoff ceiling
    // Flush each file to stable storage before it counts as transferred (so
    // a power cut never leaves a delivered file with missing bytes). Off
    // trades that for speed where the disk is slower than the network.
    bool sync_on_complete = true;
    // Seconds a file operation for another user (in a child with the
    // owner's rights) may take before the child is killed and the job fails.
    std::uint32_t file_op_timeout = 10;

    // [ipc] what one uid may hold of the socket (ipc_server.h)
    int max_connections_per_user = 128;
    std::uint64_t max_reply_backlog_per_user = 8u << 20;  // bytes of unread replies

    // [http]
    std::string proxy;                   // "" = from the environment (http_proxy, ...)
    std::string user_agent = "dopt/0.1";
    std::uint32_t connect_timeout = 30;  // seconds
    std::uint32_t low_speed_time = 60;   // seconds below 1 byte/s before a stall is a transient error
    std::uint64_t max_rate_foreground = 0;  // bytes/s from the origin, 0 = unlimited
    std::uint64_t max_rate_background = 0;
    std::string ca_file;                 // extra CA bundle, "" = system default

    // [p2p]
    bool p2p_enabled = false;            // peering off in the built-in defaults
    std::string p2p_listen;              // "addr:port"; peering needs it
    bool lan_discovery = true;
    std::vector<std::string> peers;      // static "addr:port"
    std::vector<std::string> allowed_networks;  // CIDRs; empty = listen subnets
    bool metainfo_probe = true;          // look for URL + metainfo_suffix beside the content
    std::string metainfo_suffix = ".torrent";
    int origin_requests = 4;             // piece requests to the origin at once, per file, this agent
    int swarm_origin_requests = 8;       // the same over the whole swarm; also its origin fetchers
    std::uint64_t max_upload_rate = 0;   // bytes/s to peers, 0 = unlimited
    std::uint64_t max_download_rate = 0; // bytes/s from peers, 0 = unlimited
    bool throttle_lan = false;           // apply the two limits to LAN peers too
    // Content identity (docs/design.md): how long a job with a SHA-256 and
    // no metainfo waits for a LAN holder before the origin (0: no lookup),
    // and how long a follower waits for the leader's copy.
    int content_lookup_ms = 1000;
    int content_follow_ms = 120'000;

    // [cache] the peer cache in cache_dir
    std::uint64_t cache_max_size = 10ULL << 30;   // bytes
    int cache_max_disk_percent = 10;     // of the file system cache_dir is on
    std::uint32_t cache_max_age = 3 * 24 * 3600;  // seconds unused before eviction (DO's default)
    std::uint64_t cache_min_file_size = 1 << 20;  // smaller content is not cached

    // [metrics] the Prometheus text (docs/metrics.md) written for
    // node_exporter's textfile collector: "" = not written.
    std::string metrics_textfile;        // absolute path ending in ".prom"
    std::uint32_t metrics_interval = 60; // seconds between writes
    std::string source;                  // file the config came from ("" = defaults)
};

// Built-in defaults. As root: /var/lib/dopt, /var/cache/dopt,
// /run/dopt/doptd.sock. As a user: $XDG_STATE_HOME/dopt (~/.local/state/dopt),
// $XDG_CACHE_HOME/dopt (~/.cache/dopt), $XDG_RUNTIME_DIR/dopt/doptd.sock
// (falls back to state_dir/doptd.sock when XDG_RUNTIME_DIR is unset).
Config default_config();

// Reads `path` over the defaults. Throws ConfigError naming the file and line
// for a syntax error, a wrong type or an out-of-range value. Unknown keys are
// not errors: each is appended to `warnings` ("file:line: unknown key 'x'").
Config load_config(const std::string& path, std::vector<std::string>& warnings);

}  // namespace dopt::agent
