"""Checks tests/lan/netns.py itself with plain tools (curl, nginx, a Python
multicast pair): reachability of the origin, the origin shaper, LSD
multicast across the bridge, isolation, and a clean teardown. One test also
starts a doptd inside a namespace when DOPT_BUILD_DIR has one.

Needs root; skips otherwise. Run: python3 -m unittest -v test_netns_harness
"""

import os
import subprocess
import sys
import time
import unittest

import netns
from netns import MiB, Lan, LanTestCase, make_file, sha256_file

MCAST_RECEIVER = netns.MCAST_MEMBER + r"""
while True:
    data, addr = s.recvfrom(4096)
    if addr[0] != local:           # not our own loopback copy
        print("GOT %s %s" % (addr[0], data.decode()), flush=True)
        break
"""

# The sender relies on the namespace's route for 224.0.0.0/4 (no
# IP_MULTICAST_IF), as a program that does not pick an interface would.
MCAST_SENDER = r"""
import socket, sys, time
group, port, msg = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
for _ in range(int(sys.argv[4])):
    s.sendto(msg.encode(), (group, port))
    time.sleep(0.1)
"""

TCP_SERVER = r"""
import socket, sys
s = socket.create_server((sys.argv[1], int(sys.argv[2])))
print("READY", flush=True)
s.settimeout(15)
c, addr = s.accept()
c.sendall(("hello %s" % addr[0]).encode())
c.close()
"""

TCP_CLIENT = r"""
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
print(c.recv(100).decode())
"""

SIGTERMED_RUN = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
import netns
lan = netns.Lan(hosts=1)
lan.run(1, ["sleep", "600"])
print(" ".join(lan.namespaces), flush=True)
time.sleep(600)
"""


def root_links():
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    return sorted(line.split(":")[1].strip().split("@")[0] for line in out.splitlines())


class HttpAcrossTheLan(LanTestCase):
    lan_hosts = 2

    def test_two_namespaces_fetch_from_the_origin(self):
        sha = make_file(os.path.join(self.www, "f.bin"), 3 * MiB + 17)
        origin = self.lan.start_origin()
        for h in self.lan.hosts:
            dest = os.path.join(h.dir, "f.bin")
            code = self.lan.check_output(h, ["curl", "-sS", "-o", dest, "-w", "%{http_code}",
                                             origin.url("f.bin")])
            self.assertEqual(code, "200")
            self.assertFileSha(dest, sha)
        by_host = origin.bytes_by_host("/f.bin")
        self.assertEqual(by_host, {"h1": 3 * MiB + 17, "h2": 3 * MiB + 17})
        self.assertEqual(origin.body_bytes_sent("/f.bin", client=self.lan.hosts[0]), 3 * MiB + 17)
        # a range request is logged with its Range header
        self.lan.check_output(1, ["curl", "-sS", "-o", "/dev/null", "-r", "0-99",
                                  origin.url("f.bin")])
        last = origin.log_entries()[-1]
        self.assertEqual((last.client, last.status, last.bytes, last.range),
                         ("10.77.0.11", 206, 100, "bytes=0-99"))

    def test_isolated_no_route_out(self):
        for h in [self.lan.origin] + self.lan.hosts:
            routes = self.lan.check_output(h, ["ip", "-4", "route", "show"])
            self.assertNotIn("default", routes, h)
            self.assertIn("224.0.0.0/4 dev eth0", routes, h)
            links = self.lan.check_output(h, ["ip", "-o", "link", "show"])
            self.assertEqual(len(links.strip().splitlines()), 2, links)  # lo, eth0
        # the workstations reach each other (TCP from h1 to h2:7881)
        srv = self.lan.run(2, [sys.executable, "-c", TCP_SERVER, self.lan.hosts[1].ip, "7881"],
                           stdout=subprocess.PIPE, text=True)
        self.assertEqual(srv.stdout.readline().strip(), "READY")
        out = self.lan.check_output(1, [sys.executable, "-c", TCP_CLIENT,
                                        self.lan.hosts[1].ip, "7881"], timeout=20)
        self.assertEqual(out.strip(), "hello 10.77.0.11")
        srv.wait(10)


class OriginShaper(LanTestCase):
    lan_hosts = 1
    origin_rate = "100mbit"
    lan_rate = "1gbit"

    def test_origin_rate_limits_a_download(self):
        size = 16 * MiB
        make_file(os.path.join(self.www, "f.bin"), size)
        origin = self.lan.start_origin()
        before = self.lan.origin_tx_bytes()
        out = self.lan.check_output(1, ["curl", "-sS", "-o", "/dev/null", "-w",
                                        "%{http_code} %{time_total}", origin.url("f.bin")],
                                    timeout=120)
        code, secs = out.split()
        sent = self.lan.origin_tx_bytes() - before
        sys.stderr.write("\n16 MiB at 100mbit: %.2f s, origin egress %d bytes (%.4f x)\n"
                         % (float(secs), sent, sent / size))
        self.assertEqual(code, "200")
        # 16 MiB at 100 Mbit/s is 1.34 s; unshaped it takes ~0.02 s.
        self.assertGreater(float(secs), 0.8, "the origin link is not shaped")
        self.assertGreaterEqual(sent, size)
        self.assertLess(sent, size * 1.1)



class Rates(unittest.TestCase):
    def test_rates_parse(self):
        self.assertEqual(netns.parse_rate("100mbit"), 100e6)
        self.assertEqual(netns.parse_rate("1gbit"), 1e9)
        self.assertEqual(netns.parse_rate("10mbps"), 80e6)
        self.assertEqual(netns.parse_rate("1mibit"), 1024 * 1024)
        with self.assertRaises(ValueError):
            netns.parse_rate("fast")


class Multicast(LanTestCase):
    lan_hosts = 3

    def test_lsd_multicast_crosses_the_bridge(self):
        receivers = []
        for h in self.lan.hosts[1:]:
            p = self.lan.run(h, [sys.executable, "-c", MCAST_RECEIVER, netns.LSD_GROUP,
                                 str(netns.LSD_PORT), h.ip],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            self.assertEqual(p.stdout.readline().strip(), "READY", p.stderr.read()
                             if p.poll() is not None else "")
            receivers.append((h, p))
        msg = "BT-SEARCH * HTTP/1.1 from h1"
        sender = self.lan.run(1, [sys.executable, "-c", MCAST_SENDER, netns.LSD_GROUP,
                                  str(netns.LSD_PORT), msg, "30"])
        for h, p in receivers:
            try:
                out, err = p.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                out, err = p.communicate()
            self.assertEqual(p.returncode, 0, "%s got nothing: %s" % (h.name, err))
            self.assertEqual(out.strip(), "GOT %s %s" % (self.lan.hosts[0].ip, msg))
        sender.wait(30)


class RoutedTeardown(unittest.TestCase):
    def test_teardown_stops_the_tracker_and_removes_router_and_bridges(self):
        netns.require()
        links_before = root_links()
        lan = Lan(hosts=1, subnets=2)
        try:
            tracker = lan.start_tracker()
            names = list(lan.namespaces)
            self.assertEqual(len(names), 6)  # bridges, router, origin, h1, h2, tracker
        finally:
            lan.teardown()
        self.assertIsNotNone(tracker.proc.poll())
        present = netns.list_namespaces()
        self.assertEqual([ns for ns in names if ns in present], [])
        self.assertEqual(root_links(), links_before)


class Teardown(unittest.TestCase):
    def setUp(self):
        netns.require()  # skips without root or `ip netns`

    def test_teardown_leaves_nothing_behind(self):
        links_before = root_links()
        lan = Lan(hosts=2, origin_rate="100mbit", lan_rate="1gbit")
        try:
            names = list(lan.namespaces)
            self.assertEqual(len(names), 4)  # bridge, origin, h1, h2
            present = netns.list_namespaces()
            for ns in names:
                self.assertIn(ns, present)
            lan.start_origin()
            sleeper = lan.run(1, ["sleep", "600"])
            # a process the Lan did not start itself, inside a namespace
            stray = subprocess.Popen(["ip", "netns", "exec", lan.hosts[1].ns, "sleep", "600"],
                                     start_new_session=True)
            time.sleep(0.2)
            self.assertEqual(root_links(), links_before, "a link appeared in the root namespace")
            d = lan.dir
        finally:
            lan.teardown()
        self.assertIsNotNone(sleeper.poll())
        stray.wait(10)
        self.assertIsNotNone(stray.poll(), "a process inside a namespace survived")
        present = netns.list_namespaces()
        for ns in names:
            self.assertNotIn(ns, present)
        self.assertFalse(os.path.exists(d))
        self.assertEqual(root_links(), links_before)
        lan.teardown()  # idempotent
        with self.assertRaises(RuntimeError):
            lan.run(1, ["true"])

    def test_stale_namespaces_of_dead_runs_are_removed(self):
        p = subprocess.Popen(["true"])
        p.wait()
        name = "%s-%d-1-h1" % (netns.PREFIX, p.pid)  # a pid that is gone
        subprocess.run(["ip", "netns", "add", name], check=True)
        try:
            self.assertIn(name, netns.cleanup_stale())
            self.assertNotIn(name, netns.list_namespaces())
        finally:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)

    def test_sigterm_tears_down(self):
        p = subprocess.Popen([sys.executable, "-c", SIGTERMED_RUN, netns.HERE],
                             stdout=subprocess.PIPE, text=True, start_new_session=True)
        try:
            names = p.stdout.readline().split()
            self.assertEqual(len(names), 3, names)
            for ns in names:
                self.assertIn(ns, netns.list_namespaces())
            p.terminate()
            self.assertEqual(p.wait(30), 128 + 15)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        present = netns.list_namespaces()
        for ns in names:
            self.assertNotIn(ns, present)

    def test_context_manager_tears_down_on_error(self):
        with self.assertRaises(ZeroDivisionError):
            with Lan(hosts=1) as lan:
                names = list(lan.namespaces)
                1 / 0
        present = netns.list_namespaces()
        for ns in names:
            self.assertNotIn(ns, present)


class AgentInNamespace(LanTestCase):
    """doptd runs inside a workstation namespace with the [p2p] config of
    the LAN (an agent without peering ignores it or warns) and fetches from
    the origin there."""
    lan_hosts = 2

    def setUp(self):
        bd = os.environ.get("DOPT_BUILD_DIR")
        if not bd or not os.access(os.path.join(bd, "agent", "doptd"), os.X_OK):
            self.skipTest("no doptd in $DOPT_BUILD_DIR")
        super().setUp()

    def test_agent_gets_a_file_from_inside_its_namespace(self):
        sha = make_file(os.path.join(self.www, "a.bin"), 4 * MiB)
        origin = self.lan.start_origin()
        agent = self.lan.start_agent(1, peers="all")
        with open(agent.config) as f:
            conf = f.read()
        self.assertIn('listen = "10.77.0.11:7881"', conf)
        self.assertIn('peers = ["10.77.0.12:7881"]', conf)
        ident = subprocess.run(["ip", "netns", "identify", str(agent.proc.pid)],
                               capture_output=True, text=True).stdout.strip()
        self.assertEqual(ident, self.lan.hosts[0].ns)
        dest = os.path.join(self.lan.hosts[0].dir, "a.bin")
        rc, out, err = agent.get(origin.url("a.bin"), dest, timeout=120)
        self.assertEqual(rc, 0, err)
        self.assertFileSha(dest, sha)
        self.assertGreaterEqual(origin.bytes_by_host("/a.bin")["h1"], 4 * MiB)
        self.assertEqual(origin.bytes_by_host("/a.bin")["h2"], 0)


if __name__ == "__main__":
    unittest.main()
