#include "common/hex.h"

namespace dopt {

std::string to_hex(const void* data, std::size_t n) {
    static const char digits[] = "0123456789abcdef";
    const auto* bytes = static_cast<const unsigned char*>(data);
    std::string out;
    out.reserve(n * 2);
    for (std::size_t i = 0; i < n; ++i) {
        out += digits[bytes[i] >> 4];
        out += digits[bytes[i] & 15];
    }
    return out;
}

bool is_hex(std::string_view s, std::size_t digits, bool lowercase_only) {
    if (s.size() != digits) return false;
    for (char c : s) {
        bool digit = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
                     (!lowercase_only && c >= 'A' && c <= 'F');
        if (!digit) return false;
    }
    return true;
}

bool from_hex(std::string_view s, void* out, std::size_t n) {
    if (!is_hex(s, 2 * n)) return false;
    static const std::string_view digits = "0123456789abcdef";
    auto value = [](char c) {
        const char lower = (c >= 'A' && c <= 'F') ? static_cast<char>(c - 'A' + 'a') : c;
        return static_cast<unsigned>(digits.find(lower));
    };
    auto* bytes = static_cast<unsigned char*>(out);
    for (std::size_t i = 0; i < n; ++i)
        bytes[i] = static_cast<unsigned char>(value(s[2 * i]) << 4 | value(s[2 * i + 1]));
    return true;
}

}  // namespace dopt
