// OriginFetcher: every HTTP(S) transfer from origins, on one libcurl multi
// handle driven by the agent's main loop (no threads of its own beyond
// curl's resolver).
//
// Contract:
//  - start() begins a GET for one file from `offset`. With offset > 0 it
//    sends `Range: bytes=offset-` and, when a validator is known,
//    `If-Range: <validator>`, so an origin whose file changed answers 200
//    with the whole new file instead of a range of it.
//  - The sink sees on_response() once for the final response (after
//    redirects), then on_body() for each chunk, then on_done() exactly once,
//    unless the transfer was stop()ped, which calls nothing.
//  - Sinks must not call start()/stop() from on_response()/on_body() (curl
//    forbids it inside its callbacks); from on_done() they may.
//  - Redirects (301, 302, 303, 307, 308) are followed, at most 10; once at
//    an https URL a transfer may only be redirected to https (no downgrade).
//    The request's own headers (TransferRequest::headers) go only to the
//    origin (scheme, host and port) of request.url: a redirect elsewhere
//    carries none of them. Range and If-Range go everywhere. A redirect
//    whose body passes 64 KiB is not followed.
//  - Proxies: [http] proxy, else the usual environment variables
//    (http_proxy, https_proxy, no_proxy), as libcurl reads them.
//  - perform() hands the caller's loop back within about kSliceMs a
//    transfer: one whose bytes keep arriving is paused (libcurl keeps the
//    chunk) once it has had that long in the call, and resumed by the next
//    call, so that the loop's other work (IPC requests, owner operations)
//    is served while a fast transfer runs. libcurl alone reads up to 100
//    buffers in a call while its socket has data.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <poll.h>

#include "storage/job_state.h"

namespace dopt::agent {

struct FetcherSettings {
    std::string proxy;              // "" = environment
    std::string user_agent = "dopt/0.1";
    std::string ca_file;            // "" = system CA store
    long connect_timeout = 30;      // seconds
    long low_speed_time = 60;       // seconds under 1 byte/s = stalled
    int max_connections = 8;
};

struct TransferRequest {
    std::string url;
    std::uint64_t offset = 0;
    std::uint64_t length = 0;            // > 0: only bytes offset..offset+length-1 (a piece)
    std::string if_range;                // ETag or Last-Modified of bytes held
    std::vector<std::string> headers;    // "Name: value"
    std::uint64_t max_recv_rate = 0;     // bytes/s, 0 = unlimited
};

struct ResponseInfo {
    long status = 0;
    std::uint64_t body_offset = 0;       // where the body's first byte belongs
    std::uint64_t total = UINT64_MAX;    // whole file size, when the origin said
    std::string etag;
    std::string last_modified;
    // The origin's digest fields of the whole file, as sent (RFC 9530
    // Repr-Digest, RFC 3230 Digest; repeated lines joined by ", "); "" when
    // absent. sha256_of_digest_fields (agent_internal.h) reads them.
    std::string repr_digest;
    std::string digest;
};

// How a transfer ended. When `ok` is false the rest classifies the failure
// along the rules of docs/design.md "Job states".
struct TransferOutcome {
    bool ok = false;
    bool transient = false;              // retry with backoff
    storage::ErrorContext context = storage::ErrorContext::None;
    std::int64_t code = 0;               // HTTP status, errno or DOPT_E_*
    std::string description;             // names the URL and the cause
    long retry_after = 0;                // seconds the origin asked us to wait
};

class TransferSink {
public:
    virtual ~TransferSink() = default;
    // Final response headers. Return 0 to take the body, or a negative
    // DOPT_E_* / -errno to abort (the outcome then carries `abort_outcome`).
    virtual int on_response(const ResponseInfo& info) = 0;
    // Body bytes in order. 0, or -errno to abort (a local file error), or
    // a negative DOPT_E_* (the sink then knows why: the outcome's text is
    // not meant for the job).
    virtual int on_body(const char* data, std::size_t len) = 0;
    virtual void on_done(const TransferOutcome& outcome) = 0;
};

using TransferId = std::uint64_t;

class OriginFetcher {
public:
    // How long one transfer may take the bytes it receives in one perform().
    static constexpr int kSliceMs = 10;

    explicit OriginFetcher(const FetcherSettings& settings);
    ~OriginFetcher();
    OriginFetcher(const OriginFetcher&) = delete;
    OriginFetcher& operator=(const OriginFetcher&) = delete;

    void apply_settings(const FetcherSettings& settings);  // for new transfers

    TransferId start(const TransferRequest& request, TransferSink* sink);
    // Ends a transfer at once; its sink hears nothing more.
    void stop(TransferId id);
    bool idle() const { return transfers_.empty(); }

    // Waits until a transfer or one of `extra` has something to do, or
    // timeout_ms passes (at once while a transfer is paused at the end of
    // its slice); fills extra[i].revents. Then call perform().
    void wait(std::vector<pollfd>& extra, int timeout_ms);
    // Resumes the transfers paused at the end of their slice, moves every
    // transfer along and calls the sinks.
    void perform();

    struct Transfer;  // one easy handle and its sink (origin_fetcher.cpp)

private:
    void resume_paused();
    bool any_paused() const;
    void finish(Transfer& t, int curl_code);
    bool follow_redirect(Transfer& t, int& curl_code);
    void restart_at(Transfer& t, const std::string& url, bool with_job_headers);
    void* multi_;
    FetcherSettings settings_;
    TransferId next_id_ = 1;
    std::map<TransferId, std::unique_ptr<Transfer>> transfers_;
};

// How the agent describes an HTTP status for people ("403 Forbidden").
std::string describe_http_status(long status);

}  // namespace dopt::agent
