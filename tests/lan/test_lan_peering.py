"""Acceptance tests of LAN peering (issue 4), in network namespaces this
test makes and tears down (netns.Lan): a real nginx origin, real doptd
agents on one bridge, real downloads. Needs root; skips otherwise.

What each test shows is in its docstring; figures are read from the
origin's access log (bytes it sent to each workstation) and from the job
objects (bytes_from_peers / bytes_from_origin).
"""

import json
import os
import signal
import subprocess
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import netns  # noqa: E402
import harness  # noqa: E402  (tests/integration, put on sys.path by netns)

MiB = 1024 * 1024
SUBNET = "10.77.0.0/24"


def publish(path, url):
    """`dopt publish` the file with its web seed; returns the .torrent path."""
    out = path + ".torrent"
    subprocess.run([harness.dopt_path(), "publish", path, "--web-seed", url, "-o", out],
                   check=True, capture_output=True, text=True, env=netns.child_env())
    return out


class PeeringTest(unittest.TestCase):
    hosts = 3
    origin_rate = None
    lan_rate = None

    def setUp(self):
        self.lan = netns.Lan(hosts=self.hosts, origin_rate=self.origin_rate, lan_rate=self.lan_rate)
        self.addCleanup(self._teardown)

    def _teardown(self):
        failed = harness.test_failed(self)
        if failed:
            for c in self.lan._children:
                log = getattr(c, "log", None)
                if log and os.path.exists(log):
                    print("\n--- %s ---\n%s" % (log, harness.tail(log, 60)), file=sys.stderr)
            self.lan.keep = self.lan.keep or bool(os.environ.get("DOPT_LAN_KEEP_FAILED"))
        self.lan.teardown()

    def content(self, name, size, torrent=True):
        path = os.path.join(self.lan.docroot, name)
        sha = harness.make_file(path, size)
        if torrent:
            publish(path, self.lan.origin_url(name))
        return sha

    def dest(self, agent, name):
        d = os.path.join(agent.dir, "out")
        os.makedirs(d, exist_ok=True)
        return os.path.join(d, name)

    def get(self, agent, name, timeout=240):
        dest = self.dest(agent, name)
        rc, out, err = agent.get(self.lan.origin_url(name), dest, timeout=timeout)
        self.assertEqual(rc, 0, "dopt get failed: %s %s" % (out, err))
        return dest

    def job(self, agent, dest):
        return agent.job_for(dest)

    def job_or_none(self, agent, dest):
        try:
            return agent.job_for(dest)
        except AssertionError:  # not created yet
            return None


class LaterAgentsGetFromPeers(PeeringTest):
    def test_agents_started_afterwards_get_95_percent_from_peers(self):
        """Agent 1 downloads; agents 2 and 3, started afterwards, get at
        least 95% of the bytes from peers, and the origin's log shows it."""
        size = 24 * MiB
        sha = self.content("update.bin", size)
        origin = self.lan.start_origin()
        a1 = self.lan.start_agent(1, peers="all")
        d1 = self.get(a1, "update.bin")
        harness.IntegrationTest.assertFileSha(self, d1, sha)
        j1 = self.job(a1, d1)
        self.assertEqual(j1["mode"], "peer_assisted")
        self.assertEqual(j1["files"][0]["metainfo"], "origin")

        a2 = self.lan.start_agent(2, peers="all")
        a3 = self.lan.start_agent(3, peers="all")
        since = origin.log_offset()
        procs = [(a, a.get_async(self.lan.origin_url("update.bin"), self.dest(a, "update.bin")))
                 for a in (a2, a3)]
        for a, p in procs:
            self.assertEqual(p.wait(timeout=240), 0, p.stderr.read() if p.stderr else "")
        sent = origin.bytes_by_host("/update.bin", since=since)
        for a in (a2, a3):
            d = self.dest(a, "update.bin")
            harness.IntegrationTest.assertFileSha(self, d, sha)
            j = self.job(a, d)
            self.assertGreaterEqual(j["bytes_from_peers"], 0.95 * size, j)
            self.assertLessEqual(sent[a.host.name], 0.05 * size, sent)
        cache = json.loads(a1.dopt("cache", "list", "--json", check=True)[1])
        self.assertEqual(len(cache), 1)
        self.assertTrue(cache[0]["complete"])


class ThreeAtOnce(PeeringTest):
    origin_rate = "200mbit"

    def test_three_agents_starting_together_pull_about_one_copy(self):
        """3 agents starting at once: origin egress <= 1.3 x size; every
        file byte-identical."""
        size = 32 * MiB
        sha = self.content("pack.bin", size)
        self.lan.start_origin()
        agents = [self.lan.start_agent(i, peers="all") for i in (1, 2, 3)]
        before = self.lan.origin_tx_bytes()
        procs = [(a, a.get_async(self.lan.origin_url("pack.bin"), self.dest(a, "pack.bin")))
                 for a in agents]
        for a, p in procs:
            self.assertEqual(p.wait(timeout=240), 0, p.stderr.read() if p.stderr else "")
        egress = self.lan.origin_tx_bytes() - before
        for a in agents:
            harness.IntegrationTest.assertFileSha(self, self.dest(a, "pack.bin"), sha)
        print("\n3 agents at once: origin egress %.3f x size" % (egress / size), file=sys.stderr)
        self.assertLessEqual(egress, 1.3 * size)


class CorruptPeer(PeeringTest):
    hosts = 2

    def test_a_peer_serving_corrupt_data_is_banned_and_the_download_is_correct(self):
        """Agent 1's cached copy is altered on disk; agent 2 detects the bad
        pieces, bans agent 1 and still ends with the right bytes."""
        size = 16 * MiB
        sha = self.content("tool.bin", size)
        origin = self.lan.start_origin()
        a1 = self.lan.start_agent(1, peers="all")
        self.get(a1, "tool.bin")
        a1.stop()
        cached = []
        for root, _, files in os.walk(a1.cache_dir):
            cached += [os.path.join(root, f) for f in files if f == "tool.bin"]
        self.assertEqual(len(cached), 1, cached)
        with open(cached[0], "r+b") as f:
            for off in range(0, size, MiB):  # one byte in every piece
                f.seek(off + 1000)
                b = f.read(1)
                f.seek(off + 1000)
                f.write(bytes([b[0] ^ 0xFF]))
        a1.start()
        a2 = self.lan.start_agent(2, peers="all")
        since = origin.log_offset()
        d2 = self.get(a2, "tool.bin")
        harness.IntegrationTest.assertFileSha(self, d2, sha)
        log = a2.log_text()
        self.assertIn("failed its hash check", log)
        harness.wait_for(lambda: "banned peer" in a2.log_text(), 20, what="agent 2 banning agent 1")
        sent = origin.bytes_by_host("/tool.bin", since=since)
        self.assertGreater(sent["h2"], 0, "the origin gave what the bad peer could not")


class PeerVanishes(PeeringTest):
    hosts = 2
    lan_rate = "40mbit"

    def test_the_only_peer_vanishing_mid_transfer_leaves_the_origin_to_finish(self):
        """Agent 2 fetches from agent 1 (the origin unused while the peer
        delivers); agent 1 is killed with SIGKILL halfway; agent 2 finishes
        from the origin with the right bytes."""
        size = 32 * MiB
        sha = self.content("media.bin", size)
        origin = self.lan.start_origin()
        a1 = self.lan.start_agent(1, peers="all")
        self.get(a1, "media.bin")
        a2 = self.lan.start_agent(2, peers="all")
        since = origin.log_offset()
        dest = self.dest(a2, "media.bin")
        p = a2.get_async(self.lan.origin_url("media.bin"), dest)
        harness.wait_for(lambda: (self.job_or_none(a2, dest) or {}).get("bytes_from_peers", 0) >= 4 * MiB,
                         60, what="agent 2 receiving from agent 1")
        a1.kill9()
        self.assertEqual(p.wait(timeout=240), 0, p.stderr.read() if p.stderr else "")
        harness.IntegrationTest.assertFileSha(self, dest, sha)
        j = self.job(a2, dest)
        self.assertGreater(j["bytes_from_peers"], 0)
        self.assertGreater(j["bytes_from_origin"], 0)
        self.assertGreater(origin.body_bytes_sent("/media.bin", self.lan.host(2), since=since), 0)


class NoMetainfo(PeeringTest):
    hosts = 1

    def test_a_file_without_metainfo_goes_over_http_only_and_says_so(self):
        size = 4 * MiB
        sha = self.content("plain.bin", size, torrent=False)
        origin = self.lan.start_origin()
        a1 = self.lan.start_agent(1)
        d = self.get(a1, "plain.bin")
        harness.IntegrationTest.assertFileSha(self, d, sha)
        j = self.job(a1, d)
        self.assertEqual(j["mode"], "http_only")
        self.assertEqual(j["files"][0]["metainfo"], "none")
        self.assertEqual(j["bytes_from_origin"], size)
        self.assertEqual(j["bytes_from_peers"], 0)
        # The probe for plain.bin.torrent was made, answered 404, and nothing else.
        probes = [e for e in origin.log_entries() if e.path == "/plain.bin.torrent"]
        self.assertEqual([e.status for e in probes], [404])


class NothingLeavesTheLan(PeeringTest):
    hosts = 2

    def test_agents_send_nothing_outside_the_lan(self):
        """Every frame the two agents' namespaces send while they start,
        discover each other and exchange a file goes to the LAN subnet or is
        an LSD announcement: no DHT, UPnP (SSDP), NAT-PMP or tracker
        traffic."""
        size = 8 * MiB
        sha = self.content("x.bin", size)
        self.lan.start_origin()
        out = {}
        sniffers = []
        for i in (1, 2):
            out[i] = os.path.join(self.lan.dir, "sniff-h%d.json" % i)
            p = self.lan.run(i, [sys.executable, os.path.join(HERE, "sniff.py"), netns.IFNAME,
                                 SUBNET, out[i]], stdout=subprocess.PIPE, text=True)
            self.assertEqual(p.stdout.readline().strip(), "ready")
            sniffers.append(p)
        # LSD only, no static peers: discovery must work inside the LAN alone.
        a1 = self.lan.start_agent(1)
        a2 = self.lan.start_agent(2)
        self.get(a1, "x.bin")
        d2 = self.get(a2, "x.bin")
        harness.IntegrationTest.assertFileSha(self, d2, sha)
        self.assertGreater(self.job(a2, d2)["bytes_from_peers"], 0, "LSD found no peer")
        time.sleep(3)
        for p in sniffers:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=10)
        for i in (1, 2):
            with open(out[i]) as f:
                seen = json.load(f)
            self.assertGreater(seen["lan"], 0, seen)
            self.assertGreater(seen["lsd"], 0, seen)
            self.assertEqual(seen["other"], [], "h%d sent outside the LAN: %s" % (i, seen))


if __name__ == "__main__":
    unittest.main()
