#include "apt/dopt_method.h"

#include "apt/file_hashes.h"

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <functional>
#include <grp.h>
#include <memory>
#include <poll.h>
#include <pwd.h>
#include <unistd.h>

namespace dopt::apt {

namespace {

// How often jobs are looked at without a callback's word: the callbacks
// wake the loop at once; this tick notices an agent that went away.
constexpr int kCheckEveryMs = 1000;

volatile sig_atomic_t g_stop = 0;
int g_signal_wake_fd = -1;

void on_stop_signal(int) {
    g_stop = 1;
    char b = 's';
    [[maybe_unused]] ssize_t n = write(g_signal_wake_fd, &b, 1);
}

// The job callbacks only wake the loop, which then reads the job's status.
void wake(void* userdata) {
    char b = 'j';
    [[maybe_unused]] ssize_t n = write(*static_cast<int*>(userdata), &b, 1);
}
int wake_on_transferred(dopt_job*, void* userdata) {
    wake(userdata);
    return DOPT_OK;
}
int wake_on_error(dopt_job*, const dopt_error*, void* userdata) {
    wake(userdata);
    return DOPT_OK;
}
void wake_on_change(dopt_job*, const dopt_job_status*, void* userdata) { wake(userdata); }

// Like apt's own methods: a method apt started as root goes on as
// APT::Sandbox::User (apt's parent has checked that this user can write its
// partial folders). Returns "" on success or when there is nothing to drop.
std::string drop_privileges(const std::string& user) {
    if (geteuid() != 0 || user.empty() || user == "root") return "";
    struct passwd* pw = getpwnam(user.c_str());
    if (pw == nullptr) return "";  // apt warns about a missing sandbox user itself
    if (setgroups(1, &pw->pw_gid) != 0 || setresgid(pw->pw_gid, pw->pw_gid, pw->pw_gid) != 0 ||
        setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) != 0)
        return "could not run as " + user + ": " + std::strerror(errno);
    if (setuid(0) == 0) return "could still become root after running as " + user;
    return "";
}

std::string basename_of(const std::string& path) {
    std::size_t slash = path.rfind('/');
    return slash == std::string::npos ? path : path.substr(slash + 1);
}

// "<dopt_strerror(rc)>: <dopt_last_error()>" of the failed libdopt call
// that returned `rc`, for apt's messages.
std::string dopt_failure(int rc) {
    std::string detail = dopt_last_error();
    return std::string(dopt_strerror(rc)) + (detail.empty() ? "" : ": " + detail);
}

constexpr const char* kJobNamePrefix = "apt ";

}  // namespace

DoptMethod::DoptMethod(std::string method, int in_fd, int out_fd)
    : method_(std::move(method)), in_fd_(in_fd), out_fd_(out_fd) {
    if (pipe2(wake_, O_CLOEXEC | O_NONBLOCK) != 0) wake_[0] = wake_[1] = -1;
    g_signal_wake_fd = wake_[1];
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    signal(SIGPIPE, SIG_IGN);
}

DoptMethod::~DoptMethod() {
    for (auto& [id, fetch] : fetches_) end_job(fetch, true);
    dopt_client_close(client_);
    for (int fd : wake_)
        if (fd >= 0) close(fd);
}

void DoptMethod::send(const std::string& header,
                      const std::vector<std::pair<std::string, std::string>>& fields) {
    std::string text = format_message(header, fields);
    for (std::size_t done = 0; done < text.size();) {
        ssize_t n = write(out_fd_, text.data() + done, text.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;  // apt is gone; the loop ends at its end of stdin
        done += static_cast<std::size_t>(n);
    }
}

int DoptMethod::run() {
    send("100 Capabilities", {{"Version", "1.0"},
                              {"Pipeline", "true"},
                              {"Send-Config", "true"},
                              {"Send-URI-Encoded", "true"}});
    MessageReader reader;
    std::vector<char> buf(64 * 1024);
    while (!g_stop) {
        pollfd fds[2] = {{in_fd_, POLLIN, 0}, {wake_[0], POLLIN, 0}};
        int n = poll(fds, 2, fetches_.empty() ? -1 : kCheckEveryMs);
        if (n < 0 && errno != EINTR) break;
        if (g_stop) break;
        if (n == 0 || (n > 0 && (fds[1].revents & POLLIN))) {
            while (read(wake_[0], buf.data(), buf.size()) > 0) {
            }
            check_all();
        }
        if (n <= 0 || !(fds[0].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        ssize_t got = read(in_fd_, buf.data(), buf.size());
        if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (got <= 0) break;  // apt is done with us
        reader.feed(buf.data(), static_cast<std::size_t>(got));
        while (auto message = reader.next())
            if (!handle(*message)) return 100;
    }
    return 0;
}

bool DoptMethod::handle(const MethodMessage& message) {
    switch (message.code) {
    case 601:
        read_configuration(message, config_);
        if (std::string failed = drop_privileges(config_.sandbox_user); !failed.empty()) {
            send("401 General Failure", {{"Message", failed}});
            return false;
        }
        return true;
    case 600:
        acquire(message);
        return true;
    case 0:
        send("401 General Failure", {{"Message", "apt sent a malformed message"}});
        return false;
    default:
        return true;  // 602, 603: never asked for
    }
}

bool DoptMethod::connect_agent(std::string& why_not) {
    const std::string& path = config_.socket_path;
    int rc = dopt_client_open(&client_, path.empty() ? nullptr : path.c_str());
    if (rc == DOPT_OK) return true;
    why_not = "the dopt agent " + (path.empty() ? std::string("(libdopt's default socket)") : "at " + path) +
              " does not answer: " + dopt_failure(rc);
    return false;
}

void DoptMethod::acquire(const MethodMessage& message) {
    AcquireRequest request = read_acquire_request(message, method_);
    if (!request.error.empty()) return fail(request, request.error);
    std::string why_not;
    if (client_ == nullptr && !connect_agent(why_not)) return fall_back_to_apt(request, why_not);
    Fetch fetch;
    fetch.request = std::move(request);
    std::string error;
    int rc = start_job(fetch, error);
    // (The client stays open: the other jobs' handles need it, and libdopt
    // connects again on its next call.)
    if (rc == DOPT_E_CONNECT || rc == DOPT_E_DISCONNECTED)
        return fall_back_to_apt(fetch.request, "the dopt agent stopped answering: " + error);
    if (rc != DOPT_OK) return fail(fetch.request, error);
    fetches_.emplace(next_fetch_++, std::move(fetch));
}

// Makes the job of `fetch` and resumes it, one call a step; a step that
// fails ends the job (cancelled) and returns its code, with `error` saying
// which step and why.
int DoptMethod::start_job(Fetch& fetch, std::string& error) {
    const AcquireRequest& r = fetch.request;
    const std::string name = kJobNamePrefix + basename_of(r.filename);
    const std::string if_modified_since = "If-Modified-Since: " + r.last_modified;
    dopt_callbacks callbacks = DOPT_CALLBACKS_INIT;
    callbacks.transferred = wake_on_transferred;
    callbacks.error = wake_on_error;
    callbacks.modification = wake_on_change;
    const std::pair<const char*, std::function<int()>> steps[] = {
        {"create a job", [&] { return dopt_job_create(&fetch.job, client_, name.c_str()); }},
        {"add the file", [&] { return add_file_replacing_stale_job(fetch.job, r); }},
        {"set the file's SHA-256",
         [&] { return r.sha256.empty() ? DOPT_OK : dopt_job_set_file_sha256(fetch.job, 0, r.sha256.c_str()); }},
        // A small index file then skips the agent's LAN lookup.
        {"set the file's size",
         [&] { return r.expected_size ? dopt_job_set_file_size(fetch.job, 0, *r.expected_size) : DOPT_OK; }},
        {"add If-Modified-Since",
         [&] {
             return r.last_modified.empty() ? DOPT_OK
                                            : dopt_job_add_http_header(fetch.job, if_modified_since.c_str());
         }},
        {"set the priority", [&] { return dopt_job_set_priority(fetch.job, config_.priority); }},
        {"set the no-progress timeout",
         [&] { return dopt_job_set_no_progress_timeout(fetch.job, config_.no_progress_timeout); }},
        {"register callbacks", [&] { return dopt_job_set_callbacks(fetch.job, &callbacks, &wake_[1]); }},
        {"resume the job", [&] { return dopt_job_resume(fetch.job); }},
    };
    for (const auto& [what, call] : steps) {
        int rc = call();
        if (rc == DOPT_OK) continue;
        error = std::string("dopt could not ") + what + " for " + r.shown_uri + " -> " + r.filename +
                ": " + dopt_failure(rc);
        end_job(fetch, true);
        return rc;
    }
    return DOPT_OK;
}

// A job an earlier run of this method left behind (apt killed before the
// method could cancel it) may still hold apt's file: DOPT_E_EXISTS. Such a
// job of ours (named "apt ...", the caller's own) is cancelled and the file
// added again, once.
int DoptMethod::add_file_replacing_stale_job(dopt_job* job, const AcquireRequest& r) {
    int rc = dopt_job_add_file(job, r.origin_url.c_str(), r.filename.c_str());
    if (rc != DOPT_E_EXISTS) return rc;
    dopt_job_status** list = nullptr;
    size_t count = 0;
    if (dopt_client_list_jobs(&list, &count, client_) != DOPT_OK) return rc;
    for (size_t i = 0; i < count; ++i) {
        dopt_job_state state = dopt_job_status_state(list[i]);
        if (state == DOPT_STATE_ACKNOWLEDGED || state == DOPT_STATE_CANCELLED) continue;
        if (std::strncmp(dopt_job_status_display_name(list[i]), kJobNamePrefix,
                         std::strlen(kJobNamePrefix)) != 0 ||
            dopt_job_status_owner_uid(list[i]) != geteuid())
            continue;
        dopt_file_info file;
        if (dopt_job_status_file(&file, list[i], 0) != DOPT_OK || r.filename != file.local_name)
            continue;
        dopt_job* stale = nullptr;
        if (dopt_job_open(&stale, client_, dopt_job_status_id(list[i])) == DOPT_OK)
            dopt_job_cancel(stale);
        dopt_job_close(stale);
    }
    dopt_job_status_list_free(list, count);
    return dopt_job_add_file(job, r.origin_url.c_str(), r.filename.c_str());
}

void DoptMethod::check_all() {
    for (auto it = fetches_.begin(); it != fetches_.end();) {
        if (check(it->second) == Outcome::Finished)
            it = fetches_.erase(it);
        else
            ++it;
    }
}

DoptMethod::Outcome DoptMethod::check(Fetch& fetch) {
    const AcquireRequest& r = fetch.request;
    dopt_job_status* st = nullptr;
    int rc = dopt_job_fetch_status(&st, fetch.job);
    if (rc == DOPT_E_DISCONNECTED) rc = dopt_job_fetch_status(&st, fetch.job);  // reconnects
    if (rc == DOPT_E_CONNECT || rc == DOPT_E_DISCONNECTED) {
        std::string why = "the dopt agent stopped answering: " + dopt_failure(rc);
        end_job(fetch, false);
        fall_back_to_apt(r, why);
        return Outcome::Finished;
    }
    if (rc != DOPT_OK) {
        std::string why = "dopt lost the job for " + r.shown_uri + ": " + dopt_failure(rc);
        end_job(fetch, true);
        fail(r, why);
        return Outcome::Finished;
    }
    std::unique_ptr<dopt_job_status, decltype(&dopt_job_status_free)> status(st, dopt_job_status_free);
    dopt_progress progress;
    dopt_job_status_progress(&progress, st);
    if (progress.bytes_total != UINT64_MAX) {
        if (r.maximum_size != 0 && progress.bytes_total > r.maximum_size) {
            end_job(fetch, true);
            fail(r,
                 r.shown_uri + " is " + std::to_string(progress.bytes_total) +
                     " bytes, more than apt accepts (" + std::to_string(r.maximum_size) + ")",
                 "MaximumSizeExceeded");
            return Outcome::Finished;
        }
        if (!fetch.started) {
            send("200 URI Start", {{"URI", r.uri}, {"Size", std::to_string(progress.bytes_total)}});
            fetch.started = true;
            fetch.progress = ProgressFile::create(r.filename);
        }
        if (fetch.progress) fetch.progress->show(progress.bytes_transferred, progress.bytes_total);
    }
    switch (dopt_job_status_state(st)) {
    case DOPT_STATE_TRANSFERRED:
    case DOPT_STATE_ACKNOWLEDGED:
        return on_transferred(fetch);
    case DOPT_STATE_ERROR:
        return on_error(fetch, dopt_job_status_error(st));
    case DOPT_STATE_CANCELLED:
        end_job(fetch, false);
        fail(r, "the dopt job fetching " + r.shown_uri + " was cancelled");
        return Outcome::Finished;
    default:
        return Outcome::Running;  // the agent retries transient errors itself
    }
}

DoptMethod::Outcome DoptMethod::on_transferred(Fetch& fetch) {
    const AcquireRequest& r = fetch.request;
    int rc = dopt_job_complete(fetch.job);  // renames the partial file onto r.filename
    if (rc != DOPT_OK && rc != DOPT_E_INVALID_STATE) {
        std::string why = "dopt could not deliver " + r.shown_uri + " to " + r.filename + ": " + dopt_failure(rc);
        end_job(fetch, true);
        fail(r, why);
        return Outcome::Finished;
    }
    end_job(fetch, false);
    std::vector<std::pair<std::string, std::string>> hashes;
    std::uint64_t size = 0;
    std::string error;
    if (!hash_file(r.filename, r.hash_kinds, hashes, size, error)) {
        fail(r, error);
        return Outcome::Finished;
    }
    if (r.maximum_size != 0 && size > r.maximum_size) {
        fail(r, r.shown_uri + " is " + std::to_string(size) + " bytes, more than apt accepts (" +
                    std::to_string(r.maximum_size) + ")",
             "MaximumSizeExceeded");
        return Outcome::Finished;
    }
    if (!fetch.started) send("200 URI Start", {{"URI", r.uri}, {"Size", std::to_string(size)}});
    std::vector<std::pair<std::string, std::string>> fields = {
        {"URI", r.uri}, {"Filename", r.filename}, {"Size", std::to_string(size)}};
    fields.insert(fields.end(), hashes.begin(), hashes.end());
    send("201 URI Done", fields);
    return Outcome::Finished;
}

DoptMethod::Outcome DoptMethod::on_error(Fetch& fetch, const dopt_error* error) {
    const AcquireRequest& r = fetch.request;
    std::int64_t code = dopt_error_code(error);
    dopt_context context = dopt_error_context(error);
    std::string description = dopt_error_description(error);
    end_job(fetch, true);  // its partial file goes
    if (code == 304 && context == DOPT_CONTEXT_REMOTE_FILE && !r.last_modified.empty()) {
        // Not modified since apt's copy: apt keeps the copy it has.
        send("201 URI Done", {{"URI", r.uri},
                              {"Filename", r.filename},
                              {"Last-Modified", r.last_modified},
                              {"IMS-Hit", "true"}});
        return Outcome::Finished;
    }
    // No FailReason for an integrity error: apt would print its own "Hash
    // Sum mismatch" instead of the agent's sentence naming both hashes.
    std::string reason;
    if (context == DOPT_CONTEXT_REMOTE_FILE && code >= 100 && code <= 599)
        reason = "HttpError" + std::to_string(code);
    if (description.empty()) description = "dopt could not fetch " + r.shown_uri;
    fail(r, description, reason, code == DOPT_E_NO_PROGRESS);
    return Outcome::Finished;
}

void DoptMethod::end_job(Fetch& fetch, bool cancel) {
    if (fetch.job != nullptr) {
        if (cancel) dopt_job_cancel(fetch.job);
        dopt_job_close(fetch.job);  // no callback of it runs once this returns
        fetch.job = nullptr;
    }
    fetch.progress.reset();
}

void DoptMethod::fail(const AcquireRequest& r, const std::string& message, const std::string& reason,
                      bool transient) {
    send("400 URI Failure", {{"URI", r.uri.empty() ? "<UNKNOWN>" : r.uri},
                             {"Message", message},
                             {"FailReason", reason},
                             {"Transient-Failure", transient ? "true" : ""}});
}

// The agent is not there: apt fetches the file with its own method for the
// origin's scheme (103 Redirect to the URI without "dopt+"), after a warning
// that says why; with Acquire::dopt::Fallback "false" the file fails instead.
void DoptMethod::fall_back_to_apt(const AcquireRequest& r, const std::string& why) {
    if (!config_.fall_back) return fail(r, why + " (Acquire::dopt::Fallback is off)");
    send("104 Warning", {{"URI", r.uri},
                         {"Message", why + "; apt fetches " + without_user_info(r.origin_url) + " itself"}});
    send("103 Redirect", {{"URI", r.uri}, {"New-URI", r.origin_url}});
}

}  // namespace dopt::apt
