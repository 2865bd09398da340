// Validation of the URLs a job may fetch.
#pragma once

#include <string>

namespace dopt::agent {

struct UrlCheck {
    int rc = 0;             // DOPT_OK, DOPT_E_INVALID_URL or DOPT_E_UNSUPPORTED_SCHEME
    std::string message;    // why, naming the URL
    std::string scheme;     // "http" or "https" when rc == 0
};

// Accepts absolute http:// and https:// URLs with a host; rejects
// everything else with a reason. Uses libcurl's URL parser, the same one that
// will fetch it.
UrlCheck check_url(const std::string& url);

// Whether the URL may carry credentials: a user name or password
// (user:pass@host) or a query string (?token=...). Such content is treated
// like content fetched with custom headers: not shared with peers unless
// the job gives metainfo. A URL libcurl cannot parse counts as carrying
// them.
bool url_may_carry_credentials(const std::string& url);

}  // namespace dopt::agent
