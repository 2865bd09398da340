"""One local user cannot use up the agent's socket or job table for the
others (docs/config.md, [ipc] and [jobs] max_jobs_per_user):

- connections past [ipc] max_connections_per_user get one error frame
  (DOPT_E_CONNECT, naming the key) and are closed; other users connect;
- a client that sends requests and never reads the replies is no longer
  read once its uid has [ipc] max_reply_backlog_per_user bytes of replies
  unread: its connection stays open and blocked, the agent's memory stays
  small, every other client is served;
- a job past [jobs] max_jobs_per_user is refused (DOPT_E_TOO_LARGE, naming
  the key); other users still create jobs.

The agent is a root doptd without `user` (socket 0666) so that `nobody`,
the other user, can reach it; the tests with another user need root.
"""

import json
import os
import pwd
import select
import socket
import struct
import subprocess
import time

from harness import IS_ROOT, IntegrationTest, clean_env, dopt_path

DOPT_E_CONNECT = -3
DOPT_E_TOO_LARGE = -13


class RawClient:
    """The protocol of docs/protocol.md over one socket, by hand."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(path)
        self.seq = 0

    def frame(self, op, **fields):
        self.seq += 1
        body = json.dumps(dict(op=op, seq=self.seq, **fields)).encode()
        return struct.pack(">I", len(body)) + body

    def read_exact(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("the agent closed the connection")
            data += chunk
        return data

    def recv(self):
        (n,) = struct.unpack(">I", self.read_exact(4))
        return json.loads(self.read_exact(n))

    def call(self, op, **fields):
        try:
            self.sock.sendall(self.frame(op, **fields))
        except (BrokenPipeError, ConnectionResetError):
            pass  # closed already: what it said before is still to be read
        return self.recv()

    def hello(self):
        return self.call("hello", protocol=1, client="test_ipc_limits")

    def close(self):
        self.sock.close()


def vm_hwm_kib(pid):
    """Peak resident memory of `pid` (VmHWM), KiB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM for pid %d" % pid)


class IpcLimits(IntegrationTest):

    LIMITS = """[ipc]
max_connections_per_user = 8
max_reply_backlog_per_user = 65536
[jobs]
max_jobs_per_user = 60
"""

    def setUp(self):
        super().setUp()
        os.chmod(self.sb.dir, 0o755)  # `nobody` walks to the socket
        self.start_agent(self.LIMITS)
        self.clients = []

    def tearDown(self):
        for c in self.clients:
            c.close()
        super().tearDown()

    def connect(self):
        c = RawClient(self.agent.socket)
        self.clients.append(c)
        return c

    def as_nobody(self, *args):
        """`dopt ARGS` run as nobody; (exit code, stdout, stderr)."""
        try:
            nobody = pwd.getpwnam("nobody")
        except KeyError:
            self.skipTest("needs the account 'nobody'")
        p = subprocess.run([dopt_path(), "--socket", self.agent.socket] + list(args),
                           capture_output=True, timeout=30, env=clean_env(), cwd="/",
                           stdin=subprocess.DEVNULL, user=nobody.pw_uid,
                           group=nobody.pw_gid, extra_groups=[])
        return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")

    def need_root(self):
        if not IS_ROOT:
            self.skipTest("another user (nobody) must use the agent: run as root")

    # -- connections -------------------------------------------------------------

    def open_the_limit(self):
        held = [self.connect() for _ in range(8)]
        for c in held:
            self.assertEqual(c.hello()["rc"], 0)
        return held

    def test_a_connection_past_the_per_user_limit_is_refused_with_a_clear_error(self):
        held = self.open_the_limit()
        extra = self.connect()
        reply = extra.hello()
        self.assertEqual(reply["rc"], DOPT_E_CONNECT, reply)
        self.assertIn("max_connections_per_user", reply["message"])
        self.assertRaises(ConnectionError, extra.recv)  # and closed
        # The CLI (libdopt) shows the agent's reason, exit 3.
        rc, _, err = self.dopt("list")
        self.assertEqual(rc, 3, err)
        self.assertIn("max_connections_per_user", err)
        # One closed: the user connects again.
        held[0].close()
        self.clients.remove(held[0])
        rc, _, err = self.agent.dopt("list")
        self.assertEqual(rc, 0, err)

    def test_another_user_connects_while_one_holds_all_it_may(self):
        self.need_root()
        self.open_the_limit()
        self.assertEqual(self.dopt("list")[0], 3)
        rc, _, err = self.as_nobody("list")
        self.assertEqual(rc, 0, err)

    # -- replies nobody reads ----------------------------------------------------------

    def test_a_client_that_never_reads_is_paused_and_others_are_served(self):
        setup = self.connect()
        setup.hello()
        for i in range(50):  # each `list` reply is then about 60 KiB
            self.assertEqual(setup.call("create", display_name="%04d" % i + "n" * 1000)["rc"], 0)
        hwm_before = vm_hwm_kib(self.agent.proc.pid)

        hog = self.connect()
        hog.hello()
        hog.sock.setblocking(False)
        request = hog.frame("list")
        sent = 0
        while True:  # write until the socket takes nothing for a second
            _, writable, _ = select.select([], [hog.sock], [], 1.0)
            if not writable:
                break
            try:
                sent += hog.sock.send(request * 64)
            except BlockingIOError:
                continue
            except OSError as e:
                self.fail("the agent closed the connection after %d bytes of requests "
                          "instead of no longer reading it: %s" % (sent, e))
            if sent > 64 << 20:
                self.fail("the agent took 64 MiB of requests without pausing the client")
        # Everyone else is served meanwhile: the same user and another one.
        rc, out, err = self.dopt("list", "--json")
        self.assertEqual(rc, 0, err)
        self.assertEqual(len(json.loads(out)), 50)
        if IS_ROOT:
            rc, _, err = self.as_nobody("list")
            self.assertEqual(rc, 0, err)
        grown = vm_hwm_kib(self.agent.proc.pid) - hwm_before
        self.assertLess(grown, 24 * 1024, "peak memory grew by %d KiB" % grown)
        # The paused client is still connected, and its replies come in order.
        hog.sock.setblocking(True)
        hog.sock.settimeout(10)
        for _ in range(5):
            r = hog.recv()
            self.assertEqual((r["seq"], r["rc"], len(r["jobs"])), (2, 0, 50))
        self.assertTrue(self.agent.running())

    # -- jobs ----------------------------------------------------------------------

    def test_a_job_past_max_jobs_per_user_is_refused_and_others_still_create(self):
        c = self.connect()
        c.hello()
        ids = []
        for i in range(60):
            r = c.call("create", display_name="j%d" % i)
            self.assertEqual(r["rc"], 0, r)
            ids.append(r["job"]["id"])
        # Ended jobs make room: at the limit the oldest ended one is purged
        # early, so only unended jobs can fill a user's quota.
        for job in (ids[7], ids[3]):
            self.assertEqual(c.call("cancel", job=job)["rc"], 0)
        for _ in range(2):
            self.assertEqual(c.call("create", display_name="in an ended job's place")["rc"], 0)
        left = {j["id"] for j in self.agent.jobs()}
        self.assertEqual(len(left), 60)
        self.assertNotIn(ids[7], left)
        self.assertNotIn(ids[3], left)
        self.assertIn("purged early to make room", self.agent.log_text())
        r = c.call("create", display_name="one too many")
        self.assertEqual(r["rc"], DOPT_E_TOO_LARGE, r)
        self.assertIn("max_jobs_per_user", r["message"])
        self.assertEqual(len(self.agent.jobs()), 60)
        dest = self.dest()
        rc, _, err = self.dopt("add", "http://127.0.0.1:9/x", "-o", os.path.join(dest, "x"))
        self.assertEqual(rc, 2, err)
        self.assertIn("max_jobs_per_user", err)
        if IS_ROOT:
            os.chmod(dest, 0o777)
            rc, out, err = self.as_nobody("add", "http://127.0.0.1:9/y", "-o",
                                          os.path.join(dest, "y"))
            self.assertEqual(rc, 0, err)
            rc, out, err = self.as_nobody("list", "--json")
            self.assertEqual(len(json.loads(out)), 1, out)


if __name__ == "__main__":
    import unittest
    unittest.main()
