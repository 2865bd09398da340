#!/usr/bin/env python3
"""bench/stock-seeder: one dopt workstation fetches a file while a stock
BitTorrent client on its LAN already seeds it, found by LSD only (no static
peers). How soon does the stock seeder's first byte flow, and how much of
the file does the origin send meanwhile? See bench/README.md ("Stock
seeder").

Per run: a fresh doptd starts in h1, then the seeder (libtorrent 2.0.8
through tests/lan/stock_peer.py, or aria2c) starts in h2 and seeds for
--lead seconds (by default past its own
LSD announces: libtorrent sends them 0, 2 and 6 s after adding a torrent,
aria2 once, then every 5 minutes), then the agent runs `dopt get` of the
file (metainfo beside it at the origin). Figures: the job's time,
the first peer byte (h2's link has sent 16 KiB more than before the job),
both from the job's start, and the origin's egress over the file size.
With --baseline-build DIR, methods NAME-base run DIR's doptd in the same
rounds. Root only; nothing leaves the machine.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "lan"))
import netns  # noqa: E402
from netns import MiB  # noqa: E402
sys.path.insert(0, os.path.join(ROOT, "bench"))
from lan_swarm import SAMPLER  # noqa: E402  (a link's tx_bytes every 50 ms)

STOCK_PEER = os.path.join(ROOT, "tests", "lan", "stock_peer.py")
SEEDERS = ("libtorrent", "aria2")
FIRST_BYTES = 16 * 1024   # a block: more than the handshakes and LSD packets
SEEDER_PORT = 6881

def log(msg):
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def start_seeder(lan, kind, torrent, save, out_dir):
    """The stock seeder in h2; returns its Popen once it seeds."""
    h = lan.host(2)
    listen = "%s:%d" % (h.ip, SEEDER_PORT)
    if kind == "libtorrent":
        events = os.path.join(out_dir, "seeder.jsonl")
        p = lan.run(h, ["/usr/bin/python3", STOCK_PEER, "--seed", "--torrent", torrent, "--save", save,
                        "--listen", listen, "--events", events],
                    stdout=subprocess.DEVNULL, stderr=open(os.path.join(out_dir, "seeder.err"), "wb"))
        netns.wait_for(lambda: os.path.exists(events) and "ready" in open(events).read(), 20,
                       what="the libtorrent seeder")
        return p
    argv = ["aria2c", "--dir=" + save, "--enable-dht=false", "--enable-dht6=false",
            "--enable-peer-exchange=false", "--bt-enable-lpd=true", "--bt-lpd-interface=" + h.ifname,
            "--listen-port=%d" % SEEDER_PORT, "--disable-ipv6=true", "--seed-ratio=0.0",
            "--check-integrity=true", "--bt-seed-unverified=true", "--summary-interval=0",
            "--console-log-level=warn", "--log=" + os.path.join(out_dir, "aria2.log"),
            "--log-level=info", "--stop-with-process=%d" % os.getpid(), torrent]
    p = lan.run(h, argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    aria2_log = os.path.join(out_dir, "aria2.log")
    netns.wait_for(lambda: os.path.exists(aria2_log) and
                   "Sending LPD message is complete" in open(aria2_log).read(), 30,
                   what="the aria2 seeder's LSD announce")
    return p


def first_crossing(path, t0, tx0, threshold):
    """Seconds after t0 when the sampled counter first passed tx0 + threshold."""
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 2 and float(parts[0]) >= t0 and int(parts[1]) - tx0 >= threshold:
                return float(parts[0]) - t0
    return None


def one_run(lan, args, seeder, build, rep, torrent, torrent_no_webseed, url, size):
    name = "%s-%s-%d" % (seeder, "base" if build != args.build else "new", rep)
    out_dir = os.path.join(lan.dir, name)
    os.makedirs(out_dir)
    save = os.path.join(out_dir, "seed")
    os.makedirs(save)
    os.link(os.path.join(lan.docroot, "stock.bin"), os.path.join(save, "stock.bin"))
    res = {"bench": "stock-seeder", "seeder": seeder, "build": build, "run": rep,
           "size_mib": args.size, "origin_rate": args.origin_rate, "lead_s": args.lead, "ok": False}
    os.environ["DOPT_BUILD_DIR"] = build
    procs = []
    agent = None
    try:
        # The agent runs first, as a workstation's does: the seeder's
        # announces reach it before it has the torrent.
        agent = lan.start_agent(1, extra_toml='log_level = "debug"\n', name="agent-" + name)
        procs.append(start_seeder(lan, seeder, torrent_no_webseed, save, out_dir))
        sample = os.path.join(out_dir, "h2-tx")
        procs.append(lan.run(lan.host(2), ["python3", "-c", SAMPLER, sample, netns.IFNAME]))
        time.sleep(args.lead)
        tx0 = lan.tx_bytes(lan.host(2))
        origin0 = lan.origin_tx_bytes()
        out = os.path.join(out_dir, "stock.bin")
        t0 = time.time()
        rc, _, err = agent.get(url, out, timeout=args.timeout)
        t_done = time.time() - t0
        if rc != 0:
            raise RuntimeError("dopt get: exit %d: %s" % (rc, err.strip()[-300:]))
        time.sleep(0.3)
        first = first_crossing(sample, t0, tx0, FIRST_BYTES)
        stats = agent.stats()
        res.update(ok=netns.sha256_file(out) == lan.sha, done_s=round(t_done, 3),
                   first_peer_byte_s=None if first is None else round(first, 3),
                   origin_ratio=round((lan.origin_tx_bytes() - origin0) / size, 4),
                   from_peers_ratio=round(stats.get("bytes_from_peers", 0) / size, 4))
    except Exception as e:  # a failed run is a result too
        res["error"] = "%s: %s" % (type(e).__name__, e)
    finally:
        if agent is not None:
            agent.stop()
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        if not args.keep:
            shutil.rmtree(out_dir, ignore_errors=True)
    return res


def strip_web_seed(torrent, out):
    """A copy of the metainfo without url-list: the seeder needs no origin."""
    meta = netns.bencode.decode(open(torrent, "rb").read())
    meta.pop(b"url-list", None)
    with open(out, "wb") as f:
        f.write(netns.bencode.encode(meta))
    return out


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="bench/stock-seeder", description=__doc__.split("\n")[0])
    ap.add_argument("--seeders", default="libtorrent,aria2", help="of libtorrent,aria2")
    ap.add_argument("--size", type=int, default=64, help="MiB (default 64)")
    ap.add_argument("--origin-rate", default="10mbit", help="origin upload (default 10mbit)")
    ap.add_argument("--lead", type=float, default=8.0,
                    help="seconds the seeder seeds before the job starts (default 8)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--baseline-build", metavar="DIR", help="also run DIR's doptd, same rounds")
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("--results", default=os.path.join(os.environ.get("TMPDIR", "/tmp"),
                                                      "dopt-stock-seeder.jsonl"))
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args(argv)
    a.seeders = [s for s in a.seeders.split(",") if s]
    for s in a.seeders:
        if s not in SEEDERS:
            ap.error("unknown seeder %r" % s)
    a.build = os.environ["DOPT_BUILD_DIR"]
    return a


def main(argv):
    args = parse_args(argv)
    builds = [args.build] + ([os.path.abspath(args.baseline_build)] if args.baseline_build else [])
    results = []
    with netns.Lan(hosts=2, origin_rate=args.origin_rate, lan_rate="1gbit", keep=args.keep) as lan:
        path = os.path.join(lan.docroot, "stock.bin")
        lan.sha = netns.make_file(path, args.size * MiB)
        # v1 metainfo: Debian 12's aria2 computes a wrong info-hash for hybrid (issue 18.6).
        torrent, _ = netns.make_metainfo(path, lan.origin_url("stock.bin"), tools=("mktorrent", "python"))
        bare = strip_web_seed(torrent, os.path.join(lan.dir, "stock-no-webseed.torrent"))
        lan.start_origin()
        for rep in range(1, args.runs + 1):
            for seeder in args.seeders:
                for build in builds:
                    r = one_run(lan, args, seeder, build, rep, torrent, bare,
                                lan.origin_url("stock.bin"), args.size * MiB)
                    log("stock-seeder: %s" % json.dumps(r))
                    results.append(r)
                    with open(args.results, "a") as f:
                        f.write(json.dumps(r) + "\n")
    os.environ["DOPT_BUILD_DIR"] = args.build
    print("%-10s %-5s %5s %18s %18s %18s" % ("seeder", "build", "ok", "first peer byte s",
                                             "done s", "origin/size"))
    for seeder in args.seeders:
        for build in builds:
            rs = [r for r in results if r["seeder"] == seeder and r["build"] == build and r["ok"]]
            tag = "base" if build != args.build else "new"

            def cell(key, fmt):
                xs = [r[key] for r in rs if r.get(key) is not None]
                if not xs:
                    return "-"
                return (fmt + " [" + fmt + "-" + fmt + "]") % (statistics.median(xs), min(xs), max(xs))
            print("%-10s %-5s %2d/%-2d %18s %18s %18s" % (
                seeder, tag, len(rs), args.runs, cell("first_peer_byte_s", "%.2f"),
                cell("done_s", "%.2f"), cell("origin_ratio", "%.3f")))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
