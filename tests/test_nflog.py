"""The nflog source: netlink parsing, NFLOG captures, conntrack counters in the pipeline, and
the whole source on real traffic across a router namespace the test creates.

Namespaces (made and deleted here; addresses in 10.74.0.0/16, nothing else reachable):
nwn-thome 10.74.1.2 -- nwn-trouter 10.74.1.1 / 10.74.2.1 -- nwn-tinet 10.74.2.2.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import RECORDED, ROOT, replay, signatures
from netwatch import decode as dec
from netwatch.eventlog import EventLog, iso_timestamp
from netwatch.pipeline import Pipeline
from netwatch.sources import netlink as nl
from netwatch.sources.capture import ReadStats, open_capture
from netwatch.sources.conntrack import (
    CTA_COUNTERS_BYTES,
    CTA_COUNTERS_ORIG,
    CTA_COUNTERS_PACKETS,
    CTA_COUNTERS_REPLY,
    CTA_TUPLE_REPLY,
    IPCTNL_MSG_CT_DELETE,
    NFNL_SUBSYS_CTNETLINK,
    Conn,
    parse_conn,
    tuple_attr,
)
from netwatch.sources.nflog import (
    NFNL_SUBSYS_ULOG,
    NFULA_PAYLOAD,
    NFULA_SEQ,
    NFULA_TIMESTAMP,
    NFULNL_MSG_PACKET,
    Layout,
    nfnetlink_log_available,
    parse_packets,
    wire_length,
)

NFLOG_CAPTURE = RECORDED / "nflog-anydesk-relay.pcap"
VNC = RECORDED / "vnc-x11vnc.pcap"


def ipv4(src: bytes, dst: bytes, payload_len: int, total: int | None = None) -> bytes:
    total = total if total is not None else 20 + payload_len
    return (struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 1, 0, 64, 17, 0, src, dst)
            + b"\0" * payload_len)


def logged(seq: int, packet: bytes, ts: tuple[int, int] | None = None) -> bytes:
    body = nl.attr(NFULA_SEQ, struct.pack("!I", seq)) + nl.attr(NFULA_PAYLOAD, packet)
    if ts is not None:
        body = nl.attr(NFULA_TIMESTAMP, struct.pack("!QQ", *ts)) + body
    return nl.message(NFNL_SUBSYS_ULOG, NFULNL_MSG_PACKET, 0, 2, body, res_id=74)


# ---------------------------------------------------------------- parsing, no kernel

def test_a_netlink_batch_gives_each_logged_packet_with_its_time_and_wire_length() -> None:
    a, b = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
    cut = ipv4(a, b, 100, total=1500)  # copied short: the IP header says 1500
    batch = logged(7, ipv4(a, b, 8), (1700000000, 250000)) + logged(8, cut)
    out: list[Any] = []
    count, bad, last, gaps = parse_packets(batch, len(batch), 99.0, out)
    assert (count, bad, last, gaps) == (2, 0, 8, 0)
    assert out[0][0] == pytest.approx(1700000000.25) and out[1][0] == 99.0
    assert [p[3] for p in out] == [28, 1500] and out[0][1] == dec.LINKTYPE_RAW


def test_missing_sequence_numbers_count_as_drops_across_batches() -> None:
    pkt = ipv4(bytes(4), bytes(4), 0)
    out: list[Any] = []
    first = logged(1, pkt)
    _, _, last, _ = parse_packets(first, len(first), 0.0, out)
    second = logged(5, pkt) + logged(6, pkt)
    assert parse_packets(second, len(second), 0.0, out, last)[3] == 3


def test_a_message_without_payload_or_cut_short_is_counted_not_raised() -> None:
    empty = nl.message(NFNL_SUBSYS_ULOG, NFULNL_MSG_PACKET, 0, 2, b"")
    whole = logged(1, ipv4(bytes(4), bytes(4), 4))
    batch = empty + whole[:-3]
    out: list[Any] = []
    count, bad, _, _ = parse_packets(batch, len(batch), 0.0, out)
    assert count == 0 and bad == 2 and out == []


# What a router's kernel puts in a forwarded packet's message before the time
# (nfnetlink_log): the packet header, the log prefix (empty), the input and output
# interfaces, the hardware address, type, length and header. The router's own packets
# (its DNS resolver's answers) have no input interface and no hardware attributes.
FORWARDED = [(1, struct.pack("!HBx", 0x0800, 3)), (10, b"\0"), (4, struct.pack("!I", 2)),
             (5, struct.pack("!I", 3)), (8, struct.pack("!H2x6s2x", 6, bytes(6))),
             (15, struct.pack("!H", 1)), (17, struct.pack("!H", 14)), (16, bytes(14))]
ROUTERS_OWN = [(1, struct.pack("!HBx", 0x0800, 3)), (10, b"\0"), (5, struct.pack("!I", 3))]


def router_message(rng: Any, seq: int, kind: list[tuple[int, bytes]] | None = None,
                   odd: float | None = None) -> bytes:
    """A logged packet's message as a router's kernel writes it (a forwarded packet, or one
    of the router's own, then the time, the sequence number, the payload), or now and then
    one that differs: an attribute missing or of another length, one after the payload,
    one cut short, a message of another kind (``odd``: which, from 0 to 1; 0.5: none)."""
    packet = ipv4(bytes([10, 0, 0, rng.randrange(256)]), bytes([10, 0, 1, 1]),
                  rng.randrange(0, 300))
    if kind is None:
        kind = ROUTERS_OWN if rng.random() < 0.3 else FORWARDED
    attrs = [*kind,
             (NFULA_TIMESTAMP, struct.pack("!QQ", 1_700_000_000 + seq, rng.randrange(10**6))),
             (NFULA_SEQ, struct.pack("!I", seq)), (NFULA_PAYLOAD, packet)]
    odd = rng.random() if odd is None else odd
    if odd < 0.02:
        del attrs[rng.randrange(len(attrs) - 1)]
    elif odd < 0.035:
        i = rng.randrange(len(attrs) - 1)
        attrs[i] = (attrs[i][0], attrs[i][1] + b"\0" * rng.choice((1, 4, 8)))
    elif odd < 0.045:
        attrs.append((NFULA_SEQ, struct.pack("!I", seq + 1000)))
    elif odd < 0.05:
        attrs.insert(rng.randrange(len(attrs)), (NFULA_TIMESTAMP, b"\0" * 16))
    body = b"".join(nl.attr(t, v) for t, v in attrs)
    if odd > 0.995:
        body = body[:rng.randrange(len(body))]
    kind = NFULNL_MSG_PACKET if odd < 0.99 or odd > 0.995 else NFULNL_MSG_PACKET + 1
    return nl.message(NFNL_SUBSYS_ULOG, kind, 0, 2, body, res_id=74)


class CountingLayout(Layout):
    """A Layout that counts the messages it learns (each one walked in full)."""

    __slots__ = ("learned",)

    def __init__(self) -> None:
        super().__init__()
        self.learned = 0

    def learn(self, attrs: list[tuple[int, int, int]]) -> None:
        self.learned += 1
        super().learn(attrs)


def test_messages_read_against_the_layout_as_walked_attribute_by_attribute() -> None:
    """``Layout``: a message with the attributes of the one before is read without a walk.
    Whatever the messages are, the packets, times, sequence numbers and counts must be
    the walk's; and a router's usual message, once learned, is read without a walk."""
    import random

    rng = random.Random(9)
    layout = CountingLayout()
    last_walk = last_layout = None
    for batch_no in range(300):
        batch = b"".join(router_message(rng, batch_no * 40 + i) for i in range(40))
        walked: list[Any] = []
        got: list[Any] = []
        r1 = parse_packets(batch, len(batch), 5.0, walked, last_walk)
        r2 = parse_packets(batch, len(batch), 5.0, got, last_layout, layout)
        assert (got, r2) == (walked, r1)
        last_walk, last_layout = r1[2], r2[2]
    # One in twenty messages differs, and may be learned: the rest, of the two usual
    # kinds, are read against the layout.
    assert 20 < layout.learned < 300 * 40 // 20
    # The usual kinds in turn: each is learned once, then read without a walk.
    usual = b"".join(router_message(rng, i, FORWARDED if i % 2 else ROUTERS_OWN, odd=0.5)
                     for i in range(6))
    layout = CountingLayout()
    out: list[Any] = []
    for _ in range(3):
        assert parse_packets(usual, len(usual), 0.0, out, None, layout)[0] == 6
    assert layout.learned == 2 and out[:6] == out[6:12] == out[12:]


def test_wire_length_of_ipv6_and_of_garbage() -> None:
    v6 = bytes([0x60, 0, 0, 0]) + struct.pack("!H", 1000) + bytes(34)
    assert wire_length(v6) == 1040 and wire_length(b"\x00\x01") == 2


def ct_destroy(server_reply: bytes) -> bytes:
    client, wan = bytes([203, 0, 113, 9]), bytes([198, 51, 100, 1])
    orig = tuple_attr(6, client, wan, 50000, 3389)
    reply = tuple_attr(6, server_reply, client, 3389, 50000, CTA_TUPLE_REPLY)
    counters = (nl.nested(CTA_COUNTERS_ORIG, nl.attr(CTA_COUNTERS_PACKETS, struct.pack("!Q", 10)),
                          nl.attr(CTA_COUNTERS_BYTES, struct.pack("!Q", 4000)))
                + nl.nested(CTA_COUNTERS_REPLY,
                            nl.attr(CTA_COUNTERS_PACKETS, struct.pack("!Q", 20)),
                            nl.attr(CTA_COUNTERS_BYTES, struct.pack("!Q", 90000))))
    return nl.message(NFNL_SUBSYS_CTNETLINK, IPCTNL_MSG_CT_DELETE, 0, 2,
                      orig + reply + counters)


def test_a_conntrack_destroy_names_the_real_server_behind_a_port_forward() -> None:
    lan_server = bytes([192, 168, 1, 20])
    msg = ct_destroy(lan_server)
    (mtype, flags, body, end), = nl.walk(msg, len(msg))
    c = parse_conn(msg, body, end, mtype, flags)
    assert c is not None and c.ended and c.counted
    assert (c.client, c.cport, c.server, c.sport) == (bytes([203, 0, 113, 9]), 50000,
                                                     lan_server, 3389)
    assert c.pkts == (10, 20) and c.bytes == (4000, 90000)


def test_a_conntrack_message_without_tuple_is_refused() -> None:
    msg = nl.message(NFNL_SUBSYS_CTNETLINK, IPCTNL_MSG_CT_DELETE, 0, 2, b"\x08\x00\x01\x00xxxx")
    (mtype, flags, body, end), = nl.walk(msg, len(msg))
    assert parse_conn(msg, body, end, mtype, flags) is None


# ---------------------------------------------------------------- NFLOG captures

def test_an_nflog_capture_replays_with_its_detections() -> None:
    st = ReadStats()
    frames = list(open_capture(str(NFLOG_CAPTURE), st))
    assert set(st.interfaces) == {dec.LINKTYPE_NFLOG}
    _result, events = replay(NFLOG_CAPTURE)
    roles = sorted(e["remote_access"]["role"] for e in events
                   if e["event_type"] == "remote_access")
    assert roles and "dns" in roles and len(frames) == st.packets


def test_nflog_records_in_either_byte_order_and_broken_ones() -> None:
    packet = ipv4(bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]), 0)
    packet = packet[:9] + b"\x06" + packet[10:] + struct.pack("!HHIIBBHHH", 1, 2, 0, 0, 0x50,
                                                                 0x02, 0, 0, 0)
    packet = packet[:2] + struct.pack("!H", len(packet)) + packet[4:]
    for order in ("<", ">"):
        tlv = struct.pack(order + "HH", 8, 1) + b"\x08\x00\x03\x00"  # NFULA_PACKET_HDR
        tlv += struct.pack(order + "HH", 4 + len(packet), NFULA_PAYLOAD) + packet
        got = dec.decode_frame(dec.LINKTYPE_NFLOG, b"\x02\x00\x00\x4a" + tlv)
        assert type(got) is tuple and got[3:5] == (1, 2), order
    assert dec.decode_frame(dec.LINKTYPE_NFLOG, b"\x02\x00\x00\x4a\xff\xff") == dec.MALFORMED
    assert dec.decode_frame(dec.LINKTYPE_NFLOG, b"\x02") == dec.MALFORMED


# ---------------------------------------------------------------- the pipeline's side

def test_conntrack_counters_give_a_followed_flow_its_volume_and_its_end(tmp_path: Path) -> None:
    log_path = tmp_path / "eve.json"
    pipe = Pipeline(signatures(), EventLog(str(log_path)))
    frames = list(open_capture(str(VNC), ReadStats()))[:32]  # what the router logs
    pipe.feed(frames)
    follow = pipe.flow_counters([], frames[-1][0])
    assert len(follow) == 1
    proto, client, server, cport, sport = follow[0]
    f = next(iter(pipe.live.values()))
    seen = f.bytes[1]
    later = frames[-1][0] + 30
    pipe.flow_counters([Conn(proto, client, server, cport, sport, (900, 1800),
                             (60_000, 2_400_000), counted=True)], later)
    assert list(f.bytes) == [60_000, 2_400_000] and f.bytes[1] > seen and f.last_ts == later
    assert pipe.flow_counters([Conn(proto, client, server, cport, sport, (901, 1801),
                                    (60_100, 2_400_500), ended=True, counted=True)],
                              later + 1) == []
    assert not pipe.live
    pipe.log.close()
    events = [json.loads(x) for x in log_path.read_text().splitlines()]
    ends = [e for e in events if e["event_type"] == "session"
            and e["session"]["state"] == "ended"]
    assert len(ends) == 1 and ends[0]["session"]["bytes_toclient"] == 2_400_500
    # It ended when it was last seen growing, not when conntrack forgot it.
    assert ends[0]["timestamp"] == iso_timestamp(later)


def test_conntrack_news_of_flows_netwatch_does_not_know_change_nothing(tmp_path: Path) -> None:
    pipe = Pipeline(signatures(), EventLog(None))
    frames = list(open_capture(str(VNC), ReadStats()))[:32]
    pipe.feed(frames)
    f = next(iter(pipe.live.values()))
    before = list(f.bytes)
    other = Conn(6, bytes([10, 9, 9, 9]), f.server_ip, 1, f.server_port, (1, 1), (9, 9),
                 ended=True, counted=True)
    pipe.flow_counters([other], frames[-1][0])
    assert list(f.bytes) == before and f.id in pipe.live


# ---------------------------------------------------------------- live, in namespaces

HOME, ROUTER, INET = "nwn-thome", "nwn-trouter", "nwn-tinet"
IP_HOME, IP_RLAN, IP_RWAN, IP_INET = "10.74.1.2", "10.74.1.1", "10.74.2.1", "10.74.2.2"
GROUP = 75
FIRST = 16
BULK = 3_000_000
RELAY = "relay-0a4a0202.net.anydesk.com"
FW4 = """table inet fw4 {
    chain forward {
        type filter hook forward priority filter; policy accept;
        ct state established,related accept comment "stand-in for OpenWrt's fw4"
        meta l4proto { tcp, udp } accept
    }
}
"""


def _why_not_live() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create network namespaces and nftables tables"
    for tool in ("ip", "nft", "dnsmasq", "openssl"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (bash run.sh test installs it)"
    return nfnetlink_log_available()


def sh(*argv: str, ns: str | None = None, check: bool = True, timeout: float = 20
       ) -> subprocess.CompletedProcess[str]:
    cmd = ["ip", "netns", "exec", ns, *argv] if ns else list(argv)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=check)


@pytest.fixture(scope="module")
def lab() -> Iterator[None]:
    why = _why_not_live()
    if why:
        pytest.skip(why)
    for ns in (HOME, ROUTER, INET):
        sh("ip", "netns", "del", ns, check=False)
    try:
        for ns in (HOME, ROUTER, INET):
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "set", "lo", "up", ns=ns)
        sh("ip", "link", "add", "nwn-th0", "netns", HOME, "type", "veth", "peer", "name",
           "nwn-tr0", "netns", ROUTER)
        sh("ip", "link", "add", "nwn-tr1", "netns", ROUTER, "type", "veth", "peer", "name",
           "nwn-ti0", "netns", INET)
        for ns, dev, addr in ((HOME, "nwn-th0", IP_HOME), (ROUTER, "nwn-tr0", IP_RLAN),
                              (ROUTER, "nwn-tr1", IP_RWAN), (INET, "nwn-ti0", IP_INET)):
            sh("ip", "addr", "add", f"{addr}/24", "dev", dev, ns=ns)
            sh("ip", "link", "set", dev, "up", ns=ns)
        sh("ip", "route", "add", "default", "via", IP_RLAN, ns=HOME)
        sh("ip", "route", "add", "default", "via", IP_RWAN, ns=INET)
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=ROUTER)
        # A closed connection leaves conntrack after TIME_WAIT or CLOSE (120 s and 10 s by
        # default): 1 s here, so the test need not wait.
        for state in ("time_wait", "close", "close_wait", "last_ack", "fin_wait"):
            sh("sysctl", "-qw", f"net.netfilter.nf_conntrack_tcp_timeout_{state}=1", ns=ROUTER)
        subprocess.run(["ip", "netns", "exec", ROUTER, "nft", "-f", "-"], input=FW4,
                       text=True, check=True, timeout=10)
        yield
    finally:
        for ns in (HOME, ROUTER, INET):
            for pid in sh("ip", "netns", "pids", ns, check=False).stdout.split():
                subprocess.run(["kill", "-KILL", pid], check=False)
            sh("ip", "netns", "del", ns, check=False)


SERVER = f"""
import socket, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(sys.argv[1], sys.argv[2])
s = socket.create_server(("{IP_INET}", 443)); s.settimeout(20)
c, _ = s.accept(); t = ctx.wrap_socket(c, server_side=True)
t.recv(100); t.sendall(b"x" * {BULK}); t.recv(100); t.close()
"""

CLIENT = f"""
import socket, ssl, struct, time
q = struct.pack("!HHHHHH", 0x4e57, 0x0100, 1, 0, 0, 0)
q += b"".join(bytes([len(p)]) + p.encode() for p in "{RELAY}".split(".")) + b"\\0\\0\\1\\0\\1"
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(5)
u.sendto(q, ("{IP_INET}", 53)); answer = u.recv(512)
addr = socket.inet_ntoa(answer[-4:])
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
t = ctx.wrap_socket(socket.create_connection((addr, 443), timeout=10), server_hostname="{RELAY}")
t.sendall(b"hello"); got = 0
while got < {BULK}:
    d = t.recv(65536)
    if not d: break
    got += len(d)
print(got)
t.close()
"""


def test_live_first_packets_dns_answers_volume_and_end(lab: None, tmp_path: Path) -> None:
    fw4_before = sh("nft", "list", "table", "inet", "fw4", ns=ROUTER).stdout
    sh("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
       f"/CN={RELAY}", "-keyout", str(tmp_path / "k.pem"), "-out", str(tmp_path / "c.pem"))
    dns = subprocess.Popen(["ip", "netns", "exec", INET, "timeout", "30", "dnsmasq",
                            "--no-daemon", "--no-resolv", "--no-hosts", "--bind-interfaces",
                            f"--listen-address={IP_INET}", f"--address=/net.anydesk.com/{IP_INET}",
                            f"--pid-file={tmp_path / 'dnsmasq.pid'}"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = subprocess.Popen(["ip", "netns", "exec", INET, "timeout", "30", sys.executable,
                               "-c", SERVER, str(tmp_path / "c.pem"), str(tmp_path / "k.pem")])
    log = tmp_path / "eve.json"
    router = subprocess.Popen(["ip", "netns", "exec", ROUTER, "timeout", "60", sys.executable,
                               str(ROOT / "tests" / "nflog_router.py"), str(GROUP), str(FIRST),
                               str(log)], stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        assert router.stdout is not None
        assert router.stdout.readline().strip() == "ready"
        during = sh("nft", "-j", "list", "tables", ns=ROUTER).stdout
        got = sh(sys.executable, "-c", CLIENT, ns=HOME, timeout=30).stdout.strip()
        assert int(got) == BULK
        # conntrack forgets the connection after TIME_WAIT (1 s here); the source hands the
        # pipeline the end when conntrack's DESTROY comes.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ready, _, _ = select.select([router.stdout], [], [], 1.0)
            if ready and router.stdout.readline().strip() == "ended 6 443":
                break
        router.terminate()
        out, _ = router.communicate(timeout=20)
    finally:
        for p in (router, server, dns):
            if p.poll() is None:
                p.kill()
                p.wait()
    result = json.loads(out.splitlines()[-1])
    assert '"netwatch"' in during

    tls_conns = {k: v for k, v in result["packets"].items()
                 if k.startswith("6 ") and f"{IP_INET}:443" in k}
    assert len(tls_conns) == 1
    (tls_count,) = tls_conns.values()
    # The first packets of the connection, not the 3 MB after them (both directions of
    # the connection count towards the limit, as conntrack counts them).
    assert 3 <= tls_count <= FIRST
    dns_answers = [k for k in result["packets"] if k.startswith("17 ") and f"{IP_INET}:53" in k]
    assert dns_answers

    ended = [r for r in result["conntrack"] if r["sport"] == 443 and r["ended"]]
    assert ended, "no conntrack DESTROY for the TLS connection"
    assert ended[-1]["bytes"][1] > BULK  # the whole transfer, TLS and TCP/IP overhead on top

    events = [json.loads(x) for x in log.read_text().splitlines()]
    live = events[:result["events_before_finish"]]
    relay = [e for e in live if e["event_type"] == "remote_access"
             and e["dest_port"] == 443]
    assert relay and relay[-1]["remote_access"]["tool"] == "anydesk"
    sessions = [e["session"] for e in live if e["event_type"] == "session"]
    assert sessions[-1]["state"] == "ended", "the session did not end from conntrack"
    assert sessions[-1]["bytes_toclient"] > BULK
    assert result["stats"]["dropped"] == 0

    assert sh("nft", "list", "table", "inet", "fw4", ns=ROUTER).stdout == fw4_before
    assert "netwatch" not in sh("nft", "list", "tables", ns=ROUTER).stdout


def test_live_close_keeps_the_table_while_it_holds_other_chains_of_netwatch(lab: None) -> None:
    code = (f"from netwatch import nft\nfrom netwatch.sources import nflog\n"
            f"chains = nflog.chains_for(True)\n"
            f"nft.install_chains(chains, nflog.ruleset({GROUP}, 8, True))\n"
            f"nft.run_nft([{{'add': {{'chain': {{'family': 'inet', 'table': 'netwatch', "
            f"'name': 'block_forward'}}}}}}])\n"
            f"print(nft.remove_chains([c.name for c in chains]))\n"
            f"print(sorted(o['chain']['name'] for o in nft.list_table() if 'chain' in o))\n"
            f"print(nft.remove_chains(['block_forward']), nft.list_table())\n")
    out = sh(sys.executable, "-c", code, ns=ROUTER).stdout.splitlines()
    assert out == ["False", "['block_forward']", "True None"]
    assert "fw4" in sh("nft", "list", "tables", ns=ROUTER).stdout


def test_the_router_rules_log_first_packets_on_forward_and_dns_answers_everywhere() -> None:
    from netwatch.sources.nflog import FORWARD, INPUT, OUTPUT, chains_for, ruleset

    plain = ruleset(74, 32, own_traffic=False)
    assert [c.name for c in chains_for(False)] == [FORWARD.name, OUTPUT.name]
    first, dns = plain[FORWARD.name]
    assert {"match": {"op": "==", "left": {"ct": {"key": "packets"}},
                      "right": {"range": [1, 32]}}} in first
    assert plain[OUTPUT.name] == [dns] and {"log": {"group": 74}} in dns
    own = ruleset(74, 32, own_traffic=True)
    assert own[INPUT.name] == own[OUTPUT.name] == [first, dns]
    # Every chain runs before fw4's filter chains (priority 0) and gives no verdict.
    assert all(c.priority == -1 for c in chains_for(True))
    assert not any("accept" in r or "drop" in r for rules in own.values() for rule in rules
                   for r in rule)
