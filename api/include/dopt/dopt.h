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
 *  - Out-parameters come first. On failure an out-pointer is set to NULL (or
 *    left zeroed) so nothing leaks.
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
#define DOPT_VERSION_MINOR 1
#define DOPT_VERSION_PATCH 0
#define DOPT_VERSION_STRING "0.1.0"

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

/* Where a fatal error came from (IBackgroundCopyError's context). */
typedef enum dopt_error_context {
    DOPT_CONTEXT_NONE = 0,
    DOPT_CONTEXT_LOCAL_FILE = 1,
    DOPT_CONTEXT_REMOTE_FILE = 2,
    DOPT_CONTEXT_TRANSPORT = 3,
    DOPT_CONTEXT_PEER = 4,
    DOPT_CONTEXT_AGENT = 5,
    DOPT_CONTEXT_INTEGRITY = 6
} dopt_error_context;

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

/* Version of the library, e.g. "0.1.0". Static storage; any thread. */
DOPT_EXPORT const char *dopt_version(void);

/* Fixed English text for a result code; never NULL; any thread. */
DOPT_EXPORT const char *dopt_strerror(int code);

/* Detail of the last failure on the calling thread (thread-local, never NULL,
 * "" when there is none). Valid until the next dopt_* call on this thread
 * that can fail (accessors of snapshots and errors leave it alone). */
DOPT_EXPORT const char *dopt_last_error(void);

/* Name of a state as the CLI's --json prints it ("queued", "transient_error",
 * ...); "unknown" for a value out of range. Static storage. */
DOPT_EXPORT const char *dopt_state_name(dopt_job_state state);

/* Name of an error context ("none", "local_file", "remote_file", ...). */
DOPT_EXPORT const char *dopt_context_name(dopt_error_context context);

/* ---- client ------------------------------------------------------------- */

/* Connects to the agent at once and agrees on the protocol version.
 * socket_path NULL: $DOPT_SOCKET, then the per-user socket
 * ($XDG_RUNTIME_DIR/dopt/doptd.sock), then the system socket
 * (/run/dopt/doptd.sock). When no agent answers, returns DOPT_E_CONNECT (or
 * DOPT_E_VERSION on a protocol mismatch) and sets *out to NULL; also
 * DOPT_E_CONNECT when the caller's user already has as many connections open
 * as the agent allows ([ipc] max_connections_per_user, named in
 * dopt_last_error). The caller owns *out and releases it with
 * dopt_client_close. */
DOPT_EXPORT int dopt_client_open(dopt_client **out, const char *socket_path);

/* A call that finds the connection lost (the agent stopped or restarted)
 * returns DOPT_E_DISCONNECTED and is not repeated; the client connects again
 * to the same socket on its next call, so an application can ride out an
 * agent restart by retrying. */

/* Disconnects and frees the client. Jobs go on in the agent. Job handles
 * opened through this client must be closed before it. NULL: no-op. */
DOPT_EXPORT void dopt_client_close(dopt_client *client);

/* Status snapshots of every job the caller owns (root: every job), oldest
 * first. The caller owns the array and frees it with dopt_job_status_list_free. */
/* The peer cache (docs/api.md, "Peering"). dopt_cache_list_json: the
 * entries the caller may see (their own; root: all) as a JSON array of
 * objects {info_hash, name, size, origin_url, owner_uid, complete, seeding,
 * in_use, last_used}; *json_out is freed with dopt_string_free.
 * dopt_cache_clear: removes the caller's entries that no unfinished job
 * needs; *bytes_removed (may be NULL) gets their size.
 * dopt_peer_stats_json: {peering, bytes_to_peers, torrents, connected_peers,
 * listen_port} of the agent, freed with dopt_string_free. */
DOPT_EXPORT int dopt_cache_list_json(dopt_client *client, char **json_out);
DOPT_EXPORT int dopt_cache_clear(dopt_client *client, uint64_t *bytes_removed);
DOPT_EXPORT int dopt_peer_stats_json(dopt_client *client, char **json_out);
DOPT_EXPORT void dopt_string_free(char *s);

DOPT_EXPORT int dopt_client_list_jobs(dopt_job_status ***out, size_t *count,
                                      dopt_client *client);
DOPT_EXPORT void dopt_job_status_list_free(dopt_job_status **list, size_t count);

/* ---- jobs --------------------------------------------------------------- */

/* Creates a job owned by the caller, persisted before this returns. A new job
 * is SUSPENDED (as in BITS): add files, set properties, then dopt_job_resume.
 * display_name may be NULL. The job keeps the process's umask as it is now
 * (read from /proc/self/status, not changed): its files get 0666 & ~umask,
 * read and write for the owner always.
 * DOPT_E_TOO_LARGE when the caller's user already has as many unended jobs
 * as the agent allows ([jobs] max_jobs_per_user, named in dopt_last_error;
 * at the limit the user's oldest ended job is purged to make room). The
 * caller owns *out (dopt_job_close). */
DOPT_EXPORT int dopt_job_create(dopt_job **out, dopt_client *client,
                                const char *display_name);

/* Opens an existing job by its id (a UUID string). Another user's job gives
 * DOPT_E_NOT_FOUND. The caller owns *out (dopt_job_close). */
DOPT_EXPORT int dopt_job_open(dopt_job **out, dopt_client *client, const char *job_id);

/* Releases the handle; the job itself goes on. NULL: no-op. */
DOPT_EXPORT void dopt_job_close(dopt_job *job);

/* The job's id; owned by the handle. */
DOPT_EXPORT const char *dopt_job_id(const dopt_job *job);

/* Adds a file: url is http:// or https://, local_path absolute and writable
 * by the caller. The partial file beside it is created now (O_EXCL) with the
 * owner's rights; a privilege-separated system agent writes root's and
 * system accounts' files only under system_job_dirs (else DOPT_E_ACCESS).
 * A file someone else puts under the partial file's name later fails the
 * job (local_file, EEXIST). Allowed while the job is SUSPENDED or QUEUED.
 * Errors: DOPT_E_INVALID_URL, DOPT_E_UNSUPPORTED_SCHEME, DOPT_E_RELATIVE_PATH,
 * DOPT_E_ACCESS, DOPT_E_EXISTS (the detail names the other job only when it
 * is the caller's), DOPT_E_INVALID_STATE. */
DOPT_EXPORT int dopt_job_add_file(dopt_job *job, const char *url, const char *local_path);

/* Expected SHA-256 (64 hex digits) of file number file_index (0-based, in the
 * order added); checked as the bytes arrive. DOPT_E_INVALID_ARG for bad hex. */
DOPT_EXPORT int dopt_job_set_file_sha256(dopt_job *job, size_t file_index,
                                         const char *sha256_hex);

/* Metainfo (a .torrent) for file number file_index: the piece hashes that
 * make LAN peers' bytes usable (docs/api.md, "Peering"). Without it the agent
 * looks for metainfo beside the content (URL + ".torrent"), else the file
 * goes over HTTP only; a job with custom headers, or a URL with a user name,
 * password or query string, goes over HTTP only without it.
 *  _metainfo:     the bencoded bytes (at most 700 KiB here), checked now:
 *                 DOPT_E_INVALID_ARG with a description when they are not
 *                 single-file v1, v2 or hybrid metainfo in pieces of at
 *                 most 16 MiB.
 *  _metainfo_url: an http(s) URL the agent fetches when the file starts;
 *                 metainfo there that cannot be used is a fatal job error.
 * Both: DOPT_E_INVALID_STATE once the file is being transferred. */
DOPT_EXPORT int dopt_job_set_file_metainfo(dopt_job *job, size_t file_index,
                                           const void *bytes, size_t length);
DOPT_EXPORT int dopt_job_set_file_metainfo_url(dopt_job *job, size_t file_index,
                                               const char *url);

DOPT_EXPORT int dopt_job_set_priority(dopt_job *job, dopt_priority priority);
DOPT_EXPORT int dopt_job_set_display_name(dopt_job *job, const char *name);

/* Seconds without progress after which a transient error becomes fatal
 * (DOPT_E_NO_PROGRESS). 0 restores the agent's default. */
DOPT_EXPORT int dopt_job_set_no_progress_timeout(dopt_job *job, uint32_t seconds);

/* Adds an HTTP request header ("Name: value") sent to the origin for every
 * file of the job: only to the scheme, host and port of the file's URL, never
 * to another one a redirect leads to. Headers with CR or LF are
 * DOPT_E_INVALID_ARG. */
DOPT_EXPORT int dopt_job_add_http_header(dopt_job *job, const char *header);

/* Removes every custom header of the job. */
DOPT_EXPORT int dopt_job_clear_http_headers(dopt_job *job);

/* When on, the agent itself completes the job as soon as it is TRANSFERRED
 * (what `dopt get` does). Off by default. */
DOPT_EXPORT int dopt_job_set_auto_complete(dopt_job *job, int on);

/* State changes. Each is persisted before it returns; a request the current
 * state does not allow returns DOPT_E_INVALID_STATE and changes nothing.
 *  resume:   SUSPENDED, ERROR, TRANSIENT_ERROR -> QUEUED (runs when scheduled);
 *            a no-op DOPT_OK on a QUEUED, CONNECTING or TRANSFERRING job;
 *            DOPT_E_INVALID_STATE for a job without files; a file whose
 *            partial file is gone is fetched again (TRANSFERRED -> QUEUED too)
 *  suspend:  QUEUED, CONNECTING, TRANSFERRING, TRANSIENT_ERROR -> SUSPENDED;
 *            a no-op DOPT_OK on a SUSPENDED job
 *  cancel:   any state but ACKNOWLEDGED/CANCELLED -> CANCELLED, partial files removed
 *  complete: TRANSFERRED -> ACKNOWLEDGED, files renamed to their final names;
 *            ERROR -> ACKNOWLEDGED keeping only the files fully transferred;
 *            DOPT_E_LOCAL_IO (state unchanged) when a rename fails. */
DOPT_EXPORT int dopt_job_resume(dopt_job *job);
DOPT_EXPORT int dopt_job_suspend(dopt_job *job);
DOPT_EXPORT int dopt_job_cancel(dopt_job *job);
DOPT_EXPORT int dopt_job_complete(dopt_job *job);

/* Blocks until the job is TRANSFERRED, ACKNOWLEDGED, ERROR or CANCELLED (the
 * agent answers the moment it changes; nothing is polled) or timeout_ms
 * passes (DOPT_E_TIMEOUT; -1 waits forever). *state_out (may be NULL) gets the
 * state at return. Do not call on a client used by another thread that needs
 * a quick answer: the wait holds the connection. */
DOPT_EXPORT int dopt_job_wait(dopt_job *job, int timeout_ms, dopt_job_state *state_out);

/* Convenience reads, each one round trip. */
DOPT_EXPORT int dopt_job_get_state(dopt_job *job, dopt_job_state *out);
DOPT_EXPORT int dopt_job_get_progress(dopt_job *job, dopt_progress *out);
DOPT_EXPORT int dopt_job_get_times(dopt_job *job, dopt_times *out);

/* The job's last fatal error, or *out = NULL (and DOPT_OK) when it has none.
 * The caller owns *out and frees it with dopt_error_free; it stays readable
 * after the job moves on. */
DOPT_EXPORT int dopt_job_get_error(dopt_error **out, dopt_job *job);

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

/* ---- status snapshots --------------------------------------------------- */

/* A consistent snapshot of everything about one job. Caller frees it. */
DOPT_EXPORT int dopt_job_get_status(dopt_job_status **out, dopt_job *job);
DOPT_EXPORT void dopt_job_status_free(dopt_job_status *status);

DOPT_EXPORT const char *dopt_job_status_id(const dopt_job_status *status);
DOPT_EXPORT const char *dopt_job_status_display_name(const dopt_job_status *status);
DOPT_EXPORT dopt_job_state dopt_job_status_state(const dopt_job_status *status);
DOPT_EXPORT dopt_priority dopt_job_status_priority(const dopt_job_status *status);
DOPT_EXPORT uint32_t dopt_job_status_owner_uid(const dopt_job_status *status);
DOPT_EXPORT void dopt_job_status_progress(const dopt_job_status *status, dopt_progress *out);
DOPT_EXPORT void dopt_job_status_times(const dopt_job_status *status, dopt_times *out);
/* How content is found: "http_only" (no metainfo; HTTP from the origin). */
DOPT_EXPORT const char *dopt_job_status_mode(const dopt_job_status *status);
DOPT_EXPORT size_t dopt_job_status_file_count(const dopt_job_status *status);
/* DOPT_E_INVALID_ARG when index is out of range. */
DOPT_EXPORT int dopt_job_status_file(const dopt_job_status *status, size_t index,
                                     dopt_file_info *out);
/* Where file number index got its piece hashes: "job", "origin" (found
 * beside the content), "none" (HTTP only) or "pending"; "" when out of
 * range or the agent did not say. */
DOPT_EXPORT const char *dopt_job_status_file_metainfo(const dopt_job_status *status, size_t index);
/* The error, owned by the snapshot; NULL when there is none. */
DOPT_EXPORT const dopt_error *dopt_job_status_error(const dopt_job_status *status);

/* ---- error objects (IBackgroundCopyError) ------------------------------- */

DOPT_EXPORT dopt_error_context dopt_error_get_context(const dopt_error *error);
/* HTTP status (e.g. 403), a positive errno, or a negative DOPT_E_* code. */
DOPT_EXPORT int64_t dopt_error_get_code(const dopt_error *error);
/* A sentence a person can act on, naming the URL or path and the cause. */
DOPT_EXPORT const char *dopt_error_get_description(const dopt_error *error);
/* "http", "https", "peer", or "" for local errors. */
DOPT_EXPORT const char *dopt_error_get_protocol(const dopt_error *error);
/* Unix time the error happened. */
DOPT_EXPORT int64_t dopt_error_get_time(const dopt_error *error);
/* The file in progress when the error happened; DOPT_E_NOT_FOUND when the
 * error concerns no file. Strings owned by the error object. */
DOPT_EXPORT int dopt_error_get_file(const dopt_error *error, dopt_file_info *out);
/* A copy of an error (e.g. one owned by a snapshot). Caller frees it. */
DOPT_EXPORT int dopt_error_copy(dopt_error **out, const dopt_error *error);
DOPT_EXPORT void dopt_error_free(dopt_error *error);

#ifdef __cplusplus
}
#endif

#endif /* DOPT_DOPT_H */
