// Metainfo as plain values, for code that must not see libtorrent: the CLI's
// `dopt publish` and `dopt get --metainfo FILE` (nothing under api/ includes
// a libtorrent header). metainfo.h, which includes this header, has the
// rules a metainfo must meet and the libtorrent side; both are defined in
// metainfo.cpp.
//
// Contract: make_metainfo() writes hybrid (v1 + v2) metainfo for one file,
// or v1 only when asked, with the given web seed, and a piece size chosen
// for the file (1 MiB or larger).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>
#include <string_view>

namespace dopt::p2p {

class MetainfoError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// What a metainfo says of its one file.
struct MetainfoSummary {
    std::string info_hash;      // lowercase hex: the v1 hash, else the v2 hash (64 digits)
    std::string info_hash_v2;   // lowercase hex (64 digits) when it has v2 hashes, else ""
    std::string name;           // the file's name in the metainfo
    std::uint64_t size = 0;     // the file's size in bytes
    int piece_length = 0;
    int num_pieces = 0;
};

// Largest metainfo accepted (from a job or an origin).
constexpr std::size_t kMaxMetainfoBytes = 16 * 1024 * 1024;
// Largest piece accepted: the largest make_metainfo() (`dopt publish`) makes.
constexpr int kMaxPieceLength = 16 * 1024 * 1024;

// parse_metainfo(bytes) as plain values. Throws MetainfoError.
MetainfoSummary summarize_metainfo(std::string_view bytes);
// The bytes of the metainfo file at `path`, once parse_metainfo() accepts
// them. Throws MetainfoError naming the path.
std::string read_metainfo_file(const std::string& path);

// The piece size make_metainfo() uses for a file of `size` bytes: a power of
// two, at least 1 MiB, aiming at no more than about 2,000 pieces, at most
// kMaxPieceLength.
int choose_piece_size(std::uint64_t size);

// What make_metainfo() writes: hybrid v1+v2 (the default; v2 clients see
// per-file hashes), or v1 only (for clients that get the info-hash of
// hybrid metainfo wrong, such as aria2 before 1.37: its issue 1903).
enum class MetainfoFormat { Hybrid, V1 };

// Metainfo (bencoded) for the file at `path`, hashed now, with `web_seed`
// as its url-list. Throws MetainfoError (unreadable file, empty file, a
// folder).
std::string make_metainfo(const std::string& path, const std::string& web_seed,
                          MetainfoFormat format = MetainfoFormat::Hybrid);

// Deterministic v1 metainfo for the file at `path`, whose SHA-256 must be
// `sha256` (64 hex digits; checked first): piece size from the file's size
// alone (choose_piece_size), name = `sha256` in lowercase hex, no creation
// date, creator, comment, tracker, web seed or file attributes. v1 only:
// peers pass the info dictionary alone (BEP 9), which for v1 is the whole
// metainfo (v2's piece layers lie outside it). The same
// bytes give the same metainfo, so the same info-hash, on every agent
// (docs/design.md "Content identity"). Throws MetainfoError (unreadable,
// empty, not a regular file, another SHA-256).
std::string make_content_metainfo(const std::string& path, const std::string& sha256);

// The v1 SHA-1 of a piece's bytes (20 raw bytes).
std::string v1_piece_hash(const char* data, std::size_t len);
// The v1 piece hashes (20 raw bytes each) of v1 metainfo `bytes`. Throws
// MetainfoError when it is not usable metainfo.
std::vector<std::string> v1_piece_hashes_of(std::string_view bytes);
// The same metainfo from the file's size and its v1 piece hashes (20 raw
// bytes each, one per piece of choose_piece_size(size)), as agents that
// fetched the file's pieces between them build it (docs/design.md "Content
// identity"): byte for byte what make_content_metainfo() gives for the whole
// file. `sha256` is not checked against anything here. Throws MetainfoError
// when the hashes do not fit the size or `sha256` is not 64 hex digits.
std::string content_metainfo_from_hashes(std::uint64_t size, const std::string& sha256,
                                         const std::vector<std::string>& piece_hashes);
// The metainfo of one segment of a co-fetch of SHA-256 `sha256`: its pieces
// [first_piece, first_piece + piece_hashes.size()) of `piece_length` bytes
// (the file's choose_piece_size; the last one may be shorter), `size` bytes
// in all, as one file named "<sha256>.<first_piece>"; v1, deterministic as
// above, so every co-fetcher that knows those hashes makes the same
// info-hash and they trade the segment's pieces while the rest of the file
// is still being fetched (docs/design.md "Content identity"). Throws
// MetainfoError when the hashes do not fit `size` and `piece_length`.
std::string cofetch_segment_metainfo(const std::string& sha256, int first_piece, int piece_length,
                                     std::uint64_t size, const std::vector<std::string>& piece_hashes);
// That segment's file name, "<sha256 in lowercase>.<first_piece>".
std::string cofetch_segment_name(const std::string& sha256, int first_piece);

}  // namespace dopt::p2p
