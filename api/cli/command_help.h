// Each command's own help: `dopt COMMAND --help` and `dopt help COMMAND`.
#pragma once

#include <string>

namespace dopt::cli {

// The help text of `command` (usage, what it does, its options, its exit
// codes), or nullptr when there is no such command.
const char* command_help(const std::string& command);

}  // namespace dopt::cli
