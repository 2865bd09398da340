// Status snapshots and error objects: parsing the job object of
// docs/protocol.md into plain values, and their C accessors.
//
// Job objects are read straight from the reply's text into dopt_job_status
// (JsonReader below), without a JSON tree: a `list` page holds up to 1000 of
// them, and a tree per page cost more than everything else `dopt list` does.
#include "api/libdopt/internal.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <utility>

namespace dopt::client {

namespace {

const char* const kStateNames[] = {"queued",          "connecting",  "transferring",
                                   "suspended",       "error",       "transient_error",
                                   "transferred",     "acknowledged", "cancelled"};

const char* const kContextNames[] = {"none", "local_file", "remote_file", "transport",
                                     "peer", "agent",      "integrity"};

// Nesting deeper than this in a skipped value is refused (the stack is ours).
constexpr int kMaxDepth = 128;

}  // namespace

// ---- JsonReader ---------------------------------------------------------------

void JsonReader::fail(const char* what) const {
    throw JsonSyntaxError(std::string(what) + " at byte " + std::to_string(pos_));
}

char JsonReader::peek() {
    while (pos_ < text_.size()) {
        char c = text_[pos_];
        if (c != ' ' && c != '\n' && c != '\r' && c != '\t') return c;
        ++pos_;
    }
    return '\0';
}

void JsonReader::expect(char c) {
    if (peek() != c) fail((std::string("expected '") + c + "'").c_str());
    ++pos_;
}

void JsonReader::literal(std::string_view word) {
    if (text_.substr(pos_, word.size()) != word) fail("invalid literal");
    pos_ += word.size();
}

bool JsonReader::null() {
    if (peek() != 'n') return false;
    literal("null");
    return true;
}

void JsonReader::finish() {
    if (peek() != '\0' || pos_ != text_.size()) fail("text after the JSON value");
}

bool JsonReader::next_member(Nest* nest, std::string_view* key) {
    if (nest->first) {
        expect('{');
        if (peek() == '}') {
            ++pos_;
            return false;
        }
        nest->first = false;
    } else {
        char c = peek();
        if (c != ',' && c != '}') fail("expected ',' or '}'");
        ++pos_;
        if (c == '}') return false;
    }
    if (peek() != '"') fail("expected a member name");
    *key = string_view(&key_);
    expect(':');
    return true;
}

bool JsonReader::next_element(Nest* nest) {
    if (nest->first) {
        expect('[');
        nest->first = false;
        if (peek() == ']') {
            ++pos_;
            return false;
        }
        return true;
    }
    char c = peek();
    if (c != ',' && c != ']') fail("expected ',' or ']'");
    ++pos_;
    return c == ',';
}

namespace {

int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

void append_utf8(std::string* out, std::uint32_t cp) {
    if (cp < 0x80) {
        *out += static_cast<char>(cp);
    } else if (cp < 0x800) {
        *out += static_cast<char>(0xC0 | (cp >> 6));
        *out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        *out += static_cast<char>(0xE0 | (cp >> 12));
        *out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        *out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
        *out += static_cast<char>(0xF0 | (cp >> 18));
        *out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        *out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        *out += static_cast<char>(0x80 | (cp & 0x3F));
    }
}

}  // namespace

// Length of the well-formed UTF-8 sequence (RFC 3629: no overlong forms, no
// surrogates, nothing above U+10FFFF) starting at `p`, or 0.
std::size_t JsonReader::utf8_length(std::size_t p) const {
    auto at = [&](std::size_t i) -> unsigned {
        return p + i < text_.size() ? static_cast<unsigned char>(text_[p + i]) : 0u;
    };
    auto cont = [&](std::size_t i, unsigned lo = 0x80, unsigned hi = 0xBF) {
        unsigned c = at(i);
        return c >= lo && c <= hi;
    };
    unsigned c = at(0);
    if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
    if (c == 0xE0) return cont(1, 0xA0, 0xBF) && cont(2) ? 3 : 0;
    if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) return cont(1) && cont(2) ? 3 : 0;
    if (c == 0xED) return cont(1, 0x80, 0x9F) && cont(2) ? 3 : 0;
    if (c == 0xF0) return cont(1, 0x90, 0xBF) && cont(2) && cont(3) ? 4 : 0;
    if (c >= 0xF1 && c <= 0xF3) return cont(1) && cont(2) && cont(3) ? 4 : 0;
    if (c == 0xF4) return cont(1, 0x80, 0x8F) && cont(2) && cont(3) ? 4 : 0;
    return 0;
}

std::uint32_t JsonReader::hex4() {
    if (text_.size() - pos_ < 4) fail("truncated \\u escape");
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
        int d = hex_digit(text_[pos_++]);
        if (d < 0) fail("invalid \\u escape");
        v = v * 16 + static_cast<std::uint32_t>(d);
    }
    return v;
}

// Reads the string at pos_ (its opening quote). Returns a view of the text
// itself when the string holds no escape, else of *scratch, where the
// decoded string was written.
std::string_view JsonReader::string_view(std::string* scratch) {
    expect('"');
    const std::size_t start = pos_;
    bool escaped = false;
    for (;;) {
        if (pos_ >= text_.size()) fail("unterminated string");
        auto c = static_cast<unsigned char>(text_[pos_]);
        if (c == '"') break;
        if (c == '\\') {
            escaped = true;
            pos_ += 2;  // the escape is checked when decoding below
        } else if (c < 0x20) {
            fail("control character in a string");
        } else if (c < 0x80) {
            ++pos_;
        } else {
            std::size_t n = utf8_length(pos_);
            if (n == 0) fail("invalid UTF-8 in a string");
            pos_ += n;
        }
    }
    const std::size_t end = pos_++;
    if (!escaped) return text_.substr(start, end - start);

    scratch->clear();
    for (std::size_t p = start; p < end;) {
        char c = text_[p];
        if (c != '\\') {
            *scratch += c;
            ++p;
            continue;
        }
        char e = text_[p + 1];
        p += 2;
        switch (e) {
            case '"': *scratch += '"'; break;
            case '\\': *scratch += '\\'; break;
            case '/': *scratch += '/'; break;
            case 'b': *scratch += '\b'; break;
            case 'f': *scratch += '\f'; break;
            case 'n': *scratch += '\n'; break;
            case 'r': *scratch += '\r'; break;
            case 't': *scratch += '\t'; break;
            case 'u': {
                std::size_t saved = pos_;
                pos_ = p;
                std::uint32_t cp = hex4();
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    if (pos_ + 2 > end || text_[pos_] != '\\' || text_[pos_ + 1] != 'u')
                        fail("unpaired surrogate in a \\u escape");
                    pos_ += 2;
                    std::uint32_t lo = hex4();
                    if (lo < 0xDC00 || lo > 0xDFFF) fail("unpaired surrogate in a \\u escape");
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                    fail("unpaired surrogate in a \\u escape");
                }
                if (pos_ > end) fail("invalid \\u escape");
                append_utf8(scratch, cp);
                p = pos_;
                pos_ = saved;
                break;
            }
            default:
                pos_ = p - 1;
                fail("invalid escape in a string");
        }
    }
    return *scratch;
}

void JsonReader::read_string(std::string* out) {
    std::string_view v = string_view(out);
    if (v.data() != out->data()) out->assign(v.data(), v.size());
}

// Validates a number's syntax (RFC 8259); true when it is an integer.
bool JsonReader::number(std::size_t* start, std::size_t* end) {
    peek();
    *start = pos_;
    auto digit = [&]() { return pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9'; };
    if (pos_ < text_.size() && text_[pos_] == '-') ++pos_;
    if (!digit()) fail("invalid number");
    if (text_[pos_] == '0') ++pos_;
    else while (digit()) ++pos_;
    bool integer = true;
    if (pos_ < text_.size() && text_[pos_] == '.') {
        ++pos_;
        if (!digit()) fail("invalid number");
        while (digit()) ++pos_;
        integer = false;
    }
    if (pos_ < text_.size() && (text_[pos_] == 'e' || text_[pos_] == 'E')) {
        ++pos_;
        if (pos_ < text_.size() && (text_[pos_] == '+' || text_[pos_] == '-')) ++pos_;
        if (!digit()) fail("invalid number");
        while (digit()) ++pos_;
        integer = false;
    }
    *end = pos_;
    return integer;
}

std::int64_t JsonReader::read_i64(const char* what) {
    std::size_t start = 0, end = 0;
    if (!number(&start, &end)) {
        // 1e3 or 2.0: valid JSON for an integer, though the agent never
        // writes one. Anything with a fraction is refused.
        std::string digits(text_.substr(start, end - start));
        double d = std::strtod(digits.c_str(), nullptr);
        if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0) || std::trunc(d) != d)
            throw ProtocolError(std::string(what) + " is not an integer");
        return static_cast<std::int64_t>(d);
    }
    bool neg = text_[start] == '-';
    // Accumulate negatively: INT64_MIN has no positive counterpart.
    std::int64_t v = 0;
    for (std::size_t p = start + (neg ? 1 : 0); p < end; ++p) {
        int d = text_[p] - '0';
        if (v < (INT64_MIN + d) / 10) throw ProtocolError(std::string(what) + " is out of range");
        v = v * 10 - d;
    }
    if (!neg) {
        if (v == INT64_MIN) throw ProtocolError(std::string(what) + " is out of range");
        v = -v;
    }
    return v;
}

bool JsonReader::read_bool(const char* what) {
    char c = peek();
    if (c == 't') {
        literal("true");
        return true;
    }
    if (c == 'f') {
        literal("false");
        return false;
    }
    if (c == '\0' || c == ',' || c == '}' || c == ']') fail("expected a value");
    skip_value();
    throw ProtocolError(std::string(what) + " is not a boolean");
}

void JsonReader::skip_value(int depth) {
    if (depth > kMaxDepth) fail("nesting too deep");
    char c = peek();
    switch (c) {
        case '{': {
            Nest obj;
            std::string_view key;
            while (next_member(&obj, &key)) skip_value(depth + 1);
            return;
        }
        case '[': {
            Nest arr;
            while (next_element(&arr)) skip_value(depth + 1);
            return;
        }
        case '"': string_view(&key_); return;
        case 't': literal("true"); return;
        case 'f': literal("false"); return;
        case 'n': literal("null"); return;
        default: {
            std::size_t start = 0, end = 0;
            number(&start, &end);
            return;
        }
    }
}

std::string_view JsonReader::raw_value() {
    peek();
    std::size_t start = pos_;
    skip_value();
    return text_.substr(start, pos_ - start);
}

json parse_tree(const std::string& text) {
    bool too_deep = false;
    json tree = json::parse(
        text,
        [&too_deep](int depth, json::parse_event_t, json&) {
            if (depth > kMaxDepth) too_deep = true;
            return !too_deep;  // nothing more is kept once too deep
        },
        /*allow_exceptions=*/false);
    return too_deep ? json(json::value_t::discarded) : tree;
}

// ---- job objects ----------------------------------------------------------------

namespace {

// Field readers: JSON null (or an absent member) leaves the default, another
// type is a ProtocolError.
void read_str(JsonReader& r, const char* what, std::string* out) {
    if (r.null()) {
        out->clear();
        return;
    }
    if (r.peek() != '"') {
        r.skip_value();
        throw ProtocolError(std::string(what) + " is not a string");
    }
    r.read_string(out);
}

std::int64_t read_int(JsonReader& r, const char* what, std::int64_t def = 0) {
    if (r.null()) return def;
    char c = r.peek();
    if (c != '-' && (c < '0' || c > '9')) {
        r.skip_value();
        throw ProtocolError(std::string(what) + " is not an integer");
    }
    return r.read_i64(what);
}

// Byte counts: -1 (or absent) means unknown, UINT64_MAX in the C API.
std::uint64_t read_total(JsonReader& r, const char* what) {
    std::int64_t v = read_int(r, what, -1);
    return v < 0 ? UINT64_MAX : static_cast<std::uint64_t>(v);
}

std::uint64_t read_count(JsonReader& r, const char* what) {
    std::int64_t v = read_int(r, what, 0);
    if (v < 0) throw ProtocolError(std::string("negative ") + what);
    return static_cast<std::uint64_t>(v);
}

// A duration in seconds, 0 to UINT32_MAX.
std::uint32_t read_seconds(JsonReader& r, const char* what) {
    std::int64_t v = read_int(r, what, 0);
    if (v < 0 || v > UINT32_MAX) throw ProtocolError(std::string(what) + " out of range");
    return static_cast<std::uint32_t>(v);
}

dopt_context parse_context(std::string_view name) {
    for (std::size_t i = 0; i < std::size(kContextNames); ++i)
        if (name == kContextNames[i]) return static_cast<dopt_context>(i);
    return DOPT_CONTEXT_NONE;  // a context from a newer agent
}

// {local_name, remote_name, bytes_total, bytes_transferred}; other members
// are skipped.
void read_file(JsonReader& r, std::string* local, std::string* remote, std::uint64_t* total,
               std::uint64_t* transferred, std::string* metainfo = nullptr) {
    JsonReader::Nest obj;
    std::string_view key;
    while (r.next_member(&obj, &key)) {
        if (key == "local_name") read_str(r, "local_name", local);
        else if (key == "metainfo" && metainfo) read_str(r, "metainfo", metainfo);
        else if (key == "remote_name") read_str(r, "remote_name", remote);
        else if (key == "bytes_total") *total = read_total(r, "bytes_total");
        else if (key == "bytes_transferred") *transferred = read_count(r, "bytes_transferred");
        else r.skip_value();
    }
}

void read_files(JsonReader& r, dopt_job_status* s) {
    s->files.clear();
    if (r.null()) return;
    if (r.peek() != '[') {
        r.skip_value();
        throw ProtocolError("files is not an array");
    }
    JsonReader::Nest arr;
    while (r.next_element(&arr)) {
        if (r.peek() != '{') {
            r.skip_value();
            throw ProtocolError("a file is not an object");
        }
        dopt_job_status::File& f = s->files.emplace_back();
        read_file(r, &f.local_name, &f.remote_name, &f.bytes_total, &f.bytes_transferred, &f.metainfo);
    }
}

std::unique_ptr<dopt_error> read_error(JsonReader& r) {
    if (r.null()) return nullptr;
    if (r.peek() != '{') {
        r.skip_value();
        throw ProtocolError("error is not an object");
    }
    auto err = std::make_unique<dopt_error>();
    std::string scratch;
    JsonReader::Nest obj;
    std::string_view key;
    while (r.next_member(&obj, &key)) {
        if (key == "context") {
            read_str(r, "context", &scratch);
            err->context = parse_context(scratch);
        } else if (key == "code") {
            err->code = read_int(r, "code");
        } else if (key == "description") {
            read_str(r, "description", &err->description);
        } else if (key == "protocol") {
            read_str(r, "protocol", &err->protocol);
        } else if (key == "time") {
            err->time = read_int(r, "time");
        } else if (key == "next_retry") {
            err->next_retry = read_int(r, "next_retry");
        } else if (key == "file" && r.peek() == '{') {
            err->has_file = true;
            err->local_name.clear();
            err->remote_name.clear();
            err->bytes_total = UINT64_MAX;
            err->bytes_transferred = 0;
            read_file(r, &err->local_name, &err->remote_name, &err->bytes_total,
                      &err->bytes_transferred);
        } else if (key == "file") {
            err->has_file = false;  // null (or not an object): no file concerned
            r.skip_value();
        } else {
            r.skip_value();
        }
    }
    return err;
}

// Dispatches one member of a job object to its field. Returns false for a
// member the job object does not have (the caller skips it).
bool read_job_member(JsonReader& r, std::string_view key, dopt_job_status* s,
                     std::string* state) {
    switch (key.empty() ? '\0' : key[0]) {
        case 'i':
            if (key == "id") return read_str(r, "id", &s->id), true;
            break;
        case 'd':
            if (key == "display_name") return read_str(r, "display_name", &s->display_name), true;
            break;
        case 's':
            if (key == "state") return read_str(r, "state", state), true;
            break;
        case 'p':
            if (key == "priority") {
                std::int64_t p = read_int(r, "priority", DOPT_PRIORITY_NORMAL);
                if (p < DOPT_PRIORITY_FOREGROUND || p > DOPT_PRIORITY_LOW)
                    throw ProtocolError("priority out of range");
                s->priority = static_cast<dopt_priority>(p);
                return true;
            }
            break;
        case 'n':
            if (key == "no_progress_timeout")
                return s->no_progress_timeout = read_seconds(r, "no_progress_timeout"), true;
            break;
        case 'o':
            if (key == "owner_uid")
                return s->owner_uid = static_cast<std::uint32_t>(read_int(r, "owner_uid")), true;
            break;
        case 'h':
            if (key == "http_only_reason") return read_str(r, "http_only_reason", &s->http_only_reason), true;
            break;
        case 'm':
            if (key == "mode") return read_str(r, "mode", &s->mode), true;
            if (key == "modified") return s->times.modified = read_int(r, "modified"), true;
            break;
        case 'c':
            if (key == "created") return s->times.created = read_int(r, "created"), true;
            break;
        case 't':
            if (key == "transfer_completed")
                return s->times.transfer_completed = read_int(r, "transfer_completed"), true;
            if (key == "transient_error") return s->transient_error = read_error(r), true;
            break;
        case 'b':
            if (key == "bytes_total")
                return s->progress.bytes_total = read_total(r, "bytes_total"), true;
            if (key == "bytes_transferred")
                return s->progress.bytes_transferred = read_count(r, "bytes_transferred"), true;
            if (key == "bytes_from_peers")
                return s->progress.bytes_from_peers = read_count(r, "bytes_from_peers"), true;
            if (key == "bytes_from_origin")
                return s->progress.bytes_from_origin = read_count(r, "bytes_from_origin"), true;
            break;
        case 'f':
            if (key == "files") return read_files(r, s), true;
            break;
        case 'e':
            if (key == "error") return s->error = read_error(r), true;
            break;
        default:
            break;
    }
    return false;
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

std::unique_ptr<dopt_job_status> read_job(JsonReader& r) {
    if (r.peek() != '{') {
        r.skip_value();
        throw ProtocolError("job is not an object");
    }
    auto s = std::make_unique<dopt_job_status>();
    s->progress.bytes_total = UINT64_MAX;
    std::string state;
    JsonReader::Nest obj;
    std::string_view key;
    while (r.next_member(&obj, &key))
        if (!read_job_member(r, key, s.get(), &state)) r.skip_value();
    if (s->id.empty()) throw ProtocolError("job without an id");
    if (!parse_state(state, &s->state)) throw ProtocolError("unknown job state '" + state + "'");
    if (s->mode.empty()) s->mode = "http_only";
    s->progress.files_total = static_cast<std::uint32_t>(s->files.size());
    for (const auto& f : s->files)
        if (f.bytes_total != UINT64_MAX && f.bytes_transferred >= f.bytes_total)
            ++s->progress.files_transferred;
    return s;
}

std::unique_ptr<dopt_job_status> parse_job(std::string_view text) {
    JsonReader r(text);
    auto s = read_job(r);
    r.finish();
    return s;
}

std::unique_ptr<dopt_job_status> parse_job(const json& j) {
    if (!j.is_object()) throw ProtocolError("job is not an object");
    const std::string text = j.dump();  // one job: the tree's text is cheap
    return parse_job(std::string_view(text));
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

uint32_t dopt_job_status_no_progress_timeout(const dopt_job_status* s) {
    return null_arg(s, "dopt_job_status_no_progress_timeout") ? 0 : s->no_progress_timeout;
}

uint32_t dopt_job_status_owner_uid(const dopt_job_status* s) {
    return null_arg(s, "dopt_job_status_owner_uid") ? 0 : s->owner_uid;
}

void dopt_job_status_progress(dopt_progress* out, const dopt_job_status* s) {
    if (null_arg(out, "dopt_job_status_progress")) return;
    *out = dopt_progress{};
    if (!null_arg(s, "dopt_job_status_progress")) *out = s->progress;
}

void dopt_job_status_times(dopt_times* out, const dopt_job_status* s) {
    if (null_arg(out, "dopt_job_status_times")) return;
    *out = dopt_times{};
    if (!null_arg(s, "dopt_job_status_times")) *out = s->times;
}

const char* dopt_job_status_mode(const dopt_job_status* s) {
    return null_arg(s, "dopt_job_status_mode") ? "" : s->mode.c_str();
}

const char* dopt_job_status_http_only_reason(const dopt_job_status* s) {
    return null_arg(s, "dopt_job_status_http_only_reason") ? "" : s->http_only_reason.c_str();
}

size_t dopt_job_status_file_count(const dopt_job_status* s) {
    return null_arg(s, "dopt_job_status_file_count") ? 0 : s->files.size();
}

int dopt_job_status_file(dopt_file_info* out, const dopt_job_status* s, size_t index) {
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

const char* dopt_job_status_file_metainfo(const dopt_job_status* s, size_t index) {
    if (null_arg(s, "dopt_job_status_file_metainfo")) return "";
    return index < s->files.size() ? s->files[index].metainfo.c_str() : "";
}

const dopt_error* dopt_job_status_error(const dopt_job_status* s) {
    return null_arg(s, "dopt_job_status_error") ? nullptr : s->error.get();
}

const dopt_error* dopt_job_status_transient_error(const dopt_job_status* s) {
    return null_arg(s, "dopt_job_status_transient_error") ? nullptr : s->transient_error.get();
}

dopt_context dopt_error_context(const dopt_error* e) {
    return null_arg(e, "dopt_error_context") ? DOPT_CONTEXT_NONE : e->context;
}

int64_t dopt_error_code(const dopt_error* e) {
    return null_arg(e, "dopt_error_code") ? 0 : e->code;
}

const char* dopt_error_description(const dopt_error* e) {
    return null_arg(e, "dopt_error_description") ? "" : e->description.c_str();
}

const char* dopt_error_protocol(const dopt_error* e) {
    return null_arg(e, "dopt_error_protocol") ? "" : e->protocol.c_str();
}

int64_t dopt_error_time(const dopt_error* e) {
    return null_arg(e, "dopt_error_time") ? 0 : e->time;
}

int64_t dopt_error_next_retry(const dopt_error* e) {
    return null_arg(e, "dopt_error_next_retry") ? 0 : e->next_retry;
}

int dopt_error_file(dopt_file_info* out, const dopt_error* e) {
    return guarded([&]() -> int {
        if (out) *out = dopt_file_info{};
        if (!e || !out) return fail(DOPT_E_INVALID_ARG, "dopt_error_file: NULL argument");
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
