"""Bad input is refused with exit 2 (3 when there is no agent), and the
agent keeps serving afterwards. One agent for the whole class, so the last
test sees an agent that has been fed all of the above."""

import os
import sys
import unittest

from harness import IS_ROOT, MiB, Sandbox, build_dir, make_file, sha256_file, test_failed


class BadInput(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        build_dir()
        cls.sb = Sandbox("dopt-it-bad-input-")
        cls.failed = False
        try:
            cls.www = cls.sb.path("www")
            os.makedirs(cls.www)
            cls.sha = make_file(os.path.join(cls.www, "ok.bin"), 2 * MiB)
            cls.nginx = cls.sb.nginx(cls.www)
            cls.agent = cls.sb.agent()
        except BaseException:
            sys.stderr.write("\n" + cls.sb.report() + "\n")
            cls.sb.close(keep=True)
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.failed:
            sys.stderr.write("\n" + cls.sb.report() + "\n")
        cls.sb.close(keep=cls.failed)

    def tearDown(self):
        if test_failed(self):
            type(self).failed = True

    def dopt(self, *args, **kw):
        return self.agent.dopt(*args, **kw)

    def out(self, name):
        d = self.sb.path("dest", self._testMethodName)
        os.makedirs(d, exist_ok=True)
        return os.path.join(d, name)

    def assertExit(self, want, result):
        rc, out, err = result
        self.assertEqual(rc, want, "stdout %r stderr %r" % (out, err))
        return out, err

    def test_url_without_host_is_exit_2(self):
        self.assertExit(2, self.dopt("add", "http://", "-o", self.out("x")))

    def test_ftp_url_is_exit_2_naming_the_scheme(self):
        out, err = self.assertExit(2, self.dopt("add", "ftp://host/x", "-o", self.out("x")))
        text = (out + err).lower()
        self.assertTrue("ftp" in text or "scheme" in text,
                        "the message should name the scheme: %r" % (out + err))

    def test_output_in_a_missing_directory_is_exit_2(self):
        path = self.sb.path("no", "such", "dir", "x.bin")
        self.assertExit(2, self.dopt("add", self.nginx.url("/ok.bin"), "-o", path))
        self.assertFalse(os.path.exists(os.path.dirname(path)))

    def test_output_in_an_unwritable_directory_is_exit_2(self):
        if IS_ROOT:
            self.skipTest("running as root: root writes a mode-555 directory anyway")
        d = self.sb.path("readonly")
        os.makedirs(d)
        os.chmod(d, 0o555)
        try:
            self.assertExit(2, self.dopt("add", self.nginx.url("/ok.bin"), "-o",
                                         os.path.join(d, "x.bin")))
        finally:
            os.chmod(d, 0o755)

    def test_status_of_an_unknown_job_is_exit_2(self):
        self.assertExit(2, self.dopt("status", "00000000-0000-0000-0000-000000000000"))

    def test_status_of_a_malformed_id_is_exit_2(self):
        self.assertExit(2, self.dopt("status", "not-a-uuid"))

    def test_no_agent_is_exit_3(self):
        self.assertExit(3, self.dopt("list", socket_path="/nonexistent"))

    def test_zz_agent_still_serves_a_good_job_after_bad_input(self):
        # Named to run last in this class.
        self.assertTrue(self.agent.running(), "doptd died on bad input")
        path = self.out("ok.bin")
        self.assertExit(0, self.dopt("get", self.nginx.url("/ok.bin"), "-o", path,
                                     timeout=60))
        self.assertEqual(sha256_file(path), self.sha)


if __name__ == "__main__":
    unittest.main()
