"""Bad input is refused with exit 2 (3 when there is no agent), and the
agent keeps serving afterwards. One agent for the whole class, so the last
test sees an agent that has been fed all of the above."""

import json
import os
import pwd
import socket
import struct
import sys
import time
import unittest

from harness import IS_ROOT, MiB, Sandbox, build_dir, make_file, sha256_file, test_failed


def raw_call(path, request):
    """One request in a frame of its own after `hello` on a new connection
    to `path` (docs/protocol.md); the reply."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(path)
        replies = []
        for req in ({"op": "hello", "seq": 1, "protocol": 1}, request):
            body = json.dumps(req).encode()
            s.sendall(struct.pack(">I", len(body)) + body)
            (n,) = struct.unpack(">I", s.recv(4, socket.MSG_WAITALL))
            replies.append(json.loads(s.recv(n, socket.MSG_WAITALL)))
        return replies[-1]


def call_as(user, path, request):
    """raw_call(path, request) from a child process running as `user` (a
    passwd entry): the agent sees that user's uid on the socket."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the test runner
        status = 1
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)
            os.write(w, json.dumps(raw_call(path, request)).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        out = f.read()
    _, status = os.waitpid(pid, 0)
    if status != 0:
        raise AssertionError("the request as %s failed (status %d)" % (user.pw_name, status))
    return json.loads(out)


class BadInput(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        build_dir()
        cls.sb = Sandbox("dopt-it-bad-input-")
        cls.failed = False
        try:
            cls.www = cls.sb.path("www")
            os.makedirs(cls.www)
            cls.sha = make_file(os.path.join(cls.www, "ok.bin"), 2 * MiB)
            cls.nginx = cls.sb.nginx(cls.www)
            cls.agent = cls.sb.agent()
        except BaseException:
            sys.stderr.write("\n" + cls.sb.report() + "\n")
            cls.sb.close(keep=True)
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.failed:
            sys.stderr.write("\n" + cls.sb.report() + "\n")
        cls.sb.close(keep=cls.failed)

    def tearDown(self):
        if test_failed(self):
            type(self).failed = True

    def dopt(self, *args, **kw):
        return self.agent.dopt(*args, **kw)

    def out(self, name):
        d = self.sb.path("dest", self._testMethodName)
        os.makedirs(d, exist_ok=True)
        return os.path.join(d, name)

    def assertExit(self, want, result):
        rc, out, err = result
        self.assertEqual(rc, want, "stdout %r stderr %r" % (out, err))
        return out, err

    def test_url_without_host_is_exit_2(self):
        self.assertExit(2, self.dopt("add", "http://", "-o", self.out("x")))

    def test_ftp_url_is_exit_2_naming_the_scheme(self):
        out, err = self.assertExit(2, self.dopt("add", "ftp://host/x", "-o", self.out("x")))
        text = (out + err).lower()
        self.assertTrue("ftp" in text or "scheme" in text,
                        "the message should name the scheme: %r" % (out + err))

    def test_output_in_a_missing_directory_is_exit_2(self):
        path = self.sb.path("no", "such", "dir", "x.bin")
        self.assertExit(2, self.dopt("add", self.nginx.url("/ok.bin"), "-o", path))
        self.assertFalse(os.path.exists(os.path.dirname(path)))

    def test_output_in_an_unwritable_directory_is_exit_2(self):
        if IS_ROOT:
            self.skipTest("running as root: root writes a mode-555 directory anyway")
        d = self.sb.path("readonly")
        os.makedirs(d)
        os.chmod(d, 0o555)
        try:
            self.assertExit(2, self.dopt("add", self.nginx.url("/ok.bin"), "-o",
                                         os.path.join(d, "x.bin")))
        finally:
            os.chmod(d, 0o755)

    def test_output_option_without_its_path_says_so(self):
        _, err = self.assertExit(2, self.dopt("get", self.nginx.url("/ok.bin"), "-o",
                                              "--priority", "foreground"))
        self.assertIn("option -o needs a value, not the option --priority", err)
        _, err = self.assertExit(2, self.dopt("get", self.nginx.url("/ok.bin"), "-o"))
        self.assertIn("option -o needs a value", err)

    def test_get_with_two_urls_names_the_second(self):
        _, err = self.assertExit(2, self.dopt("get", self.nginx.url("/ok.bin"), "-o",
                                              self.out("x"), "http://127.0.0.1:1/second"))
        self.assertIn("'get' takes one URL, not also 'http://127.0.0.1:1/second'", err)

    def test_one_destination_through_a_symlinked_folder_is_refused(self):
        real = os.path.dirname(self.out("x"))
        link = real + "-link"
        os.symlink(real, link)
        out, _ = self.assertExit(0, self.dopt("add", self.nginx.url("/ok.bin"), "-o",
                                              os.path.join(real, "same.bin")))
        first = out.split()[0]
        _, err = self.assertExit(2, self.dopt("add", self.nginx.url("/ok.bin"), "-o",
                                              os.path.join(link, "same.bin")))
        self.assertIn(os.path.join(link, "same.bin") + " is already the destination of job "
                      + first, err)
        self.assertExit(0, self.dopt("add", self.nginx.url("/ok.bin"), "-o",
                                     os.path.join(link, "other.bin")))

    def test_an_existing_folder_as_destination_is_refused_at_once(self):
        folder = os.path.dirname(self.out("x"))
        _, err = self.assertExit(2, self.dopt("add", self.nginx.url("/ok.bin"), "-o", folder))
        self.assertIn(folder + " is a folder; the destination must name a file", err)
        self.assertEqual(os.listdir(folder), [], "nothing is left of the refused job")

    def test_status_of_an_unknown_job_is_exit_2(self):
        self.assertExit(2, self.dopt("status", "00000000-0000-0000-0000-000000000000"))

    def test_status_of_a_malformed_id_is_exit_2(self):
        self.assertExit(2, self.dopt("status", "not-a-uuid"))

    def test_no_agent_is_exit_3(self):
        self.assertExit(3, self.dopt("list", socket_path="/nonexistent"))

    def raw_session(self):
        """A connection to the agent's socket speaking the protocol by hand
        (docs/protocol.md): returns call(request dict or bytes) -> reply dict."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(self.agent.socket)
        self.addCleanup(s.close)

        def read_exact(n):
            data = b""
            while len(data) < n:
                chunk = s.recv(n - len(data))
                if not chunk:
                    raise ConnectionError("the agent closed the connection")
                data += chunk
            return data

        def call(req):
            body = req if isinstance(req, bytes) else json.dumps(req).encode()
            s.sendall(struct.pack(">I", len(body)) + body)
            (n,) = struct.unpack(">I", read_exact(4))
            return json.loads(read_exact(n))

        self.assertEqual(call({"op": "hello", "seq": 1, "protocol": 1})["rc"], 0)
        return call

    def test_request_fields_of_the_wrong_type_or_range_are_invalid_arg(self):
        # Found by reviewing what the IPC fuzzer cannot reach: integer fields
        # were read with get<int>(), which converts 1e300 or 2**40 silently.
        call = self.raw_session()
        job = call({"op": "create", "seq": 2, "display_name": "bad fields"})
        self.assertEqual(job["rc"], 0, job)
        jid = job["job"]["id"]
        invalid_arg = -1
        bad = [
            {"op": "set", "job": jid, "priority": 1e300},
            {"op": "set", "job": jid, "priority": 2 ** 40},
            {"op": "set", "job": jid, "priority": 4},
            {"op": "set", "job": jid, "priority": "1"},
            {"op": "set", "job": jid, "priority": None},
            {"op": "set", "job": jid, "no_progress_timeout": -1},
            {"op": "set", "job": jid, "no_progress_timeout": 2 ** 32},
            {"op": "set", "job": jid, "no_progress_timeout": 1.5},
            {"op": "set", "job": jid, "file_sha256": {"index": 1e300, "sha256": "0" * 64}},
            {"op": "set", "job": jid, "file_metainfo": {"index": -1e300, "url": "http://127.0.0.1/x"}},
            {"op": "list", "limit": 1e300},
            {"op": "wait", "job": jid, "timeout_ms": 1e300},
            {"op": "wait", "job": jid, "timeout_ms": 2 ** 63 - 1},
            {"op": "subscribe", "job": jid, "notify": -1},
            {"op": "subscribe", "job": jid, "percent": 1e300},
        ]
        for seq, req in enumerate(bad, start=10):
            req["seq"] = seq
            r = call(req)
            self.assertEqual((r["seq"], r["rc"]), (seq, invalid_arg), "%r -> %r" % (req, r))
            self.assertIn("must be an integer", r.get("message", ""), req)
        # Within range they work, and a request nesting deeper than the agent
        # reads is refused as a protocol error, not a stack overflow.
        self.assertEqual(call({"op": "set", "seq": 50, "job": jid, "priority": 3})["rc"], 0)
        self.assertEqual(call({"op": "list", "seq": 51, "limit": -5})["rc"], 0)
        deep = b'{"op":"list","seq":52,"x":' + b"[" * 200000 + b"]" * 200000 + b"}"
        r = call(deep)
        self.assertEqual(r["rc"], -4, r)
        self.assertIn("nests deeper", r["message"])
        self.assertEqual(call({"op": "cancel", "seq": 53, "job": jid})["rc"], 0)

    def job_with_one_file(self, call, name):
        """A suspended job with the file /ok.bin; its id."""
        jid = call({"op": "create", "seq": 2, "display_name": name})["job"]["id"]
        r = call({"op": "add_file", "seq": 3, "job": jid, "url": self.nginx.url("/ok.bin"),
                  "local_path": self.out("ok.bin")})
        self.assertEqual(r["rc"], 0, r)
        return jid

    def test_set_file_size_refuses_bad_members_and_keeps_the_job_as_it_was(self):
        # docs/protocol.md: `set` ... `file_size` ({`index`, `size`}).
        call = self.raw_session()
        jid = self.job_with_one_file(call, "file_size")
        invalid_arg = -1
        bad = [  # (file_size, what the message names)
            (2 * MiB, "bad field"),
            ([0, 2 * MiB], "bad field"),
            ({"size": 2 * MiB}, "index"),
            ({"index": 0}, "size"),
            ({}, "index"),
            ({"index": "0", "size": 2 * MiB}, "index must be an integer"),
            ({"index": None, "size": 2 * MiB}, "index must be an integer"),
            ({"index": 0.5, "size": 2 * MiB}, "index must be an integer"),
            ({"index": 0, "size": str(2 * MiB)}, "size must be an integer"),
            ({"index": 0, "size": True}, "size must be an integer"),
            ({"index": 0, "size": 2.5}, "size must be an integer"),
            ({"index": 0, "size": -1}, "size must be an integer"),
            ({"index": 0, "size": 2 ** 63}, "size must be an integer"),
            ({"index": 0, "size": 2 ** 64 - 1}, "size must be an integer"),
            ({"index": 0, "size": 1e300}, "size must be an integer"),
            ({"index": 1, "size": 2 * MiB}, "no file number 1"),
            ({"index": -1, "size": 2 * MiB}, "no file number -1"),
            ({"index": 2 ** 40, "size": 2 * MiB}, "index must be an integer"),
        ]
        for seq, (member, named) in enumerate(bad, start=10):
            # With a good priority beside it: a refused request changes nothing.
            r = call({"op": "set", "seq": seq, "job": jid, "priority": 3, "file_size": member})
            self.assertEqual((r["seq"], r["rc"]), (seq, invalid_arg), "%r -> %r" % (member, r))
            self.assertIn(named, r.get("message", ""), member)
        job = call({"op": "status", "seq": 40, "job": jid})["job"]
        self.assertEqual(job["priority"], 2, job)  # normal, as created
        self.assertEqual(job["files"][0]["bytes_total"], -1, job)
        # The job still takes a good size and delivers the file.
        self.assertEqual(call({"op": "set", "seq": 41, "job": jid,
                               "file_size": {"index": 0, "size": 2 * MiB}})["rc"], 0)
        self.assertEqual(call({"op": "status", "seq": 42, "job": jid})["job"]["files"][0]["bytes_total"],
                         2 * MiB)
        self.assertEqual(call({"op": "resume", "seq": 43, "job": jid})["rc"], 0)
        self.agent.wait_state(jid, "transferred", timeout=60)
        self.assertEqual(call({"op": "complete", "seq": 44, "job": jid})["rc"], 0)
        self.assertEqual(sha256_file(self.out("ok.bin")), self.sha)

    def test_set_file_size_on_another_users_job_is_no_such_job(self):
        if not IS_ROOT:
            self.skipTest("another user (nobody) must reach root's agent: run as root")
        try:
            nobody = pwd.getpwnam("nobody")
        except KeyError:
            self.skipTest("needs the account 'nobody'")
        call = self.raw_session()
        jid = self.job_with_one_file(call, "root's file_size")
        os.chmod(self.sb.dir, 0o755)  # nobody walks to the socket
        r = call_as(nobody, self.agent.socket, {"op": "set", "seq": 2, "job": jid,
                                                "file_size": {"index": 0, "size": 1}})
        self.assertEqual(r["rc"], -6, r)  # DOPT_E_NOT_FOUND, as for a job that does not exist
        self.assertEqual(r["message"], "no job " + jid)
        job = call({"op": "status", "seq": 4, "job": jid})["job"]
        self.assertEqual(job["files"][0]["bytes_total"], -1, job)
        self.assertEqual(call({"op": "cancel", "seq": 5, "job": jid})["rc"], 0)

    def test_requests_sent_just_before_the_client_closes_are_carried_out(self):
        call = self.raw_session()
        job = call({"op": "create", "seq": 2, "display_name": "cancel and close"})
        jid = job["job"]["id"]
        frames = b""
        for req in ({"op": "hello", "seq": 1, "protocol": 1}, {"op": "cancel", "seq": 2, "job": jid}):
            body = json.dumps(req).encode()
            frames += struct.pack(">I", len(body)) + body
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(self.agent.socket)
            s.sendall(frames)  # and close without reading a reply
        deadline = 50
        for _ in range(deadline):
            state = call({"op": "status", "seq": 3, "job": jid})
            if state["rc"] != 0 or state["job"]["state"] == "cancelled":
                break
            time.sleep(0.1)
        self.assertEqual(state["job"]["state"], "cancelled", state)

    def test_zz_agent_still_serves_a_good_job_after_bad_input(self):
        # Named to run last in this class.
        self.assertTrue(self.agent.running(), "doptd died on bad input")
        path = self.out("ok.bin")
        self.assertExit(0, self.dopt("get", self.nginx.url("/ok.bin"), "-o", path,
                                     timeout=60))
        self.assertEqual(sha256_file(path), self.sha)


if __name__ == "__main__":
    unittest.main()
