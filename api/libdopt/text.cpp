// Fixed texts of libdopt: version, result codes, state and context names,
// and the per-thread last-error detail.
#include "api/libdopt/internal.h"

namespace dopt::client {

namespace {
// The detail of the last failure on this thread. A std::string so that the
// pointer dopt_last_error() returns stays valid until the next failure.
thread_local std::string t_last_error;
}  // namespace

void set_error(const std::string& detail) noexcept {
    try {
        t_last_error = detail;
    } catch (...) {
        t_last_error.clear();  // out of memory: an empty detail beats none
    }
}

void clear_error() noexcept { t_last_error.clear(); }

int fail(int code, const std::string& detail) noexcept {
    set_error(detail);
    return code;
}

}  // namespace dopt::client

extern "C" {

const char* dopt_version(void) { return DOPT_VERSION_STRING; }

const char* dopt_last_error(void) { return dopt::client::t_last_error.c_str(); }

const char* dopt_strerror(int code) {
    switch (code) {
        case DOPT_OK: return "success";
        case DOPT_E_INVALID_ARG: return "invalid argument";
        case DOPT_E_NOMEM: return "out of memory";
        case DOPT_E_CONNECT: return "the agent could not be reached";
        case DOPT_E_PROTOCOL: return "malformed message between libdopt and the agent";
        case DOPT_E_VERSION: return "libdopt and the agent speak different protocol versions";
        case DOPT_E_NOT_FOUND: return "no such job";
        case DOPT_E_INVALID_STATE: return "not allowed in the job's current state";
        case DOPT_E_INVALID_URL: return "malformed URL";
        case DOPT_E_UNSUPPORTED_SCHEME: return "unsupported URL scheme (use http or https)";
        case DOPT_E_RELATIVE_PATH: return "local path is not absolute";
        case DOPT_E_ACCESS: return "permission denied for the local path";
        case DOPT_E_TIMEOUT: return "timed out before the job ended";
        case DOPT_E_TOO_LARGE: return "message or value too large";
        case DOPT_E_INTERNAL: return "internal error";
        case DOPT_E_DISCONNECTED: return "the agent closed the connection";
        case DOPT_E_HTTP: return "the origin answered with an HTTP error";
        case DOPT_E_INTEGRITY: return "content failed its integrity check";
        case DOPT_E_NO_PROGRESS: return "no progress within the no-progress timeout";
        case DOPT_E_TRANSPORT: return "network failure talking to the origin";
        case DOPT_E_LOCAL_IO: return "local file read or write failed";
        case DOPT_E_REMOTE_CHANGED: return "the remote file changed during the transfer";
        case DOPT_E_EXISTS: return "the destination is already used by another job";
        case DOPT_E_TLS: return "TLS failure (certificate or handshake)";
        default: return "unknown error code";
    }
}

const char* dopt_state_name(dopt_job_state state) {
    switch (static_cast<int>(state)) {
        case DOPT_STATE_QUEUED: return "queued";
        case DOPT_STATE_CONNECTING: return "connecting";
        case DOPT_STATE_TRANSFERRING: return "transferring";
        case DOPT_STATE_SUSPENDED: return "suspended";
        case DOPT_STATE_ERROR: return "error";
        case DOPT_STATE_TRANSIENT_ERROR: return "transient_error";
        case DOPT_STATE_TRANSFERRED: return "transferred";
        case DOPT_STATE_ACKNOWLEDGED: return "acknowledged";
        case DOPT_STATE_CANCELLED: return "cancelled";
        default: return "unknown";
    }
}

const char* dopt_context_name(dopt_context context) {
    switch (static_cast<int>(context)) {
        case DOPT_CONTEXT_NONE: return "none";
        case DOPT_CONTEXT_LOCAL_FILE: return "local_file";
        case DOPT_CONTEXT_REMOTE_FILE: return "remote_file";
        case DOPT_CONTEXT_TRANSPORT: return "transport";
        case DOPT_CONTEXT_PEER: return "peer";
        case DOPT_CONTEXT_AGENT: return "agent";
        case DOPT_CONTEXT_INTEGRITY: return "integrity";
        default: return "unknown";
    }
}

}  // extern "C"
