"""The agent as a process: kill -9 and SIGTERM mid-transfer, priorities,
one agent per state_dir, stale sockets, config errors."""

import os
import shutil
import signal
import subprocess
import time
import unittest

from harness import (MiB, IntegrationTest, clean_env, doptd_path, dopt_path, free_port,
                     make_file, wait_for)


class Lifecycle(IntegrationTest):

    def setUp(self):
        super().setUp()
        self.nginx = self.sb.nginx(self.www, slow_rate="2m")

    def start_with_slow_job(self, size):
        """Starts the agent with a job for big.bin, `size` bytes that nginx
        serves at 2 MiB/s; returns (job id, local path, the file's sha256)."""
        sha = make_file(os.path.join(self.www, "big.bin"), size)
        self.start_agent()
        path = os.path.join(self.dest(), "big.bin")
        return self.agent.add(self.nginx.url("/slow/big.bin"), "-o", path), path, sha

    def test_kill_9_mid_transfer_then_restart_finishes_with_little_refetched(self):
        size = 32 * MiB
        job_id, path, sha = self.start_with_slow_job(size)
        st = self.agent.wait_bytes(job_id, int(size * 0.3), timeout=60)
        self.assertLess(st["bytes_transferred"], size * 0.6, "too fast to kill mid-transfer")
        self.agent.kill9()
        killed_at = st["bytes_transferred"]
        self.agent.start()
        self.assertNotIn(self.status(job_id)["state"], ("acknowledged", "cancelled", "error"))
        self.dopt("wait", job_id, check=0, timeout=90)
        self.dopt("complete", job_id, check=0)
        self.assertFileSha(path, sha)
        time.sleep(0.5)  # let nginx log the connection the kill broke
        entries = [e for e in self.nginx.log_entries() if e[4] == "/slow/big.bin"]
        sent = self.nginx.body_bytes_sent("/slow/big.bin")
        print("\n  kill -9 at %.1f MiB of %d MiB: nginx sent %.1f MiB, refetched %.2f MiB"
              " in %d requests %s" % (killed_at / MiB, size // MiB, sent / MiB,
                                      (sent - size) / MiB, len(entries),
                                      [(e[0], e[1], e[2]) for e in entries]))
        self.assertLessEqual(sent, size + 8 * MiB, "the restart refetched too much")

    def test_sigterm_exits_0_quickly_and_the_job_finishes_after_restart(self):
        size = 32 * MiB
        job_id, path, sha = self.start_with_slow_job(size)
        self.agent.wait_bytes(job_id, 2 * MiB, timeout=60)
        t0 = time.monotonic()
        rc = self.agent.terminate(timeout=10)
        took = time.monotonic() - t0
        self.assertEqual(rc, 0, "doptd exit status after SIGTERM")
        self.assertLess(took, 5, "doptd took %.1fs to stop on SIGTERM" % took)
        self.assertFalse(os.path.exists(path))
        self.agent.start()
        st = self.status(job_id)
        self.assertIn(st["state"], ("queued", "connecting", "transferring", "transient_error",
                                    "transferred"),
                      "job after SIGTERM and restart")
        self.assertEqual(st["files"][0]["local_name"], path)
        self.dopt("wait", job_id, check=0, timeout=90)
        self.dopt("complete", job_id, check=0)
        self.assertFileSha(path, sha)

    def test_high_priority_job_runs_first_and_low_waits_queued(self):
        # max_jobs = 1: a LOW job that is running must yield its slot to HIGH.
        size = 16 * MiB
        sha_low = make_file(os.path.join(self.www, "low.bin"), size)
        sha_high = make_file(os.path.join(self.www, "high.bin"), size)
        self.start_agent("[jobs]\nmax_jobs = 1\n")
        dest = self.dest()
        p_low, p_high = os.path.join(dest, "low.bin"), os.path.join(dest, "high.bin")
        low = self.agent.add(self.nginx.url("/slow/low.bin"), "-o", p_low,
                             "--priority", "low")
        self.agent.wait_bytes(low, 512 * 1024, timeout=30)
        high = self.agent.add(self.nginx.url("/slow/high.bin"), "-o", p_high,
                              "--priority", "high")
        time.sleep(2)  # the scheduler's turn; data already in flight may land
        low_bytes0 = self.status(low)["bytes_transferred"]
        low_states = set()
        deadline = time.monotonic() + 60
        while True:
            # LOW first: if HIGH is still running when read afterwards, LOW
            # was read while HIGH ran (the other order races HIGH's end).
            lo = self.status(low)
            h = self.status(high)
            if h["state"] in ("transferred", "error", "cancelled"):
                break
            low_states.add(lo["state"])
            self.assertNotEqual(lo["state"], "transferred", "LOW finished before HIGH")
            self.assertLess(lo["bytes_transferred"] - low_bytes0, 2 * MiB,
                            "LOW kept transferring while HIGH ran (LOW %s, HIGH %s %d bytes)"
                            % (lo["state"], h["state"], h["bytes_transferred"]))
            self.assertLess(time.monotonic(), deadline, "HIGH did not finish in 60s")
            time.sleep(0.2)
        self.assertEqual(h["state"], "transferred")
        self.assertEqual(low_states, {"queued"}, "LOW's states while HIGH ran")
        self.dopt("wait", low, check=0, timeout=60)
        for job_id, path, sha in ((high, p_high, sha_high), (low, p_low, sha_low)):
            self.dopt("complete", job_id, check=0)
            self.assertFileSha(path, sha)

    def test_a_retrying_foreground_job_with_free_slots_stops_no_one(self):
        # max_jobs = 4, two jobs: the foreground one, refused by a closed
        # port, retries every 1-2 s while the background one runs.
        sha = make_file(os.path.join(self.www, "bg.bin"), 8 * MiB)
        self.start_agent()
        path = os.path.join(self.dest(), "bg.bin")
        bg = self.agent.add(self.nginx.url("/slow/bg.bin"), "-o", path, "--priority", "low")
        self.agent.wait_bytes(bg, 256 * 1024, timeout=30)
        fg = self.agent.add("http://127.0.0.1:%d/fg.bin" % free_port(), "-o",
                            os.path.join(self.dest(), "fg.bin"), "--priority", "foreground")
        seen = []
        self.wait_state(bg, ("transferred", "error"), timeout=60, seen=seen)
        self.assertEqual(seen[-1], "transferred")
        self.assertNotIn("queued", seen)
        self.assertEqual(self.status(fg)["state"], "transient_error")
        log = self.agent.log_text()
        self.assertGreaterEqual(log.count("job %s: transient error" % fg), 2,
                                "the foreground job retried while the other ran")
        self.assertNotIn("yields to a more urgent job", log)
        self.dopt("complete", bg, check=0)
        self.assertFileSha(path, sha)

    def test_a_retry_due_with_every_slot_taken_waits_for_a_free_one(self):
        # max_jobs = 1: the new foreground job takes the slot once; its
        # retries wait for the slot instead of stopping the other again.
        make_file(os.path.join(self.www, "bg.bin"), 8 * MiB)
        self.start_agent("[jobs]\nmax_jobs = 1\n")
        bg = self.agent.add(self.nginx.url("/slow/bg.bin"), "-o",
                            os.path.join(self.dest(), "bg.bin"), "--priority", "low")
        self.agent.wait_bytes(bg, 256 * 1024, timeout=30)
        fg = self.agent.add("http://127.0.0.1:%d/fg.bin" % free_port(), "-o",
                            os.path.join(self.dest(), "fg.bin"), "--priority", "foreground")
        self.wait_state(bg, ("transferred", "error"), timeout=60)
        log = self.agent.log_text()
        while_bg_ran = log[:log.index("job %s: transferring -> transferred" % bg)]
        self.assertEqual(log.count("job %s yields to a more urgent job" % bg), 1, log)
        self.assertEqual(while_bg_ran.count("job %s: transient error" % fg), 1,
                         "a retry started while the slot was taken")
        wait_for(lambda: self.agent.log_text().count("job %s: transient error" % fg) >= 2,
                 timeout=10, what="the retry once the slot is free")

    def test_a_second_agent_on_the_same_state_dir_refuses_to_start(self):
        self.start_agent()
        second = self.sb.agent(name="agent2", start=False, state_dir=self.agent.state_dir)
        p = second.spawn()
        try:
            rc = p.wait(10)
        except subprocess.TimeoutExpired:
            self.fail("a second doptd on the same state_dir is still running")
        self.assertNotEqual(rc, 0)
        self.assertIn("lock", second.log_text().lower(),
                      "the refusal should say the state_dir is locked")
        self.agent.dopt("list", check=0)  # the first one is unharmed

    def test_a_second_agent_on_a_live_agents_socket_refuses_and_leaves_it(self):
        self.start_agent()
        second = self.sb.agent(name="agent2", start=False,
                               extra_toml='socket = "%s"' % self.agent.socket)
        p = second.spawn()
        try:
            rc = p.wait(10)
        except subprocess.TimeoutExpired:
            self.fail("a second doptd on a live agent's socket is still running")
        self.assertEqual(rc, 1, "a doptd that cannot start exits 1")
        self.assertIn("another doptd is serving " + self.agent.socket, second.log_text())
        self.assertNotIn("replacing stale socket", second.log_text())
        self.agent.dopt("list", check=0)  # the first one still answers on its socket

    def test_stale_socket_from_kill_9_is_replaced_on_restart(self):
        self.start_agent()
        self.agent.kill9()
        self.assertTrue(os.path.exists(self.agent.socket), "kill -9 left no socket file")
        rc, _, _ = self.dopt("list")
        self.assertEqual(rc, 3, "a dead agent's socket must be exit 3")
        self.agent.start()
        self.dopt("list", check=0)

    def run_doptd_with(self, text, timeout=10):
        cfg = self.sb.path("bad.toml")
        with open(cfg, "w") as f:
            f.write(text)
        p = subprocess.Popen([doptd_path(), "--config", cfg], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=clean_env())
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
            return None, cfg, ""
        return p.returncode, cfg, err.decode(errors="replace")

    def test_bad_config_value_exits_2_naming_file_and_line(self):
        d = self.sb.path("cfg")
        # Line 3 holds the bad value (a dotted key keeps the paths top-level).
        text = ('state_dir = "%s/state"\nsocket = "%s/s.sock"\njobs.max_jobs = "x"\n'
                'cache_dir = "%s/cache"\n' % (d, d, d))
        rc, cfg, err = self.run_doptd_with(text)
        self.assertIsNotNone(rc, "doptd started with a bad config")
        self.assertEqual(rc, 2, "stderr: %s" % err)
        self.assertIn("%s:3" % cfg, err)

    def test_unknown_key_only_warns_and_the_agent_starts(self):
        self.start_agent("frobnicate_level = 7\n")
        self.agent.dopt("list", check=0)
        self.assertIn("frobnicate_level", self.agent.log_text(),
                      "the unknown key should be named in a warning")

    def test_dopt_get_rides_out_a_kill_9_and_restart_of_the_agent(self):
        size = 16 * MiB
        sha = make_file(os.path.join(self.www, "big.bin"), size)
        self.start_agent()
        path = os.path.join(self.dest(), "big.bin")
        get = subprocess.Popen([dopt_path(), "--socket", self.agent.socket, "get",
                                self.nginx.url("/slow/big.bin"), "-o", path],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean_env())
        try:
            deadline = time.monotonic() + 30
            while not self.agent.jobs() or self.agent.jobs()[-1]["bytes_transferred"] < 2 * MiB:
                self.assertLess(time.monotonic(), deadline, "the transfer did not start")
                time.sleep(0.1)
            self.agent.kill9()
            time.sleep(1.5)
            self.agent.start()
            out, err = get.communicate(timeout=120)
        finally:
            if get.poll() is None:
                get.kill()
                get.wait()
        self.assertEqual(get.returncode, 0, err.decode())
        self.assertIn(b"waiting for it to come back", err)
        self.assertFileSha(path, sha)

    def test_sighup_reloads_the_config_and_a_bad_one_keeps_the_old(self):
        sha = make_file(os.path.join(self.www, "f.bin"), 1 * MiB)
        nginx = self.nginx
        self.start_agent()
        with open(self.agent.config) as f:
            text = f.read()
        # debug -> info: the debug lines of state changes must stop.
        with open(self.agent.config, "w") as f:
            f.write(text.replace('log_level = "debug"', 'log_level = "info"'))
        self.agent.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "SIGHUP: reloaded" not in self.agent.log_text():
            self.assertLess(time.monotonic(), deadline, "no reload logged")
            time.sleep(0.1)
        mark = len(self.agent.log_text())
        out = os.path.join(self.dest(), "f.bin")
        self.dopt("get", nginx.url("f.bin"), "-o", out, check=0)
        self.assertFileSha(out, sha)
        self.assertNotIn(" debug: ", self.agent.log_text()[mark:])

        # A config with a bad line is refused whole; the agent keeps serving.
        with open(self.agent.config, "w") as f:
            f.write(text + "\n[jobs]\nmax_jobs = 0\n")
        self.agent.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "keeping the old configuration" not in self.agent.log_text():
            self.assertLess(time.monotonic(), deadline, "the bad config was not reported")
            time.sleep(0.1)
        self.assertIn(self.agent.config + ":", self.agent.log_text())
        self.assertTrue(self.agent.running())
        self.agent.dopt("list", check=0)


class LostPartialFiles(IntegrationTest):
    """A job whose bytes are gone from disk is fetched again on resume, not
    stuck (issue 17)."""

    def setUp(self):
        super().setUp()
        self.nginx = self.sb.nginx(self.www)
        self.start_agent()

    def partials(self, folder):
        return [n for n in os.listdir(folder) if n.endswith(".dopt-partial")]

    def test_a_transferred_job_whose_partial_file_was_removed_is_fetched_again_on_resume(self):
        # Used to: Complete failed on the missing file for ever, and resume
        # was refused ("transferred cannot be resumed").
        sha = make_file(os.path.join(self.www, "a.bin"), MiB)
        folder = self.dest()
        path = os.path.join(folder, "a.bin")
        job_id = self.agent.add(self.nginx.url("a.bin"), "-o", path)
        self.wait_state(job_id, "transferred")
        for name in self.partials(folder):
            os.unlink(os.path.join(folder, name))
        rc, _, err = self.dopt("complete", job_id)
        self.assertNotEqual(rc, 0, "Complete without the file's bytes succeeded")
        self.assertIn("gone; resume the job", err)
        self.assertEqual(self.status(job_id)["state"], "transferred")
        self.dopt("resume", job_id, check=True)
        self.wait_state(job_id, "transferred")
        self.dopt("complete", job_id, check=True)
        self.assertFileSha(path, sha)
        self.assertEqual(self.nginx.body_bytes_sent("/a.bin"), 2 * MiB)

    def test_resume_after_the_folder_was_removed_and_made_again_fetches_the_lost_file(self):
        # b.bin is missing (404: ERROR) while a.bin is whole; the folder,
        # a.bin's partial file with it, is removed and made again, b.bin
        # put on the origin, the job resumed. Used to: the resume counted
        # a.bin as whole, and only its rename was tried again (and failed).
        sha_a = make_file(os.path.join(self.www, "a.bin"), MiB)
        folder = self.dest()
        pa, pb = os.path.join(folder, "a.bin"), os.path.join(folder, "b.bin")
        job_id = self.agent.add(self.nginx.url("a.bin"), "-o", pa,
                                self.nginx.url("b.bin"), "-o", pb)
        st = self.wait_state(job_id, "error")
        self.assertEqual(st["error"]["code"], 404, st)
        self.assertTrue([n for n in self.partials(folder) if n.startswith(".a.bin")],
                        "a.bin's partial file")
        shutil.rmtree(folder)
        os.makedirs(folder)
        sha_b = make_file(os.path.join(self.www, "b.bin"), MiB)
        self.dopt("resume", job_id, check=True)
        st = self.wait_state(job_id, ("transferred", "error"))
        self.assertEqual(st["state"], "transferred", st)
        self.dopt("complete", job_id, check=True)
        self.assertFileSha(pa, sha_a)
        self.assertFileSha(pb, sha_b)


if __name__ == "__main__":
    unittest.main()
