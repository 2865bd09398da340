// Content identity (p2p/content.h): deterministic metainfo, and the
// dopt_content extension between real sessions on 127.0.0.1 with static
// peers (LSD off), plus a hand-made hostile peer.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <libtorrent/alert_types.hpp>
#include <libtorrent/bencode.hpp>
#include <libtorrent/create_torrent.hpp>
#include <libtorrent/hasher.hpp>
#include <libtorrent/torrent_status.hpp>

#include "common/hex.h"
#include "common/sha256.h"
#include "p2p/content.h"
#include "p2p/metainfo.h"
#include "p2p/session.h"
#include "p2p/session_test_support.h"
#include "tests/support/temp_dir.h"

namespace fs = std::filesystem;
using namespace dopt::p2p;
using namespace dopt::p2p::test_support;
using dopt::test::TempDir;

namespace {

// Writes `size` random bytes to `path`; returns their SHA-256 (hex).
std::string write_random_file(const fs::path& path, std::size_t size) {
    std::vector<char> bytes(size);
    std::mt19937_64 rng(std::random_device{}());
    for (auto& b : bytes) b = static_cast<char>(rng() & 0xff);
    std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<long>(size));
    dopt::Sha256 h;
    h.update(bytes.data(), bytes.size());
    return h.finish_hex();
}

// A holder's side: the file as `dir`/<sha256>, its content metainfo.
struct HeldFile {
    std::string sha256;
    Metainfo meta;
    std::string dir;
};

HeldFile hold_file(const TempDir& tmp, const std::string& name, std::size_t size) {
    HeldFile f;
    f.dir = tmp.subdir(name);
    const fs::path src = tmp.file(name + ".src");
    f.sha256 = write_random_file(src, size);
    fs::copy_file(src, fs::path(f.dir) / f.sha256);
    f.meta = parse_metainfo(make_content_metainfo(src.string(), f.sha256));
    return f;
}

std::vector<ContentEvent> take_kind(std::vector<ContentEvent>& all, PeerSession& s,
                                    ContentEvent::Kind kind) {
    for (auto& e : s.take_content_events()) all.push_back(std::move(e));
    std::vector<ContentEvent> out;
    for (const auto& e : all)
        if (e.kind == kind) out.push_back(e);
    return out;
}

// The last WantersChanged event `s` reported for `sha256` (nullptr: none yet).
const ContentEvent* last_wanters(const std::vector<ContentEvent>& events, const std::string& sha256) {
    const ContentEvent* last = nullptr;
    for (const auto& e : events)
        if (e.kind == ContentEvent::Kind::WantersChanged && e.sha256 == sha256) last = &e;
    return last;
}

std::string v1_hex(const lt::info_hash_t& ih) { return dopt::to_hex(ih.v1.data(), ih.v1.size()); }


// A file's bytes, and the v1 SHA-1 of each of their pieces of `piece` bytes
// (libtorrent's hasher: not the code under test).
std::string read_bytes(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}
std::vector<std::string> sha1_of_pieces(const std::string& bytes, std::size_t piece) {
    std::vector<std::string> hashes;
    for (std::size_t off = 0; off < bytes.size(); off += piece) {
        const lt::sha1_hash h =
            lt::hasher(bytes.data() + off, static_cast<int>(std::min(piece, bytes.size() - off))).final();
        hashes.emplace_back(h.data(), h.size());
    }
    return hashes;
}
}  // namespace

TEST_CASE("content metainfo: the same bytes give the same info-hash, named by the SHA-256",
          "[p2p][content]") {
    TempDir tmp;
    const std::string sha = write_random_file(tmp.file("one.bin"), 3 * 1024 * 1024 + 777);
    fs::copy_file(tmp.file("one.bin"), tmp.file("two-with-another-name.bin"));
    ::chmod(tmp.file("two-with-another-name.bin").c_str(), 0755);

    const std::string a = make_content_metainfo(tmp.file("one.bin"), sha);
    const std::string b = make_content_metainfo(tmp.file("two-with-another-name.bin"), sha);
    CHECK(a == b);
    const Metainfo m = parse_metainfo(a);
    CHECK(m.name == sha);
    CHECK(m.piece_length == choose_piece_size(3 * 1024 * 1024 + 777));
    CHECK(m.info_hash_v2.empty());  // v1: BEP 9 passes the whole metainfo
    CHECK(a.find("creation date") == std::string::npos);
    CHECK(a.find("created by") == std::string::npos);
    CHECK(a.find("url-list") == std::string::npos);

    // Two sessions adding it see one info-hash.
    PeerSession s1(loopback_settings()), s2(loopback_settings());
    CHECK(s1.add_torrent(m.info, tmp.subdir("s1"), {}).info_hashes() ==
          s2.add_torrent(parse_metainfo(b).info, tmp.subdir("s2"), {}).info_hashes());
    // Nothing of the hashing is left beside the file.
    for (const auto& entry : fs::directory_iterator(tmp.path()))
        CHECK(entry.path().filename().string().rfind(".dopt-content-", 0) == std::string::npos);
}

TEST_CASE("content metainfo from piece hashes is byte for byte the whole file's",
          "[p2p][content]") {
    TempDir tmp;
    const std::uint64_t size = 3 * 1024 * 1024 + 777;  // 4 pieces, the last short
    const std::string sha = write_random_file(tmp.file("f.bin"), size);
    const auto piece = static_cast<std::size_t>(choose_piece_size(size));
    std::vector<std::string> hashes = sha1_of_pieces(read_bytes(tmp.file("f.bin")), piece);
    REQUIRE(hashes.size() == 4);
    const std::string whole = make_content_metainfo(tmp.file("f.bin"), sha);
    CHECK(content_metainfo_from_hashes(size, sha, hashes) == whole);
    // libtorrent's own hashing of the file gives the same info-hash.
    lt::file_storage fs;
    fs.add_file(sha, static_cast<std::int64_t>(size));
    lt::create_torrent ct(fs, static_cast<int>(piece), lt::create_torrent::v1_only);
    fs::create_directories(tmp.path() + "/lt");
    fs::copy_file(tmp.file("f.bin"), tmp.path() + "/lt/" + sha);
    lt::set_piece_hashes(ct, tmp.path() + "/lt");
    std::string by_libtorrent;
    lt::bencode(std::back_inserter(by_libtorrent), ct.generate());
    CHECK(parse_metainfo(whole).info_hash == parse_metainfo(by_libtorrent).info_hash);
    // Hashes that do not fit the size are refused.
    CHECK_THROWS_AS(content_metainfo_from_hashes(size + piece, sha, hashes), MetainfoError);
    hashes[1].pop_back();
    CHECK_THROWS_AS(content_metainfo_from_hashes(size, sha, hashes), MetainfoError);
}

TEST_CASE("a co-fetch segment's metainfo is its pieces of the file, named by X and its first piece",
          "[p2p][content]") {
    TempDir tmp;
    const std::uint64_t size = 3 * 1024 * 1024 + 777;  // 4 pieces, the last short
    const std::string sha = write_random_file(tmp.file("f.bin"), size);
    const std::string bytes = read_bytes(tmp.file("f.bin"));
    const int piece = choose_piece_size(size);
    const auto up = static_cast<std::size_t>(piece);
    const std::vector<std::string> hashes = sha1_of_pieces(bytes, up);
    REQUIRE(hashes.size() == 4);
    // The segment of pieces 2 and 3 (the short last one) is libtorrent's
    // torrent of those bytes, one file named "<X>.2".
    const std::vector<std::string> last_two(hashes.begin() + 2, hashes.end());
    const std::uint64_t seg_size = size - 2 * up;
    const std::string seg = cofetch_segment_metainfo(sha, 2, piece, seg_size, last_two);
    CHECK(cofetch_segment_name(sha, 2) == sha + ".2");
    lt::file_storage fs;
    fs.add_file(sha + ".2", static_cast<std::int64_t>(seg_size));
    lt::create_torrent ct(fs, piece, lt::create_torrent::v1_only);
    fs::create_directories(tmp.path() + "/lt");
    {
        std::ofstream out(tmp.path() + "/lt/" + sha + ".2", std::ios::binary);
        out.write(bytes.data() + 2 * up, static_cast<std::streamsize>(seg_size));
    }
    lt::set_piece_hashes(ct, tmp.path() + "/lt");
    std::string by_libtorrent;
    lt::bencode(std::back_inserter(by_libtorrent), ct.generate());
    CHECK(parse_metainfo(seg).info_hash == parse_metainfo(by_libtorrent).info_hash);
    // Deterministic, and distinct from the whole file's and another segment's.
    CHECK(cofetch_segment_metainfo(sha, 2, piece, seg_size, last_two) == seg);
    const std::vector<std::string> first_two(hashes.begin(), hashes.begin() + 2);
    const std::string other = cofetch_segment_metainfo(sha, 0, piece, 2 * up, first_two);
    CHECK(parse_metainfo(other).info_hash != parse_metainfo(seg).info_hash);
    CHECK(parse_metainfo(content_metainfo_from_hashes(size, sha, hashes)).info_hash != parse_metainfo(seg).info_hash);
    // Hashes that do not fit, a bad piece length or first piece, not a SHA-256: refused.
    CHECK_THROWS_AS(cofetch_segment_metainfo(sha, 2, piece, seg_size + up, last_two), MetainfoError);
    CHECK_THROWS_AS(cofetch_segment_metainfo(sha, 2, piece + 1, seg_size, last_two), MetainfoError);
    CHECK_THROWS_AS(cofetch_segment_metainfo(sha, -1, piece, seg_size, last_two), MetainfoError);
    CHECK_THROWS_AS(cofetch_segment_metainfo("f00", 2, piece, seg_size, last_two), MetainfoError);
}

TEST_CASE("content metainfo is refused for bytes that are not the SHA-256", "[p2p][content]") {
    TempDir tmp;
    const std::string sha = write_random_file(tmp.file("f.bin"), 1000);
    std::string other = sha;
    other[0] = other[0] == '0' ? '1' : '0';
    CHECK_THROWS_AS(make_content_metainfo(tmp.file("f.bin"), other), MetainfoError);
    CHECK_THROWS_AS(make_content_metainfo(tmp.file("f.bin"), "xyz"), MetainfoError);
    CHECK_THROWS_AS(make_content_metainfo(tmp.file("missing"), sha), MetainfoError);
    // Upper-case hex names the same content, and the name is lowercase.
    std::string upper = sha;
    std::transform(upper.begin(), upper.end(), upper.begin(), ::toupper);
    CHECK(parse_metainfo(make_content_metainfo(tmp.file("f.bin"), upper)).name == sha);
}

TEST_CASE("a wanter learns a holder's mapping and takes the info dictionary by BEP 9; "
          "the rendezvous torrent exchanges no payload",
          "[p2p][content]") {
    TempDir tmp;
    const HeldFile f = hold_file(tmp, "holder", 2 * 1024 * 1024 + 99);
    PeerSession holder(loopback_settings());
    const lt::torrent_handle h = holder.add_torrent(f.meta.info, f.dir, {});
    Pump pump_h({&holder});
    REQUIRE(pump_h.run_until([&] { return is_state(h, lt::torrent_status::seeding); }));
    holder.announce_content(f.sha256, h.info_hashes());

    PeerSession wanter(with_static_peer(holder));
    wanter.look_up_content(f.sha256);
    Pump pump({&holder, &wanter});
    std::vector<ContentEvent> events;
    REQUIRE(pump.run_until([&] {
        return !take_kind(events, wanter, ContentEvent::Kind::HolderFound).empty();
    }));
    const ContentEvent found = take_kind(events, wanter, ContentEvent::Kind::HolderFound).front();
    CHECK(found.sha256 == f.sha256);
    CHECK(found.info_hash == v1_hex(h.info_hashes()));
    CHECK(found.peer == address_of(holder));  // where it listens, whoever connected

    // R: connected, no metadata, no payload either way.
    for (PeerSession* s : {&holder, &wanter}) {
        const lt::torrent_status st = s->rendezvous_torrent(f.sha256).status();
        CHECK_FALSE(st.has_metadata);
        CHECK(st.num_peers >= 1);
        CHECK(st.total_payload_download == 0);
        CHECK(st.total_payload_upload == 0);
    }

    // The info dictionary from the holder, checked against H by libtorrent.
    bool got_metadata = false;
    Pump pump_meta({&holder, &wanter}, [&](std::size_t i, lt::alert* a) {
        if (i == 1 && lt::alert_cast<lt::metadata_received_alert>(a)) got_metadata = true;
    });
    const lt::torrent_handle m = wanter.add_torrent_for_metadata(
        *parse_info_hash_hex(found.info_hash), tmp.subdir("w"), found.peer);
    REQUIRE(pump_meta.run_until([&] { return got_metadata; }));
    const Metainfo taken = parse_metainfo(metainfo_of(*m.torrent_file()));
    CHECK(taken.info->info_hashes() == h.info_hashes());
    CHECK(taken.name == f.sha256);
    CHECK(m.status().total_payload_download == 0);  // upload mode: metadata only

    // Leaving: the rendezvous torrent goes.
    wanter.stop_looking_up(f.sha256);
    holder.withdraw_content(f.sha256);
    CHECK_FALSE(wanter.rendezvous_torrent(f.sha256).is_valid());
    CHECK_FALSE(holder.rendezvous_torrent(f.sha256).is_valid());
}

TEST_CASE("wanters see each other's node ids, a leaver drops out, and a mapping announced "
          "later reaches a connected wanter",
          "[p2p][content]") {
    TempDir tmp;
    const HeldFile f = hold_file(tmp, "a", 1024 * 1024 + 5);
    PeerSession a(loopback_settings());
    PeerSession b(with_static_peer(a));
    PeerSession c(with_static_peer(a));
    a.look_up_content(f.sha256);
    b.look_up_content(f.sha256);
    c.look_up_content(f.sha256);
    Pump pump({&a, &b, &c});
    std::vector<ContentEvent> ea, eb, ec;
    auto wanters_of = [&](std::vector<ContentEvent>& all, PeerSession& s) {
        take_kind(all, s, ContentEvent::Kind::WantersChanged);
        const ContentEvent* last = last_wanters(all, f.sha256);
        return last ? last->wanters : std::vector<std::uint64_t>{};
    };
    auto sorted = [](std::vector<std::uint64_t> v) {
        std::sort(v.begin(), v.end());
        return v;
    };
    // a is connected to both; b and c only to a.
    REQUIRE(pump.run_until([&] {
        return wanters_of(ea, a) == sorted({b.id(), c.id()}) &&
               wanters_of(eb, b) == std::vector<std::uint64_t>{a.id()};
    }));

    // c leaves R: a sees it go.
    c.stop_looking_up(f.sha256);
    REQUIRE(pump.run_until([&] { return wanters_of(ea, a) == std::vector<std::uint64_t>{b.id()}; }));

    // b says it fetches X from the origin, then that it no longer does.
    auto fetchers_of = [&](std::vector<ContentEvent>& all, PeerSession& s) {
        take_kind(all, s, ContentEvent::Kind::WantersChanged);
        const ContentEvent* last = last_wanters(all, f.sha256);
        return last ? last->fetchers : std::vector<std::uint64_t>{};
    };
    b.look_up_content(f.sha256, /*fetching_from_origin=*/true);
    REQUIRE(pump.run_until([&] { return fetchers_of(ea, a) == std::vector<std::uint64_t>{b.id()}; }));
    b.look_up_content(f.sha256, false);
    REQUIRE(pump.run_until([&] { return fetchers_of(ea, a).empty(); }));
    CHECK(wanters_of(ea, a) == std::vector<std::uint64_t>{b.id()});

    // a fetched the file meanwhile and now holds it: b, already connected,
    // hears the mapping and no longer counts a as a wanter.
    const lt::torrent_handle h = a.add_torrent(f.meta.info, f.dir, {});
    REQUIRE(pump.run_until([&] { return is_state(h, lt::torrent_status::seeding); }));
    a.announce_content(f.sha256, h.info_hashes());
    REQUIRE(pump.run_until([&] {
        return !take_kind(eb, b, ContentEvent::Kind::HolderFound).empty() &&
               wanters_of(eb, b).empty();
    }));
    CHECK(take_kind(eb, b, ContentEvent::Kind::HolderFound).front().info_hash ==
          v1_hex(h.info_hashes()));
    // A holder is not told about holders and wanters.
    CHECK(take_kind(ea, a, ContentEvent::Kind::HolderFound).empty());
}

TEST_CASE("malformed dopt_content messages are ignored and counted; the connection lives on",
          "[p2p][content]") {
    TempDir tmp;
    const std::string sha = write_random_file(tmp.file("x.bin"), 100);
    const ContentSha256 x = *parse_sha256_hex(sha);
    PeerSession a(loopback_settings());
    a.look_up_content(sha);
    Pump pump({&a});

    RawPeer peer(a.listen_port());
    peer.handshake(rendezvous_info_hash(x).v1);
    ContentState wrong_x{x, 7, 6881, std::nullopt};
    wrong_x.x[0] = static_cast<char>(wrong_x.x[0] ^ 1);
    // Our extended handshake: we speak dopt_content (as id 3), with a state
    // for another SHA-256.
    peer.send(RawPeer::extended(0, "d1:md12:dopt_contenti3ee12:dopt_content" +
                                       encode_content_state(wrong_x) + "e"));
    const int id = kContentMessageId;
    ContentState holder{x, 9, 6881, lt::sha1_hash("01234567890123456789")};
    std::string short_h = encode_content_state(holder);
    short_h.replace(short_h.find("1:h20:"), 6 + 20, "1:h19:0123456789012345678");
    const std::string bad_messages[] = {
        "",                                          // empty
        "not bencode",                               // garbage
        "d1:xi5ee",                                  // x not a string
        encode_content_state(wrong_x),               // another SHA-256
        short_h,                                     // an info-hash of 19 bytes
        std::string(kMaxContentMessageSize + 1, 'd'),  // too long
    };
    for (const auto& m : bad_messages) peer.send(RawPeer::extended(id, m));
    // Then a good one, split over two writes: it arrives, so the connection
    // survived everything above.
    const std::string good = RawPeer::extended(id, encode_content_state(holder));
    peer.send(good.substr(0, 9));
    pump.run_until([] { return false; }, std::chrono::milliseconds(200));
    peer.send(good.substr(9));

    std::vector<ContentEvent> events;
    REQUIRE(pump.run_until([&] {
        return !take_kind(events, a, ContentEvent::Kind::HolderFound).empty();
    }));
    CHECK(take_kind(events, a, ContentEvent::Kind::HolderFound).front().peer == "127.0.0.1:6881");
    CHECK(a.content_messages_ignored() == 1 + std::size(bad_messages));
    CHECK(take_kind(events, a, ContentEvent::Kind::MessageIgnored).size() == 1 + std::size(bad_messages));
}

TEST_CASE("content states are coded as docs/protocol.md says", "[p2p][content]") {
    ContentSha256 x{};
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<char>(i);
    const ContentState wanter{x, 0x0102030405060708ull, 6881, std::nullopt};
    const std::string coded = encode_content_state(wanter);
    CHECK(coded == "d1:n8:\x01\x02\x03\x04\x05\x06\x07\x08" "1:pi6881e1:x32:" +
                       std::string(x.data(), x.size()) + "e");
    const auto back = parse_content_message({coded.data(), static_cast<long>(coded.size())}, x);
    REQUIRE(back);
    CHECK(back->node == wanter.node);
    CHECK(back->port == 6881);
    CHECK_FALSE(back->holds);
    ContentState bad_port = wanter;
    bad_port.port = 0;
    const std::string zero = encode_content_state(bad_port);
    CHECK_FALSE(parse_content_message({zero.data(), static_cast<long>(zero.size())}, x));

    // A wanter fetching X from the origin adds "f": 1.
    ContentState fetching = wanter;
    fetching.fetching = true;
    const std::string with_f = encode_content_state(fetching);
    CHECK(with_f == "d1:fi1e1:n8:\x01\x02\x03\x04\x05\x06\x07\x08" "1:pi6881e1:x32:" +
                        std::string(x.data(), x.size()) + "e");
    const auto f_back = parse_content_message({with_f.data(), static_cast<long>(with_f.size())}, x);
    REQUIRE(f_back);
    CHECK(f_back->fetching);
    CHECK_FALSE(back->fetching);
    // "f" other than the integer 1, or beside "h", is malformed.
    for (const std::string& f : {std::string("i2e"), std::string("1:1")}) {
        const std::string bad = "d1:f" + f + coded.substr(1);
        CHECK_FALSE(parse_content_message({bad.data(), static_cast<long>(bad.size())}, x));
    }
    const std::string h_and_f = "d1:fi1e1:h20:" + std::string(20, 'h') + coded.substr(1);
    CHECK_FALSE(parse_content_message({h_and_f.data(), static_cast<long>(h_and_f.size())}, x));
    CHECK(rendezvous_info_hash(x) != rendezvous_info_hash(ContentSha256{}));
    CHECK_FALSE(parse_sha256_hex("abc"));
    CHECK_THROWS_AS(PeerSession(loopback_settings()).look_up_content("not-a-sha"), std::invalid_argument);
}

TEST_CASE("co-fetch pieces are shared out evenly, the same way by every view, and a view one "
          "node short moves few pieces besides that node's",
          "[p2p][content]") {
    std::mt19937_64 rng(7);
    for (int round = 0; round < 50; ++round) {
        const int k = 2 + round % 7;             // 2..8 co-fetchers
        const int pieces = 6 + (round * 37) % 200;  // 6..205 pieces
        std::vector<std::uint64_t> nodes;
        for (int i = 0; i < k; ++i) nodes.push_back(rng());
        std::sort(nodes.begin(), nodes.end());
        const std::vector<std::uint64_t> owners = cofetch_owners(nodes, pieces);
        REQUIRE(owners.size() == static_cast<std::size_t>(pieces));

        // Every owner is a member, every member gets floor or ceil of its
        // share (plain rendezvous hashing gave some none), and the order of
        // the set does not matter.
        std::map<std::uint64_t, int> count;
        for (std::uint64_t o : owners) {
            CHECK(std::binary_search(nodes.begin(), nodes.end(), o));
            ++count[o];
        }
        int above = 0;
        for (std::uint64_t n : nodes) {
            CHECK(count[n] >= pieces / k);
            CHECK(count[n] <= pieces / k + 1);
            above += count[n] == pieces / k + 1;
        }
        CHECK(above == pieces % k);
        std::vector<std::uint64_t> reversed(nodes.rbegin(), nodes.rend());
        CHECK(cofetch_owners(reversed, pieces) == owners);

        // A view one node short: besides that node's pieces, few move (with
        // contiguous ranks about half the file moved).
        for (std::size_t missing = 0; missing < nodes.size(); ++missing) {
            std::vector<std::uint64_t> fewer = nodes;
            fewer.erase(fewer.begin() + static_cast<std::ptrdiff_t>(missing));
            const std::vector<std::uint64_t> part = cofetch_owners(fewer, pieces);
            int others_moved = 0;
            for (int p = 0; p < pieces; ++p)
                if (owners[static_cast<std::size_t>(p)] != nodes[missing] &&
                    part[static_cast<std::size_t>(p)] != owners[static_cast<std::size_t>(p)])
                    ++others_moved;
            CAPTURE(k, pieces, others_moved);
            CHECK(others_moved <= pieces / 4);
        }
    }

    // Ranks: the unbounded owner is 0, the others 1..k-1, once each; a node
    // not in the set k.
    std::vector<std::uint64_t> eight;
    for (int i = 0; i < 8; ++i) eight.push_back(rng());
    for (int p = 0; p < 128; ++p) {
        std::vector<std::size_t> ranks;
        for (std::uint64_t n : eight) ranks.push_back(cofetch_piece_rank(eight, p, n));
        CHECK(cofetch_piece_rank(eight, p, cofetch_piece_owner(eight, p)) == 0);
        std::sort(ranks.begin(), ranks.end());
        for (std::size_t r = 0; r < ranks.size(); ++r) CHECK(ranks[r] == r);
        CHECK(cofetch_piece_rank(eight, p, 12345) == 8);
    }

    // One node alone owns everything; no node, no owners.
    CHECK(cofetch_owners({eight[3]}, 4) == std::vector<std::uint64_t>(4, eight[3]));
    CHECK(cofetch_owners({}, 4).empty());
}

TEST_CASE("co-fetchers' splits and piece messages are coded as docs/protocol.md says",
          "[p2p][content]") {
    ContentSha256 x{};
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<char>(i);
    const std::string xs(x.data(), x.size());
    auto decode = [](const std::string& s) {
        lt::error_code ec;
        return lt::bdecode({s.data(), static_cast<long>(s.size())}, ec);
    };
    // A co-fetcher says "c": the split's node ids, 8 bytes each, sorted.
    ContentState co{x, 2, 6881, std::nullopt, true, {1, 2, 3}};
    const std::string coded = encode_content_state(co);
    const std::string ids = std::string("\0\0\0\0\0\0\0\1", 8) + std::string("\0\0\0\0\0\0\0\2", 8) +
                            std::string("\0\0\0\0\0\0\0\3", 8);
    CHECK(coded == "d1:c24:" + ids + "1:fi1e1:n8:" + std::string("\0\0\0\0\0\0\0\2", 8) +
                       "1:pi6881e1:x32:" + xs + "e");
    const auto back = parse_content_message({coded.data(), static_cast<long>(coded.size())}, x);
    REQUIRE(back);
    CHECK(back->split == std::vector<std::uint64_t>{1, 2, 3});
    // Unsorted, without the sender, not whole ids, or without "f": refused.
    for (const std::vector<std::uint64_t>& split : {std::vector<std::uint64_t>{3, 2}, {1, 3}}) {
        ContentState bad = co;
        bad.split = split;
        const std::string b = encode_content_state(bad);
        CHECK_FALSE(parse_content_message({b.data(), static_cast<long>(b.size())}, x));
    }
    const std::string short_c = "d1:c7:1234567" + coded.substr(coded.find("1:fi1e"));
    CHECK_FALSE(parse_content_message({short_c.data(), static_cast<long>(short_c.size())}, x));
    const std::string no_f = "d1:c8:" + std::string("\0\0\0\0\0\0\0\2", 8) + coded.substr(coded.find("1:n8:"));
    CHECK_FALSE(parse_content_message({no_f.data(), static_cast<long>(no_f.size())}, x));

    // A piece hash, and a claim.
    const std::uint64_t size = 3 * 1024 * 1024 + 1;  // 4 pieces of 1 MiB
    const ContentPieceHash hash{x, 7, size, 3, std::string(20, 's')};
    const std::string h = encode_piece_hash(hash);
    CHECK(h == "d1:ii3e1:n8:" + std::string("\0\0\0\0\0\0\0\7", 8) + "1:s20:" + std::string(20, 's') +
                   "1:x32:" + xs + "1:zi3145729ee");
    const auto hb = parse_piece_hash(decode(h), x);
    REQUIRE(hb);
    CHECK((hb->node == 7 && hb->piece == 3 && hb->size == size && hb->sha1 == hash.sha1));
    const std::string claim = encode_piece_hash(ContentPieceHash{x, 7, size, 0, ""});
    CHECK(claim.find("1:gi1e") != std::string::npos);
    const auto cb = parse_piece_hash(decode(claim), x);
    REQUIRE(cb);
    CHECK(cb->sha1.empty());
    // A piece past the end, a size of 0, a short hash, both or neither of
    // "s" and "g", another X: refused.
    for (const ContentPieceHash& bad :
         {ContentPieceHash{x, 7, size, 4, hash.sha1}, ContentPieceHash{x, 7, 0, 0, hash.sha1},
          ContentPieceHash{x, 7, size, 0, std::string(19, 's')}})
        CHECK_FALSE(parse_piece_hash(decode(encode_piece_hash(bad)), x));
    const std::string both = "d1:gi1e" + h.substr(1);
    CHECK_FALSE(parse_piece_hash(decode(both), x));
    const std::string neither = h.substr(0, h.find("1:s20:")) + h.substr(h.find("1:x32:"));
    CHECK_FALSE(parse_piece_hash(decode(neither), x));
    CHECK_FALSE(parse_piece_hash(decode(h), ContentSha256{}));
}

TEST_CASE("an address banned for a false mapping is refused on the rendezvous", "[p2p][content]") {
    TempDir tmp;
    const std::string sha = write_random_file(tmp.file("x.bin"), 100);
    const ContentSha256 x = *parse_sha256_hex(sha);
    PeerSession a(loopback_settings());
    a.look_up_content(sha);
    CHECK_FALSE(a.ban_address("not an address"));
    REQUIRE(a.ban_address("127.0.0.2"));
    Pump pump({&a});

    // The banned address says it holds X first, another address after it:
    // only the second is heard.
    auto say_holder = [&](RawPeer& peer, int port) {
        peer.handshake(rendezvous_info_hash(x).v1);
        const ContentState holder{x, 1, port, lt::sha1_hash("01234567890123456789")};
        peer.send(RawPeer::extended(0, "d1:md12:dopt_contenti3ee12:dopt_content" +
                                           encode_content_state(holder) + "e"));
    };
    RawPeer banned(a.listen_port(), "127.0.0.2");
    try {
        say_holder(banned, 1111);
    } catch (const std::runtime_error&) {
        // refused while sending: as good
    }
    RawPeer allowed(a.listen_port(), "127.0.0.3");
    say_holder(allowed, 3333);
    std::vector<ContentEvent> events;
    REQUIRE(pump.run_until([&] {
        return !take_kind(events, a, ContentEvent::Kind::HolderFound).empty();
    }));
    const auto found = take_kind(events, a, ContentEvent::Kind::HolderFound);
    REQUIRE(found.size() == 1);
    CHECK(found.front().peer == "127.0.0.3:3333");
}
