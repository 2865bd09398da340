// effective_settings(): every key of a Config with its value and where it
// came from, for `doptd --check-config`. A key added to Config is added here
// too (config_test.cpp checks that every key a full file sets is listed).
#include "agent/config.h"
#include "agent/interface_address.h"
#include "agent/log.h"

#include <cstdio>

namespace dopt::agent {
namespace {

// A TOML basic string: quotes, backslashes and control characters escaped.
std::string quoted(const std::string& s) {
    std::string out = "\"";
    for (unsigned char ch : s) {
        if (ch == '"' || ch == '\\') {
            out += '\\';
            out += static_cast<char>(ch);
        } else if (ch < 0x20 || ch == 0x7f) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", ch);
            out += buf;
        } else {
            out += static_cast<char>(ch);
        }
    }
    return out + "\"";
}

std::string quoted_list(const std::vector<std::string>& list) {
    std::string out = "[";
    for (std::size_t i = 0; i < list.size(); ++i) out += (i ? ", " : "") + quoted(list[i]);
    return out + "]";
}

// A proxy setting without its user and password, whatever its scheme
// ("socks5h://u:p@h:1080") or none ("u:p@h:3128", as curl takes it):
// everything of the authority before its last '@' is replaced.
std::string without_proxy_credentials(const std::string& proxy) {
    const std::size_t scheme = proxy.find("://");
    const std::size_t start = scheme == std::string::npos ? 0 : scheme + 3;
    std::size_t end = proxy.find_first_of("/?#", start);
    if (end == std::string::npos) end = proxy.size();
    const std::size_t at = proxy.rfind('@', end == 0 ? 0 : end - 1);
    if (at == std::string::npos || at < start) return proxy;
    return proxy.substr(0, start) + "[redacted]" + proxy.substr(at);
}

// A passkey in a tracker's user info or query is not printed.
std::vector<std::string> redacted_trackers(const std::vector<std::string>& trackers) {
    std::vector<std::string> out;
    for (const auto& t : trackers) out.push_back(redacted_tracker(t));
    return out;
}

std::string boolean(bool b) { return b ? "true" : "false"; }

template <typename T>
std::string number(T n) {
    return std::to_string(n);
}

// Every key, in docs/config.md's order, with its value's text.
std::vector<std::pair<const char*, std::string>> values(const Config& c) {
    return {
        {"state_dir", quoted(c.state_dir)},
        {"cache_dir", quoted(c.cache_dir)},
        {"socket", quoted(c.socket)},
        {"log_level", quoted(c.log_level)},
        {"user", quoted(c.user)},
        {"idle_exit", number(c.idle_exit)},
        {"system_job_dirs", quoted_list(c.system_job_dirs)},
        {"jobs.max_jobs", number(c.max_jobs)},
        {"jobs.max_jobs_per_user", number(c.max_jobs_per_user)},
        {"jobs.max_connections", number(c.max_connections)},
        {"jobs.no_progress_timeout", number(c.no_progress_timeout)},
        {"jobs.retention", number(c.retention)},
        {"jobs.max_job_age", number(c.max_job_age)},
        {"jobs.retry_min_delay", number(c.retry_min_delay)},
        {"jobs.retry_max_delay", number(c.retry_max_delay)},
        {"jobs.sync_on_complete", boolean(c.sync_on_complete)},
        {"jobs.file_op_timeout", number(c.file_op_timeout)},
        {"ipc.max_connections_per_user", number(c.max_connections_per_user)},
        {"ipc.max_reply_backlog_per_user", number(c.max_reply_backlog_per_user)},
        // A proxy's password is not printed (the output may go to a log).
        {"http.proxy", quoted(redact_url_secrets(without_proxy_credentials(c.proxy)))},
        {"http.user_agent", quoted(c.user_agent)},
        {"http.connect_timeout", number(c.connect_timeout)},
        {"http.low_speed_time", number(c.low_speed_time)},
        {"http.max_rate_foreground", number(c.max_rate_foreground)},
        {"http.max_rate_background", number(c.max_rate_background)},
        {"http.ca_file", quoted(c.ca_file)},
        {"p2p.enabled", boolean(c.p2p_enabled)},
        {"p2p.listen", quoted(c.p2p_listen)},
        {"p2p.lan_discovery", boolean(c.lan_discovery)},
        {"p2p.peers", quoted_list(c.peers)},
        {"p2p.allowed_networks", quoted_list(c.allowed_networks)},
        {"p2p.trackers", quoted_list(redacted_trackers(c.trackers))},
        {"p2p.group", quoted(c.group.empty() ? "" : "[redacted]")},  // a secret
        {"p2p.metainfo_probe", boolean(c.metainfo_probe)},
        {"p2p.metainfo_suffix", quoted(c.metainfo_suffix)},
        {"p2p.origin_requests", number(c.origin_requests)},
        {"p2p.swarm_origin_requests", number(c.swarm_origin_requests)},
        {"p2p.max_upload_rate", number(c.max_upload_rate)},
        {"p2p.max_download_rate", number(c.max_download_rate)},
        {"p2p.throttle_lan", boolean(c.throttle_lan)},
        {"p2p.content_lookup_ms", number(c.content_lookup_ms)},
        {"p2p.content_follow_ms", number(c.content_follow_ms)},
        {"cache.max_size", number(c.cache_max_size)},
        {"cache.max_disk_percent", number(c.cache_max_disk_percent)},
        {"cache.max_age", number(c.cache_max_age)},
        {"cache.min_file_size", number(c.cache_min_file_size)},
        {"metrics.textfile", quoted(c.metrics_textfile)},
        {"metrics.interval", number(c.metrics_interval)},
    };
}

}  // namespace

std::vector<EffectiveSetting> effective_settings(const Config& config) {
    std::vector<EffectiveSetting> out;
    for (auto& [key, value] : values(config)) {
        auto it = config.origins.find(key);
        out.push_back({key, std::move(value), it != config.origins.end() ? it->second : "default"});
    }
    return out;
}

int check_config(const std::string& path) {
    Config config;
    std::vector<std::string> warnings;
    try {
        config = path.empty() ? default_config() : load_config(path, warnings);
    } catch (const ConfigError& e) {
        std::fprintf(stderr, "doptd: %s\n", e.what());
        return 1;
    }
    for (const auto& w : warnings) std::fprintf(stderr, "doptd: warning: %s\n", w.c_str());
    std::printf("# read: %s\n", path.empty() ? "nothing (built-in defaults)" : path.c_str());
    for (const auto& file : config.drop_ins) std::printf("# then: %s\n", file.c_str());
    for (const auto& s : effective_settings(config))
        std::printf("%s = %s  # %s\n", s.key.c_str(), s.value.c_str(), s.origin.c_str());
    if (const auto iface = listen_interface(config.p2p_listen)) {
        const std::string address = interface_address(iface->name);
        std::printf("# p2p.listen: %s %s\n", iface->name.c_str(),
                    address.empty() ? "has no address now (peering would be paused)"
                                    : ("has " + address + " now").c_str());
    }
    return 0;
}

}  // namespace dopt::agent
