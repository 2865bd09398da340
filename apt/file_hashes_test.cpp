#include "apt/file_hashes.h"

#include "tests/support/temp_dir.h"

#include <catch2/catch.hpp>

using namespace dopt::apt;

TEST_CASE("a file's hashes are reported under apt's names, with its size") {
    dopt::test::TempDir dir;
    std::string path = dir.path() + "/abc";
    dopt::test::write_file(path, "abc");
    std::vector<std::pair<std::string, std::string>> fields;
    std::uint64_t size = 0;
    std::string error;
    REQUIRE(hash_file(path, {"SHA256", "MD5Sum", "Whirlpool"}, fields, size, error));
    CHECK(size == 3);
    CHECK(fields == std::vector<std::pair<std::string, std::string>>{
                        {"SHA256-Hash", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
                        {"MD5Sum-Hash", "900150983cd24fb0d6963f7d28e17f72"},
                        {"Checksum-FileSize-Hash", "3"}});
}

TEST_CASE("a file that cannot be read is an error naming it") {
    std::vector<std::pair<std::string, std::string>> fields;
    std::uint64_t size = 0;
    std::string error;
    CHECK_FALSE(hash_file("/nonexistent/x.deb", {"SHA256"}, fields, size, error));
    CHECK(error.find("/nonexistent/x.deb") != std::string::npos);
}
