#!/usr/bin/python3
"""A stock BitTorrent client beside dopt agents: Debian's libtorrent 2.0.8
(python3-libtorrent) as a seeder or a leecher, for tests and benches in the
namespaces of tests/lan/netns.py. Run it with /usr/bin/python3 (the Python
that has Debian's dist-packages) inside a workstation's namespace:

  ip netns exec NS /usr/bin/python3 stock_peer.py --torrent F.torrent \
      --save DIR --listen 10.77.0.12:6881 --events OUT.jsonl [--seed]
      [--require-encryption] [--peer ADDR:PORT ...]

Settings: LSD on (its namespace's LAN), listening on --listen only, DHT,
UPnP, NAT-PMP, uTP and trackers off (web seeds are dropped: every byte it
gets comes from peers). --require-encryption is qBittorrent's "Require
encryption": libtorrent with in/out_enc_policy forced and RC4 only.

--seed checks nothing (seed_mode: the file in --save is taken as whole).
It runs until SIGTERM. Events go to --events as JSON lines, each with `t`
(unix time) and `event`: "ready" (the torrent is added and LSD announced),
"peer_error" (a connection ended: `peer` addr:port, `error`), "first_upload" / "first_download" (the first payload
byte a stock peer sent or took: `peer`), "done" (a leecher holds every
piece), and on exit "totals" (`uploaded`, `downloaded`).
"""

import argparse
import json
import signal
import sys
import time

import libtorrent as lt


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--torrent", required=True)
    ap.add_argument("--save", required=True)
    ap.add_argument("--listen", required=True, help="addr:port")
    ap.add_argument("--events", required=True, help="JSON lines out")
    ap.add_argument("--seed", action="store_true")
    ap.add_argument("--require-encryption", action="store_true")
    ap.add_argument("--peer", action="append", default=[], help="addr:port to connect to")
    return ap.parse_args(argv)


def session_settings(args):
    enc = lt.enc_policy.forced if args.require_encryption else lt.enc_policy.enabled
    return {
        "listen_interfaces": args.listen,
        "enable_lsd": True,
        "enable_dht": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_outgoing_utp": False,
        "enable_incoming_utp": False,
        "in_enc_policy": enc,
        "out_enc_policy": enc,
        "allowed_enc_level": lt.enc_level.rc4 if args.require_encryption else lt.enc_level.both,
        "alert_mask": (lt.alert.category_t.error_notification
                       | lt.alert.category_t.status_notification
                       | lt.alert.category_t.peer_notification
                       | lt.alert.category_t.connect_notification),
    }


class Events:
    def __init__(self, path):
        self.out = open(path, "a", buffering=1)

    def write(self, event, **fields):
        fields.update(t=time.time(), event=event)
        self.out.write(json.dumps(fields) + "\n")


def main(argv):
    args = parse_args(argv)
    events = Events(args.events)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    ses = lt.session(session_settings(args))
    ti = lt.torrent_info(args.torrent)
    params = lt.add_torrent_params()
    params.ti = ti
    params.save_path = args.save
    params.url_seeds = []
    params.trackers = []
    params.flags = (lt.torrent_flags.seed_mode if args.seed else 0) | lt.torrent_flags.disable_dht
    handle = ses.add_torrent(params)
    for peer in args.peer:
        host, port = peer.rsplit(":", 1)
        handle.connect_peer((host, int(port)))
    events.write("ready")
    uploaded = {}
    downloaded = {}
    done = args.seed
    while not stop:
        ses.wait_for_alert(100)
        for a in ses.pop_alerts():
            if isinstance(a, lt.peer_error_alert) or isinstance(a, lt.peer_disconnected_alert):
                events.write("peer_error", peer="%s:%d" % tuple(a.endpoint), error=a.message())
            elif isinstance(a, lt.torrent_finished_alert) and not done:
                done = True
                events.write("done")
        for p in handle.get_peer_info():
            key = "%s:%d" % tuple(p.ip)
            if p.total_upload > 0 and key not in uploaded:
                uploaded[key] = True
                events.write("first_upload", peer=key)
            if p.total_download > 0 and key not in downloaded:
                downloaded[key] = True
                events.write("first_download", peer=key)
        if not done and handle.status().is_seeding:
            done = True
            events.write("done")
    st = handle.status()
    events.write("totals", uploaded=st.all_time_upload, downloaded=st.all_time_download)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
