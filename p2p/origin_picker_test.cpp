#include <catch2/catch.hpp>

#include <algorithm>
#include <set>

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
