"""Load (issue 5 part 6, docs/reliability.md), CI-sized: 10 client processes
x 50 jobs against one real doptd, with callbacks, files from a real nginx on
127.0.0.1 (every 25th job from its rate-limited /slow/ location, so
transfers run while the clients time control requests).

Each client is bench_load_client (bench/load-client.c; bench/load runs the
full 50 x 200). The test asserts that every job is accounted for: each client
created its jobs, got every job's `transferred` and `file_transferred`
callbacks, completed (or, for
every 5th, cancelled) each one and found the completed files at their paths
with the origin's size; the agent's `dopt list --json` and its SQLite job
table hold exactly those jobs in those final states; no durable notification
is left undelivered in the table; and the agent is the same process
throughout. Latency figures and the agent's peak memory are printed, not
asserted (no timed assertions).
"""

import glob
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))

from harness import IntegrationTest, build_dir, clean_env  # noqa: E402

CLIENTS = int(os.environ.get("DOPT_LOAD_CLIENTS", "10"))
JOBS = int(os.environ.get("DOPT_LOAD_JOBS", "50"))
FAST_SIZE = 16 * 1024
SLOW_SIZE = 192 * 1024  # nginx sends the first second (64 KiB) at once: ~2 s a file
SLOW_EVERY = 25
CANCEL_EVERY = 5
STATE_ACKNOWLEDGED = 7  # enum dopt_job_state (dopt.h), as stored in jobs.db
STATE_CANCELLED = 8


def load_client_binary(workdir):
    """bench_load_client from the build, or compiled here against libdopt.so."""
    exe = os.path.join(build_dir(), "bench", "bench_load_client")
    if os.access(exe, os.X_OK):
        return exe
    lib = os.path.join(build_dir(), "api")
    if not os.path.exists(os.path.join(lib, "libdopt.so")):
        raise unittest.SkipTest("no bench_load_client and no libdopt.so in DOPT_BUILD_DIR")
    exe = os.path.join(workdir, "bench_load_client")
    subprocess.run(["cc", "-O2", "-std=c11", "-I", os.path.join(ROOT, "api", "include"),
                    os.path.join(ROOT, "bench", "load-client.c"), "-L", lib, "-ldopt",
                    "-lpthread", "-Wl,-rpath," + lib, "-o", exe], check=True)
    return exe


def percentile(sorted_values, p):
    """Nearest rank, as bench_load_client and bench/load take it."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), int(p / 100.0 * len(sorted_values) + 0.999999)))
    return sorted_values[rank - 1]


class Load(IntegrationTest):

    def test_every_job_of_many_clients_is_accounted_for(self):
        fast = os.path.join(self.www, "fast")
        os.makedirs(fast)
        for i in range(20):
            with open(os.path.join(fast, "f%d.bin" % i), "wb") as f:
                f.write(os.urandom(FAST_SIZE))
        for i in range(4):  # /slow/sN.bin: nginx sends them at 64 KiB/s
            with open(os.path.join(self.www, "s%d.bin" % i), "wb") as f:
                f.write(os.urandom(SLOW_SIZE))
        nginx = self.sb.nginx(self.www, slow_rate="64k")
        # Peering off; the scheduler runs 4 jobs at once, the rest queue.
        # All clients are one user: the per-user limits must fit them (two
        # connections a client), also when DOPT_LOAD_* ask for more.
        agent = self.start_agent("[jobs]\nmax_jobs = 4\nmax_jobs_per_user = %d\n"
                                 "[ipc]\nmax_connections_per_user = %d\n"
                                 "[p2p]\nenabled = false\n"
                                 % (max(1000, CLIENTS * JOBS + 100), min(1024, max(128, 2 * CLIENTS + 64))))
        pid = agent.proc.pid
        client = load_client_binary(self.sb.dir)

        peak = {"rss": 0, "hwm": 0}
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                try:
                    with open("/proc/%d/status" % pid) as f:
                        for line in f:
                            if line.startswith("VmRSS:"):
                                peak["rss"] = max(peak["rss"], int(line.split()[1]))
                            elif line.startswith("VmHWM:"):
                                peak["hwm"] = max(peak["hwm"], int(line.split()[1]))
                except OSError:
                    pass
                stop.wait(0.5)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.monotonic()
        procs = []
        for c in range(CLIENTS):
            out = self.dest("c%d" % c)
            cmd = [client, "--socket", agent.socket, "--out", out,
                   "--origin", "http://127.0.0.1:%d" % nginx.port, "--jobs", str(JOBS),
                   "--files", "20", "--slow-files", "4", "--slow-every", str(SLOW_EVERY),
                   "--cancel-every", str(CANCEL_EVERY), "--list-every", "50",
                   "--interval-ms", "20", "--timeout", "240",
                   "--fast-size", str(FAST_SIZE), "--slow-size", str(SLOW_SIZE),
                   "--tag", "c%d" % c, "--latency-file", self.sb.path("lat-c%d.txt" % c)]
            procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          env=clean_env(), stdin=subprocess.DEVNULL))
        results = []
        for c, p in enumerate(procs):
            out, err = p.communicate(timeout=300)
            self.assertEqual(p.returncode, 0, "client c%d failed: %s\n%s"
                             % (c, out.decode(errors="replace"), err.decode(errors="replace")[-2000:]))
            results.append(json.loads(out))
        wall = time.monotonic() - started
        stop.set()
        sampler.join()
        self.assertTrue(agent.running(), "doptd exited under load")
        self.assertEqual(agent.proc.pid, pid)

        total = CLIENTS * JOBS
        cancelled_each = JOBS // CANCEL_EVERY
        for r in results:
            self.assertTrue(r["ok"], r)
            self.assertEqual(r["jobs_created"], JOBS, r)
            self.assertEqual(r["transferred"], JOBS, r)
            self.assertEqual(r["cancelled"], cancelled_each, r)
            self.assertEqual(r["completed"], JOBS - cancelled_each, r)
            self.assertEqual(r["errors"], 0, r)
            # Every job's durable `transferred` callback arrived (at least once).
            self.assertGreaterEqual(r["callbacks"]["transferred"], JOBS, r)
            self.assertGreaterEqual(r["callbacks"]["file_transferred"], JOBS, r)
            self.assertEqual(r["callbacks"]["error"], 0, r)

        # The agent's view: every job listed, in the state its client left it.
        listed = agent.jobs()
        states = {}
        for j in listed:
            states[j["state"]] = states.get(j["state"], 0) + 1
        self.assertEqual(len(listed), total, states)
        self.assertEqual(states.get("acknowledged", 0), total - CLIENTS * cancelled_each, states)
        self.assertEqual(states.get("cancelled", 0), CLIENTS * cancelled_each, states)

        # The job table agrees, and holds no undelivered notification.
        db = sqlite3.connect("file:%s?mode=ro" % os.path.join(agent.state_dir, "jobs.db"),
                             uri=True, timeout=10)
        try:
            by_state = dict(db.execute("SELECT state, count(*) FROM jobs GROUP BY state"))
            pending = dict(db.execute("SELECT kind, count(*) FROM notifications GROUP BY kind"))
        finally:
            db.close()
        self.assertEqual(sum(by_state.values()), total, by_state)
        self.assertEqual(by_state.get(STATE_ACKNOWLEDGED, 0), total - CLIENTS * cancelled_each)
        self.assertEqual(by_state.get(STATE_CANCELLED, 0), CLIENTS * cancelled_each)
        self.assertEqual(pending, {}, "notifications left undelivered in jobs.db (kind: count)")

        # Completed files are in place, cancelled ones never appear.
        files = glob.glob(self.sb.path("c*", "job-*"))
        self.assertEqual(len(files), total - CLIENTS * cancelled_each)
        self.assertEqual(glob.glob(self.sb.path("c*", ".*dopt-partial")), [])

        lat = []
        for path in glob.glob(self.sb.path("lat-c*.txt")):
            with open(path) as f:
                lat.extend(float(x) / 1000.0 for x in f if x.strip())
        lat.sort()
        sys.stderr.write(
            "\nload: %d clients x %d jobs in %.1f s; control requests %d: p50 %.1f ms, "
            "p99 %.1f ms, max %.1f ms; callbacks transferred %d, modification %d; "
            "doptd peak VmRSS %.1f MiB, VmHWM %.1f MiB\n"
            % (CLIENTS, JOBS, wall, len(lat), percentile(lat, 50), percentile(lat, 99),
               lat[-1] if lat else float("nan"),
               sum(r["callbacks"]["transferred"] for r in results),
               sum(r["callbacks"]["modification"] for r in results),
               peak["rss"] / 1024.0, peak["hwm"] / 1024.0))
        self.assertGreater(len(lat), 0)


if __name__ == "__main__":
    unittest.main()
