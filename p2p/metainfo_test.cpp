// Unit tests of p2p/metainfo: make -> parse round trips (hybrid, v1, v2),
// what is refused and why, and the piece size table.
#include "p2p/metainfo.h"
#include "tests/support/temp_dir.h"

#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <random>
#include <string>

#include <sys/stat.h>
#include <unistd.h>

#include <libtorrent/bencode.hpp>
#include <libtorrent/create_torrent.hpp>
#include <libtorrent/entry.hpp>
#include <libtorrent/file_storage.hpp>

namespace lt = libtorrent;
using dopt::p2p::choose_piece_size;
using dopt::p2p::load_metainfo_file;
using dopt::p2p::make_metainfo;
using dopt::p2p::Metainfo;
using dopt::p2p::MetainfoError;
using dopt::p2p::parse_metainfo;

namespace {

constexpr std::uint64_t MiB = 1024 * 1024;
constexpr std::uint64_t GiB = 1024 * MiB;

using dopt::test::TempDir;

void write_random(const std::string& path, std::size_t size, unsigned seed = 1) {
    std::mt19937 rng(seed);
    std::string data(size, '\0');
    for (auto& c : data) c = static_cast<char>(rng());
    std::ofstream out(path, std::ios::binary);
    out.write(data.data(), static_cast<std::streamsize>(data.size()));
    REQUIRE(out.good());
}

void write_text(const std::string& path, const std::string& text) {
    std::ofstream out(path, std::ios::binary);
    out << text;
    REQUIRE(out.good());
}

std::string bencoded(const lt::entry& e) {
    std::string out;
    lt::bencode(std::back_inserter(out), e);
    return out;
}

// Metainfo for `path` made by libtorrent directly, with `flags`.
lt::entry make_with_flags(const std::string& dir, const std::string& path, lt::create_flags_t flags,
                          int piece_size = 256 * 1024) {
    lt::file_storage fs;
    lt::add_files(fs, path, flags);
    lt::create_torrent ct(fs, piece_size, flags);
    ct.add_url_seed("http://origin.invalid/x");
    ct.add_tracker("http://tracker.invalid/announce");
    lt::set_piece_hashes(ct, dir);
    return ct.generate();
}

std::string message_of(std::string_view bytes) {
    try {
        parse_metainfo(bytes);
    } catch (const MetainfoError& e) {
        return e.what();
    }
    return "(no error)";
}

}  // namespace

TEST_CASE("make_metainfo -> parse_metainfo: hybrid, stripped, sizes right", "[metainfo]") {
    TempDir dir;
    const std::size_t size = 3 * MiB + 12345;
    const std::string path = dir.file("payload.bin");
    write_random(path, size);

    std::string bytes = make_metainfo(path, "http://origin.invalid/payload.bin");
    // The url-list is in what an origin publishes...
    CHECK(bytes.find("8:url-list") != std::string::npos);
    CHECK(bytes.find("http://origin.invalid/payload.bin") != std::string::npos);
    CHECK(bytes.find("4:dopt") != std::string::npos);  // creator

    Metainfo m = parse_metainfo(bytes);
    REQUIRE(m.info);
    CHECK(m.info->info_hashes().has_v1());
    CHECK(m.info->info_hashes().has_v2());
    // ...and dropped from what the agent uses.
    CHECK(m.info->web_seeds().empty());
    CHECK(m.info->trackers().empty());
    CHECK(m.name == "payload.bin");
    CHECK(m.size == size);
    CHECK(m.piece_length == static_cast<int>(MiB));
    CHECK(m.num_pieces == 4);
    CHECK(m.info_hash.size() == 40);
    CHECK(m.info_hash.find_first_not_of("0123456789abcdef") == std::string::npos);

    SECTION("the same file gives the same info-hash") {
        Metainfo again = parse_metainfo(make_metainfo(path, ""));
        CHECK(again.info_hash == m.info_hash);  // url-list is outside the info dict
    }
    SECTION("load_metainfo_file reads what was written") {
        write_text(dir.file("payload.bin.torrent"), bytes);
        Metainfo f = load_metainfo_file(dir.file("payload.bin.torrent"));
        CHECK(f.info_hash == m.info_hash);
        CHECK(f.size == size);
        CHECK(dopt::p2p::read_metainfo_file(dir.file("payload.bin.torrent")) == bytes);
    }
    SECTION("hybrid: both info-hashes, as plain values without libtorrent") {
        dopt::p2p::MetainfoSummary s = dopt::p2p::summarize_metainfo(bytes);
        CHECK(s.info_hash == m.info_hash);  // the v1 hash
        CHECK(s.info_hash_v2.size() == 64);
        CHECK(s.info_hash_v2.find_first_not_of("0123456789abcdef") == std::string::npos);
        CHECK(s.name == "payload.bin");
        CHECK(s.size == size);
        CHECK(s.num_pieces == 4);
    }
}

TEST_CASE("make_metainfo V1: v1 only, the same v1 pieces as hybrid", "[metainfo]") {
    TempDir dir;
    const std::string path = dir.file("v1.bin");
    write_random(path, 2 * MiB + 1);
    const std::string bytes = make_metainfo(path, "", dopt::p2p::MetainfoFormat::V1);
    Metainfo m = parse_metainfo(bytes);
    REQUIRE(m.info);
    CHECK(m.info->info_hashes().has_v1());
    CHECK_FALSE(m.info->info_hashes().has_v2());
    CHECK(bytes.find("piece layers") == std::string::npos);
    CHECK(dopt::p2p::summarize_metainfo(bytes).info_hash_v2.empty());
    CHECK(m.num_pieces == 3);
    Metainfo hybrid = parse_metainfo(make_metainfo(path, ""));
    for (lt::piece_index_t i{0}; i < lt::piece_index_t{3}; ++i)
        CHECK(m.info->hash_for_piece(i) == hybrid.info->hash_for_piece(i));
    CHECK(m.info_hash != hybrid.info_hash);  // another info dict
}

TEST_CASE("make_metainfo without a web seed has no url-list", "[metainfo]") {
    TempDir dir;
    write_random(dir.file("a.bin"), MiB / 2);
    std::string bytes = make_metainfo(dir.file("a.bin"), "");
    CHECK(bytes.find("url-list") == std::string::npos);
    Metainfo m = parse_metainfo(bytes);
    CHECK(m.num_pieces == 1);
    CHECK(m.size == MiB / 2);
}

TEST_CASE("make_metainfo: a relative path", "[metainfo]") {
    TempDir dir;
    write_random(dir.file("rel.bin"), 100000);
    char old[4096];
    REQUIRE(::getcwd(old, sizeof old) != nullptr);
    REQUIRE(::chdir(dir.path().c_str()) == 0);
    std::string bytes;
    CHECK_NOTHROW(bytes = make_metainfo("rel.bin", ""));
    REQUIRE(::chdir(old) == 0);
    CHECK(parse_metainfo(bytes).name == "rel.bin");
}

TEST_CASE("make_metainfo refuses what it cannot publish", "[metainfo]") {
    TempDir dir;
    write_text(dir.file("empty"), "");
    write_random(dir.file("ok"), 1000);
    REQUIRE(::mkdir(dir.file("folder").c_str(), 0755) == 0);

    CHECK_THROWS_WITH(make_metainfo(dir.file("missing"), ""),
                      Catch::Contains("missing") && Catch::Contains("No such file"));
    CHECK_THROWS_WITH(make_metainfo(dir.file("empty"), ""), Catch::Contains("empty"));
    CHECK_THROWS_WITH(make_metainfo(dir.file("folder"), ""), Catch::Contains("folder"));
    CHECK_THROWS_WITH(make_metainfo(dir.file("ok"), "ftp://x/y"), Catch::Contains("http"));
    CHECK_THROWS_AS(make_metainfo("", ""), MetainfoError);
}

TEST_CASE("v1-only and v2-only metainfo are accepted", "[metainfo]") {
    TempDir dir;
    const std::size_t size = 2 * MiB + 7;
    write_random(dir.file("f.bin"), size, 7);
    // What both kinds share: the whole file in 9 pieces, no web seeds, no trackers.
    const auto check_plain_file = [size](const Metainfo& m) {
        CHECK(m.size == size);
        CHECK(m.num_pieces == 9);
        CHECK(m.info->web_seeds().empty());
        CHECK(m.info->trackers().empty());
    };

    SECTION("v1 only") {
        Metainfo m = parse_metainfo(
            bencoded(make_with_flags(dir.path(), dir.file("f.bin"), lt::create_torrent::v1_only)));
        CHECK(m.info->info_hashes().has_v1());
        CHECK_FALSE(m.info->info_hashes().has_v2());
        CHECK(m.info_hash.size() == 40);
        CHECK(m.info_hash_v2.empty());
        CHECK(m.piece_length == 256 * 1024);
        check_plain_file(m);
    }
    SECTION("v2 only") {
        Metainfo m = parse_metainfo(
            bencoded(make_with_flags(dir.path(), dir.file("f.bin"), lt::create_torrent::v2_only)));
        CHECK_FALSE(m.info->info_hashes().has_v1());
        CHECK(m.info->info_hashes().has_v2());
        CHECK(m.info_hash.size() == 64);
        CHECK(m.info_hash.find_first_not_of("0123456789abcdef") == std::string::npos);
        CHECK(m.info_hash_v2 == m.info_hash);
        check_plain_file(m);
    }
    SECTION("v2 without its piece layers is refused") {
        lt::entry e = make_with_flags(dir.path(), dir.file("f.bin"), lt::create_torrent::v2_only);
        e.dict().erase("piece layers");
        CHECK_THAT(message_of(bencoded(e)), Catch::Contains("piece layers"));
    }
}

TEST_CASE("multi-file metainfo is refused", "[metainfo]") {
    TempDir dir;
    REQUIRE(::mkdir(dir.file("set").c_str(), 0755) == 0);
    write_random(dir.file("set/one.bin"), 300000, 1);
    write_random(dir.file("set/two.bin"), 200000, 2);
    write_random(dir.file("set/three.bin"), 100000, 3);
    std::string bytes = bencoded(make_with_flags(dir.path(), dir.file("set"), {}));
    std::string msg = message_of(bytes);
    CHECK_THAT(msg, Catch::Contains("describes 3 files") && Catch::Contains("single-file"));
}

TEST_CASE("a one-file folder is accepted (pad files do not count)", "[metainfo]") {
    TempDir dir;
    REQUIRE(::mkdir(dir.file("set").c_str(), 0755) == 0);
    write_random(dir.file("set/only.bin"), 300000, 1);
    Metainfo m = parse_metainfo(bencoded(make_with_flags(dir.path(), dir.file("set"), {})));
    CHECK(m.name == "only.bin");
    CHECK(m.size == 300000);
}

TEST_CASE("what is not metainfo is refused with a message", "[metainfo]") {
    CHECK_THAT(message_of(""), Catch::Contains("not a .torrent file"));
    CHECK_THAT(message_of("this is not bencode at all"), Catch::Contains("not a .torrent file"));
    CHECK_THAT(message_of(std::string("\x00\xff\x13garbage", 10)), Catch::Contains("not a .torrent file"));
    CHECK_THAT(message_of("i42e"), Catch::Contains("not a dictionary"));
    CHECK_THAT(message_of("d3:fooi1ee"), Catch::Contains("no 'info'"));
    CHECK_THAT(message_of("d4:infoi1ee"), Catch::Contains("no 'info'"));
    CHECK_THAT(message_of("d4:infod4:name1:xee"), Catch::Contains("invalid metainfo"));

    TempDir dir;
    write_random(dir.file("f"), MiB + 1);
    std::string good = make_metainfo(dir.file("f"), "http://o.invalid/f");
    REQUIRE_NOTHROW(parse_metainfo(good));
    for (std::size_t cut : {good.size() / 4, good.size() / 2, good.size() - 1})
        CHECK_THROWS_AS(parse_metainfo(std::string_view(good).substr(0, cut)), MetainfoError);

    std::string huge(dopt::p2p::kMaxMetainfoBytes + 1, 'x');
    CHECK_THAT(message_of(huge), Catch::Contains("too large"));
}

TEST_CASE("pieces over 16 MiB are refused, naming the piece length", "[metainfo]") {
    TempDir dir;
    write_random(dir.file("f.bin"), 3 * MiB, 5);
    for (lt::create_flags_t flags : {lt::create_flags_t{}, lt::create_torrent::v1_only,
                                     lt::create_torrent::v2_only}) {
        std::string at_most = bencoded(make_with_flags(dir.path(), dir.file("f.bin"), flags, static_cast<int>(16 * MiB)));
        CHECK(parse_metainfo(at_most).piece_length == static_cast<int>(16 * MiB));
        std::string over = bencoded(make_with_flags(dir.path(), dir.file("f.bin"), flags, static_cast<int>(32 * MiB)));
        CHECK_THAT(message_of(over), Catch::Contains("piece length is 33554432 bytes") &&
                                         Catch::Contains("at most 16777216"));
    }
    SECTION("load_metainfo_file too") {
        write_text(dir.file("big.torrent"),
                   bencoded(make_with_flags(dir.path(), dir.file("f.bin"), {}, static_cast<int>(64 * MiB))));
        CHECK_THROWS_WITH(load_metainfo_file(dir.file("big.torrent")),
                          Catch::Contains("big.torrent") && Catch::Contains("67108864"));
    }
}

TEST_CASE("load_metainfo_file names the path", "[metainfo]") {
    TempDir dir;
    CHECK_THROWS_WITH(load_metainfo_file(dir.file("nope.torrent")),
                      Catch::Contains("nope.torrent") && Catch::Contains("No such file"));
    write_text(dir.file("junk.torrent"), "<html>not found</html>");
    CHECK_THROWS_WITH(load_metainfo_file(dir.file("junk.torrent")),
                      Catch::Contains("junk.torrent") && Catch::Contains("not a .torrent file"));
    CHECK_THROWS_WITH(load_metainfo_file(dir.path()), Catch::Contains("folder"));
    CHECK_THROWS_WITH(dopt::p2p::read_metainfo_file(dir.file("junk.torrent")),
                      Catch::Contains("junk.torrent") && Catch::Contains("not a .torrent file"));
}

TEST_CASE("choose_piece_size", "[metainfo]") {
    CHECK(choose_piece_size(0) == 1 * MiB);
    CHECK(choose_piece_size(1) == 1 * MiB);
    CHECK(choose_piece_size(100 * MiB) == 1 * MiB);
    CHECK(choose_piece_size(1 * GiB) == 1 * MiB);  // 1024 pieces
    CHECK(choose_piece_size(2 * GiB) == 1 * MiB);  // 2048 pieces
    CHECK(choose_piece_size(2 * GiB + 1) == 2 * MiB);
    CHECK(choose_piece_size(4 * GiB) == 2 * MiB);  // 2048 pieces
    CHECK(choose_piece_size(8 * GiB) == 4 * MiB);
    CHECK(choose_piece_size(32 * GiB) == 16 * MiB);
    CHECK(choose_piece_size(100 * GiB) == 16 * MiB);  // capped: 6400 pieces
    CHECK(choose_piece_size(UINT64_MAX) == 16 * MiB);
    for (std::uint64_t s : {std::uint64_t{1}, 3 * GiB, 17 * GiB, 1000 * GiB}) {
        int p = choose_piece_size(s);
        CHECK((p & (p - 1)) == 0);
    }
}
