"""Peers found through a tracker (`[p2p] trackers`, docs/config.md), on
loopback: real doptd agents on 127.0.0.1 and 127.0.0.2 with LSD off and no
static peers, a real opentracker on 127.0.0.1 (harness.Opentracker; Debian
builds it whitelist-only, so each test lists the info-hashes it expects),
a real nginx origin. Needs no root.

Figures (the job objects' bytes_from_peers / bytes_from_origin, body bytes
in the origin's access log after a mark) are printed on stderr.
"""

import hashlib
import http.server
import json
import os
import re
import signal
import threading
import unittest

import bencode
import harness
from harness import MiB, free_port, wait_for
from test_peering import A_IP, B_IP, PeeringTest, say


def tracker_toml(listen, trackers, extra=""):
    """[p2p] with LSD off, no static peers: only the trackers find peers."""
    return ('[p2p]\nenabled = true\nlisten = "%s"\nlan_discovery = false\npeers = []\n'
            'trackers = [%s]\n' % (listen, ", ".join('"%s"' % t for t in trackers))) + extra


def rendezvous_hash(sha256):
    """The info-hash of the rendezvous torrent of content SHA-256 X
    (p2p/content.cpp rendezvous_info_hash)."""
    return hashlib.sha1(b"dopt-rendezvous-v1:" + bytes.fromhex(sha256)).hexdigest()


def announced_hashes(torrent_path):
    """The info-hashes libtorrent announces for a metainfo file: v1, and
    for a hybrid one the v2 hash truncated to 20 bytes too."""
    with open(torrent_path, "rb") as f:
        data = f.read()
    start, end = bencode.info_span(data)
    info = data[start:end]
    hashes = [hashlib.sha1(info).hexdigest()]
    if b"12:meta versioni2e" in info:
        hashes.append(hashlib.sha256(info).hexdigest()[:40])
    return hashes


class TrackerTest(PeeringTest):
    def agents(self, trackers, start_b=True, extra=""):
        """A (127.0.0.1) and B (127.0.0.2) announcing to `trackers`."""
        a = self.sb.agent(tracker_toml("%s:%d" % (A_IP, free_port(A_IP)), trackers, extra), name="A")
        b = self.sb.agent(tracker_toml("%s:%d" % (B_IP, free_port(B_IP)), trackers, extra), name="B",
                          start=start_b)
        return a, b


class PeersThroughTracker(TrackerTest):
    SIZE = 24 * MiB

    def _second_agent_takes_from_the_first(self, tracker_url):
        """A fetches app.bin (metainfo at the origin) and seeds it; B asks
        for it through the slow path (1 MB/s) and finds A only through the
        tracker: every piece of B's comes from A."""
        self.origin = self.sb.nginx(self.www, slow_rate="1m")
        sha = self.serve("app.bin", self.SIZE)
        ih = self.hashes["app.bin"]
        tracker = self.sb.opentracker(announced_hashes(os.path.join(self.www, "app.bin.torrent")))
        a, b = self.agents([tracker_url(tracker)])
        da, _ = self.get(a, self.url("app.bin"), "app.bin")
        self.assertFileSha(da, sha)
        self.wait_seeding(a, ih)
        mark = self.mark()
        db, jb = self.get(b, self.url("slow/app.bin"), "app.bin")
        self.assertFileSha(db, sha)
        # 96 %: no piece from the origin at all (one is 1 MiB of 24: 95.8 %).
        # A young swarm waits for its tracker's first answer and the
        # handshake of the peers it names; without that wait B took a piece
        # from the origin before A was known (2 under load).
        self.assertFromPeers(jb, self.SIZE, mark, "/slow/app.bin", "through the tracker", b, share=0.96)
        self.assertIn(ih, tracker.top_hashes())
        # B knows A from the tracker, A knows B as an incoming peer: in
        # `dopt stats --json` and in the metrics.
        stats = lambda agent: json.loads(agent.dopt("stats", "--json", check=True)[1])
        wait_for(lambda: stats(b)["peers_by_source"]["tracker"] >= 1, 10,
                 what="B's peers by source: %s" % stats(b))
        wait_for(lambda: stats(a)["peers_by_source"]["incoming"] >= 1, 10,
                 what="A's peers by source: %s" % stats(a))
        say("peers by source: A %s, B %s" % (stats(a)["peers_by_source"], stats(b)["peers_by_source"]))
        _, samples = harness.parse_prometheus(b.dopt("stats", "--prometheus", check=True)[1])
        self.assertGreaterEqual(samples[("dopt_connected_peers_by_source", (("source", "tracker"),))], 1)
        self.assertEqual(samples[("dopt_connected_peers_by_source", (("source", "lsd"),))], 0)

    def test_http_tracker(self):
        self._second_agent_takes_from_the_first(lambda t: t.http_url())

    def test_udp_tracker(self):
        self._second_agent_takes_from_the_first(lambda t: t.udp_url())

    def test_content_without_metainfo_is_found_through_the_tracker(self):
        """No metainfo at the origin: A fetches with --sha256 and seeds the
        content; B, with the same SHA-256, meets A on the rendezvous torrent,
        which only the tracker names to it, and takes >= 95% from A."""
        self.start_origin()
        sha = self.serve("nometa.bin", self.SIZE, torrent=False)
        tracker = self.sb.opentracker([rendezvous_hash(sha)])
        a, b = self.agents([tracker.http_url()])
        url = self.url("nometa.bin")
        self.get(a, url, "nometa.bin", "--sha256", sha)
        entry = wait_for(lambda: next((e for e in self.cache(a) if e["name"] == sha), None), 20,
                         what="A's cache entry named %s" % sha)
        self.wait_seeding(a, entry["info_hash"])
        mark = self.mark()
        db, jb = self.get(b, url, "nometa.bin", "--sha256", sha)
        self.assertFileSha(db, sha)
        self.assertEqual(jb["files"][0]["metainfo"], "peers", jb)
        self.assertFromPeers(jb, self.SIZE, mark, "/nometa.bin", "by SHA-256 through the tracker", b)


def group_hash(group, v1_info_hash):
    """What an agent of `group` announces for a torrent (p2p::group_info_hash)."""
    return hashlib.sha1(b"dopt-group-v1:" + group.encode() + bytes.fromhex(v1_info_hash)).hexdigest()


class GroupsOnOneTracker(TrackerTest):
    SIZE = 24 * MiB

    def test_two_groups_on_one_tracker_stay_apart(self):
        """A and C in group "alpha", B in group "beta", one tracker. A
        seeds app.bin; C (from a slow origin) connects to A and takes most
        of it from A; B takes 0 bytes from peers and is the only agent on
        its group's hash. The tracker holds the two groups' derived
        hashes, never the torrent's own."""
        self.origin = self.sb.nginx(self.www, slow_rate="256k")
        sha = self.serve("app.bin", self.SIZE)
        ih = self.hashes["app.bin"]
        alpha, beta = group_hash("alpha", ih), group_hash("beta", ih)
        tracker = self.sb.opentracker([alpha, beta] + announced_hashes(os.path.join(self.www, "app.bin.torrent")))
        trackers = [tracker.http_url()]
        a = self.sb.agent(tracker_toml("%s:%d" % (A_IP, free_port(A_IP)), trackers, 'group = "alpha"\n'),
                          name="A")
        self.get(a, self.url("app.bin"), "app.bin")
        self.wait_seeding(a, ih)
        c = self.sb.agent(tracker_toml("127.0.0.3:%d" % free_port("127.0.0.3"), trackers, 'group = "alpha"\n'),
                          name="C")
        mark = self.mark()
        dc, jc = self.get(c, self.url("slow/app.bin"), "app.bin")
        self.assertFileSha(dc, sha)
        # C meets A later than without a group (its announcer connects
        # first, then C's torrent): with a fast origin C takes many pieces
        # from it meanwhile (measured: 0-75% of the file), hence 256 KB/s.
        say("C in A's group: bytes_from_peers %d, bytes_from_origin %d"
            % (jc["bytes_from_peers"], jc["bytes_from_origin"]))
        self.assertGreaterEqual(jc["bytes_from_peers"], 0.5 * self.SIZE, jc)

        b = self.sb.agent(tracker_toml("%s:%d" % (B_IP, free_port(B_IP)), trackers, 'group = "beta"\n'),
                          name="B")
        job = b.add(self.url("app.bin"), "-o", self.dest_of(b, "app.bin"))
        wait_for(lambda: beta in tracker.top_hashes(), 15, what="B announcing its group's hash")
        b.wait_state(job, ("transferred", "acknowledged"), timeout=60)
        jb = b.status(job)
        say("B in another group: bytes_from_peers %d, bytes_from_origin %d"
            % (jb["bytes_from_peers"], jb["bytes_from_origin"]))
        self.assertEqual(jb["bytes_from_peers"], 0, jb)
        hashes = tracker.top_hashes()
        self.assertEqual(hashes.get(alpha), 2, hashes)
        self.assertEqual(hashes.get(beta), 1, hashes)
        self.assertNotIn(ih, hashes)


class TrackersOnSighup(TrackerTest):
    def test_sighup_announces_what_the_agent_seeds_to_a_tracker_added_to_the_list(self):
        """A seeds app.bin with no tracker; its config gains one and a
        SIGHUP: the tracker hears of A's torrent (its stats list the
        info-hash), without a restart."""
        self.start_origin()
        self.serve("app.bin", 2 * MiB)
        ih = self.hashes["app.bin"]
        tracker = self.sb.opentracker(announced_hashes(os.path.join(self.www, "app.bin.torrent")))
        a = self.sb.agent(tracker_toml("%s:%d" % (A_IP, free_port(A_IP)), []), name="A")
        self.get(a, self.url("app.bin"), "app.bin")
        self.wait_seeding(a, ih)
        self.assertNotIn(ih, tracker.top_hashes())
        with open(a.config) as f:
            text = f.read()
        with open(a.config, "w") as f:
            f.write(text.replace("trackers = []", 'trackers = ["%s"]' % tracker.udp_url()))
        a.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: ih in tracker.top_hashes(), 15, what="A's torrent announced after SIGHUP")
        self.assertIn("1 trackers", a.log_text())


class GarbageTracker:
    """An HTTP server on 127.0.0.1 that answers every request with 200 and
    a body that is not bencoding; counts the requests."""

    def __init__(self):
        owner = self
        self.requests = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                owner.requests += 1
                body = b"<html>not a tracker</html>"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self):
        return "http://127.0.0.1:%d/announce" % self.server.server_address[1]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class TrackerTrouble(TrackerTest):
    SIZE = 4 * MiB

    def test_a_tracker_down_or_answering_garbage_costs_only_peers(self):
        """Two trackers, one where nothing listens and one answering HTML:
        the job finishes from the origin, the agent warns once per tracker
        (not at each announce: the garbage one hears at least "started" and
        "completed") and stays up."""
        self.start_origin()
        sha = self.serve("lonely.bin", self.SIZE)
        garbage = GarbageTracker()
        self.sb.children.append(garbage)
        down = "http://127.0.0.1:%d/announce" % free_port()
        a = self.sb.agent(tracker_toml("%s:%d" % (A_IP, free_port(A_IP)), [down, garbage.url()]),
                          name="A")
        da, ja = self.get(a, self.url("lonely.bin"), "lonely.bin")
        self.assertFileSha(da, sha)
        self.assertEqual(ja["bytes_from_origin"], self.SIZE, ja)
        wait_for(lambda: garbage.requests >= 2, 30, what="a second announce to the garbage tracker")
        for url in (down, garbage.url()):
            warned = lambda: len(re.findall(r"tracker %s: announce failed" % re.escape(url),
                                            a.log_text()))
            wait_for(warned, 20, what="a warning about %s" % url)
            self.assertEqual(warned(), 1, a.log_text())
        self.assertTrue(a.running())
        a.dopt("list", check=True)


if __name__ == "__main__":
    unittest.main()
