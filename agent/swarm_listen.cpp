// Swarms: the peer session's settings and what it listens on. [p2p] listen
// is an address, or an interface whose address is followed as it changes
// (InterfaceAddressWatch); a SIGHUP applies [p2p] to the running session.
// While there is no address to listen on, peering is paused: the session
// listens nowhere, new files go over HTTP only, torrents are kept.
#include <stdexcept>

#include "agent/log.h"
#include "agent/swarm.h"

namespace dopt::agent {

// The peer session on [p2p] listen, and what this agent knows of its peers.
void Swarms::start_session() {
    watch_listen_interface();
    listen_now_ = listen_endpoint();
    try {
        peers_ = std::make_unique<p2p::TorrentSession>(session_settings());
    } catch (...) {
        // No session: no one would drain the watch, and its socket, polled
        // by the loop, would stay readable after the next address change.
        listen_watch_.reset();
        throw;
    }
    note_static_peers();
    if (listen_now_.empty()) {
        LOG_WARN("peering paused: interface %s has no address; files go over HTTP only until it has one",
                 listen_watch_->name().c_str());
        return;
    }
    LOG_INFO("peering on %s (LAN discovery %s, %zu static peers, %zu trackers, node id %016llx)",
             listen_now_.c_str(), config_.lan_discovery ? "on" : "off", config_.peers.size(),
             config_.trackers.size(), static_cast<unsigned long long>(peers_->id()));
    if (const std::string why = peers_->lsd_listener_error(); !why.empty())
        LOG_WARN("%s: peers that announced a file on the LAN before this agent wanted it are found only "
                 "when they announce it again",
                 why.c_str());
}

// [p2p] as the session takes it. Paused (no listen endpoint because peering
// is off): no peer at all, LSD silent.
p2p::SessionSettings Swarms::session_settings() const {
    p2p::SessionSettings s;
    s.listen = listen_now_;
    s.claims_per_peer = config_.swarm_origin_requests;
    if (!config_.p2p_enabled || config_.p2p_listen.empty()) {
        s.lan_discovery = false;
        return s;
    }
    s.lan_discovery = config_.lan_discovery;
    s.peers = config_.peers;
    s.allowed_networks = config_.allowed_networks;
    s.trackers = config_.trackers;
    s.group = config_.group;
    s.upload_rate_limit = config_.max_upload_rate;
    s.download_rate_limit = config_.max_download_rate;
    s.throttle_lan = config_.throttle_lan;
    return s;
}

// What to listen on now: "" when peering is off, [p2p] listen when it is an
// address, else the interface's address now with the port ("" while it has
// none).
std::string Swarms::listen_endpoint() const {
    if (!config_.p2p_enabled || config_.p2p_listen.empty()) return "";
    const auto iface = listen_interface(config_.p2p_listen);
    if (!iface) return config_.p2p_listen;
    const std::string address = listen_watch_ ? listen_watch_->address() : "";
    if (address.empty()) return "";
    const bool v6 = address.find(':') != std::string::npos;
    return (v6 ? "[" + address + "]" : address) + ":" + std::to_string(iface->port);
}

// A watch on the interface [p2p] listen names; none for an address.
void Swarms::watch_listen_interface() {
    const auto iface = listen_interface(config_.p2p_listen);
    if (!iface || !config_.p2p_enabled) {
        listen_watch_.reset();
    } else if (!listen_watch_ || listen_watch_->name() != iface->name) {
        listen_watch_ = std::make_unique<InterfaceAddressWatch>(iface->name);
    }
}

// The watched interface changed (netlink): listen on its address now, or
// nowhere while it has none (said once, when it goes).
void Swarms::follow_listen_interface() {
    const std::string now = listen_endpoint();
    if (now == listen_now_) return;
    listen_now_ = now;
    peers_->reconfigure(session_settings());
    note_static_peers();
    if (now.empty()) {
        LOG_WARN("peering paused: interface %s has no address; files go over HTTP only until it has one",
                 listen_watch_->name().c_str());
    } else {
        LOG_INFO("peering on %s (interface %s)", now.c_str(), listen_watch_->name().c_str());
    }
}

// The static peers' addresses but this agent's own, and how peers see this
// agent (for the designated fetchers; unknown when listening nowhere or on
// every address).
void Swarms::note_static_peers() {
    static_peer_ips_.clear();
    self_address_.clear();
    if (listen_now_.empty()) return;
    // The addresses alone, written as the session reports peers' addresses
    // (an incoming connection shows the peer's address, not its listen
    // port). The session has parsed these strings already: they are valid.
    const p2p::PeerAddress listen = p2p::parse_peer_address(listen_now_, "listen", true);
    for (const auto& p : config_.peers) {
        const p2p::PeerAddress peer = p2p::parse_peer_address(p, "peers", false);
        if (peer.address == listen.address && peer.port == listen.port) continue;  // this agent itself
        static_peer_ips_.push_back(peer.address);
    }
    if (!listen.unspecified) self_address_ = listen.address;
}

void Swarms::reconfigure() {
    try {
        if (!peers_) {
            start_peering();
            return;
        }
        watch_listen_interface();
        listen_now_ = listen_endpoint();
        peers_->reconfigure(session_settings());
    } catch (const std::exception& e) {
        LOG_ERROR("SIGHUP: [p2p] not applied: %s", e.what());
        return;
    }
    note_static_peers();
    if (listen_now_.empty())
        LOG_WARN("SIGHUP: peering paused (%s); files go over HTTP only",
                 !config_.p2p_enabled ? "[p2p] enabled = false"
                 : config_.p2p_listen.empty() ? "no [p2p] listen"
                 : "its interface has no address");
    else
        LOG_INFO("SIGHUP: peering on %s (LAN discovery %s, %zu static peers, %zu allowed networks, "
                 "%zu trackers)",
                 listen_now_.c_str(), config_.lan_discovery ? "on" : "off", config_.peers.size(),
                 config_.allowed_networks.size(), config_.trackers.size());
}

}  // namespace dopt::agent
