"""Proxies and gateways: their openings on the smallest bytes, and the pipeline reading
what they tunnel (RDP, RFB, a vendor's TLS) with the target as the peer. DNS over TCP."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest
from scenarios import ipv4_frame, tcp_segment, write_pcap

from conftest import RECORDED, replay, signatures, verdicts
from netwatch.eventlog import EventLog
from netwatch.pipeline import Pipeline
from netwatch.recognisers.proxy import NOT_PROXIED, Opening, parse_opening
from netwatch.sources.capture import PcapFile, ReadStats, open_source

DEVICE, PROXY, RESOLVER = "192.168.1.23", "198.51.100.8", "192.168.1.1"

# RDP's first two PDUs (MS-RDPBCGR 2.2.1.1 and 2.2.1.2): a Connection Request with a
# cookie and RDP_NEG_REQ, and the Connection Confirm selecting TLS.
RDP_CR = bytes.fromhex("0300002a25e00000000000") + b"Cookie: mstshash=grandma\r\n" + \
    bytes([1, 0, 8, 0, 3, 0, 0, 0])
RDP_CC = bytes.fromhex("030000130ed000001234000200080001000000")
SOCKS5_TO_RDP = (b"\x05\x01\x00", b"\x05\x00",
                 b"\x05\x01\x00\x01" + bytes([203, 0, 113, 7]) + struct.pack("!H", 3389),
                 b"\x05\x00\x00\x01" + bytes(4) + b"\x00\x00")


def hello(sni: str | None = None) -> bytes:
    """A TLS ClientHello record (RFC 8446 §4.1.2), with a server_name (RFC 6066 §3)."""
    ext = b""
    if sni:
        name = sni.encode()
        entry = struct.pack("!HBH", len(name) + 3, 0, len(name)) + name
        ext = struct.pack("!HH", 0, len(entry)) + entry
    body = (b"\x03\x03" + bytes(32) + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00"
            + struct.pack("!H", len(ext)) + ext)
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs


def conversation(turns: list[tuple[int, bytes]], server: str = PROXY, port: int = 1080,
                 cport: int = 50000, t0: float = 1000.0) -> list[tuple[float, bytes]]:
    """One TCP connection's payload segments, each side's sequence numbers in order
    (0: the device, 1: the server), a tenth of a second apart."""
    seq = [1000, 5000]
    out = []
    for i, (d, data) in enumerate(turns):
        src, dst = (DEVICE, server) if d == 0 else (server, DEVICE)
        sp, dp = (cport, port) if d == 0 else (port, cport)
        seg = tcp_segment(sp, dp, seq[d], seq[1 - d], data)
        seq[d] += len(data)
        out.append((t0 + i / 10, ipv4_frame(src, dst, 6, seg, i + 1)))
    return out


def dns_tcp_answer(names: dict[str, str], txid: int = 7) -> bytes:
    """DNS answers for A records (RFC 1035 §4.1), each with its two-byte TCP length (§4.2.2)."""
    out = b""
    for i, (name, addr) in enumerate(names.items()):
        qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00"
        msg = (struct.pack("!HHHHHH", txid + i, 0x8180, 1, 1, 0, 0) + qname + b"\x00\x01\x00\x01"
               + b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 300, 4)
               + bytes(int(x) for x in addr.split(".")))
        out += struct.pack("!H", len(msg)) + msg
    return out


def capture(tmp_path: Path, *flows: list[tuple[float, bytes]]) -> Path:
    return write_pcap(tmp_path / "flows.pcap", [fr for fl in flows for fr in fl])


def run(tmp_path: Path, *flows: list[tuple[float, bytes]]) -> list[dict[str, Any]]:
    return replay(capture(tmp_path, *flows))[1]


def only_verdict(events: list[dict[str, Any]]) -> dict[str, Any]:
    found = list(verdicts(events).values())
    assert len(found) == 1, found
    return found[0]


# ---------------------------------------------------------------- openings


def test_socks5_opening_names_the_target_and_the_bytes_it_took() -> None:
    c = SOCKS5_TO_RDP[0] + SOCKS5_TO_RDP[2] + RDP_CR
    s = SOCKS5_TO_RDP[1] + SOCKS5_TO_RDP[3]
    got = parse_opening(c, s)
    assert got == Opening("socks5", (13, 12), "203.0.113.7", 3389, bytes([203, 0, 113, 7]))
    assert c[got.skip[0]:] == RDP_CR


def test_socks5_with_a_user_name_and_a_host_name() -> None:
    c = (b"\x05\x01\x02" + b"\x01\x03bob\x02pw"
         + b"\x05\x01\x00\x03\x0brelay.tv.io\x01\xbb")
    s = b"\x05\x02" + b"\x01\x00" + b"\x05\x00\x00\x01" + bytes(6)
    got = parse_opening(c, s)
    assert isinstance(got, Opening)
    assert (got.protocol, got.target, got.detail, got.skip) == (
        "socks5", "relay.tv.io:443", "user bob", (len(c), len(s)))


def test_socks5_waits_for_the_reply_and_a_refusal_is_no_tunnel() -> None:
    c = SOCKS5_TO_RDP[0] + SOCKS5_TO_RDP[2]
    assert parse_opening(c, SOCKS5_TO_RDP[1]) is None
    refused = SOCKS5_TO_RDP[1] + b"\x05\x05\x00\x01" + bytes(6)  # REP 5: connection refused
    assert parse_opening(c, refused) is NOT_PROXIED
    assert parse_opening(SOCKS5_TO_RDP[0], b"\x05\xff") is NOT_PROXIED  # no method accepted


def test_socks4_and_socks4a() -> None:
    granted = b"\x00\x5a" + bytes(6)
    v4 = b"\x04\x01\x0d\x3d" + bytes([203, 0, 113, 7]) + b"\x00"
    got = parse_opening(v4, granted)
    assert isinstance(got, Opening) and (got.protocol, got.target, got.skip) == (
        "socks4", "203.0.113.7:3389", (9, 8))
    v4a = b"\x04\x01\x01\xbb\x00\x00\x00\x01me\x00Relay-1.Net.AnyDesk.com\x00"
    got = parse_opening(v4a, granted)
    assert isinstance(got, Opening) and (got.protocol, got.host, got.address) == (
        "socks4a", "relay-1.net.anydesk.com", None)
    assert parse_opening(v4, b"\x00\x5b" + bytes(6)) is NOT_PROXIED  # rejected


def test_http_connect_after_a_proxy_authentication_round() -> None:
    c = (b"CONNECT [2001:db8::7]:3389 HTTP/1.1\r\nHost: [2001:db8::7]:3389\r\n\r\n"
         b"CONNECT [2001:db8::7]:3389 HTTP/1.1\r\nProxy-Authorization: Basic eDp5\r\n\r\n")
    s = (b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 4\r\n\r\nnope"
         b"HTTP/1.1 200 Connection established\r\n\r\n")
    got = parse_opening(c + RDP_CR, s)
    assert isinstance(got, Opening)
    assert (got.protocol, got.target, got.skip) == ("http-connect", "[2001:db8::7]:3389",
                                                     (len(c), len(s)))
    assert parse_opening(c, s[:60]) is None


def test_ordinary_http_and_tls_are_not_proxied() -> None:
    assert parse_opening(b"GET / HTTP/1.1\r\n", b"") is NOT_PROXIED
    assert parse_opening(hello("www.example.org"), b"") is NOT_PROXIED
    assert parse_opening(b"CONNECT www.bank.example:443 HTTP/1.1\r\n\r\n",
                         b"HTTP/1.1 403 Forbidden\r\n\r\n") is NOT_PROXIED
    # a port of non-ASCII digits (U+00B2 is a digit to str.isdigit) is malformed, not a crash
    assert parse_opening(b"CONNECT a.b:\xb2 HTTP/1.1\r\n\r\n",
                         b"HTTP/1.1 200 OK\r\n\r\n") is NOT_PROXIED


def test_ultravnc_repeater_viewer_and_server_sides() -> None:
    viewer = parse_opening(b"192.0.2.9:5901".ljust(250, b"\x00"), b"RFB 000.000\n")
    assert isinstance(viewer, Opening)
    assert (viewer.protocol, viewer.target, viewer.skip) == (
        "ultravnc-repeater", "192.0.2.9:5901", (250, 12))
    server = parse_opening(b"ID:123456".ljust(250, b"\x00"), b"")
    assert isinstance(server, Opening) and server.skip == (250, 0) and server.host is None
    assert parse_opening(b"ID:12", b"") is None  # the block is still coming
    assert parse_opening(b"ID:12\x00\x00x", b"") is NOT_PROXIED
    assert parse_opening(b"", b"RFB 003.008\n") is NOT_PROXIED  # an ordinary VNC server


def test_rd_gateway_channel_is_rdp_once_its_first_packet_is_seen() -> None:
    req = (b"RDG_OUT_DATA /remoteDesktopGateway/ HTTP/1.1\r\nHost: gw.example.net\r\n"
           b"RDG-Connection-Id: {1}\r\n\r\n")
    ok = b"HTTP/1.1 200 OK\r\n\r\n"
    assert parse_opening(req, ok) is None
    # HTTP_PACKET_HEADER (MS-TSGU 2.2.10.1): PKT_TYPE_HANDSHAKE_RESPONSE, length 14.
    got = parse_opening(req, ok + struct.pack("<HHI", 2, 0, 14) + b"\x00" * 6)
    assert isinstance(got, Opening) and (got.protocol, got.carries, got.host) == (
        "rd-gateway", "rdp", "gw.example.net")
    assert parse_opening(req, ok + b"<html>hello</html>") is NOT_PROXIED


# ---------------------------------------------------------------- through the pipeline


def test_rdp_through_socks5_is_found_with_the_target_as_peer(tmp_path: Path) -> None:
    c1, s1, c2, s2 = SOCKS5_TO_RDP
    events = run(tmp_path, conversation([(0, c1), (1, s1), (0, c2), (1, s2), (0, RDP_CR),
                                         (1, RDP_CC)]))
    ev = only_verdict(events)
    ra = ev["remote_access"]
    assert (ra["tool"], ra["role"], ra["confidence"]) == ("rdp", "session", "high")
    assert ev["dest_ip"] == PROXY and ev["dest_port"] == 1080
    assert ra["proxy"] == {"protocol": "socks5", "target": "203.0.113.7", "target_port": 3389}
    proxy = [e for e in ra["evidence"] if e["kind"] == "proxy"]
    assert proxy and proxy[0]["value"] == "203.0.113.7:3389"
    sessions = [e["session"] for e in events if e["event_type"] == "session"]
    assert sessions and "203.0.113.7" in sessions[-1]["peers"]


def test_a_socks5_opening_alone_is_no_detection(tmp_path: Path) -> None:
    assert not verdicts(run(tmp_path, conversation([(i % 2, b) for i, b in
                                                    enumerate(SOCKS5_TO_RDP)])))


def test_connect_to_a_vendor_relay_name_is_that_vendor(tmp_path: Path) -> None:
    opening = [(0, b"CONNECT relay-3a4f9c01.net.anydesk.com:443 HTTP/1.1\r\n"
                   b"Host: relay-3a4f9c01.net.anydesk.com:443\r\n\r\n"),
               (1, b"HTTP/1.1 200 Connection established\r\n\r\n")]
    alone = run(tmp_path, conversation(opening, port=3128))
    assert not verdicts(alone)  # nothing went through the tunnel
    ev = only_verdict(run(tmp_path, conversation(opening + [(0, hello())], port=3128)))
    ra = ev["remote_access"]
    assert ra["tool"] == "anydesk"
    assert {e["kind"] for e in ra["evidence"]} >= {"dns", "proxy"}
    assert ra["proxy"]["target"] == "relay-3a4f9c01.net.anydesk.com"


def test_browsing_a_bank_through_a_proxy_is_nothing(tmp_path: Path) -> None:
    flow = conversation([(0, b"CONNECT www.kbc.be:443 HTTP/1.1\r\nHost: www.kbc.be:443\r\n\r\n"),
                         (1, b"HTTP/1.1 200 Connection established\r\n\r\n"),
                         (0, hello("www.kbc.be")), (1, b"\x16\x03\x03\x00\x02\x02\x00")],
                        port=3128)
    assert not verdicts(run(tmp_path, flow))


def test_vnc_through_the_ultravnc_repeater(tmp_path: Path) -> None:
    flow = conversation([(1, b"RFB 000.000\n"), (0, b"192.0.2.9:5901".ljust(250, b"\x00")),
                         (1, b"RFB 003.008\n"), (0, b"RFB 003.008\n"), (1, b"\x01\x02")],
                        port=5901)
    ra = only_verdict(run(tmp_path, flow))["remote_access"]
    assert (ra["tool"], ra["role"], ra["confidence"]) == ("vnc", "session", "high")
    assert ra["proxy"] == {"protocol": "ultravnc-repeater", "target": "192.0.2.9",
                           "target_port": 5901}


def test_a_plain_rd_gateway_channel_is_rdp(tmp_path: Path) -> None:
    flow = conversation([(0, b"RDG_OUT_DATA /remoteDesktopGateway/ HTTP/1.1\r\n"
                             b"Host: gw.example.net\r\n\r\n"),
                         (1, b"HTTP/1.1 200 OK\r\n\r\n"),
                         (1, struct.pack("<HHIIBBHH", 2, 0, 18, 0, 1, 0, 0, 0))], port=80)
    ra = only_verdict(run(tmp_path, flow))["remote_access"]
    assert (ra["tool"], ra["role"], ra["confidence"]) == ("rdp", "session", "high")
    assert ra["proxy"] == {"protocol": "rd-gateway", "target": "gw.example.net"}


def test_dns_over_tcp_answers_name_later_flows_and_tools(tmp_path: Path) -> None:
    answers = dns_tcp_answer({"www.example.org": "203.0.113.5",
                              "relay-3a4f9c01.net.anydesk.com": "203.0.113.77"})
    cut = len(answers) - 20  # the second answer straddles two segments
    dns = conversation([(0, b"\x00\x20" + bytes(32)), (1, answers[:cut]), (1, answers[cut:])],
                       server=RESOLVER, port=53)
    relay = conversation([(0, hello())], server="203.0.113.77", port=443, cport=50001,
                         t0=1001.0)
    found = sorted((e["remote_access"]["tool"], e["remote_access"]["role"], e["dest_port"])
                   for e in verdicts(run(tmp_path, dns, relay)).values())
    assert found == [("anydesk", "dns", 53), ("anydesk", "relay", 443)]


def test_sni_alone_finds_a_relay_when_names_come_from_dns_over_tls(tmp_path: Path) -> None:
    """No DNS answer in the capture at all (the device resolves over DoT or DoH): the TLS
    server name is enough."""
    flow = conversation([(0, hello("relay-3a4f9c01.net.anydesk.com"))], server="203.0.113.77",
                        port=443)
    ra = only_verdict(run(tmp_path, flow))["remote_access"]
    assert ra["tool"] == "anydesk"
    assert [e["kind"] for e in ra["evidence"]] == ["sni"]


@pytest.mark.parametrize("capture,protocol", [("rdp-socks5-microsocks.pcap", "socks5"),
                                              ("rdp-http-tinyproxy.pcap", "http-connect")])
def test_real_xfreerdp_through_a_proxy_is_an_rdp_session_with_the_server_as_peer(
        capture: str, protocol: str) -> None:
    """Recorded by record.sh: xfreerdp through microsocks / tinyproxy at 10.71.0.3 to xrdp
    at 10.71.0.2:3389."""
    _result, events = replay(RECORDED / capture)
    ev = only_verdict(events)
    ra = ev["remote_access"]
    assert (ra["tool"], ra["role"], ra["confidence"]) == ("rdp", "session", "high")
    assert ev["dest_ip"] == "10.71.0.3"
    assert ra["proxy"] == {"protocol": protocol, "target": "10.71.0.2", "target_port": 3389}
    sessions = [e["session"] for e in events if e["event_type"] == "session"]
    assert "10.71.0.2" in sessions[-1]["peers"]


def test_tcp_port_53_that_is_not_dns_is_only_counted(tmp_path: Path) -> None:
    """A length prefix no DNS answer has (a tunnel on port 53): counted as malformed once,
    then the flow's packets are only counted."""
    log = EventLog(str(tmp_path / "eve.json"))
    pipe = Pipeline(signatures(), log)
    pcap = capture(tmp_path, conversation([(0, b"\x00\x20" + bytes(32)),
                                           (1, b"\xff\xff" + bytes(64)), (1, bytes(64))],
                                          server=RESOLVER, port=53))
    src = open_source(str(pcap), ReadStats())
    assert isinstance(src, PcapFile)
    pipe.feed_pcap(src)
    (flow,) = pipe.live.values()
    assert pipe.c.dns_malformed == 1
    assert flow.dns_tools is None and not flow.inspecting
    assert flow.bytes[1] > 0 and flow.pkts[1] == 2
    pipe.finish()
    log.close()
