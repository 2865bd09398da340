#!/usr/bin/env python3
"""fault_origin.py: an HTTP/1.1 origin that misbehaves on purpose.

It serves the files of a docroot with correct Range support (206 and
Content-Range, 416 when unsatisfiable), ETag, Last-Modified,
Accept-Ranges: bytes and If-Range. Every response carries
"Connection: close" (one request per connection). Listens on 127.0.0.1 only.

    python3 fault_origin.py --docroot DIR [--port N]

The first line on stdout is "PORT <n>" (the port chosen when --port is 0,
the default), flushed at once.

Behaviour is chosen by the first path segments; FILE is a path inside the
docroot. "Per path" counters are keyed by the whole request path (query
excluded), so two tests that use different file names never share a counter.

  /FILE                        plain, well-behaved static file
  /status/CODE/FILE            always answers CODE (403, 404, 500, ...)
  /fail/N/CODE/FILE            the first N requests answer CODE (503, 429, ...),
                               then FILE normally. ?retry_after=S adds
                               "Retry-After: S" (429 always gets one, default 1);
                               ?retry_after_date=S sends it as the HTTP-date
                               S seconds from now instead
  /reset/K/FILE                the first response whose body would exceed K
                               bytes sends K bytes, then resets the connection
                               (RST); later requests are normal
  /reset-each/K/FILE           every response sends at most K body bytes and
                               then resets (a resuming client gains K a time)
  /drop/K/FILE                 like /reset/ but closes cleanly (FIN), so the
                               body is short of its Content-Length
  /stall/K/FILE                sends the headers and K body bytes, then hangs
                               without closing (until the client goes away)
  /trickle/S/FILE              sends the body 1 byte every S seconds (float)
  /changing/K/SIZE/NAME        generated content, no docroot file: version A
                               (ETag "a") until a response of A has been cut
                               after K body bytes (FIN), version B (ETag "b")
                               from then on. Short bodies (<= K bytes, e.g. a
                               "Range: bytes=0-0" probe) are served from A
                               without switching. content(NAME, SIZE, "a"|"b")
                               gives the bytes of each version.
  /norange/FILE                ignores Range and If-Range: always 200 with the
                               whole file, "Accept-Ranges: none"
  /lie/D/FILE                  pretends FILE is D bytes longer than it is:
                               Content-Length / Content-Range use the claimed
                               size, the body stops at the real end of the file
                               and the connection is closed. A negative D
                               claims |D| bytes fewer, and the whole file is
                               sent anyway (the body overruns Content-Length)
  /redirect-loop/FILE          302 to itself, forever
  /redirect/N/FILE             N redirects (302, /redirect/N-1/FILE ...), then
                               FILE
  ?norange=1                   on any of the above: Range ignored as /norange/
                               does (e.g. /reset/K/FILE?norange=1)
  ?noifrange=1                 on any of the above: If-Range ignored, Range
                               honoured (a broken cache: a 206 of whatever
                               version it holds now, e.g. with /changing/)
  ?novalidators=1              on any of the above: no ETag and no Last-Modified
                               (a client cannot resume, it starts over)
  GET /_stats                  JSON: {path: {"requests", "body_bytes", "cuts",
                               "log": [[status, range, if_range, sent], ...],
                               "times": [arrival of each request, seconds
                               (monotonic clock of the origin), log order]}}
                               ("cuts": responses cut short by /reset/,
                               /reset-each/, /drop/ or /changing/)
  GET /_reset                  clears every counter and the stats

body_bytes counts the body bytes handed to the socket for that path (what a
test uses to measure what a client refetched).
"""

import argparse
import email.utils
import hashlib
import json
import os
import random
import select
import socket
import struct
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CHUNK = 64 * 1024


def content(name, size, version):
    """Deterministic bytes of version `version` ("a" or "b") of /changing/ NAME."""
    seed = hashlib.sha256(("%s:%s" % (version, name)).encode()).digest()
    return random.Random(seed).randbytes(size)


class Resource:
    """What a request resolved to: bytes (or a file), validators, claimed size."""

    def __init__(self, data=None, path=None, etag=None, mtime=None):
        self.data = data
        self.path = path
        if path is not None:
            st = os.stat(path)
            self.size = st.st_size
            self.etag = etag or '"%x-%x-%x"' % (st.st_ino, st.st_size, st.st_mtime_ns)
            self.mtime = mtime or st.st_mtime
        else:
            self.size = len(data)
            self.etag = etag
            self.mtime = mtime or 1700000000
        self.claimed_size = self.size

    def read(self, offset, length):
        if self.data is not None:
            return self.data[offset:offset + length]
        with open(self.path, "rb") as f:
            f.seek(offset)
            return f.read(length)


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.counters = {}
        self.stats = {}
        self.stopping = threading.Event()

    def bump(self, key):
        with self.lock:
            self.counters[key] = self.counters.get(key, 0) + 1
            return self.counters[key]

    def get(self, key, default=0):
        with self.lock:
            return self.counters.get(key, default)

    def set(self, key, value):
        with self.lock:
            self.counters[key] = value

    def record(self, path, status, rng, if_range, sent, arrival, cut=False):
        with self.lock:
            s = self.stats.setdefault(path, {"requests": 0, "body_bytes": 0, "cuts": 0,
                                             "log": [], "times": []})
            s["requests"] += 1
            s["body_bytes"] += sent
            s["cuts"] += 1 if cut else 0
            s["log"].append([status, rng, if_range, sent])
            s["times"].append(arrival)

    def snapshot(self):
        with self.lock:
            return json.loads(json.dumps(self.stats))

    def reset(self):
        with self.lock:
            self.counters.clear()
            self.stats.clear()


class ClientGone(Exception):
    pass


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fault-origin/1"

    def log_message(self, fmt, *args):  # quiet unless asked
        if self.server.verbose:
            sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))

    # -- plumbing ---------------------------------------------------------

    @property
    def st(self):
        return self.server.state

    def do_HEAD(self):
        self.handle_request(head=True)

    def do_GET(self):
        self.handle_request(head=False)

    def simple(self, code, body=b"", extra=()):
        body = body if isinstance(body, bytes) else body.encode()
        if code in (204, 304):
            body = b""  # these never have a body
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        self.close_connection = True
        sent = 0
        if self.command != "HEAD":
            self.wfile.write(body)
            sent = len(body)
        self.st.record(self.path_only, code, self.headers.get("Range"),
                       self.headers.get("If-Range"), sent, self.arrival)

    def handle_request(self, head):
        self.close_connection = True
        self.arrival = time.monotonic()
        url = urllib.parse.urlsplit(self.path)
        self.path_only = urllib.parse.unquote(url.path)
        self.query = dict(urllib.parse.parse_qsl(url.query))
        try:
            self.dispatch(head)
        except (BrokenPipeError, ConnectionResetError, ClientGone):
            pass

    def file_resource(self, rel):
        root = self.server.docroot
        full = os.path.realpath(os.path.join(root, rel.lstrip("/")))
        if not full.startswith(root + os.sep) or not os.path.isfile(full):
            return None
        return Resource(path=full)

    def dispatch(self, head):
        p = self.path_only
        parts = p.lstrip("/").split("/")
        if p == "/_stats":
            return self.simple(200, json.dumps(self.st.snapshot()),
                               [("Content-Type", "application/json")])
        if p == "/_reset":
            self.st.reset()
            return self.simple(200, "reset\n")
        kind = parts[0]
        try:
            if kind == "status":
                return self.simple(int(parts[1]), "status %s\n" % parts[1])
            if kind == "fail":
                n, code = int(parts[1]), int(parts[2])
                if self.st.bump(("fail", p)) <= n:
                    extra = []
                    ra = self.query.get("retry_after")
                    if self.query.get("retry_after_date") is not None:
                        ra = email.utils.formatdate(
                            time.time() + float(self.query["retry_after_date"]), usegmt=True)
                    if ra is None and code == 429:
                        ra = "1"
                    if ra is not None:
                        extra.append(("Retry-After", ra))
                    return self.simple(code, "failing %d\n" % code, extra)
                return self.serve(self.file_resource("/".join(parts[3:])), head)
            if kind in ("reset", "reset-each", "drop"):
                k = int(parts[1])
                res = self.file_resource("/".join(parts[2:]))
                once = kind != "reset-each"
                cut = k
                if once and self.st.get(("cut", p)):
                    cut = None
                return self.serve(res, head, cut=cut, rst=(kind != "drop"),
                                  cut_key=("cut", p) if once else None)
            if kind == "stall":
                return self.serve(self.file_resource("/".join(parts[2:])), head,
                                  stall_after=int(parts[1]))
            if kind == "trickle":
                return self.serve(self.file_resource("/".join(parts[2:])), head,
                                  trickle=float(parts[1]))
            if kind == "changing":
                k, size, name = int(parts[1]), int(parts[2]), "/".join(parts[3:])
                if self.st.get(("cut", p)):
                    res = Resource(data=content(name, size, "b"), etag='"b"',
                                   mtime=1700000100)
                    return self.serve(res, head)
                res = Resource(data=content(name, size, "a"), etag='"a"',
                               mtime=1700000000)
                return self.serve(res, head, cut=k, rst=False, cut_key=("cut", p))
            if kind == "redirect-to":
                return self.simple(302, "redirect\n", [
                    ("Location", "%s://127.0.0.1/%s" % (parts[1], "/".join(parts[2:])))])
            if kind in ("huge-header", "not-http"):
                # Recorded first: the client hangs up in the middle.
                self.st.record(self.path_only, 200 if kind == "huge-header" else 0,
                               self.headers.get("Range"), None, 0, self.arrival)
                if kind == "not-http":
                    self.wfile.write(b"SSH-2.0-not-an-http-server\r\n")
                    return None
                self.send_response(200)
                self.send_header("X-Padding", "a" * int(parts[1]))
                self.send_header("Content-Length", "0")
                self.send_header("Connection", "close")
                self.end_headers()
                return None
            if kind == "redirect-loop":
                return self.simple(302, "loop\n", [("Location", p)])
            if kind == "redirect":
                n, rest = int(parts[1]), "/".join(parts[2:])
                if n > 0:
                    return self.simple(302, "redirect\n",
                                       [("Location", "/redirect/%d/%s" % (n - 1, rest))])
                return self.serve(self.file_resource(rest), head)
            if kind == "norange":
                return self.serve(self.file_resource("/".join(parts[1:])), head,
                                  ranges=False)
            if kind == "lie":
                res = self.file_resource("/".join(parts[2:]))
                if res is not None:
                    res.claimed_size = res.size + int(parts[1])
                return self.serve(res, head)
        except (ValueError, IndexError):
            return self.simple(400, "bad behaviour path\n")
        return self.serve(self.file_resource(p), head)

    # -- the static file path, with the faults woven in -------------------

    def parse_range(self, size):
        """None: whole file. (a, b): satisfiable range. "416": unsatisfiable."""
        h = self.headers.get("Range")
        if not h or not h.startswith("bytes=") or "," in h:
            return None
        spec = h[len("bytes="):].strip()
        first, _, last = spec.partition("-")
        try:
            if first == "":
                n = int(last)
                if n <= 0:
                    return "416"
                return (max(0, size - n), size - 1)
            a = int(first)
            b = int(last) if last else size - 1
        except ValueError:
            return None
        if a >= size or b < a:
            return "416"
        return (a, min(b, size - 1))

    def if_range_ok(self, res):
        v = self.headers.get("If-Range")
        if v is None:
            return True
        v = v.strip()
        if v.startswith('"') or v.startswith("W/"):
            return v == res.etag  # strong comparison
        return v == email.utils.formatdate(res.mtime, usegmt=True)

    def serve(self, res, head, cut=None, rst=True, cut_key=None,
              stall_after=None, trickle=None, ranges=True):
        if res is None:
            return self.simple(404, "not found\n")
        size = res.claimed_size
        rng = None
        if self.query.get("norange") == "1":
            ranges = False
        if ranges:
            rng = self.parse_range(size)
            if rng is not None and self.query.get("noifrange") != "1" and not self.if_range_ok(res):
                rng = None
        if rng == "416":
            return self.simple(416, "range not satisfiable\n",
                               [("Content-Range", "bytes */%d" % size)])
        if rng is None:
            status, start, end = 200, 0, size - 1
        else:
            status, (start, end) = 206, rng
        length = end - start + 1 if size > 0 else 0
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        if self.query.get("novalidators") != "1":
            self.send_header("ETag", res.etag)
            self.send_header("Last-Modified", email.utils.formatdate(res.mtime, usegmt=True))
        self.send_header("Accept-Ranges", "bytes" if ranges else "none")
        if status == 206:
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, end, size))
        self.send_header("Connection", "close")
        self.end_headers()
        sent = 0
        cutting = False
        try:
            if head:
                return
            # How much of the body actually goes out.
            real_end = min(end + 1, res.size)  # /lie/: bytes past the real end don't exist
            if res.claimed_size < res.size and end + 1 == size:
                real_end = res.size  # /lie/-D/: the body overruns Content-Length
            todo = max(0, real_end - start)
            cutting = cut is not None and todo > cut
            if cutting:
                todo = cut
            if stall_after is not None:
                todo = min(todo, stall_after)
            pos = start
            while todo > 0:
                if trickle is not None:
                    n = 1
                else:
                    n = min(CHUNK, todo)
                buf = res.read(pos, n)
                if not buf:
                    break
                self.wfile.write(buf)
                sent += len(buf)
                pos += len(buf)
                todo -= len(buf)
                if trickle is not None and todo > 0:
                    self.wait_or_gone(trickle)
            if cutting:
                if cut_key is not None:
                    self.st.set(cut_key, 1)
                # Let the client read what was sent before the connection goes.
                self.wait_or_gone(0.3)
                if rst:
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                               struct.pack("ii", 1, 0))
                self.connection.close()
            elif stall_after is not None:
                self.wait_or_gone(None)
        finally:
            self.st.record(self.path_only, status, self.headers.get("Range"),
                           self.headers.get("If-Range"), sent, self.arrival, cut=cutting)

    def wait_or_gone(self, seconds):
        """Sleeps `seconds` (None: until the server stops); raises ClientGone
        as soon as the client closes its end."""
        deadline = None if seconds is None else time.monotonic() + seconds
        while not self.server.state.stopping.is_set():
            left = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
            if left <= 0:
                return
            r, _, _ = select.select([self.connection], [], [], left)
            if r:
                try:
                    data = self.connection.recv(4096, socket.MSG_PEEK)
                except OSError:
                    raise ClientGone()
                if not data:
                    raise ClientGone()
                # The client sent more (it should not); discard it.
                self.connection.recv(len(data))
        raise ClientGone()


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        # Faults we inject (closed sockets) are not worth a traceback.
        if self.verbose:
            super().handle_error(request, client_address)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docroot", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    srv = Server(("127.0.0.1", args.port), Handler)
    srv.docroot = os.path.realpath(args.docroot)
    srv.state = State()
    srv.verbose = args.verbose
    print("PORT %d" % srv.server_address[1], flush=True)
    try:
        srv.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        srv.state.stopping.set()
        srv.server_close()


if __name__ == "__main__":
    main()
