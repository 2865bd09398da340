// The dopt_content extension: the rendezvous info-hash, state coding, the
// content table, and the libtorrent plugins (session -> torrent -> peer).
// See content.h; the wire format is in docs/protocol.md.
#include "p2p/content.h"

#include <algorithm>
#include <map>
#include <utility>

#include <libtorrent/bencode.hpp>
#include <libtorrent/hasher.hpp>
#include <libtorrent/peer_connection_handle.hpp>

#include "common/hex.h"
#include "p2p/metainfo_summary.h"

namespace dopt::p2p {

namespace {

std::string bytes_of(const char* data, std::size_t n) { return std::string(data, n); }

// The 8-byte big-endian form of a node id ("n").
std::string node_bytes(std::uint64_t node) {
    std::string out(8, '\0');
    for (int i = 7; i >= 0; --i, node >>= 8) out[static_cast<std::size_t>(i)] = static_cast<char>(node & 0xff);
    return out;
}

std::uint64_t node_from_bytes(lt::string_view s) {
    std::uint64_t v = 0;
    for (char c : s) v = (v << 8) | static_cast<unsigned char>(c);
    return v;
}

}  // namespace

std::string endpoint_string(const lt::tcp::endpoint& ep) {
    const std::string addr = ep.address().to_string();
    const std::string port = std::to_string(ep.port());
    return ep.address().is_v6() ? "[" + addr + "]:" + port : addr + ":" + port;
}

std::optional<ContentSha256> parse_sha256_hex(const std::string& hex) {
    ContentSha256 out{};
    if (!from_hex(hex, out.data(), out.size())) return std::nullopt;
    return out;
}

std::optional<lt::sha1_hash> parse_info_hash_hex(const std::string& hex) {
    lt::sha1_hash out;
    if (!from_hex(hex, out.data(), out.size())) return std::nullopt;
    return out;
}

lt::info_hash_t rendezvous_info_hash(const ContentSha256& x) {
    static constexpr char kPrefix[] = "dopt-rendezvous-v1:";
    lt::hasher h(kPrefix, static_cast<int>(sizeof kPrefix - 1));
    h.update(x.data(), static_cast<int>(x.size()));
    return lt::info_hash_t(h.final());
}

// ---- the state on the wire ----

lt::entry content_state_entry(const ContentState& s) {
    lt::entry e(lt::entry::dictionary_t);
    e["x"] = bytes_of(s.x.data(), s.x.size());
    e["n"] = node_bytes(s.node);
    e["p"] = s.port;
    if (s.holds) e["h"] = bytes_of(s.holds->data(), s.holds->size());
    else if (s.fetching) e["f"] = 1;
    if (s.fetching && !s.holds && !s.split.empty()) {
        std::string c;
        for (std::uint64_t node : s.split) c += node_bytes(node);
        e["c"] = c;
    }
    return e;
}

std::string encode_content_state(const ContentState& s) {
    std::string out;
    lt::bencode(std::back_inserter(out), content_state_entry(s));
    return out;
}

std::optional<ContentState> parse_content_state(const lt::bdecode_node& dict, const ContentSha256& x) {
    if (dict.type() != lt::bdecode_node::dict_t) return std::nullopt;
    const lt::bdecode_node xs = dict.dict_find_string("x");
    const lt::bdecode_node n = dict.dict_find_string("n");
    const lt::bdecode_node p = dict.dict_find_int("p");
    const lt::bdecode_node h = dict.dict_find("h");
    const lt::bdecode_node f = dict.dict_find("f");
    if (!xs || xs.string_value() != lt::string_view(x.data(), x.size())) return std::nullopt;
    if (!n || n.string_length() != 8) return std::nullopt;
    if (!p || p.int_value() < 1 || p.int_value() > 65535) return std::nullopt;
    ContentState s;
    s.x = x;
    s.node = node_from_bytes(n.string_value());
    s.port = static_cast<int>(p.int_value());
    if (f && (f.type() != lt::bdecode_node::int_t || f.int_value() != 1 || h)) return std::nullopt;
    s.fetching = static_cast<bool>(f);
    if (const lt::bdecode_node c = dict.dict_find("c")) {
        if (!f || c.type() != lt::bdecode_node::string_t) return std::nullopt;
        const lt::string_view nodes = c.string_value();
        if (nodes.empty() || nodes.size() % 8 != 0 || nodes.size() / 8 > kMaxSplitNodes) return std::nullopt;
        for (std::size_t i = 0; i < nodes.size(); i += 8) s.split.push_back(node_from_bytes(nodes.substr(i, 8)));
        if (!std::is_sorted(s.split.begin(), s.split.end()) ||
            std::adjacent_find(s.split.begin(), s.split.end()) != s.split.end() ||
            !std::binary_search(s.split.begin(), s.split.end(), s.node))
            return std::nullopt;
    }
    if (!h) return s;  // a wanter
    if (h.type() != lt::bdecode_node::string_t || h.string_length() != 20) return std::nullopt;
    s.holds = lt::sha1_hash(h.string_ptr());
    return s;
}

std::optional<ContentState> parse_content_message(lt::span<char const> payload,
                                                  const ContentSha256& x) {
    if (payload.empty() || payload.size() > static_cast<std::ptrdiff_t>(kMaxContentMessageSize))
        return std::nullopt;
    lt::error_code ec;
    const lt::bdecode_node node = lt::bdecode(payload, ec, nullptr, 4, 32);
    if (ec) return std::nullopt;
    return parse_content_state(node, x);
}

namespace {
// SplitMix64's finalizer: a fixed bijection of 64 bits that spreads every
// input bit over the output.
std::uint64_t mix64(std::uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

// Whether a comes before b for a piece: the higher score; ties (never in
// practice) go to the lower node id, the same on every agent.
bool comes_before(std::uint64_t a, std::uint64_t score_a, std::uint64_t b, std::uint64_t score_b) {
    return score_a > score_b || (score_a == score_b && a < b);
}
}  // namespace

std::uint64_t cofetch_piece_score(std::uint64_t node, int piece) {
    return mix64(mix64(node) ^ (static_cast<std::uint64_t>(piece) * 0x9e3779b97f4a7c15ULL));
}

std::uint64_t cofetch_piece_owner(const std::vector<std::uint64_t>& nodes, int piece) {
    std::uint64_t owner = 0;
    std::uint64_t best = 0;
    bool any = false;
    for (std::uint64_t node : nodes) {
        const std::uint64_t score = cofetch_piece_score(node, piece);
        if (!any || comes_before(node, score, owner, best)) {
            owner = node;
            best = score;
            any = true;
        }
    }
    return owner;
}

std::vector<std::uint64_t> cofetch_owners(const std::vector<std::uint64_t>& nodes, int pieces) {
    std::vector<std::uint64_t> owners;
    if (nodes.empty() || pieces <= 0) return owners;
    // Each node gets floor(pieces / k) pieces, and `extra` of them one more.
    const auto k = static_cast<std::int64_t>(nodes.size());
    const std::int64_t share = pieces / k;
    const std::int64_t extra = pieces % k;
    std::int64_t above = 0;  // nodes that got share + 1
    std::map<std::uint64_t, std::int64_t> taken;
    owners.reserve(static_cast<std::size_t>(pieces));
    for (int p = 0; p < pieces; ++p) {
        std::uint64_t owner = 0;
        std::uint64_t best = 0;
        bool any = false;
        for (std::uint64_t node : nodes) {
            const std::int64_t t = taken[node];
            if (t > share || (t == share && above >= extra)) continue;
            const std::uint64_t score = cofetch_piece_score(node, p);
            if (!any || comes_before(node, score, owner, best)) {
                owner = node;
                best = score;
                any = true;
            }
        }
        // Some node is under its bound: the bounds add up to `pieces`.
        if (++taken[owner] == share + 1) ++above;
        owners.push_back(owner);
    }
    return owners;
}

std::size_t cofetch_piece_rank(const std::vector<std::uint64_t>& nodes, int piece, std::uint64_t node) {
    if (std::find(nodes.begin(), nodes.end(), node) == nodes.end()) return nodes.size();
    const std::uint64_t mine = cofetch_piece_score(node, piece);
    std::size_t rank = 0;
    for (std::uint64_t other : nodes)
        if (other != node && comes_before(other, cofetch_piece_score(other, piece), node, mine)) ++rank;
    return rank;
}

std::string encode_piece_hash(const ContentPieceHash& h) {
    lt::entry e(lt::entry::dictionary_t);
    e["x"] = bytes_of(h.x.data(), h.x.size());
    e["n"] = node_bytes(h.node);
    e["z"] = static_cast<std::int64_t>(h.size);
    e["i"] = h.piece;
    if (h.sha1.empty()) e["g"] = 1;
    else e["s"] = h.sha1;
    std::string out;
    lt::bencode(std::back_inserter(out), e);
    return out;
}

std::optional<ContentPieceHash> parse_piece_hash(const lt::bdecode_node& dict, const ContentSha256& x) {
    if (dict.type() != lt::bdecode_node::dict_t) return std::nullopt;
    const lt::bdecode_node xs = dict.dict_find_string("x");
    const lt::bdecode_node n = dict.dict_find_string("n");
    const lt::bdecode_node z = dict.dict_find_int("z");
    const lt::bdecode_node i = dict.dict_find_int("i");
    const lt::bdecode_node sha1 = dict.dict_find("s");
    const lt::bdecode_node g = dict.dict_find("g");
    if (!xs || xs.string_value() != lt::string_view(x.data(), x.size())) return std::nullopt;
    if (!n || n.string_length() != 8) return std::nullopt;
    if (sha1 ? (g || sha1.type() != lt::bdecode_node::string_t || sha1.string_length() != 20)
             : (!g || g.type() != lt::bdecode_node::int_t || g.int_value() != 1))
        return std::nullopt;
    // A file of at most 2^50 bytes (1 PiB): pieces stay within an int.
    if (!z || z.int_value() < 1 || z.int_value() > (std::int64_t{1} << 50) || !i || i.int_value() < 0)
        return std::nullopt;
    const auto size = static_cast<std::uint64_t>(z.int_value());
    const auto piece = static_cast<std::uint64_t>(choose_piece_size(size));
    if (static_cast<std::uint64_t>(i.int_value()) >= size / piece + (size % piece != 0)) return std::nullopt;
    ContentPieceHash h;
    h.x = x;
    h.node = node_from_bytes(n.string_value());
    h.size = size;
    h.piece = static_cast<int>(i.int_value());
    if (sha1) h.sha1 = std::string(sha1.string_value());
    return h;
}

// ---- ContentTable ----

ContentTable::ContentTable(std::uint64_t own_node, std::function<void()> notify)
    : own_node_(own_node), notify_(std::move(notify)) {}

void ContentTable::set_listen_port(int port) {
    std::lock_guard<std::mutex> lock(mutex_);
    port_ = port;
}

bool ContentTable::push(ContentEvent e) {
    if (events_.size() >= kMaxContentEvents) {
        ++ignored_count_;
        return false;
    }
    events_.push_back(std::move(e));
    return true;
}

bool ContentTable::report_holder(const ContentSha256& x, const lt::tcp::endpoint& conn,
                                 const PeerState& p) {
    ContentEvent e;
    e.kind = ContentEvent::Kind::HolderFound;
    e.sha256 = to_hex(x.data(), x.size());
    e.info_hash = to_hex(p.holds->data(), p.holds->size());
    e.peer = endpoint_string(lt::tcp::endpoint(conn.address(), static_cast<unsigned short>(p.port)));
    return push(std::move(e));
}

bool ContentTable::report_wanters(const ContentSha256& x, Content& c, bool always) {
    std::vector<std::uint64_t> wanters, fetchers;
    std::map<std::uint64_t, std::vector<std::uint64_t>> splits;
    std::map<std::uint64_t, std::string> endpoints;
    for (const auto& [conn, p] : c.peers) {
        if (p.holds) continue;
        wanters.push_back(p.node);
        if (p.fetching) fetchers.push_back(p.node);
        if (!p.split.empty()) splits[p.node] = p.split;
        endpoints[p.node] =
            endpoint_string(lt::tcp::endpoint(conn.address(), static_cast<unsigned short>(p.port)));
    }
    for (auto* v : {&wanters, &fetchers}) {
        std::sort(v->begin(), v->end());
        v->erase(std::unique(v->begin(), v->end()), v->end());
    }
    if (!always && wanters == c.wanters_reported && fetchers == c.fetchers_reported &&
        splits == c.splits_reported)
        return false;
    c.wanters_reported = wanters;
    c.fetchers_reported = fetchers;
    c.splits_reported = splits;
    ContentEvent e;
    e.kind = ContentEvent::Kind::WantersChanged;
    e.sha256 = to_hex(x.data(), x.size());
    e.wanters = std::move(wanters);
    e.fetchers = std::move(fetchers);
    e.splits = std::move(splits);
    e.endpoints = std::move(endpoints);
    return push(std::move(e));
}

void ContentTable::set_own(const ContentSha256& x, std::optional<lt::sha1_hash> h, bool fetching,
                           std::vector<std::uint64_t> split) {
    bool queued = false;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        Content& c = contents_[x];
        const bool wanted = c.own && !c.own->holds;
        c.own = ContentState{x, own_node_, port_, h, fetching && !h, fetching && !h ? std::move(split)
                                                                                   : std::vector<std::uint64_t>{}};
        if (!h && !wanted) {  // starts wanting: what R already knows
            for (const auto& [conn, p] : c.peers)
                if (p.holds) queued = report_holder(x, conn, p) || queued;
            queued = report_wanters(x, c, !c.peers.empty()) || queued;
        }
    }
    if (queued && notify_) notify_();
}

void ContentTable::clear_own(const ContentSha256& x) {
    std::lock_guard<std::mutex> lock(mutex_);
    contents_.erase(x);
}

std::optional<ContentState> ContentTable::own_state(const ContentSha256& x) const {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = contents_.find(x);
    return it == contents_.end() ? std::nullopt : it->second.own;
}

void ContentTable::peer_said(const ContentSha256& x, const lt::tcp::endpoint& conn,
                             const ContentState& s) {
    bool queued = false;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        auto it = contents_.find(x);
        if (it == contents_.end()) return;  // R is being removed
        Content& c = it->second;
        PeerState& p = c.peers[conn];
        const bool new_mapping = s.holds && p.holds != s.holds;
        p = PeerState{s.node, s.holds, s.port, s.fetching, s.split};
        if (c.own && !c.own->holds) {
            if (new_mapping) queued = report_holder(x, conn, p);
            queued = report_wanters(x, c, false) || queued;
        }
    }
    if (queued && notify_) notify_();
}

void ContentTable::peer_gone(const ContentSha256& x, const lt::tcp::endpoint& conn) {
    bool queued = false;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        auto it = contents_.find(x);
        if (it == contents_.end() || it->second.peers.erase(conn) == 0) return;
        Content& c = it->second;
        if (c.own && !c.own->holds) queued = report_wanters(x, c, false);
    }
    if (queued && notify_) notify_();
}

void ContentTable::peer_sent_hash(const lt::tcp::endpoint& conn, const ContentPieceHash& h) {
    bool queued = false;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        auto it = contents_.find(h.x);
        if (it == contents_.end() || !it->second.own || it->second.own->holds) return;
        auto peer = it->second.peers.find(conn);
        ContentEvent e;
        e.kind = ContentEvent::Kind::PieceHash;
        e.sha256 = to_hex(h.x.data(), h.x.size());
        e.peer = endpoint_string(peer == it->second.peers.end()
                                     ? conn
                                     : lt::tcp::endpoint(conn.address(), static_cast<unsigned short>(peer->second.port)));
        e.node = h.node;
        e.size = h.size;
        e.piece = h.piece;
        e.piece_sha1 = h.sha1;
        queued = push(std::move(e));
    }
    if (queued && notify_) notify_();
}

void ContentTable::ignored(const lt::tcp::endpoint& conn, const std::string& why) {
    ++ignored_count_;
    bool queued = false;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        ContentEvent e;
        e.kind = ContentEvent::Kind::MessageIgnored;
        e.peer = endpoint_string(conn);
        e.message = why;
        queued = push(std::move(e));
    }
    if (queued && notify_) notify_();
}

std::vector<ContentEvent> ContentTable::take_events() {
    std::lock_guard<std::mutex> lock(mutex_);
    std::vector<ContentEvent> out;
    out.swap(events_);
    return out;
}

// ---- the plugins (network thread only) ----

// One per BitTorrent connection of a rendezvous torrent.
class ContentPeer : public lt::peer_plugin {
public:
    ContentPeer(lt::peer_connection_handle pc, const ContentSha256& x,
                std::shared_ptr<ContentTable> table)
        : pc_(std::move(pc)), remote_(pc_.remote()), x_(x), table_(std::move(table)) {}
    // libtorrent destroys the plugin with its connection.
    ~ContentPeer() override { table_->peer_gone(x_, remote_); }

    lt::string_view type() const override { return kContentExtensionName; }

    void add_handshake(lt::entry& e) override {
        e["m"][kContentExtensionName] = kContentMessageId;
        if (auto own = table_->own_state(x_)) e[kContentExtensionName] = content_state_entry(*own);
    }

    // A peer without dopt_content is not a dopt agent: it is told nothing.
    bool on_extension_handshake(const lt::bdecode_node& h) override {
        const lt::bdecode_node m = h.dict_find_dict("m");
        const std::int64_t id = m ? m.dict_find_int_value(kContentExtensionName, 0) : 0;
        if (id > 0 && id <= 255) peer_msg_id_ = static_cast<int>(id);
        const lt::bdecode_node state = h.dict_find(kContentExtensionName);
        if (!state) return true;
        if (auto s = parse_content_state(state, x_)) table_->peer_said(x_, remote_, *s);
        else table_->ignored(remote_, "malformed dopt_content entry in the extended handshake");
        return true;
    }

    // `length` is the whole payload's, `body` what has arrived so far. A
    // message with our id is always consumed (returning false would make
    // libtorrent disconnect the peer for an unknown message).
    bool on_extended(int length, int msg, lt::span<char const> body) override {
        if (msg != kContentMessageId) return false;
        if (body.size() < length) return true;  // wait for the rest
        if (!body.empty() && body.size() <= static_cast<std::ptrdiff_t>(kMaxContentMessageSize)) {
            lt::error_code ec;
            const lt::bdecode_node node = lt::bdecode(body, ec, nullptr, 4, 32);
            const bool is_hash = !ec && node.type() == lt::bdecode_node::dict_t && node.dict_find("i");
            if (is_hash) {
                if (auto h = parse_piece_hash(node, x_)) table_->peer_sent_hash(remote_, *h);
                else table_->ignored(remote_, "malformed dopt_content piece hash");
                return true;
            }
            if (auto s = ec ? std::nullopt : parse_content_state(node, x_)) {
                table_->peer_said(x_, remote_, *s);
                return true;
            }
        }
        table_->ignored(remote_, "malformed dopt_content message (" + std::to_string(length) + " bytes)");
        return true;
    }

    void send_state(const std::string& payload) {
        if (peer_msg_id_ == 0 || !pc_.native_handle() || pc_.is_disconnecting()) return;
        std::string frame(4, '\0');
        const auto len = static_cast<std::uint32_t>(payload.size() + 2);
        for (int i = 0; i < 4; ++i) frame[static_cast<std::size_t>(i)] = static_cast<char>(len >> (24 - 8 * i));
        frame += static_cast<char>(20);  // BEP 10 "extended"
        frame += static_cast<char>(peer_msg_id_);
        frame += payload;
        pc_.send_buffer(frame.data(), static_cast<int>(frame.size()));
    }

private:
    lt::peer_connection_handle pc_;
    const lt::tcp::endpoint remote_;
    const ContentSha256 x_;
    std::shared_ptr<ContentTable> table_;
    int peer_msg_id_ = 0;  // the peer's id for dopt_content; 0 until its handshake
};

// One per rendezvous torrent.
class ContentTorrent : public lt::torrent_plugin {
public:
    ContentTorrent(const ContentSha256& x, std::shared_ptr<ContentTable> table)
        : x_(x), table_(std::move(table)) {}

    std::shared_ptr<lt::peer_plugin> new_connection(const lt::peer_connection_handle& pc) override {
        if (pc.type() != lt::connection_type::bittorrent) return nullptr;
        prune();
        auto peer = std::make_shared<ContentPeer>(pc, x_, table_);
        peers_.push_back(peer);  // libtorrent owns it; we keep a weak reference
        return peer;
    }

    void send_state() {
        const auto own = table_->own_state(x_);
        if (own) send_message(encode_content_state(*own));
    }

    void send_message(const std::string& payload) {
        prune();
        for (const auto& weak : peers_)
            if (auto peer = weak.lock()) peer->send_state(payload);
    }

private:
    void prune() {
        peers_.erase(std::remove_if(peers_.begin(), peers_.end(),
                                    [](const std::weak_ptr<ContentPeer>& p) { return p.expired(); }),
                     peers_.end());
    }

    const ContentSha256 x_;
    std::shared_ptr<ContentTable> table_;
    std::vector<std::weak_ptr<ContentPeer>> peers_;
};

ContentPlugin::ContentPlugin(std::shared_ptr<ContentTable> table) : table_(std::move(table)) {}

void ContentPlugin::expect_rendezvous(const lt::info_hash_t& r, const ContentSha256& x) {
    expected_.expect(r, x);
}

void ContentPlugin::forget_rendezvous(const lt::info_hash_t& r) { expected_.forget(r); }

std::shared_ptr<lt::torrent_plugin> ContentPlugin::new_torrent(const lt::torrent_handle& handle,
                                                               lt::client_data_t) {
    // info_hashes() reads an immutable field (no call into the network thread).
    const lt::info_hash_t ih = handle.info_hashes();
    const std::optional<ContentSha256> x = expected_.find(ih);
    if (!x) return nullptr;
    auto plugin = std::make_shared<ContentTorrent>(*x, table_);
    keep_torrent_plugin(torrents_, ih, plugin);
    return plugin;
}

void ContentPlugin::send_state(const lt::info_hash_t& r) {
    auto it = torrents_.find(r);
    if (it == torrents_.end()) return;
    if (auto t = it->second.lock()) t->send_state();
}

void ContentPlugin::send_message(const lt::info_hash_t& r, const std::string& payload) {
    auto it = torrents_.find(r);
    if (it == torrents_.end()) return;
    if (auto t = it->second.lock()) t->send_message(payload);
}

}  // namespace dopt::p2p
