// The piece rules of one co-fetch of SHA-256 X (docs/design.md
// "Simultaneous wanters: co-fetching", "Trust"), apart from the network and
// the origin so that they can be tested alone (cofetch_ledger_test.cpp):
// which pieces this agent fetches whatever others say, whose claims and
// hashes it takes, and whom it bans. swarm_cofetch.cpp keeps one per
// co-fetch, from the moment the size (hence the pieces) is known.
//
// The rules:
//  - This agent's range [first, end) is fetched here whatever others say,
//    and so is a disputed piece (two others sent different hashes of it):
//    another agent's hash of such a piece is kept only to be compared with
//    this agent's own once fetched. (A liar cannot "finish" a co-fetch.)
//  - A claim ("I am fetching piece p") counts only from a node of the
//    split, never for a piece fetched here whatever (above), and once per
//    piece (a renewed claim would hold a piece forever).
//  - Another agent's hash of any other piece is taken when no hash of it is
//    known yet.
//  - Bans: a hash that differs from this agent's own fetch of the piece;
//    one sender's two different hashes of a piece. A banned sender's hashes
//    are forgotten (the pieces it gave are fetched again) and it is not
//    heard again.
//  - Two senders that disagree on a piece make it disputed: its hash is
//    forgotten, this agent fetches it, and then the one that lied is banned.
//  - Per piece, the hashes of at most kMaxSendersPerPiece senders are kept
//    (a hash from one more is ignored): each message costs O(1), and these
//    are what unmask liars once the file came from the origin (liars()).
//
// Senders are named by address (what a ban covers). Not thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

namespace dopt::agent {

class CoFetchLedger {
public:
    static constexpr std::size_t kMaxSendersPerPiece = 4;

    // Another agent's hash of a piece, as kept.
    struct Claim {
        int piece = 0;
        std::string sha1;    // 20 bytes
        std::string sender;  // its address
    };

    CoFetchLedger() = default;
    // `pieces` pieces; this agent's range is [first, end); `split`: the
    // co-fetchers' node ids, sorted.
    CoFetchLedger(int pieces, int first, int end, std::vector<std::uint64_t> split);

    int num_pieces() const { return static_cast<int>(hash_.size()); }
    int first() const { return first_; }
    int end() const { return end_; }
    bool in_range(int piece) const { return piece >= first_ && piece < end_; }
    // Fetched here whatever others say: in the range, or disputed.
    bool fetched_here_anyway(int piece) const;
    bool known(int piece) const { return !hash_[at(piece)].empty(); }
    bool fetched(int piece) const { return fetched_[at(piece)]; }
    std::int64_t claimed_ms(int piece) const { return claimed_ms_[at(piece)]; }
    int known_count() const { return known_; }
    bool all_known() const { return known_ == num_pieces(); }
    bool range_done() const;  // every piece of the range fetched here
    // Per piece: 20 bytes, or "" (not known). Whole: the metainfo's.
    const std::vector<std::string>& hashes() const { return hash_; }
    // The pieces fetched and hashed here (their hash is this agent's own).
    const std::vector<bool>& fetched_pieces() const { return fetched_; }

    // The split changed (views converge: swarm_cofetch.cpp): this agent's
    // range is [first, end) of `split` now. Hashes others sent for pieces
    // of the new range are no longer taken (compared once fetched here),
    // nor claims on them; a piece that left the range takes the hash others
    // sent for it if they agree, and is disputed if they do not.
    void replan(int first, int end, std::vector<std::uint64_t> split);

    // Another co-fetcher, node `node`, says it fetches `piece` now. True
    // when the claim counts (claimed_ms(piece) is now_ms from now on).
    bool claim(std::uint64_t node, int piece, std::int64_t now_ms);

    // What a hash from another agent leads to.
    struct Verdict {
        bool taken = false;       // it is the piece's hash now
        bool disputed = false;    // the piece is to be fetched here now
        std::vector<std::string> banned;  // senders to ban (their hashes were forgotten)
        std::string why;          // for the log, when banned is not empty
    };
    // `sender`'s hash `sha1` (20 bytes) of `piece`. A bad piece number or
    // hash, or a sender banned here, is ignored.
    Verdict hash(const std::string& sender, int piece, const std::string& sha1);
    // This agent fetched `piece`; `sha1` is its hash. Returns the senders of
    // other hashes of it, now banned.
    std::vector<std::string> fetched_here(int piece, const std::string& sha1);

    // Every other agent's hash kept (for liars(), once the file is known).
    std::vector<Claim> claims() const;
    // The senders of `claims` that differ from `truth` (the verified file's
    // piece hashes).
    static std::set<std::string> liars(const std::vector<Claim>& claims, const std::vector<std::string>& truth);

private:
    struct Heard {
        std::string sender;
        std::string sha1;
    };
    std::size_t at(int piece) const { return static_cast<std::size_t>(piece); }
    // Bans `sender`: its hashes taken are forgotten, it is not heard again.
    void ban(const std::string& sender);
    void forget(std::size_t piece);

    int first_ = 0, end_ = 0;
    std::vector<std::uint64_t> split_;
    std::vector<std::string> hash_;          // per piece: the known hash, or ""
    std::vector<std::string> from_;          // per piece: who gave it ("" fetched here or not known)
    std::vector<bool> fetched_;              // per piece: fetched and hashed here
    std::vector<bool> disputed_;
    std::vector<std::int64_t> claimed_ms_;   // per piece: when a claim counted (0: none)
    std::vector<std::vector<Heard>> heard_;  // per piece: others' hashes, one per sender
    std::set<std::string> banned_;
    int known_ = 0;
};

}  // namespace dopt::agent
