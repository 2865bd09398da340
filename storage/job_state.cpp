// Names of states and error contexts, and THE transition table.
#include "storage/job_state.h"

#include <array>
#include <cstddef>
#include <cstdint>

namespace dopt::storage {
namespace {

constexpr std::size_t kStateCount = 9;
constexpr std::size_t kContextCount = 7;

// Indexed by the enum's numeric value (the values are stored in SQLite and
// shared with dopt.h, so they never move).
constexpr std::array<const char*, kStateCount> kStateNames = {
    "queued",      "connecting",   "transferring", "suspended", "error",
    "transient_error", "transferred", "acknowledged", "cancelled",
};
constexpr std::array<const char*, kContextCount> kContextNames = {
    "none", "local_file", "remote_file", "transport", "peer", "agent", "integrity",
};

constexpr std::uint16_t bit(JobState s) {
    return static_cast<std::uint16_t>(1u << static_cast<unsigned>(s));
}

template <typename... States>
constexpr std::uint16_t any_of(States... states) {
    return static_cast<std::uint16_t>((0u | ... | bit(states)));
}

// One row per state: the states a job in `from` may move to.
struct Exits {
    JobState from;
    std::uint16_t to;
};

using S = JobState;

// THE transition table. Every state change in dopt is checked against it.
constexpr std::array<Exits, kStateCount> kTransitions = {{
    {S::Queued, any_of(S::Connecting, S::Suspended, S::Cancelled, S::Error)},
    // Queued: preempted by a more urgent job. Transferred: nothing left to fetch.
    {S::Connecting, any_of(S::Transferring, S::TransientError, S::Error, S::Suspended,
                           S::Cancelled, S::Queued, S::Transferred)},
    // Queued: preempted. Connecting: on to the job's next file.
    {S::Transferring, any_of(S::Transferred, S::TransientError, S::Error, S::Suspended,
                             S::Cancelled, S::Queued, S::Connecting)},
    // Queued: resume.
    {S::Suspended, any_of(S::Queued, S::Cancelled)},
    // Queued: resume after the cause is fixed. Acknowledged: complete, keeping
    // the files that were whole.
    {S::Error, any_of(S::Queued, S::Cancelled, S::Acknowledged)},
    // Queued: retry after backoff. Error: the no-progress timeout ran out.
    {S::TransientError, any_of(S::Queued, S::Connecting, S::Error, S::Suspended,
                               S::Cancelled)},
    // Acknowledged: the client (or auto-complete) completed the job.
    // Error: the agent's own Complete (auto-complete) could not deliver.
    // Queued: resume of a job whose bytes are gone (a partial file removed).
    {S::Transferred, any_of(S::Acknowledged, S::Cancelled, S::Error, S::Queued)},
    {S::Acknowledged, 0},
    {S::Cancelled, 0},
}};

constexpr bool table_is_well_formed() {
    for (std::size_t i = 0; i < kTransitions.size(); ++i) {
        const Exits& row = kTransitions[i];
        if (static_cast<std::size_t>(row.from) != i) return false;  // row order = enum
        if (row.to & bit(row.from)) return false;                   // no self-loops
        if (row.to >> kStateCount) return false;                    // no unknown states
    }
    return kTransitions[static_cast<std::size_t>(S::Acknowledged)].to == 0 &&
           kTransitions[static_cast<std::size_t>(S::Cancelled)].to == 0;
}
static_assert(table_is_well_formed(),
              "transition table: rows in enum order, no self-loops, finals have no exit");

bool is_known(JobState s) {
    return static_cast<unsigned>(s) < kStateCount;
}

}  // namespace

const char* state_name(JobState s) {
    return is_known(s) ? kStateNames[static_cast<std::size_t>(s)] : "unknown";
}

std::optional<JobState> parse_state(std::string_view name) {
    for (std::size_t i = 0; i < kStateNames.size(); ++i) {
        if (name == kStateNames[i]) return static_cast<JobState>(i);
    }
    return std::nullopt;
}

const char* context_name(ErrorContext c) {
    const auto i = static_cast<unsigned>(c);
    return i < kContextCount ? kContextNames[i] : "unknown";
}

std::optional<ErrorContext> parse_context(std::string_view name) {
    for (std::size_t i = 0; i < kContextNames.size(); ++i) {
        if (name == kContextNames[i]) return static_cast<ErrorContext>(i);
    }
    return std::nullopt;
}

bool transition_allowed(JobState from, JobState to) {
    if (!is_known(from) || !is_known(to)) return false;
    return (kTransitions[static_cast<std::size_t>(from)].to & bit(to)) != 0;
}

bool is_final(JobState s) {
    return s == JobState::Acknowledged || s == JobState::Cancelled;
}

bool is_active(JobState s) {
    return s == JobState::Queued || s == JobState::Connecting ||
           s == JobState::Transferring || s == JobState::TransientError;
}

}  // namespace dopt::storage
