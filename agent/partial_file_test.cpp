// PartialFile (partial_file.h) on real files: bytes in order in every write
// mode, the kept prefix of an earlier run, the flushed prefix, reset, the
// SHA-256 and a sticky write error.
#include "agent/partial_file.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <fcntl.h>
#include <memory>
#include <string>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/test_support.h"
#include "common/sha256.h"

using dopt::agent::PartialFile;
using dopt::agent::test::read_file;
using dopt::agent::test::TempDir;
using dopt::agent::test::write_file;

namespace {

// `n` bytes that differ from one MiB to the next, so a misplaced buffer shows.
std::string pattern(std::size_t n) {
    std::string s(n, '\0');
    for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 7 + i / 1000003) & 0xff);
    return s;
}

std::string sha256_of(const std::string& bytes) {
    dopt::Sha256 sha;
    sha.update(bytes.data(), bytes.size());
    return sha.finish_hex();
}

std::unique_ptr<PartialFile> adopt(const std::string& path, std::uint64_t keep, bool want_sha256,
                                   bool durable, std::uint64_t durable_bytes = 0) {
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    REQUIRE(fd >= 0);
    int err = 0;
    auto pf = PartialFile::adopt(fd, keep, durable_bytes, want_sha256, durable, &err);
    REQUIRE(pf);
    CHECK(err == 0);
    return pf;
}

// Appends `bytes` in uneven pieces, as the network hands them over.
int append_in_pieces(PartialFile& pf, const std::string& bytes) {
    std::size_t at = 0, piece = 1;
    while (at < bytes.size()) {
        std::size_t n = std::min(piece, bytes.size() - at);
        if (int e = pf.append(bytes.data() + at, n)) return e;
        at += n;
        piece = piece * 3 % 300007 + 1;
    }
    return 0;
}

}  // namespace

TEST_CASE("appended bytes reach the file in order in every write mode", "[partial_file]") {
    TempDir dir;
    const std::string path = dir.file("f.partial");
    const std::string bytes = pattern((3u << 20) + 12345);  // buffers of 1 MiB and a tail
    bool want_sha256 = false, durable = false;
    SECTION("written by the caller") {}
    SECTION("written by the writer thread, flushed as it goes") { durable = true; }
    SECTION("hashed by the writer thread") { want_sha256 = true; }

    auto pf = adopt(path, 0, want_sha256, durable);
    REQUIRE(append_in_pieces(*pf, bytes) == 0);
    CHECK(pf->size() == bytes.size());
    REQUIRE(pf->sync() == 0);
    CHECK(read_file(path) == bytes);
    CHECK(pf->finish_sha256() == (want_sha256 ? sha256_of(bytes) : ""));
}

TEST_CASE("adopt keeps the trusted prefix, cuts the rest and hashes from byte 0", "[partial_file]") {
    TempDir dir;
    const std::string path = dir.file("f.partial");
    // An earlier run wrote 10 trusted bytes; what follows them is not trusted.
    write_file(path, "0123456789-untrusted-tail");

    auto pf = adopt(path, 10, /*want_sha256=*/true, /*durable=*/false);
    CHECK(pf->size() == 10);
    struct stat st{};
    REQUIRE(::stat(path.c_str(), &st) == 0);
    CHECK(st.st_size == 10);

    REQUIRE(pf->append("abc", 3) == 0);
    REQUIRE(pf->sync() == 0);
    CHECK(read_file(path) == "0123456789abc");
    CHECK(pf->finish_sha256() == sha256_of("0123456789abc"));
}

TEST_CASE("durable_size is the prefix known flushed: kept, synced, none after reset",
          "[partial_file]") {
    TempDir dir;
    const std::string path = dir.file("f.partial");
    write_file(path, "0123456789");
    bool durable = false;
    SECTION("flushes off") {}
    SECTION("flushed as it goes") { durable = true; }

    // 10 bytes trusted, 4 of them flushed before a restart.
    auto pf = adopt(path, 10, /*want_sha256=*/false, durable, /*durable_bytes=*/4);
    CHECK(pf->durable_size() == 4);
    REQUIRE(pf->append("abc", 3) == 0);
    REQUIRE(pf->flush() == 0);
    CHECK(pf->durable_size() == 4);  // written, not flushed
    REQUIRE(pf->sync() == 0);
    CHECK(pf->durable_size() == 13);
    REQUIRE(pf->reset() == 0);
    CHECK(pf->durable_size() == 0);
}

TEST_CASE("reset drops every byte and starts the hash over", "[partial_file]") {
    TempDir dir;
    const std::string path = dir.file("f.partial");
    auto pf = adopt(path, 0, /*want_sha256=*/true, /*durable=*/true);
    const std::string old_version = pattern((1u << 20) + 5);
    REQUIRE(pf->append(old_version.data(), old_version.size()) == 0);
    REQUIRE(pf->flush() == 0);

    REQUIRE(pf->reset() == 0);
    CHECK(pf->size() == 0);
    CHECK(read_file(path).empty());

    REQUIRE(pf->append("new", 3) == 0);
    REQUIRE(pf->sync() == 0);
    CHECK(read_file(path) == "new");
    CHECK(pf->finish_sha256() == sha256_of("new"));
}

TEST_CASE("a write error is sticky: the next append and sync return it", "[partial_file]") {
    TempDir dir;
    const std::string path = dir.file("f.partial");
    bool durable = false;
    SECTION("written by the caller") {}
    SECTION("written by the writer thread") { durable = true; }

    // A file size limit of 1 MiB makes the second buffer's write fail with
    // EFBIG, as a full disk fails with ENOSPC.
    rlimit old_limit{};
    REQUIRE(::getrlimit(RLIMIT_FSIZE, &old_limit) == 0);
    auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
    rlimit small = old_limit;
    small.rlim_cur = 1u << 20;
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &small) == 0);

    auto pf = adopt(path, 0, /*want_sha256=*/false, durable);
    const std::string bytes = pattern(3u << 20);
    int appended = append_in_pieces(*pf, bytes);
    int synced = pf->sync();
    int next = pf->append("x", 1);

    ::setrlimit(RLIMIT_FSIZE, &old_limit);
    std::signal(SIGXFSZ, old_handler);
    CHECK((appended == 0 || appended == -EFBIG));
    CHECK(synced == -EFBIG);
    CHECK(next == -EFBIG);
    // What reached the file is a prefix of what was appended.
    std::string on_disk = read_file(path);
    CHECK(on_disk.size() == (1u << 20));
    CHECK(on_disk == bytes.substr(0, on_disk.size()));
}
