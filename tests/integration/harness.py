"""Helpers for the integration tests: a real nginx, the fault origin, real
doptd agents and the dopt CLI, all under one temporary directory a test.

Binaries come from $DOPT_BUILD_DIR (doptd at agent/doptd, dopt at api/dopt).
Nothing listens anywhere but 127.0.0.1.

A test derives from IntegrationTest; everything it starts through self.sb
(a Sandbox) is stopped in tearDown, pass or fail. The temporary directory is
removed when the test passed and kept (its path printed, with the tail of each
agent log) when it failed.
"""

import hashlib
import json
import os
import pwd
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ORIGIN_DIR = os.path.join(os.path.dirname(HERE), "origin")
sys.path.insert(0, ORIGIN_DIR)
import fault_origin  # noqa: E402  (content() of /changing/ resources)

MiB = 1024 * 1024
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
FINAL_STATES = ("transferred", "acknowledged", "error", "cancelled")
IS_ROOT = os.geteuid() == 0


def build_dir():
    d = os.environ.get("DOPT_BUILD_DIR")
    if not d:
        raise unittest.SkipTest("set DOPT_BUILD_DIR to the CMake build directory")
    return d


def doptd_path():
    return os.path.join(build_dir(), "agent", "doptd")


def dopt_path():
    return os.path.join(build_dir(), "api", "dopt")


def clean_env():
    """The environment for children: no proxy may send loopback traffic away."""
    env = dict(os.environ)
    for k in list(env):
        if k.lower() in ("http_proxy", "https_proxy", "all_proxy", "ftp_proxy"):
            del env[k]
    env["no_proxy"] = env["NO_PROXY"] = "127.0.0.1,localhost"
    env.pop("DOPT_SOCKET", None)
    return env


def free_port(ip="127.0.0.1"):
    """A TCP port nobody listens on at `ip` right now (bound and released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


def next_second():
    """Waits until the wall clock is in a later second than when called: a
    time the agent records in seconds (a cache entry's last_used) is then
    later than any it recorded before the call."""
    start = int(time.time())
    wait_for(lambda: int(time.time()) > start, 2, interval=0.02, what="the next second")


def make_file(path, size, seed=None):
    """Writes `size` random bytes (deterministic when `seed` is given) and
    returns their sha256 hex."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    h = hashlib.sha256()
    if seed is not None:
        data = fault_origin.content(str(seed), size, "file")
        with open(path, "wb") as f:
            f.write(data)
        return hashlib.sha256(data).hexdigest()
    with open(path, "wb") as f:
        left = size
        while left:
            buf = os.urandom(min(left, MiB))
            f.write(buf)
            h.update(buf)
            left -= len(buf)
    return h.hexdigest()


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for buf in iter(lambda: f.read(MiB), b""):
            h.update(buf)
    return h.hexdigest()


def tail(path, lines=40):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        return "(cannot read %s: %s)" % (path, e)
    return "\n".join(data.decode(errors="replace").splitlines()[-lines:])


def wait_for(pred, timeout, interval=0.1, what="condition"):
    """Polls pred() until it returns a true value (returned) or timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))
        time.sleep(interval)


def _read_text(path):
    """The text of `path`; "" when it does not exist."""
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def _no_proxy_opener():
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


# ---------------------------------------------------------------------------


def nginx_conf(prefix, listen, docroot, log_format, http_extra="", server_extra="",
               worker_connections=256, keepalive_timeout=30):
    """The nginx.conf of a test origin: one process in the foreground (stop
    it with SIGQUIT to flush its logs), pid, logs and temp folders under
    `prefix`, access log `prefix`/access.log in `log_format`, one server on
    `listen` (ADDR:PORT) serving `docroot` with ETags, plus `server_extra`
    (locations) and `http_extra` (http-level directives)."""
    user = "user root;\n" if IS_ROOT else ""
    return f"""{user}daemon off;
master_process off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections {worker_connections}; }}
http {{
    log_format dopt '{log_format}';
    access_log {prefix}/access.log dopt;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    default_type application/octet-stream;
    sendfile on;
    keepalive_timeout {keepalive_timeout};
    {http_extra}
    server {{
        listen {listen};
        server_name localhost;
        root {docroot};
        etag on;
        location / {{ }}
        {server_extra}
    }}
}}
"""


class Nginx:
    """A real nginx on 127.0.0.1:<free port> serving `docroot`:
    /           static files, etag on
    /slow/      the same files, limit_rate `slow_rate` per connection
    /forbidden/ always 403
    The access log (tab separated: status, body_bytes_sent, range, request)
    lets a test sum the body bytes sent for a path."""

    def __init__(self, workdir, docroot, slow_rate="2m"):
        self.dir = workdir
        self.docroot = os.path.realpath(docroot)
        self.slow_rate = slow_rate
        os.makedirs(self.dir, exist_ok=True)
        os.makedirs(self.docroot, exist_ok=True)
        self.access_log = os.path.join(self.dir, "access.log")
        self.error_log = os.path.join(self.dir, "error.log")
        self.proc = None
        self.port = None

    def _conf(self):
        return nginx_conf(
            self.dir, "127.0.0.1:%d" % self.port, self.docroot,
            log_format=r"$status\t$body_bytes_sent\t$http_range\t$request",
            server_extra=f"""location /slow/ {{
            alias {self.docroot}/;
            limit_rate {self.slow_rate};
        }}
        location /forbidden/ {{ return 403; }}""")

    def start(self):
        for attempt in range(5):
            self.port = free_port()
            conf = os.path.join(self.dir, "nginx.conf")
            with open(conf, "w") as f:
                f.write(self._conf())
            out = open(os.path.join(self.dir, "nginx.out"), "ab")
            self.proc = subprocess.Popen(
                ["/usr/sbin/nginx", "-p", self.dir + "/", "-c", conf, "-e", self.error_log],
                stdout=out, stderr=out, stdin=subprocess.DEVNULL, env=clean_env())
            out.close()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                    return self
                except OSError:
                    time.sleep(0.05)
            self.stop()
        raise RuntimeError("nginx did not start:\n" + tail(self.error_log) + "\n" +
                           tail(os.path.join(self.dir, "nginx.out")))

    def url(self, path):
        return "http://127.0.0.1:%d/%s" % (self.port, path.lstrip("/"))

    def log_entries(self):
        """[(status, body_bytes_sent, range, method, path)] from the access log."""
        out = []
        try:
            with open(self.access_log) as f:
                for line in f:
                    parts = line.rstrip("\n").split("\t")
                    if len(parts) != 4:
                        continue
                    req = parts[3].split(" ")
                    path = req[1].split("?")[0] if len(req) > 1 else ""
                    out.append((int(parts[0]), int(parts[1]), parts[2],
                                req[0], path))
        except FileNotFoundError:
            pass
        return out

    def wait_log_complete(self):
        """Waits until the access log holds every request that ended before
        this call. nginx (one worker) logs a request as it ends, in order:
        once a request made now is in the log, so is any earlier one."""
        self._marks = getattr(self, "_marks", 0) + 1
        marker = "/dopt-log-mark-%d" % self._marks
        try:
            _no_proxy_opener().open(self.url(marker), timeout=10).close()
        except urllib.error.HTTPError:
            pass  # 404: logged all the same
        wait_for(lambda: " %s " % marker in _read_text(self.access_log), 10,
                 interval=0.02, what="nginx to log " + marker)

    def body_bytes_sent(self, path):
        """Sum of $body_bytes_sent of every logged request for `path`
        (a URL path such as "/slow/big.bin")."""
        return sum(e[1] for e in self.log_entries() if e[4] == path)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful: flushes the logs
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class TlsNginx(Nginx):
    """nginx serving `docroot` over TLS with a certificate for 127.0.0.1;
    /down/NAME redirects to `downgrade_to` + NAME (a plain http URL)."""

    def __init__(self, workdir, docroot, downgrade_to=""):
        super().__init__(workdir, docroot)
        self.cert = os.path.join(self.dir, "cert.pem")
        self.key = os.path.join(self.dir, "key.pem")
        self.downgrade_to = downgrade_to
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                        "-keyout", self.key, "-out", self.cert, "-days", "2",
                        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                       check=True, capture_output=True)

    def _conf(self):
        conf = super()._conf()
        conf = conf.replace(f"listen 127.0.0.1:{self.port};",
                            f"listen 127.0.0.1:{self.port} ssl;\n"
                            f"        ssl_certificate {self.cert};\n"
                            f"        ssl_certificate_key {self.key};")
        return conf.replace("location /forbidden/",
                            f"location /down/ {{ rewrite ^/down/(.*)$ {self.downgrade_to}$1 redirect; }}\n"
                            "        location /forbidden/")

    def url(self, path):
        return "https://127.0.0.1:%d/%s" % (self.port, path.lstrip("/"))


class FaultOrigin:
    """tests/origin/fault_origin.py on 127.0.0.1:<chosen port>."""

    def __init__(self, workdir, docroot):
        self.dir = workdir
        self.docroot = docroot
        os.makedirs(self.dir, exist_ok=True)
        os.makedirs(self.docroot, exist_ok=True)
        self.proc = None
        self.port = None
        self.log = os.path.join(self.dir, "fault_origin.log")

    def start(self):
        err = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(ORIGIN_DIR, "fault_origin.py"),
             "--docroot", self.docroot, "--port", "0"],
            stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, env=clean_env())
        err.close()
        r, _, _ = select.select([self.proc.stdout], [], [], 10)
        line = self.proc.stdout.readline().decode() if r else ""
        m = re.match(r"PORT (\d+)", line)
        if not m:
            self.stop()
            raise RuntimeError("fault origin did not start: %r\n%s" % (line, tail(self.log)))
        self.port = int(m.group(1))
        return self

    def url(self, path):
        return "http://127.0.0.1:%d/%s" % (self.port, path.lstrip("/"))

    def stats(self, path=None):
        """The /_stats JSON, or the entry of one path ({} when never asked)."""
        with _no_proxy_opener().open(self.url("/_stats"), timeout=10) as r:
            s = json.loads(r.read())
        if path is None:
            return s
        return s.get(path, {"requests": 0, "body_bytes": 0, "cuts": 0, "log": []})

    def stop(self):
        if self.proc:
            terminate(self.proc)
        if self.proc and self.proc.stdout:
            self.proc.stdout.close()


def terminate(proc, timeout=5):
    """SIGTERM to a child still running, SIGKILL after `timeout` seconds;
    reaped either way."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def merge_toml(base, extra):
    """Merges two small TOML texts section by section, so that `extra` may
    say "[jobs]\\nmax_jobs = 1" without defining [jobs] twice. Keys given in
    `extra` replace the same keys of `base`."""
    def parse(text):
        sections = {"": []}
        order = [""]
        cur = ""
        for line in text.splitlines():
            s = line.strip()
            if s.startswith("[") and s.endswith("]"):
                cur = s[1:-1].strip()
                if cur not in sections:
                    sections[cur] = []
                    order.append(cur)
                continue
            if s:
                sections[cur].append(s)
        return sections, order

    b, border = parse(base)
    e, eorder = parse(extra)
    for sec in eorder:
        if sec not in b:
            b[sec] = []
            border.append(sec)
        for line in e[sec]:
            key = line.split("=", 1)[0].strip() if "=" in line else None
            if key:
                b[sec] = [x for x in b[sec]
                          if not ("=" in x and x.split("=", 1)[0].strip() == key)]
            b[sec].append(line)
    out = []
    for sec in border:
        if sec:
            out.append("[%s]" % sec)
        out.extend(b[sec])
    return "\n".join(out) + "\n"


def parse_prometheus(text):
    """(families by name, {(sample name, sorted label items): value}) of a
    Prometheus text, read by python3-prometheus-client's parser (raises
    when it does not accept the text). Imported here alone: every other
    test needs the standard library only."""
    try:
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError:
        # Debian's package, for a python3 that is not Debian's (pyenv); it
        # is pure Python.
        sys.path.append("/usr/lib/python3/dist-packages")
        from prometheus_client.parser import text_string_to_metric_families
    families = {f.name: f for f in text_string_to_metric_families(text)}
    samples = {}
    for f in families.values():
        for s in f.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return families, samples


class Agent:
    """A doptd with all its paths under `workdir`."""

    def __init__(self, workdir, extra_toml="", state_dir=None):
        self.dir = workdir
        os.makedirs(self.dir, exist_ok=True)
        self.state_dir = state_dir or os.path.join(self.dir, "state")
        self.cache_dir = os.path.join(self.dir, "cache")
        self.socket = os.path.join(self.dir, "doptd.sock")
        self.config = os.path.join(self.dir, "doptd.toml")
        self.log = os.path.join(self.dir, "doptd.log")
        for d in (self.state_dir, self.cache_dir):
            os.makedirs(d, exist_ok=True)
        base = f"""state_dir = "{self.state_dir}"
cache_dir = "{self.cache_dir}"
socket = "{self.socket}"
log_level = "debug"
[jobs]
retry_min_delay = 1
retry_max_delay = 2
[http]
low_speed_time = 3
"""
        with open(self.config, "w") as f:
            f.write(merge_toml(base, extra_toml))
        self.proc = None

    # -- process --------------------------------------------------------

    def spawn(self):
        """Starts doptd without waiting for it; returns the Popen."""
        with open(self.log, "ab") as log:
            log.write(b"=== doptd started %s ===\n" % time.ctime().encode())
            log.flush()
            self.proc = subprocess.Popen([doptd_path(), "--config", self.config],
                                         stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                         env=clean_env(), start_new_session=True)
        return self.proc

    def start(self, timeout=10):
        """Starts doptd and waits until `dopt list` answers."""
        self.spawn()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError("doptd exited with %s at start:\n%s"
                                     % (self.proc.returncode, tail(self.log)))
            rc, _, _ = self.dopt("list", timeout=5)
            if rc == 0:
                return self
            if time.monotonic() > deadline:
                raise AssertionError("doptd did not answer `dopt list` within %ss:\n%s"
                                     % (timeout, tail(self.log)))
            time.sleep(0.1)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def kill9(self):
        if self.running():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def terminate(self, timeout=10):
        """SIGTERM and wait; returns the exit status (negative: a signal)."""
        if self.running():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("doptd did not exit within %ss of SIGTERM" % timeout)
        return self.proc.returncode if self.proc else None

    def restart(self):
        if self.running():
            self.terminate()
        return self.start()

    def stop(self):
        """Teardown: never raises, never leaves the process behind."""
        if self.running():
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(5)
            except Exception:
                pass
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()

    def log_text(self):
        try:
            with open(self.log, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    # -- CLI --------------------------------------------------------------

    def dopt(self, *args, check=None, cwd=None, timeout=60, socket_path=None):
        """Runs `dopt --socket S ARGS...`; returns (exit code, stdout, stderr).
        check=True asserts exit 0; check=<int> asserts that exit code."""
        cmd = [dopt_path(), "--socket", socket_path or self.socket] + [str(a) for a in args]
        try:
            p = subprocess.run(cmd, capture_output=True, cwd=cwd, timeout=timeout,
                               env=clean_env(), stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            raise AssertionError("%s did not return within %ss (stdout %r, stderr %r)"
                                 % (" ".join(cmd), timeout, e.stdout, e.stderr))
        out, err = p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
        if check is not None:
            want = 0 if check is True else check
            if p.returncode != want:
                raise AssertionError("%s: exit %d, expected %d\nstdout: %s\nstderr: %s"
                                     % (" ".join(cmd[3:]), p.returncode, want, out, err))
        return p.returncode, out, err

    def add(self, *args, **kw):
        """`dopt add ARGS` that must succeed; returns the job id (the last line)."""
        _, out, _ = self.dopt("add", *args, check=True, **kw)
        lines = out.strip().splitlines()
        job_id = lines[-1].strip() if lines else ""
        if not UUID_RE.match(job_id):
            raise AssertionError("dopt add: last line is not a job id: %r" % out)
        return job_id

    def status(self, job_id):
        rc, out, err = self.dopt("status", job_id, "--json", timeout=20)
        if rc != 0:
            raise AssertionError("dopt status %s --json: exit %d: %s" % (job_id, rc, err))
        try:
            return json.loads(out)
        except ValueError:
            raise AssertionError("dopt status --json printed no JSON: %r" % out)

    def jobs(self):
        _, out, _ = self.dopt("list", "--json", check=True)
        return json.loads(out)

    def job_for(self, local_name):
        """The job object whose first file is `local_name` (newest first)."""
        for j in reversed(self.jobs()):
            if any(f.get("local_name") == local_name for f in j.get("files", [])):
                return j
        raise AssertionError("no job with local_name %s in `dopt list --json`" % local_name)

    def wait_state(self, job_id, states, timeout=60, seen=None):
        """Polls status every 0.1 s until its state is in `states`; returns the
        status. `seen`, a list, collects each distinct state in order."""
        if isinstance(states, str):
            states = (states,)
        deadline = time.monotonic() + timeout
        st = None
        while True:
            st = self.status(job_id)
            if seen is not None and (not seen or seen[-1] != st["state"]):
                seen.append(st["state"])
            if st["state"] in states:
                return st
            if time.monotonic() > deadline:
                raise AssertionError("job %s: state %r after %ss, wanted one of %s "
                                     "(states seen: %s)\nstatus: %s"
                                     % (job_id, st["state"], timeout, states, seen,
                                        json.dumps(st, indent=1)))
            time.sleep(0.1)

    def wait_bytes(self, job_id, at_least, timeout=60):
        """Polls until bytes_transferred >= at_least; returns the status."""
        deadline = time.monotonic() + timeout
        while True:
            st = self.status(job_id)
            if st["bytes_transferred"] >= at_least:
                return st
            if st["state"] in ("error", "cancelled"):
                raise AssertionError("job ended while waiting for bytes: %s" % json.dumps(st))
            if time.monotonic() > deadline:
                raise AssertionError("job %s: %d bytes after %ss, wanted %d (state %s)"
                                     % (job_id, st["bytes_transferred"], timeout, at_least,
                                        st["state"]))
            time.sleep(0.1)


class Sandbox:
    """One temporary directory and every process started in it."""

    def __init__(self, name="dopt-it-"):
        self.dir = tempfile.mkdtemp(prefix=name)
        self.children = []  # objects with stop()
        self.agents = []

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def nginx(self, docroot, slow_rate="2m", name="nginx"):
        n = Nginx(self.path(name), docroot, slow_rate)
        self.children.append(n)
        return n.start()

    def fault_origin(self, docroot, name="origin"):
        o = FaultOrigin(self.path(name), docroot)
        self.children.append(o)
        return o.start()

    def agent(self, extra_toml="", name="agent", start=True, state_dir=None):
        a = Agent(self.path(name), extra_toml, state_dir=state_dir)
        self.children.append(a)
        self.agents.append(a)
        return a.start() if start else a

    def report(self):
        parts = ["kept %s" % self.dir]
        for a in self.agents:
            parts.append("---- tail of %s ----\n%s" % (a.log, tail(a.log, 60)))
        return "\n".join(parts)

    def close(self, keep=False):
        for c in reversed(self.children):
            try:
                c.stop()
            except Exception as e:  # teardown must go on
                sys.stderr.write("teardown: %r\n" % e)
        self.children = []
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)


def test_failed(tc):
    """In tearDown: did this test fail or error so far? (Python 3.11 records
    the failure in the result before tearDown; older ones clear
    _outcome.success instead.)"""
    outcome = getattr(tc, "_outcome", None)
    result = getattr(outcome, "result", None)
    if any(t is tc for t, _ in getattr(result, "skipped", [])):
        return False
    if not getattr(outcome, "success", True):
        return True
    return any(t is tc for t, _ in
               list(getattr(result, "failures", [])) + list(getattr(result, "errors", [])))


class IntegrationTest(unittest.TestCase):
    """Base class: self.sb (a Sandbox), self.www (a docroot inside it)."""

    def setUp(self):
        build_dir()  # skips when DOPT_BUILD_DIR is unset
        for exe in (doptd_path(), dopt_path()):
            if not os.access(exe, os.X_OK):
                self.fail("missing binary %s (build doptd and dopt_cli)" % exe)
        self.sb = Sandbox("dopt-it-%s-" % self._testMethodName[:40])
        # Runs also when a subclass's setUp fails after starting a child
        # (tearDown does not then): stops the children and keeps the folder.
        # After tearDown, and the test's own cleanups (an unmount), it
        # removes what tearDown could not unless the test failed.
        self.addCleanup(lambda: self.sb.close(keep=getattr(self, "_keep_sandbox", True)))
        self.www = self.sb.path("www")
        os.makedirs(self.www)
        self.agent = None

    def tearDown(self):
        failed = test_failed(self)
        self._keep_sandbox = failed
        self.sb.close(keep=failed)
        if failed:
            sys.stderr.write("\n" + self.sb.report() + "\n")

    # shortcuts to the test's main agent
    def start_agent(self, extra_toml=""):
        self.agent = self.sb.agent(extra_toml)
        return self.agent

    def dopt(self, *args, **kw):
        return self.agent.dopt(*args, **kw)

    def status(self, job_id):
        return self.agent.status(job_id)

    def wait_state(self, job_id, states, timeout=60, seen=None):
        return self.agent.wait_state(job_id, states, timeout, seen)

    def dest(self, name="dest"):
        """A fresh, empty destination folder."""
        d = self.sb.path(name)
        os.makedirs(d, exist_ok=True)
        return d

    def assertFileSha(self, path, sha, msg=None):
        self.assertTrue(os.path.exists(path), msg or "%s does not exist" % path)
        self.assertEqual(sha256_file(path), sha, msg or "%s differs from the origin" % path)


class OtherUsersTest(IntegrationTest):
    """Base class of tests where other local users meet a root-run agent:
    self.nobody and self.daemon (passwd entries; daemon is uid 1). Skips
    with `root_reason` when not root, and when either account is missing.
    The sandbox folder is 0755, so every user can walk to what is in it."""

    root_reason = "the test runs processes as other users: run it as root"

    def setUp(self):
        if not IS_ROOT:
            self.skipTest(self.root_reason)
        try:
            self.nobody = pwd.getpwnam("nobody")
            self.daemon = pwd.getpwnam("daemon")
        except KeyError:
            self.skipTest("needs the accounts 'nobody' and 'daemon'")
        super().setUp()
        os.chmod(self.sb.dir, 0o755)
