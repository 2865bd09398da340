#include <catch2/catch.hpp>

#include "agent/url.h"
#include "dopt/dopt.h"

using dopt::agent::check_url;

TEST_CASE("http and https URLs with a host are accepted", "[url]") {
    CHECK(check_url("http://127.0.0.1:8080/a/b.iso").rc == DOPT_OK);
    CHECK(check_url("https://example.invalid/x?y=1").scheme == "https");
}

TEST_CASE("malformed URLs are DOPT_E_INVALID_URL", "[url]") {
    CHECK(check_url("").rc == DOPT_E_INVALID_URL);
    CHECK(check_url("http://").rc == DOPT_E_INVALID_URL);
    CHECK(check_url("not a url").rc == DOPT_E_INVALID_URL);
    CHECK(check_url("/just/a/path").rc == DOPT_E_INVALID_URL);
    CHECK(check_url("http://host/a b").rc == DOPT_E_INVALID_URL);
}

TEST_CASE("schemes other than http and https are refused", "[url]") {
    auto r = check_url("ftp://host/file");
    CHECK(r.rc == DOPT_E_UNSUPPORTED_SCHEME);
    CHECK(r.message.find("ftp") != std::string::npos);
    CHECK(check_url("file:///etc/passwd").rc != DOPT_OK);
}
