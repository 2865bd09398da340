"""Stock apt-get through the acquire method dopt+http (apt/README.md).

A flat repository made here (two small .deb built with dpkg-deb, Packages
from dpkg-scanpackages, a Release with their SHA-256), served by nginx on
127.0.0.1 and named in a sources.list line

    deb [trusted=yes] dopt+http://127.0.0.1:PORT/ ./

apt-get update, then apt-get install --download-only, fetch through the
method from this build (apt/dopt+http, in a methods folder of the test's
own beside links to apt's stock methods) and a real doptd on loopback, as
`_apt`, apt's sandbox user:

    apt-get (root) -> dopt+http (drops to _apt) --libdopt--> doptd (root) -> nginx

Every apt folder is the test's (apt_repo.AptTree: APT_CONFIG names Dir::Etc, `-o Dir::...`
the rest): the machine's apt configuration and state are never read or
touched. Needs root (apt's sandbox, `install`), apt-get, dpkg-deb and
dpkg-scanpackages (dpkg-dev, in scripts/setup-deps); skips otherwise.
"""

import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

from apt_repo import (TOOLS, AptTree, RepoNginx, build_deb, make_flat_repo,  # noqa: E402
                      method_path)
from harness import (IS_ROOT, IntegrationTest, TlsNginx, clean_env, dopt_path,  # noqa: E402
                     make_file, sha256_file, wait_for)

PACKAGES = {"dopt-test-a": 300 * 1024, "dopt-test-b": 700 * 1024}  # payload bytes


def method_processes(apt_pid):
    """PIDs of the dopt+http methods apt-get `apt_pid` started."""
    pids = []
    for d in os.listdir("/proc"):
        try:
            with open("/proc/%s/stat" % d) as f:
                stat = f.read()
        except OSError:
            continue
        comm = stat[stat.find("(") + 1:stat.rfind(")")]
        if comm == "dopt+http" and int(stat[stat.rfind(")") + 2:].split()[1]) == apt_pid:
            pids.append(int(d))
    return pids


class AptThroughDopt(IntegrationTest):

    @classmethod
    def setUpClass(cls):
        """The packages and the repository, made once for every test (each
        test serves a copy)."""
        if not IS_ROOT:
            raise unittest.SkipTest("apt-get install and apt's sandbox user need root: run as root")
        for tool in TOOLS:
            if shutil.which(tool) is None:
                raise unittest.SkipTest("needs %s (scripts/setup-deps installs it)" % tool)
        try:
            cls.apt_user = pwd.getpwnam("_apt")
        except KeyError:
            raise unittest.SkipTest("needs apt's sandbox account _apt")
        cls.made = tempfile.mkdtemp(prefix="dopt-apt-repo-")
        debs = [build_deb(cls.made, name, size, seed=i)
                for i, (name, size) in enumerate(sorted(PACKAGES.items()))]
        cls.debs = {os.path.basename(d): d for d in debs}
        make_flat_repo(os.path.join(cls.made, "www"), debs)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.made, ignore_errors=True)

    def setUp(self):
        super().setUp()
        os.chmod(self.sb.dir, 0o755)  # _apt walks to apt's partial folders and the socket
        if not os.access(method_path(), os.X_OK):
            self.fail("missing %s (build the target dopt_apt_method)" % method_path())
        os.rmdir(self.www)
        shutil.copytree(os.path.join(self.made, "www"), self.www)
        self.nginx = RepoNginx(self.sb.path("nginx"), self.www)
        self.sb.children.append(self.nginx)
        self.nginx.start()
        self.tree = AptTree(self.sb.path("apt"))
        self.use_origin_path("/")

    def use_origin_path(self, path):
        """The sources.list line names the repository at `path` ("/slow/")."""
        self.tree.use_source("dopt+" + self.nginx.url(path))

    def apt_command(self, *args, socket_path=None, extra=()):
        """apt-get ARGS in the test's apt tree, with the agent's socket unless
        `socket_path`: (argv, environment)."""
        return self.tree.command(*args, socket_path=socket_path or self.agent.socket, extra=extra)

    def apt(self, *args, socket_path=None, extra=()):
        """Runs apt_command(ARGS); returns (exit code, stdout + stderr)."""
        return self.tree.run(*args, socket_path=socket_path or self.agent.socket, extra=extra)

    def archives(self):
        return self.tree.archives

    def assert_debs_identical(self):
        for name, origin in self.debs.items():
            got = os.path.join(self.archives(), name)
            self.assertFileSha(got, sha256_file(origin))

    def test_update_and_install_download_only_fetch_every_file_through_the_agent(self):
        self.start_agent()
        rc, out = self.apt("update")
        self.assertEqual(rc, 0, out)
        rc, out = self.apt("install", "--download-only", "-y", *sorted(PACKAGES))
        self.assertEqual(rc, 0, out)
        self.assert_debs_identical()
        # The agent fetched them in jobs of _apt's (the method's user, as
        # whom the agent writes apt's partial folder): _apt sees them.
        p = subprocess.run([dopt_path(), "--socket", self.agent.socket, "list", "--json"],
                           capture_output=True, env=clean_env(), timeout=30, cwd="/",
                           user=self.apt_user.pw_uid, group=self.apt_user.pw_gid, extra_groups=[])
        self.assertEqual(p.returncode, 0, p.stderr)
        jobs = {j["files"][0]["local_name"]: j for j in json.loads(p.stdout)}
        for name in self.debs:
            job = jobs[os.path.join(self.archives(), "partial", name)]
            self.assertEqual(job["state"], "acknowledged", job)
            self.assertEqual(job["display_name"], "apt " + name)
            self.assertEqual(job["priority"], "foreground")  # a person waits on apt
            self.assertEqual(job["files"][0]["remote_name"], self.nginx.url("/pool/" + name))
        # Nothing of the agent is left in apt's folders.
        self.assertEqual(os.listdir(os.path.join(self.archives(), "partial")), [])

    def test_dopt_https_fetches_over_https(self):
        # The same program under its second name: the origin's scheme is https.
        tls = TlsNginx(self.sb.path("tls"), self.www)
        self.sb.children.append(tls)
        tls.start()
        self.start_agent('[http]\nca_file = "%s"\n' % tls.cert)
        self.tree.use_source("dopt+" + tls.url("/"))
        rc, out = self.apt("update")
        self.assertEqual(rc, 0, out)
        rc, out = self.apt("install", "--download-only", "-y", *sorted(PACKAGES))
        self.assertEqual(rc, 0, out)
        self.assertRegex(out, r"Get:\d+ dopt\+https://127\.0\.0\.1:\d+ \./ dopt-test-a")
        self.assert_debs_identical()

    def start_system_agent(self, system_job_dirs):
        """The privilege-separated agent (user nobody) with `system_job_dirs`."""
        socket_path = self.sb.path("agent", "run", "doptd.sock")
        self.agent = self.sb.agent('user = "nobody"\nsocket = "%s"\nsystem_job_dirs = [%s]\n'
                                   % (socket_path, ", ".join('"%s"' % d for d in system_job_dirs)),
                                   start=False)
        self.agent.socket = socket_path
        self.agent.start()
        self.assertIn("privilege-separated", self.agent.log_text())

    def test_the_privilege_separated_system_agent_writes_apts_partial_folders(self):
        # As README.md says: apt's partial folders in system_job_dirs, since
        # _apt is a system account.
        partials = [os.path.join(self.tree.root, "state", "lists", "partial"),
                    os.path.join(self.archives(), "partial")]
        for d in partials:
            os.makedirs(d)
        self.start_system_agent(partials)
        rc, out = self.apt("update")
        self.assertEqual(rc, 0, out)
        rc, out = self.apt("install", "--download-only", "-y", *sorted(PACKAGES))
        self.assertEqual(rc, 0, out)
        self.assert_debs_identical()
        self.assertNotIn("owner-rights: refused", self.agent.log_text())

    def test_a_system_agent_without_apts_folders_refuses_naming_system_job_dirs(self):
        self.start_system_agent([])
        rc, out = self.apt("update", "--error-on=any")
        self.assertEqual(rc, 100, out)
        self.assertRegex(out, r"E: Failed to fetch dopt\+http://\S+ +dopt could not add the file "
                              r"for .*only under system_job_dirs")

    def test_a_second_update_is_an_if_modified_since_hit(self):
        self.start_agent()
        rc, out = self.apt("update")
        self.assertEqual(rc, 0, out)
        self.nginx.wait_log_complete()
        self.assertIn((200, "/Release"), [(e[0], e[4]) for e in self.nginx.log_entries()])
        rc, out = self.apt("update")
        self.assertEqual(rc, 0, out)
        self.assertRegex(out, r"Hit:\d+ dopt\+http://127\.0\.0\.1:\d+ \./ Release")
        self.nginx.wait_log_complete()
        releases = [e[0] for e in self.nginx.log_entries() if e[4] == "/Release"]
        self.assertEqual(releases, [200, 304])

    def test_a_missing_file_fails_with_the_jobs_description(self):
        self.start_agent()
        rc, out = self.apt("update")
        self.assertEqual(rc, 0, out)
        os.unlink(os.path.join(self.www, "pool", "dopt-test-b_1.0_all.deb"))
        rc, out = self.apt("install", "--download-only", "-y", *sorted(PACKAGES))
        self.assertEqual(rc, 100, out)
        self.assertRegex(out, r"Failed to fetch dopt\+http://127\.0\.0\.1:\d+/pool/"
                              r"dopt-test-b_1\.0_all\.deb +the origin answered 404")
        self.assertFalse(os.path.exists(os.path.join(self.archives(), "dopt-test-b_1.0_all.deb")))
        # apt removed its partial folder's leftovers; the agent left none.
        self.assertEqual([f for f in os.listdir(os.path.join(self.archives(), "partial"))
                          if f.endswith(".dopt-partial")], [])

    def install_after_the_origin_changed(self, package, grow, seed):
        """After `update`, the origin's .deb of `package` becomes `grow`
        bytes longer with other bytes; then `install --download-only` of it
        must fail. Returns (apt's output, the size Packages gives)."""
        self.start_agent()
        rc, out = self.apt("update")
        self.assertEqual(rc, 0, out)
        name = "%s_1.0_all.deb" % package
        size = os.path.getsize(self.debs[name])
        make_file(os.path.join(self.www, "pool", name), size + grow, seed=seed)
        rc, out = self.apt("install", "--download-only", "-y", package)
        self.assertEqual(rc, 100, out)
        self.assertFalse(os.path.exists(os.path.join(self.archives(), name)))
        return out, size

    def test_a_deb_that_does_not_match_packages_fails_in_the_agent(self):
        # The job carries Packages' SHA-256: the agent refuses the bytes
        # before delivery, and apt hears why.
        out, _ = self.install_after_the_origin_changed("dopt-test-a", 0, seed=99)
        self.assertRegex(out, r"Failed to fetch dopt\+http://\S+/pool/dopt-test-a_1\.0_all\.deb"
                              r" +.*SHA-256")
        # Nothing at apt's path: the method's progress file went before the failure.
        self.assertEqual(os.listdir(os.path.join(self.archives(), "partial")), [])

    def test_a_deb_larger_than_packages_fails_in_the_agent_at_its_response(self):
        # The job carries Packages' size (Expected-Checksum-FileSize): the
        # agent refuses the response before keeping a byte, naming both sizes.
        out, size = self.install_after_the_origin_changed("dopt-test-b", 4096, seed=98)
        self.assertIn("sends %d bytes" % (size + 4096), out)
        self.assertIn("expected %d; nothing was kept" % size, out)

    def test_with_no_agent_apt_fetches_with_its_own_http_after_a_warning(self):
        nowhere = self.sb.path("no-agent.sock")
        rc, out = self.apt("update", socket_path=nowhere)
        self.assertEqual(rc, 0, out)
        self.assertIn("the dopt agent at %s does not answer" % nowhere, out)
        rc, out = self.apt("install", "--download-only", "-y", *sorted(PACKAGES),
                           socket_path=nowhere)
        self.assertEqual(rc, 0, out)
        self.assertIn("apt fetches %s itself" % self.nginx.url("/pool/dopt-test-a_1.0_all.deb"), out)
        self.assert_debs_identical()

    @staticmethod
    def end_process(p):
        """Kills `p` if it runs, reaps it and closes its output pipe."""
        if p.poll() is None:
            p.kill()
        p.wait()
        p.stdout.close()

    def start_slow_install_of_b(self, origin_path="/slow/", extra=()):
        """`install --download-only dopt-test-b` (apt options `extra`) from
        the slow origin at `origin_path`, in the background, once the agent
        is fetching it: (apt-get's Popen, the job's id)."""
        self.start_agent()
        self.use_origin_path(origin_path)
        rc, out = self.apt("update")
        self.assertEqual(rc, 0, out)
        argv, env = self.apt_command("install", "--download-only", "-y", "dopt-test-b", extra=extra)
        apt = subprocess.Popen(argv, env=env, cwd=self.tree.root, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.addCleanup(self.end_process, apt)
        job = wait_for(lambda: [j for j in self.agent.jobs()
                                if j["display_name"] == "apt dopt-test-b_1.0_all.deb"
                                and j["state"] == "transferring" and j["bytes_transferred"] > 0],
                       30, what="the agent to be fetching dopt-test-b")[0]
        return apt, job["id"]

    def test_apts_progress_bar_follows_a_deb_while_the_agent_fetches_it(self):
        # apt counts a file's bytes only by the size of its partial file
        # (apt/README.md, "apt's progress bar"); Debug::acquire::progress
        # prints what apt computed at each pulse: "[PERCENT] Bytes: ...",
        # with PERCENT = 0.8 x bytes% + 0.2 x files%, so while the one .deb
        # downloads, 0 < PERCENT < 80 only when apt sees bytes arrive.
        apt, _ = self.start_slow_install_of_b("/slower/", extra=["Debug::acquire::progress=true"])
        partial = os.path.join(self.archives(), "partial", "dopt-test-b_1.0_all.deb")
        size = os.path.getsize(self.debs["dopt-test-b_1.0_all.deb"])
        seen = []  # apt's partial file while smaller than the .deb
        while apt.poll() is None:
            try:
                st = os.lstat(partial)
            except FileNotFoundError:
                st = None
            if st and st.st_size < size:
                seen.append(st)
            time.sleep(0.05)
        out = apt.communicate(timeout=60)[0].decode(errors="replace")
        self.assertEqual(apt.returncode, 0, out)
        percents = [float(m) for m in re.findall(r"^\[\s*([0-9.]+)\] Bytes:", out, re.M)]
        self.assertTrue([p for p in percents if 0 < p < 80], "apt showed no bytes of the .deb: %r" % percents)
        self.assertTrue(seen)
        # Dated 2038-01-19 03:14:07 UTC and 1 ns (apt/progress_file.h), so
        # that apt's http never resumes it (the next test).
        self.assertEqual([st.st_mtime_ns for st in seen if st.st_mtime_ns != 2147483647 * 10**9 + 1], [])
        self.assertFileSha(os.path.join(self.archives(), "dopt-test-b_1.0_all.deb"),
                           sha256_file(self.debs["dopt-test-b_1.0_all.deb"]))
        self.assertFalse(os.path.exists(partial))

    def test_apts_own_http_fetches_whole_a_deb_over_a_progress_file_a_killed_method_left(self):
        apt, _ = self.start_slow_install_of_b()
        partial = os.path.join(self.archives(), "partial", "dopt-test-b_1.0_all.deb")
        wait_for(lambda: os.path.exists(partial) and os.path.getsize(partial) > 0, 30,
                 what="the method's progress file")
        for pid in method_processes(apt.pid):
            os.kill(pid, signal.SIGKILL)
        self.end_process(apt)
        left = os.path.getsize(partial)
        self.assertGreater(left, 0)
        # No agent now: the method hands the file to apt's own http, which
        # resumes partial files.
        rc, out = self.apt("install", "--download-only", "-y", "dopt-test-b",
                           socket_path=self.sb.path("no-agent.sock"))
        self.assertEqual(rc, 0, out)
        self.assertIn("does not answer", out)
        self.assertFileSha(os.path.join(self.archives(), "dopt-test-b_1.0_all.deb"),
                           sha256_file(self.debs["dopt-test-b_1.0_all.deb"]))
        # apt asked for the rest (Range, If-Range: the file's date) and the
        # origin sent the whole file.
        self.nginx.wait_log_complete()
        deb = [e[:3] for e in self.nginx.log_entries() if e[4] == "/slow/pool/dopt-test-b_1.0_all.deb"
               and e[2] != "-"]
        self.assertEqual(deb, [(200, os.path.getsize(self.debs["dopt-test-b_1.0_all.deb"]),
                                "bytes=%d-" % left)])

    def test_apt_killed_mid_transfer_leaves_no_job_behind(self):
        # The method sees the end of its stdin and cancels its jobs.
        apt, job_id = self.start_slow_install_of_b()
        self.end_process(apt)
        self.agent.wait_state(job_id, "cancelled", timeout=10)
        self.assertEqual([f for f in os.listdir(os.path.join(self.archives(), "partial"))
                          if f.endswith(".dopt-partial")], [])

    def test_a_job_a_killed_method_left_is_replaced_on_the_next_run(self):
        apt, stale_id = self.start_slow_install_of_b()
        for pid in method_processes(apt.pid):
            os.kill(pid, signal.SIGKILL)  # the method cannot cancel its job
        self.end_process(apt)
        self.assertEqual(self.agent.status(stale_id)["state"], "transferring")
        rc, out = self.apt("install", "--download-only", "-y", "dopt-test-b")
        self.assertEqual(rc, 0, out)
        self.assertFileSha(os.path.join(self.archives(), "dopt-test-b_1.0_all.deb"),
                           sha256_file(self.debs["dopt-test-b_1.0_all.deb"]))
        self.assertEqual(self.agent.status(stale_id)["state"], "cancelled")

    def test_an_agent_killed_mid_transfer_leaves_the_file_to_apts_http(self):
        apt, _ = self.start_slow_install_of_b()
        self.agent.kill9()
        out = apt.communicate(timeout=60)[0].decode(errors="replace")
        self.assertEqual(apt.returncode, 0, out)
        self.assertIn("the dopt agent stopped answering", out)
        self.assertFileSha(os.path.join(self.archives(), "dopt-test-b_1.0_all.deb"),
                           sha256_file(self.debs["dopt-test-b_1.0_all.deb"]))

    def test_with_no_agent_and_fallback_off_the_file_fails_saying_so(self):
        nowhere = self.sb.path("no-agent.sock")
        rc, out = self.apt("update", "--error-on=any", socket_path=nowhere,
                           extra=["Acquire::dopt::Fallback=false"])
        self.assertEqual(rc, 100, out)
        self.assertIn("the dopt agent at %s does not answer" % nowhere, out)
        self.assertIn("Acquire::dopt::Fallback is off", out)
        self.nginx.wait_log_complete()
        self.assertEqual([e for e in self.nginx.log_entries() if "mark" not in e[4]], [])


if __name__ == "__main__":
    unittest.main()
