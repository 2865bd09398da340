"""Crash loop (issue 5, part 1): doptd is killed with SIGKILL again and again
-- at random moments and at the named crash points of common/crash_point.h --
while it runs a mix of HTTP-only and peer-assisted jobs, and is restarted on
the same state_dir each time. At the end nothing is lost or wrong.

    nginx 127.0.0.1     /slow/NAME (limit_rate) for A; /NAME for B; metainfo
                        of the peer-assisted content beside it (NAME.torrent)
    agent A 127.0.0.1   the one killed; static peer B; small [cache] max_size
                        so that torrents completing evict older ones
    agent B 127.0.0.2   never killed; fetches half of the peer-assisted
                        content shortly before A asks for it, and seeds it

Each iteration (re)starts A -- armed with DOPT_CRASH_AT=<point>:<visit> on
every other iteration, the points in rotation, else with a random SIGKILL
timer (some during start-up) --, adds jobs while fewer than max_jobs are
unfinished (HTTP-only: 2-3 files of 1.5-4 MiB, some with --sha256, one in
six with a wrong one; peer-assisted: 1-2 files), completes the transferred
ones, cancels one now and then, and waits for A to die. After each death:
`PRAGMA integrity_check` of A's jobs.db (read-only, A is dead); on every
other kill, what a power cut may leave of the unfinished partial files
(each its tail cut back, but not below the flushed prefix the job table
records, or padded with zeros: PowerCutTails); and, once A
is back, every job `dopt add` returned is listed, acknowledged ones stay
acknowledged, cancelled ones cancelled.

At the end (A started unarmed, run to the end, stopped with SIGTERM): every
job is ACKNOWLEDGED (after Complete) or CANCELLED, or in ERROR with the
integrity error its wrong SHA-256 asks for; every delivered file is the
origin's (sha256); no partial file is left; jobs.db passes integrity_check;
the origin bytes fetched again after each crash (nginx's access log:
bytes sent more than once for a range of a file, charged to the last crash
before the request started) stay within the bound the design gives
(RefetchBound below). Figures are printed; DOPT_CRASH_REPORT=FILE also
writes them as JSON (scripts/crash-loop prints them).

The agent bugs the loop found are pinned one by one, deterministically,
by the tests of CompleteAfterACrash and CacheAfterACrash (each says what it
found); the loop fails on them as on anything else.

Environment: DOPT_CRASH_ITERATIONS (default 18, every crash point once:
about 45 s on 2 cores; scripts/crash-loop runs 50), DOPT_CRASH_SEED
(default: random, printed; the same seed gives the same plan, not the same
timing), DOPT_CRASH_KEEP=1 (keep the run's folder, as after a failure). A
doptd built without crash points (-DDOPT_CRASH_POINTS=OFF) still runs the
random kills; the named iterations, and the two classes above, are skipped
with a message.
"""

import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "integration"))
import harness  # noqa: E402
from harness import MiB, free_port  # noqa: E402

# The points of common/crash_point.cpp (kCrashPointNames), in the order the
# loop takes them, each with the range of visits the loop picks from: a
# point reached often (a write per MiB) dies at a later visit, so that the
# crash lands mid-transfer rather than at its first byte.
CRASH_POINTS = [
    ("partial_write", (1, 6)),
    ("store_mid_commit", (1, 8)),
    ("complete_renamed", (1, 2)),
    ("swarm_piece_write", (1, 4)),
    ("complete_start", (1, 2)),
    ("file_transferred", (1, 3)),
    ("cache_row_deleted", (1, 1)),
    ("store_file_mid_commit", (1, 3)),
    ("complete_delivered", (1, 2)),
]

MAX_JOBS = 4                 # A's [jobs] max_jobs (the default)
SLOW_RATE = "4m"             # nginx limit_rate of /slow/, per connection
MAX_FILE = 4 * MiB           # largest file of any job
CACHE_MAX = 5 * MiB          # A's [cache] max_size: room for one torrent
AUTO_COMPLETE_GRACE = 8      # seconds an auto-complete job may stay TRANSFERRED
NAMED_WAIT = 15              # seconds an armed A may take to reach its point
FINAL_TIMEOUT = 180          # seconds for every job to end after the loop


def say(*args):
    sys.stderr.write("  " + " ".join(str(a) for a in args) + "\n")
    sys.stderr.flush()


def p2p_toml(listen, peers, extra=""):
    return ('[p2p]\nenabled = true\nlisten = "%s"\nlan_discovery = false\npeers = [%s]\n'
            % (listen, ", ".join('"%s"' % p for p in peers))) + extra


def publish(path, web_seed):
    p = subprocess.run([harness.dopt_path(), "publish", path, "--web-seed", web_seed,
                        "-o", path + ".torrent"],
                       capture_output=True, text=True, env=harness.clean_env(), timeout=60)
    if p.returncode != 0:
        raise AssertionError("dopt publish %s: exit %d: %s" % (path, p.returncode, p.stderr))


def crash_points_compiled_in():
    """Whether doptd has crash points: with DOPT_CRASH_AT set, such a doptd
    says "crash point armed" on stderr at start, before it handles even
    --version (common/crash_point.h). Every name of CRASH_POINTS must then be
    one it knows."""
    def probe(name):
        env = harness.clean_env()
        env["DOPT_CRASH_AT"] = name
        return subprocess.run([harness.doptd_path(), "--version"], capture_output=True,
                              text=True, env=env, timeout=10)
    first = probe(CRASH_POINTS[0][0])
    if "crash point armed" not in first.stderr:
        return False
    # A test build says so in --version, so nobody ships it by mistake.
    if "crash points compiled in" not in first.stdout:
        raise AssertionError("doptd --version does not say it is a test build: %r" % first.stdout)
    for name, _ in CRASH_POINTS:
        p = probe(name)
        if p.returncode != 0 or ("crash point armed: %s " % name) not in p.stderr:
            raise AssertionError("doptd does not know the crash point %s: exit %d, %s"
                                 % (name, p.returncode, p.stderr))
    return True


class PowerCutTails:
    """Makes the unfinished partial files of a dead agent look as a power
    cut may leave them: the bytes after the prefix flushed (files.
    durable_bytes) lost, or zeros appended (the size was written, the data
    not). Returns {"cut": n, "padded": n}."""

    @staticmethod
    def apply(db_path, rng):
        con = sqlite3.connect("file:%s?mode=ro" % db_path, uri=True, timeout=10)
        try:
            # An agent killed before its first migration committed left a
            # jobs.db without tables: no partial file to cut then.
            if not con.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' "
                               "AND name = 'files'").fetchone():
                return {"cut": 0, "padded": 0}
            rows = con.execute("SELECT partial_path, durable_bytes FROM files "
                               "WHERE completed = 0 AND partial_path != ''").fetchall()
        finally:
            con.close()
        done = {"cut": 0, "padded": 0}
        for path, durable in rows:
            try:
                size = os.path.getsize(path)
            except OSError:
                continue  # not created yet
            if rng.random() < 0.5:
                os.truncate(path, rng.randint(min(durable, size), size))
                done["cut"] += 1
            else:
                with open(path, "ab") as f:
                    f.write(b"\0" * rng.randrange(4096, 256 * 1024, 4096))
                done["padded"] += 1
        return done


def integrity_check(db_path):
    """PRAGMA integrity_check of a SQLite file no process has open; returns
    its answer ("ok" when sound)."""
    con = sqlite3.connect("file:%s?mode=ro" % db_path, uri=True, timeout=10)
    try:
        return "; ".join(str(r[0]) for r in con.execute("PRAGMA integrity_check"))
    finally:
        con.close()


# ---------------------------------------------------------------------------


class TimedNginx(harness.Nginx):
    """harness.Nginx whose access log also has $msec (when the request
    ended) and $request_time, so that a request's start can be placed
    between two crashes."""

    FORMAT = "log_format dopt '$status\\t$body_bytes_sent\\t$http_range\\t$request';"
    TIMED = "log_format dopt '$status\\t$body_bytes_sent\\t$http_range\\t$request\\t$msec\\t$request_time';"

    def _conf(self):
        conf = super()._conf()
        if self.FORMAT not in conf:
            raise AssertionError("harness.Nginx's log_format changed; update TimedNginx")
        # nginx sends up to sendfile_max_chunk (2 MiB) at once and only then
        # waits for limit_rate: small chunks make /slow/ steady, so that a
        # kill finds a transfer mid-way rather than between bursts.
        slow = "limit_rate %s;" % self.slow_rate
        if slow not in conf:
            raise AssertionError("harness.Nginx's /slow/ location changed; update TimedNginx")
        return conf.replace(self.FORMAT, self.TIMED).replace(
            slow, slow + "\n            sendfile_max_chunk 64k;")

    def requests(self):
        """[{status, sent, start, end, offset, path}] of every logged GET."""
        out = []
        try:
            with open(self.access_log) as f:
                lines = f.readlines()
        except FileNotFoundError:
            return out
        for line in lines:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 6:
                continue
            req = parts[3].split(" ")
            if len(req) < 2 or req[0] != "GET":
                continue
            m = re.match(r"bytes=(\d+)-", parts[2])
            end = float(parts[4])
            out.append({"status": int(parts[0]), "sent": int(parts[1]),
                        "offset": int(m.group(1)) if m else 0,
                        "path": req[1].split("?")[0],
                        "end": end, "start": end - float(parts[5])})
        return out


class CrashAgent(harness.Agent):
    """harness.Agent started with DOPT_CRASH_AT=`crash_at` (None: unarmed);
    `log_mark` is where the current run's lines begin in the log."""

    crash_at = None
    log_mark = 0

    def spawn(self):
        with open(self.log, "ab") as log:
            log.write(b"=== doptd started %s, DOPT_CRASH_AT=%s ===\n"
                      % (time.ctime().encode(), str(self.crash_at).encode()))
            log.flush()
            self.log_mark = log.tell()
            env = harness.clean_env()
            env.pop("DOPT_CRASH_AT", None)
            if self.crash_at:
                env["DOPT_CRASH_AT"] = self.crash_at
            self.proc = subprocess.Popen([harness.doptd_path(), "--config", self.config],
                                         stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                         env=env, start_new_session=True)
        return self.proc

    def start_or_die(self, timeout=20):
        """Starts doptd; True once `dopt list` answers, False when it died
        first (a crash point at start, or a kill)."""
        self.spawn()
        return self.wait_up(timeout)

    def wait_up(self, timeout=20):
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                if self.proc.returncode == -signal.SIGKILL:
                    return False
                raise AssertionError("doptd exited with %s at start:\n%s"
                                     % (self.proc.returncode, harness.tail(self.log)))
            rc, _, _ = self.dopt("list", timeout=10)
            if rc == 0:
                return True
            if time.monotonic() > deadline:
                raise AssertionError("doptd did not answer within %ss:\n%s"
                                     % (timeout, harness.tail(self.log)))
            time.sleep(0.05)

    def run_log(self):
        """The log lines of the current (or last) run."""
        try:
            with open(self.log, "rb") as f:
                f.seek(self.log_mark)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def try_dopt(self, *args, timeout=15):
        """dopt ARGS that may fail (the agent may die under it): (rc, out, err),
        rc -1 when it timed out."""
        try:
            return self.dopt(*args, timeout=timeout)
        except AssertionError as e:
            return -1, "", str(e)


class File:
    def __init__(self, name, size, sha, dest):
        self.name, self.size, self.sha, self.dest = name, size, sha, dest


class Plan:
    """A job the test asked for (or tried to)."""

    def __init__(self, kind, files, expect="acknowledged", auto_complete=False):
        self.kind = kind                # "http" or "peer"
        self.files = files
        self.expect = expect            # "acknowledged" or "integrity"
        self.auto_complete = auto_complete
        self.id = None                  # known once `dopt add` printed it (or found after a crash)
        self.orphan = False             # created but `dopt add` never finished: to be cancelled
        self.gone = False               # `dopt add` cut short before the job existed
        self.acked = False              # Complete (or auto-complete) answered: acknowledged
        self.complete_sent = False      # the test sent Complete: files may be delivered
        self.cancelled = False          # Cancel answered OK
        self.want_cancel = False
        self.error = None               # the job's error object, when it ended in error
        self.state = None
        self.transferred_since = None   # auto-complete job first seen TRANSFERRED (monotonic)
        self.refused = None             # what Complete answered when it refused (agent up)
        self.transferred_at_restart = False  # auto-complete job found TRANSFERRED after a restart

    def paths(self):
        return {f.dest for f in self.files}


class RefetchBound:
    """What one crash may cost in origin bytes fetched again, from the design
    (agent/partial_file.cpp, agent/swarm.cpp, docs/hacking.md):

    - HTTP-only file: the resume point after a restart is the prefix
      flushed (fdatasync about once a second, kFlushInterval) and recorded
      in the job table: a power cut may leave more on disk, its tail
      zeros. Lost: up to a second of the transfer (4 MiB at 4 MiB/s) and
      the flush's own time, the buffer being filled (< kBufferSize, 1
      MiB), and what nginx had sent but the agent not yet read. That is
      more than a file here (MAX_FILE): the bound is the whole file for
      each of the max_jobs transfers, as for peer-assisted files.
    - Peer-assisted file: the pieces libtorrent knows after a restart are
      those of the last saved resume data (saved every 30 s and when a
      torrent completes); pieces verified since are fetched again, from the
      origin or peers, and origin pieces in flight are lost. Every file here
      downloads within 30 s, so the bound is the whole file (MAX_FILE) for
      each of the max_jobs transfers.
    """
    HTTP = MAX_JOBS * MAX_FILE
    PEER = MAX_JOBS * MAX_FILE


class CrashLoop(unittest.TestCase):
    """One run of the loop (setUpClass); each test checks one promise."""

    @classmethod
    def setUpClass(cls):
        harness.build_dir()
        for exe in (harness.doptd_path(), harness.dopt_path()):
            if not os.access(exe, os.X_OK):
                raise AssertionError("missing binary %s (build doptd and dopt_cli)" % exe)
        cls.iterations = int(os.environ.get("DOPT_CRASH_ITERATIONS", "18"))
        cls.seed = int(os.environ.get("DOPT_CRASH_SEED") or random.randrange(1 << 30))
        cls.rng = random.Random(cls.seed)
        cls.named = crash_points_compiled_in()
        say("\ncrash loop: %d iterations, seed %d (DOPT_CRASH_SEED), crash points %s"
            % (cls.iterations, cls.seed, "compiled in" if cls.named else
               "NOT compiled in: named-point iterations skipped (build with "
               "-DDOPT_CRASH_POINTS=ON), random kills only"))
        cls.sb = harness.Sandbox("dopt-crash-loop-")
        cls.failed = False
        try:
            cls._run()
        except BaseException as e:
            # First the reason, in a few lines: CI shows the head of the
            # output, and the logs that follow are long. A message that
            # carries a log tail has its cause at the end.
            lines = str(e).splitlines()
            if len(lines) > 12:
                lines = lines[:3] + ["..."] + lines[-8:]
            say("\ncrash loop stopped after %d iterations: %s: %s"
                % (len(getattr(cls, "crashes", [])), type(e).__name__, "\n  ".join(lines)))
            cls.failed = True
            cls._teardown()
            raise

    @classmethod
    def tearDownClass(cls):
        cls._teardown()

    @classmethod
    def _teardown(cls):
        sb = getattr(cls, "sb", None)
        if sb is None:
            return
        keep = cls.failed or any(getattr(cls, "_failures", [])) or \
            os.environ.get("DOPT_CRASH_KEEP") == "1"
        sb.close(keep=keep)
        if keep:
            sys.stderr.write("\n" + sb.report() + "\n")
        cls.sb = None

    # -- the run --------------------------------------------------------------

    @classmethod
    def _run(cls):
        sb = cls.sb
        cls.www = sb.path("www")
        os.makedirs(cls.www)
        cls.nginx = TimedNginx(sb.path("nginx"), cls.www, SLOW_RATE)
        sb.children.append(cls.nginx)
        cls.nginx.start()
        pa, pb = free_port("127.0.0.1"), free_port("127.0.0.2")
        a_addr, b_addr = "127.0.0.1:%d" % pa, "127.0.0.2:%d" % pb
        cls.b = sb.agent(p2p_toml(b_addr, []), name="B")
        cls.a = CrashAgent(sb.path("A"), p2p_toml(
            a_addr, [b_addr], "[cache]\nmax_size = %d\nmax_disk_percent = 100\n" % CACHE_MAX))
        sb.children.append(cls.a)
        sb.agents.append(cls.a)
        cls.out = os.path.join(cls.a.dir, "out")
        os.makedirs(cls.out)
        cls.plans = []
        cls.crashes = []       # {iteration, how, point, visit, reached, time, integrity}
        cls.violations = []    # promises broken while the loop ran (text)
        cls.auto_complete_stuck = []  # auto-complete jobs left TRANSFERRED by the agent
        cls.next_name = 0
        cls.peer_ready = []    # peer-assisted plans whose content is published (B may have it)
        cls._prepare_peer_plan()

        t0 = time.monotonic()
        for i in range(cls.iterations):
            cls._iteration(i)
        cls.loop_seconds = time.monotonic() - t0
        cls._finish()

    @classmethod
    def _name(cls, stem):
        cls.next_name += 1
        return "%s%03d" % (stem, cls.next_name)

    @classmethod
    def _size(cls):
        return cls.rng.randrange(3 * MiB // 2, MAX_FILE + 1, 64 * 1024)

    @classmethod
    def _http_plan(cls):
        n = cls.rng.choice((2, 3))
        expect = "integrity" if cls.rng.random() < 1 / 6 else "acknowledged"
        with_sha = expect == "integrity" or cls.rng.random() < 0.5
        files = []
        for k in range(n):
            name = cls._name("h")
            size = cls._size()
            sha = harness.make_file(os.path.join(cls.www, name), size)
            files.append(File(name, size, sha, os.path.join(cls.out, name)))
        plan = Plan("http", files, expect, auto_complete=cls.rng.random() < 0.3)
        args = []
        for f in files:
            args += [cls.nginx.url("/slow/" + f.name), "-o", f.dest]
        if with_sha:
            for k, f in enumerate(files):
                wrong = expect == "integrity" and k == n - 1
                args += ["--sha256", ("0" * 64) if wrong else f.sha]
        plan.args = args
        return plan

    @classmethod
    def _prepare_peer_plan(cls):
        """Publishes the content of a peer-assisted job; B fetches it at once
        for half of them (it is then seeding when A asks, an iteration later)."""
        files = []
        for k in range(cls.rng.choice((1, 2))):
            name = cls._name("p")
            size = cls._size()
            path = os.path.join(cls.www, name)
            sha = harness.make_file(path, size)
            publish(path, cls.nginx.url("/slow/" + name))
            files.append(File(name, size, sha, os.path.join(cls.out, name)))
        plan = Plan("peer", files, auto_complete=cls.rng.random() < 0.3)
        plan.args = []
        for f in files:
            plan.args += [cls.nginx.url("/slow/" + f.name), "-o", f.dest]
        plan.seeded_by_b = cls.rng.random() < 0.5
        if plan.seeded_by_b:
            bout = os.path.join(cls.b.dir, "out")
            os.makedirs(bout, exist_ok=True)
            for f in files:
                cls.b.add(cls.nginx.url("/" + f.name), "-o", os.path.join(bout, f.name),
                          "--auto-complete")
        cls.peer_ready.append(plan)

    @classmethod
    def _unfinished(cls):
        """Jobs still to move: not ended, not refused Complete (a known bug
        keeps those TRANSFERRED), not orphans (SUSPENDED): the last two are
        cancelled at the end."""
        return [p for p in cls.plans
                if p.id and not (p.acked or p.cancelled or p.error or p.refused or p.orphan)]

    @classmethod
    def _add_jobs(cls):
        """Fills up to MAX_JOBS unfinished jobs; the kinds take turns."""
        a = cls.a
        while a.running():
            unfinished = cls._unfinished() + [p for p in cls.plans
                                              if p.id is None and not p.gone]
            if len(unfinished) >= MAX_JOBS:
                return
            peers = sum(1 for p in cls.plans if p.kind == "peer")
            kind = "peer" if 2 * peers < len(cls.plans) else "http"
            plan = cls._http_plan() if kind == "http" else cls.peer_ready.pop(0)
            if kind == "peer":
                cls._prepare_peer_plan()
            cls.plans.append(plan)
            args = ["add"] + plan.args + (["--auto-complete"] if plan.auto_complete else [])
            rc, out, err = a.try_dopt(*args)
            lines = out.strip().splitlines()
            if rc == 0 and lines and harness.UUID_RE.match(lines[-1].strip()):
                plan.id = lines[-1].strip()
                continue
            time.sleep(0.2)  # died under the request? then it is not a refusal
            if a.running():
                raise AssertionError("dopt add failed with the agent up: %d %s %s"
                                     % (rc, out, err))

    @classmethod
    def _tend(cls, may_cancel):
        """One pass over the jobs: complete the transferred, record the
        ended, maybe cancel one. Quietly does nothing when A is gone."""
        a = cls.a
        rc, out, _ = a.try_dopt("list", "--json")
        if rc != 0:
            return
        try:
            jobs = {j["id"]: j for j in json.loads(out)}
        except ValueError:
            return
        for p in cls.plans:
            j = jobs.get(p.id)
            if j is None:
                continue
            p.state = j["state"]
            if j["state"] == "acknowledged":
                p.acked = True
            elif j["state"] == "cancelled":
                p.cancelled = True
            elif j["state"] == "error":
                p.error = j["error"]
            elif j["state"] == "transferred" and not p.orphan and not p.want_cancel \
                    and p.refused is None:
                if p.auto_complete:
                    # The agent delivers these itself; a client would wait.
                    # Stuck for AUTO_COMPLETE_GRACE (across restarts): noted,
                    # then completed by hand as `dopt get` does after 10 s.
                    first = p.transferred_since = p.transferred_since or time.monotonic()
                    if time.monotonic() - first < AUTO_COMPLETE_GRACE:
                        continue
                    if p.id not in cls.auto_complete_stuck:
                        cls.auto_complete_stuck.append(p.id)
                p.complete_sent = True
                rc, _, err = a.try_dopt("complete", p.id)
                if rc == 0:
                    p.acked = True
                elif a.running() and rc not in (-1, 3):
                    time.sleep(0.2)  # died under the request? then it is not a refusal
                    if a.running():
                        p.refused = err.strip()  # asked once: the answer will not change
        if may_cancel:
            live = [p for p in cls._unfinished() if p.state not in ("transferred", None)]
            if live:
                p = cls.rng.choice(live)
                p.want_cancel = True
                if a.try_dopt("cancel", p.id)[0] == 0:
                    p.cancelled = True

    @classmethod
    def _arm(cls, i):
        """The crash point for iteration i (odd iterations), or None."""
        if i % 2 == 0 or not cls.named:
            return None, None
        offset = cls.seed % len(CRASH_POINTS)
        name, (lo, hi) = CRASH_POINTS[(i // 2 + offset) % len(CRASH_POINTS)]
        return name, cls.rng.randint(lo, hi)

    @classmethod
    def _iteration(cls, i):
        a = cls.a
        point, visit = cls._arm(i)
        if i % 2 == 1 and not cls.named:
            say("iteration %d: named crash point skipped (no crash points in this doptd); "
                "random kill instead" % i)
        a.crash_at = "%s:%d" % (point, visit) if point else None
        crash = {"iteration": i, "point": point, "visit": visit, "reached": False}
        killer = None
        if point is None:
            during_start = cls.rng.random() < 0.15
            delay = cls.rng.uniform(0.0, 0.25) if during_start else cls.rng.uniform(0.3, 3.0)
            crash["how"] = "random, %s" % ("during start-up" if during_start else "running")
            crash["delay"] = round(delay, 3)
        else:
            crash["how"] = "crash point"
        a.spawn()
        if point is None and crash["how"].endswith("start-up"):
            killer = threading.Timer(delay, cls._kill, (a.proc,))
            killer.start()
        up = a.wait_up()
        if up:
            cls._reconcile(i)
            if point is None and killer is None:
                killer = threading.Timer(delay, cls._kill, (a.proc,))
                killer.start()
            deadline = time.monotonic() + NAMED_WAIT
            cancelled_once = cls.rng.random() > 0.3
            while a.running():
                cls._add_jobs()
                cls._tend(may_cancel=not cancelled_once)
                cancelled_once = True
                if point is not None and time.monotonic() > deadline:
                    break
                time.sleep(0.1)
        if a.running():  # its point was not reached in time
            a.kill9()
        a.proc.wait()
        if killer:
            killer.cancel()
            killer.join()
        crash["time"] = time.time()
        if point is not None:
            crash["reached"] = ("crash point %s: visit %d, SIGKILL" % (point, visit)) in a.run_log()
            if not crash["reached"]:
                crash["how"] = "crash point not reached in %d s; killed" % NAMED_WAIT
        db = os.path.join(a.state_dir, "jobs.db")
        if os.path.exists(db):
            crash["integrity"] = integrity_check(db)
            if i % 2 == 0 and crash["integrity"] == "ok":
                crash["tails"] = PowerCutTails.apply(db, cls.rng)
        elif not any(c.get("up") for c in cls.crashes) and not up:
            crash["integrity"] = "ok"  # killed before it ever made jobs.db
        else:
            crash["integrity"] = "jobs.db is gone"
        crash["up"] = up
        if crash["integrity"] != "ok":
            cls.violations.append("iteration %d: integrity_check after the kill: %s"
                                  % (i, crash["integrity"]))
        cls.crashes.append(crash)
        say("iteration %2d: %-18s %-24s jobs %3d, unfinished %d, integrity %s%s"
            % (i, point or "random", crash["how"] + ("" if point is None or not crash["reached"]
                                                     else " (visit %d)" % visit),
               sum(1 for p in cls.plans if p.id), len(cls._unfinished()), crash["integrity"],
               ", tails cut %(cut)d padded %(padded)d" % crash["tails"] if "tails" in crash
               else ""))

    @staticmethod
    def _kill(proc):
        try:
            proc.send_signal(signal.SIGKILL)
        except ProcessLookupError:
            pass

    @classmethod
    def _reconcile(cls, i):
        """Right after a restart: no job the test knows is missing, none went
        back from acknowledged or cancelled; jobs whose `dopt add` was cut
        short by the kill are found by their files and adopted (or, when
        left half made, cancelled later as orphans). A start-up kill may
        land just after the agent first answered: then nothing is checked
        here, and the next restart's reconcile does it."""
        rc, out, err = cls.a.try_dopt("list", "--json")
        if rc != 0:
            time.sleep(0.2)  # died under the request? then it is not a refusal
            if cls.a.running():
                raise AssertionError("dopt list failed with the agent up: %d %s %s"
                                     % (rc, out, err))
            return
        jobs = json.loads(out)
        by_id = {j["id"]: j for j in jobs}
        known = {p.id for p in cls.plans if p.id}
        for p in cls.plans:
            if p.id:
                j = by_id.get(p.id)
                if j is not None and p.auto_complete and j["state"] == "transferred":
                    p.transferred_at_restart = True
                if j is None:
                    cls.violations.append("iteration %d: job %s lost" % (i, p.id))
                elif p.acked and j["state"] != "acknowledged":
                    cls.violations.append("iteration %d: job %s was acknowledged, now %s"
                                          % (i, p.id, j["state"]))
                elif p.cancelled and j["state"] != "cancelled":
                    cls.violations.append("iteration %d: job %s was cancelled, now %s"
                                          % (i, p.id, j["state"]))
                continue
            if p.gone:
                continue
            found = [j for j in jobs if j["id"] not in known and
                     {f["local_name"] for f in j["files"]} & p.paths()]
            if not found:
                p.gone = True  # the kill came before the job was created
                continue
            j = found[-1]
            p.id = j["id"]
            known.add(p.id)
            if j["state"] == "suspended" or len(j["files"]) != len(p.files):
                p.orphan = True

    @classmethod
    def _finish(cls):
        a = cls.a
        a.crash_at = None
        if not a.start_or_die():
            raise AssertionError("the unarmed doptd died at start:\n" + harness.tail(a.log))
        cls._reconcile(cls.iterations)
        deadline = time.monotonic() + FINAL_TIMEOUT
        while True:
            cls._tend(may_cancel=False)
            for p in cls.plans:
                if p.id and (p.orphan or p.want_cancel or p.error or p.refused) \
                        and not p.cancelled:
                    if a.try_dopt("cancel", p.id)[0] == 0:
                        p.cancelled = True
            if all(p.acked or p.cancelled for p in cls.plans if p.id):
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.3)
        cls.final_jobs = {j["id"]: j for j in a.jobs()}
        time.sleep(0.5)
        rows = {e["info_hash"] for e in json.loads(a.try_dopt("cache", "list", "--json")[1]
                                                   or "[]")}
        cls.orphan_cache_folders = sorted(set(os.listdir(a.cache_dir)) - rows)
        cls.final_rc = a.terminate()
        cls.final_integrity = integrity_check(os.path.join(a.state_dir, "jobs.db"))
        time.sleep(0.5)  # nginx logs the requests the last kill broke
        cls.nginx.stop()
        cls.refetch = cls._refetched()
        cls._report()

    # -- figures --------------------------------------------------------------

    @classmethod
    def _refetched(cls):
        """Origin bytes A was sent more than once, per content path, charged
        to the last crash before the request started (None: before any)."""
        kinds = {}
        for p in cls.plans:
            for f in p.files:
                kinds["/slow/" + f.name] = p.kind
        by_path = {}
        for r in cls.nginx.requests():
            if r["path"] in kinds and r["status"] in (200, 206):
                by_path.setdefault(r["path"], []).append(r)
        times = [c["time"] for c in cls.crashes]
        per_crash = [{"http": 0, "peer": 0} for _ in cls.crashes]
        before_any = {"http": 0, "peer": 0}
        for path, reqs in by_path.items():
            covered = []  # disjoint [lo, hi) ranges sent so far
            for r in sorted(reqs, key=lambda r: r["start"]):
                lo, hi = r["offset"], r["offset"] + r["sent"]
                dup = sum(max(0, min(hi, b) - max(lo, a)) for a, b in covered)
                covered = merge(covered + [(lo, hi)])
                if dup == 0:
                    continue
                k = sum(1 for t in times if t < r["start"])
                (per_crash[k - 1] if k else before_any)[kinds[path]] += dup
        return {"per_crash": per_crash, "before_any_crash": before_any}

    @classmethod
    def _report(cls):
        by_point = {}
        for c in cls.crashes:
            key = c["point"] or "random"
            e = by_point.setdefault(key, {"crashes": 0, "reached": 0})
            e["crashes"] += 1
            e["reached"] += 1 if (c["point"] is None or c["reached"]) else 0
        per = [c["http"] + c["peer"] for c in cls.refetch["per_crash"]]
        states = {}
        for p in cls.plans:
            if p.id:
                s = cls.final_jobs.get(p.id, {}).get("state", "missing")
                states[s] = states.get(s, 0) + 1
        cls.figures = {
            "seed": cls.seed,
            "iterations": cls.iterations,
            "loop_seconds": round(cls.loop_seconds, 1),
            "crash_points_compiled_in": cls.named,
            "crashes_by_point": by_point,
            "jobs": sum(1 for p in cls.plans if p.id),
            "jobs_http": sum(1 for p in cls.plans if p.id and p.kind == "http"),
            "jobs_peer": sum(1 for p in cls.plans if p.id and p.kind == "peer"),
            "jobs_final_states": states,
            "jobs_orphaned_by_a_kill_during_add": sum(1 for p in cls.plans if p.orphan),
            "files_delivered": sum(len(p.files) for p in cls.plans if p.acked),
            "bytes_delivered": sum(f.size for p in cls.plans if p.acked for f in p.files),
            "refetched_bytes_total": sum(per),
            "refetched_bytes_max_per_crash": max(per) if per else 0,
            "refetched_http_max_per_crash": max((c["http"] for c in cls.refetch["per_crash"]),
                                                default=0),
            "refetched_peer_max_per_crash": max((c["peer"] for c in cls.refetch["per_crash"]),
                                                default=0),
            "refetched_bytes_per_crash": per,
            "refetched_before_any_crash": cls.refetch["before_any_crash"],
            "integrity_after_each_kill_ok": all(c["integrity"] == "ok" for c in cls.crashes),
            "partial_tails_cut": sum(c.get("tails", {}).get("cut", 0) for c in cls.crashes),
            "partial_tails_padded": sum(c.get("tails", {}).get("padded", 0) for c in cls.crashes),
            "integrity_final": cls.final_integrity,
            "complete_refused": [(p.id, p.refused) for p in cls.plans if p.refused],
            "auto_complete_left_transferred": list(cls.auto_complete_stuck),
            "cache_folders_without_a_row": cls.orphan_cache_folders,
            "violations": cls.violations,
        }
        f = cls.figures
        say("\ncrash loop figures (seed %d): %d iterations in %.0f s" %
            (cls.seed, cls.iterations, cls.loop_seconds))
        say("crashes by point: " + ", ".join("%s %d (reached %d)" % (k, v["crashes"], v["reached"])
                                             for k, v in sorted(by_point.items())))
        say("jobs: %d (%d http-only, %d peer-assisted), final states %s, %d files / %.1f MiB "
            "delivered" % (f["jobs"], f["jobs_http"], f["jobs_peer"], states,
                           f["files_delivered"], f["bytes_delivered"] / MiB))
        say("re-fetched from the origin: total %.2f MiB, max per crash %.2f MiB "
            "(http-only %.2f, peer-assisted %.2f); per crash MiB: %s"
            % (f["refetched_bytes_total"] / MiB, f["refetched_bytes_max_per_crash"] / MiB,
               f["refetched_http_max_per_crash"] / MiB, f["refetched_peer_max_per_crash"] / MiB,
               " ".join("%.2f" % (x / MiB) for x in per)))
        say("power-cut tails: %d partial files cut back, %d padded with zeros"
            % (f["partial_tails_cut"], f["partial_tails_padded"]))
        say("integrity_check: after every kill %s, final %s" %
            ("ok" if f["integrity_after_each_kill_ok"] else "FAILED", f["integrity_final"]))
        report = os.environ.get("DOPT_CRASH_REPORT")
        if report:
            with open(report, "w") as out:
                json.dump(f, out, indent=1)

    # -- the promises ---------------------------------------------------------

    def _fail_if(self, problems, what):
        if problems:
            type(self)._failures = getattr(type(self), "_failures", []) + [what]
            self.fail("%s:\n  %s" % (what, "\n  ".join(problems[:30])))

    def test_no_job_lost_and_no_state_went_back(self):
        self._fail_if(self.violations + [
            "job %s (%s) missing at the end" % (p.id, p.kind)
            for p in self.plans if p.id and p.id not in self.final_jobs],
            "jobs lost or gone back across restarts")

    def test_every_job_ends_acknowledged_cancelled_or_in_its_own_error(self):
        problems = []
        for p in self.plans:
            if not p.id:
                continue
            j = self.final_jobs.get(p.id)
            if j is None:
                continue
            if p.cancelled:
                if j["state"] != "cancelled":
                    problems.append("%s: cancelled, now %s" % (p.id, j["state"]))
                if p.expect == "integrity" and p.error is not None:
                    e = p.error
                    if e.get("context") != "integrity" or \
                            (e.get("file") or {}).get("local_name") != p.files[-1].dest:
                        problems.append("%s: wrong SHA-256 of %s, error %s"
                                        % (p.id, p.files[-1].dest, json.dumps(e)))
                elif p.refused:
                    problems.append("%s (%s): Complete refused: %s" % (p.id, p.kind, p.refused))
                elif p.error is not None:
                    problems.append("%s (%s): ended in error %s" % (p.id, p.kind,
                                                                     json.dumps(p.error)))
                continue
            if p.expect == "integrity" and not p.want_cancel:
                problems.append("%s: wrong SHA-256 but state %s" % (p.id, j["state"]))
            elif j["state"] != "acknowledged":
                problems.append("%s (%s): state %s, error %s"
                                % (p.id, p.kind, j["state"], json.dumps(j.get("error"))))
        for p in self.plans:
            if p.id in self.auto_complete_stuck:
                problems.append("%s: auto-complete, left TRANSFERRED by the agent for %d s "
                                "(completed by the test)" % (p.id, AUTO_COMPLETE_GRACE))
        self._fail_if(problems, "jobs not in their expected end state")

    def test_every_delivered_file_is_the_origins(self):
        problems = []
        for p in self.plans:
            j = self.final_jobs.get(p.id) if p.id else None
            if j and j["state"] == "acknowledged":
                for f in p.files:
                    if not os.path.exists(f.dest):
                        problems.append("%s: %s missing" % (p.id, f.dest))
                    elif harness.sha256_file(f.dest) != f.sha:
                        problems.append("%s: %s differs from the origin" % (p.id, f.dest))
            elif j and j["state"] == "cancelled":
                may_be_delivered = p.complete_sent or p.auto_complete  # before the cancel
                for f in p.files:
                    if not os.path.exists(f.dest):
                        continue
                    if not may_be_delivered:
                        problems.append("%s: cancelled before any Complete, yet %s exists"
                                        % (p.id, f.dest))
                    elif harness.sha256_file(f.dest) != f.sha:
                        problems.append("%s: %s differs from the origin" % (p.id, f.dest))
        self._fail_if(problems, "delivered files wrong")

    def test_no_partial_file_is_left(self):
        left = sorted(n for n in os.listdir(self.out) if n.endswith(".dopt-partial"))
        self._fail_if(left, "partial files left after every job ended")

    def test_sqlite_integrity_check_is_ok(self):
        self.assertEqual(self.final_rc, 0, "doptd's exit status on SIGTERM")
        self._fail_if(["after the kill of iteration %d: %s" % (c["iteration"], c["integrity"])
                       for c in self.crashes if c["integrity"] != "ok"] +
                      ([] if self.final_integrity == "ok" else
                       ["at the end: " + self.final_integrity]),
                      "PRAGMA integrity_check")

    def test_named_crash_points_are_reached(self):
        if not self.named:
            self.skipTest("doptd has no crash points (-DDOPT_CRASH_POINTS=ON)")
        named = [c for c in self.crashes if c["point"]]
        if not named:
            self.skipTest("too few iterations for a named crash point")
        reached = {c["point"] for c in named if c["reached"]}
        self._fail_if(["%s never reached (%d tries)" % (n, sum(1 for c in named if c["point"] == n))
                       for n in sorted({c["point"] for c in named}) if n not in reached],
                      "crash points armed but never reached")

    def test_bytes_refetched_after_each_crash_are_bounded(self):
        problems = []
        for k, c in enumerate(self.refetch["per_crash"]):
            if c["http"] > RefetchBound.HTTP:
                problems.append("crash %d (%s): %.2f MiB of http-only files, bound %.0f MiB"
                                % (k, self.crashes[k]["point"] or "random", c["http"] / MiB,
                                   RefetchBound.HTTP / MiB))
            if c["peer"] > RefetchBound.PEER:
                problems.append("crash %d (%s): %.2f MiB of peer-assisted files, bound %.0f MiB"
                                % (k, self.crashes[k]["point"] or "random", c["peer"] / MiB,
                                   RefetchBound.PEER / MiB))
        self._fail_if(problems, "re-fetched bytes over the bound")


class CompleteAfterACrash(harness.IntegrationTest):
    """Delivery cut short by a crash point, then finished after a restart on
    the same state_dir: one HTTP-only job of two 1 MiB files. Skipped
    without crash points."""

    def setUp(self):
        # Before the sandbox exists: unittest skips tearDown after setUp.
        if not crash_points_compiled_in():
            self.skipTest("doptd has no crash points (build with -DDOPT_CRASH_POINTS=ON)")
        super().setUp()
        self.nginx = self.sb.nginx(self.www)

    def _agent(self, crash_at):
        a = CrashAgent(self.sb.path("agent"))
        self.sb.children.append(a)
        self.sb.agents.append(a)
        a.crash_at = crash_at
        self.assertTrue(a.start_or_die(), harness.tail(a.log))
        self.agent = a
        return a

    def _add(self, a, *extra):
        self.files, args = [], []
        for name in ("one.bin", "two.bin"):
            sha = harness.make_file(os.path.join(self.www, name), MiB)
            dest = os.path.join(self.dest(), name)
            self.files.append((dest, sha))
            args += [self.nginx.url(name), "-o", dest]
        return a.add(*(args + list(extra)))

    def _died_at(self, a, point):
        harness.wait_for(lambda: not a.running(), 30, what="doptd to reach " + point)
        self.assertEqual(a.proc.returncode, -signal.SIGKILL)
        self.assertIn("crash point %s: visit 1, SIGKILL" % point, a.run_log())
        a.crash_at = None
        self.assertTrue(a.start_or_die(), harness.tail(a.log))

    def _assert_delivered(self, a, job_id):
        st = a.status(job_id)
        self.assertEqual(st["state"], "acknowledged", json.dumps(st))
        for dest, sha in self.files:
            self.assertFileSha(dest, sha)
        left = [n for n in os.listdir(self.dest()) if n.endswith(".dopt-partial")]
        self.assertEqual(left, [], "partial files left")

    def _complete_cut_at(self, point):
        a = self._agent(point + ":1")
        job_id = self._add(a)
        a.wait_state(job_id, "transferred", timeout=60)
        a.try_dopt("complete", job_id)  # the agent dies under it
        self._died_at(a, point)
        self.assertEqual(a.status(job_id)["state"], "transferred")
        rc, _, err = a.dopt("complete", job_id)
        self.assertEqual(rc, 0, "Complete after the restart: " + err)
        self._assert_delivered(a, job_id)

    def test_complete_cut_before_any_rename_succeeds_after_restart(self):
        self._complete_cut_at("complete_start")

    def test_complete_cut_between_rename_and_commit_succeeds_after_restart(self):
        # Found here, fixed (agent/agent.cpp Agent::deliver_files, storage/job_store.cpp
        # update_file): deliver_files clears FileRecord::partial_path after
        # each rename, but JobStore::update_file does not store partial_path,
        # so the job table still names the renamed partial file. After the
        # crash, Complete renames it again: ENOENT, "cannot move ... No such
        # file or directory", DOPT_E_LOCAL_IO, on every try; the job never
        # reaches ACKNOWLEDGED and the second file's partial stays.
        self._complete_cut_at("complete_renamed")

    def test_complete_cut_after_every_rename_succeeds_after_restart(self):
        # The same bug: every file renamed, ACKNOWLEDGED not yet recorded.
        self._complete_cut_at("complete_delivered")

    def test_a_file_whole_on_disk_at_the_crash_is_not_fetched_again(self):
        # Found here, fixed (agent/agent.cpp Agent::start_job and Job::on_done): a
        # crash after a file's last byte was written and synced, before the
        # job table marked it completed, leaves a partial file of
        # bytes_total bytes. After the restart start_job keeps them all and
        # asks for "Range: bytes=SIZE-"; the origin answers 416, on_done
        # takes that as "what we hold no longer matches", truncates the
        # partial file and fetches the whole file again (after a retry
        # delay). Whole and with its validator, it only needs checking.
        a = self._agent("file_transferred:1")
        name = "whole.bin"
        sha = harness.make_file(os.path.join(self.www, name), 2 * MiB)
        dest = os.path.join(self.dest(), name)
        job_id = a.add(self.nginx.url(name), "-o", dest)
        self._died_at(a, "file_transferred")
        mark = len(self.nginx.log_entries())
        a.wait_state(job_id, "transferred", timeout=60)
        a.dopt("complete", job_id, check=True)
        self.assertFileSha(dest, sha)
        self.nginx.wait_log_complete()
        again = [e for e in self.nginx.log_entries()[mark:] if e[4] == "/" + name]
        say("after the restart: %s" % [(e[0], e[1], e[2]) for e in again])
        self.assertEqual(sum(e[1] for e in again), 0, "bytes fetched again: %s" % again)

    def test_auto_complete_cut_before_any_rename_delivers_after_restart(self):
        # Found here, fixed (agent/agent.cpp Agent::Agent and Agent::start_job): the
        # auto-complete delivery runs only in start_job, right after the job
        # turns TRANSFERRED. A job that was TRANSFERRED when the agent died
        # is loaded as TRANSFERRED, which is not active, so nothing delivers
        # it after the restart: it stays TRANSFERRED until a client calls
        # Complete (docs/api.md: "the agent completes the job itself").
        a = self._agent("complete_start:1")
        job_id = self._add(a, "--auto-complete")
        self._died_at(a, "complete_start")
        a.wait_state(job_id, ("acknowledged", "error"), timeout=AUTO_COMPLETE_GRACE)
        self._assert_delivered(a, job_id)


class CacheAfterACrash(harness.IntegrationTest):
    """The peer cache across a crash. Skipped without crash points."""

    def setUp(self):
        # Before the sandbox exists: unittest skips tearDown after setUp.
        if not crash_points_compiled_in():
            self.skipTest("doptd has no crash points (build with -DDOPT_CRASH_POINTS=ON)")
        super().setUp()
        self.nginx = TimedNginx(self.sb.path("nginx"), self.www)
        self.sb.children.append(self.nginx)
        self.nginx.start()

    def test_content_a_queued_job_needs_is_not_evicted_at_restart(self):
        # Found here, fixed (agent/swarm.cpp Swarms::evict_cache, called by
        # Swarms::start): a torrent counts as in use only while a job is
        # attached to its swarm (Swarm::users), and at start no job is
        # attached yet. A complete cache entry over [cache] max_size is
        # evicted at restart although a resumed job needs it; the job then
        # says "over HTTP only: no metainfo" and fetches the whole file from
        # the origin again (docs/config.md: "Content a running job still
        # needs is never dropped").
        size = 4 * MiB  # 4 pieces of 1 MiB
        path = os.path.join(self.www, "x.bin")
        sha = harness.make_file(path, size)
        publish(path, self.nginx.url("x.bin"))
        # The cache may hold the content until the restart, which lowers
        # max_size under its size: eviction at start is the one under test.
        a = CrashAgent(self.sb.path("agent"), p2p_toml(
            "127.0.0.1:%d" % free_port("127.0.0.1"), [],
            "[cache]\nmax_size = %d\nmax_disk_percent = 100\n" % (64 * MiB)))
        self.sb.children.append(a)
        self.sb.agents.append(a)
        # The first job writes the 4 pieces (visits 1-4); the second dies as
        # it writes its first piece, read back from the cache.
        a.crash_at = "swarm_piece_write:5"
        self.assertTrue(a.start_or_die(), harness.tail(a.log))
        out = self.dest()
        a.dopt("get", self.nginx.url("x.bin"), "-o", os.path.join(out, "first.bin"),
               check=True, timeout=60)
        entries = json.loads(a.dopt("cache", "list", "--json", check=True)[1])
        self.assertEqual([e["complete"] for e in entries], [True], entries)
        job_id = a.add(self.nginx.url("x.bin"), "-o", os.path.join(out, "second.bin"))
        harness.wait_for(lambda: not a.running(), 30, what="the crash point")
        self.assertIn("crash point swarm_piece_write: visit 5, SIGKILL", a.run_log())
        mark = len(self.nginx.requests())
        a.crash_at = None
        with open(a.config) as f:
            text = f.read()
        with open(a.config, "w") as f:
            f.write(text.replace("max_size = %d" % (64 * MiB), "max_size = %d" % (2 * MiB)))
        self.assertTrue(a.start_or_die(), harness.tail(a.log))
        a.wait_state(job_id, "transferred", timeout=60)
        a.dopt("complete", job_id, check=True)
        self.assertFileSha(os.path.join(out, "second.bin"), sha)
        self.nginx.wait_log_complete()
        again = sum(r["sent"] for r in self.nginx.requests()[mark:] if r["path"] == "/x.bin")
        say("after the restart the origin sent %d bytes of x.bin; the job's mode: %s"
            % (again, a.status(job_id)["mode"]))
        self.assertNotIn("peer cache: evicting", a.run_log())
        self.assertEqual(again, 0, "bytes of x.bin fetched again from the origin")

    def test_a_crash_mid_eviction_leaves_no_cache_folder_behind(self):
        # Found here, fixed (agent/swarm.cpp Swarms::remove_swarm and
        # evict_cache; Swarms::start): eviction deletes the cache row, then
        # the folder. A crash between the two leaves cache_dir/<info-hash>
        # with no row; nothing at start looks for such folders, so they stay
        # for good (empty when libtorrent's own delete got there first, the
        # whole content otherwise).
        a = CrashAgent(self.sb.path("agent"), p2p_toml(
            "127.0.0.1:%d" % free_port("127.0.0.1"), [],
            "[cache]\nmax_size = %d\nmax_disk_percent = 100\n" % (3 * MiB)))
        self.sb.children.append(a)
        self.sb.agents.append(a)
        a.crash_at = "cache_row_deleted:1"
        self.assertTrue(a.start_or_die(), harness.tail(a.log))
        out = self.dest()
        for name in ("x.bin", "y.bin"):
            path = os.path.join(self.www, name)
            harness.make_file(path, 2 * MiB)
            publish(path, self.nginx.url(name))
        a.dopt("get", self.nginx.url("x.bin"), "-o", os.path.join(out, "x.bin"),
               check=True, timeout=60)
        time.sleep(1.1)  # last_used is in seconds: x is the older
        # y completes, x is evicted: the crash.
        a.add(self.nginx.url("y.bin"), "-o", os.path.join(out, "y.bin"))
        harness.wait_for(lambda: not a.running(), 30, what="the crash point")
        self.assertIn("crash point cache_row_deleted: visit 1, SIGKILL", a.run_log())
        a.crash_at = None
        self.assertTrue(a.start_or_die(), harness.tail(a.log))
        rows = {e["info_hash"] for e in json.loads(a.dopt("cache", "list", "--json",
                                                          check=True)[1])}
        folders = set(os.listdir(a.cache_dir))
        say("cache rows %s, folders %s" % (sorted(rows), sorted(folders)))
        self.assertEqual(folders - rows, set(), "cache folders without a row")


class PowerCutAfterAKill(harness.IntegrationTest):
    """A power cut mid-transfer, played as a kill -9 followed by what the
    disk may show afterwards: the partial file longer than what was
    flushed, its tail zeros. No crash points needed."""

    def test_a_zero_tail_past_the_flushed_prefix_is_cut_and_fetched_again(self):
        # Found by issue 17 and fixed (agent/agent.cpp start_http_transfer,
        # agent/partial_file.cpp): the resume trusted the partial file's
        # size, so the zeros were delivered and nginx was asked for the
        # bytes after them. Only the prefix flushed (files.durable_bytes,
        # recorded after each fdatasync) counts after a restart.
        nginx = self.sb.nginx(self.www, slow_rate="2m")
        size = 8 * MiB
        sha = harness.make_file(os.path.join(self.www, "big.bin"), size)
        agent = self.start_agent()
        dest = os.path.join(self.dest(), "big.bin")
        job_id = agent.add(nginx.url("/slow/big.bin"), "-o", dest)
        db = sqlite3.connect("file:%s?mode=ro" % os.path.join(agent.state_dir, "jobs.db"),
                             uri=True)

        def durable():
            try:
                return db.execute("SELECT durable_bytes FROM files").fetchone()[0]
            except sqlite3.OperationalError as e:  # a doptd that does not record it
                return str(e)

        def flushed_and_more():
            d = durable()
            done = agent.status(job_id)["bytes_transferred"]
            return done < size and (isinstance(d, str) or 0 < d < done)
        harness.wait_for(flushed_and_more, 30, what="a flush, then more bytes")

        def logged():
            return sum(1 for e in nginx.log_entries() if e[4] == "/slow/big.bin")
        before = logged()
        agent.kill9()
        # nginx logs the killed request when it sees the connection closed,
        # which can be after the restart: wait for its line, so that the
        # log after `mark` holds the restarted agent's requests only.
        harness.wait_for(lambda: logged() > before, 30, what="nginx logging the killed request")
        partial, = db.execute("SELECT partial_path FROM files").fetchone()
        durable = durable()
        db.close()
        held = os.path.getsize(partial)
        with open(partial, "ab") as f:
            f.write(b"\0" * (64 * 1024))
        mark = len(nginx.log_entries())
        agent.start()
        self.wait_state(job_id, "transferred", timeout=60)
        agent.dopt("complete", job_id, check=True)
        ranges = [e[2] for e in nginx.log_entries()[mark:] if e[4] == "/slow/big.bin"]
        say("killed holding %d bytes, %s flushed; after the restart: %s" % (held, durable, ranges))
        self.assertFileSha(dest, sha)
        self.assertGreater(durable, 0, "nothing was flushed in 4 MiB")
        self.assertLessEqual(durable, held)
        self.assertEqual(ranges[:1], ["bytes=%d-" % durable])


def merge(ranges):
    """Disjoint, sorted union of [lo, hi) ranges."""
    out = []
    for lo, hi in sorted(r for r in ranges if r[1] > r[0]):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


if __name__ == "__main__":
    unittest.main()
