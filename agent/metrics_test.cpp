#include "agent/metrics.h"
#include "tests/support/temp_dir.h"

#include <catch2/catch.hpp>
#include <filesystem>
#include <iterator>

#include <sys/stat.h>
#include <unistd.h>

using namespace dopt::agent;
using dopt::test::read_file;
using dopt::test::TempDir;

namespace {

std::size_t entries(const std::string& dir) {
    return static_cast<std::size_t>(std::distance(std::filesystem::directory_iterator(dir), {}));
}

}  // namespace

TEST_CASE("months are UTC calendar months, and the one before January is December", "[metrics]") {
    CHECK(month_of(1796083200) == "2026-12");  // 2026-12-01T00:00:00Z
    CHECK(month_of(1796083199) == "2026-11");
    CHECK(month_before("2026-12") == "2026-11");
    CHECK(month_before("2027-01") == "2026-12");
}

TEST_CASE("a user's usage sums hold their own counts and the agent's, root's every one", "[metrics]") {
    UsageTotals usage({{"2026-11", 1000, kOriginReceivedBytes, 5}, {"2026-12", 1001, kOriginReceivedBytes, 7}});
    usage.add(kAgentOwner, kPeerSentBytes, 3, 1796083200);
    usage.add(1000, kOriginReceivedBytes, 2, 1796083200);
    CHECK(usage.sum(kOriginReceivedBytes, "", owners_visible_to(0)) == 14);
    CHECK(usage.sum(kOriginReceivedBytes, "", owners_visible_to(1000)) == 7);
    CHECK(usage.sum(kOriginReceivedBytes, "2026-12", owners_visible_to(1000)) == 2);
    CHECK(usage.sum(kPeerSentBytes, "", owners_visible_to(1000)) == 3);
    CHECK(usage.unwritten());
}

TEST_CASE("the textfile is replaced with mode 0644 and no file left beside it", "[metrics]") {
    TempDir dir;
    const std::string path = dir.file("dopt.prom");
    const mode_t old_umask = ::umask(077);
    CHECK(write_textfile(path, "a 1\n").empty());
    CHECK(write_textfile(path, "a 2\n").empty());
    ::umask(old_umask);
    CHECK(read_file(path) == "a 2\n");
    struct stat st{};
    REQUIRE(::stat(path.c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 0644);
    CHECK(entries(dir.path()) == 1);
}

TEST_CASE("a symlink at the textfile's name is replaced, never written through", "[metrics]") {
    TempDir dir;
    const std::string target = dir.write("elsewhere", "keep me\n");
    const std::string path = dir.file("dopt.prom");
    REQUIRE(::symlink(target.c_str(), path.c_str()) == 0);
    CHECK(write_textfile(path, "a 1\n").empty());
    CHECK(read_file(target) == "keep me\n");
    struct stat st{};
    REQUIRE(::lstat(path.c_str(), &st) == 0);
    CHECK(S_ISREG(st.st_mode));
    CHECK(read_file(path) == "a 1\n");
}

TEST_CASE("a textfile folder every user may write, or that is missing, is refused and left alone", "[metrics]") {
    TempDir dir;
    const std::string open_dir = dir.subdir("open");
    REQUIRE(::chmod(open_dir.c_str(), 01777) == 0);
    CHECK_THAT(write_textfile(open_dir + "/dopt.prom", "a 1\n"), Catch::Contains("writable by every user"));
    CHECK(entries(open_dir) == 0);
    CHECK_THAT(write_textfile(dir.file("missing/dopt.prom"), "a 1\n"), Catch::Contains("cannot open the folder"));
}

TEST_CASE("the text names counters and gauges with their types and no owner", "[metrics]") {
    UsageTotals usage({{"2026-12", 1000, kOriginReceivedBytes, 5}});
    MetricsGauges gauges;
    gauges.jobs_by_state["queued"] = 2;
    const std::string text = prometheus_text(usage, owners_visible_to(0), gauges, 1796083200);
    CHECK_THAT(text, Catch::Contains("# TYPE dopt_origin_received_bytes_total counter\n"
                                     "dopt_origin_received_bytes_total 5\n"));
    CHECK_THAT(text, Catch::Contains("dopt_month_origin_received_bytes{month=\"2026-12\"} 5\n"
                                     "dopt_month_origin_received_bytes{month=\"2026-11\"} 0\n"));
    CHECK_THAT(text, Catch::Contains("# TYPE dopt_jobs gauge\ndopt_jobs{state=\"queued\"} 2\n"));
    CHECK_THAT(text, Catch::Contains("dopt_job_errors_total{context=\"integrity\"} 0\n"));
    CHECK(text.find("1000") == std::string::npos);
}
