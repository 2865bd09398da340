// dopt — the command-line client of doptd, built on libdopt; `publish` alone
// uses p2p/metainfo_summary.h (libtorrent linked, never included) and needs
// no agent.
//
// Its interface (commands, --json field names, exit codes) is fixed by
// docs/design.md "Interfaces other tools rely on". Exit codes:
//   0 success; 1 the job failed (its error printed); 2 bad usage or input
//   (including an unknown or another user's job); 3 the agent could not be
//   reached. Messages go to stderr, prefixed "dopt: ".
#include "dopt/dopt.h"
#include "api/cli/cli_text.h"
#include "api/cli/command_help.h"
#include "api/cli/progress.h"
#include "api/cli/remote_name.h"
#include "common/hex.h"
#include "common/json_writer.h"
#include "p2p/metainfo_summary.h"

#include <nlohmann/json.hpp>

#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <climits>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace {

using namespace dopt::cli;  // cli_text.h, command_help.h, progress.h, remote_name.h

// Ordered, so --json prints "id" and "state" first as a person reads them.
using json = nlohmann::ordered_json;

constexpr int kExitOk = 0;
constexpr int kExitJobFailed = 1;
constexpr int kExitUsage = 2;
constexpr int kExitNoAgent = 3;

// ---- messages and exit codes ------------------------------------------------

void say(const std::string& msg) { std::fprintf(stderr, "dopt: %s\n", msg.c_str()); }

// Thrown by command code to end the program with `code` after printing
// `message` (if any). Caught in main only.
struct Exit {
    int code;
};

[[noreturn]] void exit_with(int code, const std::string& message) {
    if (!message.empty()) say(message);
    throw Exit{code};
}

[[noreturn]] void usage_error(const std::string& message) {
    say(message);
    say("try 'dopt help'");
    throw Exit{kExitUsage};
}

// Ends the program for a libdopt failure `rc` of `what` (e.g. "cannot add
// file"), with `detail` from dopt_last_error(). See the exit codes above.
[[noreturn]] void fail_with(int rc, const std::string& what, std::string detail,
                            const std::string& job_id = "") {
    if (detail.empty()) detail = dopt_strerror(rc);
    switch (rc) {
        case DOPT_E_CONNECT:
        case DOPT_E_VERSION:
        case DOPT_E_DISCONNECTED:
        case DOPT_E_PROTOCOL:
            exit_with(kExitNoAgent, "cannot reach the agent: " + detail);
        case DOPT_E_NOT_FOUND:
            exit_with(kExitUsage, "no such job" + (job_id.empty() ? "" : ": " + job_id));
        case DOPT_E_INVALID_ARG:
        case DOPT_E_INVALID_STATE:
        case DOPT_E_INVALID_URL:
        case DOPT_E_UNSUPPORTED_SCHEME:
        case DOPT_E_RELATIVE_PATH:
        case DOPT_E_ACCESS:
        case DOPT_E_EXISTS:
        case DOPT_E_TOO_LARGE:
            exit_with(kExitUsage, what + ": " + detail);
        default:
            exit_with(kExitJobFailed, what + ": " + detail);
    }
}

// fail_with for the failure that just happened on this thread.
[[noreturn]] void api_error(int rc, const std::string& what, const std::string& job_id = "") {
    fail_with(rc, what, dopt_last_error(), job_id);
}

void check(int rc, const std::string& what, const std::string& job_id = "") {
    if (rc != DOPT_OK) api_error(rc, what, job_id);
}

// ---- command line -------------------------------------------------------------

struct Options {
    std::string command;
    std::vector<std::string> args;  // positionals after the command
    std::optional<std::string> socket;
    bool json = false;
    bool auto_complete = false;
    bool remote_name = false;  // -O
    bool quiet = false;        // -q
    bool v1 = false;           // publish --v1
    std::vector<std::string> outputs;
    std::vector<std::string> sha256s;
    std::vector<std::string> sizes;
    std::optional<std::string> priority;
    std::optional<std::string> no_progress_timeout;
    std::vector<std::string> headers;
    std::optional<std::string> name;
    std::optional<std::string> metainfo;
    std::optional<std::string> web_seed;
    std::set<std::string> seen;  // canonical names of the options given
};

const std::set<std::string> kValueOptions = {"-o",     "--sha256", "--size", "--priority", "--no-progress-timeout",
                                             "--header", "--name", "--metainfo", "--socket",
                                             "--web-seed"};
const std::set<std::string> kFlagOptions = {"--json", "--auto-complete", "--help", "--version", "-O", "-q",
                                            "--prometheus", "--v1"};

std::string canonical(const std::string& opt) {
    if (opt == "--output") return "-o";
    if (opt == "--remote-name") return "-O";
    if (opt == "--quiet") return "-q";
    if (opt == "-H") return "--header";
    if (opt == "-h") return "--help";
    return opt;
}

void store_option(Options* o, const std::string& opt, const std::string& value) {
    if (opt == "-o") o->outputs.push_back(value);
    else if (opt == "--sha256") o->sha256s.push_back(value);
    else if (opt == "--size") o->sizes.push_back(value);
    else if (opt == "--priority") o->priority = value;
    else if (opt == "--no-progress-timeout") o->no_progress_timeout = value;
    else if (opt == "--header") o->headers.push_back(value);
    else if (opt == "--name") o->name = value;
    else if (opt == "--metainfo") o->metainfo = value;
    else if (opt == "--socket") o->socket = value;
    else if (opt == "--web-seed") o->web_seed = value;
}

bool is_option_name(std::string arg) {
    if (auto eq = arg.find('='); arg.rfind("--", 0) == 0 && eq != std::string::npos) arg.resize(eq);
    arg = canonical(arg);
    return kValueOptions.count(arg) || kFlagOptions.count(arg);
}

// Options may come before or after positionals; "--" ends options;
// "--opt=value" and "--opt value" are both accepted.
Options parse_args(int argc, char** argv) {
    Options o;
    bool options_done = false;
    std::vector<std::string> positionals;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (options_done || a.size() < 2 || a[0] != '-') {
            positionals.push_back(a);
            continue;
        }
        if (a == "--") {
            options_done = true;
            continue;
        }
        std::optional<std::string> inline_value;
        if (auto eq = a.find('='); a.rfind("--", 0) == 0 && eq != std::string::npos) {
            inline_value = a.substr(eq + 1);
            a.resize(eq);
        }
        std::string opt = canonical(a);
        if (kFlagOptions.count(opt)) {
            if (inline_value) usage_error("option " + a + " takes no value");
            if (opt == "--json") o.json = true;
            if (opt == "--auto-complete") o.auto_complete = true;
            if (opt == "-O") o.remote_name = true;
            if (opt == "-q") o.quiet = true;
            if (opt == "--v1") o.v1 = true;
        } else if (kValueOptions.count(opt)) {
            if (!inline_value && i + 1 >= argc) usage_error("option " + a + " needs a value");
            // "-o --name x": the path is missing (--output=--name takes it).
            if (!inline_value && is_option_name(argv[i + 1]))
                usage_error("option " + a + " needs a value, not the option " + argv[i + 1]);
            store_option(&o, opt, inline_value ? *inline_value : argv[++i]);
        } else {
            usage_error("unknown option " + a);
        }
        o.seen.insert(opt);
    }
    if (!positionals.empty()) {
        o.command = positionals.front();
        o.args.assign(positionals.begin() + 1, positionals.end());
    }
    return o;
}

// Rejects options the command does not take.
void allow_only(const Options& o, const std::set<std::string>& allowed) {
    for (const auto& opt : o.seen)
        if (opt != "--socket" && opt != "--help" && !allowed.count(opt))
            usage_error("option " + opt + " does not apply to '" + o.command + "'");
}

void expect_args(const Options& o, std::size_t n, const char* what) {
    if (o.args.size() < n) usage_error("'" + o.command + "' needs " + what);
    if (o.args.size() > n) usage_error("too many arguments for '" + o.command + "': " + o.args[n]);
}

// ---- values -------------------------------------------------------------------

// Joins a relative path with the working directory and normalises "." and
// ".." lexically (symlinks are not resolved).
std::string absolute_path(const std::string& path) {
    if (path.empty()) usage_error("empty output path");
    std::string full = path;
    if (path[0] != '/') {
        std::vector<char> buf(PATH_MAX);
        if (!::getcwd(buf.data(), buf.size()))
            exit_with(kExitUsage, std::string("cannot read the working directory: ") + std::strerror(errno));
        full = std::string(buf.data()) + "/" + path;
    }
    std::vector<std::string> parts;
    std::size_t start = 0;
    while (start <= full.size()) {
        std::size_t end = full.find('/', start);
        if (end == std::string::npos) end = full.size();
        std::string part = full.substr(start, end - start);
        if (part == "..") {
            if (!parts.empty()) parts.pop_back();
        } else if (!part.empty() && part != ".") {
            parts.push_back(part);
        }
        start = end + 1;
    }
    std::string out;
    for (const auto& p : parts) out += "/" + p;
    if (out.empty()) return "/";
    if (full.back() == '/') out += "/";
    return out;
}

std::string base_name(const std::string& path) {
    std::string p = path;
    while (p.size() > 1 && p.back() == '/') p.pop_back();
    auto slash = p.rfind('/');
    return slash == std::string::npos ? p : p.substr(slash + 1);
}

bool is_sha256(const std::string& s) { return dopt::is_hex(s, 64); }

const char* priority_name(dopt_priority p) {
    switch (p) {
        case DOPT_PRIORITY_FOREGROUND: return "foreground";
        case DOPT_PRIORITY_HIGH: return "high";
        case DOPT_PRIORITY_NORMAL: return "normal";
        case DOPT_PRIORITY_LOW: return "low";
    }
    return "unknown";
}

dopt_priority parse_priority(const std::string& s) {
    for (dopt_priority p : {DOPT_PRIORITY_FOREGROUND, DOPT_PRIORITY_HIGH, DOPT_PRIORITY_NORMAL,
                            DOPT_PRIORITY_LOW})
        if (s == priority_name(p)) return p;
    usage_error("unknown priority '" + s + "' (foreground, high, normal or low)");
}

std::uint32_t parse_seconds(const std::string& s) {
    if (s.empty() || s.size() > 10 || s.find_first_not_of("0123456789") != std::string::npos)
        usage_error("not a number of seconds: '" + s + "'");
    unsigned long long v = std::stoull(s);
    if (v > UINT32_MAX) usage_error("too many seconds: " + s);
    return static_cast<std::uint32_t>(v);
}

// A file's size in bytes (--size): digits, at most 2^63 - 1.
std::uint64_t parse_size(const std::string& s) {
    if (s.empty() || s.size() > 19 || s.find_first_not_of("0123456789") != std::string::npos)
        usage_error("--size needs a number of bytes, not '" + s + "'");
    unsigned long long v = std::stoull(s);
    if (v > static_cast<unsigned long long>(INT64_MAX)) usage_error("--size too large: " + s);
    return v;
}

void check_header(const std::string& h) {
    auto colon = h.find(':');
    if (colon == std::string::npos || colon == 0 || h.find_first_of("\r\n") != std::string::npos)
        usage_error("not a header \"Name: value\": '" + h + "'");
}

// `text` with its control characters (C0, DEL, and C1 as UTF-8) written as
// \xHH, so that a name cannot drive the terminal.
std::string printable(const std::string& text) {
    std::string out;
    for (std::size_t i = 0; i < text.size(); ++i) {
        auto c = static_cast<unsigned char>(text[i]);
        auto next = i + 1 < text.size() ? static_cast<unsigned char>(text[i + 1]) : 0;
        std::size_t n = c < 0x20 || c == 0x7f || c == '\\' ? 1 : c == 0xc2 && next >= 0x80 && next <= 0x9f ? 2 : 0;
        if (n == 0) {
            out += text[i];
            continue;
        }
        for (std::size_t k = 0; k < n; ++k) {
            char hex[5];
            std::snprintf(hex, sizeof hex, "\\x%02x", static_cast<unsigned char>(text[i + k]));
            out += hex;
        }
        i += n - 1;
    }
    return out;
}

std::string format_time(std::int64_t t) {
    if (t == 0) return "-";
    std::time_t tt = static_cast<std::time_t>(t);
    std::tm tm{};
    localtime_r(&tt, &tm);
    char buf[64];
    std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
    return buf;
}

// ---- RAII over libdopt handles --------------------------------------------------

struct ClientCloser {
    void operator()(dopt_client* c) const { dopt_client_close(c); }
};
struct JobCloser {
    void operator()(dopt_job* j) const { dopt_job_close(j); }
};
struct StatusFreer {
    void operator()(dopt_job_status* s) const { dopt_job_status_free(s); }
};
struct ErrorFreer {
    void operator()(dopt_error* e) const { dopt_error_free(e); }
};
using Client = std::unique_ptr<dopt_client, ClientCloser>;
using Job = std::unique_ptr<dopt_job, JobCloser>;
using Status = std::unique_ptr<dopt_job_status, StatusFreer>;
using Error = std::unique_ptr<dopt_error, ErrorFreer>;

// --socket, else $DOPT_SOCKET, else nullptr: libdopt's default search.
const char* socket_path(const Options& o) {
    if (o.socket) return o.socket->c_str();
    if (const char* env = std::getenv("DOPT_SOCKET"); env && *env) return env;
    return nullptr;
}

Client connect(const Options& o) {
    dopt_client* c = nullptr;
    check(dopt_client_open(&c, socket_path(o)), "cannot reach the agent");
    return Client(c);
}

Job open_job(dopt_client* client, const std::string& id) {
    dopt_job* j = nullptr;
    check(dopt_job_open(&j, client, id.c_str()), "cannot open job " + id, id);
    return Job(j);
}

// A client and the job named by a command's one argument; the job closes
// before the client.
struct ClientAndJob {
    Client client;
    Job job;
};

ClientAndJob open_named_job(const Options& o) {
    expect_args(o, 1, "a job id");
    ClientAndJob opened{connect(o), nullptr};
    opened.job = open_job(opened.client.get(), o.args[0]);
    return opened;
}

Status job_status(dopt_job* job) {
    dopt_job_status* s = nullptr;
    check(dopt_job_fetch_status(&s, job), "cannot read the job's status", dopt_job_id(job));
    return Status(s);
}

// ---- JSON (printing only) --------------------------------------------------------

using dopt::JsonWriter;  // compact JSON text, one job at a time (common/json_writer.h)

// metainfo: where a job's file got its piece hashes (nullptr: not a job's file).
void write_file(JsonWriter& w, const dopt_file_info& f, const char* metainfo = nullptr) {
    w.begin_object();
    w.key("local_name").value(f.local_name);
    w.key("remote_name").value(f.remote_name);
    w.key("bytes_total").bytes(f.bytes_total);
    w.key("bytes_transferred").value(f.bytes_transferred);
    if (metainfo && *metainfo) w.key("metainfo").value(metainfo);
    w.end_object();
}

// An error object as docs/protocol.md gives it; a transient one also has
// next_retry.
enum class ErrorKind { Fatal, Transient };
void write_error(JsonWriter& w, const dopt_error* e, ErrorKind kind) {
    if (!e) {
        w.null();
        return;
    }
    w.begin_object();
    w.key("context").value(dopt_context_name(dopt_error_context(e)));
    w.key("code").value(dopt_error_code(e));
    w.key("description").value(dopt_error_description(e));
    w.key("protocol").value(dopt_error_protocol(e));
    w.key("time").value(dopt_error_time(e));
    w.key("file");
    dopt_file_info f{};
    if (dopt_error_file(&f, e) == DOPT_OK) write_file(w, f);
    else w.null();
    if (kind == ErrorKind::Transient) w.key("next_retry").value(dopt_error_next_retry(e));
    w.end_object();
}

// The job object of `status --json` and `list --json` (docs/design.md), compact,
// appended to `out`.
void write_job(std::string& out, const dopt_job_status* s) {
    dopt_progress p{};
    dopt_job_status_progress(&p, s);
    dopt_times t{};
    dopt_job_status_times(&t, s);
    JsonWriter w(out);
    w.begin_object();
    w.key("id").value(dopt_job_status_id(s));
    w.key("display_name").value(dopt_job_status_display_name(s));
    w.key("state").value(dopt_state_name(dopt_job_status_state(s)));
    w.key("priority").value(priority_name(dopt_job_status_priority(s)));
    w.key("mode").value(dopt_job_status_mode(s));
    if (*dopt_job_status_http_only_reason(s) != '\0')
        w.key("http_only_reason").value(dopt_job_status_http_only_reason(s));
    w.key("no_progress_timeout").value(dopt_job_status_no_progress_timeout(s));
    w.key("created").value(t.created);
    w.key("modified").value(t.modified);
    w.key("transfer_completed").value(t.transfer_completed);
    w.key("bytes_total").bytes(p.bytes_total);
    w.key("bytes_transferred").value(p.bytes_transferred);
    w.key("bytes_from_peers").value(p.bytes_from_peers);
    w.key("bytes_from_origin").value(p.bytes_from_origin);
    w.key("files").begin_array();
    for (std::size_t i = 0; i < dopt_job_status_file_count(s); ++i) {
        dopt_file_info f{};
        if (dopt_job_status_file(&f, s, i) == DOPT_OK) write_file(w, f, dopt_job_status_file_metainfo(s, i));
    }
    w.end_array();
    w.key("error");
    write_error(w, dopt_job_status_error(s), ErrorKind::Fatal);
    w.key("transient_error");
    write_error(w, dopt_job_status_transient_error(s), ErrorKind::Transient);
    w.end_object();
}

void print_json(const json& j) { std::printf("%s\n", j.dump(2).c_str()); }

// ---- job errors -----------------------------------------------------------------

// Prints a failed job's error (description, context, code, file) on stderr.
void print_job_error(const dopt_error* e, const std::string& id) {
    if (!e) {
        say("job " + id + " failed (the agent recorded no error)");
        return;
    }
    say("job " + id + " failed: " + dopt_error_description(e));
    std::string proto = dopt_error_protocol(e);
    say("  context " + std::string(dopt_context_name(dopt_error_context(e))) + ", code " +
        std::to_string(dopt_error_code(e)) + (proto.empty() ? "" : ", protocol " + proto));
    dopt_file_info f{};
    if (dopt_error_file(&f, e) == DOPT_OK)
        say("  file " + std::string(f.local_name) + " from " + f.remote_name + " (" +
            human_bytes(f.bytes_transferred) + " of " + human_bytes(f.bytes_total) + ")");
}

// Exit for a job that ended in ERROR or CANCELLED: prints why, returns 1.
int report_failed_job(dopt_job* job, dopt_job_state st) {
    std::string id = dopt_job_id(job);
    if (st == DOPT_STATE_CANCELLED) {
        say("job " + id + " was cancelled");
        return kExitJobFailed;
    }
    dopt_error* e = nullptr;
    int rc = dopt_job_fetch_error(&e, job);
    Error err(e);
    if (rc != DOPT_OK) say("job " + id + " failed; its error could not be read: " + dopt_last_error());
    else print_job_error(err.get(), id);
    say("the job stays in state error; 'dopt resume ID' retries it, 'dopt cancel ID' drops it");
    return kExitJobFailed;
}

// ---- get / add ------------------------------------------------------------------

// What `get` and `add` share: the files to add and the job's properties.
struct JobSpec {
    std::vector<std::pair<std::string, std::string>> files;  // url, absolute path
    std::vector<std::string> sha256s;                       // k-th applies to file k
    std::vector<std::uint64_t> sizes;                       // k-th applies to file k
    dopt_priority priority = DOPT_PRIORITY_NORMAL;
    std::optional<std::uint32_t> no_progress_timeout;
    std::vector<std::string> headers;
    std::string name;
    bool auto_complete = false;
    std::string metainfo_url;       // --metainfo URL
    std::string metainfo_bytes;     // --metainfo FILE, read by the CLI
};

// -O: the working directory's file named after the URL's last path segment.
std::string path_from_url(const std::string& url) {
    std::string why;
    std::string name = remote_name(url, &why);
    if (name.empty()) usage_error("-O cannot name a file after " + printable(url) + ": " + why + "; use -o PATH");
    return absolute_path(name);
}

JobSpec make_spec(const Options& o, dopt_priority default_priority) {
    if (o.args.empty()) usage_error("'" + o.command + "' needs a URL");
    if (o.remote_name && !o.outputs.empty()) usage_error("-O and -o do not go together");
    if (!o.remote_name && o.outputs.size() != o.args.size())
        usage_error("each URL needs its own -o PATH, or -O (" + std::to_string(o.args.size()) + " URLs, " +
                    std::to_string(o.outputs.size()) + " -o)");
    if (o.sha256s.size() > o.args.size()) usage_error("more --sha256 than files");
    JobSpec spec;
    for (std::size_t i = 0; i < o.args.size(); ++i)
        spec.files.emplace_back(o.args[i], o.remote_name ? path_from_url(o.args[i]) : absolute_path(o.outputs[i]));
    for (const auto& h : o.sha256s)
        if (!is_sha256(h)) usage_error("--sha256 needs 64 hex digits, not '" + h + "'");
    spec.sha256s = o.sha256s;
    if (o.sizes.size() > o.args.size()) usage_error("more --size than files");
    for (const auto& z : o.sizes) spec.sizes.push_back(parse_size(z));
    for (const auto& h : o.headers) check_header(h);
    spec.headers = o.headers;
    spec.priority = o.priority ? parse_priority(*o.priority) : default_priority;
    if (o.no_progress_timeout) spec.no_progress_timeout = parse_seconds(*o.no_progress_timeout);
    spec.name = o.name ? *o.name : base_name(spec.files.front().second);
    spec.auto_complete = o.auto_complete;
    if (o.metainfo) {
        if (o.args.size() != 1) usage_error("--metainfo applies to a job of one file");
        const std::string& m = *o.metainfo;
        if (m.rfind("http://", 0) == 0 || m.rfind("https://", 0) == 0) {
            spec.metainfo_url = m;
        } else {
            // A local file: read here, with the caller's rights, and checked
            // before any job is made.
            try {
                spec.metainfo_bytes = dopt::p2p::read_metainfo_file(absolute_path(m));
            } catch (const dopt::p2p::MetainfoError& e) {
                exit_with(kExitUsage, std::string("--metainfo: ") + e.what());
            }
        }
    }
    return spec;
}

// Adds files and properties to a new job. On a failure the job is cancelled
// (best effort) and the program exits.
void configure(dopt_job* job, const JobSpec& spec) {
    auto guard = [job](int rc, const std::string& what) {
        if (rc == DOPT_OK) return;
        std::string detail = dopt_last_error();
        dopt_job_cancel(job);  // best effort: leave no half-made job behind
        fail_with(rc, what, detail);
    };
    guard(dopt_job_set_auto_complete(job, spec.auto_complete), "cannot set auto-complete");
    for (const auto& [url, path] : spec.files)
        guard(dopt_job_add_file(job, url.c_str(), path.c_str()), "cannot add " + url + " -> " + path);
    for (std::size_t i = 0; i < spec.sha256s.size(); ++i)
        guard(dopt_job_set_file_sha256(job, i, spec.sha256s[i].c_str()), "cannot set the SHA-256");
    for (std::size_t i = 0; i < spec.sizes.size(); ++i)
        guard(dopt_job_set_file_size(job, i, spec.sizes[i]), "cannot set the size");
    guard(dopt_job_set_priority(job, spec.priority), "cannot set the priority");
    if (spec.no_progress_timeout)
        guard(dopt_job_set_no_progress_timeout(job, *spec.no_progress_timeout),
              "cannot set the no-progress timeout");
    for (const auto& h : spec.headers)
        guard(dopt_job_add_http_header(job, h.c_str()), "cannot add header '" + h + "'");
    if (!spec.metainfo_url.empty())
        guard(dopt_job_set_file_metainfo_url(job, 0, spec.metainfo_url.c_str()), "cannot set the metainfo");
    if (!spec.metainfo_bytes.empty())
        guard(dopt_job_set_file_metainfo(job, 0, spec.metainfo_bytes.data(), spec.metainfo_bytes.size()),
              "cannot set the metainfo");
}

Job create_job(dopt_client* client, const JobSpec& spec) {
    dopt_job* j = nullptr;
    check(dopt_job_create(&j, client, spec.name.c_str()), "cannot create a job");
    Job job(j);
    configure(job.get(), spec);
    return job;
}

int cmd_add(const Options& o) {
    allow_only(o, {"-o", "-O", "--sha256", "--size", "--priority", "--no-progress-timeout", "--header", "--name",
                   "--metainfo", "--auto-complete"});
    JobSpec spec = make_spec(o, DOPT_PRIORITY_NORMAL);
    Client client = connect(o);
    Job job = create_job(client.get(), spec);
    check(dopt_job_resume(job.get()), "cannot start the job", dopt_job_id(job.get()));
    std::printf("%s\n", dopt_job_id(job.get()));
    return kExitOk;
}

// ---- get: progress and Ctrl-C -----------------------------------------------

// Written once before SIGINT is unblocked; read by the handler.
char g_detach_message[160] = "dopt: interrupted\n";

void on_sigint(int) {
    if (g_bar_open) (void)!::write(STDERR_FILENO, "\n", 1);
    (void)!::write(STDERR_FILENO, g_detach_message, std::strlen(g_detach_message));
    ::_exit(130);
}

// Ctrl-C during `get` detaches: the job goes on in the agent, we exit 130.
// SIGINT stays blocked while the job is set up, so an early Ctrl-C detaches
// only once the job runs.
void block_sigint(bool block) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigprocmask(block ? SIG_BLOCK : SIG_UNBLOCK, &set, nullptr);
}

void arm_detach(const std::string& id) {
    std::snprintf(g_detach_message, sizeof g_detach_message, "dopt: detached; job %s continues\n",
                  id.c_str());
    struct sigaction sa{};
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, nullptr);
    block_sigint(false);
}

using Clock = std::chrono::steady_clock;

// Waits until the job is ACKNOWLEDGED (returns it) or ERROR/CANCELLED.
// TRANSFERRED means "a moment more": the agent auto-completes the job; if it
// has not after a while, we complete it ourselves.
// The agent went away while we waited (a restart, an upgrade): the job lives
// on in its job table, so wait for the agent to come back, up to a minute in
// all. libdopt reconnects on the next call. Returns false when time is up.
bool ride_out_restart() {
    static int seconds_waited = 0;
    if (seconds_waited == 0) say("lost the agent; waiting for it to come back (the job goes on)");
    if (++seconds_waited > 60) return false;
    std::this_thread::sleep_for(std::chrono::seconds(1));
    return true;
}

dopt_job_state wait_for_end(dopt_job* job, ProgressMeter& meter) {
    std::optional<Clock::time_point> transferred_since;
    for (;;) {
        dopt_job_state st = DOPT_STATE_QUEUED;
        int rc = dopt_job_wait(&st, job, meter.poll_ms());
        if (rc == DOPT_E_TIMEOUT) {
            meter.show(job);
            continue;
        }
        if (rc == DOPT_E_DISCONNECTED) meter.end();
        if (rc == DOPT_E_DISCONNECTED && ride_out_restart()) continue;
        check(rc, "waiting for the job failed", dopt_job_id(job));
        if (st != DOPT_STATE_TRANSFERRED) {
            meter.show(job, /*final=*/true);
            meter.end();
            return st;
        }
        if (!transferred_since) transferred_since = Clock::now();
        if (Clock::now() - *transferred_since > std::chrono::seconds(10)) {
            int crc = dopt_job_complete(job);
            if (crc != DOPT_OK && crc != DOPT_E_INVALID_STATE) check(crc, "cannot complete the job");
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
}

// How long a `get` waits without progress before it gives up, unless
// --no-progress-timeout says otherwise: a person at a terminal waits minutes,
// not the agent's days (docs/design.md "Interfaces other tools rely on").
constexpr std::uint32_t kGetNoProgressTimeout = 300;

int cmd_get(const Options& o) {
    allow_only(o, {"-o", "-O", "-q", "--sha256", "--size", "--priority", "--no-progress-timeout", "--header", "--name",
                   "--metainfo", "--auto-complete"});
    if (o.args.size() > 1)
        usage_error("'get' takes one URL, not also '" + o.args[1] + "'; use 'dopt add' for several");
    JobSpec spec = make_spec(o, DOPT_PRIORITY_FOREGROUND);
    spec.auto_complete = true;
    if (!spec.no_progress_timeout) spec.no_progress_timeout = kGetNoProgressTimeout;
    Client client = connect(o);
    block_sigint(true);
    Job job = create_job(client.get(), spec);
    std::string id = dopt_job_id(job.get());
    check(dopt_job_resume(job.get()), "cannot start the job", id);
    arm_detach(id);
    ProgressMeter meter(o.quiet                         ? ProgressMeter::Style::Quiet
                        : ::isatty(STDERR_FILENO) == 1 ? ProgressMeter::Style::Bar
                                                        : ProgressMeter::Style::Lines);
    auto start = Clock::now();
    dopt_job_state st = wait_for_end(job.get(), meter);
    if (st != DOPT_STATE_ACKNOWLEDGED) return report_failed_job(job.get(), st);
    const std::string& path = spec.files.front().second;
    struct stat sb;
    if (::stat(path.c_str(), &sb) != 0)
        exit_with(kExitJobFailed, "job " + id + " completed but " + path + " is missing");
    if (o.quiet) return kExitOk;
    double secs = std::chrono::duration<double>(Clock::now() - start).count();
    char line[64];
    std::snprintf(line, sizeof line, " in %.1f s", secs);
    say("saved " + path + " (" + human_bytes(static_cast<std::uint64_t>(sb.st_size)) + line + ")");
    return kExitOk;
}

// ---- list / status / stats ------------------------------------------------------

std::vector<Status> list_jobs(dopt_client* client) {
    dopt_job_status** list = nullptr;
    std::size_t n = 0;
    check(dopt_client_list_jobs(&list, &n, client), "cannot list jobs");
    std::vector<Status> out;
    for (std::size_t i = 0; i < n; ++i) out.emplace_back(list[i]);
    // The statuses are now owned by `out`; free only the array.
    for (std::size_t i = 0; i < n; ++i) list[i] = nullptr;
    dopt_job_status_list_free(list, n);
    return out;
}

std::string job_name(const dopt_job_status* s) {
    std::string name = dopt_job_status_display_name(s);
    dopt_file_info f{};
    if (name.empty() && dopt_job_status_file(&f, s, 0) == DOPT_OK) name = base_name(f.local_name);
    return name;
}

// For a command that takes only --json and no argument (list, stats): the
// client, with the status snapshots of every job the caller may see in `jobs`.
Client connect_and_list(const Options& o, std::vector<Status>& jobs) {
    allow_only(o, {"--json"});
    expect_args(o, 0, "no argument");
    Client client = connect(o);
    jobs = list_jobs(client.get());
    return client;
}

int cmd_list(const Options& o) {
    std::vector<Status> jobs;
    Client client = connect_and_list(o, jobs);
    if (o.json) {
        // One job object a line, written as it is made: no tree, and no
        // more than about 64 KiB of text held at a time.
        std::string buf = "[";
        buf.reserve(1 << 17);
        for (std::size_t i = 0; i < jobs.size(); ++i) {
            buf += i ? ",\n" : "\n";
            write_job(buf, jobs[i].get());
            if (buf.size() >= (1 << 16)) {
                std::fwrite(buf.data(), 1, buf.size(), stdout);
                buf.clear();
            }
        }
        buf += "]\n";
        std::fwrite(buf.data(), 1, buf.size(), stdout);
        return kExitOk;
    }
    std::printf("%-36s  %-15s  %4s  %s\n", "ID", "STATE", "DONE", "NAME");
    for (const auto& s : jobs) {
        dopt_progress p{};
        dopt_job_status_progress(&p, s.get());
        int pct = percent(p);
        std::printf("%-36s  %-15s  %4s  %s\n", dopt_job_status_id(s.get()),
                    dopt_state_name(dopt_job_status_state(s.get())),
                    pct < 0 ? "?" : (std::to_string(pct) + "%").c_str(), printable(job_name(s.get())).c_str());
    }
    return kExitOk;
}

void print_status(const dopt_job_status* s) {
    dopt_progress p{};
    dopt_job_status_progress(&p, s);
    dopt_times t{};
    dopt_job_status_times(&t, s);
    int pct = percent(p);
    std::printf("id:           %s\n", dopt_job_status_id(s));
    std::printf("name:         %s\n", printable(dopt_job_status_display_name(s)).c_str());
    std::printf("state:        %s\n", dopt_state_name(dopt_job_status_state(s)));
    std::printf("priority:     %s\n", priority_name(dopt_job_status_priority(s)));
    std::printf("mode:         %s\n", dopt_job_status_mode(s));
    std::printf("gives up:     after %s without progress\n",
                human_duration(dopt_job_status_no_progress_timeout(s)).c_str());
    std::printf("progress:     %s of %s (%s), %u of %u files\n", human_bytes(p.bytes_transferred).c_str(),
                human_bytes(p.bytes_total).c_str(), pct < 0 ? "?" : (std::to_string(pct) + "%").c_str(),
                p.files_transferred, p.files_total);
    std::printf("from origin:  %llu bytes\n", static_cast<unsigned long long>(p.bytes_from_origin));
    std::printf("from peers:   %llu bytes\n", static_cast<unsigned long long>(p.bytes_from_peers));
    std::printf("created:      %s\n", format_time(t.created).c_str());
    std::printf("modified:     %s\n", format_time(t.modified).c_str());
    std::printf("transferred:  %s\n", format_time(t.transfer_completed).c_str());
    for (std::size_t i = 0; i < dopt_job_status_file_count(s); ++i) {
        dopt_file_info f{};
        if (dopt_job_status_file(&f, s, i) != DOPT_OK) continue;
        std::printf("file %zu:       %s <- %s (%s of %s)\n", i + 1, f.local_name, f.remote_name,
                    human_bytes(f.bytes_transferred).c_str(), human_bytes(f.bytes_total).c_str());
    }
    std::string transient = transient_summary(s);
    if (!transient.empty()) std::printf("waiting:      %s\n", transient.c_str());
    if (const dopt_error* e = dopt_job_status_error(s)) {
        std::printf("error:        %s\n", dopt_error_description(e));
        std::printf("error detail: context %s, code %lld, protocol %s\n",
                    dopt_context_name(dopt_error_context(e)),
                    static_cast<long long>(dopt_error_code(e)), dopt_error_protocol(e));
        dopt_file_info f{};
        if (dopt_error_file(&f, e) == DOPT_OK)
            std::printf("error file:   %s <- %s\n", f.local_name, f.remote_name);
    }
}

int cmd_status(const Options& o) {
    allow_only(o, {"--json"});
    auto [client, job] = open_named_job(o);
    Status s = job_status(job.get());
    if (o.json) {
        std::string text;
        write_job(text, s.get());
        print_json(json::parse(text));  // indented for a person; json is ordered
    } else {
        print_status(s.get());
    }
    return kExitOk;
}

// The agent's metrics as Prometheus text (docs/metrics.md), as it sends them.
int print_prometheus(const Options& o) {
    allow_only(o, {"--prometheus"});
    expect_args(o, 0, "no argument");
    Client client = connect(o);
    char* text = nullptr;
    check(dopt_metrics_text(&text, client.get()), "cannot read the agent's metrics");
    std::fputs(text, stdout);
    dopt_string_free(text);
    return kExitOk;
}

int cmd_stats(const Options& o) {
    if (o.seen.count("--prometheus")) return print_prometheus(o);
    std::vector<Status> jobs;
    Client client = connect_and_list(o, jobs);
    std::map<std::string, std::uint64_t> by_state;
    for (int st = DOPT_STATE_QUEUED; st <= DOPT_STATE_CANCELLED; ++st)
        by_state[dopt_state_name(static_cast<dopt_job_state>(st))] = 0;
    std::uint64_t origin = 0, peers = 0;
    for (const auto& s : jobs) {
        dopt_progress p{};
        dopt_job_status_progress(&p, s.get());
        origin += p.bytes_from_origin;
        peers += p.bytes_from_peers;
        ++by_state[dopt_state_name(dopt_job_status_state(s.get()))];
    }
    double eff = origin + peers ? 100.0 * static_cast<double>(peers) / static_cast<double>(origin + peers) : 0;
    // What the agent gave to LAN peers (all users' content: the agent's own figure).
    json agent = json::object();
    char* text = nullptr;
    if (dopt_peer_stats_json(&text, client.get()) == DOPT_OK) {
        agent = json::parse(text);
        dopt_string_free(text);
    }
    if (o.json) {
        print_json({{"jobs", jobs.size()},
                    {"states", by_state},
                    {"bytes_from_origin", origin},
                    {"bytes_from_peers", peers},
                    {"peer_efficiency_percent", eff},
                    {"peering", agent.value("peering", false)},
                    {"bytes_to_peers", agent.value("bytes_to_peers", std::uint64_t{0})},
                    {"connected_peers", agent.value("connected_peers", 0)},
                    {"peers_by_source", agent.value("peers_by_source", json::object())}});
        return kExitOk;
    }
    std::printf("jobs:              %zu\n", jobs.size());
    for (const auto& [name, n] : by_state)
        if (n) std::printf("  %-16s %llu\n", (name + ":").c_str(), static_cast<unsigned long long>(n));
    std::printf("bytes from origin: %llu (%s)\n", static_cast<unsigned long long>(origin), human_bytes(origin).c_str());
    std::printf("bytes from peers:  %llu (%s)\n", static_cast<unsigned long long>(peers), human_bytes(peers).c_str());
    std::printf("peer efficiency:   %.1f%%\n", eff);
    if (agent.value("peering", false)) {
        std::uint64_t up = agent.value("bytes_to_peers", std::uint64_t{0});
        std::printf("bytes to peers:    %llu (%s)\n", static_cast<unsigned long long>(up), human_bytes(up).c_str());
        std::printf("connected peers:   %d\n", agent.value("connected_peers", 0));
        for (const auto& [source, n] : agent.value("peers_by_source", json::object()).items())
            std::printf("  %-16s %llu\n", (source + ":").c_str(), static_cast<unsigned long long>(n.get<std::uint64_t>()));
    } else {
        std::printf("peering:           off\n");
    }
    return kExitOk;
}

// ---- wait / state changes ---------------------------------------------------------

int cmd_wait(const Options& o) {
    allow_only(o, {});
    auto [client, job] = open_named_job(o);
    dopt_job_state st = DOPT_STATE_QUEUED;
    int rc;
    while ((rc = dopt_job_wait(&st, job.get(), -1)) == DOPT_E_TIMEOUT ||
           (rc == DOPT_E_DISCONNECTED && ride_out_restart())) {
    }
    check(rc, "waiting for job " + o.args[0] + " failed", o.args[0]);
    if (st == DOPT_STATE_TRANSFERRED || st == DOPT_STATE_ACKNOWLEDGED) return kExitOk;
    return report_failed_job(job.get(), st);
}

int cmd_change(const Options& o) {
    allow_only(o, {});
    auto [client, job] = open_named_job(o);
    int rc = DOPT_OK;
    if (o.command == "suspend") rc = dopt_job_suspend(job.get());
    else if (o.command == "resume") rc = dopt_job_resume(job.get());
    else if (o.command == "cancel") rc = dopt_job_cancel(job.get());
    else rc = dopt_job_complete(job.get());
    check(rc, "cannot " + o.command + " job " + o.args[0], o.args[0]);
    return kExitOk;
}

// dopt set ID [--priority P] [--name N] [--no-progress-timeout S]: changes a
// job after it was made; the agent applies each change to a running job.
int cmd_set(const Options& o) {
    allow_only(o, {"--priority", "--name", "--no-progress-timeout"});
    if (!o.priority && !o.name && !o.no_progress_timeout)
        usage_error("'set' needs --priority, --name or --no-progress-timeout");
    std::optional<dopt_priority> priority;
    if (o.priority) priority = parse_priority(*o.priority);
    std::optional<std::uint32_t> timeout;
    if (o.no_progress_timeout) timeout = parse_seconds(*o.no_progress_timeout);
    auto [client, job] = open_named_job(o);
    const std::string& id = o.args[0];
    if (o.name) check(dopt_job_set_display_name(job.get(), o.name->c_str()), "cannot set the name of job " + id, id);
    if (priority) check(dopt_job_set_priority(job.get(), *priority), "cannot set the priority of job " + id, id);
    if (timeout)
        check(dopt_job_set_no_progress_timeout(job.get(), *timeout),
              "cannot set the no-progress timeout of job " + id, id);
    return kExitOk;
}

// ---- publish ------------------------------------------------------------------------

// Writes `bytes` to `path` through a temporary file beside it and a rename,
// so a web server never serves half a .torrent. Mode 0666 less the umask.
void write_file_atomically(const std::string& path, const std::string& bytes) {
    std::string tmp = path + ".tmp-" + std::to_string(::getpid());
    ::unlink(tmp.c_str());  // left by a crashed run with our pid, if any
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0) exit_with(kExitUsage, "cannot write " + path + ": " + std::strerror(errno));
    std::size_t done = 0;
    while (done < bytes.size()) {
        ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            int err = n < 0 ? errno : EIO;
            ::close(fd);
            ::unlink(tmp.c_str());
            exit_with(kExitJobFailed, "cannot write " + path + ": " + std::strerror(err));
        }
        done += static_cast<std::size_t>(n);
    }
    if (::close(fd) != 0 || ::rename(tmp.c_str(), path.c_str()) != 0) {
        int err = errno;
        ::unlink(tmp.c_str());
        exit_with(kExitJobFailed, "cannot write " + path + ": " + std::strerror(err));
    }
}

// dopt publish FILE [--web-seed URL] [--v1] [-o OUT]: the metainfo an origin
// hosts beside FILE (docs/design.md "Trust"), hybrid unless --v1. Needs no
// agent.
int cmd_publish(const Options& o) {
    allow_only(o, {"-o", "--web-seed", "--v1"});
    expect_args(o, 1, "a file");
    if (o.outputs.size() > 1) usage_error("'publish' takes one -o");
    const std::string& file = o.args[0];
    if (file.empty()) usage_error("empty file name");
    // Relative paths are used as given: the kernel takes them relative to the
    // working directory.
    std::string out = o.outputs.empty() ? file + ".torrent" : o.outputs[0];
    if (out.empty()) usage_error("empty output path");
    std::string web_seed = o.web_seed.value_or("");
    if (o.web_seed && web_seed.empty()) usage_error("empty --web-seed");

    struct stat in_sb, out_sb;
    if (::stat(out.c_str(), &out_sb) == 0) {
        if (S_ISDIR(out_sb.st_mode)) exit_with(kExitUsage, "-o " + out + " is a folder; give a file name");
        if (::stat(file.c_str(), &in_sb) == 0 && in_sb.st_dev == out_sb.st_dev &&
            in_sb.st_ino == out_sb.st_ino)
            exit_with(kExitUsage, "-o " + out + " is the file being published");
    }

    std::string bytes;
    dopt::p2p::MetainfoSummary m;
    try {
        bytes = dopt::p2p::make_metainfo(file, web_seed,
                                         o.v1 ? dopt::p2p::MetainfoFormat::V1 : dopt::p2p::MetainfoFormat::Hybrid);
        m = dopt::p2p::summarize_metainfo(bytes);
    } catch (const dopt::p2p::MetainfoError& e) {
        exit_with(kExitUsage, e.what());
    }
    write_file_atomically(out, bytes);

    std::printf("metainfo:     %s (%zu bytes)\n", out.c_str(), bytes.size());
    std::printf("name:         %s\n", m.name.c_str());
    std::printf("size:         %llu bytes\n", static_cast<unsigned long long>(m.size));
    std::printf("info-hash:    %s\n", m.info_hash.c_str());
    if (!m.info_hash_v2.empty() && m.info_hash_v2 != m.info_hash)  // hybrid: info_hash is v1
        std::printf("info-hash v2: %s\n", m.info_hash_v2.c_str());
    std::printf("pieces:       %d of %d bytes (%s)\n", m.num_pieces, m.piece_length,
                human_bytes(static_cast<std::uint64_t>(m.piece_length)).c_str());
    std::printf("web seed:     %s\n", web_seed.empty() ? "(none)" : web_seed.c_str());
    return kExitOk;
}

// ---- cache ------------------------------------------------------------------------

// dopt cache list [--json] | dopt cache clear: the caller's peer cache entries.
int cmd_cache(const Options& o) {
    allow_only(o, {"--json"});
    if (o.args.size() != 1 || (o.args[0] != "list" && o.args[0] != "clear"))
        usage_error("'cache' needs 'list' or 'clear'");
    Client client = connect(o);
    if (o.args[0] == "clear") {
        std::uint64_t bytes = 0;
        check(dopt_cache_clear(&bytes, client.get()), "cannot clear the peer cache");
        std::printf("removed %s from the peer cache\n", human_bytes(bytes).c_str());
        return kExitOk;
    }
    char* text = nullptr;
    check(dopt_cache_list_json(&text, client.get()), "cannot list the peer cache");
    json entries = json::parse(text);
    dopt_string_free(text);
    if (o.json) {
        print_json(entries);
        return kExitOk;
    }
    if (entries.empty()) {
        std::printf("the peer cache holds nothing of yours\n");
        return kExitOk;
    }
    std::printf("%-40s  %10s  %-8s  %s\n", "INFO-HASH", "SIZE", "STATE", "NAME");
    for (const auto& e : entries) {
        std::string state = !e.value("complete", false) ? "partial" : e.value("seeding", false) ? "seeding" : "complete";
        if (e.value("in_use", false)) state = "in use";
        std::printf("%-40.40s  %10s  %-8s  %s\n", e.value("info_hash", "").c_str(),
                    human_bytes(e.value("size", std::uint64_t{0})).c_str(), state.c_str(),
                    e.value("name", "").c_str());
    }
    return kExitOk;
}

// ---- version / help ---------------------------------------------------------------

const char kHelp[] =
    "usage: dopt [--socket PATH] COMMAND [ARGS] [OPTIONS]\n"
    "\n"
    "commands:\n"
    "  get URL -o PATH|-O     download one file in the foreground, with progress;\n"
    "                         exit 0 once it is in place (Ctrl-C detaches)\n"
    "  add URL -o PATH [URL -o PATH ...]\n"
    "                         create and start a job, print its id\n"
    "  list [--json]          the caller's jobs\n"
    "  status ID [--json]     one job\n"
    "  wait ID                until transferred/acknowledged (exit 0) or\n"
    "                         error/cancelled (exit 1)\n"
    "  suspend|resume|cancel|complete ID\n"
    "  set ID [--priority P] [--name NAME] [--no-progress-timeout SECONDS]\n"
    "                         change a job after it was made\n"
    "  stats [--json]         totals over the caller's jobs: bytes from peers and\n"
    "                         from the origin, peer efficiency, bytes given to peers\n"
    "  stats --prometheus     the agent's metrics in Prometheus text format\n"
    "  cache list [--json]    the caller's content in the agent's peer cache\n"
    "  cache clear            remove it (content a running job needs stays)\n"
    "  publish FILE [--web-seed URL] [--v1] [-o OUT]\n"
    "                         write hybrid (v1+v2) metainfo for FILE, for an origin\n"
    "                         to serve beside it (OUT: FILE.torrent by default);\n"
    "                         prints its info-hash and pieces; needs no agent\n"
    "  version (or --version), help [COMMAND] (or COMMAND --help)\n"
    "\n"
    "options of get and add:\n"
    "  -o, --output PATH              destination (relative to the working directory)\n"
    "  -O, --remote-name              in the working directory, named as the URL's last\n"
    "                                 path segment\n"
    "  -q, --quiet                    (get) no progress; errors still go to stderr\n"
    "  --sha256 HEX                   expected SHA-256; the k-th applies to the k-th file\n"
    "  --size BYTES                   expected size; the k-th applies to the k-th file\n"
    "                                 (another size at the origin fails the job)\n"
    "  --priority P                   foreground, high, normal, low\n"
    "                                 (get: foreground, add: normal)\n"
    "  --no-progress-timeout SECONDS  fail after this long without progress (get:\n"
    "                                 300; add: the agent's; 0: the agent's)\n"
    "  -H, --header \"Name: value\"     HTTP header sent to the origin (repeatable)\n"
    "  --name NAME                    the job's display name\n"
    "  --metainfo URL|FILE            the content's metainfo (.torrent); default: the\n"
    "                                 origin's beside the content, if any\n"
    "  --auto-complete                (add) deliver files as soon as transferred\n"
    "\n"
    "--socket PATH, else $DOPT_SOCKET, else the per-user then the system agent.\n"
    "exit codes: 0 success, 1 the job failed, 2 bad usage or input (or no such\n"
    "job), 3 the agent could not be reached.\n";

// The client's versions, and the agent's when one answers: curl --version
// for a client of an agent. Exit 0 either way.
int cmd_version(const Options& o) {
    allow_only(o, {"--version"});
    expect_args(o, 0, "no argument");
    std::printf("dopt %s (libdopt %s)\n", DOPT_VERSION_STRING, dopt_version());
    dopt_client* c = nullptr;
    if (dopt_client_open(&c, socket_path(o)) == DOPT_OK) {
        Client client(c);
        const char* agent = dopt_client_agent_version(client.get());
        std::printf("agent: %s\n", *agent ? printable(agent).c_str() : "(did not say its version)");
    } else {
        std::printf("agent: none answered (%s)\n", dopt_last_error());
    }
    return kExitOk;
}

// dopt help [COMMAND], dopt [COMMAND] --help: to stdout, exit 0. Without a
// command (and not asked): the overview to stderr, exit 2.
int cmd_help(const Options& o) {
    bool asked = o.command == "help" || o.seen.count("--help");
    if (o.command == "help" && o.args.size() > 1) usage_error("'help' takes one command");
    std::string topic = o.command;  // dopt COMMAND --help
    if (o.command == "help") topic = !o.args.empty() ? o.args[0] : o.seen.count("--help") ? "help" : "";
    if (topic.empty()) {
        std::fputs(kHelp, asked ? stdout : stderr);
        return asked ? kExitOk : kExitUsage;
    }
    const char* text = command_help(topic);
    if (!text) usage_error("unknown command '" + topic + "'");
    std::fputs(text, stdout);
    return kExitOk;
}

int run(int argc, char** argv) {
    Options o = parse_args(argc, argv);
    if (o.command.empty() && o.seen.count("--version")) o.command = "version";
    if (o.command.empty() || o.command == "help" || o.seen.count("--help")) return cmd_help(o);
    const std::string& c = o.command;
    if (c == "get") return cmd_get(o);
    if (c == "add") return cmd_add(o);
    if (c == "list") return cmd_list(o);
    if (c == "status") return cmd_status(o);
    if (c == "wait") return cmd_wait(o);
    if (c == "stats") return cmd_stats(o);
    if (c == "suspend" || c == "resume" || c == "cancel" || c == "complete") return cmd_change(o);
    if (c == "set") return cmd_set(o);
    if (c == "version") return cmd_version(o);
    if (c == "publish") return cmd_publish(o);
    if (c == "cache") return cmd_cache(o);
    usage_error("unknown command '" + c + "'");
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return run(argc, argv);
    } catch (const Exit& e) {
        return e.code;
    } catch (const std::exception& e) {
        say(std::string("internal error: ") + e.what());
        return kExitJobFailed;
    }
}
