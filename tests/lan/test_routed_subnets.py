"""Agents on routed subnets (issue 16), in network namespaces this test
makes and tears down (netns.Lan(subnets=2)): LSD stops at the router, so
agents of two subnets meet only through the `[p2p] trackers` they are
given, a real opentracker in subnet 0. Needs root; skips otherwise.

    subnet 0: origin 10.77.0.1, tracker 10.77.0.2, h1 10.77.0.11, h2 10.77.0.12
    subnet 1: h3 10.77.1.11, h4 10.77.1.12          (router 10.77.k.254)

One Lan for the file (a routed one takes seconds to build); each test
starts and stops its own agents, each with its own file. Figures come from
the origin's access log (bytes sent to each workstation) and the jobs.
"""

import os
import socket
import struct
import subprocess
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import netns  # noqa: E402
import harness  # noqa: E402  (tests/integration, put on sys.path by netns)

MiB = 1024 * 1024
SIZE = 32 * MiB

# Counts the LSD-group datagrams that arrive before a unicast "END" on the
# same port: the sender's multicast went out before its END, so a
# multicast datagram that was going to cross the router would be here first.
MCAST_COUNTER = netns.MCAST_MEMBER + r"""
n = 0
while True:
    data, addr = s.recvfrom(4096)
    if data == b"END":
        break
    n += 1
print("MULTICAST %d" % n, flush=True)
"""

# Sends `count` LSD-group datagrams, then "END" to each address given.
MCAST_THEN_END = r"""
import socket, sys, time
group, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
for _ in range(count):
    s.sendto(b"BT-SEARCH", (group, port))
    time.sleep(0.02)
time.sleep(0.2)
for addr in sys.argv[4:]:
    s.sendto(b"END", (addr, port))
"""

def trackers_toml(*urls):
    return "[p2p]\ntrackers = [%s]\n" % ", ".join('"%s"' % u for u in urls)


class RoutedSubnets(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        netns.require()
        if not os.access(netns.OPENTRACKER, os.X_OK):
            raise unittest.SkipTest("no %s (scripts/setup-deps installs opentracker)"
                                    % netns.OPENTRACKER)
        cls.lan = netns.Lan(hosts=2, subnets=2, origin_rate="200mbit")
        try:
            cls.origin = cls.lan.start_origin()
            cls.tracker = cls.lan.start_tracker()
        except BaseException:
            cls.lan.teardown()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.lan.teardown()

    def setUp(self):
        self.agents = []
        self.addCleanup(self._stop_agents)

    def _stop_agents(self):
        if harness.test_failed(self):
            self.lan.keep = True
            sys.stderr.write("\n" + self.lan.report() + "\n")
        for a in self.agents:
            a.stop()
        self.lan._children = [c for c in self.lan._children if c not in self.agents]

    def content(self, name):
        """A new file of SIZE bytes at the origin with its metainfo beside
        it, whitelisted at the tracker; returns its sha256."""
        path = os.path.join(self.lan.docroot, name)
        sha = harness.make_file(path, SIZE)
        torrent, _ = netns.make_metainfo(path, self.lan.origin_url(name), tools=("dopt",))
        self.tracker.allow(*netns.metainfo_info_hashes(torrent))
        return sha

    def agent(self, host, extra_toml="", name="agent"):
        a = self.lan.start_agent(host, extra_toml, name="%s-%s" % (name, self._testMethodName[:20]))
        self.agents.append(a)
        return a

    def get(self, agent, name):
        """`dopt get` of the origin's file into the agent's dir; returns
        (its job, the bytes the origin's log shows for this host)."""
        since = self.origin.log_offset()
        dest = os.path.join(agent.dir, name)
        rc, out, err = agent.get(self.lan.origin_url(name), dest, timeout=120)
        self.assertEqual(rc, 0, "dopt get on %s: %s %s" % (agent.host.name, out, err))
        return agent.job_for(dest), self.origin.body_bytes_sent("/" + name, agent.host, since)

    def test_http_crosses_the_router_and_lsd_multicast_does_not(self):
        """The harness itself: curl from subnet 1 reaches the origin through
        the router; LSD-group datagrams from h1 reach h2 and not h3 or h4."""
        lan = self.lan
        self.assertEqual([(h.name, h.ip, h.subnet) for h in lan.hosts],
                         [("h1", "10.77.0.11", 0), ("h2", "10.77.0.12", 0),
                          ("h3", "10.77.1.11", 1), ("h4", "10.77.1.12", 1)])
        harness.make_file(os.path.join(lan.docroot, "f.bin"), 2 * MiB)
        since = self.origin.log_offset()
        routed0 = lan.routed_bytes()
        out = os.path.join(lan.dir, "f.h3")
        lan.check_output(3, ["curl", "-sS", "--fail", "-o", out, lan.origin_url("f.bin")])
        self.assertEqual(os.path.getsize(out), 2 * MiB)
        self.assertEqual(self.origin.bytes_by_client("/f.bin", since), {"10.77.1.11": 2 * MiB})
        self.assertGreater(lan.routed_bytes()[1] - routed0[1], 2 * MiB,
                           "the file did not cross the router into subnet 1")
        self.assertEqual(lan.call(1, ["ip", "route", "get", "192.0.2.1"]).returncode, 2,
                         "a route out of 10.77.0.0/16")

        counters = {}
        for h in lan.hosts[1:]:
            p = lan.run(h, [sys.executable, "-c", MCAST_COUNTER, netns.LSD_GROUP,
                            str(netns.LSD_PORT), h.ip],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            self.assertEqual(p.stdout.readline().strip(), "READY")
            counters[h.name] = p
        lan.run(1, [sys.executable, "-c", MCAST_THEN_END, netns.LSD_GROUP, str(netns.LSD_PORT),
                    "20"] + [h.ip for h in lan.hosts[1:]])
        got = {name: p.communicate(timeout=30)[0].strip() for name, p in counters.items()}
        self.assertEqual(got, {"h2": "MULTICAST 20", "h3": "MULTICAST 0", "h4": "MULTICAST 0"})

    def test_opentracker_answers_every_subnet_for_whitelisted_hashes_only(self):
        """The harness's tracker: it tells a host of subnet 1 of one in
        subnet 0, for a whitelisted info-hash only."""
        tracker = self.tracker.allow("ab" * 20)
        self.assertEqual(tracker.http_url(), "http://10.77.0.2:6969/announce")
        self.assertEqual(self.lan.tracker_host.subnet, 0)

        def announce(host, info_hash):
            """The tracker's answer (bytes: compact peers are binary)."""
            from urllib.parse import quote
            url = ("%s?info_hash=%s&peer_id=-XX0000-%s&port=7881&uploaded=0"
                   "&downloaded=0&left=1&compact=1" % (tracker.http_url(),
                                                       quote(bytes.fromhex(info_hash)),
                                                       host.name.ljust(12, "x")))
            return subprocess.run(["ip", "netns", "exec", host.ns, "curl", "-sS", "--max-time",
                                   "5", url], capture_output=True, check=True).stdout

        h1, h3 = self.lan.host(1), self.lan.host(3)
        self.assertIn(b"peers", announce(h1, "ab" * 20))
        self.assertIn(socket.inet_aton(h1.ip) + struct.pack(">H", 7881), announce(h3, "ab" * 20))
        self.assertIn(b"not authorized", announce(h3, "cd" * 20))
        tracker.allow("cd" * 20)
        self.assertIn(b"peers", announce(h3, "cd" * 20))

    def test_a_tracker_joins_subnets_that_lsd_alone_does_not(self):
        """h1 (subnet 0) fetches and seeds; h3 (subnet 1, LSD on, the
        tracker) then takes >= 95 % from peers. Control: h4 (subnet 1, LSD
        on, no tracker, h3 stopped) takes everything from the origin: LSD
        does not cross the router."""
        sha = self.content("floor.bin")
        tracked = trackers_toml(self.tracker.http_url())
        a1 = self.agent(1, tracked)
        j1, _ = self.get(a1, "floor.bin")
        self.assertEqual(j1["files"][0]["metainfo"], "origin")
        a1.wait_seeding()

        a3 = self.agent(3, tracked)
        j3, origin_to_h3 = self.get(a3, "floor.bin")
        harness.IntegrationTest.assertFileSha(self, os.path.join(a3.dir, "floor.bin"), sha)
        self.assertGreaterEqual(j3["bytes_from_peers"], 0.95 * SIZE, j3)
        self.assertLessEqual(origin_to_h3, 0.05 * SIZE)
        a3.stop()

        a4 = self.agent(4)
        j4, origin_to_h4 = self.get(a4, "floor.bin")
        harness.IntegrationTest.assertFileSha(self, os.path.join(a4.dir, "floor.bin"), sha)
        self.assertEqual(j4["bytes_from_peers"], 0, j4)
        self.assertGreaterEqual(origin_to_h4, SIZE)

    def test_a_tracker_that_is_down_or_answers_garbage_costs_only_its_peers(self):
        """Every agent lists a tracker nobody listens on and one that
        answers garbage: h3 fetches from the origin, h4 (same subnet) then
        takes >= 95 % from h3 through LSD, and both files are right."""
        sha = self.content("down.bin")
        # The origin's nginx serves garbage as a "tracker": a 200 whose body
        # is no bencoding, whatever the query.
        # (at /announce: the log shows any other path as [redacted], where a
        # passkey may be)
        with open(os.path.join(self.lan.docroot, "announce"), "wb") as f:
            f.write(b"\x00garbage, not bencoding\xff" * 10)
        down = "http://%s:%d/announce" % (netns.TRACKER_IP, netns.TRACKER_PORT + 2)
        garbage = self.lan.origin_url("announce")
        broken = trackers_toml(down, garbage)
        a3 = self.agent(3, broken)
        self.get(a3, "down.bin")
        a3.wait_seeding()
        for url in (down, garbage):
            harness.wait_for(lambda: "tracker %s: announce failed" % url in a3.log_text(), 30,
                             what="h3 saying that %s failed" % url)
        a4 = self.agent(4, broken)
        j4, origin_to_h4 = self.get(a4, "down.bin")
        for a in (a3, a4):
            harness.IntegrationTest.assertFileSha(self, os.path.join(a.dir, "down.bin"), sha)
        self.assertGreaterEqual(j4["bytes_from_peers"], 0.95 * SIZE, j4)
        self.assertLessEqual(origin_to_h4, 0.05 * SIZE)

    def test_a_piece_crosses_into_a_subnet_about_once(self):
        """h1..h4 (two subnets of two, LSD and the tracker) fetch a new file
        at once from the origin (200 Mbit/s: new pieces come slower than
        the LAN moves them). Each piece must cross the router into the
        subnet whose agents did not fetch it from the origin once; with
        every agent taking it from whichever peer has it, both agents of
        the other subnet fetched it across (about 2 x the file crossed
        through peers, 1 x here: only one agent a subnet, its gateway,
        takes pieces from peers outside). Measured 1.02-1.74 x with the
        preference (12 runs, median 1.12; a few runs near 1.5-1.7, not yet
        explained), 1.95-2.26 x without (4 runs; about 2 x by the
        arithmetic above). The bound, 1.85 x, sits between the two, so
        the better of two files is checked (each a fresh torrent on the
        same agents): one run in the tail does not fail the test, while
        without the preference both files stay near 2 x."""
        tracked = trackers_toml(self.tracker.http_url())
        agents = [self.agent(h, tracked) for h in (1, 2, 3, 4)]
        ratios = []
        for name in ("once-1.bin", "once-2.bin"):
            ratios.append(self.fetch_at_once_and_count_routed(agents, name))
            if ratios[-1] <= 1.85:
                break
        self.assertLessEqual(min(ratios), 1.85, ratios)

    def fetch_at_once_and_count_routed(self, agents, name):
        """Every agent fetches the new file `name` at once; checks the
        bytes and the origin's egress, returns what crossed the router
        through peers over the file's size."""
        sha = self.content(name)
        since = self.origin.log_offset()
        routed0 = sum(self.lan.routed_bytes().values())
        gets = [(a, a.get_async(self.lan.origin_url(name), os.path.join(a.dir, name)))
                for a in agents]
        for a, p in gets:
            _, err = p.communicate(timeout=120)
            self.assertEqual(p.returncode, 0, "dopt get on %s: %s" % (a.host.name, err))
            harness.IntegrationTest.assertFileSha(self, os.path.join(a.dir, name), sha)
        routed = sum(self.lan.routed_bytes().values()) - routed0
        by_host = self.origin.bytes_by_host("/" + name, since)
        origin_routed = sum(by_host[h.name] for h in self.lan.hosts if h.subnet != 0)
        peers_routed = routed - origin_routed
        sys.stderr.write("\n%s: origin sent %.2f x the file (%s); %.2f x crossed the router, "
                         "%.2f x through peers\n" % (name, sum(by_host.values()) / SIZE, by_host,
                                                      routed / SIZE, peers_routed / SIZE))
        self.assertLessEqual(sum(by_host.values()), 1.1 * SIZE)
        return peers_routed / SIZE

if __name__ == "__main__":
    unittest.main()
