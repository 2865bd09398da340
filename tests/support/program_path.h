// Where C++ tests find the programs they run. Header-only; include as
// "tests/support/program_path.h".
#pragma once

#include <cstdlib>
#include <string>

namespace dopt::test {

// The value of environment variable `variable` when it is set and not
// empty (a path chosen by whoever runs the test), else `built_in` (the path
// CMake compiled in).
inline std::string program_path(const char* variable, const char* built_in) {
    const char* env = std::getenv(variable);
    return env != nullptr && *env != '\0' ? env : built_in;
}

}  // namespace dopt::test
