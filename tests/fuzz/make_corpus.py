#!/usr/bin/env python3
"""Writes the seed corpora of the fuzzers into tests/fuzz/corpus/<target>/.

Deterministic: running it again rewrites the same files. The seeds are small
valid and near-valid inputs; crash inputs found by fuzzing are added by hand
(named crash-*) and are not touched here.

  ipc/       byte streams on the IPC socket: request frames from
             docs/protocol.md, and reply frames in the order fuzz_ipc's
             client reads them (list, open, status, wait, cache_list,
             peer_stats, cache_clear)
  config/    the shipped config/doptd.conf and variants
  metainfo/  small .torrent files: v1, v2, hybrid, and refused ones;
             published-hybrid.torrent is `dopt publish` output (not
             written here: it needs a build)
"""
import hashlib
import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CORPUS = os.path.join(HERE, "corpus")

# The tests' shared bencode encoder (tests/integration/bencode.py): this is a
# standalone script, so put its folder on the path first.
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import bencode  # noqa: E402


def write(target, name, data):
    folder = os.path.join(CORPUS, target)
    os.makedirs(folder, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


# ---- IPC -----------------------------------------------------------------

def frame(obj):
    body = obj if isinstance(obj, (bytes, str)) else json.dumps(obj, separators=(",", ":"))
    if isinstance(body, str):
        body = body.encode()
    return struct.pack(">I", len(body)) + body


JOB_ID = "7d0c3e0e-1b9e-4f5c-9d0b-2f3c8a6e4b11"
JOB = {
    "id": JOB_ID, "display_name": "big.iso", "owner_uid": 1000,
    "state": "transferring", "priority": 2, "mode": "peer_assisted",
    "auto_complete": False, "no_progress_timeout": 1209600,
    "created": 1795000000, "modified": 1795000100, "transfer_completed": 0,
    "bytes_total": 1073741824, "bytes_transferred": 536870912,
    "bytes_from_peers": 0, "bytes_from_origin": 536870912,
    "headers": ["Authorization: Bearer x"],
    "files": [{"local_name": "/home/ann/big.iso", "remote_name": "https://host/big.iso",
               "bytes_total": 1073741824, "bytes_transferred": 536870912,
               "completed": False, "metainfo": "origin", "info_hash": "9f3c"}],
    "error": None,
}
JOB_ERROR = dict(JOB, state="error", files=[], error={
    "context": "remote_file", "code": 403, "description": "HTTP 403 Forbidden",
    "protocol": "https", "time": 1795000100,
    "file": {"local_name": "/home/ann/big.iso", "remote_name": "https://host/big.iso",
             "bytes_total": -1, "bytes_transferred": 0}})


def ipc_seeds():
    requests = [
        {"op": "hello", "seq": 1, "protocol": 1, "client": "libdopt 0.1.0"},
        {"op": "create", "seq": 2, "display_name": "big.iso"},
        {"op": "add_file", "seq": 3, "job": JOB_ID, "url": "https://host/big.iso",
         "local_path": "/home/ann/big.iso"},
        {"op": "set", "seq": 4, "job": JOB_ID, "priority": 1, "display_name": "x",
         "no_progress_timeout": 60, "auto_complete": True, "headers": ["A: b"],
         "file_sha256": {"index": 0, "sha256": "0" * 64},
         "file_metainfo": {"index": 0, "url": "https://host/big.iso.torrent"}},
        {"op": "set", "seq": 5, "job": JOB_ID,
         "file_metainfo": {"index": 0, "base64": "ZDQ6aW5mb2RlZQ=="}},
        {"op": "resume", "seq": 6, "job": JOB_ID},
        {"op": "list", "seq": 7, "after": JOB_ID, "limit": 2},
        {"op": "wait", "seq": 8, "job": JOB_ID, "timeout_ms": 1000},
        {"op": "subscribe", "seq": 9, "job": JOB_ID, "notify": 15, "percent": 5, "seconds": 1},
        {"op": "ack", "seq": 10, "notification": 42, "rc": 0},
        {"op": "cache_list", "seq": 11},
        {"op": "peer_stats", "seq": 12},
    ]
    write("ipc", "request-hello", frame(requests[0]))
    write("ipc", "request-session", b"".join(frame(r) for r in requests))
    write("ipc", "request-set", frame(requests[3]))
    write("ipc", "request-not-json", frame(b"{\"op\":\"hello\",") + frame(b"[1,2]"))
    write("ipc", "request-no-seq", frame({"op": "status", "job": JOB_ID}))
    write("ipc", "request-too-large", struct.pack(">I", 1024 * 1024 + 1) + b"{}")
    write("ipc", "request-partial", frame(requests[0]) + struct.pack(">I", 100) + b"{\"op\"")
    write("ipc", "request-empty-frame", struct.pack(">I", 0) + frame({"op": "hello", "seq": 1}))

    # Replies, in the order fuzz_ipc's client asks: list, open, status, wait,
    # cache_list, peer_stats, cache_clear. seq matches (1..7) when one list
    # page is read.
    replies = [
        {"seq": 1, "rc": 0, "jobs": [JOB, JOB_ERROR], "more": False},
        {"seq": 2, "rc": 0, "job": JOB},
        {"seq": 3, "rc": 0, "job": JOB_ERROR},
        {"seq": 4, "rc": -12, "message": "the wait timed out", "job": JOB},
        {"seq": 5, "rc": 0, "entries": [{"info_hash": "9f3c", "name": "big.iso", "size": 1,
                                         "origin_url": "https://host/big.iso", "owner_uid": 0,
                                         "complete": True, "seeding": False, "in_use": False,
                                         "last_used": 1795000000}]},
        {"seq": 6, "rc": 0, "peering": True, "bytes_to_peers": 10, "torrents": 1,
         "connected_peers": 2, "listen_port": 7881},
        {"seq": 7, "rc": 0, "removed": 1, "bytes": 4096, "kept_in_use": 0},
    ]
    write("ipc", "reply-session", b"".join(frame(r) for r in replies))
    write("ipc", "reply-list", frame(replies[0]))
    # Two pages: more, then the rest (seq 2); then open's reply (seq 3).
    pages = [dict(replies[0], jobs=[JOB], more=True),
             {"seq": 2, "rc": 0, "jobs": [JOB_ERROR], "more": False},
             {"seq": 3, "rc": 0, "job": dict(JOB, headers=["A: b", "C: d"])}]
    write("ipc", "reply-list-pages", b"".join(frame(p) for p in pages))
    # Strings with escapes and UTF-8, members in another order, nulls.
    odd = ('{"more":null,"rc":0,"seq":1,"jobs":[{"state":"queued","files":[{"metainfo":null,'
           '"local_name":"/tmp/\\u00e9t\\u00e9 \\ud83d\\ude00 \\"q\\" \\\\ \\/",'
           '"remote_name":"http://h/\u00e9","bytes_total":1e3,"bytes_transferred":2.0}],'
           '"id":"a","error":{"file":null,"context":"integrity","code":-17,"x":[{},[]]},'
           '"priority":null,"unknown":{"a":[1,true,false,null,-0.5e-3]}}]}')
    write("ipc", "reply-list-escapes", frame(odd))
    write("ipc", "reply-error", frame({"seq": 1, "rc": -6, "message": "no job x"}))
    # Nesting past libdopt's limit (128) in a job read as a tree: the shape
    # of the stack overflow found while fuzzing (the crash itself needs
    # ~1 MB, more than -max_len; tests/api/api_json_test.cpp has it).
    deep = "[" * 200 + "]" * 200
    write("ipc", "reply-deep-job", frame('{"seq":1,"rc":0,"jobs":[],"more":false}') +
          frame('{"seq":2,"rc":0,"job":{"id":"x","state":"queued","d":%s}}' % deep) +
          frame('{"seq":3,"rc":0,"job":{"id":"x","state":"queued","d":%s}}' % ("[" * 100 + "]" * 100)))
    write("ipc", "reply-event", frame({"event": "error", "notification": 42, "job": JOB_ERROR}))


# ---- config --------------------------------------------------------------

def config_seeds():
    with open(os.path.join(ROOT, "config", "doptd.conf"), "rb") as f:
        write("config", "doptd.conf", f.read())
    write("config", "empty.conf", "")
    write("config", "all-keys.conf", """\
state_dir = "/var/lib/dopt"
cache_dir = "/var/cache/dopt"
socket = "/run/dopt/doptd.sock"
log_level = "debug"
user = "dopt"

[jobs]
max_jobs = 4
max_connections = 8
no_progress_timeout = 1209600
retention = 0
max_job_age = 2592000
retry_min_delay = 5
retry_max_delay = 600
sync_on_complete = false

[http]
proxy = "http://proxy.example:3128"
user_agent = "dopt/0.1"
connect_timeout = 30
low_speed_time = 60
max_rate_foreground = 0
max_rate_background = 1_000_000
ca_file = "/etc/ssl/extra.pem"

[p2p]
enabled = true
listen = "10.0.0.11:7881"
lan_discovery = false
peers = ["10.0.0.12:7881", "[fd00::12]:7881"]
allowed_networks = ["10.0.0.0/24", "fd00::/64"]
metainfo_probe = true
metainfo_suffix = ".torrent"
origin_requests = 4
max_upload_rate = 0
max_download_rate = 0
throttle_lan = true

[cache]
max_size = 10737418240
max_disk_percent = 10
max_age = 259200
min_file_size = 1048576
""")
    write("config", "inline-tables.conf",
          'jobs = { max_jobs = 2, retry_min_delay = 9, retry_max_delay = 3 }\n'
          'p2p.listen = "[::1]:1"\n'
          'p2p.peers = [ "1.2.3.4:65535", 5 ]\n')
    write("config", "bad-values.conf",
          'log_level = "loud"\nsocket = "relative"\n[jobs]\nmax_jobs = 0\n'
          '[http]\nuser_agent = "a\\u0007b"\n[p2p]\nlisten = "0.0.0.0:7881"\n'
          'allowed_networks = ["10.0.0.0/33", "::/129", "x/1"]\n')
    write("config", "unknown-keys.conf",
          'colour = "blue"\n[jobs]\nspeed = 1\n[cache]\nmax_size = -1\n[extra]\na = 1\n')
    write("config", "syntax-error.conf", '[jobs\nmax_jobs = = 4\n"unterminated\n')
    write("config", "types.conf",
          'state_dir = 1979-05-27T07:32:00Z\ncache_dir = [1, 2.5, true]\n'
          'user = """\nmulti\nline"""\n[p2p]\nenabled = "yes"\nmetainfo_suffix = \'? #\'\n'
          '[[cache]]\nmax_age = 1e3\n')


# ---- metainfo ------------------------------------------------------------

BLOCK = 16 * 1024


def merkle_root(leaves, count):
    """Root over `leaves` padded with zero hashes to `count` (a power of two)."""
    layer = leaves + [b"\0" * 32] * (count - len(leaves))
    while len(layer) > 1:
        layer = [hashlib.sha256(layer[i] + layer[i + 1]).digest() for i in range(0, len(layer), 2)]
    return layer[0]


def pow2(n):
    p = 1
    while p < n:
        p *= 2
    return p


def v2_file(data, piece_length):
    """(pieces root, piece layer or b"") of one file, BEP 52."""
    blocks = [hashlib.sha256(data[i:i + BLOCK]).digest() for i in range(0, len(data), BLOCK)]
    per_piece = piece_length // BLOCK
    if len(data) <= piece_length:
        return merkle_root(blocks, pow2(len(blocks))), b""
    pieces = [merkle_root(blocks[i:i + per_piece], per_piece)
              for i in range(0, len(blocks), per_piece)]
    pad = merkle_root([], per_piece)  # a piece of zeros past the end
    layer = pieces + [pad] * (pow2(len(pieces)) - len(pieces))
    while len(layer) > 1:
        layer = [hashlib.sha256(layer[i] + layer[i + 1]).digest() for i in range(0, len(layer), 2)]
    return layer[0], b"".join(pieces)


def v1_pieces(data, piece_length):
    return b"".join(hashlib.sha1(data[i:i + piece_length]).digest()
                    for i in range(0, len(data), piece_length))


def torrent(data, name="file.bin", piece_length=BLOCK, v1=True, v2=False, extra=None,
            layers=True):
    info = {"name": name, "piece length": piece_length}
    top = {"announce": "http://tracker.example/announce",
           "url-list": ["http://origin.example/" + name], "created by": "dopt"}
    if v1:
        info["length"] = len(data)
        info["pieces"] = v1_pieces(data, piece_length)
    if v2:
        root, layer = v2_file(data, piece_length)
        info["meta version"] = 2
        info["file tree"] = {name: {"": {"length": len(data), "pieces root": root}}}
        if layers:  # libtorrent wants the key even when empty (files of one piece)
            top["piece layers"] = {root: layer} if layer else {}
    if extra:
        info.update(extra)
    top["info"] = info
    return bencode.encode(top)


def metainfo_seeds():
    small = bytes(range(256)) * 40          # 10 KiB: one piece
    two = bytes((i * 7) & 255 for i in range(40000))  # 3 pieces of 16 KiB
    write("metainfo", "v1-one-piece.torrent", torrent(small))
    write("metainfo", "v1-three-pieces.torrent", torrent(two))
    write("metainfo", "v2-one-piece.torrent", torrent(small, v1=False, v2=True))
    write("metainfo", "hybrid-three-pieces.torrent", torrent(two, v2=True))
    write("metainfo", "v2-no-piece-layers.torrent", torrent(two, v1=False, v2=True, layers=False))
    write("metainfo", "v2-one-piece-no-layers-key.torrent",
          torrent(small, v1=False, v2=True, layers=False))
    # Refused: several files, a symbolic link, an empty file, no info.
    multi = {"name": "dir", "piece length": BLOCK, "pieces": v1_pieces(small + small, BLOCK),
             "files": [{"length": len(small), "path": ["a"]},
                       {"length": len(small), "path": ["b"]}]}
    write("metainfo", "v1-two-files.torrent", bencode.encode({"info": multi}))
    padded = dict(multi, files=[{"length": len(small), "path": ["a"]},
                                {"length": BLOCK - len(small), "path": [".pad", "6144"],
                                 "attr": "p"}])
    padded["pieces"] = v1_pieces(small + b"\0" * (BLOCK - len(small)), BLOCK)
    write("metainfo", "v1-pad-file.torrent", bencode.encode({"info": padded}))
    write("metainfo", "v1-symlink.torrent",
          torrent(small, extra={"attr": "l", "symlink path": ["target"]}))
    write("metainfo", "v1-empty-file.torrent", bencode.encode({"info": {
        "name": "e", "piece length": BLOCK, "length": 0, "pieces": b""}}))
    write("metainfo", "no-info.torrent", bencode.encode({"announce": "http://t/a"}))
    write("metainfo", "not-bencoded.torrent", b"<html>404</html>")


def main():
    ipc_seeds()
    config_seeds()
    metainfo_seeds()
    return 0


if __name__ == "__main__":
    sys.exit(main())
