"""Lookups over UDP in the hot loops (``Pipeline._lookup4``): a DNS datagram in a plain IPv4
frame is handled from the fields the loop already read, without decoding the frame again.
What it finds, counts and writes must be what the full path (``Pipeline._frame``) gives for
the same frames, odd ones included: padded, cut by a snap length, lengths that disagree,
too short for a DNS header, a lookup of a tool's relay, a bank's name, port 53 both ends.
"""

from __future__ import annotations

import ipaddress
import struct
from pathlib import Path
from typing import Any

import pytest
from test_afpacket_ring import replayed, ring_frames, walked
from test_hot_loops import outcome, pipeline

from netwatch.sources.capture import ReadStats, open_capture

DEVICE, RESOLVER = "192.168.1.23", "192.168.1.1"
T0 = 1_764_000_000.0
ETH = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00"


def qname(name: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00"


def message(name: str, txid: int, answer: str | None) -> bytes:
    """A query (``answer`` None) or a response with one A record (RFC 1035 §4.1)."""
    question = qname(name) + struct.pack("!HH", 1, 1)
    if answer is None:
        return struct.pack("!HHHHHH", txid, 0x0100, 1, 0, 0, 0) + question
    rr = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 300, 4) + ipaddress.ip_address(answer).packed
    return struct.pack("!HHHHHH", txid, 0x8180, 1, 1, 0, 0) + question + rr


def frame(src: str, dst: str, sport: int, dport: int, payload: bytes, *,
          ulen_extra: int = 0, pad_to: int = 0) -> bytes:
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload) + ulen_extra, 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                     ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed)
    out = ETH + ip + udp
    return out + bytes(max(0, pad_to - len(out)))


def lookup(t: float, name: str, sport: int, answer: str, **odd: Any) -> list[tuple]:
    """A query from the device and the resolver's response (``odd``: how the response's
    frame is unusual)."""
    txid = sport & 0xFFFF
    return [(t, frame(DEVICE, RESOLVER, sport, 53, message(name, txid, None)), None),
            (t + 0.01, frame(RESOLVER, DEVICE, 53, sport, message(name, txid, answer), **odd),
             None)]


def frames() -> list[tuple[float, bytes, int | None]]:
    """(time, frame, wire length when the capture cut the frame)."""
    out: list[tuple[float, bytes, int | None]] = []
    out += lookup(T0, "www.example.org", 50001, "93.184.215.14")
    out += lookup(T0 + 1, "relay-3d2ca395.net.anydesk.com", 50002, "51.89.1.1")
    # The device then talks to the relay: after its first packets, counted in the hot loop
    # (a session's timed work must still run on time).
    for i in range(60):
        src, dst, sp, dp = ((DEVICE, "51.89.1.1", 40001, 443) if i % 2 == 0
                            else ("51.89.1.1", DEVICE, 443, 40001))
        out.append((T0 + 1.1 + i * 0.25, frame(src, dst, sp, dp, bytes([i]) * 200), None))
    out += lookup(T0 + 2, "www.kbc.be", 50003, "193.58.1.1")
    # Ethernet padding after a short datagram: the payload ends where the IP length says.
    out.append((T0 + 3, frame(DEVICE, RESOLVER, 50004, 53, b"\x12\x34\x01\x00", pad_to=60),
                None))
    # A response whose UDP length claims more than the datagram holds.
    out += lookup(T0 + 4, "www.example.com", 50005, "93.184.215.15", ulen_extra=40)
    # A UDP length under the datagram's: the rest is not the message's.
    out += lookup(T0 + 5, "www.example.net", 50006, "93.184.215.16", ulen_extra=-3)
    # Port 53 on both ends (resolver to resolver).
    out += lookup(T0 + 6, "download.anydesk.com", 53, "51.89.1.2")
    # Too short for a DNS header, from the server: malformed.
    out.append((T0 + 7, frame(RESOLVER, DEVICE, 53, 50007, b"\x00\x01\x81"), None))
    # An empty datagram.
    out.append((T0 + 8, frame(DEVICE, RESOLVER, 50008, 53, b""), None))
    # A response the snap length cut: the full path reads what is there.
    t, fr, _ = lookup(T0 + 9, "relay-aaaabbbb.net.anydesk.com", 50009, "51.89.1.3")[1]
    out.append((T0 + 9, frame(DEVICE, RESOLVER, 50009, 53,
                              message("relay-aaaabbbb.net.anydesk.com", 50009, None)), None))
    out.append((t, fr[:70], len(fr)))
    # Not DNS: a datagram between two high ports takes the full path as before.
    out.append((T0 + 10, frame(DEVICE, "203.0.113.9", 50010, 40000, b"x" * 30), None))
    # The lookups again, now answered twice on the same flows (a retry).
    out += lookup(T0 + 11, "relay-3d2ca395.net.anydesk.com", 50002, "51.89.1.1")
    return out


def write(path: Path) -> Path:
    with open(path, "wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for ts, fr, wire in frames():
            sec = int(ts)
            usec = round((ts - sec) * 1e6)
            fh.write(struct.pack("<IIII", sec, usec, len(fr), wire or len(fr)) + fr)
    return path


def test_a_lookup_in_the_hot_loop_gives_what_the_full_path_gives(tmp_path: Path) -> None:
    cap = write(tmp_path / "lookups.pcap")
    hot = pipeline(tmp_path / "hot.json", tmp_path)
    taken: list[int] = []
    plain = hot._lookup4

    def spy(*a: Any) -> bool:
        before = hot._next_sweep
        done = plain(*a)
        # The hot loops do not read the time of the next timed work again after a lookup.
        assert hot._next_sweep == before
        taken.append(done)
        return done
    hot._lookup4 = spy  # type: ignore[method-assign]
    hot.feed_file(str(cap), ReadStats())
    got = outcome(hot, tmp_path / "hot.json")

    full = pipeline(tmp_path / "full.json", tmp_path)
    full.pcap_name = str(cap)
    for ts, lt, fr, wire in open_capture(str(cap), ReadStats()):  # every frame on the full path
        full.c.packets += 1
        full.c.bytes += wire
        full.c.captured_bytes += len(fr)
        full._frame(ts, lt, fr, wire)
        full.last_packet_ts = ts
    full.c.files += 1
    expected = outcome(full, tmp_path / "full.json")

    assert got[0] == expected[0]  # every counter: packets, flows, answers, malformed
    assert got[1] == expected[1]  # each flow's volumes and verdict
    assert got[2] == expected[2]  # the event log, event for event
    tools = {(f[7], f[8]) for f in expected[1]}
    assert ("anydesk", "dns") in tools or any(t == "anydesk" for t, _r in tools)
    assert any(e.get("dns", {}).get("bank") == "kbc.be" for e in expected[2])
    assert expected[0].dns_malformed >= 1
    # Most of the lookups' datagrams were taken in the hot loop; the odd ones fell through.
    assert taken.count(True) >= 12 and taken.count(False) >= 3


def test_the_ring_walk_takes_lookups_as_a_replay_does(tmp_path: Path) -> None:
    cap = write(tmp_path / "lookups.pcap")
    expected = replayed(cap, tmp_path)
    got, _walks = walked(ring_frames(cap), tmp_path)
    assert got == expected


@pytest.mark.parametrize("odd", [{"pad_to": 0}, {"ulen_extra": 40}])
def test_a_lookup_is_one_flow_and_its_answer_names_the_address(tmp_path: Path,
                                                               odd: dict[str, int]) -> None:
    cap = tmp_path / "one.pcap"
    with open(cap, "wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for ts, fr, _w in lookup(T0, "relay-3d2ca395.net.anydesk.com", 50002, "51.89.1.1",
                                 **odd):
            fh.write(struct.pack("<IIII", int(ts), round((ts % 1) * 1e6), len(fr), len(fr))
                     + fr)
    pipe = pipeline(tmp_path / "one.json", tmp_path)
    pipe.feed_file(str(cap), ReadStats())
    assert pipe.c.flows == 1 and pipe.c.dns_answers == 1
    assert pipe.names.lookup(ipaddress.ip_address("51.89.1.1").packed, T0 + 1) == \
        "relay-3d2ca395.net.anydesk.com"


def response_with(question: bytes, txid: int = 1) -> bytes:
    """A response whose question is the raw ``question`` name, one A record after it."""
    rr = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 300, 4) + bytes([192, 0, 2, 1])
    return (struct.pack("!HHHHHH", txid, 0x8180, 1, 1, 0, 0) + question
            + struct.pack("!HH", 1, 1) + rr)


def read_or_error(read: Any, *args: Any) -> Any:
    """What ``read(*args)`` gives, or the type of the DnsError it raises."""
    from netwatch.names import DnsError
    try:
        return read(*args)
    except DnsError as e:
        return type(e)


@pytest.mark.parametrize("question", [
    qname("www.Example.org"),
    qname("relay-3d2ca395.net.anydesk.com"),
    b"\x03a\x00b\x03org\x00",  # a zero byte inside a label
    b"\x03www\xc0\x00",  # a pointer (to the header): not a name to keep
    b"\x04caf\xe9\x03org\x00",  # a byte that is not ASCII
    b"\x00",  # the root
], ids=["plain", "relay", "zero-in-label", "pointer", "not-ascii", "root"])
def test_a_question_name_read_again_is_the_name_read_first(question: bytes) -> None:
    from netwatch.names import DnsError, parse_response, question_name, read_name
    msg = response_with(question)
    expected = read_or_error(read_name, msg, 12)
    for _ in range(2):  # the second time from the names already read, when kept
        assert read_or_error(question_name, msg) == expected
    # The same bytes in another message (a pointer would lead elsewhere) are read for it.
    other = response_with(question, txid=0x0301)
    assert read_or_error(question_name, other) == read_or_error(read_name, other, 12)
    # A message that only starts like a kept name is read for itself.
    longer = response_with(question[:-1] + b"\x02uk\x00")
    assert read_or_error(question_name, longer) == read_or_error(read_name, longer, 12)
    if expected is not DnsError:
        parsed = parse_response(msg)
        assert parsed is not None and parsed[0] == expected[0]
