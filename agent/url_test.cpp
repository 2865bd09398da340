#include <catch2/catch.hpp>

#include "agent/log.h"
#include "agent/url.h"
#include "dopt/dopt.h"

using dopt::agent::check_url;
using dopt::agent::url_may_carry_credentials;

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

TEST_CASE("log lines lose the userinfo, query and fragment of every URL", "[url][log]") {
    using dopt::agent::redact_url_secrets;
    CHECK(redact_url_secrets("job 1: GET https://user:pw@host:8443/a/b.iso?token=s3cret from byte 0") ==
          "job 1: GET https://[redacted]@host:8443/a/b.iso?[redacted] from byte 0");
    CHECK(redact_url_secrets("'HTTP://h/x#frag' and http://h2/y?k=v") ==
          "'HTTP://h/x?[redacted]' and http://h2/y?[redacted]");
    // An '@' in the path is not userinfo; a URL without secrets is unchanged.
    CHECK(redact_url_secrets("http://h/a@b/c") == "http://h/a@b/c");
    CHECK(redact_url_secrets("swarm 0123: piece 4 from http://127.0.0.1:80/f.iso") ==
          "swarm 0123: piece 4 from http://127.0.0.1:80/f.iso");
    CHECK(redact_url_secrets("https://tok@h?q") == "https://[redacted]@h?[redacted]");
    CHECK(redact_url_secrets("no url here: a://b?c") == "no url here: a://b?c");
    CHECK(redact_url_secrets("http://") == "http://");
}

TEST_CASE("user names, passwords and query strings may carry credentials", "[url]") {
    CHECK_FALSE(url_may_carry_credentials("http://127.0.0.1:8080/a/b.iso"));
    CHECK_FALSE(url_may_carry_credentials("https://host/a/b.iso#part"));
    CHECK(url_may_carry_credentials("https://user:pass@host/f"));
    CHECK(url_may_carry_credentials("https://user@host/f"));
    CHECK(url_may_carry_credentials("https://:pass@host/f"));
    CHECK(url_may_carry_credentials("https://host/f?token=s3cret"));
    CHECK(url_may_carry_credentials("https://host/f?x"));
    CHECK(url_may_carry_credentials("not a url"));
}
