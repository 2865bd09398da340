#include "p2p/origin_picker.h"

#include <algorithm>
#include <numeric>
#include <random>

namespace dopt::p2p {

std::vector<int> pick_origin_pieces(const OriginPickInput& in, int want) {
    std::vector<int> out;
    if (want <= 0) return out;
    const auto& have = *in.have;
    const auto& busy = *in.busy;
    const auto& peers = *in.peers_with;
    // Two passes over our order: pieces no peer holds, then (only when the
    // peers stalled) pieces some peer holds.
    for (int pass = 0; pass < 2 && static_cast<int>(out.size()) < want; ++pass) {
        if (pass == 1 && !in.peers_stalled) break;
        for (int piece : *in.order) {
            auto i = static_cast<std::size_t>(piece);
            if (have[i] || busy[i]) continue;
            if (in.share_count > 1 && piece % in.share_count != in.share_index) continue;
            bool held = peers[i] > 0;
            if ((pass == 0) == held) continue;
            out.push_back(piece);
            if (static_cast<int>(out.size()) == want) break;
        }
    }
    return out;
}

std::vector<int> random_piece_order(int num_pieces) {
    std::vector<int> order(static_cast<std::size_t>(num_pieces));
    std::iota(order.begin(), order.end(), 0);
    std::mt19937_64 rng{std::random_device{}()};
    std::shuffle(order.begin(), order.end(), rng);
    return order;
}

std::uint64_t fetcher_key(const std::string& info_hash, const std::string& address) {
    std::uint64_t h = 14695981039346656037ULL;  // FNV-1a 64 offset basis
    auto mix = [&h](const std::string& s) {
        for (unsigned char c : s) {
            h ^= c;
            h *= 1099511628211ULL;  // FNV prime
        }
    };
    mix(info_hash);
    mix("/");
    mix(address);
    return h;
}

int fetcher_rank(std::uint64_t self, const std::vector<std::uint64_t>& others) {
    return static_cast<int>(std::count_if(others.begin(), others.end(),
                                          [self](std::uint64_t k) { return k < self; }));
}

}  // namespace dopt::p2p
