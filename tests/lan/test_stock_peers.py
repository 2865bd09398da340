"""dopt agents beside stock BitTorrent clients on one LAN (issue 16 "Discovery
on one LAN, too", issue 18 items 1 and 3), in network namespaces: aria2c and
Debian's libtorrent 2.0.8 (tests/lan/stock_peer.py, run by /usr/bin/python3)
found by LSD alone (no static peers). Needs root, aria2c and
python3-libtorrent; skips otherwise.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import netns  # noqa: E402
import harness  # noqa: E402  (tests/integration, put on sys.path by netns)

MiB = 1024 * 1024
STOCK_PEER = os.path.join(HERE, "stock_peer.py")
STOCK_PORT = 6881


def require_stock_clients():
    if not shutil.which("aria2c"):
        raise unittest.SkipTest("aria2c is not installed (scripts/setup-deps installs it)")
    if subprocess.run(["/usr/bin/python3", "-c", "import libtorrent"], capture_output=True).returncode != 0:
        raise unittest.SkipTest("/usr/bin/python3 has no libtorrent (python3-libtorrent)")


def v1_metainfo(path, url, out_dir):
    """(metainfo with url as web seed, a copy without web seed). v1: Debian
    12's aria2 computes a wrong info-hash for hybrid metainfo (issue 18.6)."""
    torrent, _ = netns.make_metainfo(path, url, tools=("mktorrent", "python"))
    with open(torrent, "rb") as f:
        meta = netns.bencode.decode(f.read())
    meta.pop(b"url-list", None)
    bare = os.path.join(out_dir, os.path.basename(path) + ".no-webseed.torrent")
    with open(bare, "wb") as f:
        f.write(netns.bencode.encode(meta))
    return torrent, bare


def aria2_argv(host, directory, torrent, log, *extra):
    return ["aria2c", "--dir=" + directory, "--enable-dht=false", "--enable-dht6=false",
            "--enable-peer-exchange=false", "--bt-enable-lpd=true", "--bt-lpd-interface=" + host.ifname,
            "--listen-port=%d" % STOCK_PORT, "--disable-ipv6=true", "--file-allocation=none",
            "--summary-interval=0", "--console-log-level=warn", "--log=" + log, "--log-level=info",
            "--stop-with-process=%d" % os.getpid()] + list(extra) + [torrent]


file_text = harness._read_text


class StockPeersTest(unittest.TestCase):
    def setUp(self):
        require_stock_clients()
        self.lan = netns.Lan(hosts=3, origin_rate="10mbit", lan_rate="1gbit")
        self.addCleanup(self._teardown)
        self.lan.start_origin()

    def _teardown(self):
        if harness.test_failed(self):
            sys.stderr.write("\n" + self.lan.report() + "\n")
            self.lan.keep = True
        self.lan.teardown()

    def content(self, name, size):
        path = os.path.join(self.lan.docroot, name)
        sha = harness.make_file(path, size)
        torrent, bare = v1_metainfo(path, self.lan.origin_url(name), self.lan.dir)
        return path, sha, bare

    def seed_dir(self, path, host):
        d = os.path.join(host.dir, "stock")
        os.makedirs(d, exist_ok=True)
        os.link(path, os.path.join(d, os.path.basename(path)))
        return d

    def agent(self, which, **kw):
        """An agent that finds peers by LSD alone (no static peers)."""
        return self.lan.start_agent(which, extra_toml='log_level = "debug"\n', **kw)

    def test_encryption_requiring_aria2_gets_the_file_from_two_agents(self):
        """Issue 18.1: an aria2 leecher with --bt-require-crypto=true takes the
        file from two dopt agents within 60 s (before: 0 bytes, the agents
        refused its encrypted handshakes), and each agent logs the
        handshake aria2 ended once, at info."""
        path, sha, bare = self.content("enc.bin", 2 * MiB)
        agents = [self.agent(1), self.agent(2)]
        for a in agents:
            rc, _, err = a.get(self.lan.origin_url("enc.bin"), os.path.join(a.dir, "enc.bin"))
            self.assertEqual(rc, 0, err)
            a.wait_seeding()
        h3 = self.lan.host(3)
        out_dir = os.path.join(h3.dir, "aria2")
        os.makedirs(out_dir)
        log = os.path.join(h3.dir, "aria2.log")
        t0 = time.time()
        p = self.lan.run(h3, aria2_argv(h3, out_dir, bare, log, "--bt-require-crypto=true", "--seed-time=0"),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            rc = p.wait(60)
        except subprocess.TimeoutExpired:
            self.fail("aria2 (encryption required) did not get the file from two agents in 60 s: %s"
                      % harness.tail(log, 5))
        self.assertEqual(rc, 0, harness.tail(log, 5))
        sys.stderr.write("\n[figure] encryption-requiring aria2 leecher: %.2f s\n" % (time.time() - t0))
        self.assertEqual(harness.sha256_file(os.path.join(out_dir, "enc.bin")), sha)
        # Each agent that connected to aria2 in plaintext saw it end the
        # handshake, and said so once.
        refused = [file_text(a.log).count("10.77.0.13: connection ended in the BitTorrent handshake")
                   for a in agents]
        self.assertTrue(any(refused), "no agent logged the handshake aria2 ended")
        self.assertTrue(all(n <= 1 for n in refused), refused)

    def test_stock_libtorrent_seeder_is_used_at_once(self):
        """Issue 16: a job next to a stock libtorrent seeder found by LSD takes
        its first peer byte soon after the job starts, and the 10 Mbit/s
        origin sends at most 10 % of the 64 MiB file. The exact figures
        are the bench's (bench/stock-seeder)."""
        path, sha, bare = self.content("stock.bin", 64 * MiB)
        a1 = self.agent(1)
        h2 = self.lan.host(2)
        events = os.path.join(h2.dir, "seeder.jsonl")
        self.lan.run(h2, ["/usr/bin/python3", STOCK_PEER, "--seed", "--torrent", bare,
                          "--save", self.seed_dir(path, h2), "--listen", "%s:%d" % (h2.ip, STOCK_PORT),
                          "--events", events], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        harness.wait_for(lambda: '"ready"' in file_text(events), 20, what="the libtorrent seeder")
        origin0 = self.lan.origin_tx_bytes()
        t0 = time.time()
        rc, _, err = a1.get(self.lan.origin_url("stock.bin"), os.path.join(a1.dir, "stock.bin"))
        done = time.time() - t0
        self.assertEqual(rc, 0, err)
        self.assertEqual(harness.sha256_file(os.path.join(a1.dir, "stock.bin")), sha)
        first = [json.loads(line)["t"] for line in file_text(events).splitlines()
                 if '"first_upload"' in line]
        self.assertTrue(first, "the stock seeder sent nothing")
        origin = (self.lan.origin_tx_bytes() - origin0) / (64.0 * MiB)
        sys.stderr.write("\n[figure] stock libtorrent seeder: first peer byte %.2f s, done %.2f s, "
                         "origin %.3f x\n" % (first[0] - t0, done, origin))
        self.assertLess(first[0] - t0, 3.0)
        self.assertLessEqual(origin, 0.10)

    def test_aria2_seeder_that_announced_before_the_job_is_connected_to(self):
        """Issue 18.3: an aria2 seeder announced its torrent on LSD before the
        agent had it (aria2 announces again only after 5 minutes); the
        agent, which heard that announce, connects out to it as soon as the
        job adds the torrent (before: only aria2's own connection, on its
        ~10 s cycle), and takes the file from it."""
        path, sha, bare = self.content("late.bin", 4 * MiB)
        a1 = self.agent(1)
        h2 = self.lan.host(2)
        log = os.path.join(h2.dir, "aria2.log")
        self.lan.run(h2, aria2_argv(h2, self.seed_dir(path, h2), bare, log, "--seed-ratio=0.0",
                                    "--check-integrity=true"),
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        harness.wait_for(lambda: "Sending LPD message is complete" in file_text(log), 30,
                         what="aria2's LSD announce")
        time.sleep(0.5)  # the datagram on its way to the agent's namespace
        t0 = time.time()
        rc, _, err = a1.get(self.lan.origin_url("late.bin"), os.path.join(a1.dir, "late.bin"))
        self.assertEqual(rc, 0, err)
        self.assertEqual(harness.sha256_file(os.path.join(a1.dir, "late.bin")), sha)
        # aria2 logs "From: ADDR:PORT handshake": from the agent's listen
        # port when aria2 connected, from another port when the agent did.
        ports = re.findall(r"From: 10\.77\.0\.11:(\d+) handshake", file_text(log))
        self.assertTrue([p for p in ports if int(p) != netns.P2P_PORT],
                        "the agent never connected to aria2 (handshakes from ports %s)" % ports)
        # All but the piece or two the origin had started on.
        stats = a1.stats()
        self.assertGreaterEqual(stats["bytes_from_peers"], 2 * MiB, stats)
        sys.stderr.write("\n[figure] aria2 seeder announced before the job: done %.2f s\n" % (time.time() - t0))


if __name__ == "__main__":
    unittest.main()
