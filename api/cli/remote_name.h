// The file name `dopt get -O URL` saves under, as `curl -O` does.
#pragma once

#include <string>

namespace dopt::cli {

// The URL's last path segment (query and fragment cut off),
// percent-decoded. Returns it, or "" with `*why` saying what is wrong when
// it is no safe file name of the working directory: empty (no path, or one
// ending in '/'), "." or "..", holding a '/' once decoded (%2F), a control
// character (C0, DEL, C1), or longer than 255 bytes.
std::string remote_name(const std::string& url, std::string* why);

}  // namespace dopt::cli
