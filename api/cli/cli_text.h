// Text the dopt CLI shows a person: sizes, percentages, durations and why a
// job waits. Shared by the commands (dopt_cli.cpp) and the progress meter.
#pragma once

#include "dopt/dopt.h"

#include <cstdint>
#include <string>

namespace dopt::cli {

// "12.5 MiB"; "?" for UINT64_MAX (unknown).
std::string human_bytes(std::uint64_t n);

// Percent done, or -1 when the total is unknown. Files of 0 bytes are
// done when every file is.
int percent(const dopt_progress& p);

// "45 s", "12:05", "1:02:03" (hours:minutes:seconds from one minute on).
std::string human_duration(std::uint64_t seconds);

// "transient_error: could not resolve host: nowhere.invalid; next try in
// 9 s", or "" when the job does not wait on a transient error.
std::string transient_summary(const dopt_job_status* s);

}  // namespace dopt::cli
