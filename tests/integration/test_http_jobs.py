"""HTTP-only jobs against a real nginx: get, add/wait/complete, suspend,
resume, cancel, multi-file jobs, whole-file SHA-256."""

import os
import time
import unittest

from harness import MiB, IntegrationTest, make_file, wait_for


class HttpJobs(IntegrationTest):

    def setUp(self):
        super().setUp()
        self.nginx = self.sb.nginx(self.www)
        self.start_agent()

    def test_get_fetches_file_byte_identical_and_acknowledges_it(self):
        sha = make_file(os.path.join(self.www, "big.bin"), 20 * MiB)
        dest = self.dest()
        path = os.path.join(dest, "big.bin")
        self.dopt("get", self.nginx.url("/big.bin"), "-o", path, check=0, timeout=120)
        self.assertFileSha(path, sha)
        job = self.agent.job_for(path)
        self.assertEqual(job["state"], "acknowledged")
        self.assertEqual(job["bytes_total"], 20 * MiB)
        self.assertEqual(job["bytes_transferred"], 20 * MiB)
        self.assertIsNone(job["error"])
        self.assertEqual(os.listdir(dest), ["big.bin"],
                         "a partial or temporary file was left beside the result")

    def test_a_finished_empty_file_is_100_percent_with_metainfo_none(self):
        make_file(os.path.join(self.www, "empty.bin"), 0)
        path = os.path.join(self.dest(), "empty.bin")
        self.dopt("get", self.nginx.url("/empty.bin"), "-o", path, check=0, timeout=60)
        job = self.agent.job_for(path)
        self.assertEqual(job["state"], "acknowledged")
        self.assertEqual(job["files"][0]["metainfo"], "none", "peering is off: no metainfo")
        _, out, _ = self.dopt("list", check=0)
        line = [l for l in out.splitlines() if l.startswith(job["id"])][0]
        self.assertIn(" 100% ", line)
        _, out, _ = self.dopt("status", job["id"], check=0)
        self.assertIn("0 B of 0 B (100%), 1 of 1 files", out)

    def test_list_and_status_escape_control_characters_of_a_name(self):
        make_file(os.path.join(self.www, "f.bin"), 1000)
        name = "evil\x1b]0;title\x07\u009b2Jname"
        job_id = self.agent.add(self.nginx.url("/f.bin"), "-o",
                                os.path.join(self.dest(), "f.bin"), "--name", name)
        self.assertEqual(self.status(job_id)["display_name"], name, "JSON keeps the name")
        for args in (("list",), ("status", job_id)):
            _, out, _ = self.dopt(*args, check=0)
            self.assertIn("evil\\x1b]0;title\\x07\\xc2\\x9b2Jname", out)
            for raw in ("\x1b", "\x07", "\u009b"):
                self.assertNotIn(raw, out)

    def test_a_240_byte_file_name_is_fetched_through_a_shortened_partial_name(self):
        sha = make_file(os.path.join(self.www, "f.bin"), 1 * MiB)
        dest = self.dest()
        name = "n" * 240
        rc, _, err = self.dopt("get", self.nginx.url("/f.bin"), "-o", os.path.join(dest, name),
                               timeout=60)
        self.assertEqual(rc, 0, err)
        self.assertFileSha(os.path.join(dest, name), sha)
        self.assertEqual(os.listdir(dest), [name])

    def test_get_with_the_right_sha256_succeeds(self):
        sha = make_file(os.path.join(self.www, "f.bin"), 3 * MiB)
        path = os.path.join(self.dest(), "f.bin")
        self.dopt("get", self.nginx.url("/f.bin"), "-o", path, "--sha256", sha,
                  check=0, timeout=60)
        self.assertFileSha(path, sha)

    def test_get_with_a_wrong_sha256_is_an_integrity_error_and_delivers_nothing(self):
        make_file(os.path.join(self.www, "f.bin"), 3 * MiB)
        dest = self.dest()
        path = os.path.join(dest, "f.bin")
        rc, out, err = self.dopt("get", self.nginx.url("/f.bin"), "-o", path,
                                 "--sha256", "0" * 64, timeout=60)
        self.assertEqual(rc, 1, "stdout %r stderr %r" % (out, err))
        self.assertFalse(os.path.exists(path), "a file that failed its hash was delivered")
        job = self.agent.job_for(path)
        self.assertEqual(job["state"], "error")
        self.assertEqual(job["error"]["context"], "integrity")
        self.assertEqual(job["error"]["code"], -17)  # DOPT_E_INTEGRITY

    def test_relative_output_path_is_taken_from_the_callers_cwd(self):
        sha = make_file(os.path.join(self.www, "rel.bin"), 1 * MiB)
        dest = self.dest()
        os.makedirs(os.path.join(dest, "sub"))
        self.dopt("get", self.nginx.url("/rel.bin"), "-o", "sub/rel.bin",
                  check=0, cwd=dest, timeout=60)
        path = os.path.join(dest, "sub", "rel.bin")
        self.assertFileSha(path, sha)
        self.assertEqual(self.agent.job_for(path)["files"][0]["local_name"], path)

    def test_add_wait_complete_delivers_only_on_complete(self):
        sha = make_file(os.path.join(self.www, "f.bin"), 5 * MiB)
        dest = self.dest()
        path = os.path.join(dest, "f.bin")
        url = self.nginx.url("/f.bin")
        job_id = self.agent.add(url, "-o", path)
        self.dopt("wait", job_id, check=0, timeout=60)
        st = self.status(job_id)
        self.assertEqual(st["state"], "transferred")
        self.assertEqual(st["bytes_transferred"], 5 * MiB)
        self.assertEqual(st["files"][0]["remote_name"], url)
        self.assertEqual(st["files"][0]["local_name"], path)
        self.assertFalse(os.path.exists(path), "the file appeared before Complete")
        hidden = os.listdir(dest)
        self.assertEqual(len(hidden), 1, "expected one hidden partial file, found %s" % hidden)
        self.assertTrue(hidden[0].startswith("."), "partial file is not hidden: %s" % hidden)
        self.dopt("complete", job_id, check=0)
        self.assertFileSha(path, sha)
        self.assertEqual(self.status(job_id)["state"], "acknowledged")
        self.assertEqual(os.listdir(dest), ["f.bin"])

    def test_complete_while_transferring_is_refused_and_changes_nothing(self):
        size = 32 * MiB
        make_file(os.path.join(self.www, "slow.bin"), size)
        path = os.path.join(self.dest(), "slow.bin")
        job_id = self.agent.add(self.nginx.url("/slow/slow.bin"), "-o", path)
        self.agent.wait_bytes(job_id, 1)
        rc, out, err = self.dopt("complete", job_id)
        self.assertEqual(rc, 2, "complete on a transferring job: stdout %r stderr %r" % (out, err))
        st = self.status(job_id)
        self.assertIn(st["state"], ("transferring", "connecting", "transient_error"))
        self.assertFalse(os.path.exists(path))
        self.assertLess(st["bytes_transferred"], size)

    def test_suspend_stops_the_transfer_and_resume_finishes_it(self):
        size = 32 * MiB
        sha = make_file(os.path.join(self.www, "slow.bin"), size)
        path = os.path.join(self.dest(), "slow.bin")
        job_id = self.agent.add(self.nginx.url("/slow/slow.bin"), "-o", path)
        self.agent.wait_bytes(job_id, 2 * MiB)
        self.dopt("suspend", job_id, check=0)
        self.assertEqual(self.status(job_id)["state"], "suspended")
        # nginx logs a request when its connection ends: the suspend closed it.
        wait_for(lambda: self.slow_requests(), 10, what="the origin to see the end")
        sent = self.nginx.body_bytes_sent("/slow/slow.bin")
        st = self.status(job_id)
        self.assertEqual(st["state"], "suspended")
        self.assertLessEqual(st["bytes_transferred"], sent)
        self.assertLess(sent, size)
        self.dopt("resume", job_id, check=0)
        self.dopt("wait", job_id, check=0, timeout=90)
        self.dopt("complete", job_id, check=0)
        self.assertFileSha(path, sha)
        # One request before the suspend, one after the resume: none while
        # suspended.
        self.assertEqual(len(self.slow_requests()), 2, self.slow_requests())

    def slow_requests(self):
        return [e for e in self.nginx.log_entries() if e[4] == "/slow/slow.bin"]

    def test_cancel_removes_the_partial_file(self):
        make_file(os.path.join(self.www, "slow.bin"), 32 * MiB)
        dest = self.dest()
        path = os.path.join(dest, "slow.bin")
        job_id = self.agent.add(self.nginx.url("/slow/slow.bin"), "-o", path)
        self.agent.wait_bytes(job_id, 1 * MiB)
        self.assertNotEqual(os.listdir(dest), [], "no partial file while transferring")
        self.dopt("cancel", job_id, check=0)
        self.assertEqual(self.status(job_id)["state"], "cancelled")
        deadline = time.monotonic() + 5
        while os.listdir(dest) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(os.listdir(dest), [], "files left after cancel")
        rc, _, _ = self.dopt("wait", job_id, timeout=10)
        self.assertEqual(rc, 1, "dopt wait on a cancelled job must exit 1")

    def test_multi_file_job_delivers_every_file(self):
        sha1 = make_file(os.path.join(self.www, "one.bin"), 2 * MiB)
        sha2 = make_file(os.path.join(self.www, "two.bin"), 3 * MiB + 123)
        dest = self.dest()
        p1, p2 = os.path.join(dest, "one.bin"), os.path.join(dest, "two.bin")
        job_id = self.agent.add(self.nginx.url("/one.bin"), "-o", p1,
                                self.nginx.url("/two.bin"), "-o", p2)
        self.dopt("wait", job_id, check=0, timeout=60)
        st = self.status(job_id)
        self.assertEqual(sorted(f["local_name"] for f in st["files"]), [p1, p2])
        self.assertEqual(st["bytes_total"], 5 * MiB + 123)
        self.dopt("complete", job_id, check=0)
        self.assertFileSha(p1, sha1)
        self.assertFileSha(p2, sha2)
        self.assertEqual(sorted(os.listdir(dest)), ["one.bin", "two.bin"])


if __name__ == "__main__":
    unittest.main()
