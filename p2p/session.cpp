// PeerSession: the libtorrent session with dopt's safety defaults. See
// session.h for the contract and docs/design.md "Safety defaults" for why.
#include "p2p/session.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <cstring>
#include <map>
#include <optional>
#include <stdexcept>
#include <utility>

#include <libtorrent/add_torrent_params.hpp>
#include <libtorrent/announce_entry.hpp>
#include <libtorrent/alert_types.hpp>
#include <libtorrent/extensions/smart_ban.hpp>
#include <libtorrent/extensions/ut_metadata.hpp>
#include <libtorrent/fingerprint.hpp>
#include <libtorrent/hasher.hpp>
#include <libtorrent/ip_filter.hpp>
#include <libtorrent/posix_disk_io.hpp>
#include <libtorrent/read_resume_data.hpp>
#include <libtorrent/session.hpp>
#include <libtorrent/session_params.hpp>
#include <libtorrent/settings_pack.hpp>
#include <libtorrent/torrent_status.hpp>

#include "p2p/claims.h"
#include "p2p/content.h"
#include "p2p/lsd_listener.h"

namespace dopt::p2p {

// ---- parsing the settings ----

lt::tcp::endpoint parse_endpoint(const std::string& value, const char* what, bool allow_port0) {
    auto fail = [&]() -> lt::tcp::endpoint {
        throw std::runtime_error(std::string(what) + ": \"" + value +
                                 "\" is not an address:port (IPv6 as [addr]:port)");
    };
    std::string host, port;
    if (!value.empty() && value.front() == '[') {
        const auto close = value.find(']');
        if (close == std::string::npos || close + 1 >= value.size() || value[close + 1] != ':')
            return fail();
        host = value.substr(1, close - 1);
        port = value.substr(close + 2);
    } else {
        const auto colon = value.find(':');
        if (colon == std::string::npos || value.find(':', colon + 1) != std::string::npos)
            return fail();
        host = value.substr(0, colon);
        port = value.substr(colon + 1);
    }
    if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos)
        return fail();
    const int port_num = std::stoi(port);
    if (port_num > 65535 || (port_num == 0 && !allow_port0)) return fail();
    lt::error_code ec;
    const lt::address addr = lt::make_address(host, ec);
    if (ec || host.empty()) return fail();
    if (value.front() == '[' && !addr.is_v6()) return fail();
    return lt::tcp::endpoint(addr, static_cast<unsigned short>(port_num));
}

namespace {

// The first and last address of a network.
struct AddressRange {
    lt::address first;
    lt::address last;
};

template <std::size_t N>
AddressRange range_from_bytes(const std::array<unsigned char, N>& addr,
                              const std::array<unsigned char, N>& mask) {
    std::array<unsigned char, N> lo{}, hi{};
    for (std::size_t i = 0; i < N; ++i) {
        lo[i] = static_cast<unsigned char>(addr[i] & mask[i]);
        hi[i] = static_cast<unsigned char>(addr[i] | static_cast<unsigned char>(~mask[i]));
    }
    if constexpr (N == 4)
        return {lt::address_v4(lo), lt::address_v4(hi)};
    else
        return {lt::address_v6(lo), lt::address_v6(hi)};
}

template <std::size_t N>
std::array<unsigned char, N> prefix_mask(int prefix) {
    std::array<unsigned char, N> mask{};
    for (std::size_t i = 0; i < N; ++i) {
        const int bits = std::max(0, std::min(8, prefix - static_cast<int>(i) * 8));
        mask[i] = static_cast<unsigned char>(bits == 0 ? 0 : (0xff << (8 - bits)) & 0xff);
    }
    return mask;
}

AddressRange range_of(const lt::address& addr, int prefix) {
    if (addr.is_v4()) return range_from_bytes<4>(addr.to_v4().to_bytes(), prefix_mask<4>(prefix));
    return range_from_bytes<16>(addr.to_v6().to_bytes(), prefix_mask<16>(prefix));
}

// "a.b.c.d/n", "v6addr/n", or a bare address (one host). Host bits are
// ignored ("192.168.1.7/24" is 192.168.1.0/24). Throws naming the value.
AddressRange parse_cidr(const std::string& value) {
    auto fail = [&]() -> AddressRange {
        throw std::runtime_error("allowed_networks: \"" + value +
                                 "\" is not a network (address/prefix, e.g. 192.168.1.0/24)");
    };
    const auto slash = value.find('/');
    const std::string host = value.substr(0, slash);
    lt::error_code ec;
    const lt::address addr = lt::make_address(host, ec);
    if (ec || host.empty()) return fail();
    const int max_prefix = addr.is_v4() ? 32 : 128;
    int prefix = max_prefix;
    if (slash != std::string::npos) {
        const std::string bits = value.substr(slash + 1);
        if (bits.empty() || bits.size() > 3 ||
            bits.find_first_not_of("0123456789") != std::string::npos)
            return fail();
        prefix = std::stoi(bits);
        if (prefix > max_prefix) return fail();
    }
    return range_of(addr, prefix);
}

// The subnet of the listen address on the interface that holds it;
// 127.0.0.0/8 (or ::1) for a loopback address; none for a wildcard address
// or one no interface holds.
std::vector<AddressRange> interface_networks(const lt::address& listen) {
    if (listen.is_loopback()) {
        if (listen.is_v4()) return {parse_cidr("127.0.0.0/8")};
        return {parse_cidr("::1/128")};
    }
    if (!listen.is_unspecified()) {
        ifaddrs* list = nullptr;
        if (getifaddrs(&list) == 0) {
            std::vector<AddressRange> found;
            for (ifaddrs* ifa = list; ifa != nullptr && found.empty(); ifa = ifa->ifa_next) {
                if (ifa->ifa_addr == nullptr || ifa->ifa_netmask == nullptr) continue;
                if (listen.is_v4() && ifa->ifa_addr->sa_family == AF_INET) {
                    std::array<unsigned char, 4> a{}, m{};
                    std::memcpy(a.data(), &reinterpret_cast<sockaddr_in*>(ifa->ifa_addr)->sin_addr, 4);
                    std::memcpy(m.data(), &reinterpret_cast<sockaddr_in*>(ifa->ifa_netmask)->sin_addr, 4);
                    if (lt::address_v4(a) == listen.to_v4()) found.push_back(range_from_bytes<4>(a, m));
                } else if (listen.is_v6() && ifa->ifa_addr->sa_family == AF_INET6) {
                    std::array<unsigned char, 16> a{}, m{};
                    std::memcpy(a.data(), &reinterpret_cast<sockaddr_in6*>(ifa->ifa_addr)->sin6_addr, 16);
                    std::memcpy(m.data(), &reinterpret_cast<sockaddr_in6*>(ifa->ifa_netmask)->sin6_addr, 16);
                    if (lt::address_v6(a) == lt::address_v6(listen.to_v6().to_bytes()))
                        found.push_back(range_from_bytes<16>(a, m));
                }
            }
            freeifaddrs(list);
            return found;
        }
    }
    return {};
}

// Networks admitted when allowed_networks is empty: interface_networks;
// for a wildcard address or one no interface holds, the private,
// link-local and loopback ranges.
std::vector<AddressRange> default_networks(const lt::address& listen) {
    std::vector<AddressRange> found = interface_networks(listen);
    if (!found.empty()) return found;
    std::vector<AddressRange> nets;
    for (const char* cidr : {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16",
                             "127.0.0.0/8", "fe80::/10", "fc00::/7", "::1/128"})
        nets.push_back(parse_cidr(cidr));
    return nets;
}

// Blocks everything, then admits `allowed` and the static peers.
lt::ip_filter build_ip_filter(const std::vector<AddressRange>& allowed,
                              const std::vector<lt::tcp::endpoint>& peers) {
    lt::ip_filter filter;
    filter.add_rule(lt::make_address("0.0.0.0"), lt::make_address("255.255.255.255"),
                    lt::ip_filter::blocked);
    filter.add_rule(lt::make_address("::"),
                    lt::make_address("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
                    lt::ip_filter::blocked);
    for (const auto& net : allowed) filter.add_rule(net.first, net.last, 0);
    for (const auto& peer : peers) filter.add_rule(peer.address(), peer.address(), 0);
    return filter;
}

int clamp_rate(std::uint64_t bytes_per_second) {
    return static_cast<int>(std::min<std::uint64_t>(bytes_per_second, INT_MAX));
}

// "" (listen nowhere) without an address.
std::string listen_interfaces_value(const std::optional<lt::tcp::endpoint>& ep) {
    if (!ep) return "";
    const std::string port = std::to_string(ep->port());
    if (ep->address().is_v6()) return "[" + ep->address().to_string() + "]:" + port;
    return ep->address().to_string() + ":" + port;
}

// The settings reconfigure() may change, over `pack`.
void set_changeable(lt::settings_pack& pack, const SessionSettings& s,
                    const std::optional<lt::tcp::endpoint>& listen) {
    pack.set_bool(lt::settings_pack::enable_lsd, s.lan_discovery && listen.has_value());
    pack.set_str(lt::settings_pack::listen_interfaces, listen_interfaces_value(listen));
    pack.set_int(lt::settings_pack::upload_rate_limit, clamp_rate(s.upload_rate_limit));
    pack.set_int(lt::settings_pack::download_rate_limit, clamp_rate(s.download_rate_limit));
}

// The complete settings pack: every setting that could make the session
// talk to anything beyond the configured LAN is set here explicitly, since
// libtorrent's own defaults turn DHT, UPnP, NAT-PMP and LSD on.
lt::settings_pack make_settings(const SessionSettings& s, const std::optional<lt::tcp::endpoint>& listen) {
    lt::settings_pack pack;
    pack.set_bool(lt::settings_pack::enable_dht, false);
    pack.set_str(lt::settings_pack::dht_bootstrap_nodes, "");
    set_changeable(pack, s, listen);
    pack.set_bool(lt::settings_pack::enable_upnp, false);
    pack.set_bool(lt::settings_pack::enable_natpmp, false);
    pack.set_bool(lt::settings_pack::enable_outgoing_utp, false);
    pack.set_bool(lt::settings_pack::enable_incoming_utp, false);
    pack.set_bool(lt::settings_pack::enable_outgoing_tcp, true);
    pack.set_bool(lt::settings_pack::enable_incoming_tcp, true);
    // Listen on the configured address and port only (set_changeable): no
    // fallback to another port, no retries on port + 1, ...
    pack.set_bool(lt::settings_pack::listen_system_port_fallback, false);
    pack.set_int(lt::settings_pack::max_retry_port_bind, 0);
    // The only trackers are [p2p] trackers (apply_safe_params; those of
    // metainfo are stripped), each in a tier of its own: every one is
    // announced to, so agents that use different ones still meet where
    // their lists overlap. A configured tracker is trusted as the static
    // peers are: the IP filter (allowed_networks) applies to the peers it
    // names, not to the tracker itself, which may sit on another subnet.
    pack.set_bool(lt::settings_pack::announce_to_all_trackers, true);
    pack.set_bool(lt::settings_pack::announce_to_all_tiers, true);
    pack.set_bool(lt::settings_pack::apply_ip_filter_to_trackers, false);
    pack.set_str(lt::settings_pack::user_agent, "dopt/0.1");
    pack.set_str(lt::settings_pack::peer_fingerprint, lt::generate_fingerprint("DO", 0, 1, 0, 0));
    // Several agents behind one NAT, or on 127.0.0.1 in tests.
    pack.set_bool(lt::settings_pack::allow_multiple_connections_per_ip, true);
    // Keep connections to peers that have just become seeds: libtorrent
    // closes an "uninteresting upload-only peer" when the peer says it is
    // upload-only before we have seen its last HAVE, and the agent, seeing
    // no peer with that piece, would fetch it from the origin again. A LAN
    // swarm is small.
    pack.set_bool(lt::settings_pack::close_redundant_connections, false);
    // Encrypted handshakes (BitTorrent's RC4 obfuscation) are accepted from
    // peers that ask for them: stock clients try them first (a refusal cost
    // each of their connections a second) and some require them. The
    // agent's own connections start in plaintext (kPlaintextFirst) and try
    // encryption only with a peer that ended a plaintext one: between
    // agents that saves both ends a 768-bit Diffie-Hellman in
    // boost::multiprecision, a large share of an agent's CPU time in a
    // swarm of many agents (docs/performance.md), and the obfuscation hides
    // nothing on a LAN (docs/design.md "Safety defaults"). Inside an
    // encrypted handshake the payload stays plaintext when the peer offers
    // that.
    pack.set_int(lt::settings_pack::out_enc_policy, lt::settings_pack::pe_enabled);
    pack.set_int(lt::settings_pack::in_enc_policy, lt::settings_pack::pe_enabled);
    pack.set_int(lt::settings_pack::allowed_enc_level, lt::settings_pack::pe_both);
    pack.set_bool(lt::settings_pack::prefer_rc4, false);
    // Try a peer again 2 s after a failed or dropped connection (times the
    // number of failures), not 60 s: on a LAN a connection refused at the
    // start, by a peer that had not added the torrent yet, or both of two
    // simultaneous connections dropped as duplicates, is worth retrying soon.
    pack.set_int(lt::settings_pack::min_reconnect_time, 2);
    // Every interested peer is unchoked at once (libtorrent's default
    // unchokes 8 and rotates every 15 s): agents on a LAN cooperate, there
    // is no tit-for-tat to play, and the agent reads a peer that keeps it
    // choked for 2 s as one that will not deliver (agent/swarm.cpp).
    pack.set_int(lt::settings_pack::unchoke_slots_limit, -1);
    // error, status (torrent_finished, hash_failed, state changes), storage
    // (read_piece, save_resume_data, file errors), peer (peer_ban,
    // peer_error), connect, piece_progress (piece_finished), ip_block
    // (peer_blocked), performance_warning, tracker (replies and errors).
    pack.set_int(lt::settings_pack::alert_mask,
                 lt::alert_category::error | lt::alert_category::status | lt::alert_category::tracker |
                     lt::alert_category::storage | lt::alert_category::peer |
                     lt::alert_category::connect | lt::alert_category::piece_progress |
                     lt::alert_category::ip_block | lt::alert_category::performance_warning);
    return pack;
}

// smart_ban is a torrent plugin; session_params wants session plugins.
// (libtorrent's own wrapper for this lives in an internal header.)
struct SmartBanPlugin : lt::plugin {
    std::shared_ptr<lt::torrent_plugin> new_torrent(const lt::torrent_handle& handle,
                                                    lt::client_data_t userdata) override {
        return lt::create_smart_ban_plugin(handle, userdata);
    }
};

// Owns the eventfd behind alert_fd().
class EventFd {
public:
    EventFd() : fd_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
        if (fd_ < 0) throw std::runtime_error(std::string("eventfd: ") + std::strerror(errno));
    }
    ~EventFd() { close(fd_); }
    EventFd(const EventFd&) = delete;
    EventFd& operator=(const EventFd&) = delete;
    int fd() const { return fd_; }

private:
    int fd_;
};

std::uint64_t random_id() {
    std::uint64_t id = 0;
    auto* p = reinterpret_cast<unsigned char*>(&id);
    std::size_t got = 0;
    while (got < sizeof id) {
        const ssize_t n = getrandom(p + got, sizeof id - got, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw std::runtime_error(std::string("getrandom: ") + std::strerror(errno));
        got += static_cast<std::size_t>(n);
    }
    return id;
}

// The configured trackers, each in a tier of its own.
std::vector<lt::announce_entry> tracker_entries(const std::vector<std::string>& trackers) {
    std::vector<lt::announce_entry> out;
    for (std::size_t i = 0; i < trackers.size(); ++i) {
        lt::announce_entry e(trackers[i]);
        e.tier = static_cast<std::uint8_t>(i);
        out.push_back(std::move(e));
    }
    return out;
}

// What every torrent of the session is added with: storage under save_path
// only, no web seed, DHT or PEX, no tracker but [p2p] trackers; IP filter
// applied; not paused or auto-managed; LSD only when configured.
void apply_safe_params(lt::add_torrent_params& p, const std::string& save_path,
                       const SessionSettings& s) {
    const bool lsd = s.lan_discovery;
    p.save_path = save_path;
    p.storage_mode = lt::storage_mode_sparse;
    p.trackers.clear();
    p.tracker_tiers.clear();
    if (s.group.empty()) {  // with a group, the torrent's announcer does it
        p.trackers = s.trackers;
        for (std::size_t i = 0; i < s.trackers.size(); ++i) p.tracker_tiers.push_back(static_cast<int>(i));
    }
    p.url_seeds.clear();
    p.http_seeds.clear();
    p.dht_nodes.clear();
    p.flags &= ~(lt::torrent_flags::paused | lt::torrent_flags::auto_managed |
                 lt::torrent_flags::upload_mode | lt::torrent_flags::share_mode |
                 lt::torrent_flags::seed_mode | lt::torrent_flags::stop_when_ready);
    p.flags |= lt::torrent_flags::apply_ip_filter | lt::torrent_flags::disable_dht |
               lt::torrent_flags::disable_pex;
    if (!lsd) p.flags |= lt::torrent_flags::disable_lsd;
}

}  // namespace

lt::sha1_hash group_info_hash(const std::string& group, const lt::info_hash_t& torrent) {
    static constexpr char kPrefix[] = "dopt-group-v1:";
    lt::hasher h(kPrefix, static_cast<int>(sizeof kPrefix - 1));
    h.update(group.data(), static_cast<int>(group.size()));
    const lt::sha1_hash id = torrent.has_v1() ? torrent.v1 : lt::sha1_hash(torrent.v2.data());
    h.update(id.data(), static_cast<int>(id.size()));
    return h.final();
}

namespace {

// A rendezvous torrent never has metadata, so libtorrent never opens its
// storage; should it ever try, nothing can be written under /dev/null.
constexpr char kRendezvousSavePath[] = "/dev/null";

ContentSha256 content_id(const std::string& sha256) {
    auto x = parse_sha256_hex(sha256);
    if (!x) throw std::invalid_argument("not a SHA-256 (64 hex digits): \"" + sha256 + "\"");
    return *x;
}

// LSD re-announces after adding a torrent, in ms (libtorrent's own schedule
// is 0/2/6 s at best; an agent that just added a job wants peers now).
constexpr std::int64_t kLsdRepeatsMs[] = {1000, 3000, 8000};
// After those, a torrent that lacks pieces and has no peer asks the LAN
// again this often: BEP 14's "no more than 1 announce per minute" (stock
// clients announce every 5 minutes).
constexpr std::int64_t kLsdLonelyEveryMs = 60'000;
constexpr std::int64_t kReconnectEveryMs = 10'000;

// A torrent that asks the LAN again: it has metadata (not a rendezvous or
// a metadata lookup), lacks pieces, runs, and knows no peer.
bool lacks_pieces_alone(const lt::torrent_status& st) {
    return st.has_metadata && !st.is_seeding && !(st.flags & lt::torrent_flags::paused) &&
           st.num_peers == 0;
}

}  // namespace

struct PeerSession::Impl {
    struct Torrent {
        lt::torrent_handle handle;
        std::int64_t added_ms = 0;
        std::size_t lsd_repeats_done = 0;
        std::int64_t last_lsd_ms = 0;  // when tick() last announced it
    };

    explicit Impl(const SessionSettings& s)
        : settings(s),
          claim_table(std::make_shared<ClaimTable>(
              kClaimLifetimeMs, kClaimMinHoldMs,
              static_cast<std::size_t>(std::max(1, s.claims_per_peer)))) {}

    SessionSettings settings;
    std::optional<lt::tcp::endpoint> listen;  // none: listening nowhere
    std::vector<lt::tcp::endpoint> static_peers;
    std::vector<AddressRange> allowed;        // allowed_networks, or their default
    std::vector<AddressRange> own_subnet;     // the listen address's network; empty: unknown
    std::set<lt::address> banned;             // blocked until the session ends
    lt::ip_filter default_class_filter;       // libtorrent's, for throttle_lan = false
    std::uint64_t id = random_id();
    std::int64_t last_reconnect_ms = 0;
    std::vector<Torrent> torrents;  // the ones add_torrent added
    std::vector<lt::alert*> alerts;
    // Declaration order matters: the session is destroyed first, while the
    // eventfd its alert notify writes to and the plugin it uses still exist.
    EventFd alert_fd;
    std::shared_ptr<ClaimTable> claim_table;
    std::shared_ptr<ClaimsPlugin> claims = std::make_shared<ClaimsPlugin>(claim_table, id);
    std::shared_ptr<ContentTable> content_table =
        std::make_shared<ContentTable>(id, [fd = alert_fd.fd()] { wake(fd); });
    std::shared_ptr<ContentPlugin> content = std::make_shared<ContentPlugin>(content_table);
    std::map<ContentSha256, lt::torrent_handle> rendezvous;  // by X
    // With a group: torrent -> its announcer G, a torrent added by
    // group_info_hash alone (no metadata, upload mode, no LSD) that alone
    // announces to the trackers; tick() connects the torrent to G's peers.
    std::map<lt::torrent_handle, lt::torrent_handle> announcers;
    std::unique_ptr<lt::session> session;
    // LSD announces heard for torrents not added yet; none while LSD is off
    // or the listen address is not IPv4 (or the socket could not be made:
    // then only libtorrent's LSD finds peers).
    std::unique_ptr<LsdListener> lsd_listener;
    std::string lsd_listener_error;  // why it could not be made ("" otherwise)

    static void wake(int fd) {
        const std::uint64_t one = 1;
        [[maybe_unused]] const ssize_t n = write(fd, &one, sizeof one);
    }

    void connect_static_peers(const lt::torrent_handle& h) {
        for (const auto& peer : static_peers) h.connect_peer(peer, {}, kPlaintextFirst);
    }
    // Peers now, LSD now and its repeats in tick(), static peers reconnected.
    void find_peers(const lt::torrent_handle& h) {
        add_announcer(h);
        connect_static_peers(h);
        connect_lsd_heard(h);
        if (settings.lan_discovery) h.force_lsd_announce();
        bool known = false;
        for (const auto& t : torrents) known = known || t.handle == h;
        if (!known) torrents.push_back({h, monotonic_ms(), 0});
    }
    // `listen`, `static_peers` and `allowed` from `s` (throws naming the
    // bad value; nothing is changed then).
    void parse(const SessionSettings& s);
    // The LSD listener for the current settings and listen address.
    void restart_lsd_listener();
    // Connects to the peers that announced h on LSD before it was added
    // (libtorrent drops announces of torrents it does not have). The IP
    // filter applies, as to every peer.
    void connect_lsd_heard(const lt::torrent_handle& h);
    // Everything blocked but `allowed`, the static peers; banned addresses
    // blocked whatever the rest says.
    lt::ip_filter ip_filter() const {
        lt::ip_filter filter = build_ip_filter(allowed, static_peers);
        for (const auto& a : banned) filter.add_rule(a, a, lt::ip_filter::blocked);
        return filter;
    }
    void apply_peer_class_filter();
    // With a group and trackers: `h`'s announcer, unless it has one.
    void add_announcer(const lt::torrent_handle& h) {
        if (settings.group.empty() || settings.trackers.empty() || announcers.count(h)) return;
        lt::add_torrent_params p;
        p.info_hashes = lt::info_hash_t(group_info_hash(settings.group, h.info_hashes()));
        SessionSettings s = settings;
        s.group.clear();
        s.lan_discovery = false;
        apply_safe_params(p, "/dev/null", s);
        p.flags |= lt::torrent_flags::upload_mode;
        announcers[h] = session->add_torrent(std::move(p));
    }
    void remove_announcer(const lt::torrent_handle& h) {
        auto it = announcers.find(h);
        if (it == announcers.end()) return;
        session->remove_torrent(it->second);
        announcers.erase(it);
    }
    // Each torrent connects to the peers its announcer's trackers named
    // (their listen endpoints); the handshake on the torrent's own
    // info-hash then admits only agents that have it.
    void connect_announced_peers() {
        std::vector<lt::peer_info> infos;
        for (const auto& [h, g] : announcers) {
            try {
                g.get_peer_info(infos);
                for (const auto& p : infos)
                    if (p.source & lt::peer_info::tracker)
                        h.connect_peer(p.ip, lt::peer_info::tracker, kPlaintextFirst);
            } catch (const lt::system_error&) {  // removed meanwhile
            }
        }
    }
    void connect_announced_peer(const lt::torrent_handle& announcer, const lt::tcp::endpoint& peer) {
        for (const auto& [h, g] : announcers) {
            if (g != announcer) continue;
            try {
                h.connect_peer(peer, lt::peer_info::tracker, kPlaintextFirst);
            } catch (const lt::system_error&) {  // removed meanwhile
            }
        }
    }
    // Every torrent of the session (rendezvous and metadata ones too)
    // announces to settings.trackers (or through its announcer, with a
    // group) from now on, at once.
    void replace_trackers() {
        for (auto& [h, g] : announcers) session->remove_torrent(g);
        announcers.clear();
        const std::vector<lt::announce_entry> entries =
            settings.group.empty() ? tracker_entries(settings.trackers) : std::vector<lt::announce_entry>{};
        for (const Torrent& t : torrents) {
            try {
                t.handle.replace_trackers(entries);
                if (!entries.empty()) t.handle.force_reannounce();
                add_announcer(t.handle);
            } catch (const lt::system_error&) {  // removed meanwhile
            }
        }
    }
    // Our state for X becomes `own` (a holder's H, a wanter's nullopt, or
    // nothing at all: R is left); R's peers hear it.
    void set_content_state(const ContentSha256& x, std::optional<std::optional<lt::sha1_hash>> own,
                           bool fetching = false, const std::vector<std::uint64_t>& split = {});
};

void PeerSession::Impl::set_content_state(const ContentSha256& x,
                                          std::optional<std::optional<lt::sha1_hash>> own,
                                          bool fetching, const std::vector<std::uint64_t>& split) {
    auto it = rendezvous.find(x);
    if (!own) {
        content_table->clear_own(x);
        if (it == rendezvous.end()) return;
        const lt::torrent_handle r = it->second;
        rendezvous.erase(it);
        torrents.erase(std::remove_if(torrents.begin(), torrents.end(),
                                      [&](const Torrent& t) { return t.handle == r; }),
                       torrents.end());
        content->forget_rendezvous(r.info_hashes());
        remove_announcer(r);
        session->remove_torrent(r);
        return;
    }
    content_table->set_own(x, *own, fetching, split);  // before R's first handshakes
    if (it != rendezvous.end()) {
        run_on_network_thread(it->second, [plugin = content, r = it->second.info_hashes()] {
            plugin->send_state(r);
        });
        return;
    }
    lt::add_torrent_params p;
    p.info_hashes = rendezvous_info_hash(x);
    apply_safe_params(p, kRendezvousSavePath, settings);
    p.flags |= lt::torrent_flags::upload_mode;
    content->expect_rendezvous(p.info_hashes, x);
    const lt::torrent_handle r = session->add_torrent(std::move(p));
    rendezvous[x] = r;
    find_peers(r);
}

void PeerSession::Impl::parse(const SessionSettings& s) {
    std::optional<lt::tcp::endpoint> new_listen;
    if (!s.listen.empty()) new_listen = parse_endpoint(s.listen, "listen", true);
    std::vector<lt::tcp::endpoint> peers;
    for (const auto& peer : s.peers) peers.push_back(parse_endpoint(peer, "peers", false));
    std::vector<AddressRange> nets;
    for (const auto& cidr : s.allowed_networks) nets.push_back(parse_cidr(cidr));
    // Listening nowhere, with no networks given: no one but the static peers.
    if (nets.empty() && new_listen) nets = default_networks(new_listen->address());
    listen = new_listen;
    static_peers = std::move(peers);
    allowed = std::move(nets);
    // Unknown (none): in_own_subnet holds every address inside.
    own_subnet.clear();
    if (new_listen) own_subnet = interface_networks(new_listen->address());
}

void PeerSession::Impl::restart_lsd_listener() {
    lsd_listener.reset();
    lsd_listener_error.clear();
    if (!settings.lan_discovery || !listen || !listen->address().is_v4()) return;
    try {
        lsd_listener = std::make_unique<LsdListener>(listen->address());
    } catch (const std::runtime_error& e) {
        // Peering works without it: libtorrent's own LSD socket still finds
        // peers that announce after a torrent was added.
        lsd_listener_error = e.what();
    }
}

void PeerSession::Impl::connect_lsd_heard(const lt::torrent_handle& h) {
    if (!lsd_listener) return;
    const std::int64_t now = monotonic_ms();
    lsd_listener->drain(now);
    const lt::info_hash_t ih = h.info_hashes();
    std::vector<lt::sha1_hash> announced_as;  // LSD carries v2 info-hashes truncated
    if (ih.has_v1()) announced_as.push_back(ih.v1);
    if (ih.has_v2()) announced_as.emplace_back(ih.v2.data());
    const int own_port = session->listen_port();
    for (const auto& key : announced_as)
        for (const auto& peer : lsd_listener->announced(key, now))
            if (peer.address() != listen->address() || peer.port() != own_port)
                h.connect_peer(peer, lt::peer_info::lsd, kPlaintextFirst);
}

void PeerSession::Impl::apply_peer_class_filter() {
    if (!settings.throttle_lan) {
        session->set_peer_class_filter(default_class_filter);
        return;
    }
    // libtorrent puts LAN addresses in the "local" peer class, which the
    // global rate limits do not apply to. Map every address to the global
    // class only, which is what libtorrent itself does when the old
    // ignore_limits_on_local_network setting is off.
    const std::uint32_t global = 1u << static_cast<std::uint32_t>(lt::session::global_peer_class_id);
    lt::ip_filter classes;
    classes.add_rule(lt::make_address("0.0.0.0"), lt::make_address("255.255.255.255"), global);
    classes.add_rule(lt::make_address("::"), lt::make_address("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
                     global);
    session->set_peer_class_filter(classes);
}

PeerSession::PeerSession(const SessionSettings& settings)
    : impl_(std::make_unique<Impl>(settings)) {
    Impl& d = *impl_;
    d.parse(settings);
    lt::session_params params(make_settings(settings, d.listen),
                              {std::make_shared<SmartBanPlugin>(), d.claims, d.content});
    // POSIX disk I/O writes each block into the file before the piece's
    // hash is checked, so a verified piece's bytes are in the file when its
    // event comes: the agent copies them out at once (copy_file_range).
    // mmap_disk_io may hash a piece from its store buffer before the file
    // has it: tried (December 7), bench/lan-swarm delivered wrong files
    // with metainfo (no SHA-256 to catch them) in 3 runs of 3.
    params.disk_io_constructor = lt::posix_disk_io_constructor;
    // In the params, so it holds from the first accepted connection on.
    params.ip_filter = d.ip_filter();
    d.session = std::make_unique<lt::session>(std::move(params));
    d.default_class_filter = d.session->get_peer_class_filter();
    d.apply_peer_class_filter();
    // Runs on libtorrent's thread when the alert queue stops being empty: it
    // must only wake the main loop.
    d.session->set_alert_notify([fd = d.alert_fd.fd()] { Impl::wake(fd); });
    d.content_table->set_listen_port(d.session->listen_port());
    d.restart_lsd_listener();
}

PeerSession::~PeerSession() {
    if (impl_ && impl_->session) impl_->session->set_alert_notify([] {});
}

void PeerSession::reconfigure(const SessionSettings& settings) {
    Impl& d = *impl_;
    d.parse(settings);  // throws before anything changes
    const bool trackers_changed = settings.trackers != d.settings.trackers || settings.group != d.settings.group;
    d.settings = settings;
    lt::settings_pack pack;
    set_changeable(pack, settings, d.listen);
    d.session->apply_settings(std::move(pack));
    d.session->set_ip_filter(d.ip_filter());  // closes connections it now refuses
    d.apply_peer_class_filter();
    d.restart_lsd_listener();
    for (const auto& t : d.torrents) {
        try {
            if (settings.lan_discovery) t.handle.unset_flags(lt::torrent_flags::disable_lsd);
            else t.handle.set_flags(lt::torrent_flags::disable_lsd);
        } catch (const lt::system_error&) {  // removed meanwhile: pruned by tick()
        }
    }
    if (d.listen && d.listen->port() != 0) d.content_table->set_listen_port(d.listen->port());
    if (trackers_changed) d.replace_trackers();
}

bool PeerSession::listening() const { return impl_->listen.has_value(); }

std::string PeerSession::lsd_listener_error() const { return impl_->lsd_listener_error; }

std::uint64_t PeerSession::id() const { return impl_->id; }

int PeerSession::listen_port() const { return impl_->session->listen_port(); }

lt::torrent_handle PeerSession::add_torrent(std::shared_ptr<const lt::torrent_info> info,
                                            const std::string& save_path,
                                            const std::vector<char>& resume_data,
                                            const std::vector<bool>& have_pieces, bool find_peers) {
    Impl& d = *impl_;
    if (!info) throw std::invalid_argument("add_torrent: no metainfo");
    lt::add_torrent_params p;
    bool resumed_ok = false;
    if (!resume_data.empty()) {
        lt::error_code ec;
        lt::add_torrent_params resumed =
            lt::read_resume_data({resume_data.data(), static_cast<long>(resume_data.size())}, ec);
        // Resume data for another torrent, or unreadable: start fresh (a
        // full check of what is on disk).
        if (!ec && resumed.info_hashes == info->info_hashes()) {
            p = std::move(resumed);
            resumed_ok = true;
        }
    }
    // The caller's own pieces as resume data: with a non-empty have_pieces
    // libtorrent 2.0 only checks the file's size (verify_resume_data), not
    // its bytes; with an empty one it checks the whole file.
    if (!resumed_ok && static_cast<int>(have_pieces.size()) == info->num_pieces()) {
        bool any = false;
        p.have_pieces.resize(info->num_pieces(), false);
        for (int i = 0; i < info->num_pieces(); ++i)
            if (have_pieces[static_cast<std::size_t>(i)]) {
                p.have_pieces.set_bit(lt::piece_index_t(i));
                any = true;
            }
        if (!any) p.have_pieces.clear();
    }
    // A private copy: libtorrent may modify the torrent_info it is given,
    // and the caller's may be shared with other sessions or threads.
    auto ti = std::make_shared<lt::torrent_info>(*info);
    ti->clear_trackers();
    ti->set_web_seeds({});
    p.ti = std::move(ti);
    apply_safe_params(p, save_path, d.settings);
    if (!find_peers) {
        p.trackers.clear();
        p.tracker_tiers.clear();
        p.flags |= lt::torrent_flags::disable_lsd;
    }
    // Its info dictionary to peers that ask by BEP 9 (a stock client given
    // a magnet link): they know the info-hash, which is what admits a peer
    // to a torrent's pieces anyway (docs/design.md "Safety defaults").
    p.extensions.push_back(&lt::create_ut_metadata_plugin);

    // The claims plugin attaches to the torrent inside session::add_torrent
    // (on the network thread) and needs its piece count.
    const lt::info_hash_t ih = info->info_hashes();
    d.claims->expect_torrent(ih, info->num_pieces());
    d.claim_table->set_hold(ih, claim_hold_ms(info->piece_length()));
    lt::torrent_handle h;
    try {
        h = d.session->add_torrent(std::move(p));
    } catch (...) {
        d.claims->forget_expected(ih);
        throw;
    }
    d.claims->forget_expected(ih);

    if (find_peers) d.find_peers(h);
    return h;
}

void PeerSession::announce_content(const std::string& sha256, const lt::info_hash_t& torrent) {
    Impl& d = *impl_;
    const ContentSha256 x = content_id(sha256);
    if (!torrent.has_v1()) throw std::invalid_argument("announce_content: not a v1 torrent");
    // Wanters take the info dictionary from us by BEP 9, as from every
    // torrent add_torrent() added.
    d.set_content_state(x, std::optional<lt::sha1_hash>(torrent.v1));
}

void PeerSession::withdraw_content(const std::string& sha256) {
    Impl& d = *impl_;
    const ContentSha256 x = content_id(sha256);
    const auto own = d.content_table->own_state(x);
    if (own && own->holds) d.set_content_state(x, std::nullopt);
}

void PeerSession::look_up_content(const std::string& sha256, bool fetching_from_origin,
                                  const std::vector<std::uint64_t>& split) {
    Impl& d = *impl_;
    const ContentSha256 x = content_id(sha256);
    const auto own = d.content_table->own_state(x);
    if (split.size() > kMaxSplitNodes) throw std::invalid_argument("look_up_content: split too large");
    if (!own || own->holds || own->fetching != fetching_from_origin || own->split != split)
        d.set_content_state(x, std::optional<lt::sha1_hash>(), fetching_from_origin, split);
}

void PeerSession::send_piece_hash(const std::string& sha256, std::uint64_t size, int piece,
                                  const std::string& sha1) {
    Impl& d = *impl_;
    const ContentSha256 x = content_id(sha256);
    auto it = d.rendezvous.find(x);
    if (it == d.rendezvous.end() || (sha1.size() != 20 && !sha1.empty())) return;
    const std::string payload = encode_piece_hash(ContentPieceHash{x, id(), size, piece, sha1});
    run_on_network_thread(it->second, [plugin = d.content, r = it->second.info_hashes(), payload] {
        plugin->send_message(r, payload);
    });
}

void PeerSession::stop_looking_up(const std::string& sha256) {
    Impl& d = *impl_;
    const ContentSha256 x = content_id(sha256);
    const auto own = d.content_table->own_state(x);
    if (own && !own->holds) d.set_content_state(x, std::nullopt);
}

std::vector<ContentEvent> PeerSession::take_content_events() {
    return impl_->content_table->take_events();
}

std::uint64_t PeerSession::content_messages_ignored() const {
    return impl_->content_table->ignored_count();
}

lt::torrent_handle PeerSession::rendezvous_torrent(const std::string& sha256) const {
    auto it = impl_->rendezvous.find(content_id(sha256));
    return it == impl_->rendezvous.end() ? lt::torrent_handle{} : it->second;
}

lt::torrent_handle PeerSession::add_torrent_for_metadata(const lt::sha1_hash& info_hash,
                                                         const std::string& save_path,
                                                         const std::string& peer) {
    Impl& d = *impl_;
    const lt::tcp::endpoint holder = parse_endpoint(peer, "holder", false);
    lt::add_torrent_params p;
    p.info_hashes = lt::info_hash_t(info_hash);
    apply_safe_params(p, save_path, d.settings);
    p.flags |= lt::torrent_flags::upload_mode;
    p.extensions.push_back(&lt::create_ut_metadata_plugin);
    const lt::torrent_handle h = d.session->add_torrent(std::move(p));
    h.connect_peer(holder, {}, kPlaintextFirst);
    d.find_peers(h);
    return h;
}

void PeerSession::remove_torrent(const lt::torrent_handle& handle, bool delete_files) {
    Impl& d = *impl_;
    if (!handle.is_valid()) return;
    d.claim_table->drop_torrent(handle.info_hashes());
    d.remove_announcer(handle);
    d.torrents.erase(std::remove_if(d.torrents.begin(), d.torrents.end(),
                                    [&](const Impl::Torrent& t) { return t.handle == handle; }),
                     d.torrents.end());
    d.session->remove_torrent(handle, delete_files ? lt::session::delete_files
                                                   : lt::remove_flags_t{});
}

void PeerSession::tick() {
    Impl& d = *impl_;
    const std::int64_t now = monotonic_ms();
    d.torrents.erase(std::remove_if(d.torrents.begin(), d.torrents.end(),
                                    [](const Impl::Torrent& t) { return !t.handle.is_valid(); }),
                     d.torrents.end());
    const bool reconnect =
        !d.static_peers.empty() && now - d.last_reconnect_ms >= kReconnectEveryMs;
    if (reconnect) d.last_reconnect_ms = now;
    if (d.lsd_listener) d.lsd_listener->drain(now);

    for (auto& t : d.torrents) {
        // A torrent removed behind our back (through native()) makes handle
        // calls throw; it is pruned on the next tick.
        try {
            const std::size_t n = std::size(kLsdRepeatsMs);
            if (d.settings.lan_discovery && t.lsd_repeats_done < n &&
                now - t.added_ms >= kLsdRepeatsMs[t.lsd_repeats_done]) {
                t.handle.force_lsd_announce();
                // Catch up without announcing twice in one tick.
                while (t.lsd_repeats_done < n &&
                       now - t.added_ms >= kLsdRepeatsMs[t.lsd_repeats_done])
                    ++t.lsd_repeats_done;
                t.last_lsd_ms = now;
            } else if (d.settings.lan_discovery && t.lsd_repeats_done == n &&
                       now - t.last_lsd_ms >= kLsdLonelyEveryMs) {
                t.last_lsd_ms = now;
                if (lacks_pieces_alone(t.handle.status({}))) t.handle.force_lsd_announce();
            }
            // status() without extra fields is a cheap round trip to the
            // network thread; connect_peer to a connected peer is a no-op.
            if (reconnect && !t.handle.status({}).is_seeding) d.connect_static_peers(t.handle);
        } catch (const lt::system_error&) {
        }
    }

    d.connect_announced_peers();
    d.claim_table->expire(now);
}

void PeerSession::claim(const lt::torrent_handle& handle, int piece) {
    Impl& d = *impl_;
    if (!handle.is_valid()) return;
    run_on_network_thread(handle, [plugin = d.claims, ih = handle.info_hashes(), piece,
                                   id = d.id] { plugin->send_claim(ih, piece, id); });
}

void PeerSession::disconnect_peer(const lt::torrent_handle& handle, const lt::tcp::endpoint& peer) {
    Impl& d = *impl_;
    if (!handle.is_valid()) return;
    run_on_network_thread(handle, [plugin = d.claims, ih = handle.info_hashes(), peer] {
        plugin->disconnect_peer(ih, peer);
    });
}

void PeerSession::set_no_download(const lt::torrent_handle& handle, const std::set<lt::address>& addresses) {
    Impl& d = *impl_;
    if (!handle.is_valid()) return;
    run_on_network_thread(handle, [plugin = d.claims, ih = handle.info_hashes(), addresses] {
        plugin->set_no_download(ih, addresses);
    });
}

bool PeerSession::in_own_subnet(const lt::address& address) const {
    const auto& nets = impl_->own_subnet;
    if (nets.empty()) return true;
    return std::any_of(nets.begin(), nets.end(), [&](const AddressRange& r) {
        return r.first.is_v4() == address.is_v4() && !(address < r.first) && !(r.last < address);
    });
}

std::set<lt::tcp::endpoint> PeerSession::peers_that_told(const lt::torrent_handle& handle) const {
    if (!handle.is_valid()) return {};
    return impl_->claim_table->peers_that_told(handle.info_hashes());
}

std::set<lt::tcp::endpoint> PeerSession::peers_that_claim(const lt::torrent_handle& handle) const {
    if (!handle.is_valid()) return {};
    return impl_->claim_table->peers_that_claim(handle.info_hashes());
}

std::vector<Claim> PeerSession::claims(const lt::torrent_handle& handle) const {
    if (!handle.is_valid()) return {};
    return impl_->claim_table->get(handle.info_hashes(), monotonic_ms());
}

std::set<int> PeerSession::claims_held_over(const lt::torrent_handle& handle) const {
    if (!handle.is_valid()) return {};
    return impl_->claim_table->held_over(handle.info_hashes(), monotonic_ms());
}

bool PeerSession::is_static_peer(const lt::tcp::endpoint& peer) const {
    const auto& peers = impl_->static_peers;
    return std::find(peers.begin(), peers.end(), peer) != peers.end();
}

bool PeerSession::ban_address(const std::string& address) {
    lt::error_code ec;
    const lt::address addr = lt::make_address(address, ec);
    if (ec) return false;
    impl_->banned.insert(addr);
    lt::ip_filter filter = impl_->session->get_ip_filter();
    filter.add_rule(addr, addr, lt::ip_filter::blocked);
    impl_->session->set_ip_filter(filter);  // closes its connections too
    return true;
}

int PeerSession::alert_fd() const { return impl_->alert_fd.fd(); }

std::vector<lt::alert*> PeerSession::pop_alerts() {
    Impl& d = *impl_;
    // Clear the eventfd before popping: an alert posted after this read makes
    // it readable again (libtorrent notifies when the queue stops being
    // empty), so none is left waiting without a wake-up.
    std::uint64_t count = 0;
    [[maybe_unused]] const ssize_t n = read(d.alert_fd.fd(), &count, sizeof count);
    d.session->pop_alerts(&d.alerts);
    // A peer banned for sending pieces that failed their hash check is
    // refused from now on (until the session ends), from any port and for
    // every torrent. libtorrent bans only its peer-list entry, which with
    // allow_multiple_connections_per_ip is the address *and port*, which
    // would let the same address connect again from another port and send
    // more bad data.
    lt::ip_filter filter;
    bool banned_any = false;
    for (lt::alert* a : d.alerts) {
        // An announcer connecting out to a peer its tracker named: the
        // torrent it announces connects there too, now (tick() catches up
        // on the ones missed).
        if (auto* pc = lt::alert_cast<lt::peer_connect_alert>(a)) {
            if (pc->direction == lt::peer_connect_alert::direction_t::out) d.connect_announced_peer(pc->handle, pc->endpoint);
            continue;
        }
        if (auto* ban = lt::alert_cast<lt::peer_ban_alert>(a)) {
            if (!banned_any) filter = d.session->get_ip_filter();
            banned_any = true;
            const lt::address addr = ban->endpoint.address();
            d.banned.insert(addr);
            filter.add_rule(addr, addr, lt::ip_filter::blocked);
        }
    }
    if (banned_any) d.session->set_ip_filter(filter);
    return d.alerts;
}

lt::session& PeerSession::native() { return *impl_->session; }

}  // namespace dopt::p2p
