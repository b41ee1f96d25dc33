"""Household scenarios built at test time from real corpus captures and generated context.

A scenario moves a real capture in time (its first packet at a chosen instant, every gap
kept), keeps only the flows it needs, and adds generated context traffic: DNS answers for a
bank's website, on the same device, at a chosen moment. The result is written as a classic
pcap into the test's temporary folder, never into the project (the corpus captures are read
in place; see tests/pcaps/README.md).
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from netwatch.sources.capture import ReadStats, open_capture

ETHERNET = 1
Frame = tuple[float, bytes]


@dataclass
class Piece:
    """Frames of one capture, moved to start at ``start`` (an aware datetime)."""

    capture: Path
    start: datetime
    keep: Callable[[bytes], bool] | None = None

    def frames(self) -> list[Frame]:
        st = ReadStats()
        src = list(open_capture(str(self.capture), st))
        if set(st.interfaces) != {ETHERNET}:
            raise ValueError(f"{self.capture}: scenarios use Ethernet captures only")
        t0 = src[0][0]
        shift = self.start.timestamp() - t0
        return [(ts + shift, fr) for ts, _lt, fr, _wire in src
                if self.keep is None or self.keep(fr)]


def udp_ports(frame: bytes) -> tuple[int, int] | None:
    """The UDP ports of an Ethernet/IPv4 frame, else None."""
    if len(frame) < 42 or frame[12:14] != b"\x08\x00" or frame[23] != 17:
        return None
    ihl = (frame[14] & 0x0F) * 4
    return struct.unpack_from("!HH", frame, 14 + ihl)  # type: ignore[return-value]


def is_tcp(frame: bytes) -> bool:
    return len(frame) >= 34 and frame[12:14] == b"\x08\x00" and frame[23] == 6


# Locally administered MAC addresses; netwatch reads nothing of them.
ETHERNET_HEADER = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00"


def ipv4_frame(src: str, dst: str, proto: int, l4: bytes, ident: int,
               flags_frag: int = 0x4000) -> bytes:
    """Ethernet + a 20-byte IPv4 header (RFC 791) around a transport segment."""
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), ident, flags_frag, 64, proto, 0,
                     ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed)
    return ETHERNET_HEADER + ip + l4


def tcp_segment(sport: int, dport: int, seq: int, ack: int, payload: bytes) -> bytes:
    """A TCP header (RFC 9293) with PSH+ACK and no options, then the payload."""
    return struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 0x50, 0x18, 64240, 0, 0) + payload


def dns_answer(when: datetime, device_ip: str, resolver_ip: str, name: str,
               address: str, txid: int = 0x4242) -> Frame:
    """A DNS response (RFC 1035 §4.1) for an A record, from the resolver to the device."""
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00"
    question = qname + struct.pack("!HH", 1, 1)
    answer = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 300, 4) + \
        ipaddress.ip_address(address).packed
    dns = struct.pack("!HHHHHH", txid, 0x8180, 1, 1, 0, 0) + question + answer
    udp = struct.pack("!HHHH", 53, 53000 + txid % 1000, 8 + len(dns), 0) + dns
    return when.timestamp(), ipv4_frame(resolver_ip, device_ip, 17, udp, txid, 0)


def http_get(when: datetime, device_ip: str, server_ip: str, host: str, path: str,
             sport: int = 50123) -> Frame:
    """One plain-HTTP request segment (RFC 9112) from the device, as seen mid-connection."""
    req = (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: Mozilla/5.0\r\n"
           f"Accept: */*\r\n\r\n").encode()
    return when.timestamp(), ipv4_frame(device_ip, server_ip, 6,
                                        tcp_segment(sport, 80, 1000, 2000, req), 7)


def tls_client_hello(when: datetime, device_ip: str, server_ip: str, sni: str,
                     sport: int = 50321) -> Frame:
    """A TLS 1.2 ClientHello (RFC 5246 §7.4.1.2) with a server_name extension (RFC 6066 §3),
    as the first segment the capture sees of a connection to port 443."""
    name = sni.encode()
    server_name = struct.pack("!HBH", len(name) + 3, 0, len(name)) + name
    ext = struct.pack("!HH", 0, len(server_name)) + server_name
    hello = (b"\x03\x03" + bytes(32) + b"\x00" + struct.pack("!H", 2) + b"\x13\x01"
             + b"\x01\x00" + struct.pack("!H", len(ext)) + ext)
    hs = b"\x01" + len(hello).to_bytes(3, "big") + hello
    record = b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs
    return when.timestamp(), ipv4_frame(device_ip, server_ip, 6,
                                        tcp_segment(sport, 443, 5000, 6000, record), 9)


def write_pcap(path: Path, frames: Iterable[Frame]) -> Path:
    """Frames in time order into a classic microsecond pcap (Ethernet)."""
    with open(path, "wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, ETHERNET))
        for ts, fr in sorted(frames, key=lambda x: x[0]):
            sec = int(ts)
            usec = int(round((ts - sec) * 1e6))
            if usec == 1000000:
                sec, usec = sec + 1, 0
            fh.write(struct.pack("<IIII", sec, usec, len(fr), len(fr)) + fr)
    return path


def build(path: Path, pieces: Iterable[Piece], extra: Iterable[Frame] = ()) -> Path:
    frames: list[Frame] = []
    for p in pieces:
        frames += p.frames()
    frames += list(extra)
    return write_pcap(path, frames)
