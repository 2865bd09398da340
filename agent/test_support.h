// Helpers of the agent's unit tests (*_test.cpp here): the project-wide file
// helpers of tests/support/, under the names these tests use.
#pragma once

#include "tests/support/temp_dir.h"

namespace dopt::agent::test {

using dopt::test::read_file;
using dopt::test::TempDir;
using dopt::test::write_file;

}  // namespace dopt::agent::test
