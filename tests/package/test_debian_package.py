"""The Debian packages (README.md "Debian packages"), built, installed, used
and purged on this machine as an administrator would (root):

  1. dpkg-buildpackage -b -us -uc in a copy of the tree
     (BUILD/package-test/dopt; the .debs land in BUILD/package-test)
  2. lintian reports no error
  3. apt-get install ./dopt_*.deb ./libdopt0_*.deb ./libdopt-dev_*.deb
  4. each part where it belongs, the dopt account, libdopt's SONAME,
     pkg-config, the man pages, bash completion, the apt method
  5. systemd-analyze verify on the installed units
  6. the installed agent, started as doptd.service says (ExecStartPre=,
     RuntimeDirectory=, ExecStart=; no systemd runs here) with
     /etc/dopt/doptd.conf changed for the test ([p2p] on 127.0.0.1,
     system_job_dirs), downloads from nginx on 127.0.0.1 as root and as a
     plain user made for the test
  7. apt-get purge while the agent runs: its processes end, and nothing the
     packages or the agent made is left; the dopt account stays (Debian
     keeps system accounts) and the test removes it.

It takes minutes and changes the machine, so it is registered only with
-DDOPT_PACKAGE_TEST=ON (ctest -L package); scripts/test never runs it.
DOPT_PACKAGE_DEBS=DIR checks the packages dpkg-buildpackage already wrote to
DIR (its .changes and .debs) instead of building them: steps 2 to 7 alone.
"""

import os
import pwd
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(SOURCE_DIR, "tests", "integration"))
import harness  # noqa: E402

PACKAGES = ("dopt", "libdopt0", "libdopt-dev")
ACCOUNT = "dopt"
TEST_USER = "dopt-pkgtest"
SYSTEM_UNIT = "/lib/systemd/system/doptd.service"
AGENT_DIRS = ("/var/lib/dopt", "/var/cache/dopt", "/run/dopt")
TOOLS = {  # program: the Debian package that brings it
    "dpkg-buildpackage": "dpkg-dev", "dh": "debhelper", "lintian": "lintian",
    "systemd-analyze": "systemd", "apt-get": "apt", "nginx": "nginx-light",
    "runuser": "util-linux", "useradd": "passwd",
}
BASH_COMPLETION = "/usr/share/bash-completion/bash_completion"


def run(cmd, timeout=120, check=True, **kw):
    """Runs cmd; returns (returncode, stdout+stderr). check: fail the test
    on a non-zero exit, with the output's tail."""
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise AssertionError("%s exited %d:\n%s" % (shlex.join(cmd), p.returncode,
                                                   "\n".join(p.stdout.splitlines()[-60:])))
    return p.returncode, p.stdout


def project_version():
    with open(os.path.join(SOURCE_DIR, "CMakeLists.txt")) as f:
        return re.search(r"project\(dopt VERSION ([0-9.]+)", f.read()).group(1)


def unit_settings(path, wanted):
    """{key: [values]} of the section `wanted` ("Service") of a unit file."""
    settings, section, pending = {}, None, ""
    with open(path) as f:
        for raw in f:
            line = pending + raw.strip()
            pending = ""
            if line.endswith("\\"):
                pending = line[:-1] + " "
                continue
            if not line or line[0] in "#;":
                continue
            if line.startswith("["):
                section = line.strip("[]")
            elif section == wanted and "=" in line:
                key, value = line.split("=", 1)
                settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def exec_argv(value):
    """(argv, may_fail) of an Exec*= value, its prefixes taken off."""
    prefixes = re.match(r"^[-+!@:]*", value).group(0)
    return shlex.split(value[len(prefixes):]), "-" in prefixes


def processes_of(uid=None, exe_prefix=None):
    """Pids whose real uid is `uid` or whose executable starts with
    `exe_prefix` (a deleted one reads "PATH (deleted)")."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if uid is not None and os.stat("/proc/" + pid).st_uid == uid:
                found.append(int(pid))
            elif exe_prefix and os.readlink("/proc/%s/exe" % pid).startswith(exe_prefix):
                found.append(int(pid))
        except OSError:
            pass
    return found


@unittest.skipUnless(harness.IS_ROOT, "needs root: installs and purges packages with apt-get")
class DebianPackage(unittest.TestCase):

    def setUp(self):
        missing = ["%s (%s)" % (t, p) for t, p in TOOLS.items() if shutil.which(t) is None]
        if not os.path.exists(BASH_COMPLETION):
            missing.append("bash_completion (bash-completion)")
        if missing:
            self.skipTest("needs %s: scripts/setup-deps --packaging" % ", ".join(missing))
        for name in PACKAGES:
            rc, out = run(["dpkg-query", "-W", "-f=${db:Status-Status}", name], check=False)
            if rc == 0 and out.strip() not in ("", "not-installed"):
                self.skipTest("the package %s is on this machine (%s); the test would purge it"
                              % (name, out.strip()))
        for name in (ACCOUNT, TEST_USER):
            try:
                pwd.getpwnam(name)
                self.skipTest("an account %s exists; the test makes and removes its own" % name)
            except KeyError:
                pass
        for d in AGENT_DIRS + ("/etc/dopt",):
            if os.path.exists(d):
                self.skipTest("%s exists; the test checks that purge removes it" % d)
        self.prebuilt = os.environ.get("DOPT_PACKAGE_DEBS")
        self.work = self.prebuilt or os.path.join(harness.build_dir(), "package-test")
        self.tmp = tempfile.mkdtemp(prefix="dopt-package-")
        os.chmod(self.tmp, 0o755)
        self.env = harness.clean_env()
        self.env.pop("XDG_RUNTIME_DIR", None)  # root's default agent: the system one
        self.env["DEBIAN_FRONTEND"] = "noninteractive"
        self.agent = None
        # Cleanups run last first: agent, packages, the accounts, files.
        self.addCleanup(self.remove_files)
        self.addCleanup(self.remove_account, ACCOUNT)
        self.addCleanup(self.remove_account, TEST_USER)
        self.addCleanup(self.purge_if_installed)
        self.addCleanup(self.stop_agent)

    # ---- cleanup: never raises, leaves the machine as it was -------------

    def stop_agent(self):
        if self.agent and self.agent.poll() is None:
            self.agent.terminate()
            try:
                self.agent.wait(10)
            except subprocess.TimeoutExpired:
                self.agent.kill()
                self.agent.wait()

    def purge_if_installed(self):
        rc, out = run(["dpkg-query", "-W", "-f=${db:Status-Status}\n"] + list(PACKAGES),
                      check=False)
        known = [line for line in out.splitlines() if not line.startswith("dpkg-query:")]
        if any(status not in ("", "not-installed") for status in known):
            run(["apt-get", "purge", "-y", "-q"] + list(PACKAGES), check=False,
                timeout=300, env=self.env)

    def remove_account(self, name):
        try:
            pwd.getpwnam(name)
        except KeyError:
            return
        run(["userdel", "--remove", name], check=False)

    def remove_files(self):
        if harness.test_failed(self):
            print("FAILED; kept %s and %s" % (self.work, self.tmp))
            return
        if not self.prebuilt:
            shutil.rmtree(self.work, ignore_errors=True)
        shutil.rmtree(self.tmp, ignore_errors=True)

    # ---- the steps ---------------------------------------------------------

    def debs(self):
        """The .deb files of PACKAGES in the work folder (not -dbgsym)."""
        return sorted(os.path.join(self.work, f) for f in os.listdir(self.work)
                      if f.endswith(".deb") and f.split("_")[0] in PACKAGES)

    def build_packages(self):
        """dpkg-buildpackage in a copy of the tree; returns the .changes path."""
        rc, version = run(["dpkg-parsechangelog", "-l",
                           os.path.join(SOURCE_DIR, "debian", "changelog"), "-S", "Version"])
        self.assertEqual(version.strip(), project_version(),
                         "debian/changelog is at %s, the project at %s: add an entry "
                         "(dch -v %s)" % (version.strip(), project_version(), project_version()))
        shutil.rmtree(self.work, ignore_errors=True)
        tree = os.path.join(self.work, "dopt")
        build = os.path.realpath(harness.build_dir())

        def ignore(folder, names):
            top = os.path.realpath(folder) == os.path.realpath(SOURCE_DIR)
            return [n for n in names
                    if n in (".git", "__pycache__") or (top and n.startswith("build"))
                    or os.path.realpath(os.path.join(folder, n)) == build]
        shutil.copytree(SOURCE_DIR, tree, symlinks=True, ignore=ignore)
        env = dict(self.env)
        env.setdefault("DEB_BUILD_OPTIONS", "parallel=2")
        print("== dpkg-buildpackage -b -us -uc in %s" % tree, flush=True)
        rc, out = run(["dpkg-buildpackage", "-b", "-us", "-uc"], cwd=tree, env=env,
                      timeout=3000, check=False)
        with open(os.path.join(self.work, "build.log"), "w") as f:
            f.write(out)
        self.assertEqual(rc, 0, "dpkg-buildpackage failed:\n" + "\n".join(out.splitlines()[-60:]))
        return self.built_changes()

    def built_changes(self):
        changes = [f for f in os.listdir(self.work) if f.endswith(".changes")]
        self.assertEqual(len(changes), 1, os.listdir(self.work))
        self.assertEqual([os.path.basename(d).split("_")[0] for d in self.debs()],
                         sorted(PACKAGES))
        return os.path.join(self.work, changes[0])

    def check_lintian(self, changes):
        rc, out = run(["lintian", "--fail-on", "error", "--tag-display-limit", "0", changes],
                      timeout=600, check=False)
        print("== lintian\n" + out, flush=True)
        errors = [line for line in out.splitlines() if line.startswith("E:")]
        self.assertEqual(errors, [], "lintian reports errors")
        self.assertEqual(rc, 0, "lintian exited %d" % rc)

    def install(self):
        run(["apt-get", "install", "-y", "-q", "--no-install-recommends"] + self.debs(),
            timeout=600, env=self.env)

    def package_files(self, name):
        return run(["dpkg", "-L", name])[1].split()

    def check_layout(self):
        multiarch = run(["dpkg-architecture", "-qDEB_HOST_MULTIARCH"])[1].strip()
        libdir = "/usr/lib/" + multiarch
        expected = {
            "dopt": ["/usr/bin/doptd", "/usr/bin/dopt", "/etc/dopt/doptd.conf",
                     "/usr/lib/apt/methods/dopt+http", "/usr/lib/apt/methods/dopt+https",
                     SYSTEM_UNIT, "/usr/lib/systemd/user/doptd.service",
                     "/usr/lib/sysusers.d/dopt.conf",
                     "/usr/share/man/man1/dopt.1.gz", "/usr/share/man/man5/doptd.conf.5.gz",
                     "/usr/share/man/man8/doptd.8.gz",
                     "/usr/share/bash-completion/completions/dopt",
                     "/usr/share/doc/dopt/copyright", "/usr/share/doc/dopt/config.md"],
            "libdopt0": [libdir + "/libdopt.so.0"],
            "libdopt-dev": ["/usr/include/dopt/dopt.h", libdir + "/libdopt.so",
                            libdir + "/pkgconfig/dopt.pc", libdir + "/cmake/dopt/doptConfig.cmake"],
        }
        for name, paths in expected.items():
            listed = self.package_files(name)
            for path in paths:
                self.assertIn(path, listed, "%s does not ship %s" % (name, path))
                self.assertTrue(os.path.lexists(path), path)
        self.assertEqual(os.readlink("/usr/lib/apt/methods/dopt+https"), "dopt+http")
        conffiles = run(["dpkg-query", "-W", "-f=${Conffiles}", "dopt"])[1]
        self.assertIn("/etc/dopt/doptd.conf", conffiles)
        # The account, made at install by systemd-sysusers (postinst).
        account = pwd.getpwnam(ACCOUNT)
        self.assertLess(account.pw_uid, 1000, "dopt is not a system account")
        soname = re.search(r"SONAME\s+(\S+)", run(["objdump", "-p", libdir + "/libdopt.so.0"])[1])
        self.assertEqual(soname.group(1), "libdopt.so.0")
        self.assertIn(project_version(), run(["/usr/bin/dopt", "version"])[1])
        self.assertEqual(run(["pkg-config", "--modversion", "dopt"])[1].strip(), project_version())
        self.assertIn("-ldopt", run(["pkg-config", "--libs", "dopt"])[1])
        rc, page = run(["man", "-P", "cat", "doptd.conf"], env=dict(self.env, MANWIDTH="80"))
        self.assertIn("/etc/dopt/doptd.conf", page)
        # apt starts the method and reads its capabilities first.
        rc, out = run(["/usr/lib/apt/methods/dopt+http"], stdin=subprocess.DEVNULL, check=False)
        self.assertTrue(out.startswith("100 Capabilities"), out)

    def complete(self, line):
        """What bash completion offers for `line` (the cursor at its end)."""
        script = ('. %s; __load_completion dopt; COMP_LINE=%s; COMP_POINT=${#COMP_LINE}; '
                  'read -ra COMP_WORDS <<<"$COMP_LINE"; [[ $COMP_LINE == *" " ]] && '
                  'COMP_WORDS+=(""); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); '
                  '_dopt dopt "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"; '
                  'printf "%%s\\n" "${COMPREPLY[@]}"' % (BASH_COMPLETION, shlex.quote(line)))
        return run(["bash", "-c", script], env=self.env)[1].split()

    def verify_units(self):
        """systemd-analyze verify on the system units, and --user on the
        user units (a user manager needs XDG_RUNTIME_DIR: a private folder)."""
        files = self.package_files("dopt")
        for kind, args in (("system", []), ("user", ["--user"])):
            units = [p for p in files
                     if re.match(r"^(/usr)?/lib/systemd/%s/[^/]+\.(service|socket)$" % kind, p)]
            self.assertTrue(units, "no %s unit" % kind)
            runtime = tempfile.mkdtemp(dir=self.tmp)
            rc, out = run(["systemd-analyze"] + args + ["verify"] + units, check=False,
                          env=dict(self.env, XDG_RUNTIME_DIR=runtime))
            self.assertEqual(rc, 0, "systemd-analyze %s verify %s:\n%s"
                             % (" ".join(args), " ".join(units), out))
            for unit in units:
                for doc in " ".join(unit_settings(unit, "Unit").get("Documentation", [])).split():
                    if doc.startswith("file:"):
                        self.assertTrue(os.path.exists(doc[5:]), "%s: %s" % (unit, doc))

    def start_agent(self, port):
        """The installed agent, run as doptd.service says, as root."""
        root_out = os.path.join(self.tmp, "root-out")
        os.makedirs(root_out)
        with open("/etc/dopt/doptd.conf") as f:
            shipped = f.read()
        with open("/etc/dopt/doptd.conf", "w") as f:
            f.write(harness.merge_toml(shipped, 'system_job_dirs = ["%s"]\nlog_level = "debug"\n'
                                       '[p2p]\nlisten = "127.0.0.1:%d"\nlan_discovery = false\n'
                                       % (root_out, port)))
        service = unit_settings(SYSTEM_UNIT, "Service")
        for key, parent in (("RuntimeDirectory", "/run"), ("StateDirectory", "/var/lib"),
                            ("CacheDirectory", "/var/cache")):
            mode = int(service.get(key + "Mode", ["0755"])[-1], 8)
            for name in " ".join(service.get(key, [])).split():
                os.makedirs(os.path.join(parent, name), mode=mode, exist_ok=True)
                os.chmod(os.path.join(parent, name), mode)
        for value in service.get("ExecStartPre", []):
            argv, may_fail = exec_argv(value)
            run(argv, check=not may_fail, env=self.env)
        argv, _ = exec_argv(service["ExecStart"][-1])
        self.assertEqual(argv[0], "/usr/bin/doptd")
        log_path = os.path.join(self.tmp, "doptd.log")
        with open(log_path, "wb") as log:
            self.agent = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                          env=self.env, start_new_session=True)

        def answers():
            if self.agent.poll() is not None:
                raise AssertionError("doptd exited %d at start:\n%s"
                                     % (self.agent.returncode, harness.tail(log_path)))
            return run(["/usr/bin/dopt", "list"], check=False, env=self.env)[0] == 0
        harness.wait_for(answers, 30, what="the installed agent to answer `dopt list`")
        return root_out, log_path

    def download(self, url, sha256, out, user=None):
        cmd = ["/usr/bin/dopt", "get", url, "-o", out, "--sha256", sha256]
        env = dict(self.env)
        if user:
            home = pwd.getpwnam(user).pw_dir
            env.update(HOME=home, USER=user, LOGNAME=user)
            cmd = ["runuser", "-u", user, "--"] + cmd
        run(cmd, timeout=120, env=env, cwd=os.path.dirname(out))
        self.assertEqual(harness.sha256_file(out), sha256, out)
        return os.stat(out).st_uid

    def purge_and_check(self, shipped, log_path):
        account_uid = pwd.getpwnam(ACCOUNT).pw_uid
        self.assertTrue(processes_of(uid=account_uid), "the agent does not run as dopt")
        run(["apt-get", "purge", "-y", "-q"] + list(PACKAGES), timeout=300, env=self.env)
        try:
            self.agent.wait(15)
        except subprocess.TimeoutExpired:
            self.fail("the agent still runs after purge:\n" + harness.tail(log_path))
        self.assertEqual(processes_of(uid=account_uid), [], "processes of dopt left")
        self.assertEqual(processes_of(exe_prefix="/usr/bin/doptd"), [], "doptd processes left")
        for name in PACKAGES:
            rc, status = run(["dpkg-query", "-W", "-f=${db:Status-Status}", name], check=False)
            self.assertTrue(rc != 0 or status.strip() in ("", "not-installed"), (name, status))
        left = [p for p in shipped + list(AGENT_DIRS) + ["/etc/dopt"] if os.path.lexists(p)]
        self.assertEqual(left, [], "left after purge")
        for d in ("/etc/systemd", "/var/lib/systemd/deb-systemd-helper-enabled"):
            rc, out = run(["find", d, "-name", "doptd*"], check=False)
            self.assertEqual(out.split(), [], "unit links left after purge")
        # Debian keeps system accounts on purge (the test removes it after).
        pwd.getpwnam(ACCOUNT)

    def test_build_install_use_purge(self):
        changes = self.built_changes() if self.prebuilt else self.build_packages()
        self.check_lintian(changes)
        self.install()
        self.check_layout()
        self.assertIn("status", self.complete("dopt st"))
        self.assertIn("--sha256", self.complete("dopt get --sh"))
        self.verify_units()

        www = os.path.join(self.tmp, "www")
        sha256 = harness.make_file(os.path.join(www, "file.bin"), 3 * harness.MiB)
        nginx = harness.Nginx(os.path.join(self.tmp, "nginx"), www).start()
        self.addCleanup(nginx.stop)
        root_out, log_path = self.start_agent(harness.free_port())
        url = nginx.url("file.bin")
        self.assertEqual(self.download(url, sha256, os.path.join(root_out, "file.bin")), 0)
        job_ids = [line.split()[0] for line in
                   run(["/usr/bin/dopt", "list"], env=self.env)[1].splitlines()[1:]]
        self.assertEqual(len(job_ids), 1)
        self.assertIn(job_ids[0], self.complete("dopt status "))

        run(["useradd", "--create-home", "--shell", "/bin/bash", TEST_USER])
        user = pwd.getpwnam(TEST_USER)
        out = os.path.join(user.pw_dir, "file.bin")
        self.assertEqual(self.download(url, sha256, out, user=TEST_USER), user.pw_uid)

        shipped = [p for name in PACKAGES for p in self.package_files(name)
                   if not os.path.isdir(p)]
        self.purge_and_check(shipped, log_path)


if __name__ == "__main__":
    unittest.main()
