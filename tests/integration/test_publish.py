"""`dopt publish FILE [--web-seed URL] [--v1] [-o OUT]` writes hybrid (v1+v2)
metainfo (v1 only with --v1) an origin can serve beside FILE; bad input is
exit 2. Needs no agent: only the dopt binary of the build. The .torrent is read with bencode.py
(strict: canonical form, dict keys sorted) and checked: its info-hash, v1
piece hashes and v2 fields against the file itself."""

import hashlib
import os
import subprocess
import sys
import unittest

import bencode
from harness import MiB, Sandbox, build_dir, clean_env, dopt_path, make_file, test_failed


class Publish(unittest.TestCase):

    def setUp(self):
        build_dir()  # skips when DOPT_BUILD_DIR is unset
        if not os.access(dopt_path(), os.X_OK):
            self.fail("missing binary %s (build dopt_cli)" % dopt_path())
        self.sb = Sandbox("dopt-it-%s-" % self._testMethodName[:40])
        self.www = self.sb.path("www")
        os.makedirs(self.www)

    def tearDown(self):
        failed = test_failed(self)
        self.sb.close(keep=failed)
        if failed:
            sys.stderr.write("\n" + self.sb.report() + "\n")

    def dopt(self, *args, cwd=None):
        """Runs dopt with no agent anywhere: publish must not need one."""
        env = clean_env()
        env["DOPT_SOCKET"] = self.sb.path("no-agent.sock")
        p = subprocess.run([dopt_path()] + [str(a) for a in args], capture_output=True,
                           cwd=cwd, env=env, stdin=subprocess.DEVNULL, timeout=120)
        return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")

    def assertExit(self, want, result):
        rc, out, err = result
        self.assertEqual(rc, want, "stdout %r stderr %r" % (out, err))
        return out, err

    def read_torrent(self, path):
        with open(path, "rb") as f:
            data = f.read()
        # strict: dict keys sorted and unique, integers and lengths canonical
        # (ValueError otherwise), as BEP 3 wants of what dopt writes.
        meta = bencode.decode(data, strict=True)
        self.assertIsInstance(meta, dict)
        self.assertIn(b"info", meta)
        start, end = bencode.info_span(data)
        return meta, data[start:end]

    def test_publish_writes_hybrid_metainfo_with_the_web_seed(self):
        size = 3 * MiB + 12345
        src = os.path.join(self.www, "payload.bin")
        make_file(src, size)
        out_path = self.sb.path("out", "payload.bin.torrent")
        os.makedirs(os.path.dirname(out_path))
        url = "http://127.0.0.1:8080/files/payload.bin"

        out, _ = self.assertExit(0, self.dopt("publish", src, "--web-seed", url, "-o", out_path))
        meta, info_bytes = self.read_torrent(out_path)
        info = meta[b"info"]

        # Hybrid: v1 fields (pieces, length) and v2 fields (meta version 2,
        # file tree, piece layers) for the one file.
        self.assertEqual(info[b"meta version"], 2)
        self.assertEqual(info[b"name"], b"payload.bin")
        self.assertEqual(info[b"length"], size)
        piece = info[b"piece length"]
        self.assertEqual(piece, MiB)
        npieces = (size + piece - 1) // piece
        self.assertEqual(len(info[b"pieces"]), 20 * npieces)
        tree = info[b"file tree"][b"payload.bin"][b""]
        self.assertEqual(tree[b"length"], size)
        self.assertEqual(len(tree[b"pieces root"]), 32)
        self.assertIn(tree[b"pieces root"], meta[b"piece layers"])
        self.assertEqual(len(meta[b"piece layers"][tree[b"pieces root"]]), 32 * npieces)
        self.assertEqual(meta[b"url-list"], url.encode())
        self.assertEqual(meta[b"created by"], b"dopt")
        self.assertNotIn(b"announce", meta)

        # The v1 piece hashes are those of the file's bytes.
        with open(src, "rb") as f:
            for k in range(npieces):
                want = hashlib.sha1(f.read(piece)).digest()
                self.assertEqual(info[b"pieces"][20 * k:20 * k + 20], want, "piece %d" % k)

        # stdout: the info-hashes of this info dict, and the pieces.
        v1 = hashlib.sha1(info_bytes).hexdigest()
        v2 = hashlib.sha256(info_bytes).hexdigest()
        self.assertRegex(out, r"(?m)^info-hash:\s+%s$" % v1)
        self.assertRegex(out, r"(?m)^info-hash v2:\s+%s$" % v2)
        self.assertRegex(out, r"(?m)^pieces:\s+%d of %d bytes" % (npieces, MiB))
        # No temporary file left beside the output.
        self.assertEqual(os.listdir(os.path.dirname(out_path)), ["payload.bin.torrent"])

    def test_v1_writes_v1_only_metainfo(self):
        """--v1: no v2 fields (aria2 1.36 gets the info-hash of hybrid
        metainfo wrong); the same v1 pieces, and the info-hash printed is
        the SHA-1 of this info dict."""
        size = 2 * MiB + 777
        src = os.path.join(self.www, "v1.bin")
        make_file(src, size)
        out_path = self.sb.path("v1.bin.torrent")
        url = "http://127.0.0.1:8080/files/v1.bin"
        out, _ = self.assertExit(0, self.dopt("publish", src, "--v1", "--web-seed", url, "-o", out_path))
        meta, info_bytes = self.read_torrent(out_path)
        info = meta[b"info"]
        for v2_field in (b"meta version", b"file tree"):
            self.assertNotIn(v2_field, info)
        self.assertNotIn(b"piece layers", meta)
        self.assertEqual(info[b"length"], size)
        self.assertEqual(meta[b"url-list"], url.encode())
        with open(src, "rb") as f:
            for k in range(3):
                want = hashlib.sha1(f.read(MiB)).digest()
                self.assertEqual(info[b"pieces"][20 * k:20 * k + 20], want, "piece %d" % k)
        self.assertRegex(out, r"(?m)^info-hash:\s+%s$" % hashlib.sha1(info_bytes).hexdigest())
        self.assertNotIn("info-hash v2", out)

    def test_relative_paths_and_default_output_without_web_seed(self):
        src = os.path.join(self.www, "small.bin")
        make_file(src, 100000)
        out, _ = self.assertExit(0, self.dopt("publish", "small.bin", cwd=self.www))
        default_out = os.path.join(self.www, "small.bin.torrent")
        self.assertTrue(os.path.exists(default_out), "no %s; stdout %r" % (default_out, out))
        meta, _ = self.read_torrent(default_out)
        self.assertNotIn(b"url-list", meta)
        self.assertEqual(meta[b"info"][b"length"], 100000)
        self.assertEqual(len(meta[b"info"][b"pieces"]), 20)
        self.assertRegex(out, r"(?m)^pieces:\s+1 of %d bytes" % MiB)

        # -o relative to the working directory, options before the file.
        os.makedirs(os.path.join(self.www, "meta"))
        self.assertExit(0, self.dopt("publish", "-o", "meta/s.torrent", "--web-seed",
                                     "https://example.invalid/small.bin", "small.bin", cwd=self.www))
        meta2, _ = self.read_torrent(os.path.join(self.www, "meta", "s.torrent"))
        self.assertEqual(meta2[b"url-list"], b"https://example.invalid/small.bin")
        self.assertEqual(meta2[b"info"], meta[b"info"])  # same file, same info dict

    def test_missing_file_is_exit_2_naming_it(self):
        missing = os.path.join(self.www, "nope.bin")
        _, err = self.assertExit(2, self.dopt("publish", missing, "-o", self.sb.path("x.torrent")))
        self.assertIn("nope.bin", err)
        self.assertIn("No such file", err)
        self.assertFalse(os.path.exists(self.sb.path("x.torrent")))
        self.assertFalse(os.path.exists(missing + ".torrent"))

    def test_bad_input_is_exit_2(self):
        src = os.path.join(self.www, "f.bin")
        make_file(src, 5000)
        empty = os.path.join(self.www, "empty.bin")
        open(empty, "wb").close()
        cases = [
            (["publish"], "needs a file"),
            (["publish", src, src + "2"], "too many"),
            (["publish", self.www], "folder"),
            (["publish", empty], "empty"),
            (["publish", src, "-o", self.sb.path("no", "such", "dir", "f.torrent")], "cannot write"),
            (["publish", src, "-o", self.www], "folder"),
            (["publish", src, "-o", src], "being published"),
            (["publish", src, "--web-seed", "ftp://host/f.bin"], "http"),
            (["publish", src, "--json"], "--json"),
        ]
        for args, words in cases:
            with self.subTest(args=args):
                _, err = self.assertExit(2, self.dopt(*args))
                self.assertIn(words, err)
        # Nothing was written, and the published file is untouched.
        self.assertEqual(sorted(os.listdir(self.www)), ["empty.bin", "f.bin"])
        self.assertEqual(os.path.getsize(src), 5000)


if __name__ == "__main__":
    unittest.main()
