/*
 * dopt.h — the public C API of dopt, a peer-to-peer delivery optimization
 * agent. Start here.
 *
 * Rules that hold for every function in this file:
 *
 *  - Handles (dopt_client, dopt_job, dopt_job_status, dopt_error) are opaque.
 *    What a function returns through a pointer-to-pointer is owned by the
 *    caller and released with the matching *_close or *_free function.
 *    Closing or freeing NULL is a harmless no-op.
 *  - Functions return int: DOPT_OK (0) on success, a negative DOPT_E_* code on
 *    failure. Codes are only ever appended, never renumbered or removed.
 *    dopt_strerror(code) gives a fixed text; dopt_last_error() gives the
 *    detail of the last failure on the calling thread.
 *  - Out-parameters come first, then the object the function acts on, then
 *    its inputs: dopt_job_fetch_state(&state, job). On failure an out-pointer
 *    is set to NULL (or zeroed) so nothing leaks.
 *  - Names say what a function costs. dopt_<object>_fetch_* and the other
 *    verbs taking a dopt_client or dopt_job (create, open, add, set, resume,
 *    wait, list, clear...) ask the agent: one round trip over the socket, can
 *    fail, return int. dopt_<object>_<field> (dopt_job_status_state,
 *    dopt_error_code) only reads a field of an object already in memory and
 *    never blocks; given a NULL object it returns 0, NULL or "" (zeroes an
 *    out-struct) and says so in dopt_last_error.
 *  - Each function's comment is its contract, in this order: what it does,
 *    its parameters, what it returns or fills in, who owns what, the errors
 *    it can return besides DOPT_E_INVALID_ARG (a NULL object or out-pointer),
 *    DOPT_E_NOMEM, DOPT_E_CONNECT, DOPT_E_DISCONNECTED, DOPT_E_PROTOCOL and
 *    DOPT_E_INTERNAL, which every round trip can return.
 *  - Threading: a dopt_client and the jobs opened through it may be used from
 *    several threads; calls on one client are serialized internally. Status
 *    snapshots and error objects are plain values: read them from any thread,
 *    free them once.
 *  - Strings are UTF-8, NUL-terminated. Strings returned as `const char *`
 *    from a handle stay valid until that handle is closed or freed.
 *  - No C++ exception ever crosses this boundary.
 *
 * If a function is not declared in this file it is not public.
 */
#ifndef DOPT_DOPT_H
#define DOPT_DOPT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define DOPT_EXPORT __attribute__((visibility("default")))
#else
#define DOPT_EXPORT
#endif

#define DOPT_VERSION_MAJOR 0
#define DOPT_VERSION_MINOR 3
#define DOPT_VERSION_PATCH 0
#define DOPT_VERSION_STRING "0.3.0"

/* Result codes. New codes are added last; none is ever removed. */
enum dopt_result {
    DOPT_OK = 0,
    DOPT_E_INVALID_ARG = -1,        /* NULL or malformed argument */
    DOPT_E_NOMEM = -2,              /* out of memory */
    DOPT_E_CONNECT = -3,            /* the agent could not be reached */
    DOPT_E_PROTOCOL = -4,           /* malformed message on the socket */
    DOPT_E_VERSION = -5,            /* libdopt and doptd speak different protocol versions */
    DOPT_E_NOT_FOUND = -6,          /* no such job (or it belongs to another user) */
    DOPT_E_INVALID_STATE = -7,      /* the request is not allowed in the job's state */
    DOPT_E_INVALID_URL = -8,        /* the URL is malformed */
    DOPT_E_UNSUPPORTED_SCHEME = -9, /* the URL's scheme is not http or https */
    DOPT_E_RELATIVE_PATH = -10,     /* a local path must be absolute */
    DOPT_E_ACCESS = -11,            /* the job's owner cannot write the local path */
    DOPT_E_TIMEOUT = -12,           /* the wait ended before the job did */
    DOPT_E_TOO_LARGE = -13,         /* a message or value exceeds its limit */
    DOPT_E_INTERNAL = -14,          /* a bug or an unexpected failure in the agent */
    DOPT_E_DISCONNECTED = -15,      /* the agent closed the connection */
    DOPT_E_HTTP = -16,              /* the origin answered with an HTTP error */
    DOPT_E_INTEGRITY = -17,         /* content did not match its SHA-256 or piece hashes */
    DOPT_E_NO_PROGRESS = -18,       /* no progress within the job's no-progress timeout */
    DOPT_E_TRANSPORT = -19,         /* network failure talking to the origin */
    DOPT_E_LOCAL_IO = -20,          /* reading or writing a local file failed */
    DOPT_E_REMOTE_CHANGED = -21,    /* the remote file changed during the transfer */
    DOPT_E_EXISTS = -22,            /* the destination is already used by another job */
    DOPT_E_TLS = -23                /* TLS failed (bad certificate, handshake) */
};

/* Job states (BITS/Delivery Optimization). */
typedef enum dopt_job_state {
    DOPT_STATE_QUEUED = 0,
    DOPT_STATE_CONNECTING = 1,
    DOPT_STATE_TRANSFERRING = 2,
    DOPT_STATE_SUSPENDED = 3,
    DOPT_STATE_ERROR = 4,
    DOPT_STATE_TRANSIENT_ERROR = 5,
    DOPT_STATE_TRANSFERRED = 6,
    DOPT_STATE_ACKNOWLEDGED = 7,
    DOPT_STATE_CANCELLED = 8
} dopt_job_state;

/* Priorities, highest first. When all of the agent's max_jobs slots are
 * taken, a running lower-priority job yields to a QUEUED higher-priority one
 * (not to one retrying after a transient error). */
typedef enum dopt_priority {
    DOPT_PRIORITY_FOREGROUND = 0,
    DOPT_PRIORITY_HIGH = 1,
    DOPT_PRIORITY_NORMAL = 2,
    DOPT_PRIORITY_LOW = 3
} dopt_priority;

/* Where an error came from (IBackgroundCopyError's context). */
typedef enum dopt_context {
    DOPT_CONTEXT_NONE = 0,
    DOPT_CONTEXT_LOCAL_FILE = 1,
    DOPT_CONTEXT_REMOTE_FILE = 2,
    DOPT_CONTEXT_TRANSPORT = 3,
    DOPT_CONTEXT_PEER = 4,
    DOPT_CONTEXT_AGENT = 5,
    DOPT_CONTEXT_INTEGRITY = 6
} dopt_context;

typedef struct dopt_client dopt_client;
typedef struct dopt_job dopt_job;
typedef struct dopt_job_status dopt_job_status;
typedef struct dopt_error dopt_error;

/* One file of a job. The strings belong to the object the struct was read
 * from (a dopt_job_status or dopt_error) and live as long as it does. */
typedef struct dopt_file_info {
    const char *local_name;   /* absolute destination path */
    const char *remote_name;  /* URL */
    uint64_t bytes_total;     /* UINT64_MAX while unknown */
    uint64_t bytes_transferred;
} dopt_file_info;

typedef struct dopt_progress {
    uint64_t bytes_total;     /* UINT64_MAX while any file's size is unknown */
    uint64_t bytes_transferred;
    uint32_t files_total;
    uint32_t files_transferred;
    uint64_t bytes_from_origin;
    uint64_t bytes_from_peers;
} dopt_progress;

/* Unix times in seconds; 0 when the event has not happened. */
typedef struct dopt_times {
    int64_t created;
    int64_t modified;
    int64_t transfer_completed;
} dopt_times;

/* ---- library ------------------------------------------------------------ */

/* The library's version, e.g. "0.3.0" (DOPT_VERSION_STRING of the build).
 * Static storage; any thread. */
DOPT_EXPORT const char *dopt_version(void);

/* Fixed English text for a result code ("unknown error code" for a code not in
 * enum dopt_result). Never NULL; static storage; any thread. */
DOPT_EXPORT const char *dopt_strerror(int code);

/* Detail of the last failure on the calling thread: thread-local, never
 * NULL, "" when there is none. Valid until the next call on this thread
 * that can fail (field reads leave it alone). */
DOPT_EXPORT const char *dopt_last_error(void);

/* Name of a state as the protocol and `dopt status --json` spell it
 * ("queued", "transient_error", ...); "unknown" for a value out of range.
 * Static storage. */
DOPT_EXPORT const char *dopt_state_name(dopt_job_state state);

/* Name of an error context ("none", "local_file", "remote_file",
 * "transport", "peer", "agent", "integrity"); "unknown" out of range.
 * Static storage. */
DOPT_EXPORT const char *dopt_context_name(dopt_context context);

/* Frees a string the library allocated (dopt_cache_list_json,
 * dopt_peer_stats_json, dopt_metrics_text). NULL: no-op. */
DOPT_EXPORT void dopt_string_free(char *s);

/* ---- client ------------------------------------------------------------- */

/* Connects to the agent at once and agrees on the protocol version.
 *  out:         gets the client; the caller owns it (dopt_client_close).
 *  socket_path: NULL tries $DOPT_SOCKET, then the per-user socket
 *               ($XDG_RUNTIME_DIR/dopt/doptd.sock), then the system socket
 *               (/run/dopt/doptd.sock).
 * Errors: DOPT_E_CONNECT (no agent answers, or the caller's user already has
 * as many connections open as [ipc] max_connections_per_user allows, named
 * in dopt_last_error), DOPT_E_VERSION (protocol mismatch). *out is NULL then.
 * Reconnection: a call that finds the connection lost (the agent stopped or
 * restarted) returns DOPT_E_DISCONNECTED and is not repeated; the client
 * connects again to the same socket on its next call, so an application
 * rides out an agent restart by retrying. */
DOPT_EXPORT int dopt_client_open(dopt_client **out, const char *socket_path);

/* Disconnects and frees the client; its jobs go on in the agent. Every job
 * handle opened through it must be closed first. NULL: no-op. */
DOPT_EXPORT void dopt_client_close(dopt_client *client);

/* The agent's name and version as it gave them when the client connected
 * (its hello reply), e.g. "doptd 0.3.0"; "" when it gave none. Owned by the
 * client; a reconnection after an agent restart does not change it. Field
 * read. Since 0.3. */
DOPT_EXPORT const char *dopt_client_agent_version(const dopt_client *client);

/* Status snapshots of every job the caller owns (root: every job), oldest
 * first.
 *  out:   gets an array of *count snapshots; the caller owns it and frees it
 *         with dopt_job_status_list_free (not the snapshots one by one).
 *  count: gets the number of snapshots (0 with *out NULL when none). */
DOPT_EXPORT int dopt_client_list_jobs(dopt_job_status ***out, size_t *count,
                                      dopt_client *client);

/* Frees an array from dopt_client_list_jobs and its count snapshots.
 * NULL: no-op. */
DOPT_EXPORT void dopt_job_status_list_free(dopt_job_status **list, size_t count);

/* ---- peer cache and peering (docs/api.md, "Peering") --------------------- */

/* The results of dopt_cache_list_json and dopt_peer_stats_json are JSON
 * documents whose schema is a versioned contract: version
 * DOPT_CACHE_JSON_VERSION of it is below. Members are only ever added (a
 * reader ignores members it does not know); a member is never removed,
 * renamed or given another type without a new major version of the library.
 *
 * dopt_cache_list_json, version 1: an array of objects
 *   {"info_hash": hex string (40 or 64 digits), "name": string,
 *    "size": integer (bytes), "origin_url": string (no credentials or query),
 *    "owner_uid": integer, "complete": bool, "seeding": bool,
 *    "in_use": bool, "last_used": integer (unix time)}
 * dopt_peer_stats_json, version 1: an object
 *   {"peering": bool, "bytes_to_peers": integer, "torrents": integer,
 *    "connected_peers": integer, "listen_port": integer (0 when off),
 *    "peers_by_source": {"tracker"|"lsd"|"static"|"incoming"|"other":
 *    integer} (connected peers by how they were found; {} when off)} */
#define DOPT_CACHE_JSON_VERSION 1

/* The peer cache entries the caller may see (their own; root: all).
 *  json_out: gets the JSON array above; the caller owns it
 *            (dopt_string_free). */
DOPT_EXPORT int dopt_cache_list_json(char **json_out, dopt_client *client);

/* Removes the caller's cache entries that no unfinished job needs.
 *  bytes_removed: may be NULL; gets the total size of what was removed. */
DOPT_EXPORT int dopt_cache_clear(uint64_t *bytes_removed, dopt_client *client);

/* The agent's peering figures.
 *  json_out: gets the JSON object above; the caller owns it
 *            (dopt_string_free). */
DOPT_EXPORT int dopt_peer_stats_json(char **json_out, dopt_client *client);

/* The agent's metrics in the Prometheus text exposition format (since 0.3;
 * every metric is listed in docs/metrics.md): bytes from the origin and
 * from peers, bytes to peers, origin requests, job errors by context
 * (counters, kept across restarts), this and last month's totals, jobs by
 * state, the peer cache and connected peers. Counts of the caller's own
 * jobs and cache entries (root: everyone's) and the agent's peering; no
 * job, file, URL or user is named.
 *  text_out: gets the text; the caller owns it (dopt_string_free). */
DOPT_EXPORT int dopt_metrics_text(char **text_out, dopt_client *client);

/* ---- job handles -------------------------------------------------------- */

/* Creates a job owned by the caller, persisted before this returns. A new
 * job is SUSPENDED (as in BITS): add files, set properties, then
 * dopt_job_resume. The job keeps the process's umask as it is now (read from
 * /proc/self/status, not changed): its files get 0666 & ~umask, read and
 * write for the owner always.
 *  out:          gets the handle; the caller owns it (dopt_job_close).
 *  display_name: may be NULL.
 * Errors: DOPT_E_TOO_LARGE when the caller's user already has as many
 * unended jobs as [jobs] max_jobs_per_user allows (named in dopt_last_error;
 * at the limit the user's oldest ended job is purged to make room). */
DOPT_EXPORT int dopt_job_create(dopt_job **out, dopt_client *client,
                                const char *display_name);

/* Opens an existing job.
 *  out:    gets the handle; the caller owns it (dopt_job_close).
 *  job_id: the job's UUID string.
 * Errors: DOPT_E_NOT_FOUND (no such job, or another user's). */
DOPT_EXPORT int dopt_job_open(dopt_job **out, dopt_client *client, const char *job_id);

/* Releases the handle (and its callbacks, see dopt_job_set_callbacks); the
 * job itself goes on. NULL: no-op. */
DOPT_EXPORT void dopt_job_close(dopt_job *job);

/* The job's id (a UUID string), owned by the handle. Field read. */
DOPT_EXPORT const char *dopt_job_id(const dopt_job *job);

/* ---- job properties (each one round trip, persisted before it returns) --- */

/* Adds a file to the job. Allowed while the job is SUSPENDED or QUEUED.
 *  url:        http:// or https://.
 *  local_path: absolute, writable by the caller. The partial file beside it
 *              is created now (O_EXCL) with the owner's rights; a
 *              privilege-separated system agent writes root's and system
 *              accounts' files only under system_job_dirs. A file someone
 *              else puts under the partial file's name later fails the job
 *              (local_file, EEXIST).
 * Errors: DOPT_E_INVALID_URL, DOPT_E_UNSUPPORTED_SCHEME,
 * DOPT_E_RELATIVE_PATH, DOPT_E_ACCESS, DOPT_E_EXISTS (the detail names the
 * other job only when it is the caller's), DOPT_E_INVALID_STATE. */
DOPT_EXPORT int dopt_job_add_file(dopt_job *job, const char *url, const char *local_path);

/* Sets the expected SHA-256 of a file, checked as the bytes arrive (a
 * mismatch is an integrity error).
 *  file_index: 0-based, in the order the files were added.
 *  sha256_hex: 64 hex digits.
 * Errors: DOPT_E_INVALID_ARG (bad hex or index), DOPT_E_INVALID_STATE. */
DOPT_EXPORT int dopt_job_set_file_sha256(dopt_job *job, size_t file_index,
                                         const char *sha256_hex);

/* Sets the expected size of a file, in bytes (since 0.3). The origin must
 * send exactly this many: another size is a fatal error (context
 * remote_file, DOPT_E_INTEGRITY) before its bytes are kept. A file known to
 * be smaller than the agent's [cache] min_file_size goes over HTTP at once,
 * without looking for LAN peers. Setting it again replaces it.
 *  file_index: 0-based, in the order the files were added.
 *  size:       at most INT64_MAX.
 * Errors: DOPT_E_INVALID_ARG (bad index or size), DOPT_E_INVALID_STATE once
 * the file is being transferred. */
DOPT_EXPORT int dopt_job_set_file_size(dopt_job *job, size_t file_index, uint64_t size);

/* Gives a file its metainfo (a .torrent): the piece hashes that make LAN
 * peers' bytes usable. Without it the agent looks for metainfo beside the
 * content (URL + ".torrent"), else the file goes over HTTP only; a job with
 * custom headers, or a URL with a user name, password or query string, goes
 * over HTTP only without it.
 *  file_index: 0-based, in the order the files were added.
 *  bytes, length: the bencoded metainfo, at most 700 KiB, checked now.
 * Errors: DOPT_E_INVALID_ARG with a description when the bytes are not
 * single-file v1, v2 or hybrid metainfo in pieces of at most 16 MiB;
 * DOPT_E_INVALID_STATE once the file is being transferred. */
DOPT_EXPORT int dopt_job_set_file_metainfo(dopt_job *job, size_t file_index,
                                           const void *bytes, size_t length);

/* Like dopt_job_set_file_metainfo, but the agent fetches the metainfo from
 * url (http or https) when the file starts; metainfo there that cannot be
 * used is a fatal job error.
 * Errors: DOPT_E_INVALID_URL, DOPT_E_UNSUPPORTED_SCHEME,
 * DOPT_E_INVALID_STATE once the file is being transferred. */
DOPT_EXPORT int dopt_job_set_file_metainfo_url(dopt_job *job, size_t file_index,
                                               const char *url);

/* Sets the job's priority (dopt_priority says how priorities share the
 * agent's slots); the change applies at once.
 * Errors: DOPT_E_INVALID_ARG (not a dopt_priority value), DOPT_E_NOT_FOUND. */
DOPT_EXPORT int dopt_job_set_priority(dopt_job *job, dopt_priority priority);

/* Sets the job's display name (shown by `dopt list`).
 *  name: UTF-8, at most 1024 bytes; "" clears it.
 * Errors: DOPT_E_TOO_LARGE (longer), DOPT_E_NOT_FOUND. */
DOPT_EXPORT int dopt_job_set_display_name(dopt_job *job, const char *name);

/* Sets how long a job may go without progress before a transient error
 * becomes fatal (DOPT_E_NO_PROGRESS).
 *  seconds: 0 restores the agent's default. */
DOPT_EXPORT int dopt_job_set_no_progress_timeout(dopt_job *job, uint32_t seconds);

/* Adds an HTTP request header sent to the origin for every file of the job,
 * only to the scheme, host and port of the file's URL, never to another one
 * a redirect leads to. Header values are secrets: they reach no log, no
 * other user and no peer.
 *  header: "Name: value".
 * Errors: DOPT_E_INVALID_ARG (CR or LF, no "Name:"), DOPT_E_TOO_LARGE,
 * DOPT_E_NOT_FOUND. */
DOPT_EXPORT int dopt_job_add_http_header(dopt_job *job, const char *header);

/* Removes every custom header of the job. Errors: DOPT_E_NOT_FOUND. */
DOPT_EXPORT int dopt_job_clear_http_headers(dopt_job *job);

/* When on is nonzero, the agent itself completes the job as soon as it is
 * TRANSFERRED (what `dopt get` does). Off by default. */
DOPT_EXPORT int dopt_job_set_auto_complete(dopt_job *job, int on);

/* ---- job state changes -------------------------------------------------- */

/* Each change is persisted before it returns; a request the current state
 * does not allow returns DOPT_E_INVALID_STATE and changes nothing. */

/* SUSPENDED, ERROR, TRANSIENT_ERROR -> QUEUED (runs when scheduled); a no-op
 * DOPT_OK on a QUEUED, CONNECTING or TRANSFERRING job. A file whose partial
 * file is gone is fetched again (then TRANSFERRED -> QUEUED too).
 * Errors: DOPT_E_INVALID_STATE (other states, or a job without files). */
DOPT_EXPORT int dopt_job_resume(dopt_job *job);

/* QUEUED, CONNECTING, TRANSFERRING, TRANSIENT_ERROR -> SUSPENDED; a no-op
 * DOPT_OK on a SUSPENDED job. Errors: DOPT_E_INVALID_STATE. */
DOPT_EXPORT int dopt_job_suspend(dopt_job *job);

/* Any state but ACKNOWLEDGED or CANCELLED -> CANCELLED; partial files are
 * removed. Errors: DOPT_E_INVALID_STATE. */
DOPT_EXPORT int dopt_job_cancel(dopt_job *job);

/* TRANSFERRED -> ACKNOWLEDGED, files renamed to their final names;
 * ERROR -> ACKNOWLEDGED keeping only the files fully transferred.
 * Errors: DOPT_E_LOCAL_IO (a rename failed; state unchanged),
 * DOPT_E_INVALID_STATE. */
DOPT_EXPORT int dopt_job_complete(dopt_job *job);

/* Blocks until the job is TRANSFERRED, ACKNOWLEDGED, ERROR or CANCELLED
 * (the agent answers the moment it changes; nothing is polled).
 *  state_out:  may be NULL; gets the state at return.
 *  timeout_ms: -1 waits forever.
 * The wait holds the client's connection: do not call it on a client
 * another thread needs a quick answer from.
 * Errors: DOPT_E_TIMEOUT (the time passed first), DOPT_E_NOT_FOUND. */
DOPT_EXPORT int dopt_job_wait(dopt_job_state *state_out, dopt_job *job, int timeout_ms);

/* ---- job reads (each one round trip) ------------------------------------- */

/* A consistent snapshot of everything about the job.
 *  out: gets the snapshot; the caller owns it (dopt_job_status_free).
 * Errors: DOPT_E_NOT_FOUND. */
DOPT_EXPORT int dopt_job_fetch_status(dopt_job_status **out, dopt_job *job);

/* The job's state, progress or times now: dopt_job_fetch_status and one
 * field read, for convenience. Errors: DOPT_E_NOT_FOUND. */
DOPT_EXPORT int dopt_job_fetch_state(dopt_job_state *out, dopt_job *job);
DOPT_EXPORT int dopt_job_fetch_progress(dopt_progress *out, dopt_job *job);
DOPT_EXPORT int dopt_job_fetch_times(dopt_times *out, dopt_job *job);

/* The job's last fatal error.
 *  out: gets the error, or NULL (with DOPT_OK) when the job has none; the
 *       caller owns it (dopt_error_free); it stays readable after the job
 *       moves on.
 * Errors: DOPT_E_NOT_FOUND. */
DOPT_EXPORT int dopt_job_fetch_error(dopt_error **out, dopt_job *job);

/* ---- callbacks (IBackgroundCopyCallback) -------------------------------- */

/* Which callbacks fire (dopt_callbacks.notify_flags). */
#define DOPT_NOTIFY_TRANSFERRED 0x1u      /* the job became TRANSFERRED */
#define DOPT_NOTIFY_ERROR 0x2u            /* the job became ERROR */
#define DOPT_NOTIFY_MODIFICATION 0x4u     /* progress or state changed */
#define DOPT_NOTIFY_FILE_TRANSFERRED 0x8u /* one file of the job is whole */

#define DOPT_CALLBACKS_VERSION 1

/* Callbacks of one job. Set `version` to DOPT_CALLBACKS_VERSION (use
 * DOPT_CALLBACKS_INIT); fields are only ever appended.
 *
 * Delivery promise: `transferred`, `error` and `file_transferred` are durable
 * notifications. The agent stores each in its job table when it happens and
 * delivers it at least once, in per-job order, to a client that has
 * registered callbacks for the job, even across restarts of the agent or of
 * the application (re-open the job by id and register again). A callback
 * that returns anything but DOPT_OK is called again later, with backoff,
 * until it returns DOPT_OK. `error` fires on every transition to ERROR, never
 * for TRANSIENT_ERROR; a 403 from the origin has context REMOTE_FILE.
 * `modification` is not durable: it reports progress and state changes,
 * throttled to every modification_percent of the bytes or
 * modification_seconds, whichever comes first (DO's CallbackFreqPercent and
 * CallbackFreqSeconds), and is dropped while the application is not there.
 *
 * Threading: all callbacks of a client run on one dispatcher thread of that
 * client, never two at once. A callback may call any dopt function, including
 * on the same job and dopt_job_set_callbacks. After dopt_job_set_callbacks
 * (job, NULL, ...), dopt_job_close or dopt_client_close returns (called from
 * another thread), no callback of that job (client) runs any more.
 *
 * The `job` given to a callback is the handle that registered it. `error`,
 * `status` and `file` are valid only during the call (copy with
 * dopt_error_copy to keep an error). */
typedef struct dopt_callbacks {
    unsigned int version;
    unsigned int notify_flags;  /* DOPT_NOTIFY_*; 0: every callback that is set */
    int (*transferred)(dopt_job *job, void *userdata);
    int (*error)(dopt_job *job, const dopt_error *error, void *userdata);
    void (*modification)(dopt_job *job, const dopt_job_status *status, void *userdata);
    int (*file_transferred)(dopt_job *job, const dopt_file_info *file, void *userdata);
    uint32_t modification_percent;  /* 0: 1 percent */
    uint32_t modification_seconds;  /* 0: 1 second */
} dopt_callbacks;

#define DOPT_CALLBACKS_INIT {DOPT_CALLBACKS_VERSION, 0, NULL, NULL, NULL, NULL, 0, 0}

/* Registers (or, with callbacks NULL, removes) the job's callbacks; the
 * struct is copied. Pending durable notifications of the job are delivered
 * soon after. A struct with no callback set and notify_flags 0 removes them
 * too. One registration per job per client: registering through a second
 * handle of the same job replaces the first. A durable notification whose
 * callback is NULL (or whose bit is not in notify_flags) is acknowledged with
 * DOPT_OK when it arrives. Errors: DOPT_E_INVALID_ARG (NULL job, unknown
 * version), DOPT_E_CONNECT / DOPT_E_VERSION (the callback connection could
 * not be opened), DOPT_E_NOT_FOUND. */
DOPT_EXPORT int dopt_job_set_callbacks(dopt_job *job, const dopt_callbacks *callbacks,
                                       void *userdata);

/* ---- status snapshots (field reads) ------------------------------------ */

/* Frees a snapshot from dopt_job_fetch_status. NULL: no-op. */
DOPT_EXPORT void dopt_job_status_free(dopt_job_status *status);

/* The job's id (UUID string), owned by the snapshot. */
DOPT_EXPORT const char *dopt_job_status_id(const dopt_job_status *status);

/* The job's display name, owned by the snapshot; "" when it has none. */
DOPT_EXPORT const char *dopt_job_status_display_name(const dopt_job_status *status);

/* The job's state when the snapshot was taken. */
DOPT_EXPORT dopt_job_state dopt_job_status_state(const dopt_job_status *status);

/* The job's priority. */
DOPT_EXPORT dopt_priority dopt_job_status_priority(const dopt_job_status *status);

/* How long the job may go without progress before a transient error
 * becomes fatal (DOPT_E_NO_PROGRESS), in seconds: the job's own
 * (dopt_job_set_no_progress_timeout) or, when it has none, the agent's
 * [jobs] no_progress_timeout; 0 when the agent did not say. Since 0.3. */
DOPT_EXPORT uint32_t dopt_job_status_no_progress_timeout(const dopt_job_status *status);

/* The uid of the job's owner. */
DOPT_EXPORT uint32_t dopt_job_status_owner_uid(const dopt_job_status *status);

/* Fills *out with the job's progress (zeroed for a NULL status). */
DOPT_EXPORT void dopt_job_status_progress(dopt_progress *out, const dopt_job_status *status);

/* Fills *out with the job's times (zeroed for a NULL status). */
DOPT_EXPORT void dopt_job_status_times(dopt_times *out, const dopt_job_status *status);

/* How the job's content is found, owned by the snapshot:
 *  "peer_assisted": some file goes (or went) through a torrent, so LAN
 *                   peers may give pieces;
 *  "http_only":     every file goes from the origin over HTTP only
 *                   (docs/protocol.md gives the reason the agent reports);
 *  "pending":       the agent has not looked for metainfo yet;
 *  "":              the agent did not say. */
DOPT_EXPORT const char *dopt_job_status_mode(const dopt_job_status *status);

/* Why the job's files go over HTTP only (e.g. "the URL has a user name,
 * password or query string"), owned by the snapshot; "" when the agent gave
 * no reason. */
DOPT_EXPORT const char *dopt_job_status_http_only_reason(const dopt_job_status *status);

/* The number of files of the job. */
DOPT_EXPORT size_t dopt_job_status_file_count(const dopt_job_status *status);

/* Fills *out with file number index (0-based, in the order added); its
 * strings are owned by the snapshot.
 * Returns DOPT_OK, or DOPT_E_INVALID_ARG when index is out of range (*out
 * zeroed). */
DOPT_EXPORT int dopt_job_status_file(dopt_file_info *out, const dopt_job_status *status,
                                     size_t index);

/* Where file number index got its piece hashes, owned by the snapshot:
 * "job" (given with the job), "origin" (found beside the content), "peers"
 * (from LAN peers by the file's SHA-256), "none" (HTTP only) or "pending"; "" when index is out of range or the agent did
 * not say. */
DOPT_EXPORT const char *dopt_job_status_file_metainfo(const dopt_job_status *status, size_t index);

/* The job's fatal error, owned by the snapshot (dopt_error_copy keeps it
 * longer); NULL when it has none. */
DOPT_EXPORT const dopt_error *dopt_job_status_error(const dopt_job_status *status);

/* Why a job in TRANSIENT_ERROR waits: the failure of its last attempt
 * (e.g. context TRANSPORT, "could not resolve host"), with
 * dopt_error_next_retry the time of the next one. Owned by the snapshot;
 * NULL in every other state (the agent clears it when the job leaves the
 * state or makes progress). */
DOPT_EXPORT const dopt_error *dopt_job_status_transient_error(const dopt_job_status *status);

/* ---- error objects (IBackgroundCopyError; field reads) ------------------ */

/* Where the error came from. */
DOPT_EXPORT dopt_context dopt_error_context(const dopt_error *error);

/* An HTTP status (e.g. 403), a positive errno, or a negative DOPT_E_* code. */
DOPT_EXPORT int64_t dopt_error_code(const dopt_error *error);

/* A sentence a person can act on, naming the URL or path and the cause;
 * owned by the error. */
DOPT_EXPORT const char *dopt_error_description(const dopt_error *error);

/* "http", "https", "peer", or "" for local errors; owned by the error. */
DOPT_EXPORT const char *dopt_error_protocol(const dopt_error *error);

/* The unix time the error happened. */
DOPT_EXPORT int64_t dopt_error_time(const dopt_error *error);

/* For a transient error (dopt_job_status_transient_error): the unix time of
 * the job's next attempt. 0 for a fatal error. */
DOPT_EXPORT int64_t dopt_error_next_retry(const dopt_error *error);

/* Fills *out with the file in progress when the error happened; its strings
 * are owned by the error.
 * Returns DOPT_OK, or DOPT_E_NOT_FOUND when the error concerns no file (*out
 * zeroed). */
DOPT_EXPORT int dopt_error_file(dopt_file_info *out, const dopt_error *error);

/* Copies an error (e.g. one owned by a snapshot or given to a callback).
 *  out: gets the copy; the caller owns it (dopt_error_free).
 * Errors: DOPT_E_NOMEM. */
DOPT_EXPORT int dopt_error_copy(dopt_error **out, const dopt_error *error);

/* Frees an error from dopt_job_fetch_error or dopt_error_copy. NULL: no-op. */
DOPT_EXPORT void dopt_error_free(dopt_error *error);

#ifdef __cplusplus
}
#endif

#endif /* DOPT_DOPT_H */
