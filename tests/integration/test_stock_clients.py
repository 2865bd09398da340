"""Stock BitTorrent clients beside dopt agents (issue 18), on 127.0.0.1:
Debian's aria2c (1.36) as a seeder and a leecher in one swarm with a real
doptd, on metainfo written by `dopt publish --v1` (aria2 before 1.37
computes another info-hash for hybrid metainfo, its issue 1903, and would
sit in a swarm of its own). aria2 runs without DHT, LPD, peer exchange or
trackers, bound to 127.0.0.1; the agent knows both as static peers.
Skips when aria2c is not installed (scripts/setup-deps installs it)."""

import os
import shutil
import socket
import subprocess
import sys
import unittest

import harness
import test_peering as peering  # helpers only: p2p_toml
from harness import MiB, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
SIZE = 8 * MiB
ORIGIN_RATE = "256k"  # the origin is the slow way: the agent should use the seeder


class Aria2:
    """One aria2c process on 127.0.0.1:<port> for `torrent`, with its
    files in `folder`: a seeder (the file is there, checked first) or a
    leecher that exits 0 once it has the whole file."""

    def __init__(self, workdir, torrent, folder, seed):
        self.dir = workdir
        self.port = harness.free_port()
        os.makedirs(self.dir, exist_ok=True)
        self.log = os.path.join(self.dir, "aria2.log")
        args = ["aria2c", "--interface=127.0.0.1", "--listen-port=%d" % self.port,
                "--enable-dht=false", "--enable-dht6=false", "--bt-enable-lpd=false",
                "--enable-peer-exchange=false", "--disable-ipv6=true", "--dir=" + folder,
                "--summary-interval=0", "--console-log-level=warn", "--log=" + self.log,
                "--log-level=info", "--file-allocation=none", "--auto-save-interval=0"]
        if seed:  # check the file, then seed until stopped
            args += ["--check-integrity=true", "--seed-ratio=0.0"]
        else:     # exit once the file is whole
            args += ["--seed-time=0"]
        out = open(os.path.join(self.dir, "aria2.out"), "wb")
        self.proc = subprocess.Popen(args + [torrent], stdout=out, stderr=out,
                                     stdin=subprocess.DEVNULL, env=harness.clean_env())
        out.close()

    @property
    def endpoint(self):
        return "127.0.0.1:%d" % self.port

    def wait_listening(self, timeout=10):
        def listening():
            if self.proc.poll() is not None:
                raise AssertionError("aria2c exited %d:\n%s" % (self.proc.returncode, harness.tail(self.log)))
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return True
            except OSError:
                return False
        wait_for(listening, timeout, what="aria2c to listen on %s" % self.endpoint)
        return self

    def stop(self):
        harness.terminate(self.proc)


@unittest.skipUnless(shutil.which("aria2c"), "aria2c is not installed (scripts/setup-deps)")
class Aria2Swarm(harness.IntegrationTest):
    def aria2(self, name, torrent, folder, seed):
        a = Aria2(self.sb.path(name), torrent, folder, seed)
        self.sb.children.append(a)
        return a.wait_listening()

    def test_aria2_seeds_to_and_leeches_from_an_agent_on_v1_metainfo(self):
        """An aria2 seeder holds the file, an aria2 leecher holds nothing and
        knows no one; the agent knows both. The agent takes the file from
        the seeder (not the slow origin), the leecher takes it from the
        agent, both byte-identical."""
        src = os.path.join(self.www, "pkg.bin")
        sha = harness.make_file(src, SIZE)
        origin = self.sb.nginx(self.www, slow_rate=ORIGIN_RATE)
        url = origin.url("slow/pkg.bin")
        torrent = src + ".torrent"
        p = subprocess.run([harness.dopt_path(), "publish", "--v1", src, "-o", torrent],
                           capture_output=True, text=True, env=harness.clean_env(), timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)

        seeder = self.aria2("seeder", torrent, self.www, seed=True)
        wait_for(lambda: "Verification finished successfully" in harness.tail(seeder.log, 400), 20,
                 what="the aria2 seeder to check its file")
        leech_dir = self.dest("leecher-files")
        leecher = self.aria2("leecher", torrent, leech_dir, seed=False)

        port = harness.free_port()
        agent = self.sb.agent(peering.p2p_toml("127.0.0.1:%d" % port, [seeder.endpoint, leecher.endpoint]))
        dest = os.path.join(self.dest("out"), "pkg.bin")
        agent.dopt("get", url, "-o", dest, check=True, timeout=120)
        self.assertFileSha(dest, sha)
        job = agent.job_for(dest)
        self.assertGreaterEqual(job["bytes_from_peers"], SIZE * 9 // 10,
                                "the agent did not take the file from the aria2 seeder: %s" % job)

        try:
            rc = leecher.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.fail("the aria2 leecher got no whole file from the agent in 60 s:\n%s"
                      % harness.tail(leecher.log))
        self.assertEqual(rc, 0, harness.tail(leecher.log))
        self.assertFileSha(os.path.join(leech_dir, "pkg.bin"), sha)


def stock_libtorrent():
    """True when Debian's python3-libtorrent imports under /usr/bin/python3."""
    try:
        return subprocess.run(["/usr/bin/python3", "-c", "import libtorrent"], capture_output=True,
                              timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@unittest.skipUnless(stock_libtorrent(), "python3-libtorrent is not installed (scripts/setup-deps)")
class MagnetClient(harness.IntegrationTest):
    def test_a_magnet_client_gets_the_metadata_and_the_file_from_an_agent(self):
        """An agent seeds a file it fetched (published hybrid metainfo); a
        stock libtorrent client given only the v1 info-hash and the agent's
        address takes the info dictionary from it (BEP 9), then the file.
        Before: ut_metadata ran only on torrents of content identity, and
        the client stayed without metadata (issue 18 item 7)."""
        src = os.path.join(self.www, "pkg.bin")
        sha = harness.make_file(src, 4 * MiB)
        origin = self.sb.nginx(self.www)
        info_hash = peering.publish(src, origin.url("pkg.bin"), src + ".torrent")
        port = harness.free_port()
        agent = self.sb.agent(peering.p2p_toml("127.0.0.1:%d" % port))
        dest = os.path.join(self.dest("out"), "pkg.bin")
        agent.dopt("get", origin.url("pkg.bin"), "-o", dest, check=True, timeout=60)
        self.assertFileSha(dest, sha)

        save = self.dest("magnet")
        p = subprocess.run(["/usr/bin/python3", os.path.join(HERE, "magnet_client.py"), info_hash,
                            "127.0.0.1:%d" % port, save, "30"],
                           capture_output=True, text=True, timeout=60, env=harness.clean_env())
        sys.stderr.write("\n  magnet client: %s" % p.stdout.strip().replace("\n", "; "))
        self.assertRegex(p.stdout, r"(?m)^metadata [0-9.]+$", p.stderr)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertFileSha(os.path.join(save, "pkg.bin"), sha)


if __name__ == "__main__":
    unittest.main()
