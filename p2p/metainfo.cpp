// Metainfo: reading, checking and publishing .torrent files. See metainfo.h.
#include "p2p/metainfo.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <algorithm>
#include <iterator>
#include <vector>

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libtorrent/bdecode.hpp>
#include <libtorrent/bencode.hpp>
#include <libtorrent/create_torrent.hpp>
#include <libtorrent/error_code.hpp>
#include <libtorrent/file_storage.hpp>
#include <libtorrent/hasher.hpp>
#include <libtorrent/info_hash.hpp>

#include "common/hex.h"
#include "common/sha256.h"

namespace lt = libtorrent;

namespace dopt::p2p {

namespace {

constexpr int kMiB = 1024 * 1024;
constexpr int kMinPiece = kMiB;
constexpr std::uint64_t kTargetPieces = 2048;  // "about 2,000"

std::string plural(long long n, const char* one, const char* many) {
    return std::to_string(n) + " " + (n == 1 ? one : many);
}

// The folder holding `path` (absolute or relative), for set_piece_hashes().
std::string parent_dir(const std::string& path) {
    std::string p = path;
    while (p.size() > 1 && p.back() == '/') p.pop_back();
    auto slash = p.rfind('/');
    if (slash == std::string::npos) return ".";
    return slash == 0 ? "/" : p.substr(0, slash);
}

}  // namespace

Metainfo parse_metainfo(std::string_view bytes) {
    if (bytes.empty()) throw MetainfoError("not a .torrent file: it is empty");
    if (bytes.size() > kMaxMetainfoBytes)
        throw MetainfoError("metainfo too large: " + std::to_string(bytes.size()) +
                            " bytes (at most " + std::to_string(kMaxMetainfoBytes) + ")");

    lt::error_code ec;
    int error_pos = 0;
    lt::bdecode_node root =
        lt::bdecode(lt::span<char const>(bytes.data(), static_cast<std::ptrdiff_t>(bytes.size())),
                    ec, &error_pos);
    if (ec)
        throw MetainfoError("not a .torrent file: " + ec.message() + " at byte " +
                            std::to_string(error_pos));
    if (root.type() != lt::bdecode_node::dict_t)
        throw MetainfoError("not a .torrent file: the top level is not a dictionary");
    if (root.dict_find_dict("info").type() != lt::bdecode_node::dict_t)
        throw MetainfoError("not a .torrent file: it has no 'info' dictionary");

    std::shared_ptr<lt::torrent_info> ti;
    try {
        ti = std::make_shared<lt::torrent_info>(root, ec);
    } catch (const std::exception& e) {
        throw MetainfoError(std::string("invalid metainfo: ") + e.what());
    }
    if (ec) throw MetainfoError("invalid metainfo: " + ec.message());
    if (!ti->is_valid()) throw MetainfoError("invalid metainfo: it describes no files");
    if (ti->piece_length() > kMaxPieceLength)
        throw MetainfoError("the metainfo's piece length is " + std::to_string(ti->piece_length()) +
                            " bytes; dopt takes pieces of at most " +
                            std::to_string(kMaxPieceLength) + " bytes (16 MiB)");

    const lt::file_storage& fs = ti->files();
    lt::file_index_t the_file{-1};
    int real_files = 0;
    for (lt::file_index_t i : fs.file_range()) {
        if (fs.pad_file_at(i)) continue;
        ++real_files;
        the_file = i;
    }
    if (real_files != 1)
        throw MetainfoError("the metainfo describes " + plural(real_files, "file", "files") +
                            "; dopt takes single-file metainfo");
    if (fs.file_flags(the_file) & lt::file_storage::flag_symlink)
        throw MetainfoError("the metainfo describes a symbolic link, not a file");
    std::int64_t size = fs.file_size(the_file);
    if (size <= 0) throw MetainfoError("the metainfo describes an empty file");

    const lt::info_hash_t& ih = ti->info_hashes();
    // v2 (and hybrid): the piece hashes of a file longer than one piece are
    // in "piece layers", outside the info dictionary. Without them pieces
    // cannot be checked as they arrive.
    if (ih.has_v2() && ti->piece_layer(the_file).empty())
        throw MetainfoError("incomplete metainfo: it has no piece layers for its file "
                            "(v2 metainfo must carry them)");

    // The agent fetches from the origin itself and never talks to trackers.
    ti->clear_trackers();
    ti->set_web_seeds({});

    Metainfo m;
    if (ih.has_v2()) m.info_hash_v2 = to_hex(ih.v2.data(), ih.v2.size());
    m.info_hash = ih.has_v1() ? to_hex(ih.v1.data(), ih.v1.size()) : m.info_hash_v2;
    m.name = std::string(fs.file_name(the_file));
    m.size = static_cast<std::uint64_t>(size);
    m.piece_length = ti->piece_length();
    m.num_pieces = ti->num_pieces();
    m.info = std::move(ti);
    return m;
}

MetainfoSummary summarize_metainfo(std::string_view bytes) { return parse_metainfo(bytes); }

namespace {

// Reads the metainfo file at `path` into `bytes` and parses it. Throws
// MetainfoError naming the path.
Metainfo read_and_parse(const std::string& path, std::string& bytes) {
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) throw MetainfoError("cannot read " + path + ": " + std::strerror(errno));
    struct stat sb;
    if (::fstat(::fileno(f), &sb) != 0) {
        int err = errno;
        std::fclose(f);
        throw MetainfoError("cannot read " + path + ": " + std::strerror(err));
    }
    if (S_ISDIR(sb.st_mode)) {
        std::fclose(f);
        throw MetainfoError("cannot read " + path + ": it is a folder");
    }
    char buf[65536];
    for (;;) {
        std::size_t n = std::fread(buf, 1, sizeof buf, f);
        bytes.append(buf, n);
        if (bytes.size() > kMaxMetainfoBytes) {
            std::fclose(f);
            throw MetainfoError(path + ": metainfo too large (more than " +
                                std::to_string(kMaxMetainfoBytes) + " bytes)");
        }
        if (n < sizeof buf) break;
    }
    bool failed = std::ferror(f) != 0;
    int err = errno;
    std::fclose(f);
    if (failed) throw MetainfoError("cannot read " + path + ": " + std::strerror(err));
    try {
        return parse_metainfo(bytes);
    } catch (const MetainfoError& e) {
        throw MetainfoError(path + ": " + e.what());
    }
}

}  // namespace

Metainfo load_metainfo_file(const std::string& path) {
    std::string bytes;
    return read_and_parse(path, bytes);
}

std::string read_metainfo_file(const std::string& path) {
    std::string bytes;
    read_and_parse(path, bytes);
    return bytes;
}

namespace {

// Hashes the file of `ct` found under `dir` and returns the bencoded
// metainfo; errors name `path`.
std::string hash_and_encode(lt::create_torrent& ct, const std::string& dir, const std::string& path) {
    lt::error_code ec;
    lt::set_piece_hashes(ct, dir, ec);
    if (ec) throw MetainfoError("cannot hash " + path + ": " + ec.message());
    std::string out;
    lt::bencode(std::back_inserter(out), ct.generate());
    return out;
}

}  // namespace

int choose_piece_size(std::uint64_t size) {
    int piece = kMinPiece;
    auto pieces = [size](int p) {
        auto up = static_cast<std::uint64_t>(p);
        return size / up + (size % up != 0);  // no overflow near UINT64_MAX
    };
    while (piece < kMaxPieceLength && pieces(piece) > kTargetPieces) piece *= 2;
    return piece;
}

std::string make_metainfo(const std::string& path, const std::string& web_seed, MetainfoFormat format) {
    if (path.empty()) throw MetainfoError("no file given");
    struct stat sb;
    if (::stat(path.c_str(), &sb) != 0)
        throw MetainfoError("cannot read " + path + ": " + std::strerror(errno));
    if (S_ISDIR(sb.st_mode))
        throw MetainfoError(path + " is a folder; dopt publishes single files");
    if (!S_ISREG(sb.st_mode)) throw MetainfoError(path + " is not a regular file");
    if (sb.st_size == 0) throw MetainfoError(path + " is empty; there is nothing to publish");
    if (!web_seed.empty() && web_seed.rfind("http://", 0) != 0 && web_seed.rfind("https://", 0) != 0)
        throw MetainfoError("the web seed must be an http:// or https:// URL, not '" + web_seed + "'");
    // stat() said readable? Only open() can tell; check now for a clear message
    // rather than libtorrent's hashing error.
    if (std::FILE* f = std::fopen(path.c_str(), "rb")) std::fclose(f);
    else throw MetainfoError("cannot read " + path + ": " + std::strerror(errno));

    const std::string parent = parent_dir(path);
    try {
        lt::file_storage fs;
        lt::add_files(fs, path);
        if (fs.num_files() != 1)
            throw MetainfoError("cannot publish " + path + ": expected one file, found " +
                                std::to_string(fs.num_files()));
        // A file replaced between stat() and here is caught by the hashing.
        lt::create_torrent ct(fs, choose_piece_size(static_cast<std::uint64_t>(fs.total_size())),
                              format == MetainfoFormat::V1 ? lt::create_torrent::v1_only
                                                           : lt::create_flags_t{});
        ct.set_creator("dopt");
        if (!web_seed.empty()) ct.add_url_seed(web_seed);
        return hash_and_encode(ct, parent, path);
    } catch (const MetainfoError&) {
        throw;
    } catch (const std::exception& e) {
        throw MetainfoError("cannot make metainfo for " + path + ": " + e.what());
    }
}

namespace {

// Owns a file descriptor.
struct Fd {
    int fd;
    ~Fd() {
        if (fd >= 0) ::close(fd);
    }
};

}  // namespace

namespace {

// The name of X's content torrent: X in lowercase hex. Throws unless X is
// 64 hex digits.
std::string content_name(const std::string& sha256) {
    if (!is_hex(sha256, 64)) throw MetainfoError("not a SHA-256 (64 hex digits): " + sha256);
    std::string name = sha256;
    for (char& c : name) c = static_cast<char>(c >= 'A' && c <= 'F' ? c - 'A' + 'a' : c);
    return name;
}

// The v1 SHA-1 of each piece of the file open at `fd` (`size` bytes).
std::vector<std::string> v1_piece_hashes(int fd, std::uint64_t size, const std::string& path) {
    const auto piece = static_cast<std::uint64_t>(choose_piece_size(size));
    std::vector<std::string> hashes;
    std::vector<char> buf(static_cast<std::size_t>(piece));
    for (std::uint64_t off = 0; off < size; off += piece) {
        const std::size_t len = static_cast<std::size_t>(std::min(piece, size - off));
        std::size_t got = 0;
        while (got < len) {
            ssize_t n = ::pread(fd, buf.data() + got, len - got, static_cast<off_t>(off + got));
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) throw MetainfoError("cannot read " + path + ": " + std::strerror(errno));
            if (n == 0) throw MetainfoError("cannot read " + path + ": it became shorter");
            got += static_cast<std::size_t>(n);
        }
        const lt::sha1_hash h = lt::hasher(buf.data(), static_cast<int>(len)).final();
        hashes.emplace_back(h.data(), h.size());
    }
    return hashes;
}

}  // namespace

std::string v1_piece_hash(const char* data, std::size_t len) {
    const lt::sha1_hash h = lt::hasher(data, static_cast<int>(len)).final();
    return std::string(h.data(), h.size());
}

std::vector<std::string> v1_piece_hashes_of(std::string_view bytes) {
    const Metainfo m = parse_metainfo(bytes);
    if (!m.info->info_hashes().has_v1()) throw MetainfoError("not v1 metainfo");
    std::vector<std::string> out;
    for (lt::piece_index_t i : m.info->piece_range()) {
        const lt::sha1_hash h = m.info->hash_for_piece(i);
        out.emplace_back(h.data(), h.size());
    }
    return out;
}

namespace {
// A deterministic v1 metainfo: one file `name` of `size` bytes, pieces of
// `piece` bytes with these hashes, no creation date or anything else.
std::string v1_metainfo_from_hashes(const std::string& name, std::uint64_t size, int piece,
                                    const std::vector<std::string>& piece_hashes) {
    const auto up = static_cast<std::uint64_t>(piece);
    if (size == 0 || piece <= 0 || piece_hashes.size() != size / up + (size % up != 0))
        throw MetainfoError("piece hashes do not fit a file of " + std::to_string(size) + " bytes");
    lt::file_storage fs;
    fs.add_file(name, static_cast<std::int64_t>(size));
    lt::create_torrent ct(fs, piece, lt::create_torrent::v1_only);
    ct.set_creation_date(0);
    for (std::size_t i = 0; i < piece_hashes.size(); ++i) {
        if (piece_hashes[i].size() != 20) throw MetainfoError("a piece hash is not 20 bytes");
        ct.set_hash(lt::piece_index_t(static_cast<int>(i)), lt::sha1_hash(piece_hashes[i].data()));
    }
    std::string out;
    lt::bencode(std::back_inserter(out), ct.generate());
    return out;
}
}  // namespace

std::string content_metainfo_from_hashes(std::uint64_t size, const std::string& sha256,
                                         const std::vector<std::string>& piece_hashes) {
    return v1_metainfo_from_hashes(content_name(sha256), size, choose_piece_size(size), piece_hashes);
}

std::string cofetch_segment_metainfo(const std::string& sha256, int first_piece, int piece_length,
                                     std::uint64_t size, const std::vector<std::string>& piece_hashes) {
    if (first_piece < 0 || piece_length < 16 * 1024 || (piece_length & (piece_length - 1)) != 0)
        throw MetainfoError("not a segment's first piece and piece length");
    return v1_metainfo_from_hashes(cofetch_segment_name(sha256, first_piece), size, piece_length, piece_hashes);
}

std::string cofetch_segment_name(const std::string& sha256, int first_piece) {
    return content_name(sha256) + "." + std::to_string(first_piece);
}

std::string make_content_metainfo(const std::string& path, const std::string& sha256) {
    const std::string name = content_name(sha256);
    const Fd file{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
    struct stat sb;
    if (file.fd < 0 || ::fstat(file.fd, &sb) != 0)
        throw MetainfoError("cannot read " + path + ": " + std::strerror(errno));
    if (!S_ISREG(sb.st_mode) || sb.st_size == 0)
        throw MetainfoError(path + " is not a regular file with content");
    const std::string actual = sha256_of_fd(file.fd);
    if (actual.empty()) throw MetainfoError("cannot read " + path);
    if (actual != name)
        throw MetainfoError(path + " does not match its SHA-256 (" + name + "; it is " + actual + ")");
    const auto size = static_cast<std::uint64_t>(sb.st_size);
    return content_metainfo_from_hashes(size, name, v1_piece_hashes(file.fd, size, path));
}

std::string metainfo_of(const lt::torrent_info& info) {
    const auto section = info.info_section();
    return "d4:info" + std::string(section.data(), static_cast<std::size_t>(section.size())) + "e";
}

}  // namespace dopt::p2p
