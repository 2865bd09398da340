"""Checks tests/lan/netns.py itself with plain tools (curl, nginx, a Python
multicast pair): reachability of the origin, the origin shaper, LSD
multicast across the bridge, isolation, and a clean teardown. One test also
starts a doptd inside a namespace when DOPT_BUILD_DIR has one.

Needs root; skips otherwise. Run: python3 -m unittest -v test_netns_harness
"""

import os
import socket
import struct
import subprocess
import sys
import time
import unittest

import netns
from netns import MiB, Lan, LanTestCase, make_file, sha256_file

MCAST_RECEIVER = r"""
import socket, struct, sys
group, port, local = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("", port))
s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
             struct.pack("4s4s", socket.inet_aton(group), socket.inet_aton(local)))
print("READY", flush=True)
s.settimeout(15)
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

# Counts the LSD-group datagrams that arrive before a unicast "END" on the
# same port: the sender's multicast went out before its END, so a
# multicast datagram that was going to cross the router would be here first.
MCAST_COUNTER = r"""
import socket, struct, sys
group, port, local = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("", port))
s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
             struct.pack("4s4s", socket.inet_aton(group), socket.inet_aton(local)))
print("READY", flush=True)
s.settimeout(20)
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


class RoutedSubnets(unittest.TestCase):
    """Lan(subnets=2): two bridges joined by a router namespace (one Lan
    for the class: a routed one takes seconds to build on a loaded machine)."""

    @classmethod
    def setUpClass(cls):
        netns.require()
        cls.lan = Lan(hosts=2, subnets=2, origin_rate="100mbit", lan_rate="1gbit")

    @classmethod
    def tearDownClass(cls):
        cls.lan.teardown()

    def test_http_crosses_the_router_and_lsd_multicast_does_not(self):
        lan = self.lan
        self.assertEqual([(h.name, h.ip, h.subnet) for h in lan.hosts],
                         [("h1", "10.77.0.11", 0), ("h2", "10.77.0.12", 0),
                          ("h3", "10.77.1.11", 1), ("h4", "10.77.1.12", 1)])
        make_file(os.path.join(lan.docroot, "f.bin"), 2 * MiB)
        origin = lan.start_origin()
        routed0 = lan.routed_bytes()
        out = os.path.join(lan.dir, "f.h3")
        lan.check_output(3, ["curl", "-sS", "--fail", "-o", out, lan.origin_url("f.bin")])
        self.assertEqual(os.path.getsize(out), 2 * MiB)
        self.assertEqual(origin.bytes_by_client("/f.bin"), {"10.77.1.11": 2 * MiB})
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
        tracker = self.lan.start_tracker(["ab" * 20])
        self.assertEqual(tracker.http_url, "http://10.77.0.2:6969/announce")
        self.assertEqual(self.lan.tracker_host.subnet, 0)

        def announce(host, info_hash):
            """The tracker's answer (bytes: compact peers are binary)."""
            from urllib.parse import quote
            url = ("%s?info_hash=%s&peer_id=-XX0000-%s&port=7881&uploaded=0"
                   "&downloaded=0&left=1&compact=1" % (tracker.http_url,
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
        tracker.stop()


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
