// TorrentSession: PeerSession's torrents and alerts in dopt's types.
#include "p2p/torrent_session.h"

#include <algorithm>
#include <cstring>
#include <map>

#include <libtorrent/alert_types.hpp>
#include <libtorrent/session.hpp>
#include <libtorrent/torrent_status.hpp>
#include <libtorrent/write_resume_data.hpp>
#include <openssl/sha.h>

#include "p2p/content.h"
#include "p2p/metainfo.h"
#include "p2p/session.h"

namespace dopt::p2p {

namespace {

std::vector<bool> to_bools(const lt::typed_bitfield<lt::piece_index_t>& bits) {
    std::vector<bool> out(static_cast<std::size_t>(bits.size()), false);
    for (int i = 0; i < bits.size(); ++i) out[static_cast<std::size_t>(i)] = bits.get_bit(lt::piece_index_t{i});
    return out;
}

// libtorrent's errors for an encrypted handshake it would not take (a mode
// or level the settings refuse, or a malformed one).
bool is_encryption_refusal(const lt::error_code& ec) {
    if (ec.category() != lt::libtorrent_category()) return false;
    switch (ec.value()) {
    case lt::errors::no_incoming_encrypted:
    case lt::errors::no_incoming_regular:
    case lt::errors::unsupported_encryption_mode:
    case lt::errors::unsupported_encryption_mode_selected:
    case lt::errors::invalid_encrypt_handshake:
    case lt::errors::invalid_encryption_constant:
    case lt::errors::sync_hash_not_found:
    case lt::errors::invalid_pad_size:
        return true;
    default:
        return false;
    }
}

}  // namespace

const char* peer_source_name(PeerSource source) {
    switch (source) {
    case PeerSource::Tracker: return "tracker";
    case PeerSource::Lsd: return "lsd";
    case PeerSource::Static: return "static";
    case PeerSource::Incoming: return "incoming";
    case PeerSource::Other: break;
    }
    return "other";
}

PeerAddress parse_peer_address(const std::string& value, const char* what, bool allow_port0) {
    const lt::tcp::endpoint ep = parse_endpoint(value, what, allow_port0);
    return PeerAddress{ep.address().to_string(), ep.port(), ep.address().is_unspecified()};
}

struct TorrentSession::Impl {
    explicit Impl(const SessionSettings& settings) : session(settings) {}
    PeerSession session;
    TorrentId next_id = 1;
    std::map<TorrentId, lt::torrent_handle> handles;
    std::map<TorrentId, std::shared_ptr<const lt::torrent_info>> infos;
    std::map<TorrentId, std::string> save_paths;

    lt::torrent_handle handle(TorrentId t) const {
        auto it = handles.find(t);
        return it == handles.end() ? lt::torrent_handle{} : it->second;
    }
    TorrentId id_of(const lt::torrent_handle& h) const {
        for (const auto& [id, handle] : handles)
            if (handle == h) return id;
        return 0;
    }
    bool event_of(lt::alert* a, TorrentEvent& e) const;
};

// Fills `e` from the alert; false for alerts the agent does not react to
// (or of a torrent no longer in the session).
bool TorrentSession::Impl::event_of(lt::alert* a, TorrentEvent& e) const {
    using K = TorrentEvent::Kind;
    if (auto* ta = dynamic_cast<lt::torrent_alert*>(a)) e.torrent = id_of(ta->handle);
    if (auto* pf = lt::alert_cast<lt::piece_finished_alert>(a)) {
        e.kind = K::PieceVerified;
        e.piece = static_cast<int>(pf->piece_index);
    } else if (auto* rp = lt::alert_cast<lt::read_piece_alert>(a)) {
        e.piece = static_cast<int>(rp->piece);
        if (rp->error) {
            e.kind = K::PieceReadFailed;
            e.message = rp->error.message();
        } else {
            e.kind = K::PieceRead;
            boost::shared_array<char> buffer = rp->buffer;
            e.data = std::shared_ptr<const char>(buffer.get(), [buffer](const char*) {});
            e.size = static_cast<std::size_t>(rp->size);
        }
    } else if (auto* hf = lt::alert_cast<lt::hash_failed_alert>(a)) {
        e.kind = K::PieceHashFailed;
        e.piece = static_cast<int>(hf->piece_index);
    } else if (lt::alert_cast<lt::torrent_checked_alert>(a)) {
        e.kind = K::TorrentChecked;
    } else if (auto* ban = lt::alert_cast<lt::peer_ban_alert>(a)) {
        e.kind = K::PeerBanned;
        e.peer = ban->endpoint.address().to_string();
    } else if (auto* blocked = lt::alert_cast<lt::peer_blocked_alert>(a)) {
        e.kind = K::PeerBlocked;
        e.peer = blocked->endpoint.address().to_string();
    } else if (auto* fe = lt::alert_cast<lt::file_error_alert>(a)) {
        e.kind = K::FileError;
        e.code = fe->error.value();
        e.message = std::string(fe->filename()) + ": " + fe->error.message();
    } else if (lt::alert_cast<lt::torrent_finished_alert>(a)) {
        e.kind = K::TorrentFinished;
    } else if (auto* rd = lt::alert_cast<lt::save_resume_data_alert>(a)) {
        e.kind = K::ResumeData;
        e.resume_data = lt::write_resume_data_buf(rd->params);
    } else if (lt::alert_cast<lt::save_resume_data_failed_alert>(a)) {
        e.kind = K::ResumeDataFailed;
    } else if (auto* pc = lt::alert_cast<lt::peer_connect_alert>(a)) {
        e.kind = K::PeerConnected;
        e.peer = pc->endpoint.address().to_string();
    } else if (auto* pd = lt::alert_cast<lt::peer_disconnected_alert>(a)) {
        e.kind = K::PeerDisconnected;
        e.peer = pd->endpoint.address().to_string();
        e.message = pd->error.message();
        // The peer id is known once the peer's handshake has come.
        e.in_handshake = pd->pid.is_all_zeros();
        e.encryption_refused = e.in_handshake && is_encryption_refusal(pd->error);
    } else if (lt::alert_cast<lt::metadata_received_alert>(a)) {
        e.kind = K::MetadataReceived;
    } else if (auto* te = lt::alert_cast<lt::tracker_error_alert>(a)) {
        e.kind = K::TrackerFailed;
        e.tracker = te->tracker_url();
        const std::string reason = te->failure_reason();
        e.message = reason.empty() ? te->error.message() : reason;
    } else if (auto* tr = lt::alert_cast<lt::tracker_reply_alert>(a)) {
        e.kind = K::TrackerReplied;
        e.tracker = tr->tracker_url();
        e.code = tr->num_peers;
    } else if (auto* lf = lt::alert_cast<lt::listen_failed_alert>(a)) {
        e.kind = K::ListenFailed;
        e.message = lf->error.message();
    } else {
        return false;
    }
    // Peer, listen and tracker events stand alone (a tracker's may be about
    // a rendezvous torrent, which has no id); the others are about a torrent.
    const bool of_a_torrent = e.kind != K::PeerBanned && e.kind != K::PeerBlocked && e.kind != K::PeerConnected &&
                              e.kind != K::PeerDisconnected && e.kind != K::ListenFailed &&
                              e.kind != K::TrackerFailed && e.kind != K::TrackerReplied;
    return e.torrent != 0 || !of_a_torrent;
}

TorrentSession::TorrentSession(const SessionSettings& settings) : impl_(std::make_unique<Impl>(settings)) {}
TorrentSession::~TorrentSession() = default;

std::uint64_t TorrentSession::id() const { return impl_->session.id(); }
int TorrentSession::listen_port() const { return impl_->session.listen_port(); }
void TorrentSession::reconfigure(const SessionSettings& settings) { impl_->session.reconfigure(settings); }
bool TorrentSession::listening() const { return impl_->session.listening(); }
std::string TorrentSession::lsd_listener_error() const { return impl_->session.lsd_listener_error(); }

TorrentId TorrentSession::add_torrent(std::string_view metainfo, const std::string& save_path,
                                      const std::vector<char>& resume_data,
                                      const std::vector<bool>& have_pieces, bool find_peers) {
    Metainfo meta = parse_metainfo(metainfo);
    lt::torrent_handle h = impl_->session.add_torrent(meta.info, save_path, resume_data, have_pieces, find_peers);
    TorrentId id = impl_->next_id++;
    impl_->handles[id] = h;
    impl_->infos[id] = meta.info;
    impl_->save_paths[id] = save_path;
    return id;
}

void TorrentSession::remove_torrent(TorrentId torrent, bool delete_files) {
    lt::torrent_handle h = impl_->handle(torrent);
    impl_->handles.erase(torrent);
    impl_->infos.erase(torrent);
    impl_->save_paths.erase(torrent);
    if (h.is_valid()) impl_->session.remove_torrent(h, delete_files);
}

std::string TorrentSession::content_path(TorrentId torrent) const {
    auto it = impl_->infos.find(torrent);
    if (it == impl_->infos.end()) return "";
    return it->second->files().file_path(lt::file_index_t{0}, impl_->save_paths.at(torrent));
}

void TorrentSession::pause(TorrentId torrent) {
    if (auto h = impl_->handle(torrent); h.is_valid()) h.pause();
}
void TorrentSession::resume(TorrentId torrent) {
    if (auto h = impl_->handle(torrent); h.is_valid()) h.resume();
}
void TorrentSession::save_resume_data(TorrentId torrent) {
    if (auto h = impl_->handle(torrent); h.is_valid()) h.save_resume_data(lt::torrent_handle::save_info_dict);
}
void TorrentSession::force_recheck(TorrentId torrent) {
    if (auto h = impl_->handle(torrent); h.is_valid()) h.force_recheck();
}
void TorrentSession::read_piece(TorrentId torrent, int piece) {
    if (auto h = impl_->handle(torrent); h.is_valid()) h.read_piece(lt::piece_index_t{piece});
}
void TorrentSession::add_piece(TorrentId torrent, int piece, std::vector<char> data) {
    if (auto h = impl_->handle(torrent); h.is_valid())
        h.add_piece(lt::piece_index_t{piece}, std::move(data), lt::torrent_handle::overwrite_existing);
}

bool TorrentSession::piece_matches_v1_hash(TorrentId torrent, int piece, const char* data,
                                           std::size_t len) const {
    auto it = impl_->infos.find(torrent);
    if (it == impl_->infos.end() || !it->second->info_hashes().has_v1()) return true;
    unsigned char md[SHA_DIGEST_LENGTH];
    SHA1(reinterpret_cast<const unsigned char*>(data), len, md);
    const lt::sha1_hash expected = it->second->hash_for_piece(lt::piece_index_t{piece});
    return std::memcmp(md, expected.data(), SHA_DIGEST_LENGTH) == 0;
}

TorrentStatus TorrentSession::status(TorrentId torrent, bool with_pieces) const {
    TorrentStatus out;
    lt::torrent_handle h = impl_->handle(torrent);
    if (!h.is_valid()) return out;
    lt::torrent_status st = h.status(with_pieces ? lt::torrent_handle::query_pieces : lt::status_flags_t{});
    out.checking = st.state == lt::torrent_status::checking_files ||
                   st.state == lt::torrent_status::checking_resume_data;
    out.error = static_cast<bool>(st.errc);
    if (with_pieces) out.pieces = to_bools(st.pieces);
    out.uploaded = st.all_time_upload;
    out.num_peers = st.num_peers;
    return out;
}

std::vector<TorrentPeer> TorrentSession::peers(TorrentId torrent) const {
    lt::torrent_handle h = impl_->handle(torrent);
    if (!h.is_valid()) return {};
    // Who has told its pieces, then the peers: a peer in `told` has its
    // pieces in the peer_info taken after (p2p/session.h).
    const std::set<lt::tcp::endpoint> told = impl_->session.peers_that_told(h);
    const std::set<lt::tcp::endpoint> claimers = impl_->session.peers_that_claim(h);
    std::vector<lt::peer_info> infos;
    h.get_peer_info(infos);
    auto it = impl_->infos.find(torrent);
    const int num_pieces = it == impl_->infos.end() ? 0 : it->second->num_pieces();
    std::vector<TorrentPeer> out;
    out.reserve(infos.size());
    for (const auto& p : infos) {
        TorrentPeer tp;
        tp.endpoint = endpoint_string(p.ip);
        tp.address = p.ip.address().to_string();
        // libtorrent sizes p.pieces for the torrent, all zeros, as soon as a
        // connection starts: only `told` says the bits mean something.
        tp.told = told.count(p.ip) > 0 && p.pieces.size() == num_pieces;
        tp.seed = static_cast<bool>(p.flags & lt::peer_info::seed);
        tp.interesting = static_cast<bool>(p.flags & lt::peer_info::interesting);
        tp.choked_us = static_cast<bool>(p.flags & lt::peer_info::remote_choked);
        tp.requests_waiting = p.download_queue_length;
        tp.payload_received = p.total_download;
        if (p.source & lt::peer_info::tracker) tp.source = PeerSource::Tracker;
        else if (p.source & lt::peer_info::lsd) tp.source = PeerSource::Lsd;
        else if (impl_->session.is_static_peer(p.ip)) tp.source = PeerSource::Static;
        else if (p.source & lt::peer_info::incoming) tp.source = PeerSource::Incoming;
        if (tp.told) tp.pieces = to_bools(p.pieces);
        tp.dopt = claimers.count(p.ip) > 0;
        out.push_back(std::move(tp));
    }
    return out;
}

std::vector<int> TorrentSession::pieces_coming_from_peers(TorrentId torrent,
                                                          const std::set<std::string>& failing) const {
    lt::torrent_handle h = impl_->handle(torrent);
    if (!h.is_valid()) return {};
    std::vector<lt::partial_piece_info> queue;
    h.get_download_queue(queue);
    auto in_progress = [&](const lt::block_info& b) {
        return b.state == lt::block_info::writing ||
               (b.state == lt::block_info::requested && !failing.count(endpoint_string(b.peer())));
    };
    std::vector<int> out;
    for (const auto& q : queue)
        if (std::any_of(q.blocks, q.blocks + q.blocks_in_piece, in_progress))
            out.push_back(static_cast<int>(q.piece_index));
    return out;
}

void TorrentSession::disconnect_peer(TorrentId torrent, const std::string& endpoint) {
    lt::torrent_handle h = impl_->handle(torrent);
    if (h.is_valid()) impl_->session.disconnect_peer(h, parse_endpoint(endpoint, "peer", true));
}

void TorrentSession::set_no_download(TorrentId torrent, const std::set<std::string>& addresses) {
    lt::torrent_handle h = impl_->handle(torrent);
    if (!h.is_valid()) return;
    std::set<lt::address> parsed;
    for (const auto& a : addresses) {
        lt::error_code ec;
        const lt::address addr = lt::make_address(a, ec);
        if (ec) throw std::invalid_argument("not an address: " + a);
        parsed.insert(addr);
    }
    impl_->session.set_no_download(h, parsed);
}

bool TorrentSession::in_own_subnet(const std::string& address) const {
    lt::error_code ec;
    const lt::address addr = lt::make_address(address, ec);
    return !ec && impl_->session.in_own_subnet(addr);
}

void TorrentSession::connect_peer(TorrentId torrent, const std::string& endpoint) {
    lt::torrent_handle h = impl_->handle(torrent);
    if (h.is_valid()) h.connect_peer(parse_endpoint(endpoint, "peer", false), {}, kPlaintextFirst);
}

void TorrentSession::claim(TorrentId torrent, int piece) {
    if (auto h = impl_->handle(torrent); h.is_valid()) impl_->session.claim(h, piece);
}
std::vector<Claim> TorrentSession::claims(TorrentId torrent) const {
    return impl_->session.claims(impl_->handle(torrent));
}
std::set<int> TorrentSession::claims_held_over(TorrentId torrent) const {
    return impl_->session.claims_held_over(impl_->handle(torrent));
}

void TorrentSession::announce_content(const std::string& sha256, TorrentId torrent) {
    if (auto h = impl_->handle(torrent); h.is_valid()) impl_->session.announce_content(sha256, h.info_hashes());
}
void TorrentSession::withdraw_content(const std::string& sha256) { impl_->session.withdraw_content(sha256); }
void TorrentSession::look_up_content(const std::string& sha256, bool fetching_from_origin,
                                     const std::vector<std::uint64_t>& split) {
    impl_->session.look_up_content(sha256, fetching_from_origin, split);
}
void TorrentSession::send_piece_hash(const std::string& sha256, std::uint64_t size, int piece,
                                     const std::string& sha1) {
    impl_->session.send_piece_hash(sha256, size, piece, sha1);
}
void TorrentSession::stop_looking_up(const std::string& sha256) { impl_->session.stop_looking_up(sha256); }
std::vector<ContentEvent> TorrentSession::take_content_events() {
    return impl_->session.take_content_events();
}

TorrentId TorrentSession::add_torrent_for_metadata(const std::string& info_hash,
                                                   const std::string& save_path,
                                                   const std::string& peer) {
    const auto ih = parse_info_hash_hex(info_hash);
    if (!ih) throw std::invalid_argument("not an info-hash: " + info_hash);
    lt::torrent_handle h = impl_->session.add_torrent_for_metadata(*ih, save_path, peer);
    TorrentId id = impl_->next_id++;
    impl_->handles[id] = h;
    impl_->save_paths[id] = save_path;
    return id;
}

std::string TorrentSession::metainfo(TorrentId torrent) const {
    const lt::torrent_handle h = impl_->handle(torrent);
    if (!h.is_valid()) return "";
    const auto info = h.torrent_file();
    return info && info->is_valid() ? metainfo_of(*info) : "";
}

bool TorrentSession::ban_peer(const std::string& address) { return impl_->session.ban_address(address); }

void TorrentSession::tick() { impl_->session.tick(); }
int TorrentSession::event_fd() const { return impl_->session.alert_fd(); }

std::vector<TorrentEvent> TorrentSession::take_events() {
    std::vector<TorrentEvent> events;
    for (lt::alert* a : impl_->session.pop_alerts()) {
        TorrentEvent e;
        if (impl_->event_of(a, e)) events.push_back(std::move(e));
    }
    return events;
}

}  // namespace dopt::p2p
