#!/usr/bin/env python3
"""bench/apt: stock apt-get through its own `http` method and through
`dopt+http` (one doptd), side by side on loopback. Run through bench/apt;
see bench/README.md ("apt").

Each run builds a fresh apt tree per method (tests/apt/apt_repo.py: nothing
of the machine's apt state is used) and times `apt-get update` plus
`apt-get install --download-only` of every package of a flat repository
served by nginx; every .deb is checked byte for byte, and the origin's
bytes for the .debs are counted from its access log. Methods alternate
which goes first.

With --workstations N (issue 14's apt goal): per method a LAN of its own
in network namespaces (tests/lan/netns.py), nginx in the origin namespace
serving one .deb of --size MiB, and N workstations, one after another,
each with its own apt tree and, for dopt+http, its own doptd (LSD only);
each next workstation starts once the one before is done (and, for
dopt+http, seeds the .deb). Counts how many times the origin sent the .deb.
"""

import argparse
import functools
import os
import shutil
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "apt"))
sys.path.insert(0, os.path.join(ROOT, "tests", "lan"))
import netns  # noqa: E402
from apt_repo import AptTree, RepoNginx, build_deb, make_flat_repo  # noqa: E402
from harness import Agent, MiB, sha256_file  # noqa: E402

METHODS = ("http", "dopt+http")


def log(msg):
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def one_run(tmp, run, method, nginx, agent, debs):
    """apt update + install --download-only in a fresh tree; returns
    (seconds, origin bytes for the .debs)."""
    tree = AptTree(os.path.join(tmp, "run%d-%s" % (run, method.replace("+", "-"))))
    tree.use_source(("dopt+" if method == "dopt+http" else "") + nginx.url("/"))
    nginx.wait_log_complete()
    before = sum(e[1] for e in nginx.log_entries() if e[4].startswith("/pool/"))
    t0 = time.monotonic()
    for args in (("update",), ("install", "--download-only", "-y") + tuple(sorted(debs))):
        rc, out = tree.run(*args, socket_path=agent.socket)
        if rc != 0:
            raise RuntimeError("%s: apt-get %s exited %d:\n%s" % (method, args[0], rc, out))
    seconds = time.monotonic() - t0
    for name, (path, sha) in debs.items():
        got = os.path.join(tree.archives, os.path.basename(path))
        if sha256_file(got) != sha:
            raise RuntimeError("%s: %s differs from the origin's" % (method, got))
    nginx.wait_log_complete()
    after = sum(e[1] for e in nginx.log_entries() if e[4].startswith("/pool/"))
    shutil.rmtree(tree.root)
    return seconds, after - before


def lan_workstations(tmp, method, n, origin_rate, deb, sha):
    """One .deb through `method` on n workstations one after another, in a
    fresh LAN whose origin uploads at `origin_rate` (None: unshaped);
    returns (copies the origin sent, [seconds per workstation])."""
    with netns.Lan(hosts=n, origin_rate=origin_rate, workdir=tmp) as lan:
        os.chmod(lan.dir, 0o755)  # apt's sandbox user _apt walks to its folders and the socket
        make_flat_repo(lan.docroot, [deb])
        origin = lan.start_origin()
        seconds = []
        for host in lan.hosts:
            agent = lan.start_agent(host) if method == "dopt+http" else None
            tree = AptTree(os.path.join(host.dir, "apt"))
            tree.use_source(("dopt+" if agent else "") + origin.url("/"))
            t0 = time.monotonic()
            for args in (("update",), ("install", "--download-only", "-y", "dopt-bench-0")):
                rc, out = tree.run(*args, socket_path=agent.socket if agent else os.devnull,
                                   spawn=functools.partial(lan.run, host))
                if rc != 0:
                    raise RuntimeError("%s on %s: apt-get %s exited %d:\n%s"
                                       % (method, host.name, args[0], rc, out))
            seconds.append(time.monotonic() - t0)
            if sha256_file(os.path.join(tree.archives, os.path.basename(deb))) != sha:
                raise RuntimeError("%s on %s: the .deb differs from the origin's"
                                   % (method, host.name))
            if agent:
                agent.wait_seeding()
        origin.stop()  # flushes its access log
        sent = origin.body_bytes_sent("/pool/" + os.path.basename(deb))
        return sent / os.path.getsize(deb), seconds


def lan_main(args, tmp):
    """--workstations N: issue 14's apt goal, origin copies of the .deb."""
    deb = build_deb(tmp, "dopt-bench-0", args.size * MiB, seed=1000)
    sha = sha256_file(deb)
    for method in METHODS:
        copies, seconds = lan_workstations(tmp, method, args.workstations, args.origin_rate,
                                            deb, sha)
        log("apt: %-9s seconds per workstation %s" % (method, " ".join("%.2f" % t for t in seconds)))
        print("RESULT apt-lan method=%s workstations=%d deb=%dMiB origin_copies=%.3f "
              "last_workstation=%.2fs goal=%s" % (method, args.workstations, args.size, copies,
                                                  seconds[-1], "<=1.10" if method != "http" else "none"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--debs", type=int, default=8, help="packages in the repository (8)")
    ap.add_argument("--size", type=int, default=8, help="MiB of payload a package (8)")
    ap.add_argument("--runs", type=int, default=3, help="runs of each method (3)")
    ap.add_argument("--workstations", type=int, default=0,
                    help="N > 0: one .deb on N workstations of a LAN in namespaces, one after "
                         "another (issue 14's apt goal); --debs and --runs are not used")
    ap.add_argument("--origin-rate", default=None,
                    help="with --workstations: the origin's upload, a tc rate (unshaped)")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="dopt-bench-apt-")
    os.chmod(tmp, 0o755)  # apt's sandbox user _apt walks to its folders and the socket
    if args.workstations > 0:
        try:
            lan_main(args, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return
    nginx = agent = None
    try:
        log("apt: building %d packages of %d MiB" % (args.debs, args.size))
        debs = {}
        for i in range(args.debs):
            name = "dopt-bench-%d" % i
            path = build_deb(tmp, name, args.size * MiB, seed=1000 + i)
            debs[name] = (path, sha256_file(path))
        www = os.path.join(tmp, "www")
        make_flat_repo(www, [p for p, _ in debs.values()])
        deb_bytes = sum(os.path.getsize(p) for p, _ in debs.values())
        nginx = RepoNginx(os.path.join(tmp, "nginx"), www).start()
        agent = Agent(os.path.join(tmp, "agent"), 'log_level = "info"\n').start()
        times = {m: [] for m in METHODS}
        for run in range(args.runs):
            order = METHODS if run % 2 == 0 else tuple(reversed(METHODS))
            for method in order:
                seconds, origin = one_run(tmp, run, method, nginx, agent, debs)
                times[method].append(seconds)
                log("apt: run %d %-9s %6.2f s, origin sent the .debs %.2f times"
                    % (run + 1, method, seconds, origin / deb_bytes))
        base = statistics.median(times["http"])
        for method in METHODS:
            med = statistics.median(times[method])
            print("RESULT apt method=%s debs=%dx%dMiB median=%.2fs ratio=%.2f goal=none "
                  "(issue 14's goal needs SHA-256 peering and workstations in namespaces)"
                  % (method, args.debs, args.size, med, med / base))
    finally:
        for c in (agent, nginx):
            if c is not None:
                c.stop()
        if os.environ.get("BENCH_KEEP_TMP") == "1":
            log("apt: kept %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
