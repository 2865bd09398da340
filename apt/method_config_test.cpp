#include "apt/method_config.h"

#include <catch2/catch.hpp>

using namespace dopt::apt;

TEST_CASE("the method's items are read from apt's configuration, the rest left alone") {
    MethodConfig config;
    read_configuration(parse_message("601 Configuration\n"
                                     "Config-Item: Acquire::http::Timeout=30\n"
                                     "Config-Item: acquire::DOPT::socket=/run/my%20agent.sock\n"
                                     "Config-Item: Acquire::dopt::Timeout=45\n"
                                     "Config-Item: Acquire::dopt::Fallback=false\n"
                                     "Config-Item: Acquire::dopt::Priority=low\n"
                                     "Config-Item: APT::Sandbox::User=root\n"),
                       config);
    CHECK(config.socket_path == "/run/my agent.sock");
    CHECK(config.no_progress_timeout == 45);
    CHECK_FALSE(config.fall_back);
    CHECK(config.priority == DOPT_PRIORITY_LOW);
    CHECK(config.sandbox_user == "root");
}

TEST_CASE("values the method cannot read keep the defaults") {
    MethodConfig config;
    read_configuration(parse_message("601 Configuration\n"
                                     "Config-Item: Acquire::dopt::Timeout=-5\n"
                                     "Config-Item: Acquire::dopt::Timeout=soon\n"
                                     "Config-Item: Acquire::dopt::Fallback=perhaps\n"
                                     "Config-Item: Acquire::dopt::Priority=urgent\n"
                                     "Config-Item: no equals sign\n"),
                       config);
    MethodConfig defaults;
    CHECK(config.socket_path.empty());
    CHECK(config.no_progress_timeout == defaults.no_progress_timeout);
    CHECK(config.fall_back);
    CHECK(config.priority == DOPT_PRIORITY_FOREGROUND);
    CHECK(config.sandbox_user == "_apt");
}
