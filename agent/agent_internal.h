// Internal to agent/: the record the Agent keeps per job and the helpers
// that agent.cpp (main loop, scheduling, transfers), agent_requests.cpp (IPC
// requests) and agent_notifications.cpp (callbacks) share. Not installed.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "agent/agent.h"
#include "agent/origin_fetcher.h"
#include "agent/owner_files.h"
#include "agent/partial_file.h"
#include "storage/job_store.h"

namespace dopt::agent {

using json = nlohmann::json;

std::int64_t wall_now();  // unix seconds
std::int64_t mono_ms();   // CLOCK_MONOTONIC, milliseconds
std::string new_uuid();   // a version 4 UUID
std::string dir_of(const std::string& path);
std::string base_of(const std::string& path);
// Lexically normalises an absolute path; "" when it climbs above "/" or
// names a folder.
std::string normalise_path(const std::string& path);
bool is_waitable(storage::JobState s);  // what `wait` returns at
bool is_running(storage::JobState s);   // CONNECTING or TRANSFERRING
std::string scheme_of(const std::string& url);

// A reply envelope: seq, rc, and message when rc != 0.
json reply(std::int64_t seq, int rc, const std::string& message = "");
// `r` serialized with one more member, `key`, holding already-serialized JSON.
std::string with_member(const json& r, const char* key, const std::string& raw_json);

// A job as the agent keeps it: the persisted record plus what only lives
// while the agent runs. It is the sink of its own origin transfer.
struct Agent::Job : TransferSink {
    Agent* agent = nullptr;
    storage::JobRecord rec;

    // Runtime only; rebuilt after a restart.
    TransferId transfer = 0;              // 0: no transfer running
    int current_file = -1;
    std::unique_ptr<PartialFile> partial;
    std::uint64_t request_offset = 0;
    std::int64_t next_retry_ms = 0;       // TRANSIENT_ERROR: when to try again
    std::int64_t last_progress_ms = 0;    // for the no-progress timeout
    std::int64_t last_checkpoint_ms = 0;
    std::string last_transient;           // why the last attempt failed

    storage::FileRecord& file() { return rec.files[static_cast<std::size_t>(current_file)]; }
    bool visible_to(uid_t uid) const { return uid == 0 || uid == rec.owner_uid; }
    Owner owner() const { return Owner{rec.owner_uid, rec.owner_gid}; }
    std::uint32_t no_progress_timeout() const {
        return rec.no_progress_timeout ? rec.no_progress_timeout
                                       : agent->config_.no_progress_timeout;
    }

    int on_response(const ResponseInfo& info) override;
    int on_body(const char* data, std::size_t len) override;
    void on_done(const TransferOutcome& outcome) override;

    std::string to_json() const;  // the job object, as JSON text
};

// One decoded IPC request and who sent it (SO_PEERCRED).
struct Agent::Request {
    ConnId conn;
    PeerCred peer;
    std::int64_t seq = 0;
    std::string op;
    json body;
};

}  // namespace dopt::agent
