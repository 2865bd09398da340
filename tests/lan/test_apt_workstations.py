"""Stock apt-get through dopt+http on workstations of one LAN (issue 14,
apt/README.md, docs/design.md "Content identity"), in network namespaces
this test makes and tears down (netns.Lan).

A flat repository (tests/apt/apt_repo.py: one .deb over `[cache]
min_file_size`, Packages naming its SHA-256) is served by nginx in the
origin namespace. Each workstation has its own doptd (listening on its
namespace address, LSD on, no static peers) and its own apt tree; apt-get
runs inside the workstation's namespace:

    apt-get -> dopt+http (as _apt) --libdopt--> doptd hN --LAN--> holders
                                                     \\--------> nginx

The method passes Packages' SHA-256 (Expected-SHA256) as the file's
SHA-256, so a later workstation's agent finds the .deb on the LAN by it.
Needs root (netns, apt's sandbox user), apt-get, dpkg-deb and
dpkg-scanpackages; skips otherwise.
"""

import functools
import os
import pwd
import shutil
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "apt"))
import netns  # noqa: E402
import harness  # noqa: E402  (tests/integration, put on sys.path by netns)
from apt_repo import TOOLS, AptTree, build_deb, make_flat_repo, method_path  # noqa: E402

MiB = netns.MiB
PACKAGE = "dopt-lan-test"
DEB = "%s_1.0_all.deb" % PACKAGE


def require_apt():
    """Raises SkipTest unless apt-get, dpkg's tools and _apt are here."""
    for tool in TOOLS:
        if shutil.which(tool) is None:
            raise unittest.SkipTest("needs %s (scripts/setup-deps installs it)" % tool)
    try:
        pwd.getpwnam("_apt")
    except KeyError:
        raise unittest.SkipTest("needs apt's sandbox account _apt")


class AptWorkstations(netns.LanTestCase):
    lan_hosts = 4
    payload = 6 * MiB  # the .deb is a little larger: over min_file_size (1 MiB)

    def setUp(self):
        super().setUp()
        require_apt()
        if not os.access(method_path(), os.X_OK):
            self.fail("missing %s (build the target dopt_apt_method)" % method_path())
        os.chmod(self.lan.dir, 0o755)  # _apt walks to its partial folders and the socket
        made = os.path.join(self.lan.dir, "made")
        os.makedirs(made)
        deb = build_deb(made, PACKAGE, self.payload, seed=14)
        self.deb_sha = harness.sha256_file(deb)
        self.deb_size = os.path.getsize(deb)
        make_flat_repo(self.www, [deb])
        self.origin = self.lan.start_origin()

    def workstation_fetches(self, host):
        """A doptd and an apt tree on `host`; apt-get update, then install
        --download-only of the package: apt exits 0 and the .deb is the
        origin's. Returns the agent."""
        agent = self.lan.start_agent(host)
        tree = AptTree(os.path.join(host.dir, "apt"))
        tree.use_source("dopt+" + self.origin.url("/"))
        for args in (("update",), ("install", "--download-only", "-y", PACKAGE)):
            rc, out = tree.run(*args, socket_path=agent.socket,
                               spawn=functools.partial(self.lan.run, host))
            self.assertEqual(rc, 0, "%s: apt-get %s:\n%s" % (host.name, args[0], out))
        self.assertFileSha(os.path.join(tree.archives, DEB), self.deb_sha)
        return agent

    def test_workstations_one_after_another_take_the_deb_from_each_other(self):
        """h1..h4, one after another (each once the one before seeds the
        .deb): apt exits 0 on each, every .deb is byte-identical, and the
        origin sent the .deb about once in all (its access log): the later
        workstations found it on the LAN by Packages' SHA-256."""
        path = "/pool/" + DEB
        for host in self.lan.hosts:
            agent = self.workstation_fetches(host)
            entry = agent.wait_seeding()
            # Metainfo made from the SHA-256 is named by it (design.md).
            self.assertEqual(entry["name"], self.deb_sha, entry)
        sent = self.origin.bytes_by_host(path)
        print("\napt on %d workstations one after another: origin sent the .deb %.3f times %s"
              % (self.lan_hosts, sum(sent.values()) / self.deb_size, sent), file=sys.stderr)
        self.assertLessEqual(sum(sent.values()), 1.10 * self.deb_size, sent)


if __name__ == "__main__":
    unittest.main()
