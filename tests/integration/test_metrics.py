"""Metrics (docs/metrics.md): `dopt stats --prometheus` and the [metrics]
textfile against a real doptd, a real nginx origin and the agent's real
SQLite job table, parsed by the Prometheus text-format parser of
python3-prometheus-client (scripts/setup-deps installs it).

- the counters match `dopt stats --json` and the origin's access log after
  real downloads (one file, one 404);
- the totals of the month and the all-time counters survive a restart;
- the textfile is written every interval, replaced by rename (a new inode,
  never a half-written file), mode 0644;
- a plain user sees their own counts only, and no other user's job name.
"""

import json
import os
import signal
import subprocess
import time

import harness
from harness import MiB, OtherUsersTest, clean_env, dopt_path, make_file, wait_for
from harness import parse_prometheus as parse

SIZE = 3 * MiB
STATES = ("queued", "connecting", "transferring", "transient_error", "suspended", "error",
          "transferred", "acknowledged", "cancelled")


def this_month():
    return time.strftime("%Y-%m", time.gmtime())


class MetricsTest(harness.IntegrationTest):

    def setUp(self):
        super().setUp()
        make_file(os.path.join(self.www, "f.bin"), SIZE)
        self.origin = self.sb.nginx(self.www)

    def metrics(self, agent=None):
        _, out, _ = (agent or self.agent).dopt("stats", "--prometheus", check=True)
        return out

    def get(self, name="f.bin", dest="out.bin"):
        self.dopt("get", self.origin.url("/" + name), "-o", os.path.join(self.dest(), dest),
                  "--name", "quarterly-report", check=0, timeout=60)

    def test_counters_match_stats_json_and_the_origins_log(self):
        self.start_agent()
        self.get()
        failed = self.agent.add(self.origin.url("/missing.bin"), "-o", os.path.join(self.dest(), "m.bin"))
        self.wait_state(failed, {"error"})
        self.dopt("stats", "--prometheus", "--json", check=2)
        text = self.metrics()
        families, m = parse(text)
        stats = json.loads(self.dopt("stats", "--json", check=True)[1])

        self.assertEqual(m[("dopt_origin_received_bytes_total", ())], SIZE)
        self.assertEqual(stats["bytes_from_origin"], SIZE)
        self.assertEqual(m[("dopt_peer_received_bytes_total", ())], stats["bytes_from_peers"])
        self.assertEqual(m[("dopt_peer_sent_bytes_total", ())], stats["bytes_to_peers"])
        self.assertEqual(m[("dopt_connected_peers", ())], stats["connected_peers"])
        self.assertEqual(m[("dopt_peering_enabled", ())], 0)
        for state in STATES:
            self.assertEqual(m[("dopt_jobs", (("state", state),))], stats["states"][state], state)
        self.assertEqual(m[("dopt_job_errors_total", (("context", "remote_file"),))], 1)
        self.assertEqual(m[("dopt_job_errors_total", (("context", "transport"),))], 0)
        # Peering is off: one GET for the file, one for the 404, nothing else.
        self.assertEqual(m[("dopt_origin_requests_total", ())], len(self.origin.log_entries()))
        self.assertEqual(m[("dopt_origin_requests_total", ())], 2)
        month = (("month", this_month()),)
        self.assertEqual(m[("dopt_month_origin_received_bytes", month)], SIZE)
        self.assertEqual(m[("dopt_month_origin_requests", month)], 2)
        self.assertEqual(families["dopt_origin_received_bytes"].type, "counter")
        self.assertEqual(families["dopt_job_errors"].type, "counter")
        self.assertEqual(families["dopt_month_origin_received_bytes"].type, "gauge")
        self.assertEqual(families["dopt_jobs"].type, "gauge")
        for secret in ("quarterly-report", "f.bin", "missing", "127.0.0.1", self.sb.dir):
            self.assertNotIn(secret, text)

    def test_counters_and_month_totals_survive_a_restart(self):
        self.start_agent()
        self.get()
        self.agent.restart()
        _, m = parse(self.metrics())
        self.assertEqual(m[("dopt_origin_received_bytes_total", ())], SIZE)
        self.assertEqual(m[("dopt_month_origin_received_bytes", (("month", this_month()),))], SIZE)
        self.get(dest="again.bin")
        self.agent.restart()
        _, m = parse(self.metrics())
        self.assertEqual(m[("dopt_origin_received_bytes_total", ())], 2 * SIZE)
        self.assertEqual(m[("dopt_origin_requests_total", ())], 2)

    def test_textfile_is_replaced_atomically_every_interval(self):
        folder = self.sb.path("textfile")
        os.makedirs(folder)
        path = os.path.join(folder, "dopt.prom")
        self.start_agent('[metrics]\ntextfile = "%s"\ninterval = 1\n' % path)
        first = wait_for(lambda: os.path.exists(path) and os.stat(path), 10, what="the textfile")
        self.assertEqual(first.st_mode & 0o7777, 0o644)
        self.get()

        def downloaded():
            # Every read is a whole file: the last family is always there.
            with open(path) as f:
                families, m = parse(f.read())
            self.assertIn("dopt_connected_peers", families)
            return m if m[("dopt_origin_received_bytes_total", ())] == SIZE else None
        m = wait_for(downloaded, 10, interval=0.05, what="the textfile counting the download")
        self.assertEqual(m[("dopt_jobs", (("state", "acknowledged"),))], 1)
        self.assertNotEqual(os.stat(path).st_ino, first.st_ino, "rewritten in place, not replaced")
        self.assertEqual(os.stat(path).st_mode & 0o7777, 0o644)
        self.agent.terminate()
        self.assertEqual(os.listdir(folder), ["dopt.prom"])

    def test_textfile_in_a_folder_every_user_may_write_is_refused(self):
        folder = self.sb.path("open")
        os.makedirs(folder)
        os.chmod(folder, 0o1777)
        self.start_agent('[metrics]\ntextfile = "%s/dopt.prom"\ninterval = 1\n' % folder)
        wait_for(lambda: "writable by every user" in self.agent.log_text(), 10,
                 what="the agent refusing the folder")
        self.assertEqual(os.listdir(folder), [])

    def test_sighup_starts_the_textfile(self):
        path = self.sb.path("dopt.prom")
        self.start_agent()
        with open(self.agent.config, "a") as f:
            f.write('[metrics]\ntextfile = "%s"\ninterval = 1\n' % path)
        self.agent.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: os.path.exists(path), 10, what="the textfile after SIGHUP")
        _, m = parse(open(path).read())
        self.assertEqual(m[("dopt_origin_received_bytes_total", ())], 0)

    def test_a_bad_textfile_path_stops_the_agent_naming_the_line(self):
        agent = self.sb.agent('[metrics]\ntextfile = "/var/lib/node/dopt.txt"\n', start=False)
        p = subprocess.run([harness.doptd_path(), "--config", agent.config], capture_output=True,
                           text=True, env=clean_env(), timeout=30)
        self.assertNotEqual(p.returncode, 0)
        self.assertRegex(p.stderr, r"doptd\.toml:\d+: metrics\.textfile must name a file ending in \"\.prom\"")


class MetricsOfOtherUsers(OtherUsersTest):
    """A root-run agent; `nobody` asks for its metrics."""

    def test_a_user_sees_their_own_counts_and_no_other_users_job(self):
        make_file(os.path.join(self.www, "f.bin"), SIZE)
        origin = self.sb.nginx(self.www)
        self.start_agent()
        self.dopt("get", origin.url("/f.bin"), "-o", os.path.join(self.dest(), "f.bin"),
                  "--name", "root-only-name", check=0, timeout=60)
        _, root = parse(self.dopt("stats", "--prometheus", check=True)[1])
        self.assertEqual(root[("dopt_origin_received_bytes_total", ())], SIZE)
        self.assertEqual(root[("dopt_jobs", (("state", "acknowledged"),))], 1)

        p = subprocess.run([dopt_path(), "--socket", self.agent.socket, "stats", "--prometheus"],
                           capture_output=True, text=True, timeout=30, env=clean_env(),
                           user=self.nobody.pw_uid, group=self.nobody.pw_gid, extra_groups=[], cwd="/")
        self.assertEqual(p.returncode, 0, p.stderr)
        _, theirs = parse(p.stdout)
        self.assertEqual(theirs[("dopt_origin_received_bytes_total", ())], 0)
        self.assertEqual(theirs[("dopt_month_origin_received_bytes", (("month", this_month()),))], 0)
        self.assertEqual(theirs[("dopt_origin_requests_total", ())], 0)
        self.assertEqual(theirs[("dopt_jobs", (("state", "acknowledged"),))], 0)
        self.assertNotIn("root-only-name", p.stdout)


if __name__ == "__main__":
    import unittest
    unittest.main()
