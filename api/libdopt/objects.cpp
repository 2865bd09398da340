// Status snapshots and error objects: parsing the job object of
// docs/protocol.md into plain values, and their C accessors.
#include "api/libdopt/internal.h"

#include <cstring>

namespace dopt::client {

namespace {

const char* const kStateNames[] = {"queued",          "connecting",  "transferring",
                                   "suspended",       "error",       "transient_error",
                                   "transferred",     "acknowledged", "cancelled"};

const char* const kContextNames[] = {"none", "local_file", "remote_file", "transport",
                                     "peer", "agent",      "integrity"};

std::string str(const json& j, const char* key) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return {};
    return it->get<std::string>();
}

std::int64_t i64(const json& j, const char* key, std::int64_t def = 0) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return def;
    return it->get<std::int64_t>();
}

// Byte counts: -1 (or absent) means unknown, UINT64_MAX in the C API.
std::uint64_t total(const json& j, const char* key) {
    std::int64_t v = i64(j, key, -1);
    return v < 0 ? UINT64_MAX : static_cast<std::uint64_t>(v);
}

std::uint64_t count(const json& j, const char* key) {
    std::int64_t v = i64(j, key, 0);
    if (v < 0) throw ProtocolError(std::string("negative ") + key);
    return static_cast<std::uint64_t>(v);
}

dopt_error_context parse_context(const std::string& name) {
    for (std::size_t i = 0; i < std::size(kContextNames); ++i)
        if (name == kContextNames[i]) return static_cast<dopt_error_context>(i);
    return DOPT_CONTEXT_NONE;  // a context from a newer agent
}

dopt_priority parse_priority(const json& j) {
    auto it = j.find("priority");
    if (it == j.end() || it->is_null()) return DOPT_PRIORITY_NORMAL;
    std::int64_t p = it->get<std::int64_t>();
    if (p < DOPT_PRIORITY_FOREGROUND || p > DOPT_PRIORITY_LOW)
        throw ProtocolError("priority out of range");
    return static_cast<dopt_priority>(p);
}

std::unique_ptr<dopt_error> parse_error(const json& e) {
    if (!e.is_object()) throw ProtocolError("error is not an object");
    auto err = std::make_unique<dopt_error>();
    err->context = parse_context(str(e, "context"));
    err->code = i64(e, "code");
    err->description = str(e, "description");
    err->protocol = str(e, "protocol");
    err->time = i64(e, "time");
    auto f = e.find("file");
    if (f != e.end() && f->is_object()) {
        err->has_file = true;
        err->local_name = str(*f, "local_name");
        err->remote_name = str(*f, "remote_name");
        err->bytes_total = total(*f, "bytes_total");
        err->bytes_transferred = count(*f, "bytes_transferred");
    }
    return err;
}

void parse_files(const json& j, dopt_job_status* s) {
    auto it = j.find("files");
    if (it == j.end() || it->is_null()) return;
    if (!it->is_array()) throw ProtocolError("files is not an array");
    for (const json& f : *it) {
        dopt_job_status::File file;
        file.local_name = str(f, "local_name");
        file.remote_name = str(f, "remote_name");
        file.bytes_total = total(f, "bytes_total");
        file.bytes_transferred = count(f, "bytes_transferred");
        s->files.push_back(std::move(file));
    }
    s->progress.files_total = static_cast<std::uint32_t>(s->files.size());
    for (const auto& f : s->files)
        if (f.bytes_total != UINT64_MAX && f.bytes_transferred >= f.bytes_total)
            ++s->progress.files_transferred;
}

}  // namespace

bool parse_state(const std::string& name, dopt_job_state* out) {
    for (std::size_t i = 0; i < std::size(kStateNames); ++i) {
        if (name == kStateNames[i]) {
            *out = static_cast<dopt_job_state>(i);
            return true;
        }
    }
    return false;
}

std::unique_ptr<dopt_job_status> parse_job(const json& j) {
    if (!j.is_object()) throw ProtocolError("job is not an object");
    auto s = std::make_unique<dopt_job_status>();
    s->id = str(j, "id");
    if (s->id.empty()) throw ProtocolError("job without an id");
    s->display_name = str(j, "display_name");
    if (!parse_state(str(j, "state"), &s->state))
        throw ProtocolError("unknown job state '" + str(j, "state") + "'");
    s->priority = parse_priority(j);
    s->owner_uid = static_cast<std::uint32_t>(i64(j, "owner_uid"));
    s->mode = str(j, "mode");
    if (s->mode.empty()) s->mode = "http_only";
    s->times.created = i64(j, "created");
    s->times.modified = i64(j, "modified");
    s->times.transfer_completed = i64(j, "transfer_completed");
    s->progress.bytes_total = total(j, "bytes_total");
    s->progress.bytes_transferred = count(j, "bytes_transferred");
    s->progress.bytes_from_peers = count(j, "bytes_from_peers");
    s->progress.bytes_from_origin = count(j, "bytes_from_origin");
    parse_files(j, s.get());
    auto e = j.find("error");
    if (e != j.end() && !e->is_null()) s->error = parse_error(*e);
    return s;
}

}  // namespace dopt::client

using namespace dopt::client;

namespace {

void fill_file_info(dopt_file_info* out, const std::string& local, const std::string& remote,
                    std::uint64_t bytes_total, std::uint64_t bytes_transferred) {
    out->local_name = local.c_str();
    out->remote_name = remote.c_str();
    out->bytes_total = bytes_total;
    out->bytes_transferred = bytes_transferred;
}

// For accessors without an int result: a NULL handle sets the detail.
bool null_arg(const void* p, const char* fn) {
    if (p) return false;
    set_error(std::string(fn) + ": NULL argument");
    return true;
}

}  // namespace

extern "C" {

void dopt_job_status_free(dopt_job_status* status) { delete status; }

void dopt_job_status_list_free(dopt_job_status** list, size_t count) {
    if (!list) return;
    for (size_t i = 0; i < count; ++i) delete list[i];
    delete[] list;
}

const char* dopt_job_status_id(const dopt_job_status* s) {
    return null_arg(s, "dopt_job_status_id") ? "" : s->id.c_str();
}

const char* dopt_job_status_display_name(const dopt_job_status* s) {
    return null_arg(s, "dopt_job_status_display_name") ? "" : s->display_name.c_str();
}

dopt_job_state dopt_job_status_state(const dopt_job_status* s) {
    return null_arg(s, "dopt_job_status_state") ? DOPT_STATE_QUEUED : s->state;
}

dopt_priority dopt_job_status_priority(const dopt_job_status* s) {
    return null_arg(s, "dopt_job_status_priority") ? DOPT_PRIORITY_NORMAL : s->priority;
}

uint32_t dopt_job_status_owner_uid(const dopt_job_status* s) {
    return null_arg(s, "dopt_job_status_owner_uid") ? 0 : s->owner_uid;
}

void dopt_job_status_progress(const dopt_job_status* s, dopt_progress* out) {
    if (null_arg(out, "dopt_job_status_progress")) return;
    *out = dopt_progress{};
    if (!null_arg(s, "dopt_job_status_progress")) *out = s->progress;
}

void dopt_job_status_times(const dopt_job_status* s, dopt_times* out) {
    if (null_arg(out, "dopt_job_status_times")) return;
    *out = dopt_times{};
    if (!null_arg(s, "dopt_job_status_times")) *out = s->times;
}

const char* dopt_job_status_mode(const dopt_job_status* s) {
    return null_arg(s, "dopt_job_status_mode") ? "" : s->mode.c_str();
}

size_t dopt_job_status_file_count(const dopt_job_status* s) {
    return null_arg(s, "dopt_job_status_file_count") ? 0 : s->files.size();
}

int dopt_job_status_file(const dopt_job_status* s, size_t index, dopt_file_info* out) {
    return guarded([&]() -> int {
        if (out) *out = dopt_file_info{};
        if (!s || !out) return fail(DOPT_E_INVALID_ARG, "dopt_job_status_file: NULL argument");
        if (index >= s->files.size())
            return fail(DOPT_E_INVALID_ARG, "dopt_job_status_file: index " + std::to_string(index) +
                                                " out of range (" + std::to_string(s->files.size()) +
                                                " files)");
        const auto& f = s->files[index];
        fill_file_info(out, f.local_name, f.remote_name, f.bytes_total, f.bytes_transferred);
        return DOPT_OK;
    });
}

const dopt_error* dopt_job_status_error(const dopt_job_status* s) {
    return null_arg(s, "dopt_job_status_error") ? nullptr : s->error.get();
}

dopt_error_context dopt_error_get_context(const dopt_error* e) {
    return null_arg(e, "dopt_error_get_context") ? DOPT_CONTEXT_NONE : e->context;
}

int64_t dopt_error_get_code(const dopt_error* e) {
    return null_arg(e, "dopt_error_get_code") ? 0 : e->code;
}

const char* dopt_error_get_description(const dopt_error* e) {
    return null_arg(e, "dopt_error_get_description") ? "" : e->description.c_str();
}

const char* dopt_error_get_protocol(const dopt_error* e) {
    return null_arg(e, "dopt_error_get_protocol") ? "" : e->protocol.c_str();
}

int64_t dopt_error_get_time(const dopt_error* e) {
    return null_arg(e, "dopt_error_get_time") ? 0 : e->time;
}

int dopt_error_get_file(const dopt_error* e, dopt_file_info* out) {
    return guarded([&]() -> int {
        if (out) *out = dopt_file_info{};
        if (!e || !out) return fail(DOPT_E_INVALID_ARG, "dopt_error_get_file: NULL argument");
        if (!e->has_file) return fail(DOPT_E_NOT_FOUND, "the error concerns no file");
        fill_file_info(out, e->local_name, e->remote_name, e->bytes_total, e->bytes_transferred);
        return DOPT_OK;
    });
}

int dopt_error_copy(dopt_error** out, const dopt_error* e) {
    if (out) *out = nullptr;
    return guarded([&]() -> int {
        if (!out || !e) return fail(DOPT_E_INVALID_ARG, "dopt_error_copy: NULL argument");
        *out = new dopt_error(*e);
        return DOPT_OK;
    });
}

void dopt_error_free(dopt_error* e) { delete e; }

}  // extern "C"
