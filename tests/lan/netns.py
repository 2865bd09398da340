"""A LAN in network namespaces, for tests and benchmarks of peering.

One `Lan` is: a bridge namespace holding a Linux bridge (multicast snooping
off, so LSD multicast reaches every port), an "origin" namespace at
10.77.0.1 and N workstation namespaces at 10.77.0.11, .12, ..., each joined
to the bridge by a veth pair (the namespace's end is called `eth0`). No link
is ever made in the root namespace and no namespace has a route out: nothing
can leave the machine, and 10.77.0.0/24 here clashes with nothing else (a
second Lan, in this process or another, has its own bridge).

Shaping (tc htb on each egress, an optional netem delay under it):
  origin_rate  the origin's upload (egress of its eth0): U in the benchmarks
  lan_rate     each workstation's upload (its eth0) and download (the
               bridge's port towards it): C
  router_rate  routed subnets: each subnet's link to the router, both ways
               (the router's veth into the bridge, and the bridge's port
               towards it); default lan_rate
  delay        added to the egress of every namespace's eth0 (origin and
               workstations), so a round trip between two of them is 2x delay

Processes run inside a namespace through `ip netns exec NAME ...` (which
execs, so a Popen's pid is the program's own). Everything this module starts
is stopped by Lan.teardown(): called by a `with` block, a test's tearDown,
atexit, and on SIGTERM/SIGHUP (turned into SystemExit when nobody else
handles them). A child is also given PR_SET_PDEATHSIG, so a SIGKILLed Python
takes its children along; the namespaces of a run killed that way are
removed by the next Lan (`cleanup_stale()`: namespaces named dlan-<pid>-...
whose pid is gone), or by `python3 tests/lan/netns.py --cleanup`.

Routed subnets (Lan(subnets=K, hosts=M)): K bridges, one per subnet
10.77.k.0/24, in the bridge namespace, joined by a router namespace (a veth
into each bridge at 10.77.k.254, ip_forward on, no multicast routing: LSD
stays in its subnet), M workstations per subnet (10.77.k.11, .12, ...; all
named h1..hKM in subnet order), the origin in subnet 0, and, when started,
`opentracker` in a namespace of its own at 10.77.0.2 (Lan.start_tracker).
Every namespace has a route to 10.77.0.0/16 through its subnet's router
address, and still none out.

Needs root, iproute2 (`ip`, `tc`), for the origin /usr/sbin/nginx, and for
a tracker /usr/bin/opentracker.
Without root or `ip netns`, Lan() raises unittest.SkipTest with the reason.

Typical use (see README.md):

    with Lan(hosts=3, origin_rate="100mbit", lan_rate="1gbit") as lan:
        www = lan.docroot
        sha = make_file(os.path.join(www, "big.bin"), 64 * MiB)
        make_metainfo(os.path.join(www, "big.bin"), lan.origin_url("big.bin"))
        origin = lan.start_origin()
        a1 = lan.start_agent(1, peers="all")
        ...
"""

import atexit
import ctypes
import hashlib
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
from collections import namedtuple

HERE = os.path.dirname(os.path.abspath(__file__))
INTEGRATION_DIR = os.path.join(os.path.dirname(HERE), "integration")
if INTEGRATION_DIR not in sys.path:
    sys.path.insert(0, INTEGRATION_DIR)
import harness  # noqa: E402  (Agent, merge_toml, make_file, sha256_file, ...)
import bencode  # noqa: E402  (tests/integration/bencode.py)

MiB = 1024 * 1024
PREFIX = "dlan"                 # namespace names: dlan-<pid>-<serial>-<role>
SUBNET = "10.77.0"
PREFIX_LEN = 24
ORIGIN_IP = SUBNET + ".1"
FIRST_HOST = 11                 # h1 = 10.77.0.11, h2 = .12, ...
MAX_HOSTS = 200
IFNAME = "eth0"                 # the namespace's end of its veth
BRIDGE = "br0"                  # the one LAN's bridge (subnet 0's); Lan.bridge(k)
P2P_PORT = 7881
# Routed subnets: subnet k is 10.77.k.0/24, its router address 10.77.k.254.
NETWORK = "10.77.0.0/16"
ROUTER_HOST = 254
TRACKER_IP = SUBNET + ".2"
TRACKER_PORT = 6969
OPENTRACKER = "/usr/bin/opentracker"
MAX_SUBNETS = 16
LSD_GROUP = "239.192.152.143"
LSD_PORT = 6771
IP = "/usr/sbin/ip" if os.path.exists("/usr/sbin/ip") else "ip"
TC = "/usr/sbin/tc" if os.path.exists("/usr/sbin/tc") else "tc"
NGINX = "/usr/sbin/nginx"

# The start of a Python script for a namespace (argv: group port
# local_address): `s`, a UDP socket bound to the port that has joined the
# group on that address (20 s receive timeout); prints "READY" once it has.
MCAST_MEMBER = r"""
import socket, struct, sys
group, port, local = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("", port))
s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
             struct.pack("4s4s", socket.inet_aton(group), socket.inet_aton(local)))
print("READY", flush=True)
s.settimeout(20)
"""

make_file = harness.make_file
sha256_file = harness.sha256_file
tail = harness.tail
wait_for = harness.wait_for

_serial = itertools.count(1)
_live = []                      # Lans not torn down yet
_stale_cleaned = False
_handlers_installed = False


# ---------------------------------------------------------------------------
# helpers


def parse_rate(text):
    """A tc rate ("100mbit", "1gbit", "12.5mbps", "800kibit", 1e8) in bits/s.
    As in tc: bit/kbit/mbit/gbit are powers of 1000, kibit/mibit/gibit of
    1024, and bps/kbps/mbps/gbps are bytes per second."""
    if isinstance(text, (int, float)):
        return float(text)
    m = re.fullmatch(r"\s*([0-9.]+)\s*([a-zA-Z]*)\s*", str(text))
    if not m:
        raise ValueError("not a rate: %r" % text)
    value, unit = float(m.group(1)), m.group(2).lower()
    units = {"": 1, "bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "tbit": 1e12,
             "kibit": 1024, "mibit": 1024 ** 2, "gibit": 1024 ** 3, "tibit": 1024 ** 4,
             "bps": 8, "kbps": 8e3, "mbps": 8e6, "gbps": 8e9, "tbps": 8e12,
             "kibps": 8 * 1024, "mibps": 8 * 1024 ** 2, "gibps": 8 * 1024 ** 3}
    if unit not in units:
        raise ValueError("unknown rate unit in %r" % text)
    return value * units[unit]


def child_env():
    """The environment for children: no proxy variables at all (a proxy
    could never be reached from a namespace anyway)."""
    env = harness.clean_env()
    for k in ("no_proxy", "NO_PROXY"):
        env.pop(k, None)
    return env


def _pdeathsig():
    """preexec_fn: the child gets SIGKILL when the thread that started it
    dies (start children from the main thread only)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _sh(argv, check=True, timeout=30):
    """Runs an ip/tc command; returns stdout. On failure raises RuntimeError
    with the command and its stderr."""
    p = subprocess.run(argv, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if check and p.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(argv), p.returncode,
                                                p.stderr.decode(errors="replace").strip()))
    return p.stdout.decode(errors="replace")


def unavailable_reason():
    """None when namespaces can be made here, else why not."""
    if os.geteuid() != 0:
        return "LAN tests need root (network namespaces, tc)"
    if shutil.which(IP) is None and not os.path.exists(IP):
        return "iproute2 `ip` not found"
    if shutil.which(TC) is None and not os.path.exists(TC):
        return "iproute2 `tc` not found"
    probe = "%s-%d-probe" % (PREFIX, os.getpid())
    p = subprocess.run([IP, "netns", "add", probe], capture_output=True)
    if p.returncode != 0:
        return "`ip netns add` failed: %s" % p.stderr.decode(errors="replace").strip()
    subprocess.run([IP, "netns", "del", probe], capture_output=True)
    return None


def require():
    """Raises unittest.SkipTest when namespaces cannot be made here."""
    reason = unavailable_reason()
    if reason:
        raise unittest.SkipTest(reason)


def list_namespaces():
    out = _sh([IP, "netns", "list"], check=False)
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _ns_pids(ns):
    out = _sh([IP, "netns", "pids", ns], check=False)
    return [int(x) for x in out.split() if x.isdigit()]


def _kill_ns_processes(ns, grace=3.0):
    """SIGTERM then SIGKILL to every process inside `ns` (only ever called
    for namespaces this module made)."""
    pids = _ns_pids(ns)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while pids and time.monotonic() < deadline:
        time.sleep(0.05)
        pids = [p for p in _ns_pids(ns)]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if pids:
        deadline = time.monotonic() + 5
        while _ns_pids(ns) and time.monotonic() < deadline:
            time.sleep(0.05)


def _delete_ns(ns):
    _kill_ns_processes(ns)
    _sh([IP, "netns", "del", ns], check=False)


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def cleanup_stale(verbose=False):
    """Removes namespaces left by earlier runs of this module whose process
    is gone (names dlan-<pid>-<serial>-<role>). Returns their names."""
    removed = []
    pat = re.compile(r"^%s-(\d+)-(\d+)-[a-z0-9]+$" % PREFIX)
    names = list_namespaces()
    # workstations and origin first, the bridge last
    names.sort(key=lambda n: n.endswith("-br"))
    for ns in names:
        m = pat.match(ns)
        if not m or _pid_alive(int(m.group(1))):
            continue
        if verbose:
            sys.stderr.write("netns: removing stale namespace %s\n" % ns)
        _delete_ns(ns)
        removed.append(ns)
    return removed


def teardown_all():
    for lan in list(_live):
        try:
            lan.teardown()
        except Exception as e:  # teardown goes on
            sys.stderr.write("netns: teardown of %s: %r\n" % (lan.id, e))


def _on_signal(signum, frame):
    # Unwind through the finally blocks and atexit (which tear down).
    raise SystemExit(128 + signum)


def _install_handlers():
    global _handlers_installed
    if _handlers_installed:
        return
    _handlers_installed = True
    atexit.register(teardown_all)
    try:
        for sig in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(sig) in (signal.SIG_DFL, None):
                signal.signal(sig, _on_signal)
    except ValueError:  # not the main thread: atexit only
        pass


# ---------------------------------------------------------------------------


class Host:
    """One namespace on the LAN: the origin (index 0), a workstation
    (index 1..N, named h1..hN) or the tracker (index None). `subnet` is k
    of 10.77.k.0/24 (0 on a one-LAN Lan)."""

    def __init__(self, lan, index, ns, ip, bridge_port, subnet=0, name=None):
        self.lan = lan
        self.index = index
        self.name = name or ("origin" if index == 0 else "h%d" % index)
        self.ns = ns
        self.ip = ip
        self.subnet = subnet
        self.ifname = IFNAME
        self.bridge_port = bridge_port     # the veth end in the bridge namespace
        self.dir = os.path.join(lan.dir, self.name)
        os.makedirs(self.dir, exist_ok=True)

    @property
    def p2p_address(self):
        return "%s:%d" % (self.ip, P2P_PORT)

    def __repr__(self):
        return "<Host %s %s ns=%s>" % (self.name, self.ip, self.ns)


LogEntry = namedtuple("LogEntry", "client status bytes range method path msec request_time")


class Origin:
    """nginx inside the origin namespace, on 10.77.0.1:`port`, serving
    `docroot`. The access log has, tab separated: $remote_addr $status
    $body_bytes_sent $http_range $request $msec $request_time."""

    def __init__(self, lan, docroot, port=80, extra_server_conf=""):
        self.lan = lan
        self.host = lan.origin
        self.docroot = os.path.realpath(docroot)
        self.port = port
        self.extra_server_conf = extra_server_conf
        self.dir = os.path.join(self.host.dir, "nginx")
        os.makedirs(self.dir, exist_ok=True)
        self.access_log = os.path.join(self.dir, "access.log")
        self.error_log = os.path.join(self.dir, "error.log")
        self.conf = os.path.join(self.dir, "nginx.conf")
        self.proc = None

    def _conf_text(self):
        return harness.nginx_conf(
            self.dir, "%s:%d" % (self.host.ip, self.port), self.docroot,
            log_format=(r"$remote_addr\t$status\t$body_bytes_sent\t$http_range\t$request"
                        r"\t$msec\t$request_time"),
            http_extra="types { application/x-bittorrent torrent; }\n"
                       "    tcp_nopush on;\n    keepalive_requests 1000000;",
            server_extra=self.extra_server_conf, worker_connections=4096, keepalive_timeout=60)

    def start(self, timeout=10):
        with open(self.conf, "w") as f:
            f.write(self._conf_text())
        out = open(os.path.join(self.dir, "nginx.out"), "ab")
        try:
            self.proc = self.lan.run(self.host, [NGINX, "-p", self.dir + "/", "-c", self.conf,
                                                 "-e", self.error_log],
                                     stdout=out, stderr=out)
        finally:
            out.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("nginx exited with %s:\n%s\n%s" % (
                    self.proc.returncode, tail(self.error_log),
                    tail(os.path.join(self.dir, "nginx.out"))))
            # Asked from inside the origin namespace (over its lo): no
            # origin egress is counted for it.
            p = self.lan.call(self.host, ["curl", "-s", "-o", "/dev/null", "--max-time", "2",
                                          "-w", "%{http_code}", self.url("/")], timeout=10)
            if p.returncode == 0 and p.stdout.strip() not in ("", "000"):
                return self
            if time.monotonic() > deadline:
                raise RuntimeError("nginx did not answer on %s:\n%s" % (self.url("/"),
                                                                       tail(self.error_log)))
            time.sleep(0.05)

    def url(self, path=""):
        port = "" if self.port == 80 else ":%d" % self.port
        return "http://%s%s/%s" % (self.host.ip, port, path.lstrip("/"))

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if self.running():
            self.proc.send_signal(signal.SIGQUIT)  # graceful: flushes the log
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    # -- the access log ---------------------------------------------------

    def log_offset(self):
        """The access log's current size: pass it as `since` to read only
        what was logged after this instant."""
        try:
            return os.path.getsize(self.access_log)
        except OSError:
            return 0

    def log_entries(self, since=0):
        """[LogEntry] logged after byte offset `since` of the access log
        (nginx writes a request's line when it ends)."""
        out = []
        try:
            with open(self.access_log, "rb") as f:
                f.seek(since)
                data = f.read().decode(errors="replace")
        except FileNotFoundError:
            return out
        for line in data.splitlines():
            parts = line.split("\t")
            if len(parts) != 7:
                continue
            req = parts[4].split(" ")
            path = req[1].split("?")[0] if len(req) > 1 else ""
            try:
                out.append(LogEntry(parts[0], int(parts[1]), int(parts[2]),
                                    "" if parts[3] == "-" else parts[3], req[0], path,
                                    float(parts[5]), float(parts[6])))
            except ValueError:
                continue
        return out

    def body_bytes_sent(self, path=None, client=None, since=0):
        """Sum of $body_bytes_sent for `path` (a URL path such as
        "/big.bin"; None: every path), from `client` (an address, a Host,
        or None: everyone)."""
        if isinstance(client, Host):
            client = client.ip
        return sum(e.bytes for e in self.log_entries(since)
                   if (path is None or e.path == path) and (client is None or e.client == client))

    def bytes_by_client(self, path=None, since=0):
        """{client address: body bytes sent} for `path` (None: every path)."""
        out = {}
        for e in self.log_entries(since):
            if path is None or e.path == path:
                out[e.client] = out.get(e.client, 0) + e.bytes
        return out

    def bytes_by_host(self, path=None, since=0):
        """Like bytes_by_client, keyed by host name ("h1", ...); every
        workstation is present (0 when it fetched nothing)."""
        by_ip = self.bytes_by_client(path, since)
        return {h.name: by_ip.get(h.ip, 0) for h in self.lan.hosts}


class Tracker(harness.Opentracker):
    """harness.Opentracker run inside a namespace of its own at 10.77.0.2
    (subnet 0), HTTP and UDP on `port`; its files in <dir>/tracker/. Only
    the info-hashes given to allow() are answered ("not authorized" for
    any other: Debian's build keeps a whitelist). Its stats page
    (top_hashes) is out of reach: the root namespace has no route to it."""

    def __init__(self, lan, host, port=TRACKER_PORT):
        super().__init__(host.dir, ip=host.ip)
        self.lan = lan
        self.host = host
        self.port = port

    def allow(self, *info_hashes, timeout=10):
        """Adds info-hashes (40 hex digits or 20 bytes); a running tracker
        rereads its whitelist, and this waits until it answers for them."""
        new = [h.hex() if isinstance(h, bytes) else h.lower() for h in info_hashes]
        super().allow(new)
        if self.running():
            for h in new:
                wait_for(lambda: self._authorized(h), timeout, interval=0.05,
                         what="opentracker answering for %s" % h)
        return self

    def _announce(self, info_hash_hex, event):
        """The tracker's answer to an announce of the info-hash by a probe
        peer (the tracker's own address, port 1), or None."""
        from urllib.parse import quote
        url = ("%s?info_hash=%s&peer_id=-DT0000-probeprobepr&port=1&uploaded=0&downloaded=0"
               "&left=0&numwant=0&compact=1&event=%s"
               % (self.http_url(), quote(bytes.fromhex(info_hash_hex)), event))
        p = self.lan.call(self.host, ["curl", "-s", "--max-time", "2", url], timeout=10)
        return p.stdout if p.returncode == 0 and p.stdout else None

    def _authorized(self, info_hash_hex):
        """Whether the tracker answers for the info-hash. opentracker checks
        its whitelist on a `started` announce only, so this announces the
        probe peer and takes it back at once (`stopped`); an agent
        announcing in between may be told of it and finds nothing there."""
        answer = self._announce(info_hash_hex, "started")
        self._announce(info_hash_hex, "stopped")
        return answer is not None and "failure reason" not in answer

    def start(self, timeout=10):
        with open(self.log, "ab") as out:
            self.proc = self.lan.run(self.host, [OPENTRACKER, "-i", self.ip, "-p", self.port,
                                                 "-P", self.port, "-d", self.dir,
                                                 "-w", os.path.basename(self.whitelist),
                                                 "-A", self.ip],
                                     stdout=out, stderr=out)
        wait_for(lambda: self.proc.poll() is not None or
                 self._announce("00" * 20, "stopped") is not None, timeout, interval=0.05,
                 what="opentracker answering on %s" % self.http_url())
        if self.proc.poll() is not None:
            raise RuntimeError("opentracker exited with %s:\n%s" % (self.proc.returncode,
                                                                   tail(self.log)))
        return self

    def running(self):
        return self.proc is not None and self.proc.poll() is None


def metainfo_info_hashes(torrent_path):
    """The info-hashes a client announces for a metainfo file, in hex: the
    v1 one (SHA-1 of the info dictionary) and, for v2 and hybrid metainfo,
    the v2 one truncated to 20 bytes (libtorrent announces both)."""
    with open(torrent_path, "rb") as f:
        data = f.read()
    start, end = bencode.info_span(data)
    info = data[start:end]
    hashes = [hashlib.sha1(info).hexdigest()]
    if bencode.decode(data)[b"info"].get(b"meta version") == 2:
        hashes.append(hashlib.sha256(info).hexdigest()[:40])
    return hashes


class LanAgent(harness.Agent):
    """A doptd inside a workstation's namespace. Everything of
    harness.Agent works (start, stop, kill9, restart, dopt, add, status,
    wait_state, ...): the dopt CLI reaches the agent through its Unix socket,
    which is a file, so the CLI runs in the root namespace and needs no
    network. The config: harness.Agent's (debug log, fast retries), then

        [p2p]
        enabled = true
        listen = "10.77.0.X:7881"
        lan_discovery = true
        peers = [...]                 # `peers`, see Lan.start_agent
        allowed_networks = [...]      # only when given

    then `extra_toml` (merged by harness.merge_toml: its keys replace these;
    one key a line)."""

    def __init__(self, lan, host, extra_toml="", peers=(), lan_discovery=True,
                 p2p=True, allowed_networks=None, port=P2P_PORT, name="agent"):
        self.lan = lan
        self.host = host
        self.listen = "%s:%d" % (host.ip, port)
        if peers == "all":
            peers = ["%s:%d" % (h.ip, port) for h in lan.hosts if h is not host]
        self.peers = list(peers or [])

        def arr(xs):
            return "[" + ", ".join('"%s"' % x for x in xs) + "]"

        p2p_text = "[p2p]\nenabled = %s\n" % ("true" if p2p else "false")
        p2p_text += 'listen = "%s"\n' % self.listen
        p2p_text += "lan_discovery = %s\n" % ("true" if lan_discovery else "false")
        p2p_text += "peers = %s\n" % arr(self.peers)
        if allowed_networks is not None:
            p2p_text += "allowed_networks = %s\n" % arr(allowed_networks)
        super().__init__(os.path.join(host.dir, name), harness.merge_toml(p2p_text, extra_toml))

    def spawn(self):
        with open(self.log, "ab") as log:
            log.write(b"=== doptd started %s in %s ===\n" % (time.ctime().encode(),
                                                            self.host.ns.encode()))
            log.flush()
            self.proc = self.lan.run(self.host, [harness.doptd_path(), "--config", self.config],
                                     stdout=log, stderr=log)
        return self.proc

    def get(self, url, dest, *args, timeout=300):
        """`dopt get URL -o DEST ARGS...`; returns (exit code, stdout, stderr)."""
        return self.dopt("get", url, "-o", dest, *args, timeout=timeout)

    def get_async(self, url, dest, *args, stdout=subprocess.DEVNULL, stderr=None, wrap=None):
        """Starts `dopt get URL -o DEST ARGS...` and returns its Popen (the
        Lan stops it at teardown if it is still running). wrap(argv), when
        given, returns the command line to run instead (a start gate)."""
        cmd = [harness.dopt_path(), "--socket", self.socket, "get", url, "-o", dest] + \
              [str(a) for a in args]
        if wrap:
            cmd = wrap(cmd)
        p = subprocess.Popen(cmd, stdout=stdout, stderr=stderr if stderr is not None
                             else subprocess.PIPE, stdin=subprocess.DEVNULL,
                             env=child_env(), start_new_session=True, preexec_fn=_pdeathsig)
        self.lan._procs.append(p)
        return p

    def stats(self):
        """`dopt stats --json` as a dict."""
        _, out, _ = self.dopt("stats", "--json", check=True)
        return json.loads(out)

    def seeding_entry(self):
        """The agent's first complete, seeding peer cache entry (`dopt
        cache list --json`), or None."""
        entries = json.loads(self.dopt("cache", "list", "--json", check=True)[1])
        return next((e for e in entries if e["complete"] and e["seeding"]), None)

    def wait_seeding(self, timeout=30):
        """Waits until the agent seeds a file from its peer cache; returns
        its cache entry."""
        return harness.wait_for(self.seeding_entry, timeout,
                                what="%s seeding from its peer cache" % self.host.name)


class Lan:
    """The namespaces, links and shaping of one LAN; see the module doc.

    Lan(hosts=N, origin_rate=None, lan_rate=None, delay=None, ...)
      hosts         number of workstations (h1..hN at 10.77.0.11..); with
                    subnets, in each subnet (h1..hM in subnet 0 at
                    10.77.0.11.., hM+1..h2M in subnet 1 at 10.77.1.11.., ...)
      origin_rate   tc rate of the origin's upload, e.g. "100mbit" (None: unshaped)
      lan_rate      tc rate of each workstation's up- and download, e.g. "1gbit"
      delay         e.g. "2ms": netem delay on every namespace's egress
      subnets       K > 1: K routed subnets (see the module doc); 1: one LAN
      router_rate   tc rate of each subnet's link to the router, both ways
                    (default lan_rate)
      workdir       parent of the run's temp dir (default $TMPDIR or /tmp)
      keep          keep the temp dir at teardown (default: $DOPT_LAN_KEEP set)
      ipv6          leave IPv6 on in the namespaces (default off: quieter)

    Attributes: id, dir (the temp dir), docroot (dir/www), origin (a Host),
    hosts ([Host] for h1..hN), subnets, bridge_ns, router_ns (None on one
    LAN), namespaces.
    """

    def __init__(self, hosts=2, origin_rate=None, lan_rate=None, delay=None,
                 workdir=None, keep=None, ipv6=False, subnets=1, router_rate=None):
        require()
        global _stale_cleaned
        if not _stale_cleaned:
            _stale_cleaned = True
            cleanup_stale(verbose=True)
        if not 1 <= subnets <= MAX_SUBNETS:
            raise ValueError("subnets must be 1..%d" % MAX_SUBNETS)
        if not 1 <= hosts * subnets <= MAX_HOSTS:
            raise ValueError("hosts x subnets must be 1..%d" % MAX_HOSTS)
        _install_handlers()
        self.id = "%d-%d" % (os.getpid(), next(_serial))
        self.origin_rate = origin_rate
        self.lan_rate = lan_rate
        self.delay = delay
        self.ipv6 = ipv6
        self.subnets = subnets
        self.router_rate = router_rate or lan_rate
        self.keep = bool(os.environ.get("DOPT_LAN_KEEP")) if keep is None else keep
        self.dir = tempfile.mkdtemp(prefix="dopt-lan-%s-" % self.id, dir=workdir)
        self.docroot = os.path.join(self.dir, "www")
        os.makedirs(self.docroot)
        self._procs = []       # Popen of everything started through run()
        self._children = []    # objects with stop(): origins, agents
        self._torn = False
        self.bridge_ns = "%s-%s-br" % (PREFIX, self.id)
        self.router_ns = None
        self.namespaces = []   # made so far, in order (bridge first)
        self.origin = None
        self.hosts = []
        self.tracker_host = None
        _live.append(self)
        try:
            self._build(hosts)
        except BaseException:
            self.teardown()
            raise

    # -- building -----------------------------------------------------------

    def _ns_add(self, ns):
        _sh([IP, "netns", "add", ns])
        self.namespaces.append(ns)
        _sh([IP, "-n", ns, "link", "set", "lo", "up"])
        if not self.ipv6:
            self._sysctl(ns, "net.ipv6.conf.all.disable_ipv6=1",
                         "net.ipv6.conf.default.disable_ipv6=1")

    def _sysctl(self, ns, *settings):
        _sh([IP, "netns", "exec", ns, "sysctl", "-q", "-w"] + list(settings), check=False)

    def _build(self, n):
        br = self.bridge_ns
        self._ns_add(br)
        for k in range(self.subnets):
            _sh([IP, "-n", br, "link", "add", self.bridge(k), "type", "bridge", "stp_state", "0",
                 "forward_delay", "0", "mcast_snooping", "0"])
            _sh([IP, "-n", br, "link", "set", self.bridge(k), "up"])
        if self.subnets > 1:
            self._add_router()
        self.origin = self._add_host(0, ORIGIN_IP)
        for i in range(1, n * self.subnets + 1):
            k, j = divmod(i - 1, n)
            self.hosts.append(self._add_host(i, "10.77.%d.%d" % (k, FIRST_HOST + j), subnet=k))
        # shaping
        if self.origin_rate or self.delay:
            self._shape(self.origin.ns, IFNAME, self.origin_rate, self.delay)
        for h in self.hosts:
            if self.lan_rate or self.delay:
                self._shape(h.ns, IFNAME, self.lan_rate, self.delay)          # upload
            if self.lan_rate:
                self._shape(br, h.bridge_port, self.lan_rate, None)           # download
        if self.router_ns and self.router_rate:
            for k in range(self.subnets):
                self._shape(self.router_ns, self.router_link(k), self.router_rate, None)
                self._shape(br, "v-" + self.router_link(k), self.router_rate, None)

    @staticmethod
    def bridge(k):
        """The bridge of subnet k (in the bridge namespace)."""
        return "br%d" % k

    @staticmethod
    def router_link(k):
        """The router's veth into subnet k (in the router namespace); its
        other end, in bridge k, is "v-" + this."""
        return "r%d" % k

    @staticmethod
    def router_ip(k):
        return "10.77.%d.%d" % (k, ROUTER_HOST)

    def _add_router(self):
        """The router namespace: a veth into each subnet's bridge at
        10.77.k.254, IPv4 forwarding on. No multicast routing (no mroute
        daemon, no mc_forwarding): multicast stays in its subnet."""
        rt = self.router_ns = "%s-%s-rt" % (PREFIX, self.id)
        self._ns_add(rt)
        for k in range(self.subnets):
            link = self.router_link(k)
            _sh([IP, "-n", rt, "link", "add", link, "type", "veth",
                 "peer", "name", "v-" + link, "netns", self.bridge_ns])
            _sh([IP, "-n", self.bridge_ns, "link", "set", "v-" + link,
                 "master", self.bridge(k), "up"])
            _sh([IP, "-n", rt, "addr", "add", "%s/%d" % (self.router_ip(k), PREFIX_LEN),
                 "dev", link])
            _sh([IP, "-n", rt, "link", "set", link, "up"])
        _sh([IP, "netns", "exec", rt, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])

    def _add_host(self, index, ip, subnet=0, role=None, name=None):
        role = role or ("o" if index == 0 else "h%d" % index)
        ns = "%s-%s-%s" % (PREFIX, self.id, role)
        port = "v-" + role
        self._ns_add(ns)
        _sh([IP, "-n", self.bridge_ns, "link", "add", port, "type", "veth",
             "peer", "name", IFNAME, "netns", ns])
        _sh([IP, "-n", self.bridge_ns, "link", "set", port, "master", self.bridge(subnet), "up"])
        _sh([IP, "-n", ns, "addr", "add", "%s/%d" % (ip, PREFIX_LEN), "dev", IFNAME])
        _sh([IP, "-n", ns, "link", "set", IFNAME, "up"])
        # multicast (LSD) goes out of eth0; there is no default route.
        _sh([IP, "-n", ns, "route", "add", "224.0.0.0/4", "dev", IFNAME])
        if self.router_ns:
            _sh([IP, "-n", ns, "route", "add", NETWORK, "via", self.router_ip(subnet)])
        return Host(self, index, ns, ip, port, subnet, name)

    def _shape(self, ns, dev, rate, delay):
        """htb at `rate` (or a very high one when None) on the egress of
        `dev`, with netem `delay` (or a pfifo) under it. Without sch_netem
        in the kernel, a delay raises unittest.SkipTest."""
        bits = parse_rate(rate) if rate else 10e9
        # A burst of ~2 ms at the rate, and never less than one 64 KiB GSO
        # packet, keeps htb close to its rate on a veth.
        burst = max(int(bits / 8 * 0.002), 65536 + 1514)
        rate_arg = "%dbit" % int(bits)
        _sh([TC, "-n", ns, "qdisc", "replace", "dev", dev, "root", "handle", "1:",
             "htb", "default", "1"])
        _sh([TC, "-n", ns, "class", "add", "dev", dev, "parent", "1:", "classid", "1:1",
             "htb", "rate", rate_arg, "ceil", rate_arg, "burst", str(burst),
             "cburst", str(burst), "quantum", "65536"])
        if delay:
            p = subprocess.run([TC, "-n", ns, "qdisc", "add", "dev", dev, "parent", "1:1",
                                "handle", "10:", "netem", "delay", str(delay), "limit", "100000"],
                               capture_output=True, text=True, stdin=subprocess.DEVNULL)
            if p.returncode != 0:
                # Some kernels (this project's VMs among them) have no sch_netem.
                raise unittest.SkipTest("cannot add a netem delay (%s): %s"
                                        % (delay, p.stderr.strip()))
        else:
            # A plain FIFO: fq_codel, sfq and fq are not in every kernel.
            _sh([TC, "-n", ns, "qdisc", "add", "dev", dev, "parent", "1:1", "handle", "10:",
                 "pfifo", "limit", "1000"])

    # -- addressing ------------------------------------------------------------

    def host(self, which):
        """A Host from an index (0: origin, 1..N: h1..hN), a name ("h2",
        "origin"), or a Host."""
        if isinstance(which, Host):
            return which
        if isinstance(which, int):
            return self.origin if which == 0 else self.hosts[which - 1]
        if which == "origin":
            return self.origin
        for h in self.hosts:
            if h.name == which or h.ns == which or h.ip == which:
                return h
        raise KeyError(which)

    def _ns(self, which):
        if isinstance(which, str) and which in self.namespaces:
            return which
        return self.host(which).ns

    def origin_url(self, path="", port=80):
        p = "" if port == 80 else ":%d" % port
        return "http://%s%s/%s" % (ORIGIN_IP, p, path.lstrip("/"))

    # -- processes -------------------------------------------------------------

    def run(self, which, argv, **popen_kwargs):
        """Popen of `ip netns exec NS argv...` (NS of a Host, index, name,
        or a namespace name). Defaults: env without proxies, stdin from
        /dev/null, its own session, PR_SET_PDEATHSIG. Stopped at teardown."""
        if self._torn:
            raise RuntimeError("Lan %s is torn down" % self.id)
        popen_kwargs.setdefault("env", child_env())
        popen_kwargs.setdefault("stdin", subprocess.DEVNULL)
        popen_kwargs.setdefault("start_new_session", True)
        popen_kwargs.setdefault("preexec_fn", _pdeathsig)
        cmd = [IP, "netns", "exec", self._ns(which)] + [str(a) for a in argv]
        p = subprocess.Popen(cmd, **popen_kwargs)
        self._procs.append(p)
        return p

    def call(self, which, argv, timeout=60, input=None, check=False):
        """Runs argv in the namespace to its end: a CompletedProcess with
        text stdout and stderr. check=True raises CalledProcessError."""
        cmd = [IP, "netns", "exec", self._ns(which)] + [str(a) for a in argv]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              input=input, env=child_env(),
                              stdin=None if input is not None else subprocess.DEVNULL,
                              check=check)

    def check_output(self, which, argv, timeout=60, input=None):
        """stdout of argv run in the namespace; CalledProcessError (with
        stderr) when it exits non-zero."""
        return self.call(which, argv, timeout=timeout, input=input, check=True).stdout

    # -- counters ---------------------------------------------------------------

    def link_stat(self, which, stat="tx_bytes", ifname=IFNAME):
        """/sys/class/net/<ifname>/statistics/<stat> inside the namespace."""
        out = self.check_output(which, ["cat", "/sys/class/net/%s/statistics/%s" % (ifname, stat)],
                                timeout=10)
        return int(out.strip())

    def tx_bytes(self, which):
        return self.link_stat(which, "tx_bytes")

    def rx_bytes(self, which):
        return self.link_stat(which, "rx_bytes")

    def origin_tx_bytes(self):
        """Bytes the origin sent on its link (all of it: HTTP, headers, TCP,
        ARP); the origin's egress."""
        return self.tx_bytes(self.origin)

    def routed_bytes(self):
        """Routed subnets: {k: bytes the router sent into subnet k} (tx of
        its veth into bridge k). Their sum is what crossed the router, the
        origin's bytes to other subnets included."""
        return {k: self.link_stat(self.router_ns, "tx_bytes", self.router_link(k))
                for k in range(self.subnets)}

    def subnet_hosts(self, k):
        """The workstations of subnet k."""
        return [h for h in self.hosts if h.subnet == k]

    # -- servers and agents -------------------------------------------------------

    def start_origin(self, docroot=None, port=80, extra_server_conf=""):
        """nginx in the origin namespace serving `docroot` (default
        self.docroot) on 10.77.0.1:port; returns the started Origin."""
        o = Origin(self, docroot or self.docroot, port, extra_server_conf)
        self._children.append(o)
        return o.start()

    def start_tracker(self, info_hashes=()):
        """opentracker in the tracker namespace (made on first use, at
        10.77.0.2 in subnet 0), answering for `info_hashes` (Tracker.allow
        adds more); returns the started Tracker."""
        if self.tracker_host is None:
            self.tracker_host = self._add_host(None, TRACKER_IP, role="t", name="tracker")
        t = Tracker(self, self.tracker_host)
        t.allow(*info_hashes)
        self._children.append(t)
        return t.start()

    def start_agent(self, which, extra_toml="", peers=(), lan_discovery=True, p2p=True,
                    allowed_networks=None, start=True, name="agent"):
        """A LanAgent (doptd) in workstation `which` (1..N, "h1", or a
        Host), its files under <dir>/hN/<name>/. peers: a list of
        "addr:port", or "all" for every other workstation. allowed_networks
        None: the agent's default (its own subnet) on one LAN, every subnet
        (10.77.0.0/16) on routed subnets. start=False only writes the
        config (call .start() later)."""
        h = self.host(which)
        if h is self.origin:
            raise ValueError("agents run on workstations, not on the origin")
        if allowed_networks is None and self.router_ns:
            allowed_networks = [NETWORK]
        a = LanAgent(self, h, extra_toml, peers, lan_discovery, p2p, allowed_networks,
                     name=name)
        self._children.append(a)
        return a.start() if start else a

    # -- teardown -----------------------------------------------------------------

    def teardown(self):
        """Stops every process started here, deletes every namespace (which
        takes the veths and the bridge along) and removes the temp dir
        (unless keep). Idempotent; never raises for a missing piece."""
        if self._torn:
            return
        self._torn = True
        old = None
        try:
            old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM,
                                                            signal.SIGHUP})
        except (AttributeError, ValueError, OSError):
            pass
        try:
            for c in reversed(self._children):
                try:
                    c.stop()
                except Exception as e:
                    sys.stderr.write("netns: stopping %r: %r\n" % (c, e))
            for p in self._procs:
                if p.poll() is None:
                    try:
                        p.terminate()
                    except OSError:
                        pass
            deadline = time.monotonic() + 3
            for p in self._procs:
                try:
                    p.wait(max(0.05, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            for ns in reversed(self.namespaces):  # tracker, workstations, origin, router, bridge
                _delete_ns(ns)
            self.namespaces = []
            if self.keep:
                sys.stderr.write("netns: kept %s\n" % self.dir)
            else:
                shutil.rmtree(self.dir, ignore_errors=True)
        finally:
            if self in _live:
                _live.remove(self)
            if old is not None:
                signal.pthread_sigmask(signal.SIG_SETMASK, old)

    close = teardown

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.teardown()
        return False

    def report(self):
        """Paths and log tails, for a failed test's output."""
        parts = ["LAN %s in %s" % (self.id, self.dir)]
        for c in self._children:
            if isinstance(c, LanAgent):
                parts.append("---- %s: tail of %s ----\n%s" % (c.host.name, c.log, tail(c.log, 60)))
            elif isinstance(c, Origin):
                parts.append("---- origin: tail of %s ----\n%s" % (c.error_log,
                                                                  tail(c.error_log, 20)))
            elif isinstance(c, Tracker):
                parts.append("---- tracker: tail of %s ----\n%s" % (c.log, tail(c.log, 20)))
        return "\n".join(parts)


# ---------------------------------------------------------------------------
# metainfo


def python_metainfo(path, web_seed, out, piece_length=MiB):
    """A v1 single-file metainfo with a BEP 19 web seed (url-list), no
    tracker: the fallback when neither `dopt publish` nor mktorrent works."""
    pieces = []
    length = 0
    with open(path, "rb") as f:
        for buf in iter(lambda: f.read(piece_length), b""):
            pieces.append(hashlib.sha1(buf).digest())
            length += len(buf)
    meta = {"info": {"name": os.path.basename(path), "length": length,
                     "piece length": piece_length, "pieces": b"".join(pieces)},
            "url-list": [web_seed], "created by": "dopt tests/lan/netns.py"}
    with open(out, "wb") as f:
        f.write(bencode.encode(meta))


def make_metainfo(path, web_seed, out=None, piece_length=MiB, tools=("dopt", "mktorrent", "python")):
    """Writes the metainfo of file `path` (default PATH.torrent, where the
    agent looks for it beside the content) with `web_seed` as its web seed.
    Tries, in order, `dopt publish PATH --web-seed URL -o OUT`, `mktorrent
    -l log2(piece_length) -w URL`, then python_metainfo. Returns (out, tool)."""
    out = out or path + ".torrent"
    errors = []
    for tool in tools:
        if os.path.exists(out):
            os.unlink(out)
        if tool == "dopt":
            try:
                dopt = harness.dopt_path()
            except unittest.SkipTest:
                errors.append("dopt: DOPT_BUILD_DIR unset")
                continue
            if not os.access(dopt, os.X_OK):
                errors.append("dopt: no %s" % dopt)
                continue
            p = subprocess.run([dopt, "publish", path, "--web-seed", web_seed, "-o", out],
                               capture_output=True, text=True, stdin=subprocess.DEVNULL,
                               env=child_env())
        elif tool == "mktorrent":
            if not shutil.which("mktorrent"):
                errors.append("mktorrent: not installed")
                continue
            p = subprocess.run(["mktorrent", "-l", str(piece_length.bit_length() - 1),
                                "-w", web_seed, "-o", out, path],
                               capture_output=True, text=True, stdin=subprocess.DEVNULL)
        else:
            python_metainfo(path, web_seed, out, piece_length)
            return out, "python"
        if p.returncode == 0 and os.path.exists(out) and os.path.getsize(out) > 0:
            return out, tool
        errors.append("%s: exit %d: %s" % (tool, p.returncode, (p.stderr or p.stdout).strip()[-300:]))
    raise RuntimeError("could not make metainfo for %s: %s" % (path, "; ".join(errors)))


# ---------------------------------------------------------------------------
# a base class for tests


class LanTestCase(unittest.TestCase):
    """self.lan (a Lan made in setUp from the class attributes below),
    self.www (its docroot). The Lan is torn down in tearDown; when the test
    failed, its temp dir is kept and the agents' log tails are printed."""

    lan_hosts = 3
    origin_rate = None
    lan_rate = None
    delay = None

    def setUp(self):
        self.lan = Lan(hosts=self.lan_hosts, origin_rate=self.origin_rate,
                       lan_rate=self.lan_rate, delay=self.delay)
        self.www = self.lan.docroot

    def tearDown(self):
        failed = harness.test_failed(self)
        if failed:
            self.lan.keep = True
            sys.stderr.write("\n" + self.lan.report() + "\n")
        self.lan.teardown()

    def assertFileSha(self, path, sha, msg=None):
        self.assertTrue(os.path.exists(path), msg or "%s does not exist" % path)
        self.assertEqual(sha256_file(path), sha, msg or "%s differs from the origin" % path)


# ---------------------------------------------------------------------------


def _main(argv):
    import argparse
    ap = argparse.ArgumentParser(description="LAN namespaces for dopt tests")
    ap.add_argument("--cleanup", action="store_true",
                    help="remove namespaces of earlier runs whose process is gone")
    ap.add_argument("--up", type=int, metavar="N",
                    help="make a LAN of N workstations (and an nginx origin serving "
                         "its docroot) and keep it until Ctrl-C")
    ap.add_argument("--subnets", type=int, default=1,
                    help="with --up: K routed subnets of N workstations each, and "
                         "opentracker at %s" % TRACKER_IP)
    ap.add_argument("--origin-rate")
    ap.add_argument("--lan-rate")
    ap.add_argument("--delay")
    a = ap.parse_args(argv)
    if a.cleanup:
        for ns in cleanup_stale():
            print("removed", ns)
    if a.up:
        with Lan(a.up, a.origin_rate, a.lan_rate, a.delay, subnets=a.subnets) as lan:
            lan.start_origin()
            print("LAN %s: docroot %s, origin %s" % (lan.id, lan.docroot, lan.origin_url()))
            if a.subnets > 1:
                t = lan.start_tracker()
                print("tracker %s (whitelist %s; SIGHUP rereads it)" % (t.http_url(), t.whitelist))
            for h in [lan.origin] + lan.hosts + ([lan.tracker_host] if lan.tracker_host else []):
                print("  %-6s %-12s ip netns exec %s bash" % (h.name, h.ip, h.ns))
            print("Ctrl-C tears it down.")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
