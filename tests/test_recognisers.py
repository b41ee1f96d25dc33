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


# ---------------------------------------------------------------- citrix, nomachine, radmin, x11

from netwatch.recognisers.citrix import CitrixRecogniser  # noqa: E402
from netwatch.recognisers.nomachine import NoMachineRecogniser  # noqa: E402
from netwatch.recognisers.radmin import RadminRecogniser  # noqa: E402
from netwatch.recognisers.x11 import X11Recogniser  # noqa: E402


def run(cls, view):
    return cls(signatures()).inspect(view)


def test_citrix_ica_preamble_both_ways_is_high():
    v = View(server_port=1494).send(1, b"\x7f\x7fICA\x00")
    first = run(CitrixRecogniser, v)
    assert isinstance(first, Detection) and first.confidence == "medium"
    v.send(0, b"\x7f\x7fICA\x00")
    det = run(CitrixRecogniser, v)
    assert (det.tool, det.role, det.confidence) == ("citrix", "session", "high")


def test_citrix_cgp_preamble():
    det = run(CitrixRecogniser, View(server_port=2598).send(0, b"\x1aCGP/01" + bytes(20)))
    assert det.tool == "citrix" and det.confidence == "high"


def test_citrix_near_misses_give_up():
    assert run(CitrixRecogniser, View(server_port=1494).send(0, b"\x7f\x7fICA\x01")) is GIVE_UP
    # the CGP magic in a payload too short to be CGP
    assert run(CitrixRecogniser, View().send(0, b"\x1aCGP/01").send(1, b"x")) is GIVE_UP


def test_nomachine_tcp_hello_exchange():
    v = View(client_ip=LAN_A, server_ip=LAN_B, server_port=4000)
    v.send(0, b"NXSH-8.10.1\n")
    assert run(NoMachineRecogniser, v) is None
    v.send(1, b"NXD-8.10.1\n")
    det = run(NoMachineRecogniser, v)
    assert (det.tool, det.role, det.confidence) == ("nomachine", "session", "high")
    assert "NXSH-8.10.1" in det.evidence[0].detail


def test_nomachine_near_miss_fix_on_port_4000():
    # FIX messages on NoMachine's port: tag=value fields, no NX hello.
    v = View(server_port=4000).send(0, b"8=FIX.4.1\x019=0075\x0135=A\x01")
    assert run(NoMachineRecogniser, v) is GIVE_UP


def test_nomachine_hello_without_answer_is_a_scan():
    v = View(server_port=4000, closing=True).send(0, b"NXSH-8.10.1\n")
    det = run(NoMachineRecogniser, v)
    assert det.role == "scan"


def nx_udp(kind: int, seq: int) -> bytes:
    return struct.pack("<BBHHHH", kind, 0, 1, 10, seq, 0)


def test_nomachine_udp_framing_needs_three_datagrams():
    v = View(proto=17, server_port=4000)
    v.send(0, nx_udp(1, 0)).send(0, nx_udp(1, 1))
    assert run(NoMachineRecogniser, v) is None
    v.send(1, nx_udp(2, 0))
    det = run(NoMachineRecogniser, v)
    assert det.tool == "nomachine" and det.confidence == "high"


def test_nomachine_udp_near_miss_wrong_length_field():
    v = View(proto=17, server_port=4000)
    v.send(0, struct.pack("<BBHHHH", 1, 0, 1, 12, 0, 0))
    assert run(NoMachineRecogniser, v) is GIVE_UP


RADMIN_C = bytes.fromhex("01000000010000000808")
RADMIN_S = bytes.fromhex("010000002500000212080200000a") + bytes(32)


def test_radmin_hello_and_answer():
    v = View(server_port=4899).send(0, RADMIN_C)
    assert run(RadminRecogniser, v) is None
    det = run(RadminRecogniser, v.send(1, RADMIN_S))
    assert (det.tool, det.role, det.confidence) == ("radmin", "session", "high")


def test_radmin_channel_messages_both_ways():
    c = bytes.fromhex("0100000005000002272702000000")
    s = bytes.fromhex("0100000005000000272700000000")
    det = run(RadminRecogniser, View(server_port=4899).send(0, c).send(1, s))
    assert det.tool == "radmin"


def test_radmin_near_misses():
    # the client hello answered by something else; one byte off in the hello
    assert run(RadminRecogniser, View().send(0, RADMIN_C).send(1, b"HTTP/1.1 400")) is GIVE_UP
    assert run(RadminRecogniser, View().send(0, RADMIN_C[:-1] + b"\x09")) is GIVE_UP
    # the channel message one way, the hello answer the other: not a Radmin exchange
    c = bytes.fromhex("0100000005000002272702000000")
    assert run(RadminRecogniser, View().send(0, c).send(1, RADMIN_S)) is GIVE_UP


def x11_setup(order: bytes = b"l") -> bytes:
    fmt = "<" if order == b"l" else ">"
    name, data = b"MIT-MAGIC-COOKIE-1", bytes(16)
    return (order + b"\x00" + struct.pack(fmt + "HHHHxx", 11, 0, len(name), len(data))
            + name + b"\x00\x00" + data)


def test_x11_setup_and_success_reply():
    v = View(client_ip=LAN_A, server_ip=LAN_B, server_port=6000).send(0, x11_setup())
    assert run(X11Recogniser, v) is None
    det = run(X11Recogniser, v.send(1, b"\x01\x00" + struct.pack("<HH", 11, 0) + bytes(28)))
    assert (det.tool, det.role, det.confidence) == ("x11", "session", "high")
    det = run(X11Recogniser, View().send(0, x11_setup(b"B")).send(1, b"\x02" + bytes(7)))
    assert det.tool == "x11" and "Authenticate" in det.evidence[0].detail


def test_x11_near_misses():
    bad_major = bytearray(x11_setup())
    bad_major[2] = 10
    assert run(X11Recogniser, View().send(0, bytes(bad_major))) is GIVE_UP
    # 'l' then text: a line of an ordinary text protocol starting with l
    assert run(X11Recogniser, View().send(0, b"login: grandma\r\n")) is GIVE_UP


def xdmcp(op: int, body: bytes) -> bytes:
    return struct.pack("!HHH", 1, op, len(body)) + body


def test_xdmcp_query_and_willing():
    v = View(proto=17, server_port=177).send(0, xdmcp(2, b"\x00"))
    assert run(X11Recogniser, v) is None
    det = run(X11Recogniser, v.send(1, xdmcp(5, b"\x00" * 23)))
    assert (det.tool, det.role, det.confidence) == ("xdmcp", "session", "high")


def test_xdmcp_near_misses():
    # wrong length field; a server opcode from the client; unanswered query is a scan
    assert run(X11Recogniser, View(proto=17).send(0, struct.pack("!HHH", 1, 2, 5) + b"\x00")) \
        is GIVE_UP
    assert run(X11Recogniser, View(proto=17).send(0, xdmcp(5, b"\x00"))) is GIVE_UP
    det = run(X11Recogniser, View(proto=17, closing=True).send(0, xdmcp(2, b"\x00")))
    assert det.role == "scan"


# ---------------------------------------------------------------- plain HTTP downloads

from netwatch.recognisers.http import HttpRecogniser  # noqa: E402


def http_get(host: str, path: str) -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: Mozilla/5.0\r\n"
            f"Accept: */*\r\n\r\n").encode()


def test_http_installer_from_a_vendor_download_host():
    det = run(HttpRecogniser, View(server_port=80).send(
        0, http_get("download.hoptodesk.com", "/HopToDesk.exe")))
    assert (det.tool, det.role, det.confidence) == ("hoptodesk", "download", "high")
    assert det.evidence[0].kind == "http_host"


def test_http_screenconnect_client_setup_path():
    det = run(HttpRecogniser, View(server_port=80).send(
        0, http_get("acme.screenconnect.com", "/Bin/ConnectWiseControl.ClientSetup.exe?h=x")))
    assert (det.tool, det.role) == ("screenconnect", "download")


def test_http_installer_suffix_on_a_tool_host():
    det = run(HttpRecogniser, View(server_port=80).send(
        0, http_get("get.ultraviewer.net:80", "/files/UltraViewer_setup.exe")))
    assert (det.tool, det.role) == ("ultraviewer", "download")


def test_http_near_misses():
    # the vendor's page, not an installer; an installer from a stranger's host; not HTTP
    assert run(HttpRecogniser, View().send(0, http_get("www.anydesk.com", "/en/downloads"))) \
        is GIVE_UP
    assert run(HttpRecogniser, View().send(0, http_get("files.example.org", "/setup.exe"))) \
        is GIVE_UP
    assert run(HttpRecogniser, View().send(0, b"\x16\x03\x01\x00\x10")) is GIVE_UP
    # the ScreenConnect path on a host that is not ScreenConnect's
    assert run(HttpRecogniser, View().send(
        0, http_get("acme.example.com", "/Bin/ConnectWiseControl.ClientSetup.txt"))) is GIVE_UP


def test_http_waits_for_the_end_of_the_header():
    v = View().send(0, b"GET /AnyDesk.exe HTTP/1.1\r\nHo")
    assert run(HttpRecogniser, v) is None
