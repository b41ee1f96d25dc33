"""Floods: what a hostile or broken LAN device can throw at the flow table, around a real
remote-access session that must survive it.

Each flood is a capture written at run time: a real VNC session from the shared corpus
(``ndpi_vnc.pcap``, moved to a Sunday morning), a DNS answer for the household's bank in
the middle of it (so the policy's "banking during a session" alert is due), and the flood's
frames interleaved by time within the session's first seconds. ``netwatch replay`` runs it
in a child process with the household; the child's peak RSS (``os.wait4``'s rusage) is set
against ``RSS_CAP_MIB``, and the event log is read for the session's detection, its
``active`` state, an end no earlier than its last packet, and the critical alert.

The floods (``FLOODS``, full sizes; ``--scale`` shrinks them for CI):

- ``flows``: 1M distinct flows from one device, half UDP to port 53 (decided at once),
  half TCP mid-connection to port 443 with a few random bytes (undecided);
- ``syns``: 1M SYNs from one device, a port scan of 16 LAN hosts (no answers);
- ``bulk``: 100k TCP flows to port 443, each a SYN and 12 x 1,400 random bytes the server
  never answers (undecided bulk data);
- ``peers``: the session's own device opens RDP to 200k peers, each with the client's and
  the server's first messages of a real RDP logon (``tests``' recorded xrdp capture, or the
  corpus' when absent): 200k detections in one RDP session.

Apart from the floods, ``table_full`` fills the flow table to a raised cap with a mix of
ordinary flows (``table_frames``) and measures a replay's peak RSS and what a decided flow
costs; ``netwatch bench`` reports it.
"""

from __future__ import annotations

import heapq
import ipaddress
import json
import random
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from .flows import MAX_INSPECTING
from .sources.capture import ReadStats, open_capture

# Peak RSS of a replay under any flood at the default bounds (flows.Limits): a replay of
# the session alone peaks at ~32 MiB (the interpreter, netwatch, the household), the full
# flow table and the pool of undecided flows add under 25 MiB.
RSS_CAP_MIB = 64
FLOODS = {"flows": 1_000_000, "syns": 1_000_000, "bulk": 100_000, "peers": 200_000}
SESSION_DEVICE = "192.168.2.110"  # the VNC server in ndpi_vnc.pcap, a household device
FLOOD_DEVICE = "192.168.2.50"  # another household device, the flood's source
RESOLVER = "192.168.2.1"
VNC_FIRST_PORT = 59791  # the viewer's port of the session's first, 16 s connection
BANK = "www.kbc.be"  # a Belgian bank on netwatch's banking list
SESSION_START = 1778401800.0  # Sunday 10 May 2026 10:30 in Brussels: in the help window
FLOOD_FROM, FLOOD_TO = 1.0, 7.5  # seconds into the session: while its first flow is busy
BANK_AT = 8.0  # the bank looked up this long into the session
HOUSEHOLD = f"""timezone: Europe/Brussels
people:
  Maria: {{language: nl, country: be}}
carers:
  - name: Pieter
    language: nl
    notify: [ntfy://ntfy.example.org/maria-floods]
devices:
  - name: pc
    person: Maria
    ips: [{SESSION_DEVICE}]
    policy: alert
  - name: tablet
    person: Maria
    ips: [{FLOOD_DEVICE}]
    policy: alert
help_windows:
  - name: Pieter helps on Sunday mornings
    days: [sun]
    start: "10:00"
    end: "12:00"
banking:
  countries: [be]
"""
ETHERNET = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00"
SYN, SYN_ACK, PSH_ACK = 0x02, 0x12, 0x18

Frame = tuple[float, bytes]


def _ip4(src: bytes, dst: bytes, proto: int, l4: bytes) -> bytes:
    return ETHERNET + struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 1, 0x4000, 64, proto,
                                  0, src, dst) + l4


def tcp(src: bytes, dst: bytes, sport: int, dport: int, seq: int, flags: int,
        payload: bytes = b"") -> bytes:
    """An Ethernet/IPv4/TCP frame (RFC 791, RFC 9293), no options."""
    return _ip4(src, dst, 6, struct.pack("!HHIIBBHHH", sport, dport, seq, 1, 0x50, flags,
                                         64240, 0, 0) + payload)


def udp(src: bytes, dst: bytes, sport: int, dport: int, payload: bytes) -> bytes:
    return _ip4(src, dst, 17, struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload)


def _addr(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


def _public(i: int) -> bytes:
    """The i-th address of 100.64.0.0/10 and up: never a household (RFC 1918) address."""
    return (0x64400000 + i).to_bytes(4, "big")


def dns_answer(ts: float, device: bytes, name: str, address: bytes) -> Frame:
    """A DNS response (RFC 1035 §4.1): one A record for ``name``."""
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00"
    answer = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 300, 4) + address
    dns = struct.pack("!HHHHHH", 0x4242, 0x8180, 1, 1, 0, 0) + qname + b"\x00\x01\x00\x01" \
        + answer
    return ts, udp(_addr(RESOLVER), device, 53, 53242, dns)


# ------------------------------------------------------------------ the floods


def flood_flows(n: int, t0: float, t1: float, rng: random.Random) -> Iterator[Frame]:
    src = _addr(FLOOD_DEVICE)
    for i in range(n):
        ts = t0 + (t1 - t0) * i / n
        sport = 1024 + i % 60000
        if i % 2:
            yield ts, udp(src, _public(i), sport, 53, rng.randbytes(32))
        else:
            yield ts, tcp(src, _public(i), sport, 443, i, PSH_ACK, rng.randbytes(64))


def flood_syns(n: int, t0: float, t1: float, rng: random.Random) -> Iterator[Frame]:
    src = _addr(FLOOD_DEVICE)
    for i in range(n):
        host = _addr(f"192.168.2.{100 + i % 16}") if i % 16 != 10 else _addr("192.168.2.99")
        yield t0 + (t1 - t0) * i / n, tcp(src, host, 40000 + i % 20000, 1 + (i // 16) % 65535,
                                          i, SYN)


def flood_bulk(n: int, t0: float, t1: float, rng: random.Random,
               packets: int = 12, size: int = 1400, together: int = 1000) -> Iterator[Frame]:
    """``together`` flows at a time, each a SYN then ``packets`` segments of ``size``."""
    src = _addr(FLOOD_DEVICE)
    blob = rng.randbytes(size + 4096)
    total = n * (packets + 1)
    k = 0
    for first in range(0, n, together):
        group = range(first, min(n, first + together))
        for step in range(packets + 1):
            for i in group:
                ts = t0 + (t1 - t0) * k / total
                k += 1
                sport = 1024 + i % 60000
                if step == 0:
                    yield ts, tcp(src, _public(i), sport, 443, 1000, SYN)
                else:
                    off = (i * 7 + step * 131) % 4096
                    yield ts, tcp(src, _public(i), sport, 443, 1001 + (step - 1) * size,
                                  PSH_ACK, blob[off:off + size])


def rdp_openings(capture: Path) -> tuple[bytes, bytes]:
    """The client's and the server's first messages of the first TCP connection."""
    first: dict[int, bytes] = {}
    client = None
    for _ts, _lt, fr, _w in open_capture(str(capture), ReadStats()):
        if len(fr) < 54 or fr[12:14] != b"\x08\x00" or fr[23] != 6:
            continue
        ihl = (fr[14] & 0x0F) * 4
        t = 14 + ihl
        payload = fr[t + (fr[t + 12] >> 4) * 4:14 + struct.unpack_from("!H", fr, 16)[0]]
        if not payload:
            continue
        sport = struct.unpack_from("!H", fr, t)[0]
        if client is None:
            client = sport
        d = 0 if sport == client else 1
        first.setdefault(d, payload)
        if len(first) == 2:
            return first[0], first[1]
    raise ValueError(f"{capture}: no connection with both sides speaking")


def flood_peers(n: int, t0: float, t1: float, rng: random.Random,
                openings: tuple[bytes, bytes] = (b"", b"")) -> Iterator[Frame]:
    dev = _addr(SESSION_DEVICE)
    cr, cc = openings
    for i in range(n):
        ts = t0 + (t1 - t0) * i / n
        step = (t1 - t0) / n / 5
        peer, sport = _public(i), 20000 + i % 40000
        yield ts, tcp(dev, peer, sport, 3389, 100, SYN)
        yield ts + step, tcp(peer, dev, 3389, sport, 500, SYN_ACK)
        yield ts + 2 * step, tcp(dev, peer, sport, 3389, 101, PSH_ACK, cr)
        yield ts + 3 * step, tcp(peer, dev, 3389, sport, 501, PSH_ACK, cc)


# ------------------------------------------------------------------ running one


@dataclass
class Outcome:
    flood: str
    size: int
    packets: int
    peak_rss_mib: float
    detected: bool  # the VNC session's remote_access event
    active: bool  # the session reached ``active``
    kept: bool  # the session did not end before its flow's last packet
    alert: bool  # the critical alert naming the bank
    session_event_bytes: int  # the largest session event's size

    @property
    def ok(self) -> bool:
        return self.detected and self.active and self.kept and self.alert \
            and self.peak_rss_mib <= RSS_CAP_MIB


def session_frames(corpus: Path) -> list[Frame]:
    """The corpus' VNC session moved to SESSION_START, with the bank's DNS answer."""
    frames = list(open_capture(str(corpus / "ndpi_vnc.pcap"), ReadStats()))
    shift = SESSION_START - frames[0][0]
    out = [(ts + shift, fr) for ts, _lt, fr, _w in frames]
    out.append(dns_answer(SESSION_START + BANK_AT, _addr(SESSION_DEVICE), BANK,
                          _addr("203.0.113.120")))
    return sorted(out, key=lambda x: x[0])


def write_pcap(path: Path, frames: Iterable[Frame]) -> int:
    """Frames (in time order) into a classic microsecond pcap; returns how many."""
    n = 0
    with open(path, "wb", buffering=1 << 20) as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        pack = struct.Struct("<IIII").pack
        for ts, fr in frames:
            usec = int(round(ts * 1e6))
            fh.write(pack(usec // 1000000, usec % 1000000, len(fr), len(fr)))
            fh.write(fr)
            n += 1
    return n


def build(kind: str, size: int, corpus: Path, rdp: Path, out: Path, seed: int = 1) -> int:
    rng = random.Random(seed)
    t0, t1 = SESSION_START + FLOOD_FROM, SESSION_START + FLOOD_TO
    gen: Iterator[Frame]
    if kind == "flows":
        gen = flood_flows(size, t0, t1, rng)
    elif kind == "syns":
        gen = flood_syns(size, t0, t1, rng)
    elif kind == "bulk":
        gen = flood_bulk(size, t0, t1, rng)
    elif kind == "peers":
        gen = flood_peers(size, t0, t1, rng, rdp_openings(rdp))
    else:
        raise ValueError(f"no flood named {kind}")
    return write_pcap(out, heapq.merge(session_frames(corpus), gen, key=lambda x: x[0]))


# Runs the replay and prints its peak RSS (KiB). The kernel carries a process's peak RSS
# across fork and exec (the parent's pages count until exec replaces them), so the replay
# is started from this small interpreter, not from the caller (a test runner may be large).
_MEASURE = """
import os, subprocess, sys
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_pid, status, usage = os.wait4(p.pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)
"""


def replay_measured(capture: Path, house: Path | None, eve: Path,
                    options: tuple[str, ...] = ()) -> float:
    """``netwatch replay`` (with ``options``) in a child process; its peak RSS in MiB."""
    argv = [sys.executable, "-m", "netwatch", "replay", str(capture), "--eve-log", str(eve),
            *options]
    if house is not None:
        argv += ["--household", str(house)]
    out = subprocess.run([sys.executable, "-c", _MEASURE, *argv], capture_output=True,
                         text=True, check=False)
    code, kib = (out.stdout.split() + ["1", "0"])[:2]
    if out.returncode != 0 or code != "0":
        raise RuntimeError(f"replay failed ({code}): {out.stderr}")
    return int(kib) / 1024  # KiB on Linux


def read_outcome(eve: Path, kind: str, size: int, packets: int, rss: float,
                 session_last: float) -> Outcome:
    detected = active = alert = False
    ended_at = None
    biggest = 0
    with open(eve, encoding="utf-8") as fh:
        for line in fh:
            if '"vnc"' not in line and '"alert"' not in line and '"session"' not in line:
                continue
            ev = json.loads(line)
            et = ev["event_type"]
            if et == "session":
                biggest = max(biggest, len(line))
            if et == "remote_access" and ev["remote_access"]["tool"] == "vnc" \
                    and SESSION_DEVICE in (ev["src_ip"], ev["dest_ip"]):
                detected = True
            elif et == "session" and ev["session"]["tool"] == "vnc":
                state = ev["session"]["state"]
                active = active or state == "active"
                if state == "ended" and ended_at is None:
                    ended_at = ev["timestamp"]
            elif et == "alert" and ev["alert"]["level"] == "critical" and any(
                    "kbc.be" in r for r in ev["alert"].get("reasons", [])):
                alert = True
    kept = ended_at is not None and datetime.strptime(
        ended_at, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp() >= session_last - 1e-3
    return Outcome(kind, size, packets, round(rss, 1), detected, active, kept, alert, biggest)


def run(kind: str, size: int, corpus: Path, rdp: Path, workdir: Path | None = None,
        seed: int = 1) -> Outcome:
    """Build one flood around the session, replay it measured, read what survived."""
    with tempfile.TemporaryDirectory(prefix="netwatch-flood-", dir=workdir) as tmp:
        d = Path(tmp)
        cap, house, eve = d / f"{kind}.pcap", d / "household.yaml", d / "eve.json"
        house.write_text(HOUSEHOLD, encoding="utf-8")
        n = build(kind, size, corpus, rdp, cap, seed)
        rss = replay_measured(cap, house, eve)
        return read_outcome(eve, kind, size, n, rss, first_flow_last(corpus))


def first_flow_last(corpus: Path) -> float:
    """When the session's first connection sends its last packet."""
    return max(ts for ts, fr in session_frames(corpus)
               if fr[23] == 6 and VNC_FIRST_PORT in struct.unpack_from("!HH", fr, 34))


# ------------------------------------------------------------------ the flow table full

# The flow table filled to a raised cap with live flows, as a busy network holds them: most
# decided after their handshake (TLS, plain HTTP, QUIC), the last ones still being inspected
# (half-open, or a first message not yet answered). SYNTHETIC, written by ``table_frames``.
TABLE_FLOWS = 65_536
# Flows still being inspected at the end: half the undecided pool (flows.MAX_INSPECTING),
# which each decided flow also passes through while its handshake goes by; they come last,
# so the pool never has to evict one of them.
TABLE_INSPECTING = MAX_INSPECTING // 2
TABLE_DEVICES = 40  # LAN devices opening the flows
TABLE_SERVERS = 5_000  # the servers they reach
# The flows open over this many seconds: the first is still live at the end (the shortest
# idle timeout, a handshake with no payload, is flows.TIMEOUT_TCP_NEW).
TABLE_SPAN = 30.0
TABLE_START = 1778401800.0
ACK = 0x10


def client_hello(server_name: str, rng: random.Random) -> bytes:
    """A TLS 1.3 ClientHello record (RFC 8446 §4.1.2) with the server_name extension
    (RFC 6066 §3) and supported_versions (RFC 8446 §4.2.1)."""
    name = server_name.encode()
    sni = struct.pack("!HBH", len(name) + 3, 0, len(name)) + name
    exts = struct.pack("!HH", 0, len(sni)) + sni + struct.pack("!HHB", 43, 3, 2) + b"\x03\x04"
    body = (b"\x03\x03" + rng.randbytes(32) + b"\x20" + rng.randbytes(32)
            + struct.pack("!HHHHBBH", 6, 0x1301, 0x1302, 0x1303, 1, 0, len(exts)) + exts)
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs


def server_flight(rng: random.Random, size: int) -> bytes:
    """A ServerHello record (RFC 8446 §4.1.3), ChangeCipherSpec (§D.4), then encrypted
    records (application_data, §5.2) to ``size`` bytes."""
    body = b"\x03\x03" + rng.randbytes(32) + b"\x20" + rng.randbytes(32) + b"\x13\x01\x00" \
        + struct.pack("!HHHH", 6, 43, 2, 0x0304)
    hs = b"\x02" + len(body).to_bytes(3, "big") + body
    out = b"\x16\x03\x03" + struct.pack("!H", len(hs)) + hs + b"\x14\x03\x03\x00\x01\x01"
    return out + app_data(rng, size - len(out) - 5)


def app_data(rng: random.Random, size: int) -> bytes:
    return b"\x17\x03\x03" + struct.pack("!H", size) + rng.randbytes(size)


def _handshake(c: bytes, s: bytes, cp: int, sp: int, ts: float, rtt: float) -> list[Frame]:
    return [(ts, tcp(c, s, cp, sp, 1000, SYN)), (ts + rtt, tcp(s, c, sp, cp, 5000, SYN_ACK)),
            (ts + rtt * 1.1, tcp(c, s, cp, sp, 1001, ACK))]


def table_flow(i: int, inspecting: bool, ts: float, rng: random.Random) -> list[Frame]:
    """The packets of the table's ``i``-th flow, from ``ts``: a decided one (twelve in
    sixteen TLS, two plain HTTP, two QUIC) or, ``inspecting``, one still being inspected
    (half-open, or a client's first bytes unanswered)."""
    c = _addr(f"192.168.2.{20 + i % TABLE_DEVICES}")
    s = _public(i % TABLE_SERVERS)
    cp = 32768 + (i // TABLE_DEVICES) % 28000
    rtt = 0.02
    kind = i % 16
    if inspecting:
        out = _handshake(c, s, cp, 443, ts, rtt)
        if i % 2:
            out.append((ts + rtt * 1.2, tcp(c, s, cp, 443, 1001, PSH_ACK, rng.randbytes(40))))
        return out
    if kind < 12:
        out = _handshake(c, s, cp, 443, ts, rtt)
        hello = client_hello(f"www.site{i % 997}.example.com", rng)
        flight = server_flight(rng, 1200)
        return out + [
            (ts + rtt * 1.2, tcp(c, s, cp, 443, 1001, PSH_ACK, hello)),
            (ts + rtt * 2.2, tcp(s, c, 443, cp, 5001, PSH_ACK, flight)),
            (ts + rtt * 2.4, tcp(c, s, cp, 443, 1001 + len(hello), PSH_ACK, app_data(rng, 80))),
            (ts + rtt * 3.4, tcp(s, c, 443, cp, 5001 + len(flight), PSH_ACK,
                                 app_data(rng, 1000)))]
    if kind < 14:
        out = _handshake(c, s, cp, 80, ts, rtt)
        get = (f"GET /assets/{i}.js HTTP/1.1\r\nHost: static{i % 499}.example.org\r\n"
               "Accept: */*\r\n\r\n").encode()
        ok = b"HTTP/1.1 200 OK\r\nContent-Type: text/javascript\r\nContent-Length: 600\r\n\r\n" \
            + bytes(600)
        return out + [(ts + rtt * 1.2, tcp(c, s, cp, 80, 1001, PSH_ACK, get)),
                      (ts + rtt * 2.2, tcp(s, c, 80, cp, 5001, PSH_ACK, ok))]
    # QUIC (RFC 9000 §17.2.2): a client's Initial, padded to 1,200 bytes (§14.1), and the
    # server's answer; the rest is encrypted.
    dcid = rng.randbytes(8)
    initial = b"\xc3\x00\x00\x00\x01\x08" + dcid + b"\x00\x00" + struct.pack("!H", 0x4000 | 1180) \
        + rng.randbytes(1180)
    answer = b"\xc1\x00\x00\x00\x01\x08" + rng.randbytes(8) + b"\x08" + dcid + b"\x00" \
        + struct.pack("!H", 0x4000 | 1100) + rng.randbytes(1100)
    return [(ts, udp(c, s, cp, 443, initial)), (ts + rtt, udp(s, c, 443, cp, answer))]


def table_frames(flows: int, inspecting: int, seed: int = 1) -> Iterator[Frame]:
    """``flows`` flows opened over TABLE_SPAN, the last ``inspecting`` of them still being
    inspected at the end, in time order."""
    rng = random.Random(seed)
    step = TABLE_SPAN / max(1, flows)
    pending: list[Frame] = []
    for i in range(flows):
        ts = TABLE_START + i * step
        while pending and pending[0][0] <= ts:
            yield heapq.heappop(pending)
        for fr in table_flow(i, i >= flows - inspecting, ts, rng):
            heapq.heappush(pending, fr)
    while pending:
        yield heapq.heappop(pending)


@dataclass
class TableFull:
    """The flow table full, measured: ``netwatch replay`` of ``flows`` flows and of half
    as many (the same ``inspecting`` in each), with the cap raised to ``flows``."""

    flows: int
    inspecting: int
    peak_rss_mib: float  # the replay with the table full
    half_rss_mib: float  # the replay of half the flows
    max_concurrent: int  # the most flows the full replay held at once (stats event)
    evicted: int  # flows the full replay evicted (none, when the cap is the table's size)

    @property
    def bytes_per_decided_flow(self) -> float:
        """What each decided flow of the second half added to the peak RSS."""
        return (self.peak_rss_mib - self.half_rss_mib) * 1048576 / (self.flows - self.flows // 2)


def _stats(eve: Path) -> dict[str, int]:
    with open(eve, encoding="utf-8") as fh:
        for line in fh:
            if '"stats"' in line:
                ev = json.loads(line)
                if ev["event_type"] == "stats":
                    return dict(ev["stats"])
    return {}


def table_full(flows: int = TABLE_FLOWS, inspecting: int = TABLE_INSPECTING,
               workdir: Path | None = None, seed: int = 1) -> TableFull:
    """Replay the table's flows, and half of them, each in a child process with the cap at
    ``flows``: the peak RSS of each, and what the full replay's stats event says."""
    peaks = []
    stats: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="netwatch-table-", dir=workdir) as tmp:
        d = Path(tmp)
        for n in (flows // 2, flows):
            cap, eve = d / f"table-{n}.pcap", d / f"table-{n}.eve.json"
            write_pcap(cap, table_frames(n, inspecting, seed))
            peaks.append(replay_measured(cap, None, eve, ("--max-flows", str(flows))))
            stats = _stats(eve)
            cap.unlink()
    return TableFull(flows, inspecting, round(peaks[1], 1), round(peaks[0], 1),
                     stats.get("max_concurrent_flows", 0), stats.get("flows_evicted", 0))
