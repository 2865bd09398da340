// What one `600 URI Acquire` asks for, read from apt's fields.
#pragma once

#include "apt/method_message.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace dopt::apt {

struct AcquireRequest {
    std::string uri;         // as apt sent it, e.g. "dopt+http://host/pool/a.deb"
    std::string shown_uri;   // uri without a user name and password: for messages
    std::string origin_url;  // what the agent fetches: the URI without "dopt+"
    std::string filename;    // where apt wants the file (absolute)
    std::string sha256;      // Expected-SHA256 in lowercase hex, or ""
    std::vector<std::string> hash_kinds;  // apt's names of the hashes to compute and report
    std::optional<std::uint64_t> expected_size;  // Expected-Checksum-FileSize, passed to the job
    std::uint64_t maximum_size = 0;       // expected_size, else Maximum-Size; 0: no limit
    std::string last_modified;  // the date of apt's copy (RFC 1123), for If-Modified-Since; ""
    std::string error;          // why the request cannot be served; "" when it can
};

// Reads a 600 message sent to the method named `method` ("dopt+http" or
// "dopt+https": the URI's scheme must be that name; the origin's is the
// name without "dopt+"). A request that cannot be served (another scheme, no
// URI, a relative Filename) has `error` set and is answered with a failure.
// hash_kinds are the strong Expected-* hashes apt gave (SHA512, SHA256, in
// apt's order), else the weak ones it gave (SHA1, MD5Sum), else SHA256: apt
// needs one hash of its list to match and none to differ. A malformed Expected-SHA256 or Last-Modified is ignored (apt
// still checks the hashes it expects against what the method reports).
AcquireRequest read_acquire_request(const MethodMessage& message, const std::string& method);

// `uri` without the user name and password of its authority
// ("http://u:p@h/a" -> "http://h/a"): what a message may show.
std::string without_user_info(const std::string& uri);

}  // namespace dopt::apt
