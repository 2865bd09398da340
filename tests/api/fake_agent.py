#!/usr/bin/env python3
"""A stand-in for doptd that speaks docs/protocol.md with canned behaviour.

For checking libdopt and the dopt CLI before (or without) the real agent.
Stdlib only; listens on a Unix socket; never touches the network. "Transfers"
are simulated: bytes count up, and on completion the destination file is
written with a fixed pattern (so `dopt get` finds it in place).

    fake_agent.py --socket /tmp/x.sock [--protocol N] [--mode ok|fail403|slow]

Modes: ok (each job finishes in about a second), fail403 (each job fails
with a REMOTE_FILE 403), slow (each job takes about 30 s).
"""
import argparse
import json
import os
import socket
import struct
import threading
import time
import uuid

MAX_FRAME = 1024 * 1024
E = dict(INVALID_ARG=-1, PROTOCOL=-4, VERSION=-5, NOT_FOUND=-6, INVALID_STATE=-7,
         INVALID_URL=-8, UNSUPPORTED_SCHEME=-9, RELATIVE_PATH=-10, TIMEOUT=-12,
         TOO_LARGE=-13)
ENDED = ("transferred", "acknowledged", "error", "cancelled")
FILE_SIZE = 300000


class Store:
    """All jobs, guarded by one condition variable (wait sleeps on it)."""

    def __init__(self, mode):
        self.mode = mode
        self.jobs = {}
        self.cv = threading.Condition()

    def new_job(self, name):
        now = int(time.time())
        job = dict(id=str(uuid.uuid4()), display_name=name or "", owner_uid=os.getuid(),
                   state="suspended", priority=2, mode="http_only", auto_complete=False,
                   no_progress_timeout=1209600, created=now, modified=now,
                   transfer_completed=0, bytes_total=0, bytes_transferred=0,
                   bytes_from_peers=0, bytes_from_origin=0, files=[], error=None)
        self.jobs[job["id"]] = job
        return job

    def set_state(self, job, state):
        job["state"] = state
        job["modified"] = int(time.time())
        self.cv.notify_all()


def run_transfer(store, job_id):
    """Simulates one job from queued to its end, by the store's mode."""
    steps = 300 if store.mode == "slow" else 10
    with store.cv:
        job = store.jobs[job_id]
        store.set_state(job, "connecting")
        for f in job["files"]:
            f["bytes_total"] = FILE_SIZE
        job["bytes_total"] = FILE_SIZE * len(job["files"])
    time.sleep(0.1)
    for i in range(1, steps + 1):
        with store.cv:
            if job["state"] not in ("connecting", "transferring"):
                return  # suspended or cancelled meanwhile
            if store.mode == "fail403":
                f = job["files"][0]
                job["error"] = dict(context="remote_file", code=403, protocol="http",
                                    description="HTTP 403 Forbidden from " + f["remote_name"],
                                    time=int(time.time()), file=dict(f))
                store.set_state(job, "error")
                return
            store.set_state(job, "transferring")
            for f in job["files"]:
                f["bytes_transferred"] = FILE_SIZE * i // steps
            done = sum(f["bytes_transferred"] for f in job["files"])
            job["bytes_transferred"] = job["bytes_from_origin"] = done
        time.sleep(0.1)
    with store.cv:
        job["transfer_completed"] = int(time.time())
        store.set_state(job, "transferred")
    if job["auto_complete"]:
        time.sleep(0.2)
        with store.cv:
            complete(store, job)


def complete(store, job):
    for f in job["files"]:
        with open(f["local_name"], "wb") as out:
            out.write(b"x" * f["bytes_transferred"])
    store.set_state(job, "acknowledged")


def handle(store, req):
    """Returns the reply for one request (after hello)."""
    op = req["op"]
    if op == "create":
        return dict(rc=0, job=store.new_job(req.get("display_name")))
    if op == "list":
        return dict(rc=0, jobs=list(store.jobs.values()))
    job = store.jobs.get(req.get("job"))
    if job is None:
        return dict(rc=E["NOT_FOUND"], message="no such job: %s" % req.get("job"))
    if op in ("open", "status"):
        return dict(rc=0, job=job)
    if op == "add_file":
        url, path = req.get("url", ""), req.get("local_path", "")
        if not path.startswith("/"):
            return dict(rc=E["RELATIVE_PATH"], message="not absolute: " + path)
        if not url.startswith(("http://", "https://")):
            return dict(rc=E["UNSUPPORTED_SCHEME"], message="not http(s): " + url)
        if job["state"] not in ("suspended", "queued"):
            return dict(rc=E["INVALID_STATE"], message="job is " + job["state"])
        job["files"].append(dict(local_name=path, remote_name=url, bytes_total=-1,
                                 bytes_transferred=0))
        job["bytes_total"] = -1
        return dict(rc=0, job=job)
    if op == "set":
        for key in ("priority", "display_name", "no_progress_timeout", "auto_complete"):
            if key in req:
                job[key] = req[key]
        return dict(rc=0, job=job)
    return change_state(store, job, op, req)


def change_state(store, job, op, req):
    s = job["state"]
    if op == "resume":
        if s not in ("suspended", "error", "transient_error"):
            return dict(rc=E["INVALID_STATE"], message="cannot resume a job that is " + s)
        job["error"] = None
        store.set_state(job, "queued")
        threading.Thread(target=run_transfer, args=(store, job["id"]), daemon=True).start()
    elif op == "suspend":
        if s not in ("queued", "connecting", "transferring", "transient_error"):
            return dict(rc=E["INVALID_STATE"], message="cannot suspend a job that is " + s)
        store.set_state(job, "suspended")
    elif op == "cancel":
        if s in ("acknowledged", "cancelled"):
            return dict(rc=E["INVALID_STATE"], message="cannot cancel a job that is " + s)
        store.set_state(job, "cancelled")
    elif op == "complete":
        if s not in ("transferred", "error"):
            return dict(rc=E["INVALID_STATE"], message="cannot complete a job that is " + s)
        complete(store, job)
    elif op == "wait":
        timeout = req.get("timeout_ms", -1)
        deadline = None if timeout < 0 else time.monotonic() + timeout / 1000.0
        while job["state"] not in ENDED:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return dict(rc=E["TIMEOUT"], message="timed out", job=job)
            store.cv.wait(left)
    else:
        return dict(rc=E["PROTOCOL"], message="unknown op " + op)
    return dict(rc=0, job=job)


def read_frame(conn):
    hdr = b""
    while len(hdr) < 4:
        chunk = conn.recv(4 - len(hdr))
        if not chunk:
            return None
        hdr += chunk
    (n,) = struct.unpack(">I", hdr)
    if n > MAX_FRAME:
        raise OverflowError(n)
    body = b""
    while len(body) < n:
        chunk = conn.recv(n - len(body))
        if not chunk:
            return None
        body += chunk
    return body


def send(conn, obj):
    data = json.dumps(obj).encode()
    conn.sendall(struct.pack(">I", len(data)) + data)


def serve(conn, store, protocol):
    try:
        serve_requests(conn, store, protocol)
    except OSError:
        pass  # the client went away (e.g. `dopt get` detached mid-wait)


def serve_requests(conn, store, protocol):
    greeted = False
    with conn:
        while True:
            try:
                body = read_frame(conn)
            except OverflowError:
                send(conn, dict(seq=0, rc=E["TOO_LARGE"], message="frame too large"))
                return
            if body is None:
                return
            try:
                req = json.loads(body)
                seq = req["seq"]
                op = req["op"]
            except (ValueError, KeyError, TypeError):
                send(conn, dict(seq=0, rc=E["PROTOCOL"], message="malformed request"))
                continue
            if op == "hello":
                if req.get("protocol") != protocol:
                    send(conn, dict(seq=seq, rc=E["VERSION"], protocol=protocol,
                                    message="client speaks %s, agent speaks %d"
                                    % (req.get("protocol"), protocol)))
                    return
                greeted = True
                reply = dict(rc=0, protocol=protocol, agent="fake_agent", uid=os.getuid())
            elif not greeted:
                reply = dict(rc=E["PROTOCOL"], message="hello first")
            else:
                with store.cv:
                    reply = handle(store, req)
            reply["seq"] = seq
            send(conn, reply)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--socket", required=True)
    ap.add_argument("--protocol", type=int, default=1)
    ap.add_argument("--mode", choices=("ok", "fail403", "slow"), default="ok")
    args = ap.parse_args()
    if os.path.exists(args.socket):
        os.unlink(args.socket)
    store = Store(args.mode)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(args.socket)
    srv.listen(16)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=serve, args=(conn, store, args.protocol), daemon=True).start()


if __name__ == "__main__":
    main()
