"""Hostile LAN peers (issue 5): a real doptd on 127.0.0.1 downloading from a
real nginx (a `limit_rate` location, metainfo beside the content made with
`dopt publish`), with a hostile peer from hostile_peer.py on another
loopback address (127.0.0.3 and up) in its swarm: as a static peer ([p2p]
peers) the agent connects to, or connecting in itself. LiarInASwarm runs
three agents (127.0.0.1, .7, .8) with two hostile peers, ClaimerInASwarm
the same three with a peer that claims every piece; RotatingClaimer adds a
claimer from a new address (127.0.0.20 and up) every 3 s. Needs no root.

Every download must end byte-identical. The slowdown against a run of the
same download without the hostile peer (same test, a fresh agent) is
printed; only a generous bound is asserted (3x + 10 s). Where libtorrent
bans (corrupt data), the test shows the ban from both sides: the agent's
log, and the hostile peer's connections closed and new ones turned away.

Known bug (expected failure, PoisoningPeer): a peer's bad blocks in a
piece it never completes are blamed on the origin once the origin's copy
of the piece is added over them; two such and the file goes HTTP only.

Also: the agent never serves what is outside its cache (an unknown
info-hash gets nothing; requests outside the torrent get nothing; a
metainfo name that tries to leave cache_dir neither writes nor reads
outside it).

Figures go to stderr, prefixed with "  ".
"""

import hashlib
import os
import struct
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
import harness  # noqa: E402
import test_peering as peering  # noqa: E402  (helpers only: publish, p2p_toml)
import hostile_peer as hp  # noqa: E402
from harness import MiB, wait_for  # noqa: E402

AGENT_IP = "127.0.0.1"
HOSTILE_IP = "127.0.0.3"   # the static peer that misbehaves
HOSTILE_IP_2 = "127.0.0.6"  # a second one
FLOOD_IP = "127.0.0.4"     # the flooder
PROBE_IP = "127.0.0.5"     # inbound probes (unknown info-hash, bad requests)

SIZE = 8 * MiB             # 8 pieces of 1 MiB (dopt publish's smallest piece size)
ORIGIN_RATE = "512k"       # per connection (after a first second at full speed); the agent opens 4 at once
SLOWDOWN_FACTOR = 3
SLOWDOWN_SLACK = 10.0      # seconds
LIAR_SWARM_FACTOR = 1.5    # LiarInASwarm: a tighter bound, the point of that test
LIAR_SWARM_SLACK = 4.0     # seconds: 2 s before a peer that owes us data stops counting, and noise


def say(*args):
    sys.stderr.write("\n  " + " ".join(str(a) for a in args))
    sys.stderr.flush()


class HostileTest(harness.IntegrationTest):
    """self.origin: nginx over self.www with /slow/ at self.ORIGIN_RATE."""
    ORIGIN_RATE = ORIGIN_RATE

    def setUp(self):
        super().setUp()
        self.origin = self.sb.nginx(self.www, slow_rate=self.ORIGIN_RATE)
        self.hostiles = []

    def tearDown(self):
        for h in self.hostiles:
            h.stop()
        super().tearDown()

    def serve(self, name, size=SIZE):
        """/<name> (random bytes) and /<name>.torrent beside it (dopt
        publish); returns (sha256, hp.Metainfo, content bytes)."""
        path = os.path.join(self.www, name)
        sha = harness.make_file(path, size)
        peering.publish(path, self.url(name), path + ".torrent")
        with open(path, "rb") as f:
            content = f.read()
        return sha, hp.Metainfo.load(path + ".torrent"), content

    def url(self, name):
        # Through the rate-limited location; the metainfo is found beside
        # it there too (/slow/ is an alias of the docroot).
        return self.origin.url("slow/" + name)

    def new_agent(self, name, peers=(), extra=""):
        """A peering agent on AGENT_IP; .p2p_port is its listen port."""
        port = harness.free_port(AGENT_IP)
        a = self.sb.agent(peering.p2p_toml("%s:%d" % (AGENT_IP, port), list(peers), extra),
                          name=name)
        a.p2p_port = port
        return a

    def timed_get(self, agent, name, timeout=120):
        """`dopt get` of /slow/<name> into <agent>/out; returns (seconds,
        destination, job object)."""
        out = os.path.join(agent.dir, "out")
        os.makedirs(out, exist_ok=True)
        dest = os.path.join(out, name)
        t0 = time.monotonic()
        agent.dopt("get", self.url(name), "-o", dest, check=True, timeout=timeout)
        return time.monotonic() - t0, dest, agent.job_for(dest)

    def hostile(self, meta, mode, ip=HOSTILE_IP, pieces=None, **kw):
        h = hp.HostileListener(ip, meta, mode, pieces=pieces, **kw).start()
        self.hostiles.append(h)
        return h

    def baseline(self, name, sha):
        """The same download by an agent with no peers: its seconds."""
        secs, dest, job = self.timed_get(self.new_agent("base"), name)
        self.assertFileSha(dest, sha)
        return secs

    def assertBoundedSlowdown(self, what, secs, base, job):
        ratio = secs / base
        say("%s: %.2f s with the hostile peer, %.2f s without: slowdown %.2fx "
            "(mode %s, %d bytes from peers, %d from the origin)"
            % (what, secs, base, ratio, job["mode"], job["bytes_from_peers"],
               job["bytes_from_origin"]))
        self.assertLessEqual(secs, SLOWDOWN_FACTOR * base + SLOWDOWN_SLACK,
                             "%s: %.1f s against %.1f s without it" % (what, secs, base))

    def probe_handshake(self, agent, src_ip, info_hash):
        """An inbound connection from src_ip with `info_hash`: what happened
        ("handshake", "eof", "reset", ...) and the bytes the agent sent."""
        c = hp.PeerClient((AGENT_IP, agent.p2p_port), src_ip, info_hash)
        try:
            result = c.connect(timeout=5)
            if result == "handshake":
                # Anything after the handshake (bitfield, have_all) counts too.
                c.read_until({"bitfield", "have_all"}, 2)
            return result, c.received
        finally:
            c.close()


class CorruptPeer(HostileTest):
    def test_corrupt_pieces_are_discarded_and_the_peer_is_banned(self):
        """A static peer advertising every piece and answering every request
        with wrong bytes: the file is still right, the peer is banned (the
        agent logs it, closes its connection, and turns it away when it
        comes back inbound) and the slowdown stays bounded."""
        sha, meta, _ = self.serve("pkg.bin")
        base = self.baseline("pkg.bin", sha)
        h = self.hostile(meta, "corrupt")
        a = self.new_agent("A", [h.endpoint])
        secs, dest, job = self.timed_get(a, "pkg.bin")
        self.assertFileSha(dest, sha)
        self.assertBoundedSlowdown("corrupt peer", secs, base, job)
        s = h.summary()
        say("corrupt peer: %s" % s)
        self.assertGreater(s["pieces_sent"], 0, "the agent never asked the corrupt peer: no test")
        log = a.log_text()
        self.assertIn("from a peer failed its hash check", log)
        wait_for(lambda: "banned peer %s" % HOSTILE_IP in a.log_text(), 10,
                 what="the agent banning %s" % HOSTILE_IP)
        wait_for(lambda: h.summary()["open"] == 0, 10, what="the banned peer's connections closed")
        # Back from another port (libtorrent's own ban is of the address and
        # port; p2p/session.cpp blocks the address): refused before any byte.
        n = s["connections"]
        result, got = self.probe_handshake(a, HOSTILE_IP, meta.info_hash)
        say("corrupt peer coming back inbound from %s: %s (%d bytes from the agent)"
            % (HOSTILE_IP, result, len(got)))
        self.assertNotEqual(result, "handshake",
                            "the banned address was let back in with the same torrent")
        self.assertEqual(h.summary()["connections"], n)


class PoisoningPeer(HostileTest):
    def test_a_peers_bad_blocks_are_not_blamed_on_the_origin(self):
        """A static peer advertises every piece, answers the first block
        asked of a piece with wrong bytes and rejects the rest, so no piece
        ever completes from it. After 4 s the agent takes the pieces from the
        origin and hands them to libtorrent with add_piece(). Found here:
        without overwrite_existing libtorrent kept the blocks it already
        held, the peer's bad block stayed in, the piece failed its hash
        check and the agent counted it against the origin ("piece N from the
        origin failed its hash check"); two such failures and the agent
        decided the origin did not match its metainfo (HTTP only, all the
        bytes again; with the job's own metainfo, an integrity error)."""
        sha, meta, _ = self.serve("pkg.bin", 4 * MiB)
        h = self.hostile(meta, "poison")
        a = self.new_agent("A", [h.endpoint])
        secs, dest, job = self.timed_get(a, "pkg.bin")
        self.assertFileSha(dest, sha)
        log = a.log_text()
        s = h.summary()
        say("poison: %.2f s, mode %s, %d bytes from the origin; peer %s; origin pieces failing "
            "their hash: %d; peer banned: %s" % (secs, job["mode"], job["bytes_from_origin"],
                                                 {k: s[k] for k in ("requests", "pieces_sent")},
                                                 log.count("from the origin failed its hash check"),
                                                 "banned peer %s" % HOSTILE_IP in log))
        if s["pieces_sent"] == 0:  # not the failure this test expects
            self.skipTest("the peer never sent its bad block: no test")
        self.assertNotIn("from the origin failed its hash check", log,
                         "an origin piece failed its hash check; the origin serves the right bytes")


class LyingPeers(HostileTest):
    def test_peers_that_advertise_everything_and_never_deliver(self):
        """Two static peers advertise every piece: the "liar" unchokes and
        then ignores every request, the "choker" never unchokes. Each has
        owed the agent data for 2 s, so its pieces count nowhere (the liar
        is also disconnected) and the agent takes every piece from the
        origin; neither is banned (they sent nothing wrong)."""
        sha, meta, _ = self.serve("pkg.bin")
        base = self.baseline("pkg.bin", sha)
        liar = self.hostile(meta, "liar")
        choker = self.hostile(meta, "choker", ip=HOSTILE_IP_2)
        a = self.new_agent("A", [liar.endpoint, choker.endpoint])
        secs, dest, job = self.timed_get(a, "pkg.bin")
        self.assertFileSha(dest, sha)
        for h in (liar, choker):
            s = h.summary()
            say("%s: %s" % (h.mode, s))
            self.assertGreater(s["handshakes"], 0, "the agent never reached the %s: no test" % h.mode)
        self.assertGreater(liar.summary()["requests"], 0, "the agent never asked the liar: no test")
        self.assertBoundedSlowdown("liar + choker", secs, base, job)
        self.assertEqual(job["bytes_from_peers"], 0, job)
        self.assertEqual(job["bytes_from_origin"], SIZE, job)
        self.assertNotIn("banned peer", a.log_text())


class ChokingPeer(HostileTest):
    UNCHOKE_AFTER = 3.5  # seconds: past the 2 s after which a peer that owes us data counts nowhere

    def test_a_peer_that_chokes_us_for_a_while_then_serves_is_kept(self):
        """A static peer advertises every piece and keeps the agent choked
        for 3.5 s after it is interested, as a stock client whose upload
        slots are taken does (aria2: 4 slots, 10 s rounds), then serves
        the real bytes. Its pieces stop counting after 2 s (the origin
        starts), but it is not lying: it stays connected and, once it
        unchokes, gives the agent the file. Before: the agent disconnected
        it after 2 s and again on every reconnect ("timed out: no
        request"), and took the whole file from the origin."""
        sha, meta, content = self.serve("pkg.bin")
        late = self.hostile(meta, "late", content=content, unchoke_after=self.UNCHOKE_AFTER)
        a = self.new_agent("A", [late.endpoint])
        secs, dest, job = self.timed_get(a, "pkg.bin")
        self.assertFileSha(dest, sha)
        s = late.summary()
        say("late unchoker: %s; %.2f s, from peers %.1f MiB, from the origin %.1f MiB"
            % (s, secs, job["bytes_from_peers"] / MiB, job["bytes_from_origin"] / MiB))
        log = a.log_text()
        self.assertNotIn("peer %s has owed us data for 2 s (unchoked" % HOSTILE_IP, log)
        self.assertGreater(s["pieces_sent"], 0, "the choking peer was cut off before it unchoked")
        self.assertGreater(job["bytes_from_peers"], 0, job)
        self.assertIn("peer %s has owed us data for 2 s (kept us choked)" % HOSTILE_IP, log,
                      "the agent never saw the choke last 2 s: no test")


class OriginRequestsOutlived(HostileTest):
    ORIGIN_RATE = "192k"  # per connection: a piece of 1 MiB takes 5.3 s
    UNCHOKE_AFTER = ChokingPeer.UNCHOKE_AFTER
    # 3 or 4 requests stopped after about 1.5 s (384 KiB each): 1.1-1.6 MiB;
    # 3 MiB or more when they run to their end.
    WASTE_BOUND = 2.25 * MiB

    def test_an_origin_request_stops_when_a_peer_gives_its_piece(self):
        """The peer of ChokingPeer, advertising every piece but refusing
        piece 7: once its choke has lasted 2 s the agent asks the origin for
        4 pieces, 3 or 4 of which the peer gives 1.5 s later. Their origin
        requests stop then, while the job still waits for piece 7: what
        nginx sent beyond the bytes the agent used (bytes_from_origin) is a
        fraction of those pieces. Before: each ran to its end (3 MiB or
        more sent for nothing; next to a libtorrent seeder in issue 18 the
        origin link carried 5.6 MiB for 2-3 MiB used)."""
        sha, meta, content = self.serve("pkg.bin")
        late = self.hostile(meta, "late", content=content, unchoke_after=self.UNCHOKE_AFTER,
                            refuse=(meta.num_pieces - 1,))
        a = self.new_agent("A", [late.endpoint])
        secs, dest, job = self.timed_get(a, "pkg.bin")
        self.assertFileSha(dest, sha)
        self.origin.wait_log_complete()
        sent = self.origin.body_bytes_sent("/slow/pkg.bin")
        used = job["bytes_from_origin"]
        say("origin sent %.2f MiB, the agent used %.2f MiB (from peers %.2f MiB) in %.2f s; peer %s"
            % (sent / MiB, used / MiB, job["bytes_from_peers"] / MiB, secs, late.summary()))
        self.assertGreater(late.summary()["pieces_sent"], 0, "the peer gave nothing: no test")
        self.assertGreater(sent, used, "no origin request was in flight for a piece the peer gave: no test")
        self.assertLessEqual(sent - used, self.WASTE_BOUND,
                             "origin requests ran on after a peer gave their pieces")


class SwarmTest(HostileTest):
    SWARM_IPS = ("127.0.0.1", "127.0.0.7", "127.0.0.8")
    SWARM_SIZE = 16 * MiB

    def swarm_get(self, label, name, sha, extra_peers=()):
        """Three agents (SWARM_IPS), each a static peer of the others and of
        extra_peers, `dopt get` /slow/<name> at the same moment: the
        seconds until the last is done, and each one's job."""
        endpoints = ["%s:%d" % (ip, harness.free_port(ip)) for ip in self.SWARM_IPS]
        agents = [self.sb.agent(peering.p2p_toml(ep, [e for e in endpoints if e != ep] +
                                                 list(extra_peers)), name="%s%d" % (label, i))
                  for i, ep in enumerate(endpoints)]
        results = [None] * len(agents)

        def get(i):
            try:
                results[i] = self.timed_get(agents[i], name)
            except Exception as e:  # reported below, on the test's thread
                results[i] = e

        threads = [threading.Thread(target=get, args=(i,)) for i in range(len(agents))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for r in results:
            if isinstance(r, Exception):
                raise r
            self.assertFileSha(r[1], sha)
        return max(r[0] for r in results), [r[2] for r in results]


class LiarInASwarm(SwarmTest):
    def test_a_liar_does_not_hold_back_a_swarm_that_delivers(self):
        """Three agents start together with a liar and a choker among their
        static peers, both advertising every piece. Each agent disconnects
        them once they have owed it data for 2 s, and whenever they come
        back. Before: every piece looked held by a peer, the origin got
        nothing until the whole swarm stalled (4 s without a piece from any
        peer), the agents swapped what that burst brought and stalled
        again, one burst at a time (18.3 s against 4.5 s, this test at
        f0d5543). Disconnecting it only once was not enough: blocks asked
        of it after it reconnected were asked of no other peer (10 s
        against 4 s, a variant never committed)."""
        sha, meta, _ = self.serve("pkg.bin", self.SWARM_SIZE)
        base, _ = self.swarm_get("base", "pkg.bin", sha)
        liar = self.hostile(meta, "liar")
        choker = self.hostile(meta, "choker", ip=HOSTILE_IP_2)
        secs, jobs = self.swarm_get("hostile", "pkg.bin", sha, [liar.endpoint, choker.endpoint])
        say("swarm of 3 with a liar and a choker: last done %.2f s, without them %.2f s: "
            "slowdown %.2fx; from the origin %s MiB"
            % (secs, base, secs / base, [round(j["bytes_from_origin"] / MiB, 1) for j in jobs]))
        self.assertGreater(liar.summary()["requests"], 0, "the agents never asked the liar: no test")
        for a in self.sb.agents[-3:]:
            for ip in (HOSTILE_IP, HOSTILE_IP_2):
                self.assertIn("peer %s has owed us data" % ip, a.log_text(), a.dir)
        self.assertLessEqual(secs, LIAR_SWARM_FACTOR * base + LIAR_SWARM_SLACK,
                             "the liar held the swarm back: %.1f s against %.1f s" % (secs, base))


class ClaimingPeer(HostileTest):
    CLAIM_HOLD = 10.0   # seconds: p2p/claims.h claim_hold_ms (256 KiB pieces)
    SLACK = 5.0         # seconds

    def test_a_peer_that_claims_every_piece_and_fetches_none(self):
        """A static peer that speaks the claims extension, holds nothing
        (have_none) and claims every piece once a second, each time with
        the piece's first claimant id (a refresh) and a new random one. It
        never fetches anything. The agent honours at most
        swarm_origin_requests (8) of its claims at once, and none on a piece
        claimed 10 s without being announced: the file comes from the
        origin within the hold. Before: every piece stayed claimed, the
        agent fetched nothing and the job waited for no_progress_timeout
        (14 days)."""
        sha, meta, _ = self.serve("pkg.bin")
        base = self.baseline("pkg.bin", sha)
        h = self.hostile(meta, "claimer")
        a = self.new_agent("A", [h.endpoint])
        secs, dest, job = self.timed_get(a, "pkg.bin", timeout=base + 60)
        self.assertFileSha(dest, sha)
        s = h.summary()
        say("claimer: %.2f s with it, %.2f s without; %s" % (secs, base, s))
        self.assertGreater(s["claims_sent"], 0, "the claimer never sent a claim: no test")
        self.assertIn("claimed by peers for 10 s without coming", a.log_text())
        self.assertEqual(job["bytes_from_origin"], SIZE, job)
        self.assertLessEqual(secs, base + self.CLAIM_HOLD + self.SLACK,
                             "the claims held the file back: %.1f s against %.1f s" % (secs, base))


class RotatingClaimer(HostileTest):
    ROTATE_EVERY = 3.0  # seconds

    def test_a_claimer_that_takes_new_addresses_holds_pieces_one_hold_at_most(self):
        """The claimer as a static peer, and every 3 s another claimer
        connecting in from a new loopback address (127.0.0.20, .21, ...),
        each with new claimant ids, claiming the same pieces. The hold is
        per piece, whoever claims it: the file comes within one hold of
        the time without them. Before (a penalty per address): each new
        address held the pieces 10 s more, for as long as it rotated."""
        sha, meta, _ = self.serve("pkg.bin")
        base = self.baseline("pkg.bin", sha)
        a = self.new_agent("A", [self.hostile(meta, "claimer").endpoint])
        stop = threading.Event()
        claimers = []

        def rotate():
            for i in range(30):
                if stop.wait(self.ROTATE_EVERY):
                    return
                h = self.hostile(meta, "claimer", ip="127.0.0.%d" % (20 + i))
                h.connect_in((AGENT_IP, a.p2p_port))
                claimers.append(h)

        t = threading.Thread(target=rotate, daemon=True)
        t.start()
        try:
            secs, dest, job = self.timed_get(a, "pkg.bin", timeout=base + 100)
        finally:
            stop.set()
            t.join()
        self.assertFileSha(dest, sha)
        sent = sum(h.summary()["claims_sent"] for h in claimers)
        say("rotating claimer: %.2f s with it, %.2f s without; %d addresses after the first sent "
            "%d claims" % (secs, base, len(claimers), sent))
        self.assertGreater(sent, 0, "no claim came from a second address: no test")
        self.assertLessEqual(secs, base + ClaimingPeer.CLAIM_HOLD + ClaimingPeer.SLACK,
                             "the claims held the file back: %.1f s against %.1f s" % (secs, base))


class ClaimerInASwarm(SwarmTest):
    def test_a_claimer_does_not_hold_back_a_swarm(self):
        """Three agents start together with the claimer among their static
        peers: each hears its claims directly and passed on by the others.
        Each agent ignores the claims on a piece once it has been claimed
        10 s without coming: the last agent is done within the hold of the
        time without it."""
        sha, meta, _ = self.serve("pkg.bin", self.SWARM_SIZE)
        base, _ = self.swarm_get("base", "pkg.bin", sha)
        h = self.hostile(meta, "claimer")
        secs, jobs = self.swarm_get("hostile", "pkg.bin", sha, [h.endpoint])
        say("swarm of 3 with a claimer: last done %.2f s, without it %.2f s; from the origin %s "
            "MiB; %s" % (secs, base, [round(j["bytes_from_origin"] / MiB, 1) for j in jobs],
                         h.summary()))
        self.assertGreater(h.summary()["claims_sent"], 0, "the claimer never sent a claim: no test")
        self.assertLessEqual(secs, base + ClaimingPeer.CLAIM_HOLD + ClaimingPeer.SLACK,
                             "the claims held the swarm back: %.1f s against %.1f s" % (secs, base))


class StallingPeer(HostileTest):
    def test_a_peer_that_handshakes_and_then_says_nothing(self):
        """Handshake, then silence with the socket open (no bitfield, no
        keep-alive): the download is not held up beyond the bound."""
        sha, meta, _ = self.serve("pkg.bin")
        base = self.baseline("pkg.bin", sha)
        h = self.hostile(meta, "staller")
        a = self.new_agent("A", [h.endpoint])
        secs, dest, job = self.timed_get(a, "pkg.bin")
        self.assertFileSha(dest, sha)
        s = h.summary()
        say("staller: %s" % s)
        self.assertGreater(s["handshakes"], 0, "the agent never reached the staller: no test")
        self.assertBoundedSlowdown("staller", secs, base, job)
        self.assertEqual(job["bytes_from_origin"], SIZE, job)


def fd_count(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return -1


class Flooder(HostileTest):
    def test_hundreds_of_inbound_connections_during_a_download(self):
        """While the agent downloads, 127.0.0.4 opens 300 connections at a
        time to its listen port, 4 rounds with the torrent's handshake and 2
        half-open: the file is right, the agent keeps answering its CLI, its
        descriptors stay bounded and come back down afterwards."""
        sha, meta, _ = self.serve("pkg.bin")
        base = self.baseline("pkg.bin", sha)
        a = self.new_agent("A")
        port = a.p2p_port
        fds_before = fd_count(a.proc.pid)
        figures = {"fds_max": fds_before, "cli_max_s": 0.0, "flood": []}
        stop = threading.Event()

        def flood():
            while not stop.is_set() and len(figures["flood"]) < 6:
                ih = meta.info_hash if len(figures["flood"]) % 3 != 2 else None
                figures["flood"].append(hp.flood((AGENT_IP, port), FLOOD_IP, connections=300,
                                                 rounds=1, info_hash=ih, hold=0.4))

        def sample():
            while not stop.is_set():
                figures["fds_max"] = max(figures["fds_max"], fd_count(a.proc.pid))
                t0 = time.monotonic()
                a.dopt("stats", "--json", check=True, timeout=30)
                figures["cli_max_s"] = max(figures["cli_max_s"], time.monotonic() - t0)
                time.sleep(0.1)

        threads = [threading.Thread(target=flood, daemon=True),
                   threading.Thread(target=sample, daemon=True)]
        for t in threads:
            t.start()
        try:
            secs, dest, job = self.timed_get(a, "pkg.bin")
        finally:
            threads[0].join(60)
            stop.set()
            threads[1].join(30)
        self.assertFileSha(dest, sha)
        totals = {k: sum(f[k] for f in figures["flood"]) for k in figures["flood"][0]}
        say("flood: %d rounds of 300: %s; doptd fds %d before, %d at most; slowest "
            "`dopt stats` %.2f s" % (len(figures["flood"]), totals, fds_before,
                                     figures["fds_max"], figures["cli_max_s"]))
        self.assertGreater(totals["connected"], 0, "no flood connection got through: no test")
        self.assertBoundedSlowdown("flood", secs, base, job)
        self.assertTrue(a.running(), "doptd died under the flood")
        self.assertLess(figures["cli_max_s"], 10, "the agent stopped answering under the flood")
        after = wait_for(lambda: (lambda n: n if n <= fds_before + 10 else None)(
            fd_count(a.proc.pid)), 30, what="doptd's descriptors coming back down")
        say("flood: doptd fds %d after" % after)


class NothingOutsideTheCache(HostileTest):
    def _seeding_session(self, a, meta):
        """A PeerClient connected to `a` with the torrent's info-hash, told
        it is interested and unchoked; None when never unchoked."""
        c = hp.PeerClient((AGENT_IP, a.p2p_port), PROBE_IP, meta.info_hash)
        self.assertEqual(c.connect(timeout=5), "handshake")
        c.send(hp.message(hp.INTERESTED))
        if c.read_until({"unchoke"}, 10) is None:
            c.close()
            self.fail("the agent never unchoked the probe (ended: %s; messages %s)"
                      % (c.ended, [m for m, _ in c.messages]))
        return c

    def test_unknown_torrents_and_requests_outside_the_torrent_get_nothing(self):
        """The agent seeds a 2 MiB torrent. A peer naming a torrent the agent
        does not have is disconnected without a byte. On fresh connections
        with the right info-hash: a valid request gets the right bytes (the
        control); a piece index past the end, index 2^32-1, an offset past a
        piece's end, a block past the end of the last piece, a block of
        1 MiB and an offset near 2^32 get no piece message."""
        sha, meta, content = self.serve("pkg.bin", 2 * MiB)
        a = self.new_agent("A")
        self.timed_get(a, "pkg.bin")
        control, got = self.probe_handshake(a, PROBE_IP, meta.info_hash)
        self.assertEqual(control, "handshake", "the agent does not seed pkg.bin: no test")
        for info_hash in (hashlib.sha1(b"not a torrent here").digest(), bytes(20),
                          meta.info_hash[:19] + bytes([meta.info_hash[19] ^ 1])):
            result, got = self.probe_handshake(a, PROBE_IP, info_hash)
            say("unknown info-hash %s: %s, %d bytes" % (info_hash.hex(), result, len(got)))
            self.assertIn(result, ("eof", "reset"))
            self.assertEqual(got, b"")

        c = self._seeding_session(a, meta)
        c.send(hp.request_msg(1, 16384, 16384))
        got = c.read_until({"piece"}, 10)
        c.close()
        self.assertIsNotNone(got, "the control request got no piece: no test")
        off = meta.piece_length + 16384
        self.assertEqual(got[1], struct.pack(">II", 1, 16384) + content[off:off + 16384])
        last = meta.num_pieces - 1
        bad = {"index past the end": (meta.num_pieces, 0, 16384),
               "index 2^32-1": (0xFFFFFFFF, 0, 16384),
               "offset past the piece": (0, meta.piece_length, 16384),
               "block past the last piece": (last, meta.piece_size(last) - 8192, 16384),
               "block of 1 MiB": (0, 0, MiB),
               "offset 2^32-16384": (0, 0xFFFFC000, 16384)}
        for what, (index, begin, length) in bad.items():
            c = self._seeding_session(a, meta)
            c.send(hp.request_msg(index, begin, length))
            n = len(c.messages)
            got = c.read_until({"piece"}, 3)
            say("request %s (%d, %d, %d): %s; the agent sent %s, then %s"
                % (what, index, begin, length, "a piece!" if got else "no piece",
                   [m for m, _ in c.messages[n:]] or "nothing",
                   "closed (%s)" % c.ended if c.ended else "kept the connection open"))
            c.close()
            self.assertIsNone(got, "request %s answered with data" % what)
        self.assertTrue(a.running())

    def test_metainfo_names_that_leave_the_cache_neither_write_nor_read_outside(self):
        """Two hand-made v1 metainfo files beside their content, named
        "../../../outside-dotdot.bin" (from cache_dir/<info-hash>, the
        sandbox itself) and an absolute path in the sandbox. Each target is
        made beforehand with the very content (reading it would give valid
        pieces) and an old mtime. Afterwards: the files delivered are right,
        every byte came from the origin, the targets are unchanged and no
        file appeared outside the places the agent may write."""
        a = self.new_agent("A")
        allowed = [a.cache_dir, os.path.join(a.dir, "out"), a.state_dir, self.www,
                   self.origin.dir]

        def outside_files():
            found = set()
            for root, _, files in os.walk(self.sb.dir):
                if any(root == d or root.startswith(d + os.sep) for d in allowed):
                    continue
                found.update(os.path.join(root, f) for f in files)
            return found - {a.log, a.config, a.socket}

        size = 2 * MiB
        cases = []
        for label, name_for in (("dotdot", lambda t: "../../../" + os.path.basename(t)),
                                ("absolute", lambda t: t)):
            name = "trav-%s.bin" % label
            path = os.path.join(self.www, name)
            sha = harness.make_file(path, size)
            with open(path, "rb") as f:
                content = f.read()
            target = self.sb.path("outside-%s.bin" % label)
            with open(path + ".torrent", "wb") as f:
                f.write(hp.make_v1_metainfo(content, name_for(target)))
            with open(target, "wb") as f:
                f.write(content)
            os.utime(target, (1_000_000_000, 1_000_000_000))
            cases.append((name, name_for(target), sha, target))
        before = outside_files()
        for name, meta_name, sha, target in cases:
            _, dest, job = self.timed_get(a, name)
            self.assertFileSha(dest, sha)
            st = a.status(job["id"])
            say("metainfo name %r: mode %s, metainfo %s, %d bytes from the origin"
                % (meta_name, st["mode"], st["files"][0]["metainfo"], st["bytes_from_origin"]))
            self.assertEqual(st["bytes_from_origin"], size,
                             "the agent took bytes from somewhere but the origin: %s" % st)
            self.assertEqual(harness.sha256_file(target), sha, "%s changed" % target)
            self.assertEqual(os.stat(target).st_mtime, 1_000_000_000, "%s was written" % target)
        in_cache = [os.path.relpath(os.path.join(r, f), a.cache_dir)
                    for r, _, fs in os.walk(a.cache_dir) for f in fs]
        say("cache_dir holds %s" % in_cache)
        self.assertEqual(outside_files() - before, set(), "files appeared outside cache_dir")


if __name__ == "__main__":
    unittest.main()
