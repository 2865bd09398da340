#include "apt/progress_file.h"

#include "tests/support/temp_dir.h"

#include <catch2/catch.hpp>

#include <cstdio>
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

}  // namespace

TEST_CASE("the progress file grows with the job, stays below the whole size, holds no data and is dated 1970") {
    dopt::test::TempDir dir;
    std::string path = dir.file("pkg.deb");
    auto progress = ProgressFile::create(path);
    REQUIRE(progress);
    CHECK(stat_of(path).st_size == 0);
    progress->show(4096, 10000);
    CHECK(stat_of(path).st_size == 4096);
    CHECK(stat_of(path).st_mtim.tv_sec == 0);
    CHECK(stat_of(path).st_blocks == 0);  // holes only
    progress->show(10000, 10000);
    CHECK(stat_of(path).st_size == 9999);  // apt's http would take a whole-size partial file as done
    CHECK(stat_of(path).st_mtim.tv_sec == 0);
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
