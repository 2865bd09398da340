// dopt_job_* and dopt_client_list_jobs: each call is one request of
// docs/protocol.md on the job's client.
#include "api/libdopt/internal.h"
#include "common/hex.h"

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>

using namespace dopt::client;

namespace {

// Sends `op` for the job with extra `fields`; on success *job_out (may be
// NULL) gets the parsed job object of the reply.
int job_request(dopt_job* job, const char* op, json fields,
                std::unique_ptr<dopt_job_status>* job_out = nullptr) {
    fields["op"] = op;
    fields["job"] = job->id;
    json reply;
    int rc = call(job->client, std::move(fields), &reply);
    if (rc != DOPT_OK) return rc;
    if (job_out) {
        if (!reply.contains("job")) throw ProtocolError(std::string("no job in the reply to ") + op);
        *job_out = parse_job(reply["job"]);
    }
    return DOPT_OK;
}

// A `set` request with one property.
int set_property(dopt_job* job, const char* name, json value) {
    return job_request(job, "set", json{{name, std::move(value)}});
}

// One status round trip.
int fetch_status(dopt_job* job, std::unique_ptr<dopt_job_status>* out) {
    return job_request(job, "status", json::object(), out);
}

// This process's umask, or -1 when it cannot be read. umask() cannot be
// read without setting it, for every thread at once: the kernel's
// /proc/self/status "Umask:" line (Linux 4.7+) is read instead.
long own_umask() {
    FILE* f = std::fopen("/proc/self/status", "re");
    if (!f) return -1;
    char line[256];
    long mask = -1;
    while (std::fgets(line, sizeof line, f)) {
        if (std::strncmp(line, "Umask:", 6) != 0) continue;
        char* end = nullptr;
        long v = std::strtol(line + 6, &end, 8);
        if (end != line + 6 && v >= 0 && v <= 0777) mask = v;
        break;
    }
    std::fclose(f);
    return mask;
}

bool is_sha256_hex(const char* s) { return dopt::is_hex(s, 64); }

std::string base64_encode(const unsigned char* p, std::size_t n) {
    static const char* digits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    out.reserve((n + 2) / 3 * 4);
    for (std::size_t i = 0; i < n; i += 3) {
        std::uint32_t v = static_cast<std::uint32_t>(p[i]) << 16;
        if (i + 1 < n) v |= static_cast<std::uint32_t>(p[i + 1]) << 8;
        if (i + 2 < n) v |= p[i + 2];
        out += digits[(v >> 18) & 63];
        out += digits[(v >> 12) & 63];
        out += i + 1 < n ? digits[(v >> 6) & 63] : '=';
        out += i + 2 < n ? digits[v & 63] : '=';
    }
    return out;
}

std::string lower(std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

// Creates a handle for the job object in `reply` (create / open).
int make_handle(dopt_job** out, dopt_client* client, const json& reply) {
    if (!reply.contains("job")) throw ProtocolError("no job in the reply");
    const json& j = reply["job"];
    auto status = parse_job(j);
    auto job = std::make_unique<dopt_job>();
    job->client = client;
    job->id = status->id;
    // Forward compatible: an agent that reports the job's headers lets
    // dopt_job_add_http_header append to them instead of replacing them.
    if (j.contains("headers") && j["headers"].is_array())
        job->headers = j["headers"].get<std::vector<std::string>>();
    *out = job.release();
    return DOPT_OK;
}

// One reply to `list`, read without a tree (a page holds up to 1000 jobs).
struct ListPage {
    std::vector<std::unique_ptr<dopt_job_status>>* jobs = nullptr;  // the page's are appended
    std::size_t first = 0;  // where this page's jobs start in *jobs
    bool has_jobs = false;
    bool more = false;
    // A well-formed reply with a bad job (unknown state, ...): reported
    // once the envelope is known good, as for any other reply.
    std::string problem;
};

// Reads the members of a list reply: jobs into page->jobs, more, and the
// envelope (rc, seq, message) returned as a tree. Throws ProtocolError.
json read_list_reply(const std::string& body, ListPage* page) {
    JsonReader r(body);
    if (r.peek() != '{') return parse_tree(body);
    json envelope = json::object();
    JsonReader::Nest obj;
    std::string_view key;
    while (r.next_member(&obj, &key)) {
        if (key == "jobs") {
            page->jobs->resize(page->first);  // a repeated member replaces the first
            page->has_jobs = true;
            if (r.peek() != '[') throw ProtocolError("jobs is not an array");
            JsonReader::Nest arr;
            while (r.next_element(&arr)) page->jobs->push_back(read_job(r));
        } else if (key == "more") {
            page->more = !r.null() && r.read_bool("more");
        } else if (key == "rc" || key == "seq" || key == "message") {
            std::string name(key);  // key is only valid until the reader moves on
            envelope[name] = json::parse(r.raw_value());
        } else {
            r.skip_value();
        }
    }
    r.finish();
    return envelope;
}

// ReplyParser for list: malformed text comes back discarded (call() then
// breaks the client), a bad job is kept in page->problem and the envelope
// read again from a tree of the whole reply (rare: the slow way is fine).
json parse_list_reply(const std::string& body, ListPage* page) {
    try {
        return read_list_reply(body, page);
    } catch (const JsonSyntaxError&) {
        return json(json::value_t::discarded);
    } catch (const ProtocolError& e) {
        page->problem = e.what();
        return parse_tree(body);
    }
}

#define DOPT_REQUIRE(cond, fn)                                                 \
    do {                                                                       \
        if (!(cond)) return fail(DOPT_E_INVALID_ARG, fn ": NULL argument");    \
    } while (0)

}  // namespace

extern "C" {

int dopt_client_list_jobs(dopt_job_status*** out, size_t* count, dopt_client* client) {
    if (out) *out = nullptr;
    if (count) *count = 0;
    return guarded([&]() -> int {
        DOPT_REQUIRE(out && count && client, "dopt_client_list_jobs");
        // The agent answers in pages that fit a frame; ask for the next page
        // after the last id received until it says there are no more.
        std::vector<std::unique_ptr<dopt_job_status>> parsed;
        std::string after;
        for (;;) {
            json req{{"op", "list"}};
            if (!after.empty()) req["after"] = after;
            ListPage page;
            page.jobs = &parsed;
            page.first = parsed.size();
            json reply;
            int rc = call(client, req, &reply,
                          [&page](const std::string& body) { return parse_list_reply(body, &page); });
            if (rc != DOPT_OK) return rc;
            if (!page.problem.empty()) throw ProtocolError(page.problem);
            if (!page.has_jobs) throw ProtocolError("no jobs in the reply to list");
            if (!page.more || parsed.size() == page.first) break;
            after = parsed.back()->id;
        }
        if (parsed.empty()) return DOPT_OK;
        auto* list = new dopt_job_status*[parsed.size()];
        for (std::size_t i = 0; i < parsed.size(); ++i) list[i] = parsed[i].release();
        *out = list;
        *count = parsed.size();
        return DOPT_OK;
    });
}

int dopt_job_create(dopt_job** out, dopt_client* client, const char* display_name) {
    if (out) *out = nullptr;
    return guarded([&]() -> int {
        DOPT_REQUIRE(out && client, "dopt_job_create");
        json req{{"op", "create"}};
        if (display_name) req["display_name"] = display_name;
        long mask = own_umask();
        if (mask >= 0) req["umask"] = mask;
        json reply;
        int rc = call(client, std::move(req), &reply);
        return rc != DOPT_OK ? rc : make_handle(out, client, reply);
    });
}

int dopt_job_open(dopt_job** out, dopt_client* client, const char* job_id) {
    if (out) *out = nullptr;
    return guarded([&]() -> int {
        DOPT_REQUIRE(out && client && job_id, "dopt_job_open");
        if (!*job_id) return fail(DOPT_E_INVALID_ARG, "dopt_job_open: empty job id");
        json reply;
        int rc = call(client, json{{"op", "open"}, {"job", job_id}}, &reply);
        return rc != DOPT_OK ? rc : make_handle(out, client, reply);
    });
}

void dopt_job_close(dopt_job* job) {
    if (!job) return;
    forget_job(job);  // no callback of this handle runs once this returns
    delete job;
}

int dopt_job_set_callbacks(dopt_job* job, const dopt_callbacks* callbacks, void* userdata) {
    return guarded([&]() -> int {
        DOPT_REQUIRE(job, "dopt_job_set_callbacks");
        if (callbacks && callbacks->version != DOPT_CALLBACKS_VERSION)
            return fail(DOPT_E_INVALID_ARG,
                        "dopt_job_set_callbacks: unknown dopt_callbacks version " +
                            std::to_string(callbacks->version) + " (this libdopt knows " +
                            std::to_string(DOPT_CALLBACKS_VERSION) + ")");
        return set_callbacks(job, callbacks, userdata);
    });
}

const char* dopt_job_id(const dopt_job* job) {
    if (job) return job->id.c_str();
    set_error("dopt_job_id: NULL argument");
    return "";
}

int dopt_job_add_file(dopt_job* job, const char* url, const char* local_path) {
    return guarded([&]() -> int {
        DOPT_REQUIRE(job && url && local_path, "dopt_job_add_file");
        if (!*url) return fail(DOPT_E_INVALID_ARG, "dopt_job_add_file: empty URL");
        if (!*local_path) return fail(DOPT_E_INVALID_ARG, "dopt_job_add_file: empty local path");
        if (local_path[0] != '/')
            return fail(DOPT_E_RELATIVE_PATH,
                        std::string("the local path must be absolute: ") + local_path);
        return job_request(job, "add_file", json{{"url", url}, {"local_path", local_path}});
    });
}

int dopt_job_set_file_sha256(dopt_job* job, size_t file_index, const char* sha256_hex) {
    return guarded([&]() -> int {
        DOPT_REQUIRE(job && sha256_hex, "dopt_job_set_file_sha256");
        if (!is_sha256_hex(sha256_hex))
            return fail(DOPT_E_INVALID_ARG,
                        std::string("not a SHA-256 (64 hex digits): ") + sha256_hex);
        return set_property(job, "file_sha256",
                            json{{"index", file_index}, {"sha256", lower(sha256_hex)}});
    });
}

int dopt_job_set_file_metainfo(dopt_job* job, size_t file_index, const void* bytes, size_t length) {
    return guarded([&]() -> int {
        DOPT_REQUIRE(job && bytes, "dopt_job_set_file_metainfo");
        if (length == 0) return fail(DOPT_E_INVALID_ARG, "dopt_job_set_file_metainfo: empty metainfo");
        if (length > 700 * 1024)
            return fail(DOPT_E_TOO_LARGE,
                        "metainfo over 700 KiB: host it and use dopt_job_set_file_metainfo_url");
        return set_property(job, "file_metainfo",
                            json{{"index", file_index},
                                 {"base64", base64_encode(static_cast<const unsigned char*>(bytes), length)}});
    });
}

int dopt_job_set_file_metainfo_url(dopt_job* job, size_t file_index, const char* url) {
    return guarded([&]() -> int {
        DOPT_REQUIRE(job && url, "dopt_job_set_file_metainfo_url");
        if (!*url) return fail(DOPT_E_INVALID_ARG, "dopt_job_set_file_metainfo_url: empty URL");
        return set_property(job, "file_metainfo", json{{"index", file_index}, {"url", url}});
    });
}

// Returns a malloc'd copy for the caller (dopt_string_free).
static char* c_string(const std::string& s) {
    char* out = static_cast<char*>(std::malloc(s.size() + 1));
    if (!out) throw std::bad_alloc();
    std::memcpy(out, s.c_str(), s.size() + 1);
    return out;
}

int dopt_cache_list_json(char** json_out, dopt_client* client) {
    if (json_out) *json_out = nullptr;
    return guarded([&]() -> int {
        DOPT_REQUIRE(client && json_out, "dopt_cache_list_json");
        json reply;
        int rc = call(client, json{{"op", "cache_list"}}, &reply);
        if (rc != DOPT_OK) return rc;
        if (!reply.contains("entries")) throw ProtocolError("no entries in the reply to cache_list");
        *json_out = c_string(reply["entries"].dump());
        return DOPT_OK;
    });
}

int dopt_cache_clear(uint64_t* bytes_removed, dopt_client* client) {
    if (bytes_removed) *bytes_removed = 0;
    return guarded([&]() -> int {
        DOPT_REQUIRE(client, "dopt_cache_clear");
        json reply;
        int rc = call(client, json{{"op", "cache_clear"}}, &reply);
        if (rc != DOPT_OK) return rc;
        if (bytes_removed) *bytes_removed = reply.value("bytes", std::uint64_t{0});
        return DOPT_OK;
    });
}

int dopt_peer_stats_json(char** json_out, dopt_client* client) {
    if (json_out) *json_out = nullptr;
    return guarded([&]() -> int {
        DOPT_REQUIRE(client && json_out, "dopt_peer_stats_json");
        json reply;
        int rc = call(client, json{{"op", "peer_stats"}}, &reply);
        if (rc != DOPT_OK) return rc;
        reply.erase("seq");
        reply.erase("rc");
        *json_out = c_string(reply.dump());
        return DOPT_OK;
    });
}

int dopt_metrics_text(char** text_out, dopt_client* client) {
    if (text_out) *text_out = nullptr;
    return guarded([&]() -> int {
        DOPT_REQUIRE(client && text_out, "dopt_metrics_text");
        json reply;
        int rc = call(client, json{{"op", "metrics"}}, &reply);
        if (rc != DOPT_OK) return rc;
        if (!reply.contains("text") || !reply["text"].is_string())
            return fail(DOPT_E_PROTOCOL, "the agent's metrics reply has no text");
        *text_out = c_string(reply["text"].get<std::string>());
        return DOPT_OK;
    });
}

void dopt_string_free(char* s) { std::free(s); }

int dopt_job_set_priority(dopt_job* job, dopt_priority priority) {
    return guarded([&]() -> int {
        DOPT_REQUIRE(job, "dopt_job_set_priority");
        // Read as int: a C caller may pass a value outside the C++ enum's range.
        int p = 0;
        static_assert(sizeof p == sizeof priority);
        std::memcpy(&p, &priority, sizeof p);
        if (p < DOPT_PRIORITY_FOREGROUND || p > DOPT_PRIORITY_LOW)
            return fail(DOPT_E_INVALID_ARG, "priority out of range: " + std::to_string(p));
        return set_property(job, "priority", p);
    });
}

int dopt_job_set_display_name(dopt_job* job, const char* name) {
    return guarded([&]() -> int {
        DOPT_REQUIRE(job && name, "dopt_job_set_display_name");
        return set_property(job, "display_name", name);
    });
}

int dopt_job_set_no_progress_timeout(dopt_job* job, uint32_t seconds) {
    return guarded([&]() -> int {
        DOPT_REQUIRE(job, "dopt_job_set_no_progress_timeout");
        return set_property(job, "no_progress_timeout", seconds);
    });
}

int dopt_job_add_http_header(dopt_job* job, const char* header) {
    return guarded([&]() -> int {
        DOPT_REQUIRE(job && header, "dopt_job_add_http_header");
        std::string h(header);
        if (h.empty() || h.find_first_of("\r\n") != std::string::npos ||
            h.find(':') == std::string::npos || h[0] == ':')
            return fail(DOPT_E_INVALID_ARG, "not a header line \"Name: value\": " + h);
        std::vector<std::string> all = job->headers;
        all.push_back(h);
        int rc = set_property(job, "headers", all);
        if (rc == DOPT_OK) job->headers = std::move(all);
        return rc;
    });
}

int dopt_job_clear_http_headers(dopt_job* job) {
    return guarded([&]() -> int {
        DOPT_REQUIRE(job, "dopt_job_clear_http_headers");
        int rc = set_property(job, "headers", json::array());
        if (rc == DOPT_OK) job->headers.clear();
        return rc;
    });
}

int dopt_job_set_auto_complete(dopt_job* job, int on) {
    return guarded([&]() -> int {
        DOPT_REQUIRE(job, "dopt_job_set_auto_complete");
        return set_property(job, "auto_complete", on != 0);
    });
}

int dopt_job_resume(dopt_job* job) {
    return guarded([&]() -> int {
        DOPT_REQUIRE(job, "dopt_job_resume");
        return job_request(job, "resume", json::object());
    });
}

int dopt_job_suspend(dopt_job* job) {
    return guarded([&]() -> int {
        DOPT_REQUIRE(job, "dopt_job_suspend");
        return job_request(job, "suspend", json::object());
    });
}

int dopt_job_cancel(dopt_job* job) {
    return guarded([&]() -> int {
        DOPT_REQUIRE(job, "dopt_job_cancel");
        return job_request(job, "cancel", json::object());
    });
}

int dopt_job_complete(dopt_job* job) {
    return guarded([&]() -> int {
        DOPT_REQUIRE(job, "dopt_job_complete");
        return job_request(job, "complete", json::object());
    });
}

int dopt_job_wait(dopt_job_state* state_out, dopt_job* job, int timeout_ms) {
    return guarded([&]() -> int {
        DOPT_REQUIRE(job, "dopt_job_wait");
        if (timeout_ms < -1)
            return fail(DOPT_E_INVALID_ARG, "timeout_ms must be -1 or more");
        json reply;
        int rc = call(job->client, json{{"op", "wait"}, {"job", job->id}, {"timeout_ms", timeout_ms}},
                      &reply);
        if (rc != DOPT_OK && rc != DOPT_E_TIMEOUT) return rc;
        if (state_out && reply.contains("job")) *state_out = parse_job(reply["job"])->state;
        return rc;
    });
}

int dopt_job_fetch_state(dopt_job_state* out, dopt_job* job) {
    return guarded([&]() -> int {
        DOPT_REQUIRE(job && out, "dopt_job_fetch_state");
        std::unique_ptr<dopt_job_status> s;
        int rc = fetch_status(job, &s);
        if (rc == DOPT_OK) *out = s->state;
        return rc;
    });
}

int dopt_job_fetch_progress(dopt_progress* out, dopt_job* job) {
    if (out) *out = dopt_progress{};
    return guarded([&]() -> int {
        DOPT_REQUIRE(job && out, "dopt_job_fetch_progress");
        std::unique_ptr<dopt_job_status> s;
        int rc = fetch_status(job, &s);
        if (rc == DOPT_OK) *out = s->progress;
        return rc;
    });
}

int dopt_job_fetch_times(dopt_times* out, dopt_job* job) {
    if (out) *out = dopt_times{};
    return guarded([&]() -> int {
        DOPT_REQUIRE(job && out, "dopt_job_fetch_times");
        std::unique_ptr<dopt_job_status> s;
        int rc = fetch_status(job, &s);
        if (rc == DOPT_OK) *out = s->times;
        return rc;
    });
}

int dopt_job_fetch_error(dopt_error** out, dopt_job* job) {
    if (out) *out = nullptr;
    return guarded([&]() -> int {
        DOPT_REQUIRE(out && job, "dopt_job_fetch_error");
        std::unique_ptr<dopt_job_status> s;
        int rc = fetch_status(job, &s);
        if (rc == DOPT_OK) *out = s->error.release();
        return rc;
    });
}

int dopt_job_fetch_status(dopt_job_status** out, dopt_job* job) {
    if (out) *out = nullptr;
    return guarded([&]() -> int {
        DOPT_REQUIRE(out && job, "dopt_job_fetch_status");
        std::unique_ptr<dopt_job_status> s;
        int rc = fetch_status(job, &s);
        if (rc == DOPT_OK) *out = s.release();
        return rc;
    });
}

}  // extern "C"
