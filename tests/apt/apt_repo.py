"""Stock apt against a repository made on the spot, for tests/apt and
bench/apt: .deb files built with dpkg-deb, a flat repository (Packages from
dpkg-scanpackages, a Release naming their SHA-256) served by nginx on
127.0.0.1, and an apt tree of one's own (AptTree) in which apt-get runs
without reading or touching the machine's apt configuration and state.
Python 3 standard library only; the nginx and the rest come from
tests/integration/harness.py.
"""

import email.utils
import gzip
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
from harness import Nginx, build_dir, clean_env, make_file, nginx_conf, sha256_file  # noqa: E402

STOCK_METHODS = "/usr/lib/apt/methods"
TOOLS = ("apt-get", "dpkg-deb", "dpkg-scanpackages")


def method_path():
    """The apt method of this build."""
    return os.path.join(build_dir(), "apt", "dopt+http")


def build_deb(workdir, name, payload_size, seed):
    """A .deb of `name` 1.0, architecture all, holding a file of
    `payload_size` random bytes (deterministic for `seed`); returns its
    path."""
    root = os.path.join(workdir, name)
    os.makedirs(os.path.join(root, "DEBIAN"))
    make_file(os.path.join(root, "usr", "share", name, "payload"), payload_size, seed=seed)
    with open(os.path.join(root, "DEBIAN", "control"), "w") as f:
        f.write("Package: %s\nVersion: 1.0\nArchitecture: all\n"
                "Maintainer: dopt tests <dopt@example.invalid>\n"
                "Description: a package of dopt's apt tests\n" % name)
    deb = os.path.join(workdir, "%s_1.0_all.deb" % name)
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", root, deb],
                   check=True, capture_output=True)
    shutil.rmtree(root)
    return deb


def make_flat_repo(www, debs):
    """pool/*.deb, Packages, Packages.gz and a Release naming their SHA-256
    in `www` (apt's "flat repository" layout)."""
    pool = os.path.join(www, "pool")
    os.makedirs(pool)
    for deb in debs:
        shutil.copy(deb, pool)
    packages = subprocess.run(["dpkg-scanpackages", "-m", "pool", "/dev/null"], cwd=www,
                              check=True, capture_output=True).stdout
    with open(os.path.join(www, "Packages"), "wb") as f:
        f.write(packages)
    with gzip.open(os.path.join(www, "Packages.gz"), "wb") as f:
        f.write(packages)
    lines = ["Origin: dopt-test", "Label: dopt-test",
             "Date: " + email.utils.formatdate(time.time() - 3600, usegmt=True), "SHA256:"]
    for name in ("Packages", "Packages.gz"):
        path = os.path.join(www, name)
        lines.append(" %s %d %s" % (sha256_file(path), os.path.getsize(path), name))
    with open(os.path.join(www, "Release"), "w") as f:
        f.write("\n".join(lines) + "\n")


class RepoNginx(Nginx):
    """nginx answering If-Modified-Since with 304 when the file is not newer
    than the date asked about (nginx's default compares the dates for
    equality: apt/README.md, "Index files"). /slow/ serves the same files
    at 512 KiB/s a connection, /slower/ at 256 KiB/s."""

    def _conf(self):
        return nginx_conf(self.dir, "127.0.0.1:%d" % self.port, self.docroot,
                          log_format=r"$status\t$body_bytes_sent\t$http_range\t$request",
                          http_extra="if_modified_since before;",
                          server_extra="location /slow/ { alias %s/; limit_rate 512k; } "
                                       "location /slower/ { alias %s/; limit_rate 256k; }"
                                       % (self.docroot, self.docroot))


class AptTree:
    """apt's folders under `root` and a methods folder: links to every stock
    method (the `http` one too) and to dopt+http, dopt+https of this build.
    APT_CONFIG names a file that sets Dir::Etc here (so the machine's
    apt.conf.d is never read); `-o Dir::...` gives the rest."""

    def __init__(self, root):
        self.root = root
        for d in ("etc/apt.conf.d", "etc/sources.list.d", "etc/preferences.d",
                  "state", "cache", "log", "methods"):
            os.makedirs(os.path.join(root, d))
        open(os.path.join(root, "state", "status"), "w").close()
        with open(os.path.join(root, "apt.conf"), "w") as f:
            f.write('Dir::Etc "%s/etc/";\n' % root)
        for m in os.listdir(STOCK_METHODS):
            if m.startswith("dopt+"):  # an installed dopt package's, not this build's
                continue
            os.symlink(os.path.join(STOCK_METHODS, m), os.path.join(root, "methods", m))
        for m in ("dopt+http", "dopt+https"):
            os.symlink(method_path(), os.path.join(root, "methods", m))

    @property
    def archives(self):
        return os.path.join(self.root, "cache", "archives")

    def use_source(self, url):
        """The one sources.list line: the flat repository at `url`
        ("dopt+http://..." or "http://...")."""
        with open(os.path.join(self.root, "etc", "sources.list"), "w") as f:
            f.write("deb [trusted=yes] %s ./\n" % url)

    def command(self, *args, socket_path, extra=()):
        """apt-get -q ARGS with this tree's folders, Acquire::Languages=none
        and Acquire::dopt::Socket=`socket_path`: (argv, environment)."""
        r = self.root
        opts = ["-o", "Dir::State=%s/state" % r, "-o", "Dir::State::status=%s/state/status" % r,
                "-o", "Dir::Cache=%s/cache" % r, "-o", "Dir::Log=%s/log" % r,
                "-o", "Dir::Bin::Methods=%s/methods" % r,
                "-o", "Acquire::Languages=none",
                "-o", "Acquire::dopt::Socket=%s" % socket_path]
        for e in extra:
            opts += ["-o", e]
        env = clean_env()
        env["APT_CONFIG"] = os.path.join(r, "apt.conf")
        return ["apt-get", "-q"] + opts + list(args), env

    def run(self, *args, spawn=subprocess.Popen, **kw):
        """Runs command(ARGS) through spawn(argv, **popen_kwargs) (another
        namespace's: netns.Lan.run with its host); returns (exit code,
        stdout + stderr)."""
        argv, env = self.command(*args, **kw)
        p = spawn(argv, env=env, stdin=subprocess.DEVNULL, cwd=self.root,
                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            out, _ = p.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            p.kill()
            raise
        return p.returncode, out.decode(errors="replace")
