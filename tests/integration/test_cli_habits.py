"""curl habits of the dopt CLI (issue 15, item 5), against a real doptd and
nginx on 127.0.0.1:

- `dopt --version` names dopt, libdopt and the agent that answers;
- every command has its own `--help` (and `dopt help COMMAND`);
- `get -O` names the file after the URL's last path segment, and refuses
  names that are no safe file name; `get -q` prints nothing but errors;
- without a terminal, progress is plain lines (no \\r); on a terminal the
  bar shows the speed, the ETA and the peer/origin split;
- a foreground `get` gives up after its no-progress time (300 s unless
  --no-progress-timeout says otherwise; seen in the job's status JSON);
- `dopt set ID` changes a job after it was made, also a running one; not
  another user's.
"""

import os
import pty
import pwd
import re
import signal
import subprocess
import unittest

from harness import (IS_ROOT, MiB, IntegrationTest, clean_env, dopt_path, free_port, make_file,
                     wait_for)

GET_NO_PROGRESS_TIMEOUT = 300          # api/cli/dopt_cli.cpp, README.md, docs/design.md
AGENT_NO_PROGRESS_TIMEOUT = 14 * 86400  # [jobs] no_progress_timeout, docs/config.md
DOPT_E_NO_PROGRESS = -18
VERSION = re.search(r'DOPT_VERSION_STRING "([0-9.]+)"',
                    open(os.path.join(os.path.dirname(__file__), "..", "..", "api", "include",
                                      "dopt", "dopt.h")).read()).group(1)
COMMANDS = ("get", "add", "set", "list", "status", "wait", "suspend", "resume", "cancel",
            "complete", "stats", "cache", "publish", "version", "help")


class CliTest(IntegrationTest):

    def dopt_in(self, cwd, *args, **kw):
        return self.dopt(*args, cwd=cwd, **kw)

    def closed_port_url(self):
        # Nothing listens there: every attempt is refused at once.
        return "http://127.0.0.1:%d/nothing.bin" % free_port()

    def get_in_background(self, *args):
        """`dopt get ARGS` with stderr a pipe (no terminal); the Popen."""
        p = subprocess.Popen([dopt_path(), "--socket", self.agent.socket, "get"] + list(args),
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, env=clean_env())
        self.addCleanup(p.stderr.close)
        self.addCleanup(lambda: p.poll() is None and (p.kill(), p.wait()))
        return p

class CliHabits(CliTest):

    def setUp(self):
        super().setUp()
        self.nginx = self.sb.nginx(self.www, slow_rate="1m")
        self.start_agent()

    # -- --version and --help ----------------------------------------------------

    def test_version_names_dopt_libdopt_and_the_agent_that_answers(self):
        rc, out, err = self.dopt("--version", check=True)
        self.assertEqual(out.splitlines(), ["dopt %s (libdopt %s)" % (VERSION, VERSION),
                                            "agent: doptd %s" % VERSION], err)
        self.assertEqual(self.dopt("version", check=True)[1], out)
        # No agent: the client's versions all the same, exit 0.
        rc, out, err = self.dopt("--version", socket_path=self.sb.path("none.sock"), check=True)
        self.assertEqual(out.splitlines()[0], "dopt %s (libdopt %s)" % (VERSION, VERSION))
        self.assertTrue(out.splitlines()[1].startswith("agent: none answered ("), out)

    def test_every_command_has_its_own_help_with_usage_options_and_exit_codes(self):
        for command in COMMANDS:
            with self.subTest(command=command):
                rc, out, err = self.dopt(command, "--help", check=True)
                first = out.splitlines()[0]
                self.assertTrue(first.startswith("usage: dopt "), out)
                self.assertIn(command, first)
                self.assertEqual(self.dopt("help", command, check=True)[1], out)
                if command != "help":
                    self.assertIn("exit codes:", out)
        _, out, _ = self.dopt("get", "--help", check=True)
        for option in ("-O, --remote-name", "-q, --quiet", "--no-progress-timeout", "130"):
            self.assertIn(option, out)
        rc, _, err = self.dopt("help", "nosuch")
        self.assertEqual(rc, 2)
        self.assertIn("unknown command 'nosuch'", err)

    # -- -O and -q -----------------------------------------------------------------

    def test_dash_O_saves_under_the_urls_last_segment_percent_decoded(self):
        sha = make_file(os.path.join(self.www, "dir", "a file.bin"), 100000, seed=1)
        cwd = self.dest()
        self.dopt_in(cwd, "get", "-O", self.nginx.url("/dir/a%20file.bin?x=1/y#z"), check=True)
        self.assertEqual(os.listdir(cwd), ["a file.bin"])
        self.assertFileSha(os.path.join(cwd, "a file.bin"), sha)
        # add: each URL names its own file.
        sha2 = make_file(os.path.join(self.www, "two.bin"), 1000, seed=2)
        job_id = self.agent.add("--remote-name", self.nginx.url("/two.bin"), cwd=cwd)
        st = self.status(job_id)
        self.assertEqual(st["files"][0]["local_name"], os.path.join(cwd, "two.bin"))
        self.agent.dopt("wait", job_id, check=True)
        self.agent.dopt("complete", job_id, check=True)
        self.assertFileSha(os.path.join(cwd, "two.bin"), sha2)

    def test_dash_O_refuses_names_that_are_no_safe_file_name(self):
        cwd = self.dest()
        base = "http://127.0.0.1:%d" % self.nginx.port
        hostile = ["", "/", "/dir/", "/.", "/..", "/%2e%2E", "/a%2Fb", "/a%2fb%2f..",
                   "/a%0Ab", "/%00", "/x%7F", "/x%C2%9By", "?q=/etc/passwd", "#/x",
                   "/" + "n" * 256]
        for path in hostile:
            with self.subTest(path=path):
                rc, out, err = self.dopt_in(cwd, "get", "-O", base + path)
                self.assertEqual(rc, 2, err)
                self.assertIn("-O cannot name a file after", err)
                self.assertIn("use -o PATH", err)
        rc, _, err = self.dopt_in(cwd, "get", "-O", "-o", "x", base + "/x")
        self.assertEqual(rc, 2)
        self.assertIn("-O and -o do not go together", err)
        self.assertEqual(os.listdir(cwd), [])
        self.assertEqual(self.agent.jobs(), [], "a refused -O made a job")

    def test_quiet_get_prints_nothing_but_errors_and_keeps_its_exit_codes(self):
        sha = make_file(os.path.join(self.www, "q.bin"), MiB, seed=3)
        path = os.path.join(self.dest(), "q.bin")
        rc, out, err = self.dopt("-q", "get", self.nginx.url("/q.bin"), "-o", path)
        self.assertEqual((rc, out, err), (0, "", ""))
        self.assertFileSha(path, sha)
        rc, out, err = self.dopt("get", "--quiet", self.nginx.url("/missing.bin"),
                                 "-o", os.path.join(self.dest(), "missing.bin"))
        self.assertEqual(rc, 1)
        self.assertIn("failed", err)
        self.assertNotIn("%", err)

    # -- progress ------------------------------------------------------------------

    def test_progress_without_a_terminal_is_plain_lines(self):
        # Lines while waiting, and one every few seconds: GivingUp below.
        sha = make_file(os.path.join(self.www, "lines.bin"), MiB, seed=4)
        path = os.path.join(self.dest(), "lines.bin")
        rc, out, err = self.dopt("get", self.nginx.url("/lines.bin"), "-o", path, check=True)
        self.assertFileSha(path, sha)
        self.assertNotIn("\r", err)
        self.assertNotIn("\033", err)
        self.assertEqual(err.splitlines(), [
            "dopt: 100% 1.0 MiB of 1.0 MiB, from peers 0 B, from origin 1.0 MiB (acknowledged)",
            err.splitlines()[-1]], err)
        self.assertTrue(err.splitlines()[-1].startswith("dopt: saved " + path), err)

    def test_the_bar_on_a_terminal_shows_speed_eta_and_the_peer_origin_split(self):
        make_file(os.path.join(self.www, "bar.bin"), 2 * MiB, seed=5)
        leader, follower = pty.openpty()
        p = subprocess.Popen([dopt_path(), "--socket", self.agent.socket, "get",
                              self.nginx.url("/slow/bar.bin"), "-o",
                              os.path.join(self.dest(), "bar.bin")],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=follower, env=clean_env())
        os.close(follower)
        text = b""
        try:
            while True:
                try:
                    chunk = os.read(leader, 4096)
                except OSError:
                    break  # dopt exited: its output is all there is
                if not chunk:
                    break
                text += chunk
        finally:
            self.assertEqual(p.wait(timeout=60), 0, text)
            os.close(leader)
        bars = text.decode(errors="replace").split("\r")
        moving = [b for b in bars if "/s, eta " in b]
        self.assertTrue(moving, "no bar with speed and ETA: %r" % text[-600:])
        self.assertIn("peers 0% origin 100%", moving[-1])

    def test_set_refuses_bad_input_unknown_and_ended_jobs(self):
        job_id = self.agent.add(self.closed_port_url(), "-o", os.path.join(self.dest(), "s.bin"))
        cases = [(["set", job_id], "needs --priority, --name or --no-progress-timeout"),
                 (["set", job_id, "--priority", "urgent"], "urgent"),
                 (["set", job_id, "--no-progress-timeout", "-1"], "-1"),
                 (["set", job_id, "--sha256", "0" * 64], "does not apply to 'set'"),
                 (["set", "--priority", "low"], "needs a job id"),
                 (["set", "00000000-0000-0000-0000-000000000000", "--priority", "low"],
                  "no such job")]
        for args, said in cases:
            with self.subTest(args=args):
                rc, _, err = self.agent.dopt(*args)
                self.assertEqual(rc, 2, err)
                self.assertIn(said, err)
        self.agent.dopt("cancel", job_id, check=True)
        rc, _, err = self.agent.dopt("set", job_id, "--name", "late")
        self.assertEqual(rc, 2)
        self.assertIn("cancelled", err)


class GivingUp(CliTest):
    """Jobs that wait to retry a closed port; retries a minute apart, so a
    job stays in transient_error until its no-progress time is over."""

    def setUp(self):
        super().setUp()
        self.start_agent("[jobs]\nretry_min_delay = 60\nretry_max_delay = 60\n")

    def test_a_foreground_get_gives_up_after_its_no_progress_timeout(self):
        path = os.path.join(self.dest(), "nothing.bin")
        rc, out, err = self.dopt("get", self.closed_port_url(), "-o", path,
                                 "--no-progress-timeout", "8", timeout=60)
        self.assertEqual(rc, 1, err)
        self.assertIn("no progress for 8 s", err)
        # While it waited, plain lines said why and when it tries again: one
        # when it began to wait, one 5 s later; then the last one.
        waiting = re.findall(r"^dopt: \? 0 B of \?, from peers 0 B, from origin 0 B "
                             r"\(transient_error: .*127\.0\.0\.1.*; next try in \d+ s\)$",
                             err, re.M)
        self.assertEqual(len(waiting), 2, err)
        self.assertRegex(err, r"(?m)^dopt: \? 0 B of \?, .* \(error\)$")
        job = self.agent.job_for(path)
        self.assertEqual(job["state"], "error")
        self.assertEqual(job["error"]["code"], DOPT_E_NO_PROGRESS)

    def test_get_gives_up_after_300_s_by_default_and_add_keeps_the_agents_default(self):
        path = os.path.join(self.dest(), "default.bin")
        p = self.get_in_background(self.closed_port_url(), "-o", path)
        job = self.started_job(path)
        self.assertEqual(job["no_progress_timeout"], GET_NO_PROGRESS_TIMEOUT)
        p.send_signal(signal.SIGINT)  # detach
        self.assertEqual(p.wait(timeout=20), 130)
        self.assertIn("detached", p.stderr.read().decode())
        job_id = self.agent.add(self.closed_port_url(), "-o", os.path.join(self.dest(), "a.bin"))
        self.assertEqual(self.status(job_id)["no_progress_timeout"], AGENT_NO_PROGRESS_TIMEOUT)
        # get --no-progress-timeout 0: the agent's default, as for dopt_job_set_no_progress_timeout.
        path0 = os.path.join(self.dest(), "zero.bin")
        p = self.get_in_background(self.closed_port_url(), "-o", path0, "--no-progress-timeout", "0")
        job = self.started_job(path0)
        self.assertEqual(job["no_progress_timeout"], AGENT_NO_PROGRESS_TIMEOUT)
        p.send_signal(signal.SIGINT)
        self.assertEqual(p.wait(timeout=20), 130)

    def started_job(self, path):
        """The job of a `dopt get` to `path` once it was resumed: every
        property `get` sets comes before the resume."""
        def started():
            return [j for j in self.agent.jobs() if j["files"] and
                    j["files"][0]["local_name"] == path and j["state"] != "suspended"]
        return wait_for(started, 20, what="the job of `dopt get -o %s` to start" % path)[0]

    # -- dopt set ------------------------------------------------------------------

    def test_set_no_progress_timeout_ends_a_job_that_waits_to_retry(self):
        job_id = self.agent.add(self.closed_port_url(), "-o", os.path.join(self.dest(), "n.bin"))
        self.wait_state(job_id, "transient_error", timeout=30)
        self.agent.dopt("set", job_id, "--no-progress-timeout", "1", check=True)
        st = self.wait_state(job_id, "error", timeout=30)
        self.assertEqual(st["no_progress_timeout"], 1)
        self.assertEqual(st["error"]["code"], DOPT_E_NO_PROGRESS)


class SetOnARunningJob(IntegrationTest):
    """One slot: a running job yields it when `dopt set` raises a queued one."""

    def setUp(self):
        super().setUp()
        make_file(os.path.join(self.www, "big.bin"), 32 * MiB, seed=6)
        self.nginx = self.sb.nginx(self.www, slow_rate="2m")
        self.start_agent("[jobs]\nmax_jobs = 1\n")

    def test_set_changes_priority_name_and_timeout_of_a_running_job(self):
        first = self.agent.add(self.nginx.url("/slow/big.bin"), "-o",
                               os.path.join(self.dest(), "first.bin"))
        self.agent.wait_bytes(first, 1, timeout=30)
        second = self.agent.add(self.nginx.url("/slow/big.bin"), "-o",
                                os.path.join(self.dest(), "second.bin"), "--priority", "low")
        self.assertEqual(self.status(second)["state"], "queued")
        self.agent.dopt("set", second, "--priority", "high", "--name", "urgent",
                        "--no-progress-timeout", "77", check=True)
        st = self.wait_state(second, "transferring", timeout=30)
        self.assertEqual((st["priority"], st["display_name"], st["no_progress_timeout"]),
                         ("high", "urgent", 77))
        self.assertEqual(self.status(first)["state"], "queued")
        _, out, _ = self.agent.dopt("status", second, check=True)
        self.assertIn("gives up:     after 1:17 without progress", out)
        self.agent.dopt("set", second, "--name", "", check=True)  # back to its file's name
        self.assertEqual(self.status(second)["display_name"], "second.bin")
        for job_id in (first, second):
            self.agent.dopt("cancel", job_id, check=True)


class SetOnAnotherUsersJob(IntegrationTest):
    """A root agent without `user` (socket 0666): nobody cannot change root's job."""

    def setUp(self):
        if not IS_ROOT:
            self.skipTest("another user (nobody) must use the agent: run as root")
        try:
            self.nobody = pwd.getpwnam("nobody")
        except KeyError:
            self.skipTest("needs the account 'nobody'")
        super().setUp()
        os.chmod(self.sb.dir, 0o755)  # nobody walks to the socket
        self.start_agent()

    def test_set_on_another_users_job_is_refused_as_other_job_operations_are(self):
        job_id = self.agent.add("http://127.0.0.1:9/x.bin", "-o", os.path.join(self.dest(), "x.bin"),
                                "--name", "root's")
        p = subprocess.run([dopt_path(), "--socket", self.agent.socket, "set", job_id,
                            "--priority", "low", "--name", "mine"],
                           capture_output=True, timeout=30, env=clean_env(), cwd="/",
                           stdin=subprocess.DEVNULL, user=self.nobody.pw_uid,
                           group=self.nobody.pw_gid, extra_groups=[])
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn(b"no such job: " + job_id.encode(), p.stderr)
        st = self.status(job_id)
        self.assertEqual((st["priority"], st["display_name"]), ("normal", "root's"))


if __name__ == "__main__":
    unittest.main()
