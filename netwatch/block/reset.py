"""Make both ends of a blocked TCP connection reset themselves at once.

A reject rule answers a packet with a reset to its sender; a program that sends nothing
(a viewer waiting for the next screen update) would keep its dead connection until it
next speaks. So netwatch sends each end one ACK, as if from the other end, with sequence
numbers outside the window: RFC 9293 section 3.10.7.4 has the receiver answer an
unacceptable segment with an ACK carrying its own next sequence number. That answer crosses
the box, meets the reject rule, and the reset it draws carries exactly the sequence number
the end expects (the reject takes it from the answer's acknowledgment field), so the end
accepts it. The ACKs are sent through a raw socket with ``KICK_MARK``, which the block
rules let pass. IPv4 only (an IPv6 end is reset when it next sends).
"""

from __future__ import annotations

import random
import socket
import struct

# "nw" in ASCII: the fwmark of the packets netwatch sends to end a session.
KICK_MARK = 0x6E77
SO_MARK = 36  # socket.SO_MARK is missing from older Pythons (<linux/socket.h>)
TCP_ACK = 0x10
# A small window and no options: the segment only has to be well-formed.
WINDOW = 512


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ack_segment(src: str, dst: str, sport: int, dport: int, seq: int, ack: int) -> bytes:
    """An IPv4 packet carrying a bare TCP ACK (20-byte IP and TCP headers)."""
    s, d = socket.inet_aton(src), socket.inet_aton(dst)
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, TCP_ACK, WINDOW, 0, 0)
    csum = _checksum(s + d + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(tcp)) + tcp)
    tcp = tcp[:16] + struct.pack("!H", csum) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), random.getrandbits(16), 0,
                     64, socket.IPPROTO_TCP, 0, s, d)
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    return ip + tcp


def kick(src: str, dst: str, sport: int, dport: int) -> None:
    """One out-of-window ACK to each end of the connection ``src:sport -> dst:dport``."""
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) as s:
        s.setsockopt(socket.SOL_SOCKET, SO_MARK, KICK_MARK)
        for a, b, pa, pb in ((src, dst, sport, dport), (dst, src, dport, sport)):
            # Random numbers: 2**32 against a window of at most a few MiB, so the segment
            # is out of window but for a chance of about one in a thousand (then it is a
            # harmless duplicate ACK, and the end resets at its next packet instead).
            seg = ack_segment(a, b, pa, pb, random.getrandbits(32), random.getrandbits(32))
            s.sendto(seg, (b, 0))
