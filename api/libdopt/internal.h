// Internals of libdopt shared by its source files. Not installed, not public:
// the only public surface is api/include/dopt/dopt.h.
//
// Layout:
//   client.cpp   connection, handshake, request/reply (Connection::call)
//   job.cpp      dopt_job_* requests
//   objects.cpp  status snapshots, error objects, job-object parsing (JsonReader)
//   dispatcher.cpp  callbacks: the second connection and its dispatcher thread
//   text.cpp     dopt_version, dopt_strerror, names, the last-error string
#pragma once

#include "dopt/dopt.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace dopt::client {
class Dispatcher;
}

struct dopt_client {
    int fd = -1;
    std::mutex mu;           // serializes requests: one request, one reply
    std::int64_t seq = 0;    // GUARDED_BY(mu)
    bool broken = false;     // GUARDED_BY(mu); stream unusable after an I/O error
    int peer_protocol = 0;   // the agent's protocol version (from hello)
    std::uint32_t uid = 0;   // the caller's uid as the agent saw it
    std::string agent;       // e.g. "doptd 0.3.0"; set by dopt_client_open only
    std::string path;        // the socket path connected to
    // Callbacks (dispatcher.cpp): created on the first registration, stopped
    // by dopt_client_close. Never locked together with `mu`.
    std::mutex dispatcher_mu;
    std::shared_ptr<dopt::client::Dispatcher> dispatcher;  // GUARDED_BY(dispatcher_mu)
};

struct dopt_job {
    dopt_client* client = nullptr;  // not owned; must outlive the handle
    std::string id;
    // Headers added through this handle. The protocol's `set headers`
    // replaces the whole list, so adding one sends all of them.
    std::vector<std::string> headers;
};

struct dopt_error {
    dopt_context context = DOPT_CONTEXT_NONE;
    std::int64_t code = 0;
    std::string description;
    std::string protocol;
    std::int64_t time = 0;
    std::int64_t next_retry = 0;  // a transient error's next attempt; 0 for a fatal one
    bool has_file = false;
    std::string local_name;
    std::string remote_name;
    std::uint64_t bytes_total = UINT64_MAX;
    std::uint64_t bytes_transferred = 0;
};

struct dopt_job_status {
    struct File {
        std::string local_name;
        std::string remote_name;
        std::uint64_t bytes_total = UINT64_MAX;
        std::uint64_t bytes_transferred = 0;
        std::string metainfo;  // "job", "origin", "peers", "none", "pending"
    };
    std::string id;
    std::string display_name;
    dopt_job_state state = DOPT_STATE_QUEUED;
    dopt_priority priority = DOPT_PRIORITY_NORMAL;
    std::uint32_t no_progress_timeout = 0;  // seconds; 0 when the agent did not say
    std::uint32_t owner_uid = 0;
    std::string mode;
    std::string http_only_reason;  // "" when the agent gave none
    dopt_progress progress{};
    dopt_times times{};
    std::vector<File> files;
    std::unique_ptr<dopt_error> error;  // null when the job has no error
    std::unique_ptr<dopt_error> transient_error;  // null unless TRANSIENT_ERROR
};

namespace dopt::client {

using nlohmann::json;

// ---- last error (text.cpp) ----
// Sets the calling thread's detail string. Never throws.
void set_error(const std::string& detail) noexcept;
void clear_error() noexcept;
// Sets the detail and returns `code`, for `return fail(...)`.
int fail(int code, const std::string& detail) noexcept;

// ---- connection (client.cpp) ----
// Sends `request` (op + fields; seq is filled in) and reads its reply.
// Returns the reply's rc (DOPT_OK, or DOPT_E_* with its message set as the
// last error) or a local failure (DOPT_E_DISCONNECTED, DOPT_E_PROTOCOL,
// DOPT_E_TOO_LARGE). *reply holds the parsed reply whenever one arrived,
// also for rc != 0 (wait's DOPT_E_TIMEOUT carries a job). Thread-safe.
int call(dopt_client* client, json request, json* reply);
// The same with the reply's text read by `parse` (under the client's lock),
// for replies too big to want as a tree (list): it returns at least the
// envelope members (rc, seq, message) as a tree and keeps the rest where it
// likes, or a discarded value for text that is not JSON (the client is then
// broken). What it throws passes through.
using ReplyParser = std::function<json(const std::string& body)>;
int call(dopt_client* client, json request, json* reply, const ReplyParser& parse);

// Connects to `path` and says hello: DOPT_OK with *out set, or a code with
// the detail set. The dispatcher uses it for its own connection.
int open_connection(std::unique_ptr<dopt_client>* out, const std::string& path);

// ---- callbacks (dispatcher.cpp) ----
// Registers `callbacks` (copied) for `job` on its client's dispatcher,
// starting it on the first registration; NULL callbacks unregister.
int set_callbacks(dopt_job* job, const dopt_callbacks* callbacks, void* userdata);
// Removes the job's registration, if this handle holds one, and waits for
// a callback of it in flight (unless called from that callback). Never throws.
void forget_job(dopt_job* job) noexcept;
// Stops and joins the dispatcher (detaches when called from it). Never throws.
void stop_dispatcher(dopt_client* client) noexcept;

// A reply that does not follow docs/protocol.md; guarded() maps it to
// DOPT_E_PROTOCOL.
struct ProtocolError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// ---- JSON text without a tree (objects.cpp) ----

// Malformed JSON text (RFC 8259); a ProtocolError like any other, but a
// caller can tell it from a well-formed reply with unexpected contents.
struct JsonSyntaxError : ProtocolError {
    using ProtocolError::ProtocolError;
};

// A pull reader over one JSON text: the caller walks the structure it
// expects and reads each value straight into its destination; skip_value()
// passes over (and validates) anything else. Syntax errors (including
// invalid UTF-8 and unpaired surrogates in strings) throw JsonSyntaxError;
// a value of the wrong type or range throws ProtocolError. The text must
// outlive the reader.
//
//   JsonReader::Nest obj;
//   std::string_view key;
//   while (r.next_member(&obj, &key))   // reads '{' first, then ',' or '}'
//       if (key == "id") r.read_string(&id); else r.skip_value();
class JsonReader {
public:
    explicit JsonReader(std::string_view text) : text_(text) {}

    // Where an object or array being walked is; one per nesting level.
    struct Nest {
        bool first = true;
    };
    // Next member of the object at hand: true with *key set (valid until the
    // next call on this reader) and the reader at its value; false after '}'.
    bool next_member(Nest* nest, std::string_view* key);
    // Next element of the array at hand: true with the reader at it; false after ']'.
    bool next_element(Nest* nest);

    // The next non-blank character, not consumed; '\0' at the end.
    char peek();
    // Consumes a null if one is next.
    bool null();
    void read_string(std::string* out);
    // An integer (also 1e3 or 2.0); `what` names it in the error.
    std::int64_t read_i64(const char* what);
    bool read_bool(const char* what);
    void skip_value(int depth = 0);
    // Skips the next value and returns its text.
    std::string_view raw_value();
    // Requires the end of the text (blanks allowed).
    void finish();

private:
    [[noreturn]] void fail(const char* what) const;
    void expect(char c);
    void literal(std::string_view word);
    std::string_view string_view(std::string* scratch);
    std::size_t utf8_length(std::size_t p) const;
    std::uint32_t hex4();
    bool number(std::size_t* start, std::size_t* end);

    std::string_view text_;
    std::size_t pos_ = 0;
    std::string key_;  // decoded member name when it holds an escape
};

// A reply's text as a tree; discarded (as nlohmann's parse without
// exceptions gives it) when the text is not JSON or nests deeper than
// JsonReader allows: the tree's users (dump(), parse_job(const json&))
// recurse once per level, and a 1 MiB reply of '[' would overflow the stack.
json parse_tree(const std::string& text);

// ---- job objects (objects.cpp) ----
// Parses the job object of docs/protocol.md: members in any order, unknown
// ones skipped. Throws ProtocolError (JsonSyntaxError for malformed text).
std::unique_ptr<dopt_job_status> read_job(JsonReader& r);
std::unique_ptr<dopt_job_status> parse_job(std::string_view text);
// The same for a job object already in a tree (replies of one job, events).
std::unique_ptr<dopt_job_status> parse_job(const json& j);
// "queued" -> DOPT_STATE_QUEUED; false for an unknown name.
bool parse_state(const std::string& name, dopt_job_state* out);

// Runs `fn` (returning int), mapping any exception to a DOPT_E_* code, so
// nothing crosses the C boundary. Clears the last error first.
template <typename Fn>
int guarded(Fn&& fn) noexcept {
    clear_error();
    try {
        return fn();
    } catch (const std::bad_alloc&) {
        return fail(DOPT_E_NOMEM, "out of memory");
    } catch (const ProtocolError& e) {
        return fail(DOPT_E_PROTOCOL, std::string("malformed reply from the agent: ") + e.what());
    } catch (const nlohmann::json::exception& e) {
        return fail(DOPT_E_PROTOCOL, std::string("malformed reply from the agent: ") + e.what());
    } catch (const std::exception& e) {
        return fail(DOPT_E_INTERNAL, std::string("internal error in libdopt: ") + e.what());
    } catch (...) {
        return fail(DOPT_E_INTERNAL, "internal error in libdopt");
    }
}

}  // namespace dopt::client
