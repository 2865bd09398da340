"""A full disk (issue 5 part 4, docs/reliability.md): real tmpfs mounts of a
fixed size as the destination folder, the agent's state_dir or its
cache_dir, real nginx, real doptd / dopt on 127.0.0.1. Root only (mount).

Documented end state (docs/api.md "Error contexts"): a write that fails for
lack of space puts the job in ERROR with context `local_file`, code ENOSPC
(28), the file in progress named in the error, a description saying the disk
is full; other jobs go on; once space is freed, `dopt resume` finishes the
job and the file is byte-identical. A destination is never corrupt: absent or
byte-identical.

Every tmpfs is unmounted in a cleanup that runs after the agents stopped,
pass or fail.
"""

import errno
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))

import harness  # noqa: E402
from harness import MiB, IntegrationTest, free_port, make_file, sha256_file  # noqa: E402

ENOSPC = errno.ENOSPC  # 28
FINAL = ("transferred", "acknowledged", "error", "cancelled")
IS_ROOT = os.geteuid() == 0


def mount_tmpfs(test, size):
    """Mounts a tmpfs of `size` (e.g. "8m") on a new directory; returns it.
    Unmounted (lazily if busy) and removed by a cleanup of `test`."""
    d = tempfile.mkdtemp(prefix="dopt-full-")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0755" % size, "tmpfs", d],
                   check=True, capture_output=True)

    def unmount():
        r = subprocess.run(["umount", d], capture_output=True)
        if r.returncode != 0:
            subprocess.run(["umount", "-l", d], capture_output=True)
        shutil.rmtree(d, ignore_errors=True)
    # Cleanups run after tearDown, which stopped the agents.
    test.addCleanup(unmount)
    return d


def remount(d, size):
    subprocess.run(["mount", "-o", "remount,size=%s" % size, d], check=True,
                   capture_output=True)


def fill(d, name="filler"):
    """Writes zeros into d/name until the file system is full; returns the path."""
    path = os.path.join(d, name)
    buf = b"\0" * (64 * 1024)
    with open(path, "wb", buffering=0) as f:
        try:
            while True:
                f.write(buf)
        except OSError as e:
            if e.errno != ENOSPC:
                raise
    with open(path, "ab", buffering=0) as f:  # the last partial page
        try:
            while True:
                f.write(b"\0")
        except OSError as e:
            if e.errno != ENOSPC:
                raise
    return path


@unittest.skipUnless(IS_ROOT, "mounting a tmpfs of fixed size needs root")
class FullDisk(IntegrationTest):

    def setUp(self):
        super().setUp()
        self.nginx = self.sb.nginx(self.www)

    def finish(self, agent, job_id, timeout=60, seen=None):
        st = agent.wait_state(job_id, FINAL, timeout=timeout, seen=seen)
        if st["state"] == "transferred":
            agent.dopt("complete", job_id, check=0)
            st = agent.status(job_id)
        return st

    def assertFullDiskError(self, st, path):
        self.assertEqual(st["state"], "error", st)
        e = st["error"]
        self.assertEqual(e["context"], "local_file", e)
        self.assertEqual(e["code"], ENOSPC, e)
        self.assertIsNotNone(e["file"], e)
        self.assertEqual(e["file"]["local_name"], path, e)
        self.assertIn(os.strerror(ENOSPC).lower(), e["description"].lower(), e)

    def test_full_destination_fails_local_file_other_job_completes_resume_finishes(self):
        big = 24 * MiB
        sha_big = make_file(os.path.join(self.www, "big.bin"), big)
        sha_other = make_file(os.path.join(self.www, "other.bin"), 12 * MiB)
        small = mount_tmpfs(self, "8m")
        agent = self.start_agent()
        full_path = os.path.join(small, "big.bin")
        other_path = os.path.join(self.dest(), "other.bin")
        # The job going to the normal folder is slowed (nginx limit_rate) so
        # that both are in flight when the tmpfs fills up.
        j_full = agent.add(self.nginx.url("/big.bin"), "-o", full_path)
        j_other = agent.add(self.nginx.url("/slow/other.bin"), "-o", other_path)
        st = self.finish(agent, j_full)
        print("\n  full tmpfs: %s" % st["error"])
        self.assertFullDiskError(st, full_path)
        # The description names the partial file beside it and says why.
        self.assertIn(os.path.dirname(full_path), st["error"]["description"], st["error"])
        self.assertIn("the disk is full", st["error"]["description"], st["error"])
        self.assertFalse(os.path.exists(full_path), "a partial file at the final path")
        partial, = [n for n in os.listdir(small) if n.endswith(".dopt-partial")]
        on_disk = os.path.getsize(os.path.join(small, partial))
        self.assertLessEqual(st["files"][0]["bytes_transferred"], on_disk, st)
        self.assertLessEqual(st["error"]["file"]["bytes_transferred"], on_disk, st["error"])
        self.assertIn(agent.status(j_other)["state"],
                      ("queued", "connecting", "transferring", "transferred"),
                      "the other job was not running when the disk filled")
        st = self.finish(agent, j_other)
        self.assertEqual(st["state"], "acknowledged", st)
        self.assertFileSha(other_path, sha_other)
        sent_before = self.nginx.body_bytes_sent("/big.bin")
        # Free the space; resume keeps what the partial file holds.
        remount(small, "64m")
        agent.dopt("resume", j_full, check=0)
        st = self.finish(agent, j_full)
        self.assertEqual(st["state"], "acknowledged", st)
        self.assertIsNone(st["error"])
        self.assertFileSha(full_path, sha_big)
        refetched = self.nginx.body_bytes_sent("/big.bin") - sent_before
        print("  after remount: resume fetched %d of %d bytes" % (refetched, big))
        self.assertLess(refetched, big, "the resume started over")
        self.assertEqual([n for n in os.listdir(small) if n.endswith(".dopt-partial")], [])

    def assertSqliteSound(self, state_dir):
        db = os.path.join(state_dir, "jobs.db")
        with sqlite3.connect("file:%s?mode=ro" % db, uri=True) as c:
            self.assertEqual(c.execute("PRAGMA integrity_check").fetchone()[0], "ok")

    def test_full_state_dir_refuses_new_jobs_and_the_agent_keeps_serving(self):
        sha = make_file(os.path.join(self.www, "f.bin"), 2 * MiB)
        state = mount_tmpfs(self, "4m")
        agent = self.sb.agent(state_dir=state)
        self.agent = agent
        done = os.path.join(self.dest(), "done.bin")
        agent.dopt("get", self.nginx.url("/f.bin"), "-o", done, check=0)
        # The job table is a fresh WAL-mode SQLite file far from its first
        # checkpoint (1000 pages): every commit appends to the WAL, so with
        # the tmpfs full to its last byte the next commit cannot be written.
        filler = fill(state)
        rc, out, err = agent.dopt("add", self.nginx.url("/f.bin"), "-o",
                                  os.path.join(self.dest(), "refused.bin"), timeout=30)
        print("\n  add with a full state_dir: exit %d, %s" % (rc, (out + err).strip()))
        self.assertNotEqual(rc, 0, "a job the agent could not store was accepted")
        self.assertIn("full", (out + err).lower())
        self.assertTrue(agent.running(), "doptd died:\n" + harness.tail(agent.log, 30))
        self.assertEqual(agent.status(agent.job_for(done)["id"])["state"], "acknowledged")
        self.assertSqliteSound(state)
        os.unlink(filler)
        later = os.path.join(self.dest(), "later.bin")
        rc, _, err = agent.dopt("get", self.nginx.url("/f.bin"), "-o", later, timeout=60)
        self.assertEqual(rc, 0, err)
        self.assertFileSha(later, sha)
        self.assertEqual(agent.terminate(), 0)
        self.assertSqliteSound(state)
        agent.start()  # it opens its job table again, with both jobs
        names = [f["local_name"] for j in agent.jobs() for f in j["files"]]
        self.assertIn(done, names)
        self.assertIn(later, names)

    def fill_state_dir_under_a_running_job(self):
        """A job in flight (nginx /slow/, 2 MiB/s) when the agent's state_dir
        (a 4 MiB tmpfs) fills up: its checkpoints cannot be written. Returns
        (agent, job id, destination, sha, state_dir, filler path)."""
        sha = make_file(os.path.join(self.www, "f.bin"), 8 * MiB)
        state = mount_tmpfs(self, "4m")
        agent = self.sb.agent(state_dir=state)
        self.agent = agent
        path = os.path.join(self.dest(), "running.bin")
        job = agent.add(self.nginx.url("/slow/f.bin"), "-o", path)
        agent.wait_bytes(job, 1 * MiB, timeout=30)
        filler = fill(state)
        time.sleep(3)  # several checkpoints (one a second) meet the full disk
        return agent, job, path, sha, state, filler

    def test_full_state_dir_under_a_running_job_the_agent_keeps_running(self):
        # Found here: Agent::checkpoint, called from Job::on_body inside
        # libcurl's write callback, let StorageError ("database or disk is
        # full") escape to main(): doptd exited. Checkpoints now log and go
        # on; a job table write that fails inside a transfer's callbacks ends
        # that transfer as a local error.
        agent, job, path, sha, state, filler = self.fill_state_dir_under_a_running_job()
        try:
            self.assertTrue(agent.running(), "doptd exited (status %s) with a full state_dir:\n%s"
                            % (agent.proc.returncode, harness.tail(agent.log, 5)))
            self.assertEqual(agent.dopt("list", timeout=20)[0], 0)
        finally:
            os.unlink(filler)
        st = self.finish(agent, job)
        self.assertEqual(st["state"], "acknowledged", st)
        self.assertFileSha(path, sha)

    def test_after_a_full_state_dir_the_sqlite_file_is_sound_and_the_job_finishes(self):
        # Whatever the agent did while its state_dir was full (see the
        # expected failure above), its job table is not corrupt and, with
        # space again and a restart if it had stopped, the job finishes.
        agent, job, path, sha, state, filler = self.fill_state_dir_under_a_running_job()
        alive = agent.running()
        os.unlink(filler)
        self.assertSqliteSound(state)
        if alive:
            self.assertEqual(agent.terminate(), 0)
        print("\n  full state_dir under a running job: doptd %s"
              % ("kept running" if alive else "exited with %s" % agent.proc.returncode))
        self.assertSqliteSound(state)
        agent.start()
        st = self.finish(agent, job)
        self.assertEqual(st["state"], "acknowledged", st)
        self.assertFileSha(path, sha)

    def test_full_peer_cache_fails_local_file_without_a_crash(self):
        size = 24 * MiB
        content = os.path.join(self.www, "app.bin")
        sha = make_file(content, size)
        url = self.nginx.url("/app.bin")
        p = subprocess.run([harness.dopt_path(), "publish", content, "--web-seed", url,
                            "-o", content + ".torrent"],
                           capture_output=True, text=True, env=harness.clean_env(), timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        cache = mount_tmpfs(self, "8m")
        agent = self.sb.agent(
            'cache_dir = "%s"\n[p2p]\nenabled = true\nlisten = "127.0.0.1:%d"\n'
            'lan_discovery = false\npeers = []\n' % (cache, free_port()))
        self.agent = agent
        path = os.path.join(self.dest(), "app.bin")
        job = agent.add(url, "-o", path)
        st = self.finish(agent, job)
        print("\n  full peer cache: mode %s, %s" % (st.get("mode"), st["error"]))
        self.assertTrue(agent.running(), "doptd died:\n" + harness.tail(agent.log, 30))
        # The swarm's error; its unfinished content, parked by the error
        # and over the cache's limits, is then dropped, and the file will
        # look for metainfo again when it runs ("pending").
        self.assertIn(st.get("mode"), ("peer_assisted", "pending"), st)
        self.assertEqual(st["state"], "error", st)
        self.assertEqual(st["error"]["context"], "local_file", st["error"])
        self.assertIn("peer cache: ", st["error"]["description"], st["error"])
        self.assertEqual(st["error"]["file"]["local_name"], path, st["error"])
        self.assertAbsentOrIdentical(path, sha)
        agent.dopt("list", check=0)

    def assertAbsentOrIdentical(self, path, sha):
        if os.path.exists(path):
            self.assertEqual(sha256_file(path), sha, "%s exists and is corrupt" % path)


if __name__ == "__main__":
    unittest.main()
