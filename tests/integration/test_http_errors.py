"""How the agent meets a misbehaving origin: fatal HTTP errors, transient
errors and retries, resets, changed content, stalls, refused connections,
origins that ignore Range or lie about the length.

nginx where it can produce the case, tests/origin/fault_origin.py otherwise."""

import hashlib
import os
import pty
import signal
import subprocess
import time
import unittest

from harness import (MiB, IntegrationTest, clean_env, dopt_path, fault_origin, free_port,
                     make_file, sha256_file)

DOPT_E_HTTP = -16                # api/include/dopt/dopt.h
DOPT_E_UNSUPPORTED_SCHEME = -9


class FatalHttpErrors(IntegrationTest):

    def setUp(self):
        super().setUp()
        self.nginx = self.sb.nginx(self.www)
        self.start_agent()

    def test_403_is_a_fatal_remote_file_error_with_the_file_in_progress(self):
        make_file(os.path.join(self.www, "secret.bin"), 1000)
        url = self.nginx.url("/forbidden/secret.bin")
        path = os.path.join(self.dest(), "secret.bin")
        rc, out, err = self.dopt("get", url, "-o", path, timeout=60)
        self.assertEqual(rc, 1, "stdout %r stderr %r" % (out, err))
        job = self.agent.job_for(path)
        self.assertEqual(job["state"], "error")
        e = job["error"]
        self.assertIsNotNone(e)
        self.assertEqual(e["context"], "remote_file")
        self.assertEqual(e["code"], 403)
        self.assertEqual(e["protocol"], "http")
        self.assertIsNotNone(e["file"])
        self.assertEqual(e["file"]["remote_name"], url)
        self.assertEqual(e["file"]["local_name"], path)
        self.assertTrue(e["description"])
        self.assertIn(e["description"], err, "dopt get must print the job's error description")
        self.assertFalse(os.path.exists(path))

    def test_404_is_a_fatal_error_with_code_404(self):
        path = os.path.join(self.dest(), "missing.bin")
        rc, out, err = self.dopt("get", self.nginx.url("/missing.bin"), "-o", path,
                                 timeout=60)
        self.assertEqual(rc, 1, "stdout %r stderr %r" % (out, err))
        job = self.agent.job_for(path)
        self.assertEqual(job["state"], "error")
        self.assertEqual(job["error"]["code"], 404)
        self.assertEqual(job["error"]["context"], "remote_file")
        self.assertAlmostEqual(job["error"]["time"], time.time(), delta=120)

    def test_the_log_never_shows_a_urls_password_or_token(self):
        # The journal is readable by more users than the job's owner (adm,
        # systemd-journal): the URL's userinfo and query must not reach it,
        # though the agent logs the URL at debug and the 404 at warn.
        path = os.path.join(self.dest(), "missing.bin")
        # The password is longer than a log line: the line must be redacted
        # before it is cut, or the cut hides the '@' that ends the userinfo.
        url = self.nginx.url("/missing.bin?token=Tok3nValue").replace(
            "http://", "http://alice:Passw0rdValue%s@" % ("x" * 2100))
        rc, out, err = self.dopt("get", url, "-o", path, timeout=60)
        self.assertEqual(rc, 1, "stdout %r stderr %r" % (out, err))
        self.assertEqual(self.agent.job_for(path)["error"]["code"], 404)
        with open(self.agent.log, errors="replace") as f:
            log = f.read()
        for secret in ("Tok3nValue", "Passw0rdValue", "alice"):
            self.assertNotIn(secret, log)
        self.assertIn("/missing.bin?[redacted]", log)


class FaultOriginTest(IntegrationTest):
    """A fault origin (tests/origin/fault_origin.py) and a running agent."""

    def setUp(self):
        super().setUp()
        self.origin = self.sb.fault_origin(self.www)
        self.start_agent()


class ResponsesThatNeverSucceed(FaultOriginTest):
    """Fatal at the first answer, with a description naming what happened."""

    def setUp(self):
        super().setUp()
        make_file(os.path.join(self.www, "f.bin"), 1000)

    def fails_at_once(self, origin_path, code):
        """Adds a job for origin_path; returns its error once it fails,
        having asked the origin once."""
        job_id = self.agent.add(self.origin.url(origin_path), "-o",
                                os.path.join(self.dest(), "f.bin"))
        seen = []
        st = self.wait_state(job_id, ("error", "transferred"), timeout=15, seen=seen)
        self.assertEqual(st["state"], "error", st)
        self.assertNotIn("transient_error", seen)
        self.assertEqual(self.origin.stats(origin_path.split("?")[0])["requests"], 1)
        self.assertEqual(st["error"]["code"], code, st["error"])
        self.assertEqual(st["error"]["context"], "remote_file", st["error"])
        return st["error"]["description"]

    def test_416_to_a_request_without_range_is_fatal(self):
        self.assertIn("416 Range Not Satisfiable for %s to a request for the whole file"
                      % self.origin.url("/status/416/f.bin"),
                      self.fails_at_once("/status/416/f.bin", 416))

    def test_204_no_content_is_fatal(self):
        self.assertIn("answered 204 No Content for",
                      self.fails_at_once("/status/204/f.bin", 204))

    def test_a_reply_that_is_not_http_says_so(self):
        d = self.fails_at_once("/not-http/f.bin", DOPT_E_HTTP)
        self.assertIn("did not answer in HTTP", d)
        self.assertNotIn("redirect", d)

    def test_a_redirect_to_ftp_or_file_names_the_scheme(self):
        for scheme in ("ftp", "file"):
            d = self.fails_at_once("/redirect-to/%s/f.bin" % scheme, DOPT_E_UNSUPPORTED_SCHEME)
            self.assertIn("redirected to a URL of scheme %s (only http and https are fetched)" % scheme, d)
            self.assertNotIn("downgrade", d)

    def test_a_response_header_over_100_kib_is_fatal_and_named(self):
        d = self.fails_at_once("/huge-header/204800/f.bin", DOPT_E_HTTP)
        self.assertIn("header too large", d)


class FaultyOrigin(FaultOriginTest):

    def add_and_finish(self, url, path, timeout=90, seen=None):
        """add, poll to transferred (collecting states), complete; returns the
        final status."""
        job_id = self.agent.add(url, "-o", path)
        self.wait_state(job_id, ("transferred", "acknowledged", "error", "cancelled"),
                        timeout=timeout, seen=seen)
        st = self.status(job_id)
        self.assertEqual(st["state"], "transferred", "states seen: %s, status %s" % (seen, st))
        self.dopt("complete", job_id, check=0)
        return self.status(job_id)

    def test_503_three_times_is_transient_then_the_job_succeeds_without_error(self):
        sha = make_file(os.path.join(self.www, "f.bin"), 2 * MiB)
        path = os.path.join(self.dest(), "f.bin")
        seen = []
        st = self.add_and_finish(self.origin.url("/fail/3/503/f.bin"), path, seen=seen)
        self.assertIn("transient_error", seen)
        self.assertNotIn("error", seen, "a 503 must never be fatal")
        self.assertEqual(st["state"], "acknowledged")
        self.assertIsNone(st["error"], "a recovered job must not keep its transient error")
        self.assertFileSha(path, sha)
        self.assertGreaterEqual(self.origin.stats("/fail/3/503/f.bin")["requests"], 4)

    def test_429_with_retry_after_is_transient_then_the_job_succeeds(self):
        sha = make_file(os.path.join(self.www, "f.bin"), 1 * MiB)
        path = os.path.join(self.dest(), "f.bin")
        seen = []
        st = self.add_and_finish(self.origin.url("/fail/2/429/f.bin?retry_after=1"), path,
                                 seen=seen)
        self.assertIn("transient_error", seen)
        self.assertNotIn("error", seen)
        self.assertEqual(st["state"], "acknowledged")
        self.assertIsNone(st["error"])
        self.assertFileSha(path, sha)

    def test_connection_reset_mid_body_resumes_by_range(self):
        size = 8 * MiB
        sha = make_file(os.path.join(self.www, "f.bin"), size)
        path = os.path.join(self.dest(), "f.bin")
        upath = "/reset/300000/f.bin"
        self.add_and_finish(self.origin.url(upath), path)
        self.assertFileSha(path, sha)
        s = self.origin.stats(upath)
        print("\n  reset mid-body: origin sent %d body bytes for a %d-byte file in %d requests"
              % (s["body_bytes"], size, s["requests"]))
        self.assertEqual(s["cuts"], 1, "the fault never fired (every request <= 300000 bytes?)")
        self.assertLess(s["body_bytes"], 1.5 * size, "the rest was not fetched by range")

    def test_content_changed_mid_transfer_yields_version_b_never_a_mix(self):
        size = 4 * MiB
        name = "changing.bin"
        upath = "/changing/200000/%d/%s" % (size, name)
        want = fault_origin.content(name, size, "b")
        path = os.path.join(self.dest(), name)
        self.add_and_finish(self.origin.url(upath), path)
        got = sha256_file(path)
        a = hashlib.sha256(fault_origin.content(name, size, "a")).hexdigest()
        self.assertNotEqual(got, a, "delivered version A, which the origin replaced")
        self.assertEqual(got, hashlib.sha256(want).hexdigest(),
                         "the file is neither version B nor A: a mix of both")
        self.assertEqual(self.origin.stats(upath)["cuts"], 1, "the fault never fired")

    def test_stall_ends_in_a_transport_error_after_the_no_progress_timeout(self):
        make_file(os.path.join(self.www, "f.bin"), 4 * MiB)
        path = os.path.join(self.dest(), "f.bin")
        t0 = time.monotonic()
        rc, out, err = self.dopt("get", self.origin.url("/stall/100000/f.bin"), "-o", path,
                                 "--no-progress-timeout", "4", timeout=60)
        took = time.monotonic() - t0
        self.assertEqual(rc, 1, "stdout %r stderr %r" % (out, err))
        self.assertLess(took, 25, "a stalled job took %.1fs to fail" % took)
        job = self.agent.job_for(path)
        self.assertEqual(job["state"], "error")
        self.assertEqual(job["error"]["context"], "transport")
        self.assertLess(job["error"]["code"], 0)
        self.assertFalse(os.path.exists(path))

    def test_refused_connection_is_transient_then_an_error_after_the_timeout(self):
        url = "http://127.0.0.1:%d/nothing.bin" % free_port()
        path = os.path.join(self.dest(), "nothing.bin")
        job_id = self.agent.add(url, "-o", path, "--no-progress-timeout", "3")
        seen = []
        st = self.wait_state(job_id, ("error", "transferred", "acknowledged"), timeout=30,
                             seen=seen)
        self.assertEqual(st["state"], "error")
        self.assertIn("transient_error", seen, "states seen: %s" % seen)
        self.assertLess(seen.index("transient_error"), seen.index("error"))
        self.assertEqual(st["error"]["context"], "transport")
        self.assertLess(st["error"]["code"], 0)

    def test_origin_ignoring_range_still_yields_the_right_file(self):
        sha = make_file(os.path.join(self.www, "f.bin"), 6 * MiB)
        path = os.path.join(self.dest(), "f.bin")
        self.dopt("get", self.origin.url("/norange/f.bin"), "-o", path, check=0, timeout=60)
        self.assertFileSha(path, sha)

    def test_origin_ignoring_range_after_a_reset_still_yields_the_right_file(self):
        # The resume after the reset gets a 200 with the whole file: the agent
        # must start over rather than append it at the resume offset.
        sha = make_file(os.path.join(self.www, "f.bin"), 6 * MiB)
        path = os.path.join(self.dest(), "f.bin")
        upath = "/reset/300000/f.bin"
        self.dopt("get", self.origin.url(upath + "?norange=1"), "-o", path,
                  check=0, timeout=60)
        self.assertFileSha(path, sha)
        self.assertEqual(self.origin.stats(upath)["cuts"], 1, "the fault never fired")

    def test_content_length_lie_never_yields_a_corrupt_acknowledged_file(self):
        size = 2 * MiB
        sha = make_file(os.path.join(self.www, "f.bin"), size)
        path = os.path.join(self.dest(), "f.bin")
        job_id = self.agent.add(self.origin.url("/lie/100000/f.bin"), "-o", path,
                                "--no-progress-timeout", "5")
        seen = []
        deadline = time.monotonic() + 30
        st = self.status(job_id)
        while time.monotonic() < deadline and st["state"] not in ("transferred", "error"):
            time.sleep(0.2)
            st = self.status(job_id)
            if not seen or seen[-1] != st["state"]:
                seen.append(st["state"])
        print("\n  content-length lie: states seen %s" % seen)
        if st["state"] == "transferred":
            self.dopt("complete", job_id)
            st = self.status(job_id)
        if st["state"] == "acknowledged" or os.path.exists(path):
            self.assertEqual(sha256_file(path), sha,
                             "acknowledged a file that differs from the origin's bytes")
        else:
            self.assertIn(st["state"], ("error", "transient_error", "transferring",
                                        "connecting", "queued", "transferred"))



class TransientErrorIsShown(IntegrationTest):
    """A job waiting in TRANSIENT_ERROR says why (issue 17, item 6): the job
    object's transient_error, `dopt status` and the progress line of
    `dopt get` name the last failure and the next attempt."""

    def setUp(self):
        super().setUp()
        # Retries a minute apart: the failure `status --json` read is still
        # the one `dopt status` shows next (with the harness's 1-2 s, a
        # retry on a loaded machine came in between and its text differed).
        self.start_agent("[jobs]\nretry_min_delay = 60\nretry_max_delay = 60\n")
        # Nothing listens there: every attempt is refused at once.
        self.url = "http://127.0.0.1:%d/nothing.bin" % free_port()
        self.path = os.path.join(self.dest(), "nothing.bin")

    def test_status_shows_the_refused_connection_and_the_next_retry(self):
        job_id = self.agent.add(self.url, "-o", self.path)
        self.agent.dopt("resume", job_id, check=True)
        st = self.wait_state(job_id, "transient_error", timeout=30)
        self.assertIsNone(st["error"])
        t = st["transient_error"]
        self.assertIsNotNone(t, "status --json: %s" % st)
        self.assertEqual(t["context"], "transport")
        self.assertEqual(t["code"], -19)  # DOPT_E_TRANSPORT
        self.assertEqual(t["protocol"], "http")
        self.assertIn("127.0.0.1", t["description"])
        self.assertEqual(t["file"]["remote_name"], self.url)
        self.assertGreater(t["time"], 0)
        self.assertGreaterEqual(t["next_retry"], t["time"])
        _, out, _ = self.agent.dopt("status", job_id, check=True)
        self.assertIn("waiting:      transient_error: " + t["description"], out)
        # Leaving the state clears it.
        self.agent.dopt("suspend", job_id, check=True)
        st = self.wait_state(job_id, "suspended", timeout=10)
        self.assertIsNone(st["transient_error"])

    def test_the_progress_line_of_get_names_the_failure(self):
        leader, follower = pty.openpty()
        p = subprocess.Popen([dopt_path(), "--socket", self.agent.socket, "get", self.url,
                              "-o", self.path], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=follower, env=clean_env())
        os.close(follower)
        text = b""
        try:
            deadline = time.monotonic() + 30
            while b"next try" not in text and time.monotonic() < deadline:
                try:
                    text += os.read(leader, 4096)
                except OSError:
                    break  # dopt exited: its output is all there is
        finally:
            p.send_signal(signal.SIGINT)  # detach; the job goes on in the agent
            p.wait(timeout=20)
            os.close(leader)
        line = text.decode(errors="replace").split("\r")[-1]
        self.assertIn("transient_error: ", line, "last progress line: %r" % line)
        self.assertIn("127.0.0.1", line)
        self.assertIn("next try", line)


if __name__ == "__main__":
    unittest.main()
