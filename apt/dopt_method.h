// The apt acquire method dopt+http / dopt+https: apt's messages on stdin and
// stdout, one dopt job for each file apt asks for (README.md).
#pragma once

#include "apt/acquire_request.h"
#include "apt/method_config.h"
#include "apt/method_message.h"
#include "apt/progress_file.h"

#include <dopt/dopt.h>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace dopt::apt {

class DoptMethod {
public:
    // `method` is the name apt started the method by ("dopt+http" or
    // "dopt+https"); apt's messages come on `in_fd`, answers go to `out_fd`.
    DoptMethod(std::string method, int in_fd, int out_fd);
    ~DoptMethod();
    DoptMethod(const DoptMethod&) = delete;
    DoptMethod& operator=(const DoptMethod&) = delete;

    // Serves apt until its end of stdin, SIGINT or SIGTERM; the jobs not
    // yet done are cancelled when the method is destroyed (their partial
    // files go with them). Returns the exit status: 0, or 100 after a
    // `401 General Failure` (a malformed message from apt, or the sandbox
    // user that could not be taken on).
    int run();

private:
    // A file in progress: its request, its job, and what apt was told.
    struct Fetch {
        AcquireRequest request;
        dopt_job* job = nullptr;
        bool started = false;  // `200 URI Start` sent
        // apt's progress bar, from `200 URI Start` until apt has its answer
        // (progress_file.h); null when Filename held something else.
        std::unique_ptr<ProgressFile> progress;
    };
    enum class Outcome { Running, Finished };

    // One message from apt; false when the method must end (after a 401).
    bool handle(const MethodMessage& message);
    // A `600 URI Acquire`: a running job in fetches_, or an answer at once
    // (a failure, or the redirect to apt's own method when no agent answers).
    void acquire(const MethodMessage& message);
    bool connect_agent(std::string& why_not);
    int start_job(Fetch& fetch, std::string& error);
    int add_file_replacing_stale_job(dopt_job* job, const AcquireRequest& r);
    // Reads the job's status and tells apt what changed; Finished once apt
    // has its answer (201, 400 or 103) and the job handle is closed.
    Outcome check(Fetch& fetch);
    Outcome on_transferred(Fetch& fetch);
    Outcome on_error(Fetch& fetch, const dopt_error* error);
    void check_all();
    void fail(const AcquireRequest& r, const std::string& message, const std::string& reason = "",
              bool transient = false);
    void fall_back_to_apt(const AcquireRequest& r, const std::string& why);
    // Closes the job's handle, cancelling the job first when `cancel`, and
    // removes the progress file unless the job delivered over it: called
    // before any answer to apt.
    void end_job(Fetch& fetch, bool cancel);
    void send(const std::string& header, const std::vector<std::pair<std::string, std::string>>& fields);

    std::string method_;
    int in_fd_;
    int out_fd_;
    int wake_[2] = {-1, -1};  // callbacks and signals write a byte, the loop reads it
    MethodConfig config_;
    dopt_client* client_ = nullptr;
    std::map<int, Fetch> fetches_;  // by arrival order
    int next_fetch_ = 0;
};

}  // namespace dopt::apt
