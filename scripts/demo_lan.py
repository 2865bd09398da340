#!/usr/bin/env python3
"""The LAN half of scripts/demo: what dopt is for, on one machine.

An origin behind a shaped link (100 Mbit/s) and N workstations (default 4)
on a 1 Gbit/s LAN, all in network namespaces made here and removed on exit
(tests/lan/netns.py: nothing leaves the machine). The origin hosts a file and
its metainfo (`dopt publish`). Every workstation runs its own doptd with
peering on and fetches the file with `dopt get`, all at once. Printed: each
workstation's time and bytes from peers / from the origin, the origin's
egress against the file size, the last one done against the lower bound
T_min, and what plain HTTP would have cost. Exit 0 only when every file
arrived intact and the origin sent less than 1.5 copies.

Root only (network namespaces, tc). Environment: DEMO_LAN_CLIENTS (4),
DEMO_LAN_SIZE_MB (64), DOPT_BUILD_DIR.
"""

import os
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "lan"))
import netns  # noqa: E402
import harness  # noqa: E402  (tests/integration, on sys.path through netns)

MiB = 1024 * 1024
ORIGIN_MBIT, LAN_MBIT = 100, 1000


def say(msg):
    print("demo: " + msg, file=sys.stderr, flush=True)


def main():
    n = int(os.environ.get("DEMO_LAN_CLIENTS", "4"))
    size = int(os.environ.get("DEMO_LAN_SIZE_MB", "64")) * MiB
    with netns.Lan(hosts=n, origin_rate="%dmbit" % ORIGIN_MBIT,
                   lan_rate="%dmbit" % LAN_MBIT) as lan:
        path = os.path.join(lan.docroot, "update.bin")
        say("LAN: origin 10.77.0.1 (%d Mbit/s up) and %d workstations (%d Mbit/s) in "
            "network namespaces; %d MiB file" % (ORIGIN_MBIT, n, LAN_MBIT, size // MiB))
        sha = harness.make_file(path, size)
        url = lan.origin_url("update.bin")
        subprocess.run([harness.dopt_path(), "publish", path, "--web-seed", url,
                        "-o", path + ".torrent"], check=True, capture_output=True)
        lan.start_origin()
        # Durable agents (the default): each file is flushed before delivery.
        agents = [lan.start_agent(i, peers="all", extra_toml='log_level = "info"')
                  for i in range(1, n + 1)]
        before = lan.origin_tx_bytes()
        results = [None] * n
        t0 = time.monotonic()

        def fetch(i, a):
            dest = os.path.join(a.dir, "update.bin")
            rc, _, err = a.get(url, dest, timeout=600)
            results[i] = (rc, time.monotonic() - t0, dest, err)

        threads = [threading.Thread(target=fetch, args=(i, a)) for i, a in enumerate(agents)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        egress = lan.origin_tx_bytes() - before
        ok = True
        print("\n  workstation  time    from peers   from origin   file")
        for i, a in enumerate(agents):
            rc, secs, dest, err = results[i]
            intact = rc == 0 and harness.sha256_file(dest) == sha
            ok = ok and intact
            j = a.job_for(dest) if rc == 0 else {}
            print("  h%-10d %5.1f s  %6.1f MiB   %6.1f MiB    %s" % (
                i + 1, secs, j.get("bytes_from_peers", 0) / MiB,
                j.get("bytes_from_origin", 0) / MiB,
                "intact" if intact else "FAILED " + err.strip()[-200:]))
        last = max(r[1] for r in results)
        u, c = ORIGIN_MBIT * 1e6 / 8, LAN_MBIT * 1e6 / 8
        t_min = max(size / u, size / c, n * size / (u + n * c))
        ratio = egress / size
        ok = ok and ratio < 1.5
        print("\n  origin egress      %.2f x the file size (plain HTTP: %d x)" % (ratio, n))
        print("  last one done      %.1f s = %.2f x T_min (%.1f s); plain HTTP would need "
              "at least %.1f s" % (last, last / t_min, t_min, n * size / u))
        print("  result             %s\n" % ("PASS" if ok else "FAIL"))
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
