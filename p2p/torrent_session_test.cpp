// TorrentSession: torrents by id and libtorrent's alerts as dopt events,
// with a real session on 127.0.0.1 (OS-chosen port, LSD off) and metainfo
// made by make_metainfo(). No libtorrent header here: the agent's view.
#include <poll.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "p2p/metainfo_summary.h"
#include "p2p/torrent_session.h"

namespace fs = std::filesystem;
using dopt::p2p::TorrentEvent;
using dopt::p2p::TorrentId;
using dopt::p2p::TorrentSession;

namespace {

struct Dir {
    Dir() {
        std::string tmpl = "/tmp/dopt-torrent-session-test-XXXXXX";
        REQUIRE(mkdtemp(tmpl.data()) != nullptr);
        path = tmpl;
    }
    ~Dir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    fs::path path;
};

std::vector<char> read_all(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::vector<char>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Takes events until `done` says so (each event is seen once), or 30 s.
bool take_until(TorrentSession& s, std::vector<TorrentEvent>& seen,
                const std::function<bool(const TorrentEvent&)>& done) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (std::chrono::steady_clock::now() < deadline) {
        for (TorrentEvent& e : s.take_events()) {
            const bool stop = done(e);
            seen.push_back(std::move(e));
            if (stop) return true;
        }
        pollfd p{s.event_fd(), POLLIN, 0};
        ::poll(&p, 1, 100);
    }
    return false;
}

}  // namespace

TEST_CASE("TorrentSession reports pieces, hash failures, reads and resume data as events",
          "[p2p][torrent_session]") {
    Dir dir;
    const std::size_t size = 2 * 1024 * 1024 + 4321;  // 3 pieces of 1 MiB
    std::vector<char> content(size);
    std::mt19937_64 rng(7);
    for (auto& b : content) b = static_cast<char>(rng() & 0xff);
    const fs::path src = dir.path / "payload.bin";
    std::ofstream(src, std::ios::binary).write(content.data(), static_cast<long>(size));
    const std::string meta = dopt::p2p::make_metainfo(src.string(), "");
    const auto summary = dopt::p2p::summarize_metainfo(meta);
    REQUIRE(summary.num_pieces == 3);
    auto piece = [&](int i) {
        const auto off = static_cast<std::size_t>(i) * static_cast<std::size_t>(summary.piece_length);
        const auto len = std::min<std::size_t>(static_cast<std::size_t>(summary.piece_length), size - off);
        return std::vector<char>(content.begin() + static_cast<long>(off),
                                 content.begin() + static_cast<long>(off + len));
    };

    dopt::p2p::SessionSettings settings;
    settings.listen = "127.0.0.1:0";
    settings.lan_discovery = false;
    TorrentSession session(settings);
    const fs::path save = dir.path / "cache";
    fs::create_directories(save);
    const TorrentId t = session.add_torrent(meta, save.string(), {});
    REQUIRE(t != 0);
    CHECK(session.content_path(t) == (save / "payload.bin").string());

    std::vector<TorrentEvent> seen;
    auto is = [](TorrentEvent::Kind k) { return [k](const TorrentEvent& e) { return e.kind == k; }; };
    REQUIRE(take_until(session, seen, is(TorrentEvent::Kind::TorrentChecked)));
    CHECK_FALSE(session.status(t, true).checking);

    // A bad piece is refused, the right one verified.
    std::vector<char> bad = piece(0);
    bad[10] ^= 1;
    CHECK_FALSE(session.piece_matches_v1_hash(t, 0, bad.data(), bad.size()));
    CHECK(session.piece_matches_v1_hash(t, 0, piece(0).data(), piece(0).size()));
    session.add_piece(t, 0, bad);
    REQUIRE(take_until(session, seen, is(TorrentEvent::Kind::PieceHashFailed)));
    CHECK(seen.back().torrent == t);
    CHECK(seen.back().piece == 0);
    for (int i = 0; i < 3; ++i) session.add_piece(t, i, piece(i));
    REQUIRE(take_until(session, seen, is(TorrentEvent::Kind::TorrentFinished)));
    int verified = 0;
    for (const auto& e : seen)
        if (e.kind == TorrentEvent::Kind::PieceVerified && e.torrent == t) ++verified;
    CHECK(verified == 3);
    CHECK(session.status(t, true).pieces == std::vector<bool>{true, true, true});

    session.read_piece(t, 2);
    REQUIRE(take_until(session, seen, is(TorrentEvent::Kind::PieceRead)));
    const TorrentEvent& read = seen.back();
    CHECK(read.piece == 2);
    CHECK(std::vector<char>(read.data.get(), read.data.get() + read.size) == piece(2));

    session.save_resume_data(t);
    REQUIRE(take_until(session, seen, is(TorrentEvent::Kind::ResumeData)));
    CHECK_FALSE(seen.back().resume_data.empty());
    CHECK(read_all(save / "payload.bin") == content);

    // A removed torrent's id names nothing any more.
    session.remove_torrent(t, false);
    CHECK(session.status(t, true).pieces.empty());
    CHECK(session.peers(t).empty());
    CHECK(session.content_path(t).empty());
    session.read_piece(t, 0);  // a no-op
}

TEST_CASE("parse_peer_address gives the address as peers' addresses are written", "[p2p][torrent_session]") {
    auto v4 = dopt::p2p::parse_peer_address("10.1.2.3:6881", "peers", false);
    CHECK(v4.address == "10.1.2.3");
    CHECK(v4.port == 6881);
    CHECK_FALSE(v4.unspecified);
    auto v6 = dopt::p2p::parse_peer_address("[::]:0", "listen", true);
    CHECK(v6.address == "::");
    CHECK(v6.unspecified);
    CHECK_THROWS_WITH(dopt::p2p::parse_peer_address("10.1.2.3", "peers", false),
                      Catch::Contains("peers") && Catch::Contains("10.1.2.3"));
}
