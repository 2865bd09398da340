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
    std::vector<int> pick(int want, bool held_too = false) const {
        OriginPickInput in;
        in.have = &have;
        in.busy = &busy;
        in.peers_with = &peers;
        in.order = &order;
        in.held_too = held_too;
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

// ---- plan_origin_requests: how many requests, and whose share ----

namespace {
using dopt::p2p::OriginPlan;
using dopt::p2p::OriginPlanInput;
using dopt::p2p::plan_origin_requests;
using dopt::p2p::SwarmPeer;

// A swarm attached 10 s ago (not young), no peers, the default limits.
OriginPlanInput settled_swarm() {
    OriginPlanInput in;
    in.now_ms = 100'000;
    in.attached_ms = 90'000;
    in.origin_requests = 4;
    in.swarm_origin_requests = 8;
    in.info_hash = "0123abcd";
    in.self_address = "10.77.0.1";
    return in;
}

SwarmPeer told_peer(const std::string& address, int pieces, bool offers = false) {
    SwarmPeer p;
    p.address = address;
    p.told = true;
    p.pieces = pieces;
    p.offers = offers;
    p.connected_ms = 10'000;
    return p;
}

// A settled swarm with the budget full (8 requests in flight), delivering
// (a peer's piece 200 ms ago), and one peer, 10.77.0.2, that offers pieces
// we lack. Our own address is unknown.
OriginPlanInput swarm_with_offering_peer(int pieces) {
    OriginPlanInput in = settled_swarm();
    in.self_address.clear();
    in.peers = {told_peer("10.77.0.2", pieces, true)};
    in.last_peer_piece_ms = in.now_ms - 200;
    in.swarm_requests = 8;
    return in;
}
}  // namespace

TEST_CASE("alone, an agent keeps origin_requests in flight", "[p2p][plan]") {
    OriginPlanInput in = settled_swarm();
    OriginPlan plan = plan_origin_requests(in);
    CHECK(plan.want == 4);
    CHECK_FALSE(plan.stalled);
    CHECK(plan.share_count == 1);
    in.our_requests = 3;
    in.swarm_requests = 3;
    CHECK(plan_origin_requests(in).want == 1);
    in.our_requests = 4;
    in.swarm_requests = 4;
    CHECK(plan_origin_requests(in).want == 0);
}

TEST_CASE("a young swarm asks one piece at a time, and none while a static peer may come",
          "[p2p][plan]") {
    OriginPlanInput in = settled_swarm();
    in.attached_ms = in.now_ms - 500;
    CHECK(plan_origin_requests(in).want == 1);  // no static peers: one at a time
    in.static_peers = {"10.77.0.2"};
    CHECK(plan_origin_requests(in).want == 0);  // not connected yet
    in.hung_up = {"10.77.0.2"};
    CHECK(plan_origin_requests(in).want == 1);  // it hung up: it does not hold this
    in.hung_up.clear();
    in.peers = {told_peer("10.77.0.2", 0)};
    CHECK(plan_origin_requests(in).want == 1);  // connected, holds nothing
    in.attached_ms = in.now_ms - 1500;
    CHECK(plan_origin_requests(in).want == 4);  // no longer young: 8 / 2 agents
}

TEST_CASE("a peer that connected but has not told its pieces holds the origin back",
          "[p2p][plan]") {
    // The race CI once hit: libtorrent shows a just-connected seed as
    // holding nothing, and the agent fetched from the origin in that tick.
    OriginPlanInput in = settled_swarm();
    in.attached_ms = in.now_ms - 700;
    in.static_peers = {"10.77.0.2"};
    SwarmPeer seed;
    seed.address = "10.77.0.2";
    seed.connected_ms = 0;
    in.peers = {seed};
    CHECK(plan_origin_requests(in).want == 0);
    // Once it told (a seed: it offers what we lack), nothing from the origin
    // would be picked anyway; the plan allows one request.
    in.peers = {told_peer("10.77.0.2", 8, true)};
    in.peers[0].seed = true;
    CHECK(plan_origin_requests(in).want == 1);
    // Past the window: a peer still in its handshake limits us to one...
    in.attached_ms = in.now_ms - 5000;
    seed.connected_ms = 1500;
    in.peers = {seed};
    CHECK(plan_origin_requests(in).want == 1);
    // ...and after 2 s of silence it does not count at all.
    in.peers[0].connected_ms = 2000;
    CHECK(plan_origin_requests(in).want == 4);
}

TEST_CASE("the swarm's link is shared among the agents that told their pieces", "[p2p][plan]") {
    OriginPlanInput in = settled_swarm();
    in.self_address.clear();  // no designation here
    in.peers = {told_peer("10.77.0.2", 1), told_peer("10.77.0.3", 1), told_peer("10.77.0.4", 1)};
    CHECK(plan_origin_requests(in).want == 2);  // 8 / 4 agents
    for (int i = 5; i < 40; ++i) in.peers.push_back(told_peer("10.77.0." + std::to_string(i), 1));
    CHECK(plan_origin_requests(in).want == 1);  // never below one
}

TEST_CASE("the swarm's budget holds while the swarm delivers", "[p2p][plan]") {
    OriginPlanInput in = settled_swarm();
    in.self_address.clear();
    in.swarm_requests = 8;  // others' claims fill the budget
    in.last_peer_piece_ms = in.now_ms - 200;
    CHECK(plan_origin_requests(in).want == 0);
    in.swarm_requests = 7;
    CHECK(plan_origin_requests(in).want == 1);  // one place left
    in.swarm_requests = 8;
    in.last_peer_piece_ms = in.now_ms - 1000;   // no piece from a peer for 1 s
    CHECK(plan_origin_requests(in).want == 1);  // one anyway
}

TEST_CASE("peers that offer pieces and give none for 4 s have stalled", "[p2p][plan]") {
    OriginPlanInput in = swarm_with_offering_peer(5);
    OriginPlan plan = plan_origin_requests(in);
    CHECK(plan.peers_offer_since_ms == in.now_ms);  // the offer starts now
    CHECK_FALSE(plan.stalled);
    CHECK(plan.want == 0);  // budget full, swarm delivering
    in.peers_offer_since_ms = plan.peers_offer_since_ms;
    in.now_ms += 4001;
    plan = plan_origin_requests(in);
    CHECK(plan.stalled);
    CHECK(plan.want == 4);  // the budget no longer holds (8 / 2 agents)
    CHECK(plan.peers_offer_since_ms == in.peers_offer_since_ms);
    in.peers[0].offers = false;  // nothing left to offer: no stall, the timer resets
    plan = plan_origin_requests(in);
    CHECK_FALSE(plan.stalled);
    CHECK(plan.peers_offer_since_ms == 0);
}

TEST_CASE("only the designated fetchers fetch, each from its own share", "[p2p][plan]") {
    // Twelve downloading agents, each planning from its own view: exactly
    // swarm_origin_requests (8) of them fetch, with shares 0..7 of 8.
    std::vector<std::string> addrs;
    for (int i = 1; i <= 12; ++i) addrs.push_back("10.77.0." + std::to_string(i));
    std::set<int> shares;
    int fetching = 0;
    for (const auto& self : addrs) {
        OriginPlanInput in = settled_swarm();
        in.self_address = self;
        in.last_peer_piece_ms = in.now_ms - 100;  // delivering
        for (const auto& a : addrs)
            if (a != self) in.peers.push_back(told_peer(a, 1));
        // Not downloading agents: a seed, one silent for 3 s, one on our
        // own address.
        in.peers.push_back(told_peer("10.77.1.1", 64));
        in.peers.back().seed = true;
        in.peers.push_back(told_peer("10.77.1.2", 0));
        in.peers.push_back(told_peer(self, 1));
        const OriginPlan plan = plan_origin_requests(in);
        if (plan.want == 0) continue;
        ++fetching;
        CHECK(plan.share_count == 8);
        shares.insert(plan.share_index);
    }
    CHECK(fetching == 8);
    CHECK(shares == std::set<int>{0, 1, 2, 3, 4, 5, 6, 7});

    // Not delivering: everyone fetches, from every piece.
    OriginPlanInput in = settled_swarm();
    for (const auto& a : addrs) in.peers.push_back(told_peer(a, 1));
    const OriginPlan plan = plan_origin_requests(in);
    CHECK(plan.want == 1);
    CHECK(plan.share_count == 1);
}

TEST_CASE("stock clients take no part in the origin plan", "[p2p][plan]") {
    // Issue 18's mixed swarm: four agents and four aria2 clients, all
    // downloading. aria2 sends no claims and fetches from its web seed on
    // its own; shares left to it were fetched late, by three or four of
    // them at once (docs/performance.md). The agents split every piece
    // among themselves, and the link's budget among themselves.
    std::vector<std::string> agents = {"10.77.0.11", "10.77.0.12", "10.77.0.13", "10.77.0.14"};
    std::set<int> shares;
    for (const auto& self : agents) {
        OriginPlanInput in = settled_swarm();
        in.self_address = self;
        in.last_peer_piece_ms = in.now_ms - 100;  // delivering
        for (const auto& a : agents)
            if (a != self) in.peers.push_back(told_peer(a, 3));
        for (int i = 15; i <= 18; ++i) {
            in.peers.push_back(told_peer("10.77.0." + std::to_string(i), 3, true));
            in.peers.back().stock = true;
        }
        const OriginPlan plan = plan_origin_requests(in);
        CHECK(plan.want == 2);  // 8 / 4 agents (counting the stock clients: 1)
        CHECK(plan.share_count == 4);  // (counting them: 8, half left to aria2)
        shares.insert(plan.share_index);
    }
    CHECK(shares == std::set<int>{0, 1, 2, 3});

    // A stock client still counts where its pieces do: it offers what we
    // lack, and when it stops giving for 4 s the swarm has stalled.
    OriginPlanInput in = swarm_with_offering_peer(5);
    in.peers[0].stock = true;
    OriginPlan plan = plan_origin_requests(in);
    CHECK(plan.want == 0);  // budget full, swarm delivering
    in.peers_offer_since_ms = plan.peers_offer_since_ms;
    in.now_ms += 4001;
    plan = plan_origin_requests(in);
    CHECK(plan.stalled);
    CHECK(plan.want == 4);  // alone in the plan: origin_requests
}

TEST_CASE("a peer that owes us data for 2 s counts nowhere", "[p2p][plan]") {
    // It advertises pieces we lack and never delivers (a liar, a choker).
    OriginPlanInput in = swarm_with_offering_peer(8);
    OriginPlan plan = plan_origin_requests(in);
    CHECK(plan.peers_offer_since_ms == in.now_ms);  // it offers: the stall timer runs
    CHECK(plan.want == 0);
    in.peers[0].failing = true;
    plan = plan_origin_requests(in);
    CHECK(plan.peers_offer_since_ms == 0);  // its offer is worth nothing
    in.swarm_requests = 0;
    CHECK(plan_origin_requests(in).want == 4);  // alone again: origin_requests, not 8 / 2

    // Nor is it a downloading agent that takes a fetcher's place.
    in = settled_swarm();
    in.last_peer_piece_ms = in.now_ms - 100;  // delivering
    in.self_address = "10.77.0.9";
    for (int i = 1; i <= 8; ++i) {
        in.peers.push_back(told_peer("10.77.0." + std::to_string(i), 3));
        in.peers.back().failing = true;
    }
    plan = plan_origin_requests(in);
    CHECK(plan.want == 4);
    CHECK(plan.share_count == 1);
}

TEST_CASE("peers too slow: with the whole file in the swarm, the budget's room serves us too",
          "[p2p][plan]") {
    // A LAN slower than the origin: every piece we lack is in the swarm, 16
    // MiB at 2 MiB/s from peers takes 8 s, an origin piece 500 ms.
    OriginPlanInput in = settled_swarm();
    in.self_address = "10.77.0.9";
    for (int i = 1; i <= 8; ++i) in.peers.push_back(told_peer("10.77.0." + std::to_string(i), 3, true));
    in.last_peer_piece_ms = in.now_ms - 100;  // delivering, not stalled
    in.swarm_requests = 5;
    in.all_in_swarm = true;
    in.lack_bytes = 16 << 20;
    in.peer_rate = 2 << 20;
    in.origin_piece_ms = 500;
    OriginPlan plan = plan_origin_requests(in);
    CHECK(plan.peers_slow_since_ms == in.now_ms);  // slow from now on...
    CHECK_FALSE(plan.peers_slow);                   // ...but not yet for 1 s
    CHECK((plan.want == 0 || plan.share_count == 8));  // the designation holds
    in.peers_slow_since_ms = plan.peers_slow_since_ms;
    in.now_ms += 1000;
    in.last_peer_piece_ms = in.now_ms - 100;
    plan = plan_origin_requests(in);
    CHECK(plan.peers_slow);
    CHECK(plan.want == 1);  // our share of the budget: 8 / 9 agents
    CHECK(plan.share_count == 1);

    in.swarm_requests = 8;  // no room in the swarm's budget: nothing beyond it
    CHECK(plan_origin_requests(in).want == 0);
    in.swarm_requests = 5;

    in.peer_rate = 5 << 20;  // 16 MiB in 3.2 s: still more than 2 x 500 ms
    CHECK(plan_origin_requests(in).peers_slow);
    in.peer_rate = 20 << 20;  // 0.8 s: peers are faster than the origin
    plan = plan_origin_requests(in);
    CHECK_FALSE(plan.peers_slow);
    CHECK(plan.peers_slow_since_ms == 0);  // the timer starts again
}

TEST_CASE("peers are not too slow while a piece we lack is not in the swarm", "[p2p][plan]") {
    OriginPlanInput in = settled_swarm();
    in.self_address.clear();
    in.peers = {told_peer("10.77.0.2", 3, true)};
    in.last_peer_piece_ms = in.now_ms - 100;
    in.lack_bytes = 16 << 20;
    in.peers_slow_since_ms = in.now_ms - 5000;
    in.all_in_swarm = true;
    CHECK_FALSE(plan_origin_requests(in).peers_slow);  // the peers' rate is not measured yet
    in.peer_rate = 0;
    in.all_in_swarm = false;
    CHECK_FALSE(plan_origin_requests(in).peers_slow);  // the origin still has new pieces to give
    in.all_in_swarm = true;
    CHECK(plan_origin_requests(in).peers_slow);
    in.origin_piece_ms = 0;  // none fetched yet: an origin piece counts as 2 s
    in.peer_rate = (16 << 20) / 5;  // 5 s for what we lack, more than 2 x 2 s
    CHECK(plan_origin_requests(in).peers_slow);
    in.peer_rate = (16 << 20) / 3;  // 3 s
    CHECK_FALSE(plan_origin_requests(in).peers_slow);
}

TEST_CASE("pieces peers hold are picked when held_too", "[p2p][picker]") {
    Picture p(3);
    p.peers = {1, 2, 1};
    p.busy[1] = true;  // a peer is sending it to us
    CHECK(p.pick(3).empty());
    CHECK(p.pick(3, true) == std::vector<int>{0, 2});
}

namespace {
using dopt::p2p::outside_peers_to_skip;
using dopt::p2p::subnet_gateway_key;

// A delivering swarm: we (10.77.0.1) and two agents inside our subnet, two
// outside; nobody is a seed.
OriginPlanInput swarm_across_subnets() {
    OriginPlanInput in = settled_swarm();
    in.last_peer_piece_ms = in.now_ms - 200;
    in.peers = {told_peer("10.77.0.2", 3), told_peer("10.77.0.3", 5), told_peer("10.78.0.2", 9, true),
                told_peer("10.78.0.3", 9, true)};
    in.peers[2].inside = false;
    in.peers[3].inside = false;
    return in;
}

// Whether `self` has the lowest gateway key of `inside` (self included).
bool is_gateway(const OriginPlanInput& in, const std::string& self, const std::vector<std::string>& inside) {
    for (const auto& ip : inside)
        if (subnet_gateway_key(in.info_hash, ip) < subnet_gateway_key(in.info_hash, self)) return false;
    return true;
}
}  // namespace

TEST_CASE("one agent of a subnet, its gateway, takes pieces from peers outside", "[p2p][plan][subnet]") {
    OriginPlanInput in = swarm_across_subnets();
    const std::set<std::string> outside{"10.78.0.2", "10.78.0.3"};
    int gateways = 0;
    // Each of the three agents inside, seeing the other two: exactly one
    // takes pieces from outside, the others skip both outside peers.
    const std::vector<std::string> agents{"10.77.0.1", "10.77.0.2", "10.77.0.3"};
    for (const auto& self : agents) {
        OriginPlanInput view = in;
        view.self_address = self;
        view.peers.clear();
        for (const auto& other : agents)
            if (other != self) view.peers.push_back(told_peer(other, 3));
        view.peers.push_back(in.peers[2]);
        view.peers.push_back(in.peers[3]);
        std::vector<std::string> others(agents);
        others.erase(std::find(others.begin(), others.end(), self));
        const std::set<std::string> skip = outside_peers_to_skip(view, false);
        if (is_gateway(view, self, others)) {
            ++gateways;
            CHECK(skip.empty());
        } else {
            CHECK(skip == outside);
        }
    }
    CHECK(gateways == 1);
}

TEST_CASE("peers outside are used again when the swarm stops delivering or stalls", "[p2p][plan][subnet]") {
    OriginPlanInput in = swarm_across_subnets();
    // Make 10.77.0.1 no gateway: an inside agent with a lower key.
    std::string lower;
    for (int i = 2; i < 250 && lower.empty(); ++i) {
        const std::string ip = "10.77.0." + std::to_string(i);
        if (subnet_gateway_key(in.info_hash, ip) < subnet_gateway_key(in.info_hash, in.self_address)) lower = ip;
    }
    REQUIRE_FALSE(lower.empty());
    in.peers[0] = told_peer(lower, 3);
    CHECK(outside_peers_to_skip(in, false).size() == 2);
    CHECK(outside_peers_to_skip(in, true).empty());  // stalled
    in.last_peer_piece_ms = in.now_ms - 1500;         // nothing from a peer for 1.5 s: wait
    CHECK(outside_peers_to_skip(in, false).size() == 2);
    in.last_peer_piece_ms = in.now_ms - dopt::p2p::kSubnetQuietMs;  // the gateway gives nothing
    CHECK(outside_peers_to_skip(in, false).empty());
    in.attached_ms = in.now_ms - 100;  // a job just attached: delivering
    CHECK(outside_peers_to_skip(in, false).size() == 2);
    in.self_address.clear();  // our address unknown: nothing held back
    CHECK(outside_peers_to_skip(in, false).empty());
}

TEST_CASE("with a seed inside, no agent takes pieces from outside", "[p2p][plan][subnet]") {
    OriginPlanInput in = swarm_across_subnets();
    in.peers[0] = told_peer("10.77.0.2", 9);
    in.peers[0].seed = true;
    in.peers.erase(in.peers.begin() + 1);
    // Alone with a seed inside: we are the gateway of the downloading
    // agents, yet the seed gives everything.
    CHECK(outside_peers_to_skip(in, false).size() == 2);
    in.peers[0].failing = true;  // a seed that does not deliver counts nowhere
    CHECK(outside_peers_to_skip(in, false).empty());
}

TEST_CASE("every peer inside: nothing is skipped", "[p2p][plan][subnet]") {
    OriginPlanInput in = swarm_across_subnets();
    in.peers[2].inside = true;
    in.peers[3].inside = true;
    CHECK(outside_peers_to_skip(in, false).empty());
}

TEST_CASE("a young swarm waits up to kTrackerWaitMs for a tracker's first answer", "[p2p][plan]") {
    OriginPlanInput in = settled_swarm();
    in.attached_ms = in.now_ms - 100;
    CHECK(plan_origin_requests(in).want == 1);  // young, no tracker: one request at once
    in.trackers = true;
    CHECK(plan_origin_requests(in).want == 0);
    in.attached_ms = in.now_ms - dopt::p2p::kTrackerWaitMs;  // waited long enough
    CHECK(plan_origin_requests(in).want == 1);
    in.attached_ms = in.now_ms - 100;
    in.tracker_answered = true;  // it answered: the peers it named are in their handshake
    SwarmPeer shaking;
    shaking.address = "10.77.0.2";
    shaking.connected_ms = 50;
    in.peers = {shaking};
    CHECK(plan_origin_requests(in).want == 0);
    in.peers[0] = told_peer("10.77.0.2", 0);  // it told: it holds nothing
    CHECK(plan_origin_requests(in).want == 1);
}

TEST_CASE("stock clients inside are neither the subnet's seed nor its gateway", "[p2p][plan][subnet]") {
    OriginPlanInput in = swarm_across_subnets();
    // A stock seed inside (an upload cap, or a host that drips pieces) is
    // not trusted to give everything, nor is a stock leecher a gateway:
    // with no other agent inside, this agent takes from outside itself.
    in.peers[0].seed = true;
    in.peers[0].stock = true;
    in.peers[1].stock = true;
    CHECK(outside_peers_to_skip(in, false).empty());
    in.peers[0].stock = false;  // an agent seeding inside: nothing from outside
    CHECK(outside_peers_to_skip(in, false).size() == 2);
}
