// The piece rules of a co-fetch: see cofetch_ledger.h.
#include "agent/cofetch_ledger.h"

#include <algorithm>

namespace dopt::agent {

CoFetchLedger::CoFetchLedger(int pieces, int first, int end, std::vector<std::uint64_t> split)
    : first_(first), end_(end), split_(std::move(split)) {
    const auto n = static_cast<std::size_t>(std::max(0, pieces));
    hash_.assign(n, std::string());
    from_.assign(n, std::string());
    fetched_.assign(n, false);
    disputed_.assign(n, false);
    claimed_ms_.assign(n, 0);
    heard_.assign(n, {});
}

void CoFetchLedger::replan(int first, int end, std::vector<std::uint64_t> split) {
    const int old_first = first_, old_end = end_;
    first_ = std::max(0, std::min(first, num_pieces()));
    end_ = std::max(first_, std::min(end, num_pieces()));
    split_ = std::move(split);
    for (int p = 0; p < num_pieces(); ++p) {
        const std::size_t i = at(p);
        if (fetched_[i]) continue;
        if (in_range(p)) {
            forget(i);
            claimed_ms_[i] = 0;
        } else if (p >= old_first && p < old_end && !disputed_[i] && !heard_[i].empty()) {
            const std::vector<Heard>& heard = heard_[i];
            const bool agree = std::all_of(heard.begin(), heard.end(),
                                           [&](const Heard& h) { return h.sha1 == heard.front().sha1; });
            if (!agree) {
                disputed_[i] = true;
            } else if (!banned_.count(heard.front().sender)) {
                hash_[i] = heard.front().sha1;
                from_[i] = heard.front().sender;
                ++known_;
            }
        }
    }
}

bool CoFetchLedger::fetched_here_anyway(int piece) const { return in_range(piece) || disputed_[at(piece)]; }

bool CoFetchLedger::range_done() const {
    return std::all_of(fetched_.begin() + first_, fetched_.begin() + end_, [](bool f) { return f; });
}

bool CoFetchLedger::claim(std::uint64_t node, int piece, std::int64_t now_ms) {
    if (piece < 0 || piece >= num_pieces() || fetched_here_anyway(piece) || claimed_ms_[at(piece)] != 0 ||
        !std::binary_search(split_.begin(), split_.end(), node))
        return false;
    claimed_ms_[at(piece)] = now_ms;
    return true;
}

CoFetchLedger::Verdict CoFetchLedger::hash(const std::string& sender, int piece, const std::string& sha1) {
    Verdict v;
    if (piece < 0 || piece >= num_pieces() || sha1.size() != 20 || sender.empty() || banned_.count(sender))
        return v;
    const std::size_t i = at(piece);
    std::vector<Heard>& heard = heard_[i];
    auto same = std::find_if(heard.begin(), heard.end(), [&](const Heard& h) { return h.sender == sender; });
    if (same != heard.end()) {
        if (same->sha1 == sha1) return v;  // said again
        v.why = "it sent two hashes of piece " + std::to_string(piece);
        ban(sender);
        v.banned.push_back(sender);
        return v;
    }
    if (heard.size() >= kMaxSendersPerPiece) return v;
    heard.push_back(Heard{sender, sha1});
    if (fetched_[i]) {
        if (hash_[i] != sha1) {
            v.why = "its hash of piece " + std::to_string(piece) + " is not that of the origin's bytes";
            ban(sender);
            v.banned.push_back(sender);
        }
        return v;
    }
    if (fetched_here_anyway(piece)) return v;  // compared once fetched here
    if (hash_[i].empty()) {
        hash_[i] = sha1;
        from_[i] = sender;
        ++known_;
        v.taken = true;
        return v;
    }
    if (hash_[i] == sha1) return v;
    // Two others disagree: the origin decides, here.
    forget(i);
    disputed_[i] = true;
    v.disputed = true;
    return v;
}

std::vector<std::string> CoFetchLedger::fetched_here(int piece, const std::string& sha1) {
    std::vector<std::string> banned;
    if (piece < 0 || piece >= num_pieces()) return banned;
    const std::size_t i = at(piece);
    if (hash_[i].empty()) ++known_;
    hash_[i] = sha1;
    from_[i].clear();
    fetched_[i] = true;
    for (const Heard& h : heard_[i])
        if (h.sha1 != sha1 && !banned_.count(h.sender)) {
            ban(h.sender);
            banned.push_back(h.sender);
        }
    return banned;
}

void CoFetchLedger::ban(const std::string& sender) {
    banned_.insert(sender);
    for (std::size_t i = 0; i < from_.size(); ++i)
        if (from_[i] == sender) forget(i);
}

void CoFetchLedger::forget(std::size_t i) {
    if (hash_[i].empty() || fetched_[i]) return;
    hash_[i].clear();
    from_[i].clear();
    --known_;
}

std::vector<CoFetchLedger::Claim> CoFetchLedger::claims() const {
    std::vector<Claim> out;
    for (std::size_t i = 0; i < heard_.size(); ++i)
        for (const Heard& h : heard_[i]) out.push_back(Claim{static_cast<int>(i), h.sha1, h.sender});
    return out;
}

std::set<std::string> CoFetchLedger::liars(const std::vector<Claim>& claims, const std::vector<std::string>& truth) {
    std::set<std::string> out;
    for (const Claim& c : claims)
        if (c.piece >= 0 && static_cast<std::size_t>(c.piece) < truth.size() &&
            truth[static_cast<std::size_t>(c.piece)] != c.sha1 && !c.sender.empty())
            out.insert(c.sender);
    return out;
}

}  // namespace dopt::agent
