#!/usr/bin/env python3
"""Counts what leaves one network namespace's interface, to prove that an
agent sends nothing outside the LAN (no DHT, UPnP, NAT-PMP, trackers).

Run inside the namespace (ip netns exec NS python3 sniff.py IFACE SUBNET OUT):
it captures every frame the interface sends (AF_PACKET, outgoing only) until
SIGTERM, then writes a JSON summary to OUT:

  {"frames": N, "lan": N, "lsd": N, "other": [["what", count], ...]}

"lan" counts IPv4 packets to an address inside SUBNET (e.g. 10.77.0.0/24)
and ARP for such addresses; "lsd" counts BEP 14 announcements to
239.192.152.143:6771; everything else (another destination, SSDP to
239.255.255.250:1900, NAT-PMP to port 5351, IPv6, ARP for an outside
address) is listed under "other" with a short description. IGMP membership
reports for the LSD group count as "lan". Standard library only.
"""

import ipaddress
import json
import signal
import socket
import struct
import sys

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
LSD_GROUP = "239.192.152.143"


def main():
    iface, subnet, out_path = sys.argv[1], ipaddress.ip_network(sys.argv[2]), sys.argv[3]
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((iface, 0))
    s.settimeout(0.2)
    counts = {"frames": 0, "lan": 0, "lsd": 0}
    other = {}
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    # Say "ready" only once the socket sees traffic.
    print("ready", flush=True)

    def note(what):
        other[what] = other.get(what, 0) + 1

    while not stop:
        try:
            frame, addr = s.recvfrom(65535)
        except socket.timeout:
            continue
        except InterruptedError:
            continue
        if addr[2] != PACKET_OUTGOING:
            continue
        counts["frames"] += 1
        ethertype = struct.unpack("!H", frame[12:14])[0]
        if ethertype == 0x0806:  # ARP: who-has target
            target = ipaddress.ip_address(frame[38:42])
            if target in subnet:
                counts["lan"] += 1
            else:
                note("arp who-has %s" % target)
            continue
        if ethertype != 0x0800:
            note("ethertype 0x%04x" % ethertype)
            continue
        ihl = (frame[14] & 15) * 4
        proto = frame[23]
        dst = ipaddress.ip_address(frame[30:34])
        l4 = frame[14 + ihl:]
        dport = struct.unpack("!H", l4[2:4])[0] if proto in (6, 17) and len(l4) >= 4 else 0
        if dst in subnet:
            counts["lan"] += 1
        elif str(dst) == LSD_GROUP and proto == 17 and dport == 6771:
            counts["lsd"] += 1
        elif proto == 2 and (str(dst) == LSD_GROUP or str(dst).startswith("224.0.0.")):
            counts["lan"] += 1  # IGMP membership for the LSD group
        else:
            note("%s %s:%d" % ({6: "tcp", 17: "udp"}.get(proto, "ip%d" % proto), dst, dport))
    counts["other"] = sorted(other.items())
    with open(out_path, "w") as f:
        json.dump(counts, f)


if __name__ == "__main__":
    main()
