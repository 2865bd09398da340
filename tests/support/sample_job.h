// A job object as the agent writes it on the wire (docs/protocol.md), for
// tests that play the agent. Header-only; include as
// "tests/support/sample_job.h".
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace dopt::test {

// The strings of a sample job; each defaults to a plain ASCII value.
struct SampleJobText {
    std::string id = "7d0c3e0e-1b9e-4f5c-9d0b-2f3c8a6e4b11";
    std::string display_name = "big.iso";
    std::string state = "error";
    std::string local_name = "/home/ann/big.iso";
    std::string remote_name = "https://host/big.iso";
    std::string description = "403 Forbidden from https://host/big.iso";
};

// A job of one file, owner 1000, priority 1, 512 bytes in (12 from peers),
// total size unknown (-1), with a remote_file error 403 about that file
// (the error's file: 4096 bytes, 512 transferred).
inline nlohmann::json sample_job(const SampleJobText& text = {}) {
    using nlohmann::json;
    const json file = {{"local_name", text.local_name},
                       {"remote_name", text.remote_name},
                       {"bytes_total", -1},
                       {"bytes_transferred", 512}};
    json error_file = file;
    error_file["bytes_total"] = 4096;
    return {{"id", text.id},
            {"display_name", text.display_name},
            {"owner_uid", 1000},
            {"state", text.state},
            {"priority", 1},
            {"mode", "http_only"},
            {"created", 1795000000},
            {"modified", 1795000100},
            {"transfer_completed", 0},
            {"bytes_total", -1},
            {"bytes_transferred", 512},
            {"bytes_from_peers", 12},
            {"bytes_from_origin", 500},
            {"files", json::array({file})},
            {"error", {{"context", "remote_file"},
                       {"code", 403},
                       {"description", text.description},
                       {"protocol", "https"},
                       {"time", 1795000100},
                       {"file", error_file}}}};
}

}  // namespace dopt::test
