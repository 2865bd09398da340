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
    // Two passes over our order: pieces no peer holds, then (only when
    // held_too) pieces some peer holds.
    for (int pass = 0; pass < 2 && static_cast<int>(out.size()) < want; ++pass) {
        if (pass == 1 && !in.held_too) break;
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

OriginPlan plan_origin_requests(const OriginPlanInput& in) {
    OriginPlan out;
    const std::int64_t now = in.now_ms;
    auto counts = [](const SwarmPeer& p) { return p.told && !p.failing; };
    bool offer = std::any_of(in.peers.begin(), in.peers.end(),
                             [&](const SwarmPeer& p) { return counts(p) && p.offers; });
    if (offer) out.peers_offer_since_ms = in.peers_offer_since_ms != 0 ? in.peers_offer_since_ms : now;
    out.stalled = offer && now - std::max(in.last_peer_piece_ms, out.peers_offer_since_ms) > kStalledMs;
    // Peers too slow: what we lack, at the peers' rate, against one origin
    // piece (kFirstOriginPieceMs when we have fetched none yet).
    const std::int64_t origin_ms = in.origin_piece_ms > 0 ? in.origin_piece_ms : kFirstOriginPieceMs;
    const bool slow = in.all_in_swarm && in.peer_rate >= 0 && in.lack_bytes > 0 &&
                      in.lack_bytes * 1000 > 2 * origin_ms * in.peer_rate;
    if (slow) out.peers_slow_since_ms = in.peers_slow_since_ms != 0 ? in.peers_slow_since_ms : now;
    out.peers_slow = slow && !out.stalled && now - out.peers_slow_since_ms >= kPeersSlowForMs;

    // Only agents share the origin plan: a stock client sends no claims and
    // fetches from its web seeds whatever we leave it.
    auto shares = [&](const SwarmPeer& p) { return counts(p) && !p.stock; };
    const int sharing = 1 + static_cast<int>(std::count_if(in.peers.begin(), in.peers.end(), shares));
    int limit = std::clamp((in.swarm_origin_requests + sharing - 1) / sharing, 1,
                           std::max(in.origin_requests, 1));
    const bool handshaking = std::any_of(in.peers.begin(), in.peers.end(), [](const SwarmPeer& p) {
        return !p.told && p.connected_ms < kHandshakeMs;
    });
    const bool young = now - in.attached_ms < kYoungSwarmMs;
    if (handshaking || young) limit = 1;
    const bool awaiting_tracker = in.trackers && !in.tracker_answered && now - in.attached_ms < kTrackerWaitMs;
    if (young && (!in.static_peers.empty() || in.trackers)) {
        if (handshaking || awaiting_tracker) return out;
        std::set<std::string> connected;
        for (const auto& p : in.peers) connected.insert(p.address);
        for (const auto& ip : in.static_peers)
            if (!connected.count(ip) && !in.hung_up.count(ip)) return out;
    }
    int want = limit - in.our_requests;
    if (want <= 0) return out;

    if (out.peers_slow) {
        const int room = in.swarm_origin_requests - in.swarm_requests;
        if (room <= 0) return out;
        out.want = std::min(want, room);
        return out;
    }
    if (!out.stalled) {
        const int room = in.swarm_origin_requests - in.swarm_requests;
        const bool delivering = now - std::max(in.last_peer_piece_ms, in.attached_ms) < kDeliveringMs;
        if (room <= 0 && delivering) return out;
        want = std::min(want, std::max(room, 1));
        if (delivering && !in.self_address.empty()) {
            std::set<std::string> downloading;  // a peer may have two connections
            for (const auto& p : in.peers)
                if (shares(p) && !p.seed && (p.pieces > 0 || p.connected_ms < kNewPeerDownloadsMs))
                    downloading.insert(p.address);
            downloading.erase(in.self_address);  // other agents on this address
            std::vector<std::uint64_t> others;
            for (const auto& ip : downloading) others.push_back(fetcher_key(in.info_hash, ip));
            const int place = fetcher_rank(fetcher_key(in.info_hash, in.self_address), others);
            const int fetchers =
                std::min(in.swarm_origin_requests, 1 + static_cast<int>(others.size()));
            if (place >= fetchers) return out;
            out.share_count = fetchers;
            out.share_index = place;
        }
    }
    out.want = want;
    return out;
}

std::uint64_t subnet_gateway_key(const std::string& info_hash, const std::string& address) {
    // Salted, so that a torrent's gateways are not simply its first
    // origin fetchers (the two jobs are spread over different agents).
    return fetcher_key(info_hash + "/subnet", address);
}

std::set<std::string> outside_peers_to_skip(const OriginPlanInput& in, bool stalled) {
    std::set<std::string> outside;
    if (in.self_address.empty()) return outside;
    for (const auto& p : in.peers)
        if (!p.inside) outside.insert(p.address);
    if (outside.empty() || stalled) return {};
    if (in.now_ms - std::max(in.last_peer_piece_ms, in.attached_ms) >= kSubnetQuietMs) return {};
    auto counts = [](const SwarmPeer& p) { return p.told && !p.failing; };
    std::set<std::string> downloading;  // a peer may have two connections
    for (const auto& p : in.peers) {
        // Only agents count: a stock client inside (a seed with an upload
        // cap, a leecher fetching on its own) is neither the subnet's
        // source nor its gateway.
        if (!p.inside || !counts(p) || p.stock) continue;
        if (p.seed) return outside;  // an agent seeding inside gives everything
        if (p.pieces > 0 || p.connected_ms < kNewPeerDownloadsMs) downloading.insert(p.address);
    }
    downloading.erase(in.self_address);
    std::vector<std::uint64_t> others;
    for (const auto& ip : downloading) others.push_back(subnet_gateway_key(in.info_hash, ip));
    if (fetcher_rank(subnet_gateway_key(in.info_hash, in.self_address), others) == 0) return {};
    return outside;
}

}  // namespace dopt::p2p
