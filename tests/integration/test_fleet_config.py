"""One config for a fleet (issue 15 item 2), on loopback with real doptd and
nginx: `doptd --check-config` (effective settings with their origin, errors,
drop-ins `<config>.d/*.conf`), and SIGHUP applying `[p2p]` to a running agent
while a job goes through its swarm. Listening by interface name while the
address changes is tested in network namespaces (tests/lan/test_listen_interface.py).
"""

import os
import signal
import socket
import subprocess
import unittest

import harness
from harness import MiB, free_port, wait_for
from test_peering import PeeringTest, p2p_toml


def check_config(*args):
    """`doptd --check-config ARGS`: (exit code, stdout, stderr)."""
    p = subprocess.run([harness.doptd_path(), "--check-config", *args], capture_output=True,
                       text=True, env=harness.clean_env(), timeout=30)
    return p.returncode, p.stdout, p.stderr


def settings(stdout):
    """The `key = value  # origin` lines of --check-config: {key: (value, origin)}."""
    out = {}
    for line in stdout.splitlines():
        if line.startswith("#") or " = " not in line:
            continue
        key, rest = line.split(" = ", 1)
        value, origin = rest.rsplit("  # ", 1)
        out[key] = (value, origin)
    return out


def accepts(port, ip="127.0.0.1"):
    """True when a TCP connection to ip:port is accepted now."""
    try:
        with socket.create_connection((ip, port), timeout=2):
            return True
    except OSError:
        return False


class CheckConfig(harness.IntegrationTest):
    def write(self, name, text):
        path = self.sb.path(name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        return path

    def assertOpenedNothing(self, state_dir, socket_path):
        self.assertFalse(os.path.exists(socket_path), "--check-config made the socket")
        self.assertFalse(os.path.exists(os.path.join(state_dir, "jobs.db")),
                         "--check-config opened the job store")

    def test_a_good_config_prints_every_key_with_its_file_and_line_or_default(self):
        state = self.sb.path("state")
        sock = self.sb.path("run", "doptd.sock")
        conf = self.write("doptd.conf", '# fleet\nstate_dir = "%s"\nsocket = "%s"\n[jobs]\nmax_jobs = 3\n'
                          '[http]\nproxy = "http://fleet:s3cret@proxy.lan:3128"\n' % (state, sock))
        rc, out, err = check_config("--config", conf)
        self.assertEqual(rc, 0, err)
        s = settings(out)
        self.assertEqual(s["jobs.max_jobs"], ("3", conf + ":5"))
        self.assertEqual(s["state_dir"], ('"%s"' % state, conf + ":2"))
        self.assertEqual(s["jobs.max_connections"], ("8", "default"))
        self.assertEqual(s["p2p.enabled"], ("false", "default"))
        self.assertNotIn("s3cret", out)  # the output may go to a log
        self.assertEqual(s["http.proxy"][1], conf + ":7")
        for key in ("user", "jobs.retry_max_delay", "ipc.max_reply_backlog_per_user", "http.ca_file",
                    "p2p.allowed_networks", "p2p.content_follow_ms", "cache.min_file_size"):
            self.assertEqual(s[key][1], "default", key)
        self.assertOpenedNothing(state, sock)

    def test_a_drop_in_overrides_the_main_file_and_is_named_as_the_origin(self):
        conf = self.write("doptd.conf", '[jobs]\nmax_jobs = 3\n[p2p]\nlisten = "10.0.0.5:7881"\n')
        early = self.write("doptd.conf.d/10-site.conf", "[jobs]\nmax_jobs = 5\nretention = 60\n")
        late = self.write("doptd.conf.d/20-host.conf", '[p2p]\n\nlisten = "eth0:7881"\n[jobs]\nmax_jobs = 9\n')
        self.write("doptd.conf.d/30-off.conf.disabled", "[jobs]\nmax_jobs = 1\n")
        rc, out, err = check_config("--config", conf)
        self.assertEqual(rc, 0, err)
        self.assertIn("# then: %s\n# then: %s\n" % (early, late), out)
        s = settings(out)
        self.assertEqual(s["jobs.max_jobs"], ("9", late + ":5"))
        self.assertEqual(s["jobs.retention"], ("60", early + ":3"))
        self.assertEqual(s["p2p.listen"], ('"eth0:7881"', late + ":3"))

    def test_an_interface_listen_says_which_address_it_has_now(self):
        conf = self.write("doptd.conf", '[p2p]\nenabled = true\nlisten = "lo:7881"\n')
        rc, out, err = check_config("--config", conf)
        self.assertEqual(rc, 0, err)
        self.assertIn("# p2p.listen: lo has 127.0.0.1 now\n", out)
        self.write("doptd.conf", '[p2p]\nenabled = true\nlisten = "nosuchif0:7881"\n')
        rc, out, err = check_config("--config", conf)
        self.assertEqual(rc, 0, err)
        self.assertIn("# p2p.listen: nosuchif0 has no address now", out)

    def test_a_bad_drop_in_exits_1_naming_its_file_and_line_and_opens_nothing(self):
        state = self.sb.path("state")
        sock = self.sb.path("run", "doptd.sock")
        conf = self.write("doptd.conf", 'state_dir = "%s"\nsocket = "%s"\n' % (state, sock))
        bad = self.write("doptd.conf.d/50-bad.conf", "[p2p]\nenabled = true\nlisten = \"0.0.0.0:7881\"\n")
        rc, out, err = check_config("--config", conf)
        self.assertEqual(rc, 1, out)
        self.assertEqual(out, "")
        self.assertIn(bad + ":3: p2p.listen must be a specific LAN address", err)
        self.assertOpenedNothing(state, sock)
        # The agent itself refuses to start on it, with the same message.
        p = subprocess.run([harness.doptd_path(), "--config", conf], capture_output=True, text=True,
                           env=harness.clean_env(), timeout=30)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn(bad + ":3:", p.stderr)

    def test_unknown_keys_warn_on_stderr_and_still_exit_0(self):
        conf = self.write("doptd.conf", "[jobs]\nmax_jobz = 3\n")
        rc, out, err = check_config("--config", conf)
        self.assertEqual(rc, 0, err)
        self.assertIn(conf + ":2: unknown key 'jobs.max_jobz'", err)
        self.assertEqual(settings(out)["jobs.max_jobs"], ("4", "default"))


class SighupReloadsP2p(PeeringTest):
    """SIGHUP moves a running agent's peer socket and keeps its swarm job."""

    SIZE = 8 * MiB

    def test_a_new_listen_port_takes_effect_and_the_running_swarm_job_finishes(self):
        self.origin = self.sb.nginx(self.www, slow_rate="512k")
        sha = self.serve("f.bin", self.SIZE)
        p1, p2, p3 = free_port(), free_port(), free_port()
        a = self.sb.agent(p2p_toml("127.0.0.1:%d" % p1), name="A")
        wait_for(lambda: accepts(p1), 10, what="A listening on %d" % p1)
        dest = self.dest_of(a, "f.bin")
        job = a.add(self.url("/slow/f.bin"), "-o", dest)
        a.wait_bytes(job, MiB, timeout=30)
        self.assertIn("through the swarm", a.log_text())

        with open(a.config) as f:
            text = f.read()
        with open(a.config, "w") as f:
            f.write(text.replace(":%d" % p1, ":%d" % p2) + "max_upload_rate = 1000000\n")
        a.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "SIGHUP: peering on 127.0.0.1:%d" % p2 in a.log_text(), 10,
                 what="the reload logged")
        wait_for(lambda: accepts(p2) and not accepts(p1), 10,
                 what="the peer socket moved from %d to %d" % (p1, p2))
        self.assertNotEqual(a.status(job)["state"], "error")

        # A reload with an error keeps every setting, [p2p] too.
        with open(a.config, "w") as f:
            f.write(text.replace(":%d" % p1, ":%d" % p3) + "max_upload_rate = -1\n")
        a.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "keeping the old configuration" in a.log_text(), 10,
                 what="the bad reload logged")
        self.assertIn(a.config + ":", a.log_text())
        self.assertTrue(accepts(p2))
        self.assertFalse(accepts(p3))

        a.wait_state(job, ["transferred"], timeout=60)
        a.dopt("complete", job, check=0)
        self.assertFileSha(dest, sha)
        st = a.status(job)
        self.assertEqual(st["mode"], "peer_assisted", st)


if __name__ == "__main__":
    unittest.main()
