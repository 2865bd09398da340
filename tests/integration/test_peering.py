"""Peering and the peer cache on loopback: real doptd agents peering with
each other over 127.0.0.x through libtorrent, a real nginx origin serving the
content and (mostly) its metainfo beside it (URL + ".torrent", made with
`dopt publish`). Needs no root.

Every agent config sets `[p2p] listen` on a loopback address at a free port,
`lan_discovery = false` (LSD must never run outside a network namespace) and
static `peers`. Agent A listens on 127.0.0.1 and agent B on 127.0.0.2 (both
loopback on Linux; the default allowed_networks of a loopback listen address
is 127.0.0.0/8): two agents on the *same* address do not wait for each other
before they go to the origin (see SameLoopbackAddress below), so the tests
that measure peering give each agent an address of its own, as on a LAN.

Figures (bytes_from_peers / bytes_from_origin of the job objects, body bytes
the origin's access log shows after a mark) are printed on stderr.
"""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import unittest
import unittest.mock

import bencode
import harness
from harness import MiB, free_port, next_second, wait_for

A_IP = "127.0.0.1"
B_IP = "127.0.0.2"


def publish(path, web_seed, out):
    """`dopt publish PATH --web-seed URL -o OUT`; returns the (v1) info-hash
    it printed, the name of the torrent's cache entry and folder."""
    p = subprocess.run([harness.dopt_path(), "publish", path, "--web-seed", web_seed, "-o", out],
                       capture_output=True, text=True, env=harness.clean_env(), timeout=60)
    if p.returncode != 0:
        raise AssertionError("dopt publish %s: exit %d: %s" % (path, p.returncode, p.stderr))
    m = re.search(r"^info-hash:\s+([0-9a-f]{40})\s*$", p.stdout, re.M)
    if not m:
        raise AssertionError("dopt publish printed no info-hash: %r" % p.stdout)
    return m.group(1)


def p2p_toml(listen, peers=(), extra=""):
    peer_list = ", ".join('"%s"' % p for p in peers)
    return ('[p2p]\nenabled = true\nlisten = "%s"\nlan_discovery = false\npeers = [%s]\n'
            % (listen, peer_list)) + extra


def say(*args):
    sys.stderr.write("\n  " + " ".join(str(a) for a in args))
    sys.stderr.flush()


class PeeringTest(harness.IntegrationTest):
    """self.www is the origin's docroot; self.origin the nginx (start_origin)."""

    def setUp(self):
        super().setUp()
        self.origin = None
        self.hashes = {}  # content name -> info-hash

    # -- origin ---------------------------------------------------------------

    def start_origin(self):
        self.origin = self.sb.nginx(self.www)
        return self.origin

    def url(self, name):
        return self.origin.url(name)

    def serve(self, name, size, torrent=True):
        """Puts `size` random bytes at /<name> (and, with torrent, its metainfo
        at /<name>.torrent); returns the content's sha256. Call after
        start_origin (the web seed names the origin's port)."""
        path = os.path.join(self.www, name)
        sha = harness.make_file(path, size)
        if torrent:
            self.hashes[name] = publish(path, self.url(name), path + ".torrent")
        return sha

    def mark(self):
        """The current end of the origin's access log."""
        return len(self.origin.log_entries())

    def sent_since(self, mark, path):
        """Body bytes the origin sent for `path` after `mark`."""
        return sum(e[1] for e in self.origin.log_entries()[mark:] if e[4] == path)

    def requests_since(self, mark):
        return self.origin.log_entries()[mark:]

    # -- agents ---------------------------------------------------------------

    def pair(self, start_b=True, extra=""):
        """Agents A (127.0.0.1) and B (127.0.0.2), each the other's static
        peer; B is started only with start_b."""
        pa, pb = free_port(A_IP), free_port(B_IP)
        a_addr, b_addr = "%s:%d" % (A_IP, pa), "%s:%d" % (B_IP, pb)
        a = self.sb.agent(p2p_toml(a_addr, [b_addr], extra), name="A")
        b = self.sb.agent(p2p_toml(b_addr, [a_addr], extra), name="B", start=start_b)
        return a, b

    def assert_metainfo_url_refused(self, a, dest, torrent, why):
        """`dopt get` of app.bin with --metainfo at the origin's `torrent`
        exits 1, its job fails (context integrity, `why` in the
        description), and the content is never fetched. Returns the stderr."""
        rc, out, err = a.dopt("get", self.url("app.bin"), "-o", dest,
                              "--metainfo", self.url(torrent))
        self.assertEqual(rc, 1, (out, err))
        st = a.status(a.job_for(dest)["id"])
        self.assertEqual(st["state"], "error", st)
        self.assertEqual(st["error"]["context"], "integrity", st)
        self.assertIn(why, st["error"]["description"])
        self.assertFalse(os.path.exists(dest))
        self.assertEqual(self.origin.body_bytes_sent("/app.bin"), 0)
        return err

    def lone_agent(self, extra=""):
        """One peering agent with no peers."""
        return self.sb.agent(p2p_toml("%s:%d" % (A_IP, free_port(A_IP)), [], extra), name="A")

    def dest_of(self, agent, name):
        d = os.path.join(agent.dir, "out")
        os.makedirs(d, exist_ok=True)
        return os.path.join(d, name)

    def get(self, agent, url, name, *args, timeout=90):
        """`dopt get URL -o <agent>/out/<name> ARGS` that must succeed; returns
        (destination, job object)."""
        dest = self.dest_of(agent, name)
        agent.dopt("get", url, "-o", dest, *args, check=True, timeout=timeout)
        return dest, agent.job_for(dest)

    def cache(self, agent):
        _, out, _ = agent.dopt("cache", "list", "--json", check=True)
        return json.loads(out)

    def cache_entry(self, agent, info_hash):
        return next((e for e in self.cache(agent) if e["info_hash"] == info_hash), None)

    def wait_seeding(self, agent, info_hash, timeout=20):
        return wait_for(lambda: (self.cache_entry(agent, info_hash) or {}).get("seeding"),
                        timeout, what="%s seeding %s (cache list: %s)"
                        % (agent.dir, info_hash, self.cache(agent)))

    @staticmethod
    def connect_delay(agent, job_id):
        """Seconds from the job joining its swarm to the first peer connection
        in the agent's log (None when not logged)."""
        t0 = t1 = None
        for line in agent.log_text().splitlines():
            m = re.match(r"(\d\d):(\d\d):(\d\d\.\d+) ", line)
            if not m:
                continue
            t = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
            if t0 is None and job_id in line and "through the swarm" in line:
                t0 = t
            elif t0 is not None and re.search(r"peer \S+ connected", line):
                t1 = t
                break
        return None if t0 is None or t1 is None else round(t1 - t0, 3)

    def assertFromPeers(self, job, size, mark, path, what, agent=None, share=0.95):
        """At least `share` (95%) of the job's bytes came from peers and the
        origin sent at most the rest after `mark` (the .torrent probe aside)."""
        sent = self.sent_since(mark, path)
        say("%s: bytes_from_peers %d, bytes_from_origin %d, origin sent %d of %d%s"
            % (what, job["bytes_from_peers"], job["bytes_from_origin"], sent, size,
               "; first peer connected after %s s" % self.connect_delay(agent, job["id"])
               if agent else ""))
        self.assertEqual(job["mode"], "peer_assisted", job)
        self.assertGreaterEqual(job["bytes_from_peers"], share * size, job)
        self.assertLessEqual(job["bytes_from_origin"], (1 - share) * size, job)
        self.assertLessEqual(sent, (1 - share) * size, self.requests_since(mark))


# ---------------------------------------------------------------------------


class CacheSurvivesRestart(PeeringTest):
    SIZE = 24 * MiB

    def _download_restart_and_share(self, how):
        """A downloads, is stopped (`how`: "sigterm" or "kill9") and started
        again; returns (a, b, sha, info_hash, B's destination, B's job, mark)
        after B downloaded the same URL."""
        self.start_origin()
        sha = self.serve("pkg.bin", self.SIZE)
        ih = self.hashes["pkg.bin"]
        a, b = self.pair(start_b=False)
        url = self.url("pkg.bin")
        da, ja = self.get(a, url, "pkg.bin")
        self.assertFileSha(da, sha)
        self.assertEqual(ja["mode"], "peer_assisted", ja)
        self.assertEqual(ja["files"][0]["metainfo"], "origin", ja)
        self.assertEqual(ja["files"][0].get("info_hash", ih), ih, ja)
        self.assertEqual(ja["bytes_from_origin"], self.SIZE, ja)
        self.assertTrue(self.cache_entry(a, ih)["complete"], self.cache(a))

        if how == "sigterm":
            self.assertEqual(a.terminate(), 0, "doptd A did not exit 0 on SIGTERM")
        else:
            a.kill9()
        a.start()
        e = self.cache_entry(a, ih)
        self.assertIsNotNone(e, "the entry is gone from A's cache after %s and restart" % how)
        self.assertTrue(e["complete"], e)
        self.assertEqual(e["size"], self.SIZE, e)
        self.assertEqual(e["origin_url"], url, e)
        self.assertTrue(os.path.isdir(os.path.join(a.cache_dir, ih)))
        self.wait_seeding(a, ih)

        b.start()
        mark = self.mark()
        db, jb = self.get(b, url, "pkg.bin")
        self.assertFileSha(db, sha)
        return a, b, sha, ih, db, jb, mark

    def test_after_sigterm_and_restart_the_cache_serves_a_peer(self):
        """A's complete entry survives SIGTERM and restart (cache list, folder,
        seeding); B then gets >= 95% from A, and the origin sends B the
        .torrent and (almost) nothing of the content."""
        a, b, sha, ih, db, jb, mark = self._download_restart_and_share("sigterm")
        self.assertFromPeers(jb, self.SIZE, mark, "/pkg.bin", "after SIGTERM", b)
        probes = [e for e in self.requests_since(mark) if e[4] == "/pkg.bin.torrent"]
        self.assertEqual([e[0] for e in probes], [200], self.requests_since(mark))
        self.assertEqual(jb["files"][0]["metainfo"], "origin", jb)
        # A counts what it gave (libtorrent's all-time upload, updated about
        # once a second).
        stats = wait_for(lambda: (lambda s: s if s["bytes_to_peers"] >= 0.95 * self.SIZE else None)(
            json.loads(a.dopt("stats", "--json", check=True)[1])), 10,
            what="A's stats counting the bytes it gave B")
        self.assertTrue(stats["peering"], stats)
        say("A's stats: bytes_to_peers %d" % stats["bytes_to_peers"])
        bstats = json.loads(b.dopt("stats", "--json", check=True)[1])
        self.assertEqual(bstats["bytes_from_peers"], jb["bytes_from_peers"], bstats)
        # The metrics count the same bytes (A's torrent was restored: only
        # what it sent after the restart is new).
        wait_for(lambda: harness.parse_prometheus(a.dopt("stats", "--prometheus", check=True)[1])[1][
            ("dopt_peer_sent_bytes_total", ())] == json.loads(a.dopt("stats", "--json", check=True)[1])[
            "bytes_to_peers"], 10, what="A's dopt_peer_sent_bytes_total equal to its bytes_to_peers")
        _, bm = harness.parse_prometheus(b.dopt("stats", "--prometheus", check=True)[1])
        self.assertEqual(bm[("dopt_peer_received_bytes_total", ())], bstats["bytes_from_peers"])
        self.assertEqual(bm[("dopt_origin_received_bytes_total", ())], bstats["bytes_from_origin"])

    def test_after_kill9_and_restart_the_cache_still_serves_correct_bytes(self):
        """The same after kill -9 of A (resume data may be older than the
        content): B's file is byte-identical; the share from peers is
        printed and must still be >= 95%."""
        a, b, sha, ih, db, jb, mark = self._download_restart_and_share("kill9")
        self.assertFromPeers(jb, self.SIZE, mark, "/pkg.bin", "after kill -9", b)


class DestinationOnAnotherFileSystem(PeeringTest):
    """Verified pieces go from the cached copy into the partial file with
    copy_file_range, which the kernel may refuse across file systems
    (EXDEV); the agent then reads them back through libtorrent. Either way
    the file is right."""

    def test_a_destination_on_a_tmpfs_gets_the_right_bytes(self):
        if not harness.IS_ROOT:
            self.skipTest("needs root to mount a tmpfs for the destination")
        self.start_origin()
        sha = self.serve("other-fs.bin", 12 * MiB)
        a = self.lone_agent()
        dest_dir = os.path.join(a.dir, "out")
        os.makedirs(dest_dir)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "dopt-test", dest_dir], check=True)
        self.addCleanup(subprocess.run, ["umount", "-l", dest_dir])
        dest, job = self.get(a, self.url("other-fs.bin"), "other-fs.bin")
        self.assertFileSha(dest, sha)
        self.assertEqual(job["mode"], "peer_assisted", job)
        self.assertEqual(job["bytes_from_origin"], 12 * MiB, job)
        # The same content again, to a folder on the cache's file system: from
        # the cache, copied in the kernel.
        other = os.path.join(a.dir, "same-fs")
        os.makedirs(other)
        a.dopt("get", self.url("other-fs.bin"), "-o", os.path.join(other, "again.bin"),
               check=True, timeout=90)
        self.assertFileSha(os.path.join(other, "again.bin"), sha)


class CacheClear(PeeringTest):
    def test_cache_clear_removes_the_entry_and_the_next_download_uses_the_origin(self):
        """`dopt cache clear` empties A's cache list and removes
        cache_dir/<info-hash>; B (A as its static peer) then gets every byte
        from the origin."""
        size = 4 * MiB
        self.start_origin()
        sha = self.serve("lib.bin", size)
        ih = self.hashes["lib.bin"]
        a, b = self.pair(start_b=False)
        url = self.url("lib.bin")
        self.get(a, url, "lib.bin")
        self.assertEqual([e["info_hash"] for e in self.cache(a)], [ih])
        folder = os.path.join(a.cache_dir, ih)
        self.assertTrue(os.path.isdir(folder))

        _, out, _ = a.dopt("cache", "clear", check=True)
        self.assertIn("removed 4.0 MiB", out)
        self.assertEqual(self.cache(a), [])
        self.assertFalse(os.path.exists(folder), os.listdir(a.cache_dir))
        _, out, _ = a.dopt("cache", "list", check=True)
        self.assertIn("holds nothing", out)
        # Nothing comes back at restart either.
        a.restart()
        self.assertEqual(self.cache(a), [])
        self.assertFalse(os.path.exists(folder))

        b.start()
        mark = self.mark()
        db, jb = self.get(b, url, "lib.bin")
        self.assertFileSha(db, sha)
        say("after cache clear: bytes_from_peers %d, bytes_from_origin %d"
            % (jb["bytes_from_peers"], jb["bytes_from_origin"]))
        self.assertEqual(jb["bytes_from_origin"], size, jb)
        self.assertEqual(jb["bytes_from_peers"], 0, jb)
        self.assertEqual(self.sent_since(mark, "/lib.bin"), size)


class Eviction(PeeringTest):
    def test_max_size_evicts_the_least_recently_used_entry(self):
        """[cache] max_size a bit above one file: after two downloads (and a
        restart: eviction runs at start, hourly and on cache clear, not when
        a torrent completes) the first is evicted, folder and all; the second
        stays and is seeded."""
        size = 4 * MiB
        self.start_origin()
        self.serve("one.bin", size)
        sha2 = self.serve("two.bin", size)
        ih1, ih2 = self.hashes["one.bin"], self.hashes["two.bin"]
        a = self.lone_agent("[cache]\nmax_size = %d\nmax_disk_percent = 100\n" % (size + MiB))
        self.get(a, self.url("one.bin"), "one.bin")
        next_second()  # last_used is in seconds: make the order unambiguous
        self.get(a, self.url("two.bin"), "two.bin")
        before = sorted(e["info_hash"] for e in self.cache(a))
        say("cache list right after the two downloads: %s (%s)"
            % (before, "over max_size, not evicted until restart or the hourly pass"
               if len(before) == 2 else "evicted at once"))
        a.restart()
        entries = self.cache(a)
        self.assertEqual([e["info_hash"] for e in entries], [ih2], entries)
        self.assertTrue(entries[0]["complete"], entries)
        self.assertFalse(os.path.exists(os.path.join(a.cache_dir, ih1)), os.listdir(a.cache_dir))
        self.assertTrue(os.path.isdir(os.path.join(a.cache_dir, ih2)))
        self.assertIn("peer cache: evicting %s (one.bin)" % ih1, a.log_text())
        self.assertNotIn("peer cache: evicting %s" % ih2, a.log_text())
        self.wait_seeding(a, ih2)
        # The delivered files are the user's, untouched by eviction.
        self.assertFileSha(self.dest_of(a, "two.bin"), sha2)
        self.assertTrue(os.path.exists(self.dest_of(a, "one.bin")))


class UnfinishedContentCounts(PeeringTest):
    SIZE = 4 * MiB

    def suspend_after_a_piece(self, a, name):
        """`dopt add` of /slow/<name>, suspended once a piece is in: its
        content is unfinished and parked in the cache. Returns the job id."""
        job = a.add(self.url("slow/" + name), "-o", self.dest_of(a, name))
        wait_for(lambda: a.status(job)["bytes_transferred"] > 0, 30, what="a piece of " + name)
        a.dopt("suspend", job, check=True)
        self.assertEqual(a.status(job)["mode"], "peer_assisted")
        return job

    def wait_cache(self, a, want, what):
        """Waits until the cache holds exactly `want` ({name: complete})."""
        return wait_for(lambda: (lambda got: got if got == want else None)(
            {e["name"]: e["complete"] for e in self.cache(a)}), 10,
            what="%s: cache %s (now %s)" % (what, want, self.cache(a)))

    def test_unfinished_content_counts_against_the_cache_limits(self):
        """[cache] max_size 10 MiB, files of 4 MiB, one user. Two complete
        downloads (8 MiB, no job needs them). A third, from a slow origin,
        suspended after a piece: its unfinished content counts, so the
        older complete entry is evicted (12 MiB > 10). A fourth, suspended
        the same way: the user's parked unfinished content (8 MiB) is over
        half the limit, so the older one goes; resumed, that job finds its
        metainfo again and finishes through the swarm. Before: only
        complete content counted, so a user could keep any amount of
        unfinished content in the agent's cache (suspended jobs, partial
        files deleted), outside their own quota."""
        self.origin = self.sb.nginx(self.www, slow_rate="256k")
        sha = {name: self.serve(name, self.SIZE)
               for name in ("one.bin", "two.bin", "three.bin", "four.bin")}
        a = self.lone_agent("[cache]\nmax_size = %d\nmax_disk_percent = 100\n" % (10 * MiB))
        self.get(a, self.url("three.bin"), "three.bin")
        next_second()  # last_used is in seconds: make the order unambiguous
        self.get(a, self.url("four.bin"), "four.bin")
        self.wait_cache(a, {"three.bin": True, "four.bin": True}, "two complete downloads")

        next_second()
        first = self.suspend_after_a_piece(a, "one.bin")
        self.wait_cache(a, {"four.bin": True, "one.bin": False}, "one.bin parked")
        self.assertIn("peer cache: evicting %s (three.bin)" % self.hashes["three.bin"],
                      a.log_text())

        next_second()
        self.suspend_after_a_piece(a, "two.bin")
        self.wait_cache(a, {"four.bin": True, "two.bin": False}, "two.bin parked, over the share")
        self.assertIn("evicting %s (one.bin, unfinished" % self.hashes["one.bin"], a.log_text())
        self.assertFalse(os.path.exists(os.path.join(a.cache_dir, self.hashes["one.bin"])))

        a.dopt("resume", first, check=True)
        a.wait_state(first, "transferred", timeout=60)
        st = a.status(first)
        self.assertEqual(st["mode"], "peer_assisted", st)
        a.dopt("complete", first, check=True)
        self.assertFileSha(self.dest_of(a, "one.bin"), sha["one.bin"])

    def test_parked_content_whose_metainfo_the_job_gave_is_kept(self):
        """The same two suspended jobs, but each gave its metainfo as bytes
        (`--metainfo FILE`, none at the origin). That metainfo lives only in
        the cache entry and is the job's trust root: evicting it would send
        the file over HTTP with no hash check. So neither entry is evicted
        (both still count), and the resumed job finishes through the swarm."""
        self.origin = self.sb.nginx(self.www, slow_rate="256k")
        sha = {name: self.serve(name, self.SIZE) for name in ("one.bin", "two.bin")}
        given = {}
        for name in sha:  # the metainfo leaves the origin: only the job has it
            given[name] = self.sb.path(name + ".torrent")
            shutil.move(os.path.join(self.www, name + ".torrent"), given[name])
        a = self.lone_agent("[cache]\nmax_size = %d\nmax_disk_percent = 100\n" % (10 * MiB))
        jobs = {}
        for name in sha:
            jobs[name] = a.add(self.url("slow/" + name), "-o", self.dest_of(a, name),
                               "--metainfo", given[name])
            wait_for(lambda: a.status(jobs[name])["bytes_transferred"] > 0, 30,
                     what="a piece of " + name)
            a.dopt("suspend", jobs[name], check=True)
            next_second()
        # 8 MiB parked, over half the limit: unfinished content of one user
        # that the jobs did not give metainfo for would be evicted now.
        a.dopt("cache", "list", check=True)  # a request: the agent has run its eviction
        self.assertNotIn("evicting", a.log_text())
        self.assertEqual({e["name"] for e in self.cache(a)}, {"one.bin", "two.bin"})
        a.dopt("resume", jobs["one.bin"], check=True)
        a.wait_state(jobs["one.bin"], "transferred", timeout=60)
        st = a.status(jobs["one.bin"])
        self.assertEqual(st["mode"], "peer_assisted", st)
        a.dopt("complete", jobs["one.bin"], check=True)
        self.assertFileSha(self.dest_of(a, "one.bin"), sha["one.bin"])


class AlteredCache(PeeringTest):
    def test_a_cached_copy_altered_on_disk_never_reaches_a_users_file(self):
        """The agent's own cached copy is altered on disk while it is down;
        a new job for the same content reads the pieces back, finds the bad
        one by its hash, rechecks the copy and fetches it again: the file
        delivered is the origin's."""
        size = 4 * 1024 * 1024
        self.start_origin()
        sha = self.serve("tool.bin", size)
        a = self.lone_agent()
        self.get(a, self.url("tool.bin"), "first.bin")
        a.stop()
        cached = [os.path.join(r, f) for r, _, fs in os.walk(a.cache_dir) for f in fs
                  if f == "tool.bin"]
        self.assertEqual(len(cached), 1, cached)
        with open(cached[0], "r+b") as f:
            f.seek(1500000)
            b = f.read(1)
            f.seek(1500000)
            f.write(bytes([b[0] ^ 0xFF]))
        a.start()
        mark = self.mark()
        dest, job = self.get(a, self.url("tool.bin"), "second.bin")
        self.assertFileSha(dest, sha)
        self.assertIn("no longer matches its hash", a.log_text())
        self.assertGreater(self.sent_since(mark, "/tool.bin"), 0, "the bad piece came again")


class SmallFile(PeeringTest):
    def test_content_under_min_file_size_goes_http_only(self):
        """512 KiB with metainfo beside it, default min_file_size 1 MiB:
        HTTP only (mode http_only, metainfo none), all from the origin, and
        nothing complete in the peer cache."""
        size = 512 * 1024
        self.start_origin()
        sha = self.serve("small.bin", size)
        a = self.lone_agent()
        dest, job = self.get(a, self.url("small.bin"), "small.bin")
        self.assertFileSha(dest, sha)
        self.assertEqual(job["mode"], "http_only", job)
        st = a.status(job["id"])
        self.assertEqual(st["files"][0]["metainfo"], "none", st)
        self.assertEqual(st["bytes_from_origin"], size, st)
        self.assertEqual(st["bytes_from_peers"], 0, st)
        entries = self.cache(a)
        say("cache list after a small file: %s" % entries)
        self.assertEqual([e for e in entries if e["complete"]], [], entries)
        self.assertEqual(os.listdir(a.cache_dir), [])
        stats = json.loads(a.dopt("stats", "--json", check=True)[1])
        self.assertEqual(stats["bytes_to_peers"], 0, stats)

    def test_content_under_min_file_size_leaves_no_cache_entry(self):
        self.start_origin()
        self.serve("small.bin", 512 * 1024)
        a = self.lone_agent()
        self.get(a, self.url("small.bin"), "small.bin")
        self.assertEqual(self.cache(a), [])


class ExpectedSize(PeeringTest):
    """A job that gives a file's size (--size, dopt_job_set_file_size)."""

    def test_a_small_file_with_a_size_and_a_sha256_skips_the_content_lookup(self):
        """291 bytes with --sha256 and --size 291, peering on: no content
        lookup (no "looking for it on the LAN" in the log), no metainfo
        probe at the origin, HTTP at once, and the job says why."""
        self.start_origin()
        sha = self.serve("Packages.gz", 291, torrent=False)
        a = self.lone_agent()
        mark = self.mark()
        dest, job = self.get(a, self.url("Packages.gz"), "Packages.gz", "--sha256", sha,
                             "--size", "291")
        self.assertFileSha(dest, sha)
        st = a.status(job["id"])
        self.assertEqual(st["http_only_reason"], "smaller than [cache] min_file_size", st)
        self.assertNotIn("looking for it on the LAN", a.log_text())
        self.assertEqual([e[4] for e in self.requests_since(mark)], ["/Packages.gz"])

    def test_an_origin_sending_another_size_fails_the_job_at_once(self):
        """--size 1000 for a 4 KiB file: `dopt get` exits 1, the job's error
        (remote_file) names both sizes, and nothing reaches the destination."""
        self.start_origin()
        self.serve("sized.bin", 4096, torrent=False)
        a = self.lone_agent()
        dest = self.dest_of(a, "sized.bin")
        rc, out, err = a.dopt("get", self.url("sized.bin"), "-o", dest, "--size", "1000")
        self.assertEqual(rc, 1, (out, err))
        st = a.status(a.job_for(dest)["id"])
        self.assertEqual(st["state"], "error", st)
        self.assertEqual(st["error"]["context"], "remote_file", st)
        self.assertIn("sends 4096 bytes", st["error"]["description"])
        self.assertIn("expected 1000", st["error"]["description"])
        self.assertEqual(st["bytes_transferred"], 0, st)
        self.assertFalse(os.path.exists(dest))

    def test_a_size_that_is_not_a_number_is_a_usage_error(self):
        a = self.lone_agent()
        dest = self.dest_of(a, "x.bin")
        for bad in ("12k", "-1", "", "99999999999999999999"):
            rc, out, err = a.dopt("get", "http://127.0.0.1:9/x.bin", "-o", dest, "--size", bad)
            self.assertEqual(rc, 2, (bad, out, err))
            self.assertIn("--size", err)
        rc, out, err = a.dopt("get", "http://127.0.0.1:9/x.bin", "-o", dest, "--size", "1", "--size", "2")
        self.assertEqual(rc, 2, (out, err))
        self.assertIn("more --size than files", err)


class CacheCopyOffTheLoop(PeeringTest):
    """The copy of a fetched file into the peer cache, and its hashing, run
    on a worker: the agent delivers the file and answers every request
    while the copy is under way. A test build's DOPT_HOLD_CACHE_COPY=PATH
    holds the worker until PATH exists (agent/cache_copy.cpp)."""

    def test_the_agent_answers_while_a_copy_into_the_cache_is_held(self):
        version = subprocess.run([harness.doptd_path(), "--version"], capture_output=True,
                                 text=True, timeout=10).stdout
        if "crash points compiled in" not in version:
            self.skipTest("needs a test build (-DDOPT_CRASH_POINTS=ON) for DOPT_HOLD_CACHE_COPY")
        self.start_origin()
        sha = self.serve("big.bin", 2 * MiB, torrent=False)
        self.serve("other.bin", 4096, torrent=False)
        release = os.path.join(self.sb.dir, "release-cache-copy")
        with unittest.mock.patch.dict(os.environ, {"DOPT_HOLD_CACHE_COPY": release}):
            a = self.lone_agent()
        # Delivered, though its copy into the cache waits.
        dest, _ = self.get(a, self.url("big.bin"), "big.bin", "--sha256", sha, timeout=30)
        self.assertFileSha(dest, sha)
        wait_for(lambda: "cache copy held until" in a.log_text(), 10, what="the held copy")
        # Another file comes and goes, and nothing is in the cache yet.
        self.get(a, self.url("other.bin"), "other.bin", timeout=30)
        self.assertEqual([e for e in self.cache(a) if e["name"] == sha], [])
        with open(release, "w"):
            pass
        entry = wait_for(lambda: next((e for e in self.cache(a) if e["name"] == sha), None), 20,
                         what="the cache entry named %s" % sha)
        self.wait_seeding(a, entry["info_hash"])


class JobMetainfo(PeeringTest):
    SIZE = 24 * MiB

    def _content_without_metainfo_beside(self):
        """/app.bin with no /app.bin.torrent; its metainfo at
        <sandbox>/meta/app.torrent and at /meta/app.torrent on the origin."""
        self.start_origin()
        sha = self.serve("app.bin", self.SIZE, torrent=False)
        meta_dir = self.sb.path("meta")
        os.makedirs(meta_dir)
        local = os.path.join(meta_dir, "app.torrent")
        ih = publish(os.path.join(self.www, "app.bin"), self.url("app.bin"), local)
        os.makedirs(os.path.join(self.www, "meta"))
        shutil.copy(local, os.path.join(self.www, "meta", "app.torrent"))
        return sha, ih, local

    def test_metainfo_file_and_url_given_with_the_job(self):
        """A: `--metainfo FILE` (not beside the content): peer_assisted,
        metainfo "job", no probe beside the content. B: `--metainfo URL`
        (another path on the origin): gets it from A."""
        sha, ih, local = self._content_without_metainfo_beside()
        a, b = self.pair()
        url = self.url("app.bin")
        mark = self.mark()
        da, ja = self.get(a, url, "app.bin", "--metainfo", local)
        self.assertFileSha(da, sha)
        self.assertEqual(ja["mode"], "peer_assisted", ja)
        self.assertEqual(ja["files"][0]["metainfo"], "job", ja)
        self.assertEqual(ja["files"][0].get("info_hash", ih), ih, ja)
        self.assertNotIn("/app.bin.torrent", [e[4] for e in self.requests_since(mark)])
        self.assertTrue(self.cache_entry(a, ih)["complete"], self.cache(a))
        self.wait_seeding(a, ih)

        mark = self.mark()
        db, jb = self.get(b, url, "app.bin", "--metainfo", self.url("meta/app.torrent"))
        self.assertFileSha(db, sha)
        self.assertEqual(jb["files"][0]["metainfo"], "job", jb)
        paths = [e[4] for e in self.requests_since(mark)]
        self.assertIn("/meta/app.torrent", paths)
        self.assertNotIn("/app.bin.torrent", paths)
        self.assertFromPeers(jb, self.SIZE, mark, "/app.bin", "--metainfo URL, from A", b)

    def test_garbage_metainfo_file_is_a_usage_error_and_makes_no_job(self):
        self.start_origin()
        self.serve("app.bin", MiB, torrent=False)
        a = self.lone_agent()
        bad = self.sb.path("garbage.torrent")
        with open(bad, "wb") as f:
            f.write(os.urandom(700))
        dest = self.dest_of(a, "app.bin")
        rc, out, err = a.dopt("get", self.url("app.bin"), "-o", dest, "--metainfo", bad)
        self.assertEqual(rc, 2, (out, err))
        self.assertIn("--metainfo", err)
        self.assertIn(bad, err)
        self.assertEqual(a.jobs(), [])
        self.assertFalse(os.path.exists(dest))
        # A missing file too.
        rc, out, err = a.dopt("add", self.url("app.bin"), "-o", dest, "--metainfo",
                              self.sb.path("nope.torrent"))
        self.assertEqual(rc, 2, (out, err))
        self.assertIn("nope.torrent", err)
        self.assertEqual(a.jobs(), [])
        self.assertEqual(self.origin.log_entries(), [], "the origin was asked for something")

    def test_garbage_metainfo_url_is_an_integrity_error(self):
        """Metainfo the job itself gave is trusted to be right: garbage at its
        URL is a fatal error (context integrity), not a quiet HTTP fallback."""
        self.start_origin()
        self.serve("app.bin", MiB, torrent=False)
        with open(os.path.join(self.www, "garbage.torrent"), "wb") as f:
            f.write(os.urandom(700))
        a = self.lone_agent()
        dest = self.dest_of(a, "app.bin")
        err = self.assert_metainfo_url_refused(a, dest, "garbage.torrent", "garbage.torrent")
        self.assertIn("garbage.torrent", err)

    def test_missing_metainfo_url_is_a_remote_file_error(self):
        self.start_origin()
        self.serve("app.bin", MiB, torrent=False)
        a = self.lone_agent()
        dest = self.dest_of(a, "app.bin")
        rc, out, err = a.dopt("get", self.url("app.bin"), "-o", dest,
                              "--metainfo", self.url("nope.torrent"))
        self.assertEqual(rc, 1, (out, err))
        st = a.status(a.job_for(dest)["id"])
        self.assertEqual(st["state"], "error", st)
        self.assertEqual(st["error"]["context"], "remote_file", st)
        self.assertEqual(st["error"]["code"], 404, st)
        self.assertFalse(os.path.exists(dest))
        self.assertEqual(self.origin.body_bytes_sent("/app.bin"), 0)


class WrongMetainfoBeside(PeeringTest):
    """Metainfo of another file published under URL + ".torrent": the
    download must still be right, over HTTP only."""

    def _wrong(self, name, size, other_size):
        """/<name> of `size` bytes; /<name>.torrent describes another file of
        `other_size` bytes (made elsewhere). Returns the content's sha256."""
        self.start_origin()
        sha = self.serve(name, size, torrent=False)
        other = self.sb.path("other", name)
        harness.make_file(other, other_size)
        self.hashes[name] = publish(other, self.url(name), os.path.join(self.www, name + ".torrent"))
        return sha

    def _check_http_only(self, name, size, sha):
        a = self.lone_agent()
        dest = self.dest_of(a, name)
        rc, out, err = a.dopt("get", self.url(name), "-o", dest, timeout=90)
        job = a.job_for(dest)
        self.assertEqual(rc, 0, "dopt get failed: %s\n%s" % (err, json.dumps(job, indent=1)))
        self.assertFileSha(dest, sha)
        st = a.status(job["id"])
        self.assertEqual(st["state"], "acknowledged", st)
        self.assertEqual(st["mode"], "http_only", st)
        self.assertEqual(st["files"][0]["metainfo"], "none", st)
        self.assertEqual(st["bytes_from_peers"], 0, st)
        why = re.findall(r"over HTTP only: (.*)", a.log_text())
        say("%s: bytes_from_origin %d, origin sent %d for %d bytes; why HTTP only: %s"
            % (name, st["bytes_from_origin"], self.origin.body_bytes_sent("/" + name), size, why))
        self.assertTrue(why, "the agent logged no reason for HTTP only")
        entries = self.cache(a)
        self.assertEqual([e for e in entries if e["complete"]], [], entries)
        say("%s: cache list %s; cache_dir holds %s"
            % (name, [(e["info_hash"], e["complete"]) for e in entries], os.listdir(a.cache_dir)))
        return a, st

    def test_metainfo_of_a_smaller_file_falls_back_to_http(self):
        sha = self._wrong("big.bin", 3 * MiB, 2 * MiB)
        self._check_http_only("big.bin", 3 * MiB, sha)

    def test_metainfo_of_a_larger_file_falls_back_to_http(self):
        self.start_origin()
        sha = self.serve("short.bin", 1 * MiB, torrent=False)
        other = self.sb.path("other", "short.bin")
        os.makedirs(os.path.dirname(other))
        with open(other, "wb") as f:
            f.truncate(256 * MiB)  # sparse: 256 pieces, hashed quickly
        publish(other, self.url("short.bin"), os.path.join(self.www, "short.bin.torrent"))
        self._check_http_only("short.bin", 1 * MiB, sha)

    def test_metainfo_of_a_slightly_larger_file_does_not_give_a_wrong_file(self):
        """3 MiB metainfo beside 2 MiB of content: whichever piece the agent
        asks first (see the test above), a wrong file is never delivered."""
        sha = self._wrong("short.bin", 2 * MiB, 3 * MiB)
        a = self.lone_agent()
        dest = self.dest_of(a, "short.bin")
        rc, _, err = a.dopt("get", self.url("short.bin"), "-o", dest, timeout=90)
        st = a.status(a.job_for(dest)["id"])
        say("short.bin: exit %d, state %s, error %s" % (rc, st["state"], st["error"]))
        if rc == 0:
            self.assertFileSha(dest, sha)
            self.assertEqual(st["mode"], "http_only", st)
        else:
            self.assertEqual(st["state"], "error", st)
            self.assertFalse(os.path.exists(dest))

    def test_metainfo_of_another_file_of_the_same_size_falls_back_to_http(self):
        """Same size, other bytes: the origin's pieces fail their hashes."""
        sha = self._wrong("same.bin", 2 * MiB, 2 * MiB)
        self._check_http_only("same.bin", 2 * MiB, sha)


def metainfo_with_pieces(path, web_seed, piece_length):
    """v1 metainfo (bencoded) for the file at `path` in pieces of
    `piece_length` bytes, made here: `dopt publish` makes none over 16 MiB."""
    hashes = []
    with open(path, "rb") as f:
        for piece in iter(lambda: f.read(piece_length), b""):
            hashes.append(hashlib.sha1(piece).digest())
    return bencode.encode({"info": {"name": os.path.basename(path), "length": os.path.getsize(path),
                                    "piece length": piece_length, "pieces": b"".join(hashes)},
                           "url-list": web_seed})


class PiecesOver16MiB(PeeringTest):
    """Metainfo whose pieces are larger than 16 MiB (libtorrent takes up to
    1 GiB; the agent holds whole pieces in memory) is refused wherever it
    comes from."""
    SIZE = 3 * MiB
    TOO_LARGE = 32 * MiB

    def _serve_with_pieces(self, name, piece_length):
        """/<name> and /<name>.torrent in pieces of `piece_length`; returns
        the content's sha256 and the metainfo's path."""
        sha = self.serve(name, self.SIZE, torrent=False)
        meta = os.path.join(self.www, name + ".torrent")
        with open(meta, "wb") as f:
            f.write(metainfo_with_pieces(os.path.join(self.www, name), self.url(name), piece_length))
        return sha, meta

    def test_beside_the_content_it_means_http_only_with_a_log_line(self):
        self.start_origin()
        sha, _ = self._serve_with_pieces("big-pieces.bin", self.TOO_LARGE)
        ok_sha, _ = self._serve_with_pieces("ok-pieces.bin", 16 * MiB)
        a = self.lone_agent()
        dest, job = self.get(a, self.url("big-pieces.bin"), "big-pieces.bin")
        self.assertFileSha(dest, sha)
        self.assertEqual(job["mode"], "http_only", job)
        self.assertEqual(job["files"][0]["metainfo"], "none", job)
        self.assertIn("/big-pieces.bin.torrent", [e[4] for e in self.origin.log_entries()])
        why = re.findall(r"big-pieces\.bin over HTTP only: (.*)", a.log_text())
        self.assertTrue(any("piece length is 33554432 bytes" in w for w in why), why)
        self.assertEqual(self.cache(a), [])
        # The control: 16 MiB pieces (the most `dopt publish` makes) are used.
        dest, job = self.get(a, self.url("ok-pieces.bin"), "ok-pieces.bin")
        self.assertFileSha(dest, ok_sha)
        self.assertEqual(job["mode"], "peer_assisted", job)
        self.assertEqual(job["files"][0]["metainfo"], "origin", job)

    def test_given_with_the_job_it_is_refused(self):
        """A file: exit 2 and no job. A URL: the job fails (context
        integrity), the content is never fetched."""
        self.start_origin()
        _, meta = self._serve_with_pieces("app.bin", self.TOO_LARGE)
        local = self.sb.path("app.torrent")
        shutil.copy(meta, local)
        os.rename(meta, os.path.join(self.www, "big.torrent"))  # no longer beside the content
        a = self.lone_agent()
        dest = self.dest_of(a, "app.bin")
        rc, out, err = a.dopt("get", self.url("app.bin"), "-o", dest, "--metainfo", local)
        self.assertEqual(rc, 2, (out, err))
        self.assertIn("piece length is 33554432 bytes", err)
        self.assertEqual(a.jobs(), [])
        self.assertEqual(self.origin.log_entries(), [], "the origin was asked for something")

        self.assert_metainfo_url_refused(a, dest, "big.torrent", "piece length is 33554432 bytes")


class CustomHeaders(PeeringTest):
    SIZE = 2 * MiB

    def test_a_job_with_headers_goes_http_only_despite_metainfo_beside(self):
        """Content fetched with the job's own headers (credentials) is not
        shared: no probe for the .torrent, HTTP only, nothing cached."""
        self.start_origin()
        sha = self.serve("private.bin", self.SIZE)
        a = self.lone_agent()
        dest, job = self.get(a, self.url("private.bin"), "private.bin", "--header", "X-Token: 1")
        self.assertFileSha(dest, sha)
        self.assertEqual(job["mode"], "http_only", job)
        self.assertEqual(job["files"][0]["metainfo"], "none", job)
        self.assertEqual(job["bytes_from_origin"], self.SIZE, job)
        self.assertEqual([e[4] for e in self.origin.log_entries()], ["/private.bin"])
        self.assertEqual(self.cache(a), [])

    def test_credentials_in_the_url_go_http_only_despite_metainfo_beside(self):
        """The same for credentials in the URL: a user name and password,
        or a query string (?token=...). Before: no custom headers, so the
        agent probed for the .torrent with the credentials, cached the
        content and seeded it to the LAN."""
        self.start_origin()
        sha = self.serve("private.bin", self.SIZE)
        a = self.lone_agent()
        host = self.url("private.bin").split("//", 1)[1]
        for i, url in enumerate(("http://user:s3cret@" + host, self.url("private.bin?token=s3cret"))):
            mark = self.mark()
            dest, job = self.get(a, url, "private-%d.bin" % i)
            self.assertFileSha(dest, sha)
            self.assertEqual(job["mode"], "http_only", job)
            self.assertEqual(job["files"][0]["metainfo"], "none", job)
            self.assertEqual(job["bytes_from_origin"], self.SIZE, job)
            # No probe for /private.bin.torrent (the log drops the query).
            self.assertEqual([e[4] for e in self.requests_since(mark)], ["/private.bin"])
        self.assertEqual(self.cache(a), [])
        # Metainfo given with the job: shared, as with headers.
        dest, job = self.get(a, self.url("private.bin?token=s3cret"), "private-m.bin",
                             "--metainfo", os.path.join(self.www, "private.bin.torrent"))
        self.assertFileSha(dest, sha)
        self.assertEqual(job["mode"], "peer_assisted", job)

    def test_status_json_says_why_a_job_goes_http_only(self):
        """`dopt status --json` gives the agent's http_only_reason (before:
        libdopt had no accessor and the CLI dropped it)."""
        self.start_origin()
        sha = self.serve("private.bin", self.SIZE)
        a = self.lone_agent()
        dest, job = self.get(a, self.url("private.bin?token=s3cret"), "private.bin")
        self.assertFileSha(dest, sha)
        st = a.status(job["id"])
        self.assertEqual(st["mode"], "http_only", st)
        self.assertEqual(st.get("http_only_reason"),
                         "the URL has a user name, password or query string", st)

    def test_headers_with_job_metainfo_go_through_the_swarm(self):
        """...unless the job gives metainfo itself."""
        self.start_origin()
        sha = self.serve("private.bin", self.SIZE)
        a = self.lone_agent()
        meta = os.path.join(self.www, "private.bin.torrent")
        dest, job = self.get(a, self.url("private.bin"), "private.bin", "--header", "X-Token: 1",
                             "--metainfo", meta)
        self.assertFileSha(dest, sha)
        self.assertEqual(job["mode"], "peer_assisted", job)
        self.assertEqual(job["files"][0]["metainfo"], "job", job)
        self.assertNotIn("/private.bin.torrent", [e[4] for e in self.origin.log_entries()])
        self.assertTrue(self.cache_entry(a, self.hashes["private.bin"])["complete"])


class OriginPerJob(PeeringTest):
    SIZE = 4 * MiB

    def test_a_job_fetches_origin_pieces_from_its_own_url_only(self):
        """One job gives the public metainfo of /pkg.bin with another URL
        (/other/pkg.bin, which is not there: 404, that job's error). A
        second job for /pkg.bin finds the same info-hash beside its URL
        and joins the same torrent: its origin pieces come from /pkg.bin,
        and the first job's URL hears nothing of it. Before: the swarm kept
        the URL the content was first registered with, so the second job
        fetched from the first one's server and went to ERROR on its 404."""
        self.start_origin()
        sha = self.serve("pkg.bin", self.SIZE)
        a = self.lone_agent()
        meta = os.path.join(self.www, "pkg.bin.torrent")
        other = self.dest_of(a, "other.bin")
        first = a.add(self.url("other/pkg.bin"), "-o", other, "--metainfo", meta)
        wait_for(lambda: a.status(first)["state"] == "error", 20, what="the first job's 404")
        self.assertIsNotNone(self.cache_entry(a, self.hashes["pkg.bin"]), "no shared torrent: no test")
        mark = self.mark()
        dest, job = self.get(a, self.url("pkg.bin"), "pkg.bin")
        self.assertFileSha(dest, sha)
        self.assertEqual(job["mode"], "peer_assisted", job)
        self.assertEqual(job["files"][0]["metainfo"], "origin", job)
        paths = [e[4] for e in self.requests_since(mark)]
        self.assertNotIn("/other/pkg.bin", paths)
        self.assertEqual(self.sent_since(mark, "/pkg.bin"), self.SIZE, paths)

    def test_two_live_jobs_each_fetch_from_their_own_url(self):
        """Two jobs for the same content (same metainfo, given with each)
        from two URLs, /slow/pkg.bin and /slow/copy.bin (384 KB/s a
        connection, so both are live together), share one torrent: origin
        pieces are fetched for each in turn, from its own URL, and the
        content comes once in all. The rate leaves the second job seconds
        to attach on a loaded machine before every piece is asked for."""
        size = 16 * MiB
        self.origin = self.sb.nginx(self.www, slow_rate="384k")
        sha = self.serve("pkg.bin", size)
        shutil.copyfile(os.path.join(self.www, "pkg.bin"), os.path.join(self.www, "copy.bin"))
        meta = os.path.join(self.www, "pkg.bin.torrent")
        a = self.lone_agent()
        mark = self.mark()
        jobs = [a.add(self.url("slow/%s" % name), "-o", self.dest_of(a, name), "--metainfo", meta)
                for name in ("pkg.bin", "copy.bin")]
        for j in jobs:
            a.wait_state(j, "transferred", timeout=60)
            a.dopt("complete", j, check=True)
        for name in ("pkg.bin", "copy.bin"):
            self.assertFileSha(self.dest_of(a, name), sha)
        sent = {path: self.sent_since(mark, path) for path in ("/slow/pkg.bin", "/slow/copy.bin")}
        say("origin bytes by URL: %s" % sent)
        self.assertGreater(sent["/slow/pkg.bin"], 0, sent)
        self.assertGreater(sent["/slow/copy.bin"], 0, sent)
        self.assertLessEqual(sum(sent.values()), size + size // 8, sent)


class SameLoopbackAddress(PeeringTest):
    def test_two_agents_on_one_address_share_the_content(self):
        size = 8 * MiB
        self.start_origin()
        sha = self.serve("pkg.bin", size)
        pa, pb = free_port(), free_port()
        # Only B names A: two agents naming each other connect both ways
        # at once, and libtorrent may then drop both connections as a
        # duplicate peer id (seen once under ASan at load: B took the file
        # from the origin; the agent counting that as a hang-up is noted as
        # open work in docs/design.md). This test is about one address.
        a = self.sb.agent(p2p_toml("127.0.0.1:%d" % pa, []), name="A")
        b = self.sb.agent(p2p_toml("127.0.0.1:%d" % pb, ["127.0.0.1:%d" % pa]), name="B")
        url = self.url("pkg.bin")
        self.get(a, url, "pkg.bin")
        self.wait_seeding(a, self.hashes["pkg.bin"])
        mark = self.mark()
        db, jb = self.get(b, url, "pkg.bin")
        self.assertFileSha(db, sha)
        self.assertFromPeers(jb, size, mark, "/pkg.bin", "same address", b)


if __name__ == "__main__":
    unittest.main()
