#!/usr/bin/env python3
"""Deterministic generator of netwatch's per-tool SYNTHETIC example captures.

Run:  python3 tests/pcaps/synthetic/tools/generate_tools.py [--out DIR]

For every tool id of /work/shared/reference/tools.yaml (47 ids) plus ``xdmcp`` (netwatch
reports XDMCP as its own tool; the reference's ``x11`` entry covers both) this writes one
positive capture ``<id>.pcap`` and one near-miss negative ``<id>-neg.pcap``, then
MANIFEST.tsv (``file kind tools signature description``) and FLOWS.tsv (the shared corpus's
columns plus ``variant``).  ``netwatch signatures test`` replays them and compares what
netwatch reports with FLOWS.tsv.

Nothing here is a real capture.  Every fact about a tool comes from the project reference,
/work/shared/reference/tools.yaml and remote-access-tools.md; each builder names the entry
it uses (``REF <id>``).  Generic protocols follow their public specifications (TLS RFC 5246 /
8446, DNS, HTTP/1.1, SSH RFC 4253, RFB RFC 6143, X11 and XDMCP from X.Org's protocol
documents, FIX 4.4 tag=value framing); bytes that would be encrypted or that no source
describes are seeded pseudo-random filler.  Where the reference gives a wildcard
(``*.ultraviewer.net``) the example instantiates it with the made-up label ``node1`` and its
description says so.

Labels follow netwatch's reporting rules (R1-R9 below), derived from
the reference and never from netwatch's output:
  R1 rendezvous / relay / download names -> that role on the flow to the resolved address
     (or whose SNI is the name); the DNS lookup flow -> ``dns``.
  R2 web/api names that are a bare domain or ``www.`` -> the vendor's website: not reported.
  R3 other web/api names (wildcard instances, exact names) -> ``unknown``; DNS -> ``dns``.
  R4 shared infrastructure (*.live.com, *.cc.skype.com, *.zoho.com, *.amazonaws.com,
     *.google.com ...) is never reported alone.
  R5 a first label download/downloads/dl under a vendor's zone -> ``download``.
  R6 plain-HTTP GET of an installer path on a vendor host -> ``download``.
  R7 RustDesk ports on the rs-ny.rustdesk.com address: 21115/21116 -> rendezvous,
     21117 -> relay.
  R8 handshake tools -> ``session``.
  R9 msra is RDP, RealVNC direct is RFB, Apple/Tight/Ultra are RFB with ``variant``.

Output is byte-identical on every run: seeds are derived from file names, timestamps are
fixed, the pcap writer is generate.py's, and certificates are always the hand-made DER of
generate.self_signed_cert (the ``cryptography`` package is kept out of it, so the bytes do
not depend on whether it is installed).

Addresses: home LAN 192.168.1.0/24 (router and DNS resolver 192.168.1.1, laptop
192.168.1.23, a PC 192.168.1.30), internet hosts in 198.51.100.0/24 (vendor servers) and
203.0.113.0/24 (websites, look-alikes, the remote helper).
"""

from __future__ import annotations

import argparse
import hashlib
import re
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import generate as G  # noqa: E402  (tests/pcaps/synthetic/generate.py: writers, TLS, DNS)
from scapy.layers.inet import UDP  # noqa: E402
from scapy.packet import Raw  # noqa: E402

C, S = G.C, G.S
ms, sec, u8, u16, u32 = G.ms, G.sec, G.u8, G.u16, G.u32

LAPTOP_IP, LAPTOP_MAC = G.LAPTOP_IP, G.LAPTOP_MAC
PC_IP, PC_MAC = G.PC_IP, G.PC_MAC
ROUTER_IP, ROUTER_MAC = G.ROUTER_IP, G.ROUTER_MAC
HELPER_IP = "203.0.113.66"          # the remote "helper" on the internet
MAX_PACKETS = 60

# The reference's 47 ids, in its order, plus xdmcp (see the module docstring).
TOOL_IDS = (
    "rdp", "vnc", "x11", "citrix", "nomachine", "radmin", "apple-screen-sharing", "msra",
    "teamviewer", "anydesk", "rustdesk", "screenconnect", "quickassist", "realvnc-connect",
    "tightvnc", "ultravnc", "ultraviewer", "splashtop", "logmein", "gotoassist",
    "zoho-assist", "supremo", "aeroadmin", "ammyy", "remote-utilities",
    "chrome-remote-desktop", "parsec", "atera", "n-able-take-control", "beyondtrust",
    "dameware", "isl-online", "getscreen", "hoptodesk", "remotepc", "iperius-remote",
    "netsupport", "meshcentral", "simplehelp", "action1", "ninjaone", "kaseya", "dwservice",
    "anyviewer", "todesk", "sunlogin", "fixme-it", "xdmcp",
)
REFERENCE = Path("/work/shared/reference/tools.yaml")
MADE_UP = "node1"                   # the label that instantiates a reference wildcard
T0 = G.ts_us("2024-04-08T08:00:00Z")


def cert(cn: str, org: str | None, seed: str) -> bytes:
    """generate.self_signed_cert, always its hand-made DER: with ``cryptography`` importable
    the bytes would depend on the machine that runs this script."""
    saved = sys.modules.get("cryptography", False)
    sys.modules["cryptography"] = None  # type: ignore[assignment]  # import now fails
    try:
        return G.self_signed_cert(cn, org, seed)
    finally:
        if saved is False:
            del sys.modules["cryptography"]
        else:
            sys.modules["cryptography"] = saved


# --------------------------------------------------------------------------
# one example capture
# --------------------------------------------------------------------------
class Example:
    """A capture being built: its frames, its label rows, a clock and an address plan."""

    def __init__(self, tool: str, kind: str, start: int):
        self.tool = tool
        self.kind = kind
        self.file = f"{tool}.pcap" if kind == "positive" else f"{tool}-neg.pcap"
        seed = int.from_bytes(hashlib.sha256(self.file.encode()).digest()[:4], "big")
        self.cap = G.Capture(self.file, seed=seed)
        self.rng = self.cap.rng
        self.t = start
        self.rows: list[tuple[str, ...]] = []
        self.used: set[str] = set()
        self.description = ""
        self._port = 49700 + self.rng.randrange(0, 9000)

    # addresses and ports ------------------------------------------------------
    def addr(self, name: str, net: str = "198.51.100") -> str:
        """A stable documentation address for ``name``, unique within this capture."""
        n = 10 + hashlib.sha256(name.encode()).digest()[0] % 240
        while f"{net}.{n}" in self.used:
            n = 10 + (n - 9) % 240
        ip = f"{net}.{n}"
        self.used.add(ip)
        return ip

    def port(self) -> int:
        """The next ephemeral client port (sequential, as Windows allocates them)."""
        self._port += 1 + self.rng.randrange(0, 3)
        return self._port

    # labels ------------------------------------------------------------------
    def row(self, proto: str, cip: str, cport: int, sip: str, sport: int, tool: str | None,
            roles: str, note: str, variant: str = "") -> None:
        self.rows.append((self.file, proto, cip, str(cport), sip, str(sport),
                          tool or "none", roles if tool else "-", note, variant))

    def lookup(self, name: str, ip: str, tool: str | None, note: str, ttl: int = 300) -> int:
        """DNS A query from the laptop and its answer; labels the DNS flow ``dns`` for
        ``tool`` (None: a lookup that must not be reported).  Returns the answer time."""
        sport, t = G.dns_exchange(self.cap, G.dns_link(), self.t, name, ip, ttl=ttl)
        self.row("udp", LAPTOP_IP, sport, ROUTER_IP, 53, tool, "dns",
                 f"DNS A query {name}" + (f": {note}" if note else ""))
        return t

    def write(self, out: Path) -> int:
        n = G.write_pcap(out / self.file, self.cap.render())
        assert n < MAX_PACKETS, f"{self.file}: {n} packets"
        assert self.description.startswith("SYNTHETIC:"), self.file
        return n

    @property
    def label_tools(self) -> str:
        tools = sorted({r[6] for r in self.rows if r[6] != "none"})
        return ",".join(tools) if tools and self.kind == "positive" else "-"


# --------------------------------------------------------------------------
# flow shapes (generic protocols)
# --------------------------------------------------------------------------
def records(f: G.TCPFlow, rng, t: int, plan: list[tuple[int, int]], rtt: int) -> int:
    """Send TLS application-data records per ``plan`` [(side, size)...]: a side change
    costs half a round trip, a run on one side a fraction of a millisecond."""
    last = None
    for side, size in plan:
        t += ms(0.4) if side == last else rtt // 2
        t = f.send(t, side, G.appdata(rng, size))
        last = side
    return t


def shape(rng, kind: str) -> list[tuple[int, int]]:
    """Record plans: what an application's TLS connection carries after the handshake."""
    r = rng.randrange
    if kind == "chatty":      # agent / ID server: a request, an answer, keepalives
        return [(C, r(220, 460)), (S, r(120, 380)), (C, r(40, 90)), (S, r(40, 90)),
                (C, 31), (S, 31)]
    if kind == "session":     # relay: screen updates go up, input comes down
        plan = [(C, r(260, 420)), (S, r(90, 160))]
        for _ in range(4):
            plan += [(S, r(30, 80)), (C, r(700, 1340)), (C, r(300, 900))]
        return plan
    if kind == "download":    # installer bytes coming down
        return [(C, r(300, 420))] + [(S, 1341)] * 10
    raise ValueError(kind)


def tls_app(ex: Example, t: int, sip: str, sport: int, sni: str | None, kind: str,
            alpn: tuple[str, ...] = ("http/1.1",), tls12_cert: bytes | None = None,
            link: G.Link | None = None, cport: int | None = None, rtt: int = ms(28),
            server_alpn: str | None = None) -> tuple[int, int]:
    """An application's TLS connection: ClientHello (SNI/ALPN), the server's flight (TLS 1.3,
    or TLS 1.2 with ``tls12_cert`` in clear), then records per ``shape(kind)``; the client
    closes.  Returns (client port, end time)."""
    rng = ex.rng
    cport = cport or ex.port()
    f = G.TCPFlow(ex.cap, link or G.lan_link(sip, 53), cport, sport)
    t = f.handshake(t + ms(2), rtt=rtt)
    ch = G.client_hello(rng, sni=sni, alpn=alpn, tls13=tls12_cert is None)
    t += ms(1)
    f.send(t, C, ch)
    t += rtt // 2
    if tls12_cert is None:
        t = f.send(t, S, G.tls13_server_flight(rng, ch))
        t += rtt // 2
        f.send(t, C, G.tls13_client_finish(rng))
    else:
        t = f.send(t, S, G.tls12_server_flight(rng, [tls12_cert], alpn=server_alpn))
        t += rtt // 2
        f.send(t, C, G.tls12_client_finish(rng))
        t += rtt // 2
        f.send(t, S, G.tls12_server_finish(rng))
    plan = shape(rng, kind)
    if kind == "download":
        t = records(f, rng, t, plan[:1], rtt)
        for i, (_side, size) in enumerate(plan[1:]):
            t = f.send(t + (rtt // 2 if i == 0 else ms(1.1)), S, G.appdata(rng, size))
            if i % 2 == 1:
                f.ack(t + ms(0.2), C)
    else:
        t = records(f, rng, t, plan, rtt)
    t += ms(40)
    f.ack(t, C)
    return cport, f.close(t + sec(2), C, rtt=rtt)


def web(ex: Example, t: int, name: str, note: str, net: str = "203.0.113") -> int:
    """A browser visit that must not be reported: DNS, then generate.web_tls13 (TLS 1.3,
    ALPN h2, a page of records).  Labels both flows ``none``."""
    ip = ex.addr(name, net)
    ex.t = t
    t = ex.lookup(name, ip, None, note)
    cport = ex.port()
    t = G.web_tls13(ex.cap, t + ms(2), ip, name, cport, server_records=(1180, 640),
                    keep_open=ms(2500))
    ex.row("tcp", LAPTOP_IP, cport, ip, 443, None, "-",
           f"TLS 1.3 SNI {name}, ALPN h2: {note}")
    return t + sec(6)


def http_get(ex: Example, t: int, sip: str, host: str, path: str, port: int = 80,
             body: bytes | None = None, installer: bool = True) -> tuple[int, int]:
    """Plain HTTP/1.1 GET and its answer: an installer (``MZ`` + filler, PE files start
    with MZ) or a small HTML page.  Returns (client port, end time)."""
    rng = ex.rng
    cport = ex.port()
    f = G.TCPFlow(ex.cap, G.lan_link(sip, 54), cport, port)
    t = f.handshake(t + ms(2), rtt=ms(26))
    hostport = host if port == 80 else f"{host}:{port}"
    req = (f"GET {path} HTTP/1.1\r\nHost: {hostport}\r\n"
           "User-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
           "(KHTML, like Gecko) Chrome/123.0.0.0 Safari/537.36\r\n"
           "Accept: */*\r\nAccept-Encoding: gzip, deflate\r\nConnection: keep-alive\r\n\r\n"
           ).encode()
    t += ms(1)
    f.send(t, C, req)
    if installer:
        body = b"MZ" + rng.randbytes(4 * 1460 - 2)
        fname = path.split("?", 1)[0].rsplit("/", 1)[-1]
        head = ("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                f"Content-Length: {len(body)}\r\n"
                f"Content-Disposition: attachment; filename={fname}\r\n\r\n").encode()
    else:
        body = body or (b"<!doctype html><html><head><title>Status</title></head>"
                        b"<body><p>ok</p></body></html>\n")
        head = ("HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
    t += ms(27)
    t = f.send(t, S, head + body, gap=ms(0.6))
    t += ms(1)
    f.ack(t, C)
    return cport, f.close(t + ms(900), C, rtt=ms(26))


def opaque_tcp(ex: Example, t: int, sip: str, sport: int, sizes: list[tuple[int, int]],
               link: G.Link | None = None, cport: int | None = None,
               first: list[tuple[int, bytes]] = ()) -> tuple[int, int]:
    """A TCP connection carrying bytes no source describes (seeded filler), after any
    ``first`` (side, bytes) messages.  Returns (client port, end time)."""
    rng = ex.rng
    cport = cport or ex.port()
    f = G.TCPFlow(ex.cap, link or G.lan_link(sip, 53), cport, sport)
    t = f.handshake(t + ms(2), rtt=ms(30))
    for side, data in first:
        t += ms(15)
        f.send(t, side, data)
    for side, n in sizes:
        t += ms(15)
        t = f.send(t, side, rng.randbytes(n))
    t += ms(40)
    f.ack(t, C)
    return cport, f.close(t + sec(1), C, rtt=ms(30))


# --------------------------------------------------------------------------
# handshake pieces
# --------------------------------------------------------------------------
def rdp_session(ex: Example, link: G.Link, t: int, cport: int, user: str, requested: int,
                selected: int, tpkt_version: int = 3) -> int:
    """REF rdp 'handshake': TPKT + X.224 Connection Request (cookie mstshash, RDP_NEG_REQ),
    Connection Confirm with RDP_NEG_RSP, then TLS (the ClientHello starts 0x16).
    ``tpkt_version`` other than 3 builds the near miss."""
    rng = ex.rng
    f = G.TCPFlow(ex.cap, link, cport, 3389)
    t = f.handshake(t, rtt=ms(24))
    cr = bytearray(G.rdp_connection_request(user, requested))
    cc = bytearray(G.rdp_connection_confirm(selected))
    cr[0] = cc[0] = tpkt_version
    t += ms(2)
    f.send(t, C, bytes(cr))
    t += ms(12)
    f.send(t, S, bytes(cc))
    if tpkt_version != 3:
        return f.close(t + ms(30), S, rtt=ms(24))
    t += ms(13)
    f.send(t, C, G.client_hello(rng, sni=None, alpn=(), tls13=False))
    t += ms(12)
    srv = cert("grandma-pc", None, f"rdp-{ex.file}")
    t = f.send(t, S, G.tls12_server_flight(rng, [srv], suite=0xC02F))
    t += ms(13)
    f.send(t, C, G.tls12_client_finish(rng))
    t += ms(12)
    f.send(t, S, G.tls12_server_finish(rng))
    for side, n, dt in [(C, 420, 13), (S, 310, 12), (C, 200, 13), (S, 1100, 12), (C, 60, 40)]:
        t += ms(dt)
        f.send(t, side, G.appdata(rng, n))
    t += ms(40)
    f.ack(t, S)
    return f.close(t + sec(2), C, rtt=ms(24))


RFB_VERSION = re.compile(rb"RFB \d{3}\.\d{3}\n")   # RFC 6143 §7.1.1
RFB_PIXFMT = struct.pack("!BBBBHHHBBB3x", 32, 24, 0, 1, 255, 255, 255, 16, 8, 0)


def rfb_session(ex: Example, link: G.Link, t: int, cport: int, sport: int,
                version: bytes, sec_types: list[int], desktop: bytes) -> int:
    """RFC 6143 session (REF vnc 'handshake'): the server's 12-byte ProtocolVersion first,
    the client's answer, the security-type list (3.7/3.8: count then u8 types), the viewer
    choosing 2 (VNC Authentication, §7.2.2), SecurityResult, ClientInit / ServerInit with
    the desktop name, one framebuffer request and two small updates.  A version line that
    is not RFB builds the near miss: the server hangs up after the exchange."""
    rng = ex.rng
    f = G.TCPFlow(ex.cap, link, cport, sport)
    t = f.handshake(t, rtt=ms(30))
    step = ms(30)
    t += ms(2)
    f.send(t, S, version)
    t += step
    f.send(t, C, version)
    if not RFB_VERSION.fullmatch(version):
        t += ms(1)
        return f.close(t, S, rtt=ms(30))
    t += step
    f.send(t, S, u8(len(sec_types)) + bytes(sec_types))     # §7.1.2
    t += step
    f.send(t, C, b"\x02")
    t += step
    f.send(t, S, rng.randbytes(16))                           # §7.2.2 challenge
    t += ms(2400)
    f.send(t, C, rng.randbytes(16))                           # response (filler)
    t += step
    f.send(t, S, u32(0))                                      # §7.1.3 SecurityResult OK
    t += step
    f.send(t, C, b"\x01")                                     # §7.3.1 ClientInit, shared
    t += step
    f.send(t, S, u16(1280) + u16(800) + RFB_PIXFMT + u32(len(desktop)) + desktop)  # §7.3.2
    t += step
    f.send(t, C, b"\x02\x00" + u16(2) + struct.pack("!ii", 1, 0)                   # §7.5.2
           + b"\x03\x00" + u16(0) + u16(0) + u16(1280) + u16(800))                # §7.5.3

    def update(x: int, y: int, w: int, h: int) -> bytes:      # §7.6.1, Raw encoding
        px = bytes(((x + i) * 5 + y) & 0xFF for i in range(w * h * 4))
        return b"\x00\x00" + u16(1) + u16(x) + u16(y) + u16(w) + u16(h) + struct.pack("!i", 0) + px

    t += step
    t = f.send(t, S, update(0, 0, 32, 8))
    for k in range(2):
        t += ms(400)
        f.send(t, C, b"\x05\x00" + u16(300 + 40 * k) + u16(200 + 9 * k))         # §7.5.5
        t += ms(20)
        f.send(t, C, b"\x03\x01" + u16(0) + u16(0) + u16(1280) + u16(800))
        t += step
        t = f.send(t, S, update(296 + 40 * k, 196 + 9 * k, 16, 16))
    t += ms(40)
    f.ack(t, C)
    return f.close(t + sec(1), C, rtt=ms(30))



def tv_message(rng, prefix: bytes, n: int) -> bytes:
    """REF teamviewer 'handshake': payloads start 0x17 0x24, later 0x11 0x30; the rest of
    TeamViewer's framing is not in the reference, so the remaining bytes are filler."""
    return prefix + rng.randbytes(n - 2)


def tv_flow(ex: Example, t: int, sip: str, keepalives: int) -> tuple[int, int]:
    rng = ex.rng
    cport = ex.port()
    f = G.TCPFlow(ex.cap, G.lan_link(sip, 50), cport, 5938)
    t = f.handshake(t + ms(3), rtt=ms(36))
    t += ms(1)
    f.send(t, C, tv_message(rng, b"\x17\x24", 24))
    t += ms(36)
    f.send(t, S, tv_message(rng, b"\x17\x24", 24))
    t += ms(2)
    f.send(t, C, tv_message(rng, b"\x11\x30", 140))
    t += ms(36)
    f.send(t, S, tv_message(rng, b"\x11\x30", 310))
    for _ in range(keepalives):
        t += sec(10)
        f.send(t, C, tv_message(rng, b"\x11\x30", 24))
        t += ms(36)
        f.send(t, S, tv_message(rng, b"\x11\x30", 24))
    t += ms(40)
    f.ack(t, C)
    return cport, f.close(t + sec(2), C, rtt=ms(36))


def ssh_flow(ex: Example, t: int, link: G.Link, cport: int, sport: int) -> int:
    """SSH-2 (RFC 4253): banners, KEXINIT both ways, ECDH, NEWKEYS, encrypted filler."""
    rng = ex.rng
    f = G.TCPFlow(ex.cap, link, cport, sport)
    t = f.handshake(t, rtt=ms(3))
    t += ms(4)
    f.send(t, S, b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u2\r\n")
    t += ms(1)
    f.send(t, C, b"SSH-2.0-OpenSSH_for_Windows_9.5\r\n")

    def kexinit() -> bytes:
        lists = [b"curve25519-sha256,ecdh-sha2-nistp256", b"ssh-ed25519,rsa-sha2-512",
                 b"chacha20-poly1305@openssh.com,aes128-ctr",
                 b"chacha20-poly1305@openssh.com,aes128-ctr",
                 b"hmac-sha2-256-etm@openssh.com", b"hmac-sha2-256-etm@openssh.com",
                 b"none", b"none", b"", b""]
        return G.ssh_packet(rng, u8(20) + rng.randbytes(16)
                            + b"".join(G.ssh_string(x) for x in lists) + b"\x00" + u32(0))

    t += ms(2)
    f.send(t, C, kexinit())
    t += ms(3)
    f.send(t, S, kexinit())
    t += ms(1)
    f.send(t, C, G.ssh_packet(rng, u8(30) + G.ssh_string(rng.randbytes(32))))
    t += ms(4)
    f.send(t, S, G.ssh_packet(rng, u8(31) + G.ssh_string(rng.randbytes(51))
                              + G.ssh_string(rng.randbytes(32)) + G.ssh_string(rng.randbytes(83)))
           + G.ssh_packet(rng, u8(21)))
    t += ms(1)
    f.send(t, C, G.ssh_packet(rng, u8(21)))
    for side, n in [(C, 44), (S, 44), (C, 68), (S, 52), (C, 420), (S, 36)]:
        t += ms(3 if side == S else 1)
        f.send(t, side, rng.randbytes(n))
    t += ms(40)
    f.ack(t, C)
    return f.close(t + sec(2), C, rtt=ms(3))


# --------------------------------------------------------------------------
# builders: protocols with a documented handshake
# --------------------------------------------------------------------------
DESCRIPTIONS: dict[str, str] = {}


def pc_link(client_ip: str = HELPER_IP) -> G.Link:
    """Internet helper -> the PC's forwarded port, captured on the LAN side."""
    return G.Link(ROUTER_MAC, PC_MAC, client_ip, PC_IP, c_ttl=113, s_ttl=128)


def b_rdp(ex: Example) -> None:
    # REF rdp 'handshake' (X.224 CR 0xE0 / CC 0xD0, RDP_NEG_REQ/RSP, then TLS).
    if ex.kind == "positive":
        cport = ex.port()
        rdp_session(ex, pc_link(), ex.t, cport, "helpdesk", 0x03, 0x02)
        ex.row("tcp", HELPER_IP, cport, PC_IP, 3389, "rdp", "session",
               "X.224 CR mstshash=helpdesk, RDP_NEG_REQ TLS|CredSSP; CC selects CredSSP; TLS")
        ex.description = ("SYNTHETIC: RDP from an internet helper to a forwarded TCP/3389 on the "
                          "PC: X.224 Connection Request (mstshash=helpdesk) and Confirm, "
                          "then TLS 1.2")
    else:
        cport = ex.port()
        rdp_session(ex, pc_link(), ex.t, cport, "helpdesk", 0x03, 0x02, tpkt_version=2)
        ex.row("tcp", HELPER_IP, cport, PC_IP, 3389, None, "-",
               "TPKT version byte 0x02 instead of 0x03 both ways: not TPKT, so not RDP")
        ex.description = ("SYNTHETIC: HARD NEGATIVE: an RDP-like exchange on TCP/3389 one byte "
                          "off: TPKT version 0x02 instead of 0x03 in request and answer "
                          "(REF rdp: TPKT 03 00)")


def b_msra(ex: Example) -> None:
    # REF msra: 'carries RDP on the wire', handshake 'expected to look like RDP'; R9.
    if ex.kind == "positive":
        cport = ex.port()
        rdp_session(ex, pc_link("203.0.113.71"), ex.t, cport, "helper", 0x01, 0x01)
        ex.row("tcp", "203.0.113.71", cport, PC_IP, 3389, "rdp", "session",
               "Windows Remote Assistance carries RDP: X.224 CR/CC, TLS; reported as rdp")
        ex.description = ("SYNTHETIC: Windows Remote Assistance (msra) is RDP on the wire (REF "
                          "msra): X.224 Connection Request mstshash=helper, RDP_NEG_REQ TLS, "
                          "Confirm, TLS 1.2; "
                          "netwatch reports it as rdp")
    else:
        name = "vpn.example.net"
        ip = ex.addr(name, "203.0.113")
        t = ex.lookup(name, ip, None, "unrelated service")
        cport, _ = tls_app(ex, t, ip, 3389, name, "chatty")
        ex.row("tcp", LAPTOP_IP, cport, ip, 3389, None, "-",
               "TLS ClientHello straight away on TCP/3389 (no X.224): not RDP")
        ex.description = ("SYNTHETIC: HARD NEGATIVE: TLS 1.3 with SNI vpn.example.net on TCP/3389, "
                          "the RDP port, with no X.224 Connection Request first (REF rdp)")


def _vnc_pos(ex: Example, version: bytes, types: list[int], desktop: bytes, variant: str,
             what: str) -> None:
    cport = ex.port()
    rfb_session(ex, pc_link(), ex.t, cport, 5900, version, types, desktop)
    ex.row("tcp", HELPER_IP, cport, PC_IP, 5900, "vnc", "session",
           f"RFB {version[4:11].decode()}, security types {types}, VNC auth, "
           f"ServerInit '{desktop.decode()}'", variant)
    ex.description = (f"SYNTHETIC: {what}: RFB {version[4:11].decode()} from an internet helper "
                      f"to the PC's forwarded TCP/5900, security-type list {types} (RFC 6143 "
                      f"§7.1.2), VNC Authentication, desktop '{desktop.decode()}', two updates")


def _vnc_neg(ex: Example, line: bytes, why: str) -> None:
    cport = ex.port()
    rfb_session(ex, pc_link(), ex.t, cport, 5900, line, [], b"")
    ex.row("tcp", HELPER_IP, cport, PC_IP, 5900, None, "-", why)
    shown = f"'{line[:11].decode()}' + 0x{line[11]:02X}"
    ex.description = (f"SYNTHETIC: HARD NEGATIVE: TCP/5900, both sides send the 12-byte line "
                      f"{shown}, one byte off an RFB ProtocolVersion: {why}")


def b_vnc(ex: Example) -> None:
    # REF vnc 'handshake' (12-byte version both ways, byte 11 = 0x0A; 3.7/3.8 type list).
    if ex.kind == "positive":
        _vnc_pos(ex, b"RFB 003.007\n", [2], b"grandma-pc", "", "VNC")
    else:
        _vnc_neg(ex, b"RFB 003.008\r", "byte 11 is 0x0D, not 0x0A (REF vnc)")


def b_realvnc(ex: Example) -> None:
    # REF realvnc-connect: 'direct connections use RFB (see vnc)'; R9: reported as vnc.
    if ex.kind == "positive":
        _vnc_pos(ex, b"RFB 003.008\n", [2], b"Grandma's PC", "",
                 "RealVNC Connect direct connection, which is RFB (REF realvnc-connect); "
                 "reported as vnc")
    else:
        _vnc_neg(ex, b"RFB 004,001\n", "',' where RFB has '.' (REF vnc: 'RFB 004.')")


def b_apple(ex: Example) -> None:
    # REF apple-screen-sharing: RFB as for vnc; ARD authentication is security type 30.
    if ex.kind == "positive":
        _vnc_pos(ex, b"RFB 003.008\n", [30, 2], b"Grandma's iMac", "apple-screen-sharing",
                 "Apple Screen Sharing: type list includes 30 (Apple Remote Desktop, REF "
                 "apple-screen-sharing); reported as vnc, variant apple-screen-sharing")
    else:
        _vnc_neg(ex, b"RFB-003.008\n", "'-' where RFB has a space (REF vnc)")


def b_tightvnc(ex: Example) -> None:
    # REF tightvnc: RFB, Tight security type 16; names tightvnc.com (web).
    if ex.kind == "positive":
        _vnc_pos(ex, b"RFB 003.008\n", [16, 2], b"grandma-pc", "tightvnc",
                 "TightVNC: type list includes 16 (Tight, REF tightvnc); reported as vnc, "
                 "variant tightvnc")
    else:
        web(ex, ex.t, "tightvnc.com", "TightVNC's website (REF tightvnc, web)")
        ex.description = ("SYNTHETIC: HARD NEGATIVE: visiting the vendor's website tightvnc.com "
                          "(DNS + HTTPS) is not remote access (REF tightvnc names, web)")


def b_ultravnc(ex: Example) -> None:
    # REF ultravnc: RFB, Ultra security type 17; names ultravnc.com (web).
    if ex.kind == "positive":
        _vnc_pos(ex, b"RFB 003.008\n", [17, 2], b"grandma-pc", "ultravnc",
                 "UltraVNC: type list includes 17 (Ultra, REF ultravnc); reported as vnc, "
                 "variant ultravnc")
    else:
        web(ex, ex.t, "ultravnc.com", "UltraVNC's website (REF ultravnc, web)")
        ex.description = ("SYNTHETIC: HARD NEGATIVE: visiting the vendor's website ultravnc.com "
                          "(DNS + HTTPS) is not remote access (REF ultravnc names, web)")


def x11_setup(order: bytes = b"l") -> bytes:
    """REF x11 'handshake': 48-byte little-endian setup, auth-name length 18
    ('MIT-MAGIC-COOKIE-1') at offset 6, auth-data length 16 at offset 8."""
    name = b"MIT-MAGIC-COOKIE-1"
    return (order + b"\x00" + struct.pack("<HHHH", 11, 0, len(name), 16) + b"\x00\x00"
            + name + b"\x00\x00" + bytes(range(0x30, 0x40)))


def x11_success() -> bytes:
    """X11 protocol, Connection Setup reply 'Success' (little-endian): header, 32 fixed
    bytes, vendor, one pixmap format, one screen with one depth and one visual."""
    vendor = b"The X.Org Foundation"
    fixed = struct.pack("<IIIIHHBBBBBBBB4x", 12101011, 0x00400000, 0x001FFFFF, 256,
                        len(vendor), 65535, 1, 1, 0, 0, 32, 32, 8, 255)
    fmt = struct.pack("<BBB5x", 24, 32, 32)
    visual = struct.pack("<IBBHIII4x", 0x21, 4, 8, 256, 0xFF0000, 0x00FF00, 0x0000FF)
    depth = struct.pack("<BxH4x", 24, 1) + visual
    screen = struct.pack("<IIIIIHHHHHHIBBBB", 0x3B5, 0x20, 0xFFFFFF, 0, 0, 1920, 1080,
                         508, 285, 1, 1, 0x21, 0, 0, 24, 1) + depth
    extra = fixed + vendor + fmt + screen
    return struct.pack("<BxHHH", 1, 11, 0, len(extra) // 4) + extra


def x11_query_extension(name: bytes) -> bytes:
    pad = b"\x00" * (-len(name) % 4)
    return struct.pack("<BxHH2x", 98, 2 + (len(name) + len(pad)) // 4, len(name)) + name + pad


def b_x11(ex: Example) -> None:
    # REF x11 'handshake' (client setup, byte order 'l', auth lengths 18/16, TCP 6000-6005).
    rng = ex.rng
    link = G.Link(PC_MAC, LAPTOP_MAC, PC_IP, LAPTOP_IP, c_ttl=64, s_ttl=64)
    cport = ex.port()
    f = G.TCPFlow(ex.cap, link, cport, 6000)
    t = f.handshake(ex.t, rtt=ms(2))
    if ex.kind == "positive":
        t += ms(1)
        f.send(t, C, x11_setup())
        t += ms(3)
        f.send(t, S, x11_success())
        for seq, (ext, present) in enumerate([(b"BIG-REQUESTS", 1), (b"RANDR", 1)], 1):
            t += ms(2)
            f.send(t, C, x11_query_extension(ext))
            t += ms(1)
            f.send(t, S, struct.pack("<BxHIBBBB20x", 1, seq, 0, present, 133 + seq, 0, 0))
        t += ms(1)
        f.send(t, C, rng.randbytes(236))       # further requests (filler)
        t += ms(40)
        f.ack(t, S)
        f.close(t + sec(2), C, rtt=ms(2))
        ex.row("tcp", PC_IP, cport, LAPTOP_IP, 6000, "x11", "session",
               "X11 connection setup 'l', MIT-MAGIC-COOKIE-1, server Success")
        ex.description = ("SYNTHETIC: X11 from a LAN PC to the laptop's X server on TCP/6000: "
                          "48-byte little-endian setup (MIT-MAGIC-COOKIE-1, 16-byte cookie), "
                          "Success reply, two QueryExtension requests")
    else:
        t += ms(1)
        f.send(t, C, x11_setup(b"L"))
        t += ms(3)
        f.close(t, S, rtt=ms(2))
        ex.row("tcp", PC_IP, cport, LAPTOP_IP, 6000, None, "-",
               "setup whose byte-order byte is 'L' (0x4C): neither 'l' nor 'B'")
        ex.description = ("SYNTHETIC: HARD NEGATIVE: TCP/6000, a 48-byte X11-like setup one byte "
                          "off: byte order 'L' (0x4C) is neither 'l' nor 'B' (REF x11); the "
                          "server hangs up")


def array8(b: bytes) -> bytes:
    return u16(len(b)) + b


def xdmcp(opcode: int, body: bytes, delta: int = 0) -> bytes:
    """REF x11 'handshake' (XDMCP): u16 version 1, u16 opcode, u16 length = payload - 6."""
    return u16(1) + u16(opcode) + u16(len(body) + delta) + body


def b_xdmcp(ex: Example) -> None:
    # REF x11 (XDMCP on UDP/177: Query opcode 2); Willing/Request/Accept/Manage bodies
    # per X.Org's XDMCP document.
    rng = ex.rng
    link = G.Link(LAPTOP_MAC, PC_MAC, LAPTOP_IP, PC_IP, c_ttl=64, s_ttl=64)
    cport = ex.port()
    t = ex.t

    def dgram(side: int, payload: bytes) -> None:
        ports = (cport, 177) if side == C else (177, cport)
        ex.cap.add(t * 1000, link.frame(side, UDP(sport=ports[0], dport=ports[1])
                                        / Raw(payload), df=False))

    if ex.kind == "positive":
        cookie = rng.randbytes(16)
        msgs = [
            (C, xdmcp(2, b"\x00")),                                              # Query
            (S, xdmcp(5, array8(b"") + array8(b"mediabox") + array8(b"Linux 6.1.0"))),  # Willing
            (C, xdmcp(7, u16(0) + b"\x01" + u16(0) + b"\x01" + array8(bytes([192, 168, 1, 23]))
                      + array8(b"") + array8(b"") + b"\x01" + array8(b"MIT-MAGIC-COOKIE-1")
                      + array8(b"laptop"))),                                     # Request
            (S, xdmcp(8, u32(0x4A1F20) + array8(b"") + array8(b"")
                      + array8(b"MIT-MAGIC-COOKIE-1") + array8(cookie))),        # Accept
            (C, xdmcp(10, u32(0x4A1F20) + u16(0) + array8(b"MIT-unspecified"))),  # Manage
        ]
        for side, p in msgs:
            dgram(side, p)
            t += ms(1) if side == C else ms(40)
        ex.row("udp", LAPTOP_IP, cport, PC_IP, 177, "xdmcp", "session",
               "XDMCP Query, Willing, Request, Accept, Manage")
        ex.description = ("SYNTHETIC: XDMCP on UDP/177 between two LAN machines: Query (length = "
                          "payload-6), Willing from display manager 'mediabox', Request, Accept, "
                          "Manage")
    else:
        dgram(C, xdmcp(2, b"\x00", delta=1))
        t += sec(2)
        dgram(C, xdmcp(2, b"\x00", delta=1))
        ex.row("udp", LAPTOP_IP, cport, PC_IP, 177, None, "-",
               "Query-like datagrams whose length field is payload-5, not payload-6")
        ex.description = ("SYNTHETIC: HARD NEGATIVE: UDP/177 datagrams one byte off an XDMCP "
                          "Query: "
                          "the u16 length is payload-5 instead of payload-6 (REF x11), no answer")


def b_citrix(ex: Example) -> None:
    # REF citrix 'handshake': ICA 6-byte payload 7F 7F 49 43 41 00 (conventionally TCP/1494).
    ip = "203.0.113.140"
    pre = b"\x7f\x7fICA\x00" if ex.kind == "positive" else b"\x7f\x7fICA\x01"
    cport, _ = opaque_tcp(ex, ex.t, ip, 1494,
                          [(C, 130), (S, 92), (C, 610), (S, 1180), (C, 64)]
                          if ex.kind == "positive" else [],
                          first=[(S, pre), (C, pre)])
    if ex.kind == "positive":
        ex.row("tcp", LAPTOP_IP, cport, ip, 1494, "citrix", "session",
               "ICA preamble 7F 7F 'ICA' 00 from both ends, then ICA data (filler)")
        ex.description = ("SYNTHETIC: Citrix ICA on TCP/1494 from the laptop to a remote server: "
                          "both ends send the 6-byte preamble 7F 7F 'ICA' 00, then opaque ICA data")
    else:
        ex.row("tcp", LAPTOP_IP, cport, ip, 1494, None, "-",
               "6-byte payloads 7F 7F 'ICA' 01 both ways: one byte off the ICA preamble")
        ex.description = ("SYNTHETIC: HARD NEGATIVE: TCP/1494, both ends send 7F 7F 'ICA' 01, one "
                          "byte off the ICA preamble 7F 7F 'ICA' 00 (REF citrix)")


def fix_message(fields: list[tuple[int, str]]) -> bytes:
    """FIX tag=value: 8=BeginString, 9=BodyLength, body, 10=CheckSum (sum of bytes mod 256)."""
    soh = "\x01"
    body = "".join(f"{k}={v}{soh}" for k, v in fields)
    head = f"8=FIX.4.4{soh}9={len(body)}{soh}"
    total = sum((head + body).encode()) % 256
    return (head + body + f"10={total:03d}{soh}").encode()


def b_nomachine(ex: Example) -> None:
    # REF nomachine 'handshake': 'NXSH-' client / 'NXD-' server hello of 11-14 bytes with a
    # version number, then TLS; certificate O=NoMachine.  Version 8.10.1 chosen here.
    rng = ex.rng
    cport = ex.port()
    if ex.kind == "positive":
        f = G.TCPFlow(ex.cap, pc_link(), cport, 4000)
        t = f.handshake(ex.t, rtt=ms(30))
        t += ms(1)
        f.send(t, C, b"NXSH-8.10.1\n")
        t += ms(15)
        f.send(t, S, b"NXD-8.10.1\n")
        t += ms(15)
        f.send(t, C, G.client_hello(rng, sni=None, alpn=(), tls13=False))
        t += ms(15)
        srv = cert("grandma-pc", "NoMachine", "nomachine-grandma-pc")
        t = f.send(t, S, G.tls12_server_flight(rng, [srv]))
        t += ms(15)
        f.send(t, C, G.tls12_client_finish(rng))
        t += ms(15)
        f.send(t, S, G.tls12_server_finish(rng))
        for side, n in [(C, 320), (S, 180), (S, 1300), (C, 90), (S, 1300), (C, 40)]:
            t += ms(15)
            f.send(t, side, G.appdata(rng, n))
        t += ms(40)
        f.ack(t, S)
        f.close(t + sec(1), C, rtt=ms(30))
        ex.row("tcp", HELPER_IP, cport, PC_IP, 4000, "nomachine", "session",
               "NXSH-8.10.1 / NXD-8.10.1 hello, then TLS 1.2 with certificate O=NoMachine")
        ex.description = ("SYNTHETIC: NoMachine from an internet helper to the PC's forwarded "
                          "TCP/4000: 'NXSH-8.10.1\\n' / 'NXD-8.10.1\\n' hello, then TLS 1.2 whose "
                          "server certificate has O=NoMachine (version number made up)")
    else:
        ip = "203.0.113.150"
        f = G.TCPFlow(ex.cap, G.lan_link(ip, 55), cport, 4000)
        t = f.handshake(ex.t, rtt=ms(18))
        stamp = "20240408-08:30:00.000"
        msgs = [(C, [(35, "A"), (49, "GRANDMA1"), (56, "BROKER"), (34, "1"), (52, stamp),
                     (98, "0"), (108, "30")]),
                (S, [(35, "A"), (49, "BROKER"), (56, "GRANDMA1"), (34, "1"), (52, stamp),
                     (98, "0"), (108, "30")]),
                (C, [(35, "0"), (49, "GRANDMA1"), (56, "BROKER"), (34, "2"),
                     (52, "20240408-08:30:30.000")]),
                (S, [(35, "0"), (49, "BROKER"), (56, "GRANDMA1"), (34, "2"),
                     (52, "20240408-08:30:30.010")])]
        for side, fields in msgs:
            t += ms(9) if side == S else sec(0.5)
            f.send(t, side, fix_message(fields))
        t += ms(40)
        f.ack(t, C)
        f.close(t + sec(1), C, rtt=ms(18))
        ex.row("tcp", LAPTOP_IP, cport, ip, 4000, None, "-",
               "FIX 4.4 Logon and Heartbeat on TCP/4000")
        ex.description = ("SYNTHETIC: HARD NEGATIVE: FIX 4.4 (Logon 35=A, Heartbeat 35=0) to a "
                          "broker on TCP/4000, the NoMachine port (REF nomachine: port is a hint)")


def b_radmin(ex: Example) -> None:
    # REF radmin 'handshake': client 10 bytes 01 00 00 00 01 .. .. .. 08 08; server 46 bytes
    # 01 00 00 00 25, 02 12 08 02 at offset 7, 0A at 13; 14-byte 01 00 00 00 05 .. 27 27 both ways.
    rng = ex.rng
    if ex.kind == "positive":
        hello = b"\x01\x00\x00\x00\x01\x00\x00\x00\x08\x08"
        answer = (b"\x01\x00\x00\x00\x25\x00\x00\x02\x12\x08\x02\x00\x00\x0a"
                  + rng.randbytes(32))
        chan = b"\x01\x00\x00\x00\x05\x00\x00\x00\x27\x27\x00\x00\x00\x00"
        c1, t = opaque_tcp(ex, ex.t, PC_IP, 4899, [(C, 136), (S, 200), (C, 72), (S, 1250)],
                           link=pc_link(), first=[(C, hello), (S, answer)])
        c2, _ = opaque_tcp(ex, t + sec(1), PC_IP, 4899, [(S, 960), (C, 64)],
                           link=pc_link(), first=[(C, chan), (S, chan)])
        for cport, what in ((c1, "10-byte hello and 46-byte answer"),
                            (c2, "14-byte 01 00 00 00 05 .. 27 27 messages both ways")):
            ex.row("tcp", HELPER_IP, cport, PC_IP, 4899, "radmin", "session", f"Radmin {what}")
        ex.description = ("SYNTHETIC: Radmin from an internet helper to the PC's forwarded "
                          "TCP/4899: "
                          "10-byte hello + 46-byte answer, then a second connection exchanging "
                          "the 14-byte messages; remaining bytes are filler")
    else:
        cport = ex.port()
        link = G.Link("02:00:5e:10:00:25", PC_MAC, "192.168.1.25", PC_IP, c_ttl=128, s_ttl=64)
        ssh_flow(ex, ex.t, link, cport, 4899)
        ex.row("tcp", "192.168.1.25", cport, PC_IP, 4899, None, "-",
               "SSH-2.0 on TCP/4899, not Radmin")
        ex.description = ("SYNTHETIC: HARD NEGATIVE: SSH-2.0 (OpenSSH banners, KEXINIT, ECDH) "
                          "between two LAN machines on TCP/4899, the Radmin port (REF radmin)")


def b_teamviewer(ex: Example) -> None:
    # REF teamviewer 'handshake' (17 24 then 11 30) and names master*.teamviewer.com
    # (rendezvous), router*.teamviewer.com (relay; router15 listed), teamviewer.com (web).
    if ex.kind == "positive":
        t = ex.t
        for name, role, keep in (("master3.teamviewer.com", "rendezvous", 2),
                                 ("router15.teamviewer.com", "relay", 1)):
            ip = ex.addr(name)
            ex.t = t
            t = ex.lookup(name, ip, "teamviewer", f"REF teamviewer {role} name")
            cport, t = tv_flow(ex, t, ip, keep)
            ex.row("tcp", LAPTOP_IP, cport, ip, 5938, "teamviewer", role,
                   f"TCP/5938 to {name}: payloads 17 24 both ways, then 11 30")
            t += sec(3)
        ex.description = ("SYNTHETIC: TeamViewer: DNS master3.teamviewer.com then TCP/5938 with "
                          "payloads 17 24 both ways then 11 30 (keepalives); the same to "
                          "router15.teamviewer.com (master number 3 made up)")
    else:
        name = "game.example.net"
        ip = ex.addr(name, "203.0.113")
        t = ex.lookup(name, ip, None, "unrelated game server")
        cport, t = tls_app(ex, t, ip, 5938, name, "chatty")
        ex.row("tcp", LAPTOP_IP, cport, ip, 5938, None, "-",
               "TLS 1.3 SNI game.example.net on TCP/5938: not TeamViewer framing")
        web(ex, t + sec(5), "teamviewer.com", "TeamViewer's website (REF teamviewer, web)")
        ex.description = ("SYNTHETIC: HARD NEGATIVE: TLS with an unrelated SNI (game.example.net) "
                          "on TCP/5938, TeamViewer's port, then a visit to the vendor's website "
                          "teamviewer.com")


def b_anydesk(ex: Example) -> None:
    # REF anydesk: names boot.net.anydesk.com (rendezvous), relay-[a-f0-9]{8}.net.anydesk.com
    # (relay); 'handshake': ALPN starting 'anydesk/', certificate CN=AnyDesk Client.
    if ex.kind == "positive":
        ad_cert = cert("AnyDesk Client", None, "anydesk-client")
        alpn = ("anydesk/8.0.8/windows",)
        t = ex.t
        for name, role, sni, kind in (("boot.net.anydesk.com", "rendezvous", None, "chatty"),
                                      ("relay-0c4e7a21.net.anydesk.com", "relay", True,
                                       "session")):
            ip = ex.addr(name)
            ex.t = t
            t = ex.lookup(name, ip, "anydesk", f"REF anydesk {role} name", ttl=60)
            cport, t = tls_app(ex, t, ip, 443, name if sni else None, kind, alpn=alpn,
                               tls12_cert=ad_cert, server_alpn=alpn[0])
            ex.row("tcp", LAPTOP_IP, cport, ip, 443, "anydesk", role,
                   f"TLS 1.2 {'SNI ' + name if sni else 'no SNI'}, ALPN {alpn[0]}, "
                   "certificate CN=AnyDesk Client")
            t += sec(4)
        ex.description = ("SYNTHETIC: AnyDesk: DNS boot.net.anydesk.com then TLS 1.2 (no SNI, ALPN "
                          "anydesk/8.0.8/windows, cert CN=AnyDesk Client, keepalives); DNS "
                          "relay-0c4e7a21.net.anydesk.com then a relay TLS session with that SNI "
                          "(hex label and version made up)")
    else:
        t = web(ex, ex.t, "anydesk.com.example.org", "look-alike name ending in .example.org")
        ip = ex.addr("alpn-near-miss", "203.0.113")
        cport, _ = tls_app(ex, t, ip, 443, None, "chatty", alpn=("anydesk",))
        ex.row("tcp", LAPTOP_IP, cport, ip, 443, None, "-",
               "TLS 1.3 no SNI, ALPN 'anydesk' (no '/'): does not start with 'anydesk/'")
        ex.description = ("SYNTHETIC: HARD NEGATIVE: HTTPS to the look-alike "
                          "anydesk.com.example.org, "
                          "then TLS whose ALPN is 'anydesk' without the '/' that AnyDesk's "
                          "'anydesk/...' has (REF anydesk)")


def b_rustdesk(ex: Example) -> None:
    # REF rustdesk: name rs-ny.rustdesk.com (rendezvous); transports TCP 21115 (NAT test),
    # TCP 21116 (hole punching), UDP 21116 (registration + heartbeat), TCP 21117 (relay).
    # Messages are protobuf whose layout the reference does not give: filler.
    rng = ex.rng
    if ex.kind == "positive":
        name = "rs-ny.rustdesk.com"
        ip = ex.addr(name)
        t = ex.lookup(name, ip, "rustdesk", "REF rustdesk public server (rendezvous)")
        uport = ex.port()
        link = G.lan_link(ip, 49)
        for k in range(3):                                     # registration, heartbeats
            tk = t + ms(3) + sec(12 * k)
            ex.cap.add(tk * 1000, link.frame(C, UDP(sport=uport, dport=21116)
                                             / Raw(rng.randbytes(38 if k else 64)), df=False))
            ex.cap.add((tk + ms(80)) * 1000, link.frame(S, UDP(sport=21116, dport=uport)
                                                        / Raw(rng.randbytes(12 if k else 30)),
                                                        df=False))
        ex.row("udp", LAPTOP_IP, uport, ip, 21116, "rustdesk", "rendezvous",
               "UDP/21116 to rs-ny.rustdesk.com: ID registration and heartbeats (filler)")
        t += sec(26)
        c1, t = opaque_tcp(ex, t, ip, 21115, [(C, 24), (S, 18)])
        c2, t = opaque_tcp(ex, t + ms(300), ip, 21116, [(C, 96), (S, 140)])
        c3, _ = opaque_tcp(ex, t + ms(500), ip, 21117,
                           [(C, 120), (S, 40), (C, 1300), (C, 820), (S, 36), (C, 1300), (S, 36)])
        ex.row("tcp", LAPTOP_IP, c1, ip, 21115, "rustdesk", "rendezvous", "TCP/21115 NAT type test")
        ex.row("tcp", LAPTOP_IP, c2, ip, 21116, "rustdesk", "rendezvous", "TCP/21116 hole punching")
        ex.row("tcp", LAPTOP_IP, c3, ip, 21117, "rustdesk", "relay",
               "TCP/21117 relay (hbbr), upstream bulk")
        ex.description = ("SYNTHETIC: RustDesk: DNS rs-ny.rustdesk.com, UDP/21116 registration and "
                          "heartbeats, TCP/21115 NAT test, TCP/21116 hole punching, TCP/21117 "
                          "relay "
                          "session, all to that address (protobuf payloads are filler)")
    else:
        name = "rustdesk-fans.example.org"
        ip = ex.addr(name, "203.0.113")
        t = ex.lookup(name, ip, None, "look-alike name")
        cport, t = http_get(ex, t, ip, name, "/", port=21117, installer=False)
        ex.row("tcp", LAPTOP_IP, cport, ip, 21117, None, "-",
               "HTTP GET on TCP/21117 to a non-RustDesk host")
        web(ex, t + sec(4), "rustdesk.com", "RustDesk's website (REF rustdesk, web)")
        ex.description = ("SYNTHETIC: HARD NEGATIVE: HTTP on TCP/21117 (RustDesk's relay port) to "
                          "the look-alike rustdesk-fans.example.org, then a visit to the vendor's "
                          "website rustdesk.com")


def b_screenconnect(ex: Example) -> None:
    # REF screenconnect: download_hosts <instance>.screenconnect.com
    # /Bin/ConnectWiseControl.ClientSetup.exe (h= relay host and p=443 in the URL);
    # instance-*-relay.screenconnect.com (relay); *.connectwise.com (web, shared).
    if ex.kind == "positive":
        inst = f"{MADE_UP}.screenconnect.com"
        relay = f"instance-{MADE_UP}-relay.screenconnect.com"
        ip = ex.addr(inst)
        t = ex.lookup(inst, ip, "screenconnect", "instance of *.screenconnect.com (R3)")
        path = f"/Bin/ConnectWiseControl.ClientSetup.exe?h={relay}&p=443"
        cport, t = http_get(ex, t, ip, inst, path)
        ex.row("tcp", LAPTOP_IP, cport, ip, 80, "screenconnect", "download",
               f"HTTP GET {path} on {inst}")
        rip = ex.addr(relay)
        ex.t = t + sec(8)
        t = ex.lookup(relay, rip, "screenconnect", "REF instance-*-relay name")
        cport, _ = tls_app(ex, t, rip, 443, relay, "session")
        ex.row("tcp", LAPTOP_IP, cport, rip, 443, "screenconnect", "relay",
               f"TLS 1.3 SNI {relay}, upstream bulk")
        ex.description = ("SYNTHETIC: ScreenConnect: DNS node1.screenconnect.com, plain-HTTP "
                          "GET of "
                          "/Bin/ConnectWiseControl.ClientSetup.exe (h=relay, p=443), then DNS and "
                          "a TLS relay session to instance-node1-relay.screenconnect.com "
                          "(label node1 is made up; installer body shortened filler)")
    else:
        t = web(ex, ex.t, "www.connectwise.com", "under *.connectwise.com, shared (R4)")
        name = "screenconnect.com.example.net"
        ip = ex.addr(name, "203.0.113")
        ex.t = t
        t = ex.lookup(name, ip, None, "look-alike name")
        cport, _ = http_get(ex, t, ip, name, "/Bin/ConnectWiseControl.ClientSetup.exe")
        ex.row("tcp", LAPTOP_IP, cport, ip, 80, None, "-",
               "installer path on a look-alike host, not a ScreenConnect host")
        ex.description = ("SYNTHETIC: HARD NEGATIVE: visit to www.connectwise.com (shared vendor "
                          "zone), then the ScreenConnect installer path fetched from the "
                          "look-alike host screenconnect.com.example.net")


def b_quickassist(ex: Example) -> None:
    # REF quickassist: remoteassistance.support.services.microsoft.com (rendezvous, sni),
    # 'HTTPS/TLS 1.2 on 443'; *.support.services.microsoft.com, *.live.com, *.cc.skype.com
    # are shared Microsoft names.
    if ex.kind == "positive":
        name = "remoteassistance.support.services.microsoft.com"
        ip = ex.addr(name)
        t = ex.lookup(name, ip, "quickassist", "REF quickassist rendezvous name")
        srv = cert(name, None, "quickassist-synthetic")
        cport, _ = tls_app(ex, t, ip, 443, name, "session", tls12_cert=srv)
        ex.row("tcp", LAPTOP_IP, cport, ip, 443, "quickassist", "rendezvous",
               f"TLS 1.2 SNI {name}")
        ex.description = ("SYNTHETIC: Quick Assist: DNS "
                          "remoteassistance.support.services.microsoft.com "
                          "then TLS 1.2 with that SNI carrying a session (self-made certificate)")
    else:
        t = ex.t
        for name, note in (("login.live.com", "*.live.com, shared (R4; label login chosen here)"),
                           ("api.support.services.microsoft.com",
                            "sibling of the Quick Assist name (R4; label api made up)"),
                           (f"{MADE_UP}.cc.skype.com",
                            "*.cc.skype.com, shared (R4; label made up)")):
            t = web(ex, t, name, note, net="198.51.100")
        ex.description = ("SYNTHETIC: HARD NEGATIVE: HTTPS to shared Microsoft names: "
                          "login.live.com, "
                          "api.support.services.microsoft.com, node1.cc.skype.com (labels login, "
                          "api, node1 made up): ordinary Windows/Teams traffic, not Quick Assist")


# --------------------------------------------------------------------------
# builders: tools known only by names (REF names; rules R1-R6)
# --------------------------------------------------------------------------
@dataclass
class Named:
    """One vendor connection of a positive example.

    how: 'tls' (TLS 1.3 with the name as SNI), 'tcp' (bytes no source describes, on
    ``port``), or 'http' (plain-HTTP GET of ``path``).  ``dns`` False: the lookup itself
    must not be reported (a website name fetched for an installer, R6)."""

    name: str
    role: str
    how: str = "tls"
    port: int = 443
    path: str = ""
    dns: bool = True
    why: str = ""


@dataclass
class NamedTool:
    title: str
    ref: str                      # the reference entry and names the example uses
    pos: list[Named]
    neg: list[tuple[str, str]]    # (name, why) visited over HTTPS; 'http:' prefix = HTTP GET
    made_up: list[str] = field(default_factory=list)


# Each entry: REF <id> names, as listed in tools.yaml / remote-access-tools.md.
NAMED: dict[str, NamedTool] = {
    # REF ultraviewer: *.ultraviewer.net (web), ultraviewer.net (web).
    "ultraviewer": NamedTool(
        "UltraViewer", "*.ultraviewer.net",
        [Named("node1.ultraviewer.net", "unknown", why="instance of *.ultraviewer.net (R3)")],
        [("ultraviewer.net", "the vendor's website (R2)"),
         ("ultraviewer.net.example.org", "look-alike under example.org"),
         ("myultraviewer.net", "look-alike: no dot before ultraviewer.net")]),
    # REF splashtop: *.relay.splashtop.com (relay), *.api.splashtop.com (api), splashtop.com (web).
    "splashtop": NamedTool(
        "Splashtop", "*.relay.splashtop.com, *.api.splashtop.com",
        [Named("node1.api.splashtop.com", "unknown", why="instance of *.api.splashtop.com (R3)"),
         Named("node1.relay.splashtop.com", "relay", why="instance of *.relay.splashtop.com (R1)")],
        [("splashtop.com", "the vendor's website (R2)"),
         ("splashtop.com.example.org", "look-alike under example.org")]),
    # REF logmein: rescue-list.*.logmein-gateway.com, logmein-gateway.com, logmeinrescue.com (web).
    "logmein": NamedTool(
        "LogMeIn", "rescue-list.*.logmein-gateway.com",
        [Named("rescue-list.node1.logmein-gateway.com", "unknown",
               why="instance of rescue-list.*.logmein-gateway.com (R3)")],
        [("logmeinrescue.com", "bare vendor domain (R2)"),
         ("logmein-gateway.com", "bare vendor domain (R2)")]),
    # REF gotoassist: *.cdn.getgo.com (download), *.fastsupport.com (web), goto.com, helpme.net.
    "gotoassist": NamedTool(
        "GoTo Resolve / GoToAssist", "*.cdn.getgo.com, *.fastsupport.com",
        [Named("node1.fastsupport.com", "unknown", why="instance of *.fastsupport.com (R3)"),
         Named("node1.cdn.getgo.com", "download",
               why="instance of *.cdn.getgo.com, role download (R1)")],
        [("goto.com", "the vendor's website (R2)"), ("helpme.net", "bare vendor domain (R2)")]),
    # REF zoho-assist: downloads.zohocdn.com (download), gateway.zohoassist.com (web), *.zoho.com.
    "zoho-assist": NamedTool(
        "Zoho Assist", "downloads.zohocdn.com, gateway.zohoassist.com",
        [Named("gateway.zohoassist.com", "unknown", why="exact web name (R3)"),
         Named("downloads.zohocdn.com", "download", why="role download (R1)")],
        [("www.zoho.com", "under *.zoho.com, shared (R4)"),
         ("zohoassist.com.example.org", "look-alike under example.org")]),
    # REF supremo: *.supremocontrol.com (web).
    "supremo": NamedTool(
        "Supremo", "*.supremocontrol.com",
        [Named("node1.supremocontrol.com", "unknown", why="instance of *.supremocontrol.com (R3)"),
         Named("download.supremocontrol.com", "download",
               why="first label 'download' under the vendor's zone (R5)")],
        [("supremocontrol.com.example.org", "look-alike under example.org"),
         ("mysupremocontrol.com", "look-alike: no dot before supremocontrol.com")]),
    # REF aeroadmin: auth*.aeroadmin.com (web), aeroadmin.com (web).
    "aeroadmin": NamedTool(
        "AeroAdmin", "auth*.aeroadmin.com",
        [Named("auth1.aeroadmin.com", "unknown", why="instance of auth*.aeroadmin.com (R3)")],
        [("aeroadmin.com", "the vendor's website (R2)"),
         ("auth1.aeroadmin.com.example.org", "look-alike under example.org")],
        made_up=["the digit in auth1"]),
    # REF ammyy: *.ammyy.com (web), ammyy.com (web); ports 443, 5931, 80, 8080 (hints).
    "ammyy": NamedTool(
        "Ammyy Admin", "*.ammyy.com (TCP/5931 from the port hints)",
        [Named("node1.ammyy.com", "unknown", how="tcp", port=5931,
               why="instance of *.ammyy.com (R3)")],
        [("ammyy.com", "the vendor's website (R2)"),
         ("ammyy.com.example.org", "look-alike under example.org")]),
    # REF remote-utilities: *.internetid.ru (web), remoteutilities.com (web).
    "remote-utilities": NamedTool(
        "Remote Utilities", "*.internetid.ru",
        [Named("node1.internetid.ru", "unknown", why="instance of *.internetid.ru (R3)")],
        [("remoteutilities.com", "the vendor's website (R2)"),
         ("internetid.ru.example.org", "look-alike under example.org")]),
    # REF chrome-remote-desktop: remotedesktop-pa.googleapis.com,
    # chromoting-host.talkgadget.google.com (web; the R4 exceptions).
    "chrome-remote-desktop": NamedTool(
        "Chrome Remote Desktop",
        "remotedesktop-pa.googleapis.com, chromoting-host.talkgadget.google.com",
        [Named("remotedesktop-pa.googleapis.com", "unknown",
               why="exact Chrome Remote Desktop name (R4 exception)"),
         Named("chromoting-host.talkgadget.google.com", "unknown",
               why="exact Chrome Remote Desktop name (R4 exception)")],
        [("node1.talkgadget.google.com",
          "sibling under *.google.com, shared (R4; label node1 made up)"),
         ("www.google.com", "under *.google.com, shared (R4)")]),
    # REF parsec: parsec.app, parsec.gg, *.parsec.app (web).
    "parsec": NamedTool(
        "Parsec", "*.parsec.app",
        [Named("node1.parsec.app", "unknown", why="instance of *.parsec.app (R3)")],
        [("parsec.app", "the vendor's website (R2)"), ("parsec.gg", "bare vendor domain (R2)")]),
    # REF atera: agenthb.atera.com (web), appcdn.atera.com (download), getalphacontrol.com (web).
    "atera": NamedTool(
        "Atera", "agenthb.atera.com, appcdn.atera.com",
        [Named("agenthb.atera.com", "unknown", why="exact web name (R3)"),
         Named("appcdn.atera.com", "download", why="role download (R1)")],
        [("getalphacontrol.com", "bare vendor domain (R2)"),
         ("agenthb.atera.com.example.org", "look-alike under example.org")]),
    # REF n-able-take-control: *.swi-tc.com, beanywhere.com, remote.management (web).
    "n-able-take-control": NamedTool(
        "N-able Take Control", "*.swi-tc.com",
        [Named("node1.swi-tc.com", "unknown", why="instance of *.swi-tc.com (R3)")],
        [("beanywhere.com", "bare vendor domain (R2)"),
         ("remote.management", "bare vendor domain (R2)")]),
    # REF beyondtrust: *.beyondtrustcloud.com, bomgarcloud.com (web).
    "beyondtrust": NamedTool(
        "BeyondTrust Remote Support", "*.beyondtrustcloud.com",
        [Named("node1.beyondtrustcloud.com", "unknown",
               why="instance of *.beyondtrustcloud.com (R3)")],
        [("bomgarcloud.com", "bare vendor domain (R2)"),
         ("beyondtrustcloud.com.example.org", "look-alike under example.org")]),
    # REF dameware: dameware.com (web) only: the installer fetched over plain HTTP (R6).
    "dameware": NamedTool(
        "DameWare", "dameware.com, installer fetched over plain HTTP (R6)",
        [Named("dameware.com", "download", how="http", port=80,
               path="/downloads/DamewareRemoteSupport.exe", dns=False,
               why="installer suffix on a vendor host (R6)")],
        [("dameware.com", "the vendor's website (R2)"),
         ("http:dameware.com/products/remote-support.html", "a page, not an installer (R6)")],
        made_up=["the path (the reference gives none)"]),
    # REF isl-online: *.islonline.com, *.islonline.net (web).
    "isl-online": NamedTool(
        "ISL Online", "*.islonline.net",
        [Named("node1.islonline.net", "unknown", why="instance of *.islonline.net (R3)")],
        [("islonline.net.example.org", "look-alike under example.org"),
         ("myislonline.net", "look-alike: no dot before islonline.net")]),
    # REF getscreen: getscreen.me, go.getscreen.me, px-*.getscreen.me (web).
    "getscreen": NamedTool(
        "Getscreen.me", "go.getscreen.me, px-*.getscreen.me",
        [Named("go.getscreen.me", "unknown", why="exact web name (R3)"),
         Named("px-node1.getscreen.me", "unknown", why="instance of px-*.getscreen.me (R3)")],
        [("getscreen.me", "the vendor's website (R2)"),
         ("getscreen.me.example.org", "look-alike under example.org")]),
    # REF hoptodesk: signal.hoptodesk.com (rendezvous), turn.hoptodesk.com (relay),
    # hoptodesk.com and www.hoptodesk.com (web).
    "hoptodesk": NamedTool(
        "HopToDesk", "signal.hoptodesk.com, turn.hoptodesk.com",
        [Named("signal.hoptodesk.com", "rendezvous", why="role rendezvous (R1)"),
         Named("turn.hoptodesk.com", "relay", why="role relay (R1)")],
        [("www.hoptodesk.com", "the vendor's website (R2)"),
         ("hoptodesk.com", "the vendor's website (R2)")]),
    # REF remotepc: *.remotepc.com, remotepc.com, www.remotepc.com (web).
    "remotepc": NamedTool(
        "RemotePC", "*.remotepc.com",
        [Named("node1.remotepc.com", "unknown", why="instance of *.remotepc.com (R3)")],
        [("www.remotepc.com", "the vendor's website (R2)"),
         ("remotepc.com", "the vendor's website (R2)")]),
    # REF iperius-remote: *.iperius-rs.com, iperiusremote.com (web).
    "iperius-remote": NamedTool(
        "Iperius Remote", "*.iperius-rs.com",
        [Named("node1.iperius-rs.com", "unknown", why="instance of *.iperius-rs.com (R3)")],
        [("iperiusremote.com", "the vendor's website (R2)"),
         ("iperius-rs.com.example.org", "look-alike under example.org")]),
    # REF netsupport: geo.netsupportsoftware.com (web), netsupportmanager.com (web).
    "netsupport": NamedTool(
        "NetSupport Manager", "geo.netsupportsoftware.com",
        [Named("geo.netsupportsoftware.com", "unknown", why="exact web name (R3)")],
        [("netsupportmanager.com", "the vendor's website (R2)"),
         ("geo.netsupportsoftware.com.example.org", "look-alike under example.org")]),
    # REF meshcentral: meshcentral.com (web) only: dl. under the vendor's zone (R5).
    "meshcentral": NamedTool(
        "MeshCentral", "meshcentral.com, a dl. name under it (R5)",
        [Named("dl.meshcentral.com", "download",
               why="first label 'dl' under the vendor's zone (R5)")],
        [("meshcentral.com", "the vendor's website (R2)"),
         ("meshcentral.com.example.org", "look-alike under example.org")],
        made_up=["the name dl.meshcentral.com"]),
    # REF simplehelp: simple-help.com (web) only: installer over plain HTTP (R6).
    "simplehelp": NamedTool(
        "SimpleHelp", "simple-help.com, installer fetched over plain HTTP (R6)",
        [Named("simple-help.com", "download", how="http", port=80,
               path="/releases/SimpleHelp-windows-installer.exe", dns=False,
               why="installer suffix on a vendor host (R6)")],
        [("simple-help.com", "the vendor's website (R2)"),
         ("http:simple-help.com.example.org/releases/SimpleHelp-windows-installer.exe",
          "installer path on a look-alike host (R6 needs a vendor host)")],
        made_up=["the path (the reference gives none)"]),
    # REF action1: *.action1.com (web), a1-backend-packages.s3.amazonaws.com (web; Action1's
    # own name under the shared *.amazonaws.com zone).
    "action1": NamedTool(
        "Action1", "*.action1.com",
        [Named("node1.action1.com", "unknown", why="instance of *.action1.com (R3)"),
         Named("a1-backend-packages.s3.amazonaws.com", "unknown",
               why="Action1's own bucket, named exactly, on a shared cloud zone (R3)")],
        [("backend-packages.s3.amazonaws.com", "another bucket on the same cloud zone (R4)"),
         ("action1.com.example.org", "look-alike under example.org")]),
    # REF ninjaone: resources.ninjarmm.com, *.rmmservice.eu, ninjarmm.net (web).
    "ninjaone": NamedTool(
        "NinjaOne", "resources.ninjarmm.com, *.rmmservice.eu",
        [Named("resources.ninjarmm.com", "unknown", why="exact web name (R3)"),
         Named("node1.rmmservice.eu", "unknown", why="instance of *.rmmservice.eu (R3)")],
        [("ninjarmm.net", "bare vendor domain (R2)"),
         ("ninjarmm.com.example.org", "look-alike under example.org")]),
    # REF kaseya: deploy01.kaseya.com, managedsupport.kaseya.net, kaseya.com (web).
    "kaseya": NamedTool(
        "Kaseya VSA", "deploy01.kaseya.com, managedsupport.kaseya.net",
        [Named("deploy01.kaseya.com", "unknown", why="exact web name (R3)"),
         Named("managedsupport.kaseya.net", "unknown", why="exact web name (R3)")],
        [("kaseya.com", "the vendor's website (R2)"),
         ("kaseya.com.example.org", "look-alike under example.org")]),
    # REF dwservice: *.dwservice.net (web).
    "dwservice": NamedTool(
        "DWService", "*.dwservice.net",
        [Named("node1.dwservice.net", "unknown", why="instance of *.dwservice.net (R3)")],
        [("dwservice.net.example.org", "look-alike under example.org"),
         ("mydwservice.net", "look-alike: no dot before dwservice.net")]),
    # REF anyviewer: *.anyviewer.com, *.aomeisoftware.com (web).
    "anyviewer": NamedTool(
        "AnyViewer", "*.anyviewer.com",
        [Named("node1.anyviewer.com", "unknown", why="instance of *.anyviewer.com (R3)"),
         Named("download.anyviewer.com", "download",
               why="first label 'download' under the vendor's zone (R5)")],
        [("anyviewer.com.example.org", "look-alike under example.org"),
         ("myanyviewer.com", "look-alike: no dot before anyviewer.com")]),
    # REF todesk: todesk.com, *.todesk.com (web).
    "todesk": NamedTool(
        "ToDesk", "*.todesk.com",
        [Named("node1.todesk.com", "unknown", why="instance of *.todesk.com (R3)")],
        [("todesk.com", "the vendor's website (R2)"),
         ("todesk.com.example.org", "look-alike under example.org")]),
    # REF sunlogin: client-api.aweray.com (api), sunlogin.oray.com (web).
    "sunlogin": NamedTool(
        "Sunlogin / AweSun", "client-api.aweray.com, sunlogin.oray.com",
        [Named("client-api.aweray.com", "unknown", why="exact api name (R3)"),
         Named("sunlogin.oray.com", "unknown", why="exact web name (R3)")],
        [("www.oray.com", "a sibling name the reference does not list"),
         ("www.aweray.com", "a sibling name the reference does not list")]),
    # REF fixme-it: *.techinline.net, fixme.it, set.me (web).
    "fixme-it": NamedTool(
        "FixMe.it", "*.techinline.net",
        [Named("node1.techinline.net", "unknown", why="instance of *.techinline.net (R3)")],
        [("fixme.it", "the vendor's website (R2)"), ("set.me", "bare vendor domain (R2)")]),
}


def b_named(ex: Example) -> None:
    spec = NAMED[ex.tool]
    t = ex.t
    parts = []
    if ex.kind == "positive":
        for n in spec.pos:
            ip = ex.addr(n.name)
            ex.t = t
            t = ex.lookup(n.name, ip, ex.tool if n.dns else None, n.why if n.dns else
                          "the vendor's website name, not reported by itself (R2)")
            if n.how == "http":
                cport, t = http_get(ex, t, ip, n.name, n.path)
                what = f"plain-HTTP GET {n.path} on {n.name}"
            elif n.how == "tcp":
                cport, t = opaque_tcp(ex, t, ip, n.port,
                                      [(C, 72), (S, 88), (C, 410), (S, 96), (C, 1200), (S, 40)])
                what = f"TCP/{n.port} to {n.name}, bytes no source describes (filler)"
            else:
                kind = {"download": "download", "relay": "session"}.get(n.role, "chatty")
                cport, t = tls_app(ex, t, ip, n.port, n.name, kind)
                what = f"TLS 1.3 SNI {n.name}" + (", installer bytes down" if kind == "download"
                                                   else "")
            ex.row("tcp", LAPTOP_IP, cport, ip, n.port, ex.tool, n.role, f"{what}: {n.why}")
            parts.append(what)
            t += sec(5)
        made = [m for m in spec.made_up] + ([f"label {MADE_UP}"]
                                            if any(MADE_UP in n.name for n in spec.pos) else [])
        ex.description = (f"SYNTHETIC: {spec.title} (REF {ex.tool}: {spec.ref}): "
                          + "; ".join(f"DNS then {p}" for p in parts)
                          + (f" (made up here: {', '.join(made)})" if made else ""))
    else:
        for name, why in spec.neg:
            if name.startswith("http:"):
                host, path = name[5:].split("/", 1)
                ip = ex.addr(host, "203.0.113")
                ex.t = t
                t = ex.lookup(host, ip, None, why)
                cport, t = http_get(ex, t, ip, host, "/" + path,
                                    installer=path.endswith(".exe"))
                ex.row("tcp", LAPTOP_IP, cport, ip, 80, None, "-",
                       f"HTTP GET /{path} on {host}: {why}")
                parts.append(f"plain-HTTP GET /{path} on {host} ({why})")
                t += sec(5)
            else:
                t = web(ex, t, name, why)
                parts.append(f"HTTPS to {name} ({why})")
        ex.description = (f"SYNTHETIC: HARD NEGATIVE for {spec.title} (REF {ex.tool}): "
                          + "; ".join(parts))


BUILDERS = {
    "rdp": b_rdp, "vnc": b_vnc, "x11": b_x11, "xdmcp": b_xdmcp, "citrix": b_citrix,
    "nomachine": b_nomachine, "radmin": b_radmin, "apple-screen-sharing": b_apple,
    "msra": b_msra, "teamviewer": b_teamviewer, "anydesk": b_anydesk, "rustdesk": b_rustdesk,
    "screenconnect": b_screenconnect, "quickassist": b_quickassist,
    "realvnc-connect": b_realvnc, "tightvnc": b_tightvnc, "ultravnc": b_ultravnc,
    **{tool: b_named for tool in NAMED},
}


def check_reference() -> None:
    """When the reference is at hand, its ids must be exactly ours (minus xdmcp)."""
    if not REFERENCE.is_file():
        return
    ids = re.findall(r"^- id: (\S+)$", REFERENCE.read_text(encoding="utf-8"), re.M)
    assert set(ids) == set(TOOL_IDS) - {"xdmcp"}, sorted(set(ids) ^ (set(TOOL_IDS) - {"xdmcp"}))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=HERE, help="folder to write (default: here)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    check_reference()
    assert set(BUILDERS) == set(TOOL_IDS)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    manifest, flows = [], []
    for k, tool in enumerate(TOOL_IDS):
        for j, kind in enumerate(("positive", "negative")):
            ex = Example(tool, kind, T0 + sec(1200 * k + 600 * j) + ms(137))
            BUILDERS[tool](ex)
            n = ex.write(out)
            manifest.append((ex.file, kind, ex.label_tools, tool, ex.description))
            flows += ex.rows
            if not args.quiet:
                print(f"{ex.file:32s} {kind:8s} {n:3d} packets")
    with open(out / "MANIFEST.tsv", "w", encoding="utf-8", newline="\n") as fh:
        fh.write("file\tkind\ttools\tsignature\tdescription\n")
        for row in manifest:
            fh.write("\t".join(row) + "\n")
    with open(out / "FLOWS.tsv", "w", encoding="utf-8", newline="\n") as fh:
        fh.write("pcap\tproto\tclient_ip\tclient_port\tserver_ip\tserver_port\ttool\troles"
                 "\tnote\tvariant\n")
        for row in flows:
            fh.write("\t".join(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
