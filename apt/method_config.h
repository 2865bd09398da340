// The apt configuration items the method reads from `601 Configuration`
// (README.md, "Configuration").
#pragma once

#include "apt/method_message.h"

#include <dopt/dopt.h>

#include <string>

namespace dopt::apt {

struct MethodConfig {
    std::string socket_path;              // Acquire::dopt::Socket; "": libdopt's default
    unsigned no_progress_timeout = 120;   // Acquire::dopt::Timeout, seconds
    bool fall_back = true;                // Acquire::dopt::Fallback
    dopt_priority priority = DOPT_PRIORITY_FOREGROUND;  // Acquire::dopt::Priority
    std::string sandbox_user = "_apt";    // APT::Sandbox::User
};

// Sets in `config` what the Config-Item fields of `message` give (names as
// apt sends them, "%xx"-quoted; compared without regard to case). Items the
// method does not use, and values it cannot read (a timeout that is not a
// number of seconds from 1 to a year, a priority other than foreground,
// high, normal or low, a boolean apt would not read), leave it unchanged.
void read_configuration(const MethodMessage& message, MethodConfig& config);

}  // namespace dopt::apt
