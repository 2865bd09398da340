// Tests for agent/config.cpp: built-in defaults and TOML loading/validation.
#include "agent/config.h"
#include "tests/support/fd_io.h"
#include "tests/support/temp_dir.h"

#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <grp.h>
#include <map>
#include <optional>
#include <pwd.h>
#include <set>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

using dopt::agent::Config;
using dopt::agent::ConfigError;
using dopt::agent::default_config;
using dopt::agent::load_config;

namespace {

using dopt::test::TempDir;

// What default_config() gives a non-root user under the given environment
// (nullopt = unset). Runs in a forked child, which drops to "nobody" first
// when the tests run as root, so the user branch is tested either way.
struct UserDefaults {
    std::string state_dir, cache_dir, socket, passwd_home, error;
};

UserDefaults user_defaults(const std::map<std::string, std::optional<std::string>>& env) {
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        ::close(fds[0]);
        std::string out;
        if (::geteuid() == 0) {
            gid_t nogroup = 65534;
            if (::setgroups(1, &nogroup) != 0 || ::setgid(65534) != 0 || ::setuid(65534) != 0) {
                ::_exit(3);
            }
        }
        for (const auto& [name, value] : env) {
            if (value) ::setenv(name.c_str(), value->c_str(), 1);
            else ::unsetenv(name.c_str());
        }
        try {
            Config c = default_config();
            const passwd* pw = ::getpwuid(::geteuid());
            out = c.state_dir + "\n" + c.cache_dir + "\n" + c.socket + "\n" +
                  (pw != nullptr ? pw->pw_dir : "") + "\n\n";
        } catch (const std::exception& e) {
            out = "\n\n\n\n" + std::string(e.what()) + "\n";
        }
        ssize_t n = ::write(fds[1], out.data(), out.size());
        ::_exit(n == static_cast<ssize_t>(out.size()) ? 0 : 4);
    }
    ::close(fds[1]);
    const std::string text = dopt::test::read_to_end(fds[0]);
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    REQUIRE(WIFEXITED(status));
    REQUIRE(WEXITSTATUS(status) == 0);
    UserDefaults d;
    std::string* fields[] = {&d.state_dir, &d.cache_dir, &d.socket, &d.passwd_home, &d.error};
    std::size_t pos = 0;
    for (std::string* f : fields) {
        std::size_t nl = text.find('\n', pos);
        REQUIRE(nl != std::string::npos);
        *f = text.substr(pos, nl - pos);
        pos = nl + 1;
    }
    return d;
}

// Loads `text` as a config file and returns the ConfigError message ("" when
// it loaded).
std::string load_error(const TempDir& dir, const std::string& text) {
    std::string file = dir.write("doptd.conf", text);
    std::vector<std::string> warnings;
    try {
        load_config(file, warnings);
    } catch (const ConfigError& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST_CASE("user defaults follow the XDG base directory variables", "[config]") {
    UserDefaults d = user_defaults({{"XDG_STATE_HOME", "/x/state"},
                                    {"XDG_CACHE_HOME", "/x/cache"},
                                    {"XDG_RUNTIME_DIR", "/run/user/1000"},
                                    {"HOME", "/home/alice"}});
    CHECK(d.error.empty());
    CHECK(d.state_dir == "/x/state/dopt");
    CHECK(d.cache_dir == "/x/cache/dopt");
    CHECK(d.socket == "/run/user/1000/dopt/doptd.sock");
}

TEST_CASE("without XDG variables user defaults live under HOME", "[config]") {
    UserDefaults d = user_defaults({{"XDG_STATE_HOME", std::nullopt},
                                    {"XDG_CACHE_HOME", std::nullopt},
                                    {"XDG_RUNTIME_DIR", std::nullopt},
                                    {"HOME", "/home/alice"}});
    CHECK(d.error.empty());
    CHECK(d.state_dir == "/home/alice/.local/state/dopt");
    CHECK(d.cache_dir == "/home/alice/.cache/dopt");
    // No runtime dir: the socket sits in the state dir.
    CHECK(d.socket == "/home/alice/.local/state/dopt/doptd.sock");
}

TEST_CASE("relative XDG variables are ignored, as the XDG spec requires", "[config]") {
    UserDefaults d = user_defaults({{"XDG_STATE_HOME", "state"},
                                    {"XDG_CACHE_HOME", ""},
                                    {"XDG_RUNTIME_DIR", "run"},
                                    {"HOME", "/home/bob"}});
    CHECK(d.error.empty());
    CHECK(d.state_dir == "/home/bob/.local/state/dopt");
    CHECK(d.cache_dir == "/home/bob/.cache/dopt");
    CHECK(d.socket == "/home/bob/.local/state/dopt/doptd.sock");
}

TEST_CASE("without HOME the user's home comes from the user database", "[config]") {
    UserDefaults d = user_defaults({{"XDG_STATE_HOME", std::nullopt},
                                    {"XDG_CACHE_HOME", "/c"},
                                    {"XDG_RUNTIME_DIR", std::nullopt},
                                    {"HOME", std::nullopt}});
    REQUIRE(d.error.empty());
    REQUIRE(!d.passwd_home.empty());
    CHECK(d.state_dir == d.passwd_home + "/.local/state/dopt");
    CHECK(d.cache_dir == "/c/dopt");
    CHECK(d.socket == d.passwd_home + "/.local/state/dopt/doptd.sock");
}

TEST_CASE("root defaults are the system paths, peering off", "[config]") {
    if (::geteuid() != 0) {
        WARN("not root: root defaults not checked");
        return;
    }
    Config c = default_config();
    CHECK(c.state_dir == "/var/lib/dopt");
    CHECK(c.cache_dir == "/var/cache/dopt");
    CHECK(c.socket == "/run/dopt/doptd.sock");
    CHECK_FALSE(c.p2p_enabled);
    CHECK(c.source.empty());
}

TEST_CASE("an empty file keeps every default and records its source", "[config]") {
    TempDir dir;
    std::string file = dir.write("empty.conf", "# nothing here\n");
    std::vector<std::string> warnings;
    Config c = load_config(file, warnings);
    Config d = default_config();
    CHECK(warnings.empty());
    CHECK(c.source == file);
    CHECK(c.state_dir == d.state_dir);
    CHECK(c.cache_dir == d.cache_dir);
    CHECK(c.socket == d.socket);
    CHECK(c.log_level == "info");
    CHECK(c.max_jobs == 4);
    CHECK(c.max_jobs_per_user == 1000);
    CHECK(c.max_connections_per_user == 128);
    CHECK(c.max_reply_backlog_per_user == 8u << 20);
    CHECK(c.retry_max_delay == 600);
    CHECK(c.user_agent == "dopt/0.1");
    CHECK_FALSE(c.p2p_enabled);
    CHECK(c.lan_discovery);
    CHECK(c.peers.empty());
}

TEST_CASE("a full valid file sets every key", "[config]") {
    TempDir dir;
    std::string file = dir.write("doptd.conf", R"(
state_dir = "/srv/dopt/state"
cache_dir = "/srv/dopt/cache"
socket = "/run/dopt-test/doptd.sock"
log_level = "debug"

[jobs]
max_jobs = 64
max_jobs_per_user = 50
max_connections = 256
no_progress_timeout = 3600
retention = 0
max_job_age = 86400
retry_min_delay = 2
retry_max_delay = 120
sync_on_complete = false

[ipc]
max_connections_per_user = 4
max_reply_backlog_per_user = 65536

[http]
proxy = "http://proxy.lan:3128"
user_agent = "dopt-test/1"
connect_timeout = 10
low_speed_time = 0
max_rate_foreground = 9223372036854775807
max_rate_background = 1048576
ca_file = "/etc/ssl/extra.pem"

[p2p]
enabled = true
listen = "10.0.0.11:7881"
lan_discovery = false
peers = [
  "10.0.0.12:7881",
  "[fe80::1]:7881",
]
allowed_networks = ["10.0.0.0/8", "192.168.1.7/24", "fd00::/8", "0.0.0.0/0"]
)");
    std::vector<std::string> warnings;
    Config c = load_config(file, warnings);
    CHECK(warnings.empty());
    CHECK(c.source == file);
    CHECK(c.state_dir == "/srv/dopt/state");
    CHECK(c.cache_dir == "/srv/dopt/cache");
    CHECK(c.socket == "/run/dopt-test/doptd.sock");
    CHECK(c.log_level == "debug");
    CHECK(c.max_jobs == 64);
    CHECK(c.max_jobs_per_user == 50);
    CHECK(c.max_connections == 256);
    CHECK(c.max_connections_per_user == 4);
    CHECK(c.max_reply_backlog_per_user == 65536);
    CHECK(c.no_progress_timeout == 3600);
    CHECK(c.retention == 0);
    CHECK(c.max_job_age == 86400);
    CHECK(c.retry_min_delay == 2);
    CHECK(c.retry_max_delay == 120);
    CHECK_FALSE(c.sync_on_complete);
    CHECK(c.proxy == "http://proxy.lan:3128");
    CHECK(c.user_agent == "dopt-test/1");
    CHECK(c.connect_timeout == 10);
    CHECK(c.low_speed_time == 0);
    CHECK(c.max_rate_foreground == 9223372036854775807ULL);
    CHECK(c.max_rate_background == 1048576);
    CHECK(c.ca_file == "/etc/ssl/extra.pem");
    CHECK(c.p2p_enabled);
    CHECK(c.p2p_listen == "10.0.0.11:7881");
    CHECK_FALSE(c.lan_discovery);
    CHECK(c.peers == std::vector<std::string>{"10.0.0.12:7881", "[fe80::1]:7881"});
    CHECK(c.allowed_networks ==
          std::vector<std::string>{"10.0.0.0/8", "192.168.1.7/24", "fd00::/8", "0.0.0.0/0"});
}

TEST_CASE("the shipped config/doptd.conf loads without errors or warnings", "[config]") {
    // The test binary may run from any directory; find the file from this
    // source file's location.
    std::filesystem::path shipped =
        std::filesystem::path(__FILE__).parent_path().parent_path() / "config" / "doptd.conf";
    if (!std::filesystem::exists(shipped)) {
        WARN("config/doptd.conf not found next to the sources; skipped");
        return;
    }
    std::vector<std::string> warnings;
    Config c = load_config(shipped.string(), warnings);
    CHECK(warnings.empty());
    CHECK(c.state_dir == "/var/lib/dopt");
    CHECK(c.cache_dir == "/var/cache/dopt");
    CHECK(c.socket == "/run/dopt/doptd.sock");
    CHECK(c.p2p_enabled);         // on in the shipped file ...
    CHECK(c.p2p_listen.empty());  // ... but starts only once an admin sets listen
    CHECK(c.lan_discovery);
    CHECK(c.peers.empty());
}

TEST_CASE("each invalid value is an error naming its file, line and key", "[config]") {
    struct Case {
        std::string text;
        int line;
        const char* fragment;
    };
    const Case cases[] = {
        // paths
        {"# c\n\nstate_dir = \"var/lib/dopt\"\n", 3, "state_dir must be an absolute path"},
        {"cache_dir = \"\"\n", 1, "cache_dir must be an absolute path"},
        {"\ncache_dir = 5\n", 2, "cache_dir must be a string"},
        {"socket = \"./doptd.sock\"\n", 1, "socket must be an absolute path"},
        {"log_level = \"verbose\"\n", 1, "log_level must be one of"},
        {"\nlog_level = 3\n", 2, "log_level must be one of"},
        // [jobs]
        {"jobs = 3\n", 1, "jobs must be a table"},
        {"[jobs]\n\nmax_jobs = 0\n", 3, "jobs.max_jobs must be an integer from 1 to 64"},
        {"[jobs]\nmax_jobs = 65\n", 2, "jobs.max_jobs must be an integer from 1 to 64"},
        {"[jobs]\nmax_jobs = \"4\"\n", 2, "jobs.max_jobs must be an integer"},
        {"[jobs]\nsync_on_complete = 1\n", 2, "jobs.sync_on_complete must be"},
        {"[jobs]\nmax_jobs = 4.0\n", 2, "jobs.max_jobs must be an integer"},
        {"[jobs]\nmax_connections = 257\n", 2, "jobs.max_connections must be an integer from 1 to 256"},
        {"[jobs]\nretry_min_delay = 0\n", 2, "jobs.retry_min_delay must be an integer from 1"},
        {"[jobs]\nretry_min_delay = 100\n\nretry_max_delay = 10\n", 2,
         "jobs.retry_min_delay (100) must not exceed jobs.retry_max_delay (10)"},
        {"[jobs]\n\n\nretry_max_delay = 2\n", 4,
         "jobs.retry_min_delay (5) must not exceed jobs.retry_max_delay (2)"},
        {"[jobs]\nno_progress_timeout = 0\n", 2, "jobs.no_progress_timeout must be an integer from 1"},
        {"[jobs]\nmax_job_age = 0\n", 2, "jobs.max_job_age must be an integer from 1"},
        {"[jobs]\nretention = -1\n", 2, "jobs.retention must be an integer from 0 to 4294967295"},
        {"[jobs]\nmax_jobs_per_user = 0\n", 2, "jobs.max_jobs_per_user must be an integer from 1 to 1000000"},
        // [ipc]
        {"ipc = 1\n", 1, "ipc must be a table"},
        {"[ipc]\nmax_connections_per_user = 0\n", 2,
         "ipc.max_connections_per_user must be an integer from 1 to 1024"},
        {"[ipc]\n\nmax_reply_backlog_per_user = 1024\n", 3,
         "ipc.max_reply_backlog_per_user must be an integer from 65536 to 33554432 (bytes)"},
        {"[ipc]\nmax_reply_backlog_per_user = 33554433\n", 2,
         "ipc.max_reply_backlog_per_user must be an integer from 65536 to 33554432"},
        // integers that would wrap the field
        {"[jobs]\nretention = 4294967296\n", 2, "jobs.retention must be an integer from 0 to 4294967295"},
        {"[jobs]\nmax_jobs = 4294967297\n", 2, "jobs.max_jobs must be an integer from 1 to 64"},
        {"[jobs]\nmax_connections = -9223372036854775808\n", 2, "jobs.max_connections must be an integer"},
        {"[http]\nmax_rate_foreground = -1\n", 2, "http.max_rate_foreground must be an integer from 0"},
        {"[http]\n\nconnect_timeout = 4294967296\n", 3, "http.connect_timeout must be an integer"},
        // [http]
        {"[http]\nconnect_timeout = 0\n", 2, "http.connect_timeout must be an integer from 1"},
        {"[http]\nlow_speed_time = 1.5\n", 2, "http.low_speed_time must be an integer"},
        {"[http]\nuser_agent = \"\"\n", 2, "http.user_agent must not be empty"},
        {"[http]\nuser_agent = \"a\\r\\nX-Evil: 1\"\n", 2, "http.user_agent must not contain control"},
        {"[http]\nproxy = 3128\n", 2, "http.proxy must be a string"},
        {"[http]\nca_file = \"certs/ca.pem\"\n", 2, "http.ca_file must be an absolute path"},
        // [p2p]
        {"[p2p]\nenabled = \"yes\"\n", 2, "p2p.enabled must be true or false"},
        {"[p2p]\nlan_discovery = 1\n", 2, "p2p.lan_discovery must be true or false"},
        {"[p2p]\nlisten = \"0.0.0.0:7881\"\n", 2, "p2p.listen must be a specific LAN address"},
        {"[p2p]\nlisten = \"[::]:7881\"\n", 2, "p2p.listen must be a specific LAN address"},
        {"[p2p]\nlisten = 7881\n", 2, "p2p.listen must be a string"},
        {"[p2p]\npeers = \"10.0.0.2:7881\"\n", 2, "p2p.peers must be an array"},
        {"[p2p]\npeers = [\n  \"10.0.0.2:7881\",\n  \"10.0.0.3:99999\",\n]\n", 4,
         "p2p.peers entries must be"},
        {"[p2p]\npeers = [\n  \"10.0.0.2:7881\",\n  7881,\n]\n", 4, "p2p.peers must be an array of"},
        {"[p2p]\nallowed_networks = \"10.0.0.0/8\"\n", 2, "p2p.allowed_networks must be an array"},
        {"[p2p]\nallowed_networks = [\n\"10.0.0.0/8\",\n\"10.0.0.0\"]\n", 4,
         "p2p.allowed_networks entries must be CIDR"},
    };
    // Values on line 2 of a [p2p] table that are not one endpoint or CIDR.
    // Values on line 2 of a [p2p] table that are not one endpoint or CIDR.
    const char* bad_listen[] = {"10.0.0.1",        "10.0.0.1:0",  "10.0.0.1:65536", "10.0.0.1:http",
                                "10.0.0.1:-1",     "10.0.0.256:7881", "10.0.1:7881", "::1:7881",
                                "[::1:7881",       "[::1]7881",   "peer.lan:7881"};
    const char* bad_cidr[] = {"10.0.0.0/33", "fd00::/129", "10.0.0.0/-1", "10.0.0.0/", "lan/24"};
    std::vector<Case> all(std::begin(cases), std::end(cases));
    for (const char* value : bad_listen)
        all.push_back({std::string("[p2p]\nlisten = \"") + value + "\"\n", 2, "p2p.listen must be"});
    for (const char* value : bad_cidr)
        all.push_back({std::string("[p2p]\nallowed_networks = [\"") + value + "\"]\n", 2,
                       "p2p.allowed_networks entries must be CIDR"});
    TempDir dir;
    const std::string file = dir.path() + "/doptd.conf";
    for (const Case& c : all) {
        INFO("file:\n" << c.text);
        std::string msg = load_error(dir, c.text);
        CHECK_THAT(msg, Catch::StartsWith(file + ":" + std::to_string(c.line) + ": "));
        CHECK_THAT(msg, Catch::Contains(c.fragment));
    }
}

TEST_CASE("a socket path longer than sun_path allows is rejected", "[config]") {
    TempDir dir;
    std::string msg = load_error(dir, "\n\nsocket = \"/" + std::string(120, 'a') + "\"\n");
    CHECK_THAT(msg, Catch::StartsWith(dir.path() + "/doptd.conf:3: "));
    CHECK_THAT(msg, Catch::Contains("socket must be at most 107 bytes"));
}

TEST_CASE("valid LAN endpoints and CIDRs are accepted", "[config]") {
    TempDir dir;
    for (const char* ep : {"10.0.0.11:7881", "127.0.0.1:65535", "192.168.1.2:1", "[::1]:7881",
                           "[fe80::1]:6881", "[2001:db8::2]:443"}) {
        INFO(ep);
        CHECK(load_error(dir, std::string("[p2p]\nlisten = \"") + ep + "\"\npeers = [\"" + ep +
                                  "\"]\n") == "");
    }
    CHECK(load_error(dir, "[p2p]\nlisten = \"\"\n") == "");  // empty = not listening
    CHECK(load_error(dir, "[p2p]\nallowed_networks = [\"10.0.0.0/8\", \"192.168.0.0/16\", "
                          "\"127.0.0.1/32\", \"fd00::/8\", \"::/0\", \"2001:db8::/128\"]\n") == "");
}

TEST_CASE("an integer TOML cannot hold is a syntax error with line and column", "[config]") {
    TempDir dir;
    std::string msg = load_error(dir, "[jobs]\n\nretention = 99999999999999999999\n");
    CHECK_THAT(msg, Catch::StartsWith(dir.path() + "/doptd.conf:3:"));
}

TEST_CASE("a syntax error names the file, line and column", "[config]") {
    TempDir dir;
    std::string msg = load_error(dir, "log_level = \"info\"\n\n[jobs]\nmax_jobs = = 3\n");
    // "FILE:4:COL: message"
    const std::string prefix = dir.path() + "/doptd.conf:4:";
    REQUIRE_THAT(msg, Catch::StartsWith(prefix));
    std::string rest = msg.substr(prefix.size());
    std::size_t colon = rest.find(':');
    REQUIRE(colon != std::string::npos);
    REQUIRE(colon > 0);
    CHECK(rest.substr(0, colon).find_first_not_of("0123456789") == std::string::npos);
    CHECK(rest.size() > colon + 2);  // a message follows

    CHECK_THAT(load_error(dir, "[jobs]\nmax_jobs = 3\n[jobs]\n"),
               Catch::StartsWith(dir.path() + "/doptd.conf:3:"));  // table defined twice
    CHECK_THAT(load_error(dir, "state_dir = \"/a\"\nstate_dir = \"/b\"\n"),
               Catch::StartsWith(dir.path() + "/doptd.conf:2:"));  // key defined twice
}

// Found by tests/fuzz (fuzz_config): toml++ 3.3.0 reaches __builtin_unreachable
// on some non-ASCII characters outside strings (marzer/tomlplusplus#295).
// Debian's build of the library handles them; these pin that down.
TEST_CASE("non-ASCII characters outside strings are syntax errors", "[config]") {
    TempDir dir;
    CHECK_THAT(load_error(dir, "\xcc\xaa"), Catch::StartsWith(dir.path() + "/doptd.conf:1:"));
    CHECK_THAT(load_error(dir, "log_level = \"info\" \xc3\xa9\n"),
               Catch::StartsWith(dir.path() + "/doptd.conf:1:"));
    CHECK_THAT(load_error(dir, "[jobs]\n\xc2\xa7 = 1\n"),
               Catch::StartsWith(dir.path() + "/doptd.conf:2:"));
    // The line that trips it in the input the fuzzer found
    // (tests/fuzz/corpus/config/crash-toml-unreachable.conf).
    CHECK_THAT(load_error(dir, "state_dir = 1979-05-2\xcb\xab" "07:32:00Z\ncache_dir = [4\n"),
               Catch::StartsWith(dir.path() + "/doptd.conf:1:"));
    // Inside a string they are text (upstream #190: after a line-ending backslash).
    std::string file = dir.write("doptd.conf", "[http]\nuser_agent = \"\"\"\\\n\xc2\xa7 dopt\"\"\"\n");
    std::vector<std::string> warnings;
    CHECK(load_config(file, warnings).user_agent == "\xc2\xa7 dopt");
}

TEST_CASE("unknown keys and tables warn with their line and do not fail", "[config]") {
    TempDir dir;
    std::string file = dir.write("doptd.conf",
                                 "colour = \"red\"\n"         // 1
                                 "log_level = \"warn\"\n"     // 2
                                 "\n"                         // 3
                                 "[jobs]\n"                   // 4
                                 "max_jobs = 2\n"             // 5
                                 "foo = 1\n"                  // 6
                                 "[extra]\n"                  // 7
                                 "x = 1\n"                    // 8
                                 "[p2p]\n"                    // 9
                                 "enabled = true\n"           // 10
                                 "listn = \"10.0.0.1:7881\"\n"  // 11
                                 "[p2p.sub]\n"                // 12
                                 "[http]\n"                   // 13
                                 "user_agent = \"ua\"\n");    // 14
    std::vector<std::string> warnings;
    Config c = load_config(file, warnings);
    CHECK(c.log_level == "warn");
    CHECK(c.max_jobs == 2);
    CHECK(c.p2p_enabled);
    CHECK(c.user_agent == "ua");
    CHECK(warnings == std::vector<std::string>{
                          file + ":1: unknown key 'colour'",
                          file + ":6: unknown key 'jobs.foo'",
                          file + ":7: unknown key 'extra'",
                          file + ":11: unknown key 'p2p.listn'",
                          file + ":12: unknown key 'p2p.sub'",
                      });
}

TEST_CASE("a file that cannot be read is an error naming it and the reason", "[config]") {
    TempDir dir;
    std::vector<std::string> warnings;
    const std::string missing = dir.path() + "/missing.conf";
    CHECK_THROWS_WITH(load_config(missing, warnings),
                      Catch::StartsWith(missing) && Catch::Contains("No such file or directory"));
    CHECK_THROWS_WITH(load_config(dir.path(), warnings),
                      Catch::StartsWith(dir.path()) && Catch::Contains("Is a directory"));
    CHECK_THROWS_AS(load_config("/dev/null/x", warnings), ConfigError);
}

TEST_CASE("user names the account of the privilege-separated system agent", "[config]") {
    TempDir dir;
    std::vector<std::string> warnings;
    CHECK(default_config().user.empty());
    CHECK(load_config(dir.write("a.conf", "# none\n"), warnings).user.empty());
    CHECK(load_config(dir.write("b.conf", "user = \"dopt\"\n"), warnings).user == "dopt");
    CHECK(load_config(dir.write("c.conf", "user = \"\"\n"), warnings).user.empty());
    // A name the user database does not know is not a config error: it is
    // looked up at start (main.cpp), where it stops the agent.
    CHECK(load_config(dir.write("d.conf", "user = \"no-such-user-x\"\n"), warnings).user ==
          "no-such-user-x");
    CHECK(warnings.empty());

    const std::string file = dir.path() + "/doptd.conf";
    for (const char* text : {"\nuser = 5\n", "\nuser = \"a b\"\n", "\nuser = \"a:b\"\n",
                             "\nuser = \"../x\"\n", "\nuser = \"-x\"\n", "\nuser = \"a\\tb\"\n"}) {
        INFO("file:\n" << text);
        std::string msg = load_error(dir, text);
        CHECK_THAT(msg, Catch::StartsWith(file + ":2: user must be"));
    }
}

TEST_CASE("system_job_dirs and file_op_timeout load, and bad values name their line", "[config]") {
    TempDir dir;
    std::vector<std::string> warnings;
    Config c = load_config(dir.write("a.conf", "# none\n"), warnings);
    CHECK(c.system_job_dirs.empty());
    CHECK(c.file_op_timeout == 10);
    c = load_config(dir.write("b.conf", "system_job_dirs = [\"/srv/dl\", \"/var/cache/x\"]\n"
                                        "[jobs]\nfile_op_timeout = 2\n"),
                    warnings);
    CHECK(c.system_job_dirs == std::vector<std::string>{"/srv/dl", "/var/cache/x"});
    CHECK(c.file_op_timeout == 2);
    CHECK(warnings.empty());

    const std::string file = dir.path() + "/doptd.conf";
    for (const char* text : {"\nsystem_job_dirs = \"/srv\"\n", "\nsystem_job_dirs = [\"srv\"]\n",
                             "\nsystem_job_dirs = [\"\"]\n", "\nsystem_job_dirs = [5]\n"}) {
        INFO("file:\n" << text);
        CHECK_THAT(load_error(dir, text), Catch::StartsWith(file + ":2: system_job_dirs must be"));
    }
    for (const char* text : {"[jobs]\nfile_op_timeout = 0\n", "[jobs]\nfile_op_timeout = 3601\n",
                             "[jobs]\nfile_op_timeout = \"10\"\n"}) {
        INFO("file:\n" << text);
        CHECK_THAT(load_error(dir, text), Catch::StartsWith(file + ":2: jobs.file_op_timeout must be"));
    }
}

TEST_CASE("idle_exit loads in seconds, 0 for never, and bad values name their line", "[config]") {
    TempDir dir;
    std::vector<std::string> warnings;
    CHECK(load_config(dir.write("a.conf", "# none\n"), warnings).idle_exit == 600);
    CHECK(load_config(dir.write("b.conf", "idle_exit = 0\n"), warnings).idle_exit == 0);
    CHECK(load_config(dir.write("c.conf", "idle_exit = 30\n"), warnings).idle_exit == 30);
    CHECK(warnings.empty());
    const std::string file = dir.path() + "/doptd.conf";
    for (const char* text : {"\nidle_exit = -1\n", "\nidle_exit = \"600\"\n", "\nidle_exit = 1.5\n"}) {
        INFO("file:\n" << text);
        CHECK_THAT(load_error(dir, text), Catch::StartsWith(file + ":2: idle_exit must be"));
    }
}

TEST_CASE("the shipped config/doptd.conf runs the agent as user dopt", "[config]") {
    std::filesystem::path shipped =
        std::filesystem::path(__FILE__).parent_path().parent_path() / "config" / "doptd.conf";
    if (!std::filesystem::exists(shipped)) {
        WARN("config/doptd.conf not found next to the sources; skipped");
        return;
    }
    std::vector<std::string> warnings;
    CHECK(load_config(shipped.string(), warnings).user == "dopt");
    CHECK(warnings.empty());
}

TEST_CASE("peering and peer cache keys load, and bad values name their line", "[config]") {
    TempDir dir;
    std::string file = dir.write("doptd.conf", R"([p2p]
metainfo_probe = false
metainfo_suffix = ".meta"
origin_requests = 8
swarm_origin_requests = 12
max_upload_rate = 1000
throttle_lan = true
content_lookup_ms = 2500
content_follow_ms = 0
[cache]
max_size = 5000000
max_disk_percent = 50
max_age = 60
min_file_size = 0
)");
    std::vector<std::string> warnings;
    Config c = load_config(file, warnings);
    CHECK(warnings.empty());
    CHECK_FALSE(c.metainfo_probe);
    CHECK(c.metainfo_suffix == ".meta");
    CHECK(c.origin_requests == 8);
    CHECK(c.swarm_origin_requests == 12);
    CHECK(c.max_upload_rate == 1000);
    CHECK(c.throttle_lan);
    CHECK(c.content_lookup_ms == 2500);
    CHECK(c.content_follow_ms == 0);
    CHECK(c.cache_max_size == 5000000);
    CHECK(c.cache_max_disk_percent == 50);
    CHECK(c.cache_max_age == 60);
    CHECK(c.cache_min_file_size == 0);

    CHECK_THAT(load_error(dir, "[p2p]\nswarm_origin_requests = 65\n"),
               Catch::Contains(":2: p2p.swarm_origin_requests must be an integer from 1 to 64"));
    CHECK_THAT(load_error(dir, "[p2p]\norigin_requests = 0\n"),
               Catch::Contains(":2: p2p.origin_requests must be an integer from 1 to 64"));
    CHECK_THAT(load_error(dir, "[p2p]\ncontent_lookup_ms = 60001\n"),
               Catch::Contains(":2: p2p.content_lookup_ms must be an integer from 0 to 60000"));
    CHECK_THAT(load_error(dir, "[p2p]\ncontent_follow_ms = -1\n"),
               Catch::Contains(":2: p2p.content_follow_ms must be an integer from 0 to 3600000"));
    CHECK_THAT(load_error(dir, "[p2p]\n\nmetainfo_suffix = \"a?b\"\n"),
               Catch::Contains(":3: p2p.metainfo_suffix must be a non-empty URL path suffix"));
    CHECK_THAT(load_error(dir, "[cache]\nmax_disk_percent = 101\n"),
               Catch::Contains(":2: cache.max_disk_percent must be an integer from 0 to 100"));
    CHECK_THAT(load_error(dir, "cache = 3\n"), Catch::Contains(":1: cache must be a table"));
}

TEST_CASE("[metrics] textfile and interval are read; a path node_exporter would not read is an error "
          "naming its line", "[config]") {
    TempDir dir;
    std::string file = dir.write("doptd.conf", "[metrics]\ntextfile = \"/var/lib/node/dopt.prom\"\ninterval = 15\n");
    std::vector<std::string> warnings;
    Config c = load_config(file, warnings);
    CHECK(warnings.empty());
    CHECK(c.metrics_textfile == "/var/lib/node/dopt.prom");
    CHECK(c.metrics_interval == 15);
    CHECK(default_config().metrics_textfile.empty());
    CHECK(default_config().metrics_interval == 60);

    CHECK_THAT(load_error(dir, "[metrics]\n\ntextfile = \"dopt.prom\"\n"),
               Catch::Contains(":3: metrics.textfile must be an absolute path"));
    CHECK_THAT(load_error(dir, "[metrics]\ntextfile = \"/var/lib/node/dopt.txt\"\n"),
               Catch::Contains(":2: metrics.textfile must name a file ending in \".prom\""));
    CHECK_THAT(load_error(dir, "[metrics]\ntextfile = \"/var/lib/node/\"\n"),
               Catch::Contains(":2: metrics.textfile must name a file ending in \".prom\""));
    CHECK_THAT(load_error(dir, "[metrics]\ninterval = 0\n"),
               Catch::Contains(":2: metrics.interval must be an integer from 1 to 86400"));
}

// ---- drop-ins, listen by interface name, effective settings -------------

TEST_CASE("drop-ins are read in name order after the main file, the last one winning",
          "[config]") {
    TempDir dir;
    const std::string file = dir.write("doptd.conf",
                                       "log_level = \"warn\"\n"  // 1
                                       "[jobs]\n"                // 2
                                       "max_jobs = 2\n"          // 3
                                       "max_connections = 9\n"); // 4
    std::filesystem::create_directory(dir.path() + "/doptd.conf.d");
    const std::string d = dir.path() + "/doptd.conf.d/";
    dir.write("doptd.conf.d/20-late.conf", "[jobs]\n\nmax_jobs = 7\n");
    dir.write("doptd.conf.d/10-early.conf", "[jobs]\nmax_jobs = 5\n[p2p]\nlisten = \"eth0:7881\"\n");
    // Not read: another suffix, a hidden file, a package manager's leftover.
    dir.write("doptd.conf.d/30-ignored.conf.dpkg-old", "[jobs]\nmax_jobs = 60\n");
    dir.write("doptd.conf.d/.40-hidden.conf", "[jobs]\nmax_jobs = 61\n");
    dir.write("doptd.conf.d/README", "not toml at all [[[\n");
    std::vector<std::string> warnings;
    Config c = load_config(file, warnings);
    CHECK(warnings.empty());
    CHECK(c.max_jobs == 7);
    CHECK(c.max_connections == 9);
    CHECK(c.log_level == "warn");
    CHECK(c.p2p_listen == "eth0:7881");
    CHECK(c.source == file);
    CHECK(c.drop_ins == std::vector<std::string>{d + "10-early.conf", d + "20-late.conf"});
    CHECK(c.origins.at("jobs.max_jobs") == d + "20-late.conf:3");
    CHECK(c.origins.at("p2p.listen") == d + "10-early.conf:4");
    CHECK(c.origins.at("jobs.max_connections") == file + ":4");
    CHECK(c.origins.at("log_level") == file + ":1");
    CHECK(c.origins.count("jobs.retention") == 0);  // a default
    CHECK(c.origins.count("jobs") == 0);            // tables are not keys
}

TEST_CASE("an error in a drop-in names the drop-in and its line", "[config]") {
    TempDir dir;
    const std::string file = dir.write("doptd.conf", "[jobs]\nmax_jobs = 2\n");
    std::filesystem::create_directory(dir.path() + "/doptd.conf.d");
    const std::string d = dir.path() + "/doptd.conf.d/";
    dir.write("doptd.conf.d/10-ok.conf", "[http]\nconnect_timeout = 5\n");
    dir.write("doptd.conf.d/50-bad.conf", "# fleet\n[jobs]\nmax_jobs = 0\n");
    std::vector<std::string> warnings;
    CHECK_THROWS_WITH(load_config(file, warnings),
                      Catch::StartsWith(d + "50-bad.conf:3: ") &&
                          Catch::Contains("jobs.max_jobs must be an integer from 1 to 64"));
    dir.write("doptd.conf.d/50-bad.conf", "[jobs\n");
    CHECK_THROWS_WITH(load_config(file, warnings), Catch::StartsWith(d + "50-bad.conf:1:"));
    // A key retry_min_delay set by the main file, a ceiling below it in a drop-in.
    dir.write("doptd.conf", "[jobs]\nretry_min_delay = 100\n");
    dir.write("doptd.conf.d/50-bad.conf", "[jobs]\nretry_max_delay = 10\n");
    CHECK_THROWS_WITH(load_config(file, warnings),
                      Catch::StartsWith(d + "50-bad.conf:2: ") &&
                          Catch::Contains("must not exceed jobs.retry_max_delay"));
    // Unknown keys of a drop-in warn with its name.
    dir.write("doptd.conf.d/50-bad.conf", "[jobs]\nmax_jobz = 3\n");
    warnings.clear();
    load_config(file, warnings);
    CHECK(warnings == std::vector<std::string>{d + "50-bad.conf:2: unknown key 'jobs.max_jobz'"});
}

TEST_CASE("as root, a config file or drop-in others can write is refused", "[config]") {
    if (::geteuid() != 0) {
        SUCCEED("needs root: the owner and mode check applies to a system agent only");
        return;
    }
    TempDir dir;
    const std::string file = dir.write("doptd.conf", "[jobs]\nmax_jobs = 2\n");
    const std::string folder = dir.path() + "/doptd.conf.d";
    std::filesystem::create_directory(folder);
    const std::string dropin = dir.write("doptd.conf.d/10-fleet.conf", "[jobs]\nmax_jobs = 3\n");
    std::vector<std::string> warnings;
    REQUIRE(load_config(file, warnings).max_jobs == 3);

    REQUIRE(::chown(dropin.c_str(), 65534, 0) == 0);
    CHECK_THROWS_WITH(load_config(file, warnings),
                      Catch::StartsWith(dropin + ": owned by uid 65534, not root"));
    REQUIRE(::chown(dropin.c_str(), 0, 0) == 0);
    REQUIRE(::chmod(dropin.c_str(), 0646) == 0);
    CHECK_THROWS_WITH(load_config(file, warnings),
                      Catch::StartsWith(dropin + ": writable by others (mode 0646)"));
    REQUIRE(::chmod(dropin.c_str(), 0644) == 0);
    REQUIRE(::chmod(folder.c_str(), 0777) == 0);
    CHECK_THROWS_WITH(load_config(file, warnings),
                      Catch::StartsWith(folder + ": writable by others (mode 0777)"));
    REQUIRE(::chmod(folder.c_str(), 0755) == 0);
    REQUIRE(::chmod(file.c_str(), 0666) == 0);
    CHECK_THROWS_WITH(load_config(file, warnings),
                      Catch::StartsWith(file + ": writable by others (mode 0666)"));
    REQUIRE(::chmod(file.c_str(), 0644) == 0);
    // An unreadable drop-in is an error, not skipped: a file the admin meant
    // to apply never goes missing silently.
    std::filesystem::remove(dropin);
    std::filesystem::create_directory(folder + "/20-folder.conf");
    CHECK_THROWS_WITH(load_config(file, warnings),
                      Catch::StartsWith(folder + "/20-folder.conf: cannot read: ") &&
                          Catch::Contains("Is a directory"));
}

TEST_CASE("listen may name an interface instead of an address", "[config]") {
    TempDir dir;
    for (const char* ep : {"eth0:7881", "enp3s0:1", "eth0.100:65535", "veth-a_1:7881",
                           "wlp0s20f3abcdef:7881"}) {
        INFO(ep);
        CHECK(load_error(dir, std::string("[p2p]\nlisten = \"") + ep + "\"\n") == "");
    }
    const auto eth0 = dopt::agent::listen_interface("eth0.100:7881");
    REQUIRE(eth0);
    CHECK(eth0->name == "eth0.100");
    CHECK(eth0->port == 7881);
    CHECK_FALSE(dopt::agent::listen_interface("10.0.0.1:7881"));
    CHECK_FALSE(dopt::agent::listen_interface("[::1]:7881"));
    // Too long for IFNAMSIZ, no port, port 0, a host name, a name of digits.
    for (const char* ep : {"wlp0s20f3abcdefg:7881", "eth0", "eth0:0", "eth0:", "peer.lan:7881",
                           "eth0.x:7881", "123:7881", "eth 0:7881", "eth0/1:7881"}) {
        INFO(ep);
        CHECK_THAT(load_error(dir, std::string("[p2p]\nlisten = \"") + ep + "\"\n"),
                   Catch::Contains("p2p.listen must be"));
    }
}

TEST_CASE("effective settings never show a proxy's user or password, whatever its scheme",
          "[config]") {
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"http://fleet:s3cret@proxy.lan:3128", "\"http://[redacted]@proxy.lan:3128\""},
        {"socks5h://fleet:s3cret@proxy.lan:1080", "\"socks5h://[redacted]@proxy.lan:1080\""},
        {"fleet:s3cret@proxy.lan:3128", "\"[redacted]@proxy.lan:3128\""},
        {"fleet:s3cr@t@proxy.lan:3128/", "\"[redacted]@proxy.lan:3128/\""},
        {"proxy.lan:3128", "\"proxy.lan:3128\""},
    };
    for (const auto& [proxy, shown] : cases) {
        INFO(proxy);
        Config c = default_config();
        c.proxy = proxy;
        bool found = false;
        for (const auto& s : dopt::agent::effective_settings(c)) {
            if (s.key != "http.proxy") continue;
            CHECK(s.value == shown);
            found = true;
        }
        CHECK(found);
    }
}

TEST_CASE("effective settings name every key once, with its value and origin", "[config]") {
    TempDir dir;
    // Every key printed, written back as a file: each is a key the reader
    // knows (no warning), and each then comes from its line of that file.
    const auto defaults = dopt::agent::effective_settings(default_config());
    std::string text;
    std::set<std::string> keys;
    for (const auto& s : defaults) {
        CHECK(s.origin == "default");
        CHECK(keys.insert(s.key).second);
        text += s.key + " = " + s.value + "\n";
    }
    const std::string file = dir.write("doptd.conf", text);
    std::vector<std::string> warnings;
    const auto loaded = dopt::agent::effective_settings(load_config(file, warnings));
    CHECK(warnings.empty());
    REQUIRE(loaded.size() == defaults.size());
    for (std::size_t i = 0; i < loaded.size(); ++i) {
        INFO(loaded[i].key);
        CHECK(loaded[i].value == defaults[i].value);
        CHECK(loaded[i].origin == file + ":" + std::to_string(i + 1));
    }
}

TEST_CASE("trackers load; a bad or extra one is an error naming its line, a passkey redacted",
          "[config]") {
    TempDir dir;
    std::string file = dir.write("doptd.conf", R"([p2p]
trackers = [
  "http://tracker.lan:6969/announce",
  "udp://10.0.0.5:6969",
  "https://[fd00::5]/announce?passkey=s3cret",
]
)");
    std::vector<std::string> warnings;
    Config c = load_config(file, warnings);
    CHECK(warnings.empty());
    CHECK(c.trackers == std::vector<std::string>{"http://tracker.lan:6969/announce", "udp://10.0.0.5:6969",
                                                 "https://[fd00::5]/announce?passkey=s3cret"});
    CHECK(c.origins.at("p2p.trackers") == file + ":2");

    const std::vector<std::pair<std::string, std::string>> bad = {
        {"ftp://tracker.lan/announce", "is not an http://, https:// or udp:// URL"},
        {"tracker.lan:6969", "is not an http://, https:// or udp:// URL"},
        {"http:///announce", "has no host"},
        {"http://u:s3cret@:80/announce", "has no host"},
        {"udp://tracker.lan/announce", "has no port"},
        {"http://tracker.lan:0/announce", "has no port from 1 to 65535"},
        {"http://tracker.lan:99999/announce", "has no port from 1 to 65535"},
        {"http://tracker.lan/ann ounce", "has a space"},
    };
    for (const auto& [url, why] : bad) {
        INFO(url);
        const std::string error = load_error(dir, "[p2p]\ntrackers = [\n  \"http://ok.lan/announce\",\n  \"" +
                                                      url + "\",\n]\n");
        CHECK_THAT(error, Catch::Contains(":4: p2p.trackers entry") && Catch::Contains(why));
        CHECK_THAT(error, !Catch::Contains("s3cret"));
    }
    CHECK_THAT(load_error(dir, "[p2p]\ntrackers = \"http://t.lan/announce\"\n"),
               Catch::Contains(":2: p2p.trackers must be an array"));
    std::string many = "[p2p]\ntrackers = [\n";
    for (std::size_t i = 0; i <= dopt::agent::kMaxTrackers; ++i)
        many += "  \"http://t" + std::to_string(i) + ".lan/announce\",\n";
    CHECK_THAT(load_error(dir, many + "]\n"),
               Catch::Contains(":" + std::to_string(3 + dopt::agent::kMaxTrackers) +
                               ": p2p.trackers may list at most 8 trackers"));
}

TEST_CASE("effective settings never show a tracker's user info, query or unusual path", "[config]") {
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"http://fleet:s3cret@tracker.lan:6969/announce", "http://[redacted]@tracker.lan:6969/announce"},
        {"https://tracker.lan/announce?passkey=s3cret", "https://tracker.lan/announce?[redacted]"},
        {"udp://[fd00::5]:6969/announce#s3cret", "udp://[fd00::5]:6969/announce?[redacted]"},
        {"http://tracker.lan:6969/announce", "http://tracker.lan:6969/announce"},
        {"https://t.lan/s3cret/announce", "https://t.lan/[redacted]"},
        {"https://t.lan/announce/s3cret", "https://t.lan/[redacted]"},
        {"udp://t.lan:6969", "udp://t.lan:6969"},
    };
    for (const auto& [url, shown] : cases) {
        INFO(url);
        CHECK(dopt::agent::redacted_tracker(url) == shown);
        Config c = default_config();
        c.trackers = {url};
        bool found = false;
        for (const auto& s : dopt::agent::effective_settings(c)) {
            if (s.key != "p2p.trackers") continue;
            CHECK(s.value == "[\"" + shown + "\"]");
            found = true;
        }
        CHECK(found);
    }
}

TEST_CASE("a group key loads, is never shown, and a bad one names its line", "[config]") {
    TempDir dir;
    std::string file = dir.write("doptd.conf", "[p2p]\ngroup = \"floor-3 s3cret\"\n");
    std::vector<std::string> warnings;
    Config c = load_config(file, warnings);
    CHECK(warnings.empty());
    CHECK(c.group == "floor-3 s3cret");
    for (const auto& s : dopt::agent::effective_settings(c))
        if (s.key == "p2p.group") CHECK(s.value == "\"[redacted]\"");
    CHECK_THAT(load_error(dir, "[p2p]\n\ngroup = \"a\\nb\"\n"),
               Catch::Contains(":3: p2p.group must be at most 256 bytes without control"));
    CHECK_THAT(load_error(dir, "[p2p]\ngroup = \"" + std::string(257, 'k') + "\"\n"),
               Catch::Contains(":2: p2p.group must be"));
}
