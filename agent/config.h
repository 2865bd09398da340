// doptd's configuration: built-in defaults, overridden by a TOML file.
// See docs/config.md for every key.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
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
    // Seconds without work after which an agent systemd started through its
    // socket (doptd.socket) exits; the socket stays and the next client
    // starts it again. 0 = never. Not used by an agent that bound its own
    // socket (docs/config.md, "idle_exit").
    std::uint32_t idle_exit = 600;

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
    std::string p2p_listen;              // "addr:port" or "interface:port"; peering needs it
    bool lan_discovery = true;
    std::vector<std::string> peers;      // static "addr:port"
    std::vector<std::string> allowed_networks;  // CIDRs; empty = listen subnets
    // Tracker announce URLs (http, https, udp) every torrent is announced
    // to; empty: none. A URL's user info or query may hold a passkey
    // (redacted_tracker()).
    std::vector<std::string> trackers;
    // Group key: torrents are announced to the trackers under a hash derived
    // from it (p2p::group_info_hash), so other groups never meet this one
    // there. A secret: never printed. "" = no group.
    std::string group;
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
    std::vector<std::string> drop_ins;   // then these, in the order read (drop_in_dir)
    // Where each key a file set was set, last file wins: "jobs.max_jobs" ->
    // "/etc/dopt/doptd.conf.d/10-fleet.conf:3". A key not here is a default.
    std::map<std::string, std::string> origins;
};

// `[p2p] listen` naming a network interface ("eth0:7881", "eth0.100:7881")
// rather than an address.
struct ListenInterface {
    std::string name;
    int port = 0;
};
// The interface and port of a listen value of that form; nullopt for an
// address form ("a.b.c.d:port", "[v6]:port") or a malformed value.
std::optional<ListenInterface> listen_interface(const std::string& listen);

// At most this many [p2p] trackers.
inline constexpr std::size_t kMaxTrackers = 8;
// A tracker URL as logs and --check-config show it: user info and query
// (where passkeys go) replaced by "[redacted]".
std::string redacted_tracker(const std::string& url);

// Built-in defaults. As root: /var/lib/dopt, /var/cache/dopt,
// /run/dopt/doptd.sock. As a user: $XDG_STATE_HOME/dopt (~/.local/state/dopt),
// $XDG_CACHE_HOME/dopt (~/.cache/dopt), $XDG_RUNTIME_DIR/dopt/doptd.sock
// (falls back to state_dir/doptd.sock when XDG_RUNTIME_DIR is unset).
Config default_config();

// The drop-in folder of config file `path`: "PATH.d"
// (/etc/dopt/doptd.conf.d for /etc/dopt/doptd.conf).
std::string drop_in_dir(const std::string& path);

// Whether load_config() checks that root alone can write each file: by
// default, when the process is root. main() turns it on for good in a
// system agent, which reloads (SIGHUP) after dropping root.
void set_system_agent_config(bool on);

// Reads `path` over the defaults, then each drop-in of drop_in_dir(path)
// whose name ends in ".conf" and does not start with '.', in byte order of
// the names; a later file's key overrides an earlier one's. No folder: no
// drop-ins. Throws ConfigError naming the file and line for a syntax error,
// a wrong type or an out-of-range value, and naming the file for one that
// cannot be read or, in a system agent (set_system_agent_config), one (or
// the folder) that is not root's or that others may write. Unknown keys are
// not errors: each is appended to `warnings` ("file:line: unknown key 'x'").
Config load_config(const std::string& path, std::vector<std::string>& warnings);

// Every key of the configuration with its value (as TOML writes it) and
// where it came from ("FILE:LINE" or "default"), in the order of
// docs/config.md: what `doptd --check-config` prints.
struct EffectiveSetting {
    std::string key;     // "jobs.max_jobs"
    std::string value;   // "4", "\"info\"", "[\"10.0.0.0/8\"]"
    std::string origin;  // "FILE:LINE" or "default"
};
std::vector<EffectiveSetting> effective_settings(const Config& config);

// `doptd --check-config [--config FILE]`: loads `path` (the built-in
// defaults when empty) and prints to stdout the files read and each
// effective setting as `key = value  # origin`, warnings to stderr; or the
// error to stderr. Returns the exit code: 0 usable, 1 not. Opens nothing
// but the config files.
int check_config(const std::string& path);

}  // namespace dopt::agent
