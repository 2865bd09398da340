"""The privilege-separated system agent (docs/config.md, "System-wide agent
and privilege separation"): doptd started as root with `user = "nobody"`.

Needs root (skipped otherwise) and the Debian accounts `nobody` (the agent's
account) and `daemon` (uid 1, a second local user running the `dopt` CLI).

    doptd (uid nobody) --socketpair-- doptd-owner (root) --fork--> child as owner
        ^ Unix socket 0666
    dopt (root)   dopt (daemon)

Everything lives under the test's temporary directory, made 0755 so that
nobody and daemon can reach the state, the socket and the destinations.
"""

import glob
import os
import pwd
import signal
import subprocess
import time
import unittest
from unittest import mock

from harness import (IS_ROOT, MiB, IntegrationTest, OtherUsersTest, clean_env, dopt_path,
                     doptd_path, free_port, make_file, sha256_file, wait_for)

DAEMON_UID = 1


def proc_status(pid):
    """/proc/PID/status as a dict of field -> text."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def ids(status, field):
    """The numbers of a Uid:/Gid: line: real, effective, saved, filesystem."""
    return [int(x) for x in status[field].split()]


def children_of(pid):
    """PIDs whose parent is `pid`."""
    kids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                stat = f.read()
        except OSError:
            continue
        # comm may hold spaces and parentheses: fields start after the last ')'.
        fields = stat[stat.rfind(")") + 2:].split()
        if int(fields[1]) == pid:
            kids.append(int(d))
    return kids


def stopped_children(pid):
    """The children of `pid` that are stopped (kill -STOP)."""
    kids = []
    for kid in children_of(pid):
        try:
            if proc_status(kid).get("State", "").startswith("T"):
                kids.append(kid)
        except OSError:
            pass
    return kids


def gone_or_zombie(pid):
    try:
        return proc_status(pid).get("State", "").startswith("Z")
    except OSError:
        return True


class SystemAgent(OtherUsersTest):
    """doptd as root with user = "nobody"; clients as root and as daemon."""
    root_reason = "the system agent starts as root: run these tests as root"

    def setUp(self):
        super().setUp()
        self.jobs_dir = self.sb.path("jobs")
        os.mkdir(self.jobs_dir, 0o755)
        self.sha = make_file(os.path.join(self.www, "file.bin"), 3 * MiB, seed=1)
        make_file(os.path.join(self.www, "big.bin"), 24 * MiB, seed=2)
        self.nginx = self.sb.nginx(self.www, slow_rate="1m")
        self.agent = self.start_system_agent()

    def agent_config(self, user, socket_path):
        """The TOML the system agent adds to the sandbox's config: root's and
        daemon's (a system account's) jobs may write under jobs/ only."""
        return ('user = "%s"\nsocket = "%s"\nsystem_job_dirs = ["%s"]\n'
                '[jobs]\nfile_op_timeout = %d\n'
                % (user, socket_path, self.jobs_dir, self.file_op_timeout))

    file_op_timeout = 10

    def start_system_agent(self, user="nobody", start=True):
        workdir = self.sb.path("agent")
        socket_path = os.path.join(workdir, "run", "doptd.sock")
        a = self.sb.agent(self.agent_config(user, socket_path), start=False)
        a.socket = socket_path
        return a.start() if start else a

    def folder(self, name, uid=0, mode=0o755, parent=None):
        d = os.path.join(parent or self.jobs_dir, name)
        os.makedirs(d)
        os.chown(d, uid, uid)
        os.chmod(d, mode)
        return d

    def dopt_as_daemon(self, *args, timeout=60, umask=0o022):
        """`dopt ARGS` run as daemon (uid 1, gid 1, no other groups)."""
        cmd = [dopt_path(), "--socket", self.agent.socket] + [str(a) for a in args]
        p = subprocess.run(cmd, capture_output=True, timeout=timeout, env=clean_env(),
                           stdin=subprocess.DEVNULL, cwd="/", user=DAEMON_UID,
                           group=self.daemon.pw_gid, extra_groups=[], umask=umask)
        return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")

    def get_as_daemon(self, folder="daemondir", umask=0o022):
        """daemon's `dopt get` (with `umask`) of the origin's /file.bin into
        `folder`, a new folder of daemon's: asserts the file is the origin's,
        owned by daemon (uid and group) and alone in its folder. Returns its
        path."""
        d = self.folder(folder, uid=DAEMON_UID, mode=0o755)
        path = os.path.join(d, "file.bin")
        rc, out, err = self.dopt_as_daemon("get", self.nginx.url("/file.bin"), "-o", path,
                                           umask=umask)
        self.assertEqual(rc, 0, "stdout: %s\nstderr: %s" % (out, err))
        self.assertEqual(sha256_file(path), self.sha)
        st = os.stat(path)
        self.assertEqual((st.st_uid, st.st_gid), (DAEMON_UID, self.daemon.pw_gid))
        self.assertEqual(os.listdir(d), ["file.bin"])
        return path

    def suspended_in(self, folder):
        """Root's job for the origin's /slow/big.bin into `folder`, suspended
        once a byte is in. Returns (job id, destination, its one partial
        file)."""
        path = os.path.join(folder, "big.bin")
        job_id = self.agent.add(self.nginx.url("/slow/big.bin"), "-o", path)
        self.agent.wait_bytes(job_id, 1)
        self.agent.dopt("suspend", job_id, check=True)
        partials = glob.glob(os.path.join(folder, ".big.bin.*.dopt-partial"))
        self.assertEqual(len(partials), 1, os.listdir(folder))
        return job_id, path, partials[0]

    def as_daemon(self, code):
        """Runs Python `code` as daemon (to plant files as that user would)."""
        subprocess.run(["python3", "-c", code], check=True, user=DAEMON_UID,
                       group=self.daemon.pw_gid, extra_groups=[], env=clean_env(), cwd="/")

    def helper_pid(self):
        kids = children_of(self.agent.proc.pid)
        self.assertEqual(len(kids), 1, "doptd should have exactly one child, the "
                                       "owner-rights process: %s" % kids)
        return kids[0]

    # -- who runs as whom --------------------------------------------------------

    def test_main_process_is_nobody_and_one_helper_child_is_root(self):
        st = proc_status(self.agent.proc.pid)
        self.assertEqual(ids(st, "Uid"), [self.nobody.pw_uid] * 4)
        self.assertEqual(ids(st, "Gid"), [self.nobody.pw_gid] * 4)
        self.assertEqual(int(st["CapEff"], 16), 0)
        self.assertEqual(int(st["CapPrm"], 16), 0)
        self.assertEqual(st["NoNewPrivs"], "1")
        groups = {int(g) for g in st["Groups"].split()}
        self.assertEqual(groups, set(os.getgrouplist("nobody", self.nobody.pw_gid)))

        helper = self.helper_pid()
        hst = proc_status(helper)
        self.assertEqual(ids(hst, "Uid"), [0, 0, 0, 0])
        self.assertEqual(hst["Name"], "doptd-owner")

        # What the agent made its own: state, the db files, the socket folder.
        state = self.agent.state_dir
        for p in (state, os.path.join(state, "jobs.db"), os.path.join(state, "doptd.lock"),
                  os.path.dirname(self.agent.socket)):
            self.assertEqual(os.stat(p).st_uid, self.nobody.pw_uid, p)
        run = os.stat(os.path.dirname(self.agent.socket))
        self.assertEqual(run.st_mode & 0o7777, 0o755)
        self.assertEqual(os.stat(self.agent.socket).st_mode & 0o777, 0o666)
        self.assertIn("privilege-separated", self.agent.log_text())

    def test_helper_has_only_its_socketpair_and_no_listening_socket(self):
        helper = self.helper_pid()
        fds = {int(fd): os.readlink("/proc/%d/fd/%s" % (helper, fd))
               for fd in os.listdir("/proc/%d/fd" % helper)}
        extra = {fd: t for fd, t in fds.items() if fd > 2}
        self.assertEqual(len(extra), 1, "the helper should hold one descriptor beyond "
                                        "stdin/stdout/stderr: %s" % fds)
        target = list(extra.values())[0]
        self.assertTrue(target.startswith("socket:["), target)
        inode = target[len("socket:["):-1]
        entries = {}
        with open("/proc/%d/net/unix" % helper) as f:
            next(f)
            for line in f:
                parts = line.split()
                entries[parts[6]] = parts
        self.assertIn(inode, entries, "the helper's socket is not a Unix socket")
        e = entries[inode]
        flags, sock_type, state = int(e[3], 16), int(e[4], 16), int(e[5], 16)
        self.assertEqual(flags & 0x10000, 0, "the helper's socket is listening: %s" % e)
        self.assertEqual(sock_type, 5, "expected SOCK_SEQPACKET: %s" % e)
        self.assertEqual(state, 3, "expected a connected socket: %s" % e)
        self.assertEqual(len(e), 7, "the helper's socket has a path: %s" % e)

    def test_helper_exits_within_a_second_when_the_agent_is_killed(self):
        helper = self.helper_pid()
        self.agent.kill9()
        wait_for(lambda: gone_or_zombie(helper), 1.0, interval=0.02,
                 what="the owner-rights process to exit after kill -9 of doptd")

    def test_sigterm_stops_both_and_sighup_reloads_after_the_drop(self):
        helper = self.helper_pid()
        self.agent.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "SIGHUP: reloaded" in self.agent.log_text(), 10,
                 what="the reload to be logged")
        path = os.path.join(self.folder("rootdir"), "file.bin")
        self.agent.dopt("get", self.nginx.url("/file.bin"), "-o", path, check=True)
        self.assertEqual(self.agent.terminate(), 0)
        wait_for(lambda: gone_or_zombie(helper), 1.0, interval=0.02,
                 what="the owner-rights process to exit with the agent")
        self.assertFalse(os.path.exists(self.agent.socket))

    def test_after_the_drop_a_reload_still_refuses_a_drop_in_root_alone_cannot_write(self):
        # The agent reloads as nobody; the drop-in belongs to nobody, so a
        # compromised agent (or user nobody) could have written it.
        folder = self.agent.config + ".d"
        os.makedirs(folder)
        dropin = os.path.join(folder, "50-planted.conf")
        with open(dropin, "w") as f:
            f.write('[http]\nproxy = "http://attacker.example:3128"\n')
        os.chown(dropin, self.nobody.pw_uid, self.nobody.pw_gid)
        self.agent.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "keeping the old configuration" in self.agent.log_text(), 10,
                 what="the reload refused")
        self.assertIn("%s: owned by uid %d, not root" % (dropin, self.nobody.pw_uid),
                      self.agent.log_text())
        os.chown(dropin, 0, 0)
        self.agent.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "SIGHUP: reloaded" in self.agent.log_text(), 10,
                 what="the reload of a root-owned drop-in")

    # -- whose rights write the files ---------------------------------------------

    def test_roots_job_lands_in_a_root_owned_folder(self):
        d = self.folder("rootdir", uid=0, mode=0o755)
        path = os.path.join(d, "file.bin")
        self.agent.dopt("get", self.nginx.url("/file.bin"), "-o", path, check=True)
        self.assertEqual(sha256_file(path), self.sha)
        self.assertEqual(os.stat(path).st_uid, 0)
        self.assertEqual(os.listdir(d), ["file.bin"])

    def test_another_users_job_lands_in_its_folder_owned_by_it(self):
        path = self.get_as_daemon()
        self.agent.job_for(path)  # root sees every user's jobs

    def test_another_user_cannot_write_into_etc_or_a_root_folder(self):
        name = "dopt-system-agent-test-%d" % os.getpid()
        etc_path = "/etc/" + name
        rc, out, err = self.dopt_as_daemon("get", self.nginx.url("/file.bin"), "-o", etc_path)
        self.assertEqual(rc, 2, "stdout: %s\nstderr: %s" % (out, err))
        self.assertEqual(glob.glob("/etc/*%s*" % name) + glob.glob("/etc/.*%s*" % name), [])

        d = self.folder("rootonly", uid=0, mode=0o755)
        path = os.path.join(d, "file.bin")
        rc, out, err = self.dopt_as_daemon("add", self.nginx.url("/file.bin"), "-o", path)
        self.assertEqual(rc, 2, "stdout: %s\nstderr: %s" % (out, err))
        self.assertEqual(os.listdir(d), [])
        self.assertTrue(self.agent.running())

    def test_adding_another_users_destination_never_names_that_users_job(self):
        """A destination root's live job holds: in a folder daemon cannot
        write, daemon hears only that; in a folder both may write, that
        another user's job has it, not which. Its own jobs are still named."""
        rootonly = self.folder("rootonly", uid=0, mode=0o755)
        shared = self.folder("shared", uid=0, mode=0o1777)
        root_jobs = []
        for d in (rootonly, shared):
            job_id = self.agent.add(self.nginx.url("/file.bin"), "-o", os.path.join(d, "x.bin"))
            self.agent.dopt("suspend", job_id)  # live either way: suspended or transferred
            root_jobs.append(job_id)

        rc, out, err = self.dopt_as_daemon("add", self.nginx.url("/file.bin"), "-o",
                                           os.path.join(rootonly, "x.bin"))
        self.assertEqual(rc, 2, "stdout: %s\nstderr: %s" % (out, err))
        self.assertIn("cannot write", err)
        self.assertNotIn("already the destination", err)
        rc, out, err = self.dopt_as_daemon("add", self.nginx.url("/file.bin"), "-o",
                                           os.path.join(shared, "x.bin"))
        self.assertEqual(rc, 2, "stdout: %s\nstderr: %s" % (out, err))
        self.assertIn("is already the destination of another user's job", err)
        for job_id in root_jobs:
            self.assertNotIn(job_id, out + err)
            self.assertNotIn(job_id[:8], out + err)
        self.assertEqual([n for n in os.listdir(shared)
                          if os.lstat(os.path.join(shared, n)).st_uid == DAEMON_UID], [],
                         "daemon's refused partial file was left behind")

        # The control: a destination of daemon's own job is named to daemon.
        rc, out, err = self.dopt_as_daemon("add", self.nginx.url("/file.bin"), "-o",
                                           os.path.join(shared, "y.bin"))
        self.assertEqual(rc, 0, "stdout: %s\nstderr: %s" % (out, err))
        own = out.strip().splitlines()[-1]
        rc, out, err = self.dopt_as_daemon("add", self.nginx.url("/file.bin"), "-o",
                                           os.path.join(shared, "y.bin"))
        self.assertEqual(rc, 2, "stdout: %s\nstderr: %s" % (out, err))
        self.assertIn("is already the destination of job " + own, err)
        self.assertTrue(self.agent.running())

    def precious(self):
        """A root-owned file in a root-owned folder, and its content."""
        d = self.folder("precious", uid=0, mode=0o755)
        path = os.path.join(d, "precious")
        with open(path, "wb") as f:
            f.write(b"root's own bytes\n")
        os.chmod(path, 0o644)
        return path, b"root's own bytes\n"

    def assert_untouched(self, path, content):
        with open(path, "rb") as f:
            self.assertEqual(f.read(), content)
        st = os.stat(path)
        self.assertEqual((st.st_uid, st.st_mode & 0o7777), (0, 0o644))

    def test_a_symlink_planted_as_the_final_file_is_replaced_not_written_through(self):
        target, content = self.precious()
        d = self.folder("daemondir", uid=DAEMON_UID, mode=0o755)
        path = os.path.join(d, "file.bin")
        self.as_daemon("import os; os.symlink(%r, %r)" % (target, path))
        rc, out, err = self.dopt_as_daemon("get", self.nginx.url("/file.bin"), "-o", path)
        self.assertEqual(rc, 0, "stdout: %s\nstderr: %s" % (out, err))
        self.assert_untouched(target, content)
        self.assertFalse(os.path.islink(path))
        self.assertEqual(sha256_file(path), self.sha)
        self.assertEqual(os.lstat(path).st_uid, DAEMON_UID)

    def test_a_symlink_planted_as_the_partial_file_is_not_followed(self):
        target, content = self.precious()
        d = self.folder("daemondir", uid=DAEMON_UID, mode=0o755)
        path = os.path.join(d, "big.bin")
        rc, out, err = self.dopt_as_daemon("add", self.nginx.url("/slow/big.bin"), "-o", path)
        self.assertEqual(rc, 0, "stdout: %s\nstderr: %s" % (out, err))
        job_id = out.strip().splitlines()[-1]
        self.agent.wait_bytes(job_id, 1)
        rc, out, err = self.dopt_as_daemon("suspend", job_id)
        self.assertEqual(rc, 0, "stdout: %s\nstderr: %s" % (out, err))
        partials = glob.glob(os.path.join(d, ".big.bin.*.dopt-partial"))
        self.assertEqual(len(partials), 1, os.listdir(d))
        # The user swaps its partial file for a link to root's file.
        self.as_daemon("import os; os.unlink(%r); os.symlink(%r, %r)"
                       % (partials[0], target, partials[0]))
        rc, out, err = self.dopt_as_daemon("resume", job_id)
        self.assertEqual(rc, 0, "stdout: %s\nstderr: %s" % (out, err))
        st = self.agent.wait_state(job_id, ("error",), timeout=30)
        self.assertEqual(st["error"]["context"], "local_file", st)
        self.assert_untouched(target, content)
        self.assertTrue(os.path.islink(partials[0]))
        self.assertFalse(os.path.exists(path))

    def test_roots_job_in_a_users_folder_does_not_follow_a_partial_swapped_for_a_link(self):
        # The classic attack on a root daemon: root writes into a folder a
        # user controls, and the user swaps a file there for a symlink.
        # Root's rights would let the write through; O_NOFOLLOW must not.
        target, content = self.precious()
        d = self.folder("daemondir", uid=DAEMON_UID, mode=0o755)
        job_id, path, partial = self.suspended_in(d)
        self.assertEqual(os.stat(partial).st_uid, 0)
        self.as_daemon("import os; os.unlink(%r); os.symlink(%r, %r)"
                       % (partial, target, partial))
        self.agent.dopt("resume", job_id, check=True)
        st = self.agent.wait_state(job_id, ("error",), timeout=30)
        self.assertEqual(st["error"]["context"], "local_file", st)
        self.assert_untouched(target, content)
        self.assertTrue(os.path.islink(partial))

    # -- what the owner-rights process refuses ------------------------------------

    def test_roots_and_system_accounts_jobs_outside_system_job_dirs_are_refused(self):
        # doptd-owner itself refuses: the unprivileged agent passes the request
        # on, so a compromised agent gets no further.
        for who, uid in (("root", 0), ("daemon", DAEMON_UID)):
            d = self.folder("elsewhere-" + who, uid=uid, parent=self.sb.dir)
            path = os.path.join(d, "file.bin")
            if uid == 0:
                rc, out, err = self.agent.dopt("add", self.nginx.url("/file.bin"), "-o", path)
            else:
                rc, out, err = self.dopt_as_daemon("add", self.nginx.url("/file.bin"), "-o", path)
            self.assertEqual(rc, 2, "%s: stdout: %s\nstderr: %s" % (who, out, err))
            self.assertIn("system_job_dirs", err, who)
            self.assertEqual(os.listdir(d), [], who)
        log = self.agent.log_text()
        self.assertIn("owner-rights: refused to open", log)
        self.assertIn("uid 0 and system accounts get files only under system_job_dirs", log)
        self.assertTrue(self.agent.running())

    # -- partial files: created once, reopened only when the owner's --------------

    def test_a_file_planted_where_a_partial_file_was_is_not_written(self):
        # A shared sticky folder: once root's partial file is gone, another user
        # may put a file of its own under that name. Root must not write it
        # (and deliver it, still that user's, as root's file).
        d = self.folder("shared", uid=0, mode=0o1777)
        job_id, path, partial = self.suspended_in(d)
        os.unlink(partial)  # cleaned away (tmpreaper, an administrator)
        self.as_daemon("open(%r, 'w').write('daemon was here\\n')" % partial)
        self.agent.dopt("resume", job_id, check=True)
        st = self.agent.wait_state(job_id, ("error",), timeout=30)
        self.assertEqual(st["error"]["context"], "local_file", st)
        with open(partial) as f:
            self.assertEqual(f.read(), "daemon was here\n")
        self.assertEqual(os.stat(partial).st_uid, DAEMON_UID)
        self.assertFalse(os.path.exists(path))

    def test_files_get_the_mode_the_clients_umask_gives(self):
        path = self.get_as_daemon(umask=0o027)
        self.assertEqual(os.stat(path).st_mode & 0o7777, 0o640)
        root_path = os.path.join(self.folder("rootdir"), "file.bin")
        old = os.umask(0o077)
        try:
            self.agent.dopt("get", self.nginx.url("/file.bin"), "-o", root_path, check=True)
        finally:
            os.umask(old)
        self.assertEqual(os.stat(root_path).st_mode & 0o7777, 0o600)

    def test_a_umask_that_takes_the_owners_write_right_still_gives_the_file(self):
        # The agent reopens the partial file as its owner to resume it: the
        # owner keeps read and write whatever the umask (0277 would give 0400).
        path = self.get_as_daemon("daemondir2", umask=0o277)
        self.assertEqual(os.stat(path).st_mode & 0o7777, 0o600)

    # -- a file operation that never ends ----------------------------------------

    def test_a_stopped_owner_child_fails_its_job_and_the_agent_keeps_serving(self):
        # The child that renames a finished file into place runs as the job's
        # owner, who may stop it (kill -STOP) or point it into a mount that
        # never answers. A test build's DOPT_STOP_OWNER_OP makes that child
        # stop itself. While it is stopped the agent serves every other
        # request and transfer at once; the deadline (file_op_timeout, long
        # here) then ends it and fails its job alone.
        timeout = 12
        self.restart_with_stopping_owner_ops(timeout)
        daemon_dir = self.folder("daemondir", uid=DAEMON_UID, mode=0o755)
        rc, out, err = self.dopt_as_daemon("add", self.nginx.url("/slow/big.bin"), "-o",
                                           os.path.join(daemon_dir, "big.bin"))
        self.assertEqual(rc, 0, "stdout: %s\nstderr: %s" % (out, err))
        other_id = out.strip().splitlines()[-1]
        self.agent.wait_bytes(other_id, 1)

        stuck_path = os.path.join(self.folder("stuck"), "file.bin")
        stuck_id = self.agent.add(self.nginx.url("/file.bin"), "-o", stuck_path,
                                  "--auto-complete")
        helper = self.helper_pid()
        stopped = wait_for(lambda: stopped_children(helper), 20,
                           what="the owner-rights process's child to stop")
        stuck_at = time.monotonic()
        self.assert_serving_while_stuck(stuck_id, other_id, stuck_at, timeout)

        st = self.agent.wait_state(stuck_id, ("error", "acknowledged"), timeout=timeout + 10)
        waited = time.monotonic() - stuck_at
        self.assertEqual(st["state"], "error", st)
        self.assertEqual(st["error"]["context"], "local_file", st)
        self.assertIn("timed out", st["error"]["description"], st)
        self.assertGreater(waited, timeout - 2, "failed before its deadline: %s" % st)
        self.assertLess(waited, timeout + 3, st)
        self.assertFalse(os.path.exists(stuck_path))
        self.assertIn("took more than %d ms; killed" % (timeout * 1000), self.agent.log_text())
        # No stopped child is left behind.
        wait_for(lambda: not children_of(helper), 5, what="the killed child to be reaped")
        self.assertNotIn(stopped[0], children_of(helper))

    def test_without_privilege_separation_a_stopped_owner_child_blocks_nothing(self):
        # Root without `user` forks the owner's child itself: the same holds.
        if isinstance(self, SystemAgentPeering):
            self.skipTest("the peering variant adds nothing here")
        timeout = 8  # the checks while it is stuck need timeout - 2 s on a loaded machine
        self.restart_with_stopping_owner_ops(timeout, user="")
        other_id = self.agent.add(self.nginx.url("/slow/big.bin"), "-o",
                                  os.path.join(self.folder("rootdir"), "big.bin"))
        self.agent.wait_bytes(other_id, 1)
        stuck_dir = self.folder("stuck", uid=DAEMON_UID, mode=0o755)
        rc, out, err = self.dopt_as_daemon("add", self.nginx.url("/file.bin"), "-o",
                                           os.path.join(stuck_dir, "file.bin"), "--auto-complete")
        self.assertEqual(rc, 0, "stdout: %s\nstderr: %s" % (out, err))
        stuck_id = out.strip().splitlines()[-1]
        wait_for(lambda: stopped_children(self.agent.proc.pid), 20,
                 what="the agent's child for daemon's rename to stop")
        self.assert_serving_while_stuck(stuck_id, other_id, time.monotonic(), timeout,
                                        other_user=self.agent.dopt)
        st = self.agent.wait_state(stuck_id, ("error", "acknowledged"), timeout=timeout + 10)
        self.assertEqual((st["state"], st["error"]["context"]), ("error", "local_file"), st)
        self.assertIn("timed out", st["error"]["description"], st)
        wait_for(lambda: not children_of(self.agent.proc.pid), 5,
                 what="the killed child to be reaped")

    def restart_with_stopping_owner_ops(self, timeout, user="nobody"):
        """Restarts the agent (as `user`) with file_op_timeout = `timeout`
        and the children of renames to a path holding "stuck" stopping
        themselves."""
        version = subprocess.run([doptd_path(), "--version"], capture_output=True,
                                 text=True, timeout=10).stdout
        if "crash points compiled in" not in version:
            self.skipTest("needs a test build (-DDOPT_CRASH_POINTS=ON) for DOPT_STOP_OWNER_OP")
        self.agent.terminate()
        with open(self.agent.config) as f:
            text = f.read().replace("file_op_timeout = %d" % self.file_op_timeout,
                                    "file_op_timeout = %d" % timeout)
            text = text.replace('user = "nobody"', 'user = "%s"' % user)
        with open(self.agent.config, "w") as f:
            f.write(text)
        with mock.patch.dict(os.environ, {"DOPT_STOP_OWNER_OP": "stuck"}):
            self.agent.start()

    def assert_serving_while_stuck(self, stuck_id, other_id, stuck_at, timeout, other_user=None):
        """While the owner operation of `stuck_id` is stopped: `dopt list` of
        `other_user` (a function running dopt as the other user: daemon by
        default) answers at once and `other_id` moves, again and again."""
        for _ in range(3):
            started = time.monotonic()
            rc, out, err = (other_user or self.dopt_as_daemon)("list")
            took = time.monotonic() - started
            self.assertEqual(rc, 0, err)
            self.assertIn(other_id, out)
            # Bounds far from the deadline (12 s) but loose enough for a
            # loaded CI machine.
            self.assertLess(took, 3.0, "dopt list took %.1f s" % took)
            before = self.agent.status(other_id)["bytes_transferred"]
            wait_for(lambda: self.agent.status(other_id)["bytes_transferred"] > before, 3,
                     what="the other job to go on")
        st = self.agent.status(stuck_id)
        self.assertEqual(st["state"], "transferred", "the owner operation ended early: %s" % st)
        self.assertLess(time.monotonic() - stuck_at, timeout - 2,
                        "the checks ran after the deadline")


class SystemAgentStart(IntegrationTest):
    """Start-up decisions about `user`."""

    def setUp(self):
        if not IS_ROOT:
            self.skipTest("the system agent starts as root: run these tests as root")
        super().setUp()
        os.chmod(self.sb.dir, 0o755)

    def refused_start(self, config, message):
        """Runs an agent with `config`, which must exit 1 within 10 s with
        `message` in its log; returns the agent."""
        a = self.sb.agent(config, start=False)
        proc = a.spawn()
        proc.wait(10)
        self.assertEqual(proc.returncode, 1, a.log_text())
        self.assertIn(message, a.log_text())
        return a

    def test_an_unknown_user_stops_the_agent_with_exit_1_naming_it(self):
        a = self.refused_start('user = "no-such-dopt-user"',
                               "user 'no-such-dopt-user' does not exist")
        self.assertFalse(os.path.exists(a.socket))

    def test_root_without_user_runs_as_root_and_warns_once(self):
        a = self.sb.agent('user = ""')
        self.assertEqual(ids(proc_status(a.proc.pid), "Uid"), [0, 0, 0, 0])
        self.assertEqual(a.log_text().count("without privilege separation"), 1, a.log_text())

    def test_a_root_agents_state_is_taken_over_when_user_is_set(self):
        # An install that ran as root before: its job table carries over.
        sha = make_file(os.path.join(self.www, "f.bin"), MiB, seed=3)
        nginx = self.sb.nginx(self.www)
        sock = self.sb.path("agent", "run", "doptd.sock")
        a = self.sb.agent('user = ""\nsocket = "%s"' % sock, start=False)
        a.socket = sock
        a.start()
        first = self.sb.path("first.bin")
        a.dopt("get", nginx.url("/f.bin"), "-o", first, check=True)
        self.assertEqual(a.terminate(), 0)
        self.assertEqual(os.stat(os.path.join(a.state_dir, "jobs.db")).st_uid, 0)
        with open(a.config) as f:
            text = f.read().replace('user = ""', 'user = "nobody"\nsystem_job_dirs = ["%s"]'
                                    % self.sb.dir)
        with open(a.config, "w") as f:
            f.write(text)
        a.start()
        nobody = pwd.getpwnam("nobody").pw_uid
        self.assertEqual(ids(proc_status(a.proc.pid), "Uid"), [nobody] * 4)
        for name in ("jobs.db", "doptd.lock"):
            self.assertEqual(os.stat(os.path.join(a.state_dir, name)).st_uid, nobody, name)
        self.assertEqual(a.job_for(first)["state"], "acknowledged")
        second = self.sb.path("second.bin")
        a.dopt("get", nginx.url("/f.bin"), "-o", second, check=True)
        self.assertEqual(sha256_file(second), sha)

    def test_a_socket_folder_shared_with_other_files_is_not_handed_over(self):
        # The harness puts the socket beside the config and the log: the agent
        # must refuse to chown such a folder rather than take it.
        a = self.refused_start('user = "nobody"', "folder of its own")
        self.assertEqual(os.stat(a.dir).st_uid, 0)


def listening_socket_inodes(port):
    """Inodes of the TCP sockets listening on `port` (IPv4)."""
    inodes = set()
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if int(fields[1].split(":")[1], 16) == port and fields[3] == "0A":  # LISTEN
                inodes.add(fields[9])
    return inodes


def socket_inodes_of(pid):
    out = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if link.startswith("socket:["):
            out.add(link[8:-1])
    return out


class SystemAgentPeering(SystemAgent):
    """The same system agent with peering on (listen on 127.0.0.1 only, no
    LAN discovery, no peers) and metainfo beside the content: the libtorrent
    session, the network-facing part, lives in the unprivileged process; the
    peer cache belongs to the agent's account; users' files are still
    written with their own rights."""

    def agent_config(self, user, socket_path):
        self.p2p_port = free_port()
        publish = subprocess.run(
            [dopt_path(), "publish", os.path.join(self.www, "file.bin"), "--web-seed",
             self.nginx.url("/file.bin"), "-o", os.path.join(self.www, "file.bin.torrent")],
            capture_output=True, text=True, env=clean_env(), timeout=60)
        self.assertEqual(publish.returncode, 0, publish.stderr)
        return super().agent_config(user, socket_path) + (
            '[p2p]\nenabled = true\nlisten = "127.0.0.1:%d"\nlan_discovery = false\npeers = []\n'
            % self.p2p_port)

    # The parent's tests run here too, with peering on; these are added.

    def test_the_listening_peer_socket_is_the_unprivileged_processes(self):
        listening = wait_for(lambda: listening_socket_inodes(self.p2p_port), 10,
                             what="a socket listening on 127.0.0.1:%d" % self.p2p_port)
        main = self.agent.proc.pid
        self.assertEqual(ids(proc_status(main), "Uid"), [self.nobody.pw_uid] * 4)
        self.assertTrue(listening & socket_inodes_of(main), "doptd (nobody) does not hold the peer socket")
        self.assertFalse(listening & socket_inodes_of(self.helper_pid()),
                         "the root helper holds the peer socket")

    def test_a_users_peer_assisted_job_lands_owned_by_it_and_the_cache_by_the_agent(self):
        path = self.get_as_daemon()
        job = self.agent.job_for(path)
        self.assertEqual(job["mode"], "peer_assisted", job)
        entries = os.listdir(self.agent.cache_dir)
        self.assertEqual(len(entries), 1, entries)
        for root, dirs, files in os.walk(self.agent.cache_dir):
            for name in dirs + files:
                self.assertEqual(os.lstat(os.path.join(root, name)).st_uid, self.nobody.pw_uid,
                                 os.path.join(root, name))


if __name__ == "__main__":
    unittest.main()
