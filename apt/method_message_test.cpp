#include "apt/acquire_request.h"
#include "apt/method_message.h"

#include <catch2/catch.hpp>

using namespace dopt::apt;

TEST_CASE("apt's messages are split at their blank line, whatever pieces the bytes come in") {
    const std::string text =
        "601 Configuration\nConfig-Item: Acquire::dopt::Socket=/run/x%20y.sock\n\n"
        "600 URI Acquire\r\nURI: dopt+http://h/a.deb\r\nFilename: /tmp/a.deb\r\n\r\n";
    MessageReader reader;
    std::vector<MethodMessage> got;
    for (char c : text) {  // one byte at a time
        reader.feed(&c, 1);
        while (auto m = reader.next()) got.push_back(*m);
    }
    REQUIRE(got.size() == 2);
    CHECK(got[0].code == 601);
    CHECK(got[0].title == "Configuration");
    CHECK(dequote(got[0].field("config-item")) == "Acquire::dopt::Socket=/run/x y.sock");
    CHECK(got[1].code == 600);
    CHECK(got[1].field("URI") == "dopt+http://h/a.deb");
    CHECK(got[1].field("filename") == "/tmp/a.deb");
    CHECK_FALSE(got[1].has("Last-Modified"));
    CHECK(reader.pending_bytes() == 0);
}

TEST_CASE("a message whose header is not a number has code 0") {
    CHECK(parse_message("hello\nURI: x").code == 0);
}

TEST_CASE("a value with line breaks or control characters cannot start a field of its own") {
    std::string out = format_message("400 URI Failure",
                                     {{"URI", "dopt+http://h/a"},
                                      {"Message", "bad\nFailReason: forged\r\n\n201 URI Done\x7f"},
                                      {"FailReason", ""}});
    CHECK(out == "400 URI Failure\nURI: dopt+http://h/a\n"
                 "Message: bad FailReason: forged   201 URI Done \n\n");
}

TEST_CASE("a 600 becomes a request for the origin's URL, with apt's hashes and limits") {
    MethodMessage m = parse_message(
        "600 URI Acquire\nURI: dopt+https://h:8080/pool/a%2Bb_1.0~1.deb\n"
        "Filename: /var/cache/apt/archives/partial/a+b_1.0~1.deb\n"
        "Expected-SHA256: " + std::string(64, 'A') + "\nExpected-MD5Sum: 0123\n"
        "Expected-Checksum-FileSize: 1234\nMaximum-Size: 99\n"
        "Last-Modified: Sun, 06 Dec 2026 15:00:00 GMT\n");
    AcquireRequest r = read_acquire_request(m, "dopt+https");
    CHECK(r.error.empty());
    CHECK(r.origin_url == "https://h:8080/pool/a%2Bb_1.0~1.deb");
    CHECK(r.sha256 == std::string(64, 'a'));
    CHECK(r.hash_kinds == std::vector<std::string>{"SHA256"});  // not the weak MD5Sum
    CHECK(r.expected_size == std::optional<std::uint64_t>(1234));
    CHECK(r.maximum_size == 1234);  // the expected size wins, as in apt
    CHECK(r.last_modified == "Sun, 06 Dec 2026 15:00:00 GMT");
}

TEST_CASE("a 600 without hashes asks for SHA256 and takes Maximum-Size as the limit") {
    AcquireRequest r = read_acquire_request(
        parse_message("600 URI Acquire\nURI: dopt+http://h/InRelease\nFilename: /l/InRelease\n"
                      "Maximum-Size: 10000000\nLast-Modified: bad\rdate\n"),
        "dopt+http");
    CHECK(r.error.empty());
    CHECK(r.origin_url == "http://h/InRelease");
    CHECK(r.sha256.empty());
    CHECK(r.hash_kinds == std::vector<std::string>{"SHA256"});
    CHECK(r.maximum_size == 10000000);
    CHECK(r.last_modified.empty());
}

TEST_CASE("Expected-Checksum-FileSize is the file's size (0 too); a malformed or huge one is none") {
    auto size_of = [](const std::string& value) {
        return read_acquire_request(parse_message("600 URI Acquire\nURI: dopt+http://h/a\nFilename: /a\n"
                                                  "Expected-Checksum-FileSize: " + value + "\n"),
                                    "dopt+http")
            .expected_size;
    };
    CHECK(size_of("291") == std::optional<std::uint64_t>(291));
    CHECK(size_of("0") == std::optional<std::uint64_t>(0));  // an empty index is a known size
    CHECK(size_of("9223372036854775807") == std::optional<std::uint64_t>(INT64_MAX));
    CHECK_FALSE(size_of("9223372036854775808").has_value());  // more than the agent takes
    CHECK_FALSE(size_of("12a").has_value());
    CHECK_FALSE(size_of("-1").has_value());
    AcquireRequest none = read_acquire_request(
        parse_message("600 URI Acquire\nURI: dopt+http://h/a\nFilename: /a\n"), "dopt+http");
    CHECK_FALSE(none.expected_size.has_value());
}

TEST_CASE("weak hashes are computed only when apt expects no other") {
    AcquireRequest r = read_acquire_request(
        parse_message("600 URI Acquire\nURI: dopt+http://h/a\nFilename: /a\n"
                      "Expected-MD5Sum: 00\nExpected-SHA1: 11\n"),
        "dopt+http");
    CHECK(r.hash_kinds == std::vector<std::string>{"SHA1", "MD5Sum"});
    r = read_acquire_request(
        parse_message("600 URI Acquire\nURI: dopt+http://h/a\nFilename: /a\n"
                      "Expected-MD5Sum: 00\nExpected-SHA512: 22\nExpected-SHA256: 33\n"),
        "dopt+http");
    CHECK(r.hash_kinds == std::vector<std::string>{"SHA512", "SHA256"});
}

TEST_CASE("a malformed Expected-SHA256 gives the job no SHA-256, and apt still gets one to check") {
    AcquireRequest r = read_acquire_request(
        parse_message("600 URI Acquire\nURI: dopt+http://h/a\nFilename: /a\nExpected-SHA256: nothex\n"),
        "dopt+http");
    CHECK(r.sha256.empty());
    CHECK(r.hash_kinds == std::vector<std::string>{"SHA256"});
}

TEST_CASE("a 600 for another scheme or a relative file is refused with a reason") {
    CHECK_FALSE(read_acquire_request(parse_message("600 URI Acquire\nURI: dopt+https://h/a\nFilename: /a\n"),
                                     "dopt+http")
                    .error.empty());
    CHECK_FALSE(read_acquire_request(parse_message("600 URI Acquire\nURI: http://h/a\nFilename: /a\n"),
                                     "dopt+http")
                    .error.empty());
    CHECK(read_acquire_request(parse_message("600 URI Acquire\nURI: dopt+http://h/a\nFilename: a\n"),
                               "dopt+http")
              .error.find("not absolute") != std::string::npos);
    CHECK_FALSE(read_acquire_request(parse_message("600 URI Acquire\nFilename: /a\n"), "dopt+http")
                    .error.empty());
}

TEST_CASE("messages show a URI without its user name and password") {
    CHECK(without_user_info("dopt+http://ann:secret@h:80/a@b") == "dopt+http://h:80/a@b");
    CHECK(without_user_info("http://h/a") == "http://h/a");
    CHECK(without_user_info("http://h/p?x=a@b") == "http://h/p?x=a@b");
    AcquireRequest r = read_acquire_request(
        parse_message("600 URI Acquire\nURI: dopt+http://u:p@h/a\nFilename: rel\n"), "dopt+http");
    CHECK(r.uri == "dopt+http://u:p@h/a");
    CHECK(r.origin_url.empty());
    CHECK(r.error.find("u:p") == std::string::npos);
}
