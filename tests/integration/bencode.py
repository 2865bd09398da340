"""Bencoding (BEP 3) for the Python tests and tools: one encoder and one
decoder, standard library only. Used by tests/integration/test_publish.py,
tests/reliability/hostile_peer.py, tests/lan/netns.py and
tests/fuzz/make_corpus.py (the last three put tests/integration on sys.path).

Contract:

  encode(v) -> bytes
      v is an int (not a bool: TypeError), a str (written as UTF-8), bytes or
      bytearray, a list (or tuple) of such values, or a dict whose keys are str
      or bytes; dict keys are written sorted as bytes. Anything else is a
      TypeError; two keys equal as bytes (e.g. "a" and b"a") a ValueError.

  decode_at(data, i=0) -> (value, end)
      Reads the one value that starts at data[i] and returns it with the
      index just past it; what follows is not looked at. Lenient: dict keys
      in any order (the last of duplicate keys wins), leading zeros in
      integers and string lengths accepted. Strings and dict keys come back
      as bytes, integers as int, lists as list, dicts as dict.

  decode(data, strict=False) -> value
      All of data must be exactly one value (bytes after it: ValueError).
      strict=True also wants the canonical form: dict keys sorted as bytes
      and without duplicates, no leading zeros and no "-0" in integers, no
      leading zeros in string lengths.

  info_span(data) -> (start, end)
      data must be exactly one dict (read leniently); returns the slice of
      the bytes of its top-level "info" value (what an info-hash is taken
      over). ValueError when there is no "info" key, or more than one.

Every malformed input -- truncated data, a non-digit length, a bad integer,
a non-string dict key, an unknown type byte, lists/dicts nested more than
MAX_DEPTH deep -- raises ValueError, never IndexError, RecursionError or
another exception. data may be bytes, bytearray or memoryview.
"""

import re

__all__ = ["MAX_DEPTH", "encode", "decode", "decode_at", "info_span"]

MAX_DEPTH = 100  # lists and dicts nested deeper than this: ValueError

_INT = re.compile(rb"i(-?[0-9]+)e")
_INT_CANONICAL = re.compile(rb"0|-?[1-9][0-9]*")
_LEN = re.compile(rb"([0-9]+):")


# ---- encoding -------------------------------------------------------------

def encode(v):
    """The bencoding of v (bytes); see the module's docstring."""
    out = []
    _encode(v, out)
    return b"".join(out)


def _key_bytes(k):
    if isinstance(k, str):
        return k.encode("utf-8")
    if isinstance(k, (bytes, bytearray)):
        return bytes(k)
    raise TypeError("bencode: dict key of type %s (str or bytes only)" % type(k).__name__)


def _encode(v, out):
    if isinstance(v, bool):
        raise TypeError("bencode: no booleans in bencoding")
    if isinstance(v, int):
        out.append(b"i%de" % v)
    elif isinstance(v, str):
        b = v.encode("utf-8")
        out.append(b"%d:%s" % (len(b), b))
    elif isinstance(v, (bytes, bytearray)):
        out.append(b"%d:%s" % (len(v), bytes(v)))
    elif isinstance(v, (list, tuple)):
        out.append(b"l")
        for x in v:
            _encode(x, out)
        out.append(b"e")
    elif isinstance(v, dict):
        items = sorted(((_key_bytes(k), x) for k, x in v.items()), key=lambda kx: kx[0])
        out.append(b"d")
        last = None
        for k, x in items:
            if k == last:
                raise ValueError("bencode: duplicate dict key %r" % k)
            last = k
            out.append(b"%d:%s" % (len(k), k))
            _encode(x, out)
        out.append(b"e")
    else:
        raise TypeError("bencode: cannot encode %s" % type(v).__name__)


# ---- decoding -------------------------------------------------------------

def _as_bytes(data):
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise TypeError("bencode: data must be bytes, not %s" % type(data).__name__)


def _item(data, i, depth, strict):
    """(value, end) of the value at data[i]."""
    c = data[i:i + 1]
    if not c:
        raise ValueError("bencode: truncated at byte %d" % i)
    if c == b"i":
        m = _INT.match(data, i)
        if not m:
            raise ValueError("bencode: bad or truncated integer at byte %d" % i)
        if strict and not _INT_CANONICAL.fullmatch(m.group(1)):
            raise ValueError("bencode: integer %r at byte %d is not canonical" % (m.group(1), i))
        return int(m.group(1)), m.end()
    if c == b"l" or c == b"d":
        if depth >= MAX_DEPTH:
            raise ValueError("bencode: nested more than %d deep at byte %d" % (MAX_DEPTH, i))
        i += 1
        if c == b"l":
            out = []
            while data[i:i + 1] != b"e":
                v, i = _item(data, i, depth + 1, strict)
                out.append(v)
            return out, i + 1
        out = {}
        last = None
        while data[i:i + 1] != b"e":
            if data[i:i + 1] and not data[i:i + 1].isdigit():
                raise ValueError("bencode: dict key at byte %d is not a string" % i)
            k, i = _item(data, i, depth + 1, strict)
            if strict and last is not None and k <= last:
                raise ValueError("bencode: dict key %r after %r: not sorted or a duplicate"
                                 % (k, last))
            last = k
            out[k], i = _item(data, i, depth + 1, strict)
        return out, i + 1
    if c.isdigit():
        m = _LEN.match(data, i)
        if not m:
            raise ValueError("bencode: bad or truncated string length at byte %d" % i)
        digits = m.group(1)
        if strict and len(digits) > 1 and digits[:1] == b"0":
            raise ValueError("bencode: string length %r at byte %d is not canonical" % (digits, i))
        start = m.end()
        end = start + int(digits)
        if end > len(data):
            raise ValueError("bencode: string at byte %d runs past the end" % i)
        return data[start:end], end
    raise ValueError("bencode: unexpected %r at byte %d" % (c, i))


def decode_at(data, i=0):
    """Decodes one value at data[i:] (lenient); returns (value, end)."""
    data = _as_bytes(data)
    if not isinstance(i, int) or isinstance(i, bool) or i < 0:
        raise ValueError("bencode: bad offset %r" % (i,))
    return _item(data, i, 0, False)


def decode(data, strict=False):
    """Decodes data, which must be exactly one value; strict=True also wants
    the canonical form (sorted keys, no duplicates, no leading zeros)."""
    data = _as_bytes(data)
    value, end = _item(data, 0, 0, bool(strict))
    if end != len(data):
        raise ValueError("bencode: %d bytes after the end of the value" % (len(data) - end))
    return value


def info_span(data):
    """(start, end) of the bytes of the top-level "info" value of data, which
    must be exactly one dict."""
    data = _as_bytes(data)
    if data[:1] != b"d":
        raise ValueError("bencode: not a dictionary")
    i = 1
    span = None
    while data[i:i + 1] != b"e":
        if data[i:i + 1] and not data[i:i + 1].isdigit():
            raise ValueError("bencode: dict key at byte %d is not a string" % i)
        k, i = _item(data, i, 1, False)
        start = i
        _, i = _item(data, i, 1, False)
        if k == b"info":
            if span is not None:
                raise ValueError("bencode: more than one info key")
            span = (start, i)
    if i + 1 != len(data):
        raise ValueError("bencode: %d bytes after the end of the value" % (len(data) - i - 1))
    if span is None:
        raise ValueError("bencode: no info key")
    return span
