#!/usr/bin/env python3
"""bench/lan-swarm: N workstations fetch one file from a shaped origin over a
LAN in network namespaces, with plain HTTP (curl), BitTorrent with a web
seed (aria2c) and dopt (with metainfo at the origin, and without it from
the file's SHA-256), side by side. Run through bench/lan-swarm; see
bench/README.md ("LAN swarm").

Per run it measures the origin's egress (tx_bytes of its link) over the file
size, each client's done time from one common start instant (or, with
--start staggered, one client after another: each one's own time), checks every
downloaded file's sha256, and compares the last done time with the lower
bound of Kumar & Ross (2006) for distributing a file of S bytes from a
server of upload U to N clients of upload and download C:

    T_min = max(S/U, S/C, N*S/(U + N*C))

With --subnets K the workstations sit on K routed subnets of --clients
each (tests/lan/netns.py: a router without multicast routing, the origin
and opentracker in subnet 0), and the methods are curl, dopt with LSD only
(dopt-lsd), dopt with LSD and the tracker (dopt-tracker), and dopt with LSD
and a tracker nobody listens on (dopt-tracker-down); each run also counts
the bytes that crossed the router.

Python 3 standard library only; the LAN comes from tests/lan/netns.py.
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "lan"))
import netns  # noqa: E402
from netns import MiB  # noqa: E402

FILE_NAME = "swarm.bin"
PLAIN_DIR = "plain"             # docroot/plain/swarm.bin: the same bytes, no metainfo
# dopt-sha256: dopt where the origin publishes no metainfo, `dopt get
# --sha256 X` of plain/swarm.bin (peering from the SHA-256).
ALL_METHODS = ("curl", "aria2", "dopt", "dopt-sha256")
STARTS = ("together", "staggered")
# Run only when asked: dopt's own HTTP-only path (no metainfo probe), the
# baseline of "one client is no slower through the swarm".
# mixed-aria2: the control of mixed, its aria2 half alone (the other half idle).
EXTRA_METHODS = ("dopt-http", "mixed", "mixed-aria2")
# mixed: the first half of the workstations run dopt, the others aria2c, at
# once, on v1 metainfo (V1_DIR/swarm.bin: aria2 1.36 gets the info-hash of
# hybrid metainfo wrong, its issue 1903).
V1_DIR = "v1"
# Routed subnets (--subnets K): dopt without static peers, finding peers by
# LSD only, by LSD and the tracker, and by LSD and a tracker that is down
# (a URL where nothing listens: connections refused).
SUBNET_METHODS = ("curl", "dopt-lsd", "dopt-tracker", "dopt-tracker-down")
TRACKER_DOWN_URL = "http://%s:%d/announce" % (netns.TRACKER_IP, netns.TRACKER_PORT + 1)
# With --baseline-build DIR: dopt built in DIR (another commit), run in the
# same rounds as "dopt" (and "dopt-sha256") so a change's before and after
# share one run.
BASELINE_METHODS = ("dopt-base", "dopt-sha256-base", "mixed-base", "dopt-lsd-base",
                    "dopt-tracker-base")

# Staggered: how long after its download a dopt client may take to seed
# its copy before the next client starts anyway (the run then fails).
HOLD_TIMEOUT = 30

ARIA2_HOOK = """#!/bin/sh
# aria2c --on-bt-download-complete: all pieces are in and verified.
date +%s.%N > "$SWARM_DONE_FILE.tmp" && mv "$SWARM_DONE_FILE.tmp" "$SWARM_DONE_FILE"
"""


def log(msg):
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


class MethodFailed(Exception):
    pass


class StartGate:
    """Starts the clients of a run at one instant (or, staggered, one at a
    time). Client k (the k-th wrap()) runs as `sh -c 'read _ < FIFO_k;
    exec ARGV...'`; release() waits until every client is blocked reading
    its FIFO, then writes a line to each and returns that instant, the
    run's t0; release_one(k) lets client k alone go. (Spawning 16 clients
    one after another takes about 0.5 s on two cores: without the gate the
    last one started that much after the first, and its lateness counted
    as its download time.)"""

    def __init__(self, directory):
        self.directory = directory
        self.paths = []
        self.fds = []

    def wrap(self, argv):
        path = os.path.join(self.directory, "start-gate-%d" % len(self.paths))
        if os.path.exists(path):
            os.unlink(path)
        os.mkfifo(path, 0o600)
        # Read-write: opening never blocks, and a line written stays in the
        # pipe for a client that opens it late.
        self.fds.append(os.open(path, os.O_RDWR))
        self.paths.append(path)
        return ["/bin/sh", "-c", 'read _ < "$0"; exec "$@"', path] + [str(a) for a in argv]

    def _waiting(self, k, pid):
        try:
            return os.readlink("/proc/%d/fd/0" % pid) == self.paths[k]
        except OSError:
            return False

    def wait_ready(self, procs, timeout=30):
        """Waits until every client is blocked at its FIFO."""
        deadline = time.time() + timeout
        while not all(self._waiting(k, p.pid) for k, p in enumerate(procs)):
            if any(p.poll() is not None for p in procs):
                raise MethodFailed("a client exited before the start")
            if time.time() > deadline:
                raise MethodFailed("clients not at the start gate after %d s" % timeout)
            time.sleep(0.005)

    def release(self, procs):
        self.wait_ready(procs)
        t0 = time.time()
        for fd in self.fds:
            os.write(fd, b"\n")
        return t0

    def release_one(self, k):
        t = time.time()
        os.write(self.fds[k], b"\n")
        return t

    def close(self):
        for fd, path in zip(self.fds, self.paths):
            os.close(fd)
            os.unlink(path)


# Samples the origin's tx_bytes every 50 ms: "unix_time bytes" lines.
SAMPLER = """
import sys, time
stat = open("/sys/class/net/%s/statistics/tx_bytes" % sys.argv[2], "rb", buffering=0)
out = open(sys.argv[1], "w", buffering=1)
while True:
    stat.seek(0)
    out.write("%.3f %s\\n" % (time.time(), stat.read().decode().strip()))
    time.sleep(0.05)
"""


class EgressTimeline:
    """The origin's egress over a run, from a sampler in its namespace:
    when the origin link started carrying the file and when it stopped
    (a figure for finding where the time of a run goes)."""

    def __init__(self, lan, path):
        self.path = path
        self.proc = lan.run(lan.origin, ["python3", "-c", SAMPLER, path, netns.IFNAME])

    def stop(self):
        self.proc.kill()
        self.proc.wait()

    def busy(self, t0, tx0, total, size):
        """(start, end) in seconds after t0: when the origin had sent 1% of
        the file, and when it had sent all but 1% of `total`."""
        first = last = None
        try:
            with open(self.path) as f:
                for line in f:
                    parts = line.split()
                    if len(parts) != 2:
                        continue
                    t, tx = float(parts[0]) - t0, int(parts[1]) - tx0
                    if first is None and tx >= 0.01 * size:
                        first = t
                    if last is None and tx >= total - 0.01 * size:
                        last = t
        except OSError:
            pass
        return first, last


# ---------------------------------------------------------------------------


class Swarm:
    """One LAN of N workstations (or --subnets K routed subnets of N each)
    with the file and its metainfo on the origin; runs one method at a time
    on it."""

    def __init__(self, args, n):
        self.args = args
        self.n = n * args.subnets          # every workstation, all subnets
        self.size = args.size * MiB
        self.lan = netns.Lan(hosts=n, origin_rate=args.origin_rate, lan_rate=args.lan_rate,
                             workdir=args.work_dir, keep=args.keep, subnets=args.subnets)
        self.path = os.path.join(self.lan.docroot, FILE_NAME)
        log("lan-swarm: N=%d: writing %d MiB of random bytes" % (n, args.size))
        self.sha = netns.make_file(self.path, self.size)
        self.url = self.lan.origin_url(FILE_NAME)
        self.torrent, self.metainfo_tool = netns.make_metainfo(
            self.path, self.url, piece_length=args.piece_size * MiB)
        log("lan-swarm: metainfo %s made by %s" % (os.path.basename(self.torrent),
                                                  self.metainfo_tool))
        # The same bytes under plain/, where no metainfo sits beside them:
        # the no-metainfo case (dopt-sha256) in the same run as the others.
        os.makedirs(os.path.join(self.lan.docroot, PLAIN_DIR))
        os.link(self.path, os.path.join(self.lan.docroot, PLAIN_DIR, FILE_NAME))
        self.plain_url = self.lan.origin_url(PLAIN_DIR + "/" + FILE_NAME)
        self.origin = self.lan.start_origin()
        self.tracker = None
        if args.subnets > 1 or "dopt-tracker" in args.methods:
            self.tracker = self.lan.start_tracker(netns.metainfo_info_hashes(self.torrent))
        # Read the file once so every run finds it in the page cache.
        netns.sha256_file(self.path)
        U = netns.parse_rate(args.origin_rate)
        C = netns.parse_rate(args.lan_rate)
        S = self.size * 8.0
        N = self.n
        self.t_min = max(S / U, S / C, N * S / (U + N * C))
        self.timeout = args.timeout or (60 + 2.5 * N * S / U)
        if any(m.startswith("mixed") for m in args.methods):
            self.v1_url()  # with this build's dopt, before a baseline run
        self.hook = os.path.join(self.lan.dir, "aria2-done.sh")
        with open(self.hook, "w") as f:
            f.write(ARIA2_HOOK)
        os.chmod(self.hook, 0o755)

    def close(self):
        self.lan.teardown()

    # -- one run ------------------------------------------------------------

    def run(self, method, rep):
        """Runs `method` once; returns the result dict (ok False with an
        error when the method failed)."""
        res = {"bench": "lan-swarm", "time": datetime.datetime.now().isoformat(timespec="seconds"),
               "method": method, "run": rep, "clients": self.n // self.args.subnets,
               "workstations": self.n, "size_mib": self.args.size,
               "size_bytes": self.size, "origin_rate": self.args.origin_rate,
               "lan_rate": self.args.lan_rate, "piece_mib": self.args.piece_size,
               "metainfo_tool": self.metainfo_tool, "t_min": round(self.t_min, 3),
               "start": self.args.start, "subnets": self.args.subnets, "ok": False}
        dirs = []
        for h in self.lan.hosts:
            d = os.path.join(h.dir, "run-%s-%d" % (method, rep))
            shutil.rmtree(d, ignore_errors=True)
            os.makedirs(d)
            dirs.append(d)
        # Start with nothing left to write back: a run leaves up to 2 GiB of
        # dirty pages (N files, and dopt's cached copies), and their
        # writeback during the next run made that run 30 % slower (with
        # --keep, which does not delete them).
        os.sync()
        self.gate = StartGate(self.lan.dir)
        self.timeline = EgressTimeline(self.lan, os.path.join(self.lan.dir, "egress-%s-%d" % (method, rep)))
        try:
            runner = getattr(self, "_run_" + method.replace("-", "_"))
            runner(dirs, res)
            res["ok"] = True
        except MethodFailed as e:
            res["error"] = str(e)
        except unittest.SkipTest as e:
            res["error"] = "skipped: %s" % e
        except Exception as e:
            res["error"] = "%s: %s" % (type(e).__name__, e)
            if self.args.verbose:
                traceback.print_exc()
        finally:
            self.timeline.stop()
            self.gate.close()
            if not self.args.keep:
                for d in dirs:
                    shutil.rmtree(d, ignore_errors=True)
        return res

    def _measure_start(self):
        start = {"tx": self.lan.origin_tx_bytes(), "log": self.origin.log_offset()}
        if self.lan.router_ns:
            start["routed"] = sum(self.lan.routed_bytes().values())
        return start

    def _routed_figures(self, start, by_host):
        """Routed subnets: what crossed the router over the run, and the
        part of it that was not the origin's (peers in one subnet serving
        another), each over the file size."""
        routed = sum(self.lan.routed_bytes().values()) - start["routed"]
        origin_routed = sum(by_host[h.name] for h in self.lan.hosts if h.subnet != 0)
        return {"routed_ratio": round(routed / self.size, 4),
                "routed_peer_ratio": round(max(0, routed - origin_routed) / self.size, 4)}

    def _finish(self, res, start, starts, done, outputs, egress_at_done):
        """Fills the common figures of a run in which every client is done:
        client i started at starts[i] and was done at done[i]."""
        time.sleep(0.5)  # the last ACKs and FINs
        t0 = starts[0]
        tx = self.lan.origin_tx_bytes() - start["tx"]
        body = self.origin.body_bytes_sent(since=start["log"])
        by_host = self.origin.bytes_by_host(since=start["log"])
        times = [d - t0 for d in done]
        bad = []
        for h, p in zip(self.lan.hosts, outputs):
            if not os.path.exists(p):
                bad.append("%s: no file" % h.name)
            elif netns.sha256_file(p) != self.sha:
                bad.append("%s: sha256 differs" % h.name)
        res.update({
            "egress_bytes": tx, "egress_ratio": round(tx / self.size, 4),
            "egress_at_done_ratio": round(egress_at_done / self.size, 4),
            "origin_http_body_bytes": body, "origin_http_ratio": round(body / self.size, 4),
            "origin_bytes_by_host": by_host,
            "done_s": [round(t, 3) for t in times],
            "first_done_s": round(done[0] - starts[0], 3), "last_done_s": round(max(times), 3),
            "sha256_ok": not bad,
        })
        if self.lan.router_ns:
            res.update(self._routed_figures(start, by_host))
        if res["method"].startswith("mixed") or res["method"] == "aria2":
            res["origin_overlap"] = origin_overlap(
                self.origin.log_entries(since=start["log"]), t0, self.size,
                {h.ip: ("aria2" if res["method"] == "aria2" or i >= self.n // 2 else "dopt")
                 for i, h in enumerate(self.lan.hosts)})
        if self.args.start == "together":
            res["first_done_s"] = round(min(times), 3)
            res["last_over_tmin"] = round(max(times) / self.t_min, 3)
            busy = self.timeline.busy(t0, start["tx"], egress_at_done, self.size)
            if None not in busy:
                res["origin_busy_s"] = [round(t, 3) for t in busy]
        else:
            durations = [d - s for s, d in zip(starts, done)]
            later = self.lan.hosts[1:]
            res.update({
                "durations_s": [round(t, 3) for t in durations],
                "later_max_s": round(max(durations[1:], default=0), 3),
                "later_origin_max": round(max((by_host[h.name] for h in later), default=0)
                                          / self.size, 4)})
        if bad:
            raise MethodFailed("wrong output: " + ", ".join(bad))

    def _go(self, procs, check_done, what, holds=None):
        """Starts the clients (self.gate) and polls check_done(i) -> done
        timestamp or None (it raises MethodFailed when a client failed)
        until every one is done. --start together: all at one instant;
        staggered: one after another, each started once the one before is
        done and, when `holds` is given, holds(i) says that client now
        holds the file for the others. Returns (start timestamps, done
        timestamps, origin egress counter when the last was done)."""
        done = [None] * self.n
        if self.args.start == "together":
            t0 = self.gate.release(procs)
            self._wait_done(check_done, range(self.n), done, t0 + self.timeout, what)
            return [t0] * self.n, done, self.lan.origin_tx_bytes()
        self.gate.wait_ready(procs)
        starts = []
        deadline = time.time() + self.timeout
        for i in range(self.n):
            starts.append(self.gate.release_one(i))
            self._wait_done(check_done, [i], done, deadline, what)
            if holds and i + 1 < self.n:
                try:
                    netns.wait_for(lambda: holds(i), HOLD_TIMEOUT, interval=0.02,
                                   what="%s holding the file" % self.lan.hosts[i].name)
                except AssertionError as e:
                    raise MethodFailed("%s: %s" % (what, e))
        return starts, done, self.lan.origin_tx_bytes()

    def _wait_done(self, check_done, clients, done, deadline, what):
        """Fills done[i] for each client i of `clients` by polling
        check_done(i); MethodFailed at the deadline."""
        while True:
            for i in clients:
                if done[i] is None:
                    done[i] = check_done(i)
            if all(done[i] is not None for i in clients):
                return
            if time.time() > deadline:
                late = [self.lan.hosts[i].name for i in clients if done[i] is None]
                raise MethodFailed("%s: not done after %.0f s: %s" % (what, self.timeout,
                                                                     " ".join(late)))
            time.sleep(0.02)

    # -- curl -----------------------------------------------------------------

    def _run_curl(self, dirs, res):
        outputs = [os.path.join(d, FILE_NAME) for d in dirs]
        errs = [open(os.path.join(d, "curl.err"), "wb") for d in dirs]
        procs = [self.lan.run(h, self.gate.wrap(["curl", "-sS", "--fail", "--max-time",
                                                 str(int(self.timeout)), "-o", out, self.url]),
                              stdout=subprocess.DEVNULL, stderr=e)
                 for h, out, e in zip(self.lan.hosts, outputs, errs)]
        for e in errs:
            e.close()
        start = self._measure_start()
        ended = [None] * self.n

        def check(i):
            if ended[i] is None and procs[i].poll() is not None:
                ended[i] = time.time()
                if procs[i].returncode != 0:
                    raise MethodFailed("curl on %s: exit %d: %s" % (
                        self.lan.hosts[i].name, procs[i].returncode,
                        netns.tail(os.path.join(dirs[i], "curl.err"), 3)))
            return ended[i]

        try:
            starts, done, at_done = self._go(procs, check, "curl")
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        self._finish(res, start, starts, done, outputs, at_done - start["tx"])

    # -- aria2 ----------------------------------------------------------------

    def _run_aria2(self, dirs, res):
        if not shutil.which("aria2c"):
            raise MethodFailed("aria2c is not installed (scripts/setup-deps installs aria2)")
        outputs = [os.path.join(d, FILE_NAME) for d in dirs]
        procs = [self._start_aria2(h, d, self.torrent) for h, d in zip(self.lan.hosts, dirs)]
        start = self._measure_start()

        def check(i):
            return self._aria2_done(i, procs[i], dirs[i])

        try:
            starts, done, at_done = self._go(procs, check, "aria2")
        finally:
            stop_aria2(procs)
        self._finish(res, start, starts, done, outputs, at_done - start["tx"])

    def _start_aria2(self, h, d, torrent):
        """aria2c on workstation h for `torrent`, into folder d, held at the
        start gate; it writes d/done when every piece is in."""
        env = netns.child_env()
        env["SWARM_DONE_FILE"] = os.path.join(d, "done")
        argv = ["aria2c", "--dir=" + d,
                "--enable-dht=false", "--enable-dht6=false", "--bt-enable-lpd=true",
                "--bt-lpd-interface=" + h.ifname, "--listen-port=6881",
                "--disable-ipv6=true",
                # keep seeding until we stop it, once every client is done
                "--seed-ratio=0.0",
                "--file-allocation=none", "--allow-overwrite=true",
                "--auto-file-renaming=false", "--bt-save-metadata=false",
                "--summary-interval=0", "--console-log-level=warn",
                "--log=" + os.path.join(d, "aria2.log"), "--log-level=notice",
                "--on-bt-download-complete=" + self.hook,
                "--stop-with-process=%d" % os.getpid(),
                torrent]
        with open(os.path.join(d, "aria2.out"), "wb") as out:
            return self.lan.run(h, self.gate.wrap(argv), stdout=out, stderr=out, env=env)

    def _aria2_done(self, i, proc, d):
        """Workstation i's aria2c: its done timestamp, or None; MethodFailed
        when it exited first."""
        mark = os.path.join(d, "done")
        if os.path.exists(mark):
            with open(mark) as f:
                return float(f.read().strip())
        if proc.poll() is not None:
            raise MethodFailed("aria2c on %s exited with %d before it was done: %s" % (
                self.lan.hosts[i].name, proc.returncode, netns.tail(os.path.join(d, "aria2.out"), 3)))
        return None

    # -- dopt -----------------------------------------------------------------

    def _run_mixed(self, dirs, res):
        if not shutil.which("aria2c"):
            raise MethodFailed("aria2c is not installed (scripts/setup-deps installs aria2)")
        self._run_dopt(dirs, res, url=self.v1_url(), aria2_hosts=self.n // 2)

    def _run_mixed_aria2(self, dirs, res):
        """The control of mixed: its aria2 half alone (the last half of the
        workstations run aria2c on the v1 metainfo, the first half idle).
        Together only; the figures are of the aria2 clients."""
        if not shutil.which("aria2c"):
            raise MethodFailed("aria2c is not installed (scripts/setup-deps installs aria2)")
        if self.args.start != "together":
            raise MethodFailed("mixed-aria2 runs with --start together only")
        half = self.n // 2
        hosts, dirs = self.lan.hosts[half:], dirs[half:]
        v1_torrent = os.path.join(self.lan.docroot, V1_DIR, FILE_NAME + ".torrent")
        procs = [self._start_aria2(h, d, v1_torrent) for h, d in zip(hosts, dirs)]
        start = self._measure_start()
        done = [None] * len(procs)
        try:
            t0 = self.gate.release(procs)
            self._wait_done(lambda i: self._aria2_done(half + i, procs[i], dirs[i]),
                            range(len(procs)), done, t0 + self.timeout, "mixed-aria2")
        finally:
            stop_aria2(procs)
        time.sleep(0.5)
        tx = self.lan.origin_tx_bytes() - start["tx"]
        entries = self.origin.log_entries(since=start["log"])
        times = [d - t0 for d in done]
        res.update({
            "egress_bytes": tx, "egress_ratio": round(tx / self.size, 4),
            "origin_bytes_by_host": self.origin.bytes_by_host(since=start["log"]),
            "origin_overlap": origin_overlap(entries, t0, self.size,
                                             {h.ip: "aria2" for h in hosts}),
            "done_s": [round(t, 3) for t in times], "first_done_s": round(min(times), 3),
            "last_done_s": round(max(times), 3),
            "last_over_tmin": round(max(times) / self.t_min, 3)})
        bad = [h.name for h, d in zip(hosts, dirs)
               if netns.sha256_file(os.path.join(d, FILE_NAME)) != self.sha]
        res["sha256_ok"] = not bad
        if bad:
            raise MethodFailed("wrong output: " + ", ".join(bad))

    def _run_mixed_base(self, dirs, res):
        self._with_baseline_build(self._run_mixed, dirs, res)

    def v1_url(self):
        """V1_DIR/swarm.bin (the same bytes) with v1 metainfo beside it, made
        on first use; its URL."""
        folder = os.path.join(self.lan.docroot, V1_DIR)
        url = self.lan.origin_url(V1_DIR + "/" + FILE_NAME)
        if not os.path.isdir(folder):
            os.makedirs(folder)
            os.link(self.path, os.path.join(folder, FILE_NAME))
            p = subprocess.run([netns.harness.dopt_path(), "publish", "--v1", os.path.join(folder, FILE_NAME),
                                "--web-seed", url], capture_output=True, text=True,
                               stdin=subprocess.DEVNULL, env=netns.child_env())
            if p.returncode != 0:
                raise MethodFailed("dopt publish --v1: %s" % p.stderr.strip())
        return url

    def _run_dopt_http(self, dirs, res):
        self._run_dopt(dirs, res, extra_config="[p2p]\nmetainfo_probe = false\n",
                       staggered_holds=False)

    def _run_dopt_sha256(self, dirs, res):
        self._run_dopt(dirs, res, url=self.plain_url, get_args=("--sha256", self.sha))

    def _run_dopt_lsd(self, dirs, res):
        self._run_dopt(dirs, res, peers=())

    def _run_dopt_tracker(self, dirs, res):
        if not self.tracker:
            raise MethodFailed("dopt-tracker needs --subnets (the tracker lives there)")
        self._run_dopt(dirs, res, peers=(), extra_config=trackers_toml(self.tracker.http_url()))

    def _run_dopt_tracker_down(self, dirs, res):
        self._run_dopt(dirs, res, peers=(), extra_config=trackers_toml(TRACKER_DOWN_URL))

    def _run_dopt_base(self, dirs, res):
        self._with_baseline_build(self._run_dopt, dirs, res)

    def _run_dopt_lsd_base(self, dirs, res):
        self._with_baseline_build(self._run_dopt_lsd, dirs, res)

    def _run_dopt_tracker_base(self, dirs, res):
        self._with_baseline_build(self._run_dopt_tracker, dirs, res)

    def _run_dopt_sha256_base(self, dirs, res):
        self._with_baseline_build(self._run_dopt_sha256, dirs, res)

    def _with_baseline_build(self, run, dirs, res):
        current = os.environ["DOPT_BUILD_DIR"]
        os.environ["DOPT_BUILD_DIR"] = self.args.baseline_build
        try:
            run(dirs, res)
        finally:
            os.environ["DOPT_BUILD_DIR"] = current

    def _run_dopt(self, dirs, res, extra_config="", url=None, get_args=(), staggered_holds=True,
                  peers="all", aria2_hosts=0):
        """Every workstation's agent runs `dopt get URL GET_ARGS` (default:
        the URL with metainfo beside it), with LSD on and `peers` as its
        static peers (default every other workstation). Staggered, the next
        client starts once the one before seeds the file from its peer
        cache (unless not staggered_holds: an agent that goes HTTP only
        never does). The last `aria2_hosts` workstations run aria2c on URL's
        metainfo instead."""
        try:
            netns.harness.doptd_path()
        except unittest.SkipTest as e:
            raise MethodFailed(str(e))
        for exe in (netns.harness.doptd_path(), netns.harness.dopt_path()):
            if not os.access(exe, os.X_OK):
                raise MethodFailed("no %s (build doptd and dopt_cli)" % exe)
        # curl -o and aria2 leave the file in the page cache; so does dopt
        # here (sync_on_complete = false), or the one shared VM disk, not the
        # network, decides who is last. --dopt-config can turn it back on.
        extra = ('log_level = "%s"\n[http]\nlow_speed_time = 30\n'
                 '[jobs]\nsync_on_complete = false\n' % self.args.dopt_log_level) + \
            (self.args.dopt_config or "") + extra_config
        agents = []
        aria2 = []
        n_dopt = self.n - aria2_hosts
        try:
            for h, d in zip(self.lan.hosts[:n_dopt], dirs):
                a = self.lan.start_agent(h, extra_toml=extra, peers=peers,
                                         name="agent-" + os.path.basename(d), start=False)
                agents.append(a)
            for a in agents:
                a.spawn()
            for a in agents:
                try:
                    netns.wait_for(lambda: a.dopt("list", timeout=5)[0] == 0 or
                                   a.proc.poll() is not None, 20, what="doptd")
                except AssertionError:
                    pass
                if not a.running() or a.dopt("list", timeout=5)[0] != 0:
                    raise MethodFailed("doptd on %s did not start: %s" % (
                        a.host.name, netns.tail(a.log, 5)))
            outputs = [os.path.join(d, FILE_NAME) for d in dirs]
            procs = [a.get_async(url or self.url, out, *get_args, stderr=subprocess.PIPE,
                                 wrap=self.gate.wrap)
                     for a, out in zip(agents, outputs)]
            v1_torrent = os.path.join(self.lan.docroot, V1_DIR, FILE_NAME + ".torrent")
            aria2 = [self._start_aria2(h, d, v1_torrent)
                     for h, d in zip(self.lan.hosts[n_dopt:], dirs[n_dopt:])]
            procs += aria2
            start = self._measure_start()
            ended = [None] * self.n

            def check(i):
                if i >= n_dopt:
                    return self._aria2_done(i, procs[i], dirs[i])
                if ended[i] is None and procs[i].poll() is not None:
                    ended[i] = time.time()
                    if procs[i].returncode != 0:
                        err = procs[i].stderr.read().decode(errors="replace").strip()
                        raise MethodFailed("dopt get on %s: exit %d: %s | agent log: %s" % (
                            self.lan.hosts[i].name, procs[i].returncode, err[-300:],
                            netns.tail(agents[i].log, 3)))
                return ended[i]

            try:
                starts, done, at_done = self._go(
                    procs, check, "dopt", holds=(lambda i: seeding(agents[i])) if staggered_holds
                    else None)
            finally:
                for p in procs[:n_dopt]:
                    if p.poll() is None:
                        p.kill()
                        p.wait()
                stop_aria2(aria2)
            self._finish(res, start, starts, done, outputs, at_done - start["tx"])
            per = []
            for a in agents:
                try:
                    jobs = a.jobs()
                    j = jobs[-1] if jobs else {}
                    per.append({k: j.get(k) for k in ("state", "bytes_from_peers",
                                                       "bytes_from_origin")})
                except Exception as e:
                    per.append({"error": str(e)})
            res["dopt_jobs"] = per
        finally:
            for a in agents:
                a.stop()
            if not self.args.keep:
                for a in agents:
                    shutil.rmtree(a.dir, ignore_errors=True)


# Blocks of the file the origin overlap is counted in.
OVERLAP_BLOCK = 64 * 1024


def parse_range_start(header):
    """The first byte of a "bytes=A-" or "bytes=A-B" Range header; 0 without one."""
    if header.startswith("bytes="):
        try:
            return int(header[6:].split("-")[0])
        except ValueError:
            pass
    return 0


def origin_overlap(entries, t0, size, group_of):
    """Who took which bytes of the file from the origin, and when, from
    nginx's log of one run: group_of maps a client address to "dopt" or
    "aria2". Each request is taken to have sent its bytes evenly from its
    start to its end (nginx logs $msec at the end and $request_time), in
    blocks of OVERLAP_BLOCK. For each group: the bytes it took over the
    file size ("<g>"), and of them the bytes the origin had already sent
    to someone ("<g>_again": of which to its own group "<g>_again_own",
    and when the first copy had been sent at least 1 s earlier,
    "<g>_again_1s"); "unique": the part of the file the origin sent at
    all. Also per group the seconds (after t0) of its first and last byte
    from the origin."""
    blocks = (size + OVERLAP_BLOCK - 1) // OVERLAP_BLOCK
    first = [None] * blocks        # (time, group) of the first copy of each block
    sends = []                     # (time, group, block, bytes)
    for e in entries:
        g = group_of.get(e.client)
        if g is None or e.status not in (200, 206) or e.bytes <= 0:
            continue
        begin = parse_range_start(e.range) if e.status == 206 else 0
        start_t, end_t = e.msec - e.request_time - t0, e.msec - t0
        pos = begin
        while pos < begin + e.bytes and pos < size:
            b = pos // OVERLAP_BLOCK
            n = min((b + 1) * OVERLAP_BLOCK, begin + e.bytes) - pos
            t = start_t + (end_t - start_t) * (pos + n - begin) / e.bytes
            sends.append((t, g, b, n))
            pos += n
    sends.sort()
    out = {}
    seen = [0] * blocks
    for t, g, b, n in sends:
        for k in ("", "_again", "_again_own", "_again_1s"):
            out.setdefault(g + k, 0)
        out[g] += n
        if first[b] is None:
            first[b] = (t, g)
        else:
            out[g + "_again"] += n
            if first[b][1] == g:
                out[g + "_again_own"] += n
            if t - first[b][0] >= 1.0:
                out[g + "_again_1s"] += n
        seen[b] = 1
        span = out.setdefault(g + "_span_s", [t, t])
        span[0], span[1] = min(span[0], t), max(span[1], t)
    res = {k: (round(v / size, 4) if isinstance(v, int) else [round(x, 2) for x in v])
           for k, v in out.items()}
    res["unique"] = round(sum(seen) * OVERLAP_BLOCK / size, 4)
    return res


def trackers_toml(*urls):
    return "[p2p]\ntrackers = [%s]\n" % ", ".join('"%s"' % u for u in urls)


def stop_aria2(procs):
    """Stops aria2c processes (seeding until stopped)."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def seeding(agent):
    """True when the agent seeds a complete copy from its peer cache."""
    rc, out, _ = agent.dopt("cache", "list", "--json", timeout=5)
    return rc == 0 and any(e["complete"] and e["seeding"] for e in json.loads(out))


# ---------------------------------------------------------------------------
# reporting


def med(xs):
    return statistics.median(xs) if xs else float("nan")


# The table's figures (key in a result, heading, format) for each --start.
# Staggered, "later" are the clients 2..N, each started once the one before
# was done: the slowest one's time, and the largest share of the file the
# origin sent one of them (its access log).
COLUMNS = {
    "together": (("egress_ratio", "egress/size", "%.2f"), ("first_done_s", "first done (s)", "%.1f"),
                 ("last_done_s", "last done (s)", "%.1f"), ("last_over_tmin", "last/T_min", "%.2f")),
    "staggered": (("egress_ratio", "egress/size", "%.2f"), ("first_done_s", "first (s)", "%.1f"),
                  ("later_max_s", "slowest later (s)", "%.1f"),
                  ("later_origin_max", "later from origin", "%.3f")),
}


# Routed subnets add what crossed the router over the file size: all of
# it, and what was not the origin's (peers of one subnet serving another).
ROUTED_COLUMNS = (("routed_ratio", "routed/size", "%.2f"),
                  ("routed_peer_ratio", "peers routed/size", "%.2f"))


def columns(start, subnets):
    return COLUMNS[start] + (ROUTED_COLUMNS if subnets > 1 else ())


def summarize(results, n, methods, start, subnets=1):
    rows = []
    for m in methods:
        rs = [r for r in results if r["method"] == m and r["clients"] == n
              and r.get("start", "together") == start and r.get("subnets", 1) == subnets]
        ok = [r for r in rs if r["ok"]]
        row = {"method": m, "clients": n, "runs": len(rs), "ok": len(ok)}
        if ok:
            for key, _, _ in columns(start, subnets):
                xs = [r[key] for r in ok]
                row[key] = (med(xs), min(xs), max(xs))
        first = 1 if start == "staggered" else 0   # staggered: the later clients
        shares = [j["bytes_from_peers"] / r["size_bytes"] for r in ok
                  for j in r.get("dopt_jobs", [])[first:] if isinstance(j.get("bytes_from_peers"), int)]
        if shares:
            row["from_peers"] = (med(shares), min(shares), max(shares))
        errs = [r.get("error", "") for r in rs if not r["ok"]]
        row["errors"] = errs
        rows.append(row)
    return rows


def print_table(rows, n, args, t_min):
    cols = columns(args.start, args.subnets)
    width = max([11] + [len(r["method"]) for r in rows])
    where = "N=%d clients" % n if args.subnets == 1 else \
        "%d routed subnets x %d clients" % (args.subnets, n)
    print()
    print("LAN swarm: %s %s, %d MiB, origin %s, LAN %s, %d run(s) each; "
          "T_min = %.2f s" % (where, "at once" if args.start == "together" else "one after another",
                              args.size, args.origin_rate, args.lan_rate, args.runs, t_min))
    hdr = "%-*s %5s  " % (width, "method", "ok") + " ".join("%-22s" % h for _, h, _ in cols)
    print(hdr)
    print("-" * len(hdr))

    def cell(t, fmt):
        return (fmt + " [" + fmt + "-" + fmt + "]") % t

    for r in rows:
        okcol = "%d/%d" % (r["ok"], r["runs"])
        if r["ok"]:
            print("%-*s %5s  " % (width, r["method"], okcol) +
                  " ".join("%-22s" % cell(r[key], fmt) for key, _, fmt in cols))
            if "from_peers" in r:
                print("       bytes from peers per %sclient (job status): %.0f%% [%.0f%%-%.0f%%]"
                      % (("later " if args.start == "staggered" else "",) +
                         tuple(100 * x for x in r["from_peers"])))
        else:
            print("%-*s %5s  FAILED" % (width, r["method"], okcol))
        for e in sorted(set(r["errors"])):
            print("       ! %s" % e[:400])
    print("(median [min-max] over the successful runs; egress = bytes on the origin's link "
          "/ file size)")
    subnets_field = "subnets=%d " % args.subnets if args.subnets > 1 else ""
    for r in rows:
        if not r["ok"]:
            print("RESULT lan-swarm clients=%d %s%smethod=%s FAILED ok=0/%d" % (
                n, subnets_field, "start=staggered " if args.start == "staggered" else "",
                r["method"], r["runs"]))
        elif args.start == "together":
            routed = " routed=%.2fx peers_routed=%.2fx" % (
                r["routed_ratio"][0], r["routed_peer_ratio"][0]) if args.subnets > 1 else ""
            print("RESULT lan-swarm clients=%d %smethod=%s egress=%.2fx last_done=%.1fs "
                  "last/T_min=%.2f%s ok=%d/%d" % (n, subnets_field, r["method"],
                                                  r["egress_ratio"][0], r["last_done_s"][0],
                                                  r["last_over_tmin"][0], routed, r["ok"], r["runs"]))
        else:
            print("RESULT lan-swarm clients=%d %sstart=staggered method=%s egress=%.2fx "
                  "later_from_origin_max=%.1f%% later_max=%.1fs ok=%d/%d" % (
                      n, subnets_field, r["method"], r["egress_ratio"][0], 100 * r["later_origin_max"][0],
                      r["later_max_s"][0], r["ok"], r["runs"]))
    sys.stdout.flush()


def plot(all_rows, args, path):
    if args.start != "together":
        log("lan-swarm: no plot for --start %s (it plots last/T_min)" % args.start)
        return False
    if not shutil.which("gnuplot"):
        log("lan-swarm: no gnuplot, no plot (scripts/setup-deps installs gnuplot-nox)")
        return False
    ns = sorted({r["clients"] for r in all_rows})
    methods = [m for m in args.methods if any(r["method"] == m and r["ok"] for r in all_rows)]
    if not methods:
        log("lan-swarm: nothing succeeded, no plot")
        return False
    tmp = tempfile.mkdtemp(prefix="dopt-lan-swarm-plot-")
    try:
        data = os.path.join(tmp, "data")
        title = "%d MiB, origin %s, LAN %s" % (args.size, args.origin_rate, args.lan_rate)
        if len(ns) == 1:
            with open(data, "w") as f:
                f.write("# method egress egmin egmax tmin tmmin tmmax\n")
                for r in all_rows:
                    if r["ok"] and r["method"] in methods:
                        f.write("%s %g %g %g %g %g %g\n" % ((r["method"],) + r["egress_ratio"] +
                                                            r["last_over_tmin"]))
            script = f"""
set terminal pngcairo size 1000,450 noenhanced
set output '{path}'
set multiplot layout 1,2 title 'LAN swarm: N={ns[0]}, {title}'
set style fill solid 0.6 border -1
set boxwidth 0.6
set yrange [0:*]
set offsets 0.5, 0.5, 0, 0
set xtics scale 0
set grid ytics
set key off
set arrow from graph 0, first 1 to graph 1, first 1 nohead dt 2 lc rgb '#444444'
set title 'origin egress / file size (median, min-max)'
plot '{data}' using 0:2:xtic(1) with boxes lc rgb '#4477aa', \\
     '' using 0:2:3:4 with yerrorbars lc rgb 'black' pt 0, \\
     '' using 0:4:(sprintf('%.2f', $2)) with labels offset 0,0.8
set title 'last done / T_min (median, min-max)'
plot '{data}' using 0:5:xtic(1) with boxes lc rgb '#cc6677', \\
     '' using 0:5:6:7 with yerrorbars lc rgb 'black' pt 0, \\
     '' using 0:7:(sprintf('%.2f', $5)) with labels offset 0,0.8
unset multiplot
"""
        else:
            plots_e, plots_t = [], []
            for m in methods:
                fn = os.path.join(tmp, m)
                with open(fn, "w") as f:
                    for r in all_rows:
                        if r["method"] == m and r["ok"]:
                            f.write("%d %g %g %g %g %g %g\n" % ((r["clients"],) + r["egress_ratio"] +
                                                                r["last_over_tmin"]))
                plots_e.append("'%s' using 1:2:3:4 with yerrorlines lw 2 title '%s'" % (fn, m))
                plots_t.append("'%s' using 1:5:6:7 with yerrorlines lw 2 title '%s'" % (fn, m))
            script = f"""
set terminal pngcairo size 1100,450 noenhanced
set output '{path}'
set multiplot layout 1,2 title 'LAN swarm vs number of clients: {title}'
set xlabel 'clients (N)'
set xtics ({", ".join(str(n) for n in ns)})
set logscale x 2
set xrange [{ns[0] / 1.25}:{ns[-1] * 1.25}]
set yrange [0:*]
set grid
set key top left
set arrow from graph 0, first 1 to graph 1, first 1 nohead dt 2 lc rgb '#444444'
set title 'origin egress / file size'
plot {", ".join(plots_e)}
set title 'last done / T_min'
plot {", ".join(plots_t)}
unset multiplot
"""
        sp = os.path.join(tmp, "plot.gp")
        with open(sp, "w") as f:
            f.write(script)
        p = subprocess.run(["gnuplot", sp], capture_output=True, text=True)
        if p.returncode != 0:
            log("lan-swarm: gnuplot failed: %s" % p.stderr.strip())
            return False
        log("lan-swarm: plot written to %s" % path)
        return True
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------


def run_line(r):
    """One successful run's figures, for the progress log."""
    line = "egress %.2fx, first %.1f s, last %.1f s" % (r["egress_ratio"], r["first_done_s"],
                                                       r["last_done_s"])
    if "last_over_tmin" in r:
        line += " (%.2f x T_min)" % r["last_over_tmin"]
    if "later_max_s" in r:
        line += "; later: slowest %.1f s, at most %.1f %% from the origin" % (
            r["later_max_s"], 100 * r["later_origin_max"])
    if "origin_busy_s" in r:
        line += "; origin busy %.2f-%.2f s" % tuple(r["origin_busy_s"])
    if "routed_ratio" in r:
        line += "; routed %.2fx (peers %.2fx)" % (r["routed_ratio"], r["routed_peer_ratio"])
    return line


def machine_info():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return "%s, %d cores, Linux %s" % (cpu, os.cpu_count() or 0, platform.release())


def parse_args(argv):
    ap = argparse.ArgumentParser(
        prog="bench/lan-swarm",
        description="N workstations fetch one file over a LAN in network namespaces: "
                    "curl vs aria2 (BitTorrent + web seed) vs dopt.")
    ap.add_argument("--clients", default="8",
                    help="number of workstations, or a list (2,4,8,16) for a plot vs N "
                         "(default 8)")
    ap.add_argument("--size", type=int, default=128, help="file size in MiB (default 128)")
    ap.add_argument("--origin-rate", default="100mbit",
                    help="origin upload, a tc rate (default 100mbit)")
    ap.add_argument("--lan-rate", default="1gbit",
                    help="each workstation's up and down link, a tc rate (default 1gbit)")
    ap.add_argument("--runs", type=int, default=3, help="repetitions of each method (default 3)")
    ap.add_argument("--methods",
                    help="comma-separated, of curl,aria2,dopt,dopt-sha256 (default all; "
                         "dopt-sha256: no metainfo at the origin, `dopt get --sha256`) and "
                         "dopt-http (dopt's HTTP-only path), dopt-base and dopt-sha256-base "
                         "(dopt and dopt-sha256 of --baseline-build; also dopt-lsd-base and "
                         "dopt-tracker-base), dopt-lsd (no static "
                         "peers), dopt-tracker and dopt-tracker-down (LSD and a tracker, up "
                         "or down; with --subnets the default is curl,dopt-lsd,dopt-tracker,"
                         "dopt-tracker-down)")
    ap.add_argument("--subnets", type=int, default=1, metavar="K",
                    help="K routed subnets of --clients workstations each, the origin and "
                         "opentracker in the first (default 1: one LAN)")
    ap.add_argument("--start", choices=STARTS, default="together",
                    help="together: every client at one instant (default); staggered: one "
                         "after another, each once the one before is done and, for dopt, "
                         "seeds its copy")
    ap.add_argument("--baseline-build", metavar="DIR",
                    help="a second dopt build directory (e.g. of the commit before a change), "
                         "run as method dopt-base in the same rounds as dopt")
    ap.add_argument("--piece-size", type=int, default=1,
                    help="metainfo piece size in MiB, a power of 2 (default 1)")
    ap.add_argument("--results", default=os.path.join(os.environ.get("TMPDIR", "/tmp"),
                                                      "dopt-lan-swarm.jsonl"),
                    help="JSON lines file the raw results are appended to "
                         "(default $TMPDIR/dopt-lan-swarm.jsonl)")
    ap.add_argument("--plot", metavar="FILE.png", help="write a PNG plot with gnuplot")
    ap.add_argument("--replot", metavar="RESULTS.jsonl",
                    help="run nothing: print the tables (and --plot) of the results in this "
                         "file that match --clients, --size, --origin-rate, --lan-rate")
    ap.add_argument("--timeout", type=float,
                    help="seconds a run may take (default 60 + 2.5 x N x S/U)")
    ap.add_argument("--dopt-config", default="",
                    help="extra TOML for every agent's config (one key a line)")
    ap.add_argument("--dopt-log-level", default="info")
    ap.add_argument("--work-dir", help="parent of the temp dir (default $TMPDIR or /tmp)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir and logs")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args(argv)
    try:
        a.clients = [int(x) for x in str(a.clients).split(",") if x.strip()]
    except ValueError:
        ap.error("--clients: integers, comma-separated")
    if not a.clients or any(not 1 <= n <= netns.MAX_HOSTS for n in a.clients):
        ap.error("--clients: 1..%d" % netns.MAX_HOSTS)
    if not 1 <= a.subnets <= netns.MAX_SUBNETS:
        ap.error("--subnets: 1..%d" % netns.MAX_SUBNETS)
    if any(n * a.subnets > netns.MAX_HOSTS for n in a.clients):
        ap.error("--clients x --subnets: at most %d workstations" % netns.MAX_HOSTS)
    if a.methods is None:
        a.methods = ",".join(SUBNET_METHODS if a.subnets > 1 else ALL_METHODS)
    a.methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    known = list(dict.fromkeys(ALL_METHODS + EXTRA_METHODS + BASELINE_METHODS + SUBNET_METHODS))
    for m in a.methods:
        if m not in known:
            ap.error("unknown method %r (%s)" % (m, ", ".join(known)))
    if any(m in a.methods for m in BASELINE_METHODS) != bool(a.baseline_build):
        ap.error("methods %s and --baseline-build DIR go together" % ", ".join(BASELINE_METHODS))
    if a.baseline_build:
        a.baseline_build = os.path.abspath(a.baseline_build)
    if a.size < 1 or a.runs < 1:
        ap.error("--size and --runs must be positive")
    if a.piece_size < 1 or a.piece_size & (a.piece_size - 1):
        ap.error("--piece-size must be a power of 2")
    for r in (a.origin_rate, a.lan_rate):
        try:
            netns.parse_rate(r)
        except ValueError as e:
            ap.error(str(e))
    return a


def replot(args):
    results = []
    with open(args.replot) as f:
        for line in f:
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if (r.get("bench") == "lan-swarm" and r.get("clients") in args.clients and
                    r.get("size_mib") == args.size and r.get("origin_rate") == args.origin_rate
                    and r.get("lan_rate") == args.lan_rate and r.get("method") in args.methods
                    and r.get("start", "together") == args.start
                    and r.get("subnets", 1) == args.subnets):
                results.append(r)
    if not results:
        log("lan-swarm: no results in %s match" % args.replot)
        return 1
    all_rows = []
    for n in args.clients:
        rs = [r for r in results if r["clients"] == n]
        if rs:
            rows = summarize(rs, n, args.methods, args.start, args.subnets)
            args.runs = max(r["ok"] + len(r["errors"]) for r in rows)
            print_table(rows, n, args, rs[0]["t_min"])
            all_rows.extend(rows)
    if args.plot:
        plot(all_rows, args, args.plot)
    return 0


def main(argv):
    args = parse_args(argv)
    if args.replot:
        return replot(args)
    reason = netns.unavailable_reason()
    if reason:
        log("lan-swarm: %s" % reason)
        return 1
    for tool in ("curl", netns.NGINX):
        if not shutil.which(tool):
            log("lan-swarm: %s is missing (run scripts/setup-deps)" % tool)
            return 1
    # SIGTERM/SIGHUP unwind through the finally blocks (teardown).
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda s, f: sys.exit(128 + s))
    build = os.environ.get("DOPT_BUILD_DIR", "")
    if any(m.startswith("dopt") for m in args.methods):
        try:
            with open(os.path.join(build, "CMakeCache.txt")) as f:
                btype = next((l.split("=", 1)[1].strip() for l in f
                              if l.startswith("CMAKE_BUILD_TYPE:")), "")
        except OSError:
            btype = ""
        if btype != "Release":
            log("lan-swarm: warning: %s is a '%s' build; dopt figures count only from Release"
                % (build or "(no DOPT_BUILD_DIR)", btype or "unknown"))
    log("lan-swarm: %s" % machine_info())
    all_rows = []
    results = []
    rf = open(args.results, "a")
    try:
        for n in args.clients:
            sw = Swarm(args, n)
            try:
                log("lan-swarm: N=%d%s, T_min=%.2f s, timeout %.0f s a run"
                    % (n, " in each of %d subnets" % args.subnets if args.subnets > 1 else "",
                       sw.t_min, sw.timeout))
                for rep in range(args.runs):
                    # rotate the order so no method always goes first
                    k = rep % len(args.methods)
                    order = args.methods[k:] + args.methods[:k]
                    for m in order:
                        t = time.time()
                        r = sw.run(m, rep)
                        r["machine"] = machine_info()
                        results.append(r)
                        rf.write(json.dumps(r, sort_keys=True) + "\n")
                        rf.flush()
                        if r["ok"]:
                            log("lan-swarm: N=%d run %d %-11s %s" % (n, rep + 1, m, run_line(r)))
                        else:
                            log("lan-swarm: N=%d run %d %-11s FAILED after %.1f s: %s"
                                % (n, rep + 1, m, time.time() - t, r.get("error")))
                rows = summarize(results, n, args.methods, args.start, args.subnets)
                print_table(rows, n, args, sw.t_min)
                all_rows.extend(rows)
            finally:
                sw.close()
    finally:
        rf.close()
    log("lan-swarm: raw results appended to %s" % args.results)
    if args.plot:
        plot(all_rows, args, args.plot)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        log("lan-swarm: interrupted")
        sys.exit(130)
