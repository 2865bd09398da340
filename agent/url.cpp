#include "agent/url.h"

#include <curl/curl.h>

#include <memory>

#include "dopt/dopt.h"

namespace dopt::agent {

namespace {
struct UrlDeleter {
    void operator()(CURLU* u) const { curl_url_cleanup(u); }
};
struct CurlStringDeleter {
    void operator()(char* s) const { curl_free(s); }
};
using CurlString = std::unique_ptr<char, CurlStringDeleter>;

CurlString get_part(CURLU* u, CURLUPart part) {
    char* out = nullptr;
    if (curl_url_get(u, part, &out, 0) != CURLUE_OK) return CurlString(nullptr);
    return CurlString(out);
}
}  // namespace

UrlCheck check_url(const std::string& url) {
    UrlCheck r;
    if (url.empty()) {
        r.rc = DOPT_E_INVALID_URL;
        r.message = "the URL is empty";
        return r;
    }
    for (unsigned char c : url) {
        if (c <= 0x20 || c == 0x7f) {
            r.rc = DOPT_E_INVALID_URL;
            r.message = "the URL '" + url + "' contains whitespace or control characters";
            return r;
        }
    }
    std::unique_ptr<CURLU, UrlDeleter> u(curl_url());
    if (!u) {
        r.rc = DOPT_E_NOMEM;
        r.message = "out of memory";
        return r;
    }
    // No CURLU_GUESS_SCHEME / DEFAULT_SCHEME: a URL must name its scheme.
    CURLUcode uc = curl_url_set(u.get(), CURLUPART_URL, url.c_str(), CURLU_NON_SUPPORT_SCHEME);
    if (uc != CURLUE_OK) {
        r.rc = DOPT_E_INVALID_URL;
        r.message = "'" + url + "' is not a valid URL: " + curl_url_strerror(uc);
        return r;
    }
    CurlString scheme = get_part(u.get(), CURLUPART_SCHEME);
    std::string s = scheme ? scheme.get() : "";
    if (s != "http" && s != "https") {
        r.rc = DOPT_E_UNSUPPORTED_SCHEME;
        r.message = "'" + url + "': unsupported scheme '" + s + "' (only http and https)";
        return r;
    }
    CurlString host = get_part(u.get(), CURLUPART_HOST);
    if (!host || host.get()[0] == '\0') {
        r.rc = DOPT_E_INVALID_URL;
        r.message = "'" + url + "' has no host";
        return r;
    }
    r.scheme = s;
    return r;
}

bool url_may_carry_credentials(const std::string& url) {
    std::unique_ptr<CURLU, UrlDeleter> u(curl_url());
    if (!u || curl_url_set(u.get(), CURLUPART_URL, url.c_str(), CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK)
        return true;
    for (CURLUPart part : {CURLUPART_USER, CURLUPART_PASSWORD, CURLUPART_OPTIONS, CURLUPART_QUERY})
        if (get_part(u.get(), part)) return true;
    return false;
}

}  // namespace dopt::agent
