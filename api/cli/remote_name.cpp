#include "api/cli/remote_name.h"

#include "common/hex.h"

#include <string_view>

namespace dopt::cli {

namespace {

// %XX becomes its byte; a '%' not followed by two hex digits stays.
std::string percent_decode(const std::string& s) {
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        unsigned char byte = 0;
        if (s[i] == '%' && i + 2 < s.size() && dopt::from_hex(std::string_view(s).substr(i + 1, 2), &byte, 1)) {
            out += static_cast<char>(byte);
            i += 2;
        } else {
            out += s[i];
        }
    }
    return out;
}

bool has_control_character(const std::string& name) {
    for (std::size_t i = 0; i < name.size(); ++i) {
        auto c = static_cast<unsigned char>(name[i]);
        auto next = i + 1 < name.size() ? static_cast<unsigned char>(name[i + 1]) : 0;
        if (c < 0x20 || c == 0x7f || (c == 0xc2 && next >= 0x80 && next <= 0x9f)) return true;
    }
    return false;
}

}  // namespace

std::string remote_name(const std::string& url, std::string* why) {
    std::string path;
    if (auto scheme_end = url.find("://"); scheme_end != std::string::npos) {
        // The authority ends at the path, the query or the fragment.
        auto end = url.find_first_of("/?#", scheme_end + 3);
        if (end != std::string::npos && url[end] == '/') path = url.substr(end);
    }
    path = path.substr(0, path.find_first_of("?#"));
    std::string name = percent_decode(path.substr(path.rfind('/') + 1));
    if (name.empty()) *why = "the URL's path names no file (it is empty or ends in '/')";
    else if (name == "." || name == "..") *why = "the URL's last path segment is '" + name + "'";
    else if (name.find('/') != std::string::npos) *why = "the URL's last path segment holds a '/' once decoded";
    else if (has_control_character(name)) *why = "the URL's last path segment holds a control character";
    else if (name.size() > 255) *why = "the URL's last path segment is longer than 255 bytes";
    else return name;
    return "";
}

}  // namespace dopt::cli
