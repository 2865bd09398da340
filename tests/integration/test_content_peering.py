"""Content identity on loopback (docs/design.md "Content identity"): real
doptd agents on 127.0.0.x with static peers (LSD off), a real nginx origin
that publishes no metainfo. A job that gives the file's SHA-256 looks for
LAN holders of it; the agent that fetched it from the origin seeds it under
its SHA-256. Needs no root.

Figures (the job objects' bytes_from_peers / bytes_from_origin, body bytes
in the origin's access log after a mark) are printed on stderr.
"""

import os
import threading
import unittest

import harness
from harness import MiB
from test_peering import A_IP, B_IP, PeeringTest, free_port, p2p_toml, say


class ContentPeering(PeeringTest):
    SIZE = 6 * MiB

    def test_a_second_agent_takes_a_file_with_no_metainfo_from_the_first_by_its_sha256(self):
        """A fetches app.bin (no .torrent at the origin) with --sha256 over
        HTTP and then seeds it under that SHA-256; B, asking for the same URL
        and SHA-256, finds A on the rendezvous, takes the metainfo from A
        (BEP 9) and >= 95% of the bytes from A; B's file is byte-identical
        and the origin sent B (almost) nothing of it."""
        self.start_origin()
        sha = self.serve("app.bin", self.SIZE, torrent=False)
        a, b = self.pair(start_b=False)
        url = self.url("app.bin")

        da, ja = self.get(a, url, "app.bin", "--sha256", sha)
        self.assertFileSha(da, sha)
        self.assertEqual(ja["bytes_from_origin"], self.SIZE, ja)
        self.assertEqual(self.origin.body_bytes_sent("/app.bin"), self.SIZE)
        # A's copy is in its cache, named by the SHA-256, and seeds.
        entry = harness.wait_for(
            lambda: next((e for e in self.cache(a) if e["name"] == sha), None), 20,
            what="A's cache entry named %s" % sha)
        self.wait_seeding(a, entry["info_hash"])

        b.start()
        mark = self.mark()
        db, jb = self.get(b, url, "app.bin", "--sha256", sha)
        self.assertFileSha(db, sha)
        with open(da, "rb") as fa, open(db, "rb") as fb:
            self.assertEqual(fa.read(), fb.read())
        self.assertEqual(jb["files"][0]["metainfo"], "peers", jb)
        self.assertFromPeers(jb, self.SIZE, mark, "/app.bin", "by its SHA-256", b)

    def test_two_agents_asking_at_once_fetch_the_file_from_the_origin_about_once(self):
        """A and B ask for the same SHA-256 at the same moment; neither holds
        it. The wanter with the lower node id fetches it from the origin and
        seeds it; the other waits for that copy and takes it from its peer.
        Both files are byte-identical and the origin sent the file about
        once (at most 1.10 times)."""
        self.start_origin()
        sha = self.serve("push.bin", self.SIZE, torrent=False)
        a, b = self.pair()
        url = self.url("push.bin")
        results = {}

        def get(agent, name):
            results[name] = self.get(agent, url, "push.bin", "--sha256", sha)

        threads = [threading.Thread(target=get, args=(agent, name))
                   for agent, name in ((a, "A"), (b, "B"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertEqual(sorted(results), ["A", "B"], "a dopt get did not finish")
        for name, (dest, job) in results.items():
            self.assertFileSha(dest, sha)
            say("%s: bytes_from_peers %d, bytes_from_origin %d"
                % (name, job["bytes_from_peers"], job["bytes_from_origin"]))
        sent = self.origin.body_bytes_sent("/push.bin")
        say("the origin sent %d bytes for a file of %d" % (sent, self.SIZE))
        self.assertLessEqual(sent, 1.10 * self.SIZE)
        follower = min(results.values(), key=lambda r: r[1]["bytes_from_origin"])[1]
        self.assertGreaterEqual(follower["bytes_from_peers"], 0.95 * self.SIZE, follower)

    def test_a_follower_whose_leader_leaves_fetches_from_the_origin_itself(self):
        """A and B ask for one SHA-256 at once from a slow origin (2 MB/s a
        connection); the follower waits for the leader, whose agent is then
        killed: the follower sees it leave the rendezvous and fetches the
        file from the origin itself, long before content_follow_ms (60 s)."""
        self.start_origin()
        sha = self.serve("lead.bin", self.SIZE, torrent=False)
        a, b = self.pair(extra="content_follow_ms = 60000\n")
        url = self.origin.url("slow/lead.bin")
        results = {}

        def get(agent, name):
            try:
                results[name] = self.get(agent, url, "lead.bin", "--sha256", sha, timeout=15)
            except Exception as e:  # the leader's agent is killed
                results[name] = e

        threads = {name: threading.Thread(target=get, args=(agent, name))
                   for agent, name in ((a, "A"), (b, "B"))}
        for t in threads.values():
            t.start()
        waiting = "another agent fetches it from the origin"
        follower = harness.wait_for(
            lambda: next((n for n, ag in (("A", a), ("B", b)) if waiting in ag.log_text()), None),
            20, what="one agent following the other")
        leader = a if follower == "B" else b
        leader.kill9()
        threads[follower].join(20)
        dest, job = results[follower]
        self.assertFileSha(dest, sha)
        self.assertEqual(job["bytes_from_origin"], self.SIZE, job)
        say("follower %s fetched it from the origin after its leader left" % follower)
        threads["A" if follower == "B" else "B"].join(20)

    def test_without_a_sha256_nothing_is_looked_up_or_seeded(self):
        """The same file fetched without --sha256 goes over HTTP only and
        leaves nothing in the cache: content identity needs the SHA-256."""
        self.start_origin()
        sha = self.serve("plain.bin", self.SIZE, torrent=False)
        a = self.lone_agent()
        da, ja = self.get(a, self.url("plain.bin"), "plain.bin")
        self.assertFileSha(da, sha)
        self.assertEqual(ja["files"][0]["metainfo"], "none", ja)
        self.assertEqual(self.cache(a), [])
        self.assertNotIn("looking for it on the LAN", a.log_text())


if __name__ == "__main__":
    unittest.main()
