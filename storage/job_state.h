// Job states, priorities and error contexts, and the one table of legal state
// transitions. Every state change in dopt goes through transition_allowed().
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace dopt::storage {

// Numeric values match dopt_job_state in dopt.h and are stored in SQLite.
enum class JobState : int {
    Queued = 0,
    Connecting = 1,
    Transferring = 2,
    Suspended = 3,
    Error = 4,
    TransientError = 5,
    Transferred = 6,
    Acknowledged = 7,
    Cancelled = 8,
};

// Numeric values match dopt_priority; lower is more urgent.
enum class Priority : int { Foreground = 0, High = 1, Normal = 2, Low = 3 };

// Numeric values match dopt_error_context.
enum class ErrorContext : int {
    None = 0,
    LocalFile = 1,
    RemoteFile = 2,
    Transport = 3,
    Peer = 4,
    Agent = 5,
    Integrity = 6,
};

// "queued", "transient_error", ... as the CLI's --json prints them.
const char* state_name(JobState s);
std::optional<JobState> parse_state(std::string_view name);
const char* context_name(ErrorContext c);
std::optional<ErrorContext> parse_context(std::string_view name);

// The single transition table. Returns true when `from -> to` is legal.
// A same-state "transition" is never legal.
bool transition_allowed(JobState from, JobState to);

// ACKNOWLEDGED and CANCELLED: nothing more happens to the job.
bool is_final(JobState s);
// States in which the agent is (or will be) moving bytes for the job.
bool is_active(JobState s);

}  // namespace dopt::storage
