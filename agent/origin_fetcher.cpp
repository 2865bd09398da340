#include "agent/origin_fetcher.h"

#include <curl/curl.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <strings.h>

#include "agent/log.h"
#include "dopt/dopt.h"

namespace dopt::agent {

using storage::ErrorContext;

struct OriginFetcher::Transfer {
    TransferId id = 0;
    CURL* easy = nullptr;
    curl_slist* headers = nullptr;
    TransferSink* sink = nullptr;
    TransferRequest request;
    std::string url;                     // asked now: request.url, or where it redirected
    int redirects = 0;                   // followed so far
    std::size_t redirect_body = 0;       // bytes of a redirect's body dropped
    ResponseInfo response;               // of the response being received
    long retry_after = 0;
    bool response_delivered = false;     // on_response called for the final one
    int abort_code = 0;                  // from a sink: why we aborted
    std::string refused_redirect;        // why a redirect was not followed
    std::int64_t slice_end_ms = 0;       // of its slice in this perform(); 0 before its first chunk
    bool paused = false;                 // at the end of its slice, until the next perform()
    char error_buffer[CURL_ERROR_SIZE] = {};
};

namespace {

std::string trim(std::string s) {
    while (!s.empty() && (s.back() == '\r' || s.back() == '\n' || s.back() == ' ' || s.back() == '\t'))
        s.pop_back();
    size_t i = 0;
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
    return s.substr(i);
}

bool header_is(const std::string& line, const char* name, std::string& value) {
    size_t n = std::strlen(name);
    if (line.size() <= n || line[n] != ':' || strncasecmp(line.c_str(), name, n) != 0) return false;
    value = trim(line.substr(n + 1));
    return true;
}

// "bytes 100-199/1000" -> start 100, total 1000 (total stays unknown for "*").
void parse_content_range(const std::string& v, ResponseInfo& r) {
    unsigned long long start = 0, end = 0, total = 0;
    if (std::sscanf(v.c_str(), "bytes %llu-%llu/%llu", &start, &end, &total) == 3) {
        r.body_offset = start;
        r.total = total;
    } else if (std::sscanf(v.c_str(), "bytes %llu-%llu/*", &start, &end) == 2) {
        r.body_offset = start;
    }
}

// Retry-After as delay-seconds or as an HTTP-date: seconds from now, rounded
// up (0 when absent, past or malformed).
long parse_retry_after(const std::string& v) {
    if (!v.empty() && v[0] >= '0' && v[0] <= '9') return std::strtol(v.c_str(), nullptr, 10);
    time_t when = curl_getdate(v.c_str(), nullptr);
    if (when < 0) return 0;
    timespec now{};
    clock_gettime(CLOCK_REALTIME, &now);
    double left = static_cast<double>(when) - static_cast<double>(now.tv_sec) -
                  static_cast<double>(now.tv_nsec) / 1e9;
    return left > 0 ? static_cast<long>(std::ceil(left)) : 0;
}

size_t on_header(char* data, size_t size, size_t nitems, void* userdata) {
    auto* t = static_cast<OriginFetcher::Transfer*>(userdata);
    std::string line(data, size * nitems);
    std::string v;
    if (line.compare(0, 5, "HTTP/") == 0) {
        // A new response (redirects and 100-continue produce several).
        t->response = ResponseInfo{};
        size_t sp = line.find(' ');
        if (sp != std::string::npos) t->response.status = std::strtol(line.c_str() + sp + 1, nullptr, 10);
        t->retry_after = 0;
    } else if (header_is(line, "ETag", v)) {
        t->response.etag = v;
    } else if (header_is(line, "Last-Modified", v)) {
        t->response.last_modified = v;
    } else if (header_is(line, "Content-Range", v)) {
        parse_content_range(v, t->response);
    } else if (header_is(line, "Content-Length", v)) {
        if (t->response.status == 200) t->response.total = std::strtoull(v.c_str(), nullptr, 10);
    } else if (header_is(line, "Repr-Digest", v)) {
        t->response.repr_digest += (t->response.repr_digest.empty() ? "" : ", ") + v;
    } else if (header_is(line, "Digest", v)) {
        t->response.digest += (t->response.digest.empty() ? "" : ", ") + v;
    } else if (header_is(line, "Retry-After", v)) {
        t->retry_after = parse_retry_after(v);
    }
    return size * nitems;
}

bool status_is_success(long s) { return s == 200 || s == 206; }

constexpr int kMaxRedirects = 10;
constexpr std::size_t kMaxRedirectBody = 64 * 1024;

bool is_followed_redirect(long s) { return s == 301 || s == 302 || s == 303 || s == 307 || s == 308; }

// A 206 answers "the rest of the version named by If-Range" only when it
// carries that same validator. An origin (or a cache) that ignores If-Range
// may send a range of another version: that 206 must not be appended. A
// response that names no validator of the kind asked for is taken at its word.
bool range_is_of_the_same_version(const TransferRequest& req, const ResponseInfo& r) {
    const std::string& want = req.if_range;
    if (want.empty()) return true;
    bool etag = want[0] == '"' || want.compare(0, 2, "W/") == 0;
    const std::string& got = etag ? r.etag : r.last_modified;
    return got.empty() || got == want;
}

// Delivers the final response to the sink once. Returns false to abort.
bool deliver_response(OriginFetcher::Transfer* t) {
    if (t->response_delivered) return t->abort_code == 0;
    t->response_delivered = true;
    if (!status_is_success(t->response.status)) return false;  // judged in finish()
    if (t->response.status == 200) t->response.body_offset = 0;
    if (t->response.status == 206 && !range_is_of_the_same_version(t->request, t->response)) {
        LOG_INFO("%s: a 206 of another version (ETag %s, Last-Modified %s; If-Range was %s)",
                 t->request.url.c_str(), t->response.etag.c_str(),
                 t->response.last_modified.c_str(), t->request.if_range.c_str());
        t->abort_code = DOPT_E_REMOTE_CHANGED;
        return false;
    }
    int rc = t->sink->on_response(t->response);
    if (rc != 0) {
        t->abort_code = rc;
        return false;
    }
    return true;
}

std::int64_t steady_ms() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

// True once the transfer has had its slice of this perform() (its first
// chunk in the call starts it).
bool slice_spent(OriginFetcher::Transfer& t) {
    std::int64_t now = steady_ms();
    if (t.slice_end_ms == 0) {
        t.slice_end_ms = now + OriginFetcher::kSliceMs;
        return false;
    }
    return now >= t.slice_end_ms;
}

size_t on_body(char* data, size_t size, size_t nmemb, void* userdata) {
    auto* t = static_cast<OriginFetcher::Transfer*>(userdata);
    size_t len = size * nmemb;
    if (is_followed_redirect(t->response.status)) {
        // Read and dropped, so that the transfer ends well (libcurl names
        // the redirect's target only then) and the connection may carry the
        // next request; a redirect with a large body is not followed.
        t->redirect_body += len;
        return t->redirect_body <= kMaxRedirectBody ? len : 0;
    }
    if (!deliver_response(t)) return 0;  // CURLE_WRITE_ERROR ends it
    if (slice_spent(*t)) {
        // libcurl keeps this chunk and reads no more until resume_paused().
        t->paused = true;
        return CURL_WRITEFUNC_PAUSE;
    }
    int rc = t->sink->on_body(data, len);
    if (rc != 0) {
        t->abort_code = rc;
        return 0;
    }
    return len;
}

bool is_transient_status(long s) { return s >= 500 || s == 408 || s == 429; }

// Scheme, host and port of a URL, as libcurl reads it (lowercase scheme,
// default port filled in). Empty scheme when the URL cannot be parsed.
struct UrlOrigin {
    std::string scheme, host, port;
};

UrlOrigin origin_of(const std::string& url) {
    UrlOrigin o;
    CURLU* u = curl_url();
    if (!u) return o;
    if (curl_url_set(u, CURLUPART_URL, url.c_str(), CURLU_NON_SUPPORT_SCHEME) == CURLUE_OK) {
        auto part = [u](CURLUPart what, unsigned flags) {
            char* v = nullptr;
            std::string out;
            if (curl_url_get(u, what, &v, flags) == CURLUE_OK && v) out = v;
            curl_free(v);
            return out;
        };
        o.scheme = part(CURLUPART_SCHEME, 0);
        o.host = part(CURLUPART_HOST, 0);
        o.port = part(CURLUPART_PORT, CURLU_DEFAULT_PORT);
    }
    curl_url_cleanup(u);
    return o;
}

bool same_origin(const UrlOrigin& a, const UrlOrigin& b) {
    return !a.scheme.empty() && a.scheme == b.scheme && strcasecmp(a.host.c_str(), b.host.c_str()) == 0 &&
           a.port == b.port;
}

// The request's header list: the job's own headers (only when the request
// goes to the origin of the job's URL), then ours; a range we need
// overrides any.
curl_slist* request_headers(const TransferRequest& request, bool with_job_headers) {
    curl_slist* list = nullptr;
    if (with_job_headers)
        for (const auto& h : request.headers) list = curl_slist_append(list, h.c_str());
    if (request.offset > 0 || request.length > 0) {
        std::string range = "Range: bytes=" + std::to_string(request.offset) + "-";
        if (request.length > 0) range += std::to_string(request.offset + request.length - 1);
        list = curl_slist_append(list, range.c_str());
        if (!request.if_range.empty()) {
            std::string if_range = "If-Range: " + request.if_range;
            list = curl_slist_append(list, if_range.c_str());
        }
    }
    return list;
}

}  // namespace

std::string describe_http_status(long status) {
    switch (status) {
    case 400: return "400 Bad Request";
    case 401: return "401 Unauthorized";
    case 204: return "204 No Content";
    case 403: return "403 Forbidden";
    case 404: return "404 Not Found";
    case 408: return "408 Request Timeout";
    case 410: return "410 Gone";
    case 416: return "416 Range Not Satisfiable";
    case 429: return "429 Too Many Requests";
    case 500: return "500 Internal Server Error";
    case 502: return "502 Bad Gateway";
    case 503: return "503 Service Unavailable";
    case 504: return "504 Gateway Timeout";
    default: return std::to_string(status);
    }
}

OriginFetcher::OriginFetcher(const FetcherSettings& settings) : settings_(settings) {
    multi_ = curl_multi_init();
    apply_settings(settings);
}

OriginFetcher::~OriginFetcher() {
    while (!transfers_.empty()) stop(transfers_.begin()->first);
    curl_multi_cleanup(static_cast<CURLM*>(multi_));
}

void OriginFetcher::apply_settings(const FetcherSettings& settings) {
    settings_ = settings;
    curl_multi_setopt(static_cast<CURLM*>(multi_), CURLMOPT_MAX_TOTAL_CONNECTIONS,
                      static_cast<long>(settings.max_connections));
}

TransferId OriginFetcher::start(const TransferRequest& request, TransferSink* sink) {
    auto t = std::make_unique<Transfer>();
    t->id = next_id_++;
    t->sink = sink;
    t->request = request;
    CURL* e = curl_easy_init();
    t->easy = e;
    curl_easy_setopt(e, CURLOPT_URL, request.url.c_str());
    curl_easy_setopt(e, CURLOPT_PRIVATE, t.get());
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->error_buffer);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    // Redirects are followed here (follow_redirect), not by libcurl, which
    // would send the job's headers to whatever host a redirect names.
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_USERAGENT, settings_.user_agent.c_str());
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, settings_.connect_timeout);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, settings_.low_speed_time);
    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 512L * 1024L);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, t.get());
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, t.get());
    if (!settings_.proxy.empty()) curl_easy_setopt(e, CURLOPT_PROXY, settings_.proxy.c_str());
    if (!settings_.ca_file.empty()) curl_easy_setopt(e, CURLOPT_CAINFO, settings_.ca_file.c_str());
    if (request.max_recv_rate > 0)
        curl_easy_setopt(e, CURLOPT_MAX_RECV_SPEED_LARGE,
                         static_cast<curl_off_t>(request.max_recv_rate));
    t->url = request.url;
    t->headers = request_headers(request, true);
    if (t->headers) curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->headers);
    curl_multi_add_handle(static_cast<CURLM*>(multi_), e);
    TransferId id = t->id;
    transfers_[id] = std::move(t);
    return id;
}

void OriginFetcher::stop(TransferId id) {
    auto it = transfers_.find(id);
    if (it == transfers_.end()) return;
    Transfer& t = *it->second;
    curl_multi_remove_handle(static_cast<CURLM*>(multi_), t.easy);
    curl_easy_cleanup(t.easy);
    curl_slist_free_all(t.headers);
    transfers_.erase(it);
}

void OriginFetcher::wait(std::vector<pollfd>& extra, int timeout_ms) {
    if (any_paused()) timeout_ms = 0;
    std::vector<curl_waitfd> fds(extra.size());
    for (size_t i = 0; i < extra.size(); ++i) {
        fds[i].fd = extra[i].fd;
        fds[i].events = static_cast<short>(
            ((extra[i].events & POLLIN) ? CURL_WAIT_POLLIN : 0) |
            ((extra[i].events & POLLOUT) ? CURL_WAIT_POLLOUT : 0));
        fds[i].revents = 0;
    }
    curl_multi_poll(static_cast<CURLM*>(multi_), fds.data(), static_cast<unsigned>(fds.size()),
                    timeout_ms, nullptr);
    for (size_t i = 0; i < extra.size(); ++i) {
        short r = 0;
        if (fds[i].revents & CURL_WAIT_POLLIN) r |= POLLIN;
        if (fds[i].revents & CURL_WAIT_POLLOUT) r |= POLLOUT;
        extra[i].revents = r;
    }
}

bool OriginFetcher::any_paused() const {
    for (const auto& [id, t] : transfers_)
        if (t->paused) return true;
    return false;
}

// Starts every transfer's next slice and resumes those paused at the end of
// their last one: libcurl hands the chunk it kept to on_body at once, and a
// sink that refuses it ends its transfer here.
void OriginFetcher::resume_paused() {
    std::vector<TransferId> paused;
    for (auto& [id, t] : transfers_) {
        t->slice_end_ms = 0;
        if (t->paused) paused.push_back(id);
    }
    for (TransferId id : paused) {
        auto it = transfers_.find(id);
        if (it == transfers_.end()) continue;  // stopped by the on_done of one before
        Transfer& t = *it->second;
        t.paused = false;
        CURLcode rc = curl_easy_pause(t.easy, CURLPAUSE_CONT);
        if (rc != CURLE_OK) finish(t, rc);
    }
}

void OriginFetcher::perform() {
    resume_paused();
    int running = 0;
    curl_multi_perform(static_cast<CURLM*>(multi_), &running);
    int queued = 0;
    while (CURLMsg* msg = curl_multi_info_read(static_cast<CURLM*>(multi_), &queued)) {
        if (msg->msg != CURLMSG_DONE) continue;
        Transfer* t = nullptr;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &t);
        if (t) finish(*t, msg->data.result);
    }
}

// A redirect response that ended well, whose target the transfer may go
// to: restarts the transfer there and returns true.
// Otherwise returns false; when the redirect is refused, `curl_code` and
// t.error_buffer then say why (a scheme not allowed, too many, malformed).
bool OriginFetcher::follow_redirect(Transfer& t, int& curl_code) {
    if (!is_followed_redirect(t.response.status) || curl_code != CURLE_OK) return false;
    char* location = nullptr;
    curl_easy_getinfo(t.easy, CURLINFO_REDIRECT_URL, &location);
    if (!location) return false;  // no Location: judged as an HTTP status
    const std::string target = location;
    const UrlOrigin to = origin_of(target);
    if (to.scheme.empty()) {
        curl_code = CURLE_URL_MALFORMAT;
        std::snprintf(t.error_buffer, CURL_ERROR_SIZE, "%s redirected to a malformed URL",
                      t.request.url.c_str());
        return false;
    }
    bool from_https = origin_of(t.url).scheme == "https";
    if (to.scheme != "http" && to.scheme != "https") {
        curl_code = CURLE_UNSUPPORTED_PROTOCOL;
        t.refused_redirect = t.request.url + " redirected to a URL of scheme " + to.scheme +
                             " (only http and https are fetched)";
        return false;
    }
    if (from_https && to.scheme != "https") {
        curl_code = CURLE_UNSUPPORTED_PROTOCOL;
        t.refused_redirect = t.request.url + " redirected from https to http (no https to http downgrade)";
        return false;
    }
    if (t.redirects >= kMaxRedirects) {
        curl_code = CURLE_TOO_MANY_REDIRECTS;
        return false;
    }
    restart_at(t, target, same_origin(origin_of(t.request.url), to));
    return true;
}

// Starts the transfer again at `url` on the same easy handle (so on the
// same connection when the host is the same), with the job's own headers
// only when `with_job_headers`.
void OriginFetcher::restart_at(Transfer& t, const std::string& url, bool with_job_headers) {
    auto* multi = static_cast<CURLM*>(multi_);
    curl_multi_remove_handle(multi, t.easy);
    ++t.redirects;
    t.url = url;
    t.response = ResponseInfo{};
    t.response_delivered = false;
    t.redirect_body = 0;
    t.retry_after = 0;
    t.error_buffer[0] = '\0';
    curl_slist_free_all(t.headers);
    t.headers = request_headers(t.request, with_job_headers);
    if (!with_job_headers && !t.request.headers.empty())
        LOG_DEBUG("%s: redirect %d goes to another origin; the job's own headers stay behind",
                  t.request.url.c_str(), t.redirects);
    curl_easy_setopt(t.easy, CURLOPT_URL, t.url.c_str());
    curl_easy_setopt(t.easy, CURLOPT_HTTPHEADER, t.headers);
    curl_multi_add_handle(multi, t.easy);
}

// Classifies how a transfer ended, removes it, then tells its sink.
void OriginFetcher::finish(Transfer& t, int curl_code) {
    if (follow_redirect(t, curl_code)) return;
    auto code = static_cast<CURLcode>(curl_code);
    TransferOutcome out;
    const std::string& url = t.request.url;
    long status = t.response.status;

    if (code == CURLE_OK && status_is_success(status)) {
        // A body-less success (empty file) never reached on_body.
        if (deliver_response(&t)) {
            out.ok = true;
        } else {
            code = CURLE_WRITE_ERROR;
        }
    }
    if (!out.ok && t.abort_code != 0) {
        // The sink refused the response or a write failed: it knows why.
        // A write failure is -errno; the error record holds errno itself.
        out.code = t.abort_code == DOPT_E_REMOTE_CHANGED ? t.abort_code : -t.abort_code;
        out.context = t.abort_code == DOPT_E_REMOTE_CHANGED ? ErrorContext::RemoteFile
                                                            : ErrorContext::LocalFile;
        out.transient = t.abort_code == DOPT_E_REMOTE_CHANGED;
        out.description = t.abort_code == DOPT_E_REMOTE_CHANGED
                              ? "the origin answered " + url +
                                    " with an unexpected range or another version of the file; restarting"
                              : std::string("writing the data of ") + url + " failed: " +
                                    std::strerror(-t.abort_code);
    } else if (!out.ok && status >= 200 && (code == CURLE_OK || code == CURLE_WRITE_ERROR)) {
        // Any final status but 200 and 206 (a 204 too: it has no file).
        out.code = status;
        out.transient = is_transient_status(status);
        out.context = ErrorContext::RemoteFile;
        out.retry_after = t.retry_after;
        out.description = "the origin answered " + describe_http_status(status) + " for " + url;
        if (status == 416 && t.request.offset == 0 && t.request.length == 0)
            out.description += " to a request for the whole file";
    } else if (!out.ok) {
        out.code = DOPT_E_TRANSPORT;
        out.context = ErrorContext::Transport;
        out.transient = true;
        std::string detail = t.error_buffer[0] ? t.error_buffer : curl_easy_strerror(code);
        switch (code) {
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CACERT_BADFILE:
        case CURLE_SSL_CERTPROBLEM:
            out.transient = false;
            out.code = DOPT_E_TLS;
            out.description = "the TLS certificate of " + url + " was refused: " + detail;
            break;
        case CURLE_UNSUPPORTED_PROTOCOL:
            // A redirect we refused, or a reply that is not HTTP/1.x or 2.
            out.transient = false;
            out.context = ErrorContext::RemoteFile;
            out.code = t.refused_redirect.empty() ? DOPT_E_HTTP : DOPT_E_UNSUPPORTED_SCHEME;
            out.description = t.refused_redirect.empty()
                                  ? "the server of " + url + " did not answer in HTTP: " + detail
                                  : t.refused_redirect;
            break;
        case CURLE_OUT_OF_MEMORY:
            // libcurl's word for a header line over its limit (100 KiB).
            if (t.response.status == 0 || t.response_delivered) {
                out.description = "fetching " + url + " failed: " + detail;
                break;
            }
            out.transient = false;
            out.context = ErrorContext::RemoteFile;
            out.code = DOPT_E_HTTP;
            out.description = "the origin's response to " + url +
                              " has a header too large to read (over 100 KiB)";
            break;
        case CURLE_TOO_MANY_REDIRECTS:
            out.transient = false;
            out.context = ErrorContext::RemoteFile;
            out.code = DOPT_E_HTTP;
            out.description = url + " redirects too many times (a redirect loop?)";
            break;
        case CURLE_URL_MALFORMAT:
            out.transient = false;
            out.context = ErrorContext::RemoteFile;
            out.code = DOPT_E_INVALID_URL;
            out.description = detail;
            break;
        default:
            out.description = "fetching " + url + " failed: " + detail;
            break;
        }
    }
    TransferSink* sink = t.sink;
    stop(t.id);
    sink->on_done(out);
}

}  // namespace dopt::agent
