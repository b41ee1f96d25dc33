"""Recognisers on the smallest bytes that show each behaviour."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from conftest import signatures
from netwatch.recognisers import GIVE_UP, Detection
from netwatch.recognisers.payload import PayloadRecogniser
from netwatch.recognisers.rdp import RdpRecogniser
from netwatch.recognisers.rfb import RfbRecogniser
from netwatch.recognisers.tls import TlsRecogniser, read_flight

LAN_A = bytes([192, 168, 1, 23])
LAN_B = bytes([192, 168, 1, 40])
NET = bytes([203, 0, 113, 7])


@dataclass
class View:
    proto: int = 6
    client_ip: bytes = LAN_A
    server_ip: bytes = NET
    client_port: int = 50000
    server_port: int = 443
    streams: list = field(default_factory=lambda: [bytearray(), bytearray()])
    segments: list = field(default_factory=lambda: [[], []])
    closing: bool = False

    def send(self, d: int, data: bytes) -> View:
        self.streams[d] += data
        self.segments[d].append(data)
        return self


def x224_cr(body: bytes) -> bytes:
    n = 11 + len(body)
    return bytes([3, 0]) + struct.pack("!H", n) + bytes([n - 5, 0xE0, 0, 0, 0, 0, 0]) + body


NEG_REQ_TLS_CREDSSP = bytes([1, 0, 8, 0, 3, 0, 0, 0])
CC_TLS = bytes.fromhex("030000130ed000001234000200080001000000")


def rdp() -> RdpRecogniser:
    return RdpRecogniser(signatures())


def test_rdp_request_with_cookie_is_a_session() -> None:
    cr = x224_cr(b"Cookie: mstshash=grandma\r\n" + NEG_REQ_TLS_CREDSSP)
    v = View(server_port=3389).send(0, cr)
    det = rdp().inspect(v)
    assert isinstance(det, Detection)
    assert (det.tool, det.role, det.confidence) == ("rdp", "session", "high")
    assert det.evidence[0].detail == "mstshash=grandma"


def test_rdp_request_on_any_port() -> None:
    v = View(server_port=8443).send(0, x224_cr(NEG_REQ_TLS_CREDSSP))
    det = rdp().inspect(v)
    assert isinstance(det, Detection) and det.tool == "rdp"


def test_rdp_request_split_waits_for_the_rest() -> None:
    whole = x224_cr(b"Cookie: mstshash=grandma\r\n" + NEG_REQ_TLS_CREDSSP)
    v = View(server_port=3389).send(0, whole[:9])
    assert rdp().inspect(v) is None
    v.send(0, whole[9:])
    assert isinstance(rdp().inspect(v), Detection)


def test_rdp_server_confirm_alone_is_enough() -> None:
    v = View(server_port=3389).send(0, b"garbage that is not TPKT").send(1, CC_TLS)
    det = rdp().inspect(v)
    assert isinstance(det, Detection) and det.confidence == "high"


def test_rdp_gives_up_on_other_protocols() -> None:
    v = View(server_port=3389).send(0, b"SSH-2.0-OpenSSH_9.2p1\r\n").send(1, b"SSH-2.0-x\r\n")
    assert rdp().inspect(v) is GIVE_UP


def test_rdpeudp_syn_needs_padding_to_1232_bytes() -> None:
    syn = b"\xff\xff\xff\xff" + b"\x00\x40" + b"\x00\x01" + b"\x12\x34\x56\x78" \
        + struct.pack("!HH", 1232, 1232)
    short = View(proto=17, server_port=3389).send(0, syn).send(0, syn)
    assert rdp().inspect(short) is GIVE_UP
    padded = syn + bytes(1232 - len(syn))
    v = View(proto=17, server_port=3389).send(0, padded).send(0, padded)
    det = rdp().inspect(v)
    assert isinstance(det, Detection) and det.confidence == "medium"
    synack = b"\x12\x34\x56\x78" + b"\x00\x40" + b"\x00\x05" + bytes(8)
    v2 = View(proto=17, server_port=3389).send(0, padded).send(1, synack)
    det2 = rdp().inspect(v2)
    assert isinstance(det2, Detection) and det2.confidence == "high"


def test_rfb_exchange_either_side_first() -> None:
    r = RfbRecogniser(signatures())
    v = View(server_port=6900).send(1, b"RFB 003.008\n").send(0, b"RFB 003.008\n")
    det = r.inspect(v)
    assert isinstance(det, Detection) and (det.tool, det.role) == ("vnc", "session")
    v2 = View(server_port=6900).send(0, b"RFB 003.003\n").send(1, b"RFB 003.003\n")
    assert isinstance(r.inspect(v2), Detection)


def test_rfb_banner_without_answer_is_only_a_scan_at_the_end() -> None:
    r = RfbRecogniser(signatures())
    v = View(server_port=5900).send(1, b"RFB 003.008\n")
    assert r.inspect(v) is None
    v.closing = True
    det = r.inspect(v)
    assert isinstance(det, Detection) and det.role == "scan"


def test_rfb_lookalike_text_is_not_vnc() -> None:
    r = RfbRecogniser(signatures())
    v = View(server_port=80).send(0, b"RFB is a protocol\n")
    assert r.inspect(v) is GIVE_UP


def client_hello(sni: str | None = None, alpn: list[str] | None = None) -> bytes:
    exts = b""
    if sni is not None:
        name = sni.encode()
        entry = b"\x00" + struct.pack("!H", len(name)) + name
        exts += struct.pack("!HH", 0, len(entry) + 2) + struct.pack("!H", len(entry)) + entry
    if alpn:
        lst = b"".join(bytes([len(p)]) + p.encode() for p in alpn)
        exts += struct.pack("!HH", 16, len(lst) + 2) + struct.pack("!H", len(lst)) + lst
    body = b"\x03\x03" + bytes(32) + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00" \
        + struct.pack("!H", len(exts)) + exts
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs


def test_tls_client_hello_fields() -> None:
    info = read_flight(client_hello("www.Example.org", ["h2", "http/1.1"]))
    assert info.client_hello and info.sni == "www.example.org"
    assert info.alpn == ["h2", "http/1.1"]


def test_tls_alpn_names_anydesk() -> None:
    t = TlsRecogniser(signatures())
    det = t.inspect(View().send(0, client_hello(None, ["anydesk/7.1.0/windows"])))
    assert isinstance(det, Detection) and (det.tool, det.role) == ("anydesk", "relay")


def test_tls_direct_anydesk_between_lan_devices_is_a_session() -> None:
    t = TlsRecogniser(signatures())
    v = View(server_ip=LAN_B, server_port=7070).send(0, client_hello(None, ["anydesk/7"]))
    det = t.inspect(v)
    assert isinstance(det, Detection) and det.role == "session"


def test_tls_vendor_website_is_not_remote_access() -> None:
    t = TlsRecogniser(signatures())
    assert t.inspect(View().send(0, client_hello("anydesk.com", ["h2"]))) is GIVE_UP
    assert t.inspect(View().send(0, client_hello("www.teamviewer.com", ["h2"]))) is GIVE_UP


def test_tls_relay_name_in_sni() -> None:
    t = TlsRecogniser(signatures())
    det = t.inspect(View().send(0, client_hello("relay-0a1b2c3d.net.anydesk.com")))
    assert isinstance(det, Detection) and det.role == "relay"


def test_tls_lookalike_name_is_not_anydesk() -> None:
    t = TlsRecogniser(signatures())
    assert t.inspect(View().send(0, client_hello("net.anydesk.com.example.org"))) is GIVE_UP


def test_teamviewer_framing_needs_several_packets() -> None:
    p = PayloadRecogniser(signatures())
    v = View(server_port=443).send(0, b"\x17\x24\x0a\x20" + bytes(20))
    assert p.inspect(v) is None
    v.send(1, b"\x11\x30\x36\x00" + bytes(20)).send(0, b"\x17\x24\x28\x18" + bytes(20))
    det = p.inspect(v)
    assert isinstance(det, Detection) and det.tool == "teamviewer"


def test_teamviewer_port_lowers_the_count_but_bytes_are_needed() -> None:
    p = PayloadRecogniser(signatures())
    v = View(server_port=5938).send(0, b"\x17\x24" + bytes(20)).send(1, b"\x11\x30" + bytes(20))
    assert isinstance(p.inspect(v), Detection)
    other = View(server_port=5938).send(0, b"\x16\x03\x01" + bytes(20))
    assert p.inspect(other) is GIVE_UP
