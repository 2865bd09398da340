// lying_holder: a hostile LAN peer for the tests of peering from a SHA-256
// (test_sha256_peering.py). Through the p2p API every agent uses, it seeds
// one file and announces on the LAN that it holds SHA-256 X as that file's
// info-hash H, though the file's bytes are not X's: "X is H(other bytes)".
// Its metainfo is in the form an honest holder's has (v1, name = hex of X,
// the file's size, the piece size of that size): only the piece hashes,
// made from the other bytes, give the lie away. make_content_metainfo()
// refuses bytes that are not X's, so the lie is encoded here, and checked
// at start to match make_content_metainfo() byte for byte on the other
// file under its own SHA-256.
//
//   lying_holder --listen ADDR:PORT --sha256 X --file PATH --dir DIR
//                [--peer ADDR:PORT]... [--no-lsd] [--cofetch]
//
// With --cofetch it is a hostile co-fetcher instead: it wants X on the
// rendezvous; once honest co-fetchers name it in their split, it sends, for
// its own pieces of that split (p2p::cofetch_owners), the hashes of the other file's pieces (false), takes
// the honest hashes of the rest, builds the metainfo H they all build, and
// seeds its range from the other file. On stdout: "lied N" once it sent N
// false hashes, "lying H" once it seeds (only if it heard every honest
// hash before it was banned).
//
// DIR is made and holds the seeded copy. Once seeding and announcing, it
// prints "announced H" on stdout (H: the lowercase hex info-hash), then one
// line for each peer event, and runs until SIGTERM or SIGINT (exit 0).
// Exit 2 on bad arguments, 1 on any other error (message on stderr).
#include <fcntl.h>
#include <openssl/evp.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/hex.h"
#include "common/sha256.h"
#include "p2p/content.h"
#include "p2p/metainfo_summary.h"
#include "p2p/torrent_session.h"

namespace fs = std::filesystem;
namespace p2p = dopt::p2p;

namespace {

struct Options {
    p2p::SessionSettings session;
    std::string sha256;   // X, 64 hex digits
    std::string file;     // the other bytes
    std::string dir;
    bool cofetch = false;
};

[[noreturn]] void usage(const std::string& why) {
    std::fprintf(stderr,
                 "lying_holder: %s\n"
                 "usage: lying_holder --listen ADDR:PORT --sha256 HEX --file PATH --dir DIR "
                 "[--peer ADDR:PORT]... [--no-lsd]\n",
                 why.c_str());
    std::exit(2);
}

Options parse_options(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--no-lsd") {
            o.session.lan_discovery = false;
            continue;
        }
        if (a == "--cofetch") {
            o.cofetch = true;
            continue;
        }
        if (i + 1 >= argc) usage(a + " needs a value");
        std::string v = argv[++i];
        if (a == "--listen") o.session.listen = v;
        else if (a == "--peer") o.session.peers.push_back(v);
        else if (a == "--sha256") o.sha256 = v;
        else if (a == "--file") o.file = v;
        else if (a == "--dir") o.dir = v;
        else usage("unknown option " + a);
    }
    if (o.session.listen.empty() || o.file.empty() || o.dir.empty()) usage("missing option");
    if (!dopt::is_hex(o.sha256, 64, true)) usage("--sha256 needs 64 lowercase hex digits");
    return o;
}

std::string bstring(const std::string& s) { return std::to_string(s.size()) + ":" + s; }

// v1 metainfo of the file at `path` under `name`, in make_content_metainfo()'s
// form: an info dictionary of length, name, piece length (choose_piece_size)
// and pieces (SHA-1 of each), nothing else.
std::string v1_metainfo(const std::string& path, const std::string& name) {
    const std::uint64_t size = fs::file_size(path);
    const int piece_length = p2p::choose_piece_size(size);
    std::vector<unsigned char> piece(static_cast<std::size_t>(piece_length));
    std::string hashes;
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) throw std::runtime_error("cannot read " + path);
    for (std::size_t n; (n = std::fread(piece.data(), 1, piece.size(), f)) > 0;) {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int len = 0;
        EVP_Digest(piece.data(), n, md, &len, EVP_sha1(), nullptr);
        hashes.append(reinterpret_cast<const char*>(md), len);
    }
    std::fclose(f);
    return "d4:infod6:lengthi" + std::to_string(size) + "e4:name" + bstring(name) +
           "12:piece lengthi" + std::to_string(piece_length) + "e6:pieces" + bstring(hashes) + "ee";
}

std::string sha256_of_file(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    std::string hex = fd < 0 ? "" : dopt::sha256_of_fd(fd);
    if (fd >= 0) ::close(fd);
    if (hex.empty()) throw std::runtime_error("cannot read " + path);
    return hex;
}

// The other file, copied to DIR under the name an honest holder of X gives
// its content (hex of X), and the lie's metainfo; returns its bytes.
std::string lie_metainfo(const Options& o) {
    const std::string own_sha256 = sha256_of_file(o.file);
    if (own_sha256 == o.sha256) throw std::runtime_error(o.file + " is X itself: no lie");
    if (v1_metainfo(o.file, own_sha256) != p2p::make_content_metainfo(o.file, own_sha256))
        throw std::runtime_error("the lie would not have the form of an honest holder's metainfo");
    fs::create_directories(o.dir);
    const fs::path copy = fs::path(o.dir) / o.sha256;
    fs::copy_file(o.file, copy, fs::copy_options::overwrite_existing);
    return v1_metainfo(copy.string(), o.sha256);
}

// SIGTERM and SIGINT as a readable fd, so one poll() waits for both them
// and the session's events.
int signal_fd() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    if (sigprocmask(SIG_BLOCK, &set, nullptr) != 0) throw std::runtime_error("sigprocmask failed");
    int fd = signalfd(-1, &set, SFD_CLOEXEC);
    if (fd < 0) throw std::runtime_error("signalfd failed");
    return fd;
}

const char* event_name(p2p::TorrentEvent::Kind k) {
    using K = p2p::TorrentEvent::Kind;
    switch (k) {
    case K::PeerConnected: return "connected";
    case K::PeerDisconnected: return "disconnected";
    case K::PeerBanned: return "banned";
    case K::PeerBlocked: return "blocked";
    default: return nullptr;  // piece and torrent events: not of interest here
    }
}

// The v1 hash of piece `i` of the file at `path` (pieces of `piece` bytes).
std::string piece_hash_of(const std::string& path, std::uint64_t piece, int i) {
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) throw std::runtime_error("cannot read " + path);
    std::vector<char> buf(static_cast<std::size_t>(piece));
    std::fseek(f, static_cast<long>(piece * static_cast<std::uint64_t>(i)), SEEK_SET);
    const std::size_t n = std::fread(buf.data(), 1, buf.size(), f);
    std::fclose(f);
    return p2p::v1_piece_hash(buf.data(), n);
}

// --cofetch: see the header. Runs until a signal.
int run_cofetch(const Options& o, int sigfd) {
    p2p::TorrentSession session(o.session);
    const std::uint64_t size = fs::file_size(o.file);
    const auto piece = static_cast<std::uint64_t>(p2p::choose_piece_size(size));
    const int pieces = static_cast<int>(size / piece + (size % piece != 0));
    std::vector<std::string> hashes(static_cast<std::size_t>(pieces));
    bool lied = false, seeding = false;
    std::vector<int> lies;  // the pieces it sent false hashes of
    session.look_up_content(o.sha256);
    std::printf("wanting\n");
    std::fflush(stdout);
    pollfd fds[2] = {{sigfd, POLLIN, 0}, {session.event_fd(), POLLIN, 0}};
    while (poll(fds, 2, 200) >= 0 && !(fds[0].revents & POLLIN)) {
        session.tick();
        session.take_events();
        for (const p2p::ContentEvent& e : session.take_content_events()) {
            if (e.kind == p2p::ContentEvent::Kind::PieceHash && e.size == size && e.piece_sha1.size() == 20 &&
                hashes[static_cast<std::size_t>(e.piece)].empty())
                hashes[static_cast<std::size_t>(e.piece)] = e.piece_sha1;
            if (e.kind != p2p::ContentEvent::Kind::WantersChanged || lied) continue;
            for (const auto& [node, split] : e.splits) {
                auto me = std::find(split.begin(), split.end(), session.id());
                if (me == split.end()) continue;
                session.look_up_content(o.sha256, true, split);
                const std::vector<std::uint64_t> owners = p2p::cofetch_owners(split, pieces);
                for (int i = 0; i < pieces; ++i) {  // its own pieces, as honest co-fetchers count them
                    if (owners[static_cast<std::size_t>(i)] != session.id()) continue;
                    hashes[static_cast<std::size_t>(i)] = piece_hash_of(o.file, piece, i);
                    session.send_piece_hash(o.sha256, size, i, hashes[static_cast<std::size_t>(i)]);
                    lies.push_back(i);
                }
                lied = true;
                std::printf("lied %zu\n", lies.size());  // before it may be banned and hear no more
                std::fflush(stdout);
                break;
            }
        }
        // Its lies again at each turn (200 ms at most), for those connected
        // since: honest agents send newcomers their hashes too.
        for (int i : lies) session.send_piece_hash(o.sha256, size, i, hashes[static_cast<std::size_t>(i)]);
        if (lied && !seeding && std::none_of(hashes.begin(), hashes.end(), [](const std::string& h) { return h.empty(); })) {
            const std::string metainfo = p2p::content_metainfo_from_hashes(size, o.sha256, hashes);
            fs::create_directories(o.dir);
            fs::copy_file(o.file, fs::path(o.dir) / o.sha256, fs::copy_options::overwrite_existing);
            session.add_torrent(metainfo, o.dir, {});
            std::printf("lying %s\n", p2p::summarize_metainfo(metainfo).info_hash.c_str());
            std::fflush(stdout);
            seeding = true;
        }
    }
    return 0;
}

int run(const Options& o) {
    int sigfd = signal_fd();
    if (o.cofetch) return run_cofetch(o, sigfd);
    p2p::TorrentSession session(o.session);
    std::string metainfo = lie_metainfo(o);
    p2p::TorrentId torrent = session.add_torrent(metainfo, o.dir, {});
    session.announce_content(o.sha256, torrent);
    std::printf("announced %s\n", p2p::summarize_metainfo(metainfo).info_hash.c_str());
    std::fflush(stdout);
    pollfd fds[2] = {{sigfd, POLLIN, 0}, {session.event_fd(), POLLIN, 0}};
    while (poll(fds, 2, 1000) >= 0 && !(fds[0].revents & POLLIN)) {
        session.tick();
        for (const auto& e : session.take_events()) {
            if (const char* name = event_name(e.kind)) std::printf("%s %s\n", name, e.peer.c_str());
        }
        std::fflush(stdout);
    }
    session.withdraw_content(o.sha256);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    Options o = parse_options(argc, argv);
    try {
        return run(o);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "lying_holder: %s\n", e.what());
        return 1;
    }
}
