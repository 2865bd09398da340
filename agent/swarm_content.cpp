// Content identity (docs/design.md "Content identity"): a file whose job
// gives its SHA-256 X and for which no metainfo is found.
//
//   start_file_with_peers -> look_up_content: X's holders looked for on the
//     LAN for [p2p] content_lookup_ms (the job stays CONNECTING)
//   -> a holder found: its info dictionary by BEP 9 (add_torrent_for_metadata)
//      -> on_content_metadata: the metainfo joins the peer cache, the job
//         goes through the swarm as with published metainfo ("peers")
//   -> none: fetch_content_from_origin: HTTP; on completion seed_content
//      copies the file into the cache, makes its metainfo, seeds it and
//      announces X -> H, telling R meanwhile that it fetches X. While another
//      wanter fetches X, or one with a lower node id waits too, this agent
//      follows instead, up to content_follow_ms; of two that fetch, the one
//      with the higher node id stops and follows (yield_origin_fetch).
//   Trust: a file that is not X at the end (finish_swarm_file), or origin
//   pieces failing H's hashes (origin_does_not_match), drop the mapping and
//   ban the peers that announced it (drop_content_mapping); the file is
//   then fetched over HTTP. content_proven announces X -> H once the whole
//   file matched X.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <cstring>

#include "agent/agent_internal.h"
#include "agent/swarm.h"
#include "agent/log.h"
#include "agent/cache_copy.h"
#include "common/hex.h"

namespace dopt::agent {

namespace {
// How long a holder's info dictionary may take to come.
constexpr std::int64_t kContentMetadataWaitMs = 10'000;
}  // namespace

using storage::CacheEntry;
using storage::FileRecord;
using storage::JobState;

// A complete cache entry made from X here earlier (named by X): the job
// takes it at once. False when there is none.
bool Swarms::use_cached_content(Job& job) {
    FileRecord& f = job.file();
    for (const auto& [ih, e] : cache_) {
        if (!e.complete || e.name != f.sha256 || false_mappings_.count(ih)) continue;
        f.info_hash = ih;
        f.metainfo_source = "peers";
        store_.update_file(job.rec.id, f);
        attach_swarm(job);
        return true;
    }
    return false;
}

// Starts (or joins) the lookup of the current file's SHA-256. False when
// the file does not qualify: no SHA-256, no peering, lookups off, or
// smaller than [cache] min_file_size. The caller has ruled out content
// behind credentials.
bool Swarms::look_up_content(Job& job) {
    FileRecord& f = job.file();
    if (!peers_ || f.sha256.empty() || config_.content_lookup_ms <= 0) return false;
    if (f.bytes_total != kUnknownSize && f.bytes_total < config_.cache_min_file_size) return false;
    if (use_cached_content(job)) return true;
    auto& lookup = content_lookups_[f.sha256];
    if (!lookup) {
        lookup = std::make_unique<ContentLookup>();
        lookup->started_ms = mono_ms();
        lookup->deadline_ms = lookup->started_ms + config_.content_lookup_ms;
        peers_->look_up_content(f.sha256);
        LOG_INFO("content %s: looking for it on the LAN", f.sha256.c_str());
    }
    lookup->jobs.insert(&job);
    job.content_waiting = true;
    job.content_seed = true;
    if (job.rec.state != JobState::Connecting) agent_.change_state(job, JobState::Connecting);
    return true;
}

// The job stops (suspend, cancel, error, yield, or its file is seeded):
// it leaves its lookup, and unless `stay` the rendezvous is left when no
// job of this agent needs it any more.
void Swarms::leave_content(Job& job, bool stay) {
    forget_holders(job.file().info_hash, job);
    if (!job.content_waiting && !job.content_seed) return;
    const std::string x = job.file().sha256;
    if (auto co = cofetches_.find(x); job.content_waiting && co != cofetches_.end() && co->second->jobs.erase(&job)) {
        job.content_waiting = false;
        job.content_seed = false;
        job.cofetch_partial.reset();
        if (!co->second->jobs.empty()) return;
        drop_cofetch(*co->second);
        if (peers_ && !stay) stop_looking_up_unless_wanted(x);
        return;
    }
    auto it = content_lookups_.find(x);
    if (job.content_waiting && it != content_lookups_.end()) {
        it->second->jobs.erase(&job);
        if (it->second->jobs.empty()) {
            if (it->second->metadata) peers_->remove_torrent(it->second->metadata, false);
            content_lookups_.erase(it);
            it = content_lookups_.end();
        }
    }
    auto fetches = content_origin_fetches_.find(x);
    if (!job.content_waiting && fetches != content_origin_fetches_.end() && --fetches->second <= 0) {
        content_origin_fetches_.erase(fetches);
        fetches = content_origin_fetches_.end();
    }
    job.content_waiting = false;
    job.content_seed = false;
    if (peers_ && !stay && it == content_lookups_.end() && fetches == content_origin_fetches_.end())
        peers_->stop_looking_up(x);
}

void Swarms::handle_content_events() {
    using Kind = p2p::ContentEvent::Kind;
    for (const p2p::ContentEvent& e : peers_->take_content_events()) {
        switch (e.kind) {
        case Kind::HolderFound:
            on_holder_found(e);
            break;
        case Kind::WantersChanged:
            on_wanters_changed(e);
            break;
        case Kind::PieceHash:
            on_piece_hash(e);
            break;
        case Kind::MessageIgnored:
            // A hostile peer may send many: the first few, then one in 1000.
            if (++content_messages_ignored_ <= 10 || content_messages_ignored_ % 1000 == 0)
                LOG_WARN("peer %s: %s; ignored (%llu so far)", e.peer.c_str(), e.message.c_str(),
                         static_cast<unsigned long long>(content_messages_ignored_));
            break;
        }
    }
}

// A peer says it holds X as e.info_hash: unverified until the bytes prove it.
void Swarms::on_holder_found(const p2p::ContentEvent& e) {
    try {
        content_announcers_[e.info_hash].insert(p2p::parse_peer_address(e.peer, "holder", false).address);
    } catch (const std::exception&) {
        return;
    }
    auto it = content_lookups_.find(e.sha256);
    if (it == content_lookups_.end() || false_mappings_.count(e.info_hash)) return;
    ContentLookup& l = *it->second;
    if (l.metadata) {
        if (e.info_hash == l.info_hash) l.holders.insert(e.peer);
        return;
    }
    LOG_INFO("content %s: %s says it holds it as %s", e.sha256.c_str(), e.peer.c_str(),
             e.info_hash.c_str());
    try {
        l.metadata = peers_->add_torrent_for_metadata(e.info_hash, config_.cache_dir, e.peer);
    } catch (const std::exception& err) {
        LOG_WARN("content %s: cannot ask %s for its metainfo: %s", e.sha256.c_str(), e.peer.c_str(),
                 err.what());
        return;
    }
    l.info_hash = e.info_hash;
    l.holders = {e.peer};
    l.deadline_ms = mono_ms() + kContentMetadataWaitMs;
}

// The simultaneous case: the wanter with the lowest node id fetches from
// the origin, the others follow; a follower whose leader left stops
// waiting. An agent fetching X from the origin that learns of another one
// with a lower node id (they did not see each other when their windows
// ended) stops and follows it.
void Swarms::on_wanters_changed(const p2p::ContentEvent& e) {
    if (auto co = cofetches_.find(e.sha256); co != cofetches_.end()) {
        cofetch_wanters_changed(*co->second, e);
        return;
    }
    auto it = content_lookups_.find(e.sha256);
    if (it == content_lookups_.end()) {
        if (content_origin_fetches_.count(e.sha256) && any_below(e.fetchers, peers_->id()))
            yield_origin_fetch(e.sha256);
        return;
    }
    ContentLookup& l = *it->second;
    l.wanters = e.wanters;
    l.fetchers = e.fetchers;
    l.splits = e.splits;
    // Other wanters and no holder: no one holds X yet, most likely, and
    // every moment of the window is a moment the origin's link idles; the
    // window ends at a quarter of its length while there are (views that
    // still differ then converge once the co-fetch is under way), and at
    // its full length again when they are gone (a wanter whose connection
    // dropped must not leave this agent alone after a quarter).
    if (!l.following && !l.metadata)
        l.deadline_ms = l.started_ms + (e.wanters.empty() ? config_.content_lookup_ms : config_.content_lookup_ms / 4);
    if (l.following && !someone_to_follow(l) && !l.metadata) l.deadline_ms = mono_ms();  // the leader left
}

bool Swarms::any_below(const std::vector<std::uint64_t>& nodes, std::uint64_t node) {
    return std::any_of(nodes.begin(), nodes.end(), [&](std::uint64_t n) { return n < node; });
}

// Whether another agent fetches X from the origin, or will (a wanter with
// a lower node id).
bool Swarms::someone_to_follow(const ContentLookup& l) const {
    return !l.fetchers.empty() || any_below(l.wanters, peers_->id());
}

// This agent's jobs fetching X from the origin stop and wait for the copy
// of the agent with the lower node id that fetches it too (their partial
// files stay; the swarm or a later HTTP fetch takes them over). A job not
// opening its partial file for an HTTP transfer or in one (checking the
// file, seeding it, waiting to retry) goes on. Once per SHA-256 until it
// is seeded: a LAN host saying it fetches, again and again, can delay the
// file by content_follow_ms once, as a hostile leader can, never stop it
// for good.
void Swarms::yield_origin_fetch(const std::string& x) {
    if (config_.content_follow_ms <= 0 || content_yielded_.count(x)) return;
    std::vector<Job*> fetching;
    for (const auto& [id, job] : agent_.jobs())
        if (job->content_seed && !job->content_waiting && (job->transfer || job->opening) &&
            job->current_file >= 0 &&
            !storage::is_final(job->rec.state) && job->file().sha256 == x)
            fetching.push_back(job.get());
    if (fetching.empty()) return;
    LOG_INFO("content %s: another agent fetches it from the origin too; this one stops and "
             "waits for its copy", x.c_str());
    content_yielded_.insert(x);
    auto& lookup = content_lookups_[x];
    lookup = std::make_unique<ContentLookup>();
    lookup->following = true;
    lookup->deadline_ms = mono_ms() + config_.content_follow_ms;
    for (Job* job : fetching) {
        agent_.stop_transfer(*job, true);  // leaves content_origin_fetches_
        FileRecord& f = job->file();
        job->http_only_reason.clear();
        f.metainfo_source.clear();
        store_.update_file(job->rec.id, f);
        lookup->jobs.insert(job);
        job->content_waiting = true;
        job->content_seed = true;
        if (job->rec.state != JobState::Connecting) agent_.change_state(*job, JobState::Connecting);
    }
    peers_->look_up_content(x, /*fetching_from_origin=*/content_origin_fetches_.count(x) > 0);
}

// A holder's info dictionary arrived (libtorrent checked it against the
// info-hash): every job of the lookup goes through the swarm.
void Swarms::on_content_metadata(std::uint64_t torrent) {
    for (auto it = content_lookups_.begin(); it != content_lookups_.end(); ++it) {
        ContentLookup& l = *it->second;
        if (l.metadata != torrent) continue;
        const std::string x = it->first;
        const std::string bytes = peers_->metainfo(torrent);
        peers_->remove_torrent(torrent, false);
        l.metadata = 0;
        std::optional<p2p::MetainfoSummary> meta;
        try {
            meta = p2p::summarize_metainfo(bytes);
        } catch (const p2p::MetainfoError&) {
        }
        // A holder names the content by X (make_content_metainfo); other
        // metainfo is not a mapping of X.
        if (!meta || meta->name != x || meta->info_hash != l.info_hash) {
            drop_content_mapping(l.info_hash, "its metainfo is not X's");
            l.deadline_ms = mono_ms();  // to the origin at the next tick
            return;
        }
        const std::set<Job*> jobs = l.jobs;
        const std::set<std::string> holders = l.holders;
        content_lookups_.erase(it);
        peers_->stop_looking_up(x);
        for (Job* job : jobs) {
            job->content_waiting = false;
            job->content_seed = false;
            FileRecord& f = job->file();
            remember_metainfo(*job, f, *meta, bytes);
            f.info_hash = meta->info_hash;
            f.metainfo_source = "peers";
            store_.update_file(job->rec.id, f);
            LOG_INFO("job %s: %s from LAN peers as %s (by its SHA-256)", job->rec.id.c_str(),
                     f.remote_url.c_str(), meta->info_hash.c_str());
            agent_.start_job(*job);
        }
        content_holders_[meta->info_hash] = holders;
        if (auto s = swarms_.find(meta->info_hash); s != swarms_.end()) connect_holders(*s->second);
        return;
    }
}

// Connects a swarm the content lookup found to the agents that said they
// hold it (the IP filter still applies), and has the origin wait for them
// as for static peers while the swarm is young.
void Swarms::connect_holders(Swarm& s) {
    auto it = content_holders_.find(s.info_hash);
    if (it == content_holders_.end()) return;
    for (const std::string& holder : it->second) {
        try {
            s.holder_ips.insert(p2p::parse_peer_address(holder, "holder", false).address);
            peers_->connect_peer(s.torrent, holder);
        } catch (const std::exception&) {
        }
    }
    content_holders_.erase(it);
}

// `job` stops, or goes without peers, maybe before the swarm of
// `info_hash` was added: the holders kept for it go unless another
// unfinished job wants that content.
void Swarms::forget_holders(const std::string& info_hash, const Job& job) {
    if (!info_hash.empty() && !wanted_by_unfinished_job(info_hash, &job)) content_holders_.erase(info_hash);
}

void Swarms::content_tick(std::int64_t now) {
    std::vector<std::string> due;
    for (auto& [x, l] : content_lookups_)
        if (now >= l->deadline_ms) due.push_back(x);
    for (const std::string& x : due) {
        ContentLookup& l = *content_lookups_.at(x);
        if (l.metadata) {
            peers_->remove_torrent(l.metadata, false);
            l.metadata = 0;
            fetch_content_from_origin(x, "its holder's metainfo did not come");
            continue;
        }
        // Other wanters and no fetch under way without this agent: the
        // origin fetch is split between them (swarm_cofetch.cpp).
        if (!l.following && config_.content_follow_ms > 0) {
            if (auto split = cofetch_split(l)) {
                start_cofetch(x, std::move(*split));
                continue;
            }
        }
        if (someone_to_follow(l) && !l.following && config_.content_follow_ms > 0) {
            l.following = true;
            l.deadline_ms = now + config_.content_follow_ms;
            content_yielded_.insert(x);  // the one wait yield_origin_fetch allows
            LOG_INFO("content %s: another agent fetches it from the origin; waiting for its copy",
                     x.c_str());
            continue;
        }
        fetch_content_from_origin(x, l.following ? "the agent fetching it gave no copy in time"
                                                 : "no LAN agent holds it");
    }
}

// The lookup ends without a holder: its jobs go to the origin. This agent
// stays on the rendezvous as a wanter (followers wait for it) until it
// seeds the file.
void Swarms::fetch_content_from_origin(const std::string& x, const std::string& why) {
    auto it = content_lookups_.find(x);
    if (it == content_lookups_.end()) return;
    const std::set<Job*> jobs = it->second->jobs;
    content_lookups_.erase(it);
    for (Job* job : jobs) {
        job->content_waiting = false;
        ++content_origin_fetches_[x];
        use_http_only(*job, "SHA-256 " + x + ": " + why);
        agent_.start_job(*job);
    }
    // Other wanters follow this agent, whatever their node ids.
    if (content_origin_fetches_.count(x)) peers_->look_up_content(x, /*fetching_from_origin=*/true);
}

// The HTTP fetch after a lookup is whole and matched X (`fd`: its partial
// file): a copy goes into the peer cache on a worker (cache_copy.h); when it
// is done (finish_cache_copy) it is seeded as its deterministic metainfo H,
// and X -> H is announced.
void Swarms::seed_content(Job& job, int fd) {
    if (!job.content_seed) return;
    FileRecord& f = job.file();
    content_yielded_.erase(f.sha256);
    // Still on the rendezvous (followers wait for us) until announced.
    leave_content(job, /*stay=*/true);
    if (!peers_) return;
    const bool copying = std::any_of(cache_copies_.begin(), cache_copies_.end(),
                                     [&](const CacheCopy& c) { return c.sha256 == f.sha256; });
    if (f.bytes_total < config_.cache_min_file_size || copying) {
        stop_looking_up_unless_wanted(f.sha256);
        return;
    }
    LOG_INFO("content %s: copying it into the peer cache", f.sha256.c_str());
    cache_copies_.push_back(CacheCopy{f.sha256, f.remote_url, job.rec.owner_uid,
                                      start_cache_copy(fd, f.bytes_total, config_.cache_dir, f.sha256)});
}

// Leaves X's rendezvous unless a job of this agent still looks X up or
// fetches it, or a copy of it is on its way into the cache.
void Swarms::stop_looking_up_unless_wanted(const std::string& x) {
    const bool copying = std::any_of(cache_copies_.begin(), cache_copies_.end(),
                                     [&](const CacheCopy& c) { return c.sha256 == x; });
    if (!content_lookups_.count(x) && !content_origin_fetches_.count(x) && !copying)
        peers_->stop_looking_up(x);
}

// On the loop: the copies whose worker is done are seeded (or dropped).
void Swarms::collect_cache_copies() {
    for (auto it = cache_copies_.begin(); it != cache_copies_.end();) {
        if (it->result.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
            ++it;
            continue;
        }
        CacheCopy copy = std::move(*it);
        it = cache_copies_.erase(it);
        if (!finish_cache_copy(copy)) stop_looking_up_unless_wanted(copy.sha256);
    }
}

// finish_cache_copy's work: false when the file could not be seeded.
bool Swarms::finish_cache_copy(CacheCopy& copy) {
    CacheCopyResult r = copy.result.get();
    std::optional<p2p::MetainfoSummary> meta;
    if (r.error.empty()) {
        try {
            meta = p2p::summarize_metainfo(r.metainfo);
        } catch (const p2p::MetainfoError& e) {
            r.error = std::string("cannot read its metainfo: ") + e.what();
            remove_tree(r.dir);
        }
    }
    if (!r.error.empty()) {
        LOG_WARN("content %s: %s", copy.sha256.c_str(), r.error.c_str());
        return false;
    }
    unmask_false_hashes(copy.sha256, r.metainfo);
    const std::string final_dir = config_.cache_dir + "/" + meta->info_hash;
    if (cache_.count(meta->info_hash) || ::rename(r.dir.c_str(), final_dir.c_str()) != 0) {
        remove_tree(r.dir);  // already cached (another job), or cannot be placed
        return false;
    }
    CacheEntry e;
    e.info_hash = meta->info_hash;
    e.name = meta->name;
    e.size = meta->size;
    e.origin_url = copy.origin_url;
    e.owner_uid = copy.owner_uid;
    e.complete = true;
    e.last_used = wall_now();
    e.metainfo = r.metainfo;
    e.sha256 = copy.sha256;
    store_.put_cache_entry(e);
    cache_[e.info_hash] = e;
    evict_pending_ = true;
    Swarm* s = add_swarm(e);
    if (!s) return false;
    peers_->announce_content(copy.sha256, s->torrent);
    content_announced_[e.info_hash] = copy.sha256;
    LOG_INFO("content %s: seeding it as %s", copy.sha256.c_str(), e.info_hash.c_str());
    return true;
}

// The whole file came through the swarm and matched X: the mapping is
// proven, and this agent holds X now.
void Swarms::content_proven(Job& job, std::uint64_t torrent) {
    const FileRecord& f = job.file();
    if (f.metainfo_source != "peers" || f.sha256.empty()) return;
    hash_claims_.erase(f.sha256);  // the hashes that made it were true
    peers_->announce_content(f.sha256, torrent);
    content_announced_[f.info_hash] = f.sha256;
    if (auto c = cache_.find(f.info_hash); c != cache_.end()) c->second.sha256 = f.sha256;  // stored by the caller
}

// A complete cached torrent put back in the session at start: seeded under
// the SHA-256 it was verified against, if any.
void Swarms::announce_cached_content(const CacheEntry& e, Swarm* s) {
    if (!s || e.sha256.empty()) return;
    peers_->announce_content(e.sha256, s->torrent);
    content_announced_[e.info_hash] = e.sha256;
}

// The torrent `info_hash` leaves the session (eviction, cache clear): the
// SHA-256 it was announced for is no longer held here.
void Swarms::withdraw_content(const std::string& info_hash) {
    auto it = content_announced_.find(info_hash);
    if (it == content_announced_.end()) return;
    if (peers_) peers_->withdraw_content(it->second);
    content_announced_.erase(it);
}

// A mapping proved false: the peers that announced it are banned, and it is
// never used again in this run.
void Swarms::drop_content_mapping(const std::string& info_hash, const std::string& why) {
    false_mappings_.insert(info_hash);
    for (const std::string& address : content_announcers_[info_hash]) {
        LOG_WARN("banned peer %s: it announced %s for a SHA-256, but %s", address.c_str(),
                 info_hash.c_str(), why.c_str());
        peers_->ban_peer(address);
    }
    content_announcers_.erase(info_hash);
}

}  // namespace dopt::agent
