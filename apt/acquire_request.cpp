#include "apt/acquire_request.h"

#include "apt/file_hashes.h"
#include "common/hex.h"

#include <cctype>
#include <cstdint>
#include <cstdlib>

namespace dopt::apt {

namespace {

// A size in bytes: digits, at most INT64_MAX (what the agent takes); else none.
std::optional<std::uint64_t> read_size(const std::string& text) {
    if (text.empty() || text.size() > 19 || text.find_first_not_of("0123456789") != std::string::npos)
        return std::nullopt;
    const std::uint64_t size = std::strtoull(text.c_str(), nullptr, 10);
    if (size > static_cast<std::uint64_t>(INT64_MAX)) return std::nullopt;
    return size;
}

std::string lowercase(std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

// An HTTP date as apt writes it ("Sun, 06 Dec 2026 15:00:00 GMT"): letters,
// digits, spaces, commas, colons and hyphens only, so it can go into a
// request header as it is.
bool looks_like_http_date(const std::string& s) {
    if (s.empty() || s.size() > 64) return false;
    for (char c : s)
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != ' ' && c != ',' && c != ':' &&
            c != '-')
            return false;
    return true;
}

}  // namespace

std::string without_user_info(const std::string& uri) {
    std::size_t start = uri.find("://");
    if (start == std::string::npos) return uri;
    start += 3;
    std::size_t end = uri.find_first_of("/?#", start);
    std::size_t at = uri.rfind('@', end == std::string::npos ? uri.size() : end);
    if (at == std::string::npos || at < start) return uri;
    return uri.substr(0, start) + uri.substr(at + 1);
}

AcquireRequest read_acquire_request(const MethodMessage& message, const std::string& method) {
    AcquireRequest r;
    r.uri = message.field("URI");
    r.shown_uri = without_user_info(r.uri);
    r.filename = message.field("Filename");
    const std::string prefix = method + "://";
    if (r.uri.empty()) {
        r.error = "apt sent no URI";
    } else if (r.uri.compare(0, prefix.size(), prefix) != 0 || method.compare(0, 5, "dopt+") != 0) {
        r.error = "the method " + method + " cannot fetch " + r.shown_uri;
    } else if (r.filename.empty() || r.filename[0] != '/') {
        r.error = "apt asked for " + r.shown_uri + " at a path that is not absolute: '" + r.filename + "'";
    } else {
        r.origin_url = r.uri.substr(5);  // without "dopt+"
    }

    // The strong hashes apt expects; the weak ones (SHA1, MD5Sum: apt does
    // not count them as a check) only when apt expects nothing else.
    std::vector<std::string> weak;
    for (const auto& kind : known_hash_kinds()) {
        if (message.field("Expected-" + kind).empty()) continue;
        (kind == "SHA1" || kind == "MD5Sum" ? weak : r.hash_kinds).push_back(kind);
    }
    if (r.hash_kinds.empty()) r.hash_kinds = weak;
    if (r.hash_kinds.empty()) r.hash_kinds = {"SHA256"};
    std::string sha256 = lowercase(message.field("Expected-SHA256"));
    if (is_hex(sha256, 64)) r.sha256 = sha256;

    r.expected_size = read_size(message.field("Expected-Checksum-FileSize"));
    r.maximum_size = r.expected_size ? *r.expected_size : read_size(message.field("Maximum-Size")).value_or(0);
    std::string date = message.field("Last-Modified");
    if (looks_like_http_date(date)) r.last_modified = date;
    return r;
}

}  // namespace dopt::apt
