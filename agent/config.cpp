// doptd's configuration: built-in defaults and the TOML file over them.
//
// Security: the config file is trusted input. The system agent reads
// /etc/dopt/doptd.conf, which is root-owned; a per-user agent reads only a
// file its own user names. Validation here exists to turn mistakes into clear
// messages ("FILE:LINE: ..."), not to defend against a hostile author: whoever
// can write the file already controls the agent (paths, proxy, CA bundle).
#include "agent/config.h"

#include <algorithm>
#include <arpa/inet.h>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <limits>
#include <pwd.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <toml++/toml.h>

namespace dopt::agent {
namespace {

std::string errno_text(int err) {
    char buf[256];
    // GNU strerror_r (g++ defines _GNU_SOURCE): returns the message, which may
    // or may not be in buf. Thread-safe, unlike strerror.
    return ::strerror_r(err, buf, sizeof buf);
}

// An XDG base directory variable counts only when it is set to an absolute
// path (the XDG spec: relative values are invalid and must be ignored).
const char* xdg_dir(const char* name) {
    const char* v = std::getenv(name);
    return (v != nullptr && v[0] == '/') ? v : nullptr;
}

std::string home_dir() {
    const char* home = std::getenv("HOME");
    if (home != nullptr && home[0] == '/') return home;
    struct passwd pw;
    struct passwd* found = nullptr;
    std::vector<char> buf(16384);
    int rc = ::getpwuid_r(::geteuid(), &pw, buf.data(), buf.size(), &found);
    if (rc != 0 || found == nullptr || pw.pw_dir == nullptr || pw.pw_dir[0] != '/') {
        throw ConfigError("cannot find the home directory of uid " +
                          std::to_string(::geteuid()) +
                          ": HOME is unset and the user database has none");
    }
    return pw.pw_dir;
}

// set_system_agent_config(); unset: whether the process is root now.
int system_agent_config = -1;

// A system agent (root) reads only files and folders root alone can write:
// owned by root, writable by no one else (group write only for group root).
// Whoever can write them controls the agent (paths, proxy, CA bundle).
void check_root_alone_writes(const std::string& path, const struct stat& st) {
    const bool system_agent = system_agent_config >= 0 ? system_agent_config == 1 : ::geteuid() == 0;
    if (!system_agent) return;
    if (st.st_uid != 0) {
        throw ConfigError(path + ": owned by uid " + std::to_string(st.st_uid) +
                          ", not root: a system agent reads only files root alone can write");
    }
    if ((st.st_mode & S_IWOTH) != 0 || ((st.st_mode & S_IWGRP) != 0 && st.st_gid != 0)) {
        char mode[8];
        std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
        throw ConfigError(path + ": writable by others (mode " + mode +
                          "): a system agent reads only files root alone can write");
    }
}

std::string read_whole_file(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw ConfigError(path + ": cannot read: " + errno_text(errno));
    struct stat st;
    if (::fstat(fd, &st) != 0) {
        int err = errno;
        ::close(fd);
        throw ConfigError(path + ": cannot read: " + errno_text(err));
    }
    try {
        check_root_alone_writes(path, st);
    } catch (...) {
        ::close(fd);
        throw;
    }
    if (!S_ISREG(st.st_mode)) {
        // Refuse a directory, FIFO or device: reading one fails or blocks.
        ::close(fd);
        throw ConfigError(path + ": cannot read: " +
                          (S_ISDIR(st.st_mode) ? errno_text(EISDIR)
                                               : std::string("not a regular file")));
    }
    std::string text;
    char buf[8192];
    for (;;) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            int err = errno;
            ::close(fd);
            throw ConfigError(path + ": cannot read: " + errno_text(err));
        }
        if (n == 0) break;
        text.append(buf, static_cast<std::size_t>(n));
    }
    ::close(fd);
    return text;
}

// "a.b.c.d:port" or "[v6]:port", port 1..65535. On success `unspecified` says
// whether the address is 0.0.0.0 or ::. (The same form as
// p2p::parse_endpoint; this file does not link p2p/, so that tests/fuzz can
// build it alone.)
bool parse_endpoint(const std::string& s, bool& unspecified) {
    std::string addr;
    std::string port;
    int family = AF_INET;
    if (!s.empty() && s[0] == '[') {
        std::size_t close = s.find(']');
        if (close == std::string::npos || close + 1 >= s.size() || s[close + 1] != ':') {
            return false;
        }
        addr = s.substr(1, close - 1);
        port = s.substr(close + 2);
        family = AF_INET6;
    } else {
        std::size_t colon = s.rfind(':');
        if (colon == std::string::npos) return false;
        addr = s.substr(0, colon);
        port = s.substr(colon + 1);
    }
    if (port.empty() || port.size() > 5 ||
        port.find_first_not_of("0123456789") != std::string::npos) {
        return false;
    }
    long p = std::stol(port);
    if (p < 1 || p > 65535) return false;
    unsigned char bytes[16] = {};
    if (addr.find('\0') != std::string::npos) return false;
    if (::inet_pton(family, addr.c_str(), bytes) != 1) return false;
    std::size_t len = family == AF_INET ? 4 : 16;
    unspecified = true;
    for (std::size_t i = 0; i < len; ++i) unspecified = unspecified && bytes[i] == 0;
    return true;
}

// A network interface name as `[p2p] listen` may give it: letters, digits,
// '_' and '-', at most 15 bytes (IFNAMSIZ - 1), optionally a VLAN suffix
// ".N" ("eth0.100"). Host names ("peer.lan") and IPv4-like values
// ("10.0.0.256") are not interface names.
bool is_interface_name(const std::string& s) {
    if (s.empty() || s.size() > 15) return false;
    const std::size_t dot = s.find('.');
    const std::string base = s.substr(0, dot);
    if (base.empty() || base.find_first_not_of("0123456789") == std::string::npos) return false;
    for (unsigned char ch : base) {
        if (!std::isalnum(ch) && ch != '_' && ch != '-') return false;
    }
    if (dot == std::string::npos) return true;
    const std::string vlan = s.substr(dot + 1);
    return !vlan.empty() && vlan.find_first_not_of("0123456789") == std::string::npos;
}

// "10.0.0.0/8" or "fd00::/8": an address, a slash and a prefix length that
// fits the family. Host bits may be set ("10.1.2.3/8" means 10.0.0.0/8).
bool parse_cidr(const std::string& s) {
    std::size_t slash = s.find('/');
    if (slash == std::string::npos) return false;
    std::string addr = s.substr(0, slash);
    std::string len = s.substr(slash + 1);
    if (len.empty() || len.size() > 3 ||
        len.find_first_not_of("0123456789") != std::string::npos) {
        return false;
    }
    if (addr.find('\0') != std::string::npos) return false;
    unsigned char bytes[16];
    int bits = std::stoi(len);
    if (::inet_pton(AF_INET, addr.c_str(), bytes) == 1) return bits <= 32;
    if (::inet_pton(AF_INET6, addr.c_str(), bytes) == 1) return bits <= 128;
    return false;
}

// The parts of a tracker URL "scheme://[userinfo@]host[:port][/path][?query]".
struct TrackerUrl {
    std::string scheme;
    std::string userinfo;  // with its '@'; "" when none
    std::string host;      // "[v6]" kept in brackets
    std::string port;      // digits; "" when none
    std::string rest;      // path (and query, fragment), from the first '/', '?' or '#'
};

TrackerUrl split_tracker_url(const std::string& url) {
    TrackerUrl u;
    const std::size_t sep = url.find("://");
    if (sep == std::string::npos) return u;
    u.scheme = url.substr(0, sep);
    const std::size_t start = sep + 3;
    std::size_t end = url.find_first_of("/?#", start);
    if (end == std::string::npos) end = url.size();
    std::string authority = url.substr(start, end - start);
    u.rest = url.substr(end);
    const std::size_t at = authority.rfind('@');
    if (at != std::string::npos) {
        u.userinfo = authority.substr(0, at + 1);
        authority.erase(0, at + 1);
    }
    const std::size_t colon = authority.rfind(':');
    const std::size_t bracket = authority.rfind(']');
    if (colon != std::string::npos && (bracket == std::string::npos || colon > bracket)) {
        u.port = authority.substr(colon + 1);
        authority.erase(colon);
    }
    u.host = authority;
    return u;
}

// Why `url` cannot be a tracker ("" when it can): http, https or udp, a
// host, a port from 1 to 65535 (udp needs one), printable ASCII only.
std::string tracker_url_problem(const std::string& url) {
    for (unsigned char ch : url)
        if (ch <= ' ' || ch >= 0x7f) return "has a space, control or non-ASCII character";
    const TrackerUrl u = split_tracker_url(url);
    if (u.scheme != "http" && u.scheme != "https" && u.scheme != "udp")
        return "is not an http://, https:// or udp:// URL";
    if (u.host.empty() || u.host == "[]") return "has no host";
    if (u.port.empty() && u.scheme == "udp") return "has no port (udp trackers have no default)";
    if (!u.port.empty() && (u.port.size() > 5 || u.port.find_first_not_of("0123456789") != std::string::npos ||
                            std::stol(u.port) < 1 || std::stol(u.port) > 65535))
        return "has no port from 1 to 65535";
    if (url.size() > 2048) return "is longer than 2048 bytes";
    return "";
}

// Walks the parsed document, fills a Config and reports problems with the
// file name and the line of the offending node.
class ConfigReader {
public:
    ConfigReader(const std::string& file, std::vector<std::string>& warnings)
        : file_(file), warnings_(warnings) {}

    void read(const toml::table& root, Config& c) {
        for (auto&& [key, node] : root) {
            const std::string k(key.str());
            if (!node.is_table()) note(c, k, node);
            if (k == "state_dir") c.state_dir = path(node, k, false);
            else if (k == "cache_dir") c.cache_dir = path(node, k, false);
            else if (k == "socket") c.socket = socket_path(node, k);
            else if (k == "log_level") c.log_level = log_level(node, k);
            else if (k == "user") c.user = user_name(node, k);
            else if (k == "system_job_dirs") c.system_job_dirs = path_list(node, k);
            else if (k == "idle_exit") c.idle_exit = seconds(node, k, 0);
            else if (k == "jobs") read_jobs(table(node, k), c);
            else if (k == "ipc") read_ipc(table(node, k), c);
            else if (k == "http") read_http(table(node, k), c);
            else if (k == "p2p") read_p2p(table(node, k), c);
            else if (k == "cache") read_cache(table(node, k), c);
            else if (k == "metrics") read_metrics(table(node, k), c);
            else unknown(key, k);
        }
        for (const auto& k : unknown_keys_) c.origins.erase(k);
        // Tables iterate in key order; report in file order.
        std::stable_sort(unknown_.begin(), unknown_.end(),
                         [](const auto& a, const auto& b) { return a.first < b.first; });
        for (auto& w : unknown_) warnings_.push_back(std::move(w.second));
    }

private:
    void read_jobs(const toml::table& t, Config& c) {
        const toml::node* min_node = nullptr;
        const toml::node* max_node = nullptr;
        for (auto&& [key, node] : t) {
            const std::string k = "jobs." + std::string(key.str());
            note(c, k, node);
            if (k == "jobs.max_jobs") c.max_jobs = integer<int>(node, k, 1, 64);
            else if (k == "jobs.max_jobs_per_user") c.max_jobs_per_user = integer<int>(node, k, 1, 1000000);
            else if (k == "jobs.max_connections") c.max_connections = integer<int>(node, k, 1, 256);
            else if (k == "jobs.no_progress_timeout") c.no_progress_timeout = seconds(node, k, 1);
            else if (k == "jobs.retention") c.retention = seconds(node, k, 0);
            else if (k == "jobs.max_job_age") c.max_job_age = seconds(node, k, 1);
            else if (k == "jobs.sync_on_complete") c.sync_on_complete = boolean(node, k);
            else if (k == "jobs.file_op_timeout") c.file_op_timeout = integer<std::uint32_t>(node, k, 1, 3600);
            else if (k == "jobs.retry_min_delay") {
                c.retry_min_delay = seconds(node, k, 1);
                min_node = &node;
            } else if (k == "jobs.retry_max_delay") {
                c.retry_max_delay = seconds(node, k, 1);
                max_node = &node;
            } else {
                unknown(key, k);
            }
        }
        if (c.retry_min_delay > c.retry_max_delay) {
            // Blame the key the file set; the other one is a default.
            const toml::node* blame = min_node != nullptr ? min_node : max_node;
            fail(*blame, "jobs.retry_min_delay (" + std::to_string(c.retry_min_delay) +
                             ") must not exceed jobs.retry_max_delay (" +
                             std::to_string(c.retry_max_delay) + ")");
        }
    }

    static constexpr std::int64_t kMaxRate = std::numeric_limits<std::int64_t>::max();

    void read_ipc(const toml::table& t, Config& c) {
        for (auto&& [key, node] : t) {
            const std::string k = "ipc." + std::string(key.str());
            note(c, k, node);
            if (k == "ipc.max_connections_per_user")
                c.max_connections_per_user = integer<int>(node, k, 1, 1024);
            else if (k == "ipc.max_reply_backlog_per_user")
                c.max_reply_backlog_per_user =
                    integer<std::uint64_t>(node, k, 65536, 32 << 20, " (bytes)");
            else unknown(key, k);
        }
    }

    void read_http(const toml::table& t, Config& c) {
        constexpr std::int64_t max_rate = kMaxRate;
        for (auto&& [key, node] : t) {
            const std::string k = "http." + std::string(key.str());
            note(c, k, node);
            if (k == "http.proxy") c.proxy = header_safe_string(node, k, true);
            else if (k == "http.user_agent") c.user_agent = header_safe_string(node, k, false);
            else if (k == "http.connect_timeout") c.connect_timeout = seconds(node, k, 1);
            else if (k == "http.low_speed_time") c.low_speed_time = seconds(node, k, 0);
            else if (k == "http.max_rate_foreground") c.max_rate_foreground = integer<std::uint64_t>(node, k, 0, max_rate);
            else if (k == "http.max_rate_background") c.max_rate_background = integer<std::uint64_t>(node, k, 0, max_rate);
            else if (k == "http.ca_file") c.ca_file = path(node, k, true);
            else unknown(key, k);
        }
    }

    void read_p2p(const toml::table& t, Config& c) {
        for (auto&& [key, node] : t) {
            const std::string k = "p2p." + std::string(key.str());
            note(c, k, node);
            if (k == "p2p.enabled") c.p2p_enabled = boolean(node, k);
            else if (k == "p2p.listen") c.p2p_listen = listen_endpoint(node, k);
            else if (k == "p2p.lan_discovery") c.lan_discovery = boolean(node, k);
            else if (k == "p2p.peers") c.peers = peer_list(node, k);
            else if (k == "p2p.allowed_networks") c.allowed_networks = cidr_list(node, k);
            else if (k == "p2p.trackers") c.trackers = tracker_list(node, k);
            else if (k == "p2p.group") c.group = group_key(node, k);
            else if (k == "p2p.metainfo_probe") c.metainfo_probe = boolean(node, k);
            else if (k == "p2p.metainfo_suffix") c.metainfo_suffix = url_suffix(node, k);
            else if (k == "p2p.origin_requests") c.origin_requests = integer<int>(node, k, 1, 64);
            else if (k == "p2p.swarm_origin_requests")
                c.swarm_origin_requests = integer<int>(node, k, 1, 64);
            else if (k == "p2p.max_upload_rate") c.max_upload_rate = integer<std::uint64_t>(node, k, 0, kMaxRate);
            else if (k == "p2p.max_download_rate") c.max_download_rate = integer<std::uint64_t>(node, k, 0, kMaxRate);
            else if (k == "p2p.throttle_lan") c.throttle_lan = boolean(node, k);
            else if (k == "p2p.content_lookup_ms") c.content_lookup_ms = integer<int>(node, k, 0, 60'000);
            else if (k == "p2p.content_follow_ms") c.content_follow_ms = integer<int>(node, k, 0, 3'600'000);
            else unknown(key, k);
        }
    }

    void read_cache(const toml::table& t, Config& c) {
        for (auto&& [key, node] : t) {
            const std::string k = "cache." + std::string(key.str());
            note(c, k, node);
            if (k == "cache.max_size") c.cache_max_size = integer<std::uint64_t>(node, k, 0, kMaxRate, " (bytes)");
            else if (k == "cache.max_disk_percent") c.cache_max_disk_percent = integer<int>(node, k, 0, 100);
            else if (k == "cache.max_age") c.cache_max_age = seconds(node, k, 0);
            else if (k == "cache.min_file_size") c.cache_min_file_size = integer<std::uint64_t>(node, k, 0, kMaxRate, " (bytes)");
            else unknown(key, k);
        }
    }

    void read_metrics(const toml::table& t, Config& c) {
        for (auto&& [key, node] : t) {
            const std::string k = "metrics." + std::string(key.str());
            note(c, k, node);
            if (k == "metrics.textfile") c.metrics_textfile = textfile_path(node, k);
            else if (k == "metrics.interval") c.metrics_interval = integer<std::uint32_t>(node, k, 1, 86400, " (seconds)");
            else unknown(key, k);
        }
    }

    // node_exporter reads only "*.prom" files of its directory; the file
    // itself is replaced by rename, so the name must be a file's.
    std::string textfile_path(const toml::node& n, const std::string& name) const {
        std::string s = path(n, name, true);
        const std::string base = s.substr(s.rfind('/') + 1);
        if (!s.empty() && (base.size() <= 5 || base.compare(base.size() - 5, 5, ".prom") != 0))
            fail(n, name + " must name a file ending in \".prom\" (node_exporter's textfile collector "
                           "reads no other), not \"" + s + "\"");
        return s;
    }

    // A suffix appended to a URL's path: printable ASCII, no '?', '#' or space.
    std::string url_suffix(const toml::node& n, const std::string& name) const {
        const std::string& s = string(n, name, "a string such as \".torrent\"");
        bool ok = !s.empty();
        for (char ch : s) {
            if (ch <= ' ' || ch > '~' || ch == '?' || ch == '#') ok = false;
        }
        if (!ok) fail(n, name + " must be a non-empty URL path suffix such as \".torrent\", not \"" + s + "\"");
        return s;
    }

    [[noreturn]] void fail(const toml::node& n, const std::string& what) const {
        throw ConfigError(file_ + ":" + std::to_string(n.source().begin.line) + ": " + what);
    }

    // Key `name` set here (Config::origins); unknown() takes it back.
    void note(Config& c, const std::string& name, const toml::node& n) const {
        c.origins[name] = file_ + ":" + std::to_string(n.source().begin.line);
    }

    void unknown(const toml::key& key, const std::string& name) {
        unknown_keys_.push_back(name);
        const auto line = key.source().begin.line;
        unknown_.emplace_back(line, file_ + ":" + std::to_string(line) + ": unknown key '" +
                                        name + "'");
    }

    const toml::table& table(const toml::node& n, const std::string& name) const {
        const toml::table* t = n.as_table();
        if (t == nullptr) fail(n, name + " must be a table ([" + name + "])");
        return *t;
    }

    const std::string& string(const toml::node& n, const std::string& name,
                              const std::string& what) const {
        const toml::value<std::string>* v = n.as_string();
        if (v == nullptr) fail(n, name + " must be " + what);
        return v->get();
    }

    bool boolean(const toml::node& n, const std::string& name) const {
        const toml::value<bool>* v = n.as_boolean();
        if (v == nullptr) fail(n, name + " must be true or false");
        return v->get();
    }

    // An integer in [lo, hi]; T must hold every value of that range, so no
    // value is ever narrowed silently.
    template <typename T>
    T integer(const toml::node& n, const std::string& name, std::int64_t lo,
              std::int64_t hi, const char* unit = "") const {
        const toml::value<std::int64_t>* v = n.as_integer();
        if (v == nullptr || v->get() < lo || v->get() > hi) {
            fail(n, name + " must be an integer from " + std::to_string(lo) + " to " +
                        std::to_string(hi) + unit);
        }
        return static_cast<T>(v->get());
    }

    std::uint32_t seconds(const toml::node& n, const std::string& name, std::int64_t lo) const {
        return integer<std::uint32_t>(n, name, lo, std::numeric_limits<std::uint32_t>::max(),
                                      " (seconds)");
    }

    std::string path(const toml::node& n, const std::string& name, bool may_be_empty) const {
        const std::string& s = string(n, name, "a string holding an absolute path");
        if (may_be_empty && s.empty()) return s;
        if (s.empty() || s[0] != '/' || s.find('\0') != std::string::npos) {
            fail(n, name + " must be an absolute path, not \"" + s + "\"");
        }
        return s;
    }

    std::string socket_path(const toml::node& n, const std::string& name) const {
        std::string s = path(n, name, false);
        constexpr std::size_t max_len = sizeof(sockaddr_un{}.sun_path) - 1;
        if (s.size() > max_len) {
            fail(n, name + " must be at most " + std::to_string(max_len) +
                        " bytes long (a Unix socket path limit)");
        }
        return s;
    }

    std::string log_level(const toml::node& n, const std::string& name) const {
        const std::string& s = string(n, name, "one of \"error\", \"warn\", \"info\", \"debug\"");
        if (s != "error" && s != "warn" && s != "info" && s != "debug") {
            fail(n, name + " must be one of \"error\", \"warn\", \"info\", \"debug\", not \"" +
                        s + "\"");
        }
        return s;
    }

    // An account name, looked up only at start (main.cpp). The file is
    // trusted: this catches typos, not attacks. "" = no account.
    std::string user_name(const toml::node& n, const std::string& name) const {
        const std::string& s = string(n, name, "a string holding a user name");
        bool ok = s.size() <= 256 && (s.empty() || s[0] != '-');
        for (unsigned char ch : s) {
            ok = ok && ch > 0x20 && ch != 0x7f && ch != ':' && ch != '/';
        }
        if (!ok) fail(n, name + " must be a user name (no spaces, ':' or '/'), not \"" + s + "\"");
        return s;
    }

    // A value that ends up in HTTP requests: a control character would split
    // or corrupt the header it goes into.
    std::string header_safe_string(const toml::node& n, const std::string& name,
                                   bool may_be_empty) const {
        const std::string& s = string(n, name, "a string");
        if (!may_be_empty && s.empty()) fail(n, name + " must not be empty");
        for (unsigned char ch : s) {
            if (ch < 0x20 || ch == 0x7f) fail(n, name + " must not contain control characters");
        }
        return s;
    }

    std::string listen_endpoint(const toml::node& n, const std::string& name) const {
        const std::string& s = string(n, name, "a string \"address:port\"");
        if (s.empty()) return s;  // same as unset: no peering
        if (listen_interface(s)) return s;
        bool unspecified = false;
        if (!parse_endpoint(s, unspecified)) {
            fail(n, name + " must be \"a.b.c.d:port\", \"[v6]:port\" or \"interface:port\" "
                           "with a port from 1 to 65535, not \"" + s + "\"");
        }
        if (unspecified) {
            // Peers are accepted only on chosen LAN addresses (docs/design.md "Safety defaults").
            fail(n, name + " must be a specific LAN address, not \"" + s + "\"");
        }
        return s;
    }

    const toml::array& array(const toml::node& n, const std::string& name,
                             const std::string& what) const {
        const toml::array* a = n.as_array();
        if (a == nullptr) fail(n, name + " must be an array of " + what);
        return *a;
    }

    std::vector<std::string> peer_list(const toml::node& n, const std::string& name) const {
        const std::string what = "\"address:port\" strings";
        std::vector<std::string> out;
        for (const toml::node& e : array(n, name, what)) {
            const std::string& s = string(e, name, "an array of " + what);
            bool unspecified = false;
            if (!parse_endpoint(s, unspecified) || unspecified) {
                fail(e, name + " entries must be \"a.b.c.d:port\" or \"[v6]:port\" with a "
                               "port from 1 to 65535, not \"" + s + "\"");
            }
            out.push_back(s);
        }
        return out;
    }

    std::vector<std::string> path_list(const toml::node& n, const std::string& name) const {
        std::vector<std::string> out;
        for (const toml::node& e : array(n, name, "absolute paths")) out.push_back(path(e, name, false));
        return out;
    }

    std::vector<std::string> cidr_list(const toml::node& n, const std::string& name) const {
        const std::string what = "CIDR strings (\"10.0.0.0/8\", \"fd00::/8\")";
        std::vector<std::string> out;
        for (const toml::node& e : array(n, name, what)) {
            const std::string& s = string(e, name, "an array of " + what);
            if (!parse_cidr(s)) {
                fail(e, name + " entries must be CIDR networks such as \"10.0.0.0/8\" or "
                               "\"fd00::/8\", not \"" + s + "\"");
            }
            out.push_back(s);
        }
        return out;
    }

    // A group key: at most 256 bytes, no control characters ("" = no
    // group). Never echoed.
    std::string group_key(const toml::node& n, const std::string& name) const {
        const std::string& s = string(n, name, "a string (the group key)");
        bool ok = s.size() <= 256;
        for (unsigned char ch : s) ok = ok && ch >= 0x20 && ch != 0x7f;
        if (!ok) fail(n, name + " must be at most 256 bytes without control characters");
        return s;
    }

    // Announce URLs; an error names the entry redacted (a passkey in it is
    // a secret: the message may go to a log).
    std::vector<std::string> tracker_list(const toml::node& n, const std::string& name) const {
        const std::string what = "tracker URLs (\"http://host:port/announce\", \"udp://host:port\")";
        std::vector<std::string> out;
        for (const toml::node& e : array(n, name, what)) {
            const std::string& s = string(e, name, "an array of " + what);
            const std::string problem = tracker_url_problem(s);
            if (!problem.empty())
                fail(e, name + " entry \"" + redacted_tracker(s) + "\" " + problem);
            if (out.size() == kMaxTrackers)
                fail(e, name + " may list at most " + std::to_string(kMaxTrackers) + " trackers");
            out.push_back(s);
        }
        return out;
    }

    const std::string& file_;
    std::vector<std::string>& warnings_;
    std::vector<std::pair<toml::source_index, std::string>> unknown_;  // (line, warning)
    std::vector<std::string> unknown_keys_;
};

}  // namespace

Config default_config() {
    Config c;
    if (::geteuid() == 0) {
        c.state_dir = "/var/lib/dopt";
        c.cache_dir = "/var/cache/dopt";
        c.socket = "/run/dopt/doptd.sock";
        return c;
    }
    const char* state = xdg_dir("XDG_STATE_HOME");
    const char* cache = xdg_dir("XDG_CACHE_HOME");
    const char* runtime = xdg_dir("XDG_RUNTIME_DIR");
    std::string home;
    if (state == nullptr || cache == nullptr) home = home_dir();
    c.state_dir = state != nullptr ? std::string(state) + "/dopt" : home + "/.local/state/dopt";
    c.cache_dir = cache != nullptr ? std::string(cache) + "/dopt" : home + "/.cache/dopt";
    c.socket = runtime != nullptr ? std::string(runtime) + "/dopt/doptd.sock"
                                  : c.state_dir + "/doptd.sock";
    return c;
}

std::optional<ListenInterface> listen_interface(const std::string& listen) {
    const std::size_t colon = listen.rfind(':');
    if (colon == std::string::npos || listen[0] == '[') return std::nullopt;
    const std::string name = listen.substr(0, colon);
    const std::string port = listen.substr(colon + 1);
    if (!is_interface_name(name) || port.empty() || port.size() > 5 ||
        port.find_first_not_of("0123456789") != std::string::npos) {
        return std::nullopt;
    }
    const int p = std::stoi(port);
    if (p < 1 || p > 65535) return std::nullopt;
    return ListenInterface{name, p};
}

std::string redacted_tracker(const std::string& url) {
    const TrackerUrl u = split_tracker_url(url);
    if (u.scheme.empty()) return u.userinfo.empty() && url.find_first_of("@?") == std::string::npos
                                     ? url : "[redacted]";
    std::string out = u.scheme + "://" + (u.userinfo.empty() ? "" : "[redacted]@") + u.host +
                      (u.port.empty() ? "" : ":" + u.port);
    const std::size_t query = u.rest.find_first_of("?#");
    // A path other than the usual ones may hold a passkey
    // (https://t.example/<passkey>/announce, /announce/<passkey>).
    const std::string path = u.rest.substr(0, query);
    out += path.empty() || path == "/" || path == "/announce" ? path : "/[redacted]";
    if (query != std::string::npos) out += "?[redacted]";
    return out;
}

std::string drop_in_dir(const std::string& path) { return path + ".d"; }

void set_system_agent_config(bool on) { system_agent_config = on ? 1 : 0; }

namespace {

// The drop-ins of `path` to read, in order (load_config). No folder: none.
std::vector<std::string> drop_in_files(const std::string& path) {
    const std::string dir = drop_in_dir(path);
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr) {
        if (errno == ENOENT) return {};
        throw ConfigError(dir + ": cannot read: " + errno_text(errno));
    }
    std::vector<std::string> names;
    struct stat st;
    int rc = ::fstat(::dirfd(d), &st);
    int err = errno;
    while (const dirent* e = ::readdir(d)) {
        const std::string name = e->d_name;
        const bool conf = name.size() > 5 && name.compare(name.size() - 5, 5, ".conf") == 0;
        if (conf && name[0] != '.') names.push_back(name);
    }
    ::closedir(d);
    if (rc != 0) throw ConfigError(dir + ": cannot read: " + errno_text(err));
    check_root_alone_writes(dir, st);
    std::sort(names.begin(), names.end());
    for (auto& n : names) n = dir + "/" + n;
    return names;
}

// One file's keys over `c`.
void read_config_file(const std::string& path, Config& c, std::vector<std::string>& warnings) {
    const std::string text = read_whole_file(path);
#if TOML_EXCEPTIONS
    toml::table root;
    try {
        root = toml::parse(text, path);
    } catch (const toml::parse_error& e) {
        throw ConfigError(path + ":" + std::to_string(e.source().begin.line) + ":" +
                          std::to_string(e.source().begin.column) + ": " +
                          std::string(e.description()));
    }
#else
    toml::parse_result parsed = toml::parse(text, path);
    if (!parsed) {
        const toml::parse_error& e = parsed.error();
        throw ConfigError(path + ":" + std::to_string(e.source().begin.line) + ":" +
                          std::to_string(e.source().begin.column) + ": " +
                          std::string(e.description()));
    }
    toml::table root = std::move(parsed).table();
#endif
    ConfigReader(path, warnings).read(root, c);
}

}  // namespace

Config load_config(const std::string& path, std::vector<std::string>& warnings) {
    Config c = default_config();
    c.source = path;
    read_config_file(path, c, warnings);
    for (const std::string& file : drop_in_files(path)) {
        read_config_file(file, c, warnings);
        c.drop_ins.push_back(file);
    }
    return c;
}

}  // namespace dopt::agent
