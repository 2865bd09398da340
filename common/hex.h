// Hexadecimal text of bytes, as dopt writes hashes, info-hashes and ids:
// lowercase, two digits a byte, no separators.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace dopt {

// Lowercase hex of the `n` bytes at `data`.
std::string to_hex(const void* data, std::size_t n);

// True when `s` is exactly `digits` hex digits; `lowercase_only` refuses
// 'A'-'F' (text dopt wrote itself, such as a folder named by info-hash).
bool is_hex(std::string_view s, std::size_t digits, bool lowercase_only = false);

// The `n` bytes written as 2*n hex digits (either case) in `s`, into `out`;
// false (out unspecified) when `s` is not exactly that.
bool from_hex(std::string_view s, void* out, std::size_t n);

}  // namespace dopt
