"""An HTTPS origin's digest of a file stands for the SHA-256 a job did not
give (docs/design.md "Content identity"): RFC 9530 `Repr-Digest: sha-256=:B64:`
or RFC 3230 `Digest: SHA-256=B64`, from a TLS nginx on 127.0.0.1 (its own
certificate, the agents' `[http] ca_file`), to peering agents on 127.0.0.x
(static peers, LSD off). Only over HTTPS, only for a request without
credentials (job headers, user info or a query in the URL); a file whose
bytes do not match fails as with a wrong --sha256. Needs no root.
"""

import base64
import hashlib
import os

import harness
from harness import MiB
from test_peering import PeeringTest


def b64_sha256(data):
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


class DigestOrigin(harness.TlsNginx):
    """TlsNginx that adds one response header to some files: `headers` maps
    a URL path ("/app.bin") to (name, value)."""

    def __init__(self, workdir, docroot, headers):
        super().__init__(workdir, docroot)
        self.headers = headers

    def _conf(self):
        locations = "".join('location = %s { add_header %s "%s"; }\n        ' % (path, name, value)
                            for path, (name, value) in self.headers.items())
        return super()._conf().replace("location /forbidden/", locations + "location /forbidden/")


class OriginDigest(PeeringTest):
    SIZE = 2 * MiB

    def setUp(self):
        super().setUp()
        self.files = {}  # name -> bytes
        for name in ("repr.bin", "legacy.bin", "wrong.bin", "plain.bin"):
            harness.make_file(os.path.join(self.www, name), self.SIZE)
            with open(os.path.join(self.www, name), "rb") as f:
                self.files[name] = f.read()
        other = b64_sha256(b"other bytes")
        self.origin = DigestOrigin(self.sb.path("tls"), self.www, {
            "/repr.bin": ("Repr-Digest", "sha-512=:%s:, sha-256=:%s:" % (
                base64.b64encode(hashlib.sha512(self.files["repr.bin"]).digest()).decode(),
                b64_sha256(self.files["repr.bin"]))),
            "/legacy.bin": ("Digest", "SHA-256=%s" % b64_sha256(self.files["legacy.bin"])),
            "/wrong.bin": ("Repr-Digest", "sha-256=:%s:" % other),
            "/plain.bin": ("Repr-Digest", "sha-256=:%s:" % other),
        })
        self.sb.children.append(self.origin)
        self.origin.start()
        self.tls = '[http]\nca_file = "%s"\n' % self.origin.cert

    def sha(self, name):
        return hashlib.sha256(self.files[name]).hexdigest()

    def cache_entry_named(self, agent, sha):
        return harness.wait_for(lambda: next((e for e in self.cache(agent) if e["name"] == sha), None),
                                20, what="a cache entry named %s (%s)" % (sha, self.cache(agent)))

    def test_a_file_with_repr_digest_or_digest_is_seeded_under_it_and_a_peer_takes_it(self):
        a, b = self.pair(start_b=False, extra=self.tls)
        url = self.origin.url("repr.bin")
        da, ja = self.get(a, url, "repr.bin")  # no --sha256
        self.assertFileSha(da, self.sha("repr.bin"))
        entry = self.cache_entry_named(a, self.sha("repr.bin"))
        dl, _ = self.get(a, self.origin.url("legacy.bin"), "legacy.bin")  # RFC 3230 Digest
        self.assertFileSha(dl, self.sha("legacy.bin"))
        self.cache_entry_named(a, self.sha("legacy.bin"))
        self.wait_seeding(a, entry["info_hash"])
        b.start()
        mark = self.mark()
        db, jb = self.get(b, url, "repr.bin", "--sha256", self.sha("repr.bin"))
        self.assertFileSha(db, self.sha("repr.bin"))
        self.assertFromPeers(jb, self.SIZE, mark, "/repr.bin", "by the origin's Repr-Digest", b)

    def test_a_file_that_does_not_match_the_digest_fails_as_with_a_wrong_sha256(self):
        a = self.lone_agent(self.tls)
        dest = self.dest_of(a, "wrong.bin")
        rc, out, err = a.dopt("get", self.origin.url("wrong.bin"), "-o", dest)
        self.assertEqual(rc, 1, (out, err))
        st = a.status(a.job_for(dest)["id"])
        self.assertEqual((st["state"], st["error"]["context"]), ("error", "integrity"), st)
        self.assertIn("expected %s" % base64.b64decode(b64_sha256(b"other bytes")).hex(),
                      st["error"]["description"])
        self.assertFalse(os.path.exists(dest))
        self.assertEqual(self.cache(a), [])

    def test_a_digest_over_http_or_with_credentials_is_not_taken(self):
        # Each sends a digest these bytes do not match: taken, it would fail
        # the job; not taken, the file arrives and nothing is seeded.
        a = self.lone_agent(self.tls)
        plain = self.sb.nginx(self.www, name="plain")  # the same files over http
        wrong = self.origin.url("wrong.bin")
        for name, url, args in (("plain.bin", plain.url("plain.bin"), ()),
                                ("query.bin", wrong + "?token=s3cret", ()),
                                ("header.bin", wrong, ("-H", "Authorization: Bearer s3cret"))):
            dest, job = self.get(a, url, name, *args)
            self.assertEqual(job["state"], "acknowledged", job)
            with open(dest, "rb") as f:
                self.assertEqual(f.read(), self.files["plain.bin" if name == "plain.bin" else "wrong.bin"])
        self.assertEqual(self.cache(a), [])


if __name__ == "__main__":
    import unittest
    unittest.main()
