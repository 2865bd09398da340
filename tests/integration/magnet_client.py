"""A stock libtorrent client given only an info-hash (a magnet link) and one
peer: Debian's python3-libtorrent (2.0.8), run with /usr/bin/python3.
Listens on 127.0.0.1 only, no DHT, LSD, UPnP, NAT-PMP or trackers.

    /usr/bin/python3 magnet_client.py INFO_HASH_HEX HOST:PORT SAVE_DIR TIMEOUT_S

Prints "metadata <seconds>" when it has the info dictionary (BEP 9) and
"done <seconds>" when the file is whole; exit 0 then, 1 at the timeout."""

import sys
import time

import libtorrent as lt


def main():
    info_hash, peer, save_dir, timeout = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    host, port = peer.rsplit(":", 1)
    ses = lt.session({"listen_interfaces": "127.0.0.1:0", "enable_dht": False, "enable_lsd": False,
                      "enable_upnp": False, "enable_natpmp": False, "enable_outgoing_utp": False,
                      "enable_incoming_utp": False, "alert_mask": 0})
    params = lt.parse_magnet_uri("magnet:?xt=urn:btih:" + info_hash)
    params.save_path = save_dir
    h = ses.add_torrent(params)
    h.connect_peer((host, int(port)))
    t0 = time.monotonic()
    said_metadata = False
    next_connect = t0 + 5
    while time.monotonic() - t0 < timeout:
        st = h.status()
        if st.has_metadata and not said_metadata:
            print("metadata %.2f" % (time.monotonic() - t0), flush=True)
            said_metadata = True
        if st.is_seeding:
            print("done %.2f" % (time.monotonic() - t0), flush=True)
            return 0
        if time.monotonic() >= next_connect:  # again, should the first attempt have failed
            h.connect_peer((host, int(port)))
            next_connect += 5
        time.sleep(0.1)
    print("timeout: metadata %s, progress %.2f" % (h.status().has_metadata, h.status().progress), flush=True)
    return 1


if __name__ == "__main__":
    sys.exit(main())
