#!/usr/bin/env python3
"""Deterministic generator for netwatch's SYNTHETIC test captures.

Run:  python3 tests/pcaps/synthetic/generate.py

Writes small captures (classic pcap, Ethernet; plus one pcapng) next to this
file, together with MANIFEST.tsv and FLOWS.tsv (same FLOWS format as
/work/shared/pcaps/FLOWS.tsv).  Every run produces byte-identical files:
all randomness comes from random.Random(<fixed seed>), all timestamps are
fixed integers, and the pcap/pcapng writers below are our own (no
wall-clock or host data is ever written).

Nothing here is a real capture.  Byte layouts of the remote-access protocols
are taken from the project's reference files; each builder cites the entry:
  * REF-RDP  = /work/shared/reference/tools.yaml, id 'rdp', field 'handshake'
               (and remote-access-tools.md, section "RDP (MS-RDPBCGR ...)")
  * REF-VNC  = tools.yaml id 'vnc' 'handshake' (RFC 6143) and
               remote-access-tools.md section "RFB / VNC (RFC 6143)"
  * REF-TV   = tools.yaml id 'teamviewer' 'handshake' and 'names'
               (router*.teamviewer.com) / remote-access-tools.md "TeamViewer"
  * REF-AD   = tools.yaml id 'anydesk' 'handshake' and 'names'
               (boot.net.anydesk.com, relay-[a-f0-9]{8}.net.anydesk.com,
               ALPN 'anydesk/', cert O=philandro Software GmbH) /
               remote-access-tools.md "AnyDesk (TLS with its own certificate)"
               and "How to read idle vs. live traffic" (upstream bulk).
Generic protocols (TLS records, DNS, SSH, HTTP) follow their public RFCs
(TLS 1.2 RFC 5246, TLS 1.3 RFC 8446, SNI/ALPN RFC 6066/7301, SSH RFC 4253,
RFB RFC 6143); payloads that would be encrypted on the wire are seeded
pseudo-random filler.

Addresses: home LAN 192.168.1.0/24 (router/DNS 192.168.1.1, devices
.20-.40), "internet" hosts in 198.51.100.0/24, 203.0.113.0/24 and
2001:db8::/32 (documentation ranges).  MACs other than the laptop's
3c:22:fb:11:22:33 are locally administered (02:...).
"""

import datetime as _dt
import hashlib
import random
import struct
import sys
from pathlib import Path

from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import CookedLinux, Dot1Q, Ether
from scapy.packet import Raw

OUT = Path(__file__).resolve().parent

C, S = 0, 1  # client side / server side of a flow

# --------------------------------------------------------------------------
# home network constants
# --------------------------------------------------------------------------
ROUTER_IP = "192.168.1.1"
ROUTER_MAC = "02:00:5e:10:00:01"
LAPTOP_IP = "192.168.1.23"          # Grandma's laptop
LAPTOP_MAC = "3c:22:fb:11:22:33"
PC_IP = "192.168.1.30"              # grandma-pc (RDP/VNC server)
PC_MAC = "02:00:5e:10:00:30"
PC_V6 = "2001:db8:1:10::30"         # home's delegated /64 on VLAN 10 (documentation prefix)
SCAMMER_IP = "203.0.113.66"
SCAMMER_V6 = "2001:db8:bad:1::66"


def ts_us(iso):
    """ISO-8601 UTC string -> integer microseconds since the epoch."""
    d = _dt.datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return int(d.timestamp()) * 1_000_000


def ms(x):
    return int(round(x * 1000))


def sec(x):
    return int(round(x * 1_000_000))


def u8(v):
    return struct.pack("!B", v)


def u16(v):
    return struct.pack("!H", v)


def u24(v):
    return v.to_bytes(3, "big")


def u32(v):
    return struct.pack("!I", v)


# --------------------------------------------------------------------------
# capture container and writers
# --------------------------------------------------------------------------
class Capture:
    """Collects frames (timestamp in ns, interface, scapy packet).

    IPv4 identification fields are assigned at write time, in time order,
    from one counter per source address (so they grow monotonically per host
    across all of its flows)."""

    def __init__(self, name, seed):
        self.name = name
        self.rng = random.Random(seed)
        self.frames = []
        self._n = 0

    def add(self, t_ns, pkt, iface=0):
        self.frames.append((t_ns, self._n, iface, pkt))
        self._n += 1

    def render(self):
        ipid = {}
        out = []
        for t_ns, _n, iface, pkt in sorted(self.frames, key=lambda f: (f[0], f[1])):
            if IP in pkt:
                src = pkt[IP].src
                if src not in ipid:
                    ipid[src] = self.rng.randrange(0x1000, 0xF000)
                ipid[src] = (ipid[src] + 1) & 0xFFFF
                pkt[IP].id = ipid[src]
            out.append((t_ns, iface, bytes(pkt)))
        return out


def write_pcap(path, frames, linktype=1, snaplen=65535):
    """Classic libpcap, microsecond resolution, little-endian.  Frames longer than
    `snaplen` are cut to it, their original length kept, as `tcpdump -s` does."""
    buf = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, linktype))
    for t_ns, _iface, data in frames:
        assert t_ns % 1000 == 0, "classic pcap timestamps must be whole microseconds"
        t_us = t_ns // 1000
        kept = data[:snaplen]
        buf += struct.pack("<IIII", t_us // 1_000_000, t_us % 1_000_000, len(kept), len(data))
        buf += kept
    path.write_bytes(bytes(buf))
    return len(frames)


def _pad4(b):
    return b + b"\x00" * (-len(b) % 4)


def _opt(code, value):
    return struct.pack("<HH", code, len(value)) + _pad4(value)


def _block(btype, body):
    total = 12 + len(body)
    return struct.pack("<II", btype, total) + body + struct.pack("<I", total)


def write_pcapng(path, interfaces, frames):
    """Minimal pcapng writer (little-endian), written from the pcapng spec
    (IETF draft-ietf-opsawg-pcapng): one Section Header Block, one Interface
    Description Block per entry of `interfaces` (dicts: linktype, name,
    tsresol or None = default 10^-6), then one Enhanced Packet Block per frame.
    Frame timestamps are in ns and are converted to each interface's units."""
    out = bytearray()
    shb = struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)
    shb += _opt(4, b"netwatch tests/pcaps/synthetic/generate.py") + _opt(0, b"")  # shb_userappl
    out += _block(0x0A0D0D0A, shb)
    units = []
    for itf in interfaces:
        body = struct.pack("<HHI", itf["linktype"], 0, 65535)
        body += _opt(2, itf["name"].encode())                       # if_name
        if itf.get("tsresol") is not None:
            body += _opt(9, bytes([itf["tsresol"]]))                # if_tsresol (10^-N)
            units.append(10 ** (9 - itf["tsresol"]))
        else:
            units.append(1000)                                      # default: microseconds
        body += _opt(0, b"")
        out += _block(0x00000001, body)
    for t_ns, iface, data in frames:
        assert t_ns % units[iface] == 0
        t = t_ns // units[iface]
        body = struct.pack("<IIIII", iface, t >> 32, t & 0xFFFFFFFF, len(data), len(data))
        body += _pad4(data)
        out += _block(0x00000006, body)
    path.write_bytes(bytes(out))
    return len(frames)


# --------------------------------------------------------------------------
# link layer + TCP/UDP helpers
# --------------------------------------------------------------------------
class Link:
    """How frames between a client and a server look on the wire.

    kind: 'eth' (Ethernet II), 'vlan' (Ethernet + 802.1Q tag) or 'sll'
    (Linux cooked capture v1, captured on the *server* host)."""

    def __init__(self, cmac, smac, cip, sip, kind="eth", vlan=None, c_ttl=128, s_ttl=52):
        self.mac = {C: cmac, S: smac}
        self.ip = {C: cip, S: sip}
        self.ttl = {C: c_ttl, S: s_ttl}
        self.kind = kind
        self.vlan = vlan
        self.v6 = ":" in cip

    def frame(self, side, l4, df=True):
        o = 1 - side
        if self.v6:
            l3 = IPv6(src=self.ip[side], dst=self.ip[o], hlim=self.ttl[side])
        else:
            l3 = IP(src=self.ip[side], dst=self.ip[o], ttl=self.ttl[side], flags="DF" if df else 0)
        if self.kind == "sll":
            # SLL v1 header: packet type (0 = to this host, 4 = sent by this
            # host), ARPHRD_ETHER, address length 6, sender MAC padded to 8.
            mac = bytes.fromhex(self.mac[side].replace(":", "")) + b"\x00\x00"
            hdr = CookedLinux(pkttype=0 if side == C else 4, lladdrtype=1, lladdrlen=6,
                              src=mac, proto=0x86DD if self.v6 else 0x0800)
            return hdr / l3 / l4
        eth = Ether(src=self.mac[side], dst=self.mac[o])
        if self.kind == "vlan":
            return eth / Dot1Q(vlan=self.vlan, prio=0) / l3 / l4
        return eth / l3 / l4


SYN_OPTS = {
    # Windows-like client SYN and a Linux-like server SYN-ACK
    C: [("MSS", 1460), ("NOP", None), ("WScale", 8), ("NOP", None), ("NOP", None), ("SAckOK", b"")],
    S: [("MSS", 1460), ("NOP", None), ("NOP", None), ("SAckOK", b""), ("NOP", None), ("WScale", 7)],
}
SYN_OPTS_V6 = {
    C: [("MSS", 1440), ("NOP", None), ("WScale", 8), ("NOP", None), ("NOP", None), ("SAckOK", b"")],
    S: [("MSS", 1440), ("NOP", None), ("NOP", None), ("SAckOK", b""), ("NOP", None), ("WScale", 7)],
}


class TCPFlow:
    """One TCP connection with consistent sequence/acknowledgement numbers.

    `t` arguments are absolute times in microseconds.  `nxt[side]` is the
    next sequence number that side will send; `rcv[side]` is what that side
    has received so far (the value it puts in its ACK field)."""

    def __init__(self, cap, link, cport, sport, iface=0, win=None, ns_offset=0):
        self.cap, self.link, self.iface = cap, link, iface
        self.port = {C: cport, S: sport}
        rng = cap.rng
        self.isn = {C: rng.getrandbits(32), S: rng.getrandbits(32)}
        self.nxt = dict(self.isn)
        self.rcv = {C: 0, S: 0}
        self.acked = {C: 0, S: 0}   # last ACK value each side has sent
        self.win = win or {C: 1026, S: 501}
        self.ns_offset = ns_offset  # sub-microsecond part (pcapng ns interface only)
        self.mss = 1440 if link.v6 else 1460

    # low level ------------------------------------------------------------
    def emit(self, t, side, flags, payload=b"", seq=None, ack=None, options=None, window=None):
        tcp = TCP(sport=self.port[side], dport=self.port[1 - side], flags=flags,
                  seq=self.nxt[side] if seq is None else seq,
                  ack=(self.rcv[side] if ack is None else ack) if "A" in flags else 0,
                  window=self.win[side] if window is None else window,
                  options=options or [])
        pkt = self.link.frame(side, tcp / Raw(payload) if payload else tcp)
        self.cap.add(t * 1000 + self.ns_offset, pkt, self.iface)
        if "A" in flags:
            self.acked[side] = tcp.ack
        return pkt

    # connection setup / teardown -------------------------------------------
    def handshake(self, t, rtt=ms(30)):
        opts = SYN_OPTS_V6 if self.link.v6 else SYN_OPTS
        self.emit(t, C, "S", options=opts[C], window=64240)
        self.nxt[C] += 1
        self.rcv[S] = self.nxt[C]
        self.emit(t + rtt // 2, S, "SA", options=opts[S], window=self.win[S] << 7)   # = later scaled window
        self.nxt[S] += 1
        self.rcv[C] = self.nxt[S]
        self.emit(t + rtt, C, "A")
        return t + rtt

    def close(self, t, first=C, rtt=ms(30)):
        """FIN from `first`, FIN+ACK back, final ACK."""
        other = 1 - first
        self.emit(t, first, "FA")
        self.nxt[first] += 1
        self.rcv[other] = self.nxt[first]
        self.emit(t + rtt // 2, other, "FA")
        self.nxt[other] += 1
        self.rcv[first] = self.nxt[other]
        self.emit(t + rtt, first, "A")
        return t + rtt

    # data ------------------------------------------------------------------
    def send(self, t, side, data, gap=ms(0.3)):
        """Send `data` from `side`, cut into MSS-sized segments (PSH on the
        last one).  Returns the time of the last segment."""
        chunks = [data[i:i + self.mss] for i in range(0, len(data), self.mss)] or [b""]
        for i, ch in enumerate(chunks):
            last = i == len(chunks) - 1
            self.emit(t, side, "PA" if last else "A", ch)
            self.nxt[side] += len(ch)
            self.rcv[1 - side] = self.nxt[side]
            if not last:
                t += gap
        return t

    def ack(self, t, side):
        """Pure ACK from `side` (only if it has unacknowledged data)."""
        if self.acked[side] != self.rcv[side]:
            self.emit(t, side, "A")
            return True
        return False


def dns_exchange(cap, link, t, name, answer, rtt=ms(12), ttl=300, iface=0, ns_offset=0):
    """A DNS A query from link's client to link's server (port 53) and its
    answer.  Returns (client source port, time of the answer)."""
    rng = cap.rng
    sport = rng.randrange(49152, 65536)
    txid = rng.getrandbits(16)
    q = DNS(id=txid, rd=1, qd=[DNSQR(qname=name, qtype="A")])
    a = DNS(id=txid, qr=1, rd=1, ra=1, qd=[DNSQR(qname=name, qtype="A")],
            an=[DNSRR(rrname=name, type="A", ttl=ttl, rdata=answer)])
    cap.add(t * 1000 + ns_offset, link.frame(C, UDP(sport=sport, dport=53) / q, df=False), iface)
    cap.add((t + rtt) * 1000 + ns_offset, link.frame(S, UDP(sport=53, dport=sport) / a, df=False), iface)
    return sport, t + rtt


# --------------------------------------------------------------------------
# TLS record / handshake builders (RFC 5246, RFC 8446, RFC 6066, RFC 7301)
# --------------------------------------------------------------------------
def tls_record(ctype, body, version=0x0303):
    return struct.pack("!BHH", ctype, version, len(body)) + body


def tls_hs(msg_type, body):
    return u8(msg_type) + u24(len(body)) + body


def tls_ext(etype, data):
    return u16(etype) + u16(len(data)) + data


def ext_sni(name):
    entry = b"\x00" + u16(len(name)) + name.encode()
    return tls_ext(0x0000, u16(len(entry)) + entry)


def ext_alpn(protos):
    lst = b"".join(u8(len(p)) + p.encode() for p in protos)
    return tls_ext(0x0010, u16(len(lst)) + lst)


def client_hello(rng, sni=None, alpn=(), tls13=True):
    """ClientHello record.  TLS 1.3 style (browser) or TLS 1.2 style."""
    if tls13:
        suites = [0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8, 0xC013, 0xC014, 0x009C, 0x009D, 0x002F, 0x0035]
    else:
        suites = [0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8, 0xC009, 0xC013, 0xC00A, 0xC014, 0x009C, 0x009D, 0x002F, 0x0035]
    sid = rng.randbytes(32) if tls13 else b""
    exts = b""
    if sni:
        exts += ext_sni(sni)
    exts += tls_ext(0x0017, b"")                                      # extended_master_secret
    exts += tls_ext(0xFF01, b"\x00")                                  # renegotiation_info
    exts += tls_ext(0x000A, u16(6) + u16(0x001D) + u16(0x0017) + u16(0x0018))  # supported_groups
    exts += tls_ext(0x000B, b"\x01\x00")                              # ec_point_formats
    exts += tls_ext(0x0023, b"")                                      # session_ticket
    if alpn:
        exts += ext_alpn(alpn)
    if tls13:
        exts += tls_ext(0x0005, b"\x01\x00\x00\x00\x00")             # status_request
    sigalgs = [0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601, 0x0807]
    exts += tls_ext(0x000D, u16(2 * len(sigalgs)) + b"".join(u16(a) for a in sigalgs))
    if tls13:
        ks = u16(0x001D) + u16(32) + rng.randbytes(32)
        exts += tls_ext(0x0033, u16(len(ks)) + ks)                    # key_share (x25519)
        exts += tls_ext(0x002D, b"\x01\x01")                          # psk_key_exchange_modes
        exts += tls_ext(0x002B, b"\x04\x03\x04\x03\x03")              # supported_versions
    body = (u16(0x0303) + rng.randbytes(32) + u8(len(sid)) + sid
            + u16(2 * len(suites)) + b"".join(u16(s) for s in suites)
            + b"\x01\x00" + u16(len(exts)) + exts)
    return tls_record(0x16, tls_hs(0x01, body), version=0x0301)


def server_hello_body(rng, session_id, suite, exts):
    return (u16(0x0303) + rng.randbytes(32) + u8(len(session_id)) + session_id
            + u16(suite) + b"\x00" + u16(len(exts)) + exts)


def tls13_server_flight(rng, client_hello_rec, nrec=3):
    """ServerHello (TLS 1.3) + ChangeCipherSpec + encrypted records."""
    sid = client_hello_rec[5 + 4 + 2 + 32 + 1:5 + 4 + 2 + 32 + 1 + 32]
    exts = tls_ext(0x002B, u16(0x0304)) + tls_ext(0x0033, u16(0x001D) + u16(32) + rng.randbytes(32))
    out = tls_record(0x16, tls_hs(0x02, server_hello_body(rng, sid, 0x1301, exts)))
    out += tls_record(0x14, b"\x01")
    for n in [rng.randrange(20, 40)] + [rng.randrange(600, 1100)] + [rng.randrange(70, 120)] * (nrec - 2):
        out += tls_record(0x17, rng.randbytes(n))
    return out


def tls13_client_finish(rng):
    return tls_record(0x14, b"\x01") + tls_record(0x17, rng.randbytes(53))


def tls12_server_flight(rng, cert_ders, alpn=None, suite=0xC02B):
    """TLS 1.2 server flight: ServerHello, Certificate (cleartext in 1.2),
    ServerKeyExchange (ECDHE x25519), ServerHelloDone, in one record."""
    exts = tls_ext(0xFF01, b"\x00") + tls_ext(0x0017, b"")
    if alpn:
        exts += ext_alpn([alpn])
    sh = tls_hs(0x02, server_hello_body(rng, rng.randbytes(32), suite, exts))
    chain = b"".join(u24(len(d)) + d for d in cert_ders)
    cert = tls_hs(0x0B, u24(len(chain)) + chain)
    # ServerKeyExchange: named_curve(3), x25519, 32-byte point, ed25519 (0x0807) signature
    ske = tls_hs(0x0C, b"\x03" + u16(0x001D) + u8(32) + rng.randbytes(32)
                 + u16(0x0807) + u16(64) + rng.randbytes(64))
    shd = tls_hs(0x0E, b"")
    return tls_record(0x16, sh + cert + ske + shd)


def tls12_client_finish(rng):
    cke = tls_hs(0x10, u8(32) + rng.randbytes(32))
    return (tls_record(0x16, cke) + tls_record(0x14, b"\x01")
            + tls_record(0x16, rng.randbytes(40)))   # encrypted Finished


def tls12_server_finish(rng):
    return tls_record(0x14, b"\x01") + tls_record(0x16, rng.randbytes(40))


def appdata(rng, n):
    """One TLS application_data record (0x17 0x03 0x03) of n body bytes."""
    return tls_record(0x17, rng.randbytes(n))


# --------------------------------------------------------------------------
# X.509 certificates (self-generated, deterministic)
# --------------------------------------------------------------------------
def _der(tag, content):
    n = len(content)
    if n < 0x80:
        ln = bytes([n])
    else:
        b = n.to_bytes((n.bit_length() + 7) // 8, "big")
        ln = bytes([0x80 | len(b)]) + b
    return bytes([tag]) + ln + content


def _der_name(cn, org):
    def rdn(oid, val):
        return _der(0x31, _der(0x30, _der(0x06, oid) + _der(0x0C, val.encode())))
    out = b""
    if org:
        out += rdn(bytes([0x55, 0x04, 0x0A]), org)   # 2.5.4.10 organizationName
    out += rdn(bytes([0x55, 0x04, 0x03]), cn)        # 2.5.4.3 commonName
    return _der(0x30, out)


def self_signed_cert(cn, org, seed):
    """DER of a self-signed Ed25519 certificate with subject CN=cn, O=org.

    Uses the `cryptography` package if installed (Ed25519 signatures are
    deterministic, key derived from `seed`), else a hand-made minimal DER
    with a placeholder signature (structurally valid, not verifiable)."""
    keybytes = hashlib.sha256(seed.encode()).digest()
    not_before = _dt.datetime(2023, 1, 1, tzinfo=_dt.timezone.utc)
    not_after = _dt.datetime(2033, 1, 1, tzinfo=_dt.timezone.utc)
    serial = int.from_bytes(hashlib.sha256(b"serial" + keybytes).digest()[:8], "big") >> 1
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
        from cryptography.x509.oid import NameOID
    except ImportError:
        x509 = None
    if x509 is not None:
        key = ed25519.Ed25519PrivateKey.from_private_bytes(keybytes)
        attrs = []
        if org:
            attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
        name = x509.Name(attrs)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(key.public_key()).serial_number(serial)
                .not_valid_before(not_before).not_valid_after(not_after)
                .sign(key, None))
        return cert.public_bytes(serialization.Encoding.DER)
    # fallback: minimal hand-made DER (RFC 5280 structure, RFC 8410 Ed25519 OID)
    alg = _der(0x30, _der(0x06, bytes([0x2B, 0x65, 0x70])))          # 1.3.101.112
    name = _der_name(cn, org)
    validity = _der(0x30, _der(0x17, b"230101000000Z") + _der(0x17, b"330101000000Z"))
    spki = _der(0x30, alg + _der(0x03, b"\x00" + hashlib.sha256(b"pub" + keybytes).digest()))
    tbs = _der(0x30, _der(0xA0, _der(0x02, b"\x02")) + _der(0x02, serial.to_bytes(8, "big"))
               + alg + name + validity + name + spki)
    sig = hashlib.sha512(tbs + keybytes).digest()
    return _der(0x30, tbs + alg + _der(0x03, b"\x00" + sig))


# --------------------------------------------------------------------------
# RDP pieces (REF-RDP)
# --------------------------------------------------------------------------
def rdp_connection_request(user="grandma", requested=0x03):
    """TPKT + X.224 Connection Request + cookie + RDP_NEG_REQ.

    REF-RDP: TPKT 03 00 LL LL (big-endian total length); byte 4 = X.224
    length indicator (= total-5); byte 5 = 0xE0 (CR TPDU); bytes 6-10 =
    DST-REF(2) SRC-REF(2) class(1); cookie 'Cookie: mstshash=<user>\\r\\n' at
    offset 11; RDP_NEG_REQ type 0x01, flags 0x00, length 0x0008 (LE),
    requestedProtocols u32 LE (0x1 TLS | 0x2 CredSSP = 0x03)."""
    cookie = b"Cookie: mstshash=" + user.encode() + b"\r\n"
    neg = struct.pack("<BBHI", 0x01, 0x00, 8, requested)
    x224 = b"\xE0" + b"\x00\x00" + b"\x00\x00" + b"\x00" + cookie + neg
    x224 = u8(len(x224)) + x224            # LI counts the bytes after itself
    return b"\x03\x00" + u16(4 + len(x224)) + x224


def rdp_connection_confirm(selected=0x01):
    """REF-RDP: TPKT + X.224 Connection Confirm (0xD0 at byte 5), then
    RDP_NEG_RSP at byte 11: type 0x02, flags, length 0x0008 (LE),
    selectedProtocol u32 LE (0x1 = TLS)."""
    neg = struct.pack("<BBHI", 0x02, 0x00, 8, selected)
    x224 = b"\xD0" + b"\x00\x00" + b"\x12\x34" + b"\x00" + neg
    x224 = u8(len(x224)) + x224
    return b"\x03\x00" + u16(4 + len(x224)) + x224


RDP_SERVER_CERT_SEED = "netwatch-synthetic-grandma-pc-rdp"


def rdp_flow(cap, link, t, cport, mode="split", iface=0, ns_offset=0):
    """RDP over TCP/3389: handshake, X.224 CR (whole / split / reordered),
    CC selecting TLS, TLS 1.2 handshake, a few encrypted records, FIN.
    mode: 'whole', 'split' or 'reorder'.  Returns the end time."""
    rng = cap.rng
    f = TCPFlow(cap, link, cport, 3389, iface=iface, ns_offset=ns_offset)
    t = f.handshake(t, rtt=ms(24))
    cr = rdp_connection_request("grandma", 0x03)
    cut = 20                               # segment 1 ends inside the cookie
    seg1, seg2 = cr[:cut], cr[cut:]
    base = f.nxt[C]
    t += ms(2)
    if mode == "whole":
        f.send(t, C, cr)
    elif mode == "split":
        # two segments, in order; the server ACKs both, then answers
        f.emit(t, C, "A", seg1, seq=base)
        f.emit(t + ms(0.4), C, "PA", seg2, seq=base + cut)
        f.nxt[C] = base + len(cr)
        f.rcv[S] = f.nxt[C]
        t += ms(0.4)
    else:
        # Reverse order on the wire.  The client sent seg1 then seg2; seg1 is
        # held up in the network, so seg2 arrives first.  The server answers
        # with an immediate duplicate ACK (ack = start of seg1); with only two
        # segments outstanding the client early-retransmits seg1 (RFC 5827),
        # and that copy arrives next; the server ACKs the now complete
        # request and answers it.  Finally the delayed original seg1 shows up:
        # a second (spurious) copy of seg1, which the server dup-ACKs.
        c_ack = f.rcv[C]
        f.emit(t, C, "PA", seg2, seq=base + cut)
        f.emit(t + 100, S, "A", ack=base)                              # dup ACK
        f.emit(t + ms(24), C, "A", seg1, seq=base)                     # seg1 (retransmitted copy)
        f.nxt[C] = base + len(cr)
        f.rcv[S] = f.nxt[C]
        f.emit(t + ms(24) + 100, S, "A")                               # gap filled: immediate ACK
        t += ms(24)
    # server Connection Confirm (acks the whole request)
    t += ms(2) if mode == "reorder" else ms(12)
    f.send(t, S, rdp_connection_confirm(0x01))
    if mode == "reorder":
        f.emit(t + ms(34), C, "A", seg1, seq=base, ack=c_ack)           # delayed original seg1
        f.emit(t + ms(34) + 100, S, "A")                                # dup ACK for it
        t += ms(34)
    # TLS (REF-RDP: "after TLS/NLA is selected the next bytes are a TLS ClientHello (0x16)")
    t += ms(13)
    f.send(t, C, client_hello(rng, sni=None, alpn=(), tls13=False))
    t += ms(12)
    cert = self_signed_cert("grandma-pc", None, RDP_SERVER_CERT_SEED)
    t = f.send(t, S, tls12_server_flight(rng, [cert], suite=0xC02F))
    t += ms(13)
    f.send(t, C, tls12_client_finish(rng))
    t += ms(12)
    f.send(t, S, tls12_server_finish(rng))
    # encrypted MCS Connect Initial / Response etc. (opaque here)
    for side, n, dt in [(C, 420, 13), (S, 310, 12), (C, 40, 13), (C, 60, 1), (S, 90, 12), (C, 200, 13), (S, 1100, 12)]:
        t += ms(dt)
        f.send(t, side, appdata(rng, n))
    t += ms(40)
    f.ack(t, C)
    t += ms(1500)
    return f.close(t, C, rtt=ms(24))


# --------------------------------------------------------------------------
# capture builders
# --------------------------------------------------------------------------
MANIFEST = []   # (file, kind, tools, packets, description)
FLOWS = []      # (pcap, proto, client_ip, client_port, server_ip, server_port, tool, roles, note)


def flow_row(pcap, proto, cip, cport, sip, sport, tool, roles, note):
    FLOWS.append((pcap, proto, cip, str(cport), sip, str(sport), tool, roles, note))


def lan_link(server_ip, s_ttl=52, cip=LAPTOP_IP, cmac=LAPTOP_MAC):
    """Home device <-> internet host (through the router, so the Ethernet
    peer is the router's MAC)."""
    return Link(cmac, ROUTER_MAC, cip, server_ip, c_ttl=128, s_ttl=s_ttl)


def dns_link(cip=LAPTOP_IP, cmac=LAPTOP_MAC):
    return Link(cmac, ROUTER_MAC, cip, ROUTER_IP, c_ttl=128, s_ttl=64)


def web_tls13(cap, t, sip, sni, cport, server_records=(1200, 1200, 800), alpn=("h2", "http/1.1"),
              keep_open=ms(4000), s_ttl=52):
    """Ordinary browser HTTPS: TLS 1.3 ClientHello with SNI, server flight,
    request, a few response records, FIN from the client."""
    rng = cap.rng
    f = TCPFlow(cap, lan_link(sip, s_ttl), cport, 443)
    t = f.handshake(t, rtt=ms(22))
    ch = client_hello(rng, sni=sni, alpn=alpn, tls13=True)
    t += ms(1)
    f.send(t, C, ch)
    t += ms(22)
    t = f.send(t, S, tls13_server_flight(rng, ch))
    t += ms(2)
    f.send(t, C, tls13_client_finish(rng) + appdata(rng, rng.randrange(280, 420)))
    t += ms(25)
    for n in server_records:
        f.send(t, S, appdata(rng, n))
        t += ms(1)
    t += ms(5)
    f.ack(t, C)
    t += keep_open
    return f.close(t, C, rtt=ms(22))


def anydesk_relay_session(cap, t, relay, relay_name, relay_port, relay_cert, session_end,
                          link=None):
    """An AnyDesk session through a relay from the laptop: TLS 1.2 with the relay's name and
    AnyDesk's ALPN, then screen updates upstream and input downstream until `session_end`,
    ended by the remote side.  Returns the time of the last packet."""
    rng = cap.rng
    rf = TCPFlow(cap, link or lan_link(relay, 53), relay_port, 443)
    t = rf.handshake(t + ms(2), rtt=ms(30))
    t += ms(1)
    rf.send(t, C, client_hello(rng, sni=relay_name, alpn=("anydesk/7.1.0/windows",), tls13=False))
    t += ms(30)
    # REF-AD: server certificate subject O=philandro Software GmbH (CN=AnyNet Relay);
    # TLS 1.2, so the Certificate message is in clear.
    rf.send(t, S, tls12_server_flight(rng, [relay_cert], alpn="anydesk/7.1.0/windows"))
    t += ms(3)
    rf.send(t, C, tls12_client_finish(rng))
    t += ms(30)
    rf.send(t, S, tls12_server_finish(rng))
    t += ms(2)
    # The session.  REF "How to read idle vs. live traffic": screen
    # updates upstream from the controlled PC (large, bursty), input events
    # downstream (small, frequent).  About 4-6 KB/s upstream on average: the
    # low end of the live sessions in the labelled corpus (2.8-28 KB/s).
    t += ms(400)
    while t < session_end - sec(5):
        r = rng.random()
        if r < 0.45:
            # input event from the remote side (mouse/keyboard), then the
            # screen change it causes goes back up
            rf.send(t, S, appdata(rng, rng.randrange(24, 72)))
            t += ms(rng.randrange(15, 45))
        n = rng.randrange(2, 6)
        for _ in range(n):
            size = rng.randrange(900, 1380) if rng.random() < 0.7 else rng.randrange(90, 340)
            rf.send(t, C, appdata(rng, size))
            t += ms(rng.randrange(1, 6))
        # the relay ACKs the burst (delayed ACK) unless it has input to send
        t += ms(rng.randrange(25, 40))
        if rng.random() < 0.5:
            rf.send(t, S, appdata(rng, rng.randrange(24, 72)))
            t += ms(rng.randrange(30, 60))
            rf.ack(t, C)
        else:
            rf.ack(t, S)
        t += ms(rng.randrange(250, 900))
    rf.ack(t, C)
    rf.ack(t, S)
    t = max(t + ms(500), session_end)
    rf.close(t, S, rtt=ms(30))      # the remote side ends the session
    return t


def build_demo():
    """1. demo-anydesk-scam.pcap: the README story (starts 2024-03-05T13:58:00Z)."""
    name = "demo-anydesk-scam.pcap"
    cap = Capture(name, seed=0x5CA3_0001)
    rng = cap.rng
    t0 = ts_us("2024-03-05T13:58:00Z")
    ports = iter(range(51200, 51300))

    # -- 13:58:00 normal browsing: BBC News ------------------------------
    BBC = "203.0.113.80"
    _, t = dns_exchange(cap, dns_link(), t0, "www.bbc.co.uk", BBC)
    web_tls13(cap, t + ms(2), BBC, "www.bbc.co.uk", next(ports), server_records=(1250, 1250, 1250, 600))

    # -- 13:59:40 the "support" caller makes her download AnyDesk -----------
    DL = "198.51.100.30"
    t = t0 + sec(100)
    dport, t = dns_exchange(cap, dns_link(), t, "download.anydesk.com", DL, ttl=60)
    flow_row(name, "udp", LAPTOP_IP, dport, ROUTER_IP, 53, "anydesk", "dns",
             "DNS A query download.anydesk.com (REF *.anydesk.com vendor name)")
    cport = next(ports)
    f = TCPFlow(cap, lan_link(DL, 55), cport, 443)
    t = f.handshake(t + ms(2), rtt=ms(20))
    ch = client_hello(rng, sni="download.anydesk.com", alpn=("h2", "http/1.1"), tls13=True)
    t += ms(1)
    f.send(t, C, ch)
    t += ms(20)
    t = f.send(t, S, tls13_server_flight(rng, ch))
    t += ms(2)
    f.send(t, C, tls13_client_finish(rng) + appdata(rng, 330))       # GET /AnyDesk.exe
    t += ms(21)
    # installer body: 30 full-size frames of 1400 bytes (1346 B TCP payload =
    # one 1341-byte application_data record each); the client ACKs every 2nd.
    for i in range(30):
        f.send(t, S, appdata(rng, 1400 - 14 - 20 - 20 - 5))
        if i % 2 == 1:
            f.ack(t + ms(0.2), C)
        t += ms(1.1)
    f.ack(t + ms(0.2), C)
    t += ms(900)
    f.close(t, C, rtt=ms(20))
    flow_row(name, "tcp", LAPTOP_IP, cport, DL, 443, "anydesk", "download",
             "TLS 1.3 SNI download.anydesk.com, ~40 KB server->client (installer download)")

    # -- 14:00:40 AnyDesk starts: rendezvous with boot.net.anydesk.com -------
    BOOT = "198.51.100.10"
    t = t0 + sec(160)
    dport, t = dns_exchange(cap, dns_link(), t, "boot.net.anydesk.com", BOOT, ttl=60)
    flow_row(name, "udp", LAPTOP_IP, dport, ROUTER_IP, 53, "anydesk", "dns",
             "DNS A query boot.net.anydesk.com (REF-AD names: rendezvous)")
    relay_cert = self_signed_cert("AnyNet Relay", "philandro Software GmbH", "netwatch-synthetic-anynet-relay")
    boot_port = next(ports)
    boot = TCPFlow(cap, lan_link(BOOT, 54), boot_port, 443)
    t = boot.handshake(t + ms(3), rtt=ms(28))
    t += ms(1)
    # REF-AD: TLS ClientHello whose ALPN list starts with 'anydesk/'; no SNI
    boot.send(t, C, client_hello(rng, sni=None, alpn=("anydesk/7.1.0/windows",), tls13=False))
    t += ms(28)
    boot.send(t, S, tls12_server_flight(rng, [relay_cert], alpn="anydesk/7.1.0/windows"))
    t += ms(3)
    boot.send(t, C, tls12_client_finish(rng))
    t += ms(28)
    boot.send(t, S, tls12_server_finish(rng))
    t += ms(2)
    boot.send(t, C, appdata(rng, 180))       # client registers its ID (opaque)
    t += ms(29)
    boot.send(t, S, appdata(rng, 96))
    boot.ack(t + ms(40), C)
    # small periodic keepalive records every ~30 s until the end of the capture
    ka = t0 + sec(215)
    boot_end = t0 + sec(590)
    while ka < boot_end:
        boot.send(ka, C, appdata(rng, 24))
        boot.send(ka + ms(28), S, appdata(rng, 24))
        boot.ack(ka + ms(68), C)
        ka += sec(30) + ms(rng.randrange(0, 400))
    boot.close(boot_end, C, rtt=ms(28))
    flow_row(name, "tcp", LAPTOP_IP, boot_port, BOOT, 443, "anydesk", "rendezvous",
             "TLS 1.2 no SNI, ALPN anydesk/7.1.0/windows, cert O=philandro Software GmbH; small periodic keepalive records")

    # -- 14:01:30 the caller connects: relay session -------------------------
    RELAY = "198.51.100.77"
    RELAY_NAME = "relay-3a4f9c01.net.anydesk.com"
    t = t0 + sec(210)
    dport, t = dns_exchange(cap, dns_link(), t, RELAY_NAME, RELAY, ttl=60)
    flow_row(name, "udp", LAPTOP_IP, dport, ROUTER_IP, 53, "anydesk", "dns",
             "DNS A query relay-3a4f9c01.net.anydesk.com (REF-AD names: relay-[a-f0-9]{8}.net.anydesk.com)")
    relay_port = next(ports)
    t = anydesk_relay_session(cap, t, RELAY, RELAY_NAME, relay_port, relay_cert,
                              t0 + sec(450))
    flow_row(name, "tcp", LAPTOP_IP, relay_port, RELAY, 443, "anydesk", "relay|session",
             "TLS 1.2 SNI relay-3a4f9c01.net.anydesk.com, ALPN anydesk/7.1.0/windows, server cert CN=AnyNet Relay O=philandro Software GmbH; 4 minutes of screen updates upstream (~5 KB/s), input downstream")

    # -- 14:04:00 during the session: online banking (KBC) -----------------
    KBC = "203.0.113.120"
    _, t = dns_exchange(cap, dns_link(), t0 + sec(360), "www.kbc.be", KBC)
    web_tls13(cap, t + ms(2), KBC, "www.kbc.be", next(ports), server_records=(1200, 900, 400), keep_open=sec(45))

    n = write_pcap(OUT / name, cap.render())
    MANIFEST.append((name, "positive", "anydesk", n,
                     "SYNTHETIC: README demo, ~10 min from 2024-03-05T13:58:00Z: laptop 192.168.1.23 browses BBC, "
                     "downloads AnyDesk (SNI download.anydesk.com), rendezvous to boot.net.anydesk.com (ALPN anydesk/7.1.0/windows, keepalives), "
                     "relay session via relay-3a4f9c01.net.anydesk.com (cert AnyNet Relay/philandro, 4 min of screen updates upstream), online banking www.kbc.be during the session"))


def build_rdp(mode):
    name = {"split": "rdp-split-handshake.pcap", "reorder": "rdp-out-of-order.pcap"}[mode]
    cap = Capture(name, seed={"split": 0x5CA3_0002, "reorder": 0x5CA3_0003}[mode])
    # scammer on the internet -> port-forwarded RDP on grandma-pc (192.168.1.30);
    # captured on the LAN side, so frames come from the router's MAC.
    link = Link(ROUTER_MAC, PC_MAC, SCAMMER_IP, PC_IP, c_ttl=113, s_ttl=128)
    cport = 49822 if mode == "split" else 49837
    rdp_flow(cap, link, ts_us("2024-03-06T10:15:00Z") + ms(120), cport, mode=mode)
    n = write_pcap(OUT / name, cap.render())
    if mode == "split":
        desc = ("SYNTHETIC: RDP to TCP/3389, X.224 Connection Request (Cookie: mstshash=grandma, RDP_NEG_REQ TLS|CredSSP) "
                "split over two TCP segments; CC with RDP_NEG_RSP selecting TLS; TLS 1.2 handshake")
        note = "X.224 CR mstshash=grandma split over 2 segments, RDP_NEG_REQ 0x03, CC/RDP_NEG_RSP TLS, then TLS"
    else:
        desc = ("SYNTHETIC: as rdp-split-handshake but the two Connection Request segments arrive in reverse order "
                "(segment 2 first) and segment 1 is seen twice (early retransmission, then the delayed original)")
        note = "X.224 CR mstshash=grandma in 2 segments received in reverse order, segment 1 retransmitted once; CC selects TLS, then TLS"
    MANIFEST.append((name, "positive", "rdp", n, desc))
    flow_row(name, "tcp", SCAMMER_IP, cport, PC_IP, 3389, "rdp", "session", note)


def build_vnc():
    """4. RFB over IPv6 in an 802.1Q VLAN 10 tag, TCP/5901 (REF-VNC)."""
    name = "vnc-ipv6-vlan.pcap"
    cap = Capture(name, seed=0x5CA3_0004)
    rng = cap.rng
    link = Link(ROUTER_MAC, LAPTOP_MAC, SCAMMER_V6, PC_V6, kind="vlan", vlan=10, c_ttl=54, s_ttl=128)
    cport = 50412
    f = TCPFlow(cap, link, cport, 5901)
    t = ts_us("2024-03-06T11:02:00Z") + ms(250)
    t = f.handshake(t, rtt=ms(40))
    step = ms(20)
    # REF-VNC: server speaks first, exactly 12 bytes 'RFB 003.008\n'
    t += ms(2); f.send(t, S, b"RFB 003.008\n")
    t += step; f.send(t, C, b"RFB 003.008\n")
    # RFC 6143 7.1.2 (3.8): u8 number-of-security-types, u8 types[]; 2 = VNC Authentication
    t += step; f.send(t, S, b"\x01\x02")
    t += step; f.send(t, C, b"\x02")                       # client selects type 2
    # RFC 6143 7.2.2: 16-byte challenge, 16-byte response (random filler, not a real DES response)
    t += step; f.send(t, S, rng.randbytes(16))
    t += ms(1800); f.send(t, C, rng.randbytes(16))         # the viewer typed the password
    # RFC 6143 7.1.3: SecurityResult u32 0 = OK
    t += step; f.send(t, S, u32(0))
    # RFC 6143 7.3.1: ClientInit, u8 shared-flag
    t += step; f.send(t, C, b"\x01")
    # RFC 6143 7.3.2: ServerInit: u16 width, u16 height, 16-byte PIXEL_FORMAT,
    # u32 name-length, name
    pixfmt = struct.pack("!BBBBHHHBBB3x", 32, 24, 0, 1, 255, 255, 255, 16, 8, 0)
    desk = b"grandma-pc"
    t += step; f.send(t, S, u16(1366) + u16(768) + pixfmt + u32(len(desk)) + desk)
    # RFC 6143 7.5.1 SetPixelFormat (type 0), 7.5.2 SetEncodings (type 2: Raw 0, CopyRect 1)
    # and 7.5.3 FramebufferUpdateRequest (type 3)
    t += step; f.send(t, C, b"\x00\x00\x00\x00" + pixfmt)
    t += ms(1); f.send(t, C, b"\x02\x00" + u16(2) + struct.pack("!ii", 1, 0))
    t += ms(1); f.send(t, C, b"\x03\x00" + u16(0) + u16(0) + u16(1366) + u16(768))

    def fb_update(rects):
        # RFC 6143 7.6.1 FramebufferUpdate: u8 type 0, pad, u16 nrects, then
        # per rectangle u16 x, y, w, h, s32 encoding (0 = Raw) + pixels
        body = b"\x00\x00" + u16(len(rects))
        for (x, y, w, h) in rects:
            px = bytes(((x + i) * 7 + y) & 0xFF for i in range(w * h * 4))
            body += u16(x) + u16(y) + u16(w) + u16(h) + struct.pack("!i", 0) + px
        return body

    t += ms(30)
    t = f.send(t, S, fb_update([(0, 0, 64, 16)]))          # 4 KB -> 3 segments
    t += ms(20); f.send(t, C, b"\x03\x01" + u16(0) + u16(0) + u16(1366) + u16(768))
    for k in range(4):
        t += ms(300 + 150 * k)
        # RFC 6143 7.5.5 PointerEvent (type 5): button-mask, x, y
        f.send(t, C, b"\x05\x00" + u16(400 + 30 * k) + u16(300 + 10 * k))
        t += ms(25)
        t = f.send(t, S, fb_update([(384 + 32 * k, 288, 16, 16), (0, 752, 16, 16)]))
        t += ms(20)
        f.send(t, C, b"\x03\x01" + u16(0) + u16(0) + u16(1366) + u16(768))
    # RFC 6143 7.5.4 KeyEvent (type 4): down-flag, pad, u32 keysym ('a' = 0x61)
    t += ms(700); f.send(t, C, b"\x04\x01\x00\x00" + u32(0x61))
    t += ms(5); f.send(t, C, b"\x04\x00\x00\x00" + u32(0x61))
    t += ms(25); t = f.send(t, S, fb_update([(410, 300, 8, 16)]))
    t += ms(40); f.ack(t, C)
    t += ms(2000)
    f.close(t, C, rtt=ms(40))
    n = write_pcap(OUT / name, cap.render())
    MANIFEST.append((name, "positive", "vnc", n,
                     "SYNTHETIC: RFB 3.8 session over IPv6 in 802.1Q VLAN 10, TCP/5901: VNC auth, ServerInit desktop 'grandma-pc', framebuffer updates"))
    flow_row(name, "tcp", SCAMMER_V6, cport, PC_V6, 5901, "vnc", "session",
             "RFB 003.008 both ways, security type 2 (VNC auth), ServerInit name grandma-pc, FramebufferUpdates; IPv6 + VLAN 10")


def build_multi_interface():
    """5. pcapng with two interfaces: 0 = Ethernet (us), 1 = LINUX_SLL (ns)."""
    name = "multi-interface.pcapng"
    cap = Capture(name, seed=0x5CA3_0005)
    t0 = ts_us("2024-03-06T12:30:00Z")
    # interface 0: ordinary DNS seen on the router's LAN bridge (Ethernet)
    for k, (qname, ans) in enumerate([("www.bbc.co.uk", "203.0.113.80"),
                                      ("www.wikipedia.org", "203.0.113.90"),
                                      ("weather.example.com", "198.51.100.140")]):
        dns_exchange(cap, dns_link(cip="192.168.1.27", cmac="02:00:5e:10:00:27"),
                     t0 + ms(300) + sec(2.5 * k), qname, ans, iface=0)
    # interface 1: `any` capture on the RDP server itself (SLL v1), same
    # handshake as rdp-split-handshake.pcap but with an unsplit request.
    link = Link(ROUTER_MAC, PC_MAC, SCAMMER_IP, PC_IP, kind="sll", c_ttl=113, s_ttl=128)
    cport = 49901
    rdp_flow(cap, link, t0 + ms(1200), cport, mode="whole", iface=1, ns_offset=417)
    frames = cap.render()
    n = write_pcapng(OUT / name, [
        {"linktype": 1, "name": "br-lan", "tsresol": None},    # default 10^-6
        {"linktype": 113, "name": "any", "tsresol": 9},         # 10^-9
    ], frames)
    MANIFEST.append((name, "positive", "rdp", n,
                     "SYNTHETIC: pcapng with 2 interfaces: if0 Ethernet (microsecond ts) ordinary DNS; "
                     "if1 LINUX_SLL (if_tsresol=9, nanosecond ts) RDP X.224 CR mstshash=grandma + CC (TLS) + TLS handshake"))
    flow_row(name, "tcp", SCAMMER_IP, cport, PC_IP, 3389, "rdp", "session",
             "on interface 1 (LINUX_SLL): X.224 CR mstshash=grandma, RDP_NEG_REQ 0x03, CC/RDP_NEG_RSP TLS, then TLS")


def build_teamviewer():
    """6. TeamViewer on TCP/5938 (REF-TV)."""
    name = "teamviewer-tcp.pcap"
    cap = Capture(name, seed=0x5CA3_0006)
    rng = cap.rng
    TV = "198.51.100.57"
    t = ts_us("2024-03-06T14:20:00Z") + ms(80)
    dport, t = dns_exchange(cap, dns_link(), t, "router7.teamviewer.com", TV, ttl=300)
    flow_row(name, "udp", LAPTOP_IP, dport, ROUTER_IP, 53, "teamviewer", "dns",
             "DNS A query router7.teamviewer.com (REF-TV names router*.teamviewer.com)")
    cport = 52611
    f = TCPFlow(cap, lan_link(TV, 50), cport, 5938)
    t = f.handshake(t + ms(3), rtt=ms(36))

    # REF-TV: "TCP: first two payload bytes 0x17 0x24; later packets of the
    # same flow may start 0x11 0x30".  Everything after those two bytes is
    # seeded filler (the rest of the format is not documented in the reference).
    def tv(prefix, n):
        return prefix + rng.randbytes(n - 2)

    t += ms(1); f.send(t, C, tv(b"\x17\x24", 24))
    t += ms(36); f.send(t, S, tv(b"\x17\x24", 24))
    t += ms(2); f.send(t, C, tv(b"\x11\x30", 124))
    t += ms(36); f.send(t, S, tv(b"\x11\x30", 300))
    t += ms(3); f.send(t, C, tv(b"\x11\x30", 172))
    t += ms(36); f.send(t, S, tv(b"\x11\x30", 60))
    t += ms(40); f.ack(t, C)
    for k in range(2):        # idle keepalives
        t += sec(15)
        f.send(t, C, tv(b"\x11\x30", 24))
        t += ms(36); f.send(t, S, tv(b"\x11\x30", 24))
        t += ms(40); f.ack(t, C)
    t += sec(5)
    f.close(t, C, rtt=ms(36))
    n = write_pcap(OUT / name, cap.render())
    MANIFEST.append((name, "positive", "teamviewer", n,
                     "SYNTHETIC: DNS router7.teamviewer.com then TCP/5938 to it, payloads starting 0x17 0x24 (both ways) then 0x11 0x30"))
    flow_row(name, "tcp", LAPTOP_IP, cport, TV, 5938, "teamviewer", "relay|rendezvous",
             "TCP/5938 to router7.teamviewer.com address; first payloads 17 24 both ways, later 11 30")


def ssh_packet(rng, payload):
    """RFC 4253 6: uint32 packet_length, byte padding_length, payload,
    random padding (>= 4, total multiple of 8)."""
    pad = 8 - ((5 + len(payload)) % 8)
    if pad < 4:
        pad += 8
    return u32(1 + len(payload) + pad) + u8(pad) + payload + rng.randbytes(pad)


def ssh_string(b):
    return u32(len(b)) + b


def build_neg_ssh():
    name = "neg-ssh-on-3389.pcap"
    cap = Capture(name, seed=0x5CA3_0007)
    rng = cap.rng
    VPS = "198.51.100.200"
    cport = 53318
    f = TCPFlow(cap, Link("02:00:5e:10:00:25", ROUTER_MAC, "192.168.1.25", VPS, c_ttl=64, s_ttl=50), cport, 3389)
    t = f.handshake(ts_us("2024-03-07T09:00:00Z") + ms(40), rtt=ms(32))
    # RFC 4253 4.2: the server sends its identification string first
    t += ms(18); f.send(t, S, b"SSH-2.0-OpenSSH_9.2p1\r\n")
    t += ms(1); f.send(t, C, b"SSH-2.0-OpenSSH_9.2p1\r\n")

    def kexinit():
        lists = [b"curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,ext-info-c",
                 b"ssh-ed25519,ecdsa-sha2-nistp256,rsa-sha2-512,rsa-sha2-256",
                 b"chacha20-poly1305@openssh.com,aes128-ctr,aes256-gcm@openssh.com",
                 b"chacha20-poly1305@openssh.com,aes128-ctr,aes256-gcm@openssh.com",
                 b"umac-64-etm@openssh.com,hmac-sha2-256-etm@openssh.com",
                 b"umac-64-etm@openssh.com,hmac-sha2-256-etm@openssh.com",
                 b"none,zlib@openssh.com", b"none,zlib@openssh.com", b"", b""]
        return ssh_packet(rng, u8(20) + rng.randbytes(16) + b"".join(ssh_string(x) for x in lists) + b"\x00" + u32(0))

    t += ms(2); f.send(t, C, kexinit())
    t += ms(32); f.send(t, S, kexinit())
    # RFC 5656 / RFC 8731: SSH_MSG_KEX_ECDH_INIT (30) and _REPLY (31)
    t += ms(1); f.send(t, C, ssh_packet(rng, u8(30) + ssh_string(rng.randbytes(32))))
    hostkey = ssh_string(b"ssh-ed25519") + ssh_string(rng.randbytes(32))
    sig = ssh_string(b"ssh-ed25519") + ssh_string(rng.randbytes(64))
    t += ms(34)
    f.send(t, S, ssh_packet(rng, u8(31) + ssh_string(hostkey) + ssh_string(rng.randbytes(32)) + ssh_string(sig))
           + ssh_packet(rng, u8(21)))                              # + NEWKEYS
    t += ms(2); f.send(t, C, ssh_packet(rng, u8(21)))
    for side, n in [(C, 44), (S, 44), (C, 60), (S, 52), (C, 108), (S, 36), (C, 500), (S, 620)]:
        t += ms(33 if side == S else 3)
        f.send(t, side, rng.randbytes(n))                           # encrypted packets (filler)
    t += ms(40); f.ack(t, C)
    t += sec(3)
    f.close(t, C, rtt=ms(32))
    n = write_pcap(OUT / name, cap.render())
    MANIFEST.append((name, "negative", "-", n,
                     "SYNTHETIC: HARD NEGATIVE: SSH (banners SSH-2.0-OpenSSH_9.2p1, KEXINIT, ECDH) on TCP/3389, the RDP port"))
    flow_row(name, "tcp", "192.168.1.25", cport, VPS, 3389, "none", "-", "SSH-2.0 banners on TCP/3389, not RDP")


def build_neg_http5900():
    name = "neg-http-on-5900.pcap"
    cap = Capture(name, seed=0x5CA3_0008)
    SRV = "192.168.1.40"
    cport = 41544
    f = TCPFlow(cap, Link("02:00:5e:10:00:27", "02:00:5e:10:00:40", "192.168.1.27", SRV, c_ttl=64, s_ttl=64),
                cport, 5900)
    t = f.handshake(ts_us("2024-03-07T09:10:00Z") + ms(15), rtt=ms(2))
    req = (b"GET /status HTTP/1.1\r\nHost: 192.168.1.40:5900\r\nUser-Agent: Mozilla/5.0 (Linux; Android 14)\r\n"
           b"Accept: text/html\r\nConnection: close\r\n\r\n")
    body = b"<html><head><title>Media server</title></head><body><p>Library: 1284 items. Status: idle.</p></body></html>\n"
    resp = (b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
    t += ms(0.5); f.send(t, C, req)
    t += ms(3); f.send(t, S, resp)
    t += ms(1); f.ack(t, C)
    f.close(t + ms(1), S, rtt=ms(2))
    n = write_pcap(OUT / name, cap.render())
    MANIFEST.append((name, "negative", "-", n,
                     "SYNTHETIC: HARD NEGATIVE: plain HTTP GET/200 between two LAN devices on TCP/5900, the VNC port"))
    flow_row(name, "tcp", "192.168.1.27", cport, SRV, 5900, "none", "-", "HTTP/1.1 GET and 200 OK on TCP/5900, not RFB")


def build_neg_tls_lookalike():
    name = "neg-tls-anydesk-lookalike.pcap"
    cap = Capture(name, seed=0x5CA3_0009)
    t = ts_us("2024-03-07T09:20:00Z") + ms(60)
    for k, (host, ip) in enumerate([("anydesk.example.com", "203.0.113.150"),
                                    ("www.anydesk-tutorials.example.org", "203.0.113.151")]):
        dport, t1 = dns_exchange(cap, dns_link(), t, host, ip)
        cport = 51870 + k
        web_tls13(cap, t1 + ms(2), ip, host, cport, server_records=(1100, 700), keep_open=ms(2500))
        flow_row(name, "udp", LAPTOP_IP, dport, ROUTER_IP, 53, "none", "-", f"DNS A query {host}: look-alike name, not AnyDesk")
        flow_row(name, "tcp", LAPTOP_IP, cport, ip, 443, "none", "-", f"TLS 1.3 SNI {host}, ALPN h2: ordinary web, not AnyDesk")
        t += sec(20)
    n = write_pcap(OUT / name, cap.render())
    MANIFEST.append((name, "negative", "-", n,
                     "SYNTHETIC: HARD NEGATIVE: DNS + ordinary HTTPS (TLS 1.3, ALPN h2) to anydesk.example.com and www.anydesk-tutorials.example.org"))


def build_neg_scan():
    name = "neg-scan-3389.pcap"
    cap = Capture(name, seed=0x5CA3_000A)
    rng = cap.rng
    SCANNER, SMAC = "192.168.1.35", "02:00:5e:10:00:35"
    t = ts_us("2024-03-07T09:30:00Z") + ms(10)
    for host in (20, 21, 22, 24, 26):
        link = Link(SMAC, "02:00:5e:10:00:%02x" % host, SCANNER, "192.168.1.%d" % host, c_ttl=64, s_ttl=128)
        f = TCPFlow(cap, link, rng.randrange(40000, 60000), 3389)
        f.emit(t, C, "S", options=SYN_OPTS[C], window=64240)
        # closed port: RST+ACK, ack = ISN+1 (RFC 9293 3.10.7.1)
        f.emit(t + ms(0.8), S, "RA", seq=0, ack=f.isn[C] + 1, window=0)
        t += ms(rng.randrange(3, 12))
    n = write_pcap(OUT / name, cap.render())
    MANIFEST.append((name, "negative", "-", n,
                     "SYNTHETIC: SYN-only probes from a LAN phone to TCP/3389 on 5 LAN hosts, each answered by RST,ACK (no handshake; scan role only, no FLOWS rows)"))


def build_neg_rfb_lookalike():
    name = "neg-rfb-lookalike.pcap"
    cap = Capture(name, seed=0x5CA3_000B)
    SRV = "203.0.113.50"
    cport = 50233
    f = TCPFlow(cap, lan_link(SRV, 51), cport, 80)
    t = f.handshake(ts_us("2024-03-07T09:40:00Z") + ms(20), rtt=ms(26))
    body = (b"RFB is a protocol\n"
            b"for remote access to graphical user interfaces (RFC 6143).\n")
    hdr = (b"POST /notes/add HTTP/1.1\r\nHost: notes.example.net\r\nUser-Agent: Mozilla/5.0\r\n"
           b"Content-Type: text/plain\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n")
    # headers and body in separate segments, so the body segment's TCP
    # payload itself starts with "RFB "
    t += ms(1); f.send(t, C, hdr)
    t += ms(0.2); f.send(t, C, body)
    resp = b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\nLocation: /notes/17\r\n\r\n"
    t += ms(27); f.send(t, S, resp)
    t += ms(40); f.ack(t, C)
    f.close(t + sec(1), C, rtt=ms(26))
    n = write_pcap(OUT / name, cap.render())
    MANIFEST.append((name, "negative", "-", n,
                     "SYNTHETIC: HARD NEGATIVE: HTTP POST on TCP/80 whose body segment starts with the text 'RFB is a protocol\\n'"))
    flow_row(name, "tcp", LAPTOP_IP, cport, SRV, 80, "none", "-", "HTTP POST body 'RFB is a protocol', not RFB")


# --------------------------------------------------------------------------
# Session scenarios: what the session tracker must get right on any capture
# --------------------------------------------------------------------------
def anydesk_relay_visit(cap, t, relay, relay_name, relay_port, minutes):
    """DNS lookup of an AnyDesk relay, then a relay session of `minutes`."""
    cert = self_signed_cert("AnyNet Relay", "philandro Software GmbH",
                            "netwatch-synthetic-anynet-relay")
    dport, t = dns_exchange(cap, dns_link(), t, relay_name, relay, ttl=60)
    flow_row(cap.name, "udp", LAPTOP_IP, dport, ROUTER_IP, 53, "anydesk", "dns",
             f"DNS A query {relay_name} (REF-AD names: relay-[a-f0-9]{{8}}.net.anydesk.com)")
    return anydesk_relay_session(cap, t, relay, relay_name, relay_port, cert,
                                 t + sec(60 * minutes))


def build_session_snaplen():
    """An AnyDesk relay session recorded with a snap length of 160 bytes: the volume on the
    wire is the records' original length, not what was kept."""
    name = "session-snaplen-anydesk.pcap"
    cap = Capture(name, seed=0x5CA3_0101)
    t = ts_us("2024-03-05T14:00:00Z")
    relay, relay_name, port = "198.51.100.78", "relay-5b6c7d8e.net.anydesk.com", 51400
    anydesk_relay_visit(cap, t, relay, relay_name, port, minutes=3)
    n = write_pcap(OUT / name, cap.render(), snaplen=160)
    MANIFEST.append((name, "positive", "anydesk", n,
                     "SYNTHETIC: snap length 160: DNS relay-5b6c7d8e.net.anydesk.com, then an AnyDesk relay session of 3 min from laptop 192.168.1.23 (~5 KB/s on the wire, ~0.6 KB/s kept), Tue 2024-03-05 15:00 CET"))
    flow_row(name, "tcp", LAPTOP_IP, port, relay, 443, "anydesk", "relay|session",
             "TLS 1.2 to the relay, cut to 160 bytes per frame (original lengths kept); the relay name comes from the DNS answer")


def build_session_idle_teamviewer():
    """An installed TeamViewer client keeping its link to a router*.teamviewer.com server
    for two hours: keepalives only, about 100 B/s."""
    name = "session-idle-teamviewer.pcap"
    cap = Capture(name, seed=0x5CA3_0102)
    rng = cap.rng
    tv_ip = "198.51.100.58"
    t = ts_us("2024-03-05T19:00:00Z")
    dport, t = dns_exchange(cap, dns_link(), t, "router3.teamviewer.com", tv_ip, ttl=300)
    flow_row(name, "udp", LAPTOP_IP, dport, ROUTER_IP, 53, "teamviewer", "dns",
             "DNS A query router3.teamviewer.com")
    cport = 52700
    f = TCPFlow(cap, lan_link(tv_ip, 50), cport, 5938)
    t = f.handshake(t + ms(3), rtt=ms(36))
    # REF-TV framing as in build_teamviewer: 0x17 0x24 first, then 0x11 0x30.
    t += ms(1)
    f.send(t, C, b"\x17\x24" + rng.randbytes(22))
    t += ms(36)
    f.send(t, S, b"\x17\x24" + rng.randbytes(22))
    end = t + sec(2 * 3600)
    while t < end:
        t += sec(8) + ms(rng.randrange(0, 500))
        f.send(t, C, b"\x11\x30" + rng.randbytes(rng.randrange(200, 600)))
        t += ms(36)
        f.send(t, S, b"\x11\x30" + rng.randbytes(rng.randrange(200, 600)))
        f.ack(t + ms(40), C)
    f.close(t + sec(1), C, rtt=ms(36))
    n = write_pcap(OUT / name, cap.render())
    MANIFEST.append((name, "positive", "teamviewer", n,
                     "SYNTHETIC: an idle TeamViewer client: DNS router3.teamviewer.com, then 2 h of keepalives (~100 B/s both ways) on TCP/5938, Tue 2024-03-05 20:00-22:00 CET"))
    flow_row(name, "tcp", LAPTOP_IP, cport, tv_ip, 5938, "teamviewer", "relay|rendezvous",
             "TCP/5938 to router3.teamviewer.com; 17 24 both ways, then 11 30 keepalives every ~8 s for 2 h")


def build_session_return():
    """Two AnyDesk sessions on the laptop two days apart, through different relays."""
    name = "session-return-days.pcap"
    cap = Capture(name, seed=0x5CA3_0103)
    visits = (("2024-03-04T14:00:00Z", "198.51.100.79", "relay-1a2b3c4d.net.anydesk.com", 51500),
              ("2024-03-06T14:30:00Z", "198.51.100.80", "relay-9f8e7d6c.net.anydesk.com", 51600))
    for when, relay, relay_name, port in visits:
        anydesk_relay_visit(cap, ts_us(when), relay, relay_name, port, minutes=2)
        flow_row(name, "tcp", LAPTOP_IP, port, relay, 443, "anydesk", "relay|session",
                 f"TLS 1.2 SNI {relay_name}, 2 min of screen updates upstream")
    n = write_pcap(OUT / name, cap.render())
    MANIFEST.append((name, "positive", "anydesk", n,
                     "SYNTHETIC: AnyDesk relay sessions of 2 min on laptop 192.168.1.23 on Mon 2024-03-04 15:00 CET and again on Wed 2024-03-06 15:30 CET, through two relays"))


def main():
    build_demo()
    build_rdp("split")
    build_rdp("reorder")
    build_vnc()
    build_multi_interface()
    build_teamviewer()
    build_neg_ssh()
    build_neg_http5900()
    build_neg_tls_lookalike()
    build_neg_scan()
    build_neg_rfb_lookalike()
    build_session_snaplen()
    build_session_idle_teamviewer()
    build_session_return()
    for _, _, _, _, d in MANIFEST:
        assert d.startswith("SYNTHETIC:")
    with open(OUT / "MANIFEST.tsv", "w", encoding="utf-8", newline="\n") as fh:
        fh.write("file\tkind\ttools\tpackets\tdescription\n")
        for row in MANIFEST:
            fh.write("\t".join(str(v) for v in row) + "\n")
    with open(OUT / "FLOWS.tsv", "w", encoding="utf-8", newline="\n") as fh:
        fh.write("pcap\tproto\tclient_ip\tclient_port\tserver_ip\tserver_port\ttool\troles\tnote\n")
        for row in FLOWS:
            fh.write("\t".join(row) + "\n")
    for row in MANIFEST:
        print(f"{row[0]:32s} {row[1]:8s} {row[3]:5d} packets  {(OUT / row[0]).stat().st_size:7d} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
