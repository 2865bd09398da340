"""doptd under systemd, without systemd as PID 1: what the agent says on
$NOTIFY_SOCKET (READY=1, STATUS=, WATCHDOG=1, RELOADING=1, STOPPING=1), read
from a datagram socket the test binds; socket activation: a listening
socket passed as systemd does ($LISTEN_FDS, by systemd-socket-activate or by
the test holding the socket as a socket unit would), idle exit, and a new
agent for the next client; and journal records with their fields, read from
a socket the test binds where the agent, in a mount namespace of its own,
finds /run/systemd/journal/socket (no journald runs here)."""

import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
import unittest

from harness import (MiB, IntegrationTest, OtherUsersTest, clean_env, doptd_path, dopt_path,
                     make_file, tail, wait_for)


class NotifySocket:
    """A datagram socket at `path` standing in for systemd's notify socket;
    collects each message as a dict (a key sent twice keeps its last value)."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.messages = []  # (monotonic time, dict)

    def _read(self, timeout):
        r, _, _ = select.select([self.sock], [], [], timeout)
        if not r:
            return False
        data = self.sock.recv(65536).decode()
        fields = dict(line.split("=", 1) for line in data.splitlines() if "=" in line)
        self.messages.append((time.monotonic(), fields))
        return True

    def wait(self, pred, timeout, what):
        """The first message from now on for which pred(dict) holds."""
        deadline = time.monotonic() + timeout
        seen = len(self.messages)
        while True:
            for _, m in self.messages[seen:]:
                if pred(m):
                    return m
            seen = len(self.messages)
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no %s on NOTIFY_SOCKET within %ss; got %s"
                                     % (what, timeout, [m for _, m in self.messages]))
            self._read(left)

    def close(self):
        self.sock.close()


def spawn(agent, env=None, argv_prefix=(), pass_fds=()):
    """Starts `agent`'s doptd (its config and log) with `env` added to the
    environment and `argv_prefix` before it; agent.stop() ends it."""
    full_env = clean_env()
    full_env.update(env or {})
    with open(agent.log, "ab") as log:
        agent.proc = subprocess.Popen(list(argv_prefix) + [doptd_path(), "--config", agent.config],
                                      stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                      env=full_env, start_new_session=True, pass_fds=pass_fds)
    return agent.proc


def socket_unit(test, path, mode=0o600):
    """What a socket unit does: a listening socket at `path` that outlives
    each agent (closed at the end of `test`)."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    test.addCleanup(listener.close)
    listener.bind(path)
    os.chmod(path, mode)
    listener.listen(16)
    return listener


def activate(agent, listener):
    """Starts `agent` with `listener` passed as systemd passes it: fd 3,
    $LISTEN_FDS=1, $LISTEN_PID the agent's."""
    fd = listener.fileno()
    return spawn(agent, argv_prefix=[
        "sh", "-c", 'LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" "$@" 3<&%d' % fd], pass_fds=(fd,))


class Readiness(IntegrationTest):

    def setUp(self):
        super().setUp()
        self.notify = NotifySocket(self.sb.path("notify.sock"))
        self.agent = self.sb.agent(start=False)

    def tearDown(self):
        self.notify.close()
        super().tearDown()

    def start(self, env=None):
        spawn(self.agent, dict({"NOTIFY_SOCKET": self.notify.path}, **(env or {})))
        return self.notify.wait(lambda m: m.get("READY") == "1", 10, "READY=1")

    def test_ready_comes_once_the_socket_accepts_and_carries_a_status(self):
        ready = self.start()
        # Connecting right at READY=1 works: the socket listens by then.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(self.agent.socket)
        self.assertEqual(ready.get("STATUS"), "0 jobs running, 0 waiting; peering off")
        self.dopt("list", check=0)

    def test_status_says_when_a_job_runs_and_when_it_is_done(self):
        nginx = self.sb.nginx(self.www, slow_rate="2m")
        make_file(os.path.join(self.www, "slow.bin"), 4 * MiB)
        self.start()
        job_id = self.agent.add(nginx.url("/slow/slow.bin"), "-o",
                                os.path.join(self.dest(), "slow.bin"))
        self.notify.wait(lambda m: m.get("STATUS", "").startswith("1 job running"), 10,
                         "STATUS=1 job running")
        self.agent.wait_state(job_id, "transferred", timeout=30)
        self.notify.wait(lambda m: m.get("STATUS", "").startswith("0 jobs running"), 10,
                         "STATUS=0 jobs running after the job")

    def test_watchdog_pings_come_every_half_of_watchdog_usec(self):
        self.start({"WATCHDOG_USEC": "400000"})
        pings = []
        for _ in range(4):
            self.notify.wait(lambda m: m.get("WATCHDOG") == "1", 5, "WATCHDOG=1")
            pings.append(self.notify.messages[-1][0])
        gaps = [b - a for a, b in zip(pings, pings[1:])]
        # 0.2 s apart; a loaded machine may be late, never by the whole 0.4 s.
        self.assertLess(sorted(gaps)[len(gaps) // 2], 0.4, "watchdog ping gaps %s" % gaps)

    def test_sighup_is_reloading_then_ready_and_sigterm_is_stopping(self):
        self.start()
        self.agent.proc.send_signal(signal.SIGHUP)
        self.notify.wait(lambda m: m.get("RELOADING") == "1", 10, "RELOADING=1")
        self.notify.wait(lambda m: m.get("READY") == "1", 10, "READY=1 after the reload")
        self.agent.proc.send_signal(signal.SIGTERM)
        self.notify.wait(lambda m: m.get("STOPPING") == "1", 10, "STOPPING=1")
        self.assertEqual(self.agent.proc.wait(10), 0)


def connects(path):
    """True once a connection to the Unix socket at `path` is taken (and
    closed); False while the path is missing or nothing listens there yet."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(path)
        except (FileNotFoundError, ConnectionRefusedError):
            return False
    return True


class SocketActivation(IntegrationTest):

    def test_systemd_socket_activate_starts_the_agent_for_dopt_get(self):
        activate = shutil.which("systemd-socket-activate")
        if activate is None:
            self.skipTest("systemd-socket-activate (package systemd) is not installed")
        nginx = self.sb.nginx(self.www)
        sha = make_file(os.path.join(self.www, "a.bin"), 1 * MiB)
        agent = self.agent = self.sb.agent(start=False)
        spawn(agent, argv_prefix=[activate, "-l", agent.socket])
        # The first connection taken starts doptd (see connects).
        wait_for(lambda: connects(agent.socket), 10, what="the socket systemd-socket-activate listens on")
        path = os.path.join(self.dest(), "a.bin")
        self.dopt("get", nginx.url("/a.bin"), "-o", path, check=0, timeout=30)
        self.assertFileSha(path, sha)
        self.assertIn("(passed by systemd)", agent.log_text())
        self.assertEqual(agent.terminate(), 0)
        self.assertTrue(os.path.exists(agent.socket), "doptd removed the socket systemd owns")

    def test_a_passed_socket_at_another_path_than_the_configs_is_refused(self):
        activate = shutil.which("systemd-socket-activate")
        if activate is None:
            self.skipTest("systemd-socket-activate (package systemd) is not installed")
        agent = self.agent = self.sb.agent(start=False)
        other = self.sb.path("other.sock")
        spawn(agent, argv_prefix=[activate, "-l", other])
        # systemd-socket-activate binds (the path appears) before it listens:
        # a connect in between is refused, so try again until one is taken.
        wait_for(lambda: connects(other), 10, what="the socket systemd-socket-activate listens on")
        self.assertEqual(agent.proc.wait(10), 1, tail(agent.log))
        self.assertIn("is not a listening Unix stream socket at %s" % agent.socket,
                      agent.log_text())

    def test_idle_exit_waits_for_the_running_job_and_the_next_client_starts_a_new_agent(self):
        nginx = self.sb.nginx(self.www, slow_rate="2m")
        make_file(os.path.join(self.www, "slow.bin"), 6 * MiB)  # 3 s at 2 MiB/s
        agent = self.agent = self.sb.agent("idle_exit = 1\n", start=False)
        listener = socket_unit(self, agent.socket)
        first = activate(agent, listener)
        path = os.path.join(self.dest(), "slow.bin")
        job_id = agent.add(nginx.url("/slow/slow.bin"), "-o", path)
        self.assertEqual(first.wait(30), 0, tail(agent.log))
        log = agent.log_text()
        self.assertIn("idle for 1 s: exiting", log)
        self.assertIn("job %s: file 0 done" % job_id, log,
                      "the agent exited while its job was still running")
        self.assertLess(log.index("job %s: file 0 done" % job_id), log.index("idle for 1 s"),
                        "the agent went idle while its job was still running")
        # The next client waits in the socket's queue until a new agent takes it.
        client = subprocess.Popen([dopt_path(), "--socket", agent.socket, "status", job_id],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  env=clean_env())
        self.addCleanup(client.kill)
        r, _, _ = select.select([listener], [], [], 10)
        self.assertTrue(r, "the client's connection never reached the listening socket")
        second = activate(agent, listener)
        out, err = client.communicate(timeout=30)
        self.assertEqual(client.returncode, 0, err)
        self.assertIn("transferred", out.decode().lower())
        self.assertTrue(second.poll() is None or second.returncode == 0)


class SystemSocketActivation(OtherUsersTest):
    root_reason = "the system agent starts as root: run this test as root"

    def test_a_privilege_separated_agent_serves_the_socket_root_bound(self):
        nginx = self.sb.nginx(self.www)
        sha = make_file(os.path.join(self.www, "a.bin"), 1 * MiB)
        jobs = self.sb.path("jobs")
        os.mkdir(jobs, 0o755)
        run = self.sb.path("agent", "run")
        os.makedirs(run, 0o755)
        path = os.path.join(run, "doptd.sock")
        agent = self.agent = self.sb.agent('user = "nobody"\nsocket = "%s"\nsystem_job_dirs = ["%s"]\n'
                                           % (path, jobs), start=False)
        agent.socket = path
        listener = socket_unit(self, path, 0o666)  # as doptd.socket: root's, 0666
        activate(agent, listener)
        self.dopt("get", nginx.url("/a.bin"), "-o", os.path.join(jobs, "a.bin"), check=0)
        self.assertFileSha(os.path.join(jobs, "a.bin"), sha)
        with open("/proc/%d/status" % agent.proc.pid) as f:
            uid_line = next(line for line in f if line.startswith("Uid:"))
        self.assertEqual(int(uid_line.split()[1]), self.nobody.pw_uid)
        self.assertIn("(passed by systemd)", agent.log_text())
        self.assertEqual(agent.terminate(), 0)
        self.assertTrue(os.path.exists(path), "doptd removed the socket systemd owns")


def journal_record(data):
    """The fields of one datagram of journald's native protocol: NAME=value
    lines, or NAME, a newline, a 64-bit little-endian length and the value."""
    fields, i = {}, 0
    while i < len(data):
        nl = data.index(b"\n", i)
        line = data[i:nl]
        if b"=" in line:
            name, value = line.split(b"=", 1)
            i = nl + 1
        else:
            name = line
            (n,) = struct.unpack("<Q", data[nl + 1:nl + 9])
            value = data[nl + 9:nl + 9 + n]
            i = nl + 9 + n + 1
        fields[name.decode()] = value.decode(errors="replace")
    return fields


class Journal(IntegrationTest):

    def test_records_carry_the_job_and_its_url_only_without_credentials(self):
        if os.geteuid() != 0 or shutil.which("unshare") is None:
            self.skipTest("needs root and unshare(1): the agent's /run is the test's folder "
                          "in a mount namespace")
        nginx = self.sb.nginx(self.www)
        make_file(os.path.join(self.www, "a.bin"), 64 * 1024)
        run = self.sb.path("run")
        os.makedirs(os.path.join(run, "systemd", "journal"))
        journal = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(journal.close)
        journal.bind(os.path.join(run, "systemd", "journal", "socket"))
        records = []  # read as they come, as journald does: a full queue blocks the sender
        done = threading.Event()
        reader = threading.Thread(target=self.read_all, args=(journal, records, done))
        reader.start()
        self.addCleanup(reader.join)
        self.addCleanup(done.set)
        agent = self.agent = self.sb.agent(start=False)
        open(agent.log, "ab").close()
        st = os.stat(agent.log)  # doptd's stderr: the "journal stream"
        spawn(agent, {"JOURNAL_STREAM": "%d:%d" % (st.st_dev, st.st_ino)}, argv_prefix=[
            "unshare", "--mount", "sh", "-c", 'mount --bind "$0" /run && exec "$@"', run])
        wait_for(lambda: agent.dopt("list")[0] == 0, 10, what="the agent to answer")
        clean = nginx.url("/a.bin")
        secret = nginx.url("/a.bin") + "?token=s3cret"
        ids = {}
        for url, name in ((clean, "clean.bin"), (secret, "secret.bin")):
            ids[url] = agent.add(url, "-o", os.path.join(self.dest(), name))
            agent.dopt("wait", ids[url], check=0, timeout=30)
        wait_for(lambda: any(r.get("MESSAGE", "").startswith("job %s: file 0 done" % ids[secret])
                             for r in list(records)), 10,
                 what="the second job's 'file 0 done' in the journal")
        for r in list(records):
            self.assertIn(r.get("PRIORITY"), ("3", "4", "6", "7"), r)
            self.assertEqual(r.get("SYSLOG_IDENTIFIER"), "doptd", r)
            self.assertNotIn("s3cret", repr(r))
        story = [r for r in records if r.get("DOPT_JOB") == ids[clean]]
        self.assertTrue(story and all(r.get("DOPT_URL") == clean for r in story), story)
        story = [r for r in records if r.get("DOPT_JOB") == ids[secret]]
        self.assertTrue(story and all("DOPT_URL" not in r for r in story), story)
        self.assertNotIn("file 0 done", agent.log_text(), "a record went to stderr as well")

    @staticmethod
    def read_all(sock, records, done):
        while not done.is_set():
            if select.select([sock], [], [], 0.1)[0]:
                records.append(journal_record(sock.recv(1 << 20)))


if __name__ == "__main__":
    unittest.main()
