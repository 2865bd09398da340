#include "agent/log.h"

#include <algorithm>
#include <catch2/catch.hpp>

using dopt::agent::journal_fields;
using dopt::agent::LogLevel;
using dopt::agent::set_job_url_lookup;
using dopt::agent::shareable_url;

namespace {
bool has(const std::vector<std::string>& fields, const std::string& field) {
    return std::find(fields.begin(), fields.end(), field) != fields.end();
}
bool has_name(const std::vector<std::string>& fields, const std::string& name) {
    return std::any_of(fields.begin(), fields.end(),
                       [&](const std::string& f) { return f.rfind(name + "=", 0) == 0; });
}
}  // namespace

TEST_CASE("a URL goes whole into DOPT_URL only without userinfo, query or fragment", "[log]") {
    CHECK(shareable_url("https://deb.debian.org/debian/pool/a.deb") ==
          "https://deb.debian.org/debian/pool/a.deb");
    CHECK(shareable_url("HTTP://127.0.0.1:8080/x") == "HTTP://127.0.0.1:8080/x");
    CHECK(shareable_url("http://host/a@b/c") == "http://host/a@b/c");  // '@' in the path only
    for (const char* secret : {"https://user:pw@host/a", "https://token@host/a",
                               "https://host/a?X-Amz-Signature=abc", "https://host/a?",
                               "https://host/a#k=v", "http://u@host", "ftp://host/a", "host/a",
                               "https://host/a b", "https://host/a\nDOPT_JOB=x", ""}) {
        INFO(secret);
        CHECK(shareable_url(secret).empty());
    }
}

TEST_CASE("journal fields: priority, the job from 'job ID:', its URL when shareable", "[log]") {
    std::string url = "https://mirror.example/pool/a.deb";
    set_job_url_lookup([&](const std::string& id) { return id == "1234-ab" ? url : ""; });

    auto f = journal_fields(LogLevel::Warn, "job 1234-ab: transient error, retry in 5 s");
    CHECK(has(f, "MESSAGE=job 1234-ab: transient error, retry in 5 s"));
    CHECK(has(f, "PRIORITY=4"));
    CHECK(has(f, "SYSLOG_IDENTIFIER=doptd"));
    CHECK(has(f, "DOPT_JOB=1234-ab"));
    CHECK(has(f, "DOPT_URL=https://mirror.example/pool/a.deb"));

    url = "https://user:secret@mirror.example/pool/a.deb?token=s3cret";
    f = journal_fields(LogLevel::Error, "job 1234-ab: failed");
    CHECK(has(f, "PRIORITY=3"));
    CHECK(has(f, "DOPT_JOB=1234-ab"));
    CHECK_FALSE(has_name(f, "DOPT_URL"));
    for (const auto& field : f) CHECK(field.find("secret") == std::string::npos);

    f = journal_fields(LogLevel::Info, "peer cache: evicted 2 entries");
    CHECK(has(f, "PRIORITY=6"));
    CHECK_FALSE(has_name(f, "DOPT_JOB"));
    CHECK_FALSE(has_name(f, "DOPT_URL"));
    CHECK_FALSE(has_name(journal_fields(LogLevel::Debug, "job : x"), "DOPT_JOB"));
    CHECK_FALSE(has_name(journal_fields(LogLevel::Debug, "job table: disk full"), "DOPT_JOB"));

    set_job_url_lookup(nullptr);  // the agent gone: the job still, no URL
    f = journal_fields(LogLevel::Debug, "job 1234-ab: done");
    CHECK(has(f, "PRIORITY=7"));
    CHECK(has(f, "DOPT_JOB=1234-ab"));
    CHECK_FALSE(has_name(f, "DOPT_URL"));
}
