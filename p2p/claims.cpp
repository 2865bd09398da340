// The dopt_claim extension: payload coding, the claim table, and the
// libtorrent plugins (session -> torrent -> peer). See claims.h.
#include "p2p/claims.h"

#include <time.h>

#include <algorithm>
#include <string>
#include <utility>

#include <libtorrent/bdecode.hpp>
#include <libtorrent/entry.hpp>
#include <libtorrent/error_code.hpp>
#include <libtorrent/operations.hpp>
#include <libtorrent/peer_connection.hpp>
#include <libtorrent/peer_connection_handle.hpp>

namespace dopt::p2p {

std::int64_t monotonic_ms() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

namespace {

void put_be(char* out, std::uint64_t v, int bytes) {
    for (int i = bytes - 1; i >= 0; --i) {
        out[i] = static_cast<char>(v & 0xff);
        v >>= 8;
    }
}

std::uint64_t get_be(const char* in, int bytes) {
    std::uint64_t v = 0;
    for (int i = 0; i < bytes; ++i) v = (v << 8) | static_cast<unsigned char>(in[i]);
    return v;
}

}  // namespace

std::array<char, kClaimPayloadSize> encode_claim_payload(int piece, std::uint64_t claimant) {
    std::array<char, kClaimPayloadSize> out{};
    put_be(out.data(), static_cast<std::uint32_t>(piece), 4);
    put_be(out.data() + 4, claimant, 8);
    return out;
}

std::array<char, kClaimFrameSize> encode_claim_frame(int peer_msg_id, int piece,
                                                     std::uint64_t claimant) {
    std::array<char, kClaimFrameSize> out{};
    put_be(out.data(), kClaimFrameSize - 4, 4);  // length of what follows
    out[4] = 20;                                  // BEP 10 "extended" message
    out[5] = static_cast<char>(peer_msg_id);
    const auto payload = encode_claim_payload(piece, claimant);
    std::copy(payload.begin(), payload.end(), out.begin() + 6);
    return out;
}

std::optional<ClaimMessage> parse_claim_payload(lt::span<char const> payload, int num_pieces) {
    if (payload.size() != static_cast<std::ptrdiff_t>(kClaimPayloadSize)) return std::nullopt;
    const std::uint64_t piece = get_be(payload.data(), 4);
    if (piece >= static_cast<std::uint64_t>(std::max(num_pieces, 0))) return std::nullopt;
    return ClaimMessage{static_cast<int>(piece), get_be(payload.data() + 4, 8)};
}

std::int64_t claim_hold_ms(std::int64_t piece_length) {
    const std::int64_t at_rate_ms = std::max<std::int64_t>(piece_length, 0) * 1000 / kClaimHoldRate;
    return std::max(kClaimMinHoldMs, at_rate_ms);
}

// ---- ClaimTable ----

ClaimTable::ClaimTable(std::int64_t lifetime_ms, std::int64_t hold_ms, std::size_t per_peer)
    : lifetime_ms_(lifetime_ms), hold_ms_(hold_ms), per_peer_(per_peer) {}

void ClaimTable::set_hold(const lt::info_hash_t& torrent, std::int64_t hold_ms) {
    std::lock_guard<std::mutex> lock(mutex_);
    holds_[torrent] = hold_ms;
}

std::int64_t ClaimTable::hold_of(const lt::info_hash_t& torrent) const {
    auto it = holds_.find(torrent);
    return it == holds_.end() ? hold_ms_ : it->second;
}

bool ClaimTable::is_held_over(const TorrentClaims& t, int piece, std::int64_t hold_ms,
                              std::int64_t now_ms) {
    auto it = t.claimed_since.find(piece);
    return it != t.claimed_since.end() && now_ms >= it->second + hold_ms;
}

bool ClaimTable::add(const lt::info_hash_t& torrent, int piece, std::uint64_t claimant,
                     const lt::tcp::endpoint& from, std::int64_t now_ms) {
    std::lock_guard<std::mutex> lock(mutex_);
    TorrentClaims& t = claims_[torrent];
    const std::int64_t hold = hold_of(torrent);
    if (is_held_over(t, piece, hold, now_ms)) return false;
    std::size_t from_peer = 0;
    for (auto& e : t.entries) {
        if (e.claim.piece == piece && e.claim.claimant == claimant) {
            e.claim.expires_ms = now_ms + lifetime_ms_;
            return false;
        }
        // Live ones only: claims on pieces held over no longer count.
        if (e.from == from && e.claim.expires_ms > now_ms &&
            !is_held_over(t, e.claim.piece, hold, now_ms))
            ++from_peer;
    }
    if (from_peer >= per_peer_ || t.entries.size() >= kMaxClaimsPerTorrent) {
        if (t.empty()) claims_.erase(torrent);
        return false;
    }
    t.entries.push_back(Entry{Claim{piece, claimant, now_ms + lifetime_ms_}, from});
    t.claimed_since.emplace(piece, now_ms);  // the first claim starts the hold
    return true;
}

void ClaimTable::drop_piece(const lt::info_hash_t& torrent, int piece) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = claims_.find(torrent);
    if (it == claims_.end()) return;
    auto& list = it->second.entries;
    list.erase(std::remove_if(list.begin(), list.end(),
                              [&](const Entry& e) { return e.claim.piece == piece; }),
               list.end());
    it->second.claimed_since.erase(piece);
    if (it->second.empty()) claims_.erase(it);
}

void ClaimTable::drop_torrent(const lt::info_hash_t& torrent) {
    std::lock_guard<std::mutex> lock(mutex_);
    claims_.erase(torrent);
    holds_.erase(torrent);
    told_.erase(torrent);
    claimers_.erase(torrent);
}

void ClaimTable::expire(std::int64_t now_ms) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto it = claims_.begin(); it != claims_.end();) {
        TorrentClaims& t = it->second;
        const std::int64_t hold = hold_of(it->first);
        t.entries.erase(std::remove_if(t.entries.begin(), t.entries.end(),
                                       [&](const Entry& e) {
                                           return e.claim.expires_ms <= now_ms ||
                                                  is_held_over(t, e.claim.piece, hold, now_ms);
                                       }),
                        t.entries.end());
        it = t.empty() ? claims_.erase(it) : std::next(it);
    }
}

std::vector<Claim> ClaimTable::get(const lt::info_hash_t& torrent, std::int64_t now_ms) const {
    std::lock_guard<std::mutex> lock(mutex_);
    std::vector<Claim> out;
    auto it = claims_.find(torrent);
    if (it == claims_.end()) return out;
    const std::int64_t hold = hold_of(torrent);
    for (const auto& e : it->second.entries)
        if (e.claim.expires_ms > now_ms && !is_held_over(it->second, e.claim.piece, hold, now_ms))
            out.push_back(e.claim);
    return out;
}

std::set<int> ClaimTable::held_over(const lt::info_hash_t& torrent, std::int64_t now_ms) const {
    std::lock_guard<std::mutex> lock(mutex_);
    std::set<int> out;
    auto it = claims_.find(torrent);
    if (it == claims_.end()) return out;
    const std::int64_t hold = hold_of(torrent);
    for (const auto& [piece, since] : it->second.claimed_since)
        if (now_ms >= since + hold) out.insert(piece);
    return out;
}

void ClaimTable::peer_told_pieces(const lt::info_hash_t& torrent, const lt::tcp::endpoint& peer) {
    std::lock_guard<std::mutex> lock(mutex_);
    told_[torrent].insert(peer);
}

void ClaimTable::peer_gone(const lt::info_hash_t& torrent, const lt::tcp::endpoint& peer) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (auto c = claims_.find(torrent); c != claims_.end()) {
        auto& list = c->second.entries;
        list.erase(std::remove_if(list.begin(), list.end(),
                                  [&](const Entry& e) { return e.from == peer; }),
                   list.end());
        if (c->second.empty()) claims_.erase(c);
    }
    for (auto* sets : {&told_, &claimers_}) {
        auto it = sets->find(torrent);
        if (it == sets->end()) continue;
        it->second.erase(peer);
        if (it->second.empty()) sets->erase(it);
    }
}

std::set<lt::tcp::endpoint> ClaimTable::peers_that_told(const lt::info_hash_t& torrent) const {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = told_.find(torrent);
    return it == told_.end() ? std::set<lt::tcp::endpoint>{} : it->second;
}

void ClaimTable::peer_speaks_claims(const lt::info_hash_t& torrent, const lt::tcp::endpoint& peer) {
    std::lock_guard<std::mutex> lock(mutex_);
    claimers_[torrent].insert(peer);
}

std::set<lt::tcp::endpoint> ClaimTable::peers_that_claim(const lt::info_hash_t& torrent) const {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = claimers_.find(torrent);
    return it == claimers_.end() ? std::set<lt::tcp::endpoint>{} : it->second;
}

// ---- the plugins (network thread only) ----

class ClaimTorrent;

// One per BitTorrent connection of a torrent that has a ClaimTorrent.
class ClaimPeer : public lt::peer_plugin {
public:
    ClaimPeer(lt::peer_connection_handle pc, lt::info_hash_t torrent, int num_pieces,
              std::shared_ptr<ClaimTable> table, std::uint64_t own_id,
              std::weak_ptr<ClaimTorrent> relay)
        : pc_(std::move(pc)), remote_(pc_.remote()), torrent_(torrent), num_pieces_(num_pieces),
          table_(std::move(table)), own_id_(own_id), relay_(std::move(relay)) {}
    // libtorrent destroys the plugin with its connection.
    ~ClaimPeer() override { table_->peer_gone(torrent_, remote_); }

    lt::string_view type() const override { return kClaimExtensionName; }

    void add_handshake(lt::entry& e) override { e["m"][kClaimExtensionName] = kClaimMessageId; }

    // A peer that does not advertise dopt_claim is not a dopt agent: it gets
    // no claims (peer_msg_id_ stays 0). The plugin stays on its connection
    // (returning false would remove it) to see when the peer tells its
    // pieces.
    bool on_extension_handshake(const lt::bdecode_node& h) override {
        const lt::bdecode_node m = h.dict_find_dict("m");
        const std::int64_t id = m ? m.dict_find_int_value(kClaimExtensionName, 0) : 0;
        if (id > 0 && id <= 255) {
            if (peer_msg_id_ == 0) table_->peer_speaks_claims(torrent_, remote_);
            peer_msg_id_ = static_cast<int>(id);
        }
        return true;
    }

    // The peer tells which pieces it holds. libtorrent calls these before it
    // updates the peer's piece list, on the same thread and in the same
    // call, so a peer_info taken after peers_that_told() includes them.
    // Each returns false: libtorrent still handles the message.
    bool on_bitfield(lt::bitfield const&) override { return told_pieces(); }
    bool on_have_all() override { return told_pieces(); }
    bool on_have_none() override { return told_pieces(); }

    // Called for each fragment of an extended message; `length` is the whole
    // payload's length, `body` what has arrived so far. A message with our id
    // is always consumed (returning false would make libtorrent disconnect
    // the peer for an unknown message); a malformed one is dropped.
    bool on_extended(int length, int msg, lt::span<char const> body) override {
        if (msg != kClaimMessageId) return false;
        if (body.size() < length) return true;  // wait for the rest
        auto c = parse_claim_payload(body, num_pieces_);
        if (c && c->claimant != own_id_ &&
            table_->add(torrent_, c->piece, c->claimant, remote_, monotonic_ms()))
            pass_on(*c);
        return true;
    }

    // A peer has the piece now: every claim on it is moot. (A peer that
    // held nothing at the start may skip the bitfield and send HAVEs.)
    bool on_have(lt::piece_index_t piece) override {
        table_->drop_piece(torrent_, static_cast<int>(piece));
        return told_pieces();
    }

    const lt::tcp::endpoint& remote() const { return remote_; }
    void disconnect() {
        pc_.disconnect(lt::errors::timed_out_no_request, lt::operation_t::bittorrent);
    }

    // No requests to this peer while `no` (peer_connection::no_download:
    // libtorrent's piece picker skips such a connection; inline in the
    // header, so no unexported symbol is needed).
    void set_no_download(bool no) {
        if (auto c = pc_.native_handle(); c && !pc_.is_disconnecting()) c->no_download(no);
    }

    void send_claim(int piece, std::uint64_t claimant) {
        if (peer_msg_id_ == 0 || !pc_.native_handle() || pc_.is_disconnecting()) return;
        const auto frame = encode_claim_frame(peer_msg_id_, piece, claimant);
        pc_.send_buffer(frame.data(), static_cast<int>(frame.size()));
    }

private:
    void pass_on(const ClaimMessage& c);  // after ClaimTorrent
    bool told_pieces() {
        if (!told_) table_->peer_told_pieces(torrent_, remote_);
        told_ = true;
        return false;
    }

    lt::peer_connection_handle pc_;
    const lt::tcp::endpoint remote_;
    const lt::info_hash_t torrent_;
    const int num_pieces_;
    std::shared_ptr<ClaimTable> table_;
    const std::uint64_t own_id_;
    std::weak_ptr<ClaimTorrent> relay_;
    int peer_msg_id_ = 0;  // the peer's id for dopt_claim; 0 until its handshake
    bool told_ = false;    // the peer has told its pieces
};

// One per torrent announced with ClaimsPlugin::expect_torrent.
class ClaimTorrent : public lt::torrent_plugin, public std::enable_shared_from_this<ClaimTorrent> {
public:
    ClaimTorrent(lt::info_hash_t torrent, int num_pieces, std::shared_ptr<ClaimTable> table,
                 std::uint64_t own_id)
        : torrent_(torrent), num_pieces_(num_pieces), table_(std::move(table)), own_id_(own_id) {}

    std::shared_ptr<lt::peer_plugin> new_connection(const lt::peer_connection_handle& pc) override {
        if (pc.type() != lt::connection_type::bittorrent) return nullptr;
        prune();
        auto peer = std::make_shared<ClaimPeer>(pc, torrent_, num_pieces_, table_, own_id_,
                                                weak_from_this());
        // libtorrent owns the peer plugin; we keep weak references only.
        peers_.push_back(peer);
        if (no_download_.count(pc.remote().address())) peer->set_no_download(true);
        return peer;
    }

    void set_no_download(const std::set<lt::address>& addresses) {
        prune();
        no_download_ = addresses;
        for (const auto& weak : peers_)
            if (auto peer = weak.lock()) peer->set_no_download(no_download_.count(peer->remote().address()) > 0);
    }

    // To every dopt peer of the torrent but `except` (the one a passed-on
    // claim came from).
    void send_claim(int piece, std::uint64_t claimant, const ClaimPeer* except = nullptr) {
        if (piece < 0 || piece >= num_pieces_) return;
        prune();
        for (const auto& weak : peers_)
            if (auto peer = weak.lock(); peer && peer.get() != except) peer->send_claim(piece, claimant);
    }

    // We have the piece now (hash checked): claims on it are moot.
    void on_piece_pass(lt::piece_index_t piece) override {
        table_->drop_piece(torrent_, static_cast<int>(piece));
    }

    void disconnect(const lt::tcp::endpoint& remote) {
        prune();
        for (const auto& weak : peers_)
            if (auto peer = weak.lock(); peer && peer->remote() == remote) peer->disconnect();
    }

private:
    void prune() {
        peers_.erase(std::remove_if(peers_.begin(), peers_.end(),
                                    [](const std::weak_ptr<ClaimPeer>& p) { return p.expired(); }),
                     peers_.end());
    }

    const lt::info_hash_t torrent_;
    const int num_pieces_;
    std::shared_ptr<ClaimTable> table_;
    const std::uint64_t own_id_;
    std::vector<std::weak_ptr<ClaimPeer>> peers_;
    std::set<lt::address> no_download_;  // set_no_download's
};

void ClaimPeer::pass_on(const ClaimMessage& c) {
    if (auto torrent = relay_.lock()) torrent->send_claim(c.piece, c.claimant, this);
}

ClaimsPlugin::ClaimsPlugin(std::shared_ptr<ClaimTable> table, std::uint64_t own_id)
    : table_(std::move(table)), own_id_(own_id) {}

void ClaimsPlugin::expect_torrent(const lt::info_hash_t& torrent, int num_pieces) {
    expected_.expect(torrent, num_pieces);
}

void ClaimsPlugin::forget_expected(const lt::info_hash_t& torrent) { expected_.forget(torrent); }

std::shared_ptr<lt::torrent_plugin> ClaimsPlugin::new_torrent(const lt::torrent_handle& handle,
                                                              lt::client_data_t) {
    // info_hashes() reads an immutable field directly (no call into the
    // network thread), so it is safe here.
    const lt::info_hash_t ih = handle.info_hashes();
    const std::optional<int> num_pieces = expected_.find(ih);
    if (!num_pieces) return nullptr;
    auto plugin = std::make_shared<ClaimTorrent>(ih, *num_pieces, table_, own_id_);
    keep_torrent_plugin(torrents_, ih, plugin);
    return plugin;
}

void ClaimsPlugin::disconnect_peer(const lt::info_hash_t& torrent, const lt::tcp::endpoint& peer) {
    auto it = torrents_.find(torrent);
    if (it == torrents_.end()) return;
    if (auto plugin = it->second.lock()) plugin->disconnect(peer);
}

void ClaimsPlugin::set_no_download(const lt::info_hash_t& torrent, const std::set<lt::address>& addresses) {
    auto it = torrents_.find(torrent);
    if (it == torrents_.end()) return;
    if (auto plugin = it->second.lock()) plugin->set_no_download(addresses);
}

void ClaimsPlugin::send_claim(const lt::info_hash_t& torrent, int piece, std::uint64_t claimant) {
    auto it = torrents_.find(torrent);
    if (it == torrents_.end()) return;
    if (auto plugin = it->second.lock()) plugin->send_claim(piece, claimant);
}

bool run_on_network_thread(const lt::torrent_handle& handle, std::function<void()> fn) {
    if (!handle.is_valid()) return false;
    lt::torrent_handle h = handle;  // add_extension is not const
    try {
        h.add_extension(
            [fn = std::move(fn)](const lt::torrent_handle&,
                                 lt::client_data_t) -> std::shared_ptr<lt::torrent_plugin> {
                fn();
                return nullptr;
            });
    } catch (const lt::system_error&) {
        return false;  // the torrent went away between the check and the call
    }
    return true;
}

}  // namespace dopt::p2p
