// Co-fetching (docs/design.md "Content identity", "Simultaneous wanters"):
// agents that want SHA-256 X at the same moment, none holding it, split the
// origin fetch by pieces instead of each waiting for one fetcher.
//
//   content_tick, window over, other wanters on R -> start_cofetch: the
//     split (node ids, sorted) is this agent's view of R's wanters, or the
//     split of a co-fetcher already under way that names this agent
//   -> plan_cofetch (the size from a job, else one byte from the origin):
//      pieces of choose_piece_size(size); this agent's own pieces are those
//      p2p::cofetch_owners gives it among the split (spread over the
//      file, even shares; a co-fetcher of X seen on R later joins the
//      split, and few pieces besides its share move); each piece fetched
//      (range request) is written into the content's future cache file,
//      hashed (v1 SHA-1) and sent to R
//   -> on_piece_hash: the other agents' hashes, as they come
//   -> every hash known: finish_cofetch builds the metainfo
//      (content_metainfo_from_hashes: the same bytes on every agent), the
//      file becomes the torrent's, and the jobs go through the swarm,
//      connected to the other co-fetchers; the whole file is checked
//      against X before delivery (finish_swarm_file).
//   Pieces whose hashes have not come in a while after this agent's own
//   were done, or whose agent left R, are fetched here too (from the end
//   of the file backwards). Trust: a hash that differs from this agent's
//   own fetch of the piece bans its sender at once; two others that
//   disagree make this agent fetch the piece itself (and ban the one that
//   lied); a file that fails X drops the mapping and comes over HTTP,
//   after which the senders of false hashes are found and banned
//   (unmask_false_hashes).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "agent/agent_internal.h"
#include "agent/log.h"
#include "agent/swarm.h"
#include "p2p/content.h"
#include "dopt/dopt.h"

namespace dopt::agent {

namespace {
// How long another agent's claim on a piece holds (it said it fetches it)
// before this agent fetches the piece too: this plus twice the longest
// piece time seen in the co-fetch (next_cofetch_piece).
constexpr std::int64_t kCoFetchClaimMs = 2000;
// The longest piece time that counts for how long claims hold (a host that
// claims every piece and sends its hashes late holds them 2 s + 2 x this
// at most, once each).
constexpr std::int64_t kMaxMemberPieceMs = 15000;
// Piece hashes kept from other agents per SHA-256 until it is proven.
constexpr std::size_t kMaxHashClaimsPerPiece = 4;
// Piece messages kept from before this agent's size or split is known.
constexpr std::size_t kMaxEarlyHashes = 4096;
// Segments (start_cofetch_segments): at most this many a file, of at least
// this many pieces; a file of fewer than two segments has none. Each
// segment torrent connects to every other co-fetcher: with k of them, at
// most kSegmentConnections / (k - 1) segments (libtorrent's default limit
// is 200 connections in all).
constexpr int kMaxSegments = 16;
constexpr int kMinSegmentPieces = 4;
constexpr int kSegmentConnections = 112;
// A segment torrent connects to every other co-fetcher when it is made
// (one that has not made it yet refuses; it connects when it does), and
// again this long after to those it is not connected to.
constexpr std::int64_t kSegmentSecondConnectMs = 500;

// Copies `len` bytes at `in_off` of `in` to `out_off` of `out` in the
// kernel; false (errno set) when it cannot.
bool copy_range(int in, off_t in_off, int out, off_t out_off, std::size_t len) {
    while (len > 0) {
        const ssize_t n = ::copy_file_range(in, &in_off, out, &out_off, len, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            if (n == 0) errno = EIO;  // the source ended early
            return false;
        }
        len -= static_cast<std::size_t>(n);
    }
    return true;
}

// The address of "addr:port" (as events name peers), for ban_peer; "" when
// it is not one.
std::string address_of(const std::string& peer) {
    try {
        return p2p::parse_peer_address(peer, "peer", false).address;
    } catch (const std::exception&) {
        return std::string();
    }
}
}  // namespace

using storage::FileRecord;
using storage::JobState;

// The split to co-fetch X with at the end of its lookup window; nullopt
// when this agent does not co-fetch (alone: plain HTTP; another agent
// fetching the whole file: it follows).
std::optional<std::vector<std::uint64_t>> Swarms::cofetch_split(const ContentLookup& l) const {
    const std::uint64_t me = peers_->id();
    // A co-fetch under way that counts this agent: its split, the lowest
    // node's when several do.
    for (const auto& [node, split] : l.splits)
        if (std::binary_search(split.begin(), split.end(), me)) return split;
    if (l.wanters.empty()) return std::nullopt;
    // Whole-file fetchers (fetching, no split) are followed.
    for (std::uint64_t n : l.fetchers)
        if (!l.splits.count(n)) return std::nullopt;
    // Co-fetchers under way that do not name this agent: it joins them
    // (each adds it to its split when it sees this agent's, and leaves it
    // its pieces not fetched yet); else its own view of R's wanters.
    std::vector<std::uint64_t> split;
    if (l.splits.empty()) {
        split = l.wanters;
    } else {
        for (const auto& [node, s] : l.splits) split.push_back(node);
    }
    split.push_back(me);
    std::sort(split.begin(), split.end());
    split.erase(std::unique(split.begin(), split.end()), split.end());
    if (split.size() > p2p::kMaxSplitNodes) split.resize(p2p::kMaxSplitNodes);
    if (!std::binary_search(split.begin(), split.end(), me)) return std::nullopt;
    return split;
}

// X's lookup ends in a co-fetch: its jobs wait (CONNECTING) while the
// pieces are fetched.
void Swarms::start_cofetch(const std::string& x, std::vector<std::uint64_t> split) {
    auto it = content_lookups_.find(x);
    if (it == content_lookups_.end()) return;
    auto co = std::make_unique<CoFetch>();
    co->sha256 = x;
    co->jobs = it->second->jobs;
    co->split = std::move(split);
    for (std::uint64_t n : it->second->wanters) co->present.insert(n);
    co->early_hashes = std::move(it->second->early_hashes);
    co->started_ms = mono_ms();
    content_lookups_.erase(it);
    std::uint64_t size = 0;
    for (Job* job : co->jobs)
        if (job->file().bytes_total != kUnknownSize) size = job->file().bytes_total;
    LOG_INFO("content %s: co-fetching it from the origin with %zu other agents", x.c_str(),
             co->split.size() - 1);
    CoFetch& c = *co;
    cofetches_[x] = std::move(co);
    peers_->look_up_content(x, /*fetching_from_origin=*/true, c.split);
    if (size > 0) {
        plan_cofetch(c, size);
        return;
    }
    c.probing = true;
    start_cofetch_request(c, -1);
}

// The size is known: the pieces, this agent's range, and the file they go
// into (a private folder in the peer cache, named after X until the
// metainfo exists).
void Swarms::plan_cofetch(CoFetch& co, std::uint64_t size) {
    co.size = size;
    co.piece_length = p2p::choose_piece_size(size);
    const auto piece = static_cast<std::uint64_t>(co.piece_length);
    co.num_pieces = static_cast<int>(size / piece + (size % piece != 0));
    const auto n = static_cast<std::size_t>(co.num_pieces);
    const int others = std::max(1, static_cast<int>(co.split.size()) - 1);
    const int max_segments = std::clamp(kSegmentConnections / others, 2, kMaxSegments);
    co.segment_pieces = std::max(kMinSegmentPieces, (co.num_pieces + max_segments - 1) / max_segments);
    const int segments = (co.num_pieces + co.segment_pieces - 1) / co.segment_pieces;
    co.segment_torrent.assign(segments >= 2 ? static_cast<std::size_t>(segments) : 0, 0);
    co.segment_added_ms.assign(co.segment_torrent.size(), 0);
    share_out_cofetch(co);
    co.held.assign(n, false);
    co.hashes.assign(n, std::string());
    co.hash_from.assign(n, std::string());
    co.fetched.assign(n, false);
    co.inflight.assign(n, false);
    co.claimed_ms.assign(n, 0);
    // No pieces of its own (more agents than pieces): it steals at once,
    // as an agent whose own pieces are known does.
    if (own_pieces_known(co)) co.range_done_ms = mono_ms();
    co.dir = config_.cache_dir + "/.cofetch-" + co.sha256;
    co.segment_dir = config_.cache_dir + "/.cofetch-segments-" + co.sha256;
    remove_tree(co.dir);
    remove_tree(co.segment_dir);
    ::mkdir(co.dir.c_str(), 0700);
    const std::string path = co.dir + "/" + co.sha256;
    co.fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (co.fd < 0 || ::ftruncate(co.fd, static_cast<off_t>(size)) != 0) {
        end_cofetch(co.sha256, std::string("cannot make ") + path + ": " + std::strerror(errno));
        return;
    }
    for (Job* job : co.jobs) open_cofetch_partial(co, *job);
    LOG_INFO("content %s: fetching %d of its %d pieces from the origin (shared among %zu agents)",
             co.sha256.c_str(), static_cast<int>(std::count(co.own.begin(), co.own.end(), true)),
             co.num_pieces, co.split.size());
    const std::string x = co.sha256;
    std::vector<p2p::ContentEvent> early;
    early.swap(co.early_hashes);
    for (const p2p::ContentEvent& e : early) {
        on_piece_hash(e);
        if (!cofetches_.count(x)) return;  // finished (or ended) meanwhile
    }
    pump_cofetch(co, mono_ms());
}

// Starts origin requests: as in a swarm, min(origin_requests,
// ceil(swarm_origin_requests / k)) for k co-fetchers, so that the split
// keeps about swarm_origin_requests in flight in all (each agent's
// origin_requests would share the origin's link among 4·k requests, every
// piece would take k times as long, and claims would outlive them).
void Swarms::pump_cofetch(CoFetch& co, std::int64_t now) {
    if (co.size == 0 || now < co.retry_ms) return;
    const int k = std::max(1, static_cast<int>(co.split.size()));
    const int limit = std::max(1, std::min(config_.origin_requests, (config_.swarm_origin_requests + k - 1) / k));
    int running = static_cast<int>(std::count(co.inflight.begin(), co.inflight.end(), true));
    while (running < limit) {
        const int piece = next_cofetch_piece(co, now);
        if (piece < 0) return;
        start_cofetch_request(co, piece);
        ++running;
    }
}

// This agent's own pieces among the split (co.own), after the split was
// set or grew.
void Swarms::share_out_cofetch(CoFetch& co) {
    const std::uint64_t me = peers_->id();
    co.owner = p2p::cofetch_owners(co.split, co.num_pieces);
    co.own.assign(static_cast<std::size_t>(co.num_pieces), false);
    co.next_for.assign(static_cast<std::size_t>(co.num_pieces), false);
    co.own_order.clear();
    for (int p = 0; p < co.num_pieces; ++p) {
        const auto i = static_cast<std::size_t>(p);
        co.own[i] = co.owner[i] == me;
        co.next_for[i] = p2p::cofetch_piece_rank(co.split, p, me) == 1;
        if (co.own[i]) co.own_order.push_back(p);
    }
    // Segment by segment (the co-fetchers complete the file's segments in
    // turn, and trade them while the rest comes), within one the highest
    // scores first (the pieces least likely to move when the split grows).
    const int per = std::max(1, co.segment_pieces);
    std::sort(co.own_order.begin(), co.own_order.end(), [me, per](int a, int b) {
        if (a / per != b / per) return a / per < b / per;
        return p2p::cofetch_piece_score(me, a) > p2p::cofetch_piece_score(me, b);
    });
}

// Whether every piece of this agent's own has a hash (fetched here, or sent).
bool Swarms::own_pieces_known(const CoFetch& co) {
    for (std::size_t i = 0; i < co.own.size(); ++i)
        if (co.own[i] && co.hashes[i].empty()) return false;
    return true;
}

// The next piece to fetch: one whose hash is not known, that no request
// of this agent fetches and no member claimed lately. This agent's own
// pieces first, segment by segment (co.own_order); then, once they are
// all known, the others' (work stealing: an agent may start late, be
// slow, stall or leave), segment by segment from the end of the file
// backwards, as their owners fetch forwards (stealing from the first
// segments on was no faster and fetched more pieces twice: performance.md),
// within a segment the piece its owner comes to last (the lowest score:
// owners fetch their highest first); those this agent comes next for
// (cofetch_piece_rank 1) first; a member that has not claimed a piece yet
// keeps its pieces a claim's time. A claimed piece is left to its claimer for 2 s plus twice
// the longest piece time seen, at most 15 s (this agent's, or a member's
// from its claim to its hash: a piece in flight while the origin is
// shared by many requests takes that long, and stealing it would fetch
// it twice). -1: none now.
int Swarms::next_cofetch_piece(const CoFetch& co, std::int64_t now) const {
    const std::int64_t claim_ms =
        kCoFetchClaimMs + 2 * std::min(kMaxMemberPieceMs, std::max(co.piece_ms_max, co.member_piece_ms_max));
    auto idle = [&](int p) {
        auto i = static_cast<std::size_t>(p);
        return co.hashes[i].empty() && !co.inflight[i] &&
               (co.claimed_ms[i] == 0 || now - co.claimed_ms[i] >= claim_ms);
    };
    for (int p : co.own_order)
        if (idle(p)) return p;
    if (co.range_done_ms == 0) return -1;
    // The pieces this agent comes next for first (two stealers seldom pick
    // the same piece), then any. A member that has not fetched yet (its
    // window may end later) keeps its pieces for a claim's time.
    const std::uint64_t me = peers_->id();
    const bool waited = now >= co.range_done_ms + claim_ms;
    const int per = std::max(1, co.segment_pieces);
    for (const bool next_only : {true, false}) {
        for (int first = (co.num_pieces - 1) / per * per; first >= 0; first -= per) {
            int best = -1;
            std::uint64_t best_score = 0;
            for (int p = first; p < std::min(co.num_pieces, first + per); ++p) {
                const auto i = static_cast<std::size_t>(p);
                if (!co.hashes[i].empty() || co.inflight[i]) continue;
                if (next_only && !co.next_for[i]) continue;
                const std::uint64_t owner = co.owner[i];
                if (!idle(p) ||
                    !(owner == me || waited || co.fetching_members.count(owner) || !co.present.count(owner)))
                    continue;
                const std::uint64_t score = p2p::cofetch_piece_score(owner, p);
                if (best < 0 || score < best_score) {
                    best = p;
                    best_score = score;
                }
            }
            if (best >= 0) return best;
        }
    }
    return -1;
}

// One range request to the origin, from the URL of one of the co-fetch's
// jobs (content behind credentials is never co-fetched: no headers).
void Swarms::start_cofetch_request(CoFetch& co, int piece) {
    Job& job = **co.jobs.begin();
    auto req = std::make_unique<CoFetchPiece>();
    req->swarms = this;
    req->sha256 = co.sha256;
    req->piece = piece;
    req->size = co.size;
    req->offset = piece < 0 ? 0 : static_cast<std::uint64_t>(piece) * static_cast<std::uint64_t>(co.piece_length);
    req->length = piece < 0 ? 1 : std::min<std::uint64_t>(static_cast<std::uint64_t>(co.piece_length), co.size - req->offset);
    TransferRequest tr;
    tr.url = job.file().remote_url;
    tr.offset = req->offset;
    tr.length = req->length;
    req->started_ms = mono_ms();
    req->id = fetcher_.start(tr, req.get());
    agent_.count_usage(job, kOriginRequests, 1);
    if (piece >= 0) {
        co.inflight[static_cast<std::size_t>(piece)] = true;
        peers_->send_piece_hash(co.sha256, co.size, piece, std::string());  // a claim
    }
    cofetch_requests_.push_back(std::move(req));
}

int CoFetchPiece::on_response(const ResponseInfo& info) {
    // At most 2^50 bytes, the bound peers' sizes have too (p2p/content.cpp):
    // the piece count must fit an int.
    if (info.status != 206 || info.body_offset != offset || info.total == UINT64_MAX ||
        info.total > (std::uint64_t{1} << 50))
        return DOPT_E_REMOTE_CHANGED;
    if (size != 0 && info.total != size) return DOPT_E_REMOTE_CHANGED;
    total = info.total;
    return 0;
}

int CoFetchPiece::on_body(const char* bytes, std::size_t len) {
    if (data.size() + len > length) return DOPT_E_REMOTE_CHANGED;
    data.insert(data.end(), bytes, bytes + len);
    return 0;
}

void CoFetchPiece::on_done(const TransferOutcome& outcome) { swarms->on_cofetch_piece_done(*this, outcome); }

void Swarms::on_cofetch_piece_done(CoFetchPiece& req, const TransferOutcome& outcome) {
    auto owned = std::find_if(cofetch_requests_.begin(), cofetch_requests_.end(),
                              [&](const auto& r) { return r.get() == &req; });
    if (owned == cofetch_requests_.end()) return;
    std::unique_ptr<CoFetchPiece> keep = std::move(*owned);
    cofetch_requests_.erase(owned);
    auto it = cofetches_.find(req.sha256);
    if (req.sha256.empty() || it == cofetches_.end()) return;
    CoFetch& co = *it->second;
    const std::int64_t now = mono_ms();
    if (req.piece >= 0) co.inflight[static_cast<std::size_t>(req.piece)] = false;
    if (outcome.ok && req.data.size() == req.length) {
        co.failures = 0;
        if (req.piece < 0) {
            co.probing = false;
            plan_cofetch(co, req.total);
            return;
        }
        const std::int64_t took = now - req.started_ms;
        co.piece_ms_max = std::max(co.piece_ms_max, took);
        keep_cofetch_piece(co, req.piece, req.data);
        if (cofetches_.count(req.sha256)) pump_cofetch(co, now);
        return;
    }
    if (!outcome.ok && outcome.transient && ++co.failures < 5) {
        co.retry_ms = now + 1000 * co.failures;
        LOG_INFO("content %s: origin piece %d failed (%s); again in %u s", co.sha256.c_str(), req.piece,
                 outcome.description.c_str(), co.failures);
        if (req.piece < 0) start_cofetch_request(co, -1);  // the size is needed first
        return;
    }
    // No ranges, another size, a 404...: the jobs go over HTTP, where
    // their own errors, if any, are reported.
    end_cofetch(co.sha256, outcome.ok ? "the origin sent a short piece" : outcome.description);
}

// A piece of this agent's fetch: into the file, its hash to R's peers. A
// hash another agent sent for it that differs is a lie: its sender is
// banned.
void Swarms::keep_cofetch_piece(CoFetch& co, int piece, const std::vector<char>& data) {
    const auto i = static_cast<std::size_t>(piece);
    const off_t off = static_cast<off_t>(piece) * co.piece_length;
    std::size_t put = 0;
    while (put < data.size()) {
        ssize_t n = ::pwrite(co.fd, data.data() + put, data.size() - put, off + static_cast<off_t>(put));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            end_cofetch(co.sha256, std::string("cannot write the co-fetched file: ") + std::strerror(errno));
            return;
        }
        put += static_cast<std::size_t>(n);
    }
    const std::string sha1 = p2p::v1_piece_hash(data.data(), data.size());
    // Every sender of another hash of this piece lies: the one whose hash
    // was taken, and those of a dispute that made this agent fetch it.
    std::set<std::string> liars;
    if (!co.hashes[i].empty() && co.hashes[i] != sha1 && !co.hash_from[i].empty()) liars.insert(co.hash_from[i]);
    if (auto hc = hash_claims_.find(co.sha256); hc != hash_claims_.end())
        for (const HashClaim& c : hc->second)
            if (c.piece == piece && c.sha1 != sha1) liars.insert(c.peer);
    for (const std::string& liar : liars) {
        LOG_WARN("banned peer %s: it sent a false hash of piece %d of SHA-256 %s", liar.c_str(), piece,
                 co.sha256.c_str());
        if (const std::string a = address_of(liar); !a.empty()) peers_->ban_peer(a);
    }
    // A segment made with another hash of this piece is made again.
    const bool doubted = !co.hashes[i].empty() && co.hashes[i] != sha1;
    if (co.hashes[i].empty()) ++co.known;
    co.hashes[i] = sha1;
    co.hash_from[i].clear();
    co.fetched[i] = true;
    co.held[i] = true;
    if (doubted && co.segment_pieces > 0) drop_cofetch_segment(co, piece / co.segment_pieces);
    // These bytes are the origin's: over any a segment brought.
    for (Job* job : co.jobs)
        if (i < job->cofetch_partial.written.size()) job->cofetch_partial.written[i] = false;
    copy_to_cofetch_partials(co, piece);
    peers_->send_piece_hash(co.sha256, co.size, piece, sha1);
    for (Job* job : co.jobs) job->last_progress_ms = mono_ms();
    if (co.range_done_ms == 0 && own_pieces_known(co)) co.range_done_ms = mono_ms();
    if (co.known == co.num_pieces) finish_cofetch(co);
    else start_cofetch_segments(co);
}

// Another agent's hash of a piece of X. Taken when no hash of that piece is
// known yet; one that contradicts a known one from another agent makes
// this agent fetch the piece itself (the origin decides).
void Swarms::on_piece_hash(const p2p::ContentEvent& e) {
    auto it = cofetches_.find(e.sha256);
    if (it == cofetches_.end()) {  // hashes may come before this agent's window ends
        auto l = content_lookups_.find(e.sha256);
        if (l != content_lookups_.end() && l->second->early_hashes.size() < kMaxEarlyHashes)
            l->second->early_hashes.push_back(e);
        return;
    }
    if (e.node == peers_->id()) return;
    CoFetch& co = *it->second;
    if (co.size == 0 && co.early_hashes.size() < kMaxEarlyHashes) co.early_hashes.push_back(e);
    if (co.size != e.size) return;
    const auto i = static_cast<std::size_t>(e.piece);
    if (i >= co.hashes.size()) return;
    if (e.piece_sha1.empty()) {  // a claim: it fetches that piece now
        // Only from a co-fetcher of the split, and once: a renewed claim
        // would hold a piece forever. Claims hold this agent's own pieces
        // too: a piece becomes its own when the split grows, maybe while
        // the member that owned it before fetches it (a hostile member can
        // delay each piece once, by a claim's time).
        const bool in_split = std::binary_search(co.split.begin(), co.split.end(), e.node);
        if (in_split) co.fetching_members.insert(e.node);
        if (in_split && co.claimed_ms[i] == 0) co.claimed_ms[i] = mono_ms();
        return;
    }
    if (e.piece_sha1.size() != 20) return;
    if (co.claimed_ms[i] != 0 && std::binary_search(co.split.begin(), co.split.end(), e.node))
        co.member_piece_ms_max =
            std::max(co.member_piece_ms_max, std::min(kMaxMemberPieceMs, mono_ms() - co.claimed_ms[i]));
    auto& claims = hash_claims_[co.sha256];
    if (static_cast<std::size_t>(std::count_if(claims.begin(), claims.end(), [&](const HashClaim& c) {
            return c.piece == e.piece;
        })) < kMaxHashClaimsPerPiece)
        claims.push_back(HashClaim{e.piece, e.piece_sha1, e.peer});
    if (co.hashes[i].empty()) {
        co.hashes[i] = e.piece_sha1;
        co.hash_from[i] = e.peer;
        ++co.known;
    } else if (co.hashes[i] != e.piece_sha1) {
        if (co.hash_from[i].empty()) {  // this agent fetched it: the sender lies
            LOG_WARN("banned peer %s: it sent a false hash of piece %d of SHA-256 %s", e.peer.c_str(),
                     e.piece, co.sha256.c_str());
            if (const std::string a = address_of(e.peer); !a.empty()) peers_->ban_peer(a);
            return;
        }
        if (co.hash_from[i] == e.peer) {  // one sender, two hashes: a liar
            LOG_WARN("banned peer %s: it sent two hashes of piece %d of SHA-256 %s", e.peer.c_str(), e.piece,
                     co.sha256.c_str());
            if (const std::string a = address_of(e.peer); !a.empty()) peers_->ban_peer(a);
        } else {
            LOG_WARN("content %s: two agents sent different hashes of piece %d; fetching it here",
                     co.sha256.c_str(), e.piece);
        }
        co.hashes[i].clear();
        co.hash_from[i].clear();
        --co.known;
        // Its segment's torrent was made with the hash now in doubt.
        if (co.segment_pieces > 0 && i / static_cast<std::size_t>(co.segment_pieces) < co.segment_torrent.size())
            drop_cofetch_segment(co, static_cast<int>(i / static_cast<std::size_t>(co.segment_pieces)));
        // Fetched here, within origin_requests like any other piece.
        pump_cofetch(co, mono_ms());
        return;
    }
    if (co.range_done_ms == 0 && co.size > 0 && own_pieces_known(co)) co.range_done_ms = mono_ms();
    if (co.known == co.num_pieces) finish_cofetch(co);
    else start_cofetch_segments(co);
}

// R's wanters changed: who is still there (pieces whose agent left are
// fetched here), which of them co-fetch X (each joins the split: views
// that differed at the end of the lookup windows converge, and few pieces
// besides the newcomer's share move), where they accept connections; a newcomer is
// sent this agent's hashes and claims (it missed them).
void Swarms::cofetch_wanters_changed(CoFetch& co, const p2p::ContentEvent& e) {
    std::set<std::uint64_t> now(e.wanters.begin(), e.wanters.end());
    bool newcomer = false;
    for (std::uint64_t n : now) newcomer = newcomer || !co.present.count(n);
    co.present = std::move(now);
    bool grew = false;
    for (const auto& [node, split] : e.splits) {  // bounded: kMaxSplitNodes in all
        if (co.split.size() >= p2p::kMaxSplitNodes) break;
        if (!co.present.count(node) || std::binary_search(co.split.begin(), co.split.end(), node)) continue;
        co.split.insert(std::upper_bound(co.split.begin(), co.split.end(), node), node);
        grew = true;
    }
    if (grew) {
        LOG_INFO("content %s: %zu agents share the origin fetch now", co.sha256.c_str(), co.split.size());
        peers_->look_up_content(co.sha256, /*fetching_from_origin=*/true, co.split);
        if (co.size > 0) {
            share_out_cofetch(co);
            if (co.range_done_ms == 0 && own_pieces_known(co)) co.range_done_ms = mono_ms();
        }
    }
    for (const auto& [node, ep] : e.endpoints)  // bounded: the split's nodes only
        if (std::binary_search(co.split.begin(), co.split.end(), node)) co.endpoints[node] = ep;
    if (newcomer)
        for (std::size_t i = 0; i < co.hashes.size(); ++i) {
            if (co.fetched[i])
                peers_->send_piece_hash(co.sha256, co.size, static_cast<int>(i), co.hashes[i]);
            else if (co.inflight[i])  // its claim too: it may join and own that piece
                peers_->send_piece_hash(co.sha256, co.size, static_cast<int>(i), std::string());
        }
    pump_cofetch(co, mono_ms());
}

// Every piece's hash is known: the metainfo, the same on every agent; the
// file becomes its torrent's content in the peer cache, and the jobs go
// through the swarm, connected to the other co-fetchers.
void Swarms::finish_cofetch(CoFetch& co) {
    std::string bytes;
    std::optional<p2p::MetainfoSummary> meta;
    try {
        bytes = p2p::content_metainfo_from_hashes(co.size, co.sha256, co.hashes);
        meta = p2p::summarize_metainfo(bytes);
    } catch (const p2p::MetainfoError& err) {
        end_cofetch(co.sha256, std::string("cannot make its metainfo: ") + err.what());
        return;
    }
    const std::string x = co.sha256;
    if (false_mappings_.count(meta->info_hash)) {
        end_cofetch(x, "the agents' piece hashes make a mapping already proven false");
        return;
    }
    for (std::size_t s = 0; s < co.segment_torrent.size(); ++s)
        if (co.segment_torrent[s] != 0) {
            peers_->remove_torrent(co.segment_torrent[s], false);
            segment_torrents_.erase(co.segment_torrent[s]);
            co.segment_torrent[s] = 0;
        }
    remove_tree(co.segment_dir);  // every segment's folder
    // Pieces fetched and hashed here (their hash in the metainfo is this
    // agent's own, keep_cofetch_piece, never one a peer sent), and those a
    // segment brought (hashed against the hash the metainfo holds: a hash
    // put in doubt dropped its segment and what it brought).
    CoFetched left;
    left.held.assign(co.held.size(), false);
    left.from_origin.assign(co.held.size(), false);
    int from_segments = 0;
    for (std::size_t i = 0; i < co.held.size(); ++i) {
        left.from_origin[i] = co.fetched[i] && co.hash_from[i].empty();
        left.held[i] = left.from_origin[i] || (co.held[i] && !co.fetched[i]);
        from_segments += co.held[i] && !co.fetched[i];
    }
    LOG_INFO("content %s: every piece hashed after %lld ms (%d of %d pieces already traded in segments); "
             "swarming as %s",
             x.c_str(), static_cast<long long>(mono_ms() - co.started_ms), from_segments, co.num_pieces,
             meta->info_hash.c_str());
    const std::string final_dir = config_.cache_dir + "/" + meta->info_hash;
    ::close(co.fd);
    co.fd = -1;
    if (cache_.count(meta->info_hash) || ::rename(co.dir.c_str(), final_dir.c_str()) != 0)
        remove_tree(co.dir);  // the swarm fetches what this agent had
    else
        cofetched_pieces_[meta->info_hash] = std::move(left);
    // Every co-fetcher heard of, present or not (one done first has left R).
    std::set<std::string> others;
    for (const auto& [node, ep] : co.endpoints) others.insert(ep);
    const std::set<Job*> jobs = co.jobs;
    stop_cofetch_requests(x);
    cofetches_.erase(x);
    // This agent stays on R, saying it fetches, until the file matched X and
    // it announces X -> H (content_proven): late wanters wait for that.
    content_holders_[meta->info_hash] = others;
    cofetchers_[meta->info_hash] = others;
    for (Job* job : jobs) {
        job->content_waiting = false;
        job->content_seed = true;  // stopping it leaves R (leave_content)
        FileRecord& f = job->file();
        remember_metainfo(*job, f, *meta, bytes);
        f.info_hash = meta->info_hash;
        f.metainfo_source = "peers";
        store_.update_file(job->rec.id, f);
        agent_.start_job(*job);
    }
}

// The co-fetch stops (an origin that serves no ranges, a local error): its
// jobs go to the origin over HTTP, as with no other wanter.
void Swarms::end_cofetch(std::string x, const std::string& why) {  // x: a copy (drop_cofetch frees co.sha256)
    auto it = cofetches_.find(x);
    if (it == cofetches_.end()) return;
    LOG_INFO("content %s: co-fetching stops: %s", x.c_str(), why.c_str());
    const std::set<Job*> jobs = it->second->jobs;
    drop_cofetch(*it->second);
    auto& lookup = content_lookups_[x];
    lookup = std::make_unique<ContentLookup>();
    lookup->jobs = jobs;
    fetch_content_from_origin(x, "co-fetching stopped: " + why);
}

// Forgets a co-fetch: its requests stop, its segments and folders go.
void Swarms::drop_cofetch(CoFetch& co) {
    stop_cofetch_requests(co.sha256);
    for (Job* job : co.jobs) job->cofetch_partial.reset();
    for (std::size_t s = 0; s < co.segment_torrent.size(); ++s) drop_cofetch_segment(co, static_cast<int>(s));
    if (!co.segment_dir.empty()) remove_tree(co.segment_dir);
    if (co.fd >= 0) ::close(co.fd);
    if (!co.dir.empty()) remove_tree(co.dir);
    cofetches_.erase(std::string(co.sha256));  // co is gone
}

// Segments (docs/design.md "Content identity"): the pieces of a co-fetch
// come in segments of segment_pieces (the owners fetch theirs segment by
// segment, share_out_cofetch). Once every hash of a segment is known, each
// co-fetcher makes the same torrent of it (p2p::cofetch_segment_metainfo),
// holding the pieces it has (copied out of the co-fetch's file, added as
// held: hashed here as they were fetched), connects it to the other
// co-fetchers, and the session trades the segment's pieces while the rest
// of the file is still coming from the origin (on_segment_event copies
// each one it brings into the co-fetch's file). So when the last hash
// comes, little is left for the whole file's torrent to trade. A segment
// torrent's pieces are checked against the co-fetchers' hashes, as the
// whole file's would be; the file is checked against X before delivery.
void Swarms::start_cofetch_segments(CoFetch& co) {
    if (co.fd < 0 || co.segment_torrent.empty()) return;
    const int per = co.segment_pieces;
    const auto piece_length = static_cast<std::uint64_t>(co.piece_length);
    for (std::size_t s = 0; s < co.segment_torrent.size(); ++s) {
        if (co.segment_torrent[s] != 0) continue;
        const int first = static_cast<int>(s) * per;
        const int end = std::min(co.num_pieces, first + per);
        bool known = true;
        for (int p = first; p < end && known; ++p) known = !co.hashes[static_cast<std::size_t>(p)].empty();
        if (!known) continue;
        const std::uint64_t offset = static_cast<std::uint64_t>(first) * piece_length;
        const std::uint64_t size = std::min(co.size - offset, static_cast<std::uint64_t>(end - first) * piece_length);
        std::string metainfo;
        try {
            metainfo = p2p::cofetch_segment_metainfo(
                co.sha256, first, co.piece_length, size,
                std::vector<std::string>(co.hashes.begin() + first, co.hashes.begin() + end));
        } catch (const p2p::MetainfoError& err) {
            LOG_WARN("content %s: no segment at piece %d: %s", co.sha256.c_str(), first, err.what());
            give_up_segments(co);  // the whole file's torrent trades it all
            return;
        }
        // The file holds this agent's pieces before the torrent says so: a
        // peer asks for them as soon as it connects. A folder for each
        // torrent made (one removed may still write into its own: libtorrent
        // removes it on its own thread).
        const std::string dir = co.segment_dir + "/" + std::to_string(++co.segments_made);
        ::mkdir(co.segment_dir.c_str(), 0700);
        ::mkdir(dir.c_str(), 0700);
        const std::string path = dir + "/" + p2p::cofetch_segment_name(co.sha256, first);
        const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        bool ok = fd >= 0 && ::ftruncate(fd, static_cast<off_t>(size)) == 0;
        std::vector<bool> have(static_cast<std::size_t>(end - first), false);
        for (int p = first; p < end && ok; ++p) {
            if (!co.held[static_cast<std::size_t>(p)]) continue;
            const std::uint64_t at = static_cast<std::uint64_t>(p) * piece_length;
            ok = copy_range(co.fd, static_cast<off_t>(at), fd, static_cast<off_t>(at - offset),
                            static_cast<std::size_t>(std::min(piece_length, co.size - at)));
            have[static_cast<std::size_t>(p - first)] = true;
        }
        if (!ok) LOG_WARN("content %s: cannot make %s: %s", co.sha256.c_str(), path.c_str(), std::strerror(errno));
        if (fd >= 0) ::close(fd);
        if (!ok) {
            give_up_segments(co);
            return;
        }
        p2p::TorrentId torrent = 0;
        try {
            // Its peers are the co-fetchers, connected here
            // (connect_segment): none found by LSD, trackers or static peers.
            torrent = peers_->add_torrent(metainfo, dir, {}, have, /*find_peers=*/false);
        } catch (const std::exception& err) {
            LOG_WARN("content %s: cannot add the segment at piece %d: %s", co.sha256.c_str(), first, err.what());
            give_up_segments(co);
            return;
        }
        co.segment_torrent[s] = torrent;
        segment_torrents_[torrent] = Segment{co.sha256, static_cast<int>(s), dir};
        co.segment_added_ms[s] = std::max<std::int64_t>(1, mono_ms());
        LOG_DEBUG("content %s: pieces %d-%d traded in a segment torrent", co.sha256.c_str(), first, end - 1);
        connect_segment(co, s, /*only_missing=*/false);
    }
}

// Connects a segment torrent to the other co-fetchers; with only_missing,
// to those not connected to it (told apart by address, and by count where
// agents share one: loopback). Of two connections between two agents,
// libtorrent keeps one (the same on both sides: by peer id).
void Swarms::connect_segment(CoFetch& co, std::size_t segment, bool only_missing) {
    const p2p::TorrentId torrent = co.segment_torrent[segment];
    const std::uint64_t me = peers_->id();
    std::map<std::string, int> connected;  // by address
    std::map<std::string, int> named;      // the co-fetchers' endpoints by address
    if (only_missing) {
        for (const p2p::TorrentPeer& peer : peers_->peers(torrent)) ++connected[peer.address];
        for (const auto& [node, endpoint] : co.endpoints)
            if (node != me) ++named[address_of(endpoint)];
    }
    for (const auto& [node, endpoint] : co.endpoints) {
        if (node == me) continue;
        if (only_missing) {
            const std::string address = address_of(endpoint);
            if (connected[address] >= named[address]) continue;
        }
        try {
            peers_->connect_peer(torrent, endpoint);
        } catch (const std::invalid_argument&) {
        }
    }
}

// An event of a segment torrent: a piece it brought goes into the
// co-fetch's file.
void Swarms::on_segment_event(const p2p::TorrentEvent& e) {
    auto seg = segment_torrents_.find(e.torrent);
    if (seg == segment_torrents_.end()) return;
    auto it = cofetches_.find(seg->second.sha256);
    if (it == cofetches_.end()) return;
    CoFetch& co = *it->second;
    const int segment = seg->second.segment;
    using Kind = p2p::TorrentEvent::Kind;
    if (e.kind == Kind::FileError) {
        LOG_WARN("content %s: segment %d: %s; no more segments: the whole file's torrent trades what is left",
                 co.sha256.c_str(), segment, e.message.c_str());
        give_up_segments(co);
        return;
    }
    if (e.kind == Kind::PeerDisconnected) {  // not a handshake failure to explain: a segment comes and goes
        LOG_DEBUG("peer %s disconnected from a segment of %s: %s", e.peer.c_str(), co.sha256.c_str(),
                  e.message.c_str());
        return;
    }
    if (e.kind != Kind::PieceVerified) {
        log_peer_event(e);
        return;
    }
    const int piece = segment * co.segment_pieces + e.piece;
    if (e.piece < 0 || e.piece >= co.segment_pieces || piece >= co.num_pieces ||
        co.held[static_cast<std::size_t>(piece)])
        return;
    const auto piece_length = static_cast<std::uint64_t>(co.piece_length);
    const std::uint64_t at = static_cast<std::uint64_t>(piece) * piece_length;
    const auto len = static_cast<std::size_t>(std::min(piece_length, co.size - at));
    const int in = ::open(peers_->content_path(e.torrent).c_str(), O_RDONLY | O_CLOEXEC);
    bool ok = in >= 0 && copy_range(in, static_cast<off_t>(static_cast<std::uint64_t>(e.piece) * piece_length),
                                    co.fd, static_cast<off_t>(at), len);
    if (!ok) LOG_WARN("content %s: cannot copy piece %d out of its segment: %s", co.sha256.c_str(), piece,
                      std::strerror(errno));
    if (in >= 0) ::close(in);
    // Hashed again where it now is: the whole file's torrent takes it as
    // held without a check (add_torrent's have_pieces), as it does the
    // pieces fetched here.
    if (ok) {
        std::vector<char> bytes(len);
        std::size_t got = 0;
        while (got < len) {
            const ssize_t n = ::pread(co.fd, bytes.data() + got, len - got, static_cast<off_t>(at + got));
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) break;
            got += static_cast<std::size_t>(n);
        }
        ok = got == len && p2p::v1_piece_hash(bytes.data(), len) == co.hashes[static_cast<std::size_t>(piece)];
        if (!ok) LOG_WARN("content %s: piece %d from its segment does not match its hash where it was copied",
                          co.sha256.c_str(), piece);
    }
    if (!ok) return;  // the whole file's torrent brings it
    co.held[static_cast<std::size_t>(piece)] = true;
    copy_to_cofetch_partials(co, piece);
    for (Job* job : co.jobs) job->last_progress_ms = mono_ms();
}

// The co-fetch's jobs' partial files receive its pieces as they come
// (Job::cofetch_partial), not all at once when the swarm starts: the copy
// is spread over the fetch, while the agent mostly waits for the origin.
void Swarms::open_cofetch_partial(CoFetch& co, Job& job) {
    const std::string x = co.sha256;
    agent_.open_current_partial(job, [this, x](Job& j, int fd) {
        if (fd < 0) return;  // the swarm opens it again and says what fails
        auto it = cofetches_.find(x);
        if (it == cofetches_.end() || !it->second->jobs.count(&j) || j.cofetch_partial.fd >= 0 ||
            ::ftruncate(fd, static_cast<off_t>(it->second->size)) != 0) {
            ::close(fd);
            return;
        }
        CoFetch& c = *it->second;
        j.cofetch_partial.fd = fd;
        j.cofetch_partial.sha256 = j.file().sha256;
        j.cofetch_partial.file = j.current_file;
        j.cofetch_partial.written.assign(c.held.size(), false);
        // Pieces land anywhere in the file: no prefix of it is sure (an
        // HTTP transfer after all starts from byte 0).
        FileRecord& f = j.file();
        f.durable_bytes = 0;
        j.partials_written.erase(j.current_file);
        store_.update_file(j.rec.id, f);
        for (std::size_t p = 0; p < c.held.size(); ++p)
            if (c.held[p]) copy_to_cofetch_partials(c, static_cast<int>(p));
    }, /*mark_opening=*/false);
}

// A piece the co-fetch holds, into each of its jobs' open partial files that
// lacks it (a job whose file refuses it is left to the swarm).
void Swarms::copy_to_cofetch_partials(CoFetch& co, int piece) {
    const auto i = static_cast<std::size_t>(piece);
    const std::uint64_t at = static_cast<std::uint64_t>(piece) * static_cast<std::uint64_t>(co.piece_length);
    const auto len = static_cast<std::size_t>(std::min<std::uint64_t>(co.piece_length, co.size - at));
    for (Job* job : co.jobs) {
        Job::CoFetchPartial& part = job->cofetch_partial;
        if (part.fd < 0 || i >= part.written.size() || part.written[i]) continue;
        if (!copy_range(co.fd, static_cast<off_t>(at), part.fd, static_cast<off_t>(at), len)) {
            LOG_DEBUG("job %s: piece %d not copied into its partial file yet (%s): the swarm does it",
                      job->rec.id.c_str(), piece, std::strerror(errno));
            part.reset();
            continue;
        }
        part.written[i] = true;
    }
}

// No segments for this co-fetch (one could not be made): those made go.
void Swarms::give_up_segments(CoFetch& co) {
    for (std::size_t s = 0; s < co.segment_torrent.size(); ++s) drop_cofetch_segment(co, static_cast<int>(s));
    co.segment_torrent.clear();
    co.segment_added_ms.clear();
}

// A segment's torrent goes (a hash of it put in doubt, a file error, the
// co-fetch dropped), and the pieces it brought with it.
void Swarms::drop_cofetch_segment(CoFetch& co, int segment) {
    const auto s = static_cast<std::size_t>(segment);
    if (s >= co.segment_torrent.size() || co.segment_torrent[s] == 0) return;
    peers_->remove_torrent(co.segment_torrent[s], false);
    if (auto seg = segment_torrents_.find(co.segment_torrent[s]); seg != segment_torrents_.end()) {
        remove_tree(seg->second.dir);
        segment_torrents_.erase(seg);
    }
    co.segment_torrent[s] = 0;
    const int first = segment * co.segment_pieces;
    for (int p = first; p < std::min(co.num_pieces, first + co.segment_pieces); ++p) {
        const auto i = static_cast<std::size_t>(p);
        if (co.fetched[i]) continue;
        co.held[i] = false;
        for (Job* job : co.jobs)
            if (i < job->cofetch_partial.written.size()) job->cofetch_partial.written[i] = false;
    }
}

void Swarms::cofetch_tick(std::int64_t now) {
    std::vector<CoFetch*> all;
    for (auto& [x, co] : cofetches_) all.push_back(co.get());
    for (CoFetch* co : all) {
        for (std::size_t s = 0; s < co->segment_torrent.size(); ++s)
            if (co->segment_torrent[s] != 0 && co->segment_added_ms[s] != 0 &&
                now - co->segment_added_ms[s] >= kSegmentSecondConnectMs) {
                co->segment_added_ms[s] = 0;
                connect_segment(*co, s, /*only_missing=*/true);
            }
        pump_cofetch(*co, now);
    }
}

// X came from the origin after co-fetched metainfo failed it: the hashes
// other agents sent are compared with the true ones (`metainfo`, made from
// the verified file), and each sender of a false one is banned.
void Swarms::unmask_false_hashes(const std::string& x, const std::string& metainfo) {
    auto it = hash_claims_.find(x);
    if (it == hash_claims_.end()) return;
    std::vector<std::string> truth;
    try {
        truth = p2p::v1_piece_hashes_of(metainfo);
    } catch (const p2p::MetainfoError&) {
        return;
    }
    std::set<std::string> liars;
    for (const HashClaim& c : it->second)
        if (static_cast<std::size_t>(c.piece) < truth.size() && truth[static_cast<std::size_t>(c.piece)] != c.sha1)
            liars.insert(address_of(c.peer));
    liars.erase(std::string());
    for (const std::string& address : liars) {
        LOG_WARN("banned peer %s: it sent false piece hashes of SHA-256 %s", address.c_str(), x.c_str());
        peers_->ban_peer(address);
    }
    hash_claims_.erase(it);
}

// Stops the co-fetch requests of SHA-256 x and forgets them: a stopped
// transfer never calls on_done, so its piece (and its buffer) would
// otherwise stay in cofetch_requests_ for the agent's life.
void Swarms::stop_cofetch_requests(const std::string& x) {
    cofetch_requests_.erase(std::remove_if(cofetch_requests_.begin(), cofetch_requests_.end(),
                                           [&](const std::unique_ptr<CoFetchPiece>& req) {
                                               if (req->sha256 != x) return false;
                                               fetcher_.stop(req->id);
                                               return true;
                                           }),
                            cofetch_requests_.end());
}

}  // namespace dopt::agent
