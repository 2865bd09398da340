// apt's method protocol, the text side: messages between apt and an acquire
// method (apt's doc/method.dbk; apt-pkg/acquire-method.cc). A message is a
// header line "CODE Title", then "Name: value" lines, then a blank line.
// apt may send any number of messages at any time; a method answers each
// `600 URI Acquire` with `200 URI Start` (optional), then `201 URI Done`,
// `400 URI Failure` or `103 Redirect`.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace dopt::apt {

struct MethodMessage {
    int code = 0;          // 600, 601, ...
    std::string title;     // "URI Acquire"
    std::vector<std::pair<std::string, std::string>> fields;  // in order, names as sent

    // The value of the first field named `name` (ASCII case-insensitive, as
    // apt's LookupTag), or "" when there is none.
    std::string field(const std::string& name) const;
    bool has(const std::string& name) const;
};

// Splits what apt writes to the method's stdin into messages. Bytes come in
// any pieces; a message is complete at its blank line. Lines may end in
// "\n" or "\r\n". A header that does not start with a number gives a
// message with code 0 (the caller ends: apt's own methods exit on it).
class MessageReader {
public:
    void feed(const char* data, std::size_t n);
    // The next complete message, in arrival order; nullopt when none is
    // complete yet.
    std::optional<MethodMessage> next();
    // Bytes buffered that are not yet a complete message.
    std::size_t pending_bytes() const { return buffer_.size(); }

private:
    std::string buffer_;
};

// One message as apt reads it: "HEADER\n", "Name: value\n" for each field
// with a non-empty value, "\n". Control characters (CR, LF, DEL and any
// below 0x20 but tab) in a value become spaces, so nothing a value carries (a
// job's error text, a file name) can start a field or a message of its own.
// `header` is "CODE Title", e.g. "201 URI Done".
std::string format_message(const std::string& header,
                           const std::vector<std::pair<std::string, std::string>>& fields);

// apt's DeQuoteString: "%xx" (two hex digits) becomes that byte; the rest
// is kept. apt quotes configuration items this way in `601 Configuration`.
std::string dequote(const std::string& text);

// Parses one message's text (without its blank line). Exposed for tests.
MethodMessage parse_message(const std::string& text);

}  // namespace dopt::apt
