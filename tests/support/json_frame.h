// JSON messages in the IPC framing (protocol/frame.h), for C++ tests that
// play the agent. Header-only; include as "tests/support/json_frame.h"
// and link dopt_protocol.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "protocol/frame.h"

namespace dopt::test {

// Reads one frame from `fd` and parses it into `out`. False at end of
// stream or on a framing error; throws nlohmann::json::parse_error when the
// body is not JSON.
inline bool read_json_frame(int fd, nlohmann::json* out) {
    std::string body;
    if (dopt::protocol::read_frame(fd, body) != dopt::protocol::FrameResult::Ok) return false;
    *out = nlohmann::json::parse(body);
    return true;
}

}  // namespace dopt::test
