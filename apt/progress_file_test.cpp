#include "apt/progress_file.h"

#include "tests/support/temp_dir.h"

#include <catch2/catch.hpp>

#include <cstdio>
#include <fcntl.h>
#include <sys/stat.h>

using namespace dopt::apt;

namespace {

struct stat stat_of(const std::string& path) {
    struct stat st {};
    REQUIRE(lstat(path.c_str(), &st) == 0);
    return st;
}

bool exists(const std::string& path) {
    struct stat st;
    return lstat(path.c_str(), &st) == 0;
}

bool dated_as_progress_file(const std::string& path) {
    const struct stat st = stat_of(path);
    return st.st_mtim.tv_sec == ProgressFile::kMarkSeconds && st.st_mtim.tv_nsec == 1;
}

}  // namespace

TEST_CASE("the progress file grows with the job, stays below the whole size, holds no data and is dated 2038") {
    dopt::test::TempDir dir;
    std::string path = dir.file("pkg.deb");
    auto progress = ProgressFile::create(path);
    REQUIRE(progress);
    CHECK(stat_of(path).st_size == 0);
    progress->show(4096, 10000);
    CHECK(stat_of(path).st_size == 4096);
    CHECK(dated_as_progress_file(path));
    CHECK(stat_of(path).st_blocks == 0);  // holes only
    progress->show(10000, 10000);
    CHECK(stat_of(path).st_size == 9999);  // apt's http would take a whole-size partial file as done
    CHECK(dated_as_progress_file(path));
    progress.reset();
    CHECK_FALSE(exists(path));
}

TEST_CASE("the file delivered over the progress file stays") {
    dopt::test::TempDir dir;
    std::string path = dir.file("pkg.deb");
    auto progress = ProgressFile::create(path);
    REQUIRE(progress);
    progress->show(2, 3);
    dopt::test::write_file(dir.file(".pkg.deb.partial"), "abc");
    REQUIRE(std::rename(dir.file(".pkg.deb.partial").c_str(), path.c_str()) == 0);  // the agent's delivery
    progress.reset();
    CHECK(dopt::test::read_file(path) == "abc");
}

TEST_CASE("apt's own partial file is never touched, and one a killed method left is taken over") {
    dopt::test::TempDir dir;
    std::string path = dir.file("pkg.deb");
    dopt::test::write_file(path, "the first bytes apt's http fetched");
    CHECK_FALSE(ProgressFile::create(path));
    CHECK(dopt::test::read_file(path) == "the first bytes apt's http fetched");

    auto left = ProgressFile::create(dir.file("left.deb"));
    REQUIRE(left);
    left->show(100, 1000);
    REQUIRE(rename(dir.file("left.deb").c_str(), path.c_str()) == 0);  // as if the method was killed
    left.reset();
    REQUIRE(stat_of(path).st_size == 100);
    auto progress = ProgressFile::create(path);
    REQUIRE(progress);
    CHECK(stat_of(path).st_size == 0);
}

TEST_CASE("apt's partial file dated as its origin's Last-Modified is never taken for a progress file") {
    // apt's http dates its partial file with the origin's Last-Modified, in
    // whole seconds: 1970-01-01 00:00:00 for origins of reproducible builds.
    dopt::test::TempDir dir;
    std::string path = dir.file("pkg.deb");
    for (time_t date : {time_t{0}, time_t{1}, ProgressFile::kMarkSeconds}) {
        dopt::test::write_file(path, "the first bytes apt's http fetched");
        const struct timespec times[2] = {{date, 0}, {date, 0}};
        REQUIRE(utimensat(AT_FDCWD, path.c_str(), times, 0) == 0);
        CHECK_FALSE(ProgressFile::create(path));
        CHECK(dopt::test::read_file(path) == "the first bytes apt's http fetched");
    }
}
