// Pins the transition table to the BITS/DO contract in docs/design.md "Job states", and the
// state and context names to the CLI's --json vocabulary.
#include "storage/job_state.h"

#include <catch2/catch.hpp>

#include <set>
#include <string>
#include <utility>
#include <vector>

using dopt::storage::ErrorContext;
using dopt::storage::JobState;
using S = JobState;

namespace {

const std::vector<JobState> kAllStates = {
    S::Queued,         S::Connecting,  S::Transferring, S::Suspended,    S::Error,
    S::TransientError, S::Transferred, S::Acknowledged, S::Cancelled,
};

const std::vector<ErrorContext> kAllContexts = {
    ErrorContext::None,      ErrorContext::LocalFile, ErrorContext::RemoteFile,
    ErrorContext::Transport, ErrorContext::Peer,      ErrorContext::Agent,
    ErrorContext::Integrity,
};

// The legal transitions, written out independently of job_state.cpp.
const std::set<std::pair<JobState, JobState>> kLegal = {
    {S::Queued, S::Connecting},         {S::Queued, S::Suspended},
    {S::Queued, S::Cancelled},          {S::Queued, S::Error},
    {S::Connecting, S::Transferring},   {S::Connecting, S::TransientError},
    {S::Connecting, S::Error},          {S::Connecting, S::Suspended},
    {S::Connecting, S::Cancelled},      {S::Connecting, S::Queued},
    {S::Connecting, S::Transferred},    {S::Transferring, S::Transferred},
    {S::Transferring, S::TransientError}, {S::Transferring, S::Error},
    {S::Transferring, S::Suspended},    {S::Transferring, S::Cancelled},
    {S::Transferring, S::Queued},       {S::Transferring, S::Connecting},
    {S::TransientError, S::Queued},     {S::TransientError, S::Connecting},
    {S::TransientError, S::Error},      {S::TransientError, S::Suspended},
    {S::TransientError, S::Cancelled},  {S::Suspended, S::Queued},
    {S::Suspended, S::Cancelled},       {S::Error, S::Queued},
    {S::Error, S::Cancelled},           {S::Error, S::Acknowledged},
    {S::Transferred, S::Acknowledged},  {S::Transferred, S::Cancelled},
    {S::Transferred, S::Error},         {S::Transferred, S::Queued},
};

}  // namespace

TEST_CASE("every pair of states is allowed exactly when the contract lists it", "[job_state]") {
    for (JobState from : kAllStates) {
        for (JobState to : kAllStates) {
            const bool legal = kLegal.count({from, to}) == 1;
            INFO(state_name(from) << " -> " << state_name(to));
            CHECK(transition_allowed(from, to) == legal);
        }
    }
}

TEST_CASE("representative illegal transitions are refused", "[job_state]") {
    CHECK_FALSE(transition_allowed(S::Queued, S::Transferring));     // must connect first
    CHECK_FALSE(transition_allowed(S::Queued, S::Transferred));
    CHECK_FALSE(transition_allowed(S::Suspended, S::Transferring));  // resume goes via Queued
    CHECK_FALSE(transition_allowed(S::Suspended, S::Acknowledged));
    CHECK_FALSE(transition_allowed(S::Transferred, S::Transferring));  // refetch goes via Queued
    CHECK_FALSE(transition_allowed(S::Error, S::Transferring));
    CHECK_FALSE(transition_allowed(S::TransientError, S::Transferred));
    CHECK_FALSE(transition_allowed(S::Queued, S::Acknowledged));
}

TEST_CASE("a same-state transition is never legal", "[job_state]") {
    for (JobState s : kAllStates) CHECK_FALSE(transition_allowed(s, s));
}

TEST_CASE("final states have no exit", "[job_state]") {
    for (JobState final_state : {S::Acknowledged, S::Cancelled}) {
        CHECK(is_final(final_state));
        for (JobState to : kAllStates) CHECK_FALSE(transition_allowed(final_state, to));
    }
    for (JobState s : kAllStates) {
        if (s != S::Acknowledged && s != S::Cancelled) CHECK_FALSE(is_final(s));
    }
}

TEST_CASE("every non-final state can be cancelled", "[job_state]") {
    for (JobState s : kAllStates) {
        if (!is_final(s)) CHECK(transition_allowed(s, S::Cancelled));
    }
}

TEST_CASE("active states are the ones that move bytes", "[job_state]") {
    const std::set<JobState> active = {S::Queued, S::Connecting, S::Transferring,
                                       S::TransientError};
    for (JobState s : kAllStates) {
        INFO(state_name(s));
        CHECK(is_active(s) == (active.count(s) == 1));
    }
}

TEST_CASE("values outside the enum are neither named nor allowed", "[job_state]") {
    const auto bogus = static_cast<JobState>(42);
    CHECK(std::string(state_name(bogus)) == "unknown");
    CHECK_FALSE(transition_allowed(bogus, S::Queued));
    CHECK_FALSE(transition_allowed(S::Queued, bogus));
    CHECK(std::string(context_name(static_cast<ErrorContext>(-1))) == "unknown");
}

TEST_CASE("state names are the CLI's and round-trip through parse_state", "[job_state]") {
    const std::vector<std::string> expected = {
        "queued", "connecting",  "transferring", "suspended", "error",
        "transient_error", "transferred", "acknowledged", "cancelled",
    };
    for (std::size_t i = 0; i < kAllStates.size(); ++i) {
        CHECK(state_name(kAllStates[i]) == expected[i]);
        CHECK(dopt::storage::parse_state(expected[i]) == kAllStates[i]);
    }
    CHECK_FALSE(dopt::storage::parse_state("QUEUED").has_value());
    CHECK_FALSE(dopt::storage::parse_state("").has_value());
    CHECK_FALSE(dopt::storage::parse_state("unknown").has_value());
}

TEST_CASE("error context names round-trip through parse_context", "[job_state]") {
    const std::vector<std::string> expected = {
        "none", "local_file", "remote_file", "transport", "peer", "agent", "integrity",
    };
    for (std::size_t i = 0; i < kAllContexts.size(); ++i) {
        CHECK(context_name(kAllContexts[i]) == expected[i]);
        CHECK(dopt::storage::parse_context(expected[i]) == kAllContexts[i]);
    }
    CHECK_FALSE(dopt::storage::parse_context("remote-file").has_value());
}
