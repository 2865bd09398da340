"""A small hostile BitTorrent peer for the reliability tests (issue 5), in
Python 3 standard library only. It speaks just enough of BEP 3 (handshake,
bitfield, interested, choke/unchoke, request, piece) and BEP 6 (the fast
extension: have all/none, reject, allowed fast are parsed) to sit in a
doptd agent's swarm and misbehave. Nothing here listens or connects
anywhere but the loopback addresses a test gives it.

Contents:
  Metainfo / make_v1_metainfo  -- what a peer needs of a .torrent, read
      and written with tests/integration/bencode.py; the v1 info-hash is the
      SHA-1 of the info dictionary's bytes as they appear in the .torrent
      (so hybrid v1+v2 metainfo from `dopt publish` works).
  HostileListener(ip, metainfo, mode) -- listens on ip:<port>; every peer
      that connects (the agent, which knows it as a static peer) gets:
        "corrupt": a bitfield with every piece; interested -> unchoke;
                   every request answered with wrong bytes;
        "poison":  like corrupt, but only the first block asked of each
                   piece is answered (wrong); the others are rejected (BEP
                   6), so no piece completes from this peer alone;
        "liar":    a bitfield with every piece; interested -> unchoke;
                   requests never answered;
        "choker":  a bitfield with every piece; never unchokes;
        "late":    a bitfield with every piece; keeps the agent choked for
                   `unchoke_after` seconds after it is interested (what a
                   stock client with its upload slots taken does), then
                   unchokes it and answers every request with the real
                   bytes (`content`); a request while choked, or for a
                   piece in `refuse`, is rejected;
        "staller": the handshake, then nothing at all (what it is sent is
                   read and dropped; the socket stays open);
        "claimer": a dopt agent's extension handshake (BEP 10, dopt_claim),
                   have_none, then every second a claim (dopt_claim) on
                   every piece: each piece's first claimant id again (a
                   refresh) and a fresh random one. It never fetches
                   anything, so no claim ever turns into a HAVE.
      connect_in(dst) opens a connection to the agent from the same address
      and behaves the same on it (a banned peer coming back).
      Every connection is recorded (Connection: bytes and messages seen,
      requests, pieces sent, how it ended and when).
  PeerClient(dst, src_ip, info_hash) -- an inbound peer: connects from
      src_ip to the agent, handshakes, and lets a test send messages and see
      what comes back (used to probe a ban, an unknown info-hash,
      out-of-range requests).
  flood(dst, src_ip, ...)  -- hundreds of TCP connections to the agent's
      listen port, half-open (connect, send nothing) or with a handshake,
      opened and closed in rounds.

Run as a script it serves a .torrent in one mode until interrupted:
    python3 hostile_peer.py --torrent F.torrent --listen 127.0.0.3 --mode corrupt
"""

import argparse
import errno
import hashlib
import os
import select
import socket
import struct
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
INTEGRATION_DIR = os.path.join(os.path.dirname(HERE), "integration")
if INTEGRATION_DIR not in sys.path:  # bencode.py, also when run as a script
    sys.path.insert(0, INTEGRATION_DIR)
import bencode  # noqa: E402

PROTOCOL = b"BitTorrent protocol"
# Reserved bytes: the fast extension (BEP 6) only; no extension protocol.
RESERVED = bytes([0, 0, 0, 0, 0, 0, 0, 0x04])
# The same with the extension protocol (BEP 10), for the claimer.
RESERVED_EXTENDED = bytes([0, 0, 0, 0, 0, 0x10, 0, 0x04])
CLAIM_EXTENSION = b"dopt_claim"  # p2p/claims.h
OUR_CLAIM_ID = 3                 # the id we ask the agent to use
PEER_ID_PREFIX = b"-HP0001-"  # + 12 random bytes: libtorrent drops a duplicate peer id


def new_peer_id():
    return PEER_ID_PREFIX + os.urandom(12)

CHOKE, UNCHOKE, INTERESTED, NOT_INTERESTED, HAVE, BITFIELD, REQUEST, PIECE, CANCEL = range(9)
HAVE_ALL, HAVE_NONE, REJECT, ALLOWED_FAST = 14, 15, 16, 17
EXTENDED = 20
MESSAGE_NAMES = {CHOKE: "choke", UNCHOKE: "unchoke", INTERESTED: "interested",
                 NOT_INTERESTED: "not_interested", HAVE: "have", BITFIELD: "bitfield",
                 REQUEST: "request", PIECE: "piece", CANCEL: "cancel", 13: "suggest",
                 HAVE_ALL: "have_all", HAVE_NONE: "have_none", REJECT: "reject",
                 ALLOWED_FAST: "allowed_fast", EXTENDED: "extended", None: "keepalive"}


# ---- metainfo ----------------------------------------------------------------

class Metainfo:
    """What a hostile peer needs of a single-file .torrent."""

    def __init__(self, data):
        start, end = bencode.info_span(data)
        self.info_hash = hashlib.sha1(data[start:end]).digest()  # v1
        info, _ = bencode.decode_at(data, start)
        self.name = info.get(b"name", b"").decode(errors="replace")
        self.piece_length = info[b"piece length"]
        if b"length" in info:
            self.length = info[b"length"]
        else:  # v2-only metainfo is not what these tests use
            raise ValueError("no v1 length in the info dictionary")
        self.num_pieces = (self.length + self.piece_length - 1) // self.piece_length

    @classmethod
    def load(cls, path):
        with open(path, "rb") as f:
            return cls(f.read())

    def piece_size(self, index):
        if index == self.num_pieces - 1:
            return self.length - index * self.piece_length
        return self.piece_length

    def bitfield(self, pieces=None):
        """The BEP 3 bitfield of `pieces` (indices; None: every piece)."""
        n = self.num_pieces
        bits = bytearray((n + 7) // 8)
        for i in (range(n) if pieces is None else pieces):
            bits[i // 8] |= 0x80 >> (i % 8)
        return bytes(bits)


def make_v1_metainfo(content, name, piece_length=256 * 1024):
    """Bencoded v1 single-file metainfo for `content` (bytes) under `name`
    (any bytes: tests use it for names that try to leave the save path)."""
    pieces = b"".join(hashlib.sha1(content[i:i + piece_length]).digest()
                      for i in range(0, len(content), piece_length))
    return bencode.encode({"info": {"length": len(content), "name": name,
                                    "piece length": piece_length, "pieces": pieces}})


# ---- wire --------------------------------------------------------------------

def handshake(info_hash, peer_id, reserved=RESERVED):
    return bytes([len(PROTOCOL)]) + PROTOCOL + reserved + info_hash + peer_id


def message(msg_id, payload=b""):
    return struct.pack(">IB", 1 + len(payload), msg_id) + payload


def request_msg(index, begin, length):
    return message(REQUEST, struct.pack(">III", index, begin, length))


def recv_exact(sock, n, deadline):
    """n bytes, or fewer when the peer closed or the deadline passed."""
    buf = b""
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        sock.settimeout(min(left, 0.5))
        try:
            chunk = sock.recv(n - len(buf))
        except socket.timeout:
            continue
        if not chunk:
            break
        buf += chunk
    return buf


class Closed(Exception):
    """The other side closed (reason: "eof" or "reset") or the deadline passed."""

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


def read_message(sock, deadline):
    """(id or None for a keep-alive, payload). Raises Closed."""
    try:
        head = recv_exact(sock, 4, deadline)
        if len(head) < 4:
            raise Closed("eof" if time.monotonic() < deadline else "timeout")
        (length,) = struct.unpack(">I", head)
        if length == 0:
            return None, b""
        if length > 1 << 20:
            raise Closed("oversized message")
        body = recv_exact(sock, length, deadline)
        if len(body) < length:
            raise Closed("eof" if time.monotonic() < deadline else "timeout")
        return body[0], body[1:]
    except ConnectionResetError:
        raise Closed("reset")
    except OSError as e:
        raise Closed("error %s" % e)


def bind_socket(src_ip):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((src_ip, 0))
    return s


# ---- the listening hostile peer --------------------------------------------------

class Connection:
    """What happened on one connection the agent made to the hostile peer."""

    def __init__(self, addr):
        self.addr = addr
        self.opened = time.monotonic()
        self.handshake_ok = False
        self.their_info_hash = None
        self.messages = []       # names, in order
        self.requests = 0
        self.pieces_sent = 0
        self.bytes_sent = 0
        self.ended = None        # "eof", "reset", "stopped", ...
        self.ended_at = None
        self.inbound_to_agent = False  # made by connect_in()
        self.unchoked_at = None  # late: when it unchoked the agent


class HostileListener:
    MODES = ("corrupt", "poison", "liar", "choker", "late", "staller", "claimer")

    def __init__(self, ip, metainfo, mode, port=0, pieces=None, content=None, unchoke_after=3.0,
                 refuse=()):
        """pieces: the piece indices advertised (None: all of them);
        content, unchoke_after, refuse: the "late" mode's bytes, choke and
        pieces it never gives."""
        if mode not in self.MODES:
            raise ValueError("mode %r: one of %s" % (mode, self.MODES))
        if mode == "late" and content is None:
            raise ValueError("the late mode serves real bytes: give content")
        self.content = content
        self.unchoke_after = unchoke_after
        self.refuse = set(refuse)
        self.meta = metainfo
        self.mode = mode
        self.bitfield = metainfo.bitfield(pieces)
        self.peer_id = new_peer_id()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((ip, port))
        self.sock.listen(64)
        self.ip, self.port = self.sock.getsockname()
        self.connections = []
        self.claims_sent = 0
        self.claimants = {}  # claimer: piece -> its first claimant id
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = []

    @property
    def endpoint(self):
        return "%s:%d" % (self.ip, self.port)

    def start(self):
        t = threading.Thread(target=self._accept_loop, daemon=True)
        t.start()
        self.threads.append(t)
        return self

    def stop(self):
        self.stopping.set()
        try:
            self.sock.close()
        except OSError:
            pass
        for t in self.threads:
            t.join(3)

    def snapshot(self):
        with self.lock:
            return list(self.connections)

    def summary(self):
        cs = self.snapshot()
        return {"connections": len(cs),
                "handshakes": sum(c.handshake_ok for c in cs),
                "requests": sum(c.requests for c in cs),
                "pieces_sent": sum(c.pieces_sent for c in cs),
                "claims_sent": self.claims_sent,
                "open": sum(c.ended is None for c in cs),
                "ended": [c.ended for c in cs]}

    def _accept_loop(self):
        while not self.stopping.is_set():
            r, _, _ = select.select([self.sock], [], [], 0.2)
            if not r:
                continue
            try:
                conn, addr = self.sock.accept()
            except OSError:
                return
            c = Connection(addr)
            with self.lock:
                self.connections.append(c)
            t = threading.Thread(target=self._serve, args=(conn, c), daemon=True)
            t.start()
            self.threads.append(t)

    def _send(self, conn, c, data):
        conn.sendall(data)
        c.bytes_sent += len(data)

    def _wrong_block(self, index, begin, length):
        # Deterministic garbage: never the real content (a SHA-256 stream).
        out = bytearray()
        seed = b"wrong %d %d" % (index, begin)
        n = 0
        while len(out) < length:
            out += hashlib.sha256(seed + b"%d" % n).digest()
            n += 1
        return bytes(out[:length])

    def _reserved(self):
        return RESERVED_EXTENDED if self.mode == "claimer" else RESERVED

    def _claim_forever(self, conn, c):
        """claimer: what a dopt agent says, then claims on every piece, once
        a second, until the connection or the listener ends."""
        self._send(conn, c, message(EXTENDED, b"\x00" + bencode.encode(
            {"m": {CLAIM_EXTENSION: OUR_CLAIM_ID}})))
        self._send(conn, c, message(HAVE_NONE))
        their_id = None  # the agent's id for dopt_claim, from its extension handshake
        next_round = time.monotonic()
        while not self.stopping.is_set():
            now = time.monotonic()
            if their_id is not None and now >= next_round:
                next_round = now + 1.0
                for piece in range(self.meta.num_pieces):
                    first = self.claimants.setdefault(piece, struct.unpack(">Q", os.urandom(8))[0])
                    for claimant in (first, struct.unpack(">Q", os.urandom(8))[0]):
                        self._send(conn, c, message(EXTENDED, bytes([their_id]) +
                                                    struct.pack(">IQ", piece, claimant)))
                        with self.lock:
                            self.claims_sent += 1
            r, _, _ = select.select([conn], [], [], 0.2)
            if not r:
                continue
            msg_id, payload = read_message(conn, time.monotonic() + 10)
            c.messages.append(MESSAGE_NAMES.get(msg_id, str(msg_id)))
            if msg_id == EXTENDED and payload[:1] == b"\x00":
                try:
                    hs, _ = bencode.decode_at(payload, 1)
                    their_id = hs.get(b"m", {}).get(CLAIM_EXTENSION) or their_id
                except (ValueError, AttributeError):
                    pass

    def connect_in(self, dst):
        """Connects to the agent at dst from this peer's address and serves
        that connection in this peer's mode (in a thread). Returns its
        Connection record."""
        c = Connection(dst)
        c.inbound_to_agent = True
        with self.lock:
            self.connections.append(c)
        t = threading.Thread(target=self._connect_and_serve, args=(dst, c), daemon=True)
        t.start()
        self.threads.append(t)
        return c

    def _connect_and_serve(self, dst, c):
        s = bind_socket(self.ip)
        try:
            s.settimeout(10)
            s.connect(dst)
            s.sendall(handshake(self.meta.info_hash, self.peer_id, self._reserved()))
        except OSError as e:
            c.ended = "connect: %s" % e
            c.ended_at = time.monotonic()
            s.close()
            return
        self._serve(s, c, outgoing=True)

    def _serve(self, conn, c, outgoing=False):
        try:
            self._serve_inner(conn, c, outgoing)
        except Closed as e:
            c.ended = e.reason
        except ConnectionResetError:
            c.ended = "reset"
        except BrokenPipeError:
            c.ended = "reset"
        except OSError as e:
            c.ended = "error %s" % e
        finally:
            c.ended_at = time.monotonic()
            if c.ended is None:
                c.ended = "stopped"
            try:
                conn.close()
            except OSError:
                pass

    def _serve_inner(self, conn, c, outgoing):
        far = lambda: time.monotonic() + 3600  # noqa: E731
        try:
            hs = recv_exact(conn, 68, time.monotonic() + 10)
        except ConnectionResetError:
            raise Closed("reset")
        if len(hs) < 68 or hs[1:20] != PROTOCOL:
            # libtorrent tries an encrypted handshake (MSE) first and falls
            # back to plain BitTorrent when the other side drops it.
            raise Closed("eof before a handshake" if not hs else "not a plain handshake")
        c.their_info_hash = hs[28:48]
        if c.their_info_hash != self.meta.info_hash:
            raise Closed("unknown info-hash")
        if not outgoing:
            self._send(conn, c, handshake(self.meta.info_hash, self.peer_id, self._reserved()))
        c.handshake_ok = True
        if self.mode == "claimer":
            self._claim_forever(conn, c)
            return
        answered = set()  # poison: pieces whose one block was sent
        if self.mode == "staller":
            # Nothing at all from here on; what comes is read and dropped.
            while not self.stopping.is_set():
                r, _, _ = select.select([conn], [], [], 0.2)
                if r:
                    try:
                        if not conn.recv(65536):
                            raise Closed("eof")
                    except ConnectionResetError:
                        raise Closed("reset")
            return
        self._send(conn, c, message(BITFIELD, self.bitfield))
        if self.mode == "late":
            self._serve_late(conn, c)
            return
        while not self.stopping.is_set():
            msg_id, payload = read_message(conn, far())
            c.messages.append(MESSAGE_NAMES.get(msg_id, str(msg_id)))
            if msg_id == INTERESTED and self.mode in ("corrupt", "poison", "liar"):
                self._send(conn, c, message(UNCHOKE))
            elif msg_id == REQUEST:
                c.requests += 1
                index, begin, length = struct.unpack(">III", payload)
                if self.mode == "corrupt" or (self.mode == "poison" and index not in answered):
                    answered.add(index)
                    block = self._wrong_block(index, begin, length)
                    self._send(conn, c, message(PIECE, struct.pack(">II", index, begin) + block))
                    c.pieces_sent += 1
                elif self.mode == "poison":
                    self._send(conn, c, message(REJECT, payload))
                # liar, choker: never answered

    def _serve_late(self, conn, c):
        """late: choked for unchoke_after seconds from "interested", then
        every request answered with the real block."""
        unchoke_at = None  # when to unchoke; None: not interested yet
        unchoked = False
        while not self.stopping.is_set():
            if unchoke_at is not None and not unchoked and time.monotonic() >= unchoke_at:
                self._send(conn, c, message(UNCHOKE))
                c.unchoked_at = time.monotonic()
                unchoked = True
            r, _, _ = select.select([conn], [], [], 0.05)
            if not r:
                continue
            msg_id, payload = read_message(conn, time.monotonic() + 3600)
            c.messages.append(MESSAGE_NAMES.get(msg_id, str(msg_id)))
            if msg_id == INTERESTED and unchoke_at is None:
                unchoke_at = time.monotonic() + self.unchoke_after
            elif msg_id == REQUEST:
                c.requests += 1
                index, begin, length = struct.unpack(">III", payload)
                if not unchoked or index in self.refuse:
                    self._send(conn, c, message(REJECT, payload))
                    continue
                start = index * self.meta.piece_length + begin
                block = self.content[start:start + length]
                self._send(conn, c, message(PIECE, struct.pack(">II", index, begin) + block))
                c.pieces_sent += 1


# ---- the connecting peer ----------------------------------------------------------

class PeerClient:
    """One inbound connection to the agent, from src_ip. connect() sends the
    handshake; .result says what came back: "handshake" (the agent answered
    with the same info-hash), or how the connection ended without one."""

    def __init__(self, dst, src_ip, info_hash):
        self.dst = dst
        self.src_ip = src_ip
        self.info_hash = info_hash
        self.sock = None
        self.received = b""   # every byte the agent sent, handshake included
        self.messages = []    # (name, payload)
        self.ended = None

    def connect(self, timeout=10):
        """Returns "handshake", "refused", "eof", "reset" or "timeout"."""
        self.sock = bind_socket(self.src_ip)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(self.dst)
        except ConnectionRefusedError:
            self.ended = "refused"
            return self.ended
        try:
            self.sock.sendall(handshake(self.info_hash, new_peer_id()))
        except OSError:
            self.ended = "reset"
            return self.ended
        deadline = time.monotonic() + timeout
        try:
            hs = recv_exact(self.sock, 68, deadline)
        except ConnectionResetError:
            self.ended = "reset"
            return self.ended
        self.received += hs
        if len(hs) < 68:
            self.ended = "eof" if time.monotonic() < deadline else "timeout"
            return self.ended
        if hs[28:48] != self.info_hash:
            self.ended = "wrong info-hash"
            return self.ended
        return "handshake"

    def send(self, data):
        self.sock.sendall(data)

    def read_until(self, want, timeout):
        """Reads messages until one named in `want` comes (returned as
        (name, payload)), or the connection ends (returns None, with
        .ended set), or timeout (None, .ended stays None)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                msg_id, payload = read_message(self.sock, deadline)
            except Closed as e:
                if e.reason != "timeout":
                    self.ended = e.reason
                return None
            name = MESSAGE_NAMES.get(msg_id, str(msg_id))
            self.messages.append((name, payload))
            self.received += payload
            if name in want:
                return name, payload

    def close(self):
        if self.sock:
            try:
                self.sock.close()
            except OSError:
                pass


def flood(dst, src_ip, connections=300, rounds=3, info_hash=None, hold=0.5):
    """Opens `connections` TCP connections from src_ip to dst, sends each a
    handshake with `info_hash` (None: half-open, nothing sent), holds them
    `hold` s, closes them; `rounds` times. Returns counts: connected,
    refused, other errors, answered (the agent sent something back), closed
    by the agent while held."""
    stats = {"connected": 0, "refused": 0, "errors": 0, "answered": 0, "closed_by_agent": 0}
    for _ in range(rounds):
        socks = []
        for _ in range(connections):
            s = bind_socket(src_ip)
            s.setblocking(False)
            err = s.connect_ex(dst)
            if err not in (0, errno.EINPROGRESS):
                stats["refused" if err == errno.ECONNREFUSED else "errors"] += 1
                s.close()
                continue
            socks.append(s)
        # Wait for the connects to finish (or fail).
        pending = list(socks)
        deadline = time.monotonic() + 5
        while pending and time.monotonic() < deadline:
            _, w, _ = select.select([], pending, [], 0.2)
            for s in w:
                pending.remove(s)
        live = []
        for s in socks:
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if s in pending or err:
                stats["refused" if err == errno.ECONNREFUSED else "errors"] += 1
                s.close()
                continue
            stats["connected"] += 1
            if info_hash is not None:
                try:
                    s.send(handshake(info_hash, new_peer_id()))
                except OSError:
                    pass
            live.append(s)
        time.sleep(hold)
        for s in live:
            try:
                data = s.recv(65536)
                if data:
                    stats["answered"] += 1
                else:
                    stats["closed_by_agent"] += 1
            except BlockingIOError:
                pass
            except OSError:
                stats["closed_by_agent"] += 1
            s.close()
    return stats


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--torrent", required=True)
    ap.add_argument("--listen", default="127.0.0.3", help="a loopback address")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--mode", choices=HostileListener.MODES, required=True)
    args = ap.parse_args()
    if not args.listen.startswith("127."):
        ap.error("--listen must be a loopback address (127.x.y.z)")
    h = HostileListener(args.listen, Metainfo.load(args.torrent), args.mode, args.port).start()
    print("LISTENING %s" % h.endpoint, flush=True)
    try:
        while True:
            time.sleep(5)
            print(h.summary(), flush=True)
    except KeyboardInterrupt:
        h.stop()


if __name__ == "__main__":
    main()
