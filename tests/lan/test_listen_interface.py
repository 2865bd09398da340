"""`[p2p] listen = "eth0:7881"` (issue 15 item 2), in network namespaces this
test makes and tears down (netns.Lan): the agent listens on the address its
interface has, pauses peering while the interface has none, and follows the
address when it changes (as DHCP would change it), without a restart; a peer
then reaches it at the new address. Needs root; skips otherwise.

    h1 (agent A, listen = "eth0:7881")   10.77.0.11 -> none -> 10.77.0.51
    h2 (agent B, peers = ["10.77.0.51:7881"])
    origin (nginx)                       10.77.0.1

and, in the second test, A listening on h1's lanx0 (a second veth), which
has no address at first, then 10.77.9.1.
"""

import json
import os
import re
import subprocess
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import netns  # noqa: E402
import harness  # noqa: E402  (tests/integration, put on sys.path by netns)

MiB = 1024 * 1024
NEW_IP = "10.77.0.51"


class ListenByInterfaceName(netns.LanTestCase):
    lan_hosts = 2

    def listening(self, host):
        """The TCP listen sockets in `host`'s namespace ("addr:port"; ss
        writes a socket bound to a device as "addr%dev:port")."""
        out = self.lan.check_output(host, ["ss", "-Hltn"], timeout=10)
        return sorted(re.sub(r"%[^:]*:", ":", line.split()[3])
                      for line in out.splitlines() if line.strip())

    def test_the_agent_follows_its_interfaces_new_address_and_a_peer_reaches_it_there(self):
        size = 4 * MiB
        path = os.path.join(self.www, "app.bin")
        sha = harness.make_file(path, size)
        subprocess.run([harness.dopt_path(), "publish", path, "--web-seed",
                        self.lan.origin_url("app.bin"), "-o", path + ".torrent"],
                       check=True, capture_output=True, env=netns.child_env())
        origin = self.lan.start_origin()
        h1 = self.lan.host(1)
        a = self.lan.start_agent(1, '[p2p]\nlisten = "eth0:%d"\n' % netns.P2P_PORT,
                                 lan_discovery=False)
        harness.wait_for(lambda: "peering on %s:%d" % (h1.ip, netns.P2P_PORT) in a.log_text(), 10,
                         what="A listening on eth0's address")
        self.assertEqual(self.listening(h1), ["%s:%d" % (h1.ip, netns.P2P_PORT)])
        dest_a = os.path.join(a.dir, "app.bin")
        rc, _, err = a.get(self.lan.origin_url("app.bin"), dest_a)
        self.assertEqual(rc, 0, err)
        a.wait_seeding()

        # DHCP gives eth0 another address: the old one goes, then the new one comes.
        self.lan.check_output(h1, ["ip", "addr", "del", h1.ip + "/24", "dev", "eth0"])
        harness.wait_for(lambda: "peering paused: interface eth0 has no address" in a.log_text(),
                         10, what="A saying it pauses peering")
        self.lan.check_output(h1, ["ip", "addr", "add", NEW_IP + "/24", "dev", "eth0"])
        new_endpoint = "%s:%d" % (NEW_IP, netns.P2P_PORT)
        harness.wait_for(lambda: "peering on %s (interface eth0)" % new_endpoint in a.log_text(),
                         10, what="A listening on the new address")
        harness.wait_for(lambda: self.listening(h1) == [new_endpoint], 10,
                         what="A's listen socket on %s only (ss: %s)" % (new_endpoint, self.listening(h1)))
        self.assertEqual(len(re.findall("peering paused", a.log_text())), 1)

        b = self.lan.start_agent(2, peers=[new_endpoint], lan_discovery=False)
        since = origin.log_offset()
        dest_b = os.path.join(b.dir, "app.bin")
        rc, _, err = b.get(self.lan.origin_url("app.bin"), dest_b)
        self.assertEqual(rc, 0, err)
        self.assertFileSha(dest_b, sha)
        job = b.job_for(dest_b)
        self.assertGreaterEqual(job["bytes_from_peers"], 0.95 * size, job)
        self.assertLessEqual(origin.body_bytes_sent("/app.bin", since=since), 0.05 * size)
        self.assertTrue(a.running())

    def test_an_interface_without_an_address_pauses_peering_and_jobs_go_over_http(self):
        """Listening on an interface that has no address yet (here a second
        one in h1, a veth whose peer end stays in h1; eth0 keeps its address
        for HTTP): the agent says so
        once, a job goes over HTTP only, and the address, once it comes, is
        listened on."""
        path = os.path.join(self.www, "small.bin")
        sha = harness.make_file(path, 2 * MiB)
        subprocess.run([harness.dopt_path(), "publish", path, "--web-seed",
                        self.lan.origin_url("small.bin"), "-o", path + ".torrent"],
                       check=True, capture_output=True, env=netns.child_env())
        self.lan.start_origin()
        h1 = self.lan.host(1)
        self.lan.check_output(h1, ["ip", "link", "add", "lanx0", "type", "veth", "peer", "name", "lanx1"])
        self.lan.check_output(h1, ["ip", "link", "set", "lanx0", "up"])
        a = self.lan.start_agent(1, '[p2p]\nlisten = "lanx0:%d"\n' % netns.P2P_PORT,
                                 lan_discovery=False)
        self.assertIn("peering paused: interface lanx0 has no address", a.log_text())
        self.assertEqual(self.listening(h1), [])
        dest = os.path.join(a.dir, "small.bin")
        rc, _, err = a.get(self.lan.origin_url("small.bin"), dest)
        self.assertEqual(rc, 0, err)
        self.assertFileSha(dest, sha)
        job = a.job_for(dest)
        self.assertEqual(job["mode"], "http_only", job)
        self.assertIn("peering is paused", json.dumps(job))
        # The pause decides this transfer only: metainfo the job gave stays
        # the file's (it was "none", and its cache entry dropped, for good).
        dest2 = os.path.join(a.dir, "small2.bin")
        rc, _, err = a.get(self.lan.origin_url("small.bin"), dest2, "--metainfo", path + ".torrent")
        self.assertEqual(rc, 0, err)
        self.assertFileSha(dest2, sha)
        self.assertEqual(a.job_for(dest2)["files"][0]["metainfo"], "job")

        self.lan.check_output(h1, ["ip", "addr", "add", "10.77.9.1/24", "dev", "lanx0"])
        harness.wait_for(lambda: "peering on 10.77.9.1:%d (interface lanx0)" % netns.P2P_PORT
                         in a.log_text(), 10, what="A listening on lanx0's new address")
        self.assertEqual(self.listening(h1), ["10.77.9.1:%d" % netns.P2P_PORT])
        self.assertEqual(len(re.findall("peering paused", a.log_text())), 1)


if __name__ == "__main__":
    unittest.main()
