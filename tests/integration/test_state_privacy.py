"""The agent's state is its own (docs/config.md, "state_dir"): jobs.db holds
every job's URLs and header values (tokens, API keys), so state_dir and
cache_dir are 0700 and jobs.db, -wal and -shm 0600 in every mode, whatever
an older agent or an administrator left there (0755 folders, 0644 files).

Each test starts an agent on state made as a careless older agent left it:
the folder 0755, jobs.db and its WAL files 0644 (the agent was killed, so
the WAL is still there). Then a job is created with a secret header, and
another local user tries to read the files.

    root agent, user = ""       files root's      `nobody` tries to read
    root agent, user = "nobody" files nobody's    `daemon` tries to read
    per-user agent (daemon)     files daemon's    `nobody` tries to read

Needs root (other users); skipped otherwise.
"""

import glob
import os
import pwd
import subprocess

from harness import Agent, OtherUsersTest, clean_env, doptd_path, dopt_path, free_port

SECRET = "X-Api-Key: s3cret-token-4f9a1c"


class AgentAs(Agent):
    """A per-user doptd run as `account` (a passwd entry), its CLI too."""

    def __init__(self, workdir, account):
        self.account = account
        super().__init__(workdir)
        for d in (self.dir, self.state_dir, self.cache_dir):
            os.chown(d, account.pw_uid, account.pw_gid)

    def _as(self):
        return dict(user=self.account.pw_uid, group=self.account.pw_gid, extra_groups=[],
                    env=clean_env(), stdin=subprocess.DEVNULL, cwd="/")

    def spawn(self):
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([doptd_path(), "--config", self.config], stdout=log,
                                         stderr=log, start_new_session=True, **self._as())
        return self.proc

    def dopt(self, *args, check=None, timeout=60, **_):
        p = subprocess.run([dopt_path(), "--socket", self.socket] + [str(a) for a in args],
                           capture_output=True, timeout=timeout, **self._as())
        out, err = p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
        if check is not None and p.returncode != 0:
            raise AssertionError("dopt %s: exit %d: %s" % (args, p.returncode, err))
        return p.returncode, out, err


class StatePrivacy(OtherUsersTest):
    root_reason = "another user must try to read the agent's files: run as root"

    def setUp(self):
        super().setUp()
        # Nothing listens there: the job retries, its secret stays in the table.
        self.url = "http://127.0.0.1:%d/file.bin" % free_port()

    def dest(self, owner):
        d = self.sb.path("dest-%d" % owner.pw_uid)
        os.makedirs(d, exist_ok=True)
        os.chown(d, owner.pw_uid, owner.pw_gid)
        return d

    def leave_state_open(self, agent, owner):
        """Runs the agent once, kills it (the WAL stays), then opens state_dir
        and every jobs.db* file to everyone, as an older agent left them."""
        agent.start()
        agent.add(self.url, "-o", os.path.join(self.dest(owner), "old.bin"))
        agent.kill9()
        os.chmod(agent.state_dir, 0o755)
        os.chmod(agent.cache_dir, 0o755)
        files = glob.glob(os.path.join(agent.state_dir, "jobs.db*"))
        self.assertIn(os.path.join(agent.state_dir, "jobs.db-wal"), files)
        for f in files:
            os.chmod(f, 0o644)

    def reads(self, account, *cmd):
        """Runs `cmd` as `account`; (exit code, stdout bytes)."""
        p = subprocess.run(list(cmd), capture_output=True, user=account.pw_uid,
                           group=account.pw_gid, extra_groups=[], env=clean_env(), cwd="/",
                           stdin=subprocess.DEVNULL, timeout=20)
        return p.returncode, p.stdout

    def check_private(self, agent, owner, other):
        """The secret is in the table, and `other` can neither list state_dir
        nor read any jobs.db* file; the modes are 0700 / 0600."""
        agent.add(self.url, "-o", os.path.join(self.dest(owner), "new.bin"), "-H", SECRET)
        state = agent.state_dir
        files = sorted(glob.glob(os.path.join(state, "jobs.db*")))
        self.assertEqual([os.path.basename(f) for f in files],
                         ["jobs.db", "jobs.db-shm", "jobs.db-wal"])
        stored = b""
        for f in files:
            with open(f, "rb") as fh:
                stored += fh.read()
        self.assertIn(SECRET.encode(), stored, "the test's secret should be in the table")
        for d in (state, agent.cache_dir):
            self.assertEqual(os.stat(d).st_mode & 0o7777, 0o700, d)
            self.assertEqual(os.stat(d).st_uid, owner.pw_uid, d)
        for f in files:
            self.assertEqual(os.stat(f).st_mode & 0o7777, 0o600, f)
            self.assertEqual(os.stat(f).st_uid, owner.pw_uid, f)
            rc, out = self.reads(other, "cat", f)
            self.assertNotEqual(rc, 0, "%s read %s" % (other.pw_name, f))
            self.assertNotIn(SECRET.encode(), out)
        rc, _ = self.reads(other, "ls", state)
        self.assertNotEqual(rc, 0, "%s listed %s" % (other.pw_name, state))

    def test_root_agent_without_user_makes_open_state_private(self):
        root = pwd.getpwuid(0)
        agent = self.sb.agent(start=False)
        self.leave_state_open(agent, root)
        agent.start()
        self.check_private(agent, root, self.nobody)

    def test_privilege_separated_agent_makes_open_state_private(self):
        root = pwd.getpwuid(0)
        # Root adds the jobs: their folders must be in system_job_dirs.
        agent = self.sb.agent('user = "nobody"\nsocket = "%s"\nsystem_job_dirs = ["%s", "%s"]\n'
                              % (self.sb.path("agent", "run", "doptd.sock"), self.dest(root),
                                 self.dest(self.nobody)), start=False)
        agent.socket = self.sb.path("agent", "run", "doptd.sock")
        self.leave_state_open(agent, root)
        agent.start()
        self.check_private(agent, self.nobody, self.daemon)

    def test_per_user_agent_makes_open_state_private(self):
        agent = AgentAs(self.sb.path("daemon-agent"), self.daemon)
        self.sb.children.append(agent)
        self.sb.agents.append(agent)
        self.leave_state_open(agent, self.daemon)
        agent.start()
        self.check_private(agent, self.daemon, self.nobody)


if __name__ == "__main__":
    import unittest
    unittest.main()
