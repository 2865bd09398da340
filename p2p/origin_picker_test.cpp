#include <catch2/catch.hpp>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "p2p/origin_picker.h"

using dopt::p2p::OriginPickInput;
using dopt::p2p::pick_origin_pieces;
using dopt::p2p::random_piece_order;

namespace {
struct Picture {
    std::vector<bool> have, busy;
    std::vector<int> peers, order;
    explicit Picture(int n) : have(n), busy(n), peers(n), order(n) {
        for (int i = 0; i < n; ++i) order[static_cast<std::size_t>(i)] = i;
    }
    std::vector<int> pick(int want, bool stalled = false) const {
        OriginPickInput in;
        in.have = &have;
        in.busy = &busy;
        in.peers_with = &peers;
        in.order = &order;
        in.peers_stalled = stalled;
        return pick_origin_pieces(in, want);
    }
};
}  // namespace

TEST_CASE("the origin gets only pieces no peer has, in our order", "[p2p][picker]") {
    Picture p(8);
    p.order = {7, 6, 5, 4, 3, 2, 1, 0};
    p.have[7] = true;      // ours already
    p.busy[6] = true;      // in flight or claimed
    p.peers[5] = 2;        // a peer has it
    CHECK(p.pick(3) == std::vector<int>{4, 3, 2});
    CHECK(p.pick(100) == std::vector<int>{4, 3, 2, 1, 0});
    CHECK(p.pick(0).empty());
}

TEST_CASE("pieces peers hold go to the origin only when the peers stalled", "[p2p][picker]") {
    Picture p(4);
    for (auto& n : p.peers) n = 1;
    p.peers[2] = 0;
    CHECK(p.pick(4) == std::vector<int>{2});
    CHECK(p.pick(4, true) == std::vector<int>{2, 0, 1, 3});
    p.busy[0] = true;
    CHECK(p.pick(4, true) == std::vector<int>{2, 1, 3});
}

TEST_CASE("nothing is picked when everything is held or busy", "[p2p][picker]") {
    Picture p(3);
    p.have = {true, false, false};
    p.busy = {false, true, true};
    CHECK(p.pick(3, true).empty());
}

TEST_CASE("a random piece order is a permutation and differs between agents", "[p2p][picker]") {
    auto a = random_piece_order(500), b = random_piece_order(500);
    CHECK(std::set<int>(a.begin(), a.end()).size() == 500);
    CHECK(*std::min_element(a.begin(), a.end()) == 0);
    CHECK(*std::max_element(a.begin(), a.end()) == 499);
    CHECK(a != b);  // 1 in 500! to fail
}

TEST_CASE("fetcher keys are the same everywhere and differ by torrent and address") {
    using dopt::p2p::fetcher_key;
    // FNV-1a 64 of "ab/10.0.0.1", worked out independently (Python).
    CHECK(fetcher_key("ab", "10.0.0.1") == 0xb8e93543fc261a33ULL);
    CHECK(fetcher_key("ab", "10.0.0.1") != fetcher_key("ab", "10.0.0.2"));
    CHECK(fetcher_key("ab", "10.0.0.1") != fetcher_key("ac", "10.0.0.1"));
}

TEST_CASE("fetcher rank: agents agree on who comes first") {
    using dopt::p2p::fetcher_key;
    using dopt::p2p::fetcher_rank;
    std::vector<std::string> addrs;
    for (int i = 1; i <= 16; ++i) addrs.push_back("10.77.0." + std::to_string(10 + i));
    std::vector<std::uint64_t> keys;
    for (const auto& a : addrs) keys.push_back(fetcher_key("0123abcd", a));
    // Each agent ranks itself against the other fifteen: the ranks are
    // 0..15, each once, so exactly the first four see themselves below 4.
    std::set<int> ranks;
    int designated = 0;
    for (std::size_t i = 0; i < keys.size(); ++i) {
        std::vector<std::uint64_t> others;
        for (std::size_t j = 0; j < keys.size(); ++j)
            if (j != i) others.push_back(keys[j]);
        int r = fetcher_rank(keys[i], others);
        ranks.insert(r);
        if (r < 4) ++designated;
    }
    CHECK(ranks.size() == 16);
    CHECK(*ranks.rbegin() == 15);
    CHECK(designated == 4);
    // One address shared (agents on loopback): all first.
    std::uint64_t k = fetcher_key("0123abcd", "127.0.0.1");
    CHECK(fetcher_rank(k, {k, k, k}) == 0);
}

TEST_CASE("a designated fetcher picks only its share of the pieces") {
    Picture p(10);
    OriginPickInput in;
    in.have = &p.have;
    in.busy = &p.busy;
    in.peers_with = &p.peers;
    in.order = &p.order;
    in.share_count = 3;
    in.share_index = 1;
    CHECK(pick_origin_pieces(in, 10) == std::vector<int>{1, 4, 7});
    p.busy[4] = true;
    p.peers[7] = 1;
    CHECK(pick_origin_pieces(in, 10) == std::vector<int>{1});
}
