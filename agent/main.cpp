// doptd: the dopt agent. Runs in the foreground (systemd style), logs to
// stderr or the journal; under systemd it notifies readiness and may be
// socket-activated (service_manager.h). Exit codes: 0 stopped by a signal, 1 could not start or failed,
// 2 bad command line or configuration.
#include <csignal>
#include <cstdio>
#include <cstring>
#include <exception>
#include <pwd.h>
#include <stdexcept>
#include <string>
#include <unistd.h>
#include <vector>

#include <curl/curl.h>

#include "agent/agent.h"
#include "agent/config.h"
#include "agent/log.h"
#include "agent/privilege_separation.h"
#include "agent/service_manager.h"
#include "dopt/dopt.h"

namespace {

void usage(FILE* out) {
    std::fprintf(out,
                 "usage: doptd [--config FILE] [--check-config]\n"
                 "  Runs the dopt agent in the foreground. Without --config it uses the\n"
                 "  built-in defaults (system paths as root, XDG paths for a user); FILE.d/*.conf\n"
                 "  are read after FILE.\n"
                 "  --check-config  print the effective settings (or the errors) and exit 0 (1)\n"
                 "  --version   print the version\n");
}

// As root with `user` set: privilege-separated (privilege_separation.h).
// As root without it: everything stays root, with a warning. Not root: the
// agent is its user's own and `user` means nothing.
void start_as(const dopt::agent::Config& config) {
    if (::geteuid() == 0) {
        if (config.user.empty()) {
            LOG_WARN("running as root without privilege separation: the part that talks to "
                     "the network keeps root; set `user` in the config (docs/config.md)");
            return;
        }
        dopt::agent::ServiceAccount account;
        try {
            account = dopt::agent::lookup_account(config.user);
        } catch (const std::runtime_error& e) {  // name the file that asked for it
            throw std::runtime_error(config.source.empty() ? e.what()
                                                           : config.source + ": " + e.what());
        }
        dopt::agent::separate_privileges(config, account);
        return;
    }
    if (config.user.empty()) return;
    const passwd* me = ::getpwuid(::geteuid());
    if (me == nullptr || config.user != me->pw_name)
        LOG_WARN("user = \"%s\" ignored: doptd is not running as root, so it runs as "
                 "uid %u and never switches", config.user.c_str(),
                 static_cast<unsigned>(::geteuid()));
}

}  // namespace

int main(int argc, char** argv) {
    std::string config_path;
    bool check_only = false;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--config" && i + 1 < argc) {
            config_path = argv[++i];
        } else if (a.rfind("--config=", 0) == 0) {
            config_path = a.substr(9);
        } else if (a == "--check-config") {
            check_only = true;
        } else if (a == "--version") {
#if defined(DOPT_CRASH_POINTS) && DOPT_CRASH_POINTS
            // A test build: it dies on purpose where DOPT_CRASH_AT says.
            std::printf("doptd %s (crash points compiled in: a test build)\n", DOPT_VERSION_STRING);
#else
            std::printf("doptd %s\n", DOPT_VERSION_STRING);
#endif
            return 0;
        } else if (a == "--help" || a == "-h") {
            usage(stdout);
            return 0;
        } else {
            std::fprintf(stderr, "doptd: unknown argument '%s'\n", a.c_str());
            usage(stderr);
            return 2;
        }
    }
    if (check_only) return dopt::agent::check_config(config_path);

    // Signals are taken through a signalfd by the main loop: block them before
    // any thread (curl's resolver) exists so every thread inherits the mask.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    std::signal(SIGPIPE, SIG_IGN);

    dopt::agent::set_system_agent_config(::geteuid() == 0);  // reloads check as at start
    dopt::agent::Config config;
    try {
        if (config_path.empty()) {
            config = dopt::agent::default_config();
        } else {
            std::vector<std::string> warnings;
            config = dopt::agent::load_config(config_path, warnings);
            dopt::agent::set_log_level(config.log_level);
            for (const auto& w : warnings) LOG_WARN("%s", w.c_str());
        }
    } catch (const dopt::agent::ConfigError& e) {
        std::fprintf(stderr, "doptd: %s\n", e.what());
        return 2;
    }

    // Who runs the network-facing part: decided before curl or any thread
    // exists (fork and the uid switch want a single-threaded process).
    dopt::agent::set_owner_op_timeout_ms(static_cast<int>(config.file_op_timeout) * 1000);
    int activated_socket = -1;  // doptd.socket's, when systemd started doptd through it
    try {
        activated_socket = dopt::agent::take_activated_socket(config.socket);
        start_as(config);
    } catch (const std::exception& e) {
        LOG_ERROR("%s", e.what());
        return 1;
    }

    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc = 1;
    try {
        dopt::agent::Agent agent(config, activated_socket);
        rc = agent.run();
    } catch (const std::exception& e) {
        LOG_ERROR("%s", e.what());
        rc = 1;
    }
    curl_global_cleanup();
    return rc;
}
